//! Folder names: the UTF-8 names of the API, the Maildir++ directory names
//! on disk (modified UTF-7, '.' between levels), and the special-use roles.
//!
//! ```text
//! API name        directory below the Maildir
//! INBOX           .                (the Maildir itself)
//! Sent            .Sent/
//! Archive/2024    .Archive.2024/
//! Entwürfe        .Entw&APw-rfe/
//! ```
//!
//! Owns name validation, the mapping both ways and the modified UTF-7 codec.
//! Does not own which folders exist (store.rs).
//!
//! Standards: RFC 3501 5.1.3 (mailbox international naming convention:
//! modified UTF-7, with base64's IMAP alphabet, `&-` for '&'); RFC 6154
//! (special-use roles); Dovecot's Maildir++ layout (separator '.', names in
//! modified UTF-7 on disk unless `mailbox_list_utf8`, which is off by
//! default).
//!
//! Security: a name never becomes a path with '/', "..", a leading '.' in a
//! level, or a control character; a directory name that does not decode to
//! a valid name is not a folder.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};

use crate::error::StoreError;
use crate::filename::NAME_MAX;

/// The name of the Maildir's own folder.
pub const INBOX: &str = "INBOX";

/// The hierarchy separator of API names.
pub const SEPARATOR: char = '/';

/// Longest name the API takes (a directory name is at most NAME_MAX bytes
/// once encoded, so this is a first, cheap bound).
const MAX_NAME: usize = 1024;

/// RFC 6154 roles of the folders posthorn makes for a new user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

impl SpecialUse {
    /// Every role with the folder name posthorn gives it (Dovecot's
    /// 15-mailboxes.conf names).
    pub const ALL: [(SpecialUse, &'static str); 5] = [
        (SpecialUse::Drafts, "Drafts"),
        (SpecialUse::Sent, "Sent"),
        (SpecialUse::Trash, "Trash"),
        (SpecialUse::Junk, "Junk"),
        (SpecialUse::Archive, "Archive"),
    ];

    /// The role of a folder name, if it has one (also Dovecot's second
    /// \Sent name, "Sent Messages").
    pub fn of(name: &str) -> Option<SpecialUse> {
        if name == "Sent Messages" {
            return Some(SpecialUse::Sent);
        }
        SpecialUse::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(u, _)| *u)
    }

    /// The attribute as IMAP LIST shows it (RFC 6154 2).
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }
}

/// Check a folder name and return it normalised (`inbox` is `INBOX`).
pub fn validate(name: &str) -> Result<String, StoreError> {
    let bad = |why| StoreError::BadName {
        name: name.chars().take(100).collect(),
        why,
    };
    if name.eq_ignore_ascii_case(INBOX) {
        return Ok(INBOX.to_string());
    }
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > MAX_NAME {
        return Err(bad("too long"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("control character"));
    }
    if name.contains(['*', '%']) {
        return Err(bad("'*' and '%' are IMAP LIST wildcards"));
    }
    for level in name.split(SEPARATOR) {
        if level.is_empty() {
            return Err(bad("empty level (leading, trailing or double '/')"));
        }
        if level.contains('.') {
            // Maildir++ separates levels with '.' on disk.
            return Err(bad("'.' is not allowed in a folder name"));
        }
    }
    if disk_name_unchecked(name).len() > NAME_MAX {
        return Err(bad("too long"));
    }
    Ok(name.to_string())
}

/// The directory of a valid, normalised name below the Maildir (None: INBOX,
/// the Maildir itself).
pub fn disk_name(name: &str) -> Option<String> {
    (name != INBOX).then(|| disk_name_unchecked(name))
}

fn disk_name_unchecked(name: &str) -> String {
    let mut out = String::from(".");
    out.push_str(&encode_utf7(&name.replace(SEPARATOR, ".")));
    out
}

/// The folder name of a directory below the Maildir, or None when it is not
/// a folder: not starting with '.', ".", "..", a name starting with ".."
/// (Dovecot's `..DOVECOT-TRASHED` of a folder being deleted), not modified
/// UTF-7, or not a valid name.
pub fn from_disk(dir: &str) -> Option<String> {
    let rest = dir.strip_prefix('.')?;
    if rest.is_empty() || rest.starts_with('.') || rest.contains(SEPARATOR) {
        return None;
    }
    let name = decode_utf7(rest)?.replace('.', "/");
    match validate(&name) {
        Ok(n) if n != INBOX => Some(n),
        _ => None,
    }
}

/// The name a subscriptions file line (levels in modified UTF-7) stands for.
pub(crate) fn from_storage_levels<'a>(levels: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut out = Vec::new();
    for l in levels {
        // A level holds no separator (found by fuzz/ maildir_subscriptions).
        if l.contains(SEPARATOR) {
            return None;
        }
        out.push(decode_utf7(l)?);
    }
    let name = out.join("/");
    validate(&name).ok()
}

/// The levels of a name in modified UTF-7, as subscriptions files hold them.
pub(crate) fn storage_levels(name: &str) -> Vec<String> {
    name.split(SEPARATOR).map(encode_utf7).collect()
}

fn engine() -> GeneralPurpose {
    GeneralPurpose::new(
        &alphabet::IMAP_MUTF7,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(false),
    )
}

/// RFC 3501 5.1.3: printable US-ASCII stands for itself except '&', which is
/// `&-`; everything else is UTF-16 in modified base64 between '&' and '-'.
pub fn encode_utf7(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&engine().encode(bytes));
        out.push('-');
        pending.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// The inverse of `encode_utf7`; None for anything `encode_utf7` would not
/// have written (so every name has one spelling on disk).
pub fn decode_utf7(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after.find('-')?;
        let run = &after[..end];
        if run.is_empty() {
            out.push('&');
        } else {
            let bytes = engine().decode(run).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units = bytes.chunks(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
            for c in char::decode_utf16(units) {
                out.push(c.ok()?);
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    // Canonical: printable ASCII only outside runs, runs only for the rest,
    // adjacent runs merged.
    (encode_utf7(&out) == s).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf7_table() {
        let cases = [
            ("INBOX", "INBOX"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("A&B", "A&-B"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("😀", "&2D3eAA-"),
            ("é é", "&AOk- &AOk-"),
        ];
        for (utf8, utf7) in cases {
            assert_eq!(encode_utf7(utf8), utf7, "{utf8}");
            assert_eq!(decode_utf7(utf7).as_deref(), Some(utf8), "{utf7}");
        }
        for bad in [
            "&",          // unterminated
            "&AOk",       // unterminated run
            "&AGE-",      // 'a' encoded: not canonical
            "&AOk-&AOk-", // adjacent runs not merged
            "&AO-",       // odd byte count
            "&AOl-",      // trailing bits set
            "&2D0-",      // lone surrogate
            "a\u{e9}",    // raw 8-bit
            "&A/k-",      // '/' is not in the IMAP alphabet
        ] {
            assert_eq!(decode_utf7(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_and_directories() {
        let cases = [
            ("Sent", ".Sent"),
            ("Archive/2024", ".Archive.2024"),
            ("Entwürfe", ".Entw&APw-rfe"),
            ("a&b/c", ".a&-b.c"),
            ("Sent Messages", ".Sent Messages"),
        ];
        for (name, dir) in cases {
            assert_eq!(validate(name).unwrap(), name);
            assert_eq!(disk_name(name).as_deref(), Some(dir));
            assert_eq!(from_disk(dir).as_deref(), Some(name));
        }
        assert_eq!(validate("inbox").unwrap(), "INBOX");
        assert_eq!(disk_name("INBOX"), None);
        for bad in [
            "",
            "/Sent",
            "Sent/",
            "a//b",
            ".hidden",
            "..",
            "a/../b",
            "Sent.old",
            "a\nb",
            "a\u{7f}",
            "a*",
            "%",
            &"x".repeat(300),
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
        for not_folder in [
            ".",
            "..",
            "..DOVECOT-TRASHED",
            "cur",
            ".a..b",
            ".a.",
            ".&AGE-",
            ".INBOX",
            // Found by fuzz/ maildir_subscriptions: not a name on disk.
            ".Archive/2024",
        ] {
            assert_eq!(from_disk(not_folder), None, "{not_folder:?}");
        }
        // A child of INBOX is a folder like any other.
        assert_eq!(from_disk(".INBOX.x").as_deref(), Some("INBOX/x"));
    }

    #[test]
    fn special_use() {
        assert_eq!(SpecialUse::of("Sent"), Some(SpecialUse::Sent));
        assert_eq!(SpecialUse::of("Sent Messages"), Some(SpecialUse::Sent));
        assert_eq!(
            SpecialUse::of("Junk").map(|u| u.attribute()),
            Some("\\Junk")
        );
        assert_eq!(SpecialUse::of("Archive/2024"), None);
    }
}
