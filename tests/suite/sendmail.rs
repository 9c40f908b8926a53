//! sendmail, postdrop and pickup: local submission through maildrop/, as
//! cron and friends use it, with real processes (sendmail runs postdrop,
//! which pokes the running pickup).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::harness::{read, Suite, BIN};

/// `posthorn sendmail -C DIR ARGS` with `input` on standard input.
fn sendmail(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut c = Command::new(BIN)
        .arg("sendmail")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sendmail runs");
    // Without -i sendmail stops reading at a lone dot and may exit before
    // the rest is written: a broken pipe then is what a shell pipeline sees too.
    match c.stdin.take().unwrap().write_all(input) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.unwrap(),
    }
    c.wait_with_output().unwrap()
}

fn text(p: &Path) -> String {
    String::from_utf8_lossy(&read(p)).into_owned()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn sendmail_t_i_delivers_with_bcc_removed_lone_dot_and_no_final_newline() {
    let s = Suite::start("sendmail-t", &["hidden@example.test:pw"], &[]);
    let msg = b"To: Demo User <demo@example.test>\n\
Bcc: hidden@example.test\n\
Subject: cron output\n\
\n\
first line\n\
.\n\
after the dot\r\n\
last line without newline";
    let out = sendmail(&s.dir, &["-t", "-i", "-F", "Cron Daemon"], msg);
    assert!(out.status.success(), "{out:?}");
    let demo = s.wait_mail("demo@example.test", 1);
    let hidden = s.wait_mail("hidden@example.test", 1);
    for m in [&demo[0], &hidden[0]] {
        let t = text(m);
        assert!(!t.contains("Bcc:"), "Bcc: removed:\n{t}");
        let (head, body) = t.split_once("\n\n").expect("header and body");
        assert_eq!(
            body, "first line\n.\nafter the dot\nlast line without newline\n",
            "body intact"
        );
        let uid = nix::unistd::getuid();
        assert!(
            head.contains(&format!(
                "Received: by mail.example.test (posthorn, from userid {uid})\n\tid "
            )),
            "{head}"
        );
        assert!(
            head.contains("\nTo: Demo User <demo@example.test>\n"),
            "{head}"
        );
        assert!(head.contains("\nSubject: cron output\n"), "{head}");
        assert!(head.contains("\nFrom: \"Cron Daemon\" <"), "{head}");
        assert!(head.contains("@mail.example.test>\n"), "{head}");
        assert!(head.contains("\nDate: "), "{head}");
        assert!(head.contains("\nMessage-ID: <"), "{head}");
    }
    // Postfix's log shape: ID: uid=UID from=<user@$myorigin>.
    let log = s.log();
    let line = log
        .lines()
        .find(|l| l.contains("posthorn/pickup[") && l.contains(": uid="))
        .unwrap_or_else(|| panic!("no pickup line in:\n{log}"));
    assert!(line.contains("@mail.example.test>"), "{line}");
    // Nothing is left in maildrop/.
    assert!(files(&s.dir.join("spool/maildrop")).is_empty());
}

#[test]
fn sendmail_without_i_ends_at_a_dot_and_takes_f_and_argument_recipients() {
    let s = Suite::start("sendmail-dot", &[], &[]);
    let out = sendmail(
        &s.dir,
        &["-f", "robot@example.org", "demo@example.test"],
        b"Subject: dot\r\n\r\nkept\r\n.\r\nnot part of the message\r\n",
    );
    assert!(out.status.success(), "{out:?}");
    let m = s.wait_mail("demo@example.test", 1);
    let t = text(&m[0]);
    assert!(t.starts_with("Return-Path: <robot@example.org>\n"), "{t}");
    assert!(t.contains("\nFrom: robot@example.org\n"), "{t}");
    assert!(t.ends_with("\n\nkept\n"), "{t}");

    // No recipients: EX_USAGE, nothing queued.
    let out = sendmail(&s.dir, &[], b"Subject: none\n\nx\n");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no recipients"));
    // -t and no recipient in the header: EX_DATAERR, nothing queued.
    let out = sendmail(
        &s.dir,
        &["-t"],
        b"To: undisclosed-recipients:;\nSubject: x\n\nx\n",
    );
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no recipient addresses found"));
    // A bad option: EX_USAGE.
    let out = sendmail(&s.dir, &["-k", "demo@example.test"], b"x\n");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let rest = s.barrier(&["demo@example.test"]);
    assert_eq!(rest.len(), 1, "only the first message arrived");
}

#[test]
fn sendmail_bs_speaks_smtp_on_stdin_and_stdout() {
    let s = Suite::start("sendmail-bs", &[], &[]);
    let mut c = Command::new(BIN)
        .arg("sendmail")
        .arg("-C")
        .arg(&s.dir)
        .arg("-bs")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = c.stdin.take().unwrap();
    let mut r = BufReader::new(c.stdout.take().unwrap());
    let mut reply = || {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            assert!(l.ends_with("\r\n"), "CRLF reply line: {l:?}");
            let last = l.as_bytes().get(3) == Some(&b' ');
            lines.push(l);
            if last {
                return lines.join("");
            }
        }
    };
    assert!(reply().starts_with("220 mail.example.test ESMTP"));
    let mut cmd = |line: &str, want: &str| {
        w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        w.flush().unwrap();
        let got = reply();
        assert!(got.starts_with(want), "{line}: {got}");
    };
    cmd("EHLO client.example", "250-mail.example.test");
    cmd("DATA", "503 5.5.1");
    cmd("MAIL FROM:<bs@example.org>", "250 2.1.0");
    cmd("RCPT TO:<demo@example.test>", "250 2.1.5");
    cmd("NOOP", "250 2.0.0");
    cmd("DATA", "354 ");
    cmd(
        "Subject: via -bs\r\n\r\n..stuffed\r\n.",
        "250 2.0.0 Ok: queued",
    );
    cmd("RSET", "250 2.0.0");
    cmd("VRFY demo", "502 5.5.1");
    cmd("QUIT", "221 2.0.0");
    drop(w);
    assert!(c.wait().unwrap().success());
    let m = s.wait_mail("demo@example.test", 1);
    let t = text(&m[0]);
    assert!(t.starts_with("Return-Path: <bs@example.org>\n"), "{t}");
    assert!(t.contains("\nSubject: via -bs\n"), "{t}");
    assert!(t.ends_with("\n\n.stuffed\n"), "unstuffed: {t}");
}

#[test]
fn mail_submitted_while_stopped_is_delivered_after_start() {
    let mut s = Suite::start("sendmail-stopped", &[], &[]);
    s.stop();
    let out = sendmail(
        &s.dir,
        &["-i", "demo@example.test"],
        b"Subject: while stopped\n\nqueued in maildrop\n",
    );
    assert!(
        out.status.success(),
        "postdrop works without pickup: {out:?}"
    );
    let waiting = files(&s.dir.join("spool/maildrop"));
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert!(waiting[0].starts_with("M."), "{waiting:?}");
    s.spawn(&[], &[]);
    let m = s.wait_mail("demo@example.test", 1);
    assert!(text(&m[0]).contains("queued in maildrop"));
    // After a reload (pickup stops and master starts a new one) mail still
    // flows, once.
    s.reload();
    let out = sendmail(
        &s.dir,
        &["demo@example.test"],
        b"Subject: after reload\n\nx\n",
    );
    assert!(out.status.success(), "{out:?}");
    s.wait_mail("demo@example.test", 2);
    let all = s.barrier(&["demo@example.test"]);
    assert_eq!(all.len(), 2, "each message once");
}

#[test]
fn a_bad_maildrop_file_goes_to_corrupt_and_later_mail_still_arrives() {
    let s = Suite::start("sendmail-corrupt", &[], &[]);
    let maildrop = s.dir.join("spool/maildrop");
    // Garbage, and a file cut short (a writer that died after the rename
    // cannot exist, but a planted one can).
    std::fs::write(maildrop.join("M.0.000000001.1"), b"garbage\n").unwrap();
    let mut cut = b"PHM\x01U\x04\x00\x00\x00".to_vec();
    cut.extend_from_slice(&nix::unistd::getuid().as_raw().to_le_bytes());
    cut.extend_from_slice(b"S\x05\x00\x00\x00alice");
    std::fs::write(maildrop.join("M.0.000000002.1"), &cut).unwrap();
    // The barrier: a good message through sendmail, after them.
    let out = sendmail(
        &s.dir,
        &["-i", "demo@example.test"],
        b"Subject: good\n\nok\n",
    );
    assert!(out.status.success(), "{out:?}");
    let m = s.wait_mail("demo@example.test", 1);
    assert_eq!(m.len(), 1);
    assert!(text(&m[0]).contains("Subject: good"));
    let corrupt = files(&s.dir.join("spool/corrupt"));
    assert_eq!(corrupt, ["M.0.000000001.1", "M.0.000000002.1"]);
    let log = s.log();
    assert!(
        log.contains("warning: maildrop/M.0.000000001.1: not a maildrop stream (bad magic); moved to corrupt/M.0.000000001.1"),
        "{log}"
    );
    assert!(
        log.contains("warning: maildrop/M.0.000000002.1: truncated (no end record); moved to corrupt/M.0.000000002.1"),
        "{log}"
    );
    assert!(files(&maildrop).is_empty());
    // sendmail -bp is mailq.
    s.barrier(&["demo@example.test"]);
    let out = sendmail(&s.dir, &["-bp"], b"");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Mail queue is empty\n"
    );
}
