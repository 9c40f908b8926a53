//! Whole-suite tests: master, smtpd, qmgr and local delivery as real
//! processes in a temp directory, driven over real sockets (and by Python's
//! smtplib and swaks when installed). Each test starts its own posthorn.

mod aliases;
mod auth;
mod availability;
mod crash;
mod crashloop;
mod dns;
mod dsn;
mod harness;
mod imap;
mod mbox;
mod outbound;
mod pop3;
mod privsep;
mod queue;
mod quota;
mod rdns;
mod sendmail;
mod skeleton;
mod submission;
mod tag_folders;
mod tls;
mod trust_dane;
mod trust_inbound;
mod trust_records;
mod trust_sign;
mod trust_sts;
mod r#virtual;

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use harness::{crlf_to_lf, read, strip_trace, Smtp, Suite, BIN};

const MESSAGE: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: demo@example.test\r\n\
Subject: byte exact\r\n\
Message-ID: <exact-1@example.org>\r\n\
\r\n\
First line.\r\n\
.A line that starts with a dot.\r\n\
..Two dots.\r\n\
Tabs\tand trailing spaces   \r\n\
\r\n\
Last line.\r\n";

#[test]
fn delivers_byte_exact_into_maildir() {
    let s = Suite::start("exact", &[], &[]);
    let mut c = Smtp::connect(s.port);
    let greeting = c.cmd("EHLO client.example.org", 250);
    assert!(
        greeting.iter().any(|l| l.ends_with("PIPELINING")),
        "{greeting:?}"
    );
    let id = c.mail("alice@example.org", &["demo@example.test"], MESSAGE);
    c.cmd("QUIT", 221);
    let files = s.wait_mail("demo@example.test", 1);
    let file = read(&files[0]);
    assert_eq!(strip_trace(&file), crlf_to_lf(MESSAGE).as_slice());
    let text = String::from_utf8_lossy(&file);
    // The client's name as /etc/hosts confirms it (localhost, mostly).
    assert!(
        text.starts_with(&format!(
            "Return-Path: <alice@example.org>\nDelivered-To: demo@example.test\n\
             Authentication-Results: mail.example.test;\n\tspf=none smtp.mailfrom=alice@example.org;\n\
             \tdkim=none;\n\tdmarc=none header.from=example.org;\n\tarc=none\n\
             Received: from client.example.org ({} [127.0.0.1])\n",
            harness::local_name()
        )),
        "{text}"
    );
    assert!(text.contains(&format!("with ESMTP id {id}")), "{text}");
    s.wait_log(&format!("{id}: removed"));
    let log = s.log();
    assert!(log.contains("posthorn/smtpd["), "{log}");
    assert!(
        log.contains(&format!("{id}: client={}", harness::local_client())),
        "{log}"
    );
    assert!(
        log.contains(&format!("{id}: from=<alice@example.org>, size=")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "{id}: to=<demo@example.test>, relay=virtual, delay="
        )),
        "{log}"
    );
    assert!(log.contains("status=sent (delivered to maildir)"), "{log}");
    // Maildir file: mode 0600, ",S=" size and ",W=" size with CRLF line
    // ends in its name.
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&files[0]).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let lf = file.iter().filter(|b| **b == b'\n').count();
    assert!(files[0].to_string_lossy().ends_with(&format!(
        ",S={},W={}",
        file.len(),
        file.len() + lf
    )));
    // Nothing left in the queue.
    for q in ["incoming", "active", "deferred"] {
        assert!(
            harness::queue_files(&s.dir.join("spool").join(q)).is_empty(),
            "{q} is empty"
        );
    }
}

#[test]
fn several_recipients_one_transaction() {
    let s = Suite::start(
        "multi",
        &["bob@example.test:b", "carol@example.test:c"],
        &["recipient_delimiter=+"],
    );
    let mut c = Smtp::connect(s.port);
    c.cmd("EHLO c", 250);
    c.mail(
        "alice@example.org",
        &[
            "demo@example.test",
            "Bob@Example.Test",
            "carol+lists@example.test",
        ],
        b"Subject: to three\r\n\r\nhi all\r\n",
    );
    c.cmd("QUIT", 221);
    for u in [
        "demo@example.test",
        "bob@example.test",
        "carol@example.test",
    ] {
        let f = s.wait_mail(u, 1);
        assert_eq!(strip_trace(&read(&f[0])), b"Subject: to three\n\nhi all\n");
    }
}

#[test]
fn rejects_unknown_users_relaying_and_oversized_mail() {
    let s = Suite::start("reject", &[], &["message_size_limit=2000"]);
    let mut c = Smtp::connect(s.port);
    let ehlo = c.cmd("EHLO c", 250);
    assert!(ehlo.contains(&"250-SIZE 2000".to_string()), "{ehlo:?}");
    c.cmd("MAIL FROM:<a@example.org>", 250);
    let r = c.cmd("RCPT TO:<nobody@example.test>", 550);
    assert_eq!(r[0], "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table");
    let r = c.cmd("RCPT TO:<victim@elsewhere.org>", 554);
    assert_eq!(
        r[0],
        "554 5.7.1 <victim@elsewhere.org>: Relay access denied"
    );
    let r = c.cmd("RCPT TO:<no-such-system-user-xyz@localhost>", 550);
    assert!(
        r[0].contains("User unknown in local recipient table"),
        "{r:?}"
    );
    c.cmd("DATA", 554);
    c.cmd("RSET", 250);
    c.cmd("MAIL FROM:<a@example.org> SIZE=2001", 552);
    c.cmd("MAIL FROM:<a@example.org>", 250);
    c.cmd("RCPT TO:<demo@example.test>", 250);
    c.cmd("DATA", 354);
    let big = "x".repeat(70) + "\r\n";
    for _ in 0..40 {
        c.raw(big.as_bytes());
    }
    c.raw(b".\r\n");
    let r = c.expect(552);
    assert_eq!(r[0], "552 5.3.4 Message size exceeds fixed limit");
    // The session goes on.
    c.cmd("NOOP", 250);
    c.cmd("QUIT", 221);
    s.wait_log(&format!(
        "NOQUEUE: reject: RCPT from {}: 554 5.7.1 <victim@elsewhere.org>: Relay access denied;",
        harness::local_client()
    ));
    assert_eq!(
        s.barrier(&["demo@example.test"]),
        Vec::<std::path::PathBuf>::new(),
        "nothing but the barrier message was delivered"
    );
    assert!(
        harness::queue_files(&s.dir.join("spool/incoming")).is_empty(),
        "nothing half-written was queued"
    );
    // Only the empty files smtpd keeps ready (16 per process) are there, none bigger.
    let tmp: Vec<_> = std::fs::read_dir(s.dir.join("spool/incoming"))
        .unwrap()
        .flatten()
        .collect();
    assert!(
        tmp.len() <= 16 * harness::SMTPD_PROCESSES,
        "{} temporary files",
        tmp.len()
    );
    assert!(
        tmp.iter().all(|e| e.metadata().unwrap().len() == 0),
        "the aborted message's file is gone"
    );
}

#[test]
fn pipelined_transactions_and_bdat() {
    let s = Suite::start("pipe", &["bob@example.test:b"], &[]);
    let mut c = Smtp::connect(s.port);
    c.raw(
        b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<demo@example.test>\r\nRCPT TO:<nobody@example.test>\r\n\
DATA\r\nSubject: one\r\n\r\nfirst\r\n.\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.test>\r\n\
BDAT 16\r\nSubject: two\r\n\r\nBDAT 8 LAST\r\nsecond\r\nQUIT\r\n",
    );
    let codes: Vec<u16> = (0..10).map(|_| c.reply().0).collect();
    assert_eq!(
        codes,
        vec![250, 250, 250, 550, 354, 250, 250, 250, 250, 250],
        "pipelined replies in order"
    );
    assert_eq!(c.reply().0, 221);
    let d = s.wait_mail("demo@example.test", 1);
    assert_eq!(strip_trace(&read(&d[0])), b"Subject: one\n\nfirst\n");
    let b = s.wait_mail("bob@example.test", 1);
    assert_eq!(strip_trace(&read(&b[0])), b"Subject: two\n\nsecond\n");
}

#[test]
fn smuggling_is_refused_end_to_end() {
    let s = Suite::start("smuggle", &["bob@example.test:b"], &[]);
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO c", 250);
    c.cmd("MAIL FROM:<a@example.org>", 250);
    c.cmd("RCPT TO:<demo@example.test>", 250);
    c.cmd("DATA", 354);
    c.raw(b"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nsmuggled\r\n.\r\n");
    let r = c.expect(550);
    assert_eq!(r[0], "550 5.5.2 Error: bare <LF> received");
    c.cmd("QUIT", 221);
    assert_eq!(
        s.barrier(&["demo@example.test", "bob@example.test"]),
        Vec::<std::path::PathBuf>::new(),
        "neither the refused message nor a smuggled second one was delivered"
    );
}

#[test]
fn python_smtplib_client() {
    let s = Suite::start("smtplib", &[], &[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/clients/smtplib_send.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(s.port.to_string())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "smtplib: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let f = s.wait_mail("demo@example.test", 2);
    let all: Vec<String> = f
        .iter()
        .map(|p| String::from_utf8_lossy(&read(p)).to_string())
        .collect();
    assert!(
        all.iter()
            .any(|m| m.contains("Subject: via smtplib") && m.contains("Grüße, 8bit body")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|m| m.contains("Subject: via smtplib send_message")),
        "{all:?}"
    );
}

#[test]
fn swaks_client() {
    if !harness::tool("swaks") {
        return;
    }
    let s = Suite::start("swaks", &[], &[]);
    let out = Command::new("swaks")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &s.port.to_string(),
            "--from",
            "sender@example.org",
        ])
        .args([
            "--to",
            "demo@example.test",
            "--header",
            "Subject: via swaks",
            "--body",
            "swaks body",
        ])
        .output()
        .expect("swaks runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "swaks failed:\n{text}");
    assert!(text.contains("<-  250 2.0.0 Ok: queued as"), "{text}");
    let f = s.wait_mail("demo@example.test", 1);
    let m = String::from_utf8_lossy(&read(&f[0])).to_string();
    assert!(
        m.contains("Subject: via swaks") && m.contains("swaks body"),
        "{m}"
    );
    // And a rejected recipient, as swaks reports it.
    let out = Command::new("swaks")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &s.port.to_string(),
            "--to",
            "nobody@example.test",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("<** 550 5.1.1"));
}

#[test]
fn loop_bounces_to_the_sender() {
    let s = Suite::start("bounce", &[], &["hopcount_limit=5"]);
    let mut m = Vec::new();
    for i in 0..6 {
        m.extend_from_slice(
            format!("Received: from hop{i}.example.org by x; Thu, 1 Jan 2026 00:00:00 +0000\r\n")
                .as_bytes(),
        );
    }
    m.extend_from_slice(b"Subject: looping\r\n\r\nround and round\r\n");
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO c", 250);
    // The sender is a local user, so the bounce comes back to the same box.
    let id = c.mail("demo@example.test", &["demo@example.test"], &m);
    c.cmd("QUIT", 221);
    s.wait_log(&format!("{id}: sender non-delivery notification:"));
    let f = s.wait_mail("demo@example.test", 1);
    let text = String::from_utf8_lossy(&read(&f[0])).to_string();
    assert!(text.starts_with("Return-Path: <>\n"), "{text}");
    assert!(
        text.contains("Subject: Undelivered Mail Returned to Sender"),
        "{text}"
    );
    assert!(
        text.contains("Content-Type: multipart/report; report-type=delivery-status;"),
        "{text}"
    );
    assert!(
        text.contains("Final-Recipient: rfc822; demo@example.test\nAction: failed\nStatus: 5.4.6"),
        "{text}"
    );
    assert!(
        text.contains("Subject: looping"),
        "the original is returned: {text}"
    );
    s.wait_log(&format!("{id}: removed"));
    assert_eq!(
        s.barrier(&["demo@example.test"]),
        f[..1].to_vec(),
        "the bounce, and not the looping message itself, was delivered"
    );
}

#[test]
fn relay_from_mynetworks_is_queued_and_deferred() {
    // elsewhere.org's MX takes no connection: deferred.
    let zone: dns::Zone = Default::default();
    zone.lock().unwrap().insert(
        "elsewhere.org".into(),
        vec![dns::Rr::Addr("127.0.0.2".parse().unwrap())],
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Suite::start(
        "relay",
        &[],
        &[
            "mynetworks=127.0.0.0/8",
            &format!("dns_servers={}", dns::serve(zone)),
            &format!("smtp_tcp_port={closed}"),
        ],
    );
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO c", 250);
    let id = c.mail(
        "demo@example.test",
        &["someone@elsewhere.org"],
        b"Subject: out\r\n\r\nbody\r\n",
    );
    c.cmd("QUIT", 221);
    s.wait_log(&format!(
        "{id}: to=<someone@elsewhere.org>, relay=elsewhere.org:{closed}, "
    ));
    s.wait_log("status=deferred (connect to 127.0.0.2:");
    let t = std::time::Instant::now();
    while !s.dir.join("spool/deferred").join(&id).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "message deferred, not lost:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn second_master_refuses_and_config_errors_name_the_line() {
    let s = Suite::start("second", &[], &[]);
    let out = Command::new(BIN)
        .args(["start", "-c"])
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = Command::new(BIN)
        .args(["status", "-c"])
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(st.status.success(), "status says running");
    // A broken copy of the configuration: check names file and line.
    let bad = s.dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("main.cf"),
        "myhostname = x\nmessage_size_limit = lots\n",
    )
    .unwrap();
    std::fs::write(
        bad.join("master.cf"),
        "smtp inet n - n - 1 smtpd\nqmgr unix n - n - 1 frobnicate\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("main.cf line 2: message_size_limit: \"lots\" is not a whole number"),
        "{err}"
    );
    assert!(
        err.contains("master.cf line 2: unknown command \"frobnicate\""),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dev configuration checks clean: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn workers_are_restarted_and_reload_applies_changes() {
    let s = Suite::start("restart", &[], &[]);
    let smtpd = s.workers("posthorn-smtpd");
    assert_eq!(
        smtpd.len(),
        harness::SMTPD_PROCESSES,
        "smtpd processes: SMTP (maxproc 2), submission, submissions"
    );
    for pid in &smtpd {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    for pid in &smtpd {
        s.wait_log(&format!("pid {pid} killed by signal 9"));
    }
    let t = std::time::Instant::now();
    while s.workers("posthorn-smtpd").len() < harness::SMTPD_PROCESSES {
        assert!(t.elapsed() < Duration::from_secs(20), "smtpd restarted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The listening socket stayed open in master: a client just waits for the new smtpd.
    let mut c = Smtp::connect(s.port);
    c.cmd("QUIT", 221);
    // Reload: change the banner in main.cf, SIGHUP via posthorn reload.
    let out = Command::new(BIN)
        .args(["config", "-c"])
        .arg(&s.dir)
        .args(["-e", "smtpd_banner=$myhostname ESMTP reloaded"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new(BIN)
        .args(["reload", "-c"])
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_log("reload -- version");
    let t = std::time::Instant::now();
    loop {
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        let mut b = [0u8; 64];
        let n = sock.read(&mut b).unwrap();
        if String::from_utf8_lossy(&b[..n]).contains("ESMTP reloaded") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "new banner never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Mail still flows after the reload.
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO c", 250);
    c.mail(
        "a@example.org",
        &["demo@example.test"],
        b"Subject: after reload\r\n\r\nx\r\n",
    );
    s.wait_mail("demo@example.test", 1);
}

#[test]
fn corrupt_queue_file_is_quarantined() {
    let s = Suite::start("corrupt", &[], &[]);
    let name = "00000000000000"; // a valid queue id
    let planted = s.dir.join("spool/incoming").join(name);
    std::fs::write(&planted, b"PHQ\x01garbage that is no queue file").unwrap();
    // Complete (execute bit), as a finished queue file is.
    std::fs::set_permissions(
        &planted,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    // Any commit wakes qmgr; the periodic scan would find it too.
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO c", 250);
    c.mail(
        "a@example.org",
        &["demo@example.test"],
        b"Subject: y\r\n\r\ny\r\n",
    );
    s.wait_log(&format!("{name}: "));
    s.wait_log("moved to corrupt");
    assert!(s.dir.join("spool/corrupt").join(name).exists());
    s.wait_mail("demo@example.test", 1);
}

#[test]
fn start_and_stop_in_the_background() {
    // Generate a configuration with dev, stop it, then run it daemonized.
    let mut s = Suite::start("daemon", &[], &["maillog_file=$config_directory/maillog"]);
    s.stop();
    // Whatever happens below, no daemon outlives the test.
    struct StopOnDrop(std::path::PathBuf);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            let _ = Command::new(BIN).args(["stop", "-c"]).arg(&self.0).output();
        }
    }
    let _guard = StopOnDrop(s.dir.clone());
    let out = Command::new(BIN)
        .args(["start", "-c"])
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid_text = std::fs::read_to_string(s.dir.join("run/master.pid")).unwrap();
    let pid: i32 = pid_text.trim().parse().unwrap();
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO c", 250);
    c.mail(
        "a@example.org",
        &["demo@example.test"],
        b"Subject: daemon\r\n\r\nz\r\n",
    );
    c.cmd("QUIT", 221);
    s.wait_mail("demo@example.test", 1);
    let out = Command::new(BIN)
        .args(["stop", "-c"])
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
        "master is gone"
    );
    assert!(harness::children(pid, "").is_empty(), "no worker left");
    let log = std::fs::read_to_string(s.dir.join("maillog")).unwrap();
    assert!(
        log.contains("posthorn/master[") && log.contains("status=sent"),
        "{log}"
    );
    assert!(!s.dir.join("run/master.pid").exists(), "pid file removed");
}

#[test]
fn spool_failure_gets_452_never_250() {
    let s = Suite::start("spoolfail", &[], &[]);
    let incoming = s.dir.join("spool/incoming");
    let aside = s.dir.join("spool/incoming.aside");
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO c", 250);
    // Break the spool: incoming/ is no longer a directory.
    std::fs::rename(&incoming, &aside).unwrap();
    std::fs::write(&incoming, b"not a directory").unwrap();
    let mut codes = Vec::new();
    for _ in 0..3 {
        c.cmd("MAIL FROM:<a@example.org>", 250);
        c.cmd("RCPT TO:<demo@example.test>", 250);
        c.send("DATA");
        let (code, lines) = c.reply();
        if code == 354 {
            c.raw(b"Subject: lost?\r\n\r\nx\r\n.\r\n");
            let (code, lines) = c.reply();
            assert_eq!(
                lines[0], "452 4.3.1 Insufficient system storage",
                "{lines:?}"
            );
            codes.push(code);
        } else {
            assert_eq!(
                lines[0], "452 4.3.1 Insufficient system storage",
                "{lines:?}"
            );
            codes.push(code);
        }
        c.cmd("RSET", 250);
    }
    assert_eq!(codes, vec![452, 452, 452]);
    // Repaired, the same session queues mail again.
    std::fs::remove_file(&incoming).unwrap();
    std::fs::rename(&aside, &incoming).unwrap();
    c.mail(
        "a@example.org",
        &["demo@example.test"],
        b"Subject: after repair\r\n\r\nok\r\n",
    );
    c.cmd("QUIT", 221);
    s.wait_mail("demo@example.test", 1);
    let f = s.barrier(&["demo@example.test"]);
    assert_eq!(
        f.len(),
        1,
        "only the message after the repair was delivered: {f:?}"
    );
    assert!(String::from_utf8_lossy(&read(&f[0])).contains("Subject: after repair"));
    assert!(
        s.log().contains("queue file write error") || s.log().contains("cannot create queue file")
    );
}

#[test]
fn check_names_a_tls_wrapper_service_without_a_certificate() {
    let dir = std::env::temp_dir().join(format!("posthorn-check-wrapper-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.cf"),
        format!(
            "queue_directory = {0}/spool\nmail_owner = {1}\nlogin_user = {1}\n",
            dir.display(),
            common_user()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("master.cf"),
        "127.0.0.1:2995 inet n - n - 1 pop3-login\n  -o pop3d_tls_wrappermode=yes\nlogin/pop3 unix - n n - 1 pop3d\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&dir)
        .output()
        .expect("posthorn check runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("master.cf line 1 (127.0.0.1:2995): TLS wrapper mode without a certificate"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The user running the tests (root, or nobody in the second run).
fn common_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map_or_else(|| "root".into(), |u| u.name)
}
