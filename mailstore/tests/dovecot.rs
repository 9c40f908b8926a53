//! Dovecot compatibility, both ways.
//!
//! `dovecot_maildir_opens_with_dovecots_uids`: a Maildir that a real Dovecot
//! 2.3 served (fixtures/dovecot-maildir.tar, made by
//! fixtures/make-dovecot-fixture.py, which also wrote down what Dovecot
//! reported over IMAP and POP3 in fixtures/dovecot-expected.txt) opens here
//! with Dovecot's UIDVALIDITY, UIDs, flags, keywords, sizes, folders,
//! subscriptions and POP3 UIDLs.
//!
//! `posthorn_maildir_opens_in_dovecot_with_the_same_uids`: a Maildir
//! mailstore wrote is served by a real Dovecot (started with a private
//! configuration on 127.0.0.1, stopped afterwards), which must report what
//! mailstore reports. Runs only as root with `dovecot` installed (Debian:
//! dovecot-imapd, dovecot-pop3d) and says so when skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use mailstore::names::{decode_utf7, encode_utf7};
use mailstore::pop3::Maildrop;
use mailstore::{Access, Flags, Maildir, Options, Store, INBOX};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct FolderView {
    uid_validity: u32,
    uid_next: u32,
    /// (uid, flags and keywords as IMAP shows them, RFC822.SIZE)
    messages: Vec<(u32, BTreeSet<String>, u64)>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct View {
    folders: BTreeMap<String, FolderView>,
    subscribed: BTreeSet<String>,
    uidls: Vec<String>,
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("posthorn-dovecot-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// IMAP's names of a message's flags and keywords.
fn imap_flags(flags: Flags, keywords: Vec<String>) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    for (f, name) in [
        (Flags::SEEN, "\\Seen"),
        (Flags::REPLIED, "\\Answered"),
        (Flags::FLAGGED, "\\Flagged"),
        (Flags::DRAFT, "\\Draft"),
        (Flags::TRASHED, "\\Deleted"),
    ] {
        if flags.contains(f) {
            s.insert(name.to_string());
        }
    }
    s.extend(keywords);
    s
}

/// What mailstore sees (folders read-only, so nothing moves).
fn mailstore_view(md: &Path) -> View {
    let s = Store::open(md).unwrap();
    let mut v = View::default();
    for info in s.folders().unwrap() {
        let mut f = s.folder(&info.name, Access::ReadOnly).unwrap();
        let uids: Vec<u32> = f.messages().iter().map(|m| m.uid).collect();
        let mut messages = Vec::new();
        for uid in uids {
            let flags = f.message(uid).unwrap().flags;
            let kw = f.keyword_names(uid).unwrap();
            messages.push((uid, imap_flags(flags, kw), f.vsize(uid).unwrap()));
        }
        v.folders.insert(
            info.name.clone(),
            FolderView {
                uid_validity: f.uid_validity(),
                uid_next: f.uid_next(),
                messages,
            },
        );
    }
    v.subscribed = s.subscriptions().unwrap().into_iter().collect();
    v
}

fn words(s: &str) -> Vec<&str> {
    s.split([' ', '(', ')']).filter(|w| !w.is_empty()).collect()
}

/// `(UID 3 FLAGS ($Label1 Work) RFC822.SIZE 139)` -> (3, {..}, 139)
fn parse_fetch(line: &str) -> (u32, BTreeSet<String>, u64) {
    let after = |key: &str| line[line.find(key).unwrap() + key.len()..].trim_start();
    let uid = words(after("UID "))[0].parse().unwrap();
    let size = words(after("RFC822.SIZE "))[0].parse().unwrap();
    let flags_part = after("FLAGS (");
    let flags = flags_part[..flags_part.find(')').unwrap()]
        .split(' ')
        .filter(|f| !f.is_empty() && *f != "\\Recent")
        .map(str::to_string)
        .collect();
    (uid, flags, size)
}

/// `(MESSAGES 5 UIDNEXT 7 UIDVALIDITY 1795932830)` -> (validity, next)
fn parse_status(line: &str) -> (u32, u32) {
    let w = words(line);
    let get = |k: &str| {
        w[w.iter().position(|x| *x == k).unwrap() + 1]
            .parse()
            .unwrap()
    };
    (get("UIDVALIDITY"), get("UIDNEXT"))
}

fn utf8(name: &str) -> String {
    decode_utf7(name.trim_matches('"')).unwrap()
}

/// What fixtures/dovecot-expected.txt says Dovecot reported.
fn expected_view() -> View {
    let text = fs::read_to_string(fixtures().join("dovecot-expected.txt")).unwrap();
    let mut v = View::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (kind, rest) = line.split_once(' ').unwrap();
        match kind {
            "status" => {
                let (name, rest) = rest.split_once(' ').unwrap();
                let (validity, next) = parse_status(rest);
                let f = v.folders.entry(utf8(name)).or_default();
                f.uid_validity = validity;
                f.uid_next = next;
            }
            "fetch" => {
                let (name, rest) = rest.split_once(' ').unwrap();
                v.folders
                    .entry(utf8(name))
                    .or_default()
                    .messages
                    .push(parse_fetch(rest));
            }
            "list" => {
                let name = rest.rsplit(' ').next().unwrap();
                v.folders.entry(utf8(name)).or_default();
            }
            "lsub" => {
                v.subscribed.insert(utf8(rest.rsplit(' ').next().unwrap()));
            }
            "uidl" => v.uidls.push(rest.split(' ').nth(1).unwrap().to_string()),
            _ => {}
        }
    }
    v
}

fn untar_fixture(dir: &Path) -> PathBuf {
    let st = Command::new("tar")
        .arg("-xf")
        .arg(fixtures().join("dovecot-maildir.tar"))
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    dir.join("Maildir")
}

#[test]
fn dovecot_maildir_opens_with_dovecots_uids() {
    let d = temp("fixture");
    let md = untar_fixture(&d);
    let want = expected_view();
    let mut got = mailstore_view(&md);
    // One message was delivered after Dovecot's last session (in new/,
    // without a UID): it gets Dovecot's UIDNEXT, and UIDNEXT moves on.
    let inbox = got.folders.get_mut(INBOX).unwrap();
    let last = inbox.messages.pop().unwrap();
    let dovecot_next = want.folders[INBOX].uid_next;
    assert_eq!(last.0, dovecot_next);
    assert!(last.1.is_empty());
    assert_eq!(inbox.uid_next, dovecot_next + 1);
    inbox.uid_next = dovecot_next;
    // "Archive" exists, with no messages: Dovecot listed it.
    assert_eq!(
        got.folders.keys().collect::<Vec<_>>(),
        ["Archive", "Archive/2024", "Entwürfe", "INBOX", "Sent"]
    );
    let archive = got.folders.remove("Archive").unwrap();
    assert!(archive.messages.is_empty());
    let mut want_folders = want.folders.clone();
    want_folders.remove("Archive");
    assert_eq!(got.folders, want_folders);
    assert_eq!(got.subscribed, want.subscribed);
    // POP3: Dovecot's UIDLs, then the new message's in the same format.
    let s = Store::open(&md).unwrap();
    let drop_ = Maildrop::open(&s).unwrap();
    let uidls: Vec<String> = drop_.messages().iter().map(|m| m.uidl.clone()).collect();
    let mut want_uidls = want.uidls.clone();
    want_uidls.push(format!(
        "{:08x}{:08x}",
        dovecot_next, want.folders[INBOX].uid_validity
    ));
    assert_eq!(uidls, want_uidls);
    // Written back by mailstore, the list still has Dovecot's header and
    // records (now with the new one).
    let list = fs::read_to_string(md.join("dovecot-uidlist")).unwrap();
    assert!(list.starts_with(&format!(
        "3 V{} N{} G",
        want.folders[INBOX].uid_validity,
        dovecot_next + 1
    )));
    fs::remove_dir_all(&d).unwrap();
}

/// A Dovecot started for one test, stopped on drop.
struct Dovecot {
    child: Child,
    imap: u16,
    pop3: u16,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const UID: u32 = 4242;

fn start_dovecot(dir: &Path) -> Dovecot {
    let (imap, pop3) = (free_port(), free_port());
    for sub in ["run", "state"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    fs::write(dir.join("passwd"), "fixture:{PLAIN}secret::::::\n").unwrap();
    let d = dir.display();
    let conf = format!(
        "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
         protocols = imap pop3\nlisten = 127.0.0.1\nssl = no\n\
         disable_plaintext_auth = no\nauth_mechanisms = plain\nfirst_valid_uid = 1\n\
         mail_location = maildir:~/Maildir\nmail_uid = {UID}\nmail_gid = {UID}\n\
         default_login_user = dovenull\ndefault_internal_user = dovecot\n\
         namespace inbox {{\n  inbox = yes\n  separator = /\n}}\n\
         passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/passwd\n}}\n\
         userdb {{\n  driver = static\n  args = uid={UID} gid={UID} home={d}/home/%u\n}}\n\
         service imap-login {{\n  inet_listener imap {{\n    port = {imap}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         service pop3-login {{\n  inet_listener pop3 {{\n    port = {pop3}\n  }}\n  inet_listener pop3s {{\n    port = 0\n  }}\n}}\n\
         service anvil {{\n  chroot =\n}}\n"
    );
    fs::write(dir.join("dovecot.conf"), conf).unwrap();
    let child = Command::new("dovecot")
        .arg("-F")
        .arg("-c")
        .arg(dir.join("dovecot.conf"))
        .spawn()
        .unwrap();
    let dc = Dovecot { child, imap, pop3 };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", imap)).is_err() {
        assert!(
            Instant::now() < deadline,
            "dovecot did not start: {}",
            fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    dc
}

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
    tag: u32,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
            tag: 0,
        };
        let greeting = c.line();
        assert!(
            greeting.starts_with("* OK") || greeting.starts_with("+OK"),
            "{greeting}"
        );
        c
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        assert!(!l.is_empty(), "connection closed");
        l.trim_end().to_string()
    }

    /// An IMAP command: its untagged lines (the tagged reply must be OK).
    fn imap(&mut self, cmd: &str) -> Vec<String> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        write!(self.w, "{tag} {cmd}\r\n").unwrap();
        let mut out = Vec::new();
        loop {
            let l = self.line();
            if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
                assert!(rest.starts_with("OK"), "{cmd}: {l}");
                return out;
            }
            out.push(l);
        }
    }

    /// A POP3 multi-line command's lines.
    fn pop3_multi(&mut self, cmd: &str) -> Vec<String> {
        write!(self.w, "{cmd}\r\n").unwrap();
        let first = self.line();
        assert!(first.starts_with("+OK"), "{cmd}: {first}");
        let mut out = Vec::new();
        loop {
            let l = self.line();
            if l == "." {
                return out;
            }
            out.push(l);
        }
    }

    fn pop3(&mut self, cmd: &str) {
        write!(self.w, "{cmd}\r\n").unwrap();
        let l = self.line();
        assert!(l.starts_with("+OK"), "{cmd}: {l}");
    }
}

/// What Dovecot reports over IMAP and POP3.
fn dovecot_view(dc: &Dovecot) -> View {
    let mut v = View::default();
    let mut c = Client::connect(dc.imap);
    c.imap("LOGIN fixture secret");
    let mut names = Vec::new();
    for l in c.imap("LIST \"\" \"*\"") {
        names.push(utf8(l.rsplit(' ').next().unwrap()));
    }
    for l in c.imap("LSUB \"\" \"*\"") {
        v.subscribed.insert(utf8(l.rsplit(' ').next().unwrap()));
    }
    for name in names {
        let q = format!("\"{}\"", encode_utf7(&name));
        let status = c.imap(&format!("STATUS {q} (UIDVALIDITY UIDNEXT MESSAGES)"));
        let (uid_validity, uid_next) = parse_status(&status[0]);
        c.imap(&format!("EXAMINE {q}"));
        let mut messages = Vec::new();
        for l in c.imap("UID FETCH 1:* (FLAGS RFC822.SIZE)") {
            if l.contains("FETCH") {
                messages.push(parse_fetch(&l));
            }
        }
        messages.sort();
        v.folders.insert(
            name,
            FolderView {
                uid_validity,
                uid_next,
                messages,
            },
        );
    }
    c.imap("LOGOUT");
    let mut p = Client::connect(dc.pop3);
    p.pop3("USER fixture");
    p.pop3("PASS secret");
    for l in p.pop3_multi("UIDL") {
        v.uidls.push(l.split(' ').nth(1).unwrap().to_string());
    }
    p.pop3("QUIT");
    v
}

fn deliver(md: &Path, body: &str) {
    let m = Maildir::create(md).unwrap();
    let mut d = m.begin().unwrap();
    d.write(body.as_bytes()).unwrap();
    d.commit().unwrap();
}

#[test]
fn posthorn_maildir_opens_in_dovecot_with_the_same_uids() {
    let have = Command::new("dovecot")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have || !common::privilege::is_root() {
        eprintln!(
            "posthorn_maildir_opens_in_dovecot_with_the_same_uids: SKIPPED ({}); install dovecot-imapd and dovecot-pop3d and run as root",
            if have { "not root" } else { "dovecot is not installed" }
        );
        return;
    }
    let d = temp("reverse");
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let md = d.join("home/fixture/Maildir");
    let s = Store::create_user(&md, Options::default()).unwrap();
    for i in 1..=4 {
        deliver(
            &md,
            &format!("From: a{i}@example.org\nSubject: {i}\n\nBody {i}.\n"),
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut inbox = s.folder(INBOX, Access::ReadWrite).unwrap();
    inbox.set_flags(1, Flags::SEEN, &[]).unwrap();
    inbox
        .set_flags(2, Flags::FLAGGED | Flags::REPLIED, &["Work", "$Label1"])
        .unwrap();
    inbox.set_flags(4, Flags::DRAFT, &["$Label1"]).unwrap();
    inbox.expunge(&[3]).unwrap();
    s.create("Archive/2024").unwrap();
    s.create("Entwürfe").unwrap();
    s.subscribe("Entwürfe").unwrap();
    let mut sent = s.folder("Sent", Access::ReadWrite).unwrap();
    sent.append(
        &mut &b"Subject: sent\r\n\r\nsent\r\n"[..],
        Flags::SEEN,
        &["Done"],
        None,
    )
    .unwrap();
    let mut arch = s.folder("Archive/2024", Access::ReadWrite).unwrap();
    inbox.copy_to(&[2], &mut arch).unwrap();
    // A delivery after the last session: Dovecot gives it the next UID.
    deliver(&md, "Subject: late\n\nlate\n");
    let mut ours = mailstore_view(&md);
    for f in ours.folders.values_mut() {
        f.messages.sort();
    }
    ours.uidls = Maildrop::open(&s)
        .unwrap()
        .messages()
        .iter()
        .map(|m| m.uidl.clone())
        .collect();
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{UID}:{UID}"))
        .arg(d.join("home"))
        .status()
        .unwrap();
    assert!(st.success());
    let theirs = {
        let dc = start_dovecot(&d);
        dovecot_view(&dc)
    };
    assert_eq!(
        theirs, ours,
        "Dovecot's view (left) differs from mailstore's (right)"
    );
    assert_eq!(theirs.folders[INBOX].messages.len(), 4);
    fs::remove_dir_all(&d).unwrap();
}
