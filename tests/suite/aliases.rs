//! alias_maps and ~/.forward destinations in a running suite: a list, an
//! :include: file, a |command (its environment and standard input checked),
//! a /file (mbox), a user's .forward (through forward_path, a documented
//! Postfix parameter pointed at the test's directory: the suite cannot give a
//! system user a home in its temp directory), forwarding to a remote
//! address (a new queue file, through qmgr and posthorn-smtp to an SMTP sink,
//! with `Delivered-To:` prepended), a forwarded copy that comes back
//! bouncing 5.4.6, and an alias loop bouncing to the sender once (proved by
//! a barrier message, not a sleep).
//!
//! As root, commands and files of the aliases file (which root owns) run
//! with default_privs (nobody), and the .forward user is nobody; as an
//! ordinary user (nobody included) everything runs as that user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::harness::{read, Smtp, Suite};
use crate::outbound::{sink, wait_for, Shared};

const MESSAGE: &[u8] = b"From: Demo <demo@example.test>\r\n\
Subject: aliases\r\n\
Message-ID: <aliases-1@example.test>\r\n\
\r\n\
From the start of a line.\r\n\
Last line.\r\n";

/// The body as a command gets it.
const PLAIN: &str = "From the start of a line.\nLast line.\n";

/// A directory every user may write (commands run as default_privs).
fn work_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("posthorn-aliases-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

/// The system user whose .forward is tested, and who commands run as.
fn forward_user() -> String {
    let me = common::privilege::current_account();
    if me.uid == 0 {
        "nobody".into()
    } else {
        me.name
    }
}

/// Add entries to the aliases file `posthorn dev` wrote (read again by
/// local delivery and smtpd when it changes).
fn add_aliases(s: &Suite, text: &str) {
    let p = s.dir.join("aliases");
    let mut all = std::fs::read_to_string(&p).unwrap();
    all.push_str(text);
    std::fs::write(&p, all).unwrap();
}

fn send(s: &Suite, to: &[&str], message: &[u8]) -> String {
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO client.example.org", 250);
    let id = c.mail("demo@example.test", to, message);
    c.cmd("QUIT", 221);
    id
}

fn wait_file(s: &Suite, p: &Path) -> Vec<u8> {
    s.wait_until(&format!("{}", p.display()), || {
        std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
    });
    read(p)
}

/// The message as a command or file gets it: the trace headers, then what
/// was sent with LF line ends (smtpd's Authentication-Results: and
/// Received: headers in between); `body` is how its body reads there.
fn assert_traced(got: &[u8], rcpt: &str, body: &str) {
    let text = String::from_utf8_lossy(got);
    let want = format!(
        "Return-Path: <demo@example.test>\nDelivered-To: {rcpt}\nAuthentication-Results: mail.example.test;\n"
    );
    assert!(text.starts_with(&want), "{text}");
    assert!(text.contains("\tarc=none\nReceived: "), "{text}");
    let headers = "From: Demo <demo@example.test>\nSubject: aliases\nMessage-ID: <aliases-1@example.test>\n\n";
    assert!(text.contains(&format!("\n{headers}{body}")), "{text}");
}

#[test]
fn aliases_lists_include_command_file_and_forward() {
    let work = work_dir("main");
    let state: Shared = Arc::default();
    let port = sink(Arc::clone(&state));
    let user = forward_user();
    let s = Suite::start(
        "aliases",
        &["second@example.test:pw"],
        &[
            &format!("relayhost=[127.0.0.1]:{port}"),
            &format!("forward_path={}/$user.forward", work.display()),
            "recipient_delimiter=+",
        ],
    );
    let w = work.display();
    std::fs::write(
        work.join("team.list"),
        "# the team\ndemo@example.test\nsecond@example.test\n",
    )
    .unwrap();
    add_aliases(
        &s,
        &format!(
            "list: demo@example.test,\n  second@example.test\n\
             team: :include:{w}/team.list\n\
             prog: \"|cat > {w}/prog.out; env > {w}/prog.env\"\n\
             failing: \"|echo 'no such project'; exit 67\"\n\
             mbox: {w}/mbox\n\
             far: faraway@elsewhere.example\n"
        ),
    );

    // A list and an :include: file: both users get each message.
    send(&s, &["list@localhost"], MESSAGE);
    send(&s, &["team@localhost"], MESSAGE);
    s.wait_mail("demo@example.test", 2);
    s.wait_mail("second@example.test", 2);
    for u in ["demo@example.test", "second@example.test"] {
        let files = s.new_mail(u);
        let delivered: Vec<String> = files
            .iter()
            .map(|f| {
                String::from_utf8_lossy(&read(f))
                    .lines()
                    .nth(1)
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert!(
            delivered.contains(&"Delivered-To: list@localhost".to_string()),
            "{delivered:?}"
        );
        assert!(
            delivered.contains(&"Delivered-To: team@localhost".to_string()),
            "{delivered:?}"
        );
    }

    // A command: its input and its environment (Postfix local(8)'s).
    send(&s, &["prog+ext@localhost"], MESSAGE);
    let out = wait_file(&s, &work.join("prog.out"));
    assert_traced(&out, "prog+ext@localhost", PLAIN);
    s.wait_log("status=sent (delivered to command: cat >");
    let env = String::from_utf8_lossy(&wait_file(&s, &work.join("prog.env"))).into_owned();
    let root = common::privilege::is_root();
    let runs_as = if root {
        "nobody".to_string()
    } else {
        common::privilege::current_account().name
    };
    for want in [
        "SENDER=demo@example.test".to_string(),
        "RECIPIENT=prog+ext@localhost".into(),
        "LOCAL=prog+ext".into(),
        "DOMAIN=localhost".into(),
        "EXTENSION=ext".into(),
        "ORIGINAL_RECIPIENT=prog+ext@localhost".into(),
        "PATH=/usr/bin:/bin".into(),
        format!("USER={runs_as}"),
        format!("LOGNAME={runs_as}"),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in:\n{env}");
    }
    assert!(env.lines().any(|l| l.starts_with("HOME=")), "{env}");
    assert!(env.lines().any(|l| l.starts_with("SHELL=")), "{env}");
    if root {
        // Never as root: the file the command made belongs to default_privs.
        use std::os::unix::fs::MetadataExt;
        let nobody = common::privilege::lookup_user("nobody").unwrap();
        assert_eq!(
            std::fs::metadata(work.join("prog.out")).unwrap().uid(),
            nobody.uid
        );
    }

    // A failing command bounces (5.3.0) with its output in the reason.
    send(&s, &["failing@localhost"], MESSAGE);
    s.wait_log("dsn=5.3.0, status=bounced (Command died with status 67: \"echo 'no such project'; exit 67\". Command output: no such project)");

    // A file: mbox, From_ line first.
    send(&s, &["mbox@localhost"], MESSAGE);
    let mbox = String::from_utf8_lossy(&wait_file(&s, &work.join("mbox"))).into_owned();
    assert!(mbox.starts_with("From demo@example.test "), "{mbox}");
    let after_from = &mbox[mbox.find('\n').unwrap() + 1..];
    // mboxrd: a body line starting "From " is quoted.
    assert_traced(
        after_from.as_bytes(),
        "mbox@localhost",
        ">From the start of a line.\nLast line.\n\n",
    );

    // A user's .forward: a copy to a virtual user, a command, and the user's
    // own name is skipped here (their system mailbox is not the test's).
    let fw = work.join(format!("{user}.forward"));
    std::fs::write(
        &fw,
        format!("second@example.test, \"|cat > {w}/forward.out\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&fw, std::fs::Permissions::from_mode(0o644)).unwrap();
    if root {
        let nobody = common::privilege::lookup_user("nobody").unwrap();
        std::os::unix::fs::chown(&fw, Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    let before = s.new_mail("second@example.test").len();
    send(&s, &[&format!("{user}@localhost")], MESSAGE);
    let out = wait_file(&s, &work.join("forward.out"));
    assert_traced(&out, &format!("{user}@localhost"), PLAIN);
    s.wait_mail("second@example.test", before + 1);

    // Forwarding to a remote address: a new message through qmgr and
    // posthorn-smtp to the sink, same sender, Delivered-To prepended.
    let id = send(&s, &["far@localhost"], MESSAGE);
    let got = wait_for(&state, &s, "faraway@elsewhere.example");
    let m = got
        .iter()
        .find(|m| m.rcpts.iter().any(|r| r == "faraway@elsewhere.example"))
        .unwrap();
    assert_eq!(m.from, "demo@example.test");
    let data = String::from_utf8_lossy(&m.data).into_owned();
    assert!(
        data.starts_with("Delivered-To: far@localhost\r\n"),
        "{data}"
    );
    assert!(
        data.ends_with("From the start of a line.\r\nLast line.\r\n"),
        "{data}"
    );
    let log = s.log();
    let line = log
        .lines()
        .find(|l| {
            l.contains(&format!(
                "{id}: to=<faraway@elsewhere.example>, orig_to=<far@localhost>, relay=local"
            ))
        })
        .unwrap_or_else(|| panic!("no forward line for {id}:\n{log}"));
    assert!(line.contains("status=sent (forwarded as "), "{line}");

    // The remote host sends it back to far@localhost: a loop (its
    // Delivered-To names far@localhost): bounced 5.4.6, not forwarded again.
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO elsewhere.example", 250);
    c.mail("demo@example.test", &["far@localhost"], &m.data);
    c.cmd("QUIT", 221);
    s.wait_log("dsn=5.4.6, status=bounced (mail forwarding loop for far@localhost)");
    let bounces = |s: &Suite| {
        s.new_mail("demo@example.test")
            .iter()
            .filter(|f| {
                String::from_utf8_lossy(&read(f)).contains("Final-Recipient: rfc822; far@localhost")
            })
            .count()
    };
    s.wait_until("the loop's bounce", || bounces(&s) == 1);
    s.barrier(&["demo@example.test"]);
    assert_eq!(bounces(&s), 1);
    let sent = state
        .lock()
        .unwrap()
        .messages
        .iter()
        .filter(|m| m.rcpts.iter().any(|r| r == "faraway@elsewhere.example"))
        .count();
    assert_eq!(sent, 1, "forwarded once only");
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn an_alias_loop_bounces_to_the_sender_once() {
    let s = Suite::start("aliasloop", &[], &[]);
    add_aliases(
        &s,
        "ping: pong\npong: ping@localhost\nopen: \"|/bin/true\"\n",
    );
    send(&s, &["ping@localhost"], MESSAGE);
    let bounce = |s: &Suite| {
        s.new_mail("demo@example.test")
            .iter()
            .map(|f| String::from_utf8_lossy(&read(f)).into_owned())
            .filter(|m| m.contains("Final-Recipient: rfc822; ping@localhost"))
            .collect::<Vec<_>>()
    };
    s.wait_until("the bounce for ping", || !bounce(&s).is_empty());
    assert!(bounce(&s)[0].contains("Status: 5.4.6"), "{}", bounce(&s)[0]);
    // Nothing more comes: not a second bounce, no delivery.
    let rest = s.barrier(&["demo@example.test"]);
    assert_eq!(bounce(&s).len(), 1);
    assert_eq!(rest.len(), 1, "only the bounce: {rest:?}");
    // An alias smtpd did not know when the session began is known at once.
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO client.example.org", 250);
    c.cmd("MAIL FROM:<demo@example.test>", 250);
    c.cmd("RCPT TO:<open@localhost>", 250);
    c.cmd("RCPT TO:<not-an-alias-xyz@localhost>", 550);
    c.cmd("QUIT", 221);
}

#[test]
fn newaliases_prints_each_error_with_file_and_line() {
    let work = work_dir("newaliases");
    std::fs::write(
        work.join("main.cf"),
        format!(
            "alias_maps = hash:{0}/aliases, texthash:{0}/missing\n",
            work.display()
        ),
    )
    .unwrap();
    std::fs::write(
        work.join("aliases"),
        "good: root\nbroken line\n  \nempty:\n",
    )
    .unwrap();
    let link = work.join("newaliases");
    std::os::unix::fs::symlink(crate::harness::BIN, &link).unwrap();
    let out = std::process::Command::new(&link)
        .arg("-c")
        .arg(&work)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let a = work.join("aliases");
    assert_eq!(
        err,
        format!(
            "newaliases: {0}, line 2: no ':' after the name in \"broken line\"\nnewaliases: {0}, line 4: bad entry \"empty:\"\n",
            a.display()
        )
    );
    assert_eq!(out.status.code(), Some(1));
    // sendmail -bi is the same check.
    let bi = std::process::Command::new(crate::harness::BIN)
        .args(["sendmail", "-bi", "-C"])
        .arg(&work)
        .output()
        .unwrap();
    assert_eq!(bi.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&bi.stderr), err);
    std::fs::write(work.join("aliases"), "good: root\n").unwrap();
    let out = std::process::Command::new(&link)
        .arg("-c")
        .arg(&work)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
    std::fs::remove_dir_all(&work).unwrap();
}
