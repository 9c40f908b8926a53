//! Delivery status notifications (bounces), RFC 3464 in RFC 6522 dress.
//!
//! Owns the text of a non-delivery notification: a human part, the
//! machine-readable message/delivery-status part, and the returned message
//! (whole up to BOUNCE_SIZE_LIMIT, otherwise its headers only). Does not own
//! queueing it (queue.rs does, with the null sender, RFC 5321 4.5.5).
//!
//! Standards: RFC 3464 (DSN fields), RFC 6522 (multipart/report),
//! RFC 3834 (Auto-Submitted), RFC 5321 4.5.5 (null reverse-path).

use std::io::Read;

use common::log::rfc5322_date;
use common::spool::QueueFile;

/// Return the whole message when it is at most this long (Postfix's bounce_size_limit).
pub const BOUNCE_SIZE_LIMIT: u64 = 50_000;

/// One failed recipient.
#[derive(Debug, Clone)]
pub struct Failed {
    pub address: String,
    pub dsn: String,
    pub text: String,
}

/// Build the notification for `qf`'s failed recipients. Lines end in CRLF,
/// as queued messages do.
pub fn build(
    qf: &QueueFile,
    id: &str,
    myhostname: &str,
    mail_name: &str,
    now: u64,
    failed: &[Failed],
) -> Vec<u8> {
    let boundary = format!("{id}.{now}/{myhostname}");
    let mut m = String::with_capacity(4096);
    let mut h = |s: String| {
        m.push_str(&s);
        m.push_str("\r\n");
    };
    h(format!(
        "From: MAILER-DAEMON@{myhostname} (Mail Delivery System)"
    ));
    h(format!("To: {}", qf.sender));
    h("Subject: Undelivered Mail Returned to Sender".into());
    h(format!("Date: {}", rfc5322_date(now)));
    h(format!("Message-ID: <{id}.{now}.bounce@{myhostname}>"));
    h("Auto-Submitted: auto-replied".into());
    h("MIME-Version: 1.0".into());
    h(format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\""
    ));
    h("Content-Transfer-Encoding: 8bit".into());
    h(String::new());
    h("This is a MIME-encapsulated message.".into());
    h(String::new());
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
    h(format!("--{boundary}"));
    h("Content-Description: Delivery report".into());
    h("Content-Type: message/delivery-status".into());
    h(String::new());
    h(format!("Reporting-MTA: dns; {myhostname}"));
    h(format!("X-Posthorn-Queue-ID: {id}"));
    h(format!("X-Posthorn-Sender: rfc822; {}", qf.sender));
    h(format!("Arrival-Date: {}", rfc5322_date(qf.arrival)));
    for f in failed {
        h(String::new());
        h(format!("Final-Recipient: rfc822; {}", f.address));
        h("Action: failed".into());
        h(format!("Status: {}", f.dsn));
        h(format!("Diagnostic-Code: X-Posthorn; {}", f.text));
    }
    h(String::new());
    h(format!("--{boundary}"));
    let whole = qf.msg_len <= BOUNCE_SIZE_LIMIT;
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
    let mut original = Vec::new();
    let limit = if whole { qf.msg_len } else { BOUNCE_SIZE_LIMIT };
    if let Ok(r) = qf.message() {
        let _ = r.take(limit).read_to_end(&mut original);
    }
    if !whole {
        // Headers only: up to the first empty line.
        if let Some(pos) = find(&original, b"\r\n\r\n") {
            original.truncate(pos + 2);
        }
    }
    out.extend_from_slice(&original);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
