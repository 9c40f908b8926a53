//! BODY[section]<partial>: finding a part by its section number and
//! cutting out HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME or the
//! body, as Dovecot 2.3's imap-msgpart.c does.
//!
//! Owns the section types (our own; the imapd glue maps proto::imap's onto
//! them), part lookup and the byte ranges. It does not parse the FETCH
//! syntax nor write the literal.
//!
//! Standards: RFC 3501 6.4.5 (section numbers; part 1 of a non-multipart
//! message is its body; HEADER, TEXT and HEADER.FIELDS of a message/rfc822
//! part are those of the enclosed message; MIME is the part's own header;
//! HEADER.FIELDS names compared case-insensitively, fields in message
//! order, ended by the blank line; `<origin.count>` partial fetch),
//! RFC 9051 6.4.5 (unchanged).
//!
//! As Dovecot does: a part that does not exist, or HEADER/TEXT of a part
//! that is not message/rfc822, gives `None`, which the server sends as an
//! empty string literal (`{0}` CRLF, what Dovecot sends); MIME of a
//! message/rfc822 part is that part's own header; HEADER.FIELDS of the
//! message always ends each field with CRLF and adds the blank line, while
//! HEADER.FIELDS of a message/rfc822 part and HEADER.FIELDS.NOT keep the
//! header's own end (no blank line when the header had none); NUL bytes
//! are sent as 0x80 (a literal may not hold NUL, RFC 3501 4.3).
//!
//! Security: lookup walks at most the part numbers given, each step
//! bounded by the parts' count; no recursion.
//!
//! Diagnostics: none.

use std::borrow::Cow;

use super::parser::{Part, MULTIPART, RFC822};
use super::ParsedMessage;

/// A section-text (RFC 3501 6.4.5 / RFC 9051 section-text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    /// Only after a part number.
    Mime,
}

/// A section: part numbers (empty for the whole message) and an optional
/// section-text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

/// `<origin.count>` applied to a section's bytes: empty when the origin is
/// past the end (RFC 3501 6.4.5).
pub fn partial(data: &[u8], origin: u64, count: Option<u64>) -> &[u8] {
    let len = data.len() as u64;
    if origin >= len {
        return &[];
    }
    let end = match count {
        Some(c) => origin.saturating_add(c).min(len),
        None => len,
    };
    // both are at most data.len(), which fits usize
    &data[origin as usize..end as usize]
}

impl ParsedMessage {
    /// The part a section number names (imap_msgpart_find); `part` must
    /// not be empty.
    pub(crate) fn find_part(&self, numbers: &[u32]) -> Option<usize> {
        let parts = &self.parts;
        let mut part = 0usize;
        for (k, &num) in numbers.iter().enumerate() {
            let more = k + 1 < numbers.len();
            let p = &parts[part];
            if p.flags & MULTIPART != 0 {
                if num == 0 {
                    return None;
                }
                part = *p.children.get(num as usize - 1)?;
            } else if num != 1 || (more && p.flags & RFC822 == 0) {
                return None;
            }
            // continuing inside a message/rfc822 skips to its message
            if more && parts[part].flags & RFC822 != 0 {
                part = *parts[part].children.first()?;
            }
        }
        Some(part)
    }

    /// BODY[section] without the partial; see the module header for what
    /// `None` means.
    pub fn section(&self, section: &Section) -> Option<Cow<'_, [u8]>> {
        let root = section.part.is_empty();
        let part = if root {
            0
        } else {
            self.find_part(&section.part)?
        };
        let p = &self.parts[part];
        let bytes: Cow<'_, [u8]> = match &section.text {
            None if root => Cow::Borrowed(&self.raw[..]),
            None => Cow::Borrowed(&self.raw[p.body_start..p.end]),
            Some(SectionText::Mime) if root => return None,
            Some(SectionText::Mime) => Cow::Borrowed(&self.raw[p.start..p.body_start]),
            Some(t) => {
                let m = if root {
                    p
                } else if p.flags & RFC822 != 0 {
                    &self.parts[*p.children.first()?]
                } else {
                    return None;
                };
                match t {
                    SectionText::Header => Cow::Borrowed(&self.raw[m.start..m.body_start]),
                    SectionText::Text => Cow::Borrowed(&self.raw[m.body_start..m.end]),
                    SectionText::HeaderFields(names) if root => {
                        Cow::Owned(self.fields(m, names, true, true))
                    }
                    SectionText::HeaderFields(names) => {
                        Cow::Owned(self.fields(m, names, true, false))
                    }
                    SectionText::HeaderFieldsNot(names) => {
                        Cow::Owned(self.fields(m, names, false, false))
                    }
                    SectionText::Mime => return None,
                }
            }
        };
        Some(no_nuls(bytes))
    }

    /// The header fields of `m` whose name is (`include`) or is not in
    /// `names`, in message order. `cached`: as Dovecot's header cache
    /// gives them for the message itself (every field ends in CRLF, then
    /// the blank line); otherwise as its header filter cuts the raw header
    /// (the header's own end kept).
    fn fields(&self, m: &Part, names: &[String], include: bool, cached: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let wanted = |n: &[u8]| names.iter().any(|w| n.eq_ignore_ascii_case(w.as_bytes()));
        let mut last_end = m.start;
        for f in &m.fields {
            last_end = f.raw.end;
            if wanted(&f.name) != include {
                continue;
            }
            let line = &self.raw[f.raw.clone()];
            out.extend_from_slice(line);
            if cached && !line.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
        if cached {
            out.extend_from_slice(b"\r\n");
        } else {
            // the blank line, if the header has one
            if last_end < m.body_start {
                out.extend_from_slice(&self.raw[last_end..m.body_start]);
            }
        }
        out
    }
}

/// NUL is not allowed in a literal: 0x80 instead, as Dovecot sends.
fn no_nuls(b: Cow<'_, [u8]>) -> Cow<'_, [u8]> {
    if !b.contains(&0) {
        return b;
    }
    Cow::Owned(b.iter().map(|&c| if c == 0 { 0x80 } else { c }).collect())
}
