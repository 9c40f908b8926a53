//! One POP3 client of the load: its loop over sessions, and one session.
//!
//! Owns the conversation: connect, greeting, USER, PASS, STAT, LIST, UIDL,
//! RETR of random messages (or all of them), QUIT, in lock step (each reply
//! read before the next command), with the checks a careful client makes:
//! LIST and UIDL list exactly the messages STAT counts, LIST's sizes add up
//! to STAT's, and each RETR delivers exactly the octets LIST announced. Uses
//! `posthorn_bench::work` for the work shared by all clients: claiming
//! sessions until `--sessions` succeeded or `--seconds` passed, and handing
//! out mailboxes in rotation (one session per mailbox at a time unless
//! `--shared-mailboxes`). Does not own line reading (`wire`) or the
//! statistics (`stats`).
//!
//! Standards: RFC 1939 4 (greeting, AUTHORIZATION state), 5 (STAT, LIST,
//! RETR in the TRANSACTION state), 6 (QUIT; nothing is deleted here, no
//! DELE), 7 (USER, PASS, UIDL); RFC 2449 8.1.1 ([IN-USE]).
//!
//! Diagnostics: a failed session counts once, under the `ErrorKind` of its
//! first problem; the first `REPORT_FIRST` failures are printed to stderr
//! with the user, the command and the server's reply.

use std::io::{self, BufReader, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use posthorn_bench::line;
use posthorn_bench::maildir::user_name;
use posthorn_bench::rng::Rng;
use posthorn_bench::work::{self, Mailboxes, Work};

use super::args::Config;
use super::stats::{Cmd, ErrorKind, Stats};
use super::wire::{self, Reply, WireError};

/// How many failures are printed to stderr.
const REPORT_FIRST: u64 = 5;

/// Pause after a failed session, so a dead server is not spun on.
const FAILURE_PAUSE: Duration = Duration::from_millis(20);

/// Read buffer per connection: a RETR of a 12 KiB message in one or two reads.
const READ_BUFFER: usize = 64 * 1024;

/// State shared by all clients of one run.
pub struct Shared {
    pub cfg: Config,
    work: Work,
    mailboxes: Mailboxes,
}

impl Shared {
    pub fn new(cfg: Config, start: Instant) -> Self {
        Shared {
            work: Work::new(
                cfg.sessions,
                cfg.seconds.map(|s| start + s),
                cfg.max_failures,
            ),
            mailboxes: Mailboxes::new(cfg.users, cfg.exclusive),
            cfg,
        }
    }

    /// Records a failed session and gives its claim back for another try.
    fn fail(&self, user: &str, f: &Failure) {
        if self.work.fail() < REPORT_FIRST && !self.cfg.quiet_errors {
            eprintln!("posthorn-pop3-bench: {user}: {f}");
        }
    }
}

/// What one client thread measured, and when it started and ended work.
pub type ClientResult = work::ClientResult<Cmd, ErrorKind>;

/// Runs client number `id` until the shared work is done.
pub fn run_client(shared: &Shared, id: u64) -> ClientResult {
    let cfg = &shared.cfg;
    let mut rng = Rng::stream(cfg.seed, id);
    let mut res = ClientResult::default();
    let mut buf = Vec::with_capacity(256);
    let mut sizes = Vec::new();
    while shared.work.claim() {
        let mbox = shared.mailboxes.acquire();
        let user = user_name(&cfg.user_pattern, cfg.first_user + mbox as u32);
        let t0 = Instant::now();
        res.first_start.get_or_insert(t0);
        let mut s = SessionRun {
            cfg,
            user: &user,
            rng: &mut rng,
            stats: &mut res.stats,
            buf: &mut buf,
            sizes: &mut sizes,
        };
        let outcome = s.run();
        shared.mailboxes.release(mbox);
        let t1 = Instant::now();
        res.last_end = Some(t1);
        match outcome {
            Ok(()) => {
                res.stats.ok_sessions += 1;
                res.stats.session.record(t1 - t0);
            }
            Err(f) => {
                res.stats.failed_sessions += 1;
                res.stats.error(f.kind());
                shared.fail(&user, &f);
                thread::sleep(FAILURE_PAUSE);
            }
        }
    }
    res
}

/// Why a session failed.
#[derive(Debug)]
pub enum Failure {
    /// The connection could not be made.
    Connect(io::Error),
    /// An I/O or framing problem while waiting for the reply to `cmd`.
    Wire {
        cmd: &'static str,
        err: WireError,
    },
    /// `-ERR` (or a greeting that is not `+OK`).
    Refused {
        cmd: &'static str,
        reply: Reply,
    },
    /// A reply that does not say what RFC 1939 says it must.
    Protocol {
        cmd: &'static str,
        detail: String,
    },
    /// RETR delivered other than LIST's size (message number, listed, got).
    SizeMismatch {
        msg: usize,
        listed: u64,
        got: u64,
    },
    Empty,
}

impl Failure {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Failure::Connect(_) => ErrorKind::Connect,
            Failure::Wire { err, .. } if err.is_timeout() => ErrorKind::Timeout,
            Failure::Wire {
                err: WireError::BadStatus(_),
                ..
            } => ErrorKind::Protocol,
            Failure::Wire { .. } => ErrorKind::Io,
            Failure::Refused { reply, .. } if reply.in_use() => ErrorKind::InUse,
            Failure::Refused {
                cmd: "greeting", ..
            } => ErrorKind::Greeting,
            Failure::Refused { cmd: "USER", .. } => ErrorKind::User,
            Failure::Refused { cmd: "PASS", .. } => ErrorKind::Pass,
            Failure::Refused { .. } => ErrorKind::Refused,
            Failure::Protocol { .. } => ErrorKind::Protocol,
            Failure::SizeMismatch { .. } => ErrorKind::SizeMismatch,
            Failure::Empty => ErrorKind::Empty,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Wire { cmd, err } => write!(f, "{cmd}: {err}"),
            Failure::Refused { cmd, reply } => write!(f, "{cmd}: {reply}"),
            Failure::Protocol { cmd, detail } => write!(f, "{cmd}: {detail}"),
            Failure::SizeMismatch { msg, listed, got } => {
                write!(f, "RETR {msg}: {got} octets received, LIST said {listed}")
            }
            Failure::Empty => write!(f, "STAT: the mailbox is empty, nothing to RETR"),
        }
    }
}

impl std::error::Error for Failure {}

/// One session's working state (borrowed from its client).
struct SessionRun<'a> {
    cfg: &'a Config,
    user: &'a str,
    rng: &'a mut Rng,
    stats: &'a mut Stats,
    buf: &'a mut Vec<u8>,
    /// LIST's size of each message, index = message number - 1.
    sizes: &'a mut Vec<u64>,
}

impl SessionRun<'_> {
    fn run(&mut self) -> Result<(), Failure> {
        let cfg = self.cfg;
        let t0 = Instant::now();
        let (stream, mut w) =
            line::connect(&cfg.host, cfg.port, cfg.timeout).map_err(Failure::Connect)?;
        let mut r = BufReader::with_capacity(READ_BUFFER, stream);

        // RFC 1939 4: the server greets with +OK.
        let greeting = self.status(&mut r, "greeting")?;
        self.ok("greeting", greeting)?;
        self.stats.cmd(Cmd::Connect).record(t0.elapsed());

        // RFC 1939 7: USER and PASS.
        let user_line = format!("USER {}", self.user);
        self.simple(&mut r, &mut w, Cmd::User, "USER", &user_line)?;
        let pass_line = format!("PASS {}", cfg.password);
        self.simple(&mut r, &mut w, Cmd::Pass, "PASS", &pass_line)?;

        // RFC 1939 5: "+OK nn mm", the number of messages and their octets.
        let stat = self.simple(&mut r, &mut w, Cmd::Stat, "STAT", "STAT")?;
        let (count, total) = parse_two(&stat.text).ok_or_else(|| Failure::Protocol {
            cmd: "STAT",
            detail: format!("expected \"+OK count octets\", got {:?}", stat.text),
        })?;

        self.list(&mut r, &mut w, count, total)?;
        self.uidl(&mut r, &mut w, count)?;
        if count == 0 {
            return Err(Failure::Empty);
        }

        let mut mismatch = None;
        let picks: Vec<usize> = if cfg.retr_all {
            (1..=count as usize).collect()
        } else {
            (0..cfg.retr)
                .map(|_| self.rng.below(count) as usize + 1)
                .collect()
        };
        for n in picks {
            let got = self.retr(&mut r, &mut w, n)?;
            let listed = self.sizes[n - 1];
            // RFC 1939 5: LIST gives "the exact size of the message in octets".
            if got != listed && mismatch.is_none() {
                mismatch = Some(Failure::SizeMismatch {
                    msg: n,
                    listed,
                    got,
                });
            }
        }

        // RFC 1939 6: QUIT ends the session (no DELE: nothing is removed).
        self.simple(&mut r, &mut w, Cmd::Quit, "QUIT", "QUIT")?;
        match mismatch {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Reads a status line; I/O and framing problems become a `Failure`.
    fn status(
        &mut self,
        r: &mut BufReader<TcpStream>,
        cmd: &'static str,
    ) -> Result<Reply, Failure> {
        wire::read_reply(r, self.buf).map_err(|err| Failure::Wire { cmd, err })
    }

    fn ok(&self, cmd: &'static str, reply: Reply) -> Result<Reply, Failure> {
        if reply.ok {
            Ok(reply)
        } else {
            Err(Failure::Refused { cmd, reply })
        }
    }

    fn send(w: &mut TcpStream, cmd: &'static str, line: &str) -> Result<(), Failure> {
        let mut out = Vec::with_capacity(line.len() + 2);
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        w.write_all(&out).map_err(|e| Failure::Wire {
            cmd,
            err: WireError::Io(e),
        })
    }

    /// Sends a command with a one-line reply; records its latency when +OK.
    fn simple(
        &mut self,
        r: &mut BufReader<TcpStream>,
        w: &mut TcpStream,
        c: Cmd,
        cmd: &'static str,
        line: &str,
    ) -> Result<Reply, Failure> {
        let t = Instant::now();
        Self::send(w, cmd, line)?;
        let reply = self.status(r, cmd)?;
        self.stats.commands += 1;
        let reply = self.ok(cmd, reply)?;
        self.stats.cmd(c).record(t.elapsed());
        Ok(reply)
    }

    /// LIST: one "msg octets" line per message, 1..=count in order,
    /// adding up to STAT's total (RFC 1939 5).
    fn list(
        &mut self,
        r: &mut BufReader<TcpStream>,
        w: &mut TcpStream,
        count: u64,
        total: u64,
    ) -> Result<(), Failure> {
        let t = Instant::now();
        Self::send(w, "LIST", "LIST")?;
        let reply = self.status(r, "LIST")?;
        self.stats.commands += 1;
        self.ok("LIST", reply)?;
        self.sizes.clear();
        let mut bad: Option<String> = None;
        let sizes = &mut *self.sizes;
        wire::read_multiline(r, self.buf, |line| {
            if bad.is_some() {
                return;
            }
            let expect = sizes.len() as u64 + 1;
            match parse_two(&String::from_utf8_lossy(line)) {
                Some((n, size)) if n == expect => sizes.push(size),
                _ => {
                    bad = Some(format!(
                        "line {expect} is {:?}",
                        String::from_utf8_lossy(line)
                    ))
                }
            }
        })
        .map_err(|err| Failure::Wire { cmd: "LIST", err })?;
        if let Some(detail) = bad {
            return Err(Failure::Protocol {
                cmd: "LIST",
                detail,
            });
        }
        let sum: u64 = self.sizes.iter().sum();
        if self.sizes.len() as u64 != count || sum != total {
            return Err(Failure::Protocol {
                cmd: "LIST",
                detail: format!(
                    "{} messages of {sum} octets, STAT said {count} of {total}",
                    self.sizes.len()
                ),
            });
        }
        self.stats.cmd(Cmd::List).record(t.elapsed());
        Ok(())
    }

    /// UIDL: one "msg unique-id" line per message, 1..=count in order; the
    /// id is 1 to 70 characters in 0x21..0x7E (RFC 1939 7).
    fn uidl(
        &mut self,
        r: &mut BufReader<TcpStream>,
        w: &mut TcpStream,
        count: u64,
    ) -> Result<(), Failure> {
        let t = Instant::now();
        Self::send(w, "UIDL", "UIDL")?;
        let reply = self.status(r, "UIDL")?;
        self.stats.commands += 1;
        self.ok("UIDL", reply)?;
        let mut seen = 0u64;
        let mut bad: Option<String> = None;
        wire::read_multiline(r, self.buf, |line| {
            seen += 1;
            if bad.is_some() {
                return;
            }
            let good = line.iter().position(|&b| b == b' ').is_some_and(|sp| {
                let (n, id) = (&line[..sp], &line[sp + 1..]);
                std::str::from_utf8(n)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    == Some(seen)
                    && (1..=70).contains(&id.len())
                    && id.iter().all(|b| (0x21..=0x7e).contains(b))
            });
            if !good {
                bad = Some(format!(
                    "line {seen} is {:?}",
                    String::from_utf8_lossy(line)
                ));
            }
        })
        .map_err(|err| Failure::Wire { cmd: "UIDL", err })?;
        if let Some(detail) = bad {
            return Err(Failure::Protocol {
                cmd: "UIDL",
                detail,
            });
        }
        if seen != count {
            return Err(Failure::Protocol {
                cmd: "UIDL",
                detail: format!("{seen} messages, STAT said {count}"),
            });
        }
        self.stats.cmd(Cmd::Uidl).record(t.elapsed());
        Ok(())
    }

    /// RETR n: the message, read to the terminating dot; returns its octets.
    fn retr(
        &mut self,
        r: &mut BufReader<TcpStream>,
        w: &mut TcpStream,
        n: usize,
    ) -> Result<u64, Failure> {
        let t = Instant::now();
        Self::send(w, "RETR", &format!("RETR {n}"))?;
        let reply = self.status(r, "RETR")?;
        self.stats.commands += 1;
        self.ok("RETR", reply)?;
        let got = wire::read_multiline(r, self.buf, |_| {})
            .map_err(|err| Failure::Wire { cmd: "RETR", err })?;
        self.stats.octets += got;
        self.stats.cmd(Cmd::Retr).record(t.elapsed());
        Ok(got)
    }
}

/// Two decimal numbers separated by a space, then optional text.
fn parse_two(text: &str) -> Option<(u64, u64)> {
    let mut it = text.split(' ');
    let a = it.next()?.parse().ok()?;
    let b = it.next()?.parse().ok()?;
    Some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthorn_bench::stats::Kind as _;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::Arc;

    /// How the fake server misbehaves.
    #[derive(Clone, Copy, Default)]
    struct Faults {
        /// LIST reports one octet more for message 2 than RETR sends.
        wrong_size: bool,
        /// PASS fails for every session.
        bad_pass: bool,
        /// A second concurrent session on a mailbox gets -ERR [IN-USE].
        lock: bool,
        /// UIDL lists one message fewer than STAT.
        short_uidl: bool,
    }

    /// Per mailbox: how many sessions are in it now, and the most ever.
    type InUse = Arc<std::sync::Mutex<std::collections::HashMap<String, (u32, u32)>>>;

    /// Messages with LF line ends, some beginning with dots.
    fn mailbox() -> Vec<Vec<u8>> {
        (0..5)
            .map(|i| {
                let mut m = format!("Subject: m{i}\n\n").into_bytes();
                for k in 0..=i * 20 {
                    m.extend_from_slice(if k % 3 == 0 {
                        b".\n"
                    } else {
                        b"..dots and text\n"
                    });
                }
                m
            })
            .collect()
    }

    /// RFC 1939's wire form of a stored message: CRLF, dot-stuffed, ".".
    fn wire_form(m: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in m.split_inclusive(|&b| b == b'\n') {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            if text.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    fn fake_server(faults: Faults) -> (u16, InUse) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let in_use: InUse = Arc::default();
        let iu = Arc::clone(&in_use);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let iu = Arc::clone(&iu);
                thread::spawn(move || serve(stream, faults, &iu));
            }
        });
        (port, in_use)
    }

    fn serve(stream: TcpStream, faults: Faults, in_use: &InUse) {
        let msgs = mailbox();
        let vsize = |m: &Vec<u8>| (m.len() + m.iter().filter(|&&b| b == b'\n').count()) as u64;
        let mut r = BufReader::new(stream.try_clone().unwrap());
        let mut w = stream;
        let mut user = String::new();
        let mut holding = None::<String>;
        let mut line = String::new();
        w.write_all(b"+OK fake ready.\r\n").unwrap();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let line = line.trim_end();
            let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
            let out: Vec<u8> = match verb {
                "USER" => {
                    user = arg.to_string();
                    b"+OK\r\n".to_vec()
                }
                "PASS" if faults.bad_pass || arg != "pw" => {
                    b"-ERR [AUTH] Authentication failed.\r\n".to_vec()
                }
                "PASS" => {
                    let mut m = in_use.lock().unwrap();
                    let e = m.entry(user.clone()).or_default();
                    if faults.lock && e.0 > 0 {
                        b"-ERR [IN-USE] Mailbox is locked.\r\n".to_vec()
                    } else {
                        e.0 += 1;
                        e.1 = e.1.max(e.0);
                        holding = Some(user.clone());
                        b"+OK Logged in.\r\n".to_vec()
                    }
                }
                "STAT" => {
                    let total: u64 = msgs.iter().map(vsize).sum();
                    format!("+OK {} {total}\r\n", msgs.len()).into_bytes()
                }
                "LIST" => {
                    let mut o = b"+OK 5 messages:\r\n".to_vec();
                    for (i, m) in msgs.iter().enumerate() {
                        o.extend(format!("{} {}\r\n", i + 1, vsize(m)).bytes());
                    }
                    o.extend_from_slice(b".\r\n");
                    if faults.wrong_size {
                        // Message 2 announced one octet larger (and STAT's
                        // total is then off too: adjust the sum check by
                        // shrinking message 1 by one).
                        let s = String::from_utf8(o).unwrap();
                        let v1 = vsize(&msgs[0]);
                        let v2 = vsize(&msgs[1]);
                        o = s
                            .replacen(&format!("1 {v1}\r\n"), &format!("1 {}\r\n", v1 - 1), 1)
                            .replacen(&format!("2 {v2}\r\n"), &format!("2 {}\r\n", v2 + 1), 1)
                            .into_bytes();
                    }
                    o
                }
                "UIDL" => {
                    let mut o = b"+OK\r\n".to_vec();
                    let n = if faults.short_uidl {
                        msgs.len() - 1
                    } else {
                        msgs.len()
                    };
                    for i in 0..n {
                        o.extend(format!("{} {:08X}{:08X}\r\n", i + 1, i + 1, 1234).bytes());
                    }
                    o.extend_from_slice(b".\r\n");
                    o
                }
                "RETR" => match arg.parse::<usize>() {
                    Ok(n) if (1..=msgs.len()).contains(&n) => {
                        let mut o = b"+OK message follows\r\n".to_vec();
                        o.extend(wire_form(&msgs[n - 1]));
                        o
                    }
                    _ => b"-ERR There's no message.\r\n".to_vec(),
                },
                "QUIT" => {
                    // Leave the mailbox before the reply, as a locking
                    // server does, so the next session may enter at once.
                    if let Some(u) = holding.take() {
                        in_use.lock().unwrap().get_mut(&u).unwrap().0 -= 1;
                    }
                    let _ = w.write_all(b"+OK Logging out.\r\n");
                    break;
                }
                _ => b"-ERR Unknown command.\r\n".to_vec(),
            };
            // Slow enough that concurrent sessions overlap.
            thread::sleep(Duration::from_micros(200));
            if w.write_all(&out).is_err() {
                break;
            }
        }
        if let Some(u) = holding {
            in_use.lock().unwrap().get_mut(&u).unwrap().0 -= 1;
        }
    }

    fn config(port: u16) -> Config {
        Config {
            port,
            clients: 4,
            sessions: Some(40),
            users: 3,
            password: "pw".into(),
            retr: 4,
            max_failures: 40,
            quiet_errors: true,
            ..Config::default()
        }
    }

    fn run(cfg: Config) -> Stats {
        let shared = Shared::new(cfg, Instant::now());
        let mut total = Stats::default();
        thread::scope(|s| {
            let hs: Vec<_> = (0..shared.cfg.clients)
                .map(|i| {
                    let sh = &shared;
                    s.spawn(move || run_client(sh, i as u64))
                })
                .collect();
            for h in hs {
                total.merge(&h.join().unwrap().stats);
            }
        });
        total
    }

    #[test]
    fn clean_server_every_session_and_command_counted() {
        let (port, in_use) = fake_server(Faults::default());
        let st = run(config(port));
        assert_eq!((st.ok_sessions, st.failed_sessions), (40, 0));
        // USER PASS STAT LIST UIDL 4xRETR QUIT per session.
        assert_eq!(st.commands, 40 * 10);
        assert_eq!(st.cmd_ref(Cmd::Retr).count(), 160);
        assert_eq!(st.cmd_ref(Cmd::Connect).count(), 40);
        assert_eq!(st.session.count(), 40);
        for &k in ErrorKind::ALL {
            assert_eq!(st.errors(k), 0, "{}", k.key());
        }
        // Exclusive by default: never two sessions in one mailbox.
        let m = in_use.lock().unwrap();
        assert_eq!(m.len(), 3, "all mailboxes used: {m:?}");
        assert!(m.values().all(|&(now, max)| now == 0 && max == 1), "{m:?}");
    }

    #[test]
    fn shared_mailboxes_overlap_and_a_locking_server_says_in_use() {
        let (port, _) = fake_server(Faults {
            lock: true,
            ..Faults::default()
        });
        let st = run(Config {
            exclusive: false,
            clients: 6,
            users: 2,
            max_failures: 1000,
            ..config(port)
        });
        assert_eq!(st.ok_sessions, 40);
        assert!(
            st.errors(ErrorKind::InUse) > 0,
            "6 clients on 2 mailboxes collide"
        );
        assert_eq!(st.failed_sessions, st.errors(ErrorKind::InUse));
    }

    #[test]
    fn retr_all_reads_every_message() {
        let (port, _) = fake_server(Faults::default());
        let st = run(Config {
            retr_all: true,
            clients: 1,
            sessions: Some(2),
            ..config(port)
        });
        assert_eq!(st.ok_sessions, 2);
        assert_eq!(st.cmd_ref(Cmd::Retr).count(), 10);
        let one: u64 = mailbox()
            .iter()
            .map(|m| (m.len() + m.iter().filter(|&&b| b == b'\n').count()) as u64)
            .sum();
        assert_eq!(st.octets, 2 * one);
    }

    #[test]
    fn a_wrong_size_is_an_error() {
        let (port, _) = fake_server(Faults {
            wrong_size: true,
            ..Faults::default()
        });
        let st = run(Config {
            retr_all: true,
            clients: 1,
            sessions: Some(3),
            max_failures: 3,
            ..config(port)
        });
        assert_eq!(st.ok_sessions, 0);
        assert_eq!(st.failed_sessions, 3);
        assert_eq!(st.errors(ErrorKind::SizeMismatch), 3);
    }

    #[test]
    fn refused_login_and_bad_uidl_are_errors_and_the_run_ends() {
        let (port, _) = fake_server(Faults {
            bad_pass: true,
            ..Faults::default()
        });
        let st = run(Config {
            max_failures: 5,
            ..config(port)
        });
        assert_eq!(st.ok_sessions, 0);
        assert!(st.errors(ErrorKind::Pass) >= 5);
        let (port, _) = fake_server(Faults {
            short_uidl: true,
            ..Faults::default()
        });
        let st = run(Config {
            max_failures: 2,
            clients: 1,
            ..config(port)
        });
        assert_eq!(st.errors(ErrorKind::Protocol), 2);
    }

    #[test]
    fn dead_server_and_deadline() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let st = run(Config {
            max_failures: 3,
            ..config(port)
        });
        assert!(st.errors(ErrorKind::Connect) >= 3);
        // --seconds without --sessions: stops by the clock.
        let (port, _) = fake_server(Faults::default());
        let t = Instant::now();
        let st = run(Config {
            sessions: None,
            seconds: Some(Duration::from_millis(300)),
            ..config(port)
        });
        assert!(st.ok_sessions > 0);
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn failures_name_the_command_and_reply() {
        let f = Failure::Refused {
            cmd: "PASS",
            reply: Reply {
                ok: false,
                text: "[AUTH] Authentication failed.".into(),
            },
        };
        assert_eq!(f.to_string(), "PASS: -ERR [AUTH] Authentication failed.");
        assert_eq!(f.kind(), ErrorKind::Pass);
        let f = Failure::SizeMismatch {
            msg: 2,
            listed: 10,
            got: 9,
        };
        assert_eq!(f.to_string(), "RETR 2: 9 octets received, LIST said 10");
        assert_eq!(parse_two("2 320"), Some((2, 320)));
        assert_eq!(parse_two("2 320 messages"), Some((2, 320)));
        assert_eq!(parse_two("2"), None);
        assert_eq!(parse_two("x 1"), None);
    }
}
