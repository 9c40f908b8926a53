//! What the IMAP server needs of the store, on real directories with two
//! `Folder` handles at once (two sessions): mod-sequences (RFC 7162
//! CONDSTORE/QRESYNC) that both agree on and that survive a lost or corrupt
//! posthorn-modseq, VANISHED data, \Recent given to one session only (RFC
//! 3501 2.3.2), MOVE (RFC 6851), the IDLE watcher and APPEND's internal
//! date.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use mailstore::folder::FlagUpdate;
use mailstore::{Access, Flags, Maildir, Options, Store, INBOX};

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("posthorn-imap-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// As local delivery does it: tmp/, then a rename into new/.
fn deliver(md: &Path, body: &str) -> PathBuf {
    let m = Maildir::create(md).unwrap();
    let mut d = m.begin().unwrap();
    d.write(body.as_bytes()).unwrap();
    d.commit().unwrap()
}

fn setup(name: &str, messages: usize) -> (PathBuf, PathBuf, Store) {
    let d = temp(name);
    let md = d.join("Maildir");
    let s = Store::create_user(&md, Options::default()).unwrap();
    for i in 0..messages {
        deliver(&md, &format!("Subject: {i}\n\nbody {i}\n"));
    }
    (d, md, s)
}

fn modseqs(f: &mailstore::Folder) -> Vec<(u32, u64)> {
    f.messages().iter().map(|m| (m.uid, m.modseq)).collect()
}

#[test]
fn two_sessions_agree_on_modseqs() {
    let (d, md, s) = setup("agree", 3);
    let mut a = s.folder(INBOX, Access::ReadWrite).unwrap();
    let mut b = s.folder(INBOX, Access::ReadWrite).unwrap();
    let h0 = a.highest_modseq();
    assert!(h0 > 0);
    assert_eq!(b.highest_modseq(), h0);
    assert!(a.messages().iter().all(|m| m.modseq > 0 && m.modseq <= h0));
    assert_eq!(modseqs(&a), modseqs(&b));

    // A flag change by a: one new modseq, which b sees after its sync.
    a.set_flags(2, Flags::SEEN, &["Work"]).unwrap();
    let h1 = a.highest_modseq();
    assert_eq!(h1, h0 + 1);
    assert_eq!(a.modseq(2), Some(h1));
    assert_eq!(a.modseq(1).unwrap(), b.modseq(1).unwrap());
    let c = b.sync().unwrap();
    assert_eq!(c.flags, [2]);
    assert_eq!(b.highest_modseq(), h1);
    assert_eq!(modseqs(&a), modseqs(&b));
    assert_eq!(b.changed_since(h0), [2]);

    // Several in one operation: one modseq for all.
    b.set_flags_many(&[
        FlagUpdate {
            uid: 1,
            flags: Flags::FLAGGED,
            keywords: vec![],
        },
        FlagUpdate {
            uid: 3,
            flags: Flags::FLAGGED,
            keywords: vec![],
        },
    ])
    .unwrap();
    assert_eq!(b.highest_modseq(), h1 + 1);
    assert_eq!(b.changed_since(h1), [1, 3]);
    a.sync().unwrap();
    assert_eq!(modseqs(&a), modseqs(&b));

    // A new message: a modseq of its own, above the others.
    deliver(&md, "Subject: late\n\nx\n");
    let c = a.sync().unwrap();
    assert_eq!(c.new, [4]);
    assert_eq!(a.modseq(4), Some(h1 + 2));
    b.sync().unwrap();
    assert_eq!(modseqs(&a), modseqs(&b));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_rename_behind_our_back_gets_a_new_modseq() {
    let (d, md, s) = setup("behind", 2);
    let mut a = s.folder(INBOX, Access::ReadWrite).unwrap();
    let h0 = a.highest_modseq();
    let file = a.message(1).unwrap().file.clone();
    let cur = md.join("cur");
    // A Maildir client sets \Seen by renaming, without any lock.
    let renamed = file.replace(":2,", ":2,S");
    fs::rename(cur.join(&file), cur.join(&renamed)).unwrap();
    let c = a.sync().unwrap();
    assert_eq!(c.flags, [1]);
    assert_eq!(a.modseq(1), Some(h0 + 1));
    assert_eq!(a.highest_modseq(), h0 + 1);
    // Seen once: not again.
    a.sync().unwrap();
    assert_eq!(a.highest_modseq(), h0 + 1);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_expunge_is_seen_by_the_other_session_with_vanished_data() {
    let (d, _md, s) = setup("vanished", 5);
    let mut a = s.folder(INBOX, Access::ReadWrite).unwrap();
    let mut b = s.folder(INBOX, Access::ReadOnly).unwrap();
    let before = b.highest_modseq();
    assert_eq!(a.expunge(&[2, 3, 5]).unwrap(), [2, 3, 5]);
    let h = a.highest_modseq();
    assert_eq!(h, before + 1);
    let c = b.sync().unwrap();
    assert_eq!(c.expunged, [2, 3, 5]);
    assert_eq!(b.highest_modseq(), h);
    let v = b.expunged_since(before);
    assert!(v.exact);
    assert_eq!(v.uids, [(2, 3), (5, 5)]);
    assert!(b.expunged_since(h).uids.is_empty());
    // Asked about a time before the log begins: everything that is not a
    // message now, below UIDNEXT, may have vanished.
    let v = b.expunged_since(1);
    assert!(!v.exact);
    assert_eq!(v.uids, [(2, 3), (5, 5)]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn unchanged_since_refuses_messages_changed_meanwhile() {
    let (d, _md, s) = setup("unchanged", 3);
    let mut a = s.folder(INBOX, Access::ReadWrite).unwrap();
    let mut b = s.folder(INBOX, Access::ReadWrite).unwrap();
    let known = b.highest_modseq();
    a.set_flags(2, Flags::SEEN, &[]).unwrap();
    // b has not synced: it still thinks 2 is unchanged since `known`.
    let up = |uid| FlagUpdate {
        uid,
        flags: Flags::TRASHED,
        keywords: vec![],
    };
    let modified = b.store_flags(&[up(1), up(2), up(3)], Some(known)).unwrap();
    assert_eq!(modified, [2]);
    assert_eq!(b.message(2).unwrap().flags, Flags::SEEN);
    assert_eq!(b.message(1).unwrap().flags, Flags::TRASHED);
    assert_eq!(b.modseq(1), Some(known + 2));
    // 2's change by a reaches b as a flag change.
    assert_eq!(b.sync().unwrap().flags, [2]);
    // RFC 7162 3.1.3: UNCHANGEDSINCE 0 fails for every message.
    assert_eq!(b.store_flags(&[up(1), up(3)], Some(0)).unwrap(), [1, 3]);
    // Without the test every change is made.
    assert!(b.store_flags(&[up(2)], None).unwrap().is_empty());
    assert_eq!(b.message(2).unwrap().flags, Flags::TRASHED);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_lost_or_corrupt_modseq_file_keeps_highestmodseq_growing() {
    let (d, md, s) = setup("rebuild", 2);
    let mut a = s.folder(INBOX, Access::ReadWrite).unwrap();
    a.set_flags(1, Flags::SEEN, &[]).unwrap();
    let h0 = a.highest_modseq();
    let file = md.join("posthorn-modseq");
    let damages = [None, Some(&b"1 V1 H"[..]), Some(b"garbage\n"), Some(b"")];
    for (round, damage) in damages.into_iter().enumerate() {
        match damage {
            None => fs::remove_file(&file).unwrap(),
            Some(bytes) => fs::write(&file, bytes).unwrap(),
        }
        // Another session (a new process) opens it.
        let b = s.folder(INBOX, Access::ReadWrite).unwrap();
        let h = b.highest_modseq();
        assert!(h > h0, "{h} > {h0} after {damage:?}");
        let v = b.expunged_since(h0);
        assert!(!v.exact, "nothing known about expunges before the rebuild");
        assert!(b.messages().iter().all(|m| m.modseq > h0));
        // The open session catches up and carries on from there.
        let flags = [Flags::SEEN, Flags::FLAGGED][round % 2];
        a.set_flags(2, flags, &[]).unwrap();
        assert!(a.highest_modseq() > h);
        assert!(fs::read_to_string(&file).unwrap().starts_with("1 V"));
    }
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn modseqs_survive_reopening_and_a_new_uidvalidity_keeps_them_growing() {
    let (d, md, s) = setup("reopen", 2);
    let (h, ms) = {
        let mut a = s.folder(INBOX, Access::ReadWrite).unwrap();
        a.set_flags(1, Flags::SEEN, &[]).unwrap();
        (a.highest_modseq(), modseqs(&a))
    };
    let b = s.folder(INBOX, Access::ReadOnly).unwrap();
    assert_eq!((b.highest_modseq(), modseqs(&b)), (h, ms));
    drop(b);
    // The uidlist is lost: new UIDVALIDITY, modseqs still above `h`.
    fs::remove_file(md.join("dovecot-uidlist")).unwrap();
    let c = s.folder(INBOX, Access::ReadWrite).unwrap();
    assert!(c.highest_modseq() > h);
    assert!(c.messages().iter().all(|m| m.modseq > h));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn recent_goes_to_one_selecting_session() {
    let (d, md, s) = setup("recent", 2);
    // EXAMINE: sees recent, takes nothing.
    let mut ex = s.folder(INBOX, Access::ReadOnly).unwrap();
    assert_eq!(ex.recent(), [1, 2]);
    let mut a = s.select(INBOX).unwrap();
    assert_eq!(a.recent(), [1, 2]);
    let mut b = s.select(INBOX).unwrap();
    assert!(b.recent().is_empty(), "taken by a");
    ex.sync().unwrap();
    deliver(&md, "Subject: 3\n\nx\n");
    // Whichever selecting session syncs first gets it; b here.
    let c = b.sync().unwrap();
    assert_eq!(c.new, [3]);
    assert_eq!(b.recent(), [3]);
    a.sync().unwrap();
    assert_eq!(a.recent(), [1, 2], "a keeps what it took");
    assert!(!a.message(3).unwrap().recent);
    // A plain read-write open (POP3, an APPEND target) takes nothing.
    let mut p = s.folder(INBOX, Access::ReadWrite).unwrap();
    p.append(&mut &b"x\n"[..], Flags::empty(), &[], None)
        .unwrap();
    assert_eq!(p.recent(), [4]);
    let c = a.sync().unwrap();
    assert_eq!(c.new, [4]);
    assert_eq!(a.recent(), [1, 2, 4]);
    // Expunged: no longer recent anywhere.
    a.expunge(&[1]).unwrap();
    assert_eq!(a.recent(), [2, 4]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn append_keeps_the_internal_date() {
    let (d, md, s) = setup("date", 0);
    let mut f = s.folder(INBOX, Access::ReadWrite).unwrap();
    let when = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let uid = f
        .append(&mut &b"x\r\n"[..], Flags::empty(), &[], Some(when))
        .unwrap();
    assert_eq!(f.internal_date(uid).unwrap(), when);
    // As Dovecot does: the file's mtime, which a flag rename keeps.
    let file = md.join("cur").join(&f.message(uid).unwrap().file);
    assert_eq!(fs::metadata(&file).unwrap().modified().unwrap(), when);
    f.set_flags(uid, Flags::SEEN, &[]).unwrap();
    assert_eq!(f.internal_date(uid).unwrap(), when);
    let start = Instant::now();
    let now_uid = f
        .append(&mut &b"y\n"[..], Flags::empty(), &[], None)
        .unwrap();
    let t = f.internal_date(now_uid).unwrap();
    assert!(t.elapsed().unwrap_or_default() < start.elapsed() + Duration::from_secs(2));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn move_gives_new_uids_and_the_source_reports_them_gone() {
    let (d, md, s) = setup("move", 3);
    let mut inbox = s.select(INBOX).unwrap();
    let mut other = s.folder(INBOX, Access::ReadOnly).unwrap();
    inbox.set_flags(2, Flags::SEEN, &["Work"]).unwrap();
    let mut arch = s.folder("Archive", Access::ReadWrite).unwrap();
    arch.append(&mut &b"x\n"[..], Flags::empty(), &[], None)
        .unwrap();
    let base2 = inbox.message(2).unwrap().base.clone();
    let before = other.highest_modseq();
    let pairs = inbox.move_to(&[2, 3], &mut arch).unwrap();
    assert_eq!(pairs, [(2, 2), (3, 3)]);
    assert_eq!(
        inbox.messages().iter().map(|m| m.uid).collect::<Vec<_>>(),
        [1]
    );
    assert_eq!(arch.message(2).unwrap().base, base2);
    assert_eq!(arch.message(2).unwrap().flags, Flags::SEEN);
    assert_eq!(arch.keyword_names(2).unwrap(), ["Work"]);
    assert_eq!(fs::read_dir(md.join("cur")).unwrap().count(), 1);
    assert!(fs::read_dir(md.join(".Archive/tmp"))
        .unwrap()
        .next()
        .is_none());
    // The other session on the source sees an expunge, with VANISHED data.
    let c = other.sync().unwrap();
    assert_eq!(c.expunged, [2, 3]);
    assert_eq!(other.expunged_since(before).uids, [(2, 3)]);
    // In the destination they are new, with a mod-sequence of their own.
    assert!(arch.modseq(2).unwrap() > arch.modseq(1).unwrap());
    // A move within one folder (another handle of it): a new UID.
    let mut same = s.folder(INBOX, Access::ReadWrite).unwrap();
    assert_eq!(inbox.move_to(&[1], &mut same).unwrap(), [(1, 4)]);
    assert_eq!(inbox.sync().unwrap().new, [4]);
    assert_eq!(fs::read_dir(md.join("cur")).unwrap().count(), 1);
    // Unknown UIDs: an error, nothing moved.
    assert!(inbox.move_to(&[99], &mut arch).is_err());
    fs::remove_dir_all(&d).unwrap();
}

/// Wait up to `limit` for the watcher to report a change: how long it took.
fn wait_change(w: &mailstore::Watcher, limit: Duration) -> Option<Duration> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let start = Instant::now();
    while start.elapsed() < limit {
        let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
        let left = limit.saturating_sub(start.elapsed()).as_millis() as u16;
        if poll(&mut fds, PollTimeout::from(left.max(1))).unwrap() > 0 && w.drain().unwrap() {
            return Some(start.elapsed());
        }
    }
    None
}

#[test]
fn idle_watcher_wakes_for_delivery_and_another_sessions_flags() {
    let (d, md, s) = setup("idle", 1);
    let mut idler = s.select(INBOX).unwrap();
    let w = idler.watcher().unwrap();
    assert!(!w.drain().unwrap(), "nothing pending yet");
    let (tx, rx) = std::sync::mpsc::channel::<&str>();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let s2 = s.clone();
    let md2 = md.clone();
    let other = std::thread::spawn(move || {
        let mut f = s2.folder(INBOX, Access::ReadWrite).unwrap();
        for what in rx {
            match what {
                "flags" => f.set_flags(1, Flags::FLAGGED, &[]).unwrap(),
                "deliver" => {
                    deliver(&md2, "Subject: idle\n\nx\n");
                }
                "expunge" => {
                    f.sync().unwrap();
                    f.expunge(&[1]).unwrap();
                }
                _ => unreachable!("only the three above are sent"),
            }
            done_tx.send(Instant::now()).unwrap();
        }
    });
    // Our own sync settles: its events drained, nothing more comes.
    idler.sync().unwrap();
    let _ = w.drain();
    for (what, check) in [("flags", 0), ("deliver", 1), ("expunge", 2)] {
        tx.send(what).unwrap();
        let start = Instant::now();
        let took = wait_change(&w, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no wake-up for {what}"));
        let woke = start + took;
        // Measured from when the other session's call returned (its fsyncs
        // can be slow on a busy machine; the wake-up comes at the rename or
        // unlink, before them).
        let done = done_rx.recv().unwrap();
        assert!(
            woke < done + Duration::from_millis(300),
            "{what}: woke {:?} after the change was done",
            woke.saturating_duration_since(done)
        );
        let c = idler.sync().unwrap();
        match check {
            0 => assert_eq!(c.flags, [1]),
            1 => assert_eq!(c.new, [2]),
            _ => assert_eq!(c.expunged, [1]),
        }
        // What the sync did itself may wake it once more; then it is quiet.
        let _ = wait_change(&w, Duration::from_millis(50));
        idler.sync().unwrap();
        let _ = w.drain();
    }
    drop(tx);
    other.join().unwrap();
    // A sync that changes nothing takes the lock (a file in the folder
    // directory) but does not count as a change.
    std::thread::sleep(Duration::from_millis(1100));
    idler.sync().unwrap();
    let _ = w.drain();
    idler.sync().unwrap();
    assert!(!w.drain().unwrap());
    fs::remove_dir_all(&d).unwrap();
}

/// A reader that fails part way (a client that went away mid-literal).
struct Broken;

impl std::io::Read for Broken {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("connection lost"))
    }
}

#[test]
fn multiappend_is_all_or_nothing() {
    use mailstore::AppendMessage;
    let (d, md, s) = setup("multiappend", 1);
    let mut f = s.select(INBOX).unwrap();
    let (mut a, mut b, mut broken) = (&b"Subject: a\r\n\r\na\r\n"[..], &b"b\n"[..], Broken);
    let err = f.append_many(&mut [
        AppendMessage {
            message: &mut a,
            flags: Flags::SEEN,
            keywords: vec![],
            internal_date: None,
        },
        AppendMessage {
            message: &mut broken,
            flags: Flags::empty(),
            keywords: vec![],
            internal_date: None,
        },
    ]);
    assert!(err.is_err());
    assert!(fs::read_dir(md.join("tmp")).unwrap().next().is_none());
    assert_eq!(f.sync().unwrap().new, Vec::<u32>::new());
    assert_eq!(f.uid_next(), 2);

    let when = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    let (mut a, mut b2) = (&b"Subject: a\r\n\r\na\r\n"[..], &mut b);
    let uids = f
        .append_many(&mut [
            AppendMessage {
                message: &mut a,
                flags: Flags::SEEN,
                keywords: vec!["Work".into()],
                internal_date: Some(when),
            },
            AppendMessage {
                message: &mut b2,
                flags: Flags::empty(),
                keywords: vec![],
                internal_date: None,
            },
        ])
        .unwrap();
    assert_eq!(uids, [2, 3]);
    assert_eq!(f.message(2).unwrap().flags, Flags::SEEN);
    assert_eq!(f.keyword_names(2).unwrap(), ["Work"]);
    assert_eq!(f.internal_date(2).unwrap(), when);
    assert_eq!(f.recent(), [1, 2, 3]);
    assert_eq!(f.modseq(2), f.modseq(3), "one operation, one modseq");
    assert!(fs::read_dir(md.join("tmp")).unwrap().next().is_none());
    fs::remove_dir_all(&d).unwrap();
}

/// Two sessions in two threads change flags while mail arrives: every
/// change gets a modseq of its own (no two operations share one), neither
/// sees HIGHESTMODSEQ go down, and at the end they agree on every modseq.
#[test]
fn concurrent_sessions_never_share_or_lower_a_modseq() {
    let (d, md, s) = setup("concurrent", 10);
    // All 30 arrive, however fast the sessions are done.
    let deliverer = {
        let md = md.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while n < 30 {
                deliver(&md, &format!("Subject: {n}\n\nx\n"));
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let sessions: Vec<_> = (0..2)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut f = s.folder(INBOX, Access::ReadWrite).unwrap();
                let mut mine = Vec::new();
                let mut seen = f.highest_modseq();
                for i in 0..40u32 {
                    let uid = 1 + (i * 3 + t) % 10;
                    let flags = [Flags::SEEN, Flags::FLAGGED, Flags::empty()][(i % 3) as usize];
                    let before = f.highest_modseq();
                    f.set_flags(uid, flags, &[]).unwrap();
                    let h = f.highest_modseq();
                    if f.modseq(uid) == Some(h) && h > before {
                        mine.push(h);
                    }
                    f.sync().unwrap();
                    assert!(f.highest_modseq() >= seen, "HIGHESTMODSEQ went down");
                    seen = f.highest_modseq();
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<u64> = Vec::new();
    for t in sessions {
        all.extend(t.join().unwrap());
    }
    deliverer.join().unwrap();
    let n = all.len();
    assert!(n > 20, "most changes were made: {n}");
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "two operations shared a modseq");
    let mut a = s.folder(INBOX, Access::ReadWrite).unwrap();
    let mut b = s.folder(INBOX, Access::ReadOnly).unwrap();
    a.sync().unwrap();
    b.sync().unwrap();
    assert_eq!(a.highest_modseq(), b.highest_modseq());
    assert_eq!(modseqs(&a), modseqs(&b));
    assert_eq!(a.messages().len(), 40);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn flags_changed_and_changed_back_are_reported_with_the_new_modseq() {
    let (d, _md, s) = setup("back", 1);
    let mut a = s.folder(INBOX, Access::ReadWrite).unwrap();
    let mut b = s.folder(INBOX, Access::ReadWrite).unwrap();
    a.set_flags(1, Flags::SEEN, &[]).unwrap();
    a.set_flags(1, Flags::empty(), &[]).unwrap();
    assert!(
        a.sync().unwrap().is_empty(),
        "its own changes are not reported"
    );
    let c = b.sync().unwrap();
    assert_eq!(c.flags, [1]);
    assert_eq!(b.modseq(1), a.modseq(1));
    assert_eq!(b.message(1).unwrap().flags, Flags::empty());
    fs::remove_dir_all(&d).unwrap();
}

/// A released folder (a quiet IMAP session) holds no message list; its next
/// sync lists the folder again and tells exactly what changed meanwhile:
/// another session's flag change, expunge and a delivery, with the
/// mod-sequences and sizes a folder that never let go would have.
#[test]
fn a_released_folder_tells_what_changed_while_it_slept() {
    let (d, md, s) = setup("release", 4);
    let mut a = s.folder(INBOX, Access::ReadWrite).unwrap();
    let mut b = s.folder(INBOX, Access::ReadWrite).unwrap();
    let sizes: Vec<u64> = a.messages().iter().map(|m| m.size).collect();
    a.release();
    assert!(a.is_released());
    assert!(a.messages().is_empty());
    let h = a.highest_modseq();
    // Nothing changed: the sync finds the same messages and reports nothing.
    let c = a.sync().unwrap();
    assert!(!a.is_released());
    assert!(c.is_empty(), "{c:?}");
    assert_eq!(
        a.messages().iter().map(|m| m.size).collect::<Vec<_>>(),
        sizes
    );
    assert_eq!(a.highest_modseq(), h);
    assert_eq!(modseqs(&a), modseqs(&b));

    a.release();
    b.set_flags(1, Flags::SEEN, &[]).unwrap();
    assert_eq!(b.expunge(&[3]).unwrap(), [3]);
    deliver(&md, "Subject: new\n\nnew\n");
    b.sync().unwrap();
    let c = a.sync().unwrap();
    assert_eq!(c.flags, [1]);
    assert_eq!(c.expunged, [3]);
    assert_eq!(c.new, [5]);
    assert_eq!(a.message(1).unwrap().flags, Flags::SEEN);
    assert_eq!(
        a.messages().iter().map(|m| m.uid).collect::<Vec<_>>(),
        [1, 2, 4, 5]
    );
    assert_eq!(modseqs(&a), modseqs(&b));
    assert_eq!(a.highest_modseq(), b.highest_modseq());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn own_flag_changes_need_no_listing_and_every_other_change_is_seen_at_once() {
    let (d, md, s) = setup("tracked", 6);
    let cur = md.join("cur");
    let mut a = s.select(INBOX).unwrap();
    let n0 = a.listings();
    let h0 = a.highest_modseq();
    // The session's own STOREs and the syncs after them (SEARCH, NOOP):
    // no listing of 6 files again, and each changed message gets its new
    // mod-sequence.
    a.set_flags(1, Flags::SEEN, &[]).unwrap();
    assert!(a.sync().unwrap().is_empty(), "its own change is not news");
    a.set_flags(2, Flags::SEEN | Flags::FLAGGED, &["Work"])
        .unwrap();
    assert!(a.sync().unwrap().is_empty());
    assert!(a.sync().unwrap().is_empty());
    assert_eq!(a.listings(), n0, "own renames only: nothing listed");
    assert_eq!(a.modseq(1), Some(h0 + 1));
    assert_eq!(a.modseq(2), Some(h0 + 2));
    assert_eq!(a.highest_modseq(), h0 + 2);

    // Another session's flag change right after (within the clock tick
    // that stamped a's own rename): reported at a's next sync.
    let mut b = s.folder(INBOX, Access::ReadWrite).unwrap();
    b.set_flags(3, Flags::FLAGGED, &[]).unwrap();
    let c = a.sync().unwrap();
    assert_eq!(c.flags, [3]);
    assert_eq!(a.message(3).unwrap().flags, Flags::FLAGGED);
    assert!(a.listings() > n0);

    // A Maildir client's rename without any lock, at once after a's STORE:
    // reported; so is the STORE's own message no more than it was.
    a.set_flags(4, Flags::SEEN, &[]).unwrap();
    let file = a.message(5).unwrap().file.clone();
    fs::rename(cur.join(&file), cur.join(file.replace(":2,", ":2,T"))).unwrap();
    let c = a.sync().unwrap();
    assert_eq!(c.flags, [5]);
    assert_eq!(a.message(5).unwrap().flags, Flags::TRASHED);
    assert_eq!(a.message(4).unwrap().flags, Flags::SEEN);

    // Delivery at once after a STORE: a new message.
    a.set_flags(6, Flags::REPLIED, &[]).unwrap();
    deliver(&md, "Subject: late\n\nlate\n");
    let c = a.sync().unwrap();
    assert_eq!(c.new, [7]);
    // And a STORE when another session has changed the folder since the
    // last sync: the change is still reported (the STORE lists again).
    let n1 = a.listings();
    b.sync().unwrap();
    b.set_flags(1, Flags::empty(), &[]).unwrap();
    a.set_flags(2, Flags::SEEN, &[]).unwrap();
    assert!(a.listings() > n1);
    let c = a.sync().unwrap();
    assert_eq!(c.flags, [1]);
    assert_eq!(a.message(1).unwrap().flags, Flags::empty());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn more_idle_watchers_than_inotify_instances_a_user_may_have_all_wake() {
    // Linux allows a user 128 inotify instances by default, and the
    // sessions of many virtual users run as one uid: the watchers share
    // the process's one instance (tracker.rs), each woken through its own
    // eventfd.
    let limit: usize = fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(128);
    let n = (limit + 16).min(300);
    let (d, md, s) = setup("many-idle", 1);
    let folders: Vec<_> = (0..n).map(|_| s.select(INBOX).unwrap()).collect();
    let watchers: Vec<_> = folders.iter().map(|f| f.watcher().unwrap()).collect();
    assert!(watchers.iter().all(|w| !w.drain().unwrap()));
    deliver(&md, "Subject: to all\n\nx\n");
    for (i, w) in watchers.iter().enumerate() {
        assert!(
            wait_change(w, Duration::from_secs(10)).is_some(),
            "watcher {i} of {n} was not woken"
        );
    }
    drop(watchers);
    drop(folders);
    fs::remove_dir_all(&d).unwrap();
}
