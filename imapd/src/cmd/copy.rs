//! COPY, MOVE and their UID forms.
//!
//! Standards: RFC 3501 6.4.7 (COPY; NO [TRYCREATE] when the target does
//! not exist), RFC 4315 3 (COPYUID), RFC 6851 (MOVE: `* OK [COPYUID ...]`
//! untagged before the EXPUNGEs, then the tagged OK), RFC 9051 6.4.7-6.4.8.

use proto::imap::{Mailbox, ResponseCode, SequenceSet, Tag};

use super::{bad_name, resolve, seq_set_in_range, store_name};
use crate::session::Session;

pub fn copy(s: &mut Session, tag: &Tag, uid: bool, set: &SequenceSet, m: &Mailbox, mv: bool) {
    if !uid && !seq_set_in_range(s, set) {
        let what = if mv { "MOVE" } else { "COPY" };
        s.bad(
            tag,
            &format!("Error in IMAP command {what}: Invalid messageset"),
        );
        return;
    }
    let uids = resolve(s, set, uid);
    let name = match store_name(s, m) {
        Ok(n) => n,
        Err(why) => return bad_name(s, tag, &why),
    };
    let mut dest = match s.store.folder(&name, mailstore::Access::ReadWrite) {
        Ok(f) => f,
        Err(mailstore::StoreError::NoSuchFolder(_)) => {
            return s.no(tag, Some(ResponseCode::TryCreate), "Mailbox doesn't exist.");
        }
        Err(e) => return s.store_error(tag, &e),
    };
    let Some(view) = s.selected.as_mut() else {
        return;
    };
    if mv && view.read_only {
        return s.no(tag, Some(ResponseCode::Cannot), "Mailbox is read-only.");
    }
    let present: Vec<u32> = uids
        .iter()
        .copied()
        .filter(|&u| view.folder.message(u).is_some())
        .collect();
    let expunged = present.len() < uids.len();
    if present.is_empty() {
        if expunged {
            return s.no(
                tag,
                Some(ResponseCode::ExpungeIssued),
                "Some of the requested messages no longer exist.",
            );
        }
        return s.ok(
            tag,
            if mv {
                "No messages moved."
            } else {
                "No messages copied."
            },
        );
    }
    let same = dest.name() == view.folder.name();
    let r = if mv {
        if same {
            // RFC 6851 3.3: a move to the same mailbox may just keep them.
            Ok(present.iter().map(|&u| (u, u)).collect())
        } else {
            view.folder.move_to(&present, &mut dest)
        }
    } else {
        view.folder.copy_to(&present, &mut dest)
    };
    let pairs = match r {
        Ok(p) => p,
        Err(e) => return s.store_error(tag, &e),
    };
    let code = ResponseCode::CopyUid {
        uid_validity: dest.uid_validity(),
        source: pairs.iter().map(|p| p.0).collect(),
        dest: pairs.iter().map(|p| p.1).collect(),
    };
    if mv {
        if !same {
            view.absorb(mailstore::Changes {
                expunged: pairs.iter().map(|p| p.0).collect(),
                ..Default::default()
            });
        }
        // RFC 6851 4.3: COPYUID in an untagged OK, then the EXPUNGEs
        // (written by the session's report before the tagged OK).
        proto::imap::Status::ok(None, "Moved UIDs.")
            .with_code(code)
            .write(&mut s.out);
        s.ok(tag, "Move completed.");
    } else if expunged {
        s.no(
            tag,
            Some(ResponseCode::ExpungeIssued),
            "Some of the requested messages no longer exist.",
        );
    } else {
        s.ok_code(tag, code, "Copy completed.");
    }
}
