//! Delivery status notifications (bounces), RFC 3464 in RFC 6522 dress.
//!
//! Owns the text of a non-delivery notification: a human part, the
//! machine-readable message/delivery-status part, and the returned message
//! (whole up to BOUNCE_SIZE_LIMIT, otherwise its headers only). Does not own
//! queueing it (queue.rs does, with the null sender, RFC 5321 4.5.5), nor
//! reading the queue file: the caller hands in the original message, so
//! building a notification does no I/O of its own and is tested byte for byte
//! against qmgr/tests/golden/*.eml.
//!
//! Standards: RFC 3464 (DSN fields), RFC 6522 (multipart/report),
//! RFC 3834 (Auto-Submitted), RFC 5321 4.5.5 (null reverse-path).
//!
//! Diagnostics: none; `build` fails only when the original cannot be read.

use std::io::{self, Read};

use common::log::rfc5322_date;

/// Return the whole message when it is at most this long (Postfix's bounce_size_limit).
pub const BOUNCE_SIZE_LIMIT: u64 = 50_000;

/// One failed recipient.
#[derive(Debug, Clone)]
pub struct Failed {
    pub address: String,
    pub dsn: String,
    pub text: String,
}

/// What a notification says, apart from the returned message. Everything
/// that varies is passed in (the time too), so the same input gives the same
/// bytes: see qmgr/tests/bounce_golden.rs.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// The queue id of the message that failed.
    pub queue_id: &'a str,
    /// Its envelope sender, who gets the notification.
    pub sender: &'a str,
    /// Its arrival time, unix seconds.
    pub arrival: u64,
    pub myhostname: &'a str,
    pub mail_name: &'a str,
    /// The notification's time, unix seconds (Date, Message-ID, boundary).
    pub now: u64,
    pub failed: &'a [Failed],
}

/// Build the notification. `original` is the failed message (CRLF lines, as
/// queued) and `msg_len` its length: it is returned whole up to
/// BOUNCE_SIZE_LIMIT, otherwise its header only. Lines end in CRLF, as queued
/// messages do. Fails only when `original` cannot be read.
pub fn build(r: &Report<'_>, original: impl Read, msg_len: u64) -> io::Result<Vec<u8>> {
    let Report {
        queue_id: id,
        sender,
        arrival,
        myhostname,
        mail_name,
        now,
        failed,
    } = *r;
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
    h("Subject: Undelivered Mail Returned to Sender".into());
    h(format!("Date: {}", rfc5322_date(now)));
    h(format!("Message-ID: <{id}.{now}.bounce@{myhostname}>"));
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
    // RFC 6522 3: the human-readable part first.
    h(format!("--{boundary}"));
    h("Content-Description: Notification".into());
    h("Content-Type: text/plain; charset=utf-8".into());
    h(String::new());
    h(format!("This is the mail system at host {myhostname}."));
    h(String::new());
    h("I'm sorry to have to inform you that your message could not".into());
    h("be delivered to one or more recipients. It's attached below.".into());
    h(String::new());
    h(format!("                   The {mail_name} program"));
    h(String::new());
    for f in failed {
        h(format!("<{}>: {}", f.address, f.text));
    }
    h(String::new());
    // RFC 3464 2.1: per-message fields, then a block per recipient.
    h(format!("--{boundary}"));
    h("Content-Description: Delivery report".into());
    h("Content-Type: message/delivery-status".into());
    h(String::new());
    h(format!("Reporting-MTA: dns; {myhostname}")); // RFC 3464 2.2.2
    h(format!("X-Posthorn-Queue-ID: {id}"));
    h(format!("X-Posthorn-Sender: rfc822; {sender}"));
    h(format!("Arrival-Date: {}", rfc5322_date(arrival))); // RFC 3464 2.2.5
    for f in failed {
        h(String::new());
        h(format!("Final-Recipient: rfc822; {}", f.address)); // RFC 3464 2.3.2
        h("Action: failed".into()); // 2.3.3
        h(format!("Status: {}", f.dsn)); // 2.3.4, RFC 3463
        h(format!("Diagnostic-Code: X-Posthorn; {}", f.text)); // 2.3.6
    }
    h(String::new());
    // RFC 6522 3: the returned message, or its header (text/rfc822-headers).
    h(format!("--{boundary}"));
    let whole = msg_len <= BOUNCE_SIZE_LIMIT;
    if whole {
        h("Content-Description: Undelivered Message".into());
        h("Content-Type: message/rfc822".into());
    } else {
        h("Content-Description: Undelivered Message Headers".into());
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

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
