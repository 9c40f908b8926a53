//! The `subscriptions` file: the folders a user subscribed to (IMAP LSUB,
//! LIST (SUBSCRIBED)).
//!
//! ```text
//! V<TAB>2           Dovecot 2.2+ header, then an empty line
//!
//! INBOX
//! Archive<TAB>2024  levels separated by TAB, each in modified UTF-7, tab-escaped
//! Entw&APw-rfe
//! ```
//!
//! Owns the format: version 2 as Dovecot 2.3 writes it (subscription-file.c:
//! levels joined by TAB, `\001` escapes `\001 \t \r \n` as `\0011 \001t
//! \001r \001n`), and the older form of one name per line (levels separated
//! by '.', Maildir++'s separator), which is read and rewritten as version 2.
//! Names are UTF-8 in the API. Does not own the file's update (store.rs
//! writes it through `subscriptions.lock`, renamed over it, as Dovecot
//! does).
//!
//! Standards: RFC 3501 6.3.6 (SUBSCRIBE: a name may be subscribed whether
//! or not the folder exists), 5.1.3 (modified UTF-7).
//!
//! Security: lines over MAX_LINE and files over MAX_FILE are errors; a name
//! that is not a valid folder name is an error.
//!
//! Diagnostics: `ParseError` with the line; the caller adds the path.

use crate::error::ParseError;
use crate::names;

const V2_HEADER: &[u8] = b"V\t2\n\n";
const MAX_LINE: usize = 8 * 1024;
/// Largest file read.
pub const MAX_FILE: usize = 1 << 20;

/// Parse a whole file into folder names (in file order, no duplicates).
pub fn parse(data: &[u8]) -> Result<Vec<String>, ParseError> {
    if data.len() > MAX_FILE {
        return Err(ParseError::new(0, format!("larger than {MAX_FILE} bytes")));
    }
    let (v2, body, first_line) = match data.strip_prefix(V2_HEADER) {
        Some(rest) => (true, rest, 3),
        None => (false, data, 1),
    };
    let mut out: Vec<String> = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let no = first_line + i;
        if line.is_empty() {
            continue;
        }
        if line.len() > MAX_LINE {
            return Err(ParseError::new(no, "line too long"));
        }
        let line = std::str::from_utf8(line).map_err(|_| ParseError::new(no, "not UTF-8"))?;
        let name = if v2 {
            let levels: Vec<String> = line.split('\t').map(tab_unescape).collect();
            names::from_storage_levels(levels.iter().map(String::as_str))
        } else {
            names::from_storage_levels(line.split('.'))
        };
        let Some(name) = name else {
            return Err(ParseError::new(no, format!("invalid folder name {line:?}")));
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// The file, version 2, as Dovecot 2.3 writes it.
pub fn write(names: &[String]) -> Vec<u8> {
    let mut out = V2_HEADER.to_vec();
    for n in names {
        let levels: Vec<String> = names::storage_levels(n)
            .iter()
            .map(|l| tab_escape(l))
            .collect();
        out.extend_from_slice(levels.join("\t").as_bytes());
        out.push(b'\n');
    }
    out
}

/// Dovecot's str_append_tabescaped.
fn tab_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\u{1}' => o.push_str("\u{1}1"),
            '\t' => o.push_str("\u{1}t"),
            '\r' => o.push_str("\u{1}r"),
            '\n' => o.push_str("\u{1}n"),
            c => o.push(c),
        }
    }
    o
}

/// Dovecot's str_tabunescape (an unknown escape gives the character).
fn tab_unescape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\u{1}' {
            o.push(c);
            continue;
        }
        match it.next() {
            Some('1') => o.push('\u{1}'),
            Some('t') => o.push('\t'),
            Some('r') => o.push('\r'),
            Some('n') => o.push('\n'),
            Some(other) => o.push(other),
            None => {}
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_v2() {
        let data = b"V\t2\n\nINBOX\nSent\nArchive\t2024\nEntw&APw-rfe\n";
        let names = parse(data).unwrap();
        assert_eq!(names, ["INBOX", "Sent", "Archive/2024", "Entwürfe"]);
        assert_eq!(write(&names), data);
        // No trailing LF, duplicates, empty lines.
        assert_eq!(
            parse(b"V\t2\n\nSent\n\nSent\nJunk").unwrap(),
            ["Sent", "Junk"]
        );
        assert_eq!(parse(b"V\t2\n\n").unwrap(), Vec::<String>::new());
        assert_eq!(parse(b"").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn old_form() {
        let names = parse(b"INBOX\nArchive.2024\nEntw&APw-rfe\n").unwrap();
        assert_eq!(names, ["INBOX", "Archive/2024", "Entwürfe"]);
        assert!(write(&names).starts_with(V2_HEADER));
    }

    #[test]
    fn bad_files() {
        let cases: &[(&[u8], usize)] = &[
            (b"V\t2\n\nSent\na\t\tb\n", 4),
            (b"V\t2\n\n\tx\n", 3),
            (b"V\t2\n\nbad\x01nname\n", 3),
            (b"V\t2\n\n&AGE-\n", 3),
            (b"V\t2\n\nSent\n\xff\n", 4),
            (b"a..b\n", 1),
            (b"Sent\na*\n", 2),
        ];
        for (data, line) in cases {
            let e = parse(data).unwrap_err();
            assert_eq!(e.line, *line, "{:?}: {e}", String::from_utf8_lossy(data));
        }
        assert_eq!(tab_unescape("a\u{1}tb\u{1}1\u{1}"), "a\tb\u{1}");
        assert_eq!(tab_escape("a\tb\u{1}"), "a\u{1}tb\u{1}1");
    }
}
