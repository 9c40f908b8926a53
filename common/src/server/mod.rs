//! The server skeleton every daemon with connections runs on (smtpd, anvil,
//! qmgr's wake-ups now; imapd, pop3d and their login processes, submission
//! and auth next): Postfix's multi_server and Dovecot's master_service in
//! one mio loop.
//!
//! Owns: accepting on the sockets master handed down (TCP or Unix; a Unix
//! peer's uid from SO_PEERCRED goes to the service in `Peer`) or
//! receiving connections another process hands over (`Listener::Handoff`),
//! one `Service` call per event (bytes in, bytes out, and a `Next` saying
//! what the loop must do), TLS on a connection (implicit from the first
//! byte, or after `Next::StartTls`), streaming output (`Next::Produce`),
//! handing a connection to another process (`Next::HandOff`, relaying a TLS
//! connection's plaintext), per-client and per-process connection limits
//! (counted across processes through anvil when it runs), idle and total
//! time-outs, back-pressure on clients that do not read their replies,
//! pauses (error sleep) that hold both input and output, blocking work on
//! the shared `Pool`, results owed by a thread of the service's own
//! (`Next::Await`: smtpd's client name look-ups), graceful stop on SIGTERM or when master goes away,
//! draining on SIGHUP (reload: stop accepting, serve the connections there
//! are until they end), and status reports to master (available, busy,
//! served N).
//!
//! Does not own the protocol: a `Service` is sans-I/O. It never sees a
//! socket, only bytes, so it is tested with transcripts.
//!
//! Layout: this file has the API and the loop's rounds; conns.rs the
//! connection table and what happens to one connection; transport.rs the
//! byte stream (plain or TLS); handoff.rs sending and receiving
//! connections; relay.rs the relay of a handed-off TLS connection.
//!
//! Standards: RFC 3207 5 and RFC 2595 4 (nothing read in the clear after
//! STARTTLS/STLS is used under TLS, CVE-2011-0411); TLS itself is rustls's
//! (common::tls).
//!
//! Security: every buffer is bounded: reads go through one 64 KiB buffer,
//! a session whose unsent output passes `Limits::out_high` is not read from
//! (TLS records waiting to be sent are bounded by rustls), a streaming
//! service is asked for more only when its client has taken most of what
//! was sent, a relay holds at most 64 KiB in each direction, hand-off
//! frames are bounded by ipc::MAX_FRAME, and a service bounds its own input
//! (line lengths, message sizes).
//!
//! Diagnostics: `accept:`/`register:` warnings; `SSL_accept error from
//! CLIENT: REASON` (info) when a TLS handshake fails, `TLS error from
//! CLIENT: REASON` after it; hand-off failures as warnings; the daemon logs
//! the rest through its `Service` (connect, disconnect, time-outs).

pub mod anvil;
mod conns;
pub mod handoff;
pub mod pool;
mod relay;
mod transport;

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};

use crate::daemon::Listener;
use crate::status::{self, Status};
use crate::tls::{TlsInfo, TlsSetup};

use conns::{Acceptor, Loop};

pub use pool::{Job, Pool, PoolGone, Spawner, Ticket};

const WAKER: Token = Token(usize::MAX - 1);
const LISTENER_BASE: usize = usize::MAX - 64;
/// Connection tokens are below this; a relay's second socket has its
/// connection's token with this bit set.
const RELAY_BIT: usize = 1 << (usize::BITS - 2);
/// A connection's watched descriptor (`Next::Watch`) has its connection's
/// token with this bit set.
const WATCH_BIT: usize = 1 << (usize::BITS - 3);
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
    /// Read nothing until `done` has a result that a thread of the
    /// service's own delivers: the loop makes a `Ticket` for this
    /// connection and calls `start` with it at once, on the loop's thread
    /// (`start` hands it to that thread, which calls `Ticket::finish`). For
    /// work that waits on the network rather than the disk, many at once on
    /// one thread (an async runtime), so it holds no pool thread. If the
    /// ticket is dropped unfinished, `done` gets `fallback`. The holder
    /// bounds the wait: the loop's idle time-out does not run meanwhile.
    Await {
        start: Box<dyn FnOnce(Ticket<Token, R>)>,
        fallback: R,
    },
    /// STARTTLS/STLS was accepted: its reply is in `out`. The loop sends
    /// `out` in the clear, then starts the TLS handshake on the connection,
    /// and calls `tls_ready` when it is done (or closes the connection,
    /// `closed(lost=true)`, when it fails).
    ///
    /// The loop reads nothing more in the clear. Input that arrived in the
    /// same read as the command, after it, is already the service's: it
    /// must discard it (RFC 3207 5, RFC 2595 4: a man in the middle could
    /// have injected commands there that would otherwise run as if they
    /// came under TLS, CVE-2011-0411).
    StartTls,
    /// More output is coming: the loop calls `produce` once the client has
    /// taken most of what is in `out` (below a quarter of
    /// `Limits::out_high`), and reads no input from this connection until
    /// a call returns something other than `Produce` (pipelined commands
    /// wait in the socket). For output too large to hold at once (a POP3
    /// RETR, an IMAP FETCH of a big message), in pieces of about 64 KiB.
    Produce,
    /// Hand the connection to another process over `to`; the session is
    /// over here. After `out` has been sent, `closed(c, false)` is called
    /// and the connection leaves the counters. A plain connection's socket
    /// is sent with `frame` (one common::ipc frame, length prefix included,
    /// as ipc::write_frame makes it: the receiver gets exactly these bytes
    /// in `Peer::handoff`) in one message, and this process closes its
    /// copy. A TLS connection cannot move: one end of a new socketpair is
    /// sent instead, and this process relays between the TLS stream and the
    /// other end until either side closes. `to` is dropped after the send.
    /// The service puts any input it has not used (pipelined commands) in
    /// `frame`.
    HandOff { to: UnixStream, frame: Vec<u8> },
    /// Keep reading, and also call `notify` whenever this descriptor
    /// becomes readable (an inotify instance: IMAP IDLE learning of new
    /// mail). The connection's state owns the descriptor and must keep it
    /// open until `closed`; the loop registers it once (a second `Watch`
    /// replaces the first) and takes it out of the poll before `closed`.
    /// `notify` must read what is pending: the poll is edge-triggered.
    Watch(std::os::fd::RawFd),
}

/// Who connected.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The client's address (None on a Unix socket).
    pub addr: Option<IpAddr>,
    /// The local port it connected to (0 on a Unix socket).
    pub port: u16,
    /// TLS from the first byte (implicit TLS): the greeting may be written
    /// in `open` (it is sent when the handshake is done), and `tls_ready`
    /// follows.
    pub tls: bool,
    /// The connection was handed over by another process
    /// (`Listener::Handoff`) with this frame (length prefix included; decode
    /// it with common::ipc::read_frame).
    pub handoff: Option<Vec<u8>>,
    /// The peer process's uid on a Unix socket (SO_PEERCRED), None on TCP
    /// or when the kernel would not say.
    pub uid: Option<u32>,
    /// Our address the client connected to (TCP only), for log lines.
    pub local: Option<IpAddr>,
    /// The client's port (TCP only), for log lines and hand-offs.
    pub client_port: u16,
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
    /// A peer on a Unix socket sent a descriptor (SCM_RIGHTS), e.g. a login
    /// process handing over a client: called just before `input` with the
    /// bytes it came with (the kernel attaches it to the first byte of what
    /// its sender sent with it; bytes sent earlier may come first in that
    /// same `input`). The default closes it with a warning; a service that
    /// expects none need not care. Several in one message: only the first
    /// arrives, the others are closed.
    fn received_fd(&mut self, _c: &mut Self::Conn, fd: std::os::fd::OwnedFd) {
        crate::warning!("a peer sent a descriptor this service does not take; closed");
        drop(fd);
    }
    /// A `Next::Run` job of this connection finished, or its `Next::Await`
    /// ticket was delivered.
    fn done(&mut self, c: &mut Self::Conn, r: Self::Done, out: &mut Vec<u8>) -> Next<Self::Done>;
    /// The descriptor of `Next::Watch` became readable. Called when the
    /// session is not held (not waiting for a job, paused, producing):
    /// an event that comes while it is, is delivered when it is no longer.
    fn notify(&mut self, _c: &mut Self::Conn, _out: &mut Vec<u8>) -> Next<Self::Done> {
        Next::Continue
    }
    /// A `Next::Pause` is over.
    fn resume(&mut self, c: &mut Self::Conn, out: &mut Vec<u8>) -> Next<Self::Done>;
    /// The TLS handshake has finished (implicit TLS, or after
    /// `Next::StartTls`): log it, mark the session secured. Called before
    /// any input that came under TLS.
    fn tls_ready(
        &mut self,
        _c: &mut Self::Conn,
        _info: &TlsInfo,
        _out: &mut Vec<u8>,
    ) -> Next<Self::Done> {
        Next::Continue
    }
    /// After `Next::Produce`: the client has taken most of the output; add
    /// the next piece. Return `Produce` again while more is to come.
    fn produce(&mut self, _c: &mut Self::Conn, _out: &mut Vec<u8>) -> Next<Self::Done> {
        Next::Continue
    }
    /// The client was idle too long, or the session lasted too long; the
    /// connection is closed after the output.
    fn timed_out(&mut self, c: &mut Self::Conn, out: &mut Vec<u8>);
    /// The daemon is stopping. Return true when the session may be closed now
    /// (after the output); false when it is in the middle of something and
    /// gets a grace period.
    fn stopping(&mut self, c: &mut Self::Conn, out: &mut Vec<u8>) -> bool;
    /// The connection is gone; `lost` when the client went away unasked
    /// (or its TLS failed). After `Next::HandOff`, `lost` is false.
    fn closed(&mut self, c: Self::Conn, lost: bool);
    /// A job finished (or a ticket was delivered) after its connection had
    /// closed.
    fn orphan(&mut self, r: Self::Done);
    /// The session has been quiet (no input, all output sent, nothing
    /// running) for `Limits::quiet`: a chance to let go of memory it can
    /// rebuild. Called once per quiet spell.
    fn quiet(&mut self, _c: &mut Self::Conn) {}
    /// Called once per loop round, after all events (batch work, and work
    /// of the service's own, such as qmgr's scans). `stopping`: the daemon
    /// is stopping; start nothing new.
    fn tick(&mut self, _stopping: bool) {}
    /// Work of the service's own is in flight: a stopping or draining loop
    /// waits for it (a stopping one up to the grace period).
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
    /// `Service::quiet` after this long without input (None: never).
    pub quiet: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle: Duration::from_secs(300),
            total: None,
            per_client: 0,
            max_connections: 100,
            out_high: 256 * 1024,
            quiet: None,
        }
    }
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
    tls: Option<TlsSetup>,
}

impl<S: Service> Server<S> {
    /// Set up the poll and a pool of `threads` threads for blocking work.
    pub fn new(threads: usize) -> Result<Self, ServerError> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        // The pool's threads hold the waker (and so its registration).
        let pool = Pool::new("pool", threads, waker)?;
        Ok(Server {
            poll,
            pool,
            tls: None,
        })
    }

    /// Serve TLS: from the first byte of every connection when
    /// `tls.implicit`, else on `Next::StartTls`.
    pub fn with_tls(mut self, tls: TlsSetup) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The pool, for background work the service submits itself.
    pub fn pool(&self) -> &Pool<Token, S::Done> {
        &self.pool
    }

    /// Serve `listener` until `stop` is set and sessions are done (at most
    /// STOP_GRACE), or until `drain` is set (or a hand-off listener's
    /// sender has gone) and every connection has ended by itself.
    pub fn run(
        self,
        listener: Listener,
        service: &mut S,
        limits: &Limits,
        counter: &mut dyn Counter,
        stop: &AtomicBool,
        drain: &AtomicBool,
    ) -> Result<(), ServerError> {
        let Server { poll, pool, tls } = self;
        let mut acceptors = Acceptor::from_listener(listener)?;
        for (i, a) in acceptors.iter_mut().enumerate() {
            a.register(poll.registry(), Token(LISTENER_BASE + i))?;
        }
        let mut lp = Loop::new(poll, pool, limits.clone(), tls);
        status::report(Status::Available);
        let mut events = Events::with_capacity(1024);
        let mut stop_at: Option<Instant> = None;
        let mut draining = false;
        loop {
            if stop.load(Ordering::Relaxed) && stop_at.is_none() {
                stop_at = Some(Instant::now());
                for mut a in acceptors.drain(..) {
                    a.deregister(lp.poll.registry());
                }
                lp.stopping(service, counter);
            }
            if (drain.load(Ordering::Relaxed) || lp.sender_gone) && !draining {
                // Reload: the new processes accept from now on.
                draining = true;
                for mut a in acceptors.drain(..) {
                    a.deregister(lp.poll.registry());
                }
            }
            if let Some(t) = stop_at {
                if (lp.conns.is_empty() && !service.busy()) || t.elapsed() > STOP_GRACE {
                    lp.close_all(service, counter);
                    return Ok(());
                }
            } else if draining && lp.conns.is_empty() && !service.busy() {
                return Ok(());
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
                    if let Some(a) = acceptors.get_mut(token.0 - LISTENER_BASE) {
                        lp.accept_all(a, service, counter);
                    }
                    continue;
                }
                if token.0 & RELAY_BIT != 0 {
                    lp.pump(Token(token.0 & !RELAY_BIT));
                    continue;
                }
                if token.0 & WATCH_BIT != 0 {
                    let token = Token(token.0 & !WATCH_BIT);
                    lp.notified(token);
                    lp.progress(token, service, counter);
                    continue;
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    lp.readable(token);
                }
                lp.progress(token, service, counter);
            }
            while let Some((token, result)) = lp.pool.finished() {
                lp.finished(token, result, service, counter)?;
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
