//! BODY and BODYSTRUCTURE: the Content-* fields of each part and the
//! parenthesised structure Dovecot 2.3 writes from them.
//!
//! Owns reading Content-Type, Content-Transfer-Encoding, Content-ID,
//! Content-Description, Content-MD5, Content-Disposition, Content-Language
//! and Content-Location, and writing BODY (basic fields only) and
//! BODYSTRUCTURE (with extension data). The part tree is `parser.rs`.
//!
//! Standards: RFC 3501 7.4.2 BODY and BODYSTRUCTURE (body-type-1part,
//! body-type-mpart, body-ext-1part with MD5, disposition, language,
//! location; text parts with a line count; message/rfc822 with envelope,
//! body and line count), RFC 9051 7.5.2 (unchanged); RFC 2045 5 and 6
//! (Content-Type default text/plain; charset=us-ascii; default 7bit),
//! RFC 2183 (Content-Disposition), RFC 3282 (Content-Language), RFC 2557
//! (Content-Location), RFC 1864 (Content-MD5), RFC 2231 (parameters).
//!
//! As Dovecot does: types, subtypes, parameter names and values are sent
//! as written (no case folding); "charset" "us-ascii" is added to text
//! parts that have no charset; the first Content-Type,
//! Content-Transfer-Encoding, Content-ID and so on wins, but a later
//! Content-Disposition replaces one without parameters; without
//! MIME-Version or Content-Type every Content-* field of a part is
//! ignored; a broken Content-Type is sent as "" ""; a multipart with no
//! parts gets one empty text/plain part; parts cut off by the nesting limit
//! are application/octet-stream.
//!
//! Security: the structure is written with an explicit stack, so 100
//! levels of nesting cost no native stack.
//!
//! Diagnostics: none.

use super::envelope::{strdup, Envelope};
use super::parser::{Field, Part, DIGEST, MULTIPART, RFC822};
use super::rfc822::Parser;
use super::write;

/// One part's Content-* data (message_part_data).
#[derive(Debug, Clone, Default)]
pub(crate) struct Content {
    pub ctype: Option<Vec<u8>>,
    pub subtype: Vec<u8>,
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
    pub id: Option<Vec<u8>>,
    pub description: Option<Vec<u8>>,
    pub encoding: Option<Vec<u8>>,
    pub md5: Option<Vec<u8>>,
    pub disposition: Option<Vec<u8>>,
    pub disposition_params: Vec<(Vec<u8>, Vec<u8>)>,
    pub language: Option<Vec<Vec<u8>>>,
    pub location: Option<Vec<u8>>,
}

impl Content {
    /// Reads the Content-* fields (message_part_data_parse_from_header);
    /// `is_mime` false forgets them all (RFC 2045 4).
    pub(crate) fn from_fields(fields: &[Field], is_mime: bool) -> Self {
        let mut c = Content::default();
        if !is_mime {
            return c;
        }
        for f in fields {
            if f.name.len() < 8 || !f.name[..8].eq_ignore_ascii_case(b"Content-") {
                continue;
            }
            let rest = &f.name[8..];
            let is = |n: &str| rest.eq_ignore_ascii_case(n.as_bytes());
            if is("Type") && c.ctype.is_none() {
                c.content_type(&f.value);
            } else if is("Transfer-Encoding") && c.encoding.is_none() {
                let mut p = Parser::new(&f.value);
                let _ = p.skip_lwsp();
                let mut s = Vec::new();
                if p.mime_token(&mut s).is_ok() && p.skip_lwsp() == Ok(false) && !s.is_empty() {
                    c.encoding = Some(s);
                }
            } else if is("ID") && c.id.is_none() {
                c.id = Some(strdup(&f.value));
            } else if is("MD5") && c.md5.is_none() {
                c.md5 = Some(strdup(&f.value));
            } else if is("Description") && c.description.is_none() {
                c.description = Some(strdup(&f.value));
            } else if is("Location") && c.location.is_none() {
                c.location = Some(strdup(&f.value));
            } else if is("Language") && c.language.is_none() {
                c.content_language(&f.value);
            } else if is("Disposition") && c.disposition_params.is_empty() {
                let mut p = Parser::new(&f.value);
                let _ = p.skip_lwsp();
                let mut s = Vec::new();
                if p.mime_token(&mut s).is_ok() {
                    c.disposition = Some(s);
                    c.disposition_params = p.params();
                }
            }
        }
        c
    }

    fn content_type(&mut self, value: &[u8]) {
        let mut p = Parser::new(value);
        let _ = p.skip_lwsp();
        let mut s = Vec::new();
        let ret = p.content_type(&mut s);
        match s.iter().position(|&b| b == b'/') {
            Some(i) => {
                self.subtype = s[i + 1..].to_vec();
                s.truncate(i);
            }
            None => self.subtype = Vec::new(),
        }
        self.ctype = Some(s);
        if ret.is_ok() {
            self.params = p.params();
        }
    }

    /// RFC 3282: a comma-separated list of language tags (atoms).
    fn content_language(&mut self, value: &[u8]) {
        let mut p = Parser::new(value);
        let mut langs = Vec::new();
        let _ = p.skip_lwsp();
        loop {
            let mut s = Vec::new();
            if p.atom(&mut s).is_err() {
                break;
            }
            langs.push(s);
            if p.at_end() || p.peek() != b',' {
                break;
            }
            p.pos += 1;
            let _ = p.skip_lwsp();
        }
        if !langs.is_empty() {
            self.language = Some(langs);
        }
    }

    fn is_type(&self, t: &str, sub: &str) -> bool {
        self.ctype
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(t.as_bytes()))
            && self.subtype.eq_ignore_ascii_case(sub.as_bytes())
    }
}

const EMPTY_BODY: &[u8] = b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)";
const EMPTY_BODYSTRUCTURE: &[u8] =
    b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)";

/// What the writer needs of a message: parts, their data and envelopes.
pub(crate) struct Tree<'a> {
    pub raw: &'a [u8],
    pub parts: &'a [Part],
    pub content: &'a [Content],
    pub envelopes: &'a [Option<Envelope>],
}

/// Work items of the explicit-stack writer.
enum Step {
    Part(usize),
    Bytes(&'static [u8]),
    /// What follows a multipart's children.
    MultipartTail(usize),
    /// What follows a message/rfc822 part's body.
    Rfc822Tail(usize),
}

impl Tree<'_> {
    fn lines(&self, r: std::ops::Range<usize>) -> usize {
        self.raw[r].iter().filter(|&&c| c == b'\n').count()
    }

    /// BODYSTRUCTURE (`extended`) or BODY of part `root`, without the
    /// outer parentheses (imap_bodystructure_write).
    pub(crate) fn write(&self, root: usize, extended: bool, out: &mut Vec<u8>) {
        let mut stack = vec![Step::Part(root)];
        while let Some(step) = stack.pop() {
            match step {
                Step::Bytes(b) => out.extend_from_slice(b),
                Step::MultipartTail(i) => self.multipart_tail(i, extended, out),
                Step::Rfc822Tail(i) => self.rfc822_tail(i, extended, out),
                Step::Part(i) => {
                    let part = &self.parts[i];
                    if part.flags & MULTIPART != 0 {
                        stack.push(Step::MultipartTail(i));
                        if part.children.is_empty() {
                            out.extend_from_slice(if extended {
                                EMPTY_BODYSTRUCTURE
                            } else {
                                EMPTY_BODY
                            });
                        }
                        for &c in part.children.iter().rev() {
                            stack.push(Step::Bytes(b")"));
                            stack.push(Step::Part(c));
                            stack.push(Step::Bytes(b"("));
                        }
                    } else if self.leaf_head(i, out) {
                        // message/rfc822: envelope, body, lines, extensions
                        let child = part.children.first().copied();
                        out.extend_from_slice(b" (");
                        Envelope::write(child.and_then(|c| self.envelopes[c].as_ref()), out);
                        out.extend_from_slice(b") ");
                        stack.push(Step::Rfc822Tail(i));
                        if let Some(c) = child {
                            stack.push(Step::Bytes(b")"));
                            stack.push(Step::Part(c));
                            stack.push(Step::Bytes(b"("));
                        }
                    } else if extended {
                        self.extension_1part(i, out);
                    }
                }
            }
        }
    }

    fn multipart_tail(&self, i: usize, extended: bool, out: &mut Vec<u8>) {
        let c = &self.content[i];
        out.push(b' ');
        write::string(out, &c.subtype);
        if extended {
            out.push(b' ');
            params(out, &c.params, false);
            common(out, c);
        }
    }

    fn rfc822_tail(&self, i: usize, extended: bool, out: &mut Vec<u8>) {
        let p = &self.parts[i];
        out.extend_from_slice(format!(" {}", self.lines(p.body_start..p.end)).as_bytes());
        if extended {
            self.extension_1part(i, out);
        }
    }

    fn extension_1part(&self, i: usize, out: &mut Vec<u8>) {
        let c = &self.content[i];
        out.push(b' ');
        write::nstring_nolf(out, c.md5.as_deref());
        common(out, c);
    }

    /// Writes a non-multipart part up to its size (and line count for
    /// text); true when it is message/rfc822 and the envelope must follow.
    fn leaf_head(&self, i: usize, out: &mut Vec<u8>) -> bool {
        let part = &self.parts[i];
        let c = &self.content[i];
        let rfc822 = part.flags & RFC822 != 0;
        let text;
        if rfc822 {
            out.extend_from_slice(b"\"message\" \"rfc822\"");
            text = false;
        } else if self.truncated(i) {
            out.extend_from_slice(b"\"application\" \"octet-stream\"");
            text = false;
        } else if let Some(t) = &c.ctype {
            text = t.eq_ignore_ascii_case(b"text");
            write::string(out, t);
            out.push(b' ');
            write::string(out, &c.subtype);
        } else {
            text = true;
            out.extend_from_slice(b"\"text\" \"plain\"");
        }
        out.push(b' ');
        params(out, &c.params, text);
        out.push(b' ');
        write::nstring_nolf(out, c.id.as_deref());
        out.push(b' ');
        write::nstring_nolf(out, c.description.as_deref());
        out.push(b' ');
        match &c.encoding {
            Some(e) => write::string(out, e),
            None => out.extend_from_slice(b"\"7bit\""),
        }
        out.extend_from_slice(format!(" {}", part.end - part.body_start).as_bytes());
        if text {
            out.extend_from_slice(format!(" {}", self.lines(part.body_start..part.end)).as_bytes());
        }
        rfc822
    }

    /// A multipart or message/rfc822 the parser did not descend into
    /// (part_is_truncated).
    fn truncated(&self, i: usize) -> bool {
        let c = &self.content[i];
        match &c.ctype {
            Some(t) => c.is_type("message", "rfc822") || t.eq_ignore_ascii_case(b"multipart"),
            None => self.parts[i]
                .parent
                .is_some_and(|p| self.parts[p].flags & DIGEST != 0),
        }
    }
}

/// Parameter list, NIL when empty (unless a default charset is due).
fn params(out: &mut Vec<u8>, params: &[(Vec<u8>, Vec<u8>)], default_charset: bool) {
    if !default_charset && params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    let mut seen_charset = false;
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        if k.eq_ignore_ascii_case(b"charset") {
            seen_charset = true;
        }
        write::string(out, k);
        out.push(b' ');
        write::string(out, v);
    }
    if default_charset && !seen_charset {
        if !params.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\"charset\" \"us-ascii\"");
    }
    out.push(b')');
}

/// Disposition, language and location (body-ext-1part and -mpart tails).
fn common(out: &mut Vec<u8>, c: &Content) {
    out.push(b' ');
    match &c.disposition {
        None => out.extend_from_slice(b"NIL"),
        Some(d) => {
            out.push(b'(');
            write::string(out, d);
            out.push(b' ');
            params(out, &c.disposition_params, false);
            out.push(b')');
        }
    }
    out.push(b' ');
    match &c.language {
        None => out.extend_from_slice(b"NIL"),
        Some(langs) => {
            out.push(b'(');
            for (i, l) in langs.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write::string(out, l);
            }
            out.push(b')');
        }
    }
    out.push(b' ');
    write::nstring_nolf(out, c.location.as_deref());
}
