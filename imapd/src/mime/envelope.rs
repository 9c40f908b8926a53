//! ENVELOPE: the ten envelope fields of a message (or of a message/rfc822
//! part's message) as Dovecot 2.3 collects and writes them.
//!
//! Owns collecting Date, Subject, From, Sender, Reply-To, To, Cc, Bcc,
//! In-Reply-To and Message-ID from parsed header fields, and writing the
//! parenthesised list. Parsing the address syntax is `address.rs`; the
//! quoting rules are `write.rs`.
//!
//! Standards: RFC 3501 7.4.2 ENVELOPE (field order; Sender and Reply-To
//! default to From; NIL for an absent field; address structures; groups
//! as a start entry with NIL host and an end entry of NILs), RFC 9051
//! 7.5.2 (unchanged); RFC 5322 3.6 (the fields).
//!
//! As Dovecot does: the last Date, Subject, In-Reply-To and Message-ID
//! field wins, while repeated address fields are merged as if they were one
//! comma-separated list (so a second From cannot hide behind the first);
//! values are sent raw, RFC 2047 encoded words left encoded; Date,
//! In-Reply-To and Message-ID have their folding removed; Subject and
//! display names have white space collapsed and are sent as literals when
//! anything needed changing; NUL in a value becomes U+FFFD (or 0x80 in a
//! display name).
//!
//! Security: bounded by the header's size; no recursion.
//!
//! Diagnostics: none.

use super::address::{self, Address};
use super::parser::Field;
use super::write;

/// The envelope fields of one message header.
#[derive(Debug, Clone, Default)]
pub(crate) struct Envelope {
    pub date: Option<Vec<u8>>,
    pub subject: Option<Vec<u8>>,
    pub from: Vec<Address>,
    pub sender: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub in_reply_to: Option<Vec<u8>>,
    pub message_id: Option<Vec<u8>>,
}

/// A header value as a C string would hold it: NUL replaced by U+FFFD
/// (message_header_strdup).
pub(crate) fn strdup(v: &[u8]) -> Vec<u8> {
    if !v.contains(&0) {
        return v.to_vec();
    }
    let mut out = Vec::with_capacity(v.len() + 8);
    for &c in v {
        if c == 0 {
            out.extend_from_slice("\u{fffd}".as_bytes());
        } else {
            out.push(c);
        }
    }
    out
}

impl Envelope {
    /// Collects the envelope from a header's fields.
    pub(crate) fn from_fields(fields: &[Field]) -> Self {
        let mut e = Envelope::default();
        for f in fields {
            let name = &f.name;
            let addrs = if eq(name, "From") {
                Some(&mut e.from)
            } else if eq(name, "Sender") {
                Some(&mut e.sender)
            } else if eq(name, "Reply-To") {
                Some(&mut e.reply_to)
            } else if eq(name, "To") {
                Some(&mut e.to)
            } else if eq(name, "Cc") {
                Some(&mut e.cc)
            } else if eq(name, "Bcc") {
                Some(&mut e.bcc)
            } else {
                None
            };
            if let Some(list) = addrs {
                list.extend(address::parse(&f.value));
                continue;
            }
            let slot = if eq(name, "Date") {
                &mut e.date
            } else if eq(name, "Subject") {
                &mut e.subject
            } else if eq(name, "In-Reply-To") {
                &mut e.in_reply_to
            } else if eq(name, "Message-ID") {
                &mut e.message_id
            } else {
                continue;
            };
            *slot = Some(strdup(&f.value));
        }
        e
    }

    /// The envelope without its parentheses (imap_envelope_write).
    pub(crate) fn write(this: Option<&Self>, out: &mut Vec<u8>) {
        let Some(e) = this else {
            out.extend_from_slice(b"NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL");
            return;
        };
        write::nstring_nolf(out, e.date.as_deref());
        out.push(b' ');
        match &e.subject {
            Some(s) => write::string_for_humans(out, s),
            None => out.extend_from_slice(b"NIL"),
        }
        let or_from = |l: &'_ Vec<Address>| -> Vec<Address> {
            if l.is_empty() {
                e.from.clone()
            } else {
                l.clone()
            }
        };
        for list in [
            &e.from,
            &or_from(&e.sender),
            &or_from(&e.reply_to),
            &e.to,
            &e.cc,
            &e.bcc,
        ] {
            out.push(b' ');
            write_addresses(out, list);
        }
        out.push(b' ');
        write::nstring_nolf(out, e.in_reply_to.as_deref());
        out.push(b' ');
        write::nstring_nolf(out, e.message_id.as_deref());
    }
}

fn eq(name: &[u8], want: &str) -> bool {
    name.eq_ignore_ascii_case(want.as_bytes())
}

/// RFC 3501 7.4.2 address list: NIL when empty.
fn write_addresses(out: &mut Vec<u8>, list: &[Address]) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in list {
        out.push(b'(');
        match &a.name {
            Some(n) => write::string_for_humans(out, n),
            None => out.extend_from_slice(b"NIL"),
        }
        out.push(b' ');
        write::nstring(out, a.route.as_deref());
        out.push(b' ');
        write::nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        write::nstring(out, a.domain.as_deref());
        out.push(b')');
    }
    out.push(b')');
}
