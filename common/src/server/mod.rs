//! The server skeleton every daemon with connections runs on (smtpd now;
//! imapd, pop3d, submission and auth later): Postfix's multi_server and
//! Dovecot's master_service in one mio loop.
//!
//! Owns: accepting on the sockets master handed down (TCP or Unix; a Unix
//! peer's uid from SO_PEERCRED goes to the service in `Peer`), one
//! `Service` call per event (bytes in, bytes out, and a `Next` saying what the
//! loop must do), per-client and per-process connection limits (counted
//! across processes through anvil when it runs), idle and total time-outs,
//! back-pressure on clients that do not read their replies, pauses (error
//! sleep) that hold both input and output, blocking work on the shared
//! `Pool`, graceful stop on SIGTERM or when master goes away, and status
//! reports to master (available, busy, served N).
//!
//! Does not own the protocol: a `Service` is sans-I/O. It never sees a
//! socket, only bytes, so it is tested with transcripts.
//!
//! TLS: a connection's byte stream is a `Transport`; STARTTLS/STLS and
//! implicit TLS will add a rustls variant there, and a `Next::StartTls` step,
//! without changing any `Service`.
//!
//! Security: every buffer is bounded: reads go through one 64 KiB buffer,
//! a session whose unsent output passes `Limits::out_high` is not read from,
//! and a service bounds its own input (line lengths, message sizes).
//!
//! Diagnostics: `accept:`/`register:` warnings; the daemon logs the rest
//! through its `Service` (connect, disconnect, time-outs).

pub mod anvil;
pub mod pool;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};

use crate::daemon::Listener;
use crate::status::{self, Status};
use crate::warning;

pub use pool::{Job, Pool, PoolGone, Spawner};

const WAKER: Token = Token(usize::MAX - 1);
const LISTENER_BASE: usize = usize::MAX - 64;
/// How often the loop looks at time-outs and the stop flag when idle.
const TICK: Duration = Duration::from_secs(1);
/// After a stop, sessions in the middle of something get this long.
const STOP_GRACE: Duration = Duration::from_secs(8);

/// What the loop must do after a `Service` call.
pub enum Next<R> {
    /// Send the output, keep reading.
    Continue,
    /// Send the output, then close.
    Close,
    /// Hold the output and read nothing for this long, then call `resume`
    /// (SMTP's error sleep).
    Pause(Duration),
    /// Run this on the pool and read nothing until `done` has its result.
    Run(Job<R>),
}

/// Who connected.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address (None on a Unix socket).
    pub addr: Option<IpAddr>,
    /// The local port it connected to (0 on a Unix socket).
    pub port: u16,
    /// The peer process's uid on a Unix socket (SO_PEERCRED), None on TCP
    /// or when the kernel would not say.
    pub uid: Option<u32>,
}

/// Why a connection is refused at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This process, or the service across processes, is at its limit.
    TooManyConnections,
    /// This client address has too many connections.
    TooManyFromClient,
}

/// A protocol served by the skeleton. One value per process; `Conn` is the
/// state of one connection. `out` is where a call leaves bytes to send.
pub trait Service {
    type Conn;
    type Done: Send + 'static;

    /// A new connection: set up its state and greet.
    fn open(&mut self, peer: Peer, out: &mut Vec<u8>) -> (Self::Conn, Next<Self::Done>);
    /// A connection over a limit: say so; it is closed after the output.
    fn refuse(&mut self, peer: Peer, why: Refusal, out: &mut Vec<u8>) -> Self::Conn;
    /// Bytes from the client.
    fn input(&mut self, c: &mut Self::Conn, data: &[u8], out: &mut Vec<u8>) -> Next<Self::Done>;
    /// A `Next::Run` job of this connection finished.
    fn done(&mut self, c: &mut Self::Conn, r: Self::Done, out: &mut Vec<u8>) -> Next<Self::Done>;
    /// A `Next::Pause` is over.
    fn resume(&mut self, c: &mut Self::Conn, out: &mut Vec<u8>) -> Next<Self::Done>;
    /// The client was idle too long, or the session lasted too long; the
    /// connection is closed after the output.
    fn timed_out(&mut self, c: &mut Self::Conn, out: &mut Vec<u8>);
    /// The daemon is stopping. Return true when the session may be closed now
    /// (after the output); false when it is in the middle of something and
    /// gets a grace period.
    fn stopping(&mut self, c: &mut Self::Conn, out: &mut Vec<u8>) -> bool;
    /// The connection is gone; `lost` when the client went away unasked.
    fn closed(&mut self, c: Self::Conn, lost: bool);
    /// A job finished after its connection had closed.
    fn orphan(&mut self, r: Self::Done);
    /// Called once per loop round, after all events (batch work, and work
    /// of the service's own, such as qmgr's scans). `stopping`: the daemon
    /// is stopping; start nothing new.
    fn tick(&mut self, _stopping: bool) {}
    /// Work of the service's own is in flight: a stopping loop waits for it
    /// (up to the grace period).
    fn busy(&self) -> bool {
        false
    }
}

/// Limits of one daemon's connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Close a connection idle this long.
    pub idle: Duration,
    /// Close a connection open this long, busy or not (None: no limit).
    pub total: Option<Duration>,
    /// Connections one client address may have (0: no limit).
    pub per_client: u32,
    /// Connections the service may have (per process without anvil).
    pub max_connections: usize,
    /// Stop reading from a client with this much unsent output.
    pub out_high: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle: Duration::from_secs(300),
            total: None,
            per_client: 0,
            max_connections: 100,
            out_high: 256 * 1024,
        }
    }
}

/// A connection's byte stream. TLS adds a variant here.
enum Transport {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Transport {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Transport::Tcp(s) => s,
            Transport::Unix(s) => s,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            Transport::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(buf),
            Transport::Unix(s) => s.write(buf),
        }
    }
}

enum Acceptor {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

impl Acceptor {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Acceptor::Tcp(l) => l,
            Acceptor::Unix(l) => l,
        }
    }

    fn accept(&self) -> io::Result<(Transport, Peer)> {
        match self {
            Acceptor::Tcp(l) => {
                let (s, a) = l.accept()?;
                let _ = s.set_nodelay(true);
                let port = s.local_addr().map(|a| a.port()).unwrap_or(0);
                Ok((
                    Transport::Tcp(s),
                    Peer {
                        addr: Some(a.ip().to_canonical()),
                        port,
                        uid: None,
                    },
                ))
            }
            Acceptor::Unix(l) => {
                let (s, _) = l.accept()?;
                let uid =
                    nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
                        .ok()
                        .map(|c| c.uid());
                Ok((
                    Transport::Unix(s),
                    Peer {
                        addr: None,
                        port: 0,
                        uid,
                    },
                ))
            }
        }
    }
}

struct Conn<C> {
    transport: Transport,
    state: Option<C>,
    peer: Peer,
    out: Vec<u8>,
    sent: usize,
    opened: Instant,
    last_active: Instant,
    /// A pool job of this connection is running.
    waiting: bool,
    paused_until: Option<Instant>,
    closing: bool,
    /// The client closed its side (or the socket failed).
    eof: bool,
    /// The last read was short: the socket had nothing more then. Reading
    /// again before the next readable event would only get EAGAIN (a stream
    /// socket signals every new arrival, even edge-triggered).
    drained: bool,
    /// Counted in the connection tables (released on close).
    counted: bool,
}

/// The daemon's connection tables: local, or shared through anvil.
pub trait Counter {
    /// Count a new connection; return (this client's, the service's)
    /// connections including it.
    fn connect(&mut self, ip: Option<IpAddr>) -> (u32, u32);
    fn disconnect(&mut self, ip: Option<IpAddr>);
}

/// Counting within this process only.
#[derive(Debug, Default)]
pub struct LocalCounter {
    per_ip: HashMap<IpAddr, u32>,
    total: u32,
}

impl Counter for LocalCounter {
    fn connect(&mut self, ip: Option<IpAddr>) -> (u32, u32) {
        self.total += 1;
        let n = match ip {
            Some(ip) => {
                let n = self.per_ip.entry(ip).or_insert(0);
                *n += 1;
                *n
            }
            None => 0,
        };
        (n, self.total)
    }

    fn disconnect(&mut self, ip: Option<IpAddr>) {
        self.total = self.total.saturating_sub(1);
        if let Some(ip) = ip {
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// Why the loop stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("event loop: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    PoolGone(#[from] PoolGone),
    #[error("a worker pool thread died")]
    PoolBroken,
}

/// The running loop's parts, handed to `run`.
pub struct Server<S: Service> {
    poll: Poll,
    pool: Pool<Token, S::Done>,
}

impl<S: Service> Server<S> {
    /// Set up the poll and a pool of `threads` threads for blocking work.
    pub fn new(threads: usize) -> Result<Self, ServerError> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        // The pool's threads hold the waker (and so its registration).
        let pool = Pool::new("pool", threads, waker)?;
        Ok(Server { poll, pool })
    }

    /// The pool, for background work the service submits itself.
    pub fn pool(&self) -> &Pool<Token, S::Done> {
        &self.pool
    }

    /// Serve `listener` until `stop` is set and sessions are done.
    pub fn run(
        self,
        listener: Listener,
        service: &mut S,
        limits: &Limits,
        counter: &mut dyn Counter,
        stop: &AtomicBool,
    ) -> Result<(), ServerError> {
        let Server { poll, pool, .. } = self;
        let mut acceptors = Vec::new();
        match listener {
            Listener::Tcp(ls) => {
                for l in ls {
                    l.set_nonblocking(true)?;
                    acceptors.push(Acceptor::Tcp(mio::net::TcpListener::from_std(l)));
                }
            }
            Listener::Unix(l) => {
                l.set_nonblocking(true)?;
                acceptors.push(Acceptor::Unix(mio::net::UnixListener::from_std(l)));
            }
        }
        for (i, a) in acceptors.iter_mut().enumerate() {
            poll.registry()
                .register(a.source(), Token(LISTENER_BASE + i), Interest::READABLE)?;
        }
        let mut lp = Loop {
            poll,
            pool,
            conns: HashMap::new(),
            next: 0,
            buf: vec![0u8; 64 * 1024],
            limits: limits.clone(),
            served: 0,
            reported: 0,
            last_report: Instant::now(),
            busy: false,
        };
        status::report(Status::Available);
        let mut events = Events::with_capacity(1024);
        let mut stop_at: Option<Instant> = None;
        loop {
            if stop.load(Ordering::Relaxed) && stop_at.is_none() {
                stop_at = Some(Instant::now());
                for mut a in acceptors.drain(..) {
                    let _ = lp.poll.registry().deregister(a.source());
                }
                let tokens: Vec<Token> = lp.conns.keys().copied().collect();
                for t in tokens {
                    if let Some(c) = lp.conns.get_mut(&t) {
                        if c.closing {
                            continue;
                        }
                        if let Some(st) = c.state.as_mut() {
                            if !c.waiting && service.stopping(st, &mut c.out) {
                                c.closing = true;
                            }
                        }
                    }
                    lp.flush_or_close(t, service, counter);
                }
            }
            if let Some(t) = stop_at {
                if (lp.conns.is_empty() && !service.busy()) || t.elapsed() > STOP_GRACE {
                    let tokens: Vec<Token> = lp.conns.keys().copied().collect();
                    for t in tokens {
                        lp.close(t, service, counter, false);
                    }
                    return Ok(());
                }
            }
            let wait = lp.next_wake().min(TICK);
            match lp.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            for ev in events.iter() {
                let token = ev.token();
                if token == WAKER {
                    continue;
                }
                if token.0 >= LISTENER_BASE {
                    if let Some(a) = acceptors.get(token.0 - LISTENER_BASE) {
                        lp.accept_all(a, service, counter);
                    }
                    continue;
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    if let Some(c) = lp.conns.get_mut(&token) {
                        c.drained = false;
                    }
                    lp.drive(token, service);
                }
                lp.flush_or_close(token, service, counter);
                // Output drained below the high-water mark: read what waits.
                lp.drive(token, service);
                lp.flush_or_close(token, service, counter);
            }
            while let Some((token, result)) = lp.pool.finished() {
                match lp.conns.get_mut(&token) {
                    Some(c) if c.waiting => {
                        c.waiting = false;
                        if let Some(st) = c.state.as_mut() {
                            let next = service.done(st, result, &mut c.out);
                            lp.apply(token, next)?;
                        }
                        lp.drive(token, service);
                        lp.flush_or_close(token, service, counter);
                    }
                    _ => service.orphan(result),
                }
            }
            if !lp.pool.healthy() {
                return Err(ServerError::PoolBroken);
            }
            lp.resume_paused(service, counter)?;
            lp.expire(service, counter);
            service.tick(stop_at.is_some());
            lp.report();
        }
    }
}

struct Loop<C, R: Send + 'static> {
    poll: Poll,
    pool: Pool<Token, R>,
    conns: HashMap<Token, Conn<C>>,
    next: usize,
    buf: Vec<u8>,
    limits: Limits,
    served: u64,
    reported: u64,
    last_report: Instant,
    busy: bool,
}

impl<C, R: Send + 'static> Loop<C, R> {
    fn accept_all<S: Service<Conn = C, Done = R>>(
        &mut self,
        a: &Acceptor,
        service: &mut S,
        counter: &mut dyn Counter,
    ) {
        loop {
            let (mut transport, peer) = match a.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: leave the rest queued for now.
                    warning!("accept: {e}");
                    break;
                }
            };
            let token = loop {
                let t = Token(self.next);
                self.next = (self.next + 1) % LISTENER_BASE;
                if !self.conns.contains_key(&t) {
                    break t;
                }
            };
            if let Err(e) = self.poll.registry().register(
                transport.source(),
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                warning!("register: {e}");
                continue;
            }
            self.served += 1;
            let (per_client, total) = counter.connect(peer.addr);
            let mut out = Vec::new();
            let refusal = if total as usize > self.limits.max_connections {
                Some(Refusal::TooManyConnections)
            } else if self.limits.per_client > 0 && per_client > self.limits.per_client {
                Some(Refusal::TooManyFromClient)
            } else {
                None
            };
            let (state, next, closing) = match refusal {
                Some(why) => (service.refuse(peer, why, &mut out), None, true),
                None => {
                    let (st, next) = service.open(peer, &mut out);
                    (st, Some(next), false)
                }
            };
            let now = Instant::now();
            self.conns.insert(
                token,
                Conn {
                    transport,
                    state: Some(state),
                    peer,
                    out,
                    sent: 0,
                    opened: now,
                    last_active: now,
                    waiting: false,
                    paused_until: None,
                    closing,
                    eof: false,
                    drained: false,
                    counted: true,
                },
            );
            if let Some(next) = next {
                if self.apply(token, next).is_err() {
                    self.close(token, service, counter, false);
                    continue;
                }
            }
            self.flush_or_close(token, service, counter);
        }
        let busy = self.conns.len() >= self.limits.max_connections;
        if busy != self.busy {
            self.busy = busy;
            status::report(if busy {
                Status::Busy
            } else {
                Status::Available
            });
        }
    }

    /// Carry out what the service asked for.
    fn apply(&mut self, token: Token, next: Next<R>) -> Result<(), PoolGone> {
        let Some(c) = self.conns.get_mut(&token) else {
            return Ok(());
        };
        match next {
            Next::Continue => {}
            Next::Close => c.closing = true,
            Next::Pause(d) => c.paused_until = Some(Instant::now() + d),
            Next::Run(job) => {
                c.waiting = true;
                self.pool.submit(token, job)?;
            }
        }
        Ok(())
    }

    /// Read and feed input while the session can take it.
    fn drive<S: Service<Conn = C, Done = R>>(&mut self, token: Token, service: &mut S) {
        loop {
            let Some(c) = self.conns.get_mut(&token) else {
                return;
            };
            if c.waiting
                || c.closing
                || c.eof
                || c.drained
                || c.paused_until.is_some()
                || c.out.len() - c.sent > self.limits.out_high
            {
                return;
            }
            let next = match c.transport.read(&mut self.buf) {
                Ok(0) => {
                    c.eof = true;
                    return;
                }
                Ok(n) => {
                    c.last_active = Instant::now();
                    c.drained = n < self.buf.len();
                    match c.state.as_mut() {
                        Some(st) => service.input(st, &self.buf[..n], &mut c.out),
                        None => return,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    c.eof = true;
                    return;
                }
            };
            if self.apply(token, next).is_err() {
                if let Some(c) = self.conns.get_mut(&token) {
                    c.closing = true;
                }
                return;
            }
        }
    }

    /// Send pending output; close the connection when it is over.
    fn flush_or_close<S: Service<Conn = C, Done = R>>(
        &mut self,
        token: Token,
        service: &mut S,
        counter: &mut dyn Counter,
    ) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        let mut broken = false;
        if c.paused_until.is_none() {
            while c.sent < c.out.len() {
                match c.transport.write(&c.out[c.sent..]) {
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
            if c.sent == c.out.len() {
                c.out.clear();
                c.sent = 0;
            }
        }
        let drained = c.out.is_empty();
        let close =
            broken || (c.closing && drained && c.paused_until.is_none()) || (c.eof && !c.waiting);
        if close {
            let lost = !c.closing;
            self.close(token, service, counter, lost);
        }
    }

    fn close<S: Service<Conn = C, Done = R>>(
        &mut self,
        token: Token,
        service: &mut S,
        counter: &mut dyn Counter,
        lost: bool,
    ) {
        let Some(mut c) = self.conns.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(c.transport.source());
        if c.counted {
            counter.disconnect(c.peer.addr);
        }
        if let Some(st) = c.state.take() {
            service.closed(st, lost);
        }
    }

    /// When the next pause ends (or a long time from now).
    fn next_wake(&self) -> Duration {
        let now = Instant::now();
        self.conns
            .values()
            .filter_map(|c| c.paused_until)
            .map(|t| t.saturating_duration_since(now))
            .min()
            .unwrap_or(TICK)
    }

    fn resume_paused<S: Service<Conn = C, Done = R>>(
        &mut self,
        service: &mut S,
        counter: &mut dyn Counter,
    ) -> Result<(), ServerError> {
        let now = Instant::now();
        let due: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.paused_until.is_some_and(|t| t <= now))
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            if let Some(c) = self.conns.get_mut(&t) {
                c.paused_until = None;
                if !c.closing {
                    if let Some(st) = c.state.as_mut() {
                        let next = service.resume(st, &mut c.out);
                        self.apply(t, next)?;
                    }
                }
            }
            self.flush_or_close(t, service, counter);
            self.drive(t, service);
            self.flush_or_close(t, service, counter);
        }
        Ok(())
    }

    fn expire<S: Service<Conn = C, Done = R>>(
        &mut self,
        service: &mut S,
        counter: &mut dyn Counter,
    ) {
        let now = Instant::now();
        let limits = &self.limits;
        let expired: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                !c.waiting
                    && !c.closing
                    && c.paused_until.is_none()
                    && (now.duration_since(c.last_active) > limits.idle
                        || limits
                            .total
                            .is_some_and(|t| now.duration_since(c.opened) > t))
            })
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            if let Some(c) = self.conns.get_mut(&t) {
                if let Some(st) = c.state.as_mut() {
                    service.timed_out(st, &mut c.out);
                }
                c.closing = true;
            }
            self.flush_or_close(t, service, counter);
        }
    }

    /// Tell master how much was served, at most about once a second.
    fn report(&mut self) {
        if self.served != self.reported && self.last_report.elapsed() >= TICK {
            status::report(Status::Served(self.served));
            self.reported = self.served;
            self.last_report = Instant::now();
        }
    }
}
