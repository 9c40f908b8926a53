//! Golden files for the delivery status notifications (RFC 3464 in RFC
//! 6522's multipart/report): a bounce, a delay warning or a success notice
//! built for a fixed envelope, time and queue id must equal the committed
//! .eml in qmgr/tests/golden/ byte for byte. The bounces without DSN
//! parameters are the files from before DSN, unchanged.
//!
//! When the format changes on purpose, regenerate the files and review the
//! diff before committing it:
//!
//! ```text
//! POSTHORN_BLESS=1 cargo test -p posthorn-qmgr --test bounce_golden
//! git diff qmgr/tests/golden/
//! ```
//!
//! Besides the bytes, each case checks the structure a DSN reader relies on,
//! so a blessed file cannot silently lose a required field.

use std::path::PathBuf;
use std::time::Duration;

use common::dsn::{MessageDsn, Notify, RecipientDsn, Ret};
use posthorn_qmgr::bounce::{self, Action, Entry, Kind, Report, BOUNCE_SIZE_LIMIT};

/// 2026-01-02 03:04:05 UTC, and an arrival two days before.
const NOW: u64 = 1_767_323_045;
const ARRIVAL: u64 = NOW - 2 * 86400;

const ORIGINAL: &[u8] =
    b"Received: from client.example.org by mx.example.test; Wed, 31 Dec 2025 03:04:05 +0000\r\n\
From: Alice <alice@example.org>\r\n\
To: bob@example.test, nobody@example.test\r\n\
Subject: lunch\r\n\
Message-ID: <lunch-1@example.org>\r\n\
\r\n\
Shall we?\r\n\
.A line that starts with a dot.\r\n";

fn entry(address: &str, action: Action, status: &str, text: &str) -> Entry {
    Entry {
        address: address.into(),
        dsn: RecipientDsn::default(),
        action,
        status: status.into(),
        text: text.into(),
    }
}

fn failed() -> Vec<Entry> {
    vec![
        entry(
            "nobody@example.test",
            Action::Failed,
            "5.1.1",
            "unknown user: \"nobody\"",
        ),
        entry(
            "bob@example.test",
            Action::Failed,
            "4.4.7",
            "message expired after 5 days in the queue: mailbox full",
        ),
    ]
}

const NO_DSN: MessageDsn = MessageDsn {
    ret: None,
    envid: None,
};

fn report<'a>(kind: Kind, dsn: &'a MessageDsn, recipients: &'a [Entry]) -> Report<'a> {
    Report {
        kind,
        queue_id: "1M15GbMYLYb836",
        sender: "alice@example.org",
        dsn,
        arrival: ARRIVAL,
        myhostname: "mx.example.test",
        mail_name: "posthorn",
        now: NOW,
        warn_after: Duration::from_secs(4 * 3600),
        lifetime: Duration::from_secs(5 * 86400),
        recipients,
    }
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compare with the golden file, or write it when POSTHORN_BLESS=1.
fn check(name: &str, got: &[u8]) {
    let path = golden(name);
    if std::env::var_os("POSTHORN_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, got).expect("write golden file");
        eprintln!("wrote {}", path.display());
        return;
    }
    let want = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (POSTHORN_BLESS=1 writes it)", path.display()));
    if got != want.as_slice() {
        let (g, w) = (String::from_utf8_lossy(got), String::from_utf8_lossy(&want));
        let line = g
            .split("\r\n")
            .zip(w.split("\r\n"))
            .position(|(a, b)| a != b)
            .map_or_else(
                || "(one is a prefix of the other)".to_string(),
                |i| format!("line {}", i + 1),
            );
        panic!(
            "bounce differs from {} at {line}; if the change is intended, rerun with POSTHORN_BLESS=1 and review the diff\n--- got ---\n{g}",
            path.display()
        );
    }
}

/// What every notification must have, whatever the golden file says: the
/// fields of each recipient block in order (`blocks`), the per-message ones
/// before them.
fn assert_structure(m: &str, returned_type: &str, per_message: &[&str], blocks: &[&[&str]]) {
    // Only CRLF line ends (RFC 5322 2.3): no bare CR or LF.
    let bytes = m.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => assert_eq!(bytes[i - 1], b'\r', "bare LF at {i}"),
            _ => {}
        }
    }
    let (head, body) = m.split_once("\r\n\r\n").expect("header and body");
    assert!(head.contains(
        "\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\""
    ));
    let boundary = head
        .split("boundary=\"")
        .nth(1)
        .and_then(|b| b.split('"').next())
        .expect("boundary");
    let delim = format!("\r\n--{boundary}");
    // RFC 2046 5.1.1: the close delimiter ends the body; three parts before it.
    assert!(
        body.ends_with(&format!("{delim}--\r\n")),
        "close delimiter last"
    );
    let parts: Vec<String> = format!("\r\n{body}")
        .split(&delim)
        .map(str::to_owned)
        .collect();
    assert_eq!(parts.len(), 5, "preamble, three parts, epilogue");
    assert!(parts[1].contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"));
    // RFC 3464 2.1: message/delivery-status, Reporting-MTA, then per recipient
    // Final-Recipient, Action and Status.
    let status = &parts[2];
    assert!(status.contains("\r\nContent-Type: message/delivery-status\r\n\r\n"));
    let names = |b: &str| -> Vec<String> {
        b.lines()
            .map(|l| l.split(':').next().unwrap_or("").to_string())
            .collect()
    };
    let got: Vec<&str> = status.split("\r\n\r\n").skip(1).collect();
    assert_eq!(names(got[0]), per_message, "{}", got[0]);
    assert_eq!(
        got.len() - 1,
        blocks.len(),
        "one block per recipient: {got:?}"
    );
    for (b, want) in got[1..].iter().zip(blocks) {
        assert_eq!(names(b), *want, "{b}");
    }
    assert!(parts[3].contains(&format!("\r\nContent-Type: {returned_type}\r\n")));
}

/// The fields of a bounce without DSN parameters.
const PER_MESSAGE: &[&str] = &[
    "Reporting-MTA",
    "X-Posthorn-Queue-ID",
    "X-Posthorn-Sender",
    "Arrival-Date",
];
const FAILED: &[&str] = &["Final-Recipient", "Action", "Status", "Diagnostic-Code"];

#[test]
fn bounce_with_the_whole_message() {
    let f = failed();
    let got = bounce::build(
        &report(Kind::Failure, &NO_DSN, &f),
        ORIGINAL,
        ORIGINAL.len() as u64,
    )
    .expect("build");
    check("bounce-whole.eml", &got);
    let text = String::from_utf8(got).expect("utf-8");
    assert_structure(&text, "message/rfc822", PER_MESSAGE, &[FAILED, FAILED]);
    assert!(text.contains("\r\n\r\nShall we?\r\n.A line that starts with a dot.\r\n"));
}

#[test]
fn bounce_of_a_large_message_returns_its_header_only() {
    let f = failed();
    let mut big = ORIGINAL.to_vec();
    while big.len() as u64 <= BOUNCE_SIZE_LIMIT {
        big.extend_from_slice(b"0123456789 0123456789 0123456789 0123456789 0123456789 012345\r\n");
    }
    let got = bounce::build(
        &report(Kind::Failure, &NO_DSN, &f),
        big.as_slice(),
        big.len() as u64,
    )
    .expect("build");
    check("bounce-headers.eml", &got);
    let text = String::from_utf8(got).expect("utf-8");
    assert_structure(&text, "text/rfc822-headers", PER_MESSAGE, &[FAILED, FAILED]);
    assert!(!text.contains("Shall we?"), "no body returned");
    assert!(text.contains("Message-ID: <lunch-1@example.org>\r\n\r\n--1M15GbMYLYb836."));
}

/// RET=HDRS: the headers of even a small message; ENVID and ORCPT (decoded
/// from xtext) in their fields.
#[test]
fn bounce_with_dsn_parameters_returns_headers_only() {
    let dsn = MessageDsn {
        ret: Some(Ret::Hdrs),
        envid: Some("QQ314159+2Bx".into()),
    };
    let mut f = failed();
    f[0].dsn.orcpt = Some("rfc822;nobody+2Bold+40example.test".into());
    let got = bounce::build(
        &report(Kind::Failure, &dsn, &f),
        ORIGINAL,
        ORIGINAL.len() as u64,
    )
    .expect("build");
    check("bounce-dsn-hdrs.eml", &got);
    let text = String::from_utf8(got).expect("utf-8");
    let with_envid: Vec<&str> = ["Original-Envelope-Id"]
        .into_iter()
        .chain(PER_MESSAGE.iter().copied())
        .collect();
    let with_orcpt: Vec<&str> = ["Original-Recipient"]
        .into_iter()
        .chain(FAILED.iter().copied())
        .collect();
    assert_structure(
        &text,
        "text/rfc822-headers",
        &with_envid,
        &[&with_orcpt, FAILED],
    );
    assert!(text.contains("\r\nOriginal-Envelope-Id: QQ314159+x\r\n"));
    assert!(text.contains("\r\nOriginal-Recipient: rfc822; nobody+old@example.test\r\n"));
    assert!(!text.contains("Shall we?"), "headers only (RET=HDRS)");
    // RET=FULL is the default's whole message.
    let full = MessageDsn {
        ret: Some(Ret::Full),
        envid: None,
    };
    let got = bounce::build(
        &report(Kind::Failure, &full, &f),
        ORIGINAL,
        ORIGINAL.len() as u64,
    )
    .expect("build");
    let text = String::from_utf8(got).expect("utf-8");
    assert!(text.contains("\r\nContent-Type: message/rfc822\r\n"));
    assert!(text.contains("Shall we?"));
}

/// A delay warning: Postfix's subject and text, Action: delayed with the
/// last reason's 4.x.x status and Will-Retry-Until, the headers only.
#[test]
fn delay_warning() {
    let mut e = vec![entry(
        "later@elsewhere.example",
        Action::Delayed,
        "4.2.0",
        "host said: 450 4.2.0 try again later (in reply to RCPT TO)",
    )];
    e[0].dsn.notify = Notify::parse("DELAY");
    let got = bounce::build(
        &report(Kind::Delay, &NO_DSN, &e),
        ORIGINAL,
        ORIGINAL.len() as u64,
    )
    .expect("build");
    check("delay.eml", &got);
    let text = String::from_utf8(got).expect("utf-8");
    let delayed: &[&str] = &[
        "Final-Recipient",
        "Action",
        "Status",
        "Diagnostic-Code",
        "Will-Retry-Until",
    ];
    assert_structure(&text, "text/rfc822-headers", PER_MESSAGE, &[delayed]);
    assert!(text.contains("\r\nSubject: Delayed Mail (still being retried)\r\n"));
    assert!(text.contains("\r\nAction: delayed\r\nStatus: 4.2.0\r\n"));
    assert!(
        text.contains("for more than 4 hour(s).\r\nIt will be retried until it is 5 day(s) old.")
    );
    // Arrival plus five days.
    assert!(text.contains("\r\nWill-Retry-Until: Mon, 5 Jan 2026 03:04:05 +0000\r\n"));
    assert!(!text.contains("Shall we?"));
}

/// A success notice: delivered here, relayed to a server without DSN.
#[test]
fn success_notice() {
    let e = vec![
        entry(
            "bob@example.test",
            Action::Delivered,
            "2.0.0",
            "delivered to maildir",
        ),
        entry(
            "carol@elsewhere.example",
            Action::Relayed,
            "2.0.0",
            "250 2.0.0 Ok: queued as SINK1",
        ),
    ];
    let got = bounce::build(
        &report(Kind::Success, &NO_DSN, &e),
        ORIGINAL,
        ORIGINAL.len() as u64,
    )
    .expect("build");
    check("success.eml", &got);
    let text = String::from_utf8(got).expect("utf-8");
    assert_structure(&text, "text/rfc822-headers", PER_MESSAGE, &[FAILED, FAILED]);
    assert!(text.contains("\r\nSubject: Successful Mail Delivery Report\r\n"));
    assert!(text.contains(
        "Final-Recipient: rfc822; bob@example.test\r\nAction: delivered\r\nStatus: 2.0.0\r\n"
    ));
    assert!(text.contains(
        "Final-Recipient: rfc822; carol@elsewhere.example\r\nAction: relayed\r\nStatus: 2.0.0\r\n"
    ));
    assert!(text.contains("\r\nContent-Description: Delivered Message Headers\r\n"));
}
