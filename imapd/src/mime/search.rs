//! What SEARCH, SORT and THREAD need from a message's text: decoded
//! header and body text for substring matches, the sent date, and the sort
//! and thread keys.
//!
//! Owns the decoding for comparison (RFC 2047 encoded words, base64 and
//! quoted-printable bodies, charsets to UTF-8) and the RFC 5256 key
//! extraction. It does not own the search program, the INTERNALDATE
//! fallback SORT needs when Date: is missing (the caller has the
//! INTERNALDATE), or collation beyond the case folding below.
//!
//! What is searched is what Dovecot 2.3 searches, checked against it by
//! the golden `searches` (tests/golden/README.md): BODY looks at text/*
//! and message/* leaf parts only (not preamble, epilogue, boundaries, attachments of other
//! types, nor the headers of attached messages); TEXT adds every header
//! field of every part; From, To, Cc, Bcc, Sender and Reply-To are
//! compared as parsed addresses written back ("Name <box@host>"); a
//! missing or broken Date: is 1-Jan-1970 for SENT*.
//!
//! Standards: RFC 3501 6.4.4 (SEARCH: case-insensitive substring of the
//! header field, of the body, of header and body; SENTBEFORE, SENTON,
//! SENTSINCE from Date:), RFC 9051 6.4.4 (the same; strings compared after
//! decoding); RFC 2047 (encoded words; white space between adjacent ones
//! dropped); RFC 2045 6.7 and 6.8, RFC 2046 4.1.2 (charset); RFC 5256 2.1
//! (base subject), 3 (SORT: first From/To/Cc address's mailbox, Date), 4
//! (THREAD: Message-ID, References, else the first In-Reply-To id);
//! RFC 5957 (DISPLAYFROM, DISPLAYTO); RFC 5322 3.3 (date-time) and 3.6.4
//! (msg-id).
//!
//! Case-insensitive here means both sides upper-cased character by
//! character and decomposed (NFKD, for Latin, Greek and Cyrillic), as
//! Dovecot's i;unicode-casemap; sort keys are folded the same way so byte
//! order matches Dovecot's. Charsets are those mail-parser knows without its
//! full_encoding feature: UTF-8, UTF-7, UTF-16 and the single-byte sets;
//! multi-byte Asian sets are read as UTF-8 with replacement characters.
//!
//! Security: every helper is linear in the message size (each part decoded
//! once, `str::contains` is linear) and iterates over the part list, not
//! recursion; at most `MAX_IDS` message ids per header are kept.
//!
//! Diagnostics: none.

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::DateTime;

use super::address::{self, Address};
use super::binary::{base64, quoted_printable};
use super::decompose::decompose;
use super::parser::{Field, MULTIPART, RFC822, TEXT};
use super::ParsedMessage;

/// Message ids kept from one References field.
const MAX_IDS: usize = 1000;

/// The keys RFC 5256 SORT (and RFC 5957 DISPLAY*) orders by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortKeys {
    /// RFC 5256 2.1 base subject, case-folded.
    pub subject: String,
    /// Mailbox (local part) of the first From address (a group's name
    /// when From starts with a group), case-folded.
    pub from: String,
    /// Mailbox of the first To address, case-folded.
    pub to: String,
    /// Mailbox of the first Cc address, case-folded.
    pub cc: String,
    /// RFC 5957: display name of the first From address, else its
    /// addr-spec; decoded, case-folded.
    pub display_from: String,
    /// RFC 5957 for To.
    pub display_to: String,
    /// Sent date in seconds UTC; `None` means use INTERNALDATE.
    pub date: Option<i64>,
}

/// The keys RFC 5256 THREAD needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadKeys {
    /// Message-ID without the angle brackets.
    pub message_id: Option<String>,
    /// References (or, without it, the first In-Reply-To id), oldest first,
    /// without angle brackets.
    pub references: Vec<String>,
    /// Base subject (case-folded) for ORDEREDSUBJECT and REFERENCES
    /// subject grouping.
    pub subject: String,
    /// The subject had a reply or forward marker (RFC 5256 2.1).
    pub subject_is_reply: bool,
    /// Sent date (the first Date field) in seconds UTC; `None`: use
    /// INTERNALDATE.
    pub date: Option<i64>,
}

impl ParsedMessage {
    fn root_fields(&self) -> &[Field] {
        &self.parts[0].fields
    }

    /// RFC 3501 SEARCH HEADER (and FROM, TO, CC, BCC, SUBJECT): some
    /// `field` of the message contains `needle`, decoded,
    /// case-insensitively. Address fields are compared in their parsed
    /// form, `Name <mailbox@domain>` joined by ", ", as Dovecot does (so
    /// text that does not parse as an address is not found). An empty
    /// needle matches any message that has the field.
    pub fn header_contains(&self, field: &str, needle: &str) -> bool {
        let needle = fold(needle);
        self.root_fields()
            .iter()
            .filter(|f| f.is(field))
            .any(|f| fold(&field_value(f)).contains(&needle))
    }

    /// RFC 3501 SEARCH BODY: the text of the message's text parts (every
    /// text/* leaf, also inside attached messages, and message/* leaves
    /// such as message/delivery-status), decoded and converted to UTF-8,
    /// contains `needle`. As Dovecot: preamble, epilogue,
    /// boundaries, non-text parts and the headers of attached messages are
    /// not searched.
    pub fn body_contains(&self, needle: &str) -> bool {
        let needle = fold(needle);
        fold(&self.body_text()).contains(&needle)
    }

    /// RFC 3501 SEARCH TEXT: a header field of any part (the message's,
    /// each part's MIME header, attached messages' headers) or the body
    /// text contains `needle`.
    pub fn text_contains(&self, needle: &str) -> bool {
        let needle = fold(needle);
        self.parts
            .iter()
            .flat_map(|p| p.fields.iter())
            .any(|f| fold(&field_text(f)).contains(&needle))
            || fold(&self.body_text()).contains(&needle)
    }

    /// The decoded text BODY searches: each text/* or message/* leaf part's content,
    /// transfer encoding undone, charset converted, one part per line.
    pub fn body_text(&self) -> String {
        let mut out = String::new();
        for (i, p) in self.parts.iter().enumerate() {
            let message = self.content[i]
                .ctype
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"message"));
            if p.flags & (MULTIPART | RFC822) == 0 && (p.flags & TEXT != 0 || message) {
                self.part_text(i, &mut out);
            }
        }
        out
    }

    fn part_text(&self, i: usize, out: &mut String) {
        let decoded = match self.binary_of(i) {
            Some(b) => b,
            None => self.raw[self.parts[i].body_start..self.parts[i].end].to_vec(),
        };
        let c = &self.content[i];
        let charset = c
            .params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(b"charset"))
            .map(|(_, v)| v.as_slice());
        out.push_str(&to_utf8(charset, &decoded));
        out.push('\n');
    }

    /// A leaf part's body with base64 or quoted-printable undone (None:
    /// kept as it is).
    fn binary_of(&self, i: usize) -> Option<Vec<u8>> {
        let p = &self.parts[i];
        let body = &self.raw[p.body_start..p.end];
        let enc = self.content[i].encoding.as_deref()?;
        if enc.eq_ignore_ascii_case(b"base64") {
            Some(base64(body))
        } else if enc.eq_ignore_ascii_case(b"quoted-printable") {
            Some(quoted_printable(body))
        } else {
            None
        }
    }

    /// The Date: field as (seconds UTC, offset east of UTC in minutes);
    /// `None` when missing or not a date. The last Date field counts, as
    /// in ENVELOPE (SORT's key is the first's, as Dovecot's). For SORT DATE
    /// the server falls back to INTERNALDATE
    /// (RFC 5256 3); for SENT* see [`ParsedMessage::sent_day`].
    pub fn sent_date(&self) -> Option<(i64, i32)> {
        let f = self.root_fields().iter().rev().find(|f| f.is("Date"))?;
        date_of(f)
    }

    /// The first field named `name`: SORT and THREAD read the first of
    /// duplicated fields, as Dovecot does (ENVELOPE the last).
    fn first(&self, name: &str) -> Option<&Field> {
        self.root_fields().iter().find(|f| f.is(name))
    }

    /// RFC 3501 SENTBEFORE, SENTON, SENTSINCE compare this day (days since
    /// 1970-01-01 of the Date: field in its own time zone, "disregarding
    /// time and timezone") with the criterion's date. A missing or broken
    /// Date: is day 0, 1-Jan-1970, as Dovecot treats it.
    pub fn sent_day(&self) -> i64 {
        match self.sent_date() {
            Some((t, offset)) => (t + i64::from(offset) * 60).div_euclid(86_400),
            None => 0,
        }
    }

    fn addresses(&self, name: &str) -> Vec<Address> {
        self.root_fields()
            .iter()
            .filter(|f| f.is(name))
            .flat_map(|f| address::parse(&f.value))
            .collect()
    }

    /// RFC 5256 3 and RFC 5957 sort keys.
    pub fn sort_keys(&self) -> SortKeys {
        let subject = self.first("Subject").map(|f| decode_header(&f.value));
        let (base, _) = base_subject(subject.as_deref().unwrap_or(""));
        let from = self.addresses("From");
        let to = self.addresses("To");
        SortKeys {
            subject: fold(&base),
            from: first_mailbox(&from),
            to: first_mailbox(&to),
            cc: first_mailbox(&self.addresses("Cc")),
            display_from: display(&from),
            display_to: display(&to),
            date: self.first("Date").and_then(date_of).map(|(t, _)| t),
        }
    }

    /// RFC 5256 4 thread keys.
    pub fn thread_keys(&self) -> ThreadKeys {
        let message_id = self
            .first("Message-ID")
            .and_then(|f| msg_ids(&f.value).into_iter().next());
        let mut references = self
            .first("References")
            .map(|f| msg_ids(&f.value))
            .unwrap_or_default();
        if references.is_empty() {
            references = self
                .first("In-Reply-To")
                .and_then(|f| msg_ids(&f.value).into_iter().next())
                .into_iter()
                .collect();
        }
        let subject = self.first("Subject").map(|f| decode_header(&f.value));
        let (base, reply) = base_subject(subject.as_deref().unwrap_or(""));
        ThreadKeys {
            message_id,
            references,
            subject: fold(&base),
            subject_is_reply: reply,
            date: self.first("Date").and_then(date_of).map(|(t, _)| t),
        }
    }
}

/// A Date field's value as (seconds UTC, offset east of UTC in minutes).
fn date_of(f: &Field) -> Option<(i64, i32)> {
    let text = String::from_utf8_lossy(&f.value).replace('\n', " ");
    let d = DateTime::parse_rfc822(&text)?;
    if !d.is_valid() {
        return None;
    }
    let offset =
        (i32::from(d.tz_hour) * 60 + i32::from(d.tz_minute)) * if d.tz_before_gmt { -1 } else { 1 };
    Some((d.to_timestamp(), offset))
}

/// Case folding for comparisons and sort keys, as Dovecot's
/// i;unicode-casemap (RFC 5051): each character to its single-character
/// title (here: upper) case, "ß" staying "ß", then decomposed ("Ä" to "A"
/// and U+0308; `decompose.rs` holds the table).
pub(crate) fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let mut up = c.to_uppercase();
        let t = match (up.next(), up.next()) {
            (Some(u), None) => u,
            _ => c,
        };
        match decompose(t) {
            Some(d) => out.push_str(d),
            None => out.push(t),
        }
    }
    out
}

/// Fields whose value is searched as parsed addresses.
const ADDRESS_FIELDS: [&str; 6] = ["From", "To", "Cc", "Bcc", "Sender", "Reply-To"];

/// A field's value as searched: decoded, and for address fields written
/// back from the parsed addresses ("Name <a@b>, group: c@d;").
fn field_value(f: &Field) -> String {
    if !ADDRESS_FIELDS.iter().any(|n| f.is(n)) {
        return decode_header(&f.value);
    }
    let text = |v: &Option<Vec<u8>>| v.as_deref().map(decode_header).unwrap_or_default();
    let mut out = String::new();
    for a in address::parse(&f.value) {
        match (&a.mailbox, &a.domain) {
            (None, None) => {
                out.push(';');
                continue;
            }
            (Some(group), None) => {
                if !out.is_empty() {
                    out.push_str(", ");
                }
                out.push_str(&decode_header(group));
                out.push_str(": ");
                continue;
            }
            _ => {}
        }
        if !out.is_empty() && !out.ends_with(": ") {
            out.push_str(", ");
        }
        let addr = format!("{}@{}", text(&a.mailbox), text(&a.domain));
        match &a.name {
            Some(n) => out.push_str(&format!("{} <{addr}>", decode_header(n))),
            None => out.push_str(&addr),
        }
    }
    out
}

/// A field as text for TEXT searches: "Name: value\n".
fn field_text(f: &Field) -> String {
    format!("{}: {}\n", String::from_utf8_lossy(&f.name), field_value(f))
}

/// The first address's mailbox; a group's name when the list starts with
/// a group, as Dovecot sorts it.
fn first_mailbox(list: &[Address]) -> String {
    list.first()
        .and_then(|a| a.mailbox.as_deref())
        .map(|m| fold(&String::from_utf8_lossy(m)))
        .unwrap_or_default()
}

/// RFC 5957: the first address's display name, else its addr-spec (a
/// group: its name).
fn display(list: &[Address]) -> String {
    let Some(a) = list.first() else {
        return String::new();
    };
    match &a.name {
        Some(n) if !n.is_empty() => fold(&decode_header(n)),
        _ => {
            let m = String::from_utf8_lossy(a.mailbox.as_deref().unwrap_or_default()).into_owned();
            match &a.domain {
                Some(d) => fold(&format!("{m}@{}", String::from_utf8_lossy(d))),
                None => fold(&m),
            }
        }
    }
}

/// Bytes in `charset` (default: UTF-8, which also covers us-ascii) to a
/// String.
fn to_utf8(charset: Option<&[u8]>, bytes: &[u8]) -> String {
    if let Some(cs) = charset {
        let cs = cs.split(|&c| c == b'*').next().unwrap_or(cs);
        if !cs.eq_ignore_ascii_case(b"utf-8") && !cs.eq_ignore_ascii_case(b"us-ascii") {
            if let Some(decode) = charset_decoder(cs) {
                return decode(bytes);
            }
        }
    }
    String::from_utf8_lossy(bytes).into_owned()
}

/// RFC 2047 6.1: a header value with encoded words decoded, white space
/// between adjacent encoded words dropped, folding undone; other bytes
/// read as UTF-8.
pub fn decode_header(value: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    let mut after_word = false;
    let mut text_start = 0;
    while i < value.len() {
        if value[i] == b'=' && value.get(i + 1) == Some(&b'?') {
            if let Some((decoded, end)) = encoded_word(value, i) {
                // flush plain text before the word; white space only
                // between two encoded words is dropped
                let plain = &value[text_start..i];
                let ws_only = plain.iter().all(|c| c.is_ascii_whitespace());
                if !(after_word && ws_only) {
                    push_plain(&mut out, plain);
                }
                out.push_str(&decoded);
                i = end;
                text_start = end;
                after_word = true;
                continue;
            }
        }
        i += 1;
    }
    push_plain(&mut out, &value[text_start..]);
    out
}

fn push_plain(out: &mut String, plain: &[u8]) {
    let s = String::from_utf8_lossy(plain);
    // folding: the line break goes, the white space after it stays
    out.push_str(&s.replace(['\r', '\n'], ""));
}

/// `=?charset?B|Q?text?=` at `start`: the decoded text and the end.
fn encoded_word(v: &[u8], start: usize) -> Option<(String, usize)> {
    let rest = &v[start + 2..];
    let q1 = rest.iter().position(|&c| c == b'?')?;
    let charset = &rest[..q1];
    if charset.is_empty() || charset.iter().any(|c| c.is_ascii_whitespace()) {
        return None;
    }
    let enc = *rest.get(q1 + 1)?;
    if rest.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q1 + 3;
    let text_len = rest[text_start..].windows(2).position(|w| w == b"?=")?;
    let text = &rest[text_start..text_start + text_len];
    if text.iter().any(|c| c.is_ascii_whitespace()) {
        return None;
    }
    let bytes = match enc {
        b'B' | b'b' => base64(text),
        b'Q' | b'q' => {
            let underscores: Vec<u8> = text
                .iter()
                .map(|&c| if c == b'_' { b' ' } else { c })
                .collect();
            quoted_printable(&underscores)
        }
        _ => return None,
    };
    // RFC 2231 5: charset*language
    let charset = charset.split(|&c| c == b'*').next().unwrap_or(charset);
    Some((
        to_utf8(Some(charset), &bytes),
        start + 2 + text_start + text_len + 2,
    ))
}

/// RFC 5256 2.1 base subject, and whether a reply/forward marker or a
/// "[fwd: ...]" wrapper was removed.
pub fn base_subject(subject: &str) -> (String, bool) {
    // (1) white space runs to one space
    let mut s = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut reply = false;
    loop {
        // (2) trailers: "(fwd)" and white space
        loop {
            let t = s.trim_end();
            if t.len() != s.len() {
                s = t.to_string();
                continue;
            }
            if s.len() >= 5
                && s.get(s.len() - 5..)
                    .is_some_and(|t| t.eq_ignore_ascii_case("(fwd)"))
            {
                s.truncate(s.len() - 5);
                reply = true;
                continue;
            }
            break;
        }
        // (3) and (4): leaders and blobs, until nothing changes
        loop {
            let before = s.len();
            // subj-leader includes plain WSP (what "[fwd: x]" leaves)
            if s.starts_with(' ') {
                s = s.trim_start().to_string();
            }
            if let Some(rest) = strip_refwd(&s) {
                s = rest;
                reply = true;
            }
            if let Some(rest) = strip_blob(&s) {
                if !rest.is_empty() {
                    s = rest;
                }
            }
            if s.len() == before {
                break;
            }
        }
        // (6) "[fwd:" ... "]"
        if s.len() >= 6
            && s.get(..5).is_some_and(|t| t.eq_ignore_ascii_case("[fwd:"))
            && s.ends_with(']')
        {
            s = s[5..s.len() - 1].to_string();
            reply = true;
            continue;
        }
        break;
    }
    (s, reply)
}

/// subj-blob: "[" *BLOBCHAR "]" *WSP at the start.
fn strip_blob(s: &str) -> Option<String> {
    let t = s.strip_prefix('[')?;
    let close = t.find(']')?;
    if t[..close].contains('[') {
        return None;
    }
    Some(t[close + 1..].trim_start().to_string())
}

/// subj-refwd: ("re" / "fw" / "fwd") *WSP [subj-blob] ":" at the start,
/// after leading white space.
fn strip_refwd(s: &str) -> Option<String> {
    let t = s.trim_start();
    let lower = t.to_ascii_lowercase();
    let n = if lower.starts_with("re") {
        2
    } else if lower.starts_with("fwd") {
        3
    } else if lower.starts_with("fw") {
        2
    } else {
        return None;
    };
    let mut rest = t[n..].trim_start();
    if rest.starts_with('[') {
        let blob = strip_blob(rest)?;
        rest = &t[t.len() - blob.len()..];
    }
    let rest = rest.strip_prefix(':')?;
    Some(rest.trim_start().to_string())
}

/// The msg-ids of a Message-ID, In-Reply-To or References value, without
/// angle brackets, comments and white space (RFC 5322 3.6.4).
fn msg_ids(value: &[u8]) -> Vec<String> {
    let mut ids = Vec::new();
    let mut i = 0;
    while i < value.len() && ids.len() < MAX_IDS {
        match value[i] {
            b'(' => {
                let mut depth = 0usize;
                while i < value.len() {
                    match value[i] {
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        b'\\' => i += 1,
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
            }
            b'<' => {
                let Some(len) = value[i + 1..].iter().position(|&c| c == b'>') else {
                    break;
                };
                let inner: Vec<u8> = value[i + 1..i + 1 + len]
                    .iter()
                    .copied()
                    .filter(|c| !c.is_ascii_whitespace() && *c != b'"')
                    .collect();
                if !inner.is_empty() && inner.contains(&b'@') {
                    ids.push(String::from_utf8_lossy(&inner).into_owned());
                }
                i += len + 2;
            }
            _ => i += 1,
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_decode_and_join() {
        assert_eq!(
            decode_header(
                b"=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus =?ISO-8859-1?B?S/Zsbg==?=\n =?UTF-8?B?IOKCrA==?="
            ),
            "Grüße aus Köln €"
        );
        assert_eq!(
            decode_header(b"=?iso-8859-1?q?a?= =?iso-8859-1?q?b?="),
            "ab"
        );
        assert_eq!(decode_header(b"plain =?bogus"), "plain =?bogus");
    }

    #[test]
    fn base_subject_rfc5256() {
        assert_eq!(
            base_subject("Re: [list] Fwd: hello (fwd)"),
            ("hello".to_string(), true)
        );
        assert_eq!(base_subject("[fwd: Re: x]"), ("x".to_string(), true));
        // the space "[fwd:" leaves is a leader too (Dovecot: "D")
        assert_eq!(base_subject("[fwd: d]"), ("d".to_string(), true));
        assert_eq!(
            base_subject("  plain   subject "),
            ("plain subject".to_string(), false)
        );
        assert_eq!(
            base_subject("[only blob]"),
            ("[only blob]".to_string(), false)
        );
    }

    #[test]
    fn message_ids() {
        assert_eq!(
            msg_ids(b"<a@b> (c <x@y>)\n <c@d>"),
            vec!["a@b".to_string(), "c@d".to_string()]
        );
    }

    fn msg(s: &str) -> ParsedMessage {
        ParsedMessage::parse(s.as_bytes())
    }

    #[test]
    fn search_text() {
        let m = msg(concat!(
            "Subject: =?ISO-8859-1?Q?K=F6ln?=\r\nFrom: A <a@x>\r\nMIME-Version: 1.0\r\n",
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n",
            "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
            "Gr=FC=DFe\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            "c2VjcmV0\r\n--b--\r\n"
        ));
        assert!(m.header_contains("subject", "KÖLN"));
        assert!(!m.header_contains("subject", "bonn"));
        assert!(m.header_contains("from", ""));
        assert!(!m.header_contains("cc", ""));
        assert!(m.body_contains("grüsse") || m.body_contains("GRÜSSE") || m.body_contains("grüße"));
        // non-text parts are not searched, as in Dovecot
        assert!(!m.body_contains("SECRET"));
        assert!(!m.body_contains("köln"));
        assert!(m.text_contains("köln"));
    }

    #[test]
    fn dates_and_keys() {
        let m = msg("Date: Tue, 3 Mar 2026 09:59:58 +0100\r\nSubject: Re: hi\r\nFrom: \"Z\" <Bob@x>\r\nMessage-ID: <m@x>\r\nIn-Reply-To: <p@x>\r\n\r\n");
        assert_eq!(m.sent_date(), Some((1_772_528_398, 60)));
        let k = m.sort_keys();
        assert_eq!(k.subject, "HI");
        assert_eq!(k.from, "BOB");
        assert_eq!(k.display_from, "Z");
        let t = m.thread_keys();
        assert_eq!(t.message_id.as_deref(), Some("m@x"));
        assert_eq!(t.references, vec!["p@x".to_string()]);
        assert!(t.subject_is_reply);
        assert_eq!(msg("Date: garbage\r\n\r\n").sent_date(), None);
    }
}
