//! CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB and STATUS.
//!
//! Standards: RFC 3501 6.3.3-6.3.10; RFC 9051 6.3.9 (LIST); RFC 5258
//! (LIST-EXTENDED: SUBSCRIBED selection, RETURN (SUBSCRIBED CHILDREN)),
//! RFC 5819 (LIST-STATUS), RFC 6154 (SPECIAL-USE attributes and selection),
//! RFC 3348 (\HasChildren/\HasNoChildren), RFC 7889 (APPENDLIMIT in
//! STATUS), RFC 7162 3.1.8 (HIGHESTMODSEQ in STATUS).
//!
//! Security: every name goes through `store_name` (mailstore's validation);
//! patterns only filter the store's own list, so they reach nothing else.

use mailstore::{Access, Flags};
use proto::imap::{AString, ListArgs, Mailbox, StatusItem, Tag};

use super::{bad_name, client_name, store_name, SEPARATOR};
use crate::session::Session;

pub fn create(s: &mut Session, tag: &Tag, m: &Mailbox) {
    // RFC 3501 6.3.3: a trailing separator only says the name will have
    // children; Maildir++ needs nothing for that.
    let trimmed = m
        .bytes()
        .strip_suffix(&[SEPARATOR as u8])
        .map(|b| {
            Mailbox::new(AString {
                bytes: b.to_vec(),
                form: m.0.form,
            })
        })
        .unwrap_or_else(|| m.clone());
    let name = match store_name(s, &trimmed) {
        Ok(n) => n,
        Err(why) => return bad_name(s, tag, &why),
    };
    if name == mailstore::INBOX {
        return s.no(
            tag,
            Some(proto::imap::ResponseCode::AlreadyExists),
            "Mailbox already exists",
        );
    }
    // RFC 3501 6.3.3: missing superiors are created too.
    let levels: Vec<&str> = name.split(mailstore::names::SEPARATOR).collect();
    for i in 1..levels.len() {
        let parent = levels[..i].join(&mailstore::names::SEPARATOR.to_string());
        if !s.store.exists(&parent).unwrap_or(true) {
            if let Err(e) = s.store.create(&parent) {
                return s.store_error(tag, &e);
            }
        }
    }
    match s.store.create(&name) {
        Ok(()) => s.ok(tag, "Create completed."),
        Err(e) => s.store_error(tag, &e),
    }
}

pub fn delete(s: &mut Session, tag: &Tag, m: &Mailbox) {
    let name = match store_name(s, m) {
        Ok(n) => n,
        Err(why) => return bad_name(s, tag, &why),
    };
    if s.selected.as_ref().is_some_and(|v| v.folder.name() == name) {
        // Dovecot refuses too: the client must select another first.
        return s.no(
            tag,
            Some(proto::imap::ResponseCode::InUse),
            "Can't delete the selected mailbox.",
        );
    }
    match s.store.delete(&name) {
        Ok(()) => s.ok(tag, "Delete completed."),
        Err(e) => s.store_error(tag, &e),
    }
}

pub fn rename(s: &mut Session, tag: &Tag, from: &Mailbox, to: &Mailbox) {
    let (from, to) = match (store_name(s, from), store_name(s, to)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(why), _) | (_, Err(why)) => return bad_name(s, tag, &why),
    };
    match s.store.rename(&from, &to) {
        Ok(()) => s.ok(tag, "Rename completed."),
        Err(e) => s.store_error(tag, &e),
    }
}

pub fn subscribe(s: &mut Session, tag: &Tag, m: &Mailbox, on: bool) {
    let name = match store_name(s, m) {
        Ok(n) => n,
        Err(why) => return bad_name(s, tag, &why),
    };
    let r = if on {
        s.store.subscribe(&name)
    } else {
        s.store.unsubscribe(&name)
    };
    match r {
        Ok(()) if on => s.ok(tag, "Subscribe completed."),
        Ok(()) => s.ok(tag, "Unsubscribe completed."),
        Err(e) => s.store_error(tag, &e),
    }
}

/// Longest LIST pattern looked at (a longer one matches nothing): the
/// match costs pattern length x name length.
const MAX_PATTERN: usize = 1024;

/// RFC 3501 6.3.8: does `name` match `pattern` (`*` anything, `%` anything
/// but the separator)? Both in the client's form. Dynamic programming over
/// the two (no backtracking blow-up on many wildcards).
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    if pattern.len() > MAX_PATTERN {
        return false;
    }
    let n = name.len();
    // next[j]: pattern[i+1..] matches name[j..].
    let mut next = vec![false; n + 1];
    next[n] = true;
    let mut row = vec![false; n + 1];
    for &c in pattern.iter().rev() {
        for j in (0..=n).rev() {
            row[j] = match c {
                b'*' => next[j] || (j < n && row[j + 1]),
                b'%' => next[j] || (j < n && name[j] != SEPARATOR as u8 && row[j + 1]),
                _ => j < n && name[j] == c && next[j + 1],
            };
        }
        std::mem::swap(&mut next, &mut row);
    }
    next[0]
}

/// One folder as LIST shows it.
struct Entry {
    client: String,
    attrs: Vec<&'static str>,
    subscribed: bool,
    store: String,
}

fn entries(s: &Session) -> Result<Vec<Entry>, mailstore::StoreError> {
    let folders = s.store.folders()?;
    let subs = s.store.subscriptions().unwrap_or_default();
    let names: Vec<String> = folders.iter().map(|f| f.name.clone()).collect();
    Ok(folders
        .into_iter()
        .map(|f| {
            let prefix = format!("{}{}", f.name, mailstore::names::SEPARATOR);
            let children = names.iter().any(|n| n.starts_with(&prefix));
            let mut attrs = vec![if children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            }];
            if let Some(u) = f.special_use {
                attrs.push(u.attribute());
            }
            Entry {
                client: client_name(s, &f.name),
                subscribed: subs.contains(&f.name),
                attrs,
                store: f.name,
            }
        })
        .collect())
}

pub fn list(s: &mut Session, tag: &Tag, args: &ListArgs) {
    let reference = args
        .reference
        .as_ref()
        .map(|r| r.bytes().to_vec())
        .unwrap_or_default();
    // RFC 3501 6.3.8: an empty pattern asks for the separator and root.
    if !args.extended && args.patterns.len() == 1 && args.patterns[0].bytes.is_empty() {
        s.out
            .extend_from_slice(b"* LIST (\\Noselect) \".\" \"\"\r\n");
        return s.ok(tag, "List completed.");
    }
    let all = match entries(s) {
        Ok(e) => e,
        Err(e) => return s.store_error(tag, &e),
    };
    let mut lines = Vec::new();
    for e in &all {
        let hit = args.patterns.iter().any(|p| {
            let mut full = reference.clone();
            full.extend_from_slice(&p.bytes);
            let name = e.client.as_bytes();
            // INBOX matches case-insensitively (RFC 3501 5.1).
            if e.store == mailstore::INBOX {
                matches(&full.to_ascii_uppercase(), name)
            } else {
                matches(&full, name)
            }
        });
        if !hit {
            continue;
        }
        if args.select.subscribed && !e.subscribed {
            continue;
        }
        if args.select.special_use && e.attrs.len() < 2 {
            continue;
        }
        let mut attrs = e.attrs.clone();
        if (args.select.subscribed || args.ret.subscribed) && e.subscribed {
            attrs.push("\\Subscribed");
        }
        lines.push((e.client.clone(), e.store.clone(), attrs));
    }
    for (client, store, attrs) in lines {
        s.out.extend_from_slice(b"* LIST (");
        s.out.extend_from_slice(attrs.join(" ").as_bytes());
        s.out.extend_from_slice(b") \".\" ");
        proto::imap::response::write_mailbox(&mut s.out, &client, s.enabled.utf8);
        s.out.extend_from_slice(b"\r\n");
        if let Some(items) = &args.ret.status {
            // RFC 5819: STATUS after each LIST line.
            write_status(s, &store, &client, items);
        }
    }
    s.ok(tag, "List completed.");
}

pub fn lsub(s: &mut Session, tag: &Tag, reference: &Mailbox, pattern: &AString) {
    let all = match entries(s) {
        Ok(e) => e,
        Err(e) => return s.store_error(tag, &e),
    };
    let mut full = reference.bytes().to_vec();
    full.extend_from_slice(&pattern.bytes);
    for e in all.iter().filter(|e| e.subscribed) {
        let hit = if e.store == mailstore::INBOX {
            matches(&full.to_ascii_uppercase(), e.client.as_bytes())
        } else {
            matches(&full, e.client.as_bytes())
        };
        if hit {
            s.out.extend_from_slice(b"* LSUB () \".\" ");
            proto::imap::response::write_mailbox(&mut s.out, &e.client, s.enabled.utf8);
            s.out.extend_from_slice(b"\r\n");
        }
    }
    s.ok(tag, "Lsub completed.");
}

pub fn status(s: &mut Session, tag: &Tag, m: &Mailbox, items: &[StatusItem]) {
    let name = match store_name(s, m) {
        Ok(n) => n,
        Err(why) => return bad_name(s, tag, &why),
    };
    let client = client_name(s, &name);
    if let Err(e) = s.store.folder(&name, Access::ReadOnly) {
        return s.store_error(tag, &e);
    }
    if items.contains(&StatusItem::HighestModSeq) {
        // RFC 7162 3.1: STATUS (HIGHESTMODSEQ) enables CONDSTORE.
        super::misc::enable_condstore(s);
    }
    write_status(s, &name, &client, items);
    s.ok(tag, "Status completed.");
}

/// `* STATUS name (items)`; nothing when the folder cannot be opened.
fn write_status(s: &mut Session, store: &str, client: &str, items: &[StatusItem]) {
    let mut f = match s.store.folder(store, Access::ReadOnly) {
        Ok(f) => f,
        Err(e) => {
            s.log_line(format!("user={}: STATUS {store}: {e}", s.user));
            return;
        }
    };
    let mut vals = Vec::new();
    for item in items {
        let v: u64 = match item {
            StatusItem::Messages => f.messages().len() as u64,
            StatusItem::Recent => f.recent().len() as u64,
            StatusItem::UidNext => u64::from(f.uid_next()),
            StatusItem::UidValidity => u64::from(f.uid_validity()),
            StatusItem::Unseen => f
                .messages()
                .iter()
                .filter(|m| !m.flags.contains(Flags::SEEN))
                .count() as u64,
            StatusItem::Deleted => f
                .messages()
                .iter()
                .filter(|m| m.flags.contains(Flags::TRASHED))
                .count() as u64,
            StatusItem::Size => {
                let uids: Vec<u32> = f.messages().iter().map(|m| m.uid).collect();
                uids.iter().map(|&u| f.vsize(u).unwrap_or(0)).sum()
            }
            StatusItem::HighestModSeq => f.highest_modseq(),
            StatusItem::AppendLimit => s.config().limits.max_literal,
        };
        vals.push(format!("{} {v}", item.as_str()));
    }
    s.out.extend_from_slice(b"* STATUS ");
    proto::imap::response::write_mailbox(&mut s.out, client, s.enabled.utf8);
    s.out
        .extend_from_slice(format!(" ({})\r\n", vals.join(" ")).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn list_wildcards() {
        assert!(matches(b"*", b"INBOX"));
        assert!(matches(b"%", b"Sent"));
        assert!(!matches(b"%", b"Archive.2024"));
        assert!(matches(b"Archive.%", b"Archive.2024"));
        assert!(matches(b"*24", b"Archive.2024"));
        assert!(!matches(b"Arch", b"Archive"));
        assert!(matches(b"", b""));
        assert!(!matches(b"", b"a"));
        // Many wildcards stay cheap.
        let p = b"*a".repeat(500);
        assert!(!matches(&p, &b"a".repeat(400)));
    }
}
