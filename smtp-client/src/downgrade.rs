//! The 7-bit downgrade: a message with 8-bit content made fit for a server
//! that does not offer 8BITMIME, as Postfix's smtp does (mime_state.c with
//! MIME_OPT_DOWNGRADE).
//!
//! Owns the conversion only: message bytes in (as the queue file keeps
//! them: CRLF line ends as received, dot-stuffing removed; bare LF line ends
//! work too, and the result keeps the message's own), 7-bit message bytes
//! or the reason it cannot be done out. Does not own when to convert (the
//! session decides: 8-bit content, no 8BITMIME, disable_mime_output_conversion
//! = no) or what becomes of a message that cannot be (a bounce, 5.6.3).
//!
//! The MIME structure comes from mail-parser (the offsets of every part's
//! header and body; it is given Content-Type only, so it decodes no body);
//! every byte outside a rewritten part or header is kept as it is.
//! mail-parser takes "--boundary" for a boundary in the middle of a line
//! too, and a part ends there. Each leaf part whose Content-Transfer-Encoding is 8bit, 7bit
//! or absent and whose body has a byte above 127 (or a line over 998
//! octets) is encoded: quoted-printable for text/* (and for a part without
//! Content-Type, which is text/plain, and for message/global, RFC 6532 3.5),
//! base64 for everything else (application/*, image/*, ...: base64 is at
//! most 4/3 of the data where quoted-printable of binary data is nearly 3
//! times, and it is what RFC 2045 6.8 has for data that is not text;
//! Postfix uses quoted-printable for all). A part labelled `binary` is
//! always base64: its bytes (bare CR, LF, NUL) come back exactly. Its
//! Content-Transfer-Encoding header is replaced (or added at the end of its
//! header block). A leaf labelled 8bit that needs no encoding is relabelled
//! 7bit; a multipart or message/rfc822 labelled 8bit or binary becomes 7bit
//! (RFC 2045 6.4: a composite may only carry an identity encoding), and its
//! parts are walked. A message (top level or message/rfc822) whose headers
//! have no MIME-Version gets `MIME-Version: 1.0` when anything in it
//! changed (RFC 2045 4). In a part inside a multipart, an encoded line
//! that would begin with "--" begins with "=2D-": a soft line break can
//! then never make a boundary line of text that was mid-line.
//!
//! It cannot be done, and `downgrade` says why, when a header has a byte
//! above 127 (headers cannot be encoded without rewriting their text, RFC
//! 2047; Postfix sends them as they are, this bounces them, as before this
//! conversion existed), when 8-bit text is outside every part (a
//! multipart's preamble or epilogue), when a part already labelled
//! quoted-printable or base64 (or an unknown encoding) has 8-bit bytes, when
//! a part that may not be encoded (multipart, message/rfc822, /partial,
//! /external-body that mail-parser could not take apart) has them, when a
//! line outside every encoded part is over 998 octets, past MAX_DEPTH
//! levels of nesting, and for a message over MAX_MESSAGE octets (mail-parser
//! needs the whole message in memory; a larger one is refused rather than
//! read into memory).
//!
//! Standards: RFC 2045 (2.7-2.8 7bit and 8bit data, 4 MIME-Version, 6.1-6.4
//! Content-Transfer-Encoding, 6.7 quoted-printable, 6.8 base64), RFC 2046
//! 5.1.1 (boundaries), 5.2 (message/* encodings), RFC 5322 2.1.1 (998
//! octets per line), RFC 6152 (8BITMIME; 3: no 8-bit data to a server
//! without it), RFC 6532 3.5 (message/global may be encoded).
//!
//! Security: the message is untrusted input. Its size is bounded before it
//! is parsed; nesting is bounded; the walk visits each part once (child ids
//! must come after their parent's); every offset is checked against the
//! message, and overlapping edits are an error, never a panic. The result
//! is at most about 3.2 times the input (quoted-printable's worst case).
//!
//! Diagnostics: `Error`, whose text goes into the bounce.

use std::io::{self, Read};

use base64::Engine;
use mail_parser::{Header, HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType};

/// The largest message converted: posthorn-smtp keeps this much of a
/// message in memory (common::spool::MESSAGE_KEPT), and the conversion needs
/// it whole.
pub const MAX_MESSAGE: usize = common::spool::MESSAGE_KEPT;

/// The deepest nesting of multipart and message/rfc822 parts converted
/// (Postfix's mime_nesting_limit).
pub const MAX_DEPTH: usize = 100;

/// RFC 5322 2.1.1: at most 998 octets per line, the line end not counted.
pub const MAX_LINE: usize = 998;

/// Base64 input per line: 57 octets are 76 characters (RFC 2045 6.8).
const BASE64_LINE: usize = 57;

/// Quoted-printable line length given to the encoder: 76 (RFC 2045 6.7
/// rule 5) less the two octets a leading "-" may grow by ("=2D").
const QP_LINE: usize = 74;

/// Why a message cannot be converted to 7-bit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the message is too large to convert ({size} octets, at most {MAX_MESSAGE})")]
    TooLarge { size: u64 },
    #[error("8-bit text in a message header ({0})")]
    EightBitHeader(String),
    #[error("8-bit text outside the MIME parts (a multipart preamble or epilogue)")]
    EightBitOutsideParts,
    #[error("8-bit data in a part with Content-Transfer-Encoding {0}")]
    EightBitEncoded(String),
    #[error("8-bit data in a {0} part, which may not be encoded")]
    NotEncodable(String),
    #[error("a line of more than {MAX_LINE} octets outside the parts that are encoded")]
    LongLine,
    #[error("MIME parts nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
    #[error("the MIME structure cannot be followed")]
    Malformed,
    #[error("cannot read queue file: {0}")]
    Io(#[from] io::Error),
    #[error("disable_mime_output_conversion = yes")]
    Disabled,
}

impl Error {
    /// Might it work another time (the queue file could not be read)?
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Io(_))
    }
}

/// Read the message from `body` (`size` octets, as the queue file says)
/// and convert it.
pub fn read_and_convert(body: &mut dyn Read, size: u64) -> Result<Vec<u8>, Error> {
    if size > MAX_MESSAGE as u64 {
        return Err(Error::TooLarge { size });
    }
    let mut raw = Vec::with_capacity(size as usize);
    body.take(MAX_MESSAGE as u64 + 1).read_to_end(&mut raw)?;
    downgrade(&raw)
}

/// The message in 7-bit form: every byte below 128, every line at most
/// MAX_LINE octets, the same content once decoded.
pub fn downgrade(raw: &[u8]) -> Result<Vec<u8>, Error> {
    if raw.len() > MAX_MESSAGE {
        return Err(Error::TooLarge {
            size: raw.len() as u64,
        });
    }
    let mut w = Walk {
        raw,
        eol: line_end(raw),
        edits: Vec::new(),
    };
    // Only the structure: Content-Type parsed, every other field kept as
    // its offsets. Content-Transfer-Encoding is read here (Cte::of), not
    // by mail-parser, so that it decodes no quoted-printable or base64
    // body (not needed, and its quoted-printable decoder overflows on some
    // input: a panic with overflow checks), and an encoded message/rfc822
    // is walked as the bytes it is.
    let parser = MessageParser::new()
        .header_content_type(HeaderName::ContentType)
        .ignore_header(HeaderName::ContentTransferEncoding)
        .default_header_ignore();
    // A message without a header line is all body (RFC 5322 3.5).
    match parser.parse(raw) {
        Some(m) => w.message(&m, 0, false)?,
        None => w.leaf_body(0, raw.len(), Kind::Text, false, None)?,
    }
    let out = w.apply()?;
    check(&out)?;
    Ok(out)
}

/// How a leaf is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// quoted-printable.
    Text,
    /// base64.
    Binary,
}

/// A Content-Transfer-Encoding, as far as the downgrade cares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cte {
    /// None given: 7bit (RFC 2045 6.1).
    Absent,
    SevenBit,
    EightBit,
    Binary,
    /// quoted-printable, base64 or one this does not know.
    Encoded(String),
}

impl Cte {
    /// The part's last Content-Transfer-Encoding field (as mail-parser
    /// takes the last), its comments and white space left out.
    fn of(raw: &[u8], p: &MessagePart<'_>) -> Cte {
        let Some(h) = p
            .headers
            .iter()
            .rev()
            .find(|h| h.name == HeaderName::ContentTransferEncoding)
        else {
            return Cte::Absent;
        };
        let value = raw
            .get(h.offset_start as usize..h.offset_end as usize)
            .unwrap_or_default();
        let mut v = String::new();
        let mut comment = 0usize;
        for &b in value {
            match b {
                b'(' => comment += 1,
                b')' => comment = comment.saturating_sub(1),
                _ if comment > 0 || b.is_ascii_whitespace() => {}
                _ => v.push(char::from(b.to_ascii_lowercase())),
            }
        }
        match v.as_str() {
            "7bit" => Cte::SevenBit,
            "8bit" => Cte::EightBit,
            "binary" => Cte::Binary,
            _ => Cte::Encoded(v),
        }
    }

    /// An identity encoding that claims more than 7 bits.
    fn is_wide(&self) -> bool {
        matches!(self, Cte::EightBit | Cte::Binary)
    }
}

/// Bytes `start..end` of the message become `with`.
#[derive(Debug)]
struct Edit {
    start: usize,
    end: usize,
    with: Vec<u8>,
}

struct Walk<'r> {
    raw: &'r [u8],
    /// The message's line end, for what is written.
    eol: &'static [u8],
    edits: Vec<Edit>,
}

impl Walk<'_> {
    /// A message (the top level or an inline message/rfc822): its root
    /// part, and MIME-Version when something in it changed.
    fn message(&mut self, m: &Message<'_>, depth: usize, in_multipart: bool) -> Result<(), Error> {
        let Some(root) = m.parts.first() else {
            return Ok(());
        };
        let before = self.edits.len();
        let mut seen = vec![false; m.parts.len()];
        self.part(m, 0, depth, in_multipart, &mut seen)?;
        let has_version = root
            .headers
            .iter()
            .any(|h| h.name == HeaderName::MimeVersion);
        if self.edits.len() > before && !has_version {
            let at = self.header_end(root)?;
            let e = self.insert_header(at, b"MIME-Version: 1.0");
            // Before the Content-Transfer-Encoding added at the same place.
            self.edits.insert(before, e);
        }
        Ok(())
    }

    fn part(
        &mut self,
        m: &Message<'_>,
        id: usize,
        depth: usize,
        in_multipart: bool,
        seen: &mut [bool],
    ) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep);
        }
        let (Some(p), Some(false)) = (m.parts.get(id), seen.get(id).copied()) else {
            return Err(Error::Malformed);
        };
        seen[id] = true;
        self.check_headers(p)?;
        let cte = Cte::of(self.raw, p);
        let (ctype, subtype) = p
            .content_type()
            .map_or((String::new(), String::new()), |c| {
                (
                    c.ctype().to_ascii_lowercase(),
                    c.subtype().unwrap_or_default().to_ascii_lowercase(),
                )
            });
        match &p.body {
            PartType::Multipart(children) if ctype == "multipart" => {
                if cte.is_wide() {
                    self.set_cte(p, b"7bit")?;
                }
                for &c in children {
                    let c = c as usize;
                    // Children come after their parent: a tree, walked once.
                    if c <= id {
                        return Err(Error::Malformed);
                    }
                    self.part(m, c, depth + 1, true, seen)?;
                }
                Ok(())
            }
            // Parsed in place: its offsets are in this message. One labelled
            // quoted-printable or base64 (RFC 2046 5.2.1 forbids it) is a
            // leaf.
            PartType::Message(inner)
                if !matches!(cte, Cte::Encoded(_))
                    && subtype != "global"
                    && std::ptr::eq(inner.raw_message.as_ref(), self.raw) =>
            {
                if cte.is_wide() {
                    self.set_cte(p, b"7bit")?;
                }
                self.message(inner, depth + 1, in_multipart)
            }
            _ => {
                let kind = match (ctype.as_str(), subtype.as_str()) {
                    // Already encoded: only checked (leaf_body).
                    _ if matches!(cte, Cte::Encoded(_)) => Kind::Binary,
                    ("", _) | ("text", _) | ("message", "global") => Kind::Text,
                    ("multipart" | "message", _) => {
                        return self.unencodable(p, &cte, format!("{ctype}/{subtype}"));
                    }
                    _ => Kind::Binary,
                };
                let (start, end) = (p.offset_body as usize, p.offset_end as usize);
                self.leaf_body(start, end, kind, in_multipart, Some((p, cte)))
            }
        }
    }

    /// A part that may not be encoded: fine while it has no 8-bit byte.
    fn unencodable(&mut self, p: &MessagePart<'_>, cte: &Cte, what: String) -> Result<(), Error> {
        let body = self.body(p.offset_body as usize, p.offset_end as usize)?;
        if !body.is_ascii() {
            return Err(Error::NotEncodable(what));
        }
        if *cte == Cte::EightBit {
            self.set_cte(p, b"7bit")?;
        }
        Ok(())
    }

    /// A leaf's body at `start..end`: encoded when it must be. `part` is
    /// None for a message without headers (then there is no header block
    /// to label the encoding in, and 8-bit text is an error).
    fn leaf_body(
        &mut self,
        start: usize,
        end: usize,
        kind: Kind,
        in_multipart: bool,
        part: Option<(&MessagePart<'_>, Cte)>,
    ) -> Result<(), Error> {
        let body = self.body(start, end)?;
        let wide = !body.is_ascii();
        let needs = wide || longest_line(body) > MAX_LINE;
        let Some((p, cte)) = part else {
            return if needs {
                Err(Error::EightBitOutsideParts)
            } else {
                Ok(())
            };
        };
        match cte {
            Cte::Encoded(name) if wide => Err(Error::EightBitEncoded(name)),
            Cte::Encoded(_) => Ok(()),
            Cte::Binary => self.encode(p, start, end, Kind::Binary, in_multipart),
            Cte::EightBit if !needs => self.set_cte(p, b"7bit"),
            _ if !needs => Ok(()),
            _ => self.encode(p, start, end, kind, in_multipart),
        }
    }

    fn encode(
        &mut self,
        p: &MessagePart<'_>,
        start: usize,
        end: usize,
        kind: Kind,
        in_multipart: bool,
    ) -> Result<(), Error> {
        let body = self.body(start, end)?;
        let with = match kind {
            Kind::Text => quoted_printable(body, self.eol, in_multipart),
            Kind::Binary => base64_lines(body, self.eol),
        };
        self.set_cte(
            p,
            match kind {
                Kind::Text => b"quoted-printable",
                Kind::Binary => b"base64",
            },
        )?;
        self.edits.push(Edit { start, end, with });
        Ok(())
    }

    fn body(&self, start: usize, end: usize) -> Result<&[u8], Error> {
        self.raw.get(start..end).ok_or(Error::Malformed)
    }

    /// No byte above 127 in the part's header block.
    fn check_headers(&self, p: &MessagePart<'_>) -> Result<(), Error> {
        let block = self.body(p.offset_header as usize, p.offset_body as usize)?;
        if block.is_ascii() {
            return Ok(());
        }
        let name = p
            .headers
            .iter()
            .find(|h| {
                self.raw
                    .get(h.offset_field as usize..h.offset_end as usize)
                    .is_some_and(|f| !f.is_ascii())
            })
            .map_or_else(
                || "a line that is not a header".into(),
                |h| format!("{}:", h.name.as_str()),
            );
        Err(Error::EightBitHeader(name))
    }

    /// Where a field can be added: after the last header field of `p`.
    fn header_end(&self, p: &MessagePart<'_>) -> Result<usize, Error> {
        let end = p
            .headers
            .iter()
            .map(|h| h.offset_end as usize)
            .max()
            .unwrap_or(p.offset_header as usize);
        if end > p.offset_body as usize || end > self.raw.len() {
            return Err(Error::Malformed);
        }
        Ok(end)
    }

    /// `field` (without its line end) as a new header line at `at`.
    fn insert_header(&self, at: usize, field: &[u8]) -> Edit {
        let mut with = Vec::with_capacity(field.len() + 4);
        // After a last header line that has no line end of its own.
        if at > 0 && self.raw.get(at - 1) != Some(&b'\n') {
            with.extend_from_slice(self.eol);
        }
        with.extend_from_slice(field);
        with.extend_from_slice(self.eol);
        Edit {
            start: at,
            end: at,
            with,
        }
    }

    /// The part's Content-Transfer-Encoding becomes `value`: the first such
    /// field rewritten in place (keeping its line end), any other removed,
    /// or a new one after the last header field.
    fn set_cte(&mut self, p: &MessagePart<'_>, value: &[u8]) -> Result<(), Error> {
        let mut field = b"Content-Transfer-Encoding: ".to_vec();
        field.extend_from_slice(value);
        let ctes: Vec<&Header<'_>> = p
            .headers
            .iter()
            .filter(|h| h.name == HeaderName::ContentTransferEncoding)
            .collect();
        if ctes.is_empty() {
            let at = self.header_end(p)?;
            let e = self.insert_header(at, &field);
            self.edits.push(e);
            return Ok(());
        }
        for (i, h) in ctes.iter().enumerate() {
            let (start, end) = (h.offset_field as usize, h.offset_end as usize);
            let old = self.body(start, end)?;
            let with = if i == 0 {
                let mut f = field.clone();
                f.extend_from_slice(trailing_line_end(old));
                f
            } else {
                Vec::new()
            };
            self.edits.push(Edit { start, end, with });
        }
        Ok(())
    }

    /// The message with the edits made.
    fn apply(mut self) -> Result<Vec<u8>, Error> {
        // Stable: edits at one place stay in the order they were made.
        self.edits.sort_by_key(|e| e.start);
        let grown: usize = self.edits.iter().map(|e| e.with.len()).sum();
        let mut out = Vec::with_capacity(self.raw.len() + grown);
        let mut at = 0;
        for e in &self.edits {
            if e.start < at || e.end < e.start || e.end > self.raw.len() {
                return Err(Error::Malformed);
            }
            out.extend_from_slice(&self.raw[at..e.start]);
            out.extend_from_slice(&e.with);
            at = e.end;
        }
        out.extend_from_slice(&self.raw[at..]);
        Ok(out)
    }
}

/// The message's line end: that of its first line (CRLF when it has none).
fn line_end(raw: &[u8]) -> &'static [u8] {
    match raw.iter().position(|&b| b == b'\n') {
        Some(i) if i == 0 || raw[i - 1] != b'\r' => b"\n",
        _ => b"\r\n",
    }
}

/// The CRLF or LF that ends `field`, if any.
fn trailing_line_end(field: &[u8]) -> &[u8] {
    if field.ends_with(b"\r\n") {
        &field[field.len() - 2..]
    } else if field.ends_with(b"\n") {
        &field[field.len() - 1..]
    } else {
        &[]
    }
}

/// The longest line in `data`, its CR LF or LF not counted.
fn longest_line(data: &[u8]) -> usize {
    data.split(|&b| b == b'\n')
        .map(|l| l.len() - usize::from(l.ends_with(b"\r")))
        .max()
        .unwrap_or(0)
}

/// The result's promise: 7-bit, lines of at most MAX_LINE octets.
fn check(out: &[u8]) -> Result<(), Error> {
    if !out.is_ascii() {
        return Err(Error::EightBitOutsideParts);
    }
    if longest_line(out) > MAX_LINE {
        return Err(Error::LongLine);
    }
    Ok(())
}

/// Quoted-printable (RFC 2045 6.7) of a text body: its line ends stay line
/// ends (`eol`), every other CR and LF is encoded, so decoding gives the
/// bytes back.
fn quoted_printable(body: &[u8], eol: &[u8], in_multipart: bool) -> Vec<u8> {
    let opts = quoted_printable::Options::default()
        .line_length_limit(QP_LINE)
        .input_mode(quoted_printable::InputMode::Text);
    // The encoder's line end is CRLF; with LF line ends each LF is one
    // (a CR before it is then data).
    let encoded = if eol == b"\n" {
        let mut crlf = Vec::with_capacity(body.len() + body.len() / 32);
        for &b in body {
            if b == b'\n' {
                crlf.push(b'\r');
            }
            crlf.push(b);
        }
        quoted_printable::encode_with_options(&crlf, opts)
    } else {
        quoted_printable::encode_with_options(body, opts)
    };
    // The encoder writes a CR only in CRLF (a CR of the data is "=0D").
    let mut out = Vec::with_capacity(encoded.len() + 16);
    for line in encoded.as_bytes().split_inclusive(|&b| b == b'\n') {
        let (text, end) = match line.strip_suffix(b"\r\n") {
            Some(t) => (t, eol),
            None => (line, &b""[..]),
        };
        // RFC 2046 5.1.1: no line of a part may begin like a boundary.
        if in_multipart && text.starts_with(b"--") {
            out.extend_from_slice(b"=2D");
            out.extend_from_slice(&text[1..]);
        } else {
            out.extend_from_slice(text);
        }
        out.extend_from_slice(end);
    }
    out
}

/// Base64 (RFC 2045 6.8) in lines of 76 characters, ended with a line end
/// when the body was.
fn base64_lines(body: &[u8], eol: &[u8]) -> Vec<u8> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(body.len() / 3 * 4 + body.len() / 28 + 8);
    for (i, chunk) in body.chunks(BASE64_LINE).enumerate() {
        if i > 0 {
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(engine.encode(chunk).as_bytes());
    }
    if body.ends_with(b"\n") {
        out.extend_from_slice(eol);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qp_decode(b: &[u8]) -> Vec<u8> {
        quoted_printable::decode(b, quoted_printable::ParseMode::Strict).expect("valid QP")
    }

    /// The body of `msg` after its first blank line.
    fn body_of(msg: &[u8]) -> &[u8] {
        let i = msg
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a header block");
        &msg[i + 4..]
    }

    fn assert_7bit(out: &[u8]) {
        assert!(out.is_ascii(), "{}", String::from_utf8_lossy(out));
        assert!(longest_line(out) <= MAX_LINE);
    }

    #[test]
    fn plain_text_8bit_body_becomes_quoted_printable() {
        let text = "Grüße aus Köln, naïve café.\r\nZweite Zeile mit = und Tab\t\r\n";
        let msg = format!(
            "From: a@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n{text}"
        );
        let out = downgrade(msg.as_bytes()).unwrap();
        assert_7bit(&out);
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(
            s.starts_with(
                "From: a@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            ),
            "{s}"
        );
        assert!(s.contains("Gr=C3=BC=C3=9Fe aus K=C3=B6ln"), "{s}");
        assert!(
            s.contains("Tab=09\r\n"),
            "trailing white space encoded: {s}"
        );
        // Round trip: the quoted-printable decodes to the original bytes.
        assert_eq!(qp_decode(body_of(&out)), text.as_bytes());
    }

    #[test]
    fn a_message_without_mime_headers_gets_them() {
        let msg = "Subject: x\r\n\r\ncaf\u{e9}\r\n".as_bytes();
        let out = downgrade(msg).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Subject: x\r\nMIME-Version: 1.0\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n"
        );
    }

    #[test]
    fn lf_line_ends_are_kept() {
        let msg =
            b"Subject: x\nContent-Transfer-Encoding: 8bit\nMIME-Version: 1.0\n\n\xe9t\xe9\nfin\n";
        let out = downgrade(msg).unwrap();
        assert_eq!(
            out,
            b"Subject: x\nContent-Transfer-Encoding: quoted-printable\nMIME-Version: 1.0\n\n=E9t=E9\nfin\n"
        );
    }

    const ALTERNATIVE: &str = "From: a@example.org\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
        \r\n\
        This is a multi-part message in MIME format.\r\n\
        --b1\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: 8bit\r\n\
        \r\n\
        d\u{e9}j\u{e0} vu\r\n\
        --b1\r\n\
        Content-Type: text/html; charset=us-ascii\r\n\
        \r\n\
        <p>deja vu</p>\r\n\
        --b1--\r\n\
        epilogue\r\n";

    #[test]
    fn multipart_alternative_with_one_8bit_part() {
        let out = downgrade(ALTERNATIVE.as_bytes()).unwrap();
        assert_7bit(&out);
        let expected = ALTERNATIVE.replace(
            "Content-Transfer-Encoding: 8bit\r\n\r\nd\u{e9}j\u{e0} vu\r\n",
            "Content-Transfer-Encoding: quoted-printable\r\n\r\nd=C3=A9j=C3=A0 vu\r\n",
        );
        // Only that part changed; the ASCII html part and everything
        // between parts is byte for byte the same.
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn nested_multipart_and_message_rfc822() {
        let msg = "From: a@example.org\r\n\
            MIME-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=outer\r\n\
            Content-Transfer-Encoding: 8bit\r\n\
            \r\n\
            --outer\r\n\
            Content-Type: multipart/related; boundary=inner\r\n\
            \r\n\
            --inner\r\n\
            Content-Type: text/plain\r\n\
            \r\n\
            inner \u{fc}\r\n\
            --inner\r\n\
            Content-Type: application/octet-stream\r\n\
            Content-Transfer-Encoding: 8bit\r\n\
            \r\n\
            \u{ff}\u{fe}data\r\n\
            --inner--\r\n\
            --outer\r\n\
            Content-Type: message/rfc822\r\n\
            Content-Transfer-Encoding: 8bit\r\n\
            \r\n\
            Subject: forwarded\r\n\
            \r\n\
            forwarded \u{e9}\r\n\
            --outer--\r\n";
        let out = downgrade(msg.as_bytes()).unwrap();
        assert_7bit(&out);
        let s = String::from_utf8(out).unwrap();
        let expected = msg
            // The multipart and the message/rfc822 are 7bit now.
            .replacen(
                "Content-Type: multipart/mixed; boundary=outer\r\nContent-Transfer-Encoding: 8bit",
                "Content-Type: multipart/mixed; boundary=outer\r\nContent-Transfer-Encoding: 7bit",
                1,
            )
            .replace(
                "Content-Type: text/plain\r\n\r\ninner \u{fc}\r\n",
                "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ninner =C3=BC\r\n",
            )
            .replace(
                "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\u{ff}\u{fe}data\r\n",
                "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nw7/DvmRhdGE=\r\n",
            )
            .replace(
                "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSubject: forwarded\r\n\r\nforwarded \u{e9}\r\n",
                "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\
                 Subject: forwarded\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                 forwarded =C3=A9\r\n",
            );
        assert_eq!(s, expected);
        // The base64 decodes to the part's bytes (the line end before the
        // boundary is the boundary's).
        let b64 = base64::engine::general_purpose::STANDARD
            .decode("w7/DvmRhdGE=")
            .unwrap();
        assert_eq!(b64, "\u{ff}\u{fe}data".as_bytes());
    }

    #[test]
    fn encoded_parts_are_untouched() {
        let msg = "MIME-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=b\r\n\
            \r\n\
            --b\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\
            Content-Transfer-Encoding: quoted-printable\r\n\
            \r\n\
            caf=C3=A9\r\n\
            --b\r\n\
            Content-Type: image/png\r\n\
            Content-Transfer-Encoding: base64\r\n\
            \r\n\
            iVBORw0KGgo=\r\n\
            --b\r\n\
            Content-Type: text/plain; charset=latin1\r\n\
            \r\n\
            caf\u{e9}\r\n\
            --b--\r\n";
        let out = downgrade(msg.as_bytes()).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            msg.replace(
                "latin1\r\n\r\ncaf\u{e9}\r\n",
                "latin1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n"
            )
        );
    }

    #[test]
    fn ascii_part_labelled_8bit_is_relabelled() {
        let msg = b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: 8BIT\r\n\r\nplain\r\n";
        assert_eq!(
            downgrade(msg).unwrap(),
            b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: 7bit\r\n\r\nplain\r\n"
        );
        // Already 7-bit: nothing to do.
        let msg = b"Subject: x\r\n\r\nplain\r\n";
        assert_eq!(downgrade(msg).unwrap(), msg);
    }

    #[test]
    fn eight_bit_headers_are_an_error() {
        let msg = "From: a@example.org\r\nSubject: gr\u{fc}\u{df}e\r\n\r\nbody \u{e9}\r\n";
        let e = downgrade(msg.as_bytes()).unwrap_err();
        assert!(matches!(e, Error::EightBitHeader(_)), "{e:?}");
        assert_eq!(e.to_string(), "8-bit text in a message header (Subject:)");
        // In a part's header too.
        let msg = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
            --b\r\nContent-Disposition: attachment; filename=\"\u{e9}.txt\"\r\n\r\nx\u{e9}\r\n--b--\r\n";
        let e = downgrade(msg.as_bytes()).unwrap_err();
        assert!(matches!(e, Error::EightBitHeader(_)), "{e:?}");
        // And in a forwarded message.
        let msg = "MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n\
            Subject: \u{e9}\r\n\r\nx\u{e9}\r\n";
        assert!(matches!(
            downgrade(msg.as_bytes()),
            Err(Error::EightBitHeader(_))
        ));
    }

    #[test]
    fn message_global_is_encoded_whole() {
        // RFC 6532 3.5: its UTF-8 headers travel inside quoted-printable.
        let inner = "Subject: \u{e9}t\u{e9}\r\n\r\nx\u{e9}\r\n";
        let msg = format!("MIME-Version: 1.0\r\nContent-Type: message/global\r\n\r\n{inner}");
        let out = downgrade(msg.as_bytes()).unwrap();
        assert_7bit(&out);
        assert!(String::from_utf8_lossy(&out)
            .contains("message/global\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"));
        assert_eq!(qp_decode(body_of(&out)), inner.as_bytes());
    }

    #[test]
    fn binary_cte_becomes_base64() {
        let data: Vec<u8> = (0..=255u8).chain(b"\r\n\r\0\n".iter().copied()).collect();
        let mut msg = b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\n".to_vec();
        msg.extend_from_slice(&data);
        let out = downgrade(&msg).unwrap();
        assert_7bit(&out);
        assert!(String::from_utf8_lossy(&out).contains("Content-Transfer-Encoding: base64\r\n\r\n"));
        let b64: Vec<u8> = body_of(&out)
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let lines = body_of(&out).split(|&b| b == b'\n');
        assert!(lines.into_iter().all(|l| l.len() <= 77), "76 and CR");
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
            data
        );
    }

    #[test]
    fn long_lines_are_encoded_and_round_trip() {
        // 3000 octets in one line, some 8-bit: lines of 76 at most after.
        let text: String = "abc\u{e9} ".repeat(600) + "\r\n";
        let msg = format!("Content-Type: text/plain\r\n\r\n{text}");
        let out = downgrade(msg.as_bytes()).unwrap();
        assert_7bit(&out);
        assert!(body_of(&out).split(|&b| b == b'\n').all(|l| l.len() <= 77));
        assert_eq!(qp_decode(body_of(&out)), text.as_bytes());
        // A long ASCII line in a part that is not encoded: an error.
        let msg = format!(
            "Content-Type: text/plain\r\nX-Long: {}\r\n\r\n\u{e9}\r\n",
            "x".repeat(1000)
        );
        assert!(matches!(downgrade(msg.as_bytes()), Err(Error::LongLine)));
    }

    #[test]
    fn no_encoded_line_looks_like_a_boundary() {
        // The outer boundary in the middle of a line of an inner part
        // (mail-parser, reading the inner part, looks for "--b" only): the
        // soft line break would put "--a" at the start of a line, which
        // ends the outer part for any reader.
        let text = format!("{}--a-- caf\u{e9}\r\n", "x".repeat(73));
        let msg = format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n\
             --a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\n{text}--b--\r\n--a--\r\n"
        );
        let out = downgrade(msg.as_bytes()).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.matches("\n--a").count(), 2, "{s}");
        assert!(s.contains("=\r\n=2D-a-- caf=C3=A9\r\n"), "{s}");
        let start = s.find("quoted-printable\r\n\r\n").unwrap() + 20;
        let end = s.rfind("\r\n--b--").unwrap();
        assert_eq!(
            qp_decode(&s.as_bytes()[start..end]),
            text.trim_end().as_bytes()
        );
    }

    #[test]
    fn what_cannot_be_converted() {
        let cases: &[(&str, &str)] = &[
            (
                "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\npre \u{e9}\r\n--b\r\n\r\nx\r\n--b--\r\n",
                "8-bit text outside the MIME parts (a multipart preamble or epilogue)",
            ),
            (
                "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n\u{e9}\r\n",
                "8-bit data in a part with Content-Transfer-Encoding base64",
            ),
            (
                "MIME-Version: 1.0\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n\u{e9}\r\n",
                "8-bit data in a part with Content-Transfer-Encoding x-uuencode",
            ),
            (
                "MIME-Version: 1.0\r\nContent-Type: message/partial; id=x; number=1\r\n\r\n\u{e9}\r\n",
                "8-bit data in a message/partial part, which may not be encoded",
            ),
        ];
        for (msg, why) in cases {
            let e = downgrade(msg.as_bytes()).unwrap_err();
            assert_eq!(e.to_string(), *why, "{msg:?}");
            assert!(!e.is_transient());
        }
        let big = vec![b'a'; MAX_MESSAGE + 1];
        assert!(matches!(downgrade(&big), Err(Error::TooLarge { .. })));
        let mut r: &[u8] = &big;
        let e = read_and_convert(&mut r, big.len() as u64).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the message is too large to convert (262145 octets, at most 262144)"
        );
    }

    /// The fuzzer found it (afl-tmin's 87 bytes): mail-parser's
    /// quoted-printable decoder subtracts past zero on a part "=\n" that
    /// ends at a boundary (a panic with overflow checks). Content-Transfer-
    /// Encoding is not given to mail-parser, so nothing is decoded.
    #[test]
    fn quoted_printable_part_ending_in_a_soft_break_at_a_boundary() {
        let msg = b"Content-Type:multipart;boundary=b\n\n--bContent-Transfer-Encoding:quoted-printable\n\n=\n--b";
        assert_eq!(downgrade(msg).unwrap(), msg);
    }

    #[test]
    fn encoding_names_with_comments_and_encoded_messages() {
        // RFC 2045 6.1: the token, any case, comments allowed around it.
        let msg =
            "MIME-Version: 1.0\r\nContent-Transfer-Encoding: (old) 8Bit (sic)\r\n\r\n\u{e9}\r\n";
        let out = downgrade(msg.as_bytes()).unwrap();
        assert!(out.ends_with(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9\r\n"));
        // A message/rfc822 labelled base64 (RFC 2046 5.2.1 forbids it) is
        // not walked: kept when 7-bit, refused when not.
        let msg = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
            --b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\
            U3ViamVjdDogeA0KDQp4DQo=\r\n--b--\r\n";
        assert_eq!(downgrade(msg.as_bytes()).unwrap(), msg.as_bytes());
        let msg = msg.replace("U3Vi", "\u{e9}U3Vi");
        assert_eq!(
            downgrade(msg.as_bytes()).unwrap_err().to_string(),
            "8-bit data in a part with Content-Transfer-Encoding base64"
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut msg = String::from("MIME-Version: 1.0\r\n");
        for i in 0..=MAX_DEPTH + 1 {
            msg.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
            ));
        }
        msg.push_str("\r\n\u{e9}\r\n");
        assert!(matches!(downgrade(msg.as_bytes()), Err(Error::TooDeep)));
    }

    #[test]
    fn read_and_convert_reads_the_message() {
        let msg = "Subject: x\r\n\r\n\u{e9}\r\n".as_bytes();
        let mut r: &[u8] = msg;
        let out = read_and_convert(&mut r, msg.len() as u64).unwrap();
        assert!(out.ends_with(b"\r\n\r\n=C3=A9\r\n"));
    }
}
