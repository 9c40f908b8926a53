//! posthorn-auth in a running posthorn (`posthorn dev`): Verify and Lookup
//! over `private/auth` from this test (the same user, as a dispatcher would
//! be root), the failure delay, smtpd's recipient check through auth, users
//! added with `posthorn user` seen without a restart, and the log lines
//! checked with the real fail2ban-regex and its stock dovecot filter.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::auth::{AuthClient, AuthReply, Credentials, FailReason, Mechanism};

use crate::harness::{Smtp, Suite, BIN};

fn creds(user: &str, password: &str) -> Credentials {
    Credentials {
        service: "pop3".into(),
        mechanism: Mechanism::Plain,
        authzid: String::new(),
        user: user.into(),
        password: password.into(),
        client: Some("127.0.0.1".parse().expect("address")),
        local_port: 2110,
        secured: true,
    }
}

fn auth(s: &Suite) -> AuthClient {
    AuthClient::connect(s.dir.join("spool/private/auth")).expect("connect to private/auth")
}

fn posthorn(s: &Suite, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("-c")
        .arg(&s.dir)
        .output()
        .expect("posthorn runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn auth_answers_verify_and_lookup_and_fail2ban_reads_its_log() {
    let s = Suite::start("auth", &["bob@example.test:b"], &[]);
    let mut c = auth(&s);
    match c.lookup("Demo@Example.Test").expect("lookup") {
        AuthReply::Ok(u) => {
            assert_eq!(u.user, "demo@example.test");
            assert_eq!(u.maildir, s.maildir("demo@example.test"));
            assert!(!u.default_privs || common::privilege::is_root());
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(
        c.lookup("nobody@example.test").unwrap(),
        AuthReply::NotFound
    );
    match c
        .verify(&creds("demo@example.test", "demo"))
        .expect("verify")
    {
        AuthReply::Ok(u) => assert_eq!(u.maildir, s.maildir("demo@example.test")),
        r => panic!("{r:?}"),
    }
    // Wrong password and unknown user: the same answer, the delay doubling.
    assert_eq!(
        c.verify(&creds("demo@example.test", "wrong")).unwrap(),
        AuthReply::Failed {
            delay_ms: 2000,
            reason: FailReason::Credentials
        }
    );
    assert_eq!(
        c.verify(&creds("nobody@example.test", "x")).unwrap(),
        AuthReply::Failed {
            delay_ms: 4000,
            reason: FailReason::Credentials
        }
    );
    s.wait_log("passwd-file(demo@example.test,127.0.0.1): Password mismatch");
    s.wait_log("passwd-file(nobody@example.test,127.0.0.1): unknown user");
    let log = s.log();
    assert!(log.contains(" posthorn/auth["), "{log}");
    fail2ban(&s.dir.join("log"), 2);
}

/// fail2ban-regex with the stock dovecot filter and posthorn's daemon name
/// (posthorn-auth(8)'s example jail) finds exactly `want` failures.
fn fail2ban(log: &Path, want: usize) {
    let spec = r"dovecot[_daemon=posthorn/\S+]";
    let out = match Command::new("fail2ban-regex").arg(log).arg(spec).output() {
        Ok(o) => o,
        Err(e) => {
            let ci = common::privilege::is_root() && Path::new("/etc/debian_version").exists();
            assert!(
                !ci,
                "fail2ban-regex is missing ({e}); .ci/run installs fail2ban"
            );
            eprintln!("fail2ban-regex not installed ({e}): the fail2ban check is skipped");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fail2ban-regex: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Failregex: "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok());
    assert_eq!(total, Some(want), "fail2ban-regex {spec}:\n{text}");
}

#[test]
fn rcpt_through_auth_and_users_added_without_a_restart() {
    let s = Suite::start("authrcpt", &[], &[]);
    let mut smtp = Smtp::connect(s.port);
    smtp.cmd("EHLO c", 250);
    smtp.cmd("MAIL FROM:<a@example.org>", 250);
    smtp.cmd("RCPT TO:<demo@example.test>", 250);
    let r = smtp.cmd("RCPT TO:<nobody@example.test>", 550);
    assert_eq!(
        r[0],
        "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table"
    );
    // A new user, with the default scheme and with another one.
    let (ok, out, err) = posthorn(
        &s,
        &["user", "add", "New@Example.Test", "--password", "s3cret"],
    );
    assert!(ok, "{out}{err}");
    let (ok, _, err) = posthorn(&s, &["user", "add", "new@example.test", "--password", "x"]);
    assert!(
        !ok && err.contains("new@example.test already exists"),
        "{err}"
    );
    let (ok, out, err) = posthorn(
        &s,
        &[
            "user",
            "add",
            "old@example.test",
            "--password",
            "pw",
            "--scheme",
            "sha512-crypt",
        ],
    );
    assert!(ok, "{out}{err}");
    let users = std::fs::read_to_string(s.dir.join("users")).unwrap();
    assert!(
        users.contains("new@example.test:{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$"),
        "{users}"
    );
    assert!(
        users.contains("old@example.test:{SHA512-CRYPT}$6$"),
        "{users}"
    );
    let mode = std::fs::metadata(s.dir.join("users"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (ok, out, _) = posthorn(&s, &["user", "list"]);
    assert!(ok);
    assert_eq!(
        out,
        "demo@example.test\nnew@example.test\nold@example.test\n"
    );
    // auth sees the new users within a second or so, without a restart.
    let mut c = auth(&s);
    let t = Instant::now();
    loop {
        match c.verify(&creds("new@example.test", "s3cret")).unwrap() {
            AuthReply::Ok(u) => {
                assert_eq!(u.maildir, s.maildir("new@example.test"));
                break;
            }
            AuthReply::Failed { .. } if t.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(200));
            }
            r => panic!("{r:?}"),
        }
    }
    assert!(matches!(
        c.verify(&creds("old@example.test", "pw")).unwrap(),
        AuthReply::Ok(_)
    ));
    // And smtpd, asking auth, accepts mail for it now.
    smtp.cmd("RCPT TO:<new@example.test>", 250);
    smtp.cmd("RSET", 250);
    smtp.cmd("QUIT", 221);
    // passwd, then del.
    let (ok, out, err) = posthorn(
        &s,
        &[
            "user",
            "passwd",
            "new@example.test",
            "--password",
            "changed",
        ],
    );
    assert!(ok, "{out}{err}");
    let t = Instant::now();
    while !matches!(
        c.verify(&creds("new@example.test", "changed")).unwrap(),
        AuthReply::Ok(_)
    ) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the new password works"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(matches!(
        c.verify(&creds("new@example.test", "s3cret")).unwrap(),
        AuthReply::Failed { .. }
    ));
    let (ok, out, err) = posthorn(&s, &["user", "del", "old@example.test"]);
    assert!(ok, "{out}{err}");
    let (_, out, _) = posthorn(&s, &["user", "list"]);
    assert_eq!(out, "demo@example.test\nnew@example.test\n");
    let (ok, _, err) = posthorn(&s, &["user", "del", "old@example.test"]);
    assert!(
        !ok && err.contains("old@example.test does not exist"),
        "{err}"
    );
}
