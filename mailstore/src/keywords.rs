//! The `dovecot-keywords` file: which IMAP keyword each letter a..z of a
//! folder's file names stands for.
//!
//! ```text
//! 0 $Label1        letter a
//! 1 Work           letter b
//! ```
//!
//! Owns the format (Dovecot's maildir-keywords.c writes `<index> <name>`
//! lines, index 0..25) and keyword name checks. Does not own the file's
//! update (folder.rs writes it under the folder's uidlist lock, as Dovecot
//! does, through a `.lock` file renamed over it).
//!
//! Standards: RFC 3501 2.3.2 (a keyword is an atom: no spaces, controls,
//! `(){%*"\]`); keywords compare case-insensitively (Dovecot's keyword hash
//! does).
//!
//! Security: at most 26 names, lines of at most MAX_LINE bytes, files of at
//! most MAX_FILE bytes; anything else is an error, never a panic.
//!
//! Diagnostics: `ParseError` with the line; the caller adds the path.

use crate::error::ParseError;

/// Letters a..z: 26 keywords per folder.
pub const MAX_KEYWORDS: usize = 26;
/// Longest keyword name.
pub const MAX_NAME: usize = 1000;
const MAX_LINE: usize = MAX_NAME + 4;
const MAX_FILE: usize = MAX_KEYWORDS * (MAX_LINE + 1);

/// Keyword names by letter index (0 = a).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keywords {
    names: [Option<String>; MAX_KEYWORDS],
}

impl Keywords {
    /// Parse a whole file.
    pub fn parse(data: &[u8]) -> Result<Keywords, ParseError> {
        if data.len() > MAX_FILE {
            return Err(ParseError::new(0, format!("larger than {MAX_FILE} bytes")));
        }
        let text = std::str::from_utf8(data).map_err(|e| {
            let line = data[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            ParseError::new(line, "not UTF-8")
        })?;
        let mut k = Keywords::default();
        for (i, line) in text.lines().enumerate() {
            let no = i + 1;
            if line.len() > MAX_LINE {
                return Err(ParseError::new(no, "line too long"));
            }
            let Some((idx, name)) = line.split_once(' ') else {
                return Err(ParseError::new(no, "expected \"<index> <keyword>\""));
            };
            if idx.is_empty() || !idx.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::new(no, format!("invalid index {idx:?}")));
            }
            let idx: usize = idx.parse().unwrap_or(usize::MAX);
            if idx >= MAX_KEYWORDS {
                return Err(ParseError::new(
                    no,
                    format!("index {idx}: more than {MAX_KEYWORDS} keywords"),
                ));
            }
            if !is_valid(name) {
                return Err(ParseError::new(no, format!("invalid keyword {name:?}")));
            }
            if k.names[idx].is_some() {
                return Err(ParseError::new(no, format!("index {idx} given twice")));
            }
            if k.index(name).is_some() {
                return Err(ParseError::new(no, format!("keyword {name:?} given twice")));
            }
            k.names[idx] = Some(name.to_string());
        }
        Ok(k)
    }

    /// The file, as Dovecot writes it.
    pub fn write(&self) -> Vec<u8> {
        let mut s = String::new();
        for (i, n) in self.names.iter().enumerate() {
            if let Some(n) = n {
                s.push_str(&format!("{i} {n}\n"));
            }
        }
        s.into_bytes()
    }

    /// The name of letter index `i`.
    pub fn name(&self, i: usize) -> Option<&str> {
        self.names.get(i)?.as_deref()
    }

    /// The letter index of `name` (case-insensitive).
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .position(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
    }

    /// The index of `name`, giving it the first free letter if it has none.
    /// None: all 26 are taken.
    pub fn index_or_add(&mut self, name: &str) -> Option<usize> {
        if let Some(i) = self.index(name) {
            return Some(i);
        }
        let free = self.names.iter().position(Option::is_none)?;
        self.names[free] = Some(name.to_string());
        Some(free)
    }

    /// Every (index, name).
    pub fn iter(&self) -> impl Iterator<Item = (usize, &str)> {
        self.names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_deref().map(|n| (i, n)))
    }
}

/// Is `name` an IMAP keyword (an atom, RFC 3501 2.3.2 / 9 "flag-keyword"),
/// not a system flag, at most MAX_NAME bytes?
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('\\')
        && name.bytes().all(|b| {
            b > b' '
                && b < 0x7f
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_file_round_trip() {
        let k = Keywords::parse(b"0 $Label1\n1 Work\n5 later\n").unwrap();
        assert_eq!(k.name(0), Some("$Label1"));
        assert_eq!(k.index("work"), Some(1));
        assert_eq!(k.name(2), None);
        assert_eq!(k.write(), b"0 $Label1\n1 Work\n5 later\n");
        assert_eq!(Keywords::parse(b"").unwrap(), Keywords::default());
        let mut k = k;
        assert_eq!(k.index_or_add("New"), Some(2));
        assert_eq!(k.index_or_add("new"), Some(2));
        let mut full = Keywords::default();
        for i in 0..26 {
            assert_eq!(full.index_or_add(&format!("k{i}")), Some(i));
        }
        assert_eq!(full.index_or_add("one-more"), None);
        assert_eq!(Keywords::parse(&full.write()).unwrap(), full);
    }

    #[test]
    fn bad_files() {
        let cases: &[(&[u8], usize)] = &[
            (b"0\n", 1),
            (b"0 a\nx b\n", 2),
            (b"0 a\n26 b\n", 2),
            (b"0 a\n99999999999999999999999 b\n", 2),
            (b"0 a\n0 b\n", 2),
            (b"0 a\n1 A\n", 2),
            (b"0 a b\n", 1),
            (b"0 \\Seen\n", 1),
            (b"0 \n", 1),
            (b"-1 a\n", 1),
            (b"0 a\n1 \xff\n", 2),
        ];
        for (data, line) in cases {
            let e = Keywords::parse(data).unwrap_err();
            assert_eq!(e.line, *line, "{:?}: {e}", String::from_utf8_lossy(data));
        }
        assert!(Keywords::parse(&vec![b'x'; MAX_FILE + 1]).is_err());
    }

    #[test]
    fn keyword_names() {
        for good in ["$Forwarded", "Work", "a.b", "NonJunk"] {
            assert!(is_valid(good), "{good}");
        }
        for bad in ["", "a b", "\\Seen", "a(b", "a]", "tab\t", "ü"] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
