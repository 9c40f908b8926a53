//! Change notification for IMAP IDLE: a descriptor that becomes readable
//! when a folder's new/ or cur/ gains, loses or renames a file.
//!
//! Owns an eventfd and a record in the process's inotify hub (tracker.rs:
//! one inotify instance per process, its watches shared by every folder
//! and watcher on a directory, read by a thread of its own that writes the
//! eventfd of each watcher an event concerns), and `drain`, which clears
//! it. Does not own the wait (the daemon's poll loop waits on the
//! descriptor: AsFd / AsRawFd) or what changed (the session calls
//! `Folder::sync` after a wake-up and sends what `Changes` holds).
//!
//! Why not an inotify instance per watcher: Linux allows 128 per user
//! (fs.inotify.max_user_instances) and the sessions of many virtual users
//! run as one uid, so the 129th IDLE would never be woken; and closing an
//! instance waits for an RCU grace period (10-20 ms). An eventfd has
//! neither cost.
//!
//! What wakes it: local delivery (tmp/ then a rename into new/: IN_MOVED_TO
//! in new/), another session's flag change (a rename in cur/), expunge (an
//! unlink), a move from new/ to cur/. Every new UID comes with one of
//! those (a file in new/ or cur/), so the uidlist is not watched; lock
//! files, tmp/ and posthorn-modseq do not wake it either (a session's own
//! sync takes the lock; waking on that would never stop). A session's own
//! changes wake it too: the sync that follows finds nothing new and reports
//! nothing. Events are coalesced: one readable descriptor may stand for
//! many changes, and a queue overflow counts as a change.
//!
//! Standards: RFC 2177 (IDLE: the server sends changes as they happen).
//!
//! Security: the watches are put on the directories the folder already
//! holds open (through /proc/self/fd), so a directory replaced by a link
//! after the folder was opened is not what gets watched.
//!
//! Diagnostics: errors only (`StoreError::Io` naming the folder).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::eventfd::EventFd;

use crate::error::{At, StoreError};
use crate::tracker::Tracker;

/// A watcher on one folder's new/ and cur/.
#[derive(Debug)]
pub struct Watcher {
    _tracker: Tracker,
    wake: Arc<EventFd>,
}

impl Watcher {
    /// Watch `new` and `cur` (the folder's subdirectories); `display` is
    /// for errors.
    pub(crate) fn new(new: &File, cur: &File, display: &Path) -> Result<Watcher, StoreError> {
        let (tracker, wake) = Tracker::waking(new, cur).at(display)?;
        Ok(Watcher {
            _tracker: tracker,
            wake,
        })
    }

    /// Read what is pending (never blocks): whether anything changed since
    /// the last call.
    pub fn drain(&self) -> io::Result<bool> {
        match self.wake.read() {
            Ok(n) => Ok(n > 0),
            Err(Errno::EAGAIN) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for Watcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}

impl AsRawFd for Watcher {
    fn as_raw_fd(&self) -> RawFd {
        self.wake.as_fd().as_raw_fd()
    }
}
