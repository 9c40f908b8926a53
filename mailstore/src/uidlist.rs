//! The `dovecot-uidlist` file: which UID each message file has.
//!
//! ```text
//! 3 V1700000000 N43 G3f2b...(32 hex)     version 3, UIDVALIDITY, next UID, mailbox GUID [other fields]
//! 1 :1700000000.M1P2.host,S=1234,W=1260  <uid> [<key><value> ...] :<base name>
//! 7 P000004a2 W1502 :1700000099.M5P6.host
//! ```
//!
//! Owns parsing and writing the format, byte for byte as Dovecot does
//! (maildir-uidlist.c), so that a Maildir passes between Dovecot and
//! posthorn with the same UIDs and UIDVALIDITY. Extension fields are kept
//! as they are: `P` (POP3 UIDL), `O` (POP3 order), `G` (message GUID), `W`
//! (virtual size) and any other upper-case key. Does not own locking or
//! when the file is rewritten (folder.rs).
//!
//! Reading follows Dovecot: version 1 (`1 <uidvalidity> <nextuid>`, Courier's
//! courierimapuiddb too) and 3 are read, 3 is written; UIDs must ascend; the
//! next UID is at least one more than the last record (Dovecot appends
//! records without rewriting the header, so `N` may be behind); a file name
//! given twice keeps its last UID; a last line without LF (a write cut
//! short) is ignored; an extension field with a key that is not A-Z is
//! dropped. The base names are written without their `:2,...` part.
//!
//! Security: the file is the mailbox owner's, but it is read by every
//! session: lines over MAX_LINE and files over MAX_FILE are errors, numbers
//! are checked for overflow, a name with '/' is an error.
//!
//! Diagnostics: `ParseError` with the line number; the caller adds the path
//! and rebuilds the list (a new UIDVALIDITY), as Dovecot does.

use std::fmt::Write as _;

use crate::error::ParseError;
use crate::filename;

/// Longest line read (a base name is at most 255 bytes; the extension
/// fields are short).
pub const MAX_LINE: usize = 8 * 1024;
/// Largest file read (about four million messages).
pub const MAX_FILE: usize = 256 << 20;

/// One message: its UID, extension fields and base name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub uid: u32,
    /// `(key, value)` in file order; keys are A..Z.
    pub ext: Vec<(u8, String)>,
    pub base: String,
}

impl Record {
    /// The value of extension field `key`.
    pub fn ext(&self, key: u8) -> Option<&str> {
        self.ext
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Set (or with None remove) extension field `key`.
    pub fn set_ext(&mut self, key: u8, value: Option<String>) {
        self.ext.retain(|(k, _)| *k != key);
        if let Some(v) = value {
            self.ext.push((key, v));
        }
    }
}

/// A whole uidlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidList {
    /// The version the file had (1 or 3); written as 3.
    pub version: u8,
    pub uid_validity: u32,
    /// The next UID to give: above every record.
    pub next_uid: u32,
    /// The mailbox GUID (`G`); None in version 1 files (one is made when
    /// the list is written).
    pub guid: Option<[u8; 16]>,
    /// Header fields other than V, N and G, kept in order.
    pub header_ext: Vec<(u8, String)>,
    /// Ascending by UID.
    pub records: Vec<Record>,
}

impl UidList {
    /// An empty list for a new folder.
    pub fn new(uid_validity: u32, guid: [u8; 16]) -> UidList {
        UidList {
            version: 3,
            uid_validity,
            next_uid: 1,
            guid: Some(guid),
            header_ext: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Parse a whole file.
    pub fn parse(data: &[u8]) -> Result<UidList, ParseError> {
        if data.len() > MAX_FILE {
            return Err(ParseError::new(0, format!("larger than {MAX_FILE} bytes")));
        }
        // A last line without LF is a write that was cut short: ignored, as
        // Dovecot's line reader does.
        let complete = match data.iter().rposition(|b| *b == b'\n') {
            Some(p) => &data[..p],
            None => return Err(ParseError::new(1, "empty file")),
        };
        let mut lines = complete
            .split(|b| *b == b'\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l));
        let Some((_, header)) = lines.next() else {
            return Err(ParseError::new(1, "empty file"));
        };
        let header = text(1, header)?;
        let mut list = parse_header(header)?;
        let mut last_uid = 0u32;
        let mut by_base: std::collections::HashMap<String, usize> = Default::default();
        for (no, line) in lines {
            let line = text(no, line)?;
            let rec = parse_record(no, line, list.version)?;
            if rec.uid <= last_uid {
                return Err(ParseError::new(
                    no,
                    format!("UIDs not ascending ({} after {last_uid})", rec.uid),
                ));
            }
            last_uid = rec.uid;
            // Dovecot: "Duplicate file entry": the later UID wins.
            if let Some(old) = by_base.insert(rec.base.clone(), list.records.len()) {
                list.records[old].uid = 0;
            }
            list.records.push(rec);
        }
        list.records.retain(|r| r.uid != 0);
        if list.next_uid <= last_uid {
            list.next_uid = last_uid + 1;
        }
        Ok(list)
    }

    /// The file as Dovecot writes it (version 3). A list without a GUID
    /// gets `guid` (callers pass a fresh random one).
    pub fn write(&self, guid: [u8; 16]) -> Vec<u8> {
        let mut s = String::with_capacity(64 + self.records.len() * 64);
        let g = self.guid.unwrap_or(guid);
        let _ = write!(s, "3 V{} N{} G", self.uid_validity, self.next_uid);
        for b in g {
            let _ = write!(s, "{b:02x}");
        }
        for (k, v) in &self.header_ext {
            s.push(' ');
            s.push(*k as char);
            s.push_str(v);
        }
        s.push('\n');
        for r in &self.records {
            let _ = write!(s, "{}", r.uid);
            for (k, v) in &r.ext {
                s.push(' ');
                s.push(*k as char);
                s.push_str(v);
            }
            s.push_str(" :");
            s.push_str(filename::base(&r.base));
            s.push('\n');
        }
        s.into_bytes()
    }
}

fn text(no: usize, line: &[u8]) -> Result<&str, ParseError> {
    if line.len() > MAX_LINE {
        return Err(ParseError::new(
            no,
            format!("line longer than {MAX_LINE} bytes"),
        ));
    }
    std::str::from_utf8(line).map_err(|_| ParseError::new(no, "not UTF-8"))
}

fn number(no: usize, what: &str, v: &str) -> Result<u32, ParseError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::new(no, format!("invalid {what} {v:?}")));
    }
    v.parse()
        .map_err(|_| ParseError::new(no, format!("{what} {v} too large")))
}

fn parse_header(line: &str) -> Result<UidList, ParseError> {
    let b = line.as_bytes();
    if b.len() < 2 || !b[0].is_ascii_digit() || b[1] != b' ' {
        return Err(ParseError::new(
            1,
            "corrupted header (invalid version number)",
        ));
    }
    let version = b[0] - b'0';
    let rest = &line[2..];
    let mut list = UidList {
        version,
        uid_validity: 0,
        next_uid: 0,
        guid: None,
        header_ext: Vec::new(),
        records: Vec::new(),
    };
    match version {
        1 => {
            let mut f = rest.split(' ');
            let (Some(v), Some(n), None) = (f.next(), f.next(), f.next()) else {
                return Err(ParseError::new(1, "corrupted header (version 1)"));
            };
            list.uid_validity = number(1, "UIDVALIDITY", v)?;
            list.next_uid = number(1, "next UID", n)?;
        }
        3 => {
            for field in rest.split(' ').filter(|f| !f.is_empty()) {
                let key = field.as_bytes()[0];
                if !key.is_ascii_graphic() {
                    // (A multi-byte character here was a panic: fuzz/.)
                    return Err(ParseError::new(1, "invalid header field"));
                }
                let value = &field[1..];
                match key {
                    b'V' => list.uid_validity = number(1, "UIDVALIDITY", value)?,
                    b'N' => list.next_uid = number(1, "next UID", value)?,
                    b'G' => list.guid = Some(parse_guid(value)?),
                    _ => list.header_ext.push((key, value.to_string())),
                }
            }
        }
        v => return Err(ParseError::new(1, format!("unsupported version {v}"))),
    }
    if list.uid_validity == 0 || list.next_uid == 0 {
        return Err(ParseError::new(
            1,
            format!(
                "broken header (uidvalidity = {}, next_uid = {})",
                list.uid_validity, list.next_uid
            ),
        ));
    }
    Ok(list)
}

fn parse_guid(v: &str) -> Result<[u8; 16], ParseError> {
    let bad = || ParseError::new(1, format!("invalid mailbox GUID {v:?}"));
    if v.len() != 32 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut g = [0u8; 16];
    for (i, byte) in g.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&v[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(g)
}

fn parse_record(no: usize, line: &str, version: u8) -> Result<Record, ParseError> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    let (uid, rest) = line.split_at(digits);
    let uid = if digits == 0 {
        0
    } else {
        number(no, "UID", uid)?
    };
    if uid == 0 || !rest.starts_with(' ') {
        return Err(ParseError::new(no, "invalid data"));
    }
    if uid == u32::MAX {
        return Err(ParseError::new(no, format!("UID too high ({uid})")));
    }
    let mut rest = rest.trim_start_matches(' ');
    let mut ext = Vec::new();
    if version == 3 {
        // Fields up to the ':' that starts the file name.
        while !rest.is_empty() && !rest.starts_with(':') {
            let end = rest.find(' ').unwrap_or(rest.len());
            let field = &rest[..end];
            let key = field.as_bytes()[0];
            if key.is_ascii_uppercase() {
                ext.push((key, field[1..].to_string()));
            }
            // Any other key: dropped (Dovecot: "Invalid extension record,
            // removing").
            rest = rest[end..].trim_start_matches(' ');
        }
        rest = rest.strip_prefix(':').unwrap_or(rest);
    }
    if filename::base(rest).is_empty() {
        return Err(ParseError::new(no, "no file name"));
    }
    if rest.contains('/') {
        return Err(ParseError::new(no, format!("broken file name {rest:?}")));
    }
    Ok(Record {
        uid,
        ext,
        base: filename::base(rest).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOVECOT: &str = "3 V1795932808 N1 Gc111232f88c20b6b2479000083ecc375\n\
        1 :1795932808.M790798P31012.vm,S=132,W=139\n\
        2 :1795932808.M832489P31019.vm,S=132,W=139\n\
        4 P0000abcd O2 :1795932808.M913921P31026.vm,S=132,W=139\n";

    #[test]
    fn dovecot_file() {
        let l = UidList::parse(DOVECOT.as_bytes()).unwrap();
        assert_eq!(l.uid_validity, 1795932808);
        assert_eq!(l.next_uid, 5, "N is behind the records: one past the last");
        assert_eq!(l.records.len(), 3);
        assert_eq!(l.records[2].uid, 4);
        assert_eq!(l.records[2].ext(b'P'), Some("0000abcd"));
        assert_eq!(l.records[2].ext(b'O'), Some("2"));
        assert_eq!(l.records[0].base, "1795932808.M790798P31012.vm,S=132,W=139");
        // Written back: the same, with N brought up to date.
        let out = String::from_utf8(l.write([0; 16])).unwrap();
        assert_eq!(out, DOVECOT.replacen("N1 ", "N5 ", 1));
        assert_eq!(UidList::parse(out.as_bytes()).unwrap(), l);
    }

    #[test]
    fn good_files() {
        // Version 1 (and Courier's courierimapuiddb).
        let l = UidList::parse(b"1 1000 7\n3 a,S=1\n5 b:2,S\n").unwrap();
        assert_eq!(
            (l.version, l.uid_validity, l.next_uid, l.guid),
            (1, 1000, 7, None)
        );
        assert_eq!(
            l.records[1].base, "b",
            "the info part is not part of the base"
        );
        let out = l.write([0xab; 16]);
        assert!(out.starts_with(b"3 V1000 N7 Gabababababababababababababababab\n3 :a,S=1\n"));
        // Unknown header fields and extension fields are kept.
        let l = UidList::parse(b"3 V5 N9 Gc111232f88c20b6b2479000083ecc375 Xfoo\n2 G1234 Zq :b\n")
            .unwrap();
        assert_eq!(l.header_ext, vec![(b'X', "foo".to_string())]);
        assert_eq!(
            String::from_utf8(l.write([0; 16])).unwrap(),
            "3 V5 N9 Gc111232f88c20b6b2479000083ecc375 Xfoo\n2 G1234 Zq :b\n"
        );
        // A half-written last line is ignored.
        let l = UidList::parse(b"3 V5 N1\n1 :a\n2 :b,S=").unwrap();
        assert_eq!(l.records.len(), 1);
        // A duplicate file name keeps its later UID.
        let l = UidList::parse(b"3 V5 N1\n1 :a\n2 :b\n3 :a:2,S\n").unwrap();
        let uids: Vec<_> = l.records.iter().map(|r| (r.uid, r.base.as_str())).collect();
        assert_eq!(uids, [(2, "b"), (3, "a")]);
        // A field with a bad key is dropped, the line kept.
        let l = UidList::parse(b"3 V5 N1\n1 wx W12 :a\n").unwrap();
        assert_eq!(l.records[0].ext, vec![(b'W', "12".to_string())]);
        // A file name with spaces.
        let l = UidList::parse(b"3 V5 N1\n1 :a b\n").unwrap();
        assert_eq!(l.records[0].base, "a b");
    }

    #[test]
    fn bad_files() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"", 1, "empty"),
            (b"3 V5 N1", 1, "empty"),
            (b"x V5 N1\n", 1, "version"),
            (b"2 V5 N1\n", 1, "unsupported version 2"),
            (b"3 N1\n", 1, "uidvalidity = 0"),
            (b"3 V5\n", 1, "next_uid = 0"),
            (b"3 V5 N1 Gxyz\n", 1, "GUID"),
            // Found by fuzz/ maildir_uidlist: a header field starting with
            // a multi-byte character was cut inside it.
            (b"3 V5 N1 \xc2\x9e0\n", 1, "invalid header field"),
            (b"3 V5 N1 \x7f\n", 1, "invalid header field"),
            (b"3 V99999999999 N1\n", 1, "too large"),
            (b"1 5\n", 1, "version 1"),
            (b"3 V5 N1\n\n", 2, "invalid data"),
            (b"3 V5 N1\n0 :a\n", 2, "invalid data"),
            (b"3 V5 N1\nx :a\n", 2, "invalid data"),
            (b"3 V5 N1\n1:a\n", 2, "invalid data"),
            (b"3 V5 N1\n2 :a\n1 :b\n", 3, "not ascending"),
            (b"3 V5 N1\n2 :a\n2 :b\n", 3, "not ascending"),
            (b"3 V5 N1\n4294967295 :a\n", 2, "too high"),
            (b"3 V5 N1\n4294967296 :a\n", 2, "too large"),
            (b"3 V5 N1\n1 :\n", 2, "no file name"),
            (b"3 V5 N1\n1 W5\n", 2, "no file name"),
            (b"3 V5 N1\n1 ::2,S\n", 2, "no file name"),
            (b"3 V5 N1\n1 :../x\n", 2, "broken file name"),
            (b"3 V5 N1\n1 :\xff\n", 2, "UTF-8"),
        ];
        for (data, line, what) in cases {
            let e = UidList::parse(data).unwrap_err();
            assert_eq!(e.line, *line, "{:?}: {e}", String::from_utf8_lossy(data));
            assert!(
                e.reason.contains(what),
                "{:?}: {e}",
                String::from_utf8_lossy(data)
            );
        }
        let long = format!("3 V5 N1\n1 :{}\n", "a".repeat(MAX_LINE));
        assert!(UidList::parse(long.as_bytes())
            .unwrap_err()
            .reason
            .contains("longer"));
    }
}
