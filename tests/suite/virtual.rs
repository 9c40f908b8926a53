//! virtual_alias_maps and virtual_alias_domains end to end: smtpd expands
//! recipients at RCPT from a text table (no postmap, read again when it
//! changes), the queue gets the final recipients, local delivery puts the
//! mail into the virtual users' Maildirs, and a bounce for an expanded
//! recipient names the address the sender used. "Nothing more arrived" is
//! proven with a barrier message.

use std::path::PathBuf;

use crate::harness::{read, Smtp, Suite};

/// A table file outside the suite's directory (which `Suite::start` makes
/// anew), readable by the unprivileged smtpd; removed when dropped.
struct Table(PathBuf);

impl Table {
    fn new(name: &str, text: &str) -> Table {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("posthorn-virtual-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let t = Table(dir.join("virtual"));
        t.write(text);
        t
    }

    /// Replace the table as an editor would (a new file renamed over it).
    fn write(&self, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let tmp = self.0.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::rename(&tmp, &self.0).unwrap();
    }

    fn setting(&self) -> String {
        format!("virtual_alias_maps=texthash:{}", self.0.display())
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

const TABLE: &str = "\
# virtual alias domains: lines of their own (virtual_alias_domains'
# default is $virtual_alias_maps)
alias.test      virtual alias domain
strict.test     virtual alias domain
old.test        virtual alias domain

info@alias.test     bob@example.test
@alias.test         catch@example.test
a@strict.test       demo@example.test
gone@strict.test    nobody@example.test
@old.test           @example.test
listed@example.test demo@example.test, bob@example.test
";

const USERS: &[&str] = &["bob@example.test:bob", "catch@example.test:catch"];

/// The messages in `user`'s new/ with `needle` in them.
fn with(s: &Suite, user: &str, needle: &str) -> Vec<String> {
    s.new_mail(user)
        .iter()
        .map(|f| String::from_utf8_lossy(&read(f)).into_owned())
        .filter(|m| m.contains(needle))
        .collect()
}

/// An alias to a virtual mailbox user, the catch-all, a domain alias and a
/// list, in one message whose final recipients repeat: each mailbox gets
/// it once; an unknown address in a virtual alias domain is refused at
/// RCPT with Postfix's reply.
#[test]
fn aliases_catch_all_and_domain_alias() {
    let t = Table::new("aliases", TABLE);
    let s = Suite::start("virtual-aliases", USERS, &[&t.setting()]);
    let mut c = Smtp::connect(s.port);
    c.cmd("EHLO client.example.org", 250);
    c.cmd("MAIL FROM:<alice@example.org>", 250);
    let refused = c.cmd("RCPT TO:<nobody@strict.test>", 550);
    assert_eq!(
        refused,
        ["550 5.1.1 <nobody@strict.test>: Recipient address rejected: User unknown in virtual alias table"]
    );
    for to in [
        "info@alias.test",
        "whoever@alias.test",
        "Bob@Old.Test",
        "listed@example.test",
    ] {
        c.cmd(&format!("RCPT TO:<{to}>"), 250);
    }
    c.cmd("DATA", 354);
    c.raw(b"Subject: aliases\r\n\r\nto the aliases\r\n.\r\n");
    let id = c.expect(250)[0].rsplit(' ').next().unwrap().to_string();
    c.cmd("QUIT", 221);
    let users = [
        "demo@example.test",
        "bob@example.test",
        "catch@example.test",
    ];
    let got = s.barrier(&users);
    assert_eq!(got.len(), 3, "one copy each: {got:#?}");
    for u in users {
        let m = with(&s, u, "Subject: aliases");
        assert_eq!(m.len(), 1, "{u}: {m:#?}");
        assert!(m[0].contains(&format!("Delivered-To: {u}\n")), "{}", m[0]);
    }
    let log = s.log();
    assert!(
        log.contains(&format!(
            "{id}: to=<catch@example.test>, orig_to=<whoever@alias.test>, relay=virtual"
        )),
        "{log}"
    );
    assert!(
        log.contains("NOQUEUE: reject: RCPT from ")
            && log.contains("User unknown in virtual alias table; from=<alice@example.org> to=<nobody@strict.test>"),
        "{log}"
    );
}

/// The table is read again when it changes, with no reload: an address
/// refused before is accepted after, and its mail follows the new entry;
/// an entry changed goes to its new target. (A 554 at the first RCPT
/// means another suite on the machine holds the same port.)
#[test]
fn a_table_change_is_followed_without_reload() {
    let t = Table::new("reload", TABLE);
    let s = Suite::start("virtual-reload", USERS, &[&t.setting()]);
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO client.example.org", 250);
    c.cmd("MAIL FROM:<alice@example.org>", 250);
    c.send("RCPT TO:<new@strict.test>");
    let (code, reply) = c.reply();
    assert_eq!(code, 550, "{reply:?}; log:\n{}", s.log());
    c.cmd("QUIT", 221);
    t.write(&TABLE.replace(
        "info@alias.test     bob@example.test",
        "info@alias.test     demo@example.test\nnew@strict.test  catch@example.test",
    ));
    // Each smtpd process looks at the file at most once a second: send
    // until one has the new table; the whole message then goes through
    // that process (so info@alias.test follows the new entry too).
    s.wait_until("smtpd accepts new@strict.test", || {
        let mut c = Smtp::connect(s.port);
        c.cmd("HELO client.example.org", 250);
        c.cmd("MAIL FROM:<alice@example.org>", 250);
        c.send("RCPT TO:<new@strict.test>");
        let (code, _) = c.reply();
        if code == 250 {
            c.cmd("RCPT TO:<info@alias.test>", 250);
            c.cmd("DATA", 354);
            c.raw(b"Subject: after the change\r\n\r\nx\r\n.\r\n");
            c.expect(250);
        }
        c.cmd("QUIT", 221);
        code == 250
    });
    s.barrier(&[
        "demo@example.test",
        "bob@example.test",
        "catch@example.test",
    ]);
    assert_eq!(with(&s, "catch@example.test", "after the change").len(), 1);
    assert_eq!(with(&s, "demo@example.test", "after the change").len(), 1);
    assert!(
        with(&s, "bob@example.test", "after the change").is_empty(),
        "the old entry is gone"
    );
}

/// A bounce for an expanded recipient names the address the sender used
/// (Original-Recipient) beside the final one.
#[test]
fn a_bounce_names_the_original_recipient() {
    let t = Table::new("bounce", TABLE);
    let s = Suite::start("virtual-bounce", USERS, &[&t.setting()]);
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO client.example.org", 250);
    c.mail(
        "demo@example.test",
        &["gone@strict.test"],
        b"Subject: to a gone alias\r\n\r\nx\r\n",
    );
    c.cmd("QUIT", 221);
    s.wait_until("the bounce", || {
        !with(
            &s,
            "demo@example.test",
            "Final-Recipient: rfc822; nobody@example.test",
        )
        .is_empty()
    });
    let n = with(
        &s,
        "demo@example.test",
        "Final-Recipient: rfc822; nobody@example.test",
    );
    assert_eq!(n.len(), 1, "{n:#?}");
    assert!(
        n[0].contains(
            "\nOriginal-Recipient: rfc822; gone@strict.test\n\
             Final-Recipient: rfc822; nobody@example.test\n\
             Action: failed\n"
        ),
        "{}",
        n[0]
    );
    assert!(n[0].contains("gone@strict.test"), "{}", n[0]);
}

/// Mail from sendmail (pickup) is rewritten as smtpd's is: an alias
/// reaches its mailbox with the original as ORCPT, and an address of a
/// virtual alias domain with no entry is returned to the sender by qmgr
/// ("User unknown in virtual alias table": smtpd refuses it at RCPT, but
/// sendmail has no RCPT to refuse).
#[test]
fn sendmail_mail_is_rewritten_too() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let t = Table::new("sendmail", TABLE);
    let s = Suite::start("virtual-sendmail", USERS, &[&t.setting()]);
    let mut c = Command::new(crate::harness::BIN)
        .arg("sendmail")
        .arg("-C")
        .arg(&s.dir)
        .args([
            "-f",
            "demo@example.test",
            "info@alias.test",
            "nobody@strict.test",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("sendmail runs");
    c.stdin
        .take()
        .unwrap()
        .write_all(b"Subject: from cron\n\nrewritten\n")
        .unwrap();
    assert!(c.wait().unwrap().success());
    s.wait_until("bob's copy and the bounce", || {
        !with(&s, "bob@example.test", "Subject: from cron").is_empty()
            && !with(
                &s,
                "demo@example.test",
                "User unknown in virtual alias table",
            )
            .is_empty()
    });
    let b = with(
        &s,
        "demo@example.test",
        "User unknown in virtual alias table",
    );
    assert_eq!(b.len(), 1, "{b:#?}");
    assert!(
        b[0].contains(
            "Final-Recipient: rfc822; nobody@strict.test\nAction: failed\nStatus: 5.1.1\n"
        ),
        "{}",
        b[0]
    );
    let log = s.log();
    assert!(
        log.contains("to=<bob@example.test>, orig_to=<info@alias.test>, relay=virtual"),
        "{log}"
    );
}
