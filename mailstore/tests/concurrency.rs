//! Several sessions on one folder at once, in threads and in processes,
//! while mail is delivered into new/; and processes killed with SIGKILL
//! while they hold the uidlist lock or are half-way through a sync (after
//! which posthorn-modseq still parses and HIGHESTMODSEQ has not gone
//! down).
//!
//! Every session records which base name each UID it saw belongs to; all
//! records must agree (one UID per message, one message per UID, UIDs
//! ascending with the order Dovecot gives), and no delivered message may be
//! missing at the end.
//!
//! Child processes are this test binary run again on the `child` test with
//! POSTHORN_STORE_CHILD set (without it, `child` does nothing).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailstore::dotlock::{DotLock, LockSettings};
use mailstore::{Access, Flags, Maildir, Options, Store, INBOX};

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("posthorn-conc-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// uid -> base, from one session's syncs; panics on a contradiction.
fn record(seen: &mut BTreeMap<u32, String>, f: &mailstore::Folder) {
    for m in f.messages() {
        match seen.get(&m.uid) {
            Some(b) => assert_eq!(*b, m.base, "UID {} changed its message", m.uid),
            None => {
                seen.insert(m.uid, m.base.clone());
            }
        }
    }
    let uids: Vec<u32> = f.messages().iter().map(|m| m.uid).collect();
    assert!(
        uids.windows(2).all(|w| w[0] < w[1]),
        "UIDs not ascending: {uids:?}"
    );
}

/// All sessions' records agree with the final state.
fn check_all(md: &Path, all: &[BTreeMap<u32, String>], delivered: usize) {
    let s = Store::open(md).unwrap();
    let f = s.folder(INBOX, Access::ReadOnly).unwrap();
    assert_eq!(
        f.messages().len(),
        delivered,
        "every delivered message is there"
    );
    let fin: BTreeMap<u32, String> = f
        .messages()
        .iter()
        .map(|m| (m.uid, m.base.clone()))
        .collect();
    let bases: std::collections::HashSet<&String> = fin.values().collect();
    assert_eq!(bases.len(), fin.len(), "one UID per message");
    for seen in all {
        for (uid, base) in seen {
            assert_eq!(
                fin.get(uid),
                Some(base),
                "UID {uid} was {base} in a session"
            );
        }
    }
    assert_eq!(f.uid_next(), *fin.keys().last().unwrap() + 1);
    // UIDs follow Dovecot's order of names within each sync's batch, and
    // never go back: a higher UID never has a much older name than a lower
    // one of another batch is not checked (batches depend on timing).
}

#[test]
fn threads_sync_while_mail_arrives() {
    let d = temp("threads");
    let md = d.join("Maildir");
    Store::open(&md).unwrap();
    const N: usize = 150;
    let done = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..4 {
        let md = md.clone();
        let done = done.clone();
        handles.push(std::thread::spawn(move || {
            let s = Store::open(&md).unwrap();
            let access = if t % 2 == 0 {
                Access::ReadWrite
            } else {
                Access::ReadOnly
            };
            let mut f = s.folder(INBOX, access).unwrap();
            let mut seen = BTreeMap::new();
            let mut i = 0u32;
            loop {
                let finished = done.load(Ordering::SeqCst);
                f.sync().unwrap();
                record(&mut seen, &f);
                // Writers change flags too: renames other sessions must
                // follow.
                if access == Access::ReadWrite && !f.messages().is_empty() {
                    i += 1;
                    let m = &f.messages()[(i as usize * 7 + t) % f.messages().len()];
                    let flags = if i % 2 == 0 {
                        Flags::SEEN
                    } else {
                        Flags::FLAGGED
                    };
                    match f.set_flags(m.uid, flags, &[]) {
                        Ok(()) => {}
                        Err(e) => panic!("set_flags: {e}"),
                    }
                }
                // Readers read.
                if let Some(m) = f.messages().first().map(|m| m.uid) {
                    f.open_message(m).unwrap();
                }
                if finished {
                    return seen;
                }
            }
        }));
    }
    let m = Maildir::create(&md).unwrap();
    for i in 0..N {
        let mut dl = m.begin().unwrap();
        dl.write(format!("Subject: {i}\n\n{i}\n").as_bytes())
            .unwrap();
        dl.commit().unwrap();
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    done.store(true, Ordering::SeqCst);
    let all: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    check_all(&md, &all, N);
    fs::remove_dir_all(&d).unwrap();
}

/// A child process, killed if the test fails before it is done with it.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Run this binary's `child` test with `mode`.
fn spawn_child(mode: &str, md: &Path, out: &Path) -> Kid {
    Kid(Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child",
            "--ignored",
            "--test-threads",
            "1",
            "--quiet",
        ])
        .env("POSTHORN_STORE_CHILD", mode)
        .env("POSTHORN_STORE_DIR", md)
        .env("POSTHORN_STORE_OUT", out)
        .stdout(Stdio::null())
        .spawn()
        .unwrap())
}

/// Child processes' work (see the header); nothing without the variables.
#[test]
#[ignore = "run by the other tests in a child process"]
fn child() {
    let Ok(mode) = std::env::var("POSTHORN_STORE_CHILD") else {
        return;
    };
    let md = PathBuf::from(std::env::var("POSTHORN_STORE_DIR").unwrap());
    let out = PathBuf::from(std::env::var("POSTHORN_STORE_OUT").unwrap());
    let s = Store::open(&md).unwrap();
    match mode.as_str() {
        // Sync until a stop file appears; write what was seen.
        "sync" => {
            let mut f = s.folder(INBOX, Access::ReadWrite).unwrap();
            let mut seen = BTreeMap::new();
            loop {
                let stop = out.with_extension("stop").exists();
                f.sync().unwrap();
                record(&mut seen, &f);
                if stop {
                    break;
                }
            }
            let mut text = String::new();
            for (u, b) in seen {
                text.push_str(&format!("{u} {b}\n"));
            }
            fs::write(&out, text).unwrap();
        }
        // Take the uidlist lock, say so, and wait to be killed.
        "hold" => {
            let dir = Arc::new(fs::File::open(&md).unwrap());
            let _l = DotLock::acquire(
                &dir,
                "dovecot-uidlist",
                &md.join("dovecot-uidlist"),
                LockSettings::UIDLIST,
            )
            .unwrap();
            fs::write(&out, "locked").unwrap();
            std::thread::sleep(Duration::from_secs(600));
        }
        // Deliver, sync, flag and expunge as fast as possible, writing each
        // (uid, base) seen to `out` as it goes, until killed.
        "churn" => {
            let m = Maildir::create(&md).unwrap();
            let mut f = s.folder(INBOX, Access::ReadWrite).unwrap();
            let mut log = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&out)
                .unwrap();
            let mut i = 0u64;
            loop {
                i += 1;
                let mut dl = m.begin().unwrap();
                dl.write(format!("Subject: {i}\n\n{i}\n").as_bytes())
                    .unwrap();
                dl.commit().unwrap();
                f.sync().unwrap();
                for msg in f.messages() {
                    writeln!(log, "{} {}", msg.uid, msg.base).unwrap();
                }
                if let Some(first) = f.messages().first().map(|m| m.uid) {
                    if i % 3 == 0 {
                        f.expunge(&[first]).unwrap();
                    } else {
                        f.set_flags(first, Flags::SEEN, &["k"]).unwrap();
                    }
                }
            }
        }
        // Change flags 40 times, writing the modseq each change got; panics
        // (a failed child) if HIGHESTMODSEQ is ever seen going down.
        "modseq" => {
            let mut f = s.folder(INBOX, Access::ReadWrite).unwrap();
            let mut seen = f.highest_modseq();
            let mut text = String::new();
            let me = std::process::id();
            for i in 0..40u32 {
                let uid = 1 + (i * 7 + me) % 5;
                let flags = [Flags::SEEN, Flags::empty()][((i + me) % 2) as usize];
                let before = f.highest_modseq();
                f.set_flags(uid, flags, &[]).unwrap();
                let h = f.highest_modseq();
                if f.message(uid).map(|m| m.modseq) == Some(h) && h > before {
                    text.push_str(&format!("{h}\n"));
                }
                f.sync().unwrap();
                assert!(f.highest_modseq() >= seen, "HIGHESTMODSEQ went down");
                seen = f.highest_modseq();
            }
            fs::write(&out, text).unwrap();
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn processes_sync_while_mail_arrives() {
    let d = temp("procs");
    let md = d.join("Maildir");
    Store::open(&md).unwrap();
    let outs: Vec<PathBuf> = (0..3).map(|i| d.join(format!("child{i}.out"))).collect();
    let mut children: Vec<Kid> = outs.iter().map(|o| spawn_child("sync", &md, o)).collect();
    const N: usize = 120;
    let m = Maildir::create(&md).unwrap();
    let s = Store::open(&md).unwrap();
    let mut f = s.folder(INBOX, Access::ReadWrite).unwrap();
    let mut mine = BTreeMap::new();
    for i in 0..N {
        let mut dl = m.begin().unwrap();
        dl.write(format!("Subject: {i}\n\n{i}\n").as_bytes())
            .unwrap();
        dl.commit().unwrap();
        if i % 5 == 0 {
            f.sync().unwrap();
            record(&mut mine, &f);
        }
    }
    for o in &outs {
        fs::write(o.with_extension("stop"), "").unwrap();
    }
    let mut all = vec![mine];
    for (c, o) in children.iter_mut().zip(&outs) {
        assert!(c.0.wait().unwrap().success());
        let mut seen = BTreeMap::new();
        for l in fs::read_to_string(o).unwrap().lines() {
            let (u, b) = l.split_once(' ').unwrap();
            seen.insert(u.parse().unwrap(), b.to_string());
        }
        assert!(!seen.is_empty());
        all.push(seen);
    }
    check_all(&md, &all, N);
    fs::remove_dir_all(&d).unwrap();
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(Instant::now() < deadline, "child did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kill a child that must still be at work (one that died by itself, of a
/// failed assertion, fails the test).
fn sigkill(c: &mut Child) {
    use std::os::unix::process::ExitStatusExt;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let st = c.wait().unwrap();
    assert_eq!(st.signal(), Some(9), "the child ended by itself: {st:?}");
}

#[test]
fn a_killed_lock_holder_does_not_block_for_long() {
    let d = temp("killed");
    let md = d.join("Maildir");
    let s = Store::open(&md).unwrap();
    let out = d.join("hold.out");
    let mut c = spawn_child("hold", &md, &out);
    wait_for(&out);
    assert!(md.join("dovecot-uidlist.lock").exists());
    // While it lives, the lock holds (a short wait here gives up).
    let short = Options {
        lock: LockSettings {
            timeout: Duration::from_millis(300),
            stale: Duration::from_secs(120),
        },
        ..Options::default()
    };
    let s_short = Store::open_with(&md, short).unwrap();
    assert!(matches!(
        s_short.folder(INBOX, Access::ReadOnly),
        Err(mailstore::StoreError::LockTimeout { .. })
    ));
    sigkill(&mut c.0);
    // Dead: with Dovecot's own timing the next sync proceeds once the lock
    // is 2 s old and its pid is found dead, long before the 120 s stale
    // timeout.
    let start = Instant::now();
    let f = s.folder(INBOX, Access::ReadWrite).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(f.uid_validity() > 0);
    assert!(!md.join("dovecot-uidlist.lock").exists());
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn sigkill_at_any_point_loses_nothing() {
    let d = temp("churn");
    let md = d.join("Maildir");
    Store::open(&md).unwrap();
    let s = Store::open(&md).unwrap();
    let mut all = Vec::new();
    let mut last_modseq = 0;
    for round in 0..4u64 {
        let out = d.join(format!("churn{round}.out"));
        fs::write(&out, "").unwrap();
        let mut c = spawn_child("churn", &md, &out);
        // Let it work for a while, killed at a different moment each time.
        std::thread::sleep(Duration::from_millis(300 + round * 170));
        sigkill(&mut c.0);
        // The next session gets on (after the stale rule if the child held
        // the lock) and sees a consistent folder: no UID reused, the list
        // readable.
        let f = s.folder(INBOX, Access::ReadWrite).unwrap();
        let mut seen = BTreeMap::new();
        let text = fs::read_to_string(&out).unwrap();
        // The last line may be cut short by the kill: complete lines only.
        let complete = &text[..text.rfind('\n').map_or(0, |p| p + 1)];
        for l in complete.lines() {
            let (u, b) = l.split_once(' ').unwrap();
            seen.insert(u.parse::<u32>().unwrap(), b.to_string());
        }
        for m in f.messages() {
            if let Some(b) = seen.get(&m.uid) {
                assert_eq!(
                    *b, m.base,
                    "round {round}: UID {} changed its message",
                    m.uid
                );
            }
        }
        let list = fs::read(md.join("dovecot-uidlist")).unwrap();
        mailstore::uidlist::UidList::parse(&list).unwrap();
        // posthorn-modseq is never left half-written, and HIGHESTMODSEQ
        // never goes down across the kills.
        let ms = fs::read(md.join("posthorn-modseq")).unwrap();
        let ms = mailstore::modseq::ModseqFile::parse(&ms).unwrap();
        assert_eq!(ms.highest, f.highest_modseq());
        assert!(f.highest_modseq() > last_modseq, "round {round}");
        assert!(f.messages().iter().all(|m| m.modseq > 0));
        last_modseq = f.highest_modseq();
        all.push(seen);
    }
    // Nothing delivered is lost: every file is a message with a UID (the
    // expunged ones were removed by the child on purpose).
    let f = s.folder(INBOX, Access::ReadOnly).unwrap();
    let files = fs::read_dir(md.join("cur")).unwrap().count()
        + fs::read_dir(md.join("new")).unwrap().count();
    assert_eq!(f.messages().len(), files);
    assert!(
        fs::read_dir(md.join("tmp")).unwrap().count() <= 4,
        "at most one cut-off delivery per kill"
    );
    fs::remove_dir_all(&d).unwrap();
}

/// Two processes change flags on one folder at once: no two operations get
/// the same mod-sequence, neither sees HIGHESTMODSEQ go down, and a third
/// session agrees with what they handed out.
#[test]
fn processes_never_share_a_modseq() {
    let d = temp("modseq");
    let md = d.join("Maildir");
    let m = Maildir::create(&md).unwrap();
    for i in 0..5 {
        let mut dl = m.begin().unwrap();
        dl.write(format!("Subject: {i}\n\n{i}\n").as_bytes())
            .unwrap();
        dl.commit().unwrap();
    }
    let s = Store::open(&md).unwrap();
    let start = s.folder(INBOX, Access::ReadWrite).unwrap().highest_modseq();
    let outs: Vec<PathBuf> = (0..2).map(|i| d.join(format!("modseq{i}.out"))).collect();
    let mut kids: Vec<Kid> = outs.iter().map(|o| spawn_child("modseq", &md, o)).collect();
    for k in &mut kids {
        assert!(k.0.wait().unwrap().success(), "a child failed");
    }
    let mut all: Vec<u64> = Vec::new();
    for o in &outs {
        all.extend(
            fs::read_to_string(o)
                .unwrap()
                .lines()
                .map(|l| l.parse::<u64>().unwrap()),
        );
    }
    let n = all.len();
    assert!(n > 20, "most changes were made: {n}");
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "two operations shared a modseq");
    assert!(all[0] > start);
    let f = s.folder(INBOX, Access::ReadOnly).unwrap();
    assert!(f.highest_modseq() >= *all.last().unwrap());
    assert!(f
        .messages()
        .iter()
        .all(|m| all.contains(&m.modseq) || m.modseq <= start));
    fs::remove_dir_all(&d).unwrap();
}
