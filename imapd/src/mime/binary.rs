//! BINARY[part] and BINARY.SIZE[part]: a part's body with its
//! Content-Transfer-Encoding undone.
//!
//! Owns base64 and quoted-printable decoding and the choice of what can be
//! decoded. It does not write the literal (the server sends `~{n}` when
//! [`Binary::decoded`] is true, as Dovecot does, `{n}` otherwise).
//!
//! Standards: RFC 3516 4.2 (BINARY: the decoded part; an unknown encoding
//! is `NO [UNKNOWN-CTE]`; BINARY.SIZE), 4.3 (literal8); RFC 2045 6.1-6.8
//! (7bit, 8bit and binary are identity; quoted-printable: `=XX`, soft line
//! breaks, trailing white space removed; base64: characters outside the
//! alphabet ignored, decoding stops at `=` padding); RFC 9051 6.4.5 (the
//! same for IMAP4rev2).
//!
//! Differences from Dovecot kept small: a multipart or message/rfc822
//! part, and the whole message (empty part number), are returned as they
//! are stored, where Dovecot would also decode the parts inside; Dovecot's
//! BINARY.SIZE fails for every part when any part of the message has an
//! unknown encoding (it converts the whole message), and so does
//! [`ParsedMessage::binary_size`], to send the same answers.
//!
//! Security: output is at most the size of the input; no recursion.
//!
//! Diagnostics: [`BinaryError`] for the reply.

use std::borrow::Cow;

use thiserror::Error;

use super::parser::{MULTIPART, RFC822};
use super::rfc822::Parser;
use super::ParsedMessage;

/// Why a part cannot be sent decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BinaryError {
    /// RFC 3516 4.2: the server answers `NO [UNKNOWN-CTE]`.
    #[error("unknown Content-Transfer-Encoding")]
    UnknownCte,
}

/// A decoded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary<'a> {
    pub data: Cow<'a, [u8]>,
    /// The encoding was undone (base64 or quoted-printable): Dovecot sends
    /// these as literal8 (`~{n}`), the rest as ordinary literals.
    pub decoded: bool,
}

enum Cte {
    Identity,
    Base64,
    QuotedPrintable,
    Unknown,
}

impl ParsedMessage {
    fn cte(&self, part: usize) -> Cte {
        let p = &self.parts[part];
        if p.flags & (MULTIPART | RFC822) != 0 {
            return Cte::Identity;
        }
        // Dovecot's binary conversion reads the field itself, with or
        // without MIME-Version (unlike BODYSTRUCTURE)
        let encoding = p
            .fields
            .iter()
            .filter(|f| f.is("Content-Transfer-Encoding"))
            .find_map(|f| cte_token(&f.value));
        match encoding.as_deref() {
            None => Cte::Identity,
            Some(e) if e.eq_ignore_ascii_case(b"7bit") => Cte::Identity,
            Some(e) if e.eq_ignore_ascii_case(b"8bit") => Cte::Identity,
            Some(e) if e.eq_ignore_ascii_case(b"binary") => Cte::Identity,
            Some(e) if e.eq_ignore_ascii_case(b"base64") => Cte::Base64,
            Some(e) if e.eq_ignore_ascii_case(b"quoted-printable") => Cte::QuotedPrintable,
            Some(_) => Cte::Unknown,
        }
    }

    /// BINARY[part]: `None` when the part does not exist (Dovecot sends an
    /// empty literal, as for BODY).
    pub fn binary(&self, part: &[u32]) -> Option<Result<Binary<'_>, BinaryError>> {
        if part.is_empty() {
            return Some(Ok(Binary {
                data: Cow::Borrowed(&self.raw[..]),
                decoded: false,
            }));
        }
        let i = self.find_part(part)?;
        let p = &self.parts[i];
        let body = &self.raw[p.body_start..p.end];
        Some(match self.cte(i) {
            Cte::Identity => Ok(Binary {
                data: Cow::Borrowed(body),
                decoded: false,
            }),
            Cte::Base64 => Ok(Binary {
                data: Cow::Owned(base64(body)),
                decoded: true,
            }),
            Cte::QuotedPrintable => Ok(Binary {
                data: Cow::Owned(quoted_printable(body)),
                decoded: true,
            }),
            Cte::Unknown => Err(BinaryError::UnknownCte),
        })
    }

    /// BINARY.SIZE[part]: the decoded size; 0 for a part that does not
    /// exist (as Dovecot).
    pub fn binary_size(&self, part: &[u32]) -> Result<u64, BinaryError> {
        if (0..self.parts.len()).any(|i| matches!(self.cte(i), Cte::Unknown)) {
            return Err(BinaryError::UnknownCte);
        }
        match self.binary(part) {
            None => Ok(0),
            Some(r) => r.map(|b| b.data.len() as u64),
        }
    }
}

/// The encoding token of a Content-Transfer-Encoding value, if it is one.
fn cte_token(value: &[u8]) -> Option<Vec<u8>> {
    let mut p = Parser::new(value);
    let _ = p.skip_lwsp();
    let mut s = Vec::new();
    (p.mime_token(&mut s).is_ok() && p.skip_lwsp() == Ok(false) && !s.is_empty()).then_some(s)
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

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// RFC 2045 6.7 quoted-printable; line ends kept as they are, white space
/// at a line's end removed, `=` at a line's end joins lines, a broken `=`
/// kept literally.
pub(crate) fn quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for line in input.split_inclusive(|&c| c == b'\n') {
        let (content, eol): (&[u8], &[u8]) = if let Some(s) = line.strip_suffix(b"\r\n") {
            (s, b"\r\n")
        } else if let Some(s) = line.strip_suffix(b"\n") {
            (s, b"\n")
        } else {
            (line, b"")
        };
        // rule 3: trailing white space is not part of the data
        let mut end = content.len();
        while end > 0 && matches!(content[end - 1], b' ' | b'\t') {
            end -= 1;
        }
        let content = &content[..end];
        let mut i = 0;
        let mut soft = false;
        while i < content.len() {
            let c = content[i];
            if c != b'=' {
                out.push(c);
                i += 1;
                continue;
            }
            if i + 1 == content.len() {
                soft = true;
                break;
            }
            match (
                content.get(i + 1).copied().and_then(hex),
                content.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            }
        }
        if !soft {
            out.extend_from_slice(eol);
        }
    }
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
        assert_eq!(quoted_printable(b"=ZZ="), b"=ZZ");
    }
}
