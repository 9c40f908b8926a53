//! FETCH arguments: data items, body sections, partials, modifiers.
//!
//! Owns the grammar of what a client may ask FETCH for and the types the
//! session receives. Does not own producing the answers (imapd and the
//! message model) or which items the server supports in a given state.
//!
//! Standards: RFC 3501 6.4.5 and 9 (`fetch`, `fetch-att`, `section`,
//! macros ALL / FAST / FULL), RFC 9051 6.4.5 (BINARY in the base
//! protocol), RFC 3516 4 (BINARY, BINARY.PEEK, BINARY.SIZE,
//! `section-binary`), RFC 7162 3.1.4-3.1.5 and 3.2.6 (MODSEQ item,
//! CHANGEDSINCE and VANISHED modifiers).
//!
//! Security: part numbers are bounded by `Limits::max_depth`, attributes
//! and header names by `Limits::max_items`; numbers never wrap.
//!
//! Diagnostics: nothing is logged; errors are `ParseError` values.

use super::lexer::Lexer;
use super::ParseError;

type R<T> = Result<T, ParseError>;

/// One FETCH data item (macros are expanded when parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttr {
    Envelope,
    Flags,
    InternalDate,
    /// RFC822 (the whole message; sets \Seen like BODY[]).
    Rfc822,
    Rfc822Header,
    Rfc822Size,
    Rfc822Text,
    /// BODY without a section: the non-extensible BODYSTRUCTURE.
    Body,
    BodyStructure,
    Uid,
    /// RFC 7162 3.1.4.
    ModSeq,
    /// `BODY[section]<partial>` or `BODY.PEEK[...]`.
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<Partial>,
    },
    /// RFC 3516 `BINARY[part]<partial>` or `BINARY.PEEK[...]`.
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<Partial>,
    },
    /// RFC 3516 `BINARY.SIZE[part]`.
    BinarySize {
        part: Vec<u32>,
    },
}

/// RFC 3501 9 `partial = "<" number "." nz-number ">"`: offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    pub offset: u32,
    pub length: u32,
}

/// RFC 3501 9 `section-spec`: a part path (empty for the message itself)
/// and what of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// `section-part`: 1.2.3 is [1, 2, 3].
    pub part: Vec<u32>,
    /// None for the whole part (`BODY[]`, `BODY[1.2]`).
    pub text: Option<SectionText>,
}

/// RFC 3501 9 `section-msgtext` / "MIME".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// HEADER.FIELDS (names as sent; compare case-insensitively).
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    /// Only after a part number (RFC 3501 6.4.5).
    Mime,
}

/// RFC 7162 fetch modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchModifiers {
    /// CHANGEDSINCE mod-sequence (RFC 7162 3.1.4.1).
    pub changed_since: Option<u64>,
    /// VANISHED (RFC 7162 3.2.6: UID FETCH only, with CHANGEDSINCE).
    pub vanished: bool,
}

/// RFC 3501 9: `("ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att
/// *(SP fetch-att) ")")`.
pub(crate) fn fetch_attrs(lx: &mut Lexer<'_>) -> R<Vec<FetchAttr>> {
    use FetchAttr::*;
    if lx.peek() == Some(b'(') {
        return lx.list(false, fetch_att);
    }
    // RFC 3501 6.4.5: the macros, which cannot be combined with others.
    match lx.peek_keyword().as_str() {
        "ALL" => {
            lx.keyword()?;
            Ok(vec![Flags, InternalDate, Rfc822Size, Envelope])
        }
        "FAST" => {
            lx.keyword()?;
            Ok(vec![Flags, InternalDate, Rfc822Size])
        }
        "FULL" => {
            lx.keyword()?;
            Ok(vec![Flags, InternalDate, Rfc822Size, Envelope, Body])
        }
        _ => Ok(vec![fetch_att(lx)?]),
    }
}

/// RFC 3501 9 `fetch-att`, RFC 3516 and RFC 7162 additions.
fn fetch_att(lx: &mut Lexer<'_>) -> R<FetchAttr> {
    // The name runs up to "[" (atom chars exclude "]" but not "["),
    // so read it by hand.
    let name = lx.take_while(|b| b.is_ascii_alphanumeric() || b == b'.');
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let attr = match name.as_str() {
        "ENVELOPE" => FetchAttr::Envelope,
        "FLAGS" => FetchAttr::Flags,
        "INTERNALDATE" => FetchAttr::InternalDate,
        "RFC822" => FetchAttr::Rfc822,
        "RFC822.HEADER" => FetchAttr::Rfc822Header,
        "RFC822.SIZE" => FetchAttr::Rfc822Size,
        "RFC822.TEXT" => FetchAttr::Rfc822Text,
        "BODYSTRUCTURE" => FetchAttr::BodyStructure,
        "UID" => FetchAttr::Uid,
        "MODSEQ" => FetchAttr::ModSeq,
        "BODY" if lx.peek() != Some(b'[') => FetchAttr::Body,
        "BODY" | "BODY.PEEK" => {
            let section = section(lx)?;
            FetchAttr::BodySection {
                peek: name == "BODY.PEEK",
                section,
                partial: partial(lx)?,
            }
        }
        "BINARY" | "BINARY.PEEK" => {
            let part = section_binary(lx)?;
            FetchAttr::Binary {
                peek: name == "BINARY.PEEK",
                part,
                partial: partial(lx)?,
            }
        }
        "BINARY.SIZE" => FetchAttr::BinarySize {
            part: section_binary(lx)?,
        },
        _ => return Err(ParseError::Syntax("unknown FETCH item")),
    };
    Ok(attr)
}

/// RFC 3501 9 `section-part = nz-number *("." nz-number)`, stopping before
/// a "." that does not start a number; bounded by `max_depth`.
fn section_part(lx: &mut Lexer<'_>) -> R<Vec<u32>> {
    let mut part = Vec::new();
    while lx.peek().is_some_and(|b| b.is_ascii_digit()) {
        if part.len() >= lx.limits().max_depth {
            return Err(ParseError::TooDeep);
        }
        part.push(lx.nz_number()?);
        let rest = lx.rest();
        if rest.first() == Some(&b'.') && rest.get(1).is_some_and(u8::is_ascii_digit) {
            lx.eat(b'.');
        } else {
            break;
        }
    }
    Ok(part)
}

/// RFC 3501 9 `section = "[" [section-spec] "]"`.
fn section(lx: &mut Lexer<'_>) -> R<Section> {
    lx.expect(b'[', "expected [")?;
    let part = section_part(lx)?;
    if lx.eat(b']') {
        return Ok(Section { part, text: None });
    }
    if !part.is_empty() {
        lx.expect(b'.', "bad section")?;
    }
    let name = lx.take_while(|b| b.is_ascii_alphabetic() || b == b'.');
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let text = match name.as_str() {
        "HEADER" => SectionText::Header,
        "TEXT" => SectionText::Text,
        // RFC 3501 6.4.5: MIME only for a part.
        "MIME" if !part.is_empty() => SectionText::Mime,
        "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
            lx.sp()?;
            let names = lx.list(false, |lx| {
                let n = lx.astring_text()?;
                // RFC 5322 3.6.8: field-name is printable ASCII but ':'.
                if n.is_empty() || !n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b':') {
                    return Err(ParseError::Syntax("invalid header field name"));
                }
                Ok(n)
            })?;
            if name == "HEADER.FIELDS" {
                SectionText::HeaderFields(names)
            } else {
                SectionText::HeaderFieldsNot(names)
            }
        }
        _ => return Err(ParseError::Syntax("invalid section")),
    };
    lx.expect(b']', "expected ]")?;
    Ok(Section {
        part,
        text: Some(text),
    })
}

/// RFC 3516 4.2 `section-binary = "[" [section-part] "]"`.
fn section_binary(lx: &mut Lexer<'_>) -> R<Vec<u32>> {
    lx.expect(b'[', "expected [")?;
    let part = section_part(lx)?;
    lx.expect(b']', "expected ]")?;
    Ok(part)
}

/// RFC 3501 9 `partial`, when present.
fn partial(lx: &mut Lexer<'_>) -> R<Option<Partial>> {
    if !lx.eat(b'<') {
        return Ok(None);
    }
    let offset = lx.number()?;
    lx.expect(b'.', "bad partial")?;
    let length = lx.nz_number()?;
    lx.expect(b'>', "bad partial")?;
    Ok(Some(Partial { offset, length }))
}

/// RFC 7162 3.1.4.1 / 3.2.6: `SP "(" fetch-modifier *(SP fetch-modifier) ")"`,
/// when present.
pub(crate) fn fetch_modifiers(lx: &mut Lexer<'_>) -> R<FetchModifiers> {
    let mut m = FetchModifiers::default();
    if lx.at_end() {
        return Ok(m);
    }
    lx.sp()?;
    lx.list(false, |lx| {
        match lx.keyword()?.as_str() {
            "CHANGEDSINCE" if m.changed_since.is_none() => {
                lx.sp()?;
                m.changed_since = Some(lx.number64()?);
            }
            "VANISHED" if !m.vanished => m.vanished = true,
            _ => return Err(ParseError::Syntax("unknown FETCH modifier")),
        }
        Ok(())
    })?;
    Ok(m)
}
