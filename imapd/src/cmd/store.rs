//! STORE and UID STORE.
//!
//! Standards: RFC 3501 6.4.6 (FLAGS, +FLAGS, -FLAGS, .SILENT; the untagged
//! FETCH with the new flags), RFC 9051 6.4.6, RFC 7162 3.1.3
//! (UNCHANGEDSINCE, which enables CONDSTORE; MODIFIED with sequence numbers
//! or UIDs as the command used; the FETCH with MODSEQ even when .SILENT),
//! RFC 4315 (UID STORE's FETCH carries UID; so does every STORE's once
//! QRESYNC is enabled, as Dovecot's).
//!
//! Keywords: any atom a client sends becomes a keyword of the folder
//! (PERMANENTFLAGS has `\*`); \Recent cannot be stored (RFC 3501 2.3.2).

use std::collections::BTreeSet;

use mailstore::{FlagUpdate, Flags};
use proto::imap::{Flag, ResponseCode, SequenceSet, StoreMode, Tag};

use super::{resolve, seq_set_in_range};
use crate::session::Session;

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
        super::misc::enable_condstore(s);
    }
    let condstore = s.enabled.condstore;
    let with_uid = uid || s.enabled.qresync;
    let Some(view) = s.selected.as_mut() else {
        return;
    };
    if view.read_only {
        s.no(tag, Some(ResponseCode::Cannot), "Mailbox is read-only.");
        return;
    }
    // +FLAGS and -FLAGS start from the flags as they are now, not as the
    // last command saw them (the changes found are reported later).
    if let Err(e) = view.sync() {
        return s.store_error(tag, &e);
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
    let keyword_count = |f: &mut mailstore::Folder| f.keywords().map_or(0, |k| k.iter().count());
    let keywords_before = keyword_count(&mut view.folder);
    let modified = match view.folder.store_flags(&updates, unchanged_since) {
        Ok(m) => m,
        Err(e) => return s.store_error(tag, &e),
    };
    // RFC 3501 7.2.6: a new keyword changes the mailbox's flags.
    if keyword_count(&mut view.folder) > keywords_before {
        super::select::write_flags(&mut view.folder, false, &mut s.out);
    }
    // RFC 3501 6.4.6: the new flags of every message named (not only the
    // changed ones), unless .SILENT. RFC 7162 3.1.3: MODSEQ in each once
    // CONDSTORE is on; with .SILENT, a FETCH of the MODSEQ alone for each
    // message changed, and with UNCHANGEDSINCE for each that passed the
    // test (the client learns its mod-sequence).
    for &u in &uids {
        if modified.contains(&u) || view.folder.message(u).is_none() {
            continue;
        }
        let changed = updates.iter().any(|x| x.uid == u);
        if changed {
            view.flags_reported(u);
        }
        let Some(seq) = view.seq_of(u) else { continue };
        if !silent {
            view.write_flags_fetch(seq, u, with_uid, condstore, &mut s.out);
        } else if condstore && (changed || unchanged_since.is_some()) {
            s.out
                .extend_from_slice(format!("* {seq} FETCH (").as_bytes());
            if with_uid {
                s.out.extend_from_slice(format!("UID {u} ").as_bytes());
            }
            let mut modseq = Vec::new();
            view.write_modseq(u, &mut modseq);
            // write_modseq leads with a space.
            s.out.extend_from_slice(&modseq[1..]);
            s.out.extend_from_slice(b")\r\n");
        }
    }
    if !modified.is_empty() {
        let mut m = modified.clone();
        if !uid {
            m = m.iter().filter_map(|&u| view.seq_of(u)).collect();
        }
        return s.ok_code(tag, ResponseCode::Modified(m), "Conditional store failed.");
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
