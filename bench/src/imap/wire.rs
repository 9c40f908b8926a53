//! The client side of the IMAP wire: whole responses with their literals,
//! and the few response shapes the load generator looks into.
//!
//! Owns reading one response (a line, and when it ends in a literal `{N}`,
//! exactly N octets and the rest of the response after them, as often as
//! needed), telling tagged, untagged and continuation responses apart, and
//! parsing the values of a FETCH response (atoms, numbers, quoted strings,
//! literals, parenthesized lists, NIL). Does not own the conversation
//! (`session`, `idle`); does no writing.
//!
//! Standards: RFC 3501 2.2.2 (tagged, untagged and continuation responses),
//! 4.3 (literals `{N}` CRLF and N octets; `{N+}` of RFC 7888 and `~{N}` of
//! RFC 3516 are read the same way), 7.1 (status responses), 7.3.1 (EXISTS),
//! 7.4.2 (FETCH response), 9 (formal syntax of `msg-att`).
//!
//! Security: the peer is the server under test, but reads are bounded: a
//! line (with the continuation lines of its literals) by `MAX_LINE`, one
//! literal by `MAX_LITERAL`; malformed data ends in `WireError::Bad`.
//!
//! Diagnostics: returns `WireError`; logs nothing.

use std::fmt;
use std::io::{self, BufRead, Read};

use posthorn_bench::line::{self, chomp, is_timeout, LineError};

/// Longest response text (without its literals) accepted. A SEARCH of
/// 1,000 messages is about 5 KB.
pub const MAX_LINE: usize = 1 << 20;

/// Largest literal accepted: far above the benchmark's 12 KiB messages.
pub const MAX_LITERAL: u64 = 64 << 20;

/// What went wrong on the wire.
#[derive(Debug)]
pub enum WireError {
    Io(io::Error),
    /// The server closed the connection before a complete response.
    Closed,
    /// A line or a literal beyond its bound (the bound).
    TooLong(u64),
    /// A response that is not IMAP (what was wrong).
    Bad(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Io(e) if is_timeout(e) => write!(f, "no reply within --timeout seconds"),
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Closed => write!(f, "connection closed by the server"),
            WireError::TooLong(max) => write!(f, "line or literal longer than {max} octets"),
            WireError::Bad(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<LineError> for WireError {
    fn from(e: LineError) -> Self {
        match e {
            LineError::Io(e) => WireError::Io(e),
            LineError::Closed => WireError::Closed,
            LineError::TooLong(max) => WireError::TooLong(max as u64),
        }
    }
}

impl WireError {
    /// True for a socket time-out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, WireError::Io(e) if is_timeout(e))
    }
}

/// One whole response: its text, line ends removed, with each literal's
/// `{N}` left in place, and the literals' octets in order.
#[derive(Debug, Default)]
pub struct Response {
    pub text: Vec<u8>,
    pub literals: Vec<Vec<u8>>,
    /// Literals in use (`literals` keeps its buffers between responses).
    used: usize,
}

impl Response {
    pub fn literal(&self, i: usize) -> Option<&[u8]> {
        self.literals[..self.used].get(i).map(Vec::as_slice)
    }

    /// The text for error messages: at most 200 characters.
    pub fn shown(&self) -> String {
        String::from_utf8_lossy(&self.text)
            .chars()
            .take(200)
            .collect()
    }
}

/// Reads one response into `resp`. RFC 3501 4.3: a line that ends in
/// `{N}` is followed by N octets, then the response goes on.
pub fn read_response<R: BufRead>(r: &mut R, resp: &mut Response) -> Result<(), WireError> {
    resp.text.clear();
    resp.used = 0;
    loop {
        let start = resp.text.len();
        line::append_line(r, &mut resp.text, MAX_LINE)?;
        let end = start + chomp(&resp.text[start..]).len();
        resp.text.truncate(end);
        let Some(n) = literal_at_end(&resp.text) else {
            return Ok(());
        };
        if n > MAX_LITERAL {
            return Err(WireError::TooLong(MAX_LITERAL));
        }
        if resp.used == resp.literals.len() {
            resp.literals.push(Vec::new());
        }
        let lit = &mut resp.literals[resp.used];
        lit.clear();
        let got = r.by_ref().take(n).read_to_end(lit).map_err(WireError::Io)?;
        if (got as u64) < n {
            return Err(WireError::Closed);
        }
        resp.used += 1;
    }
}

/// N when `text` ends in a literal's `{N}` (or `{N+}`).
fn literal_at_end(text: &[u8]) -> Option<u64> {
    let body = text.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Status of a tagged or untagged status response (RFC 3501 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
    Preauth,
}

/// What kind of response `resp` is.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// `+ ...`: the server waits for more from the client.
    Continuation,
    /// A status response with our tag: its status and text.
    Tagged(Status, &'a [u8]),
    /// `* N EXISTS`
    Exists(u32),
    /// `* N RECENT`
    Recent(u32),
    /// `* N EXPUNGE`
    Expunge(u32),
    /// `* N FETCH (...)`: the number and the text from the parenthesis on.
    Fetch(u32, &'a [u8]),
    /// `* SEARCH n n ...`: the numbers' text.
    Search(&'a [u8]),
    /// `* OK|NO|BAD|BYE|PREAUTH text`
    Status(Status, &'a [u8]),
    /// Any other untagged response (FLAGS, CAPABILITY, LIST, ...).
    Other,
}

/// Classifies `resp`; a tagged response with another tag than `tag`, or a
/// line that is none of the three kinds, is `Bad`.
pub fn classify<'a>(resp: &'a Response, tag: &str) -> Result<Kind<'a>, WireError> {
    let t = resp.text.as_slice();
    let bad = || WireError::Bad(format!("not an IMAP response: {:?}", resp.shown()));
    if t.starts_with(b"+") {
        return Ok(Kind::Continuation);
    }
    if let Some(rest) = t.strip_prefix(b"* ") {
        let (first, after) = split_word(rest);
        if let Some(n) = number(first) {
            let (name, data) = split_word(after);
            let n = u32::try_from(n).map_err(|_| bad())?;
            return Ok(match name.to_ascii_uppercase().as_slice() {
                b"EXISTS" => Kind::Exists(n),
                b"RECENT" => Kind::Recent(n),
                b"EXPUNGE" => Kind::Expunge(n),
                b"FETCH" => Kind::Fetch(n, data),
                _ => Kind::Other,
            });
        }
        return Ok(match status(first) {
            Some(s) => Kind::Status(s, after),
            None if first.eq_ignore_ascii_case(b"SEARCH") => Kind::Search(after),
            None => Kind::Other,
        });
    }
    let (first, after) = split_word(t);
    if first == tag.as_bytes() {
        let (word, text) = split_word(after);
        return match status(word) {
            Some(s @ (Status::Ok | Status::No | Status::Bad)) => Ok(Kind::Tagged(s, text)),
            _ => Err(bad()),
        };
    }
    Err(WireError::Bad(format!(
        "response with tag {:?}, expected {tag}: {:?}",
        String::from_utf8_lossy(first),
        resp.shown()
    )))
}

fn status(word: &[u8]) -> Option<Status> {
    Some(match word.to_ascii_uppercase().as_slice() {
        b"OK" => Status::Ok,
        b"NO" => Status::No,
        b"BAD" => Status::Bad,
        b"BYE" => Status::Bye,
        b"PREAUTH" => Status::Preauth,
        _ => return None,
    })
}

/// The first word (up to a space) and the rest after the space.
fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

/// A decimal number of up to 19 digits (RFC 3501 9 `number`).
pub fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// A value in a FETCH response (RFC 3501 9: `nstring`, `number`, lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// An atom or number, with a section (`BODY[]`) kept whole.
    Atom(&'a [u8]),
    /// A quoted string as sent, escapes not undone.
    Quoted(&'a [u8]),
    /// The i-th literal of the response.
    Literal(usize),
    List(Vec<Value<'a>>),
    Nil,
}

impl Value<'_> {
    pub fn number(&self) -> Option<u64> {
        match self {
            Value::Atom(a) => number(a),
            _ => None,
        }
    }
}

/// The `(name value name value ...)` of a FETCH response, in order; names
/// in upper case as sent. The parser counts the literals it passes, so
/// `Value::Literal(i)` is `resp.literal(i)` when `data` is the `Kind::Fetch`
/// text and no literal came before it in the response.
pub fn fetch_items(data: &[u8]) -> Result<Vec<(&[u8], Value<'_>)>, WireError> {
    let mut p = Parser {
        s: data,
        pos: 0,
        lit: 0,
    };
    let Value::List(items) = p.value()? else {
        return Err(p.bad("expected a parenthesized list"));
    };
    if p.pos != data.len() {
        return Err(p.bad("text after the list"));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let Some(name) = it.next() {
        let Value::Atom(name) = name else {
            return Err(p.bad("an item name that is not an atom"));
        };
        let value = it.next().ok_or_else(|| p.bad("an item without a value"))?;
        out.push((name, value));
    }
    Ok(out)
}

/// A recursive-descent reader of RFC 3501 9 values.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    lit: usize,
}

impl<'a> Parser<'a> {
    fn bad(&self, what: &str) -> WireError {
        WireError::Bad(format!(
            "FETCH data: {what} at octet {} of {:?}",
            self.pos,
            String::from_utf8_lossy(&self.s[..self.s.len().min(200)])
        ))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn value(&mut self) -> Result<Value<'a>, WireError> {
        match self.peek() {
            None => Err(self.bad("a value missing")),
            Some(b'(') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    match self.peek() {
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(Value::List(items));
                        }
                        Some(b' ') if !items.is_empty() => self.pos += 1,
                        None => return Err(self.bad("an unclosed list")),
                        _ => {}
                    }
                    items.push(self.value()?);
                    if !matches!(self.peek(), Some(b' ' | b')')) {
                        return Err(self.bad("no space between values"));
                    }
                }
            }
            Some(b'"') => {
                let start = self.pos + 1;
                let mut i = start;
                while i < self.s.len() {
                    match self.s[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            self.pos = i + 1;
                            return Ok(Value::Quoted(&self.s[start..i]));
                        }
                        _ => i += 1,
                    }
                }
                Err(self.bad("an unterminated quoted string"))
            }
            Some(b'{' | b'~') => {
                let rest = &self.s[self.pos..];
                let rest = rest.strip_prefix(b"~").unwrap_or(rest);
                let close = rest
                    .iter()
                    .position(|&b| b == b'}')
                    .ok_or_else(|| self.bad("an unclosed literal"))?;
                literal_at_end(&rest[..=close]).ok_or_else(|| self.bad("a bad literal"))?;
                self.pos = self.s.len() - rest.len() + close + 1;
                self.lit += 1;
                Ok(Value::Literal(self.lit - 1))
            }
            Some(_) => {
                let start = self.pos;
                let mut depth = 0usize;
                while let Some(b) = self.peek() {
                    match b {
                        b'[' => depth += 1,
                        b']' => depth = depth.saturating_sub(1),
                        b' ' | b'(' | b')' if depth == 0 => break,
                        _ => {}
                    }
                    self.pos += 1;
                }
                let atom = &self.s[start..self.pos];
                if atom.is_empty() {
                    return Err(self.bad("an empty atom"));
                }
                if atom.eq_ignore_ascii_case(b"NIL") {
                    Ok(Value::Nil)
                } else {
                    Ok(Value::Atom(atom))
                }
            }
        }
    }
}

/// The numbers of a `* SEARCH` response (RFC 3501 7.2.5), in order.
pub fn search_numbers(data: &[u8]) -> Result<Vec<u32>, WireError> {
    data.split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .map(|w| {
            number(w)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    WireError::Bad(format!(
                        "SEARCH: {:?} is not a message number",
                        String::from_utf8_lossy(w)
                    ))
                })
        })
        .collect()
}

/// `s` as an IMAP quoted string (RFC 3501 9 `quoted`).
pub fn quoted(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            o.push('\\');
        }
        o.push(c);
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn read_all(wire: &[u8]) -> Vec<(String, Vec<Vec<u8>>)> {
        // A tiny buffer, so lines and literals cross fill_buf boundaries.
        let mut r = BufReader::with_capacity(3, wire);
        let mut resp = Response::default();
        let mut out = Vec::new();
        while read_response(&mut r, &mut resp).is_ok() {
            let lits = (0..resp.used)
                .map(|i| resp.literal(i).unwrap().to_vec())
                .collect();
            out.push((String::from_utf8(resp.text.clone()).unwrap(), lits));
        }
        out
    }

    #[test]
    fn responses_with_literals_stay_in_step() {
        let wire = b"* 3 FETCH (UID 7 BODY[] {13}\r\nab\r\n{3}\r\nxy\r\n FLAGS (\\Seen))\r\n\
                     * 4 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {0}\r\n)\r\n\
                     a5 OK Fetch completed.\r\n";
        let got = read_all(wire);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0].0, "* 3 FETCH (UID 7 BODY[] {13} FLAGS (\\Seen))",
            "literal text removed, the rest joined"
        );
        assert_eq!(got[0].1, vec![b"ab\r\n{3}\r\nxy\r\n".to_vec()]);
        assert_eq!(got[1].1, vec![Vec::<u8>::new()]);
        assert_eq!(got[2].0, "a5 OK Fetch completed.");
    }

    #[test]
    fn literal_markers() {
        for (t, want) in [
            (&b"x {12}"[..], Some(12)),
            (b"x {0}", Some(0)),
            (b"x {5+}", Some(5)),
            (b"x ~{5}", Some(5)),
            (b"x {}", None),
            (b"x {a}", None),
            (b"x }", None),
            (b"x {12} y", None),
        ] {
            assert_eq!(literal_at_end(t), want, "{t:?}");
        }
    }

    #[test]
    fn truncated_literal_is_closed_and_huge_one_refused() {
        let mut resp = Response::default();
        let mut r = BufReader::new(&b"* 1 FETCH (BODY[] {10}\r\nabc"[..]);
        assert!(matches!(
            read_response(&mut r, &mut resp),
            Err(WireError::Closed)
        ));
        let mut r = BufReader::new(&b"* 1 FETCH (BODY[] {999999999999}\r\n"[..]);
        assert!(matches!(
            read_response(&mut r, &mut resp),
            Err(WireError::TooLong(_))
        ));
    }

    fn resp(text: &str) -> Response {
        Response {
            text: text.as_bytes().to_vec(),
            ..Response::default()
        }
    }

    #[test]
    fn kinds() {
        let cases: &[(&str, Kind)] = &[
            ("+ go ahead", Kind::Continuation),
            ("* 1000 EXISTS", Kind::Exists(1000)),
            ("* 0 RECENT", Kind::Recent(0)),
            ("* 5 expunge", Kind::Expunge(5)),
            ("* 2 FETCH (UID 4)", Kind::Fetch(2, b"(UID 4)")),
            ("* SEARCH 1 2 3", Kind::Search(b"1 2 3")),
            ("* SEARCH", Kind::Search(b"")),
            (
                "* OK [UIDVALIDITY 3] UIDs valid",
                Kind::Status(Status::Ok, b"[UIDVALIDITY 3] UIDs valid"),
            ),
            (
                "* BYE Logging out",
                Kind::Status(Status::Bye, b"Logging out"),
            ),
            ("* FLAGS (\\Seen)", Kind::Other),
            ("* CAPABILITY IMAP4rev1", Kind::Other),
            (
                "a7 OK [READ-WRITE] Select completed.",
                Kind::Tagged(Status::Ok, b"[READ-WRITE] Select completed."),
            ),
            ("a7 no nope", Kind::Tagged(Status::No, b"nope")),
        ];
        for (line, want) in cases {
            let r = resp(line);
            assert_eq!(&classify(&r, "a7").unwrap(), want, "{line}");
        }
        for line in [
            "a6 OK wrong tag",
            "a7 BYE no",
            "hello",
            "a7",
            "* x99 EXISTS",
        ] {
            let r = resp(line);
            let got = classify(&r, "a7");
            assert!(
                matches!(got, Err(WireError::Bad(_)) | Ok(Kind::Other)),
                "{line}: {got:?}"
            );
        }
        assert!(classify(&resp("a6 OK wrong tag"), "a7").is_err());
    }

    #[test]
    fn fetch_items_parse() {
        let items =
            fetch_items(b"(FLAGS (\\Seen \\Answered) UID 17 RFC822.SIZE 4711 BODY[] {4711})")
                .unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].0, b"FLAGS");
        assert_eq!(
            items[0].1,
            Value::List(vec![Value::Atom(b"\\Seen"), Value::Atom(b"\\Answered")])
        );
        assert_eq!(items[1].1.number(), Some(17));
        assert_eq!(items[2].1.number(), Some(4711));
        assert_eq!(items[3], (&b"BODY[]"[..], Value::Literal(0)));
        let items = fetch_items(
            b"(BODY[HEADER.FIELDS (SUBJECT FROM)] {10} X \"q\\\"s\" Y NIL Z ~{3} FLAGS ())",
        )
        .unwrap();
        assert_eq!(
            items[0],
            (
                &b"BODY[HEADER.FIELDS (SUBJECT FROM)]"[..],
                Value::Literal(0)
            )
        );
        assert_eq!(items[1].1, Value::Quoted(b"q\\\"s"));
        assert_eq!(items[2].1, Value::Nil);
        assert_eq!(items[3].1, Value::Literal(1));
        assert_eq!(items[4].1, Value::List(vec![]));
        for bad in [
            &b"UID 4"[..],
            b"(UID 4",
            b"(UID)",
            b"(UID 4) x",
            b"(\"a\" 4)",
            b"(X \"open)",
            b"(X {3)",
            b"(X (a)(b))",
            b"",
        ] {
            assert!(
                fetch_items(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn search_and_quoting() {
        assert_eq!(search_numbers(b"1 5 1000").unwrap(), vec![1, 5, 1000]);
        assert_eq!(search_numbers(b"").unwrap(), Vec::<u32>::new());
        assert!(search_numbers(b"1 x").is_err());
        assert!(search_numbers(b"0").is_err());
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
