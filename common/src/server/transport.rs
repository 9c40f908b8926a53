//! A connection's byte stream: a TCP or Unix socket, in the clear or under
//! TLS (rustls `ServerConnection`), from the first byte (implicit TLS) or
//! from a STARTTLS/STLS on.
//!
//! Owns the TLS record plumbing for the skeleton: reads go socket ->
//! `read_tls` -> `process_new_packets` -> plaintext; writes go plaintext ->
//! the connection's writer -> `write_tls` -> socket. Reports the end of the
//! handshake once (`Input::Secured`), before any plaintext that came with it.
//! Does not own what the bytes mean, nor when to read or write (the loop in
//! mod.rs decides, with its back-pressure).
//!
//! Standards: RFC 8446 and RFC 5246 through rustls; close_notify (RFC 8446
//! 6.1) is sent when the server closes a TLS connection.
//!
//! Security: rustls bounds what it buffers: received plaintext is read out
//! before more TLS records are read, and the records waiting to be sent are
//! limited (rustls's default 64 KiB buffer limit; a full buffer is
//! back-pressure, `WouldBlock`, to the caller). A handshake or record error
//! is returned as `InvalidData` after rustls's alert has been sent.
//!
//! Diagnostics: none of its own; the loop logs errors with the client.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

use crate::tls::TlsInfo;

/// A socket of either family.
pub(super) enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Stream {
    pub(super) fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }

    pub(super) fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What one read gave.
pub(super) enum Input {
    /// This many plaintext bytes are in the buffer, and the descriptor a
    /// peer on a plain Unix socket sent with them (SCM_RIGHTS), if any.
    Data(usize, Option<OwnedFd>),
    /// The TLS handshake has just finished (reported once, before the
    /// first plaintext).
    Secured(TlsInfo),
    /// The client closed its side (or closed TLS without close_notify).
    Eof,
    /// Nothing more for now.
    WouldBlock,
}

struct TlsLayer {
    conn: ServerConnection,
    /// The socket reached end of file.
    sock_eof: bool,
    /// `Input::Secured` was given.
    reported: bool,
    /// Plaintext was written before the handshake finished (rustls holds it
    /// until then).
    early_plaintext: bool,
}

/// The byte stream of one connection.
pub(super) struct Transport {
    sock: Stream,
    tls: Option<Box<TlsLayer>>,
}

impl Transport {
    pub(super) fn plain(sock: Stream) -> Transport {
        Transport { sock, tls: None }
    }

    /// Put TLS on the stream from here on (the server's side of the
    /// handshake begins with the client's hello).
    pub(super) fn start_tls(&mut self, config: &Arc<ServerConfig>) -> Result<(), rustls::Error> {
        let conn = ServerConnection::new(Arc::clone(config))?;
        self.tls = Some(Box::new(TlsLayer {
            conn,
            sock_eof: false,
            reported: false,
            early_plaintext: false,
        }));
        Ok(())
    }

    pub(super) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// TLS is on and its handshake has not finished.
    pub(super) fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.conn.is_handshaking())
    }

    pub(super) fn source(&mut self) -> &mut dyn mio::event::Source {
        self.sock.source()
    }

    pub(super) fn stream(&self) -> &Stream {
        &self.sock
    }

    /// Read what there is: plaintext, the end of the handshake, end of file,
    /// or nothing for now. An `InvalidData` error is a TLS failure.
    pub(super) fn read(&mut self, buf: &mut [u8]) -> io::Result<Input> {
        let Some(t) = self.tls.as_mut() else {
            let got = match &self.sock {
                // recvmsg: a descriptor that comes along is taken, never
                // lost (read(2) would drop it).
                Stream::Unix(s) => crate::privilege::recv_fd_from(s.as_fd(), buf),
                Stream::Tcp(_) => self.sock.read(buf).map(|n| (n, None)),
            };
            return match got {
                Ok((0, None)) => Ok(Input::Eof),
                Ok((n, fd)) => Ok(Input::Data(n, fd)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Input::WouldBlock),
                Err(e) => Err(e),
            };
        };
        loop {
            if !t.reported && !t.conn.is_handshaking() {
                t.reported = true;
                if let Some(info) = TlsInfo::of(&t.conn) {
                    return Ok(Input::Secured(info));
                }
            }
            // Plaintext rustls holds comes first: it must be read out before
            // more records are taken in.
            match t.conn.reader().read(buf) {
                Ok(0) => return Ok(Input::Eof), // close_notify
                Ok(n) => return Ok(Input::Data(n, None)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Input::Eof),
                Err(e) => return Err(e),
            }
            if t.sock_eof {
                return Ok(Input::Eof);
            }
            match t.conn.read_tls(&mut self.sock) {
                Ok(0) => t.sock_eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Input::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = t.conn.process_new_packets() {
                // rustls has queued the alert: send it if the socket takes it.
                let _ = t.conn.write_tls(&mut self.sock);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Write plaintext; returns how much was taken. `WouldBlock` when
    /// nothing could be taken (socket full, or TLS's buffer full).
    pub(super) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.sock.write(buf);
        }
        loop {
            let Some(t) = self.tls.as_mut() else {
                return Err(io::ErrorKind::NotConnected.into());
            };
            let n = t.conn.writer().write(buf)?;
            if n > 0 {
                if t.conn.is_handshaking() {
                    t.early_plaintext = true;
                }
                self.flush_tls()?;
                return Ok(n);
            }
            if !self.flush_tls()? {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }

    /// Send the TLS records waiting (handshake messages, alerts, encrypted
    /// output) as far as the socket takes them. Returns whether any went.
    pub(super) fn flush_tls(&mut self) -> io::Result<bool> {
        let Some(t) = self.tls.as_mut() else {
            return Ok(false);
        };
        let mut progress = false;
        while t.conn.wants_write() {
            match t.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(progress)
    }

    /// Output is still waiting below the plaintext: TLS records not yet on
    /// the socket, or plaintext held until the handshake ends.
    pub(super) fn pending(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.conn.wants_write() || (t.early_plaintext && t.conn.is_handshaking()))
    }

    /// Closing: say close_notify if TLS is on (best effort, never blocks).
    pub(super) fn close_notify(&mut self) {
        if let Some(t) = self.tls.as_mut() {
            if !t.conn.is_handshaking() {
                t.conn.send_close_notify();
                let _ = self.flush_tls();
            }
        }
    }
}
