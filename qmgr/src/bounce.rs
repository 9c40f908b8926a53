//! Delivery status notifications, RFC 3464 in RFC 6522 dress: bounces,
//! delay warnings and success notices.
//!
//! Owns the text of a notification: a human part, the machine-readable
//! message/delivery-status part, and the returned message. A failure notice
//! (bounce) returns the message whole up to BOUNCE_SIZE_LIMIT, otherwise
//! its headers only, and its headers only when the sender asked RET=HDRS; a
//! delay warning or a success notice returns the headers only, as
//! Postfix's do. Does not own queueing it (queue.rs does, with the null
//! sender, RFC 5321 4.5.5), deciding who gets one (queue.rs, from the
//! sender's NOTIFY), nor reading the queue file: the caller hands in the
//! original message, so building a notification does no I/O of its own and
//! is tested byte for byte against qmgr/tests/golden/*.eml.
//!
//! Standards: RFC 3464 (DSN fields: 2.2.1 Original-Envelope-Id, 2.3.1
//! Original-Recipient, 2.3.3 the actions failed, delayed, delivered and
//! relayed, 2.3.9 Will-Retry-Until), RFC 3461 (4.3 RET, 4.4 ENVID, 4.2
//! ORCPT: shown decoded from xtext), RFC 6522 (multipart/report), RFC 3834
//! (Auto-Submitted), RFC 5321 4.5.5 (null reverse-path).
//!
//! Diagnostics: none; `build` fails only when the original cannot be read.

use std::io::{self, Read};
use std::time::Duration;

use common::dsn::{MessageDsn, RecipientDsn, Ret};
use common::log::rfc5322_date;

/// Return the whole message when it is at most this long (Postfix's bounce_size_limit).
pub const BOUNCE_SIZE_LIMIT: u64 = 50_000;

/// Which notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Undeliverable: returned to the sender.
    Failure,
    /// Still being retried after delay_warning_time.
    Delay,
    /// Delivered or relayed, for NOTIFY=SUCCESS.
    Success,
}

/// RFC 3464 2.3.3: what happened to a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }
}

/// One recipient of a notification.
#[derive(Debug, Clone)]
pub struct Entry {
    pub address: String,
    /// Its NOTIFY and ORCPT (ORCPT becomes Original-Recipient:).
    pub dsn: RecipientDsn,
    pub action: Action,
    /// RFC 3463 status, e.g. "5.1.1".
    pub status: String,
    pub text: String,
}

/// What a notification says, apart from the returned message. Everything
/// that varies is passed in (the time too), so the same input gives the same
/// bytes: see qmgr/tests/bounce_golden.rs.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    pub kind: Kind,
    /// The queue id of the message reported on.
    pub queue_id: &'a str,
    /// Its envelope sender, who gets the notification.
    pub sender: &'a str,
    /// Its RET and ENVID.
    pub dsn: &'a MessageDsn,
    /// Its arrival time, unix seconds.
    pub arrival: u64,
    pub myhostname: &'a str,
    pub mail_name: &'a str,
    /// The notification's time, unix seconds (Date, Message-ID, boundary).
    pub now: u64,
    /// delay_warning_time (the text of a delay warning).
    pub warn_after: Duration,
    /// maximal_queue_lifetime (a delay warning's Will-Retry-Until).
    pub lifetime: Duration,
    pub recipients: &'a [Entry],
}

/// Build the notification. `original` is the message (CRLF lines, as
/// queued) and `msg_len` its length. Lines end in CRLF, as queued messages
/// do. Fails only when `original` cannot be read.
pub fn build(r: &Report<'_>, original: impl Read, msg_len: u64) -> io::Result<Vec<u8>> {
    let Report {
        kind,
        queue_id: id,
        sender,
        dsn,
        arrival,
        myhostname,
        mail_name,
        now,
        warn_after,
        lifetime,
        recipients,
    } = *r;
    let (subject, tag) = match kind {
        Kind::Failure => ("Undelivered Mail Returned to Sender", "bounce"),
        Kind::Delay => ("Delayed Mail (still being retried)", "delay"),
        Kind::Success => ("Successful Mail Delivery Report", "success"),
    };
    let boundary = format!("{id}.{now}/{myhostname}");
    let mut m = String::with_capacity(4096);
    let mut h = |s: String| {
        m.push_str(&s);
        m.push_str("\r\n");
    };
    h(format!(
        "From: MAILER-DAEMON@{myhostname} (Mail Delivery System)"
    ));
    h(format!("To: {sender}"));
    h(format!("Subject: {subject}"));
    h(format!("Date: {}", rfc5322_date(now)));
    h(format!("Message-ID: <{id}.{now}.{tag}@{myhostname}>"));
    // RFC 3834 5: an automatic response; RFC 6522 1: the report itself.
    h("Auto-Submitted: auto-replied".into());
    h("MIME-Version: 1.0".into());
    h(format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\""
    ));
    h("Content-Transfer-Encoding: 8bit".into());
    h(String::new());
    h("This is a MIME-encapsulated message.".into());
    h(String::new());
    // RFC 6522 3: the human-readable part first (Postfix's texts).
    h(format!("--{boundary}"));
    h("Content-Description: Notification".into());
    h("Content-Type: text/plain; charset=utf-8".into());
    h(String::new());
    h(format!("This is the mail system at host {myhostname}."));
    h(String::new());
    match kind {
        Kind::Failure => {
            h("I'm sorry to have to inform you that your message could not".into());
            h("be delivered to one or more recipients. It's attached below.".into());
        }
        Kind::Delay => {
            h("####################################################################".into());
            h("# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #".into());
            h("####################################################################".into());
            h(String::new());
            h(format!(
                "Your message could not be delivered for more than {}.",
                span(warn_after)
            ));
            h(format!(
                "It will be retried until it is {} old.",
                span(lifetime)
            ));
        }
        Kind::Success => {
            h("Your message was successfully delivered to the destination(s)".into());
            h("listed below. If the message was delivered to mailbox you will".into());
            h("receive no further notifications. Otherwise you may still receive".into());
            h("notifications of mail delivery errors from other systems.".into());
        }
    }
    h(String::new());
    h(format!("                   The {mail_name} program"));
    h(String::new());
    for e in recipients {
        h(format!("<{}>: {}", e.address, e.text));
    }
    h(String::new());
    // RFC 3464 2.1: per-message fields, then a block per recipient.
    h(format!("--{boundary}"));
    h("Content-Description: Delivery report".into());
    h("Content-Type: message/delivery-status".into());
    h(String::new());
    if let Some(envid) = dsn.envid_text() {
        h(format!("Original-Envelope-Id: {envid}")); // RFC 3464 2.2.1
    }
    h(format!("Reporting-MTA: dns; {myhostname}")); // RFC 3464 2.2.2
    h(format!("X-Posthorn-Queue-ID: {id}"));
    h(format!("X-Posthorn-Sender: rfc822; {sender}"));
    h(format!("Arrival-Date: {}", rfc5322_date(arrival))); // RFC 3464 2.2.5
    for e in recipients {
        h(String::new());
        if let Some((addr_type, orcpt)) = e.dsn.orcpt_text() {
            h(format!("Original-Recipient: {addr_type}; {orcpt}")); // 2.3.1
        }
        h(format!("Final-Recipient: rfc822; {}", e.address)); // RFC 3464 2.3.2
        h(format!("Action: {}", e.action.as_str())); // 2.3.3
        h(format!("Status: {}", e.status)); // 2.3.4, RFC 3463
        h(format!("Diagnostic-Code: X-Posthorn; {}", e.text)); // 2.3.6
        if e.action == Action::Delayed {
            // 2.3.9: when the message will be returned.
            h(format!(
                "Will-Retry-Until: {}",
                rfc5322_date(arrival.saturating_add(lifetime.as_secs()))
            ));
        }
    }
    h(String::new());
    // RFC 6522 3: the returned message, or its header (text/rfc822-headers).
    h(format!("--{boundary}"));
    let whole = kind == Kind::Failure && dsn.ret != Some(Ret::Hdrs) && msg_len <= BOUNCE_SIZE_LIMIT;
    let what = if kind == Kind::Success {
        "Delivered"
    } else {
        "Undelivered"
    };
    if whole {
        h(format!("Content-Description: {what} Message"));
        h("Content-Type: message/rfc822".into());
    } else {
        h(format!("Content-Description: {what} Message Headers"));
        h("Content-Type: text/rfc822-headers".into());
    }
    h("Content-Transfer-Encoding: 8bit".into());
    h(String::new());
    let mut out = m.into_bytes();
    let mut returned = Vec::new();
    let limit = if whole { msg_len } else { BOUNCE_SIZE_LIMIT };
    original.take(limit).read_to_end(&mut returned)?;
    if !whole {
        // Headers only: up to the first empty line.
        if let Some(pos) = find(&returned, b"\r\n\r\n") {
            returned.truncate(pos + 2);
        }
    }
    out.extend_from_slice(&returned);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Ok(out)
}

/// A time in the largest whole unit Postfix's texts use: "4 hour(s)",
/// "5 day(s)"; below an hour in minutes or seconds.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        s if s >= 86400 && s % 86400 == 0 => (s / 86400, "day"),
        s if s >= 3600 && s % 3600 == 0 => (s / 3600, "hour"),
        s if s >= 3600 => (s / 3600, "hour"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}(s)")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        let s = Duration::from_secs;
        assert_eq!(span(s(4 * 3600)), "4 hour(s)");
        assert_eq!(span(s(5 * 86400)), "5 day(s)");
        assert_eq!(span(s(36 * 3600)), "36 hour(s)");
        assert_eq!(span(s(5400)), "1 hour(s)");
        assert_eq!(span(s(120)), "2 minute(s)");
        assert_eq!(span(s(90)), "90 second(s)");
        assert_eq!(span(s(0)), "0 second(s)");
    }
}
