//! SMTP reply reading for the load generator: one reply, single- or multi-line.
//!
//! Owns turning a connection's bytes into replies with proto's client-side
//! reader (`proto::smtp::client::ReplyReader`, the one posthorn-smtp uses:
//! bounded lines and replies, one code per reply) and keeping what arrived
//! beyond a reply for the next. Does not own sockets' setup or the command
//! sequence (see `client`).
//!
//! Standards: RFC 5321 4.2 (reply syntax), 4.2.1 (multi-line replies).
//!
//! Diagnostics: malformed replies come back as `io::ErrorKind::InvalidData`
//! with the reader's reason; the connection closing before a whole reply as
//! `UnexpectedEof`.

use std::fmt;
use std::io::{self, Read};

use proto::smtp::client::ReplyReader;

/// One complete SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Text of each line, without code, separator or CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    /// True for a positive completion reply (2yz).
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// The replies coming from `inner`, in order.
pub struct Replies<R> {
    inner: R,
    reader: ReplyReader,
}

impl<R: Read> Replies<R> {
    pub fn new(inner: R) -> Replies<R> {
        Replies {
            inner,
            reader: ReplyReader::new(),
        }
    }

    /// The next whole reply.
    pub fn read_reply(&mut self) -> io::Result<Reply> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(r) = self.reader.next_reply() {
                let r = r.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                return Ok(Reply {
                    code: r.code,
                    lines: r.lines,
                });
            }
            match self.inner.read(&mut buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed while waiting for a reply",
                    ))
                }
                Ok(n) => self.reader.feed(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(wire: &[u8]) -> Replies<&[u8]> {
        Replies::new(wire)
    }

    #[test]
    fn multi_line_and_pipelined_replies() {
        let mut r = replies(
            b"250-mail.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n354 go\r\n250 2.0.0 Ok\r\n",
        );
        let ehlo = r.read_reply().unwrap();
        assert_eq!(ehlo.code, 250);
        assert_eq!(ehlo.lines, ["mail.example", "PIPELINING", "SIZE 1000"]);
        assert_eq!(r.read_reply().unwrap().code, 354);
        let ok = r.read_reply().unwrap();
        assert!(ok.is_positive());
        assert_eq!(ok.to_string(), "250 2.0.0 Ok");
    }

    #[test]
    fn malformed_and_cut_replies_are_errors() {
        let e = replies(b"250-a\r\n251 b\r\n").read_reply().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "code changed: {e}");
        let e = replies(b"hello\r\n").read_reply().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let e = replies(b"250-a\r\n").read_reply().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let long = [b"250 ".as_slice(), &[b'x'; 100_000], b"\r\n"].concat();
        assert!(replies(&long).read_reply().is_err(), "an unbounded line");
    }
}
