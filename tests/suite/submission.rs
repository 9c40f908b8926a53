//! Submission (RFC 6409 on 587 with STARTTLS, RFC 8314 on 465 with TLS from
//! the first byte) with real clients: Python's smtplib, swaks and curl,
//! each verifying the dev CA and logging in with AUTH through
//! posthorn-auth. Mail only after AUTH, only under TLS, only as the user's
//! own address; an authenticated user may relay; a wrong password is 535
//! 5.7.8 after the failure delay, in a log line fail2ban's postfix-sasl
//! filter matches.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{self, read, strip_trace, Smtp, Suite};

fn submission_port(s: &Suite) -> u16 {
    2587 + s.offset
}

fn submissions_port(s: &Suite) -> u16 {
    2465 + s.offset
}

fn ca(s: &Suite) -> PathBuf {
    s.dir.join("tls").join("ca.pem")
}

fn client(name: &str) -> String {
    format!("{}/../tests/clients/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// tests/clients/smtp_submit.py: its one line of outcome.
fn submit(
    s: &Suite,
    mode: &str,
    login: (&str, &str),
    from: &str,
    subject: &str,
    to: &[&str],
) -> String {
    let port = if mode == "tls" {
        submissions_port(s)
    } else {
        submission_port(s)
    };
    let out = Command::new("python3")
        .arg(client("smtp_submit.py"))
        .args([mode, &port.to_string()])
        .arg(ca(s))
        .args([login.0, login.1, from, subject])
        .args(to)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "smtp_submit.py {mode}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The one message of `user` whose Subject is `subject`.
fn arrived(s: &Suite, user: &str, subject: &str) -> Vec<u8> {
    let t = Instant::now();
    loop {
        for f in s.new_mail(user) {
            let m = read(&f);
            if String::from_utf8_lossy(&m).contains(&format!("\nSubject: {subject}\n")) {
                return m;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{subject:?} never reached {user}; log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn users_submit_with_smtplib_over_starttls_and_tls() {
    // smtpd_sender_login_maps: demo owns info@ too.
    let maps =
        std::env::temp_dir().join(format!("posthorn-loginmaps-suite-{}", std::process::id()));
    std::fs::write(&maps, "info@example.test demo@example.test\n").unwrap();
    let s = Suite::start(
        "submission",
        &["bob@example.test:bobpw"],
        &[
            "recipient_delimiter=+",
            &format!("smtpd_sender_login_maps=texthash:{}", maps.display()),
        ],
    );
    let demo = ("demo@example.test", "demo");

    // 587 with STARTTLS and 465 with TLS, to a local user: delivered, with
    // the submission in its Received: header and nothing else changed.
    for (mode, subject) in [("starttls", "sub starttls"), ("tls", "sub tls")] {
        let r = submit(
            &s,
            mode,
            demo,
            "demo@example.test",
            subject,
            &["bob@example.test"],
        );
        assert!(r.starts_with("sent "), "{mode}: {r}");
        let m = arrived(&s, "bob@example.test", subject);
        let text = String::from_utf8_lossy(&m);
        assert!(text.contains(" with ESMTPSA id "), "{text}");
        // The client's header and body as sent, with the Date: and
        // Message-ID: it lacked added at the end of the header (RFC 6409).
        let m = String::from_utf8_lossy(strip_trace(&m)).into_owned();
        let (head, body) = m.split_once("\n\n").expect("header and body");
        let lines: Vec<&str> = head.lines().collect();
        assert_eq!(
            lines[..3],
            [
                "From: <demo@example.test>",
                "To: <bob@example.test>",
                &format!("Subject: {subject}")
            ],
            "{m}"
        );
        assert_eq!(lines.len(), 5, "{m}");
        assert!(
            lines[3].starts_with("Date: ") && lines[3].ends_with(" +0000"),
            "{m}"
        );
        assert!(
            lines[4].starts_with("Message-ID: <20")
                && lines[4].ends_with('>')
                && lines[4].contains('@'),
            "{m}"
        );
        assert_eq!(body, "submitted with smtplib\n");
    }
    s.wait_log("sasl_method=PLAIN, sasl_username=demo@example.test");

    // A sender address with an extension is the user's own; another
    // user's is not; the mailbox names are case-insensitive.
    let r = submit(
        &s,
        "starttls",
        ("Demo@Example.Test", "demo"),
        "demo+x@example.test",
        "ext",
        &["bob@example.test"],
    );
    assert!(r.starts_with("sent "), "{r}");
    let r = submit(
        &s,
        "starttls",
        demo,
        "bob@example.test",
        "forged",
        &["bob@example.test"],
    );
    assert_eq!(
        r,
        "refused mail 553 5.7.1 <bob@example.test>: Sender address rejected: not owned by user demo@example.test"
    );
    // An address smtpd_sender_login_maps gives demo: demo's, not bob's.
    let r = submit(
        &s,
        "starttls",
        demo,
        "info@example.test",
        "alias",
        &["bob@example.test"],
    );
    assert!(r.starts_with("sent "), "{r}");
    let r = submit(
        &s,
        "starttls",
        ("bob@example.test", "bobpw"),
        "info@example.test",
        "alias forged",
        &["bob@example.test"],
    );
    assert_eq!(
        r,
        "refused mail 553 5.7.1 <info@example.test>: Sender address rejected: not owned by user bob@example.test"
    );
    let _ = std::fs::remove_file(&maps);

    // Without AUTH: no mail, not even to a local user.
    let r = submit(
        &s,
        "starttls",
        ("", ""),
        "demo@example.test",
        "anon",
        &["bob@example.test"],
    );
    assert_eq!(r, "refused mail 530 5.7.0 Authentication required");

    // A wrong password: 535 after the failure delay, and the log line
    // fail2ban's postfix filter (mode auth) matches.
    let t = Instant::now();
    let r = submit(
        &s,
        "tls",
        ("demo@example.test", "wrong"),
        "demo@example.test",
        "x",
        &["bob@example.test"],
    );
    assert_eq!(
        r,
        "refused auth 535 5.7.8 Error: authentication failed: authentication failure"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "answered before the delay"
    );
    s.wait_log("]: SASL PLAIN authentication failed: authentication failure");
    s.wait_log("]: SASL LOGIN authentication failed: authentication failure");
    assert!(!s.log().contains("wrong"), "no password in the log");

    // An authenticated user relays: accepted, queued for the outside.
    let r = submit(
        &s,
        "starttls",
        demo,
        "demo@example.test",
        "out",
        &["someone@elsewhere.example"],
    );
    assert!(r.starts_with("sent "), "{r}");
    let id = r.trim_start_matches("sent ");
    s.wait_log(&format!("{id}: to=<someone@elsewhere.example>"));

    // Nothing else arrived for bob (the refused ones): a barrier.
    let got = s.barrier(&["bob@example.test"]);
    assert_eq!(got.len(), 4, "only the four accepted messages for bob");

    harness::tool("fail2ban-regex");
    let out = Command::new("fail2ban-regex")
        .arg(s.dir.join("log"))
        .arg(r"postfix[mode=auth, _daemon=posthorn/\S+]")
        .output()
        .expect("fail2ban-regex runs");
    let text = String::from_utf8_lossy(&out.stdout);
    // smtplib's login tries PLAIN, then LOGIN: two failures, two lines.
    assert!(
        text.lines()
            .any(|l| l.starts_with("Lines:") && l.contains(" 2 matched")),
        "fail2ban's postfix-sasl filter matched both failures:\n{text}"
    );
}

#[test]
fn auth_only_under_tls_and_swaks_and_curl_submit() {
    let s = Suite::start("submission-clients", &["bob@example.test:bobpw"], &[]);
    // In the clear on 587: no AUTH offered, none taken, no mail.
    let mut c = Smtp::connect(submission_port(&s));
    let ehlo = c.cmd("EHLO client.example.org", 250);
    assert!(ehlo.iter().any(|l| l.ends_with("STARTTLS")), "{ehlo:?}");
    assert!(!ehlo.iter().any(|l| l.contains("AUTH")), "{ehlo:?}");
    let r = c.cmd("AUTH PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AGRlbW8=", 530);
    assert_eq!(r, ["530 5.7.0 Must issue a STARTTLS command first"]);
    c.cmd("MAIL FROM:<demo@example.test>", 530);
    c.cmd("QUIT", 221);
    // Port 25 offers no AUTH at all.
    let mut c = Smtp::connect(s.port);
    let ehlo = c.cmd("EHLO client.example.org", 250);
    assert!(!ehlo.iter().any(|l| l.contains("AUTH")), "{ehlo:?}");
    c.cmd("AUTH PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AGRlbW8=", 503);
    c.cmd("QUIT", 221);

    harness::tool("swaks");
    for (auth, extra) in [("PLAIN", "--tls"), ("LOGIN", "--tls-on-connect")] {
        let port = if extra == "--tls" {
            submission_port(&s)
        } else {
            submissions_port(&s)
        };
        let subject = format!("via swaks {auth}");
        let out = Command::new("swaks")
            .args(["--server", "127.0.0.1", "--port", &port.to_string()])
            .args(["--from", "demo@example.test", "--to", "bob@example.test"])
            .args([
                "--header",
                &format!("Subject: {subject}"),
                extra,
                "--tls-verify",
            ])
            .arg("--tls-ca-path")
            .arg(ca(&s))
            .args([
                "--auth",
                auth,
                "--auth-user",
                "demo@example.test",
                "--auth-password",
                "demo",
            ])
            .output()
            .expect("swaks runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "swaks {auth}:\n{text}");
        assert!(
            text.contains("<~  235 2.7.0 Authentication successful"),
            "{text}"
        );
        assert!(text.contains("<~  250 2.0.0 Ok: queued as"), "{text}");
        arrived(&s, "bob@example.test", &subject);
    }

    harness::tool("curl");
    for (url, subject) in [
        (
            format!("smtp://127.0.0.1:{}", submission_port(&s)),
            "via curl smtp",
        ),
        (
            format!("smtps://127.0.0.1:{}", submissions_port(&s)),
            "via curl smtps",
        ),
    ] {
        let mut child = Command::new("curl")
            .args(["-sS", "--max-time", "30", "--ssl-reqd", "--cacert"])
            .arg(ca(&s))
            .args(["--user", "demo@example.test:demo"])
            .args([
                "--mail-from",
                "demo@example.test",
                "--mail-rcpt",
                "bob@example.test",
            ])
            .args(["--upload-file", "-", &url])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("Subject: {subject}\r\n\r\nfrom curl\r\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m = arrived(&s, "bob@example.test", subject);
        assert!(String::from_utf8_lossy(&m).contains(" with ESMTPSA id "));
    }
}
