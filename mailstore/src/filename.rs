//! Maildir message file names: the base, the `,S=`/`,W=` sizes, the flags
//! and keyword letters of the info part, and Dovecot's order of new files.
//!
//! ```text
//! new/1700000000.M123456P789Q0.host,S=1234,W=1260
//! cur/1700000000.M123456P789Q0.host,S=1234,W=1260:2,FRSab
//!     |<----------------- base ------------------>|  info: flags D F P R S T, then keywords a..z
//! ```
//!
//! Owns parsing and building names, the `Flags` and `KeywordSet` types, and
//! unique base names for new files. Does not own which keyword a letter
//! stands for (keywords.rs) or where files are (folder.rs).
//!
//! Standards: the Maildir specification (cr.yp.to/proto/maildir.html, "info
//! semantics": `:2,` then flags in ASCII order); Maildir++ (`,S=<size>`);
//! Dovecot's `,W=<virtual size>` (the size with CRLF line ends) and its
//! keyword letters a..z (maildir-filename-flags.c). Unknown flag characters
//! are kept where they were, as Dovecot keeps them.
//!
//! Security: names come from directory listings another program may fill:
//! parsing never panics, sizes that overflow are "no size", a name with '/'
//! or a control character is refused by `is_valid`.

use std::cmp::Ordering;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The system flags of a message (IMAP's, plus Maildir's P).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    /// `D`: IMAP \Draft.
    pub const DRAFT: Flags = Flags(1);
    /// `F`: IMAP \Flagged.
    pub const FLAGGED: Flags = Flags(2);
    /// `P`: passed (resent/forwarded); no IMAP equivalent.
    pub const PASSED: Flags = Flags(4);
    /// `R`: IMAP \Answered.
    pub const REPLIED: Flags = Flags(8);
    /// `S`: IMAP \Seen.
    pub const SEEN: Flags = Flags(16);
    /// `T`: IMAP \Deleted.
    pub const TRASHED: Flags = Flags(32);

    /// Each flag with its letter, in the order names carry them (ASCII).
    pub const LETTERS: [(Flags, u8); 6] = [
        (Flags::DRAFT, b'D'),
        (Flags::FLAGGED, b'F'),
        (Flags::PASSED, b'P'),
        (Flags::REPLIED, b'R'),
        (Flags::SEEN, b'S'),
        (Flags::TRASHED, b'T'),
    ];

    pub const fn empty() -> Flags {
        Flags(0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flags as bits (the constants above), as posthorn-modseq stores
    /// them.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Flags from bits; bits that are no flag are dropped.
    pub fn from_bits_truncate(bits: u8) -> Flags {
        Flags(bits & 0x3f)
    }

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }

    pub fn remove(&mut self, other: Flags) {
        self.0 &= !other.0;
    }

    /// The flag a Maildir letter stands for.
    pub fn from_letter(c: u8) -> Option<Flags> {
        Flags::LETTERS
            .iter()
            .find(|(_, l)| *l == c)
            .map(|(f, _)| *f)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl fmt::Display for Flags {
    /// The letters, as a file name carries them (`FRS`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (flag, letter) in Flags::LETTERS {
            if self.contains(flag) {
                write!(f, "{}", letter as char)?;
            }
        }
        Ok(())
    }
}

/// Keyword letters a..z of a file name (bit 0 = a). Which keyword a letter
/// stands for is the folder's dovecot-keywords file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct KeywordSet(pub u32);

impl KeywordSet {
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Does the set hold keyword index `i` (0 = a)?
    pub fn contains(self, i: usize) -> bool {
        i < 26 && self.0 & (1 << i) != 0
    }

    pub fn insert(&mut self, i: usize) {
        if i < 26 {
            self.0 |= 1 << i;
        }
    }

    /// The indexes in the set, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..26).filter(move |i| self.contains(*i))
    }
}

/// Longest file name a directory entry can have (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// The base of a file name: everything before the first ':'.
pub fn base(name: &str) -> &str {
    name.split_once(':').map_or(name, |(b, _)| b)
}

/// Can this directory entry be a message? Not hidden, no empty base, no
/// control characters (Dovecot ignores names with CR or LF), no '/'.
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && !name.starts_with('.')
        && !name.starts_with(':')
        && !name.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'/')
}

/// A `,<key>=<digits>` field of the base (`S`: size, `W`: virtual size).
/// None when absent, not all digits up to the next ',' or the end, or too
/// large for u64 (Dovecot's maildir_filename_get_size, without overflow).
pub fn size_field(name: &str, key: u8) -> Option<u64> {
    let b = base(name).as_bytes();
    let mut i = 0;
    while i + 3 <= b.len() {
        if b[i] == b',' && b[i + 1] == key && b[i + 2] == b'=' {
            let digits = &b[i + 3..];
            let end = digits
                .iter()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(digits.len());
            if end == 0 || (end < digits.len() && digits[end] != b',') {
                return None;
            }
            return std::str::from_utf8(&digits[..end]).ok()?.parse().ok();
        }
        i += 1;
    }
    None
}

/// The characters after `:2,` (None: no such info part). Dovecot reads the
/// info after the last ':'.
pub fn info_flags(name: &str) -> Option<&str> {
    let (_, info) = name.rsplit_once(':')?;
    info.strip_prefix("2,")
}

/// Flags and keyword letters of a name; characters it does not know are
/// ignored here (and kept by `with_flags`).
pub fn flags(name: &str) -> (Flags, KeywordSet) {
    let mut f = Flags::empty();
    let mut k = KeywordSet::default();
    if let Some(info) = info_flags(name) {
        // A second ',' starts another flag set that nobody defines: stop.
        for c in info.bytes().take_while(|c| *c != b',') {
            if let Some(flag) = Flags::from_letter(c) {
                f.insert(flag);
            } else if c.is_ascii_lowercase() {
                k.insert((c - b'a') as usize);
            }
        }
    }
    (f, k)
}

/// `name` with its flags and keywords replaced: `base:2,` then the letters
/// in ASCII order, unknown characters of the old info kept in place (as
/// Dovecot's maildir_filename_flags_full_set does).
pub fn with_flags(name: &str, flags: Flags, keywords: KeywordSet) -> String {
    let (head, old) = match name.rsplit_once(':') {
        Some((h, info)) => (h, info.strip_prefix("2,").unwrap_or("")),
        None => (name, ""),
    };
    let (old, rest) = match old.split_once(',') {
        Some((o, r)) => (o, Some(r)),
        None => (old, None),
    };
    let mut letters: Vec<u8> = old
        .bytes()
        .filter(|c| Flags::from_letter(*c).is_none() && !c.is_ascii_lowercase())
        .collect();
    for (flag, l) in Flags::LETTERS {
        if flags.contains(flag) {
            letters.push(l);
        }
    }
    for i in keywords.iter() {
        letters.push(b'a' + i as u8);
    }
    letters.sort_unstable();
    letters.dedup();
    let mut out = String::with_capacity(head.len() + 3 + letters.len());
    out.push_str(head);
    out.push_str(":2,");
    out.extend(letters.iter().map(|c| *c as char));
    if let Some(r) = rest {
        out.push(',');
        out.push_str(r);
    }
    out
}

/// Dovecot's order of new files (maildir_filename_sort_cmp): by the
/// seconds that start the name, then the microseconds after `.M` in the
/// unique part, then the base names.
pub fn sort_cmp(a: &str, b: &str) -> Ordering {
    let (sa, ra) = leading_number(a);
    let (sb, rb) = leading_number(b);
    sa.cmp(&sb)
        .then_with(|| match (usecs(ra), usecs(rb)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => Ordering::Equal,
        })
        .then_with(|| base(ra).cmp(base(rb)))
}

fn leading_number(s: &str) -> (u128, &str) {
    let end = s
        .bytes()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(s.len());
    // At most 38 digits fit; longer prefixes compare as the maximum.
    let n = s[..end].parse().unwrap_or(u128::MAX);
    (n, &s[end..])
}

/// The microseconds in `.<unique>.`: the digits after an `M`.
fn usecs(rest: &str) -> Option<u64> {
    let unique = rest.strip_prefix('.')?;
    let unique = unique.split(['.', ':']).next().unwrap_or("");
    let at = unique.find('M')?;
    let digits: String = unique[at + 1..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some(digits.parse().unwrap_or(0))
}

/// A new unique base name: `SECONDS.M<usec>P<pid>Q<n>.HOST`, the form
/// Dovecot writes (with a per-process counter so that one process never
/// repeats a name within a microsecond).
pub fn unique_base() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        pid(),
        COUNTER.fetch_add(1, AtomicOrdering::Relaxed),
        host_part()
    )
}

/// This process's id, looked up once.
pub(crate) fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// The host name, as gethostname(2) gives it, once.
pub(crate) fn hostname() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    })
}

/// The host name as file names carry it ('/' and ':' escaped as the
/// Maildir specification says).
fn host_part() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| hostname().replace('/', "\\057").replace(':', "\\072"))
}

/// Counts what a message's size is with CRLF line ends (Dovecot's virtual
/// size, `,W=`): every LF not preceded by CR adds one. Fed in pieces.
#[derive(Debug, Default, Clone)]
pub struct VsizeCounter {
    size: u64,
    bare_lf: u64,
    last_cr: bool,
}

impl VsizeCounter {
    pub fn add(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        for &b in data {
            if b == b'\n' && !self.last_cr {
                self.bare_lf += 1;
            }
            self.last_cr = b == b'\r';
        }
    }

    /// Bytes as stored.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes with CRLF line ends.
    pub fn vsize(&self) -> u64 {
        self.size + self.bare_lf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let n = "1700000000.M1P2.host,S=1234,W=1260:2,S";
        assert_eq!(size_field(n, b'S'), Some(1234));
        assert_eq!(size_field(n, b'W'), Some(1260));
        assert_eq!(size_field("1.M1P2.host,S=12", b'S'), Some(12));
        assert_eq!(size_field("1.M1P2.host,W=7,S=12", b'S'), Some(12));
        for bad in [
            "1.M1P2.host",
            "1.M1P2.host,S=",
            "1.M1P2.host,S=12x",
            "1.M1P2.host,S=99999999999999999999999",
            "1.M1P2.host:2,S=12",
            ",S",
        ] {
            assert_eq!(size_field(bad, b'S'), None, "{bad}");
        }
    }

    #[test]
    fn flag_parsing() {
        let (f, k) = flags("x:2,DFPRSTab");
        assert!(f.contains(Flags::DRAFT | Flags::FLAGGED | Flags::PASSED));
        assert!(f.contains(Flags::REPLIED | Flags::SEEN | Flags::TRASHED));
        assert_eq!(k, KeywordSet(0b11));
        assert_eq!(flags("x"), (Flags::empty(), KeywordSet(0)));
        assert_eq!(flags("x:1,S"), (Flags::empty(), KeywordSet(0)));
        assert_eq!(flags("x:2,"), (Flags::empty(), KeywordSet(0)));
        assert_eq!(flags("x:2,S,R").0, Flags::SEEN);
        assert_eq!(flags("a:b:2,R").0, Flags::REPLIED);
        assert_eq!(flags("x:2,z").1, KeywordSet(1 << 25));
        assert_eq!(base("a:b:2,R"), "a");
    }

    #[test]
    fn building_names() {
        let cases = [
            ("b", Flags::SEEN, 0, "b:2,S"),
            ("b:2,", Flags::SEEN | Flags::REPLIED, 0, "b:2,RS"),
            ("b:2,RS", Flags::empty(), 0, "b:2,"),
            ("b:2,S", Flags::DRAFT, 0b101, "b:2,Dac"),
            ("b:2,Sb", Flags::SEEN, 0, "b:2,S"),
            // Unknown characters stay, in ASCII order with the rest.
            ("b:2,ES", Flags::SEEN | Flags::FLAGGED, 0, "b:2,EFS"),
            ("b:2,S,xyz", Flags::TRASHED, 0, "b:2,T,xyz"),
            ("b:1,foo", Flags::SEEN, 0, "b:2,S"),
        ];
        for (old, f, k, want) in cases {
            assert_eq!(with_flags(old, f, KeywordSet(k)), want, "{old}");
            // Round trip.
            let (f2, k2) = flags(want);
            assert_eq!((f2, k2), (f, KeywordSet(k)), "{want}");
        }
        assert_eq!(Flags::SEEN.to_string(), "S");
        assert_eq!((Flags::FLAGGED | Flags::DRAFT).to_string(), "DF");
    }

    #[test]
    fn dovecot_order() {
        let mut v = vec![
            "1700000001.M5P1.h",
            "1700000000.M900P1.h",
            "1700000000.M1000P1.h",
            "1700000000.M50P2.h,S=1",
            "999999999.M1P1.h",
        ];
        v.sort_by(|a, b| sort_cmp(a, b));
        assert_eq!(
            v,
            [
                "999999999.M1P1.h",
                "1700000000.M50P2.h,S=1",
                "1700000000.M900P1.h",
                "1700000000.M1000P1.h",
                "1700000001.M5P1.h",
            ]
        );
        // Without microseconds: the base names decide.
        assert_eq!(sort_cmp("1.P5.h", "1.P4.h"), Ordering::Greater);
        // Never panics on odd names.
        for a in [
            "",
            ".",
            "M",
            "1.M",
            "1.Mx",
            "9999999999999999999999999999999999999999",
        ] {
            let _ = sort_cmp(a, "1.M1P1.h");
        }
    }

    #[test]
    fn unique_bases_differ() {
        let a = unique_base();
        let b = unique_base();
        assert_ne!(a, b);
        assert!(is_valid(&a) && !a.contains(':') && !a.contains('/'));
        assert!(!is_valid(".hidden") && !is_valid("a\nb") && !is_valid(":2,S"));
    }

    #[test]
    fn vsize_counts_bare_lf_across_pieces() {
        let mut c = VsizeCounter::default();
        c.add(b"a\r");
        c.add(b"\nb\n\n");
        c.add(b"c");
        assert_eq!((c.size(), c.vsize()), (7, 9));
    }
}
