//! The `posthorn-modseq` file: each message's mod-sequence, the folder's
//! HIGHESTMODSEQ, the log of expunged UIDs for QRESYNC, and where \Recent
//! starts.
//!
//! ```text
//! 1 V1700000000 H1764400000000123 F1764400000000000 R12   version, UIDVALIDITY, HIGHESTMODSEQ, expunge floor, first recent UID
//!                                                         (and B<boot id, hex>: the boot it was written in)
//! 1 1764400000000000 10 0                                 <uid> <modseq> <flags, hex> <keyword letters, hex>
//! 7 1764400000000123 12 3
//! X3-5 1764400000000100                                   X<first uid>-<last uid> <modseq at which they were expunged>
//! ```
//!
//! Owns parsing and writing the format and the bookkeeping on it, without
//! I/O: giving a new mod-sequence (`highest + 1`, one per operation), finding
//! what changed between the file and a folder's messages (`reconcile`),
//! logging expunges (ranges, at most MAX_EXPUNGE_RANGES; older ones are
//! dropped and the floor `F` raised to their mod-sequence), and answering
//! "what was expunged since" (`expunged_since`). The flags and keyword
//! letters stored with each message are the state its mod-sequence belongs
//! to: a sync that finds a file's flags differ (changed by another program
//! renaming it) gives the message a new mod-sequence. Does not own locking,
//! reading or writing the file (folder.rs does, under the uidlist lock).
//!
//! Standards: RFC 7162 3.1.1 (mod-sequences are positive, below 2^63, and
//! grow with every change; HIGHESTMODSEQ never decreases for one
//! UIDVALIDITY), 3.2.5.2 and 3.2.10 (VANISHED (EARLIER)); RFC 3501 2.3.2
//! (\Recent: `R`, see folder.rs for the rule).
//!
//! Recovery: a file that is missing or does not parse is rebuilt by the
//! caller with `ModseqFile::rebuilt`: HIGHESTMODSEQ and the floor start at
//! the current time in microseconds (above anything handed out before
//! unless more than a million changes a second were made), every message
//! gets that mod-sequence, and nothing is known about earlier expunges
//! (`expunged_since` below the floor is not exact).
//!
//! Security: the file is the mailbox owner's and read by every session:
//! files over MAX_FILE are refused by the reader, numbers are checked for
//! overflow, UIDs must ascend and mod-sequences lie between the floor and
//! HIGHESTMODSEQ; every error is a `ParseError` (fuzz/: maildir_modseq).
//!
//! Diagnostics: `ParseError` with the line number; the caller logs it with
//! the path and rebuilds the file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::error::ParseError;
use crate::filename::{Flags, KeywordSet};

/// The file's name in the folder directory.
pub const FILE: &str = "posthorn-modseq";
/// Largest file read (some 40 bytes a message: a million messages).
pub const MAX_FILE: usize = 64 << 20;
/// Expunge ranges kept (one range per run of adjacent UIDs expunged
/// together); older ones are forgotten and the floor raised.
pub const MAX_EXPUNGE_RANGES: usize = 10_000;
/// The largest mod-sequence (RFC 7162 3.1.1: mod-sequence-value < 2^63).
pub const MAX_MODSEQ: u64 = (1 << 63) - 1;

/// A message's mod-sequence and the flags it was given for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub modseq: u64,
    pub flags: Flags,
    pub keywords: KeywordSet,
}

/// UIDs `first..=last`, expunged at `modseq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpungedRange {
    pub first: u32,
    pub last: u32,
    pub modseq: u64,
}

/// What a QRESYNC client is told has vanished since its mod-sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vanished {
    /// Ascending, non-overlapping UID ranges.
    pub uids: Vec<(u32, u32)>,
    /// False when the mod-sequence asked about is below the floor: the log
    /// no longer reaches back that far. `Folder::expunged_since` then
    /// gives every UID below UIDNEXT that is not a message now (any of them
    /// may have vanished since).
    pub exact: bool,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModseqFile {
    /// The UIDVALIDITY the UIDs below belong to.
    pub uid_validity: u32,
    /// HIGHESTMODSEQ: the largest mod-sequence handed out.
    pub highest: u64,
    /// Expunges at or below this mod-sequence are not in the log.
    pub floor: u64,
    /// Messages with this UID or above are recent (RFC 3501 2.3.2) for the
    /// next session that takes them.
    pub first_recent: u32,
    pub messages: BTreeMap<u32, Entry>,
    /// Ascending by mod-sequence.
    pub expunged: Vec<ExpungedRange>,
    /// The boot (Linux's boot_id, hex) the file was written in (`B`): a
    /// file written in another boot may have lost a write that was not
    /// fsync'ed (flag changes are not), so its reader starts HIGHESTMODSEQ
    /// again at the current time (folder/imap.rs). None: not recorded.
    pub boot: Option<String>,
}

/// Microseconds since the epoch, at least 1: where a rebuilt file starts.
pub fn time_floor() -> u64 {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    us.clamp(1, MAX_MODSEQ / 2)
}

impl ModseqFile {
    /// A file for a folder whose file is missing or corrupt: HIGHESTMODSEQ
    /// and the floor at `floor` (`time_floor()`), no messages yet (the
    /// first `reconcile` gives them all `floor + 1`), every message
    /// recent.
    pub fn rebuilt(uid_validity: u32, floor: u64) -> ModseqFile {
        ModseqFile {
            uid_validity,
            highest: floor,
            floor,
            first_recent: 1,
            messages: BTreeMap::new(),
            expunged: Vec::new(),
            boot: None,
        }
    }

    /// A new mod-sequence for one operation.
    pub fn next_modseq(&mut self) -> u64 {
        // A file near the limit would need 2^62 changes; stay put there
        // rather than wrap (mod-sequences then stop growing).
        self.highest = (self.highest + 1).min(MAX_MODSEQ);
        self.highest
    }

    /// Compare with a folder's messages (uid, flags, keyword letters) as a
    /// full sync found them, under the lock: messages that are new or whose
    /// flags differ get one new mod-sequence, records without a message are
    /// logged as expunged at it. A different UIDVALIDITY forgets all UIDs
    /// (the floor rises to HIGHESTMODSEQ, which does not go down). Returns
    /// whether the file changed.
    pub fn reconcile(&mut self, uid_validity: u32, current: &[(u32, Flags, KeywordSet)]) -> bool {
        let mut changed = false;
        if uid_validity != self.uid_validity {
            self.uid_validity = uid_validity;
            self.messages.clear();
            self.expunged.clear();
            self.floor = self.highest;
            self.first_recent = 1;
            changed = true;
        }
        let mut modseq = None;
        let mut now = |f: &mut ModseqFile| *modseq.get_or_insert_with(|| f.next_modseq());
        let present: std::collections::HashSet<u32> = current.iter().map(|c| c.0).collect();
        let gone: Vec<u32> = self
            .messages
            .keys()
            .copied()
            .filter(|u| !present.contains(u))
            .collect();
        if !gone.is_empty() {
            let m = now(self);
            self.log_expunged(&gone, m);
            changed = true;
        }
        for &(uid, flags, keywords) in current {
            match self.messages.get(&uid) {
                Some(e) if (e.flags, e.keywords) == (flags, keywords) => {}
                _ => {
                    let m = now(self);
                    self.messages.insert(
                        uid,
                        Entry {
                            modseq: m,
                            flags,
                            keywords,
                        },
                    );
                    changed = true;
                }
            }
        }
        changed
    }

    /// Remove `uids` (ascending or not) and log them as expunged at
    /// `modseq` (from `next_modseq`).
    pub fn log_expunged(&mut self, uids: &[u32], modseq: u64) {
        let mut uids = uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        for &u in &uids {
            self.messages.remove(&u);
        }
        for u in uids {
            match self.expunged.last_mut() {
                Some(r) if r.modseq == modseq && r.last.checked_add(1) == Some(u) => r.last = u,
                _ => self.expunged.push(ExpungedRange {
                    first: u,
                    last: u,
                    modseq,
                }),
            }
        }
        if self.expunged.len() > MAX_EXPUNGE_RANGES {
            let drop = self.expunged.len() - MAX_EXPUNGE_RANGES;
            let forgotten = self.expunged[drop - 1].modseq;
            self.expunged.drain(..drop);
            self.floor = self.floor.max(forgotten);
        }
    }

    /// UIDs expunged after `modseq`, merged into ranges. Not `exact` when
    /// `modseq` is below the floor (the caller widens the answer).
    pub fn expunged_since(&self, modseq: u64) -> Vanished {
        let mut ranges: Vec<(u32, u32)> = self
            .expunged
            .iter()
            .filter(|r| r.modseq > modseq)
            .map(|r| (r.first, r.last))
            .collect();
        ranges.sort_unstable();
        Vanished {
            uids: merge_ranges(ranges),
            exact: modseq >= self.floor,
        }
    }

    /// Parse a whole file.
    pub fn parse(data: &[u8]) -> Result<ModseqFile, ParseError> {
        let text = std::str::from_utf8(data).map_err(|_| ParseError::new(0, "not UTF-8"))?;
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(ParseError::new(0, "last line cut short"));
        }
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        let (_, header) = lines.next().ok_or_else(|| ParseError::new(1, "empty"))?;
        let mut f = parse_header(header)?;
        let mut last_uid = 0u32;
        for (n, line) in lines {
            if let Some(rest) = line.strip_prefix('X') {
                let r = parse_expunged(n, rest)?;
                if r.modseq <= f.floor || r.modseq > f.highest {
                    return Err(ParseError::new(n, "expunge modseq outside floor..highest"));
                }
                if f.expunged.last().is_some_and(|p| p.modseq > r.modseq) {
                    return Err(ParseError::new(n, "expunge modseqs not ascending"));
                }
                f.expunged.push(r);
                continue;
            }
            let mut w = line.split(' ');
            let (Some(uid), Some(m), Some(fl), Some(kw), None) =
                (w.next(), w.next(), w.next(), w.next(), w.next())
            else {
                return Err(ParseError::new(n, "expected: uid modseq flags keywords"));
            };
            let uid = number::<u32>(n, uid)?;
            let modseq = number::<u64>(n, m)?;
            let flags = u8::from_str_radix(fl, 16)
                .ok()
                .filter(|_| fl.len() <= 2 && fl.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| ParseError::new(n, "bad flags"))?;
            let keywords = u32::from_str_radix(kw, 16)
                .ok()
                .filter(|_| kw.len() <= 8 && kw.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| ParseError::new(n, "bad keywords"))?;
            if uid == 0 || uid <= last_uid {
                return Err(ParseError::new(n, "UIDs not ascending"));
            }
            if modseq == 0 || modseq > f.highest {
                return Err(ParseError::new(n, "modseq above HIGHESTMODSEQ"));
            }
            last_uid = uid;
            f.messages.insert(
                uid,
                Entry {
                    modseq,
                    flags: Flags::from_bits_truncate(flags),
                    keywords: KeywordSet(keywords & ((1 << 26) - 1)),
                },
            );
        }
        if f.expunged.len() > MAX_EXPUNGE_RANGES {
            return Err(ParseError::new(0, "too many expunge ranges"));
        }
        Ok(f)
    }

    /// The file's bytes.
    pub fn write(&self) -> Vec<u8> {
        let mut s = String::with_capacity(64 + 32 * self.messages.len());
        // Writing to a String cannot fail.
        let _ = writeln!(
            s,
            "1 V{} H{} F{} R{}",
            self.uid_validity, self.highest, self.floor, self.first_recent
        );
        if let Some(b) = &self.boot {
            // Before the newline: the header's last field.
            s.pop();
            let _ = writeln!(s, " B{b}");
        }
        for (uid, e) in &self.messages {
            let _ = writeln!(
                s,
                "{uid} {} {:x} {:x}",
                e.modseq,
                e.flags.bits(),
                e.keywords.0
            );
        }
        for r in &self.expunged {
            let _ = writeln!(s, "X{}-{} {}", r.first, r.last, r.modseq);
        }
        s.into_bytes()
    }
}

/// Sorted ranges, overlapping or adjacent ones joined.
pub fn merge_ranges(sorted: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(sorted.len());
    for (a, b) in sorted {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn number<T: std::str::FromStr>(line: usize, s: &str) -> Result<T, ParseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::new(line, format!("not a number: {s:?}")));
    }
    s.parse()
        .map_err(|_| ParseError::new(line, format!("number out of range: {s:?}")))
}

fn parse_header(line: &str) -> Result<ModseqFile, ParseError> {
    let mut w = line.split(' ');
    if w.next() != Some("1") {
        return Err(ParseError::new(1, "not version 1"));
    }
    let (mut v, mut h, mut fl, mut r, mut boot) = (None, None, None, None, None);
    for field in w {
        let Some(key) = field.bytes().next() else {
            return Err(ParseError::new(1, "empty field"));
        };
        // Empty when the key is not one byte of ASCII (refused below).
        let value = field.get(1..).unwrap_or("");
        match key {
            b'V' => v = Some(number::<u32>(1, value)?),
            b'H' => h = Some(number::<u64>(1, value)?),
            b'F' => fl = Some(number::<u64>(1, value)?),
            b'R' => r = Some(number::<u32>(1, value)?),
            b'B' if is_boot_id(value) => boot = Some(value.to_string()),
            b'B' => return Err(ParseError::new(1, "bad boot id")),
            // Fields of later versions of this writer.
            b'A'..=b'Z' => {}
            _ => return Err(ParseError::new(1, "bad header field")),
        }
    }
    let (Some(uid_validity), Some(highest), Some(floor), Some(first_recent)) = (v, h, fl, r) else {
        return Err(ParseError::new(1, "header lacks V, H, F or R"));
    };
    if highest == 0 || highest > MAX_MODSEQ || floor > highest {
        return Err(ParseError::new(1, "bad HIGHESTMODSEQ or floor"));
    }
    Ok(ModseqFile {
        uid_validity,
        highest,
        floor,
        first_recent,
        messages: BTreeMap::new(),
        expunged: Vec::new(),
        boot,
    })
}

/// A boot id as `B` holds it: 1 to 64 lowercase hex digits.
pub fn is_boot_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn parse_expunged(n: usize, rest: &str) -> Result<ExpungedRange, ParseError> {
    let bad = || ParseError::new(n, "expected: X<first>-<last> <modseq>");
    let (range, m) = rest.split_once(' ').ok_or_else(bad)?;
    let (a, b) = range.split_once('-').ok_or_else(bad)?;
    let (first, last, modseq) = (
        number::<u32>(n, a)?,
        number::<u32>(n, b)?,
        number::<u64>(n, m)?,
    );
    if first == 0 || first > last {
        return Err(ParseError::new(n, "bad UID range"));
    }
    Ok(ExpungedRange {
        first,
        last,
        modseq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(uid: u32, flags: Flags) -> (u32, Flags, KeywordSet) {
        (uid, flags, KeywordSet::default())
    }

    #[test]
    fn the_boot_id_is_kept_and_checked() {
        let mut f = ModseqFile::rebuilt(7, 100);
        f.reconcile(7, &[st(1, Flags::SEEN)]);
        let plain = f.write();
        assert_eq!(ModseqFile::parse(&plain).unwrap().boot, None);
        f.boot = Some("0123456789abcdef0123456789abcdef".into());
        let data = f.write();
        assert!(data.starts_with(b"1 V7 H101 F100 R1 B0123456789abcdef0123456789abcdef\n"));
        assert_eq!(ModseqFile::parse(&data).unwrap(), f);
        for bad in ["B", "BXYZ", "B0123-4567"] {
            let text = format!("1 V7 H101 F100 R1 {bad}\n");
            assert!(ModseqFile::parse(text.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn reconcile_gives_one_modseq_per_change_and_logs_expunges() {
        let mut f = ModseqFile::rebuilt(7, 100);
        assert!(f.reconcile(7, &[st(1, Flags::empty()), st(2, Flags::SEEN)]));
        assert_eq!(f.highest, 101);
        assert_eq!(f.messages[&1].modseq, 101);
        assert!(!f.reconcile(7, &[st(1, Flags::empty()), st(2, Flags::SEEN)]));
        assert_eq!(f.highest, 101);
        // 2's flags changed behind our back, 1 is gone, 3 is new.
        assert!(f.reconcile(7, &[st(2, Flags::empty()), st(3, Flags::empty())]));
        assert_eq!(f.highest, 102);
        assert_eq!(f.messages[&2].modseq, 102);
        assert_eq!(f.messages[&3].modseq, 102);
        assert!(!f.messages.contains_key(&1));
        let v = f.expunged_since(101);
        assert_eq!(v.uids, [(1, 1)]);
        assert!(v.exact);
        assert!(f.expunged_since(102).uids.is_empty());
        assert!(!f.expunged_since(99).exact);
        // A new UIDVALIDITY: UIDs forgotten, HIGHESTMODSEQ keeps growing.
        assert!(f.reconcile(8, &[st(1, Flags::empty())]));
        assert_eq!((f.highest, f.floor), (103, 102));
        assert!(f.expunged.is_empty());
    }

    #[test]
    fn expunges_are_ranges_and_the_log_is_bounded() {
        let mut f = ModseqFile::rebuilt(1, 1);
        let m = f.next_modseq();
        f.log_expunged(&[5, 3, 4, 9], m);
        assert_eq!(
            f.expunged,
            [
                ExpungedRange {
                    first: 3,
                    last: 5,
                    modseq: 2
                },
                ExpungedRange {
                    first: 9,
                    last: 9,
                    modseq: 2
                }
            ]
        );
        for i in 0..MAX_EXPUNGE_RANGES as u32 {
            let m = f.next_modseq();
            f.log_expunged(&[100 + 2 * i], m);
        }
        assert_eq!(f.expunged.len(), MAX_EXPUNGE_RANGES);
        // The two oldest ranges (modseq 2) were dropped.
        assert_eq!(f.floor, 2);
        assert!(!f.expunged_since(1).exact);
        assert!(f.expunged_since(2).exact);
        assert_eq!(f.expunged_since(2).uids.len(), MAX_EXPUNGE_RANGES);
        assert_eq!(f.expunged_since(3).uids.len(), MAX_EXPUNGE_RANGES - 1);
    }

    #[test]
    fn round_trip() {
        let mut f = ModseqFile::rebuilt(1_700_000_000, 50);
        f.reconcile(
            1_700_000_000,
            &[
                st(1, Flags::SEEN | Flags::FLAGGED),
                (4, Flags::empty(), KeywordSet(0b101)),
            ],
        );
        let m = f.next_modseq();
        f.log_expunged(&[2, 3], m);
        f.first_recent = 5;
        let data = f.write();
        assert_eq!(
            String::from_utf8(data.clone()).unwrap(),
            "1 V1700000000 H52 F50 R5\n1 51 12 0\n4 51 0 5\nX2-3 52\n"
        );
        assert_eq!(ModseqFile::parse(&data).unwrap(), f);
    }

    #[test]
    fn bad_files_are_errors() {
        for (bad, line) in [
            (&b""[..], 1),
            (b"1 V1 H5 F0 R1", 0),
            (b"2 V1 H5 F0 R1\n", 1),
            (b"1 V1 H0 F0 R1\n", 1),
            (b"1 V1 H5 F6 R1\n", 1),
            (b"1 V1 H5 F0\n", 1),
            (b"1 V1 H5 F0 R1 x\n", 1),
            (b"1 V1 H99999999999999999999 F0 R1\n", 1),
            (b"1 V1 H9223372036854775808 F0 R1\n", 1),
            (b"1 V1 H5 F0 R1\n2 3 0 0\n2 3 0 0\n", 3),
            (b"1 V1 H5 F0 R1\n0 3 0 0\n", 2),
            (b"1 V1 H5 F0 R1\n2 6 0 0\n", 2),
            (b"1 V1 H5 F0 R1\n2 0 0 0\n", 2),
            (b"1 V1 H5 F0 R1\n2 3 100 0\n", 2),
            (b"1 V1 H5 F0 R1\n2 3 0 +1\n", 2),
            (b"1 V1 H5 F0 R1\n2 3 0\n", 2),
            (b"1 V1 H5 F0 R1\n2 3 0 0 0\n", 2),
            (b"1 V1 H5 F0 R1\n2 +3 0 0\n", 2),
            (b"1 V1 H5 F2 R1\nX1-2 2\n", 2),
            (b"1 V1 H5 F0 R1\nX1-2 6\n", 2),
            (b"1 V1 H5 F0 R1\nX3-2 4\n", 2),
            (b"1 V1 H5 F0 R1\nX0-2 4\n", 2),
            (b"1 V1 H5 F0 R1\nX1-2 4\nX3-3 3\n", 3),
            (b"1 V1 H5 F0 R1\nX1 4\n", 2),
            (b"1 V1 H5 F0 R1\n\xff\n", 0),
        ] {
            let e = ModseqFile::parse(bad).expect_err(&String::from_utf8_lossy(bad));
            assert_eq!(e.line, line, "{}", String::from_utf8_lossy(bad));
        }
        // Unknown upper-case header fields are kept for later versions.
        assert!(ModseqFile::parse(b"1 V1 H5 F0 R1 Zq\n").is_ok());
    }

    /// Every truncation and every single-byte change of a good file
    /// parses or is an error, never a panic; what parses writes back the
    /// same.
    #[test]
    fn mutations_never_panic() {
        let good = "1 V1700000000 H52 F50 R5\n1 51 12 0\n4 51 0 5\nX2-3 52\n".as_bytes();
        for cut in 0..good.len() {
            let _ = ModseqFile::parse(&good[..cut]);
        }
        for i in 0..good.len() {
            for b in [0u8, b' ', b'\n', b'0', b'9', b'X', b'-', b'f', 0xc3, 0xff] {
                let mut m = good.to_vec();
                m[i] = b;
                if let Ok(f) = ModseqFile::parse(&m) {
                    assert_eq!(ModseqFile::parse(&f.write()).unwrap(), f);
                }
            }
        }
        assert!(ModseqFile::parse("1 \u{e9}1 H5 F0 R1\n".as_bytes()).is_err());
    }

    #[test]
    fn merge_joins_adjacent_and_overlapping() {
        assert_eq!(
            merge_ranges(vec![(1, 2), (3, 3), (5, 9), (6, 7), (11, 11)]),
            [(1, 3), (5, 9), (11, 11)]
        );
    }
}
