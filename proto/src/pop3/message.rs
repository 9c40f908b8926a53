//! The body of a RETR or TOP response, written as the message streams in.
//!
//! Owns the transformation from message bytes as stored (LF or CRLF line
//! ends, in pieces of any size) to the wire form of a multi-line response:
//! CRLF line ends, byte-stuffed lines, a final CRLF when the message lacks
//! one, and the terminating `.` line; for TOP, the cut after the header, the
//! blank line and n body lines. It does not own reading the message (pop3d
//! does, in chunks) nor the `+OK` line before the body.
//!
//! Standards: RFC 1939 3 (multi-line responses: CRLF, byte-stuffing of a
//! leading termination octet, the `.` CRLF terminator), 5 (RETR: the
//! message), 7 (TOP: the headers, the blank line, then n lines of body);
//! RFC 5322 2.1 (CRLF lines), 2.2 and 2.3 (the header ends at the first
//! empty line).
//!
//! A bare LF becomes CRLF; a bare CR is kept as it is (it ends no line, so
//! no byte-stuffing follows it). The octet count (`octets`) is that of the
//! message with LF turned into CRLF, before byte-stuffing and without the
//! added final CRLF: what RFC 1939 5 calls the message size, and what a
//! Maildir's `,W=` virtual size records (each LF counted as two octets), so
//! LIST, STAT and `+OK n octets` agree with what RETR sends.
//!
//! Security: the input is a stored message, which anyone could have sent: no
//! line in it can end the response early (byte-stuffing), and memory use is
//! the output of one piece (at most twice its size).
//!
//! Diagnostics: none; `octets` and `sent` for the caller's counters.

/// What is known of the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Nothing yet.
    Empty,
    /// Just one CR so far (an empty line if an LF follows).
    Cr,
    /// Some content.
    Content,
}

/// Streams one message into a RETR or TOP response body.
#[derive(Debug, Clone)]
pub struct MessageWriter {
    /// TOP's n; None for RETR.
    body_lines: Option<u64>,
    /// Past the empty line that ends the header.
    in_body: bool,
    /// The next byte starts a line.
    at_line_start: bool,
    line: Line,
    /// The previous input byte (0 before the first).
    last: u8,
    /// TOP has all its lines: no more input is taken.
    done: bool,
    /// Octets of the CRLF-converted message so far, before byte-stuffing.
    octets: u64,
    /// Octets written to the output so far.
    sent: u64,
    /// `finish` has run.
    finished: bool,
}

impl MessageWriter {
    /// The whole message (RETR).
    pub fn retr() -> MessageWriter {
        MessageWriter::new(None)
    }

    /// The header, the empty line and `lines` lines of the body (TOP).
    pub fn top(lines: u64) -> MessageWriter {
        MessageWriter::new(Some(lines))
    }

    fn new(body_lines: Option<u64>) -> MessageWriter {
        MessageWriter {
            body_lines,
            in_body: false,
            at_line_start: true,
            line: Line::Empty,
            last: 0,
            done: false,
            octets: 0,
            sent: 0,
            finished: false,
        }
    }

    /// Convert the next piece of the message into `out`. After `is_done`
    /// (TOP has its lines) input is ignored.
    pub fn write(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let before = out.len();
        let mut rest = input;
        while !rest.is_empty() && !self.done {
            let lf = rest.iter().position(|&b| b == b'\n');
            let seg = &rest[..lf.unwrap_or(rest.len())];
            if let Some(&first) = seg.first() {
                // RFC 1939 3: a line starting with "." gets another "." in
                // front; un-stuffing removes it, so it is not message size.
                if self.at_line_start && first == b'.' {
                    out.push(b'.');
                }
                out.extend_from_slice(seg);
                self.octets += seg.len() as u64;
                self.at_line_start = false;
                self.line = match (self.line, seg) {
                    (Line::Empty, b"\r") => Line::Cr,
                    _ => Line::Content,
                };
                self.last = seg[seg.len() - 1];
            }
            let Some(lf) = lf else { break };
            // RFC 1939 3 / RFC 5322 2.1: lines end in CRLF; an LF stored
            // without its CR gets one.
            if self.last == b'\r' {
                out.push(b'\n');
                self.octets += 1;
            } else {
                out.extend_from_slice(b"\r\n");
                self.octets += 2;
            }
            self.last = b'\n';
            self.end_of_line();
            rest = &rest[lf + 1..];
        }
        self.sent += (out.len() - before) as u64;
    }

    /// A line ended: count it toward TOP's header and body.
    fn end_of_line(&mut self) {
        if !self.in_body {
            // RFC 5322 2.2: the header ends at the first empty line.
            if self.line != Line::Content {
                self.in_body = true;
                self.done = self.body_lines == Some(0);
            }
        } else if let Some(n) = self.body_lines.as_mut() {
            *n = n.saturating_sub(1);
            self.done = *n == 0;
        }
        self.at_line_start = true;
        self.line = Line::Empty;
    }

    /// TOP has written all the lines it was asked for: feed no more.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// End the response: a CRLF when the message did not end with one, then
    /// the `.` CRLF terminator (RFC 1939 3). An empty message gets only the
    /// terminator. Later calls write nothing.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        if self.octets > 0 && self.last != b'\n' {
            out.extend_from_slice(b"\r\n");
            self.sent += 2;
        }
        out.extend_from_slice(b".\r\n");
    }

    /// Octets of the message taken so far, LF counted as CRLF, before
    /// byte-stuffing: for RETR of the whole message, the size LIST reports.
    pub fn octets(&self) -> u64 {
        self.octets
    }

    /// Octets written so far: the message as sent (byte-stuffed, with the
    /// added final CRLF), without the terminator.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write `msg` in pieces cut at `cuts` (sorted offsets), then finish.
    fn run(mut w: MessageWriter, msg: &[u8], cuts: &[usize]) -> (Vec<u8>, u64, u64) {
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&msg.len())) {
            w.write(&msg[at..c], &mut out);
            at = c;
        }
        w.finish(&mut out);
        w.finish(&mut out);
        (out, w.octets(), w.sent())
    }

    fn retr(msg: &[u8]) -> Vec<u8> {
        run(MessageWriter::retr(), msg, &[]).0
    }

    /// The reference: LF to CRLF (a CR already before it kept), nothing else.
    fn crlf(msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut last = 0u8;
        for &b in msg {
            if b == b'\n' && last != b'\r' {
                out.push(b'\r');
            }
            out.push(b);
            last = b;
        }
        out
    }

    /// The client's side (RFC 1939 3): lines up to the "." line, each with
    /// one leading "." removed; the CRLF before the terminator kept.
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        assert!(wire.ends_with(b".\r\n"), "no terminator: {wire:?}");
        let body = &wire[..wire.len() - 3];
        assert!(
            body.is_empty() || body.ends_with(b"\r\n"),
            "terminator not at a line start: {wire:?}"
        );
        let mut out = Vec::new();
        let mut start = true;
        for (i, &b) in body.iter().enumerate() {
            if start && b == b'.' {
                assert_eq!(body.get(i + 1), Some(&b'.'), "unstuffed dot: {wire:?}");
                start = false;
                continue;
            }
            out.push(b);
            start = b == b'\n';
        }
        out
    }

    /// No bare LF and no un-stuffed "." line start in the body.
    fn assert_wire_form(wire: &[u8]) {
        for (i, &b) in wire.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && wire[i - 1] == b'\r', "bare LF in {wire:?}");
            }
        }
        let body = &wire[..wire.len() - 3];
        for line in body.split(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                assert_eq!(line.get(1), Some(&b'.'), "unstuffed line in {wire:?}");
            }
        }
    }

    #[test]
    fn retr_table() {
        let table: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a\n", b"a\r\n.\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b"a\nb", b"a\r\nb\r\n.\r\n"),
            (b".\n", b"..\r\n.\r\n"),
            (b".", b"..\r\n.\r\n"),
            (b"a\n.\n", b"a\r\n..\r\n.\r\n"),
            (b"a\r\n..b\r\n", b"a\r\n...b\r\n.\r\n"),
            (b"a.\n.b", b"a.\r\n..b\r\n.\r\n"),
            (b"\n", b"\r\n.\r\n"),
            (b"\n\n", b"\r\n\r\n.\r\n"),
            // A bare CR ends no line: kept, no stuffing after it.
            (b"a\rb\n", b"a\rb\r\n.\r\n"),
            (b"a\r.b\n", b"a\r.b\r\n.\r\n"),
            (b"a\r", b"a\r\r\n.\r\n"),
            (b"\r", b"\r\r\n.\r\n"),
            (b"a\r\r\n", b"a\r\r\n.\r\n"),
            (b"\r\n.\r\n", b"\r\n..\r\n.\r\n"),
        ];
        for (msg, want) in table {
            let got = retr(msg);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want),
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
    }

    #[test]
    fn top_table() {
        let msg: &[u8] = b"Subject: x\nFrom: a\n\nline 1\n.line 2\nline 3\n";
        let table: &[(u64, &[u8])] = &[
            (0, b"Subject: x\r\nFrom: a\r\n\r\n.\r\n"),
            (1, b"Subject: x\r\nFrom: a\r\n\r\nline 1\r\n.\r\n"),
            (
                2,
                b"Subject: x\r\nFrom: a\r\n\r\nline 1\r\n..line 2\r\n.\r\n",
            ),
            (
                3,
                b"Subject: x\r\nFrom: a\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n.\r\n",
            ),
            (
                4,
                b"Subject: x\r\nFrom: a\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n.\r\n",
            ),
            (
                u64::MAX,
                b"Subject: x\r\nFrom: a\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n.\r\n",
            ),
        ];
        for (n, want) in table {
            for cuts in [&[][..], &[1, 19, 20, 21, 27]] {
                let (got, _, _) = run(MessageWriter::top(*n), msg, cuts);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(want),
                    "TOP {n} cut at {cuts:?}"
                );
            }
        }
        // CRLF on disk, and the blank line as CRLF split from its CR.
        let crlf_msg: &[u8] = b"A: 1\r\n\r\nbody\r\nmore\r\n";
        for cuts in [&[][..], &[6], &[7], &[5, 6, 7, 8]] {
            let (got, _, _) = run(MessageWriter::top(1), crlf_msg, cuts);
            assert_eq!(got, b"A: 1\r\n\r\nbody\r\n.\r\n", "cuts {cuts:?}");
        }
        // No empty line: the whole message is header.
        assert_eq!(
            run(MessageWriter::top(0), b"A: 1\nB: 2", &[]).0,
            b"A: 1\r\nB: 2\r\n.\r\n"
        );
        // An empty line first: no header, the body starts at once.
        assert_eq!(
            run(MessageWriter::top(1), b"\nbody\nmore\n", &[]).0,
            b"\r\nbody\r\n.\r\n"
        );
        // A line of one bare CR is not the empty line (it has content).
        assert_eq!(
            run(MessageWriter::top(0), b"A: 1\n\r\rx\n\nbody\n", &[]).0,
            b"A: 1\r\n\r\rx\r\n\r\n.\r\n"
        );
        // A line holding only "\r" before its LF is an empty line (CRLF).
        assert_eq!(
            run(MessageWriter::top(0), b"A: 1\n\r\nbody\n", &[5]).0,
            b"A: 1\r\n\r\n.\r\n"
        );
    }

    #[test]
    fn octets_and_sent() {
        let (out, octets, sent) = run(MessageWriter::retr(), b".a\nb", &[]);
        assert_eq!(out, b"..a\r\nb\r\n.\r\n");
        assert_eq!(octets, 5); // ".a\r\nb"
        assert_eq!(sent, 8); // "..a\r\nb\r\n"
        let (_, octets, sent) = run(MessageWriter::retr(), b"", &[]);
        assert_eq!((octets, sent), (0, 0));
    }

    /// A small deterministic generator (xorshift64*), so the property test
    /// needs no dependency and reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// For any message and any split: the same output as in one piece;
    /// un-stuffing gives the CRLF-converted message (plus a CRLF when it
    /// did not end in one); `octets` is its length; the wire form has no
    /// bare LF and no unstuffed dot.
    #[test]
    fn any_split_same_output_and_unstuffs() {
        let alphabet = [b'a', b'.', b'\n', b'\r', b' ', b'\n', b'.'];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..3000 {
            let len = rng.below(40) as usize;
            let msg: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect();
            let whole = run(MessageWriter::retr(), &msg, &[]);
            let mut cuts: Vec<usize> = (0..rng.below(6))
                .map(|_| rng.below(len as u64 + 1) as usize)
                .collect();
            cuts.sort_unstable();
            let split = run(MessageWriter::retr(), &msg, &cuts);
            assert_eq!(whole, split, "round {round}: {msg:?} cut at {cuts:?}");
            let mut want = crlf(&msg);
            assert_eq!(whole.1, want.len() as u64, "octets of {msg:?}");
            if !want.is_empty() && !want.ends_with(b"\n") {
                want.extend_from_slice(b"\r\n");
            }
            assert_eq!(unstuff(&whole.0), want, "round {round}: {msg:?}");
            assert_wire_form(&whole.0);
            assert_eq!(whole.2, whole.0.len() as u64 - 3, "sent of {msg:?}");
            // TOP gives a prefix of the RETR body (whole lines), same for any split.
            let n = rng.below(4);
            let top = run(MessageWriter::top(n), &msg, &[]);
            assert_eq!(
                top,
                run(MessageWriter::top(n), &msg, &cuts),
                "TOP {n} {msg:?}"
            );
            let top_body = unstuff(&top.0);
            assert!(want.starts_with(&top_body[..top_body.len().saturating_sub(2)]));
            assert_wire_form(&top.0);
        }
    }

    /// Every split point of every message in a small exhaustive set.
    #[test]
    fn every_two_piece_split() {
        let alphabet = [b'.', b'\n', b'\r', b'x'];
        // All messages of length up to 6 over the alphabet.
        for len in 0..=6u32 {
            for code in 0..4usize.pow(len) {
                let mut c = code;
                let msg: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[c % 4];
                        c /= 4;
                        b
                    })
                    .collect();
                let whole = run(MessageWriter::retr(), &msg, &[]);
                for cut in 0..=msg.len() {
                    assert_eq!(whole, run(MessageWriter::retr(), &msg, &[cut]), "{msg:?}");
                }
                for n in 0..3 {
                    let top = run(MessageWriter::top(n), &msg, &[]);
                    for cut in 0..=msg.len() {
                        assert_eq!(top, run(MessageWriter::top(n), &msg, &[cut]), "{msg:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn large_message_streams_in_pieces() {
        let line = b"0123456789 abcdefghij .x\n";
        let mut msg = Vec::new();
        while msg.len() < 300_000 {
            msg.extend_from_slice(b".");
            msg.extend_from_slice(line);
        }
        let mut w = MessageWriter::retr();
        let mut out = Vec::new();
        let mut biggest = 0;
        for piece in msg.chunks(65536) {
            let mut chunk = Vec::new();
            w.write(piece, &mut chunk);
            biggest = biggest.max(chunk.len());
            out.extend_from_slice(&chunk);
        }
        w.finish(&mut out);
        assert!(biggest <= 2 * 65536);
        assert_eq!(unstuff(&out), crlf(&msg));
        assert_eq!(w.octets(), crlf(&msg).len() as u64);
    }
}
