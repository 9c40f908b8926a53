//! IMAP strings as Dovecot 2.3 writes them in ENVELOPE and BODYSTRUCTURE:
//! quoted when it can, a literal for CR, LF, 8-bit bytes or more than four
//! quoted-specials; display names and subjects with their white space
//! collapsed ("for humans").
//!
//! Owns only the choice between NIL, quoted string and literal and the
//! escaping; the structures are written by `envelope.rs` and
//! `structure.rs`.
//!
//! Standards: RFC 3501 4.3 (string: quoted or literal; quoted-specials and
//! TEXT-CHAR, no CR/LF/8-bit in a quoted string), 4.5 (NIL); RFC 9051 4.3
//! (the same; UTF-8 quoted strings only after ENABLE UTF8=ACCEPT, which this
//! does not do).
//!
//! Security: output only; a value cannot break out of its string (quotes
//! and backslashes escaped, CR/LF forcing a literal).
//!
//! Diagnostics: none.

/// More quoted-specials than this and a literal is shorter (imap-quote.c).
const QUOTED_MAX_ESCAPE_CHARS: usize = 4;

/// `{n}\r\n` and the bytes.
pub(crate) fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// A quoted string; CR, LF and 8-bit bytes are dropped (callers only come
/// here when there are none).
pub(crate) fn quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'\r' | b'\n' => {}
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(c);
            }
            c if c >= 0x80 => {}
            c => out.push(c),
        }
    }
    out.push(b'"');
}

/// RFC 3501 nstring: NIL, quoted, or a literal when the value holds CR,
/// LF, 8-bit bytes or too many quoted-specials.
pub(crate) fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    let Some(s) = s else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let mut escapes = 0;
    for &c in s {
        let lit = match c {
            b'"' | b'\\' => {
                escapes += 1;
                escapes > QUOTED_MAX_ESCAPE_CHARS
            }
            b'\r' | b'\n' => true,
            c => c >= 0x80,
        };
        if lit {
            literal(out, s);
            return;
        }
    }
    quoted(out, s);
}

/// A string (never NIL).
pub(crate) fn string(out: &mut Vec<u8>, s: &[u8]) {
    nstring(out, Some(s));
}

/// nstring with header folding undone: a CR or LF before white space (or
/// at the end) is dropped, one before anything else becomes a space.
pub(crate) fn nstring_nolf(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) if s.iter().any(|&c| c == b'\r' || c == b'\n') => {
            let mut v = Vec::with_capacity(s.len());
            for (i, &c) in s.iter().enumerate() {
                if c != b'\r' && c != b'\n' {
                    v.push(c);
                } else if !matches!(s.get(i + 1), None | Some(b' ' | b'\t' | b'\r' | b'\n')) {
                    v.push(b' ');
                }
            }
            nstring(out, Some(&v));
        }
        other => nstring(out, other),
    }
}

/// Subjects and display names: runs of white space (CR, LF, TAB, SP)
/// become one space, leading and trailing white space goes, NUL becomes
/// 0x80; anything changed, or a quote or backslash present, and it is
/// sent as a literal (imap_append_string_for_humans).
pub(crate) fn string_for_humans(out: &mut Vec<u8>, src: &[u8]) {
    let mut modify = false;
    let mut remove_count = 0;
    let mut last_lwsp = true;
    let mut whitespace_prefix = true;
    for &c in src {
        match c {
            0 => {
                last_lwsp = false;
                modify = true;
            }
            b'\r' | b'\n' | b'\t' | b' ' => {
                if c != b' ' {
                    modify = true;
                }
                if last_lwsp {
                    modify = true;
                    remove_count += 1;
                }
                last_lwsp = true;
            }
            b'"' | b'\\' => {
                modify = true;
                last_lwsp = false;
            }
            c => {
                if c >= 0x80 {
                    modify = true;
                }
                last_lwsp = false;
            }
        }
        if !last_lwsp {
            whitespace_prefix = false;
        }
    }
    if last_lwsp && !src.is_empty() && !whitespace_prefix {
        modify = true;
        remove_count += 1;
    }
    if !modify {
        out.push(b'"');
        out.extend_from_slice(src);
        out.push(b'"');
        return;
    }
    if src.len() == remove_count {
        out.extend_from_slice(b"\"\"");
        return;
    }
    out.extend_from_slice(format!("{{{}}}\r\n", src.len() - remove_count).as_bytes());
    let start = out.len();
    let mut last_lwsp = true;
    let mut whitespace_prefix = true;
    for &c in src {
        match c {
            0 => {
                out.push(0x80);
                last_lwsp = false;
            }
            b'\r' | b'\n' | b'\t' | b' ' => {
                if !last_lwsp {
                    out.push(b' ');
                }
                last_lwsp = true;
            }
            c => {
                last_lwsp = false;
                out.push(c);
            }
        }
        if !last_lwsp {
            whitespace_prefix = false;
        }
    }
    if last_lwsp && !src.is_empty() && !whitespace_prefix && out.len() > start {
        out.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }

    #[test]
    fn nstring_choices() {
        assert_eq!(w(|o| nstring(o, None)), "NIL");
        assert_eq!(w(|o| nstring(o, Some(b"a\"b"))), "\"a\\\"b\"");
        assert_eq!(w(|o| nstring(o, Some(b"\"\"\"\"\""))), "{5}\r\n\"\"\"\"\"");
        assert_eq!(w(|o| nstring(o, Some("é".as_bytes()))), "{2}\r\né");
    }

    #[test]
    fn for_humans_collapses_white_space() {
        assert_eq!(w(|o| string_for_humans(o, b"plain")), "\"plain\"");
        assert_eq!(w(|o| string_for_humans(o, b" a\n  b ")), "{3}\r\na b");
        assert_eq!(w(|o| string_for_humans(o, b"   ")), "\"\"");
    }
}
