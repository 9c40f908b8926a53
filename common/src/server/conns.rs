//! The connection table of one server loop, and what happens to one
//! connection: accepting or receiving it, reading and feeding input while
//! the session can take it, sending output (and asking a streaming service
//! for more), starting TLS, handing it to another process, time-outs, and
//! closing it.
//!
//! Owns the per-connection state (`Conn`) and the listening side
//! (`Acceptor`). Does not own the rounds of the loop (mod.rs), the byte
//! stream (transport.rs), hand-off messages (handoff.rs) or relaying
//! (relay.rs).
//!
//! Security: input is read only while the session is not held (waiting for
//! a job, paused, closing, streaming, starting TLS, handing off) and its
//! unsent output is under `Limits::out_high`; after `Next::StartTls` no byte
//! is read before the TLS handshake (RFC 3207 5).
//!
//! Diagnostics: `accept:`/`register:` warnings, TLS failures (`SSL_accept
//! error from CLIENT: REASON` while handshaking, else `TLS error from
//! CLIENT: REASON`), hand-off failures and bad hand-off messages.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use mio::{Interest, Poll, Registry, Token};

use super::handoff::{self, Received, Receiver};
use super::relay::{Relay, RELAY_IDLE};
use super::transport::{Input, Stream, Transport};
use super::{
    Counter, Limits, Next, Peer, Pool, PoolGone, Refusal, ServerError, Service, RELAY_BIT, TICK,
    WATCH_BIT,
};
use crate::daemon::Listener;
use crate::status::{self, Status};
use crate::tls::TlsSetup;
use crate::{info, warning};

/// Most rounds of reading and writing one event starts (each round is
/// started by a change that lets more happen: TLS begun, output drained).
const MAX_ROUNDS: usize = 16;
/// `Next::Produce` answers in a row that add no output before the loop
/// gives up on the connection.
const MAX_EMPTY_PRODUCES: usize = 1000;

/// Where connections come from.
pub(super) enum Acceptor {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
    Handoff(Receiver),
}

impl Acceptor {
    pub(super) fn from_listener(listener: Listener) -> io::Result<Vec<Acceptor>> {
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
            Listener::Handoff(s) => acceptors.push(Acceptor::Handoff(Receiver::new(s)?)),
        }
        Ok(acceptors)
    }

    pub(super) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Acceptor::Tcp(l) => registry.register(l, token, Interest::READABLE),
            Acceptor::Unix(l) => registry.register(l, token, Interest::READABLE),
            Acceptor::Handoff(r) => {
                use std::os::fd::AsRawFd;
                let fd = r.sock.as_raw_fd();
                registry.register(&mut mio::unix::SourceFd(&fd), token, Interest::READABLE)
            }
        }
    }

    /// Stop watching it; it is closed when dropped.
    pub(super) fn deregister(&mut self, registry: &Registry) {
        let _ = match self {
            Acceptor::Tcp(l) => registry.deregister(l),
            Acceptor::Unix(l) => registry.deregister(l),
            Acceptor::Handoff(r) => {
                use std::os::fd::AsRawFd;
                let fd = r.sock.as_raw_fd();
                registry.deregister(&mut mio::unix::SourceFd(&fd))
            }
        };
    }
}

/// `unknown[ADDR]` (or `unknown[local]`), as smtpd names clients.
fn label(addr: Option<IpAddr>) -> String {
    match addr {
        Some(a) => format!("unknown[{a}]"),
        None => "unknown[local]".into(),
    }
}

pub(super) struct Conn<C> {
    pub(super) transport: Transport,
    pub(super) state: Option<C>,
    pub(super) addr: Option<IpAddr>,
    pub(super) out: Vec<u8>,
    pub(super) sent: usize,
    opened: Instant,
    pub(super) last_active: Instant,
    /// `Service::quiet` was called for the quiet spell since this
    /// `last_active`.
    quiet_since: Option<Instant>,
    /// A pool job of this connection is running, or a ticket of it is out
    /// (`Next::Await`).
    waiting: bool,
    paused_until: Option<Instant>,
    closing: bool,
    /// The client closed its side (or the socket or its TLS failed).
    pub(super) eof: bool,
    /// The last read got everything there was: reading again before the
    /// next readable event would only get EAGAIN (a stream socket signals
    /// every new arrival, even edge-triggered). Never set from the size of
    /// a TLS read: rustls may hold more.
    drained: bool,
    /// Counted in the connection tables (released on close or hand-off).
    counted: bool,
    /// Next::StartTls: send `out` in the clear, then begin TLS.
    starttls: bool,
    /// Next::Produce: call `produce` when the client has taken the output.
    producing: bool,
    /// Next::HandOff: hand the connection over once `out` is sent.
    handoff: Option<(UnixStream, Vec<u8>)>,
    /// A handed-off TLS connection: relayed to the other process.
    pub(super) relay: Option<Relay>,
    /// Next::Watch: the descriptor registered for `notify`.
    watch: Option<std::os::fd::RawFd>,
    /// The watched descriptor became readable; `notify` is due.
    notified: bool,
}

impl<C> Conn<C> {
    /// Input waits: the session is in the middle of something.
    fn held(&self) -> bool {
        self.waiting
            || self.closing
            || self.eof
            || self.paused_until.is_some()
            || self.starttls
            || self.producing
            || self.handoff.is_some()
    }
}

/// Carry out what the service asked for.
fn apply<C, R: Send + 'static>(
    pool: &Pool<Token, R>,
    registry: &Registry,
    c: &mut Conn<C>,
    token: Token,
    next: Next<R>,
) -> Result<(), PoolGone> {
    match next {
        Next::Continue => {}
        Next::Close => c.closing = true,
        Next::Pause(d) => c.paused_until = Some(Instant::now() + d),
        Next::Run(job) => {
            c.waiting = true;
            pool.submit(token, job)?;
        }
        Next::Await { start, fallback } => {
            c.waiting = true;
            start(pool.ticket(token, fallback));
        }
        Next::StartTls => c.starttls = true,
        Next::Produce => c.producing = true,
        Next::HandOff { to, frame } => c.handoff = Some((to, frame)),
        Next::Watch(fd) => {
            if let Some(old) = c.watch.take() {
                let _ = registry.deregister(&mut mio::unix::SourceFd(&old));
            }
            let watch_token = Token(token.0 | WATCH_BIT);
            match registry.register(
                &mut mio::unix::SourceFd(&fd),
                watch_token,
                Interest::READABLE,
            ) {
                Ok(()) => {
                    c.watch = Some(fd);
                    // Whatever happened before the registration.
                    c.notified = true;
                }
                Err(e) => warning!("register a watched descriptor: {e}"),
            }
        }
    }
    Ok(())
}

pub(super) struct Loop<C, R: Send + 'static> {
    pub(super) poll: Poll,
    pub(super) pool: Pool<Token, R>,
    pub(super) conns: HashMap<Token, Conn<C>>,
    next: usize,
    pub(super) buf: Vec<u8>,
    limits: Limits,
    tls: Option<TlsSetup>,
    served: u64,
    reported: u64,
    last_report: Instant,
    busy: bool,
    /// The sender of a hand-off listener has gone: drain.
    pub(super) sender_gone: bool,
}

impl<C, R: Send + 'static> Loop<C, R> {
    pub(super) fn new(
        poll: Poll,
        pool: Pool<Token, R>,
        limits: Limits,
        tls: Option<TlsSetup>,
    ) -> Self {
        Loop {
            poll,
            pool,
            conns: HashMap::new(),
            next: 0,
            buf: vec![0u8; 64 * 1024],
            limits,
            tls,
            served: 0,
            reported: 0,
            last_report: Instant::now(),
            busy: false,
            sender_gone: false,
        }
    }

    /// Take every connection waiting on `a`.
    pub(super) fn accept_all<S: Service<Conn = C, Done = R>>(
        &mut self,
        a: &mut Acceptor,
        service: &mut S,
        counter: &mut dyn Counter,
    ) {
        loop {
            let accepted = match a {
                Acceptor::Tcp(l) => l.accept().map(|(s, addr)| {
                    let _ = s.set_nodelay(true);
                    let local = s.local_addr().ok();
                    let peer = Peer {
                        addr: Some(addr.ip().to_canonical()),
                        port: local.map_or(0, |a| a.port()),
                        local: local.map(|a| a.ip().to_canonical()),
                        client_port: addr.port(),
                        ..Peer::default()
                    };
                    (Transport::plain(Stream::Tcp(s)), peer)
                }),
                Acceptor::Unix(l) => l.accept().map(|(s, _)| {
                    // Who is on the other end (auth admits only root and
                    // mail_owner).
                    let uid = nix::sys::socket::getsockopt(
                        &s,
                        nix::sys::socket::sockopt::PeerCredentials,
                    )
                    .ok()
                    .map(|c| c.uid());
                    let peer = Peer {
                        uid,
                        ..Peer::default()
                    };
                    (Transport::plain(Stream::Unix(s)), peer)
                }),
                Acceptor::Handoff(rx) => match rx.next() {
                    Received::Conn(frame, fd) => handoff::adopt(fd, frame).map_err(|e| {
                        warning!("handed-off connection refused: {e}");
                        io::ErrorKind::Interrupted.into()
                    }),
                    Received::Bad(why) => {
                        warning!("{why}; dropped");
                        continue;
                    }
                    Received::Gone(why) => {
                        if let Some(why) = why {
                            warning!("{why}; no more connections from it");
                        }
                        self.sender_gone = true;
                        break;
                    }
                    Received::WouldBlock => break,
                },
            };
            let (transport, peer) = match accepted {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: leave the rest queued for now.
                    warning!("accept: {e}");
                    break;
                }
            };
            self.add(transport, peer, service, counter);
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

    /// A new connection: count it, open (or refuse) its session.
    fn add<S: Service<Conn = C, Done = R>>(
        &mut self,
        mut transport: Transport,
        mut peer: Peer,
        service: &mut S,
        counter: &mut dyn Counter,
    ) {
        if let Some(tls) = self.tls.as_ref().filter(|t| t.implicit) {
            if peer.handoff.is_none() {
                if let Err(e) = transport.start_tls(&tls.config) {
                    warning!("TLS for {}: {e}", label(peer.addr));
                    return;
                }
                peer.tls = true;
            }
        }
        let token = loop {
            let t = Token(self.next);
            self.next = (self.next + 1) % RELAY_BIT;
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
            return;
        }
        self.served += 1;
        let addr = peer.addr;
        let (per_client, total) = counter.connect(addr);
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
        let mut c = Conn {
            transport,
            state: Some(state),
            addr,
            out,
            sent: 0,
            opened: now,
            last_active: now,
            quiet_since: None,
            waiting: false,
            paused_until: None,
            closing,
            eof: false,
            drained: false,
            counted: true,
            starttls: false,
            producing: false,
            handoff: None,
            relay: None,
            watch: None,
            notified: false,
        };
        let failed = next
            .is_some_and(|n| apply(&self.pool, self.poll.registry(), &mut c, token, n).is_err());
        self.conns.insert(token, c);
        if failed {
            self.close(token, service, counter, false);
            return;
        }
        self.progress(token, service, counter);
    }

    /// The watched descriptor of a connection is readable.
    pub(super) fn notified(&mut self, token: Token) {
        if let Some(c) = self.conns.get_mut(&token) {
            c.notified = true;
        }
    }

    /// A readable event: the socket has something new.
    pub(super) fn readable(&mut self, token: Token) {
        if let Some(c) = self.conns.get_mut(&token) {
            c.drained = false;
        }
    }

    /// Read, feed, write, until nothing more can happen for now.
    pub(super) fn progress<S: Service<Conn = C, Done = R>>(
        &mut self,
        token: Token,
        service: &mut S,
        counter: &mut dyn Counter,
    ) {
        if self.conns.get(&token).is_some_and(|c| c.relay.is_some()) {
            self.pump(token);
            return;
        }
        for _ in 0..MAX_ROUNDS {
            self.drive(token, service);
            if !self.flush_or_close(token, service, counter) {
                return;
            }
        }
    }

    /// A pool job finished (or a ticket was delivered).
    pub(super) fn finished<S: Service<Conn = C, Done = R>>(
        &mut self,
        token: Token,
        result: R,
        service: &mut S,
        counter: &mut dyn Counter,
    ) -> Result<(), ServerError> {
        match self.conns.get_mut(&token) {
            Some(c) if c.waiting => {
                c.waiting = false;
                if let Some(st) = c.state.as_mut() {
                    let next = service.done(st, result, &mut c.out);
                    apply(&self.pool, self.poll.registry(), c, token, next)?;
                }
                self.progress(token, service, counter);
            }
            _ => service.orphan(result),
        }
        Ok(())
    }

    /// Read and feed input while the session can take it.
    fn drive<S: Service<Conn = C, Done = R>>(&mut self, token: Token, service: &mut S) {
        let Loop {
            conns,
            pool,
            buf,
            limits,
            poll,
            ..
        } = self;
        let registry = poll.registry();
        loop {
            let Some(c) = conns.get_mut(&token) else {
                return;
            };
            if c.notified && c.relay.is_none() && !c.held() {
                c.notified = false;
                if let Some(st) = c.state.as_mut() {
                    let next = service.notify(st, &mut c.out);
                    if apply(pool, registry, c, token, next).is_err() {
                        c.closing = true;
                        return;
                    }
                    continue;
                }
            }
            if c.relay.is_some() || c.held() || c.drained || c.out.len() - c.sent > limits.out_high
            {
                return;
            }
            let Some(st) = c.state.as_mut() else {
                return;
            };
            let next = match c.transport.read(buf) {
                Ok(Input::Data(n, fd)) => {
                    c.last_active = Instant::now();
                    // A read with a descriptor ends where its message ends,
                    // whatever waits after it.
                    if !c.transport.is_tls() && n < buf.len() && fd.is_none() {
                        c.drained = true;
                    }
                    if let Some(fd) = fd {
                        service.received_fd(st, fd);
                    }
                    service.input(st, &buf[..n], &mut c.out)
                }
                Ok(Input::Secured(info)) => service.tls_ready(st, &info, &mut c.out),
                Ok(Input::Eof) => {
                    c.eof = true;
                    return;
                }
                Ok(Input::WouldBlock) => {
                    c.drained = true;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData && c.transport.is_tls() {
                        tls_failed(&c.transport, c.addr, &e);
                    }
                    c.eof = true;
                    return;
                }
            };
            if apply(pool, registry, c, token, next).is_err() {
                c.closing = true;
                return;
            }
        }
    }

    /// Send pending output (asking a streaming service for more), start TLS
    /// or hand the connection off when its output is out, and close it when
    /// it is over. Returns true when reading may make progress now.
    fn flush_or_close<S: Service<Conn = C, Done = R>>(
        &mut self,
        token: Token,
        service: &mut S,
        counter: &mut dyn Counter,
    ) -> bool {
        let low_water = self.limits.out_high / 4;
        let out_high = self.limits.out_high;
        let Some(c) = self.conns.get_mut(&token) else {
            return false;
        };
        if c.relay.is_some() {
            return false;
        }
        let was_over = c.out.len() - c.sent > out_high;
        let mut broken = false;
        let mut again = false;
        // `produce` calls in a row that added nothing (a service bug: it
        // would spin here for ever).
        let mut empty_produces = 0;
        if c.paused_until.is_none() {
            loop {
                while c.sent < c.out.len() {
                    match c.transport.write(&c.out[c.sent..]) {
                        Ok(0) => {
                            broken = true;
                            break;
                        }
                        Ok(n) => {
                            c.sent += n;
                            c.last_active = Instant::now();
                        }
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
                } else if c.producing && c.sent > 0 {
                    c.out.drain(..c.sent);
                    c.sent = 0;
                }
                // Streaming: more when the client has taken most of it.
                if broken || !c.producing || c.closing || c.out.len() >= low_water {
                    break;
                }
                let Some(st) = c.state.as_mut() else {
                    break;
                };
                c.producing = false;
                let before = c.out.len();
                let next = service.produce(st, &mut c.out);
                if apply(&self.pool, self.poll.registry(), c, token, next).is_err() {
                    c.closing = true;
                }
                empty_produces = if c.out.len() == before {
                    empty_produces + 1
                } else {
                    0
                };
                if c.producing && empty_produces > MAX_EMPTY_PRODUCES {
                    warning!(
                        "{}: the service produced nothing {MAX_EMPTY_PRODUCES} times; closing",
                        label(c.addr)
                    );
                    broken = true;
                    break;
                }
                if !c.producing {
                    again = true; // input may be read again
                }
            }
            match c.transport.flush_tls() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => broken = true,
            }
        }
        let out_done = c.out.is_empty() && !c.transport.pending();
        if c.starttls && out_done && !broken {
            // RFC 3207 4.2 / RFC 2595 4: the reply went in the clear; what
            // the client sends from now on is its TLS hello.
            c.starttls = false;
            match self.tls.as_ref() {
                Some(tls) if !c.transport.is_tls() => match c.transport.start_tls(&tls.config) {
                    Ok(()) => {
                        c.drained = false;
                        again = true;
                    }
                    Err(e) => {
                        warning!("TLS for {}: {e}", label(c.addr));
                        broken = true;
                    }
                },
                _ => {
                    warning!(
                        "STARTTLS for {} without a TLS configuration, or twice; closing",
                        label(c.addr)
                    );
                    broken = true;
                }
            }
        }
        if c.handoff.is_some() && out_done && !broken {
            self.hand_off(token, service, counter);
            return false;
        }
        if was_over && c.out.len() - c.sent <= out_high {
            again = true;
        }
        let close =
            broken || (c.closing && out_done && c.paused_until.is_none()) || (c.eof && !c.waiting);
        if close {
            let lost = !c.closing || broken;
            self.close(token, service, counter, lost);
            return false;
        }
        again && !c.held()
    }

    /// Next::HandOff, with the output sent: the session ends here and the
    /// connection (or, under TLS, its relayed plaintext side) goes over.
    fn hand_off<S: Service<Conn = C, Done = R>>(
        &mut self,
        token: Token,
        service: &mut S,
        counter: &mut dyn Counter,
    ) {
        let Some(mut c) = self.conns.remove(&token) else {
            return;
        };
        let Some((to, frame)) = c.handoff.take() else {
            return;
        };
        if let Some(st) = c.state.take() {
            service.closed(st, false);
        }
        if c.counted {
            counter.disconnect(c.addr);
            c.counted = false;
        }
        if !c.transport.is_tls() {
            // Out of our poll first: the socket lives on in the other process.
            let _ = self.poll.registry().deregister(c.transport.source());
            if let Err(e) = handoff::send_plain(&to, &frame, c.transport.stream().as_fd()) {
                warning!(
                    "hand-off of the connection from {} failed: {e}",
                    label(c.addr)
                );
            }
            return; // our copy is closed as `c` drops
        }
        match handoff::send_relayed(&to, &frame) {
            Ok(mut peer) => {
                let relay_token = Token(token.0 | RELAY_BIT);
                if let Err(e) = self.poll.registry().register(
                    &mut peer,
                    relay_token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    warning!("register: {e}");
                    let _ = self.poll.registry().deregister(c.transport.source());
                    return;
                }
                c.relay = Some(Relay::new(peer));
                c.last_active = Instant::now();
                self.conns.insert(token, c);
                self.pump(token);
            }
            Err(e) => {
                warning!(
                    "hand-off of the connection from {} failed: {e}",
                    label(c.addr)
                );
                let _ = self.poll.registry().deregister(c.transport.source());
            }
        }
    }

    /// Remove a connection: out of the poll, out of the counters, its
    /// session told. A connection that ends normally says close_notify
    /// first if it is under TLS.
    pub(super) fn close<S: Service<Conn = C, Done = R>>(
        &mut self,
        token: Token,
        service: &mut S,
        counter: &mut dyn Counter,
        lost: bool,
    ) {
        let Some(c) = self.drop_conn(token, !lost) else {
            return;
        };
        if c.counted {
            counter.disconnect(c.addr);
        }
        if let Some(st) = c.state {
            service.closed(st, lost);
        }
    }

    /// Take a connection out of the table and the poll (its relay socket
    /// too); the sockets close when the value drops.
    pub(super) fn drop_conn(&mut self, token: Token, graceful: bool) -> Option<Conn<C>> {
        let mut c = self.conns.remove(&token)?;
        if graceful {
            c.transport.close_notify();
        }
        let _ = self.poll.registry().deregister(c.transport.source());
        if let Some(r) = c.relay.as_mut() {
            let _ = self.poll.registry().deregister(&mut r.peer);
        }
        if let Some(fd) = c.watch.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut mio::unix::SourceFd(&fd));
        }
        Some(c)
    }

    /// The daemon is stopping: sessions that can close now say goodbye.
    pub(super) fn stopping<S: Service<Conn = C, Done = R>>(
        &mut self,
        service: &mut S,
        counter: &mut dyn Counter,
    ) {
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            if let Some(c) = self.conns.get_mut(&t) {
                if c.closing {
                    continue;
                }
                if let Some(st) = c.state.as_mut() {
                    if !c.waiting && service.stopping(st, &mut c.out) {
                        c.closing = true;
                    }
                }
            }
            self.progress(t, service, counter);
        }
    }

    /// The grace period is over: close everything.
    pub(super) fn close_all<S: Service<Conn = C, Done = R>>(
        &mut self,
        service: &mut S,
        counter: &mut dyn Counter,
    ) {
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            self.close(t, service, counter, false);
        }
    }

    /// When the next pause ends (or a long time from now).
    pub(super) fn next_wake(&self) -> Duration {
        let now = Instant::now();
        self.conns
            .values()
            .filter_map(|c| c.paused_until)
            .map(|t| t.saturating_duration_since(now))
            .min()
            .unwrap_or(TICK)
    }

    pub(super) fn resume_paused<S: Service<Conn = C, Done = R>>(
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
                        apply(&self.pool, self.poll.registry(), c, t, next)?;
                    }
                }
            }
            self.progress(t, service, counter);
        }
        Ok(())
    }

    /// Idle and total time-outs (a relay has only its own generous one).
    /// A closing connection whose output has not moved for the idle time
    /// (a client that reads nothing, or never finishes its TLS handshake)
    /// is closed as lost.
    pub(super) fn expire<S: Service<Conn = C, Done = R>>(
        &mut self,
        service: &mut S,
        counter: &mut dyn Counter,
    ) {
        let now = Instant::now();
        let limits = &self.limits;
        let mut relays = Vec::new();
        let mut stuck = Vec::new();
        let expired: Vec<Token> = self
            .conns
            .iter()
            .filter(|(t, c)| {
                if c.relay.is_some() {
                    if now.duration_since(c.last_active) > RELAY_IDLE {
                        relays.push(**t);
                    }
                    return false;
                }
                if c.closing && !c.waiting && now.duration_since(c.last_active) > limits.idle {
                    stuck.push(**t);
                    return false;
                }
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
        if let Some(q) = limits.quiet {
            for c in self.conns.values_mut() {
                let quiet = c.relay.is_none()
                    && !c.waiting
                    && !c.closing
                    && !c.producing
                    && c.paused_until.is_none()
                    && c.sent >= c.out.len()
                    && c.quiet_since != Some(c.last_active)
                    && now.duration_since(c.last_active) > q;
                if quiet {
                    if let Some(st) = c.state.as_mut() {
                        service.quiet(st);
                    }
                    c.quiet_since = Some(c.last_active);
                    c.out = Vec::new();
                    c.sent = 0;
                }
            }
        }
        for t in relays {
            self.drop_conn(t, true);
        }
        for t in stuck {
            self.close(t, service, counter, true);
        }
        for t in expired {
            if let Some(c) = self.conns.get_mut(&t) {
                if let Some(st) = c.state.as_mut() {
                    service.timed_out(st, &mut c.out);
                }
                c.closing = true;
                c.producing = false;
                // The goodbye gets an idle period of its own to go out.
                c.last_active = now;
            }
            self.progress(t, service, counter);
        }
    }

    /// Tell master how much was served, at most about once a second.
    pub(super) fn report(&mut self) {
        if self.served != self.reported && self.last_report.elapsed() >= TICK {
            status::report(Status::Served(self.served));
            self.reported = self.served;
            self.last_report = Instant::now();
        }
    }
}

/// Log a failed TLS connection the way Postfix does.
pub(super) fn tls_failed(t: &Transport, addr: Option<IpAddr>, e: &io::Error) {
    if t.handshaking() {
        info!("SSL_accept error from {}: {e}", label(addr));
    } else {
        info!("TLS error from {}: {e}", label(addr));
    }
}
