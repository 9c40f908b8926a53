//! SELECT, EXAMINE, CLOSE, UNSELECT, EXPUNGE and UID EXPUNGE, with
//! QRESYNC's resynchronization in SELECT/EXAMINE.
//!
//! Standards: RFC 3501 6.3.1-6.3.2 (the SELECT responses: FLAGS, EXISTS,
//! RECENT, OK [UNSEEN], [PERMANENTFLAGS], [UIDNEXT], [UIDVALIDITY],
//! [READ-WRITE]/[READ-ONLY]), 6.4.2 (CLOSE expunges silently), 6.4.3
//! (EXPUNGE; RFC 7162 3.2.7 and 3.2.9: with QRESYNC its tagged OK
//! carries the new HIGHESTMODSEQ); RFC 9051 6.3.2 (LIST-style response, no RECENT/UNSEEN under
//! IMAP4rev2); RFC 3691 (UNSELECT); RFC 4315 2.1 (UID EXPUNGE); RFC 7162
//! 3.1.2.1 (HIGHESTMODSEQ; never NOMODSEQ: every folder keeps
//! mod-sequences), 3.1.8 (the CONDSTORE parameter), 3.2.5 (the QRESYNC
//! parameter: VANISHED (EARLIER) and the FETCH of changed messages; BAD
//! without ENABLE QRESYNC), 3.2.5.2 (message sequence match data), 3.2.11
//! (CLOSED when a mailbox replaces another).
//!
//! Security: the QRESYNC sets come from the client: they are kept as
//! ranges (never expanded into one entry per UID), so `1:4294967295`
//! costs what `1` does.

use mailstore::{Access, Flags};
use proto::imap::{Mailbox, Qresync, ResponseCode, SelectParams, SeqNum, SequenceSet, Tag};

use super::{bad_name, resolve, store_name};
use crate::session::view::{write_vanished_earlier, Report, View};
use crate::session::Session;

/// The flags the SELECT response lists (Dovecot's).
const FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/// `* FLAGS` and `* OK [PERMANENTFLAGS]` with the folder's keywords, as
/// Dovecot lists them (RFC 3501 7.2.6: at SELECT, and again when a STORE
/// makes a new keyword).
pub fn write_flags(folder: &mut mailstore::Folder, read_only: bool, out: &mut Vec<u8>) {
    let mut flags = FLAGS.to_string();
    if let Ok(k) = folder.keywords() {
        for (_, name) in k.iter() {
            flags.push(' ');
            flags.push_str(name);
        }
    }
    out.extend_from_slice(format!("* FLAGS ({flags})\r\n").as_bytes());
    if read_only {
        out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n");
    } else {
        out.extend_from_slice(
            format!("* OK [PERMANENTFLAGS ({flags} \\*)] Flags permitted.\r\n").as_bytes(),
        );
    }
}

pub fn select(s: &mut Session, tag: &Tag, m: &Mailbox, params: &SelectParams, read_only: bool) {
    // RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected; a
    // selected one is closed first (without expunging).
    let previous = s.selected.take();
    if previous.is_some() {
        // RFC 7162 3.2.11 / RFC 9051 7.1: the old mailbox is closed; what
        // follows is about the new one. Sent whether or not QRESYNC is
        // enabled, as Dovecot does.
        s.out
            .extend_from_slice(b"* OK [CLOSED] Previous mailbox closed.\r\n");
    }
    let command = if read_only { "EXAMINE" } else { "SELECT" };
    if let Some(q) = &params.qresync {
        // RFC 7162 3.2.5: QRESYNC without ENABLE QRESYNC is BAD.
        if !s.enabled.qresync {
            s.bad(
                tag,
                &format!("Error in IMAP command {command}: QRESYNC not enabled"),
            );
            return;
        }
        if let Err(why) = check_qresync(q) {
            s.bad(tag, &format!("Error in IMAP command {command}: {why}"));
            return;
        }
    }
    let name = match store_name(s, m) {
        Ok(n) => n,
        Err(why) => return bad_name(s, tag, &why),
    };
    if params.condstore {
        // Before the mailbox is open: no HIGHESTMODSEQ for the old one.
        super::misc::enable_condstore(s);
    }
    // SELECT of the mailbox already selected (a client's resync), or of one
    // a session of this user let go of lately (session::kept), starts from
    // what is known of it instead of listing it again; a previous mailbox
    // of another name is kept for later.
    let mut reuse = None;
    if let Some(v) = previous {
        if !read_only && v.folder.name() == name {
            reuse = Some(v.folder);
        } else {
            crate::session::kept::keep(&s.user, s.store.root(), v.folder);
        }
    }
    let folder = if read_only {
        s.store.folder(&name, Access::ReadOnly)
    } else {
        match reuse.or_else(|| crate::session::kept::take(&s.user, s.store.root(), &name)) {
            Some(f) => match s.store.select_again(&name, f) {
                Ok(Some(f)) => Ok(f),
                Ok(None) => s.store.select(&name),
                Err(e) => Err(e),
            },
            None => s.store.select(&name),
        }
    };
    let mut view = match folder.and_then(|f| View::new(f, read_only)) {
        Ok(v) => v,
        Err(e) => return s.store_error(tag, &e),
    };
    let out = &mut s.out;
    write_flags(&mut view.folder, read_only, out);
    let f = &view.folder;
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
    if let Some(q) = &params.qresync {
        // RFC 7162 3.2.5: only when the client's UIDs are still valid.
        if q.uid_validity == f.uid_validity() {
            resync(&mut view, q, out);
        }
    }
    let (code, text) = if read_only {
        (ResponseCode::ReadOnly, "Examine completed.")
    } else {
        (ResponseCode::ReadWrite, "Select completed.")
    };
    s.selected = Some(view);
    s.ok_code(tag, code, text);
}

/// Ascending, merged UID ranges.
pub type Ranges = Vec<(u32, u32)>;

/// A set's ranges, sorted and merged; `*` stands for `star`.
pub fn set_ranges(set: &[(SeqNum, SeqNum)], star: u32) -> Ranges {
    let v = |n: &SeqNum| match n {
        SeqNum::Value(v) => *v,
        SeqNum::Last => star,
    };
    let mut r: Ranges = set
        .iter()
        .map(|(a, b)| {
            let (a, b) = (v(a), v(b));
            (a.min(b), a.max(b))
        })
        .collect();
    merge(&mut r);
    r
}

/// Sort and merge overlapping or adjacent ranges.
fn merge(r: &mut Ranges) {
    r.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(r.len());
    for &(a, b) in r.iter() {
        match out.last_mut() {
            Some(last) if u64::from(a) <= u64::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *r = out;
}

/// The UIDs in both.
pub fn intersect(a: &[(u32, u32)], b: &[(u32, u32)]) -> Ranges {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let lo = a[i].0.max(b[j].0);
        let hi = a[i].1.min(b[j].1);
        if lo <= hi {
            out.push((lo, hi));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The UIDs of `a` not in `b` (both ascending, not overlapping).
pub fn subtract(a: &[(u32, u32)], b: &[(u32, u32)]) -> Ranges {
    let mut out = Vec::new();
    let mut j = 0;
    for &(lo, hi) in a {
        let mut lo = u64::from(lo);
        let hi = u64::from(hi);
        while j < b.len() && u64::from(b[j].1) < lo {
            j += 1;
        }
        let mut k = j;
        while lo <= hi && k < b.len() && u64::from(b[k].0) <= hi {
            let (blo, bhi) = (u64::from(b[k].0), u64::from(b[k].1));
            if blo > lo {
                out.push((lo as u32, (blo - 1) as u32));
            }
            lo = lo.max(bhi + 1);
            k += 1;
        }
        if lo <= hi {
            out.push((lo as u32, hi as u32));
        }
    }
    out
}

/// `r` without the UIDs `1..=below`.
fn drop_through(r: Ranges, below: u32) -> Ranges {
    r.into_iter()
        .filter(|&(_, b)| b > below)
        .map(|(a, b)| (a.max(below + 1), b))
        .collect()
}

/// Whether `uid` is in the ranges.
pub fn contains(r: &[(u32, u32)], uid: u32) -> bool {
    let i = r.partition_point(|&(_, b)| b < uid);
    i < r.len() && r[i].0 <= uid
}

/// The ranges of a set that may not hold `*` or `$` (RFC 7162 9:
/// known-uids, known-sequence-set, known-uid-set are `sequence-set`
/// without `*`), in the client's order.
fn plain_set(set: &SequenceSet) -> Option<&[(SeqNum, SeqNum)]> {
    match set {
        SequenceSet::Ranges(r)
            if r.iter().all(
                |(a, b)| matches!((a, b), (SeqNum::Value(x), SeqNum::Value(y)) if *x > 0 && *y > 0),
            ) =>
        {
            Some(r)
        }
        _ => None,
    }
}

/// The QRESYNC parameter's sets are usable (BAD otherwise, as Dovecot).
fn check_qresync(q: &Qresync) -> Result<(), &'static str> {
    if let Some(k) = &q.known_uids {
        plain_set(k).ok_or("Invalid QRESYNC known-uids")?;
    }
    if let Some((seqs, uids)) = &q.seq_match {
        plain_set(seqs).ok_or("Invalid QRESYNC known-sequence-set")?;
        plain_set(uids).ok_or("Invalid QRESYNC known-uid-set")?;
        sample_pairs(seqs, uids).ok_or("Invalid QRESYNC sets")?;
    }
    Ok(())
}

/// RFC 7162 3.2.5.2: the (sequence number, UID) pairs of the message
/// sequence match data, one for each end of each UID range (the numbers
/// between add nothing the ends do not say), as Dovecot's
/// select_qresync_get_uids. None when the two sets differ in size.
fn sample_pairs(seqs: &SequenceSet, uids: &SequenceSet) -> Option<Vec<(u32, u32)>> {
    let seqs = set_ranges(plain_set(seqs)?, 0);
    let uids = set_ranges(plain_set(uids)?, 0);
    let total: u64 = seqs.iter().map(|&(a, b)| u64::from(b - a) + 1).sum();
    // The n-th (from 0) sequence number of the set.
    let nth = |mut n: u64| -> Option<u32> {
        for &(a, b) in &seqs {
            let len = u64::from(b - a) + 1;
            if n < len {
                return Some(a + n as u32);
            }
            n -= len;
        }
        None
    };
    let mut pairs = Vec::new();
    let mut n = 0u64;
    for &(a, b) in &uids {
        pairs.push((nth(n)?, a));
        if b > a {
            n += u64::from(b - a);
            pairs.push((nth(n)?, b));
        }
        n += 1;
    }
    (n == total).then_some(pairs)
}

/// RFC 7162 3.2.5: after the SELECT responses, `* VANISHED (EARLIER)`
/// for the known UIDs expunged since the client's mod-sequence, then
/// `* n FETCH (UID u FLAGS (...) MODSEQ (m))` for the known messages
/// changed since.
fn resync(view: &mut View, q: &Qresync, out: &mut Vec<u8>) {
    // Without known-uids, every UID (3.2.5); the store's answer is below
    // UIDNEXT.
    let known = match &q.known_uids {
        Some(k) => plain_set(k).map_or_else(Vec::new, |r| set_ranges(r, 0)),
        None => vec![(1, u32::MAX)],
    };
    let v = view.folder.expunged_since(q.modseq);
    let mut vanished = intersect(&v.uids, &known);
    if !v.exact {
        // The log does not reach back to the client's mod-sequence: the
        // store named every UID that is not a message now. Pairs of the
        // sequence match data that still hold show the client knows of
        // every expunge up to that UID (3.2.5.2): the first pair that no
        // longer matches ends the walk, as in Dovecot's
        // expunges_drop_known.
        if let Some((seqs, uids)) = &q.seq_match {
            let mut known_through = 0;
            for (seq, uid) in sample_pairs(seqs, uids).unwrap_or_default() {
                if seq == 0 || seq > view.exists() || view.uids[seq as usize - 1] != uid {
                    break;
                }
                known_through = uid;
            }
            vanished = drop_through(vanished, known_through);
        }
    }
    write_vanished_earlier(out, &vanished);
    for uid in view.folder.changed_since(q.modseq) {
        if !contains(&known, uid) {
            continue;
        }
        if let Some(seq) = view.seq_of(uid) {
            view.write_flags_fetch(seq, uid, true, true, out);
        }
    }
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
        crate::session::kept::keep(&s.user, s.store.root(), view.folder);
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
    let mut expunged = false;
    if !deleted.is_empty() {
        match view.folder.expunge(&deleted) {
            Ok(gone) => {
                expunged = !gone.is_empty();
                view.absorb(mailstore::Changes {
                    expunged: gone,
                    ..Default::default()
                });
            }
            Err(e) => return s.store_error(tag, &e),
        }
    }
    if expunged && s.enabled.qresync {
        // RFC 7162 3.2.7, 3.2.9: the new HIGHESTMODSEQ in the tagged OK,
        // after the VANISHED (and whatever else is due) it covers.
        if let Some(view) = s.selected.as_mut() {
            view.tagged_highest = true;
        }
        s.sync_report(Report::All);
        if let Some(view) = s.selected.as_mut() {
            view.tagged_highest = false;
            let h = view.told_modseq();
            return s.ok_code(tag, ResponseCode::HighestModSeq(h), "Expunge completed.");
        }
    }
    s.ok(tag, "Expunge completed.");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> SequenceSet {
        SequenceSet::parse(s.as_bytes(), 100).unwrap()
    }

    fn ranges(s: &str) -> Ranges {
        match set(s) {
            SequenceSet::Ranges(r) => set_ranges(&r, 99),
            SequenceSet::Saved => unreachable!("no $ in these tests"),
        }
    }

    #[test]
    fn range_arithmetic() {
        assert_eq!(ranges("5:1,3,7,8,10:*"), vec![(1, 5), (7, 8), (10, 99)]);
        assert_eq!(
            ranges("4294967295,1"),
            vec![(1, 1), (4294967295, 4294967295)]
        );
        let a = ranges("1:10,20:30");
        assert_eq!(
            intersect(&a, &ranges("5:22,30")),
            vec![(5, 10), (20, 22), (30, 30)]
        );
        assert_eq!(
            subtract(&a, &ranges("1,3:4,10:25")),
            vec![(2, 2), (5, 9), (26, 30)]
        );
        assert_eq!(
            subtract(&[(1, u32::MAX)], &[(u32::MAX, u32::MAX)]),
            vec![(1, u32::MAX - 1)]
        );
        assert_eq!(drop_through(a.clone(), 7), vec![(8, 10), (20, 30)]);
        assert!(contains(&a, 25) && !contains(&a, 15) && !contains(&a, 31));
    }

    #[test]
    fn sequence_match_pairs() {
        // RFC 7162 3.2.5.2's example sets: each end of each UID range.
        assert_eq!(
            sample_pairs(&set("1:5,7"), &set("10,12:15,20")),
            Some(vec![(1, 10), (2, 12), (5, 15), (7, 20)])
        );
        // Sizes differ: refused.
        assert_eq!(sample_pairs(&set("1:3"), &set("1,4")), None);
        assert_eq!(sample_pairs(&set("1"), &set("1:2")), None);
        // Huge ranges cost what small ones do.
        assert_eq!(
            sample_pairs(&set("1:4000000000"), &set("1:4000000000")),
            Some(vec![(1, 1), (4000000000, 4000000000)])
        );
        assert!(check_qresync(&Qresync {
            uid_validity: 1,
            modseq: 1,
            known_uids: Some(set("1:*")),
            seq_match: None,
        })
        .is_err());
    }
}
