//! The MIME tree of a message, cut exactly where Dovecot's message-parser.c
//! cuts it, so that part sizes, line counts and section boundaries agree
//! byte for byte with Dovecot's BODYSTRUCTURE and BODY[section].
//!
//! Owns: header fields (name, unfolded value, raw line range) and the part
//! tree (header range, body range, flags). It does not interpret
//! Content-* beyond what finds the parts (`structure.rs` does).
//!
//! Standards: RFC 5322 2.2 (header fields, folding) and 2.1 (the header
//! ends at the first empty line); RFC 2046 5.1.1 (boundary delimiters: the
//! CRLF before `--boundary` belongs to the delimiter; the close delimiter
//! `--boundary--`; preamble and epilogue belong to the multipart), 5.1.5
//! (multipart/digest parts default to message/rfc822), 5.2.1
//! (message/rfc822 bodies are messages); RFC 2045 4 (without MIME-Version or
//! Content-Type a part is plain text).
//!
//! Dovecot's treatment of broken input, kept on purpose: a boundary line
//! only has to start with `--` and the boundary (RFC 2046 says so too), the
//! longest matching boundary of any open multipart wins, and a boundary of
//! an outer multipart closes every inner part; a header cut short by a
//! boundary line ends there; a multipart without a boundary parameter has
//! no children; a missing close delimiter ends the parts at the end of the
//! message. Boundaries are cut to 80 bytes.
//!
//! Security: bounded like Dovecot: at most `MAX_NESTED` levels of parts
//! (deeper multiparts and message/rfc822 become single leaf parts, shown
//! as application/octet-stream) and `MAX_TOTAL` parts (later boundaries
//! are not looked for). The parser is a loop with an explicit state, never
//! recursion, and each step moves forward through the input.
//!
//! Diagnostics: none; the parse never fails.

use std::ops::Range;

use super::rfc822::Parser;

/// Dovecot's MESSAGE_PARSER_DEFAULT_MAX_NESTED_MIME_PARTS.
pub const MAX_NESTED: usize = 100;
/// Dovecot's MESSAGE_PARSER_DEFAULT_MAX_TOTAL_MIME_PARTS.
pub const MAX_TOTAL: usize = 10_000;
/// Dovecot's BOUNDARY_STRING_MAX_LEN: longer boundaries are cut.
const BOUNDARY_MAX: usize = 80;
/// Header names longer than this make the whole line a value
/// (RFC 5322 2.1.1 line length, as MESSAGE_HEADER_NAME_MAX_LEN).
const NAME_MAX: usize = 1000;

pub(crate) const MULTIPART: u8 = 0x01;
pub(crate) const RFC822: u8 = 0x02;
pub(crate) const TEXT: u8 = 0x04;
pub(crate) const IS_MIME: u8 = 0x08;
pub(crate) const DIGEST: u8 = 0x10;
pub(crate) const OVERFLOW: u8 = 0x20;

/// One header field.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    /// The name as written (trailing white space before the colon
    /// removed); empty for a line without a colon.
    pub name: Vec<u8>,
    /// The value: white space after the colon skipped, continuation lines
    /// joined with LF (their CR dropped), as Dovecot's full_value.
    pub value: Vec<u8>,
    /// The raw lines of the field, with its final line end.
    pub raw: Range<usize>,
}

impl Field {
    pub(crate) fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// One MIME part: `start..body_start` is its header (with the empty line),
/// `body_start..end` its body.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    pub flags: u8,
    pub start: usize,
    pub body_start: usize,
    pub end: usize,
    pub fields: Vec<Field>,
}

impl Part {
    fn new(parent: Option<usize>, start: usize, flags: u8) -> Self {
        Part {
            parent,
            children: Vec::new(),
            flags,
            start,
            body_start: start,
            end: start,
            fields: Vec::new(),
        }
    }
}

/// An open multipart's boundary.
struct Boundary {
    part: usize,
    text: Vec<u8>,
}

enum State {
    Header(usize),
    Body,
    Done,
}

/// Splits `raw` into parts; `parts[0]` is the message.
pub(crate) fn parse(raw: &[u8]) -> Vec<Part> {
    let mut parts = vec![Part::new(None, 0, 0)];
    let mut depth = vec![0usize];
    let mut boundaries: Vec<Boundary> = Vec::new();
    let mut cur = 0;
    let mut pos = 0;
    let mut state = State::Header(0);
    loop {
        match state {
            State::Done => break,
            State::Header(p) => {
                let h = header(raw, pos, &boundaries, p, parts.len());
                pos = h.next;
                let part = &mut parts[p];
                part.fields = h.fields;
                part.body_start = h.end;
                part.end = h.end;
                if h.overflow {
                    part.flags |= OVERFLOW;
                }
                let mut boundary = None;
                if part
                    .fields
                    .iter()
                    .any(|f| f.is("Mime-Version") || f.is("Content-Type"))
                {
                    part.flags |= IS_MIME;
                }
                // the first Content-Type decides (parse_content_type)
                let mut seen_content_type = false;
                if let Some(f) = part.fields.iter().find(|f| f.is("Content-Type")) {
                    seen_content_type = true;
                    let mut p = Parser::new(&f.value);
                    let mut ct = Vec::new();
                    let ret = p.content_type(&mut ct);
                    let lower = ct.to_ascii_lowercase();
                    if lower == b"message/rfc822" {
                        part.flags |= RFC822;
                    } else if lower.starts_with(b"text") && (lower.len() == 4 || lower[4] == b'/') {
                        part.flags |= TEXT;
                    } else if lower.starts_with(b"multipart/") {
                        part.flags |= MULTIPART;
                        if &lower[10..] == b"digest" {
                            part.flags |= DIGEST;
                        }
                    }
                    if ret.is_ok() && part.flags & MULTIPART != 0 {
                        boundary = p
                            .params()
                            .into_iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(b"boundary"))
                            .map(|(_, mut v)| {
                                v.truncate(BOUNDARY_MAX);
                                v
                            });
                    }
                }
                let too_deep = depth[p] + 1 >= MAX_NESTED;
                let mut multipart = false;
                if h.eoh && part.flags & IS_MIME != 0 {
                    if let Some(text) = boundary {
                        if !too_deep {
                            boundaries.push(Boundary { part: p, text });
                            multipart = true;
                        } else {
                            part.flags |= OVERFLOW;
                            part.flags &= !MULTIPART;
                        }
                    }
                }
                if part.flags & IS_MIME == 0 {
                    part.flags = 0;
                }
                if !seen_content_type || part.flags & IS_MIME == 0 {
                    let digest_parent = part.parent.is_some_and(|q| parts[q].flags & DIGEST != 0);
                    let part = &mut parts[p];
                    part.flags |= if digest_parent { RFC822 } else { TEXT };
                }
                cur = p;
                let nparts = parts.len();
                let part = &mut parts[p];
                if multipart || part.flags & RFC822 == 0 {
                    state = State::Body;
                } else if !too_deep && nparts < MAX_TOTAL {
                    let child = nparts;
                    let start = part.body_start;
                    part.children.push(child);
                    parts.push(Part::new(Some(p), start, 0));
                    depth.push(depth[p] + 1);
                    if h.aborted {
                        // the boundary that cut the header cuts the child too
                        let c = &mut parts[child];
                        c.flags = TEXT;
                        cur = child;
                        state = State::Body;
                    } else {
                        state = State::Header(child);
                    }
                } else {
                    part.flags |= OVERFLOW;
                    part.flags &= !RFC822;
                    state = State::Body;
                }
                if h.aborted && matches!(state, State::Body) {
                    // the line end before the boundary went to the parent
                    pos = h.boundary_line;
                    let end = parts[cur].body_start;
                    state = found_boundary(
                        raw,
                        &mut parts,
                        &mut depth,
                        &mut boundaries,
                        &mut cur,
                        &mut pos,
                        h.boundary_line,
                        end,
                    );
                }
            }
            State::Body => {
                state = body(
                    raw,
                    &mut parts,
                    &mut depth,
                    &mut boundaries,
                    &mut cur,
                    &mut pos,
                );
            }
        }
    }
    // everything still open ends with the message
    let mut p = Some(cur);
    while let Some(q) = p {
        parts[q].end = raw.len().max(parts[q].body_start);
        p = parts[q].parent;
    }
    parts
}

/// Scans a body from `pos` (a line start) for a boundary line.
fn body(
    raw: &[u8],
    parts: &mut Vec<Part>,
    depth: &mut Vec<usize>,
    boundaries: &mut Vec<Boundary>,
    cur: &mut usize,
    pos: &mut usize,
) -> State {
    if boundaries.is_empty() {
        *pos = raw.len();
        return State::Done;
    }
    let region = *pos;
    let mut line = *pos;
    loop {
        if find(raw, line, boundaries, parts, *cur).is_some() {
            let newline = if line == region {
                line
            } else if line >= 2 && raw[line - 2] == b'\r' && line - 2 >= region {
                line - 2
            } else {
                line - 1
            };
            return found_boundary(raw, parts, depth, boundaries, cur, pos, line, newline);
        }
        match memchr(b'\n', &raw[line..]) {
            Some(i) => line += i + 1,
            None => {
                *pos = raw.len();
                return State::Done;
            }
        }
        if line >= raw.len() {
            *pos = raw.len();
            return State::Done;
        }
    }
}

/// A boundary line starts at `line`; the parts it closes end at `newline`.
#[allow(clippy::too_many_arguments)]
fn found_boundary(
    raw: &[u8],
    parts: &mut Vec<Part>,
    depth: &mut Vec<usize>,
    boundaries: &mut Vec<Boundary>,
    cur: &mut usize,
    pos: &mut usize,
    line: usize,
    newline: usize,
) -> State {
    let Some((b, epilogue)) = find(raw, line, boundaries, parts, *cur) else {
        // cannot happen: callers found it; treat as the end
        *pos = raw.len();
        return State::Done;
    };
    let owner = boundaries[b].part;
    while *cur != owner {
        parts[*cur].end = newline.max(parts[*cur].body_start);
        match parts[*cur].parent {
            Some(p) => *cur = p,
            None => break,
        }
    }
    boundaries.truncate(if epilogue { b } else { b + 1 });
    *pos = match memchr(b'\n', &raw[line..]) {
        Some(i) => line + i + 1,
        None => raw.len(),
    };
    if boundaries.last().is_none_or(|top| top.part != *cur) {
        return State::Body;
    }
    // RFC 2046 5.1.1: a body part follows the delimiter line
    let child = parts.len();
    parts[*cur].children.push(child);
    parts.push(Part::new(Some(*cur), *pos, IS_MIME));
    depth.push(depth[*cur] + 1);
    *cur = child;
    State::Header(child)
}

/// The boundary (index into `boundaries`) a line starting at `line` is,
/// and whether it is a close delimiter (boundary_line_find).
fn find(
    raw: &[u8],
    line: usize,
    boundaries: &[Boundary],
    parts: &mut [Part],
    cur: usize,
) -> Option<(usize, bool)> {
    let rest = raw.get(line..)?;
    if rest.len() < 2 || &rest[..2] != b"--" {
        return None;
    }
    if parts.len() >= MAX_TOTAL {
        parts[cur].flags |= OVERFLOW;
        return None;
    }
    let best = boundary_at(raw, line, boundaries);
    let b = best?;
    let len = boundaries[b].text.len();
    let data = &rest[2..];
    let epilogue = data.len() >= len + 2 && &data[len..len + 2] == b"--";
    Some((b, epilogue))
}

pub(crate) fn memchr(c: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&x| x == c)
}

/// What reading one header found.
struct Header {
    fields: Vec<Field>,
    /// End of the header (body start).
    end: usize,
    /// Where parsing continues.
    next: usize,
    /// Ended by an empty line.
    eoh: bool,
    /// Cut short by a boundary line starting at `boundary_line`.
    aborted: bool,
    boundary_line: usize,
    overflow: bool,
}

/// Reads the header starting at `pos` (message-header-parser.c with
/// SKIP_INITIAL_LWSP and DROP_CR).
fn header(raw: &[u8], pos: usize, boundaries: &[Boundary], part: usize, nparts: usize) -> Header {
    let mut h = Header {
        fields: Vec::new(),
        end: pos,
        next: pos,
        eoh: false,
        aborted: false,
        boundary_line: 0,
        overflow: false,
    };
    let mut p = pos;
    let mut prev_newline = 0;
    loop {
        if p >= raw.len() {
            h.end = raw.len();
            h.next = raw.len();
            return h;
        }
        if raw[p] == b'\n' || (raw[p] == b'\r' && raw.get(p + 1) == Some(&b'\n')) {
            let n = if raw[p] == b'\n' { 1 } else { 2 };
            h.eoh = true;
            h.end = p + n;
            h.next = p + n;
            return h;
        }
        // a boundary of an enclosing multipart ends the header here
        if !boundaries.is_empty() && raw[p..].starts_with(b"--") {
            if nparts >= MAX_TOTAL {
                h.overflow = true;
            } else {
                if boundary_at(raw, p, boundaries).is_some_and(|b| boundaries[b].part != part) {
                    h.aborted = true;
                    h.boundary_line = p;
                    h.end = p - prev_newline;
                    h.next = p;
                    return h;
                }
            }
        }
        // one field: its first line and the continuation lines
        let start = p;
        let first_end = line_end(raw, p);
        let first = &raw[p..first_end.0];
        let mut value;
        let name;
        match memchr(b':', first) {
            Some(colon) => {
                let mut n = colon;
                while n > 0 && matches!(first[n - 1], b' ' | b'\t') {
                    n -= 1;
                }
                let v = &first[colon + 1..];
                let mut skip = v.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
                if skip == v.len() && !v.is_empty() {
                    skip = 1;
                }
                if n > NAME_MAX {
                    name = Vec::new();
                    value = first.to_vec();
                } else {
                    name = first[..n].to_vec();
                    value = v[skip..].to_vec();
                }
            }
            None => {
                name = Vec::new();
                value = first.to_vec();
            }
        }
        p = first_end.1;
        prev_newline = first_end.1 - first_end.0;
        while p < raw.len() && (raw[p] == b' ' || raw[p] == b'\t') && prev_newline > 0 {
            let (e, next) = line_end(raw, p);
            value.push(b'\n');
            value.extend_from_slice(&raw[p..e]);
            prev_newline = next - e;
            p = next;
        }
        h.fields.push(Field {
            name,
            value,
            raw: start..p,
        });
    }
}

/// A line from `p`: (end of content, start of the next line). The content
/// excludes LF and a CR right before it.
fn line_end(raw: &[u8], p: usize) -> (usize, usize) {
    match memchr(b'\n', &raw[p..]) {
        Some(i) => {
            let lf = p + i;
            let e = if lf > p && raw[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            (e, lf + 1)
        }
        None => (raw.len(), raw.len()),
    }
}

/// The boundary a header line at `line` matches (no side effects).
fn boundary_at(raw: &[u8], line: usize, boundaries: &[Boundary]) -> Option<usize> {
    let data = &raw[line + 2..];
    let (find_len, trailing_dashes) = match memchr(b'\n', data) {
        Some(lf) => {
            let mut n = lf;
            if n > 0 && data[n - 1] == b'\r' {
                n -= 1;
            }
            (n, n > 2 && data[n - 1] == b'-' && data[n - 2] == b'-')
        }
        None => (data.len(), false),
    };
    let mut best: Option<usize> = None;
    for (i, b) in boundaries.iter().enumerate().rev() {
        let len = b.text.len();
        if len <= find_len
            && data[..len] == b.text[..]
            && best.is_none_or(|x| boundaries[x].text.len() < len)
        {
            best = Some(i);
            if len == find_len || (trailing_dashes && len + 2 == find_len) {
                break;
            }
        }
    }
    best
}
