//! POP3 end to end: mail delivered over SMTP is read back over POP3 with real
//! clients (Python's poplib, curl, fetchmail) and with exact transcripts:
//! STLS with certificate verification against the dev CA, POP3S, byte-exact
//! RETR, UIDL stable across a restart, DELE+RSET, DELE+QUIT, a mailbox in use
//! by another session, failed logins (same reply, after the delay, in log
//! lines fail2ban's stock filter matches), and the STLS injection.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{self, read, Lines, Smtp, Suite};

const USER: &str = "demo@example.test";
const PASS: &str = "demo";

fn pop3_port(s: &Suite) -> u16 {
    2110 + s.offset
}

fn pop3s_port(s: &Suite) -> u16 {
    2995 + s.offset
}

fn ca(s: &Suite) -> PathBuf {
    s.dir.join("tls").join("ca.pem")
}

fn client(name: &str) -> String {
    format!("{}/../tests/clients/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Messages with what trips up a POP3 server: lines starting with dots, a
/// line of only a dot, 8-bit text, long lines, a big body.
fn messages() -> Vec<Vec<u8>> {
    let mut big = b"Subject: big\r\nMessage-ID: <big@example.org>\r\n\r\n".to_vec();
    for i in 0..4000 {
        big.extend_from_slice(format!(".{i:05} {}\r\n", "x".repeat(70)).as_bytes());
    }
    vec![
        b"Subject: first\r\nMessage-ID: <first@example.org>\r\n\r\n.\r\n..\r\n.leading dot\r\nGr\xc3\xbc\xc3\x9fe\r\n\r\nend\r\n".to_vec(),
        b"Subject: second\r\nMessage-ID: <second@example.org>\r\n\r\nshort\r\n".to_vec(),
        big,
    ]
}

/// Deliver `messages()` to USER, one at a time (each waited for, so that
/// arrival order is UID order whatever the file names), and return the
/// delivered files' contents in that order.
fn deliver(s: &Suite) -> Vec<Vec<u8>> {
    let mut c = Smtp::connect(s.port);
    c.cmd("EHLO pop3.example.org", 250);
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut out = Vec::new();
    for (i, m) in messages().iter().enumerate() {
        c.mail("sender@example.org", &[USER], m);
        let files = s.wait_mail(USER, i + 1);
        let new: Vec<PathBuf> = files.into_iter().filter(|f| !seen.contains(f)).collect();
        assert_eq!(new.len(), 1, "one new file per message");
        out.push(read(&new[0]));
        seen.extend(new);
    }
    c.cmd("QUIT", 221);
    out
}

/// LF on disk to CRLF, as POP3 sends it.
fn crlf(lf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lf.len() + lf.len() / 20);
    for (i, &b) in lf.iter().enumerate() {
        if b == b'\n' && (i == 0 || lf[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Run tests/clients/poplib_dump.py; facts by kind.
fn poplib(mode: &str, port: u16, ca: &Path) -> BTreeMap<String, Vec<Vec<String>>> {
    let out = Command::new("python3")
        .arg(client("poplib_dump.py"))
        .args([mode, &port.to_string()])
        .arg(ca)
        .args([USER, PASS])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "poplib {mode}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut facts: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = l.split(' ').map(String::from);
        let kind = f.next().unwrap_or_default();
        facts.entry(kind).or_default().push(f.collect());
    }
    facts
}

/// Check a poplib dump against the delivered files.
fn check_dump(facts: &BTreeMap<String, Vec<Vec<String>>>, files: &[Vec<u8>]) {
    let tls = &facts["TLS"][0];
    assert!(
        tls[0] == "TLSv1.3" || tls[0] == "TLSv1.2",
        "TLS facts {tls:?}"
    );
    let caps: Vec<&str> = facts["CAPA"].iter().map(|c| c[0].as_str()).collect();
    for want in ["USER", "UIDL", "TOP", "PIPELINING", "RESP-CODES", "SASL"] {
        assert!(caps.contains(&want), "CAPA {caps:?} lacks {want}");
    }
    assert!(!caps.contains(&"STLS"), "STLS offered inside TLS: {caps:?}");
    let sasl = facts["CAPA"].iter().find(|c| c[0] == "SASL").unwrap();
    assert!(sasl.contains(&"PLAIN".to_string()), "{sasl:?}");
    let stat = &facts["STAT"][0];
    assert_eq!(stat[0], files.len().to_string(), "STAT {stat:?}");
    let mut total = 0usize;
    for (i, f) in files.iter().enumerate() {
        let n = (i + 1).to_string();
        let want = crlf(f);
        let list = facts["LIST"].iter().find(|l| l[0] == n).expect("LIST line");
        assert_eq!(list[1], want.len().to_string(), "LIST {n} size");
        let retr = facts["RETR"].iter().find(|l| l[0] == n).expect("RETR line");
        let got = hex(&retr[2]);
        assert!(
            got == want,
            "RETR {n}: {} bytes differ from the Maildir file's {} (CRLF)",
            got.len(),
            want.len()
        );
        total += want.len();
    }
    assert_eq!(stat[1], total.to_string(), "STAT octets");
    let uidls: Vec<&String> = facts["UIDL"].iter().map(|u| &u[1]).collect();
    let mut unique = uidls.clone();
    unique.dedup();
    assert_eq!(uidls.len(), files.len());
    assert_eq!(unique.len(), uidls.len(), "UIDLs unique: {uidls:?}");
    for u in uidls {
        assert!(
            (1..=70).contains(&u.len()) && u.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "RFC 1939 7: a UIDL is 1-70 printable characters: {u:?}"
        );
    }
}

#[test]
fn poplib_over_stls_reads_every_message_byte_exact() {
    let s = Suite::start("pop3-poplib", &[], &[]);
    let files = deliver(&s);
    let facts = poplib("stls", pop3_port(&s), &ca(&s));
    check_dump(&facts, &files);
    // Nothing was deleted: the same again over POP3S.
    let again = poplib("ssl", pop3s_port(&s), &ca(&s));
    check_dump(&again, &files);
    assert_eq!(facts["UIDL"], again["UIDL"], "UIDLs stable across sessions");
    let log = s.log();
    assert!(
        log.contains(&format!("Login: user=<{USER}>, method=")),
        "login line in the log:\n{log}"
    );
}

/// curl's view of the mailbox: LIST, and UIDL (`-X UIDL`).
fn curl(s: &Suite, url: &str, extra: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(ca(s))
        .args(["-u", &format!("{USER}:{PASS}")])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {extra:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn curl_pop3s_and_uidl_stable_across_a_restart() {
    if !harness::tool("curl") {
        return;
    }
    let mut s = Suite::start("pop3-curl", &[], &[]);
    let files = deliver(&s);
    let base = format!("pop3s://127.0.0.1:{}/", pop3s_port(&s));
    let list = String::from_utf8(curl(&s, &base, &[])).unwrap();
    let want: String = files
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{} {}\r\n", i + 1, crlf(f).len()))
        .collect();
    assert_eq!(list, want, "LIST through curl");
    for (i, f) in files.iter().enumerate() {
        let got = curl(&s, &format!("{base}{}", i + 1), &[]);
        assert!(got == crlf(f), "curl RETR {}: {} bytes", i + 1, got.len());
    }
    // STLS through curl (pop3:// with --ssl-reqd) gives the same.
    let plain = format!("pop3://127.0.0.1:{}/", pop3_port(&s));
    let stls = String::from_utf8(curl(&s, &plain, &["--ssl-reqd"])).unwrap();
    assert_eq!(stls, want);
    let uidl = curl(&s, &base, &["-X", "UIDL"]);
    s.stop();
    s.spawn(&[], &[]);
    let after = curl(&s, &base, &["-X", "UIDL"]);
    assert_eq!(
        String::from_utf8_lossy(&after),
        String::from_utf8_lossy(&uidl),
        "UIDL after a restart"
    );
    assert_eq!(String::from_utf8_lossy(&uidl).lines().count(), files.len());
}

/// Log in with USER/PASS on the plain port (loopback: allowed in the clear).
fn login(port: u16) -> Lines {
    let mut c = Lines::connect(port);
    let greeting = c.line();
    assert!(greeting.starts_with("+OK"), "{greeting}");
    assert!(c.cmd(&format!("USER {USER}")).starts_with("+OK"));
    let r = c.cmd(&format!("PASS {PASS}"));
    assert_eq!(r, "+OK Logged in.");
    c
}

#[test]
fn dele_rset_quit_and_a_mailbox_in_use() {
    let s = Suite::start("pop3-dele", &[], &[]);
    let files = deliver(&s);
    let sizes: Vec<usize> = files.iter().map(|f| crlf(f).len()).collect();
    let mut a = login(pop3_port(&s));
    let total: usize = sizes.iter().sum();
    assert_eq!(a.cmd("STAT"), format!("+OK 3 {total}"));
    // A second session on the same mailbox, while the first holds it.
    let mut b = Lines::connect(pop3_port(&s));
    b.line();
    b.cmd(&format!("USER {USER}"));
    let busy = b.cmd(&format!("PASS {PASS}"));
    assert!(busy.starts_with("-ERR [IN-USE]"), "{busy}");
    // DELE marks, RSET unmarks: nothing deleted.
    assert_eq!(a.cmd("DELE 1"), "+OK Marked to be deleted.");
    assert!(
        a.cmd("RETR 1").starts_with("-ERR"),
        "a marked message is gone"
    );
    assert_eq!(a.cmd("LIST 1").split(' ').next(), Some("-ERR"));
    assert_eq!(a.cmd("STAT"), format!("+OK 2 {}", total - sizes[0]));
    assert!(a.cmd("RSET").starts_with("+OK"));
    assert_eq!(a.cmd("STAT"), format!("+OK 3 {total}"));
    // Pipelined: DELE 1, DELE 3 and LIST in one write.
    a.w.write_all(b"DELE 1\r\nDELE 3\r\nLIST\r\n").unwrap();
    assert_eq!(a.line(), "+OK Marked to be deleted.");
    assert_eq!(a.line(), "+OK Marked to be deleted.");
    assert!(a.line().starts_with("+OK 1 messages"));
    assert_eq!(
        a.multiline(),
        format!("2 {}\r\n.\r\n", sizes[1]).into_bytes()
    );
    // A session that ends without QUIT deletes nothing: drop one, check.
    let quit = a.cmd("QUIT");
    assert!(quit.starts_with("+OK Logging out"), "{quit}");
    assert!(a.eof());
    let mut c = login(pop3_port(&s));
    assert_eq!(c.cmd("STAT"), format!("+OK 1 {}", sizes[1]));
    let uidl_after = c.cmd("UIDL 1");
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    drop(c); // no QUIT: the deletion is not committed
    let t = Instant::now();
    let mut d = loop {
        // The first session may still hold the lock for a moment after the
        // connection closed on our side.
        let mut d = Lines::connect(pop3_port(&s));
        d.line();
        d.cmd(&format!("USER {USER}"));
        let r = d.cmd(&format!("PASS {PASS}"));
        if r == "+OK Logged in." {
            break d;
        }
        assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
        assert!(t.elapsed() < Duration::from_secs(10), "lock never released");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(d.cmd("STAT"), format!("+OK 1 {}", sizes[1]));
    assert_eq!(d.cmd("UIDL 1"), uidl_after, "UIDL unchanged by the session");
    d.cmd("QUIT");
    // The files of the deleted messages are gone from the Maildir.
    let md = s.maildir(USER);
    let left: Vec<_> = ["cur", "new"]
        .iter()
        .flat_map(|d| std::fs::read_dir(md.join(d)).unwrap().flatten())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn failed_logins_look_the_same_and_are_delayed() {
    let s = Suite::start("pop3-fail", &[], &["auth_failure_delay=1s"]);
    let mut replies = Vec::new();
    for (user, pass) in [(USER, "wrong"), ("nobody@example.test", "demo")] {
        let mut c = Lines::connect(pop3_port(&s));
        c.line();
        assert!(c.cmd(&format!("USER {user}")).starts_with("+OK"));
        let t = Instant::now();
        let r = c.cmd(&format!("PASS {pass}"));
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(900),
            "{user}: answered after {waited:?}, before the failure delay"
        );
        replies.push(r);
        c.cmd("QUIT");
        assert!(c.eof());
    }
    assert_eq!(replies[0], "-ERR [AUTH] Authentication failed.");
    assert_eq!(
        replies[0], replies[1],
        "unknown user and wrong password alike"
    );
    s.wait_log("auth failed, 1 attempts");
    let log = s.log();
    assert!(
        !log.contains("password=") && !log.contains("wrong"),
        "no password in the log"
    );
    if !harness::tool("fail2ban-regex") {
        return;
    }
    let logfile = s.dir.join("log");
    let out = Command::new("fail2ban-regex")
        .arg(&logfile)
        .arg(r"dovecot[_daemon=posthorn/\S+]")
        .output()
        .expect("fail2ban-regex runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let matched = text
        .lines()
        .find(|l| l.starts_with("Lines:"))
        .and_then(|l| l.split(',').find(|p| p.contains("matched")))
        .and_then(|p| {
            p.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u32>().ok())
        })
        .unwrap_or(0);
    assert!(
        matched >= 2,
        "fail2ban's dovecot filter matched {matched} lines:\n{text}\nlog:\n{log}"
    );
}

#[test]
fn a_command_pipelined_after_stls_is_not_executed() {
    let s = Suite::start("pop3-stls", &[], &[]);
    let out = Command::new("python3")
        .arg(client("pop3_stls_injection.py"))
        .arg(pop3_port(&s).to_string())
        .arg(ca(&s))
        .arg(USER)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("STLS +OK Begin TLS negotiation now."),
        "{text}"
    );
    let after = text.lines().find(|l| l.starts_with("AFTER")).unwrap();
    assert!(
        after.starts_with("AFTER -ERR") && !after.contains("Logged in"),
        "the injected USER was executed: {text}"
    );
}

#[test]
fn fetchmail_over_pop3s_keeps_then_deletes() {
    if !harness::tool("fetchmail") {
        return;
    }
    let s = Suite::start("pop3-fetchmail", &[], &[]);
    let files = deliver(&s);
    let work = s.dir.join("fetchmail");
    std::fs::create_dir_all(work.join("out")).unwrap();
    let mda = work.join("mda.sh");
    std::fs::write(
        &mda,
        format!(
            "#!/bin/sh\nexec cat > \"{}/out/$(date +%s%N)-$$\"\n",
            work.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&mda, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |keep: &str| {
        let rc = work.join("fetchmailrc");
        std::fs::write(
            &rc,
            format!(
                "set no syslog\npoll 127.0.0.1 service {} protocol pop3 timeout 30\n  user \"{USER}\" password \"{PASS}\" is \"x\" here\n  ssl sslcertck sslcertfile \"{}\" sslcommonname \"localhost\"\n  {keep} fetchall mda \"{}\"\n",
                pop3s_port(&s),
                ca(&s).display(),
                mda.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = Command::new("fetchmail")
            .args(["-f"])
            .arg(&rc)
            .args(["--nodetach", "-v", "--idfile"])
            .arg(work.join("ids"))
            .env("HOME", &work)
            .env("FETCHMAILHOME", &work)
            .output()
            .expect("fetchmail runs");
        // 0: mail fetched; 1: no mail.
        let code = out.status.code();
        assert!(
            code == Some(0) || code == Some(1),
            "fetchmail {keep}: {code:?}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got: Vec<PathBuf> = std::fs::read_dir(work.join("out"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        got.sort();
        let got: Vec<Vec<u8>> = got.iter().map(|p| read(p)).collect();
        for p in std::fs::read_dir(work.join("out")).unwrap().flatten() {
            std::fs::remove_file(p.path()).unwrap();
        }
        got
    };
    let kept = run("keep");
    assert_eq!(
        kept.len(),
        files.len(),
        "fetchmail keep fetched every message"
    );
    for m in &kept {
        // fetchmail puts its own Received: line above posthorn's (below
        // Return-Path:, Delivered-To: and Authentication-Results:);
        // everything from posthorn's Received: on is the delivered file,
        // byte for byte (LF line ends, as fetchmail hands mail to an MDA).
        assert!(
            files.iter().any(|f| {
                let at = f
                    .windows(11)
                    .position(|w| w == b"\nReceived: ")
                    .map_or(0, |p| p + 1);
                let tail = &f[at..];
                m.ends_with(tail) && m.starts_with(&f[..at])
            }),
            "a fetched message is not one of the delivered ones:\n{}",
            String::from_utf8_lossy(&m[..m.len().min(600)])
        );
    }
    assert_eq!(
        s.new_mail(USER).len() + cur_count(&s),
        files.len(),
        "keep: still on the server"
    );
    let fetched = run("nokeep");
    assert_eq!(fetched.len(), files.len(), "fetched again (fetchall)");
    assert_eq!(
        s.new_mail(USER).len() + cur_count(&s),
        0,
        "nokeep: deleted on the server"
    );
}

fn cur_count(s: &Suite) -> usize {
    std::fs::read_dir(s.maildir(USER).join("cur"))
        .map(|r| r.count())
        .unwrap_or(0)
}

#[test]
fn mailbox_processes_run_as_the_mailbox_owner() {
    use std::os::unix::fs::MetadataExt;
    let s = Suite::start("pop3-uid", &[], &[]);
    deliver(&s);
    let mut c = login(pop3_port(&s));
    let owner = std::fs::metadata(s.maildir(USER)).unwrap().uid();
    // The session is served by a posthorn-pop3d process that is not a
    // child of master (the dispatcher started it) and runs as the owner.
    let mut found = Vec::new();
    for d in harness::children(s.master_pid() as i32, "posthorn-pop3d") {
        for p in harness::children(d, "posthorn-pop3d") {
            let uid = std::fs::metadata(format!("/proc/{p}")).unwrap().uid();
            found.push((p, uid));
        }
    }
    assert!(!found.is_empty(), "no mailbox process under the dispatcher");
    for (pid, uid) in &found {
        assert_eq!(*uid, owner, "mailbox process {pid} runs as uid {uid}");
        assert_ne!(*uid, 0, "a mailbox process runs as root");
    }
    c.cmd("QUIT");
}

#[test]
fn a_maildir_dovecot_served_keeps_its_uidls() {
    use std::os::unix::fs::MetadataExt;
    let s = Suite::start("pop3-dovecot", &[], &[]);
    // The Maildir a real Dovecot 2.3 served (mailstore's fixture), in place
    // of demo's, with the same owner.
    let md = s.maildir(USER);
    let home = md.parent().unwrap().to_path_buf();
    let (uid, gid) = {
        let m = std::fs::metadata(&md).unwrap();
        (m.uid(), m.gid())
    };
    std::fs::remove_dir_all(&md).unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mailstore/tests/fixtures/dovecot-maildir.tar"
    );
    let st = Command::new("tar")
        .args(["-xf", fixture, "-C"])
        .arg(&home)
        .status()
        .expect("tar runs");
    assert!(st.success());
    let st = Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(&md)
        .status()
        .expect("chown runs");
    assert!(st.success());
    // What Dovecot answered to UIDL for this Maildir (recorded with it;
    // `uidl N UIDL` lines).
    let expected = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mailstore/tests/fixtures/dovecot-expected.txt"
    ))
    .unwrap();
    let want: Vec<String> = expected
        .lines()
        .filter_map(|l| l.strip_prefix("uidl "))
        .map(|l| format!("{l}\r\n"))
        .collect();
    assert_eq!(want.len(), 5, "the fixture records five UIDLs");
    let mut c = login(pop3_port(&s));
    assert!(c.cmd("UIDL").starts_with("+OK"));
    // The five Dovecot listed, then the one delivered into new/ after it
    // stopped, with Dovecot's next UID (7) and the same UIDVALIDITY.
    let uidvalidity = &want[0][10..18];
    let got = String::from_utf8(c.multiline()).unwrap();
    assert_eq!(
        got,
        format!("{}6 00000007{uidvalidity}\r\n.\r\n", want.concat()),
        "UIDLs as Dovecot gave them"
    );
    // Every message reads back with the size LIST gives.
    assert!(c.cmd("LIST").starts_with("+OK 6 messages"));
    let list = String::from_utf8(c.multiline()).unwrap();
    for l in list.lines().filter(|l| *l != ".") {
        let (n, size) = l.split_once(' ').unwrap();
        assert!(c.cmd(&format!("RETR {n}")).starts_with("+OK"));
        let body = c.multiline();
        // Less the final ".\r\n"; the messages start no line with a dot.
        assert_eq!((body.len() - 3).to_string(), size, "RETR {n}");
    }
    c.cmd("QUIT");
}

#[test]
fn a_reload_keeps_logged_in_sessions() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    const OTHER: &str = "other@example.test";
    let s = Suite::start("pop3-reload", &["other@example.test:secret"], &[]);
    let files = deliver(&s);
    let total: usize = files.iter().map(|f| crlf(f).len()).sum();
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO reload.example.org", 250);
    c.mail(
        "a@example.org",
        &[OTHER],
        b"Subject: other\r\n\r\nfor other\r\n",
    );
    c.cmd("QUIT", 221);
    let other = s.wait_mail(OTHER, 1);
    let other_size = crlf(&read(&other[0])).len();
    // One session relayed through TLS by a login process (demo), one whose
    // socket was passed to the mailbox process (other).
    let mut held = Vec::new();
    for (mode, port, user, pass, want) in [
        ("ssl", pop3s_port(&s), USER, PASS, format!("3 {total}")),
        (
            "plain",
            pop3_port(&s),
            OTHER,
            "secret",
            format!("1 {other_size}"),
        ),
    ] {
        let mut child = Command::new("python3")
            .arg(client("pop3_hold.py"))
            .args([mode, &port.to_string()])
            .arg(ca(&s))
            .args([user, pass])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        out.read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), format!("READY {want}"), "{mode}");
        held.push((mode, child, out, want));
    }
    s.reload();
    s.wait_log("reload -- version");
    // New logins are served by the new processes meanwhile: demo's mailbox
    // is still held, so a second session of demo is told [IN-USE].
    // A connection the old login process accepted as it was told to stop
    // is told "[SYS/TEMP] Server shutting down" (at any step): a client
    // tries again.
    let stopping = |l: &str| l.contains("shutting down");
    let mut tries = 0;
    let (reply, mut c) = loop {
        tries += 1;
        let mut c = Lines::connect(pop3_port(&s));
        let greeting = c.line();
        if stopping(&greeting) && tries < 5 {
            continue;
        }
        let user = c.cmd(&format!("USER {USER}"));
        if stopping(&user) && tries < 5 {
            continue;
        }
        let reply = c.cmd(&format!("PASS {PASS}"));
        if stopping(&reply) && tries < 5 {
            continue;
        }
        break (reply, c);
    };
    assert!(reply.starts_with("-ERR [IN-USE]"), "{reply}");
    assert!(c.eof(), "closed after [IN-USE]");
    let first = [crlf(&files[0]).len(), other_size];
    for (i, (mode, mut child, mut out, want)) in held.into_iter().enumerate() {
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let mut after = String::new();
        out.read_line(&mut after).unwrap();
        assert_eq!(
            after.trim(),
            format!("AFTER {want} {}", first[i]),
            "{mode} session after the reload"
        );
        assert!(child.wait().unwrap().success());
    }
    // With the held session gone, demo logs in on the new processes.
    let mut d = login(pop3_port(&s));
    assert_eq!(d.cmd("STAT"), format!("+OK 3 {total}"));
    d.cmd("QUIT");
}

#[test]
fn a_user_without_a_maildir_has_an_empty_maildrop() {
    let s = Suite::start("pop3-nomaildir", &["new@example.test:fresh"], &[]);
    // No mail has arrived for new@: its home is not there (as for a user
    // just added in the package).
    let home = s
        .maildir("new@example.test")
        .parent()
        .unwrap()
        .to_path_buf();
    std::fs::remove_dir_all(&home).unwrap();
    let mut c = Lines::connect(pop3_port(&s));
    c.line();
    c.cmd("USER new@example.test");
    assert_eq!(c.cmd("PASS fresh"), "+OK Logged in.");
    assert_eq!(c.cmd("STAT"), "+OK 0 0");
    assert!(c.cmd("RETR 1").starts_with("-ERR"));
    assert!(c.cmd("QUIT").starts_with("+OK Logging out"));
}
