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
//! A queue overflow (IN_Q_OVERFLOW), a directory moved (IN_MOVE_SELF) or
//! gone (IN_DELETE_SELF, IN_IGNORED: once nothing holds it open any more;
//! until then the folder's descriptors see the removed directory as it was,
//! as they would without tracking) or a read error marks every folder
//! concerned: the listing happens, as without tracking.
//! Where there is no inotify (or no watch is to be had: the per-user
//! limits), `Tracker::new` gives None and the folder goes by mtimes.
//!
//! Security: watches go on the directories the folder holds open (through
//! /proc/self/fd), as watcher.rs does. Memory: a folder's expected events
//! are its own renames since the last `clean`, which drops what is left.
//!
//! Standards: Maildir (files change by rename only), inotify(7).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use rustc_hash::FxHashMap;

/// Which of a folder's directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sub {
    New,
    Cur,
}

/// A rename, as inotify tells it: the only events a folder expects of
/// itself (any other event is a change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Renamed away (IN_MOVED_FROM).
    From,
    /// Renamed here (IN_MOVED_TO).
    To,
}

/// One folder's tracking (or one IDLE watcher's): dropped, it stops.
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
    /// Written at every event (an IDLE watcher: `waking`).
    waker: Option<Arc<EventFd>>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    records: FxHashMap<u64, Record>,
    /// The records of each watched directory.
    by_wd: FxHashMap<WatchDescriptor, Vec<u64>>,
}

#[derive(Debug)]
struct Hub {
    inotify: Inotify,
    state: Mutex<State>,
    /// The thread that reads the instance when it is readable, made with
    /// the first waker (true: running).
    poller: OnceLock<bool>,
}

/// The process's hub; None where inotify cannot be had.
fn hub() -> Option<&'static Hub> {
    static HUB: OnceLock<Option<Hub>> = OnceLock::new();
    HUB.get_or_init(|| {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        Some(Hub {
            inotify,
            state: Mutex::new(State::default()),
            poller: OnceLock::new(),
        })
    })
    .as_ref()
}

fn unavailable() -> io::Error {
    io::Error::other("inotify is not available in this process")
}

const MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR);

impl Hub {
    /// The state, read up to date (every pending event handed out).
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere with the lock held leaves the maps whole (each
        // change to them is a single insert or remove): go on with them.
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.drain(&self.inotify);
        st
    }

    /// Start the thread that hands out events as they come (for wakers).
    fn start_poller(&'static self) -> bool {
        *self.poller.get_or_init(|| {
            std::thread::Builder::new()
                .name("inotify-poll".into())
                .spawn(move || loop {
                    let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
                    match poll(&mut fds, PollTimeout::NONE) {
                        Ok(_) => drop(self.lock()),
                        Err(Errno::EINTR) => {}
                        Err(_) => return,
                    }
                })
                .is_ok()
        })
    }
}

/// A watch on the directory `d` is open on, through /proc/self/fd.
fn watch(inotify: &Inotify, d: &File) -> io::Result<WatchDescriptor> {
    let proc = format!("/proc/self/fd/{}", d.as_raw_fd());
    Ok(inotify.add_watch(proc.as_str(), MASK)?)
}

impl Tracker {
    /// Track `new` and `cur` (open directories of one folder). A new
    /// tracker is marked (nothing listed yet).
    pub(crate) fn new(new: &File, cur: &File) -> io::Result<Tracker> {
        Tracker::make(new, cur, None)
    }

    /// A tracker whose descriptor becomes readable at every change to
    /// `new` or `cur` (IMAP IDLE: watcher.rs); read it to clear it.
    pub(crate) fn waking(new: &File, cur: &File) -> io::Result<(Tracker, Arc<EventFd>)> {
        let h = hub().ok_or_else(unavailable)?;
        if !h.start_poller() {
            return Err(io::Error::other("cannot start the inotify thread"));
        }
        let fd = Arc::new(EventFd::from_value_and_flags(
            0,
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?);
        let t = Tracker::make(new, cur, Some(Arc::clone(&fd)))?;
        Ok((t, fd))
    }

    fn make(new: &File, cur: &File, waker: Option<Arc<EventFd>>) -> io::Result<Tracker> {
        let h = hub().ok_or_else(unavailable)?;
        let mut st = h.lock();
        let wn = watch(&h.inotify, new)?;
        let wc = match watch(&h.inotify, cur) {
            Ok(w) => w,
            Err(e) => {
                st.unwatch_if_unused(&h.inotify, wn);
                return Err(e);
            }
        };
        st.next_id += 1;
        let id = st.next_id;
        st.records.insert(
            id,
            Record {
                wds: [wn, wc],
                foreign: true,
                expected: Vec::new(),
                waker,
            },
        );
        for wd in [wn, wc] {
            st.by_wd.entry(wd).or_default().push(id);
        }
        Ok(Tracker { id })
    }

    /// A listing of both directories is about to begin: what happened
    /// before it is in the listing. Events that come during it mark the
    /// folder again (its next `clean` says no: listed once more).
    pub(crate) fn reset(&self) {
        let Some(h) = hub() else { return };
        if let Some(r) = h.lock().records.get_mut(&self.id) {
            r.foreign = false;
            r.expected.clear();
        }
    }

    /// Nothing but this folder's own changes (`renamed`) since the last
    /// `reset`.
    pub(crate) fn clean(&self) -> bool {
        let Some(h) = hub() else { return false };
        match h.lock().records.get_mut(&self.id) {
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

/// `rename` (of `old` in `from` to `new` in cur/) done by a folder itself:
/// when it succeeds, its two events are not changes to list again for.
/// No event is read between the rename and the note (the hub is held:
/// the poller thread would take them for another's).
pub(crate) fn renamed<T>(
    t: Option<&Tracker>,
    from: Sub,
    old: &str,
    new: &str,
    rename: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    let (Some(t), Some(h)) = (t, hub()) else {
        return rename();
    };
    let mut st = h.lock();
    let r = rename()?;
    if let Some(rec) = st.records.get_mut(&t.id) {
        let [wn, wc] = rec.wds;
        let wd = if from == Sub::New { wn } else { wc };
        rec.expected.push((wd, Op::From, old.into()));
        rec.expected.push((wc, Op::To, new.into()));
    }
    Ok(r)
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let Some(h) = hub() else { return };
        let mut st = h.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = st.records.remove(&self.id) else {
            return;
        };
        for wd in r.wds {
            if let Some(ids) = st.by_wd.get_mut(&wd) {
                ids.retain(|&i| i != self.id);
            }
            st.unwatch_if_unused(&h.inotify, wd);
        }
    }
}

impl State {
    fn unwatch_if_unused(&mut self, inotify: &Inotify, wd: WatchDescriptor) {
        if self.by_wd.get(&wd).is_some_and(|ids| !ids.is_empty()) {
            return;
        }
        self.by_wd.remove(&wd);
        // (Fails only if the kernel dropped it already: the directory is
        // gone.)
        let _ = inotify.rm_watch(wd);
    }

    /// Every record marked, every waker woken: what happened is unknown.
    fn mark_all(&mut self) {
        for r in self.records.values_mut() {
            r.foreign = true;
            if let Some(w) = &r.waker {
                let _ = w.write(1);
            }
        }
    }

    /// Read every pending event and hand it out.
    fn drain(&mut self, inotify: &Inotify) {
        loop {
            let events = match inotify.read_events() {
                Ok(e) => e,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    self.mark_all();
                    return;
                }
            };
            for e in events {
                if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    self.mark_all();
                    continue;
                }
                let op = if e.mask.contains(AddWatchFlags::IN_MOVED_FROM) {
                    Some(Op::From)
                } else if e.mask.contains(AddWatchFlags::IN_MOVED_TO) {
                    Some(Op::To)
                } else {
                    None
                };
                let name = e.name.as_deref().and_then(|n| n.to_str());
                let Some(ids) = self.by_wd.get(&e.wd) else {
                    continue;
                };
                for id in ids {
                    let Some(r) = self.records.get_mut(id) else {
                        continue;
                    };
                    if let Some(w) = &r.waker {
                        let _ = w.write(1);
                    }
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
        let mv = |a: &str, b: &str| std::fs::rename(c.join(a), c.join(b));
        renamed(Some(&tr), Sub::Cur, "a:2,", "a:2,S", || mv("a:2,", "a:2,S")).unwrap();
        assert!(tr.clean(), "its own rename");
        // A second folder on the same directories sees that rename as a
        // change, and its own rename is a change to the first.
        let other = Tracker::new(&new, &cur).unwrap();
        other.reset();
        renamed(Some(&other), Sub::Cur, "a:2,S", "a:2,RS", || {
            mv("a:2,S", "a:2,RS")
        })
        .unwrap();
        assert!(other.clean());
        assert!(!tr.clean());
        // Delivery into new/ marks both; a reset clears.
        tr.reset();
        other.reset();
        std::fs::write(t.0.join("new/b"), "y").unwrap();
        assert!(!tr.clean() && !other.clean());
        // A rename that failed expects nothing: another's change of that
        // name is still a change.
        std::fs::write(c.join("x"), "w").unwrap();
        tr.reset();
        let failed = || -> io::Result<()> { Err(io::Error::other("refused")) };
        assert!(renamed(Some(&tr), Sub::Cur, "x", "y", failed).is_err());
        mv("x", "y").unwrap();
        assert!(!tr.clean());
        // Dropping one leaves the other's watch working.
        drop(tr);
        other.reset();
        std::fs::write(c.join("d:2,"), "z").unwrap();
        assert!(!other.clean());
    }

    #[test]
    fn a_waker_is_woken_without_anyone_reading_the_instance() {
        let (t, new, cur) = dirs("wake");
        let (tr, fd) = Tracker::waking(&new, &cur).unwrap();
        assert_eq!(fd.read(), Err(Errno::EAGAIN), "nothing happened yet");
        std::fs::write(t.0.join("new/m"), "x").unwrap();
        // This thread reads nothing from the hub: the poller thread does.
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::from(5000u16)).unwrap(), 1);
        assert!(fd.read().unwrap() >= 1);
        assert!(!tr.clean());
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
