//! Moving a connection to another process: sending it (`Next::HandOff`) and
//! receiving it (`Listener::Handoff`).
//!
//! Owns the hand-off message: one common::ipc frame (u32 little-endian
//! length, at most ipc::MAX_FRAME, then the body), given whole by the
//! sending service and delivered whole in `Peer::handoff`, with the
//! connection's descriptor attached to its first byte (SCM_RIGHTS). A plain
//! connection's own socket is sent; a TLS connection cannot move (a rustls
//! session lives in one process), so its plaintext side is a socketpair: one
//! end is sent, the other is relayed by the sender (relay.rs), as Dovecot's
//! login processes proxy TLS.
//!
//! The receiver reads a frame at a time, never past the end of the current
//! frame, so the descriptor that arrives while a frame's bytes are read is
//! that frame's (the kernel attaches it to the first byte of its message and
//! never returns it with bytes of an earlier message).
//!
//! Security: the sender is another posthorn process but not trusted (a
//! login process runs as an unprivileged user): a frame over MAX_FRAME ends
//! the hand-off socket (the stream cannot be resynchronised), a frame
//! without a descriptor is dropped, extra descriptors are closed, and only
//! stream sockets of the TCP and Unix families are adopted. Decoding the
//! frame's body is the receiving service's job (ipc::read_frame bounds it).
//!
//! Diagnostics: the loop logs what `Received::Bad` and `Received::Gone`
//! say, as warnings.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::transport::{Stream, Transport};
use super::Peer;
use crate::ipc::MAX_FRAME;
use crate::privilege;

/// How long a hand-off may block on a receiver that does not read.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes read from the hand-off socket at once.
const READ_CHUNK: usize = 64 * 1024;

/// Make `to` blocking with a time-out: a hand-off is one small message.
fn prepare(to: &UnixStream) -> io::Result<()> {
    to.set_nonblocking(false)?;
    to.set_write_timeout(Some(SEND_TIMEOUT))
}

/// Send a plain connection: `frame` with the socket's own descriptor.
pub(super) fn send_plain(to: &UnixStream, frame: &[u8], sock: BorrowedFd) -> io::Result<()> {
    prepare(to)?;
    privilege::send_fd(to, frame, sock)
}

/// Send a TLS connection's plaintext side: make a socketpair, send `frame`
/// with one end, and return the other (non-blocking) for the relay.
pub(super) fn send_relayed(to: &UnixStream, frame: &[u8]) -> io::Result<mio::net::UnixStream> {
    let (ours, theirs) = UnixStream::pair()?;
    prepare(to)?;
    privilege::send_fd(to, frame, theirs.as_fd())?;
    drop(theirs);
    ours.set_nonblocking(true)?;
    Ok(mio::net::UnixStream::from_std(ours))
}

/// Reassembles frames from a byte stream: a u32 little-endian length and
/// that many bytes, at most ipc::MAX_FRAME. Feed it at most `want()`
/// bytes at a time; it never reads past the end of a frame.
#[derive(Debug, Default)]
pub struct FrameReader {
    head: [u8; 4],
    have_head: usize,
    len: Option<usize>,
    body: Vec<u8>,
}

/// A frame claimed more than ipc::MAX_FRAME bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("hand-off frame of {0} bytes is over the limit")]
pub struct FrameTooLarge(pub usize);

impl FrameReader {
    /// How many bytes the current frame still needs (at least 1).
    pub fn want(&self) -> usize {
        match self.len {
            None => 4 - self.have_head,
            Some(len) => (len - self.body.len()).max(1),
        }
    }

    /// In the middle of a frame (some of it read).
    pub fn partial(&self) -> bool {
        self.have_head > 0
    }

    /// Take `data` (at most `want()` bytes; more is an error of the
    /// caller's and is not read). Returns a complete frame, length prefix
    /// included, when `data` finished one.
    pub fn push(&mut self, mut data: &[u8]) -> Result<Option<Vec<u8>>, FrameTooLarge> {
        if self.len.is_none() {
            let take = data.len().min(4 - self.have_head);
            self.head[self.have_head..self.have_head + take].copy_from_slice(&data[..take]);
            self.have_head += take;
            data = &data[take..];
            if self.have_head < 4 {
                return Ok(None);
            }
            let len = u32::from_le_bytes(self.head) as usize;
            if len > MAX_FRAME {
                return Err(FrameTooLarge(len));
            }
            self.len = Some(len);
        }
        let len = self.len.unwrap_or(0);
        let take = data.len().min(len - self.body.len());
        self.body.extend_from_slice(&data[..take]);
        if self.body.len() < len {
            return Ok(None);
        }
        let mut frame = Vec::with_capacity(4 + len);
        frame.extend_from_slice(&self.head);
        frame.append(&mut self.body);
        *self = FrameReader::default();
        Ok(Some(frame))
    }
}

/// What the hand-off socket gave.
pub(super) enum Received {
    /// A connection: the frame and the descriptor.
    Conn(Vec<u8>, OwnedFd),
    /// Something was wrong with one message; carry on.
    Bad(String),
    /// The sender has gone (end of file), or the stream cannot go on.
    Gone(Option<String>),
    /// Nothing more for now.
    WouldBlock,
}

/// The receiving side of a hand-off socket.
pub(super) struct Receiver {
    pub(super) sock: UnixStream,
    frame: FrameReader,
    fd: Option<OwnedFd>,
    /// The current frame came with more than one descriptor: it is dropped.
    extra: bool,
    buf: Vec<u8>,
}

impl Receiver {
    pub(super) fn new(sock: UnixStream) -> io::Result<Receiver> {
        sock.set_nonblocking(true)?;
        Ok(Receiver {
            sock,
            frame: FrameReader::default(),
            fd: None,
            extra: false,
            buf: vec![0u8; READ_CHUNK],
        })
    }

    /// Read until a frame is complete, something is wrong, or the socket
    /// has nothing more.
    pub(super) fn next(&mut self) -> Received {
        loop {
            let want = self.frame.want().min(READ_CHUNK);
            let (n, fd) = match privilege::recv_fd(&self.sock, &mut self.buf[..want]) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Received::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Received::Gone(Some(format!("hand-off socket: {e}"))),
            };
            if let Some(fd) = fd {
                if self.fd.is_some() {
                    // Closed at once; the frame is dropped when complete.
                    drop(fd);
                    self.extra = true;
                } else {
                    self.fd = Some(fd);
                }
            }
            if n == 0 {
                return Received::Gone(
                    self.frame
                        .partial()
                        .then(|| "hand-off socket closed in the middle of a frame".into()),
                );
            }
            match self.frame.push(&self.buf[..n]) {
                Ok(None) => {}
                Ok(Some(frame)) => {
                    let fd = self.fd.take();
                    if std::mem::take(&mut self.extra) {
                        return Received::Bad("hand-off frame with several descriptors".into());
                    }
                    return match fd {
                        Some(fd) => Received::Conn(frame, fd),
                        None => Received::Bad("hand-off frame without a descriptor".into()),
                    };
                }
                Err(e) => return Received::Gone(Some(e.to_string())),
            }
        }
    }
}

/// Make a received descriptor a connection: TCP (peer address, local port)
/// or Unix, by its socket family; anything else is refused.
pub(super) fn adopt(fd: OwnedFd, frame: Vec<u8>) -> io::Result<(Transport, Peer)> {
    use nix::sys::socket::{getsockopt, sockopt, SockType};
    let ty = getsockopt(&fd, sockopt::SockType).map_err(io::Error::from)?;
    if ty != SockType::Stream {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "handed-off descriptor is not a stream socket",
        ));
    }
    let unix = UnixStream::from(fd);
    if unix.local_addr().is_ok() {
        unix.set_nonblocking(true)?;
        let stream = Stream::Unix(mio::net::UnixStream::from_std(unix));
        let peer = Peer {
            addr: None,
            port: 0,
            tls: false,
            handoff: Some(frame),
            ..Peer::default()
        };
        return Ok((Transport::plain(stream), peer));
    }
    let tcp = std::net::TcpStream::from(OwnedFd::from(unix));
    let local = tcp.local_addr().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "handed-off descriptor is neither a TCP nor a Unix socket",
        )
    })?;
    let remote = tcp.peer_addr()?;
    tcp.set_nonblocking(true)?;
    let _ = tcp.set_nodelay(true);
    let peer = Peer {
        addr: Some(remote.ip().to_canonical()),
        port: local.port(),
        tls: false,
        handoff: Some(frame),
        uid: None,
        local: Some(local.ip().to_canonical()),
        client_port: remote.port(),
    };
    Ok((
        Transport::plain(Stream::Tcp(mio::net::TcpStream::from_std(tcp))),
        peer,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn frames_reassemble_at_any_split() {
        let mut stream = frame(b"first");
        stream.extend(frame(b""));
        stream.extend(frame(&[7u8; 300]));
        for step in [1, 2, 3, 5, 64, 1000] {
            let mut r = FrameReader::default();
            let mut got = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let n = r.want().min(step).min(rest.len());
                if let Some(f) = r.push(&rest[..n]).unwrap() {
                    got.push(f);
                }
                rest = &rest[n..];
            }
            assert_eq!(got, vec![frame(b"first"), frame(b""), frame(&[7u8; 300])]);
            assert!(!r.partial());
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_before_its_body() {
        let mut r = FrameReader::default();
        let len = (MAX_FRAME as u32 + 1).to_le_bytes();
        assert_eq!(r.push(&len), Err(FrameTooLarge(MAX_FRAME + 1)));
    }

    #[test]
    fn descriptors_travel_with_their_frames() {
        let (a, b) = UnixStream::pair().unwrap();
        let (x, _y) = UnixStream::pair().unwrap();
        let mut rx = Receiver::new(b).unwrap();
        // A frame without a descriptor, then one with, then a second
        // descriptor in one frame's bytes, then end of file.
        use std::io::Write;
        (&a).write_all(&frame(b"no fd")).unwrap();
        privilege::send_fd(&a, &frame(b"with fd"), x.as_fd()).unwrap();
        assert!(matches!(rx.next(), Received::Bad(m) if m.contains("without a descriptor")));
        match rx.next() {
            Received::Conn(f, fd) => {
                assert_eq!(f, frame(b"with fd"));
                let (_t, peer) = adopt(fd, f).unwrap();
                assert_eq!(peer.addr, None);
            }
            _ => panic!("expected a connection"),
        }
        assert!(matches!(rx.next(), Received::WouldBlock));
        let f = frame(b"two");
        privilege::send_fd(&a, &f[..2], x.as_fd()).unwrap();
        privilege::send_fd(&a, &f[2..], x.as_fd()).unwrap();
        assert!(matches!(rx.next(), Received::Bad(m) if m.contains("several descriptors")));
        assert!(matches!(rx.next(), Received::WouldBlock));
        (&a).write_all(&[1, 0]).unwrap();
        drop(a);
        assert!(matches!(rx.next(), Received::Gone(Some(m)) if m.contains("middle of a frame")));
    }
}
