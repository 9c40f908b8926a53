//! STORE and UID STORE.
//!
//! Standards: RFC 3501 6.4.6 (FLAGS, +FLAGS, -FLAGS, .SILENT; the untagged
//! FETCH with the new flags), RFC 9051 6.4.6, RFC 7162 3.1.3
//! (UNCHANGEDSINCE, MODIFIED, MODSEQ in the FETCH), RFC 4315 (UID STORE's
//! FETCH carries UID).
//!
//! Keywords: any atom a client sends becomes a keyword of the folder
//! (PERMANENTFLAGS has `\*`); \Recent cannot be stored (RFC 3501 2.3.2).

use std::collections::BTreeSet;

use mailstore::{FlagUpdate, Flags};
use proto::imap::{Flag, ResponseCode, SequenceSet, StoreMode, Tag};

use super::{resolve, seq_set_in_range};
use crate::session::{write_fetch_flags, Session};

fn system(f: &Flag) -> Option<Flags> {
    Some(match f {
        Flag::Seen => Flags::SEEN,
        Flag::Answered => Flags::REPLIED,
        Flag::Flagged => Flags::FLAGGED,
        Flag::Deleted => Flags::TRASHED,
        Flag::Draft => Flags::DRAFT,
        _ => return None,
    })
}

#[allow(clippy::too_many_arguments)]
pub fn store(
    s: &mut Session,
    tag: &Tag,
    uid: bool,
    set: &SequenceSet,
    unchanged_since: Option<u64>,
    mode: StoreMode,
    silent: bool,
    flags: &[Flag],
) {
    if !uid && !seq_set_in_range(s, set) {
        s.bad(tag, "Error in IMAP command STORE: Invalid messageset");
        return;
    }
    let uids = resolve(s, set, uid);
    if unchanged_since.is_some() {
        s.enabled.condstore = true;
    }
    let condstore = s.enabled.condstore;
    let Some(view) = s.selected.as_mut() else {
        return;
    };
    if view.read_only {
        s.no(tag, Some(ResponseCode::Cannot), "Mailbox is read-only.");
        return;
    }
    let mut sys = Flags::empty();
    let mut kw: BTreeSet<String> = BTreeSet::new();
    for f in flags {
        match (system(f), f) {
            (Some(x), _) => sys.insert(x),
            (None, Flag::Keyword(k)) => {
                kw.insert(k.clone());
            }
            _ => {}
        }
    }
    let mut updates = Vec::new();
    let mut expunged = false;
    for &u in &uids {
        let Some(m) = view.folder.message(u) else {
            expunged = true;
            continue;
        };
        let old_flags = m.flags;
        let old_kw: BTreeSet<String> = view
            .folder
            .keyword_names(u)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let (nf, nk) = match mode {
            StoreMode::Replace => {
                // PASSED has no IMAP name: it stays.
                let mut f = sys;
                if old_flags.contains(Flags::PASSED) {
                    f.insert(Flags::PASSED);
                }
                (f, kw.clone())
            }
            StoreMode::Add => {
                let mut f = old_flags;
                f.insert(sys);
                (f, old_kw.union(&kw).cloned().collect())
            }
            StoreMode::Remove => {
                let mut f = old_flags;
                f.remove(sys);
                (f, old_kw.difference(&kw).cloned().collect())
            }
        };
        if nf == old_flags && nk == old_kw && unchanged_since.is_none() {
            continue;
        }
        updates.push(FlagUpdate {
            uid: u,
            flags: nf,
            keywords: nk.into_iter().collect(),
        });
    }
    let modified = match view.folder.store_flags(&updates, unchanged_since) {
        Ok(m) => m,
        Err(e) => return s.store_error(tag, &e),
    };
    // RFC 3501 6.4.6: the new flags of every message named (not only the
    // changed ones), unless .SILENT; RFC 7162 3.1.3: with UNCHANGEDSINCE
    // the FETCH goes out even when silent, with MODSEQ.
    for &u in &uids {
        if modified.contains(&u) || view.folder.message(u).is_none() {
            continue;
        }
        let changed = updates.iter().any(|x| x.uid == u);
        if silent && !(condstore && changed) {
            if changed {
                view.flags_reported(u);
            }
            continue;
        }
        let Some(seq) = view.seq_of(u) else { continue };
        let start = s.out.len();
        write_fetch_flags(view, seq, u, uid, &mut s.out);
        if condstore {
            // Insert MODSEQ before the closing parenthesis.
            let m = view.folder.modseq(u).unwrap_or(1);
            let end = s.out.len() - 3;
            let tail = s.out.split_off(end);
            s.out.extend_from_slice(format!(" MODSEQ ({m})").as_bytes());
            s.out.extend_from_slice(&tail);
        }
        let _ = start;
        view.flags_reported(u);
    }
    if !modified.is_empty() {
        let mut m = modified.clone();
        if !uid {
            m = m.iter().filter_map(|&u| view.seq_of(u)).collect();
        }
        return s.ok_code(tag, ResponseCode::Modified(m), "Conditional STORE failed");
    }
    if expunged {
        s.no(
            tag,
            Some(ResponseCode::ExpungeIssued),
            "Some of the requested messages no longer exist.",
        );
    } else {
        s.ok(tag, "Store completed.");
    }
}
