//! The event loop: sockets, time-outs, and committing queue files.
//!
//! Owns every socket of the process (mio, many connections per process), the
//! per-client and per-process connection limits, read time-outs, and the pool
//! of commit threads that make each queue file durable (fsync, rename, fsync
//! directory) without stalling other sessions. The protocol itself is
//! session.rs; this module only moves bytes between it and the network.
//!
//! Durability: a session gets its `250 Ok: queued as` only after the commit
//! thread reports success; a failure gets `452 4.3.1`. qmgr is woken over
//! `private/qmgr` after each commit; a lost wake-up only delays delivery.
//!
//! Back-pressure: a session that is committing, or whose replies the client
//! is not reading (more than OUT_HIGH bytes queued), is not read from.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use common::spool::{Envelope, QueueWriter, Reserved, Spool};
use common::{info, warning};
use proto::smtp::Reply;

use crate::session::{Client, Policy, Session, Sink, SmtpConfig, Step};

const WAKER: Token = Token(usize::MAX - 1);
const LISTENER_BASE: usize = usize::MAX - 64;
/// Stop reading from a client with this much unsent output.
const OUT_HIGH: usize = 256 * 1024;
/// Threads that fsync queue files.
const COMMIT_THREADS: usize = 4;
/// After SIGTERM, sessions in the middle of a message get this long.
const STOP_GRACE: Duration = Duration::from_secs(8);

/// Limits and time-outs for the loop.
pub struct Limits {
    pub timeout: Duration,
    pub per_client: u32,
    pub max_connections: usize,
}

/// Queue files made ahead of time by the commit threads.
type Reservations = Arc<Mutex<Vec<Reserved>>>;
/// How many empty queue files to keep ready.
const RESERVE: usize = 8;
/// Older reservations are not used (qmgr cleans temporary files after hours).
const RESERVE_MAX_AGE: Duration = Duration::from_secs(600);

/// Queue files: a sink that writes the message into incoming/.
struct SpoolSink {
    spool: Spool,
    reserved: Reservations,
    writer: Option<QueueWriter>,
}

impl Sink for SpoolSink {
    fn begin(&mut self, env: &Envelope) -> io::Result<String> {
        let ready = self
            .reserved
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .filter(|r| r.age() < RESERVE_MAX_AGE);
        let w = match ready {
            Some(r) => self.spool.create_in(r, env)?,
            None => self.spool.create(env)?,
        };
        let id = w.id().to_string();
        self.writer = Some(w);
        Ok(id)
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.write(data),
            None => Err(io::Error::other("no message in progress")),
        }
    }

    fn abort(&mut self) {
        self.writer = None; // dropping the writer removes the file
    }
}

struct Conn {
    stream: TcpStream,
    session: Session,
    sink: SpoolSink,
    ip: IpAddr,
    last_active: Instant,
    sent: usize,
    committing: bool,
    closing: bool,
    /// The client closed its side.
    eof: bool,
}

struct CommitJob {
    token: Token,
    writer: QueueWriter,
}

struct CommitDone {
    token: Token,
    result: Result<String, String>,
}

fn start_committers(
    jobs: Receiver<CommitJob>,
    done: Sender<CommitDone>,
    waker: Arc<Waker>,
    spool: Spool,
    reserved: Reservations,
) {
    let jobs = Arc::new(Mutex::new(jobs));
    for i in 0..COMMIT_THREADS {
        let (jobs, done, waker) = (Arc::clone(&jobs), done.clone(), Arc::clone(&waker));
        let (spool, reserved) = (spool.clone(), Arc::clone(&reserved));
        let spawned = std::thread::Builder::new()
            .name(format!("commit-{i}"))
            .spawn(move || loop {
                let job = {
                    let Ok(rx) = jobs.lock() else { return };
                    match rx.recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    }
                };
                let result = job
                    .writer
                    .commit()
                    .map(|id| id.to_string())
                    .map_err(|e| e.to_string());
                if done
                    .send(CommitDone {
                        token: job.token,
                        result,
                    })
                    .is_err()
                {
                    return;
                }
                let _ = waker.wake();
                top_up(&spool, &reserved);
            });
        if let Err(e) = spawned {
            common::fatal!("cannot start commit thread: {e}");
        }
    }
}

/// Make empty queue files until RESERVE are ready.
fn top_up(spool: &Spool, reserved: &Reservations) {
    loop {
        if reserved.lock().map(|v| v.len() >= RESERVE).unwrap_or(true) {
            return;
        }
        match spool.reserve() {
            Ok(r) => match reserved.lock() {
                Ok(mut v) => v.push(r),
                Err(_) => return,
            },
            Err(_) => return, // begin() will try again and report
        }
    }
}

/// Wakes qmgr after commits; reconnects as needed, never blocks.
struct QmgrNotifier {
    path: PathBuf,
    conn: Option<UnixStream>,
}

impl QmgrNotifier {
    fn notify(&mut self) {
        for _ in 0..2 {
            if self.conn.is_none() {
                match UnixStream::connect(&self.path) {
                    Ok(s) => {
                        let _ = s.set_nonblocking(true);
                        self.conn = Some(s);
                    }
                    Err(_) => return, // qmgr restarting: its periodic scan finds the mail
                }
            }
            if let Some(c) = self.conn.as_mut() {
                match c.write(b"W") {
                    Ok(_) => return,
                    // A full socket means qmgr has wake-ups unread already.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => self.conn = None,
                }
            }
        }
    }
}

/// Serve until the stop flag is set and sessions are done.
pub fn run(
    listeners: Vec<std::net::TcpListener>,
    cfg: Arc<SmtpConfig>,
    policy: &mut dyn Policy,
    spool: Spool,
    limits: Limits,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut ls = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        l.set_nonblocking(true)?;
        let mut l = TcpListener::from_std(l);
        poll.registry()
            .register(&mut l, Token(LISTENER_BASE + i), Interest::READABLE)?;
        ls.push(l);
    }
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (job_tx, job_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let reserved: Reservations = Arc::new(Mutex::new(Vec::new()));
    top_up(&spool, &reserved);
    start_committers(
        job_rx,
        done_tx,
        Arc::clone(&waker),
        spool.clone(),
        Arc::clone(&reserved),
    );
    let mut notifier = QmgrNotifier {
        path: spool.private("qmgr"),
        conn: None,
    };

    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut per_ip: HashMap<IpAddr, u32> = HashMap::new();
    let mut next = 0usize;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut stop_at: Option<Instant> = None;

    loop {
        if stop.load(Ordering::Relaxed) && stop_at.is_none() {
            stop_at = Some(Instant::now());
            for mut l in ls.drain(..) {
                let _ = poll.registry().deregister(&mut l);
            }
            // Idle sessions are told now; those inside a message get a grace period.
            let idle: Vec<Token> = conns
                .iter()
                .filter(|(_, c)| !c.committing && c.sink.writer.is_none())
                .map(|(t, _)| *t)
                .collect();
            for t in idle {
                if let Some(c) = conns.get_mut(&t) {
                    Reply::new(
                        421,
                        Some("4.3.2"),
                        format!("{} Service shutting down", cfg.myhostname),
                    )
                    .write_to(&mut c.session.out);
                    c.closing = true;
                }
                flush_or_close(&mut conns, t, &mut per_ip, &poll);
            }
        }
        if let Some(t) = stop_at {
            if conns.is_empty() || t.elapsed() > STOP_GRACE {
                for (_, mut c) in conns.drain() {
                    c.session.disconnected("");
                    let _ = poll.registry().deregister(&mut c.stream);
                }
                return Ok(());
            }
        }
        match poll.poll(&mut events, Some(Duration::from_secs(1))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let token = ev.token();
            if token == WAKER {
                continue;
            }
            if token.0 >= LISTENER_BASE {
                let Some(l) = ls.get(token.0 - LISTENER_BASE) else {
                    continue;
                };
                loop {
                    let (mut stream, peer) = match l.accept() {
                        Ok(x) => x,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            warning!("accept: {e}");
                            break;
                        }
                    };
                    let ip = peer.ip().to_canonical();
                    let t = Token(next);
                    next = (next + 1) % LISTENER_BASE;
                    let client = Client {
                        addr: Some(ip),
                        name: "unknown".into(),
                        trusted: policy.trusted(Some(ip)),
                    };
                    let mut session = Session::new(Arc::clone(&cfg), client);
                    let count = per_ip.entry(ip).or_insert(0);
                    *count += 1;
                    let mut closing = false;
                    if conns.len() >= limits.max_connections {
                        closing = session.refuse(Reply::new(
                            421,
                            Some("4.3.2"),
                            format!("{} Error: too many connections", cfg.myhostname),
                        )) == Step::Close;
                    } else if limits.per_client > 0 && *count > limits.per_client {
                        closing = session.refuse(Reply::new(
                            421,
                            Some("4.7.0"),
                            format!("{} Error: too many connections from {ip}", cfg.myhostname),
                        )) == Step::Close;
                    } else {
                        session.greet();
                    }
                    if let Err(e) = poll.registry().register(
                        &mut stream,
                        t,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        warning!("register: {e}");
                        release(&mut per_ip, ip);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    conns.insert(
                        t,
                        Conn {
                            stream,
                            session,
                            sink: SpoolSink {
                                spool: spool.clone(),
                                reserved: Arc::clone(&reserved),
                                writer: None,
                            },
                            ip,
                            last_active: Instant::now(),
                            sent: 0,
                            committing: false,
                            closing,
                            eof: false,
                        },
                    );
                    flush_or_close(&mut conns, t, &mut per_ip, &poll);
                }
                continue;
            }
            if ev.is_readable() || ev.is_read_closed() {
                drive(&mut conns, token, policy, &mut buf, &job_tx);
            }
            flush_or_close(&mut conns, token, &mut per_ip, &poll);
        }
        // Commits that finished: answer, then carry on with pipelined input.
        let mut committed = false;
        while let Ok(d) = done_rx.try_recv() {
            committed |= d.result.is_ok();
            if let Some(c) = conns.get_mut(&d.token) {
                c.committing = false;
                let step = c.session.commit_done(d.result, policy, &mut c.sink);
                let step = no_pause(c, step, policy);
                handle_step(c, d.token, step, &job_tx);
                drive(&mut conns, d.token, policy, &mut buf, &job_tx);
                flush_or_close(&mut conns, d.token, &mut per_ip, &poll);
            } else if let Ok(id) = &d.result {
                info!("{id}: client disconnected before the reply; message queued");
            }
        }
        if committed {
            notifier.notify();
        }
        // Time-outs.
        let now = Instant::now();
        let expired: Vec<Token> = conns
            .iter()
            .filter(|(_, c)| {
                !c.committing && !c.closing && now.duration_since(c.last_active) > limits.timeout
            })
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            if let Some(c) = conns.get_mut(&t) {
                c.session.timed_out(&mut c.sink);
                c.closing = true;
            }
            flush_or_close(&mut conns, t, &mut per_ip, &poll);
        }
    }
}

/// This loop has no timers for Step::Pause (the shared server skeleton that
/// replaces it does): resume at once, without the error delay.
fn no_pause(c: &mut Conn, mut step: Step, policy: &mut dyn Policy) -> Step {
    while let Step::Pause(_) = step {
        step = c.session.resume(policy, &mut c.sink);
    }
    step
}

fn handle_step(c: &mut Conn, token: Token, step: Step, jobs: &Sender<CommitJob>) {
    match step {
        // Settled by no_pause before we get here.
        Step::Continue | Step::Pause(_) => {}
        Step::Close => c.closing = true,
        Step::Commit => {
            if c.committing {
                return;
            }
            match c.sink.writer.take() {
                Some(writer) => {
                    c.committing = true;
                    if jobs.send(CommitJob { token, writer }).is_err() {
                        common::fatal!("commit threads are gone");
                    }
                }
                None => {
                    // Cannot happen: Commit follows a begun message. Fail safe.
                    warning!("commit requested without a message in progress");
                    c.closing = true;
                }
            }
        }
    }
}

/// Read and process input while the session can take it.
fn drive(
    conns: &mut HashMap<Token, Conn>,
    token: Token,
    policy: &mut dyn Policy,
    buf: &mut [u8],
    jobs: &Sender<CommitJob>,
) {
    let Some(c) = conns.get_mut(&token) else {
        return;
    };
    loop {
        if c.committing
            || c.closing
            || c.eof
            || c.session.busy()
            || c.session.out.len() - c.sent > OUT_HIGH
        {
            return;
        }
        match c.stream.read(buf) {
            Ok(0) => {
                c.eof = true;
                return;
            }
            Ok(n) => {
                c.last_active = Instant::now();
                let step = c.session.input(&buf[..n], policy, &mut c.sink);
                let step = no_pause(c, step, policy);
                handle_step(c, token, step, jobs);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                c.eof = true;
                return;
            }
        }
    }
}

/// Send pending output; close the connection when the session is over.
fn flush_or_close(
    conns: &mut HashMap<Token, Conn>,
    token: Token,
    per_ip: &mut HashMap<IpAddr, u32>,
    poll: &Poll,
) {
    let Some(c) = conns.get_mut(&token) else {
        return;
    };
    let mut broken = false;
    while c.sent < c.session.out.len() {
        match c.stream.write(&c.session.out[c.sent..]) {
            Ok(0) => {
                broken = true;
                break;
            }
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    if c.sent == c.session.out.len() {
        c.session.out.clear();
        c.sent = 0;
    }
    let done_writing = c.session.out.is_empty();
    let close = broken || (c.closing && done_writing) || (c.eof && !c.committing);
    if !close {
        return;
    }
    let Some(mut c) = conns.remove(&token) else {
        return;
    };
    let how = if c.closing { "" } else { "lost connection" };
    c.sink.abort();
    c.session.disconnected(how);
    let _ = poll.registry().deregister(&mut c.stream);
    release(per_ip, c.ip);
}

fn release(per_ip: &mut HashMap<IpAddr, u32>, ip: IpAddr) {
    if let Some(n) = per_ip.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            per_ip.remove(&ip);
        }
    }
}
