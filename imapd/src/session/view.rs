//! The selected mailbox as one session sees it: the sequence numbers its
//! client knows, and the changes not yet told.
//!
//! Owns the map from message sequence numbers to UIDs that the client
//! holds (RFC 3501 2.3.1.2), which changes only when the session reports
//! EXPUNGE (or VANISHED) and EXISTS, and the rules for when it may: an
//! expunge is never reported during FETCH, STORE or SEARCH (RFC 3501 7.4.1;
//! RFC 9051 7.5.1), only at the end of other commands; new messages and flag
//! changes may be reported after any command. Does not own the folder's
//! files (mailstore::Folder) or how a response is worded beyond these
//! untagged lines.
//!
//! Standards: RFC 3501 2.3.1.2, 5.2, 5.5, 7.3.1 (EXISTS), 7.3.2 (RECENT),
//! 7.4.1 (EXPUNGE); RFC 9051 7.5.1; RFC 7162 3.1.4.1 (MODSEQ in every
//! untagged FETCH once CONDSTORE is enabled), 3.2 (HIGHESTMODSEQ after
//! changes the client saw no MODSEQ for, and not past a delayed expunge),
//! 3.2.10 (VANISHED instead of EXPUNGE once QRESYNC is enabled).
//!
//! Diagnostics: none; store errors go back to the caller.

use std::collections::HashSet;

use mailstore::{Changes, Folder, StoreError};

use super::Enabled;
use crate::cmd::fetch::write_flags;

/// What may be reported at the end of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// EXPUNGE, EXISTS and flag changes (NOOP, CHECK, IDLE, UID commands,
    /// and every command but FETCH/STORE/SEARCH).
    All,
    /// No EXPUNGE: FETCH, STORE, SEARCH by sequence number.
    NoExpunges,
}

/// The selected mailbox.
pub struct View {
    pub folder: Folder,
    pub read_only: bool,
    /// Sequence number i+1 is `uids[i]`, as the client knows them.
    pub uids: Vec<u32>,
    /// Expunged in the folder, not yet reported (still in `uids`).
    gone: HashSet<u32>,
    /// Flag changes not yet reported (UIDs).
    flags: HashSet<u32>,
    /// The HIGHESTMODSEQ the client has been told everything up to (the
    /// SELECT's, then the folder's after each report with no expunge left
    /// waiting): Dovecot's sync_last_full_modseq.
    told_modseq: u64,
    /// The largest MODSEQ sent in a FETCH since the last report.
    sent_modseq: u64,
    /// The command's tagged OK will carry the HIGHESTMODSEQ (EXPUNGE,
    /// RFC 7162 3.2.7): no untagged one from `report`.
    pub tagged_highest: bool,
}

impl View {
    /// A freshly synced folder (`Store::select` and `Store::folder` sync
    /// it, and hand back nothing pending): the client will learn all of it
    /// from the SELECT response. Not synced again here: within a second of
    /// a change a second sync would list the whole folder once more.
    pub fn new(folder: Folder, read_only: bool) -> Result<View, StoreError> {
        let uids: Vec<u32> = folder.messages().iter().map(|m| m.uid).collect();
        let told_modseq = folder.highest_modseq();
        Ok(View {
            folder,
            read_only,
            uids,
            gone: HashSet::new(),
            flags: HashSet::new(),
            told_modseq,
            sent_modseq: 0,
            tagged_highest: false,
        })
    }

    /// Give back memory held for earlier changes (a quiet session).
    pub fn shrink(&mut self) {
        self.gone.shrink_to_fit();
        self.flags.shrink_to_fit();
        self.uids.shrink_to_fit();
    }

    /// Messages the client knows (the EXISTS it was told).
    pub fn exists(&self) -> u32 {
        self.uids.len() as u32
    }

    /// The sequence number of `uid`, if the client knows it.
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    /// Expunged but not yet reported.
    pub fn is_gone(&self, uid: u32) -> bool {
        self.gone.contains(&uid)
    }

    /// The largest UID the client knows (`*` in UID sets), 0 when empty.
    pub fn last_uid(&self) -> u32 {
        self.uids.last().copied().unwrap_or(0)
    }

    /// Look at the disk and take in its changes (reported later by
    /// `report`).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        let c = self.folder.sync()?;
        self.absorb(c);
        Ok(())
    }

    /// Note changes the session made itself or found.
    pub fn absorb(&mut self, c: Changes) {
        if c.uid_validity_changed {
            // RFC 3501 2.3.1.1: the client must start over; tell every
            // known message gone and every current one new.
            self.gone.extend(self.uids.iter().copied());
        }
        for u in c.expunged {
            if self.uids.binary_search(&u).is_ok() {
                self.gone.insert(u);
            }
        }
        for u in c.flags {
            self.flags.insert(u);
        }
    }

    /// A FETCH response carried `MODSEQ (modseq)`.
    pub fn modseq_sent(&mut self, modseq: u64) {
        self.sent_modseq = self.sent_modseq.max(modseq);
    }

    /// `* N FETCH (UID n FLAGS (...) MODSEQ (m))` for a message of the view:
    /// UID when `with_uid`, MODSEQ when `modseq` (RFC 7162 3.1.4.1).
    pub fn write_flags_fetch(
        &mut self,
        seq: u32,
        uid: u32,
        with_uid: bool,
        modseq: bool,
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
        if with_uid {
            out.extend_from_slice(format!("UID {uid} ").as_bytes());
        }
        out.extend_from_slice(b"FLAGS ");
        write_flags(self, uid, out);
        if modseq {
            self.write_modseq(uid, out);
        }
        out.extend_from_slice(b")\r\n");
    }

    /// ` MODSEQ (m)` for a message, noted as sent.
    pub fn write_modseq(&mut self, uid: u32, out: &mut Vec<u8>) {
        let m = self.folder.modseq(uid).unwrap_or(1);
        self.modseq_sent(m);
        out.extend_from_slice(format!(" MODSEQ ({m})").as_bytes());
    }

    /// Our own flag change was reported already (a STORE's FETCH): no
    /// second untagged FETCH for it.
    pub fn flags_reported(&mut self, uid: u32) {
        self.flags.remove(&uid);
    }

    /// Write the untagged lines the client is due: EXPUNGE (or VANISHED
    /// once QRESYNC is enabled) when `what` allows, EXISTS for new
    /// messages, FETCH FLAGS (and MODSEQ once CONDSTORE is) for changed
    /// ones, and with QRESYNC the HIGHESTMODSEQ they bring the client to.
    pub fn report(&mut self, what: Report, enabled: Enabled, out: &mut Vec<u8>) {
        if what == Report::All && !self.gone.is_empty() {
            if enabled.qresync {
                // RFC 7162 3.2.10: VANISHED with the UIDs, no renumbering
                // lines.
                let mut gone: Vec<u32> = self.gone.iter().copied().collect();
                gone.sort_unstable();
                out.extend_from_slice(b"* VANISHED ");
                proto::imap::response::write_seq_set(out, &gone);
                out.extend_from_slice(b"\r\n");
                self.uids.retain(|u| !self.gone.contains(u));
            } else {
                // RFC 3501 7.4.1: each EXPUNGE renumbers the rest, so the
                // highest sequence number goes first (then numbers stay
                // valid as they are sent).
                let mut i = self.uids.len();
                while i > 0 {
                    i -= 1;
                    if self.gone.contains(&self.uids[i]) {
                        out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                        self.uids.remove(i);
                    }
                }
            }
            self.gone.clear();
        }
        // New messages: the folder's list past what the client knows.
        let last = self.last_uid();
        let before = self.uids.len();
        for m in self.folder.messages() {
            if m.uid > last && !self.gone.contains(&m.uid) {
                self.uids.push(m.uid);
            }
        }
        if self.uids.len() != before {
            out.extend_from_slice(format!("* {} EXISTS\r\n", self.uids.len()).as_bytes());
            // RFC 9051 has no \Recent; RFC 3501 7.3.2: the messages with
            // \Recent (the store's rule), not the expunged.
            if !enabled.imap4rev2 {
                let recent = self
                    .uids
                    .iter()
                    .filter(|&&u| self.folder.message(u).is_some_and(|m| m.recent))
                    .count();
                out.extend_from_slice(format!("* {recent} RECENT\r\n").as_bytes());
            }
        }
        if !self.flags.is_empty() {
            let mut changed: Vec<u32> = self.flags.drain().collect();
            changed.sort_unstable();
            for uid in changed {
                if self.gone.contains(&uid) {
                    continue;
                }
                let Some(seq) = self.seq_of(uid) else {
                    continue;
                };
                self.write_flags_fetch(seq, uid, true, enabled.condstore, out);
            }
        }
        if enabled.qresync {
            self.report_highest_modseq(out);
        }
        self.sent_modseq = 0;
    }

    /// RFC 7162 3.2: a QRESYNC client keeps the HIGHESTMODSEQ it last saw
    /// and resynchronizes from it, so tell it the new one after changes
    /// that carried no MODSEQ (VANISHED, EXISTS); and while an expunge is
    /// still to be reported (FETCH, STORE and SEARCH hold them back), a
    /// client that took a MODSEQ of a FETCH as its HIGHESTMODSEQ would
    /// lose that expunge: tell it the last value it had everything for.
    /// As Dovecot's imap_sync_send_highestmodseq (untagged here: this runs
    /// before the tagged line is known).
    fn report_highest_modseq(&mut self, out: &mut Vec<u8>) {
        let highest = self.folder.highest_modseq();
        let delayed = !self.gone.is_empty();
        let send = if delayed {
            (self.sent_modseq > self.told_modseq).then_some(self.told_modseq)
        } else {
            (highest > self.told_modseq && highest > self.sent_modseq).then_some(highest)
        };
        if let Some(m) = send.filter(|_| !self.tagged_highest || delayed) {
            out.extend_from_slice(format!("* OK [HIGHESTMODSEQ {m}] Highest\r\n").as_bytes());
        }
        if !delayed {
            self.told_modseq = self.told_modseq.max(highest);
        }
    }

    /// The HIGHESTMODSEQ the client has been told everything up to.
    pub fn told_modseq(&self) -> u64 {
        self.told_modseq
    }
}

/// `* VANISHED (EARLIER) ranges` (RFC 7162 3.2.10), nothing when empty.
pub fn write_vanished_earlier(out: &mut Vec<u8>, ranges: &[(u32, u32)]) {
    if ranges.is_empty() {
        return;
    }
    out.extend_from_slice(b"* VANISHED (EARLIER) ");
    for (i, &(a, b)) in ranges.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if a == b {
            out.extend_from_slice(a.to_string().as_bytes());
        } else {
            out.extend_from_slice(format!("{a}:{b}").as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}
