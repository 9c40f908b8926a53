//! The one error type of the mailbox store, and the parse error its file
//! formats share.
//!
//! Owns the failure taxonomy that pop3d, imapd and local delivery map to
//! their replies: I/O (with the file it concerns), a corrupt control file
//! (file, line, reason), the folder-name and message look-up failures, locks
//! that stay taken, a full quota. Does not own the wording sent to clients
//! (each daemon maps a variant to its protocol's reply).
//!
//! Diagnostics: every variant's Display names the file or folder it is about,
//! so a log line needs nothing added but the user.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A malformed line in one of the store's control files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number (0: the file as a whole, e.g. too large).
    pub line: usize,
    pub reason: String,
}

impl ParseError {
    pub fn new(line: usize, reason: impl Into<String>) -> ParseError {
        ParseError {
            line,
            reason: reason.into(),
        }
    }
}

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A system call on `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A control file (dovecot-uidlist, dovecot-keywords, subscriptions,
    /// maildirsize) is not in its format.
    #[error("{}: {err}", path.display())]
    Corrupt { path: PathBuf, err: ParseError },
    /// A folder name the store refuses (why).
    #[error("invalid folder name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error("folder {0:?} does not exist")]
    NoSuchFolder(String),
    #[error("folder {0:?} already exists")]
    FolderExists(String),
    /// Maildir++ keeps children as folders of their own: Dovecot's rule.
    #[error("folder {0:?} has children; delete them first")]
    HasChildren(String),
    /// INBOX cannot be deleted, and renaming it is not supported.
    #[error("INBOX cannot be {0}")]
    Inbox(&'static str),
    /// The lock file stayed taken (and not stale) for the whole wait.
    #[error("{}: still locked by another process after {} s", path.display(), waited.as_secs())]
    LockTimeout { path: PathBuf, waited: Duration },
    /// No message with this UID (never, or expunged).
    #[error("no message with UID {0}")]
    NoSuchMessage(u32),
    /// The message's file is gone (expunged by another session).
    #[error("message UID {0} has been expunged")]
    Expunged(u32),
    /// A change to a folder opened read-only.
    #[error("folder {0:?} is open read-only")]
    ReadOnly(String),
    /// All 26 keyword letters of a folder are taken.
    #[error("{}: all 26 keyword letters are in use", path.display())]
    KeywordsFull { path: PathBuf },
    #[error("invalid keyword {0:?}")]
    BadKeyword(String),
    /// The folder has used up the 32-bit UID space.
    #[error("{}: no UIDs left", path.display())]
    UidsExhausted { path: PathBuf },
    /// Storing this would go over the user's quota.
    #[error("{0}")]
    OverQuota(crate::quota::OverQuota),
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(path: impl Into<PathBuf>, err: ParseError) -> StoreError {
        StoreError::Corrupt {
            path: path.into(),
            err,
        }
    }

    /// Is this a temporary condition (try again later), as opposed to a
    /// problem that needs someone to act? Local delivery defers either way;
    /// imapd/pop3d say `[INUSE]` / `[IN-USE]` for these.
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::LockTimeout { .. })
    }
}

/// `io::Result` to `StoreError` with the path it concerns.
pub(crate) trait At<T> {
    fn at(self, path: &Path) -> Result<T, StoreError>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::io(path, e))
    }
}

impl<T> At<T> for nix::Result<T> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::io(path, io::Error::from(e)))
    }
}
