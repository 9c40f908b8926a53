//! Change notification for IMAP IDLE: an inotify descriptor that becomes
//! readable when a folder's new/ or cur/ gains, loses or renames a file, or
//! its dovecot-uidlist is replaced.
//!
//! Owns the inotify instance (non-blocking, close-on-exec) and its three
//! watches, and `drain`, which reads what is pending and says whether any of
//! it matters. Does not own the wait (the daemon's poll loop waits on the
//! descriptor: AsFd / AsRawFd) or what changed (the session calls
//! `Folder::sync` after a wake-up and sends what `Changes` holds).
//!
//! What wakes it: local delivery (tmp/ then a rename into new/: IN_MOVED_TO
//! in new/), another session's flag change (a rename in cur/), expunge (an
//! unlink), a move from new/ to cur/, another session's new UIDs (the
//! uidlist renamed into place). Lock files, tmp/ and posthorn-modseq do not
//! wake it (a session's own sync takes the lock; waking on that would never
//! stop). A session's own changes wake it too: the sync that follows finds
//! nothing new and reports nothing. Events are coalesced: one readable
//! descriptor may stand for many changes, and a queue overflow counts as a
//! change.
//!
//! Standards: RFC 2177 (IDLE: the server sends changes as they happen).
//!
//! Security: the watches are put on the directories the folder already
//! holds open (through /proc/self/fd), so a directory replaced by a link
//! after the folder was opened is not what gets watched; without /proc the
//! folder's path is watched with IN_DONT_FOLLOW.
//!
//! Diagnostics: errors only (`StoreError::Io` naming the folder).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::error::{At, StoreError};

/// The uidlist's name: the only file of the folder directory that wakes.
const UIDLIST: &str = "dovecot-uidlist";

/// An inotify watcher on one folder.
#[derive(Debug)]
pub struct Watcher {
    inotify: Inotify,
    folder_wd: WatchDescriptor,
}

impl Watcher {
    /// Watch `new` and `cur` (the folder's subdirectories) and `dir` (the
    /// folder directory, for the uidlist); `display` is for errors.
    pub(crate) fn new(
        dir: &File,
        new: &File,
        cur: &File,
        display: &Path,
    ) -> Result<Watcher, StoreError> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).at(display)?;
        let files = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_ONLYDIR;
        for (d, sub) in [(new, "new"), (cur, "cur")] {
            add(&inotify, d, &display.join(sub), files)?;
        }
        let folder_wd = add(
            &inotify,
            dir,
            display,
            AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_ONLYDIR,
        )?;
        Ok(Watcher { inotify, folder_wd })
    }

    /// Close it on a thread of its own: closing an inotify descriptor waits
    /// for an RCU grace period (10-20 ms here), which would hold up every
    /// other session of the process.
    pub fn close_in_background(self) {
        static CLOSER: std::sync::OnceLock<Option<std::sync::mpsc::Sender<Watcher>>> =
            std::sync::OnceLock::new();
        let tx = CLOSER.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Watcher>();
            std::thread::Builder::new()
                .name("inotify-close".into())
                .spawn(move || rx.into_iter().for_each(drop))
                .ok()
                .map(|_| tx)
        });
        // Without the thread, closed here (as it is if the send fails).
        if let Some(tx) = tx {
            let _ = tx.send(self);
        }
    }

    /// Read every pending event (never blocks): whether any of them is a
    /// change the session should sync for.
    pub fn drain(&self) -> io::Result<bool> {
        let mut changed = false;
        loop {
            let events = match self.inotify.read_events() {
                Ok(e) => e,
                Err(Errno::EAGAIN) => return Ok(changed),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            for e in events {
                changed |= e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW)
                    || e.wd != self.folder_wd
                    || e.mask.contains(AddWatchFlags::IN_DELETE_SELF)
                    || e.name.as_deref().is_some_and(|n| n == UIDLIST);
            }
        }
    }
}

/// A watch on the directory `d` is open on: through /proc/self/fd, else by
/// its path without following a last link.
fn add(
    inotify: &Inotify,
    d: &File,
    display: &Path,
    mask: AddWatchFlags,
) -> Result<WatchDescriptor, StoreError> {
    let proc = format!("/proc/self/fd/{}", d.as_raw_fd());
    match inotify.add_watch(proc.as_str(), mask) {
        Ok(wd) => Ok(wd),
        Err(Errno::ENOENT) => inotify
            .add_watch(display, mask | AddWatchFlags::IN_DONT_FOLLOW)
            .at(display),
        Err(e) => Err(e).at(display),
    }
}

impl AsFd for Watcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}

impl AsRawFd for Watcher {
    fn as_raw_fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }
}
