//! SELECT, EXAMINE, CLOSE, UNSELECT, EXPUNGE and UID EXPUNGE.
//!
//! Standards: RFC 3501 6.3.1-6.3.2 (the SELECT responses: FLAGS, EXISTS,
//! RECENT, OK [UNSEEN], [PERMANENTFLAGS], [UIDNEXT], [UIDVALIDITY],
//! [READ-WRITE]/[READ-ONLY]), 6.4.2 (CLOSE expunges silently), 6.4.3
//! (EXPUNGE); RFC 9051 6.3.2 (LIST-style response, no RECENT/UNSEEN under
//! IMAP4rev2); RFC 3691 (UNSELECT); RFC 4315 2.1 (UID EXPUNGE); RFC 7162
//! 3.1.2.1 (HIGHESTMODSEQ), 3.2.11 (CLOSED when a mailbox replaces
//! another).

use mailstore::{Access, Flags};
use proto::imap::{Mailbox, ResponseCode, SelectParams, SequenceSet, Tag};

use super::{bad_name, resolve, store_name};
use crate::session::view::View;
use crate::session::Session;

/// The flags the SELECT response lists (Dovecot's).
const FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

pub fn select(s: &mut Session, tag: &Tag, m: &Mailbox, params: &SelectParams, read_only: bool) {
    // RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected; a
    // selected one is closed first (without expunging).
    if s.selected.take().is_some() {
        // RFC 7162 3.2.11 / RFC 9051 7.1: the old mailbox is closed.
        if s.enabled.condstore || s.enabled.imap4rev2 {
            s.out
                .extend_from_slice(b"* OK [CLOSED] Previous mailbox closed.\r\n");
        }
    }
    let name = match store_name(s, m) {
        Ok(n) => n,
        Err(why) => return bad_name(s, tag, &why),
    };
    if params.condstore {
        s.enabled.condstore = true;
    }
    let folder = if read_only {
        s.store.folder(&name, Access::ReadOnly)
    } else {
        s.store.select(&name)
    };
    let view = match folder.and_then(|f| View::new(f, read_only)) {
        Ok(v) => v,
        Err(e) => return s.store_error(tag, &e),
    };
    let out = &mut s.out;
    let f = &view.folder;
    out.extend_from_slice(format!("* FLAGS ({FLAGS})\r\n").as_bytes());
    if read_only {
        out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n");
    } else {
        out.extend_from_slice(
            format!("* OK [PERMANENTFLAGS ({FLAGS} \\*)] Flags permitted.\r\n").as_bytes(),
        );
    }
    out.extend_from_slice(format!("* {} EXISTS\r\n", view.exists()).as_bytes());
    if !s.enabled.imap4rev2 {
        out.extend_from_slice(format!("* {} RECENT\r\n", f.recent().len()).as_bytes());
        // RFC 3501 6.3.1: the first unseen message's number.
        if let Some(i) = f
            .messages()
            .iter()
            .position(|m| !m.flags.contains(Flags::SEEN))
        {
            out.extend_from_slice(format!("* OK [UNSEEN {}] First unseen.\r\n", i + 1).as_bytes());
        }
    }
    out.extend_from_slice(
        format!(
            "* OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {}] Predicted next UID\r\n",
            f.uid_validity(),
            f.uid_next()
        )
        .as_bytes(),
    );
    if s.enabled.condstore {
        out.extend_from_slice(
            format!("* OK [HIGHESTMODSEQ {}] Highest\r\n", f.highest_modseq()).as_bytes(),
        );
    }
    let (code, text) = if read_only {
        (ResponseCode::ReadOnly, "Examine completed.")
    } else {
        (ResponseCode::ReadWrite, "Select completed.")
    };
    s.selected = Some(view);
    s.ok_code(tag, code, text);
}

/// CLOSE (`expunge`: RFC 3501 6.4.2, silently) or UNSELECT (RFC 3691).
pub fn close(s: &mut Session, tag: &Tag, expunge: bool) {
    if let Some(mut view) = s.selected.take() {
        if expunge && !view.read_only {
            let deleted: Vec<u32> = view
                .folder
                .messages()
                .iter()
                .filter(|m| m.flags.contains(Flags::TRASHED))
                .map(|m| m.uid)
                .collect();
            if !deleted.is_empty() {
                if let Err(e) = view.folder.expunge(&deleted) {
                    s.log_line(format!("user={}: CLOSE: {e}", s.user));
                }
            }
        }
    }
    s.ok(
        tag,
        if expunge {
            "Close completed."
        } else {
            "Unselect completed."
        },
    );
}

/// EXPUNGE, or UID EXPUNGE of `set` (RFC 4315 2.1): remove the \Deleted
/// messages; the EXPUNGE lines come from the view's report.
pub fn expunge(s: &mut Session, tag: &Tag, set: Option<&SequenceSet>) {
    let only = set.map(|set| resolve(s, set, true));
    let Some(view) = s.selected.as_mut() else {
        return;
    };
    if view.read_only {
        s.no(tag, Some(ResponseCode::Cannot), "Mailbox is read-only.");
        return;
    }
    if let Err(e) = view.sync() {
        return s.store_error(tag, &e);
    }
    let deleted: Vec<u32> = view
        .folder
        .messages()
        .iter()
        .filter(|m| m.flags.contains(Flags::TRASHED))
        .map(|m| m.uid)
        .filter(|u| only.as_ref().is_none_or(|o| o.binary_search(u).is_ok()))
        .collect();
    if !deleted.is_empty() {
        match view.folder.expunge(&deleted) {
            Ok(gone) => view.absorb(mailstore::Changes {
                expunged: gone,
                ..Default::default()
            }),
            Err(e) => return s.store_error(tag, &e),
        }
    }
    s.ok(tag, "Expunge completed.");
}
