//! Folders kept open between sessions: a user's next SELECT of the same
//! mailbox in this mailbox process (the dispatcher sends all of a user's
//! sessions to one: common::login::dispatch) starts from what the last
//! session knew, and lists the folder again only if it changed
//! (`Store::select_again`), as Dovecot's index spares it the listing.
//!
//! Owns: the list of kept folders, at most `MAX_KEPT` and `MAX_MESSAGES`
//! messages in all, none older than `MAX_AGE` (the oldest go first). Does not own the folder state
//! (mailstore) or when a session lets a folder go (session/, cmd::select).
//!
//! Security: a folder is kept under the user and the Maildir it belongs to
//! and given back only for both; a mailbox process runs for one owner
//! (uid), so whatever it keeps was readable by each of its sessions'
//! owners anyway.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mailstore::{Access, Folder};

/// Folders kept at most (each holds five descriptors)...
const MAX_KEPT: usize = 64;
/// ... and messages in all (each about 250 bytes: 16 MB at most).
const MAX_MESSAGES: usize = 64_000;
/// A folder kept longer is let go.
const MAX_AGE: Duration = Duration::from_secs(60);

struct Kept {
    user: String,
    root: PathBuf,
    folder: Folder,
    since: Instant,
}

thread_local! {
    static KEPT: RefCell<Vec<Kept>> = const { RefCell::new(Vec::new()) };
}

/// A session let go of `folder` (LOGOUT, CLOSE, UNSELECT, the end of the
/// connection): keep it for the user's next SELECT of it. Read-only and
/// released folders are not worth keeping.
pub fn keep(user: &str, root: &Path, folder: Folder) {
    if folder.access() != Access::ReadWrite || folder.is_released() {
        return;
    }
    KEPT.with(|k| {
        let mut k = k.borrow_mut();
        k.retain(|e| e.since.elapsed() < MAX_AGE);
        // One per (user, folder): the newer replaces the older.
        k.retain(|e| !(e.user == user && e.root == root && e.folder.name() == folder.name()));
        let mut total: usize = k.iter().map(|e| e.folder.messages().len()).sum();
        total += folder.messages().len();
        while !k.is_empty() && (k.len() >= MAX_KEPT || total > MAX_MESSAGES) {
            total -= k.remove(0).folder.messages().len();
        }
        if total > MAX_MESSAGES {
            return;
        }
        k.push(Kept {
            user: user.to_string(),
            root: root.to_path_buf(),
            folder,
            since: Instant::now(),
        });
    });
}

/// The folder `name` of `user`'s Maildir at `root`, if one is kept.
pub fn take(user: &str, root: &Path, name: &str) -> Option<Folder> {
    KEPT.with(|k| {
        let mut k = k.borrow_mut();
        k.retain(|e| e.since.elapsed() < MAX_AGE);
        let i = k
            .iter()
            .position(|e| e.user == user && e.root == root && e.folder.name() == name)?;
        Some(k.remove(i).folder)
    })
}

/// Let go of folders kept too long (each round of the mailbox process's
/// loop). Whether any went.
pub fn expire() -> bool {
    KEPT.with(|k| {
        let mut k = k.borrow_mut();
        let before = k.len();
        k.retain(|e| e.since.elapsed() < MAX_AGE);
        k.len() != before
    })
}
