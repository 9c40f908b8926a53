//! The relay of a handed-off TLS connection: plaintext from the client's
//! TLS stream to the socketpair end the other process has, and back.
//!
//! Owns moving bytes both ways with bounded buffers and back-pressure, and
//! ending the relay: when either side closes or fails, what is buffered for
//! the other side is sent if it can be, then both are closed (under TLS with
//! close_notify when the other process ended the session). Does not own the
//! session: the process the connection was handed to does; this process
//! only keeps the TLS state, which cannot move.
//!
//! Security: at most RELAY_BUF bytes wait in each direction (the client is
//! not read while its bytes wait for the other process, nor the other
//! process while the client does not take its output); a relay idle for
//! RELAY_IDLE is closed (the serving process has its own, shorter, time-out).
//!
//! Diagnostics: TLS failures as in conns.rs.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::Token;

use super::conns::{tls_failed, Loop};
use super::transport::Input;

/// A relay that moved nothing for this long is closed.
pub(super) const RELAY_IDLE: Duration = Duration::from_secs(3600);
/// The most bytes waiting in each direction.
const RELAY_BUF: usize = 64 * 1024;

/// The other process's side of a relayed connection.
pub(super) struct Relay {
    pub(super) peer: mio::net::UnixStream,
    /// From the client, not yet taken by the other process.
    to_peer: Vec<u8>,
    sent: usize,
    /// The other process closed its end.
    peer_eof: bool,
}

impl Relay {
    pub(super) fn new(peer: mio::net::UnixStream) -> Relay {
        Relay {
            peer,
            to_peer: Vec::new(),
            sent: 0,
            peer_eof: false,
        }
    }
}

impl<C, R: Send + 'static> Loop<C, R> {
    /// Move what can be moved both ways; close the relay when it is over.
    pub(super) fn pump(&mut self, token: Token) {
        let Loop { conns, buf, .. } = self;
        let Some(c) = conns.get_mut(&token) else {
            return;
        };
        let Some(r) = c.relay.as_mut() else {
            return;
        };
        let mut broken = false;
        let mut moved_any = false;
        loop {
            let mut moved = false;
            // Client -> the other process.
            while !c.eof && !broken && r.to_peer.len() - r.sent < RELAY_BUF {
                match c.transport.read(buf) {
                    // A descriptor from the client is closed (dropped).
                    Ok(Input::Data(n, _)) => {
                        r.to_peer.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Ok(Input::Eof) => c.eof = true,
                    Ok(Input::WouldBlock) => break,
                    Ok(Input::Secured(_)) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        if e.kind() == io::ErrorKind::InvalidData {
                            tls_failed(&c.transport, c.addr, &e);
                        }
                        broken = true;
                    }
                }
            }
            while !broken && r.sent < r.to_peer.len() {
                match r.peer.write(&r.to_peer[r.sent..]) {
                    Ok(0) => broken = true,
                    Ok(n) => {
                        r.sent += n;
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => broken = true,
                }
            }
            if r.sent == r.to_peer.len() {
                r.to_peer.clear();
                r.sent = 0;
            }
            // The other process -> client.
            while !r.peer_eof && !broken && c.out.len() - c.sent < RELAY_BUF {
                match r.peer.read(buf) {
                    Ok(0) => r.peer_eof = true,
                    Ok(n) => {
                        c.out.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => broken = true,
                }
            }
            while !broken && c.sent < c.out.len() {
                match c.transport.write(&c.out[c.sent..]) {
                    Ok(0) => broken = true,
                    Ok(n) => {
                        c.sent += n;
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => broken = true,
                }
            }
            if c.sent == c.out.len() {
                c.out.clear();
                c.sent = 0;
            }
            match c.transport.flush_tls() {
                Ok(true) => moved = true,
                Ok(false) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => broken = true,
            }
            moved_any |= moved;
            if broken || !moved {
                break;
            }
        }
        if moved_any {
            c.last_active = Instant::now();
        }
        let client_done = c.eof && r.to_peer.is_empty();
        let peer_done = r.peer_eof && c.out.is_empty() && !c.transport.pending();
        if broken || client_done || peer_done {
            // The other process ended the session: a clean TLS close.
            self.drop_conn(token, peer_done && !broken);
        }
    }
}
