//! One load-generating SMTP session, and the work counter the sessions share.
//!
//! Owns the client side of the conversation: connect, read the 220 greeting,
//! EHLO (HELO if EHLO is refused), then MAIL/RCPT/DATA transactions in lock
//! step (no pipelining), `--per-conn` of them per connection, then QUIT and a
//! new connection. Owns claiming message numbers so that the sessions stop
//! together once `--count` messages were accepted. Does not own reply parsing
//! (`reply`) or message text (`message`).
//!
//! Standards: RFC 5321 3.1 (greeting), 3.2 (EHLO/HELO), 3.3 (mail
//! transaction), 4.1.1.5 (RSET after a refused command), 3.8 (421 closes the
//! session), 4.1.1.10 (QUIT).
//!
//! Diagnostics: every failed transaction (non-250 reply after the final dot,
//! refused MAIL/RCPT/DATA, I/O error, refused connection) counts as failed;
//! the first `REPORT_FIRST` are printed to stderr. A failed message is
//! claimed again, so the run still aims at `--count` accepted messages, until
//! `--max-failures` failures end it.

use std::io::{self, BufWriter, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::args::Config;
use crate::message::{self, Envelope};
use crate::reply::{Replies, Reply};

/// How many failures are printed to stderr.
const REPORT_FIRST: u64 = 5;

/// Pause after a failed connection attempt, so a dead server is not spun on.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// State shared by all session threads of one run.
pub struct Shared {
    pub cfg: Config,
    run_id: String,
    /// Messages claimed by a session and not (yet) failed.
    claimed: AtomicU64,
    /// Last sequence number handed out; every attempt gets a new one.
    seq: AtomicU64,
    pub accepted: AtomicU64,
    pub failed: AtomicU64,
}

impl Shared {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn new(cfg: Config, run_id: String) -> Self {
        Shared {
            cfg,
            run_id,
            claimed: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Claims the next message to send and returns its sequence number, or
    /// None when enough messages are claimed or too many failed.
    pub fn claim(&self) -> Option<u64> {
        if self.failed.load(Ordering::Relaxed) >= self.cfg.max_failures {
            return None;
        }
        let mut c = self.claimed.load(Ordering::Relaxed);
        loop {
            if c >= self.cfg.count {
                return None;
            }
            match self
                .claimed
                .compare_exchange_weak(c, c + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(self.seq.fetch_add(1, Ordering::Relaxed) + 1),
                Err(now) => c = now,
            }
        }
    }

    pub fn accept(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a failed attempt and gives its claim back for another try.
    pub fn fail(&self, seq: u64, f: &Failure) {
        let n = self.failed.fetch_add(1, Ordering::Relaxed);
        self.claimed.fetch_sub(1, Ordering::Relaxed);
        if n < REPORT_FIRST && !self.cfg.quiet_errors {
            eprintln!("posthorn-bench: message {seq}: {}: {}", f.stage, f.detail);
        }
    }
}

/// Timestamps one session contributes to the run's wall time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SessionTimes {
    pub first_connect: Option<Instant>,
    pub last_accept: Option<Instant>,
}

/// Why one transaction (or the connection under it) failed.
#[derive(Debug)]
pub struct Failure {
    stage: &'static str,
    detail: String,
    /// False when the connection must be dropped (I/O error, 421).
    keep_conn: bool,
}

impl Failure {
    /// An exec-mode program that exited with `status`.
    pub fn exit(status: std::process::ExitStatus, stderr: &str) -> Self {
        Failure {
            stage: "exit",
            detail: format!("{status}: {stderr}"),
            keep_conn: true,
        }
    }

    pub fn io(stage: &'static str, err: io::Error) -> Self {
        let detail = match err.kind() {
            // What a read or write timeout on the socket looks like.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                "no progress within --timeout seconds".to_string()
            }
            _ => err.to_string(),
        };
        Failure {
            stage,
            detail,
            keep_conn: false,
        }
    }

    fn reply(stage: &'static str, reply: &Reply) -> Self {
        Failure {
            stage,
            detail: reply.to_string(),
            // RFC 5321 3.8: 421 means the server is closing the channel.
            keep_conn: reply.code != 421,
        }
    }
}

/// Runs one session until the shared work is done; returns its timestamps.
pub fn run_session(shared: &Shared) -> SessionTimes {
    let mut times = SessionTimes::default();
    let mut wire = Vec::with_capacity(shared.cfg.size + shared.cfg.size / 32 + 64);
    'connect: while let Some(mut seq) = shared.claim() {
        times.first_connect.get_or_insert_with(Instant::now);
        let mut conn = match Conn::open(&shared.cfg) {
            Ok(c) => c,
            Err(f) => {
                shared.fail(seq, &f);
                thread::sleep(RECONNECT_PAUSE);
                continue;
            }
        };
        let mut sent = 0;
        loop {
            match conn.transaction(shared, seq, &mut wire) {
                Ok(()) => {
                    shared.accept();
                    times.last_accept = Some(Instant::now());
                }
                Err(f) => {
                    shared.fail(seq, &f);
                    if !f.keep_conn {
                        continue 'connect;
                    }
                }
            }
            sent += 1;
            if sent >= shared.cfg.per_conn {
                break;
            }
            match shared.claim() {
                Some(s) => seq = s,
                None => break,
            }
        }
        conn.quit();
    }
    times
}

/// One open SMTP connection past EHLO.
struct Conn {
    r: Replies<TcpStream>,
    w: BufWriter<TcpStream>,
}

impl Conn {
    /// Connects, reads the greeting and says EHLO (HELO if EHLO is refused).
    fn open(cfg: &Config) -> Result<Conn, Failure> {
        let io = |stage| move |e| Failure::io(stage, e);
        let stream = TcpStream::connect((cfg.host.as_str(), cfg.port)).map_err(io("connect"))?;
        stream.set_nodelay(true).map_err(io("connect"))?;
        stream
            .set_read_timeout(Some(cfg.timeout))
            .map_err(io("connect"))?;
        stream
            .set_write_timeout(Some(cfg.timeout))
            .map_err(io("connect"))?;
        let r = Replies::new(stream.try_clone().map_err(io("connect"))?);
        let w = BufWriter::with_capacity(64 * 1024, stream);
        let mut conn = Conn { r, w };

        // RFC 5321 3.1: the session opens with a 220 greeting.
        let greeting = conn.r.read_reply().map_err(io("greeting"))?;
        if greeting.code != 220 {
            return Err(Failure {
                keep_conn: false,
                ..Failure::reply("greeting", &greeting)
            });
        }
        let ehlo = conn
            .command(&format!("EHLO {}", cfg.helo))
            .map_err(io("EHLO"))?;
        if ehlo.code != 250 {
            // RFC 5321 3.2: a server that refuses EHLO may still take HELO.
            let helo = conn
                .command(&format!("HELO {}", cfg.helo))
                .map_err(io("HELO"))?;
            if helo.code != 250 {
                return Err(Failure {
                    keep_conn: false,
                    ..Failure::reply("HELO", &helo)
                });
            }
        }
        Ok(conn)
    }

    /// Sends one command line and reads its reply.
    fn command(&mut self, line: &str) -> io::Result<Reply> {
        self.w.write_all(line.as_bytes())?;
        self.w.write_all(b"\r\n")?;
        self.w.flush()?;
        self.r.read_reply()
    }

    /// One MAIL/RCPT/DATA transaction; Ok only for 250 after the final dot.
    fn transaction(
        &mut self,
        shared: &Shared,
        seq: u64,
        wire: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        let cfg = &shared.cfg;
        let io = |stage| move |e| Failure::io(stage, e);
        let mail = self
            .command(&format!("MAIL FROM:<{}>", cfg.from))
            .map_err(io("MAIL"))?;
        if mail.code != 250 {
            return self.abort("MAIL", &mail);
        }
        let rcpt = self
            .command(&format!("RCPT TO:<{}>", cfg.to))
            .map_err(io("RCPT"))?;
        // RFC 5321 4.2.2: 251 (will forward) also accepts the recipient.
        if rcpt.code != 250 && rcpt.code != 251 {
            return self.abort("RCPT", &rcpt);
        }
        let data = self.command("DATA").map_err(io("DATA"))?;
        if data.code != 354 {
            return self.abort("DATA", &data);
        }
        wire.clear();
        if let Some(fixed) = &cfg.message {
            message::dot_stuff(fixed, wire);
        } else {
            let date = message::rfc5322_date(SystemTime::now());
            let msg = message::build(
                &Envelope {
                    from: &cfg.from,
                    to: &cfg.to,
                    run_id: &shared.run_id,
                    seq,
                    date: &date,
                },
                cfg.size,
            );
            message::dot_stuff(&msg, wire);
        }
        self.w.write_all(wire).map_err(io("message"))?;
        self.w.flush().map_err(io("message"))?;
        let done = self.r.read_reply().map_err(io("end of data"))?;
        if done.code != 250 {
            // The transaction is over either way (RFC 5321 4.1.1.4); no RSET.
            return Err(Failure::reply("end of data", &done));
        }
        Ok(())
    }

    /// Ends a refused transaction with RSET (RFC 5321 4.1.1.5) and reports
    /// the refusal.
    fn abort(&mut self, stage: &'static str, refused: &Reply) -> Result<(), Failure> {
        let mut f = Failure::reply(stage, refused);
        if f.keep_conn {
            match self.command("RSET") {
                Ok(r) if r.is_positive() => {}
                _ => f.keep_conn = false,
            }
        }
        Err(f)
    }

    /// Says QUIT and waits for the 221, ignoring errors: the work is done.
    fn quit(mut self) {
        let _ = self.command("QUIT");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// A minimal SMTP server on 127.0.0.1 that stores unstuffed messages and
    /// refuses every message whose number within the connection is divisible
    /// by `reject_every` (0: never).
    fn fake_server(reject_every: usize) -> (u16, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let store = Arc::new(Mutex::new(Vec::new()));
        let st = Arc::clone(&store);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let st = Arc::clone(&st);
                thread::spawn(move || serve(stream, reject_every, &st));
            }
        });
        (port, store)
    }

    fn serve(stream: TcpStream, reject_every: usize, store: &Mutex<Vec<String>>) {
        let mut r = BufReader::new(stream.try_clone().unwrap());
        let mut w = stream;
        let mut line = String::new();
        let mut n = 0;
        w.write_all(b"220 fake ESMTP\r\n").unwrap();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            let out: &[u8] = match verb.as_str() {
                "EHLO" => b"250-fake\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
                "MAIL" | "RCPT" | "RSET" => b"250 2.0.0 ok\r\n",
                "QUIT" => {
                    let _ = w.write_all(b"221 2.0.0 bye\r\n");
                    return;
                }
                "DATA" => {
                    w.write_all(b"354 go\r\n").unwrap();
                    let mut msg = String::new();
                    loop {
                        line.clear();
                        r.read_line(&mut line).unwrap();
                        if line == ".\r\n" {
                            break;
                        }
                        msg.push_str(line.strip_prefix('.').unwrap_or(&line));
                    }
                    n += 1;
                    if reject_every != 0 && n % reject_every == 0 {
                        b"554 5.7.1 no thanks\r\n"
                    } else {
                        store.lock().unwrap().push(msg);
                        b"250 2.0.0 queued\r\n"
                    }
                }
                _ => b"500 5.5.2 what\r\n",
            };
            w.write_all(out).unwrap();
        }
    }

    fn config(port: u16) -> Config {
        Config {
            port,
            count: 25,
            size: 2048,
            per_conn: 4,
            sessions: 3,
            max_failures: 100,
            quiet_errors: true,
            ..Config::default()
        }
    }

    fn run(shared: &Shared) {
        thread::scope(|s| {
            for _ in 0..shared.cfg.sessions {
                s.spawn(|| run_session(shared));
            }
        });
    }

    #[test]
    fn sends_count_messages_that_arrive_intact() {
        let (port, store) = fake_server(0);
        let shared = Shared::new(config(port), "t1".into());
        run(&shared);
        assert_eq!(shared.accepted.load(Ordering::Relaxed), 25);
        assert_eq!(shared.failed.load(Ordering::Relaxed), 0);
        let msgs = store.lock().unwrap();
        assert_eq!(msgs.len(), 25);
        let mut subjects: Vec<_> = msgs
            .iter()
            .map(|m| {
                m.lines()
                    .find(|l| l.starts_with("Subject:"))
                    .unwrap()
                    .to_string()
            })
            .collect();
        subjects.sort();
        subjects.dedup();
        assert_eq!(subjects.len(), 25, "sequence numbers are unique");
        for m in msgs.iter() {
            assert!(m.len() <= 2048 && m.len() >= 2046, "{}", m.len());
            assert!(
                m.contains("\r\n.line "),
                "dot lines unstuffed by the server"
            );
        }
    }

    #[test]
    fn rejected_messages_count_as_failed_and_are_retried() {
        let (port, store) = fake_server(3);
        let shared = Shared::new(config(port), "t2".into());
        run(&shared);
        assert_eq!(shared.accepted.load(Ordering::Relaxed), 25);
        assert!(shared.failed.load(Ordering::Relaxed) > 0);
        assert_eq!(store.lock().unwrap().len(), 25);
    }

    #[test]
    fn dead_server_stops_at_max_failures() {
        // Bind and drop to get a port that (very likely) refuses connections.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let shared = Shared::new(
            Config {
                max_failures: 4,
                ..config(port)
            },
            "t3".into(),
        );
        run(&shared);
        assert_eq!(shared.accepted.load(Ordering::Relaxed), 0);
        assert!(shared.failed.load(Ordering::Relaxed) >= 4);
    }
}
