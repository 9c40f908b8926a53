//! What a POP3 session needs of a mailbox: the session lock, the maildrop
//! listing (sizes and UIDLs), message readers, and the expunge at QUIT.
//!
//! Owns the one-session-per-mailbox lock (flock on `posthorn-pop3.lock` in
//! the Maildir: any process, any host whose file system carries flock;
//! released by the kernel when the holder dies, even by SIGKILL), the
//! listing in Dovecot's order and with Dovecot's default UIDL format, so
//! that clients do not download everything again when a mailbox moves
//! between Dovecot and posthorn. Does not own the protocol (proto::pop3,
//! pop3d).
//!
//! Standards: RFC 1939 5 (TRANSACTION: messages numbered from 1, sizes are
//! octets as sent; deleted messages removed at QUIT/UPDATE), 7 (UIDL);
//! RFC 2449 8.1.2.1 ([IN-USE]: the maildrop is locked by another session);
//! Dovecot's `pop3_uidl_format = %08Xu%08Xv` (UID and UIDVALIDITY as eight
//! lower-case hex digits each) and the uidlist's P (UIDL of a migrated
//! mailbox) and O (POP3 order) fields.
//!
//! Security: the lock file is opened with O_NOFOLLOW through the Maildir's
//! descriptor; message readers come from Folder::open_message (regular
//! files only).
//!
//! Diagnostics: `Pop3LockError::InUse` for a locked maildrop; the rest are
//! StoreErrors.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::error::{At, StoreError};
use crate::folder::Folder;
use crate::names::INBOX;
use crate::store::{Access, Store, FILE_MODE};

/// The lock file in the Maildir.
pub const LOCK_FILE: &str = "posthorn-pop3.lock";

/// A held POP3 session lock (released on drop, or when the process dies).
#[derive(Debug)]
pub struct Pop3Lock {
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum Pop3LockError {
    /// Another POP3 session has the mailbox (RFC 2449 [IN-USE]).
    #[error("mailbox is locked by another POP3 session")]
    InUse,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Take the mailbox's POP3 session lock, without waiting.
pub fn lock(store: &Store) -> Result<Pop3Lock, Pop3LockError> {
    let path = store.root().join(LOCK_FILE);
    let f = common::privilege::open_at(
        Some(store.root_dir()),
        Path::new(LOCK_FILE),
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NONBLOCK,
        FILE_MODE,
    )
    .at(&path)?;
    if !f.metadata().at(&path)?.is_file() {
        return Err(StoreError::io(&path, io::Error::other("not a regular file")).into());
    }
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Pop3Lock { _lock: l }),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(Pop3LockError::InUse),
        Err((_, e)) => Err(StoreError::io(&path, e.into()).into()),
    }
}

/// One message of the maildrop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Message {
    pub uid: u32,
    /// Octets with CRLF line ends: what RETR sends before dot-stuffing.
    pub size: u64,
    /// The UIDL string.
    pub uidl: String,
}

/// The maildrop of a POP3 session: INBOX, listed once at the start.
#[derive(Debug)]
pub struct Maildrop {
    folder: Folder,
    messages: Vec<Pop3Message>,
}

impl Maildrop {
    /// Open INBOX for writing (new mail moves to cur/ and gets UIDs), and
    /// list it: messages with a POP3 order (O) first by it, then the rest
    /// by UID, as Dovecot lists them.
    pub fn open(store: &Store) -> Result<Maildrop, StoreError> {
        let mut folder = store.folder(INBOX, Access::ReadWrite)?;
        let uidv = folder.uid_validity();
        let mut order: Vec<(Option<u64>, u32)> = folder
            .messages()
            .iter()
            .map(|m| (m.ext(b'O').and_then(|o| o.parse().ok()), m.uid))
            .collect();
        order.sort_by_key(|(o, uid)| (o.is_none(), o.unwrap_or(0), *uid));
        let mut messages = Vec::with_capacity(order.len());
        for (_, uid) in order {
            let size = match folder.vsize(uid) {
                Ok(s) => s,
                // Gone between the sync and now: not listed.
                Err(StoreError::Expunged(_)) => continue,
                Err(e) => return Err(e),
            };
            let m = folder.message(uid).ok_or(StoreError::NoSuchMessage(uid))?;
            let uidl = match m.ext(b'P') {
                Some(p) if !p.is_empty() => p.to_string(),
                _ => format!("{uid:08x}{uidv:08x}"),
            };
            messages.push(Pop3Message { uid, size, uidl });
        }
        // Counted sizes go to the uidlist now (one write), not later.
        folder.sync()?;
        Ok(Maildrop { folder, messages })
    }

    /// The messages in POP3 order (message number n is `messages()[n-1]`).
    pub fn messages(&self) -> &[Pop3Message] {
        &self.messages
    }

    /// The sum of the sizes (STAT).
    pub fn total_size(&self) -> u64 {
        self.messages.iter().map(|m| m.size).sum()
    }

    /// A reader of a message with CRLF line ends: exactly `size` octets
    /// (not dot-stuffed, no final ".").
    pub fn retrieve(&mut self, uid: u32) -> Result<CrlfReader<File>, StoreError> {
        Ok(CrlfReader::new(self.folder.open_message(uid)?))
    }

    /// Remove messages at QUIT (RFC 1939 6, UPDATE state).
    pub fn expunge(&mut self, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        self.folder.expunge(uids)
    }

    /// The folder, e.g. to set \Seen on what was retrieved.
    pub fn folder(&mut self) -> &mut Folder {
        &mut self.folder
    }
}

/// Turns bare LF into CRLF while reading (a CRLF already there stays), so
/// that a message stored with LF reads as `,W=` counts it.
#[derive(Debug)]
pub struct CrlfReader<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    last_cr: bool,
}

impl<R: Read> CrlfReader<R> {
    pub fn new(inner: R) -> CrlfReader<R> {
        CrlfReader {
            inner,
            buf: Vec::with_capacity(16 * 1024),
            pos: 0,
            last_cr: false,
        }
    }
}

impl<R: Read> Read for CrlfReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            let mut chunk = [0u8; 8 * 1024];
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                return Ok(0);
            }
            self.buf.clear();
            self.pos = 0;
            for &b in &chunk[..n] {
                if b == b'\n' && !self.last_cr {
                    self.buf.push(b'\r');
                }
                self.buf.push(b);
                self.last_cr = b == b'\r';
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_reader_matches_vsize() {
        let data = b"a\nb\r\nc\r\r\nd";
        let mut out = Vec::new();
        CrlfReader::new(&data[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"a\r\nb\r\nc\r\r\nd");
        let mut c = crate::filename::VsizeCounter::default();
        c.add(data);
        assert_eq!(c.vsize(), out.len() as u64);
    }
}
