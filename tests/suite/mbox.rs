//! mbox delivery into mail_spool_directory (home_mailbox empty), read back
//! by Debian's mutt in batch mode, and the mbox locks (dot-lock and fcntl)
//! honoured: a delivery waits for them, is deferred "mailbox busy", leaves
//! the file untouched, and arrives once the lock is gone.
//!
//! The recipient is the user running the tests (root or nobody in CI), at
//! localhost; alias_maps is emptied so that root is not aliased away. Run as
//! root, the spool is made like Debian's /var/mail (root:mail 2775) and the
//! mailbox belongs to default_privs (mail for uid 0 is never written as
//! root).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::privilege;

use crate::harness::{crlf_to_lf, strip_trace, tool, Smtp, Suite};

const FIRST: &[u8] = b"From: Alice <alice@example.org>\r\n\
Subject: first\r\n\
\r\n\
Dear user,\r\n\
From here the body starts with From.\r\n\
>From x, already quoted once.\r\n\
>>From y, twice.\r\n\
From\r\n\
\r\n\
Last line.\r\n";

const SECOND: &[u8] = b"From: Bob <bob@example.org>\r\nSubject: second\r\n\r\nshort";

/// A spool directory outside the suite's state directory, as Debian makes
/// /var/mail when run as root.
fn spool_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("posthorn-spool-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    if privilege::is_root() {
        let mail = privilege::lookup_group("mail").expect("a mail group");
        std::os::unix::fs::chown(&d, Some(0), Some(mail)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o2775)).unwrap();
    }
    d
}

/// mboxrd unquoting: one '>' less on each line matching ^>+From .
fn unquote(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len());
    for line in m.split_inclusive(|&b| b == b'\n') {
        let gts = line.iter().take_while(|&&b| b == b'>').count();
        if gts > 0 && line[gts..].starts_with(b"From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Run mutt on `mbox` (read-only, no terminal of ours: under script(1)),
/// piping the first and second message raw into files and every message
/// into one count. Returns (message 1, message 2, the count's output).
fn read_with_mutt(work: &Path, mbox: &Path) -> (Vec<u8>, Vec<u8>, String) {
    let muttrc = work.join("muttrc");
    std::fs::write(
        &muttrc,
        format!(
            "set folder={w}\nset mbox_type=mbox\nset read_only=yes\nset wait_key=no\nset quit=yes\nset move=no\n\
             set pipe_decode=no\nset pipe_split=no\nset sort=mailbox-order\n\
             push \"<first-entry><pipe-entry>cat > {w}/m1<enter>\
             <next-entry><pipe-entry>cat > {w}/m2<enter>\
             <tag-pattern>~A<enter><tag-prefix><pipe-entry>grep -c 'Subject: ' > {w}/count<enter>\
             <quit>\"\n",
            w = work.display()
        ),
    )
    .unwrap();
    let cmd = format!("mutt -n -F {} -R -f {}", muttrc.display(), mbox.display());
    let out = Command::new("timeout")
        .args(["30", "script", "-qec", &cmd, "/dev/null"])
        .env("HOME", work)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("script runs mutt");
    assert!(
        out.status.success(),
        "mutt under script: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    let read = |n: &str| {
        std::fs::read(work.join(n)).unwrap_or_else(|e| {
            panic!(
                "mutt wrote no {n} ({e}); screen:\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };
    (
        read("m1"),
        read("m2"),
        String::from_utf8_lossy(&read("count")).trim().to_string(),
    )
}

/// A message as mutt pipes it: the From_ line, the trace headers, the
/// message (still mboxrd-quoted).
fn check_message(piped: &[u8], sender: &str, sent: &[u8]) {
    let text = String::from_utf8_lossy(piped);
    assert!(
        text.starts_with(&format!("From {sender} ")),
        "From_ line: {text}"
    );
    let body = &piped[piped.iter().position(|&b| b == b'\n').unwrap() + 1..];
    let mut want = crlf_to_lf(sent);
    if !want.ends_with(b"\n") {
        // SMTP ends every message with a line end (RFC 5321 4.1.1.4).
        want.push(b'\n');
    }
    assert_eq!(
        String::from_utf8_lossy(&unquote(strip_trace(body))),
        String::from_utf8_lossy(&want)
    );
}

/// Send one message to `rcpt` over SMTP; its queue id.
fn send(s: &Suite, from: &str, rcpt: &str, message: &[u8]) -> String {
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO client.example.org", 250);
    let id = c.mail(from, &[rcpt], message);
    c.cmd("QUIT", 221);
    id
}

#[test]
fn mbox_in_the_mail_spool_is_read_by_mutt_and_locks_are_honoured() {
    if !tool("mutt") || !tool("script") {
        return;
    }
    let me = privilege::current_account().name;
    let spool = spool_dir("mutt");
    let s = Suite::start(
        "mbox",
        &[],
        &[
            "home_mailbox=",
            &format!("mail_spool_directory={}", spool.display()),
            "alias_maps=",
            // A held lock: two tries a second apart, then deferred; the
            // retry is left to `posthorn flush`.
            "deliver_lock_attempts=2",
            "deliver_lock_delay=1s",
            "minimal_backoff_time=1h",
            "maximal_backoff_time=2h",
            "queue_run_delay=1h",
        ],
    );
    let rcpt = format!("{me}@localhost");
    let mbox = spool.join(&me);
    let sent_to = |id: &str| format!("{id}: to=<{rcpt}>, relay=local");
    // One after the other, so the mbox holds them in this order.
    let id1 = send(&s, "alice@example.org", &rcpt, FIRST);
    s.wait_log(&format!("{}, delay=", sent_to(&id1)));
    let id2 = send(&s, "bob@example.org", &rcpt, SECOND);
    s.wait_log(&format!("{}, delay=", sent_to(&id2)));
    assert!(
        s.log()
            .contains("dsn=2.0.0, status=sent (delivered to mailbox)"),
        "{}",
        s.log()
    );
    // The file: 0600, the user's (default_privs' for root), the spool's group.
    let meta = std::fs::symlink_metadata(&mbox).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_ne!(meta.uid(), 0, "never written as root");
    assert_eq!(meta.gid(), std::fs::metadata(&spool).unwrap().gid());
    let raw = std::fs::read(&mbox).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("\n>From here the body"), "{text}");
    assert!(text.contains("\n>>From x, already"), "{text}");
    assert!(text.contains("\n>>>From y, twice"), "{text}");
    assert!(text.contains("\nFrom\n"), "not a From_ line: {text}");
    assert!(
        text.ends_with("short\n\n"),
        "a blank line after each message"
    );
    assert!(
        !spool.join(format!("{me}.lock")).exists(),
        "dot-lock removed"
    );

    // mutt reads two messages, byte-exact after unquoting.
    let work = s.dir.join("mutt");
    std::fs::create_dir_all(&work).unwrap();
    let (m1, m2, count) = read_with_mutt(&work, &mbox);
    assert_eq!(count, "2", "mutt counts the messages");
    check_message(&m1, "alice@example.org", FIRST);
    check_message(&m2, "bob@example.org", SECOND);

    // A dot-lock held (as mutt holds it while it writes): the delivery
    // waits, is deferred, and writes nothing.
    let lock = spool.join(format!("{me}.lock"));
    std::fs::write(&lock, b"").unwrap();
    let id3 = send(
        &s,
        "carol@example.org",
        &rcpt,
        b"Subject: third\r\n\r\nthird\r\n",
    );
    s.wait_log(&format!("{}, delay=", sent_to(&id3)));
    let line = |id: &str| {
        s.log()
            .lines()
            .rev()
            .find(|l| l.contains(&sent_to(id)))
            .unwrap_or_default()
            .to_string()
    };
    let l = line(&id3);
    assert!(
        l.contains("dsn=4.2.0, status=deferred (") && l.contains("mailbox busy (dotlock"),
        "{l}"
    );
    assert_eq!(std::fs::read(&mbox).unwrap(), raw, "nothing written");
    assert!(lock.exists(), "someone else's fresh lock stays");
    std::fs::remove_file(&lock).unwrap();
    s.flush();
    s.wait_until("the third message", || {
        line(&id3).contains("status=sent (delivered to mailbox)")
    });
    let raw = std::fs::read(&mbox).unwrap();
    assert!(String::from_utf8_lossy(&raw).ends_with("\nthird\n\n"));

    // An fcntl lock held by another process (Python's lockf is F_SETLK,
    // as mutt's): the same.
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import fcntl, sys\n\
             f = open(sys.argv[1], 'r+')\n\
             fcntl.lockf(f, fcntl.LOCK_EX)\n\
             print('locked', flush=True)\n\
             sys.stdin.read()\n",
        ])
        .arg(&mbox)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut said = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert_eq!(said.trim(), "locked");
    let id4 = send(
        &s,
        "dave@example.org",
        &rcpt,
        b"Subject: fourth\r\n\r\nfourth\r\n",
    );
    s.wait_until("the fourth message deferred", || {
        line(&id4).contains("status=deferred")
    });
    let l = line(&id4);
    assert!(
        l.contains("dsn=4.2.0") && l.contains("mailbox busy (fcntl"),
        "{l}"
    );
    assert_eq!(std::fs::read(&mbox).unwrap(), raw, "nothing written");
    assert!(
        !lock.exists(),
        "our dot-lock is given back when we wait no more"
    );
    // Release (end of Python's stdin), then the retry delivers.
    let mut stdin = holder.stdin.take().unwrap();
    stdin.flush().unwrap();
    drop(stdin);
    assert!(holder.wait().unwrap().success());
    s.flush();
    s.wait_until("the fourth message", || {
        line(&id4).contains("status=sent (delivered to mailbox)")
    });
    let (m1, _, count) = read_with_mutt(&work, &mbox);
    assert_eq!(count, "4");
    check_message(&m1, "alice@example.org", FIRST);
    drop(s);
    let _ = std::fs::remove_dir_all(&spool);
}
