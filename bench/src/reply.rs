//! SMTP reply reading for the load generator: one reply, single- or multi-line.
//!
//! Owns splitting a reply line into code, continuation mark and text, and
//! gathering the lines of one reply. Does not own sockets or the command
//! sequence (see `client`).
//!
//! Standards: RFC 5321 4.2 (reply syntax), 4.2.1 (multi-line replies: every
//! line but the last has `-` after the code, all lines carry the same code).
//!
//! Security: the server under test is trusted only as far as it is bounded:
//! lines longer than `MAX_LINE` bytes and replies with more than `MAX_LINES`
//! lines are errors, never unbounded buffers.
//!
//! Diagnostics: malformed replies come back as `io::ErrorKind::InvalidData`
//! with the offending line in the message.

use std::fmt;
use std::io::{self, BufRead, Read};

/// Longest reply line accepted, CRLF included (RFC 5321 4.5.3.1.5 says 512;
/// be lenient with servers that send longer EHLO lines).
const MAX_LINE: u64 = 4096;

/// Most lines accepted in one multi-line reply.
const MAX_LINES: usize = 200;

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

/// One parsed reply line.
#[derive(Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub code: u16,
    /// True when another line of the same reply follows (`250-`).
    pub more: bool,
    pub text: &'a str,
}

/// Parses one reply line; trailing CRLF or LF is ignored.
pub fn parse_line(line: &str) -> Result<Line<'_>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let bytes = line.as_bytes();
    // RFC 5321 4.2: Reply-code = %x32-35 %x30-35 %x30-39
    if bytes.len() < 3
        || !(b'2'..=b'5').contains(&bytes[0])
        || !bytes[1].is_ascii_digit()
        || !bytes[2].is_ascii_digit()
    {
        return Err(format!("malformed reply line {line:?}"));
    }
    let code = u16::from(bytes[0] - b'0') * 100
        + u16::from(bytes[1] - b'0') * 10
        + u16::from(bytes[2] - b'0');
    let (more, text) = match bytes.get(3) {
        None => (false, ""),
        Some(b' ') => (false, &line[4..]),
        Some(b'-') => (true, &line[4..]),
        Some(_) => return Err(format!("malformed reply line {line:?}")),
    };
    Ok(Line { code, more, text })
}

/// Reads one complete reply, following `-` continuation lines.
pub fn read_reply<R: BufRead>(r: &mut R) -> io::Result<Reply> {
    let mut lines = Vec::new();
    let mut code = None;
    let mut buf = Vec::with_capacity(128);
    loop {
        buf.clear();
        let n = r.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed while waiting for a reply",
            ));
        }
        if buf.last() != Some(&b'\n') {
            return Err(invalid(if n as u64 >= MAX_LINE {
                "reply line too long".to_string()
            } else {
                "connection closed in the middle of a reply line".to_string()
            }));
        }
        let text = String::from_utf8_lossy(&buf);
        let line = parse_line(&text).map_err(invalid)?;
        match code {
            None => code = Some(line.code),
            // RFC 5321 4.2.1: all lines of a multi-line reply share one code.
            Some(c) if c != line.code => {
                return Err(invalid(format!(
                    "reply code changed from {c} to {} inside one reply",
                    line.code
                )))
            }
            Some(_) => {}
        }
        lines.push(line.text.to_string());
        if !line.more {
            break;
        }
        if lines.len() >= MAX_LINES {
            return Err(invalid(format!("reply longer than {MAX_LINES} lines")));
        }
    }
    Ok(Reply {
        // Set on the first pass through the loop, which always runs.
        code: code.unwrap_or(0),
        lines,
    })
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn parse_line_table() {
        let ok = [
            ("250 OK\r\n", 250, false, "OK"),
            ("250-PIPELINING\r\n", 250, true, "PIPELINING"),
            ("354\r\n", 354, false, ""),
            ("221 2.0.0 Bye", 221, false, "2.0.0 Bye"),
            (
                "550 5.1.1 <x@y>: unknown\n",
                550,
                false,
                "5.1.1 <x@y>: unknown",
            ),
        ];
        for (input, code, more, text) in ok {
            assert_eq!(
                parse_line(input),
                Ok(Line { code, more, text }),
                "{input:?}"
            );
        }
        for bad in ["", "25", "ABC ok", "150 no", "650 no", "250xOK", "2a0 OK"] {
            assert!(parse_line(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn multi_line_ehlo_reply() {
        let wire = "250-mail.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
                    250 8BITMIME\r\n220 next reply\r\n";
        let mut r = Cursor::new(wire.as_bytes());
        let reply = read_reply(&mut r).unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(
            reply.lines,
            [
                "mail.example.test",
                "PIPELINING",
                "SIZE 10240000",
                "8BITMIME"
            ]
        );
        // The following reply is left in the stream, untouched.
        let next = read_reply(&mut r).unwrap();
        assert_eq!(next.code, 220);
        assert_eq!(next.lines, ["next reply"]);
    }

    #[test]
    fn code_change_inside_reply_is_an_error() {
        let mut r = Cursor::new(&b"250-first\r\n251 second\r\n"[..]);
        let err = read_reply(&mut r).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn eof_and_truncation_are_errors() {
        let mut empty = Cursor::new(&b""[..]);
        assert_eq!(
            read_reply(&mut empty).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let mut cut = Cursor::new(&b"250-more\r\n250 trunc"[..]);
        assert!(read_reply(&mut cut).is_err());
    }

    #[test]
    fn overlong_line_is_an_error() {
        let long = format!("250 {}\r\n", "x".repeat(MAX_LINE as usize));
        let mut r = Cursor::new(long.into_bytes());
        assert_eq!(
            read_reply(&mut r).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
