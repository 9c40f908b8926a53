//! Golden files for the non-delivery notification (RFC 3464 in RFC 6522's
//! multipart/report): a bounce built for a fixed envelope, time and queue id
//! must equal the committed .eml in qmgr/tests/golden/ byte for byte.
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

use posthorn_qmgr::bounce::{self, Failed, Report, BOUNCE_SIZE_LIMIT};

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

fn failed() -> Vec<Failed> {
    vec![
        Failed {
            address: "nobody@example.test".into(),
            dsn: "5.1.1".into(),
            text: "unknown user: \"nobody\"".into(),
        },
        Failed {
            address: "bob@example.test".into(),
            dsn: "4.4.7".into(),
            text: "message expired after 5 days in the queue: mailbox full".into(),
        },
    ]
}

fn report(failed: &[Failed]) -> Report<'_> {
    Report {
        queue_id: "1M15GbMYLYb836",
        sender: "alice@example.org",
        arrival: ARRIVAL,
        myhostname: "mx.example.test",
        mail_name: "posthorn",
        now: NOW,
        failed,
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

/// What every notification must have, whatever the golden file says.
fn assert_structure(m: &str, returned_type: &str) {
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
    assert!(
        status.contains("\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; ")
    );
    let blocks: Vec<&str> = status.split("\r\n\r\n").skip(2).collect();
    assert_eq!(
        blocks.len(),
        2,
        "one block per failed recipient: {blocks:?}"
    );
    for b in blocks {
        let fields: Vec<&str> = b
            .lines()
            .map(|l| l.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            fields,
            ["Final-Recipient", "Action", "Status", "Diagnostic-Code"],
            "{b}"
        );
    }
    assert!(parts[3].contains(&format!("\r\nContent-Type: {returned_type}\r\n")));
}

#[test]
fn bounce_with_the_whole_message() {
    let f = failed();
    let got = bounce::build(&report(&f), ORIGINAL, ORIGINAL.len() as u64).expect("build");
    check("bounce-whole.eml", &got);
    let text = String::from_utf8(got).expect("utf-8");
    assert_structure(&text, "message/rfc822");
    assert!(text.contains("\r\n\r\nShall we?\r\n.A line that starts with a dot.\r\n"));
}

#[test]
fn bounce_of_a_large_message_returns_its_header_only() {
    let f = failed();
    let mut big = ORIGINAL.to_vec();
    while big.len() as u64 <= BOUNCE_SIZE_LIMIT {
        big.extend_from_slice(b"0123456789 0123456789 0123456789 0123456789 0123456789 012345\r\n");
    }
    let got = bounce::build(&report(&f), big.as_slice(), big.len() as u64).expect("build");
    check("bounce-headers.eml", &got);
    let text = String::from_utf8(got).expect("utf-8");
    assert_structure(&text, "text/rfc822-headers");
    assert!(!text.contains("Shall we?"), "no body returned");
    assert!(text.contains("Message-ID: <lunch-1@example.org>\r\n\r\n--1M15GbMYLYb836."));
}
