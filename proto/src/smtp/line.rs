//! Bounded command line splitter: input bytes in, command lines out.
//!
//! Owns the buffer where received bytes wait until they form a command line,
//! including pipelined commands (RFC 2920) and any message bytes the client
//! sent right behind a DATA/BDAT command, which `take_buffered` hands over. It
//! does not own reading from the socket or deciding when the session leaves
//! command mode.
//!
//! Standards: RFC 5321 2.3.8 (lines end in CRLF), 4.5.3.1.4 (a command line
//! is at most 512 octets including CRLF), 4.5.3.1.10 ("500 Line too long");
//! RFC 2920 3.1 (the server must buffer pipelined commands).
//!
//! Security: a line ends at LF; a CR right before the LF is removed, any other
//! CR stays in the line (the command parser then refuses it). A line longer
//! than the limit is reported once and the rest of it is dropped as it
//! arrives, so a client that never sends LF costs at most `max_len` bytes
//! here, provided the caller drains `next_line` after each `push`.
//!
//! Diagnostics: `LineTooLong` for the caller to answer with `reply()` and log.

use std::fmt;

use super::reply::Reply;

/// A command line exceeded the limit; its bytes were discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

impl LineTooLong {
    /// RFC 5321 4.5.3.1.10: "500 Line too long".
    pub fn reply(&self) -> Reply {
        Reply::new(500, Some("5.5.2"), "Error: line too long")
    }
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("command line too long")
    }
}

impl std::error::Error for LineTooLong {}

/// Splits buffered input into command lines of at most `max_len` octets.
#[derive(Debug, Clone)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Bytes before `start` are consumed lines, dropped on the next `push`.
    start: usize,
    /// Longest line accepted, terminator included.
    max_len: usize,
    /// Dropping the rest of an over-long line up to and including its LF.
    discarding: bool,
    /// An over-long line was cut in `push`; `next_line` must report it.
    pending_error: bool,
}

impl LineBuffer {
    /// `max_len` counts the whole line with its CRLF (or LF); use
    /// `super::MAX_COMMAND_LINE` for RFC 5321's 512.
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_len,
            discarding: false,
            pending_error: false,
        }
    }

    /// Change the longest line from now on (SMTP AUTH: RFC 4954 4 response
    /// lines of up to 12288 octets, then back to 512). What is buffered
    /// stays; a partial line already past a lower limit is then too long.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Append received bytes. Call `next_line` until it returns None before
    /// the next `push`, so that an unterminated line stays bounded. When a
    /// line switches the session to DATA or BDAT, call `take_buffered` before
    /// `next_line` or `push` again: the bytes behind that line are message
    /// data, not a command line, and may be longer than `max_len`.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.discarding {
            match data.iter().position(|&b| b == b'\n') {
                Some(lf) => {
                    data = &data[lf + 1..];
                    self.discarding = false;
                }
                None => return,
            }
        }
        self.buf.extend_from_slice(data);
        // When the buffer is one unterminated line, it can be judged now and
        // need not be kept. (With complete lines ahead of it, the bytes may be
        // message data pipelined after BDAT, which only the session knows;
        // `next_line` judges them once the lines ahead are consumed.)
        if self.buf.len() >= self.max_len && !self.buf.contains(&b'\n') {
            self.buf.clear();
            self.discarding = true;
            self.pending_error = true;
        }
    }

    /// The next complete line without its LF or CRLF, None when more input
    /// is needed, or `Err(LineTooLong)` once for each over-long line.
    pub fn next_line(&mut self) -> Option<Result<Vec<u8>, LineTooLong>> {
        if self.pending_error {
            self.pending_error = false;
            return Some(Err(LineTooLong));
        }
        let pending = &self.buf[self.start..];
        match pending.iter().position(|&b| b == b'\n') {
            // RFC 5321 4.5.3.1.4: 512 octets including the terminator.
            Some(lf) if lf + 1 > self.max_len => {
                self.start += lf + 1;
                Some(Err(LineTooLong))
            }
            Some(lf) => {
                let line = &pending[..lf];
                let line = line.strip_suffix(b"\r").unwrap_or(line).to_vec();
                self.start += lf + 1;
                Some(Ok(line))
            }
            // No LF within max_len bytes: the line cannot fit any more.
            None if pending.len() >= self.max_len => {
                self.buf.clear();
                self.start = 0;
                self.discarding = true;
                Some(Err(LineTooLong))
            }
            None => None,
        }
    }

    /// Remove and return all bytes not yet returned as lines, e.g. message
    /// bytes pipelined behind BDAT (RFC 3030 4.2) when leaving command mode.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.start);
        self.buf.clear();
        self.start = 0;
        rest
    }

    /// Number of bytes waiting, not yet returned as lines.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Line = Result<Vec<u8>, LineTooLong>;

    /// Push `pieces` in turn, draining lines after each.
    fn run(max_len: usize, pieces: &[&[u8]]) -> (Vec<Line>, LineBuffer) {
        let mut lb = LineBuffer::new(max_len);
        let mut lines = Vec::new();
        for piece in pieces {
            lb.push(piece);
            while let Some(line) = lb.next_line() {
                lines.push(line);
            }
            assert!(
                lb.buffered_len() < max_len,
                "unterminated line kept beyond max_len"
            );
        }
        (lines, lb)
    }

    fn ok(s: &[u8]) -> Line {
        Ok(s.to_vec())
    }

    #[test]
    fn table() {
        // (max_len, pieces pushed, lines returned, bytes left buffered)
        type LineCase<'a> = (usize, &'a [&'a [u8]], &'a [Line], &'a [u8]);
        let table: &[LineCase<'_>] = &[
            (
                512,
                &[b"EHLO x\r\nMAIL FROM:<a@b.org>\r\n"],
                &[ok(b"EHLO x"), ok(b"MAIL FROM:<a@b.org>")],
                b"",
            ),
            (
                512,
                &[b"NOOP\n", b"QUIT\r\n"],
                &[ok(b"NOOP"), ok(b"QUIT")],
                b"",
            ),
            (512, &[b"EH", b"LO x\r", b"\n"], &[ok(b"EHLO x")], b""),
            (512, &[b"NO\rOP\r\n"], &[ok(b"NO\rOP")], b""),
            (512, &[b"NOOP\r\r\n"], &[ok(b"NOOP\r")], b""),
            (512, &[b"\r\n\n"], &[ok(b""), ok(b"")], b""),
            (512, &[b"NOOP\0x\r\n"], &[ok(b"NOOP\0x")], b""),
            (512, &[b"RSET\r\nMAIL FR"], &[ok(b"RSET")], b"MAIL FR"),
            // Exact bounds (max 8): the terminator counts.
            (8, &[b"1234567\n"], &[ok(b"1234567")], b""),
            (8, &[b"123456\r\n"], &[ok(b"123456")], b""),
            (8, &[b"1234567\r\n"], &[Err(LineTooLong)], b""),
            (8, &[b"12345678\n"], &[Err(LineTooLong)], b""),
            // Over-long line with its end in the same push.
            (
                8,
                &[b"xxxxxxxxxxxxxxxx\r\nNOOP\r\n"],
                &[Err(LineTooLong), ok(b"NOOP")],
                b"",
            ),
            // Over-long line spread over several pushes: one error, rest dropped.
            (
                8,
                &[
                    b"xxxxx",
                    b"xxxxx",
                    b"yyyyyyyyyyyyyyyyyy",
                    b"zz",
                    b"z\r\nNOOP\r\nQU",
                ],
                &[Err(LineTooLong), ok(b"NOOP")],
                b"QU",
            ),
            // The LF of the over-long line arrives alone.
            (
                8,
                &[b"xxxxxxxxxx", b"\n", b"QUIT\n"],
                &[Err(LineTooLong), ok(b"QUIT")],
                b"",
            ),
            // Complete lines first, then an unterminated over-long tail.
            (
                8,
                &[b"NOOP\r\nxxxxxxxxxxxx", b"xx\r\nRSET\r\n"],
                &[ok(b"NOOP"), Err(LineTooLong), ok(b"RSET")],
                b"",
            ),
            // Two over-long lines in a row.
            (
                8,
                &[b"aaaaaaaaaa", b"a\nbbbbbbbbbbbb", b"\nNOOP\n"],
                &[Err(LineTooLong), Err(LineTooLong), ok(b"NOOP")],
                b"",
            ),
        ];
        for (max_len, pieces, want, rest) in table {
            let (lines, mut lb) = run(*max_len, pieces);
            assert_eq!(lines, *want, "{pieces:?}");
            assert_eq!(lb.take_buffered(), *rest, "{pieces:?}");
        }
    }

    #[test]
    fn unterminated_input_stays_bounded() {
        let mut lb = LineBuffer::new(512);
        let chunk = [b'x'; 1000];
        let mut errors = 0;
        for _ in 0..100 {
            lb.push(&chunk);
            while let Some(line) = lb.next_line() {
                assert_eq!(line, Err(LineTooLong));
                errors += 1;
            }
            assert!(lb.buffered_len() < 512);
        }
        assert_eq!(errors, 1);
        lb.push(b"\r\nQUIT\r\n");
        assert_eq!(lb.next_line(), Some(Ok(b"QUIT".to_vec())));
        assert_eq!(lb.next_line(), None);
    }

    /// Regression: message bytes pipelined right behind BDAT (RFC 3030 4.2)
    /// must reach the session intact even when they hold no LF for longer
    /// than a command line may be.
    #[test]
    fn bdat_payload_after_command_is_kept() {
        let mut lb = LineBuffer::new(512);
        let payload = vec![0xa5u8; 2000];
        let mut input = b"BDAT 2000 LAST\r\n".to_vec();
        input.extend_from_slice(&payload);
        input.extend_from_slice(b"QUIT\r\n");
        lb.push(&input);
        assert_eq!(lb.next_line(), Some(Ok(b"BDAT 2000 LAST".to_vec())));
        let rest = lb.take_buffered();
        assert_eq!(&rest[..2000], &payload[..]);
        assert_eq!(&rest[2000..], b"QUIT\r\n");
        assert_eq!(lb.buffered_len(), 0);
        assert_eq!(lb.next_line(), None);
    }

    #[test]
    fn take_buffered_then_continue() {
        let mut lb = LineBuffer::new(512);
        lb.push(b"DATA\r\nSubject: x\r\n");
        assert_eq!(lb.next_line(), Some(Ok(b"DATA".to_vec())));
        assert_eq!(lb.buffered_len(), 12);
        assert_eq!(lb.take_buffered(), b"Subject: x\r\n");
        assert_eq!(lb.buffered_len(), 0);
        lb.push(b"QUIT\r\n");
        assert_eq!(lb.next_line(), Some(Ok(b"QUIT".to_vec())));
    }

    #[test]
    fn reply_text() {
        assert_eq!(
            LineTooLong.reply().to_string(),
            "500 5.5.2 Error: line too long"
        );
    }
}
