//! The store on real directories: folders, subscriptions, syncs, flags,
//! keywords, expunge, append, copy, quota and the POP3 maildrop, checked
//! the way a user (or Dovecot) would see the files.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use common::quota::Quota;
use mailstore::pop3::{self, Maildrop, Pop3LockError};
use mailstore::{Access, Flags, Maildir, Options, SpecialUse, Store, StoreError, INBOX};

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("posthorn-store-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn deliver(md: &Path, body: &str) -> PathBuf {
    let m = Maildir::create(md).unwrap();
    let mut d = m.begin().unwrap();
    d.write(body.as_bytes()).unwrap();
    d.commit().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn new_user_gets_special_use_folders_subscribed() {
    let d = temp("newuser");
    let md = d.join("Maildir");
    let s = Store::create_user(&md, Options::default()).unwrap();
    let f = s.folders().unwrap();
    let listed: Vec<(&str, Option<SpecialUse>)> =
        f.iter().map(|f| (f.name.as_str(), f.special_use)).collect();
    assert_eq!(
        listed,
        [
            ("INBOX", None),
            ("Archive", Some(SpecialUse::Archive)),
            ("Drafts", Some(SpecialUse::Drafts)),
            ("Junk", Some(SpecialUse::Junk)),
            ("Sent", Some(SpecialUse::Sent)),
            ("Trash", Some(SpecialUse::Trash)),
        ]
    );
    assert_eq!(
        s.subscriptions().unwrap(),
        ["INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"]
    );
    assert_eq!(
        fs::read_to_string(md.join("subscriptions")).unwrap(),
        "V\t2\n\nINBOX\nDrafts\nSent\nTrash\nJunk\nArchive\n"
    );
    for dir in [".Sent", ".Drafts", ".Trash", ".Junk", ".Archive"] {
        assert_eq!(names(&md.join(dir)), ["cur", "maildirfolder", "new", "tmp"]);
    }
    // Again: nothing changes, nothing fails.
    Store::create_user(&md, Options::default()).unwrap();
    assert_eq!(s.subscriptions().unwrap().len(), 6);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn folders_create_rename_delete() {
    let d = temp("folders");
    let md = d.join("Maildir");
    let s = Store::open(&md).unwrap();
    s.create("Archive/2024").unwrap();
    s.create("Archive/2024/Q1").unwrap();
    s.create("Entwürfe").unwrap();
    assert!(md.join(".Archive.2024.Q1/cur").is_dir());
    assert!(md.join(".Entw&APw-rfe/maildirfolder").is_file());
    assert!(matches!(
        s.create("Entwürfe"),
        Err(StoreError::FolderExists(_))
    ));
    assert!(matches!(
        s.create("INBOX"),
        Err(StoreError::FolderExists(_))
    ));
    assert!(matches!(s.create("a.b"), Err(StoreError::BadName { .. })));
    assert!(matches!(s.create("../x"), Err(StoreError::BadName { .. })));
    assert!(!d.join("x").exists());
    // A parent need not exist in Maildir++.
    let listed: Vec<String> = s.folders().unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(
        listed,
        ["INBOX", "Archive/2024", "Archive/2024/Q1", "Entwürfe"]
    );
    // Rename takes the children along.
    s.rename("Archive/2024", "Old").unwrap();
    let listed: Vec<String> = s.folders().unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(listed, ["INBOX", "Entwürfe", "Old", "Old/Q1"]);
    assert!(matches!(
        s.rename("Old", "Entwürfe"),
        Err(StoreError::FolderExists(_))
    ));
    assert!(matches!(s.rename("INBOX", "X"), Err(StoreError::Inbox(_))));
    assert!(matches!(
        s.rename("Nope", "X"),
        Err(StoreError::NoSuchFolder(_))
    ));
    assert!(matches!(
        s.rename("Old", "Old/Q1/x"),
        Err(StoreError::BadName { .. })
    ));
    // Delete: not with children, not INBOX.
    assert!(matches!(s.delete("Old"), Err(StoreError::HasChildren(_))));
    assert!(matches!(s.delete("INBOX"), Err(StoreError::Inbox(_))));
    deliver(&md.join(".Old.Q1"), "Subject: x\n\nx\n");
    s.delete("Old/Q1").unwrap();
    s.delete("Old").unwrap();
    assert!(matches!(s.delete("Old"), Err(StoreError::NoSuchFolder(_))));
    assert!(!md.join("..DOVECOT-TRASHED").exists());
    assert_eq!(names(&md), [".Entw&APw-rfe", "cur", "new", "tmp"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn subscriptions_round_trip() {
    let d = temp("subs");
    let s = Store::open(&d.join("Maildir")).unwrap();
    assert!(s.subscriptions().unwrap().is_empty());
    s.subscribe("Archive/2024").unwrap();
    s.subscribe("Entwürfe").unwrap();
    s.subscribe("inbox").unwrap();
    s.subscribe("Entwürfe").unwrap();
    assert_eq!(
        s.subscriptions().unwrap(),
        ["Archive/2024", "Entwürfe", "INBOX"]
    );
    assert_eq!(
        fs::read_to_string(d.join("Maildir/subscriptions")).unwrap(),
        "V\t2\n\nArchive\t2024\nEntw&APw-rfe\nINBOX\n"
    );
    s.unsubscribe("Archive/2024").unwrap();
    assert_eq!(s.subscriptions().unwrap(), ["Entwürfe", "INBOX"]);
    // A corrupt file is an error naming it.
    fs::write(d.join("Maildir/subscriptions"), "V\t2\n\na..b\n").unwrap();
    let e = s.subscriptions().unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }));
    assert!(e.to_string().contains("subscriptions: line 3"), "{e}");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn sync_gives_uids_in_order_and_moves_new_to_cur() {
    let d = temp("sync");
    let md = d.join("Maildir");
    let s = Store::open(&md).unwrap();
    let a = deliver(&md, "Subject: a\n\nA\n");
    std::thread::sleep(Duration::from_millis(2));
    let b = deliver(&md, "Subject: b\r\n\r\nB\r\n");
    assert!(
        b.to_str().unwrap().ends_with(",S=17,W=17"),
        "{}",
        b.display()
    );
    // Read-only: UIDs, but files stay in new/.
    let mut ro = s.folder(INBOX, Access::ReadOnly).unwrap();
    let uidv = ro.uid_validity();
    assert!(uidv > 0);
    let msgs = ro.messages().to_vec();
    assert_eq!(msgs.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(msgs[0].base, a.file_name().unwrap().to_str().unwrap());
    assert!(msgs.iter().all(|m| m.in_new));
    assert_eq!((msgs[0].size, msgs[0].vsize), (14, Some(17)));
    assert_eq!(
        (msgs[1].size, msgs[1].vsize),
        (17, Some(17)),
        "CRLF stays CRLF on disk here"
    );
    assert_eq!(names(&md.join("new")).len(), 2);
    let list = fs::read_to_string(md.join("dovecot-uidlist")).unwrap();
    let mut lines = list.lines();
    let head = lines.next().unwrap();
    assert!(head.starts_with(&format!("3 V{uidv} N3 G")), "{head}");
    assert_eq!(head.len(), format!("3 V{uidv} N3 G").len() + 32);
    assert_eq!(lines.next().unwrap(), format!("1 :{}", msgs[0].base));
    assert_eq!(lines.next().unwrap(), format!("2 :{}", msgs[1].base));
    // Read-write: moved to cur/ with ":2,".
    let mut rw = s.folder(INBOX, Access::ReadWrite).unwrap();
    assert_eq!(rw.uid_validity(), uidv);
    assert!(names(&md.join("new")).is_empty());
    assert_eq!(
        names(&md.join("cur")),
        [
            format!("{}:2,", msgs[0].base),
            format!("{}:2,", msgs[1].base)
        ]
    );
    assert!(rw.messages().iter().all(|m| !m.in_new));
    // The read-only folder finds them in cur/ by their base names.
    let mut text = String::new();
    ro.open_message(1)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "Subject: a\n\nA\n");
    // A third delivery: reported as new, UID 3.
    deliver(&md, "Subject: c\n\nC\n");
    let c = rw.sync().unwrap();
    assert_eq!(c.new, [3]);
    assert!(c.expunged.is_empty() && !c.uid_validity_changed);
    assert_eq!(rw.uid_next(), 4);
    // Nothing changed: nothing reported.
    assert!(rw.sync().unwrap().is_empty());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn flags_keywords_and_a_rename_by_another_session() {
    let d = temp("flags");
    let md = d.join("Maildir");
    let s = Store::open(&md).unwrap();
    deliver(&md, "Subject: a\n\nA\n");
    deliver(&md, "Subject: b\n\nB\n");
    let mut one = s.folder(INBOX, Access::ReadWrite).unwrap();
    let mut two = s.folder(INBOX, Access::ReadWrite).unwrap();
    one.set_flags(1, Flags::SEEN | Flags::FLAGGED, &["$Label1", "Work"])
        .unwrap();
    let m = one.message(1).unwrap().clone();
    assert_eq!(m.file, format!("{}:2,FSab", m.base));
    assert_eq!(
        fs::read_to_string(md.join("dovecot-keywords")).unwrap(),
        "0 $Label1\n1 Work\n"
    );
    assert_eq!(one.keyword_names(1).unwrap(), ["$Label1", "Work"]);
    // The other session still has the old name: it finds the file again.
    let mut text = String::new();
    two.open_message(1)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "Subject: a\n\nA\n");
    let c = two.sync().unwrap();
    assert_eq!(c.flags, [1]);
    assert_eq!(two.message(1).unwrap().flags, Flags::SEEN | Flags::FLAGGED);
    assert_eq!(two.keyword_names(1).unwrap(), ["$Label1", "Work"]);
    // Keywords are case-insensitive; a known one keeps its letter.
    two.set_flags(2, Flags::empty(), &["work"]).unwrap();
    assert!(two.message(2).unwrap().file.ends_with(":2,b"));
    assert!(matches!(
        two.set_flags(2, Flags::SEEN, &["bad word"]),
        Err(StoreError::BadKeyword(_))
    ));
    // Read-only folders change nothing.
    let mut ro = s.folder(INBOX, Access::ReadOnly).unwrap();
    assert!(matches!(
        ro.set_flags(1, Flags::empty(), &[]),
        Err(StoreError::ReadOnly(_))
    ));
    assert!(matches!(ro.expunge(&[1]), Err(StoreError::ReadOnly(_))));
    // 26 letters, then full.
    let many: Vec<String> = (0..24).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    one.set_flags(2, Flags::empty(), &refs).unwrap();
    assert!(matches!(
        one.set_flags(2, Flags::empty(), &["one-too-many"]),
        Err(StoreError::KeywordsFull { .. })
    ));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn expunge_removes_files_and_records_and_uids_are_not_reused() {
    let d = temp("expunge");
    let md = d.join("Maildir");
    let s = Store::open(&md).unwrap();
    for i in 0..4 {
        deliver(&md, &format!("Subject: {i}\n\n{i}\n"));
    }
    let mut f = s.folder(INBOX, Access::ReadWrite).unwrap();
    let mut other = s.folder(INBOX, Access::ReadOnly).unwrap();
    assert_eq!(f.expunge(&[2, 4, 99]).unwrap(), [2, 4]);
    assert_eq!(
        f.messages().iter().map(|m| m.uid).collect::<Vec<_>>(),
        [1, 3]
    );
    assert_eq!(names(&md.join("cur")).len(), 2);
    let list = fs::read_to_string(md.join("dovecot-uidlist")).unwrap();
    assert_eq!(list.lines().count(), 3);
    assert!(list.contains(" N5 "), "{list}");
    let c = other.sync().unwrap();
    assert_eq!(c.expunged, [2, 4]);
    assert!(matches!(
        other.open_message(2),
        Err(StoreError::NoSuchMessage(2))
    ));
    // The highest UID is gone, but UIDNEXT stays: the next message is 5.
    deliver(&md, "Subject: 5\n\n5\n");
    assert_eq!(f.sync().unwrap().new, [5]);
    // Expunged by another session between sync and open: Expunged.
    let mut third = s.folder(INBOX, Access::ReadWrite).unwrap();
    f.expunge(&[1]).unwrap();
    assert!(matches!(
        third.open_message(1),
        Err(StoreError::Expunged(1))
    ));
    assert_eq!(
        third.expunge(&[1]).unwrap(),
        [1],
        "already gone counts as expunged"
    );
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn corrupt_or_lost_uidlist() {
    let d = temp("corrupt");
    let md = d.join("Maildir");
    let s = Store::open(&md).unwrap();
    deliver(&md, "Subject: a\n\nA\n");
    deliver(&md, "Subject: b\n\nB\n");
    let mut f = s.folder(INBOX, Access::ReadWrite).unwrap();
    let v1 = f.uid_validity();
    // Lost under an open folder: rebuilt with the same UIDs.
    fs::remove_file(md.join("dovecot-uidlist")).unwrap();
    deliver(&md, "Subject: c\n\nC\n");
    let c = f.sync().unwrap();
    assert!(!c.uid_validity_changed);
    assert_eq!(c.new, [3]);
    assert!(fs::read_to_string(md.join("dovecot-uidlist"))
        .unwrap()
        .starts_with(&format!("3 V{v1} N4 ")));
    // Corrupt, opened afresh: rebuilt with a new UIDVALIDITY (logged).
    fs::write(md.join("dovecot-uidlist"), "3 V1 N1\n2 :a\n1 :b\n").unwrap();
    let g = s.folder(INBOX, Access::ReadWrite).unwrap();
    assert_ne!(g.uid_validity(), v1);
    assert!(g.uid_validity() > v1, "UIDVALIDITY goes up");
    assert_eq!(g.messages().len(), 3);
    // The open folder learns that UIDs were reassigned.
    let c = f.sync().unwrap();
    assert!(c.uid_validity_changed);
    assert_eq!(c.expunged, [1, 2, 3]);
    assert_eq!(c.new, [1, 2, 3]);
    // A half-written .tmp from a killed writer is never read.
    fs::write(md.join("dovecot-uidlist.tmp"), "3 V9 N1\n1 :garbage").unwrap();
    let h = s.folder(INBOX, Access::ReadOnly).unwrap();
    assert_eq!(h.uid_validity(), g.uid_validity());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn append_and_copy() {
    let d = temp("append");
    let md = d.join("Maildir");
    let s = Store::create_user(&md, Options::default()).unwrap();
    let mut sent = s.folder("Sent", Access::ReadWrite).unwrap();
    let when = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let uid = sent
        .append(
            &mut &b"Subject: s\r\n\r\nbody\r\n"[..],
            Flags::SEEN,
            &["Work"],
            Some(when),
        )
        .unwrap();
    assert_eq!(uid, 1);
    let m = sent.message(1).unwrap().clone();
    assert!(m.file.contains(",S=17,W=20:2,Sa"), "{}", m.file);
    assert_eq!(sent.internal_date(1).unwrap(), when);
    let mut text = Vec::new();
    sent.open_message(1)
        .unwrap()
        .read_to_end(&mut text)
        .unwrap();
    assert_eq!(text, b"Subject: s\n\nbody\n");
    assert!(names(&md.join(".Sent/tmp")).is_empty());
    // Copy to another folder: a hard link, flags and keyword names kept
    // (the keyword gets the destination's own letter).
    let mut arch = s.folder("Archive", Access::ReadWrite).unwrap();
    arch.append(&mut &b"x\n"[..], Flags::empty(), &["Other"], None)
        .unwrap();
    let pairs = sent.copy_to(&[1], &mut arch).unwrap();
    assert_eq!(pairs, [(1, 2)]);
    let c = arch.message(2).unwrap().clone();
    assert_eq!(c.base, m.base, "the base name stays, as Dovecot keeps it");
    assert_eq!(c.flags, Flags::SEEN);
    assert_eq!(arch.keyword_names(2).unwrap(), ["Work"]);
    use std::os::unix::fs::MetadataExt;
    let ino = |p: PathBuf| fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(md.join(".Sent/cur").join(&m.file)),
        ino(md.join(".Archive/cur").join(&c.file))
    );
    // Copied again into the same folder: a new base name.
    let pairs = sent.copy_to(&[1], &mut arch).unwrap();
    assert_eq!(pairs, [(1, 3)]);
    assert_ne!(arch.message(3).unwrap().base, m.base);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn quota_is_counted_checked_and_kept_up_to_date() {
    let d = temp("quota");
    let md = d.join("Maildir");
    let quota = Quota {
        storage: Some(100),
        messages: Some(3),
    };
    let opts = Options {
        quota,
        ..Options::default()
    };
    let s = Store::create_user(&md, opts).unwrap();
    deliver(&md, "Subject: a\n\n0123456789\n"); // 23 bytes
    deliver(&md.join(".Sent"), "Subject: b\n\n0123456789\n");
    // No maildirsize yet: counted from the folders and written.
    let u = s.quota_usage().unwrap();
    assert_eq!((u.bytes, u.messages), (46, 2));
    assert_eq!(
        fs::read_to_string(md.join("maildirsize")).unwrap(),
        "100S,3C\n46 2\n"
    );
    // A delivery appends its line.
    deliver(&md, "Subject: c\n\n0123456789\n");
    assert_eq!(
        fs::read_to_string(md.join("maildirsize")).unwrap(),
        "100S,3C\n46 2\n23 1\n"
    );
    assert_eq!(s.quota_usage().unwrap().messages, 3);
    // Full: three messages allowed.
    let e = s.check_quota(1, 1).unwrap_err();
    assert!(matches!(e, StoreError::OverQuota(_)), "{e}");
    assert!(
        e.to_string()
            .starts_with("Quota exceeded (mailbox for user is full)"),
        "{e}"
    );
    let mut inbox = s.folder(INBOX, Access::ReadWrite).unwrap();
    let e = inbox
        .append(&mut &b"x\n"[..], Flags::empty(), &[], None)
        .unwrap_err();
    assert!(matches!(e, StoreError::OverQuota(_)));
    assert!(
        names(&md.join("tmp")).is_empty(),
        "the refused message is not left in tmp/"
    );
    // An expunge gives room back.
    inbox.expunge(&[1]).unwrap();
    assert!(fs::read_to_string(md.join("maildirsize"))
        .unwrap()
        .ends_with("-23 -1\n"));
    s.check_quota(1, 1).unwrap();
    // Other limits: recalculated.
    let s2 = Store::open_with(
        &md,
        Options {
            quota: Quota {
                storage: Some(1000),
                messages: None,
            },
            ..opts
        },
    )
    .unwrap();
    assert_eq!(
        s2.quota_usage().unwrap(),
        mailstore::quota::Usage {
            bytes: 46,
            messages: 2
        }
    );
    assert_eq!(
        fs::read_to_string(md.join("maildirsize")).unwrap(),
        "1000S\n46 2\n"
    );
    // Garbage: recalculated (logged).
    fs::write(md.join("maildirsize"), "junk\n").unwrap();
    assert_eq!(s2.quota_usage().unwrap().bytes, 46);
    // Unlimited: an existing file is kept up to date, none is made.
    fs::remove_file(md.join("maildirsize")).unwrap();
    let s3 = Store::open(&md).unwrap();
    s3.check_quota(1 << 40, 1 << 20).unwrap();
    deliver(&md, "x\n");
    assert!(!md.join("maildirsize").exists());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn pop3_maildrop() {
    let d = temp("pop3");
    let md = d.join("Maildir");
    let s = Store::open(&md).unwrap();
    deliver(&md, "Subject: a\n\nline\n");
    deliver(&md, "Subject: b\n\n.dot\n");
    let lock = pop3::lock(&s).unwrap();
    assert!(matches!(pop3::lock(&s), Err(Pop3LockError::InUse)));
    let mut drop_ = Maildrop::open(&s).unwrap();
    let uidv = drop_.folder().uid_validity();
    let m = drop_.messages().to_vec();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].uidl, format!("00000001{uidv:08x}"));
    assert_eq!(m[0].size, 20);
    assert_eq!(drop_.total_size(), 20 + 20);
    let mut text = Vec::new();
    drop_.retrieve(1).unwrap().read_to_end(&mut text).unwrap();
    assert_eq!(text, b"Subject: a\r\n\r\nline\r\n");
    assert_eq!(text.len() as u64, m[0].size);
    drop_.folder().set_flags(1, Flags::SEEN, &[]).unwrap();
    assert_eq!(drop_.expunge(&[2]).unwrap(), [2]);
    drop(drop_);
    drop(lock);
    let _again = pop3::lock(&s).unwrap();
    // A migrated mailbox's P and O fields: Dovecot's UIDLs and order.
    let list = fs::read_to_string(md.join("dovecot-uidlist")).unwrap();
    let mut lines: Vec<String> = list.lines().map(str::to_string).collect();
    lines[1] = lines[1].replacen(" :", " P0042-old O1 :", 1);
    fs::write(md.join("dovecot-uidlist"), lines.join("\n") + "\n").unwrap();
    deliver(&md, "Subject: c\n\nc\n");
    let d2 = Maildrop::open(&s).unwrap();
    let uidls: Vec<&str> = d2.messages().iter().map(|m| m.uidl.as_str()).collect();
    assert_eq!(
        uidls,
        ["0042-old".to_string(), format!("00000003{uidv:08x}")]
    );
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn pop3_sizes_are_counted_when_names_lack_them() {
    let d = temp("pop3vsize");
    let md = d.join("Maildir");
    let s = Store::open(&md).unwrap();
    // Another program's delivery: no S=, no W=.
    fs::write(md.join("new/1700000000.12345.otherhost"), "a\nb\r\nc\n").unwrap();
    let drop_ = Maildrop::open(&s).unwrap();
    assert_eq!(drop_.messages()[0].size, 9);
    let list = fs::read_to_string(md.join("dovecot-uidlist")).unwrap();
    assert!(
        list.contains("\n1 W9 :1700000000.12345.otherhost\n"),
        "{list}"
    );
    let f = s.folder(INBOX, Access::ReadOnly).unwrap();
    assert_eq!(f.message(1).unwrap().vsize, Some(9));
    assert_eq!(f.message(1).unwrap().size, 7);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn planted_links_lead_nowhere() {
    let d = temp("links");
    let md = d.join("Maildir");
    let s = Store::open(&md).unwrap();
    fs::create_dir_all(d.join("outside/cur")).unwrap();
    fs::write(d.join("outside/secret"), "SECRET").unwrap();
    // A message file that is a link, a folder that is a link, a uidlist
    // that is a link: none is followed.
    std::os::unix::fs::symlink(d.join("outside/secret"), md.join("cur/1.M1P1.h:2,S")).unwrap();
    std::os::unix::fs::symlink(d.join("outside"), md.join(".Evil")).unwrap();
    let mut f = s.folder(INBOX, Access::ReadWrite).unwrap();
    assert!(f.messages().is_empty(), "a link is not a message");
    assert!(s.folders().unwrap().iter().all(|f| f.name != "Evil"));
    assert!(s.folder("Evil", Access::ReadOnly).is_err());
    fs::remove_file(md.join("dovecot-uidlist")).unwrap();
    std::os::unix::fs::symlink(d.join("outside/secret"), md.join("dovecot-uidlist")).unwrap();
    deliver(&md, "x\n");
    assert!(f.sync().is_err() || fs::read_to_string(d.join("outside/secret")).unwrap() == "SECRET");
    assert_eq!(
        fs::read_to_string(d.join("outside/secret")).unwrap(),
        "SECRET"
    );
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn stale_names_are_followed_under_the_lock_without_waiting_for_it() {
    let d = temp("stale");
    let md = d.join("Maildir");
    // A short wait: a session waiting for its own lock fails fast.
    let opts = Options {
        lock: mailstore::dotlock::LockSettings {
            timeout: Duration::from_secs(2),
            stale: Duration::from_secs(120),
        },
        ..Options::default()
    };
    let s = Store::open_with(&md, opts).unwrap();
    for i in 0..3 {
        deliver(&md, &format!("Subject: {i}\n\n{i}\n"));
    }
    let mut one = s.folder(INBOX, Access::ReadWrite).unwrap();
    let mut two = s.folder(INBOX, Access::ReadWrite).unwrap();
    for uid in 1..=3 {
        one.set_flags(uid, Flags::SEEN, &[]).unwrap();
    }
    // `two` still has the old names of all three.
    two.set_flags(1, Flags::FLAGGED, &[]).unwrap();
    assert!(two.message(1).unwrap().file.ends_with(":2,F"));
    assert_eq!(two.expunge(&[2]).unwrap(), [2]);
    let mut same = s.folder(INBOX, Access::ReadWrite).unwrap();
    one.set_flags(3, Flags::DRAFT, &[]).unwrap();
    let pairs = two.copy_to(&[3], &mut same).unwrap();
    assert_eq!(pairs.len(), 1);
    // The flags as the copying session knows them (its last sync).
    assert_eq!(
        same.message(pairs[0].1).unwrap().flags,
        two.message(3).unwrap().flags
    );
    // Gone altogether: Expunged at once, not a wait for our own lock.
    one.expunge(&[1]).unwrap();
    let start = std::time::Instant::now();
    assert!(matches!(
        two.set_flags(1, Flags::SEEN, &[]),
        Err(StoreError::Expunged(1))
    ));
    assert!(start.elapsed() < Duration::from_secs(1));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn old_left_overs_in_tmp_are_removed_when_a_folder_is_opened_for_writing() {
    let root = temp("tmp-cleanup");
    let s = Store::create_user(&root, Options::default()).unwrap();
    let tmp = root.join("tmp");
    fs::write(tmp.join("old.M1P1.host"), b"half a message").unwrap();
    fs::write(tmp.join("fresh.M2P1.host"), b"being written").unwrap();
    // Two days old (Dovecot removes tmp/ files after 36 hours).
    let two_days = nix::sys::time::TimeSpec::new(
        (std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            - Duration::from_secs(48 * 3600))
        .as_secs() as i64,
        0,
    );
    nix::sys::stat::utimensat(
        None,
        &tmp.join("old.M1P1.host"),
        &two_days,
        &two_days,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    // Reading does not clean up; writing does.
    s.folder(INBOX, Access::ReadOnly).unwrap();
    assert_eq!(names(&tmp).len(), 2);
    s.folder(INBOX, Access::ReadWrite).unwrap();
    assert_eq!(names(&tmp), vec!["fresh.M2P1.host".to_string()]);
    fs::remove_dir_all(&root).unwrap();
}
