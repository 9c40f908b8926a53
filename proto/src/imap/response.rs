//! IMAP responses: status responses with response codes, and writers for
//! the values responses are built of (strings, sequence sets, flag lists,
//! mailbox names, dates).
//!
//! Owns the wire shape of what the server sends: `* OK`, `tag NO [CODE]
//! text`, `* BYE`, `* PREAUTH`, the continuation request, and the encoding
//! choices inside data responses (atom, quoted or literal; the compact form
//! of a UID set; the INTERNALDATE format). Does not own which response a
//! situation deserves (imapd), the data responses themselves (FETCH,
//! LIST, ... are built by imapd with these writers), or mailbox name
//! encoding (the store's encode_utf7 gives the name written here).
//!
//! Standards: RFC 3501 7.1 / RFC 9051 7.1 (status responses and their
//! codes), 7.5 (continuation), 9 (`resp-text-code`, `astring`, `string`,
//! `nstring`, `sequence-set`, `date-time`); RFC 4315 3 (APPENDUID,
//! COPYUID, UIDNOTSTICKY); RFC 7162 3.1.2-3.1.3, 3.2.11 (HIGHESTMODSEQ,
//! NOMODSEQ, MODIFIED, CLOSED); RFC 5530 3 (AUTHENTICATIONFAILED ...
//! NONEXISTENT); RFC 4469 / RFC 7889 (TOOBIG); RFC 4978 (COMPRESSIONACTIVE);
//! RFC 6855 3 (UTF-8 in quoted strings under UTF8=ACCEPT).
//!
//! Security: text may echo client input. Every control character in
//! response text becomes `?`, so a text can never end the line or start
//! another; a text beginning with "[" is kept from being read as a code.
//! Strings that cannot be quoted (CR, LF, NUL, 8-bit, long) are written as
//! literals, so data can never break out of its string.
//!
//! Diagnostics: `Display` renders a status response as sent, for logs.

use std::fmt;

use super::command::is_atom;
use super::types::{civil_from_days, is_astring_char, month_name, Flag, Tag};

/// The longest string written quoted; longer ones are literals (Dovecot
/// uses literals for long strings too, which clients parse faster).
const MAX_QUOTED: usize = 1024;

/// RFC 3501 7.1: the kind of status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Ok,
    No,
    Bad,
    /// Untagged only (RFC 3501 7.1.4).
    Preauth,
    /// Untagged only (RFC 3501 7.1.5).
    Bye,
}

impl StatusKind {
    fn as_str(self) -> &'static str {
        match self {
            StatusKind::Ok => "OK",
            StatusKind::No => "NO",
            StatusKind::Bad => "BAD",
            StatusKind::Preauth => "PREAUTH",
            StatusKind::Bye => "BYE",
        }
    }
}

/// RFC 3501 7.1 / RFC 9051 7.1 response codes, with extensions'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseCode {
    Alert,
    /// Supported charsets (may be empty).
    BadCharset(Vec<String>),
    Capability(Vec<String>),
    Parse,
    PermanentFlags(Vec<Flag>),
    ReadOnly,
    ReadWrite,
    TryCreate,
    UidNext(u32),
    UidValidity(u32),
    Unseen(u32),
    /// RFC 4315 3: the UIDs, in the order appended.
    AppendUid {
        uid_validity: u32,
        uids: Vec<u32>,
    },
    /// RFC 4315 3: source and destination UIDs in corresponding order.
    CopyUid {
        uid_validity: u32,
        source: Vec<u32>,
        dest: Vec<u32>,
    },
    UidNotSticky,
    /// RFC 7162 3.1.2.1.
    HighestModSeq(u64),
    NoModSeq,
    /// RFC 7162 3.1.3: the messages not stored (UIDs or numbers).
    Modified(Vec<u32>),
    /// RFC 7162 3.2.11.
    Closed,
    AuthenticationFailed,
    AuthorizationFailed,
    Unavailable,
    Expired,
    PrivacyRequired,
    ContactAdmin,
    NoPerm,
    InUse,
    ExpungeIssued,
    Corruption,
    ServerBug,
    ClientBug,
    Cannot,
    Limit,
    OverQuota,
    AlreadyExists,
    NonExistent,
    TooBig,
    CompressionActive,
}

impl ResponseCode {
    /// The code's name.
    pub fn name(&self) -> &'static str {
        use ResponseCode as C;
        match self {
            C::Alert => "ALERT",
            C::BadCharset(_) => "BADCHARSET",
            C::Capability(_) => "CAPABILITY",
            C::Parse => "PARSE",
            C::PermanentFlags(_) => "PERMANENTFLAGS",
            C::ReadOnly => "READ-ONLY",
            C::ReadWrite => "READ-WRITE",
            C::TryCreate => "TRYCREATE",
            C::UidNext(_) => "UIDNEXT",
            C::UidValidity(_) => "UIDVALIDITY",
            C::Unseen(_) => "UNSEEN",
            C::AppendUid { .. } => "APPENDUID",
            C::CopyUid { .. } => "COPYUID",
            C::UidNotSticky => "UIDNOTSTICKY",
            C::HighestModSeq(_) => "HIGHESTMODSEQ",
            C::NoModSeq => "NOMODSEQ",
            C::Modified(_) => "MODIFIED",
            C::Closed => "CLOSED",
            C::AuthenticationFailed => "AUTHENTICATIONFAILED",
            C::AuthorizationFailed => "AUTHORIZATIONFAILED",
            C::Unavailable => "UNAVAILABLE",
            C::Expired => "EXPIRED",
            C::PrivacyRequired => "PRIVACYREQUIRED",
            C::ContactAdmin => "CONTACTADMIN",
            C::NoPerm => "NOPERM",
            C::InUse => "INUSE",
            C::ExpungeIssued => "EXPUNGEISSUED",
            C::Corruption => "CORRUPTION",
            C::ServerBug => "SERVERBUG",
            C::ClientBug => "CLIENTBUG",
            C::Cannot => "CANNOT",
            C::Limit => "LIMIT",
            C::OverQuota => "OVERQUOTA",
            C::AlreadyExists => "ALREADYEXISTS",
            C::NonExistent => "NONEXISTENT",
            C::TooBig => "TOOBIG",
            C::CompressionActive => "COMPRESSIONACTIVE",
        }
    }

    /// `CODE [SP arguments]`, without the brackets (RFC 3501 9
    /// `resp-text-code`).
    pub fn write(&self, out: &mut Vec<u8>) {
        use ResponseCode as C;
        out.extend_from_slice(self.name().as_bytes());
        match self {
            C::BadCharset(cs) if !cs.is_empty() => {
                out.extend_from_slice(b" (");
                for (i, c) in cs.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    write_astring(out, c.as_bytes());
                }
                out.push(b')');
            }
            C::Capability(caps) => {
                for c in caps {
                    out.push(b' ');
                    out.extend_from_slice(c.as_bytes());
                }
            }
            C::PermanentFlags(flags) => {
                out.push(b' ');
                write_flags(out, flags);
            }
            C::UidNext(n) | C::UidValidity(n) | C::Unseen(n) => {
                out.extend_from_slice(format!(" {n}").as_bytes());
            }
            C::HighestModSeq(n) => out.extend_from_slice(format!(" {n}").as_bytes()),
            C::AppendUid { uid_validity, uids } => {
                out.extend_from_slice(format!(" {uid_validity} ").as_bytes());
                write_seq_set(out, uids);
            }
            C::CopyUid {
                uid_validity,
                source,
                dest,
            } => {
                out.extend_from_slice(format!(" {uid_validity} ").as_bytes());
                write_seq_set(out, source);
                out.push(b' ');
                write_seq_set(out, dest);
            }
            C::Modified(set) => {
                out.push(b' ');
                write_seq_set(out, set);
            }
            _ => {}
        }
    }
}

/// A status response (RFC 3501 7.1): tagged OK/NO/BAD, or untagged
/// (`*`) OK/NO/BAD/PREAUTH/BYE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub kind: StatusKind,
    /// None for an untagged response.
    pub tag: Option<Tag>,
    pub code: Option<ResponseCode>,
    pub text: String,
}

impl Status {
    fn new(kind: StatusKind, tag: Option<&Tag>, text: impl Into<String>) -> Status {
        Status {
            kind,
            tag: tag.cloned(),
            code: None,
            text: text.into(),
        }
    }

    /// `tag OK text` (or `* OK` without a tag).
    pub fn ok(tag: Option<&Tag>, text: impl Into<String>) -> Status {
        Status::new(StatusKind::Ok, tag, text)
    }

    pub fn no(tag: Option<&Tag>, text: impl Into<String>) -> Status {
        Status::new(StatusKind::No, tag, text)
    }

    pub fn bad(tag: Option<&Tag>, text: impl Into<String>) -> Status {
        Status::new(StatusKind::Bad, tag, text)
    }

    /// `* BYE text`.
    pub fn bye(text: impl Into<String>) -> Status {
        Status::new(StatusKind::Bye, None, text)
    }

    /// `* PREAUTH text`.
    pub fn preauth(text: impl Into<String>) -> Status {
        Status::new(StatusKind::Preauth, None, text)
    }

    /// The same with a response code.
    pub fn with_code(mut self, code: ResponseCode) -> Status {
        self.code = Some(code);
        self
    }

    /// Append the response line, CRLF included.
    pub fn write(&self, out: &mut Vec<u8>) {
        // BYE and PREAUTH are untagged whatever the caller set.
        let tag = match self.kind {
            StatusKind::Bye | StatusKind::Preauth => None,
            _ => self.tag.as_ref(),
        };
        match tag {
            Some(t) => out.extend_from_slice(t.as_str().as_bytes()),
            None => out.push(b'*'),
        }
        out.push(b' ');
        out.extend_from_slice(self.kind.as_str().as_bytes());
        if let Some(code) = &self.code {
            out.extend_from_slice(b" [");
            code.write(out);
            out.push(b']');
        }
        // RFC 3501 9: resp-text = ["[" resp-text-code "]" SP] text; text
        // is 1*TEXT-CHAR, so an empty text becomes a word.
        out.push(b' ');
        let text = if self.text.is_empty() {
            self.kind.as_str()
        } else {
            &self.text
        };
        write_text(out, text, self.code.is_none());
        out.extend_from_slice(b"\r\n");
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.write(&mut out);
        out.truncate(out.len() - 2);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// Response text: controls become `?`; a leading "[" without a code would
/// read as one, so it becomes "?" too.
fn write_text(out: &mut Vec<u8>, text: &str, no_code: bool) {
    for (i, b) in text.bytes().enumerate() {
        let bad = b < 0x20 || b == 0x7f || (i == 0 && no_code && b == b'[');
        out.push(if bad { b'?' } else { b });
    }
}

/// RFC 3501 7.5: `+ text` CRLF.
pub fn write_continuation(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+ ");
    write_text(out, if text.is_empty() { "OK" } else { text }, true);
    out.extend_from_slice(b"\r\n");
}

/// RFC 3501 9 `string`: quoted when every byte is a 7-bit TEXT-CHAR and it
/// is short, else a literal (8-bit, CR, LF, NUL, or long).
pub fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    write_string_with(out, s, false);
}

/// `string`, allowing UTF-8 in a quoted string (RFC 6855 3, when the
/// client has enabled UTF8=ACCEPT; RFC 9051 4.3).
pub fn write_string_with(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let quotable = s.len() <= MAX_QUOTED
        && s.iter()
            .all(|&b| b != 0 && b != b'\r' && b != b'\n' && (utf8 || b < 0x80))
        && (!utf8 || std::str::from_utf8(s).is_ok());
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

/// RFC 3501 9 `astring`: an atom when possible (not "NIL", which a client
/// reading an nstring would take for nil), else a string.
pub fn write_astring(out: &mut Vec<u8>, s: &[u8]) {
    if !s.is_empty() && s.iter().all(|&b| is_astring_char(b)) && !s.eq_ignore_ascii_case(b"NIL") {
        out.extend_from_slice(s);
    } else {
        write_string(out, s);
    }
}

/// RFC 3501 9 `nstring`: NIL or a string.
pub fn write_nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => write_string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// A mailbox name, already encoded by the store (modified UTF-7, or UTF-8
/// when UTF8=ACCEPT is enabled: RFC 6855 3): always quoted, as Dovecot
/// does, a literal when it cannot be.
pub fn write_mailbox(out: &mut Vec<u8>, name: &str, utf8: bool) {
    write_string_with(out, name.as_bytes(), utf8);
}

/// RFC 3501 9 `sequence-set` in compact form: runs of consecutive numbers
/// as ranges, in the order given (COPYUID's sets correspond by position:
/// RFC 4315 3). An empty list writes nothing (callers send no set then).
pub fn write_seq_set(out: &mut Vec<u8>, nums: &[u32]) {
    let mut i = 0;
    while i < nums.len() {
        let start = nums[i];
        let mut j = i;
        while j + 1 < nums.len() && nums[j].checked_add(1) == Some(nums[j + 1]) {
            j += 1;
        }
        if i > 0 {
            out.push(b',');
        }
        if j == i {
            out.extend_from_slice(start.to_string().as_bytes());
        } else {
            out.extend_from_slice(format!("{start}:{}", nums[j]).as_bytes());
        }
        i = j + 1;
    }
}

/// RFC 3501 9 `flag-list`: `(\Seen $Junk)`.
pub fn write_flags(out: &mut Vec<u8>, flags: &[Flag]) {
    out.push(b'(');
    // Keywords come from the store; one that is not an atom would break
    // the list, so it is left out.
    let valid = flags
        .iter()
        .filter(|f| !matches!(f, Flag::Keyword(k) if !is_atom(k.as_bytes())));
    for (i, f) in valid.enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f.as_str().as_bytes());
    }
    out.push(b')');
}

/// RFC 3501 9 `date-time` without the quotes, for INTERNALDATE: the moment
/// `secs` (since the epoch, UTC) in the zone `offset_minutes` east of UTC:
/// "dd-Mon-yyyy hh:mm:ss +zzzz", the day space-padded (`date-day-fixed`).
pub fn format_date_time(secs: i64, offset_minutes: i32) -> String {
    let local = secs.saturating_add(i64::from(offset_minutes) * 60);
    let days = local.div_euclid(86_400);
    let t = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let off = offset_minutes.unsigned_abs();
    format!(
        "{d:>2}-{}-{y:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        month_name(m),
        t / 3600,
        t / 60 % 60,
        t % 60,
        off / 60 % 100,
        off % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::types::DateTime;

    fn w(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn status_lines() {
        let tag = Tag::new(b"a1").expect("tag");
        assert_eq!(
            w(|o| Status::ok(Some(&tag), "LOGIN completed").write(o)),
            "a1 OK LOGIN completed\r\n"
        );
        assert_eq!(
            w(|o| Status::no(Some(&tag), "no\r\n* OK evil")
                .with_code(ResponseCode::TryCreate)
                .write(o)),
            "a1 NO [TRYCREATE] no??* OK evil\r\n"
        );
        assert_eq!(w(|o| Status::bad(None, "[x]").write(o)), "* BAD ?x]\r\n");
        assert_eq!(w(|o| Status::bye("").write(o)), "* BYE BYE\r\n");
        let copy = ResponseCode::CopyUid {
            uid_validity: 38505,
            source: vec![304, 319, 320],
            dest: vec![3956, 3957, 3958],
        };
        assert_eq!(
            w(|o| Status::ok(Some(&tag), "Done").with_code(copy).write(o)),
            "a1 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"
        );
        let flags = ResponseCode::PermanentFlags(vec![Flag::Deleted, Flag::Seen, Flag::Wildcard]);
        assert_eq!(
            w(|o| Status::ok(None, "Limited").with_code(flags).write(o)),
            "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n"
        );
        assert_eq!(
            Status::bye("x").with_code(ResponseCode::TooBig).to_string(),
            "* BYE [TOOBIG] x"
        );
        assert_eq!(
            w(|o| ResponseCode::BadCharset(vec!["UTF-8".into()]).write(o)),
            "BADCHARSET (UTF-8)"
        );
    }

    #[test]
    fn strings() {
        assert_eq!(w(|o| write_astring(o, b"INBOX")), "INBOX");
        assert_eq!(w(|o| write_astring(o, b"nil")), "\"nil\"");
        assert_eq!(w(|o| write_astring(o, b"")), "\"\"");
        assert_eq!(w(|o| write_astring(o, b"a b\"c\\")), "\"a b\\\"c\\\\\"");
        assert_eq!(w(|o| write_string(o, b"a\r\nb")), "{4}\r\na\r\nb");
        assert_eq!(w(|o| write_string(o, "é".as_bytes())), "{2}\r\né");
        assert_eq!(w(|o| write_mailbox(o, "Entwürfe", true)), "\"Entwürfe\"");
        assert_eq!(
            w(|o| write_mailbox(o, "Entw&APw-rfe", false)),
            "\"Entw&APw-rfe\""
        );
        assert_eq!(w(|o| write_nstring(o, None)), "NIL");
        let flags = [
            Flag::Keyword("a b".into()),
            Flag::Seen,
            Flag::Keyword("$x".into()),
        ];
        assert_eq!(w(|o| write_flags(o, &flags)), "(\\Seen $x)");
        let long = vec![b'a'; MAX_QUOTED + 1];
        assert!(w(|o| write_string(o, &long)).starts_with("{1025}\r\n"));
    }

    /// What the writers produce parses back to the same bytes.
    #[test]
    fn strings_round_trip() {
        use crate::imap::{parse_command, CommandBody, Limits};
        let long = vec![b'q'; 2000];
        let cases: [&[u8]; 10] = [
            b"plain",
            b"",
            b"NIL",
            b"with space",
            b"quote\"back\\slash",
            b"cr\rlf\n",
            "ünïcode".as_bytes(),
            b"\xff\xfe",
            b"a]b(c)",
            &long,
        ];
        for c in cases {
            let mut line = b"t LOGIN ".to_vec();
            write_astring(&mut line, c);
            line.push(b' ');
            write_string(&mut line, c);
            let cmd = parse_command(&line, &Limits::default()).expect("parses back");
            let CommandBody::Login { user, password } = cmd.body else {
                panic!("login")
            };
            assert_eq!((user.bytes.as_slice(), password.bytes.as_slice()), (c, c));
        }
    }

    #[test]
    fn sequence_sets_round_trip() {
        use crate::imap::types::SequenceSet;
        for nums in [
            vec![1u32],
            vec![1, 2, 3, 5, 7, 8],
            vec![4294967294, 4294967295],
            vec![10, 9, 8],
        ] {
            let s = w(|o| write_seq_set(o, &nums));
            let set = SequenceSet::parse(s.as_bytes(), 100).expect("parses");
            let back: Vec<u32> = set.ranges(0).flat_map(|(a, b)| a..=b).collect::<Vec<_>>();
            let mut sorted = nums.clone();
            sorted.sort_unstable();
            let mut back_sorted = back.clone();
            back_sorted.sort_unstable();
            assert_eq!(back_sorted, sorted, "{s}");
        }
        assert_eq!(w(|o| write_seq_set(o, &[3, 4, 5, 1])), "3:5,1");
        assert_eq!(w(|o| write_seq_set(o, &[])), "");
    }

    #[test]
    fn internal_date() {
        assert_eq!(
            format_date_time(837_596_665, -420),
            "17-Jul-1996 02:44:25 -0700"
        );
        assert_eq!(format_date_time(0, 60), " 1-Jan-1970 01:00:00 +0100");
        assert_eq!(format_date_time(-1, 0), "31-Dec-1969 23:59:59 +0000");
        for (secs, off) in [(1_700_000_000i64, 330), (951_782_400, -90), (0, 0)] {
            let s = format_date_time(secs, off);
            let d = DateTime::parse(s.as_bytes()).expect("parses back");
            assert_eq!((d.unix_seconds(), i32::from(d.zone_minutes)), (secs, off));
        }
    }
}
