//! Has a folder's new/ or cur/ changed since its last listing, other than
//! by the folder's own renames? One inotify instance per process answers it
//! for every open folder, so that a sync after a session's own STORE (or a
//! command that changed nothing) need not list 1,000 files again.
//!
//! Owns the process's inotify instance (made at first use, never closed:
//! closing one waits for an RCU grace period), its watches (one per
//! directory however many folders of the process track it: inotify gives
//! the same directory the same watch descriptor, so each is counted and
//! removed with the last folder), and each tracking folder's record: a
//! `foreign` mark and the events it made itself and expects (`expect`).
//! Reading the instance hands each event to every folder tracking its
//! directory: an expected one is crossed off, any other marks the folder.
//! Does not own the listing (folder.rs: `reset` right before it, `clean`
//! instead of the directories' mtimes) or IMAP IDLE's wake-ups
//! (watcher.rs, a descriptor of its own that the session polls).
//!
//! Why it is exact where mtimes are not: inotify queues an event in the
//! system call that changes the directory, before that call returns, so a
//! change that `clean` does not see happened after it; mtimes share a
//! clock tick between changes (folder.rs: the settle rule), so a folder
//! that changed its own directory has to list it again.
//! A queue overflow (IN_Q_OVERFLOW), a directory removed or moved
//! (IN_DELETE_SELF, IN_MOVE_SELF, IN_IGNORED) or any error marks every
//! folder concerned: the listing happens, as without tracking.
//! Where there is no inotify (or no watch is to be had: the per-user
//! limits), `Tracker::new` gives None and the folder goes by mtimes.
//!
//! Security: watches go on the directories the folder holds open (through
//! /proc/self/fd), as watcher.rs does. Memory: a folder's expected events
//! are its own renames since the last `clean`, which drops what is left.
//!
//! Standards: Maildir (files change by rename only), inotify(7).

use std::fs::File;
use std::sync::{Mutex, MutexGuard, OnceLock};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use rustc_hash::FxHashMap;

/// Which of a folder's directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sub {
    New,
    Cur,
}

/// What happened to a name, as inotify tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Renamed away (IN_MOVED_FROM).
    From,
    /// Renamed here (IN_MOVED_TO).
    To,
    /// Unlinked (IN_DELETE).
    Delete,
}

/// One folder's tracking: dropped, it stops.
#[derive(Debug)]
pub(crate) struct Tracker {
    id: u64,
}

#[derive(Debug)]
struct Record {
    /// new/'s and cur/'s watches.
    wds: [WatchDescriptor; 2],
    /// Something other than an expected event happened since `reset`.
    foreign: bool,
    expected: Vec<(WatchDescriptor, Op, Box<str>)>,
}

#[derive(Debug)]
struct Hub {
    inotify: Inotify,
    next_id: u64,
    records: FxHashMap<u64, Record>,
    /// The folders tracking each watched directory.
    by_wd: FxHashMap<WatchDescriptor, Vec<u64>>,
}

/// The process's hub; None where inotify cannot be had.
fn hub() -> Option<MutexGuard<'static, Hub>> {
    static HUB: OnceLock<Option<Mutex<Hub>>> = OnceLock::new();
    let m = HUB.get_or_init(|| {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        Some(Mutex::new(Hub {
            inotify,
            next_id: 1,
            records: FxHashMap::default(),
            by_wd: FxHashMap::default(),
        }))
    });
    // A panic elsewhere with the lock held leaves the maps whole (every
    // change to them is a single insert or remove): go on with them.
    m.as_ref()
        .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
}

const MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);

impl Tracker {
    /// Track `new` and `cur` (open directories of one folder); None if
    /// they cannot be watched. A new tracker is marked (nothing listed yet).
    pub(crate) fn new(new: &File, cur: &File) -> Option<Tracker> {
        let mut hub = hub()?;
        let add = |h: &Hub, d: &File| {
            let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(d));
            h.inotify.add_watch(proc.as_str(), MASK).ok()
        };
        let wn = add(&hub, new)?;
        let Some(wc) = add(&hub, cur) else {
            hub.unwatch_if_unused(wn);
            return None;
        };
        let id = hub.next_id;
        hub.next_id += 1;
        hub.records.insert(
            id,
            Record {
                wds: [wn, wc],
                foreign: true,
                expected: Vec::new(),
            },
        );
        for wd in [wn, wc] {
            hub.by_wd.entry(wd).or_default().push(id);
        }
        Some(Tracker { id })
    }

    /// A listing of both directories is about to begin: what happened
    /// before it is in the listing. Events that come during it mark the
    /// folder again (its next `clean` says no: listed once more).
    pub(crate) fn reset(&self) {
        let Some(mut hub) = hub() else { return };
        hub.drain();
        if let Some(r) = hub.records.get_mut(&self.id) {
            r.foreign = false;
            r.expected.clear();
        }
    }

    /// This folder renamed or removed a file itself (after the call
    /// succeeded): the event it makes is not a change to list again for.
    pub(crate) fn expect(&self, sub: Sub, op: Op, name: &str) {
        let Some(mut hub) = hub() else { return };
        if let Some(r) = hub.records.get_mut(&self.id) {
            let wd = r.wds[sub as usize];
            r.expected.push((wd, op, name.into()));
        }
    }

    /// Nothing but this folder's own expected changes since the last
    /// `reset`.
    pub(crate) fn clean(&self) -> bool {
        let Some(mut hub) = hub() else { return false };
        hub.drain();
        match hub.records.get_mut(&self.id) {
            Some(r) => {
                // Every event of a past change has been read: what was not
                // met will not come.
                r.expected.clear();
                !r.foreign
            }
            None => false,
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let Some(mut hub) = hub() else { return };
        let Some(r) = hub.records.remove(&self.id) else {
            return;
        };
        for wd in r.wds {
            if let Some(ids) = hub.by_wd.get_mut(&wd) {
                ids.retain(|&i| i != self.id);
            }
            hub.unwatch_if_unused(wd);
        }
    }
}

impl Hub {
    fn unwatch_if_unused(&mut self, wd: WatchDescriptor) {
        if self.by_wd.get(&wd).is_some_and(|ids| !ids.is_empty()) {
            return;
        }
        self.by_wd.remove(&wd);
        // (Fails only if the kernel dropped it already: the directory is
        // gone.)
        let _ = self.inotify.rm_watch(wd);
    }

    /// Read every pending event and hand it out.
    fn drain(&mut self) {
        loop {
            let events = match self.inotify.read_events() {
                Ok(e) => e,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    // Cannot tell what happened: everyone lists again.
                    self.records.values_mut().for_each(|r| r.foreign = true);
                    return;
                }
            };
            for e in events {
                if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    self.records.values_mut().for_each(|r| r.foreign = true);
                    continue;
                }
                let op = if e.mask.contains(AddWatchFlags::IN_MOVED_FROM) {
                    Some(Op::From)
                } else if e.mask.contains(AddWatchFlags::IN_MOVED_TO) {
                    Some(Op::To)
                } else if e.mask.contains(AddWatchFlags::IN_DELETE) {
                    Some(Op::Delete)
                } else {
                    None
                };
                let Some(ids) = self.by_wd.get(&e.wd) else {
                    continue;
                };
                for id in ids {
                    let Some(r) = self.records.get_mut(id) else {
                        continue;
                    };
                    let name = e.name.as_deref().and_then(|n| n.to_str());
                    let mine = match (op, name) {
                        (Some(op), Some(name)) => r
                            .expected
                            .iter()
                            .position(|(wd, o, n)| *wd == e.wd && *o == op && &**n == name),
                        _ => None,
                    };
                    match mine {
                        Some(i) => {
                            r.expected.swap_remove(i);
                        }
                        None => r.foreign = true,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder's new/ and cur/ in a directory of the test's own.
    struct Dirs(std::path::PathBuf);

    impl Drop for Dirs {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dirs(name: &str) -> (Dirs, File, File) {
        let p =
            std::env::temp_dir().join(format!("posthorn-tracker-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        for d in ["new", "cur"] {
            std::fs::create_dir_all(p.join(d)).unwrap();
        }
        let new = File::open(p.join("new")).unwrap();
        let cur = File::open(p.join("cur")).unwrap();
        (Dirs(p), new, cur)
    }

    #[test]
    fn own_renames_are_clean_and_others_are_not() {
        let (t, new, cur) = dirs("own");
        let c = t.0.join("cur");
        std::fs::write(c.join("a:2,"), "x").unwrap();
        let tr = Tracker::new(&new, &cur).unwrap();
        assert!(!tr.clean(), "nothing listed yet");
        tr.reset();
        assert!(tr.clean());
        std::fs::rename(c.join("a:2,"), c.join("a:2,S")).unwrap();
        tr.expect(Sub::Cur, Op::From, "a:2,");
        tr.expect(Sub::Cur, Op::To, "a:2,S");
        assert!(tr.clean(), "its own rename");
        // A second folder on the same directories sees that rename as a
        // change, and its own rename is a change to the first.
        let other = Tracker::new(&new, &cur).unwrap();
        other.reset();
        std::fs::rename(c.join("a:2,S"), c.join("a:2,RS")).unwrap();
        other.expect(Sub::Cur, Op::From, "a:2,S");
        other.expect(Sub::Cur, Op::To, "a:2,RS");
        assert!(other.clean());
        assert!(!tr.clean());
        // Delivery into new/ marks both; a reset clears.
        tr.reset();
        other.reset();
        std::fs::write(t.0.join("new/b"), "y").unwrap();
        assert!(!tr.clean() && !other.clean());
        // An expectation of another name does not hide a change.
        tr.reset();
        std::fs::remove_file(t.0.join("new/b")).unwrap();
        tr.expect(Sub::New, Op::Delete, "c");
        assert!(!tr.clean());
        // Dropping one leaves the other's watch working.
        drop(tr);
        other.reset();
        std::fs::write(c.join("d:2,"), "z").unwrap();
        assert!(!other.clean());
    }

    #[test]
    fn a_directory_moved_away_marks_the_folder() {
        let (t, new, cur) = dirs("moved");
        let tr = Tracker::new(&new, &cur).unwrap();
        tr.reset();
        std::fs::rename(t.0.join("cur"), t.0.join("cur.old")).unwrap();
        assert!(!tr.clean());
    }
}
