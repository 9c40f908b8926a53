//! The client side of the POP3 wire: status lines and multi-line responses.
//!
//! Owns reading one bounded line, recognising `+OK`/`-ERR`, and reading a
//! multi-line response to its terminating `.` line while removing the byte
//! stuffing and counting the octets of the content. Does not own the
//! conversation (see `session`); does no writing.
//!
//! Standards: RFC 1939 3 (status indicators `+OK`/`-ERR`; multi-line
//! responses end with `CRLF.CRLF`, lines that begin with `.` are
//! byte-stuffed), RFC 2449 4 (responses up to 512 octets), RFC 2449 8
//! (response codes such as `[IN-USE]` after the status indicator).
//!
//! Security: the peer is the server under test, but lines are still bounded
//! (`MAX_STATUS_LINE`, `MAX_DATA_LINE`): a server that never sends a line
//! end costs at most that much memory and ends in `WireError::LineTooLong`.
//!
//! Diagnostics: returns `WireError`; logs nothing.

use std::fmt;
use std::io::{self, BufRead};

use posthorn_bench::line::{self, chomp, is_timeout, LineError};

/// Longest status line accepted, CRLF included. RFC 2449 4 allows 512
/// octets; a little slack for servers that add more text.
pub const MAX_STATUS_LINE: usize = 4096;

/// Longest line of a multi-line response. Message lines have no limit in
/// POP3; this bounds memory only.
pub const MAX_DATA_LINE: usize = 1 << 20;

/// What went wrong on the wire.
#[derive(Debug)]
pub enum WireError {
    Io(io::Error),
    /// The server closed the connection before a complete line.
    Closed,
    /// A line longer than the bound (its value) without a line end.
    LineTooLong(usize),
    /// A status line that is neither `+OK` nor `-ERR` (its text).
    BadStatus(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Io(e) if is_timeout(e) => write!(f, "no reply within --timeout seconds"),
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Closed => write!(f, "connection closed by the server"),
            WireError::LineTooLong(max) => write!(f, "line longer than {max} octets"),
            WireError::BadStatus(line) => write!(f, "not a POP3 status line: {line:?}"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        WireError::Io(e)
    }
}

impl From<LineError> for WireError {
    fn from(e: LineError) -> Self {
        match e {
            LineError::Io(e) => WireError::Io(e),
            LineError::Closed => WireError::Closed,
            LineError::TooLong(max) => WireError::LineTooLong(max),
        }
    }
}

impl WireError {
    /// True for a socket time-out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, WireError::Io(e) if is_timeout(e))
    }
}

/// A status line: `+OK` (ok) or `-ERR`, and the text after the indicator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub ok: bool,
    pub text: String,
}

impl Reply {
    /// True when the text starts with the RFC 2449 8.1.1 code `[IN-USE]`.
    pub fn in_use(&self) -> bool {
        !self.ok && self.text.starts_with("[IN-USE]")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ind = if self.ok { "+OK" } else { "-ERR" };
        if self.text.is_empty() {
            write!(f, "{ind}")
        } else {
            write!(f, "{ind} {}", self.text)
        }
    }
}

/// Reads a status line. RFC 1939 3: `+OK` or `-ERR`, upper case, then
/// optionally a space and text.
pub fn read_reply<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> Result<Reply, WireError> {
    line::read_line(r, buf, MAX_STATUS_LINE)?;
    parse_status(chomp(buf))
}

fn parse_status(line: &[u8]) -> Result<Reply, WireError> {
    let text = |rest: &[u8]| String::from_utf8_lossy(rest).into_owned();
    for (ind, ok) in [(&b"+OK"[..], true), (&b"-ERR"[..], false)] {
        if let Some(rest) = line.strip_prefix(ind) {
            match rest.first() {
                None => {
                    return Ok(Reply {
                        ok,
                        text: String::new(),
                    })
                }
                Some(b' ') => {
                    return Ok(Reply {
                        ok,
                        text: text(&rest[1..]),
                    })
                }
                Some(_) => {}
            }
        }
    }
    let shown: String = String::from_utf8_lossy(line).chars().take(200).collect();
    Err(WireError::BadStatus(shown))
}

/// Reads the lines of a multi-line response (after its status line) up to
/// and including the terminating `.` line. Each line is handed to `each`
/// with the byte stuffing removed and without its line end. Returns the
/// octets of the content as the server meant it: unstuffed lines with their
/// line ends as received (CRLF counts 2, a bare LF 1), the terminating line
/// not included. For RETR this is the message size LIST reports (RFC 1939
/// 5: "the exact size of the message in octets").
pub fn read_multiline<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]),
) -> Result<u64, WireError> {
    let mut octets = 0u64;
    loop {
        line::read_line(r, buf, MAX_DATA_LINE)?;
        let content = chomp(buf);
        // RFC 1939 3: a line of just "." ends the response.
        if content == b"." {
            return Ok(octets);
        }
        // RFC 1939 3: a line that begins with "." was byte-stuffed.
        let stuffed = usize::from(buf.first() == Some(&b'.'));
        octets += (buf.len() - stuffed) as u64;
        each(&content[stuffed..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn reader(s: &[u8]) -> BufReader<&[u8]> {
        // A tiny buffer so lines cross fill_buf boundaries.
        BufReader::with_capacity(3, s)
    }

    /// A line and what it parses to: Some((ok, text)), or None for BadStatus.
    type Case<'a> = (&'a [u8], Option<(bool, &'a str)>);

    #[test]
    fn status_lines() {
        let cases: &[Case] = &[
            (b"+OK\r\n", Some((true, ""))),
            (b"+OK 2 320\r\n", Some((true, "2 320"))),
            (
                b"+OK Dovecot (Debian) ready.\r\n",
                Some((true, "Dovecot (Debian) ready.")),
            ),
            (
                b"-ERR [IN-USE] Mailbox locked\r\n",
                Some((false, "[IN-USE] Mailbox locked")),
            ),
            (b"-ERR\n", Some((false, ""))),
            (b"+ok fine\r\n", None),
            (b"+OKAY\r\n", None),
            (b"-ERROR x\r\n", None),
            (b"* OK imap\r\n", None),
            (b"\r\n", None),
        ];
        for (line, want) in cases {
            let mut buf = Vec::new();
            let got = read_reply(&mut reader(line), &mut buf);
            match (got, want) {
                (Ok(r), Some((ok, text))) => {
                    assert_eq!((r.ok, r.text.as_str()), (*ok, *text), "{line:?}")
                }
                (Err(WireError::BadStatus(_)), None) => {}
                (got, want) => panic!("{line:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn in_use_code_is_recognised() {
        let r = Reply {
            ok: false,
            text: "[IN-USE] Do you have another POP session running?".into(),
        };
        assert!(r.in_use());
        assert!(!Reply {
            ok: false,
            text: "[AUTH] Authentication failed.".into()
        }
        .in_use());
        assert_eq!(
            r.to_string(),
            "-ERR [IN-USE] Do you have another POP session running?"
        );
    }

    #[test]
    fn multiline_unstuffs_and_counts_octets() {
        // Content "a\r\n.b\r\n.\r\n\r\nc\r\n" (11 + 4 = 15 octets) stuffed.
        let wire = b"a\r\n..b\r\n..\r\n\r\nc\r\n.\r\n+OK next\r\n";
        let mut r = reader(wire);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        let n = read_multiline(&mut r, &mut buf, |l| lines.push(l.to_vec())).unwrap();
        assert_eq!(n, b"a\r\n.b\r\n.\r\n\r\nc\r\n".len() as u64);
        assert_eq!(lines, [&b"a"[..], b".b", b".", b"", b"c"]);
        // The stream stays in step: the next status line is intact.
        assert_eq!(read_reply(&mut r, &mut buf).unwrap().text, "next");
    }

    #[test]
    fn multiline_counts_bare_lf_as_one_octet() {
        let mut buf = Vec::new();
        let n = read_multiline(&mut reader(b"ab\ncd\r\n.\r\n"), &mut buf, |_| {}).unwrap();
        assert_eq!(n, 3 + 4);
    }

    #[test]
    fn truncated_and_overlong_input() {
        let mut buf = Vec::new();
        assert!(matches!(
            read_multiline(&mut reader(b"line\r\nno end"), &mut buf, |_| {}),
            Err(WireError::Closed)
        ));
        assert!(matches!(
            read_reply(&mut reader(b""), &mut buf),
            Err(WireError::Closed)
        ));
        let long = vec![b'x'; MAX_STATUS_LINE + 10];
        assert!(matches!(
            read_reply(&mut reader(&long), &mut buf),
            Err(WireError::LineTooLong(MAX_STATUS_LINE))
        ));
        assert!(buf.len() <= MAX_STATUS_LINE);
        // Exactly at the bound is fine.
        let mut exact = vec![b'x'; MAX_STATUS_LINE - 2];
        exact.splice(0..4, *b"+OK ");
        exact.extend_from_slice(b"\r\n");
        assert!(read_reply(&mut reader(&exact), &mut buf).unwrap().ok);
    }
}
