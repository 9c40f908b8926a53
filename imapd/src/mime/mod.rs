//! The IMAP view of a message: ENVELOPE, BODYSTRUCTURE and BODY,
//! BODY[section]<partial>, BINARY, and the message text SEARCH, SORT and
//! THREAD look at, matching Dovecot 2.3's output byte for byte (the golden
//! files under imapd/tests/golden/ are Dovecot's own answers).
//!
//! Owns the message model for imapd: [`ParsedMessage::parse`] cuts a
//! message into parts once, and the methods answer FETCH items from it. It
//! does not own the FETCH syntax (proto::imap), literals around section
//! data, or reading the message from the store.
//!
//! Input: the message as the store hands it over, CRLF line ends. Bare LF
//! is accepted too: it is turned into CRLF first (as the store does, and
//! as Dovecot counts sizes for LF files), so sizes and sections are those
//! of the CRLF form. A bare CR is kept as it is.
//!
//! Layout: `parser` (headers and the part tree, Dovecot's message-parser),
//! `rfc822` (tokens), `address` (address lists), `write` (IMAP strings),
//! `envelope`, `structure` (BODY/BODYSTRUCTURE), `section`, `binary`,
//! `search` (SEARCH text, dates, SORT and THREAD keys), `decompose` (its
//! case-folding table).
//!
//! Standards: RFC 3501 6.4.4 (SEARCH), 6.4.5 and 7.4.2 (FETCH items),
//! RFC 9051 6.4.4, 6.4.5, 7.5.2; RFC 3516 (BINARY); RFC 5256 (SORT and
//! THREAD keys); RFC 2045-2047, RFC 2231, RFC 5322 (the message).
//!
//! Security: the input is anything anyone could send. Parsing never fails
//! and never panics; every loop moves forward through the input; nothing
//! recurses on the message's structure (explicit stacks), and the part
//! tree is bounded as Dovecot bounds it: 100 levels of nesting
//! ([`MAX_NESTED`]) and 10,000 parts ([`MAX_TOTAL`]); memory is a small
//! multiple of the message size.
//!
//! Diagnostics: none logged; [`BinaryError`] for BINARY.

mod address;
mod binary;
mod decompose;
mod envelope;
mod parser;
mod rfc822;
mod search;
mod section;
mod structure;
mod write;

pub use binary::{Binary, BinaryError};
pub use parser::{MAX_NESTED, MAX_TOTAL};
pub use search::{base_subject, decode_header, SortKeys, ThreadKeys};
pub use section::{partial, Section, SectionText};

use envelope::Envelope;
use parser::{Part, IS_MIME, RFC822};
use structure::{Content, Tree};

/// A message cut into its MIME parts.
#[derive(Debug, Clone)]
pub struct ParsedMessage {
    /// The message, CRLF line ends.
    raw: Vec<u8>,
    /// `parts[0]` is the message; children follow their parents.
    parts: Vec<Part>,
    /// Content-* data per part.
    content: Vec<Content>,
    /// The envelope of the message (index 0) and of each message inside a
    /// message/rfc822 part.
    envelopes: Vec<Option<Envelope>>,
}

impl ParsedMessage {
    /// Parses a message (CRLF or bare LF, see the module header). Never
    /// fails: broken MIME is read the way Dovecot reads it.
    pub fn parse(raw: &[u8]) -> ParsedMessage {
        let raw = crlf(raw);
        let parts = parser::parse(&raw);
        let content = parts
            .iter()
            .map(|p| Content::from_fields(&p.fields, p.flags & IS_MIME != 0))
            .collect();
        let envelopes = parts
            .iter()
            .map(|p| {
                let wanted = match p.parent {
                    None => true,
                    Some(q) => parts[q].flags & RFC822 != 0,
                };
                // a message with no header fields at all has no envelope
                (wanted && !(p.parent.is_some() && p.fields.is_empty()))
                    .then(|| Envelope::from_fields(&p.fields))
            })
            .collect();
        ParsedMessage {
            raw,
            parts,
            content,
            envelopes,
        }
    }

    /// The message as parsed (CRLF line ends).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// RFC 3501 7.4.2 ENVELOPE, with its parentheses.
    pub fn envelope(&self) -> Vec<u8> {
        let mut out = vec![b'('];
        Envelope::write(self.envelopes[0].as_ref(), &mut out);
        out.push(b')');
        out
    }

    /// RFC 3501 7.4.2 BODYSTRUCTURE (`extended`) or BODY, with its
    /// parentheses.
    pub fn body_structure(&self, extended: bool) -> Vec<u8> {
        let mut out = vec![b'('];
        self.tree().write(0, extended, &mut out);
        out.push(b')');
        out
    }

    fn tree(&self) -> Tree<'_> {
        Tree {
            raw: &self.raw,
            parts: &self.parts,
            content: &self.content,
            envelopes: &self.envelopes,
        }
    }
}

/// Bare LF to CRLF (RFC 5322 2.3 line ends); CR alone is kept.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let bare = raw
        .iter()
        .enumerate()
        .filter(|&(i, &c)| c == b'\n' && (i == 0 || raw[i - 1] != b'\r'))
        .count();
    let mut out = Vec::with_capacity(raw.len() + bare);
    for (i, &c) in raw.iter().enumerate() {
        if c == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(c);
    }
    out
}
