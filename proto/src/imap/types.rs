//! IMAP value types that can only be built valid: tags, strings, mailbox
//! names, flags, sequence sets, dates.
//!
//! Owns the character classes of the IMAP grammar and the types the command
//! parser produces. Does not own the parsing of whole commands (`command`)
//! or what a name means to the store (mailstore validates and decodes
//! mailbox names; here they are bytes plus how they were sent).
//!
//! Standards: RFC 3501 9 / RFC 9051 9 (formal syntax: tag, atom, astring,
//! flag, sequence-set, date, date-time), RFC 5182 (`$`, SEARCHRES).
//!
//! Security: constructors check every byte against the grammar, numbers are
//! checked for overflow and zero, dates for their ranges; a sequence set
//! never expands into memory (`contains` and `ranges` work on the ranges).
//!
//! Diagnostics: nothing is logged; constructors return `Option`.

use std::fmt;

/// RFC 3501 9: CTL is %x00-1F / %x7F.
pub(crate) fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// RFC 3501 9: ATOM-CHAR is any CHAR (%x01-7F) except atom-specials:
/// "(" ")" "{" SP CTL list-wildcards quoted-specials resp-specials.
pub(crate) fn is_atom_char(b: u8) -> bool {
    b.is_ascii()
        && !is_ctl(b)
        && !matches!(
            b,
            b'(' | b')' | b'{' | b' ' | b'%' | b'*' | b'"' | b'\\' | b']'
        )
}

/// RFC 3501 9: ASTRING-CHAR = ATOM-CHAR / resp-specials ("]").
pub(crate) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// RFC 3501 9: list-char = ATOM-CHAR / list-wildcards / resp-specials.
pub(crate) fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

/// RFC 3501 9: `tag = 1*<any ASTRING-CHAR except "+">`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tag(String);

impl Tag {
    /// A tag when `bytes` is one.
    pub fn new(bytes: &[u8]) -> Option<Tag> {
        if bytes.is_empty() || !bytes.iter().all(|&b| is_astring_char(b) && b != b'+') {
            return None;
        }
        // Every byte is ASCII (is_astring_char), so this is UTF-8.
        std::str::from_utf8(bytes).ok().map(|s| Tag(s.to_string()))
    }

    /// The tag as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a string argument was sent (RFC 3501 4.1-4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringForm {
    /// An atom (astring's 1*ASTRING-CHAR).
    Atom,
    /// A quoted string, escapes removed.
    Quoted,
    /// A literal `{n}`, `{n+}` or literal8 `~{n}`.
    Literal,
}

/// An `astring`, `string` or `nstring` argument: its bytes, nothing decoded.
/// Quoted strings have their `\` escapes removed; literals may hold any
/// byte but NUL (RFC 3501 4.3; literal8 may hold NUL, RFC 3516).
#[derive(Clone, PartialEq, Eq)]
pub struct AString {
    pub bytes: Vec<u8>,
    pub form: StringForm,
}

impl AString {
    /// The bytes as UTF-8, when they are.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }
}

impl fmt::Debug for AString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.bytes))
    }
}

/// A mailbox name as sent (RFC 3501 9: `mailbox = "INBOX" / astring`):
/// "INBOX" in any case is stored as "INBOX" (RFC 3501 5.1); everything else
/// is left to the store (modified UTF-7 or UTF-8 under UTF8=ACCEPT,
/// hierarchy separators, validity).
#[derive(Clone, PartialEq, Eq)]
pub struct Mailbox(pub AString);

impl Mailbox {
    /// Normalise INBOX (RFC 3501 5.1: case-insensitive).
    pub fn new(mut s: AString) -> Mailbox {
        if s.bytes.eq_ignore_ascii_case(b"INBOX") {
            s.bytes = b"INBOX".to_vec();
        }
        Mailbox(s)
    }

    /// The name's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0.bytes
    }

    /// The name as UTF-8, when it is.
    pub fn as_str(&self) -> Option<&str> {
        self.0.as_str()
    }

    /// Whether this is INBOX.
    pub fn is_inbox(&self) -> bool {
        self.0.bytes == b"INBOX"
    }
}

impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mailbox({:?})", self.0)
    }
}

/// A message flag (RFC 3501 2.3.2, 9 `flag`, `flag-perm`, `flag-fetch`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    /// `\Recent`: only in responses (RFC 3501; gone in RFC 9051).
    Recent,
    /// `\*`: only in PERMANENTFLAGS (RFC 3501 7.1).
    Wildcard,
    /// A keyword (an atom), as sent; compared case-insensitively by the store.
    Keyword(String),
}

impl Flag {
    /// A flag a client may send (STORE, APPEND, SEARCH KEYWORD): the five
    /// system flags or a keyword. `\Recent`, `\*` and other `\` names are
    /// refused (RFC 3501 6.4.6: \Recent cannot be altered by the client;
    /// Dovecot refuses unknown system flags too).
    pub fn from_client(bytes: &[u8]) -> Option<Flag> {
        if let Some(name) = bytes.strip_prefix(b"\\") {
            let f = match name.to_ascii_lowercase().as_slice() {
                b"seen" => Flag::Seen,
                b"answered" => Flag::Answered,
                b"flagged" => Flag::Flagged,
                b"deleted" => Flag::Deleted,
                b"draft" => Flag::Draft,
                _ => return None,
            };
            return Some(f);
        }
        Flag::keyword(bytes)
    }

    /// A keyword: `flag-keyword = atom` (RFC 3501 9).
    pub fn keyword(bytes: &[u8]) -> Option<Flag> {
        if bytes.is_empty() || !bytes.iter().all(|&b| is_atom_char(b)) {
            return None;
        }
        std::str::from_utf8(bytes)
            .ok()
            .map(|s| Flag::Keyword(s.to_string()))
    }

    /// The wire form.
    pub fn as_str(&self) -> &str {
        match self {
            Flag::Seen => "\\Seen",
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
            Flag::Recent => "\\Recent",
            Flag::Wildcard => "\\*",
            Flag::Keyword(k) => k,
        }
    }
}

/// One end of a sequence range: a number or `*` (the largest in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNum {
    Value(u32),
    Last,
}

impl SeqNum {
    fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqNum::Value(v) => v,
            SeqNum::Last => largest,
        }
    }
}

/// RFC 3501 9 `sequence-set`, or RFC 5182's `$` (the saved search result).
/// Numbers are non-zero; a range may be given in either order (RFC 3501 9:
/// "2:4" and "4:2" are equivalent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceSet {
    /// `$`: the result saved by SEARCH RETURN (SAVE) (RFC 5182 2.1).
    Saved,
    /// Ranges as sent (a single number is a range of one).
    Ranges(Vec<(SeqNum, SeqNum)>),
}

impl SequenceSet {
    /// Parse `sequence-set` (or `$`), at most `max_ranges` ranges.
    pub fn parse(s: &[u8], max_ranges: usize) -> Option<SequenceSet> {
        if s == b"$" {
            return Some(SequenceSet::Saved);
        }
        let mut ranges = Vec::new();
        for part in s.split(|&b| b == b',') {
            if ranges.len() >= max_ranges {
                return None;
            }
            let mut ends = part.splitn(2, |&b| b == b':');
            let a = parse_seq_num(ends.next()?)?;
            let b = match ends.next() {
                Some(e) => parse_seq_num(e)?,
                None => a,
            };
            ranges.push((a, b));
        }
        Some(SequenceSet::Ranges(ranges))
    }

    /// The ranges as (low, high) with `*` as `largest`; `Saved` gives none
    /// (the session substitutes its saved result).
    pub fn ranges(&self, largest: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        let r: &[(SeqNum, SeqNum)] = match self {
            SequenceSet::Saved => &[],
            SequenceSet::Ranges(r) => r,
        };
        r.iter().map(move |&(a, b)| {
            let (a, b) = (a.resolve(largest), b.resolve(largest));
            (a.min(b), a.max(b))
        })
    }

    /// Whether `n` is in the set, `*` standing for `largest`.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        self.ranges(largest).any(|(a, b)| a <= n && n <= b)
    }

    /// Whether the set uses `*`.
    pub fn uses_last(&self) -> bool {
        match self {
            SequenceSet::Saved => false,
            SequenceSet::Ranges(r) => r
                .iter()
                .any(|(a, b)| *a == SeqNum::Last || *b == SeqNum::Last),
        }
    }
}

/// RFC 3501 9: `seq-number = nz-number / "*"`; nz-number fits 32 bits.
fn parse_seq_num(s: &[u8]) -> Option<SeqNum> {
    if s == b"*" {
        return Some(SeqNum::Last);
    }
    match parse_number(s)? {
        0 => None,
        n => Some(SeqNum::Value(n)),
    }
}

/// RFC 3501 9 `number`: 1*DIGIT, at most 32 bits (`number64` callers use
/// `parse_number64`).
pub(crate) fn parse_number(s: &[u8]) -> Option<u32> {
    parse_number64(s).and_then(|n| u32::try_from(n).ok())
}

/// RFC 9051 9 `number64`: 1*DIGIT up to 2^63-1 (MODSEQ values, RFC 7162 7).
pub(crate) fn parse_number64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = s
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    (n <= i64::MAX as u64).then_some(n)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn parse_month(s: &[u8]) -> Option<u8> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(s))
        .and_then(|i| u8::try_from(i + 1).ok())
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A search date (RFC 3501 9 `date-text`: d-Mon-yyyy, no time or zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// Parse `date-text` (the quotes of `DQUOTE date-text DQUOTE` already
    /// removed): 1 or 2 digit day, month name in any case, 4 digit year.
    pub fn parse(s: &[u8]) -> Option<Date> {
        let mut parts = s.split(|&b| b == b'-');
        let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || d.is_empty() || d.len() > 2 || y.len() != 4 {
            return None;
        }
        Date::new(
            u16::try_from(parse_number(y)?).ok()?,
            parse_month(m)?,
            u8::try_from(parse_number(d)?).ok()?,
        )
    }

    /// A date when the day exists.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        ((1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month))
            .then_some(Date { year, month, day })
    }

    /// Days since 1970-01-01 (negative before).
    pub fn days_since_epoch(self) -> i64 {
        days_from_civil(i64::from(self.year), self.month, self.day)
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: u8, d: u8) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of `days_from_civil`: (year, month, day).
pub(crate) fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // d is 1..=31 and m 1..=12 by construction.
    (y, m as u8, d as u8)
}

/// The month's three-letter name (1 = "Jan").
pub(crate) fn month_name(m: u8) -> &'static str {
    match m {
        1 => "Jan",
        2 => "Feb",
        3 => "Mar",
        4 => "Apr",
        5 => "May",
        6 => "Jun",
        7 => "Jul",
        8 => "Aug",
        9 => "Sep",
        10 => "Oct",
        11 => "Nov",
        _ => "Dec",
    }
}

/// An APPEND date-time (RFC 3501 9 `date-time`, without the quotes):
/// "dd-Mon-yyyy hh:mm:ss +zzzz", the day space-padded or two digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// The zone as minutes east of UTC (-0130 is -90).
    pub zone_minutes: i16,
}

impl DateTime {
    /// Parse the text between the quotes.
    pub fn parse(s: &[u8]) -> Option<DateTime> {
        // RFC 3501 9: date-day-fixed = (SP DIGIT) / 2DIGIT; RFC 9051
        // keeps it; a single digit without the space is accepted too, as
        // Dovecot does.
        let s = s.strip_prefix(b" ").unwrap_or(s);
        let mut f = s.split(|&b| b == b' ');
        let (date, time, zone) = (f.next()?, f.next()?, f.next()?);
        if f.next().is_some() {
            return None;
        }
        let date = Date::parse(date)?;
        let t: Vec<&[u8]> = time.split(|&b| b == b':').collect();
        if t.len() != 3 || t.iter().any(|p| p.len() != 2) {
            return None;
        }
        let num = |p: &[u8]| parse_number(p).and_then(|n| u8::try_from(n).ok());
        let (hour, minute, second) = (num(t[0])?, num(t[1])?, num(t[2])?);
        // RFC 5322 3.3 allows a leap second; minutes and hours in range.
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let (sign, digits) = zone.split_first()?;
        if digits.len() != 4 {
            return None;
        }
        let hh = i16::try_from(parse_number(&digits[..2])?).ok()?;
        let mm = i16::try_from(parse_number(&digits[2..])?).ok()?;
        if mm > 59 {
            return None;
        }
        let zone_minutes = match sign {
            b'+' => hh * 60 + mm,
            b'-' => -(hh * 60 + mm),
            _ => return None,
        };
        Some(DateTime {
            date,
            hour,
            minute,
            second,
            zone_minutes,
        })
    }

    /// Seconds since 1970-01-01T00:00:00Z of this moment.
    pub fn unix_seconds(&self) -> i64 {
        self.date.days_since_epoch() * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.zone_minutes) * 60
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert!(Tag::new(b"a001").is_some());
        assert!(Tag::new(b"A.b]c").is_some());
        for bad in [
            &b""[..],
            b"a+1",
            b"a b",
            b"a*",
            b"a{",
            b"\xc3\xa9",
            b"a\"",
            b"a%",
        ] {
            assert!(Tag::new(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn sequence_sets() {
        let s = SequenceSet::parse(b"1:3,5,7:*,9:8", 10).expect("valid");
        assert!(s.contains(2, 20) && s.contains(5, 20) && s.contains(20, 20));
        assert!(!s.contains(4, 20) && !s.contains(6, 20));
        assert!(s.contains(8, 5)); // 9:8 is 8:9
        assert!(s.uses_last());
        assert_eq!(SequenceSet::parse(b"$", 1), Some(SequenceSet::Saved));
        for bad in [
            &b""[..],
            b"0",
            b"1:0",
            b",",
            b"1,",
            b"1::2",
            b"a",
            b"4294967296",
            b"$,1",
        ] {
            assert!(SequenceSet::parse(bad, 10).is_none(), "{bad:?}");
        }
        assert!(SequenceSet::parse(b"1,2,3", 2).is_none());
        assert!(SequenceSet::parse(b"4294967295", 1).is_some());
    }

    #[test]
    fn dates() {
        assert_eq!(Date::parse(b"1-Feb-1994"), Date::new(1994, 2, 1));
        assert_eq!(Date::parse(b"29-feb-2000"), Date::new(2000, 2, 29));
        for bad in [
            &b"29-Feb-1900"[..],
            b"0-Jan-2000",
            b"1-Foo-2000",
            b"1-Jan-20",
            b"123-Jan-2000",
        ] {
            assert!(Date::parse(bad).is_none(), "{bad:?}");
        }
        let d = DateTime::parse(b"17-Jul-1996 02:44:25 -0700").expect("RFC 3501 example");
        assert_eq!(d.zone_minutes, -420);
        assert_eq!(d.unix_seconds(), 837_596_665);
        let d = DateTime::parse(b" 1-Jan-1970 00:00:00 +0100").expect("space-padded day");
        assert_eq!(d.unix_seconds(), -3600);
        for bad in [
            &b"17-Jul-1996 02:44:25"[..],
            b"17-Jul-1996 24:00:00 +0000",
            b"17-Jul-1996 02:44:25 0700",
            b"17-Jul-1996 2:44:25 +0000",
            b"17-Jul-1996  02:44:25 +0000",
        ] {
            assert!(DateTime::parse(bad).is_none(), "{bad:?}");
        }
        for z in [-800_000i64, -1, 0, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn flags() {
        assert_eq!(Flag::from_client(b"\\SEEN"), Some(Flag::Seen));
        assert_eq!(
            Flag::from_client(b"$Junk"),
            Some(Flag::Keyword("$Junk".into()))
        );
        assert_eq!(Flag::from_client(b"\\Recent"), None);
        assert_eq!(Flag::from_client(b"\\*"), None);
        assert_eq!(Flag::from_client(b"a]"), None);
    }
}
