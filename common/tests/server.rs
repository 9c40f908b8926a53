//! The server skeleton over real sockets, with a small line service: greeting,
//! refusals at the connection limits, idle and total time-outs, pauses that
//! hold input and output, pool jobs, a graceful stop and a drain; TLS
//! (implicit, and STARTTLS with pipelined plaintext discarded) with a rustls
//! client and an rcgen CA; streaming output (`Next::Produce`); and handing
//! connections (plain and TLS) to a second loop over a socketpair; a
//! watched descriptor (`Next::Watch`) waking a session without input; a
//! result owed by another thread (`Next::Await`), finished or dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use common::daemon::Listener;
use common::server::{Limits, LocalCounter, Next, Peer, Refusal, Server, Service, Ticket};
use common::tls::{TlsInfo, TlsSetup};

/// What the tests observe from inside the service.
#[derive(Default)]
struct Seen {
    /// Connections closed with `lost`.
    lost: AtomicUsize,
    /// Connections closed without `lost`.
    clean: AtomicUsize,
    /// The most unsent output a streaming connection held after `produce`.
    max_out: AtomicUsize,
    /// The writing ends of `watch` commands' socketpairs.
    watch_ends: std::sync::Mutex<Vec<UnixStream>>,
    /// The tickets of `await` commands, for the test to finish or drop.
    tickets: std::sync::Mutex<Vec<Ticket<mio::Token, u32>>>,
}

/// Lines in, lines out: `pause`, `job`, `await`, `quit`, `starttls`, `big N`
/// (stream N bytes), `handoff` (to the second loop), anything else is
/// echoed.
struct Lines {
    seen: Arc<Seen>,
    /// Where `handoff` sends connections.
    handoff_to: Option<UnixStream>,
}

impl Lines {
    fn new(seen: &Arc<Seen>) -> Lines {
        Lines {
            seen: Arc::clone(seen),
            handoff_to: None,
        }
    }
}

#[derive(Default)]
struct Conn {
    line: Vec<u8>,
    /// Bytes of a `big` reply still to produce, and produced so far.
    big_left: usize,
    big_done: usize,
    /// Descriptors received (and closed).
    fds: usize,
    /// `watch`: the reading end the loop watches.
    watched: Option<UnixStream>,
}

/// The byte at offset `i` of a `big` reply.
fn big_byte(i: usize) -> u8 {
    b'a' + (i % 26) as u8
}

impl Lines {
    fn run_lines(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> Next<u32> {
        while let Some(i) = c.line.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = c.line.drain(..=i).collect();
            match &line[..line.len() - 1] {
                b"pause" => {
                    out.extend_from_slice(b"paused\n");
                    return Next::Pause(Duration::from_millis(300));
                }
                b"job" => return Next::Run(Box::new(|| 42)),
                b"await" => {
                    let seen = Arc::clone(&self.seen);
                    return Next::Await {
                        start: Box::new(move |t| seen.tickets.lock().unwrap().push(t)),
                        fallback: 0,
                    };
                }
                b"quit" => {
                    out.extend_from_slice(b"bye\n");
                    return Next::Close;
                }
                b"fds" => out.extend_from_slice(format!("fds {}\n", c.fds).as_bytes()),
                b"watch" => {
                    use std::os::fd::AsRawFd;
                    let (r, w) = UnixStream::pair().unwrap();
                    r.set_nonblocking(true).unwrap();
                    self.seen.watch_ends.lock().unwrap().push(w);
                    let fd = r.as_raw_fd();
                    c.watched = Some(r);
                    out.extend_from_slice(b"watching\n");
                    return Next::Watch(fd);
                }
                b"starttls" => {
                    out.extend_from_slice(b"go tls\n");
                    // RFC 3207 5: what came after the command is dropped.
                    c.line.clear();
                    return Next::StartTls;
                }
                b"handoff" => {
                    let to = self
                        .handoff_to
                        .as_ref()
                        .and_then(|s| s.try_clone().ok())
                        .expect("a hand-off socket");
                    let mut frame = Vec::new();
                    let leftover = std::mem::take(&mut c.line);
                    common::ipc::write_frame(&mut frame, &leftover).unwrap();
                    return Next::HandOff { to, frame };
                }
                l if l.starts_with(b"big ") => {
                    let n: usize = std::str::from_utf8(&l[4..]).unwrap().parse().unwrap();
                    c.big_left = n;
                    c.big_done = 0;
                    return self.produce(c, out);
                }
                other => {
                    out.extend_from_slice(other);
                    out.push(b'\n');
                }
            }
        }
        Next::Continue
    }
}

impl Service for Lines {
    type Conn = Conn;
    type Done = u32;

    fn open(&mut self, peer: Peer, out: &mut Vec<u8>) -> (Conn, Next<u32>) {
        let mut c = Conn::default();
        match peer.handoff {
            Some(frame) => {
                let leftover: Vec<u8> = common::ipc::read_frame(&mut &frame[..]).unwrap().unwrap();
                out.extend_from_slice(b"welcome\n");
                c.line = leftover;
                let next = self.run_lines(&mut c, out);
                (c, next)
            }
            None => {
                out.extend_from_slice(b"hello\n");
                (c, Next::Continue)
            }
        }
    }

    fn refuse(&mut self, _peer: Peer, why: Refusal, out: &mut Vec<u8>) -> Conn {
        out.extend_from_slice(format!("refused {why:?}\n").as_bytes());
        Conn::default()
    }

    fn input(&mut self, c: &mut Conn, data: &[u8], out: &mut Vec<u8>) -> Next<u32> {
        c.line.extend_from_slice(data);
        self.run_lines(c, out)
    }

    fn received_fd(&mut self, c: &mut Conn, fd: std::os::fd::OwnedFd) {
        drop(fd);
        c.fds += 1;
    }

    fn done(&mut self, c: &mut Conn, r: u32, out: &mut Vec<u8>) -> Next<u32> {
        out.extend_from_slice(format!("done {r}\n").as_bytes());
        self.run_lines(c, out)
    }

    fn resume(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> Next<u32> {
        self.run_lines(c, out)
    }

    fn notify(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> Next<u32> {
        let mut n = 0;
        let mut buf = [0u8; 64];
        if let Some(r) = c.watched.as_mut() {
            while let Ok(k) = r.read(&mut buf) {
                if k == 0 {
                    break;
                }
                n += k;
            }
        }
        if n > 0 {
            out.extend_from_slice(format!("notified {n}\n").as_bytes());
        }
        Next::Continue
    }

    fn tls_ready(&mut self, _c: &mut Conn, info: &TlsInfo, out: &mut Vec<u8>) -> Next<u32> {
        out.extend_from_slice(format!("secured {}\n", info.protocol).as_bytes());
        Next::Continue
    }

    fn produce(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> Next<u32> {
        let n = c.big_left.min(64 * 1024);
        out.extend((c.big_done..c.big_done + n).map(big_byte));
        c.big_done += n;
        c.big_left -= n;
        self.seen.max_out.fetch_max(out.len(), Ordering::Relaxed);
        if c.big_left > 0 {
            return Next::Produce;
        }
        out.extend_from_slice(b"\nend\n");
        self.run_lines(c, out)
    }

    fn timed_out(&mut self, _c: &mut Conn, out: &mut Vec<u8>) {
        out.extend_from_slice(b"timeout\n");
    }

    fn stopping(&mut self, _c: &mut Conn, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(b"stopping\n");
        true
    }

    fn closed(&mut self, _c: Conn, lost: bool) {
        let n = if lost {
            &self.seen.lost
        } else {
            &self.seen.clean
        };
        n.fetch_add(1, Ordering::SeqCst);
    }

    fn orphan(&mut self, _r: u32) {}
}

struct Running {
    port: u16,
    stop: Arc<AtomicBool>,
    drain: Arc<AtomicBool>,
    seen: Arc<Seen>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Wait for the loop to return (within `limit`); false if it did not.
    fn join_within(&mut self, limit: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                if let Some(t) = self.thread.take() {
                    t.join().expect("the loop thread");
                }
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Default)]
struct Setup {
    limits: Limits,
    tls: Option<TlsSetup>,
    handoff_to: Option<UnixStream>,
}

fn serve(limits: Limits) -> Running {
    serve_with(Setup {
        limits,
        ..Setup::default()
    })
}

fn serve_with(setup: Setup) -> Running {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    spawn_loop(Listener::Tcp(vec![l]), port, setup)
}

fn spawn_loop(listener: Listener, port: u16, setup: Setup) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let drain = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let (s2, d2, seen2) = (Arc::clone(&stop), Arc::clone(&drain), Arc::clone(&seen));
    let thread = std::thread::spawn(move || {
        let mut server = Server::<Lines>::new(2).unwrap();
        if let Some(tls) = setup.tls {
            server = server.with_tls(tls);
        }
        let mut service = Lines::new(&seen2);
        service.handoff_to = setup.handoff_to;
        server
            .run(
                listener,
                &mut service,
                &setup.limits,
                &mut LocalCounter::default(),
                &s2,
                &d2,
            )
            .unwrap();
    });
    Running {
        port,
        stop,
        drain,
        seen,
        thread: Some(thread),
    }
}

/// A line client over any stream.
struct Client<S: Read + Write> {
    r: BufReader<S>,
}

impl Client<TcpStream> {
    fn new(port: u16) -> Client<TcpStream> {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            r: BufReader::new(s),
        }
    }
}

impl<S: Read + Write> Client<S> {
    fn line(&mut self) -> String {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(_) => l,
            // A TLS peer that closes without close_notify, or a reset.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => l,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => l,
            Err(e) => panic!("read: {e}"),
        }
    }

    fn send(&mut self, s: &str) {
        let w = self.r.get_mut();
        w.write_all(s.as_bytes()).unwrap();
        w.flush().unwrap();
    }
}

type TlsClient = Client<StreamOwned<ClientConnection, TcpStream>>;

/// A CA, and a certificate for localhost and 127.0.0.1 signed by it, in
/// PEM files under a fresh temporary directory.
struct Certs {
    dir: PathBuf,
    ca: CertificateDer<'static>,
}

impl Certs {
    fn new(name: &str) -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let dir = std::env::temp_dir().join(format!(
            "posthorn-server-test-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "posthorn test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        Certs {
            dir,
            ca: ca_cert.der().clone(),
        }
    }

    fn setup(&self, implicit: bool) -> TlsSetup {
        let config =
            common::tls::server_config(&self.dir.join("cert.pem"), &self.dir.join("key.pem"))
                .unwrap();
        TlsSetup { config, implicit }
    }

    fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        Arc::new(
            ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// TLS over an open TCP connection, verifying the server as localhost.
    fn wrap(&self, tcp: TcpStream) -> TlsClient {
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(self.client_config(), name).unwrap();
        Client {
            r: BufReader::new(StreamOwned::new(conn, tcp)),
        }
    }

    fn connect(&self, port: u16) -> TlsClient {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        self.wrap(s)
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn greets_echoes_runs_jobs_and_closes() {
    let srv = serve(Limits::default());
    let mut c = Client::new(srv.port);
    assert_eq!(c.line(), "hello\n");
    // Pipelined: the job's result comes before the lines after it.
    c.send("a\njob\nb\nquit\n");
    assert_eq!(c.line(), "a\n");
    assert_eq!(c.line(), "done 42\n");
    assert_eq!(c.line(), "b\n");
    assert_eq!(c.line(), "bye\n");
    assert_eq!(c.line(), "", "closed after the output");
}

#[test]
fn an_awaited_result_comes_from_another_thread_and_holds_only_its_session() {
    let srv = serve(Limits::default());
    let mut a = Client::new(srv.port);
    assert_eq!(a.line(), "hello\n");
    // Pipelined input after `await` waits for the result.
    a.send("await\nafter\n");
    wait_for("a ticket", || srv.seen.tickets.lock().unwrap().len() == 1);
    // Meanwhile another session is served, jobs and all.
    let mut b = Client::new(srv.port);
    assert_eq!(b.line(), "hello\n");
    b.send("job\nquit\n");
    assert_eq!(b.line(), "done 42\n");
    assert_eq!(b.line(), "bye\n");
    let t = srv.seen.tickets.lock().unwrap().pop().unwrap();
    std::thread::spawn(move || t.finish(7)).join().unwrap();
    assert_eq!(a.line(), "done 7\n");
    assert_eq!(a.line(), "after\n");
    // A ticket dropped unfinished delivers the fallback.
    a.send("await\n");
    wait_for("a second ticket", || {
        srv.seen.tickets.lock().unwrap().len() == 1
    });
    drop(srv.seen.tickets.lock().unwrap().pop());
    assert_eq!(a.line(), "done 0\n");
    a.send("quit\n");
    assert_eq!(a.line(), "bye\n");
}

#[test]
fn a_watched_descriptor_wakes_the_session_without_input() {
    let srv = serve(Limits::default());
    let mut c = Client::new(srv.port);
    assert_eq!(c.line(), "hello\n");
    c.send("watch\n");
    assert_eq!(c.line(), "watching\n");
    let poke = |bytes: &[u8]| {
        let ends = srv.seen.watch_ends.lock().unwrap();
        (&ends[0]).write_all(bytes).unwrap();
    };
    poke(b"xy");
    assert_eq!(
        c.line(),
        "notified 2\n",
        "woken with no input from the client"
    );
    // Input still flows while watching.
    c.send("a\n");
    assert_eq!(c.line(), "a\n");
    // An event while the session is held is delivered after it.
    c.send("pause\n");
    assert_eq!(c.line(), "paused\n");
    poke(b"z");
    assert_eq!(c.line(), "notified 1\n");
    c.send("quit\n");
    assert_eq!(c.line(), "bye\n");
}

#[test]
fn a_pause_holds_output_and_input() {
    let srv = serve(Limits::default());
    let mut c = Client::new(srv.port);
    assert_eq!(c.line(), "hello\n");
    let t = Instant::now();
    c.send("pause\nafter\n");
    assert_eq!(c.line(), "paused\n");
    assert!(t.elapsed() >= Duration::from_millis(300), "held back");
    assert_eq!(c.line(), "after\n");
}

#[test]
fn connection_limits_refuse_with_the_reason() {
    let srv = serve(Limits {
        per_client: 2,
        max_connections: 10,
        ..Limits::default()
    });
    let mut a = Client::new(srv.port);
    let mut b = Client::new(srv.port);
    assert_eq!(a.line(), "hello\n");
    assert_eq!(b.line(), "hello\n");
    let mut c = Client::new(srv.port);
    assert_eq!(c.line(), "refused TooManyFromClient\n");
    assert_eq!(c.line(), "");
    drop(a);
    // The closed connection is released (the server may see it a bit later).
    let t = Instant::now();
    loop {
        let mut d = Client::new(srv.port);
        if d.line() == "hello\n" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "never released");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(b);

    let srv = serve(Limits {
        max_connections: 1,
        ..Limits::default()
    });
    let mut a = Client::new(srv.port);
    assert_eq!(a.line(), "hello\n");
    let mut b = Client::new(srv.port);
    assert_eq!(b.line(), "refused TooManyConnections\n");
}

#[test]
fn idle_and_total_time_outs() {
    let srv = serve(Limits {
        idle: Duration::from_millis(300),
        ..Limits::default()
    });
    let mut c = Client::new(srv.port);
    assert_eq!(c.line(), "hello\n");
    assert_eq!(c.line(), "timeout\n");
    assert_eq!(c.line(), "");

    // Busy, but open too long.
    let srv = serve(Limits {
        idle: Duration::from_secs(30),
        total: Some(Duration::from_millis(800)),
        ..Limits::default()
    });
    let mut c = Client::new(srv.port);
    assert_eq!(c.line(), "hello\n");
    let t = Instant::now();
    loop {
        c.send("x\n");
        let l = c.line();
        if l == "timeout\n" {
            break;
        }
        assert_eq!(l, "x\n");
        assert!(t.elapsed() < Duration::from_secs(5), "no total time-out");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(t.elapsed() >= Duration::from_millis(700));
}

#[test]
fn stop_says_goodbye_and_returns() {
    let mut srv = serve(Limits::default());
    let mut c = Client::new(srv.port);
    assert_eq!(c.line(), "hello\n");
    srv.stop.store(true, Ordering::Relaxed);
    assert_eq!(c.line(), "stopping\n");
    assert_eq!(c.line(), "");
    let t = Instant::now();
    srv.thread.take().unwrap().join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    // No longer accepting.
    assert!(TcpStream::connect(("127.0.0.1", srv.port)).is_err());
}

/// Reload: a draining loop accepts nothing new, serves the connection it
/// has until the client ends it, then returns.
#[test]
fn drain_serves_open_connections_to_their_end() {
    let mut srv = serve(Limits::default());
    let mut c = Client::new(srv.port);
    assert_eq!(c.line(), "hello\n");
    srv.drain.store(true, Ordering::Relaxed);
    // The loop notices within a tick; the session is not told to go.
    std::thread::sleep(Duration::from_millis(1500));
    let refused = TcpStream::connect(("127.0.0.1", srv.port)).is_err();
    assert!(refused, "a draining loop accepts nothing");
    c.send("still here\n");
    assert_eq!(c.line(), "still here\n");
    assert!(
        !srv.join_within(Duration::from_millis(300)),
        "still serving"
    );
    c.send("quit\n");
    assert_eq!(c.line(), "bye\n");
    assert!(
        srv.join_within(Duration::from_secs(5)),
        "returned after the last session"
    );
}

#[test]
fn implicit_tls_greets_after_the_handshake() {
    let certs = Certs::new("implicit");
    let srv = serve_with(Setup {
        tls: Some(certs.setup(true)),
        ..Setup::default()
    });
    let mut c = certs.connect(srv.port);
    // Written at open, sent once the handshake is done.
    assert_eq!(c.line(), "hello\n");
    assert_eq!(c.line(), "secured TLSv1.3\n");
    c.send("a\njob\nquit\n");
    assert_eq!(c.line(), "a\n");
    assert_eq!(c.line(), "done 42\n");
    assert_eq!(c.line(), "bye\n");
    assert_eq!(c.line(), "", "closed (with close_notify)");
    wait_for("closed cleanly", || {
        srv.seen.clean.load(Ordering::SeqCst) == 1
    });
}

#[test]
fn a_failed_handshake_closes_the_connection_as_lost() {
    let certs = Certs::new("badhello");
    let srv = serve_with(Setup {
        tls: Some(certs.setup(true)),
        ..Setup::default()
    });
    let mut c = Client::new(srv.port);
    c.send("EHLO this is not a TLS hello\r\n");
    let mut rest = Vec::new();
    let _ = c.r.read_to_end(&mut rest);
    // At most a TLS alert record (content type 21), never the greeting.
    assert!(rest.is_empty() || rest[0] == 21, "{rest:?}");
    wait_for("closed as lost", || {
        srv.seen.lost.load(Ordering::SeqCst) == 1
    });
}

/// A client that connects to an implicit-TLS port and never says hello is
/// timed out like any idle client: the goodbye cannot reach it (it waits for
/// the handshake), so the connection is closed as lost an idle period later.
#[test]
fn a_silent_tls_client_is_timed_out() {
    let certs = Certs::new("silent");
    let srv = serve_with(Setup {
        limits: Limits {
            idle: Duration::from_millis(300),
            ..Limits::default()
        },
        tls: Some(certs.setup(true)),
        ..Setup::default()
    });
    let mut c = Client::new(srv.port);
    let t = Instant::now();
    let mut rest = Vec::new();
    let _ = c.r.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing in the clear: {rest:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "closed in time");
    wait_for("closed as lost", || {
        srv.seen.lost.load(Ordering::SeqCst) == 1
    });
}

/// RFC 3207 5: a command pipelined after STARTTLS in the clear is never
/// run, before or after the handshake.
#[test]
fn starttls_discards_pipelined_plaintext() {
    let certs = Certs::new("starttls");
    let srv = serve_with(Setup {
        tls: Some(certs.setup(false)),
        ..Setup::default()
    });
    let tcp = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut plain = Client {
        r: BufReader::new(tcp),
    };
    assert_eq!(plain.line(), "hello\n");
    plain.send("starttls\ninjected\n");
    assert_eq!(plain.line(), "go tls\n");
    assert!(plain.r.buffer().is_empty(), "nothing more in the clear");
    let mut c = certs.wrap(plain.r.into_inner());
    assert_eq!(c.line(), "secured TLSv1.3\n");
    c.send("after\n");
    assert_eq!(c.line(), "after\n", "the injected line never ran");
    c.send("starttls\n");
    assert_eq!(c.line(), "go tls\n");
    assert_eq!(c.line(), "", "a second STARTTLS closes");
}

/// STARTTLS on a server without TLS closes the connection (a service bug,
/// not the client's).
#[test]
fn starttls_without_tls_configuration_closes() {
    let srv = serve(Limits::default());
    let mut c = Client::new(srv.port);
    assert_eq!(c.line(), "hello\n");
    c.send("starttls\n");
    assert_eq!(c.line(), "go tls\n");
    assert_eq!(c.line(), "");
}

/// A 10 MB reply in pieces: it arrives whole and in order, while the
/// service never holds more than a bounded amount of unsent output; input
/// pipelined behind it waits.
fn streams(mut c: Client<impl Read + Write>, seen: &Seen, banner: &[&str]) {
    for b in banner {
        assert_eq!(c.line(), *b);
    }
    const N: usize = 10_000_000;
    c.send(&format!("big {N}\nafter\n"));
    // A slow reader at first: the server must wait, not buffer.
    std::thread::sleep(Duration::from_millis(300));
    let mut got = vec![0u8; N];
    c.r.read_exact(&mut got).unwrap();
    assert!(
        got.iter().enumerate().all(|(i, &b)| b == big_byte(i)),
        "the reply arrived in order"
    );
    assert_eq!(c.line(), "\n");
    assert_eq!(c.line(), "end\n");
    assert_eq!(c.line(), "after\n", "pipelined input ran after it");
    let max = seen.max_out.load(Ordering::Relaxed);
    assert!(max <= 256 * 1024, "unsent output held: {max} bytes");
}

#[test]
fn produce_streams_a_large_reply_with_bounded_buffers() {
    let srv = serve(Limits::default());
    streams(Client::new(srv.port), &srv.seen, &["hello\n"]);
    let certs = Certs::new("produce");
    let srv = serve_with(Setup {
        tls: Some(certs.setup(true)),
        ..Setup::default()
    });
    streams(
        certs.connect(srv.port),
        &srv.seen,
        &["hello\n", "secured TLSv1.3\n"],
    );
}

/// Two loops joined by a socketpair: the first hands connections off, the
/// second serves them.
fn pair(tls: Option<TlsSetup>) -> (Running, Running) {
    let (a, b) = UnixStream::pair().unwrap();
    let second = spawn_loop(Listener::Handoff(b), 0, Setup::default());
    let first = serve_with(Setup {
        tls,
        handoff_to: Some(a),
        ..Setup::default()
    });
    (first, second)
}

fn handed_off(mut c: Client<impl Read + Write>, first: &Running, second: &Running) {
    c.send("one\nhandoff\ntwo\nthree\n");
    assert_eq!(c.line(), "one\n");
    // The second process's session: the pipelined lines came in the frame.
    assert_eq!(c.line(), "welcome\n");
    assert_eq!(c.line(), "two\n");
    assert_eq!(c.line(), "three\n");
    c.send("four\njob\n");
    assert_eq!(c.line(), "four\n");
    assert_eq!(c.line(), "done 42\n");
    c.send("quit\n");
    assert_eq!(c.line(), "bye\n");
    assert_eq!(c.line(), "");
    // The first session ended without loss when it handed over.
    assert_eq!(first.seen.clean.load(Ordering::SeqCst), 1);
    assert_eq!(first.seen.lost.load(Ordering::SeqCst), 0);
    wait_for("second closed", || {
        second.seen.clean.load(Ordering::SeqCst) == 1
    });
}

#[test]
fn handoff_of_a_plain_connection() {
    let (first, second) = pair(None);
    let mut c = Client::new(first.port);
    assert_eq!(c.line(), "hello\n");
    handed_off(c, &first, &second);
}

#[test]
fn handoff_of_a_tls_connection_is_relayed() {
    let certs = Certs::new("handoff");
    let (first, second) = pair(Some(certs.setup(true)));
    let mut c = certs.connect(first.port);
    assert_eq!(c.line(), "hello\n");
    assert_eq!(c.line(), "secured TLSv1.3\n");
    handed_off(c, &first, &second);
}

/// The hand-off socket's end of file means the sender has gone: the second
/// loop drains, serving what it has, then returns.
#[test]
fn handoff_listener_end_of_file_drains() {
    let (first, mut second) = pair(None);
    let mut c = Client::new(first.port);
    assert_eq!(c.line(), "hello\n");
    c.send("handoff\n");
    assert_eq!(c.line(), "welcome\n");
    drop(first); // its service and so the sending end close
    std::thread::sleep(Duration::from_millis(300));
    c.send("still served\n");
    assert_eq!(c.line(), "still served\n");
    assert!(!second.join_within(Duration::from_millis(300)));
    c.send("quit\n");
    assert_eq!(c.line(), "bye\n");
    assert!(
        second.join_within(Duration::from_secs(5)),
        "drained and returned"
    );
}

/// Bad hand-off messages are dropped with a warning; the loop carries on.
#[test]
fn bad_handoff_messages_do_not_stop_the_receiver() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut second = spawn_loop(Listener::Handoff(b), 0, Setup::default());
    // A frame without a descriptor.
    let mut frame = Vec::new();
    common::ipc::write_frame(&mut frame, &b"x".to_vec()).unwrap();
    (&a).write_all(&frame).unwrap();
    // A descriptor that is no socket.
    let f = std::fs::File::open("/dev/null").unwrap();
    common::privilege::send_fd(&a, &frame, std::os::fd::AsFd::as_fd(&f)).unwrap();
    // Then a good one.
    let (mine, theirs) = UnixStream::pair().unwrap();
    let mut frame = Vec::new();
    common::ipc::write_frame(&mut frame, &b"ping\n".to_vec()).unwrap();
    common::privilege::send_fd(&a, &frame, std::os::fd::AsFd::as_fd(&theirs)).unwrap();
    drop(theirs);
    mine.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c = Client {
        r: BufReader::new(mine),
    };
    assert_eq!(c.line(), "welcome\n");
    assert_eq!(c.line(), "ping\n");
    // A frame claiming more than MAX_FRAME ends the hand-off socket.
    (&a).write_all(&u32::MAX.to_le_bytes()).unwrap();
    c.send("quit\n");
    assert_eq!(c.line(), "bye\n");
    assert!(second.join_within(Duration::from_secs(5)));
    drop(a);
}

/// A peer on a Unix socket may send descriptors: the service gets each
/// before the bytes it came with, and nothing is lost of the bytes.
#[test]
fn descriptors_on_unix_connections_reach_the_service() {
    let path =
        std::env::temp_dir().join(format!("posthorn-server-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let _srv = spawn_loop(Listener::Unix(l), 0, Setup::default());
    let s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut c = Client {
        r: BufReader::new(s.try_clone().unwrap()),
    };
    assert_eq!(c.line(), "hello\n");
    c.send("fds\n");
    assert_eq!(c.line(), "fds 0\n");
    let f = std::fs::File::open("/dev/null").unwrap();
    common::privilege::send_fd(&s, b"fds\n", std::os::fd::AsFd::as_fd(&f)).unwrap();
    assert_eq!(c.line(), "fds 1\n");
    c.send("quit\n");
    assert_eq!(c.line(), "bye\n");
    let _ = std::fs::remove_file(&path);
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Loading names the file and says what is wrong with it.
#[test]
fn certificate_errors_name_the_file() {
    use common::tls::{server_config, TlsError};
    let certs = Certs::new("errors");
    let other = Certs::new("errors-other");
    let d = &certs.dir;
    let cert = d.join("cert.pem");
    let key = d.join("key.pem");
    assert!(server_config(&cert, &key).is_ok());
    let missing = d.join("missing.pem");
    match server_config(&missing, &key) {
        Err(e @ TlsError::Missing(_)) => assert!(e.to_string().contains("missing.pem")),
        r => panic!("{:?}", r.map(drop)),
    }
    let junk = write(d, "junk.pem", "not a certificate\n");
    assert!(matches!(
        server_config(&junk, &key),
        Err(TlsError::NoCertificate(p)) if p == junk
    ));
    assert!(matches!(
        server_config(&cert, &junk),
        Err(TlsError::NoKey(p)) if p == junk
    ));
    match server_config(&cert, &other.dir.join("key.pem")) {
        Err(e @ TlsError::KeyMismatch { .. }) => {
            assert!(e.to_string().contains("does not match"), "{e}")
        }
        r => panic!("{:?}", r.map(drop)),
    }
    // Certificate and key in one file, as smtpd_tls_key_file's default allows.
    let both = std::fs::read_to_string(&cert).unwrap() + &std::fs::read_to_string(&key).unwrap();
    let both = write(d, "both.pem", &both);
    assert!(server_config(&both, &both).is_ok());
}
