//! SEARCH and UID SEARCH, with ESEARCH's RETURN options.
//!
//! Standards: RFC 3501 6.4.4 (every key; dates against INTERNALDATE, the
//! SENT* keys against Date:, both by date in the message's or server's
//! zone, here UTC; sizes in RFC822.SIZE; substrings case-insensitive),
//! RFC 9051 6.4.4 (ESEARCH response form), RFC 4731 (RETURN MIN MAX COUNT
//! ALL), RFC 5032 (OLDER/YOUNGER), RFC 7162 3.1.5 (MODSEQ key and the
//! (MODSEQ n) of the result), CHARSET UTF-8 and US-ASCII (others:
//! NO [BADCHARSET]).
//!
//! Security: the key tree is bounded by the parser's depth and item
//! limits; evaluation walks it with recursion no deeper than that bound.
//! Message text is read only when a key needs it.

use std::time::{SystemTime, UNIX_EPOCH};

use mailstore::Flags;
use proto::imap::{ResponseCode, SearchArgs, SearchKey, SearchReturn, SequenceSet, Tag};

use super::resolve;
use crate::mime::ParsedMessage;
use crate::session::view::View;
use crate::session::Session;

/// What a message offers the keys; text is loaded on first use.
struct Candidate<'a> {
    view: &'a mut View,
    uid: u32,
    seq: u32,
    parsed: Option<Option<ParsedMessage>>,
}

impl Candidate<'_> {
    fn flags(&self) -> Flags {
        self.view
            .folder
            .message(self.uid)
            .map_or(Flags::empty(), |m| m.flags)
    }

    /// \Recent for this session (mailstore's rule: `Store::select`).
    fn recent(&self) -> bool {
        self.view.folder.message(self.uid).is_some_and(|m| m.recent)
    }

    fn message(&mut self) -> Option<&ParsedMessage> {
        if self.parsed.is_none() {
            self.parsed = Some(load(self.view, self.uid));
        }
        self.parsed.as_ref().and_then(|p| p.as_ref())
    }

    /// INTERNALDATE in days since the epoch (UTC).
    fn internal_day(&mut self) -> i64 {
        self.internal_secs().div_euclid(86_400)
    }

    fn internal_secs(&mut self) -> i64 {
        internal_secs(self.view, self.uid)
    }

    fn size(&mut self) -> u64 {
        self.view.folder.vsize(self.uid).unwrap_or(0)
    }

    fn sent_day(&mut self) -> i64 {
        match self.message().and_then(|m| m.sent_date()) {
            // RFC 3501 6.4.4: the date, disregarding time and zone: the
            // day as the sender wrote it.
            Some((secs, offset)) => (secs + i64::from(offset) * 60).div_euclid(86_400),
            // No usable Date: Dovecot uses INTERNALDATE.
            None => self.internal_day(),
        }
    }
}

/// A message of the view, parsed (None when it cannot be read: gone
/// under us, or an I/O error; it then matches no text key and sorts with
/// empty keys).
pub(crate) fn load(view: &mut View, uid: u32) -> Option<ParsedMessage> {
    let f = view.folder.open_message(uid).ok()?;
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut mailstore::pop3::CrlfReader::new(f), &mut v).ok()?;
    Some(ParsedMessage::parse(&v))
}

/// The most of a message's header `load_header` reads.
pub(crate) const MAX_HEADER: u64 = 4 << 20;

/// A message's header only (through the blank line that ends it, at most
/// `MAX_HEADER` bytes), parsed: all SORT and THREAD keys need, without
/// reading bodies and attachments.
pub(crate) fn load_header(view: &mut View, uid: u32) -> Option<ParsedMessage> {
    use std::io::{BufRead, Read};
    let f = view.folder.open_message(uid).ok()?;
    let mut r = std::io::BufReader::new(mailstore::pop3::CrlfReader::new(f).take(MAX_HEADER));
    let mut v = Vec::new();
    loop {
        let n = r.read_until(b'\n', &mut v).ok()?;
        if n == 0 || v == b"\r\n" || v.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    Some(ParsedMessage::parse(&v))
}

/// INTERNALDATE in seconds since the epoch (0 when unknown).
pub(crate) fn internal_secs(view: &mut View, uid: u32) -> i64 {
    view.folder
        .internal_date(uid)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

fn text(a: &proto::imap::AString) -> String {
    String::from_utf8_lossy(&a.bytes).into_owned()
}

/// Does the message match `key`?
fn matches(
    c: &mut Candidate<'_>,
    key: &SearchKey,
    uids_of: &dyn Fn(&SequenceSet, bool) -> Vec<u32>,
) -> bool {
    use SearchKey as K;
    let has = |c: &Candidate<'_>, f: Flags| c.flags().contains(f);
    match key {
        K::All => true,
        K::Answered => has(c, Flags::REPLIED),
        K::Deleted => has(c, Flags::TRASHED),
        K::Draft => has(c, Flags::DRAFT),
        K::Flagged => has(c, Flags::FLAGGED),
        K::Seen => has(c, Flags::SEEN),
        K::Unanswered => !has(c, Flags::REPLIED),
        K::Undeleted => !has(c, Flags::TRASHED),
        K::Undraft => !has(c, Flags::DRAFT),
        K::Unflagged => !has(c, Flags::FLAGGED),
        K::Unseen => !has(c, Flags::SEEN),
        K::Recent => c.recent(),
        K::Old => !c.recent(),
        K::New => c.recent() && !has(c, Flags::SEEN),
        K::Keyword(k) | K::Unkeyword(k) => {
            let found = c
                .view
                .folder
                .keyword_names(c.uid)
                .unwrap_or_default()
                .iter()
                .any(|n| n.eq_ignore_ascii_case(k));
            found == matches!(key, K::Keyword(_))
        }
        K::Bcc(s) => header(c, "Bcc", s),
        K::Cc(s) => header(c, "Cc", s),
        K::From(s) => header(c, "From", s),
        K::To(s) => header(c, "To", s),
        K::Subject(s) => header(c, "Subject", s),
        K::Header(field, s) => header(c, field, s),
        K::Body(s) => {
            let needle = text(s);
            c.message().is_some_and(|m| m.body_contains(&needle))
        }
        K::Text(s) => {
            let needle = text(s);
            c.message().is_some_and(|m| m.text_contains(&needle))
        }
        K::Before(d) => c.internal_day() < d.days_since_epoch(),
        K::On(d) => c.internal_day() == d.days_since_epoch(),
        K::Since(d) => c.internal_day() >= d.days_since_epoch(),
        K::SentBefore(d) => c.sent_day() < d.days_since_epoch(),
        K::SentOn(d) => c.sent_day() == d.days_since_epoch(),
        K::SentSince(d) => c.sent_day() >= d.days_since_epoch(),
        K::Larger(n) => c.size() > *n,
        K::Smaller(n) => c.size() < *n,
        K::Older(secs) | K::Younger(secs) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let age = now - c.internal_secs();
            if matches!(key, K::Older(_)) {
                age >= i64::from(*secs)
            } else {
                age <= i64::from(*secs)
            }
        }
        K::Not(k) => !matches(c, k, uids_of),
        K::Or(a, b) => matches(c, a, uids_of) || matches(c, b, uids_of),
        K::And(ks) => ks.iter().all(|k| matches(c, k, uids_of)),
        K::SequenceSet(set) => uids_of(set, false).binary_search(&c.uid).is_ok(),
        K::Uid(set) => uids_of(set, true).binary_search(&c.uid).is_ok(),
        K::ModSeq { modseq, .. } => c.view.folder.modseq(c.uid).unwrap_or(0) >= *modseq,
    }
}

fn header(c: &mut Candidate<'_>, field: &str, s: &proto::imap::AString) -> bool {
    let needle = text(s);
    c.message()
        .is_some_and(|m| m.header_contains(field, &needle))
}

pub(crate) fn uses_modseq(k: &SearchKey) -> bool {
    match k {
        SearchKey::ModSeq { .. } => true,
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::And(ks) => ks.iter().any(uses_modseq),
        _ => false,
    }
}

pub fn search(s: &mut Session, tag: &Tag, uid: bool, args: &SearchArgs) {
    if !charset_ok(s, tag, args.charset.as_deref()) {
        return;
    }
    let with_modseq = args.keys.iter().any(uses_modseq);
    if with_modseq {
        // RFC 7162 3.1: SEARCH MODSEQ enables CONDSTORE.
        super::misc::enable_condstore(s);
    }
    let Matches { hits, max_modseq } = matching(s, &args.keys);
    let nums: Vec<u32> = hits
        .iter()
        .map(|&(seq, u)| if uid { u } else { seq })
        .collect();
    // RFC 9051 6.4.4: under IMAP4rev2 the answer is always ESEARCH (no
    // RETURN is RETURN (ALL)).
    let ret = match (&args.ret, s.enabled.imap4rev2) {
        (None, true) => Some(Vec::new()),
        (r, _) => r.clone(),
    };
    let out = &mut s.out;
    match &ret {
        None => {
            out.extend_from_slice(b"* SEARCH");
            for n in &nums {
                out.extend_from_slice(format!(" {n}").as_bytes());
            }
            if with_modseq && !nums.is_empty() {
                out.extend_from_slice(format!(" (MODSEQ {max_modseq})").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        Some(opts) => {
            // RFC 4731 3.1: RETURN () is RETURN (ALL).
            let all = opts.is_empty() || opts.contains(&SearchReturn::All);
            out.extend_from_slice(format!("* ESEARCH (TAG \"{}\")", tag.as_str()).as_bytes());
            if uid {
                out.extend_from_slice(b" UID");
            }
            if !nums.is_empty() {
                if opts.contains(&SearchReturn::Min) {
                    out.extend_from_slice(format!(" MIN {}", nums[0]).as_bytes());
                }
                if opts.contains(&SearchReturn::Max) {
                    out.extend_from_slice(format!(" MAX {}", nums[nums.len() - 1]).as_bytes());
                }
                if all {
                    out.extend_from_slice(b" ALL ");
                    proto::imap::response::write_seq_set(out, &nums);
                }
            }
            if opts.contains(&SearchReturn::Count) {
                out.extend_from_slice(format!(" COUNT {}", nums.len()).as_bytes());
            }
            if with_modseq && !nums.is_empty() {
                out.extend_from_slice(format!(" MODSEQ {max_modseq}").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    s.ok(tag, "Search completed.");
}

/// CHARSET: UTF-8 and US-ASCII (the default) are known; another gets
/// NO [BADCHARSET (UTF-8 US-ASCII)] (RFC 3501 6.4.4, RFC 5256 3) and false.
pub(crate) fn charset_ok(s: &mut Session, tag: &Tag, charset: Option<&str>) -> bool {
    match charset {
        None | Some("UTF-8") | Some("US-ASCII") => true,
        Some(_) => {
            s.no(
                tag,
                Some(ResponseCode::BadCharset(vec![
                    "UTF-8".into(),
                    "US-ASCII".into(),
                ])),
                "Unknown charset",
            );
            false
        }
    }
}

/// The messages of the selected view that `keys` (ANDed) match.
pub(crate) struct Matches {
    /// (sequence number, UID), ascending.
    pub hits: Vec<(u32, u32)>,
    /// The highest MODSEQ among them (RFC 7162 3.1.5), 0 when none.
    pub max_modseq: u64,
}

/// Evaluate the search program over the selected view (SEARCH, SORT and
/// THREAD share it). Messages expunged but not yet reported are left out.
pub(crate) fn matching(s: &mut Session, keys: &[SearchKey]) -> Matches {
    // Sequence sets inside keys resolve against the view as it is now.
    let all_known: Vec<u32> = s
        .selected
        .as_ref()
        .map(|v| v.uids.clone())
        .unwrap_or_default();
    let resolved: Vec<(SequenceSet, bool, Vec<u32>)> = {
        let mut v = Vec::new();
        collect_sets(keys, &mut |set, by_uid| {
            if !v
                .iter()
                .any(|(s2, u2, _): &(SequenceSet, bool, Vec<u32>)| s2 == set && *u2 == by_uid)
            {
                v.push((set.clone(), by_uid, resolve(s, set, by_uid)));
            }
        });
        v
    };
    let uids_of = |set: &SequenceSet, by_uid: bool| -> Vec<u32> {
        resolved
            .iter()
            .find(|(s2, u2, _)| s2 == set && *u2 == by_uid)
            .map(|(_, _, r)| r.clone())
            .unwrap_or_default()
    };
    let mut hits: Vec<(u32, u32)> = Vec::new();
    let mut max_modseq = 0;
    let Some(view) = s.selected.as_mut() else {
        return Matches { hits, max_modseq };
    };
    for (i, &u) in all_known.iter().enumerate() {
        if view.is_gone(u) || view.folder.message(u).is_none() {
            continue;
        }
        let mut c = Candidate {
            view,
            uid: u,
            seq: i as u32 + 1,
            parsed: None,
        };
        if keys.iter().all(|k| matches(&mut c, k, &uids_of)) {
            hits.push((c.seq, u));
            max_modseq = max_modseq.max(c.view.folder.modseq(u).unwrap_or(0));
        }
    }
    Matches { hits, max_modseq }
}

/// Every sequence set inside the keys, with whether it holds UIDs.
fn collect_sets(keys: &[SearchKey], f: &mut dyn FnMut(&SequenceSet, bool)) {
    for k in keys {
        match k {
            SearchKey::SequenceSet(s) => f(s, false),
            SearchKey::Uid(s) => f(s, true),
            SearchKey::Not(k) => collect_sets(std::slice::from_ref(k), f),
            SearchKey::Or(a, b) => {
                collect_sets(std::slice::from_ref(a), f);
                collect_sets(std::slice::from_ref(b), f);
            }
            SearchKey::And(ks) => collect_sets(ks, f),
            _ => {}
        }
    }
}
