//! What IMAP asks of a folder beyond listing and changing messages:
//! mod-sequences (posthorn-modseq brought in line at each sync, read and
//! written under the uidlist lock), the expunge log for QRESYNC, \Recent,
//! and the IDLE watcher. Part of folder.rs (the same `Folder`), kept apart
//! to keep that file readable.
//!
//! Standards: RFC 7162 3.1 (CONDSTORE: MODSEQ, HIGHESTMODSEQ,
//! CHANGEDSINCE), 3.2.5.2 and 3.2.10 (QRESYNC: VANISHED (EARLIER)); RFC 3501
//! 2.3.2 (\Recent; the rule is at `Store::select`); RFC 2177 (IDLE).
//!
//! Durability: posthorn-modseq is written as the uidlist is
//! (posthorn-modseq.tmp, fsync, rename, fsync the directory) and only while
//! the lock is still ours; a write that only records flag changes is not
//! fsync'ed (posthorn-modseq.tmp, rename; as Dovecot's mail_fsync=optimized
//! leaves flag changes to the kernel). Such a write, and the renames it
//! records, can be lost only with the machine, i.e. across a reboot: the
//! file carries the boot it was written in (`B`, Linux's boot_id), and a
//! file from another boot starts HIGHESTMODSEQ again at the current time in
//! microseconds (as a rebuilt file does), so mod-sequences handed out
//! before the crash are never handed out again. Where the boot id cannot be
//! read, every write is fsync'ed.
//!
//! Diagnostics: a corrupt or (for a folder that had a uidlist) missing file
//! is a warning naming it; it is rebuilt (modseq.rs says how).

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use common::durable::{self, Replace};
use common::warning;

use super::Folder;
use crate::dotlock::DotLock;
use crate::error::{At, StoreError};
use crate::fsat;
use crate::modseq::{self, ModseqFile, Vanished};
use crate::store::FILE_MODE;

/// This boot's id (Linux's /proc/sys/kernel/random/boot_id, hex without
/// the dashes), read once; None where there is none.
fn boot_id() -> Option<&'static str> {
    static BOOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let hex: String = s.trim().chars().filter(|&c| c != '-').collect();
        let hex = hex.to_ascii_lowercase();
        modseq::is_boot_id(&hex).then_some(hex)
    })
    .as_deref()
}

impl Folder {
    fn modseq_path(&self) -> PathBuf {
        self.display.join(modseq::FILE)
    }

    /// Read posthorn-modseq (under the lock): None if it is missing or
    /// corrupt (logged).
    fn read_modseq(&self) -> Result<Option<ModseqFile>, StoreError> {
        let path = self.modseq_path();
        match fsat::read_bounded(&self.dir, modseq::FILE, modseq::MAX_FILE) {
            Ok(Some(data)) => match ModseqFile::parse(&data) {
                Ok(f) => Ok(Some(f)),
                Err(e) => {
                    warning!(
                        "{}; rebuilding it: mod-sequences start again above the current time in microseconds",
                        StoreError::corrupt(&path, e)
                    );
                    Ok(None)
                }
            },
            Ok(None) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                warning!("{}: {e}; rebuilding it", path.display());
                Ok(None)
            }
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// Bring posthorn-modseq in line with the messages a sync just found
    /// (under the lock): new mod-sequences for new messages and changed
    /// flags, expunges logged, \Recent taken or seen; written back when
    /// it changed.
    /// A missing file is logged when the folder has been synced before
    /// (`had_list`: a uidlist was there), i.e. not for a new folder.
    pub(super) fn reconcile_modseq(
        &mut self,
        lock: &DotLock,
        had_list: bool,
    ) -> Result<(), StoreError> {
        let boot = boot_id();
        // The file this folder last read or wrote, untouched since: not
        // read again (`modseq_known`).
        let now = match fsat::stat(&self.dir, modseq::FILE) {
            Ok(st) => Some(super::file_stamp(&st)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io(self.modseq_path(), e)),
        };
        let cached = now.is_some() && now == self.modseq_known;
        self.modseq_known = None;
        let read = if cached {
            Some(std::mem::take(&mut self.modseq))
        } else {
            self.read_modseq()?
        };
        let (mut f, mut changed) = match read {
            Some(mut f) => {
                // Written in another boot (or by a writer that did not say):
                // its last writes may have been lost; start above anything
                // handed out then.
                let other_boot = boot.is_some() && f.boot.as_deref() != boot;
                if other_boot {
                    f.highest = f.highest.max(modseq::time_floor());
                }
                (f, other_boot)
            }
            None => {
                if had_list || self.modseq.highest != 0 {
                    warning!(
                        "{}: missing; rebuilt, mod-sequences start again above the current time in microseconds",
                        self.modseq_path().display()
                    );
                }
                let floor = modseq::time_floor().max(self.modseq.highest);
                (ModseqFile::rebuilt(self.uid_validity, floor), true)
            }
        };
        // Only flag changes (no message new or gone, same UIDVALIDITY, the
        // file read as it was) need no fsync.
        let durable = changed || boot.is_none();
        let before = (f.uid_validity, f.messages.len(), f.expunged.len());
        f.boot = boot.map(str::to_string);
        let current: Vec<_> = self
            .messages
            .iter()
            .map(|m| (m.uid, m.flags, m.keywords))
            .collect();
        changed |= f.reconcile(self.uid_validity, &current);
        let durable = durable || before != (f.uid_validity, f.messages.len(), f.expunged.len());
        // RFC 3501 2.3.2: see `Store::select`.
        let first_recent = f.first_recent;
        let mut durable = durable;
        if self.take_recent && f.first_recent < self.next_uid {
            f.first_recent = self.next_uid;
            changed = true;
            durable = true;
        }
        for m in &mut self.messages {
            m.modseq = f.messages.get(&m.uid).map_or(f.highest, |e| e.modseq);
            if self.take_recent {
                if m.uid >= first_recent {
                    self.recent.insert(m.uid);
                }
                m.recent = self.recent.contains(&m.uid);
            } else {
                m.recent = m.uid >= first_recent;
            }
        }
        if !self.recent.is_empty() {
            let messages = &self.messages;
            self.recent
                .retain(|&u| messages.binary_search_by_key(&u, |m| m.uid).is_ok());
        }
        self.modseq_known = if changed {
            Some(self.write_modseq(lock, &f, durable)?)
        } else {
            now
        };
        self.modseq = f;
        Ok(())
    }

    /// Write posthorn-modseq: a fresh .tmp file, fsync, rename over the
    /// old one, fsync the directory (without the fsyncs unless `durable`);
    /// only while the lock is still ours. Its mtime is later than the old
    /// file's (by a nanosecond if need be), so that no two versions share
    /// (inode, size, mtime) (`modseq_known`); returns the new file's.
    fn write_modseq(
        &self,
        lock: &DotLock,
        f: &ModseqFile,
        durable: bool,
    ) -> Result<super::FileStamp, StoreError> {
        let path = self.modseq_path();
        let tmp = format!("{}.tmp", modseq::FILE);
        fsat::unlink(&self.dir, &tmp).at(&path)?;
        let mut out = fsat::create_excl(&self.dir, &tmp, FILE_MODE).at(&path)?;
        out.write_all(&f.write()).at(&path)?;
        let mut st = nix::sys::stat::fstat(out.as_raw_fd()).at(&path)?;
        if let Ok(old) = fsat::stat(&self.dir, modseq::FILE) {
            if (st.st_mtime, st.st_mtime_nsec) <= (old.st_mtime, old.st_mtime_nsec) {
                let t = if old.st_mtime_nsec >= 999_999_999 {
                    nix::sys::time::TimeSpec::new(old.st_mtime + 1, 0)
                } else {
                    nix::sys::time::TimeSpec::new(old.st_mtime, old.st_mtime_nsec + 1)
                };
                nix::sys::stat::futimens(out.as_raw_fd(), &t, &t).at(&path)?;
                st = nix::sys::stat::fstat(out.as_raw_fd()).at(&path)?;
            }
        }
        if !lock.is_ours() {
            let _ = fsat::unlink(&self.dir, &tmp);
            return Err(StoreError::io(
                lock.path(),
                io::Error::other("the lock was taken over by another process (held too long)"),
            ));
        }
        if !durable {
            drop(out);
            fsat::rename(&self.dir, &tmp, &self.dir, modseq::FILE, Replace::Yes).at(&path)?;
            return Ok(super::file_stamp(&st));
        }
        durable::commit(
            out,
            Some(&self.dir),
            Path::new(&tmp),
            &self.dir,
            Path::new(modseq::FILE),
            Replace::Yes,
        )
        .map_err(|e| StoreError::io(&path, e.into()))?;
        Ok(super::file_stamp(&st))
    }

    /// An inotify watcher on this folder for IMAP IDLE (watcher.rs): poll
    /// its descriptor, `drain` it, then `sync`.
    pub fn watcher(&self) -> Result<crate::Watcher, StoreError> {
        crate::Watcher::new(&self.new, &self.cur, &self.display)
    }

    /// RFC 7162 HIGHESTMODSEQ as of the last sync.
    pub fn highest_modseq(&self) -> u64 {
        self.modseq.highest
    }

    /// A message's mod-sequence (RFC 7162 MODSEQ), as of the last sync.
    pub fn modseq(&self, uid: u32) -> Option<u64> {
        self.message(uid).map(|m| m.modseq)
    }

    /// The UIDs of messages whose mod-sequence is above `modseq`
    /// (RFC 7162 CHANGEDSINCE, and the flags half of QRESYNC), ascending.
    pub fn changed_since(&self, modseq: u64) -> Vec<u32> {
        self.messages
            .iter()
            .filter(|m| m.modseq > modseq)
            .map(|m| m.uid)
            .collect()
    }

    /// UIDs expunged after `modseq`, as of the last sync (RFC 7162 QRESYNC
    /// `VANISHED (EARLIER)`, 3.2.5.2). When the log does not reach back to
    /// `modseq` (a rebuilt file, or more than MAX_EXPUNGE_RANGES ranges
    /// expunged since), `exact` is false and `uids` is every UID below
    /// UIDNEXT that is not a message now: any of them may have vanished,
    /// and the server sends them all, intersected with the UIDs the client
    /// named (QRESYNC's known-UIDs, or the UID FETCH set) when it named
    /// some. That says more than was expunged, never less; Dovecot answers
    /// the same way when its log does not reach back (imap-fetch.c,
    /// get_expunges_fallback).
    pub fn expunged_since(&self, modseq: u64) -> Vanished {
        let v = self.modseq.expunged_since(modseq);
        if v.exact {
            return v;
        }
        let mut uids = Vec::new();
        let mut next = 1u32;
        for m in &self.messages {
            if m.uid > next {
                uids.push((next, m.uid - 1));
            }
            next = m.uid + 1;
        }
        if self.next_uid > next {
            uids.push((next, self.next_uid - 1));
        }
        Vanished { uids, exact: false }
    }

    /// The UIDs that are \Recent for this session, ascending.
    pub fn recent(&self) -> Vec<u32> {
        self.messages
            .iter()
            .filter(|m| m.recent)
            .map(|m| m.uid)
            .collect()
    }
}
