//! Message body receivers: DATA (dot-stuffed, CRLF.CRLF-terminated) and BDAT.
//!
//! Owns the conversion of the bytes that follow a 354 reply (DATA) or a BDAT
//! command into message bytes, and where the message ends, and `BareLfScan`,
//! which finds bare LF in BDAT content across chunk boundaries. It streams: it
//! keeps at most two undecided bytes, never a whole message, and stops exactly
//! at the end so pipelined commands after it are left to the caller. It does
//! not own size limits, header checks, bare-LF policy or storing the message.
//!
//! Standards: RFC 5321 4.1.1.4 (the end of mail data is CRLF "." CRLF), 4.5.2
//! (transparency: a leading "." is removed), 2.3.8 (lines end in CRLF only);
//! RFC 3030 2 (BDAT carries exactly the declared number of octets, no
//! stuffing).
//!
//! Security: SMTP smuggling (CVE-2023-51764, -51765, -51766 family) relies on
//! receivers that accept other end-of-data forms than CR LF "." CR LF. Here
//! only that exact sequence ends a message: "\n.\n", "\r\n.\n", "\n.\r\n" and
//! "\r.\r" are message content. Bare CR and bare LF pass through unchanged and
//! are reported by `bare_cr_seen`/`bare_lf_seen`, so smtpd can refuse messages
//! with bare LF (as Postfix's smtpd_forbid_bare_newline, which is about LF
//! only: a bare CR is accepted, as Postfix does) before relaying them to a
//! server that reads them differently. The state machine is byte-exact
//! across any split of the input.
//!
//! Diagnostics: `bytes_out` counts message octets; the flags above.

/// Result of one `feed` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataProgress {
    /// Input bytes used. When `done`, the rest of the input is not message
    /// data (it is the next pipelined command).
    pub consumed: usize,
    /// The end of the message was reached.
    pub done: bool,
}

/// Where the DATA receiver stands in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Right after CR LF (or at the start): a "." here is special.
    LineStart,
    /// Inside a line.
    Text,
    /// After a CR inside the message (already written out).
    Cr,
    /// After a "." at a line start (held back).
    Dot,
    /// After "." CR at a line start (both held back).
    DotCr,
    /// CR LF "." CR LF seen.
    Done,
}

/// Receiver for the DATA body (RFC 5321 4.1.1.4).
#[derive(Debug, Clone)]
pub struct DataReceiver {
    state: State,
    bytes_out: u64,
    bare_lf: bool,
    bare_cr: bool,
}

impl Default for DataReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl DataReceiver {
    /// A receiver positioned right after the 354 reply. The start counts as
    /// a line start, so ".\r\n" at once is an empty message.
    pub fn new() -> Self {
        Self {
            state: State::LineStart,
            bytes_out: 0,
            bare_lf: false,
            bare_cr: false,
        }
    }

    /// Consume `input`, appending unstuffed message bytes to `out`.
    ///
    /// Stops right after the end-of-data marker. Output never exceeds input:
    /// at most the two held-back bytes of "." CR are decided later.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataProgress {
        let before = out.len();
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            if self.state == State::Text {
                // Fast path: copy up to the next CR or LF in one go.
                let run = find_cr_or_lf(&input[i..]);
                let end = run.map_or(input.len(), |n| i + n);
                out.extend_from_slice(&input[i..end]);
                i = end;
                if i == input.len() {
                    break;
                }
            }
            self.step(input[i], out);
            i += 1;
        }
        self.bytes_out += (out.len() - before) as u64;
        DataProgress {
            consumed: i,
            done: self.state == State::Done,
        }
    }

    /// One byte through the state machine.
    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        use State::*;
        self.state = match (self.state, b) {
            // RFC 5321 4.5.2: a "." first on a line is held until we know
            // whether it is the end marker or a stuffed dot.
            (LineStart, b'.') => Dot,
            (LineStart | Text, b'\r') => {
                out.push(b'\r');
                Cr
            }
            (LineStart | Text, b'\n') => {
                // A bare LF is not a line end (RFC 5321 2.3.8).
                self.bare_lf = true;
                out.push(b'\n');
                Text
            }
            (LineStart | Text, _) => {
                out.push(b);
                Text
            }
            // CR LF: the only line end; the CR LF is message content.
            (Cr, b'\n') => {
                out.push(b'\n');
                LineStart
            }
            (Cr, b'\r') => {
                self.bare_cr = true;
                out.push(b'\r');
                Cr
            }
            (Cr, _) => {
                self.bare_cr = true;
                out.push(b);
                Text
            }
            // "." CR at a line start: maybe the end.
            (Dot, b'\r') => DotCr,
            // A leading "." not followed by CR LF is removed (4.5.2); the
            // next byte is ordinary text, so "\r\n.\n" does not end anything.
            (Dot, b'\n') => {
                self.bare_lf = true;
                out.push(b'\n');
                Text
            }
            (Dot, _) => {
                out.push(b);
                Text
            }
            // RFC 5321 4.1.1.4: CR LF "." CR LF ends the mail data.
            (DotCr, b'\n') => Done,
            // "." CR followed by something else: the dot goes, the CR is a
            // bare CR, and the byte is read as following that CR.
            (DotCr, b'\r') => {
                self.bare_cr = true;
                out.extend_from_slice(b"\r\r");
                Cr
            }
            (DotCr, _) => {
                self.bare_cr = true;
                out.push(b'\r');
                out.push(b);
                Text
            }
            (Done, _) => Done,
        };
    }

    /// The end-of-data marker has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Message octets written to `out` so far (for size limits and logs).
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    /// An LF not preceded by CR was part of the message.
    pub fn bare_lf_seen(&self) -> bool {
        self.bare_lf
    }

    /// A CR not followed by LF was part of the message.
    pub fn bare_cr_seen(&self) -> bool {
        self.bare_cr
    }
}

/// Receiver for one BDAT chunk (RFC 3030 2): exactly `size` octets, raw.
#[derive(Debug, Clone)]
pub struct BdatReceiver {
    remaining: u64,
    bytes_out: u64,
}

impl BdatReceiver {
    /// A receiver for a chunk of `size` octets; `size` 0 is done at once.
    pub fn new(size: u64) -> Self {
        Self {
            remaining: size,
            bytes_out: 0,
        }
    }

    /// Copy up to the rest of the chunk from `input` to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataProgress {
        // Bounded by input.len(), so the conversion back to usize is exact.
        let n = self.remaining.min(input.len() as u64) as usize;
        out.extend_from_slice(&input[..n]);
        self.remaining -= n as u64;
        self.bytes_out += n as u64;
        DataProgress {
            consumed: n,
            done: self.remaining == 0,
        }
    }

    /// Octets of the chunk still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The whole chunk has arrived.
    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }

    /// Octets copied so far.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }
}

/// The first CR or LF in `s`, eight bytes at a time (a byte loop costs
/// several instructions per byte of every message).
fn find_cr_or_lf(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = s.chunks_exact(8);
    let mut at = 0;
    for w in words.by_ref() {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let w = u64::from_le_bytes(b);
        // Zero bytes of cr and lf are the CRs and LFs of w (the has-zero-
        // byte test: its lowest flagged byte is always a real one).
        let (cr, lf) = (w ^ (ONES * 0x0d), w ^ (ONES * 0x0a));
        let hit = (cr.wrapping_sub(ONES) & !cr | lf.wrapping_sub(ONES) & !lf) & HIGH;
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = words.remainder();
    tail.iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|i| at + i)
}

/// Finds bare LF (an LF not right after a CR, RFC 5321 2.3.8) in raw message
/// bytes that arrive in pieces, such as the chunks of a BDAT message (RFC
/// 3030 2), where a CR at the end of one chunk and an LF at the start of the
/// next are one CRLF.
#[derive(Debug, Clone, Copy, Default)]
pub struct BareLfScan {
    prev_cr: bool,
    seen: bool,
}

impl BareLfScan {
    /// A scanner at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Look at the next message bytes.
    pub fn scan(&mut self, bytes: &[u8]) {
        if !self.seen {
            for (i, _) in bytes.iter().enumerate().filter(|(_, &b)| b == b'\n') {
                let after_cr = match i.checked_sub(1) {
                    Some(p) => bytes[p] == b'\r',
                    None => self.prev_cr,
                };
                if !after_cr {
                    self.seen = true;
                    break;
                }
            }
        }
        if let Some(&last) = bytes.last() {
            self.prev_cr = last == b'\r';
        }
    }

    /// A bare LF was among the bytes scanned.
    pub fn seen(&self) -> bool {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, expected output, expected consumed, expected done)
    type Case = (&'static [u8], &'static [u8], usize, bool);

    const CASES: &[Case] = &[
        // Ordinary messages.
        (b".\r\n", b"", 3, true),
        (b"a\r\n.\r\n", b"a\r\n", 6, true),
        (b"\r\n.\r\n", b"\r\n", 5, true),
        (
            b"Subject: x\r\n\r\nbody\r\n.\r\n",
            b"Subject: x\r\n\r\nbody\r\n",
            23,
            true,
        ),
        // Dot-unstuffing (RFC 5321 4.5.2).
        (b"..\r\n.\r\n", b".\r\n", 7, true),
        (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n", 10, true),
        (b"a\r\n.b\r\n.\r\n", b"a\r\nb\r\n", 10, true),
        (b"a\r\n...\r\n.\r\n", b"a\r\n..\r\n", 11, true),
        (b"a.b\r\nc.\r\n.\r\n", b"a.b\r\nc.\r\n", 12, true),
        // Pipelined command after the end stays unconsumed.
        (b"a\r\n.\r\nQUIT\r\n", b"a\r\n", 6, true),
        (b".\r\nMAIL FROM:<x@y.org>\r\n", b"", 3, true),
        // Smuggling attempts: none of these ends the message.
        (b"a\n.\nb\r\n.\r\n", b"a\n.\nb\r\n", 10, true),
        (b"a\r\n.\nb\r\n.\r\n", b"a\r\n\nb\r\n", 11, true),
        (b"a\n.\r\nb\r\n.\r\n", b"a\n.\r\nb\r\n", 11, true),
        (b"a\r.\rb\r\n.\r\n", b"a\r.\rb\r\n", 10, true),
        (b"a\r.\r\nb\r\n.\r\n", b"a\r.\r\nb\r\n", 11, true),
        (b"a\r\n.\r.\r\n.\r\n", b"a\r\n\r.\r\n", 11, true),
        (b"a\r\n.\r\r\n.\r\n", b"a\r\n\r\r\n", 10, true),
        (b"\n.\r\n.\r\n", b"\n.\r\n", 7, true),
        (b"a\r\n.\n.\r\n", b"a\r\n\n.\r\n", 8, false),
        (
            b"a\r\n.\nMAIL FROM:<evil@x.org>\r\n",
            b"a\r\n\nMAIL FROM:<evil@x.org>\r\n",
            29,
            false,
        ),
        (b"a\n.\n", b"a\n.\n", 4, false),
        (b"a\r\n.\n", b"a\r\n\n", 5, false),
        (b"a\n.\r\n", b"a\n.\r\n", 5, false),
        (b"a\r.\r", b"a\r.\r", 4, false),
        (b"\r\r\n.\r\n", b"\r\r\n", 6, true),
        // Incomplete: the held-back "." CR is not output yet.
        (b"a\r\n.\r", b"a\r\n", 5, false),
        (b"a\r\n.", b"a\r\n", 4, false),
        (b"a\r\n", b"a\r\n", 3, false),
        (b"", b"", 0, false),
        // Binary bytes pass through.
        (b"\x00\xff\x80\r\n.\r\n", b"\x00\xff\x80\r\n", 8, true),
    ];

    fn feed_pieces(input: &[u8], cuts: &[usize]) -> (Vec<u8>, usize, bool, u64) {
        let mut rx = DataReceiver::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        let mut done = false;
        let mut bounds = cuts.to_vec();
        bounds.push(input.len());
        let mut from = 0;
        for to in bounds {
            if done {
                break;
            }
            let piece = &input[from..to];
            let before = out.len();
            let p = rx.feed(piece, &mut out);
            // Output never grows beyond what was fed.
            assert!(out.len() - before <= piece.len() + 2);
            assert!(out.len() <= consumed + p.consumed);
            consumed += p.consumed;
            done = p.done;
            if !done {
                assert_eq!(p.consumed, piece.len());
            }
            from = to;
        }
        (out, consumed, done, rx.bytes_out())
    }

    #[test]
    fn table_whole_input() {
        for &(input, want, consumed, done) in CASES {
            let (out, c, d, n) = feed_pieces(input, &[]);
            assert_eq!(
                (out.as_slice(), c, d),
                (want, consumed, done),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(n, want.len() as u64);
        }
    }

    /// Every split into two and three pieces, and byte by byte, gives the same
    /// result as one feed.
    #[test]
    fn every_split_point() {
        for &(input, want, consumed, done) in CASES {
            let expect = (want.to_vec(), consumed, done, want.len() as u64);
            let n = input.len();
            for a in 0..=n {
                assert_eq!(feed_pieces(input, &[a]), expect, "{input:?} cut at {a}");
                for b in a..=n {
                    assert_eq!(
                        feed_pieces(input, &[a, b]),
                        expect,
                        "{input:?} cut at {a},{b}"
                    );
                }
            }
            let all: Vec<usize> = (1..n).collect();
            assert_eq!(feed_pieces(input, &all), expect, "{input:?} byte by byte");
        }
    }

    #[test]
    fn done_consumes_nothing_more() {
        let mut rx = DataReceiver::new();
        let mut out = Vec::new();
        assert_eq!(
            rx.feed(b".\r\n", &mut out),
            DataProgress {
                consumed: 3,
                done: true
            }
        );
        assert!(rx.is_done());
        assert_eq!(
            rx.feed(b"more", &mut out),
            DataProgress {
                consumed: 0,
                done: true
            }
        );
        assert!(out.is_empty());
    }

    #[test]
    fn bare_line_end_flags() {
        let table: &[(&[u8], bool, bool)] = &[
            (b"a\r\nb\r\n.\r\n", false, false),
            (b"a\nb\r\n.\r\n", true, false),
            (b"a\rb\r\n.\r\n", false, true),
            (b"a\r\n.\nb\r\n.\r\n", true, false),
            (b"a\r\n.\rb\r\n.\r\n", false, true),
            (b"a\r\r\n.\r\n", false, true),
        ];
        for &(input, lf, cr) in table {
            let mut rx = DataReceiver::new();
            let mut out = Vec::new();
            for &b in input {
                rx.feed(&[b], &mut out);
            }
            assert!(rx.is_done(), "{input:?}");
            assert_eq!(
                (rx.bare_lf_seen(), rx.bare_cr_seen()),
                (lf, cr),
                "{input:?}"
            );
        }
    }

    #[test]
    fn large_message_streams() {
        let mut rx = DataReceiver::new();
        let line = b"0123456789abcdefghijklmnopqrstuvwxyz.\r\n";
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let p = rx.feed(line, &mut out);
            assert_eq!(
                p,
                DataProgress {
                    consumed: line.len(),
                    done: false
                }
            );
            assert_eq!(out, line);
            out.clear();
        }
        assert!(rx.feed(b".\r\n", &mut out).done);
        assert_eq!(rx.bytes_out(), 10_000 * line.len() as u64);
    }

    #[test]
    fn bdat_table() {
        // (size, pieces, expected output, consumed per piece, done after each)
        type BdatCase = (
            u64,
            &'static [&'static [u8]],
            &'static [u8],
            &'static [usize],
            &'static [bool],
        );
        let table: &[BdatCase] = &[
            (0, &[b"QUIT\r\n"], b"", &[0], &[true]),
            (5, &[b"hello"], b"hello", &[5], &[true]),
            (5, &[b"he", b"llo"], b"hello", &[2, 3], &[false, true]),
            (5, &[b"hello world"], b"hello", &[5], &[true]),
            (7, &[b"a\r\n.\r\n"], b"a\r\n.\r\n", &[6], &[false]),
            (
                3,
                &[b"", b"..", b".\r\nQUIT"],
                b"...",
                &[0, 2, 1],
                &[false, false, true],
            ),
        ];
        for &(size, pieces, want, consumed, done) in table {
            let mut rx = BdatReceiver::new(size);
            let mut out = Vec::new();
            for (i, piece) in pieces.iter().enumerate() {
                let p = rx.feed(piece, &mut out);
                assert_eq!(
                    p,
                    DataProgress {
                        consumed: consumed[i],
                        done: done[i]
                    },
                    "{size} {i}"
                );
            }
            assert_eq!(out, want);
            assert_eq!(rx.bytes_out(), want.len() as u64);
            assert_eq!(rx.remaining(), size - want.len() as u64);
        }
    }

    /// Bare LF in pieces: a CR LF split across pieces is not bare, a bare CR
    /// is not a bare LF, and every split gives the answer of one piece.
    #[test]
    fn bare_lf_scan() {
        let table: &[(&[u8], bool)] = &[
            (b"", false),
            (b"a\r\nb\r\n", false),
            (b"\r\n", false),
            (b"a\rb\r\r\n", false),
            (b"\r", false),
            (b"\n", true),
            (b"a\nb", true),
            (b"a\r\n\n", true),
            (b"a\r\r\n\nb", true),
            (b"\r\n.\n", true),
        ];
        for &(input, want) in table {
            for cut in 0..=input.len() {
                let mut scan = BareLfScan::new();
                scan.scan(&input[..cut]);
                scan.scan(&input[cut..]);
                assert_eq!(scan.seen(), want, "{input:?} cut at {cut}");
            }
            let mut scan = BareLfScan::new();
            input
                .iter()
                .for_each(|b| scan.scan(std::slice::from_ref(b)));
            assert_eq!(scan.seen(), want, "{input:?} byte by byte");
        }
    }

    #[test]
    fn bdat_huge_size_does_not_overflow() {
        let mut rx = BdatReceiver::new(u64::MAX);
        let mut out = Vec::new();
        assert_eq!(
            rx.feed(b"abc", &mut out),
            DataProgress {
                consumed: 3,
                done: false
            }
        );
        assert_eq!(rx.remaining(), u64::MAX - 3);
    }

    #[test]
    fn find_cr_or_lf_finds_the_first() {
        // Neighbours of CR and LF (0x09, 0x0b, 0x0c, 0x0e, 0x8a, 0x8d) do not count.
        let fill = [b'x', 0x09, 0x0b, 0x0c, 0x0e, 0x8a, 0x8d];
        for len in 0..40 {
            for at in 0..=len {
                for end in [b'\r', b'\n'] {
                    let mut v: Vec<u8> = (0..len).map(|i| fill[i % fill.len()]).collect();
                    if at < len {
                        v[at] = end;
                        if at + 2 < len {
                            v[at + 2] = b'\r' + b'\n' - end;
                        }
                    }
                    let want = v.iter().position(|&b| b == b'\r' || b == b'\n');
                    assert_eq!(super::find_cr_or_lf(&v), want, "len {len}, at {at}");
                }
            }
        }
    }
}
