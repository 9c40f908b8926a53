//! QUOTA (RFC 9208, read-only) through the session over a real Maildir:
//! the answers Dovecot 2.3's imap_quota plugin gives with
//! `quota = maildir:User quota` (checked by hand against Dovecot: the
//! root name, STORAGE in KiB rounded up, the NO texts), except that a user
//! without limits still gets the RFC's `* QUOTAROOT mailbox` line.

mod tempdir;

use std::sync::Arc;

use common::quota::Quota;
use mailstore::{Options, Store};
use posthorn_imapd::session::{Session, SessionConfig};

fn session(name: &str, quota: Quota) -> tempdir::Held<Session> {
    let md = tempdir::TempMaildir::new("quota", name);
    let options = Options {
        quota,
        ..Options::default()
    };
    let store = Store::create_user(&md, options).unwrap();
    let cfg = Arc::new(SessionConfig::standard(proto::imap::Limits::default()));
    let (mut s, _) = Session::start(cfg, "alice".into(), store, Some("a0"), b"");
    let greeting = String::from_utf8(s.take_output()).unwrap();
    for cap in [" QUOTA ", " QUOTA=RES-STORAGE ", " QUOTA=RES-MESSAGE "] {
        assert!(greeting.contains(cap), "{cap} in {greeting}");
    }
    tempdir::Held::new(s, md)
}

fn say(s: &mut Session, line: &str) -> String {
    s.input(line.as_bytes());
    String::from_utf8_lossy(&s.take_output()).into_owned()
}

fn append(s: &mut Session, size: usize) {
    let body = "x".repeat(size);
    let msg = format!("Subject: x\r\n\r\n{body}");
    let r = say(
        s,
        &format!("p APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()),
    );
    assert!(r.starts_with("p OK [APPENDUID "), "{r}");
}

#[test]
fn limits_and_usage() {
    let mut s = session(
        "limits",
        Quota {
            storage: Some(1 << 20),
            messages: Some(10),
        },
    );
    let r = say(&mut s, "a1 GETQUOTAROOT INBOX\r\n");
    assert_eq!(
        r,
        "* QUOTAROOT INBOX \"User quota\"\r\n* QUOTA \"User quota\" (STORAGE 0 1024 MESSAGE 0 10)\r\na1 OK Getquotaroot completed.\r\n"
    );
    append(&mut s, 27);
    append(&mut s, 2000);
    // 39 + 2012 bytes: 2051 bytes is 3 KiB rounded up, as Dovecot counts
    let r = say(&mut s, "a2 GETQUOTA \"User quota\"\r\n");
    assert_eq!(
        r,
        "* QUOTA \"User quota\" (STORAGE 3 1024 MESSAGE 2 10)\r\na2 OK Getquota completed.\r\n"
    );
    // any valid name is under the one root, existing or not (Dovecot too)
    let r = say(&mut s, "a3 GETQUOTAROOT \"a b\"\r\n");
    assert_eq!(
        r,
        "* QUOTAROOT \"a b\" \"User quota\"\r\n* QUOTA \"User quota\" (STORAGE 3 1024 MESSAGE 2 10)\r\na3 OK Getquotaroot completed.\r\n"
    );
    let r = say(&mut s, "a4 GETQUOTA \"\"\r\n");
    assert_eq!(r, "a4 NO Quota root doesn't exist.\r\n");
    let r = say(&mut s, "a5 SETQUOTA \"User quota\" (STORAGE 100)\r\n");
    assert_eq!(r, "a5 NO [NOPERM] Quota can be changed only by admin.\r\n");
    let r = say(&mut s, "a6 GETQUOTAROOT ../etc\r\n");
    assert!(r.starts_with("a6 NO "), "{r}");
}

#[test]
fn one_limit_only() {
    let mut s = session(
        "messages",
        Quota {
            storage: None,
            messages: Some(5),
        },
    );
    append(&mut s, 10);
    let r = say(&mut s, "a1 GETQUOTAROOT INBOX\r\n");
    assert_eq!(
        r,
        "* QUOTAROOT INBOX \"User quota\"\r\n* QUOTA \"User quota\" (MESSAGE 1 5)\r\na1 OK Getquotaroot completed.\r\n"
    );
}

#[test]
fn no_limits_no_root() {
    let mut s = session("unlimited", Quota::default());
    let r = say(&mut s, "a1 GETQUOTAROOT INBOX\r\n");
    assert_eq!(r, "* QUOTAROOT INBOX\r\na1 OK No quota.\r\n");
    let r = say(&mut s, "a2 GETQUOTA \"User quota\"\r\n");
    assert_eq!(r, "a2 NO Quota root doesn't exist.\r\n");
}
