//! BINARY[part] and BINARY.SIZE[part]: a part with its
//! Content-Transfer-Encoding undone, as Dovecot 2.3's index-mail-binary.c
//! and its base64 and quoted-printable decoders do it.
//!
//! Owns the decoders and the conversion of a part (for a multipart or
//! message/rfc822 part, and for the whole message, every part inside is
//! decoded and its header says `Content-Transfer-Encoding: binary`). It
//! does not write the literal: the server sends `~{n}` when
//! [`Binary::literal8`] is true, `{n}` otherwise, as Dovecot does.
//!
//! Standards: RFC 3516 4.2 (BINARY: the decoded part; an unknown encoding
//! is `NO [UNKNOWN-CTE]`; BINARY.SIZE), 4.3 (literal8, needed for NUL);
//! RFC 2045 6.1-6.8 (7bit, 8bit and binary are identity; quoted-printable
//! `=XX`, soft line breaks, trailing white space dropped; base64 with
//! white space ignored and `=` padding); RFC 9051 6.4.5 (the same).
//!
//! As Dovecot does: the last Content-Transfer-Encoding field counts, read
//! with or without MIME-Version; a value that is not a single token (or a
//! token and `;`) is unknown; broken base64 (a character outside the
//! alphabet, data after the padding, a missing padding) or broken
//! quoted-printable (`=` not followed by two hex digits or a line end, a
//! CR without LF) fails with [`BinaryError::Parse`], which the server
//! sends as `NO [PARSE] Invalid data in MIME part`; BINARY.SIZE converts
//! the whole message, so one part with an unknown encoding fails
//! BINARY.SIZE for every part.
//!
//! Security: output is at most the size of the input plus one header line
//! per part; the conversion recurses at most [`super::MAX_NESTED`] levels.
//!
//! Diagnostics: [`BinaryError`] for the reply.

use std::borrow::Cow;

use thiserror::Error;

use super::rfc822::Parser;
use super::ParsedMessage;

/// Why a part cannot be sent decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BinaryError {
    /// RFC 3516 4.2: the server answers `NO [UNKNOWN-CTE] Unknown
    /// Content-Transfer-Encoding`.
    #[error("unknown Content-Transfer-Encoding")]
    UnknownCte,
    /// The encoded data is broken: `NO [PARSE] Invalid data in MIME part`.
    #[error("invalid data in MIME part")]
    Parse,
}

/// A decoded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary<'a> {
    pub data: Cow<'a, [u8]>,
    /// Something was decoded, or the data holds NUL: Dovecot sends these
    /// as literal8 (`~{n}`), the rest as ordinary literals.
    pub literal8: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cte {
    Identity,
    Base64,
    QuotedPrintable,
    Unknown,
}

/// A piece of the converted output.
enum Block {
    Raw(usize, usize),
    /// A part's header with its Content-Transfer-Encoding fields replaced.
    Header(usize),
    Decode(usize, Cte),
}

#[derive(Default)]
struct Conversion {
    blocks: Vec<Block>,
    copy_start: usize,
    converted: bool,
    has_nuls: bool,
}

impl Conversion {
    fn copy_to(&mut self, end: usize) {
        if end > self.copy_start {
            self.blocks.push(Block::Raw(self.copy_start, end));
        }
    }
}

impl ParsedMessage {
    /// The part's encoding: its last Content-Transfer-Encoding field
    /// (message_decoder_parse_cte).
    fn cte(&self, part: usize) -> Cte {
        let p = &self.parts[part];
        match p
            .fields
            .iter()
            .rev()
            .find(|f| f.is("Content-Transfer-Encoding"))
        {
            None => Cte::Identity,
            Some(f) => parse_cte(&f.value),
        }
    }

    /// add_binary_part: lays out the conversion of part `i`.
    fn add_binary_part(
        &self,
        i: usize,
        include_hdr: bool,
        c: &mut Conversion,
    ) -> Result<(), BinaryError> {
        let cte = self.cte(i);
        if cte == Cte::Unknown {
            return Err(BinaryError::UnknownCte);
        }
        let p = &self.parts[i];
        if self.raw[p.start..p.body_start].contains(&0) {
            c.has_nuls = true;
        }
        let converting = matches!(cte, Cte::Base64 | Cte::QuotedPrintable);
        if include_hdr {
            if converting {
                c.copy_to(p.start);
                c.blocks.push(Block::Header(i));
            } else {
                c.copy_to(p.body_start);
            }
        }
        c.copy_start = p.body_start;
        if !p.children.is_empty() {
            for &child in &p.children {
                self.add_binary_part(child, true, c)?;
            }
            c.copy_to(p.end);
            c.copy_start = p.end;
            return Ok(());
        }
        if p.end > p.body_start {
            if converting {
                c.converted = true;
                c.blocks.push(Block::Decode(i, cte));
            } else {
                if self.raw[p.body_start..p.end].contains(&0) {
                    c.has_nuls = true;
                }
                c.blocks.push(Block::Raw(p.body_start, p.end));
            }
        }
        c.copy_start = p.end;
        Ok(())
    }

    fn convert(&self, i: usize, include_hdr: bool) -> Result<Binary<'_>, BinaryError> {
        let mut c = Conversion::default();
        self.add_binary_part(i, include_hdr, &mut c)?;
        let literal8 = c.converted || c.has_nuls;
        if !c.converted {
            let p = &self.parts[i];
            let start = if include_hdr { p.start } else { p.body_start };
            return Ok(Binary {
                data: Cow::Borrowed(&self.raw[start..p.end]),
                literal8,
            });
        }
        let mut out = Vec::new();
        for b in c.blocks {
            match b {
                Block::Raw(s, e) => out.extend_from_slice(&self.raw[s..e]),
                Block::Header(i) => self.binary_header(i, &mut out),
                Block::Decode(i, cte) => {
                    let p = &self.parts[i];
                    let body = &self.raw[p.body_start..p.end];
                    let ok = match cte {
                        Cte::Base64 => base64_strict(body, &mut out),
                        _ => qp_decode(body, true, &mut out),
                    };
                    if !ok {
                        return Err(BinaryError::Parse);
                    }
                }
            }
        }
        Ok(Binary {
            data: Cow::Owned(out),
            literal8,
        })
    }

    /// A converted part's header: without its Content-Transfer-Encoding
    /// fields, and saying binary before the blank line.
    fn binary_header(&self, i: usize, out: &mut Vec<u8>) {
        let p = &self.parts[i];
        let mut last = p.start;
        for f in &p.fields {
            if !f.is("Content-Transfer-Encoding") {
                out.extend_from_slice(&self.raw[f.raw.clone()]);
            }
            last = f.raw.end;
        }
        if last < p.body_start {
            out.extend_from_slice(b"Content-Transfer-Encoding: binary\r\n");
            out.extend_from_slice(&self.raw[last..p.body_start]);
        }
    }

    /// BINARY[part]: `None` when the part does not exist (Dovecot sends an
    /// empty literal, as for BODY). An empty part number is the whole
    /// message.
    pub fn binary(&self, part: &[u32]) -> Option<Result<Binary<'_>, BinaryError>> {
        if part.is_empty() {
            return Some(self.convert(0, true));
        }
        let i = self.find_part(part)?;
        Some(self.convert(i, false))
    }

    /// BINARY.SIZE[part]: the decoded size; 0 for a part that does not
    /// exist. Fails when the whole message cannot be converted (Dovecot
    /// converts it all to learn any part's size).
    pub fn binary_size(&self, part: &[u32]) -> Result<u64, BinaryError> {
        self.convert(0, true)?;
        match self.binary(part) {
            None => Ok(0),
            Some(r) => r.map(|b| b.data.len() as u64),
        }
    }
}

/// message_decoder_parse_cte: one token, optionally followed by `;`.
fn parse_cte(value: &[u8]) -> Cte {
    let mut p = Parser::new(value);
    let _ = p.skip_lwsp();
    let mut s = Vec::new();
    if p.mime_token(&mut s) == Ok(true) {
        let _ = p.skip_lwsp();
        if p.peek() != b';' {
            return Cte::Unknown;
        }
    }
    let is = |n: &[u8]| s.eq_ignore_ascii_case(n);
    if is(b"7bit") || is(b"8bit") || is(b"binary") {
        Cte::Identity
    } else if is(b"base64") {
        Cte::Base64
    } else if is(b"quoted-printable") {
        Cte::QuotedPrintable
    } else {
        Cte::Unknown
    }
}

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// RFC 2045 6.8 base64; other characters are skipped, `=` ends the data.
pub(crate) fn base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut n = 0;
    for &c in input {
        if c == b'=' {
            break;
        }
        let Some(v) = b64_value(c) else { continue };
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
}

/// Dovecot's base64 decoder without flags: white space skipped, anything
/// else outside the alphabet, a missing or misplaced padding, or data after
/// the padding is an error (false).
fn base64_strict(input: &[u8], out: &mut Vec<u8>) -> bool {
    let mut acc: u32 = 0;
    let mut sub = 0;
    let mut half_padded = false;
    let mut end = false;
    for &c in input {
        let ws = matches!(c, b' ' | b'\t' | b'\r' | b'\n');
        if end {
            if ws {
                continue;
            }
            return false;
        }
        if half_padded {
            match c {
                b'=' => {
                    half_padded = false;
                    end = true;
                }
                _ if ws => {}
                _ => return false,
            }
            continue;
        }
        match b64_value(c) {
            Some(v) => {
                acc = (acc << 6) | u32::from(v);
                sub += 1;
                match sub {
                    2 => out.push((acc >> 4) as u8),
                    3 => out.push((acc >> 2) as u8),
                    4 => {
                        out.push(acc as u8);
                        acc = 0;
                        sub = 0;
                    }
                    _ => {}
                }
            }
            None if ws => {}
            None if c == b'=' => match sub {
                2 => half_padded = true,
                3 => end = true,
                _ => return false,
            },
            None => return false,
        }
    }
    !half_padded && (end || sub == 0)
}

/// Trailing white space kept at most (qp-decoder.c QP_MAX_WHITESPACE_LEN).
const QP_MAX_WHITESPACE: usize = 76;

/// Dovecot's quoted-printable decoder: `=XX` (either case), soft breaks
/// (`=`, white space, line end), trailing white space dropped, LF and CRLF
/// both written as CRLF. `strict`: false at the first error; otherwise the
/// broken sequence is kept as it was and decoding goes on.
fn qp_decode(input: &[u8], strict: bool, out: &mut Vec<u8>) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        Text,
        Ws,
        Equals,
        Hex2(u8),
        EqualsWs,
        Cr,
        SoftCr,
    }
    let mut state = S::Text;
    let mut ws: Vec<u8> = Vec::new();
    let mut ok = true;
    let mut i = 0;
    // qp_decoder_invalid: writes what the broken sequence held
    let invalid = |state: S, ws: &mut Vec<u8>, out: &mut Vec<u8>| match state {
        S::Equals => out.push(b'='),
        S::Hex2(h) => out.extend_from_slice(&[b'=', h]),
        S::EqualsWs => {
            out.push(b'=');
            out.append(ws);
        }
        S::Cr => {
            out.append(ws);
            out.push(b'\r');
        }
        S::SoftCr => {
            out.push(b'=');
            out.append(ws);
            out.push(b'\r');
        }
        S::Text | S::Ws => {}
    };
    while i < input.len() {
        let c = input[i];
        match state {
            S::Text => match c {
                b'=' => state = S::Equals,
                b'\r' => state = S::Cr,
                b'\n' => out.extend_from_slice(b"\r\n"),
                b' ' | b'\t' => {
                    ws.push(c);
                    state = S::Ws;
                }
                _ => out.push(c),
            },
            S::Ws => match c {
                b' ' | b'\t' => {
                    if ws.len() <= QP_MAX_WHITESPACE {
                        ws.push(c);
                    }
                }
                b'\r' => state = S::Cr,
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    ws.clear();
                    state = S::Text;
                }
                _ => {
                    if ws.len() > QP_MAX_WHITESPACE {
                        ok = false;
                    }
                    out.append(&mut ws);
                    state = S::Text;
                    continue;
                }
            },
            S::Equals => match c {
                _ if c.is_ascii_hexdigit() => state = S::Hex2(c),
                b' ' | b'\t' => {
                    ws.push(c);
                    state = S::EqualsWs;
                }
                b'\r' => state = S::SoftCr,
                b'\n' => state = S::Text,
                _ => {
                    invalid(state, &mut ws, out);
                    ok = false;
                    state = S::Text;
                    continue;
                }
            },
            S::Hex2(h) => {
                if let (Some(hi), Some(lo)) = (hex(h), hex(c)) {
                    out.push(hi << 4 | lo);
                    state = S::Text;
                } else {
                    invalid(state, &mut ws, out);
                    ok = false;
                    state = S::Text;
                    continue;
                }
            }
            S::EqualsWs => match c {
                b' ' | b'\t' => {
                    if ws.len() <= QP_MAX_WHITESPACE {
                        ws.push(c);
                    }
                }
                b'\r' => state = S::SoftCr,
                b'\n' => {
                    ws.clear();
                    state = S::Text;
                }
                _ => {
                    invalid(state, &mut ws, out);
                    ok = false;
                    state = S::Text;
                    continue;
                }
            },
            S::Cr | S::SoftCr => {
                if c == b'\n' {
                    ws.clear();
                    if state == S::Cr {
                        out.extend_from_slice(b"\r\n");
                    }
                    state = S::Text;
                } else {
                    invalid(state, &mut ws, out);
                    ok = false;
                    state = S::Text;
                    continue;
                }
            }
        }
        if strict && !ok {
            return false;
        }
        i += 1;
    }
    if !matches!(state, S::Text | S::Ws) {
        invalid(state, &mut ws, out);
        ok = false;
    }
    ok || !strict
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Quoted-printable decoded leniently (for searching and encoded words).
pub(crate) fn quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    qp_decode(input, false, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_skips_line_ends_and_stops_at_padding() {
        assert_eq!(base64(b"SGVs\r\nbG8=\r\n"), b"Hello");
        assert_eq!(base64(b"SGk"), b"Hi");
    }

    #[test]
    fn quoted_printable_rules() {
        assert_eq!(
            quoted_printable(b"a=3Db  \r\nsoft=\r\nbreak"),
            b"a=b\r\nsoftbreak"
        );
        assert_eq!(quoted_printable(b"=ZZ="), b"=ZZ=");
        let mut out = Vec::new();
        assert!(!qp_decode(b"=ZZ", true, &mut out));
        out.clear();
        assert!(qp_decode(b"lower =e9 tabs\t\n", true, &mut out));
        assert_eq!(out, b"lower \xe9 tabs\r\n");
    }

    #[test]
    fn base64_strict_rules() {
        let mut out = Vec::new();
        assert!(base64_strict(b"SGVs\r\nbG8=\r\n", &mut out));
        assert_eq!(out, b"Hello");
        for bad in [&b"SGk"[..], b"SG!k", b"SGk=x", b"S===", b"SG="] {
            assert!(!base64_strict(bad, &mut Vec::new()), "{bad:?}");
        }
    }
}
