//! Bounded line reading for the load generators' clients, and their
//! connections.
//!
//! Owns opening a client connection (TCP_NODELAY, read and write time-outs,
//! a second handle for writing), reading one line through its LF from a
//! buffered stream, with a bound on its length, and the line without its
//! line end. Does not own what a
//! line means (each protocol's `wire` module).
//!
//! Security: the peer is the server under test, but lines are still bounded:
//! a server that never sends a line end costs at most `max` octets of memory
//! and ends in `LineError::TooLong`.
//!
//! Diagnostics: returns `LineError`; logs nothing.

use std::fmt;
use std::io::{self, BufRead};
use std::net::TcpStream;
use std::time::Duration;

/// What went wrong while reading a line.
#[derive(Debug)]
pub enum LineError {
    Io(io::Error),
    /// The server closed the connection before a complete line.
    Closed,
    /// A line longer than the bound (its value) without a line end.
    TooLong(usize),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Io(e) if is_timeout(e) => write!(f, "no reply within --timeout seconds"),
            LineError::Io(e) => write!(f, "{e}"),
            LineError::Closed => write!(f, "connection closed by the server"),
            LineError::TooLong(max) => write!(f, "line longer than {max} octets"),
        }
    }
}

impl std::error::Error for LineError {}

impl From<io::Error> for LineError {
    fn from(e: io::Error) -> Self {
        LineError::Io(e)
    }
}

/// Connects to `host:port` with TCP_NODELAY and `timeout` on reads and
/// writes; returns the stream to read from and a handle to write to.
pub fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<(TcpStream, TcpStream)> {
    let s = TcpStream::connect((host, port))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let w = s.try_clone()?;
    Ok((s, w))
}

/// True for what a read or write timeout on a socket looks like.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads one line, through its LF, into `buf` (cleared first). At most `max`
/// octets; EOF before the LF is `Closed`.
pub fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> Result<(), LineError> {
    buf.clear();
    append_line(r, buf, max)
}

/// Like `read_line`, but appends to `buf`; `max` bounds the whole of `buf`.
pub fn append_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> Result<(), LineError> {
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if avail.is_empty() {
            return Err(LineError::Closed);
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if buf.len() + take > max {
            return Err(LineError::TooLong(max));
        }
        buf.extend_from_slice(&avail[..take]);
        r.consume(take);
        if done {
            return Ok(());
        }
    }
}

/// `line` without its CRLF (or bare LF).
pub fn chomp(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn lines_across_buffer_boundaries_bounded() {
        let mut r = BufReader::with_capacity(3, &b"one\r\ntwo\nthree"[..]);
        let mut buf = Vec::new();
        read_line(&mut r, &mut buf, 10).unwrap();
        assert_eq!(buf, b"one\r\n");
        assert_eq!(chomp(&buf), b"one");
        append_line(&mut r, &mut buf, 10).unwrap();
        assert_eq!(buf, b"one\r\ntwo\n");
        assert!(matches!(
            read_line(&mut r, &mut buf, 10),
            Err(LineError::Closed)
        ));
        let mut r = BufReader::with_capacity(3, &b"0123456789ab\n"[..]);
        assert!(matches!(
            read_line(&mut r, &mut buf, 10),
            Err(LineError::TooLong(10))
        ));
        assert!(buf.len() <= 10);
    }
}
