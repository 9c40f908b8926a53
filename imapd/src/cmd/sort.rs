//! SORT and UID SORT: the messages a search program matches, in the order
//! the sort criteria give.
//!
//! Owns the comparison of the RFC 5256 and RFC 5957 keys and the `* SORT`
//! response. The search program is SEARCH's (cmd/search.rs `matching`);
//! the keys come from the message model (mime::ParsedMessage::sort_keys:
//! base subject, first address mailboxes, display names, all case-folded
//! as Dovecot's i;unicode-casemap, so plain byte order is the collation).
//!
//! Standards: RFC 5256 3 (SORT: ARRIVAL CC DATE FROM REVERSE SIZE SUBJECT
//! TO; ties, and what is left equal by every criterion, in sequence-number
//! order; DATE is the Date: field, INTERNALDATE when it is missing or
//! unparsable; REVERSE turns one criterion round, not the tie-break),
//! RFC 5957 (DISPLAYFROM, DISPLAYTO), RFC 7162 3.1.5 (MODSEQ in the search
//! program adds `(MODSEQ n)` to the result). ESORT (RFC 5267) is not
//! announced: SORT RETURN (...) is BAD.
//!
//! Checked against Dovecot 2.3: tests/sort.rs replays the golden
//! tests/golden/sort/ mailbox and compares with Dovecot's stored answers.
//!
//! Security: only a message's header is read and parsed for its keys (at
//! most search::MAX_HEADER bytes, one message at a time; the keys are kept,
//! not the message); the sort is O(n log n) comparisons.

use std::cmp::Ordering;

use proto::imap::{SearchArgs, SortCriterion, SortKey, Tag};

use super::search::{charset_ok, internal_secs, load_header, matching, uses_modseq, Matches};
use crate::mime::SortKeys;
use crate::session::view::View;
use crate::session::Session;

/// What one message is sorted by.
#[derive(Debug, Default)]
struct Entry {
    seq: u32,
    uid: u32,
    keys: SortKeys,
    /// INTERNALDATE, seconds.
    arrival: i64,
    /// RFC822.SIZE.
    size: u64,
}

impl Entry {
    /// RFC 5256 3 DATE: the sent date, else INTERNALDATE (also for a
    /// Date: of exactly the epoch, which Dovecot cannot tell from none).
    fn date(&self) -> i64 {
        match self.keys.date {
            Some(d) if d != 0 => d,
            _ => self.arrival,
        }
    }

    fn cmp_by(&self, other: &Entry, key: SortKey) -> Ordering {
        let (a, b) = (&self.keys, &other.keys);
        match key {
            SortKey::Arrival => self.arrival.cmp(&other.arrival),
            SortKey::Cc => a.cc.cmp(&b.cc),
            SortKey::Date => self.date().cmp(&other.date()),
            SortKey::From => a.from.cmp(&b.from),
            SortKey::Size => self.size.cmp(&other.size),
            SortKey::Subject => a.subject.cmp(&b.subject),
            SortKey::To => a.to.cmp(&b.to),
            SortKey::DisplayFrom => a.display_from.cmp(&b.display_from),
            SortKey::DisplayTo => a.display_to.cmp(&b.display_to),
        }
    }
}

/// Does any criterion need the message text (not only INTERNALDATE and
/// size)?
fn needs_text(criteria: &[SortCriterion]) -> bool {
    criteria
        .iter()
        .any(|c| !matches!(c.key, SortKey::Arrival | SortKey::Size))
}

fn entry(view: &mut View, seq: u32, uid: u32, text: bool) -> Entry {
    let keys = if text {
        load_header(view, uid)
            .map(|m| m.sort_keys())
            .unwrap_or_default()
    } else {
        SortKeys::default()
    };
    Entry {
        seq,
        uid,
        keys,
        arrival: internal_secs(view, uid),
        size: view.folder.vsize(uid).unwrap_or(0),
    }
}

pub fn sort(s: &mut Session, tag: &Tag, uid: bool, criteria: &[SortCriterion], args: &SearchArgs) {
    if args.ret.is_some() {
        // RFC 5267 ESORT is not announced.
        s.bad(tag, "SORT RETURN options are not supported.");
        return;
    }
    if !charset_ok(s, tag, args.charset.as_deref()) {
        return;
    }
    let with_modseq = args.keys.iter().any(uses_modseq);
    let Matches { hits, max_modseq } = matching(s, &args.keys);
    let Some(view) = s.selected.as_mut() else {
        return;
    };
    let text = needs_text(criteria);
    let mut entries: Vec<Entry> = hits
        .iter()
        .map(|&(seq, u)| entry(view, seq, u, text))
        .collect();
    // RFC 5256 3: each criterion in turn; all equal: sequence order.
    entries.sort_by(|a, b| {
        criteria
            .iter()
            .map(|c| {
                let o = a.cmp_by(b, c.key);
                if c.reverse {
                    o.reverse()
                } else {
                    o
                }
            })
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
            .then(a.seq.cmp(&b.seq))
    });
    let out = &mut s.out;
    out.extend_from_slice(b"* SORT");
    for e in &entries {
        let n = if uid { e.uid } else { e.seq };
        out.extend_from_slice(format!(" {n}").as_bytes());
    }
    if with_modseq && !entries.is_empty() {
        out.extend_from_slice(format!(" (MODSEQ {max_modseq})").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    s.ok(tag, "Sort completed.");
}
