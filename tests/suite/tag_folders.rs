//! recipient_delimiter_folder: `user+folder@domain` is filed in the user's
//! folder of that name when it exists (Maildir++ `.folder`, nested levels
//! as `a.b` or `a/b`, the case as the user made it), else in INBOX; no
//! folder is ever made from an address. Off (the default), every extension
//! goes to INBOX.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::harness::{Smtp, Suite};

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn send(s: &Suite, rcpt: &str, subject: &str) {
    let mut c = Smtp::connect(s.port);
    c.cmd("HELO client.example.org", 250);
    c.mail(
        "a@example.org",
        &[rcpt],
        format!("Subject: {subject}\r\n\r\n{subject}\r\n").as_bytes(),
    );
    c.cmd("QUIT", 221);
}

/// The subjects of the messages in `dir` (a new/ directory), sorted.
fn subjects(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = files(dir)
        .iter()
        .filter_map(|p| {
            let t = std::fs::read_to_string(p).ok()?;
            t.lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        })
        .filter(|s| s != "barrier")
        .collect();
    v.sort();
    v
}

#[test]
fn plus_tag_files_into_an_existing_folder_only() {
    let s = Suite::start(
        "tag-folders",
        &[],
        &["recipient_delimiter=+", "recipient_delimiter_folder=yes"],
    );
    let md = s.maildir("demo@example.test");
    // A nested folder Lists/Rust, as the user (an IMAP client) made it.
    let owner = std::fs::metadata(&md).unwrap();
    for sub in ["", "cur", "new", "tmp"] {
        let d = md.join(".Lists.Rust").join(sub);
        std::fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    let before: Vec<PathBuf> = files(&md);
    send(&s, "demo+Sent@example.test", "exact");
    send(&s, "demo+sent@example.test", "other case");
    send(&s, "demo+lists.rust@example.test", "nested with a dot");
    send(&s, "demo+Lists/Rust@example.test", "nested with a slash");
    send(&s, "demo+nosuch@example.test", "no such folder");
    send(&s, "demo+INBOX@example.test", "inbox");
    send(&s, "demo+new@example.test", "not a folder");
    send(&s, "demo+Lists.@example.test", "empty level");
    // Everything before the barrier has been delivered.
    s.barrier(&["demo@example.test"]);
    assert_eq!(subjects(&md.join(".Sent/new")), ["exact", "other case"]);
    assert_eq!(
        subjects(&md.join(".Lists.Rust/new")),
        ["nested with a dot", "nested with a slash"]
    );
    assert_eq!(
        subjects(&md.join("new")),
        ["empty level", "inbox", "no such folder", "not a folder"]
    );
    // No folder was made from an address.
    assert_eq!(files(&md).len(), before.len(), "{:?}", files(&md));
}

#[test]
fn plus_tag_goes_to_inbox_when_folders_are_off() {
    let s = Suite::start("tag-off", &[], &["recipient_delimiter=+"]);
    let md = s.maildir("demo@example.test");
    send(&s, "demo+Sent@example.test", "off");
    s.barrier(&["demo@example.test"]);
    assert_eq!(subjects(&md.join("new")), ["off"]);
    assert!(subjects(&md.join(".Sent/new")).is_empty());
}
