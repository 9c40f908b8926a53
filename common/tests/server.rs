//! The server skeleton over real sockets, with a small line service: greeting,
//! refusals at the connection limits, idle and total time-outs, pauses that
//! hold input and output, pool jobs, and a graceful stop.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::daemon::Listener;
use common::server::{Limits, LocalCounter, Next, Peer, Refusal, Server, Service};

/// Lines in, lines out: `pause`, `job`, `quit`, anything else is echoed.
#[derive(Default)]
struct Lines;

#[derive(Default)]
struct Conn {
    line: Vec<u8>,
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
                b"quit" => {
                    out.extend_from_slice(b"bye\n");
                    return Next::Close;
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

    fn open(&mut self, _peer: Peer, out: &mut Vec<u8>) -> (Conn, Next<u32>) {
        out.extend_from_slice(b"hello\n");
        (Conn::default(), Next::Continue)
    }

    fn refuse(&mut self, _peer: Peer, why: Refusal, out: &mut Vec<u8>) -> Conn {
        out.extend_from_slice(format!("refused {why:?}\n").as_bytes());
        Conn::default()
    }

    fn input(&mut self, c: &mut Conn, data: &[u8], out: &mut Vec<u8>) -> Next<u32> {
        c.line.extend_from_slice(data);
        self.run_lines(c, out)
    }

    fn done(&mut self, c: &mut Conn, r: u32, out: &mut Vec<u8>) -> Next<u32> {
        out.extend_from_slice(format!("done {r}\n").as_bytes());
        self.run_lines(c, out)
    }

    fn resume(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> Next<u32> {
        self.run_lines(c, out)
    }

    fn timed_out(&mut self, _c: &mut Conn, out: &mut Vec<u8>) {
        out.extend_from_slice(b"timeout\n");
    }

    fn stopping(&mut self, _c: &mut Conn, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(b"stopping\n");
        true
    }

    fn closed(&mut self, _c: Conn, _lost: bool) {}

    fn orphan(&mut self, _r: u32) {}
}

struct Running {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(limits: Limits) -> Running {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let server = Server::<Lines>::new(2).unwrap();
        server
            .run(
                Listener::Tcp(vec![l]),
                &mut Lines,
                &limits,
                &mut LocalCounter::default(),
                &s2,
            )
            .unwrap();
    });
    Running {
        port,
        stop,
        thread: Some(thread),
    }
}

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn new(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l
    }

    fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).unwrap();
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
