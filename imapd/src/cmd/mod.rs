//! The IMAP commands after login, one module per group (Dovecot's
//! cmd-*.c): the session's command table (session/mod.rs `command`) calls
//! them. Each writes its untagged and tagged responses to the session's
//! output; the session adds the updates the client is due before the
//! tagged line.
//!
//! Mailbox names: the client's are modified UTF-7 (or UTF-8 once
//! UTF8=ACCEPT is enabled, RFC 6855) with '.' between levels, as Dovecot
//! shows Maildir++; the store's are UTF-8 with '/' (mailstore::names).
//! `store_name` and `client_name` convert.

pub mod append;
pub mod copy;
pub mod fetch;
pub mod mailboxes;
pub mod misc;
pub mod quota;
pub mod search;
pub mod select;
pub mod sort;
pub mod store;
pub mod thread;

use proto::imap::{Mailbox, SeqNum, SequenceSet, Tag};

use crate::session::Session;

/// The IMAP hierarchy separator (Dovecot's for Maildir++).
pub const SEPARATOR: char = '.';

/// The store's name for a client's mailbox name, or the NO text.
pub fn store_name(s: &Session, m: &Mailbox) -> Result<String, String> {
    if m.is_inbox() {
        return Ok(mailstore::INBOX.to_string());
    }
    let raw = m.as_str().ok_or("Mailbox name is not valid UTF-8")?;
    if raw.chars().any(char::is_control) {
        return Err("Invalid mailbox name: control character".into());
    }
    // `~user` names another user's mail in Dovecot's and UW's syntax
    // (mail_full_filesystem_access); here it names nothing and is refused.
    if raw.starts_with('~') {
        return Err("Invalid mailbox name: it may not begin with '~'".into());
    }
    let name = if s.enabled.utf8 {
        raw.to_string()
    } else {
        mailstore::names::decode_utf7(raw).ok_or("Mailbox name is not valid mUTF-7")?
    };
    if name.contains(mailstore::names::SEPARATOR) {
        return Err(format!(
            "Character not allowed in mailbox name: '{}'",
            mailstore::names::SEPARATOR
        ));
    }
    let name = name.replace(SEPARATOR, &mailstore::names::SEPARATOR.to_string());
    mailstore::names::validate(&name).map_err(|e| match e {
        // The store's reasons name its separator; the client's is ours.
        mailstore::StoreError::BadName { why, .. } => format!(
            "Invalid mailbox name: {}",
            why.replace(
                &format!("'{}'", mailstore::names::SEPARATOR),
                &format!("'{SEPARATOR}'")
            )
        ),
        other => other.to_string(),
    })
}

/// The client's name for a store name.
pub fn client_name(s: &Session, name: &str) -> String {
    let dotted = name.replace(mailstore::names::SEPARATOR, &SEPARATOR.to_string());
    if s.enabled.utf8 {
        dotted
    } else {
        mailstore::names::encode_utf7(&dotted)
    }
}

/// A bad name: NO with the reason (Dovecot's wording).
pub fn bad_name(s: &mut Session, tag: &Tag, why: &str) {
    s.no(tag, None, why);
}

/// The UIDs a sequence set names in the selected view, ascending, known
/// to the client (and not yet reported expunged). `uid`: the set holds
/// UIDs (`*` is the largest UID), else sequence numbers.
pub fn resolve(s: &Session, set: &SequenceSet, uid: bool) -> Vec<u32> {
    let Some(view) = s.selected.as_ref() else {
        return Vec::new();
    };
    let ranges: Vec<(SeqNum, SeqNum)> = match set {
        SequenceSet::Ranges(r) => r.clone(),
        // SEARCHRES is not announced; `$` names nothing.
        SequenceSet::Saved => return Vec::new(),
    };
    let mut out = Vec::new();
    if uid {
        let last = view.last_uid();
        for (a, b) in ranges {
            let a = match a {
                SeqNum::Value(v) => v,
                SeqNum::Last => last,
            };
            let b = match b {
                SeqNum::Value(v) => v,
                SeqNum::Last => last,
            };
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let i = view.uids.partition_point(|&u| u < lo);
            let j = view.uids.partition_point(|&u| u <= hi);
            out.extend_from_slice(&view.uids[i..j]);
        }
    } else {
        let n = view.exists();
        for (a, b) in ranges {
            let a = match a {
                SeqNum::Value(v) => v,
                SeqNum::Last => n,
            };
            let b = match b {
                SeqNum::Value(v) => v,
                SeqNum::Last => n,
            };
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            if lo == 0 || lo > n {
                continue;
            }
            let hi = hi.min(n);
            out.extend_from_slice(&view.uids[(lo - 1) as usize..hi as usize]);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// A sequence-number set beyond EXISTS is an error (RFC 9051 6.4.5: BAD,
/// Dovecot: "BAD Error in IMAP command FETCH: Invalid messageset").
pub fn seq_set_in_range(s: &Session, set: &SequenceSet) -> bool {
    let Some(view) = s.selected.as_ref() else {
        return false;
    };
    let n = view.exists();
    match set {
        SequenceSet::Saved => true,
        SequenceSet::Ranges(r) => r.iter().all(|(a, b)| {
            let ok = |x: &SeqNum| match x {
                SeqNum::Value(v) => *v <= n,
                SeqNum::Last => n > 0,
            };
            ok(a) && ok(b)
        }),
    }
}
