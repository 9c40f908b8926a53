//! A mailbox over its quota, end to end: local delivery defers the
//! message with 4.2.2 (a temporary failure, RFC 3463), qmgr tries it again
//! after minimal_backoff_time, and once the message is older than
//! maximal_queue_lifetime its sender gets a bounce (RFC 3464) that names
//! the quota, with nothing in the full mailbox. The quota is a Maildir++
//! one (users file userdb_quota_rule, as Dovecot reads it).

use crate::harness::{read, Smtp, Suite};

#[test]
fn over_quota_is_deferred_then_bounced_after_maximal_queue_lifetime() {
    let s = Suite::start(
        "quota",
        &["tiny@example.test:tinypw"],
        &[
            // Short lifetimes and retries, so that the message expires
            // after a few tries instead of five days.
            "maximal_queue_lifetime=3s",
            "minimal_backoff_time=1s",
            "maximal_backoff_time=1s",
            "queue_run_delay=1s",
        ],
    );
    // A quota of 100 bytes for tiny (the users file's extra fields, as
    // Dovecot reads them): no message fits.
    let users = s.dir.join("users");
    let text = std::fs::read_to_string(&users)
        .unwrap_or_else(|e| panic!("{}: {e}; log:\n{}", users.display(), s.log()));
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("tiny@example.test:") {
            let mut f: Vec<&str> = line.splitn(8, ':').collect();
            f.resize(7, "");
            out.push_str(&f.join(":"));
            out.push_str(":userdb_quota_rule=*:storage=100\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    // Replaced whole (rename), so that auth and local delivery never read
    // half a file.
    let tmp = s.dir.join("users.new");
    std::fs::write(&tmp, out).unwrap();
    std::fs::rename(&tmp, &users).unwrap();

    let mut c = Smtp::connect(s.port);
    c.cmd("HELO client.example.org", 250);
    let id = c.mail(
        "demo@example.test",
        &["tiny@example.test"],
        b"From: demo@example.test\r\nSubject: too big for tiny\r\n\r\nSome text that does not fit in 100 bytes, not with the headers.\r\n",
    );
    c.cmd("QUIT", 221);
    // Deferred with 4.2.2, as many times as it is tried, then returned.
    s.wait_log(&format!(
        "{id}: to=<tiny@example.test>, relay=virtual, delay="
    ));
    s.wait_log(
        "dsn=4.2.2, status=deferred (Mailbox full: Quota exceeded (mailbox for user is full))",
    );
    s.wait_log(&format!("{id}: to=<tiny@example.test>, relay=none"));
    let log = s.log();
    assert!(log.contains("status=expired, returned to sender"), "{log}");
    s.wait_log(&format!("{id}: sender non-delivery notification: "));
    // The sender's bounce: names the recipient, 4.2.2 and the quota.
    let bounce = s.wait_mail("demo@example.test", 1);
    assert_eq!(bounce.len(), 1);
    let b = String::from_utf8_lossy(&read(&bounce[0])).to_string();
    assert!(
        b.contains("Final-Recipient: rfc822; tiny@example.test"),
        "{b}"
    );
    assert!(b.contains("Action: failed"), "{b}");
    assert!(b.contains("Quota exceeded"), "{b}");
    // The last deferral's status, as Postfix: 4.2.2 (mailbox full).
    assert!(b.contains("Status: 4.2.2"), "{b}");
    assert!(
        b.contains("Subject: too big for tiny"),
        "the returned message: {b}"
    );
    // Nothing reached the full mailbox; the message left the queue.
    assert!(s.new_mail("tiny@example.test").is_empty());
    s.wait_log(&format!("{id}: removed"));
}
