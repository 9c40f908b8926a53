//! One open folder: its messages with UIDs, flags and keywords, kept in
//! step with the directory and the dovecot-uidlist by `sync`.
//!
//! Owns the sync (lock the uidlist, read it, list new/ then cur/, give new
//! files UIDs in Dovecot's order, move new/ to cur/ when open for writing,
//! write the list back durably, unlock), reading a message (finding a file
//! renamed by another session by its base name), flag and keyword changes
//! (file renames; new keyword letters in dovecot-keywords), expunge,
//! append and copy, and what changed since the last sync for IMAP's
//! untagged responses; each sync also brings posthorn-modseq in line
//! (mod-sequences for new messages and changed flags, expunges logged,
//! \Recent taken: RFC 7162, RFC 3501 2.3.2). Does not own the file formats
//! (uidlist.rs, keywords.rs, filename.rs, modseq.rs) or the folder list
//! (store.rs).
//!
//! Standards: RFC 3501 2.3.1.1 (UIDs strictly ascending, never reused;
//! UIDVALIDITY changes when they are reassigned), 2.3.2 (flags and
//! keywords), 6.4.3 (EXPUNGE); the Maildir specification (tmp/ -> new/ or
//! cur/ by rename, `:2,` info); Dovecot's maildir storage
//! (maildir-uidlist.c, maildir-sync.c, maildir-save.c, maildir-copy.c).
//!
//! Durability: the uidlist is written to `dovecot-uidlist.tmp`, fsync'ed,
//! renamed over the list, and the folder directory fsync'ed (Dovecot
//! fdatasyncs and renames). Moves to cur/ and expunges fsync cur/ and new/;
//! a flag change (a rename within cur/) fsyncs neither cur/ nor
//! posthorn-modseq: a crash can lose it (the message then shows its old
//! flags again, with a new mod-sequence), and mod-sequences keep growing
//! across it (folder/imap.rs: the boot id).
//! A process killed at any point leaves a lock that goes stale (dotlock.rs)
//! and at most a .tmp file that is never read. Appended messages are
//! fsync'ed before they are renamed into cur/. posthorn-modseq is written
//! the same way (posthorn-modseq.tmp, fsync, rename, fsync the directory)
//! after the uidlist, under the same lock; a crash between the two leaves
//! it behind, and the next sync gives what it lacks new mod-sequences.
//!
//! Change detection: a folder opened for IMAP SELECT is tracked by the
//! process's inotify instance (tracker.rs) from before its first listing;
//! a sync that finds only its own renames since the last listing, and the
//! uidlist it last read or wrote, lists nothing. Otherwise (no inotify)
//! the directories' mtimes tell, with the settle rule (`is_settled`).
//!
//! Concurrency: everything that gives UIDs or renames or removes files
//! holds the folder's `dovecot-uidlist.lock`, as Dovecot does, so posthorn
//! and Dovecot sessions in any number of processes agree; local delivery
//! only adds files to new/ and needs no lock. A sync that finds files of the
//! list missing lists the directories again before it calls them expunged
//! (readdir may miss a file being renamed at that moment).
//!
//! Security: every file is reached through the folder's descriptors
//! without following links (fsat.rs); message files are opened only if
//! they are regular files.
//!
//! Diagnostics: a corrupt uidlist is a warning naming the file, after which
//! the list is rebuilt (new UIDVALIDITY unless this folder object still
//! knows the old UIDs); a duplicate file is a warning and is given a new
//! name, as Dovecot does.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::durable::{self, Replace};
use common::privilege;
use common::warning;
use rustc_hash::FxHashMap;

use crate::dotlock::DotLock;
use crate::error::{At, StoreError};
use crate::filename::{self, Flags, KeywordSet, VsizeCounter};
use crate::fsat::{self, Kind};
use crate::keywords::{self, Keywords};
use crate::modseq::ModseqFile;
use crate::names;
use crate::quota;
use crate::store::{Access, Options, Store, FILE_MODE};
use crate::tracker::{self, Tracker};
use crate::uidlist::{self, Record, UidList};
use crate::uidvalidity;
use crate::CrlfToLf;

mod imap;

const UIDLIST: &str = "dovecot-uidlist";
const UIDLIST_TMP: &str = "dovecot-uidlist.tmp";
const KEYWORDS: &str = "dovecot-keywords";
/// A directory changed this recently is listed again even if its mtime is
/// the one seen (Dovecot's MAILDIR_SYNC_SECS): changes within one clock
/// tick share an mtime.
const SYNC_SECS: i64 = 1;
/// The same on a file system with sub-second timestamps (any of the three
/// has a non-zero nanosecond part), in nanoseconds (`sync_nanos`).
fn sync_nanos() -> i128 {
    // The kernel stamps a change with its coarse clock, at most one tick
    // of it behind the true time (CLOCK_REALTIME_COARSE's resolution: 4 ms
    // at HZ=250), so a change made after a listing began gets a timestamp
    // later than that time less a tick: one found older than that by two
    // ticks and a millisecond was the last. 100 ms where the resolution
    // cannot be read.
    static NANOS: std::sync::OnceLock<i128> = std::sync::OnceLock::new();
    *NANOS.get_or_init(|| {
        match nix::time::clock_getres(nix::time::ClockId::CLOCK_REALTIME_COARSE) {
            Ok(r) => {
                let res = i128::from(r.tv_sec()) * 1_000_000_000 + i128::from(r.tv_nsec());
                (2 * res + 1_000_000).clamp(1_000_000, 100_000_000)
            }
            Err(_) => 100_000_000,
        }
    })
}

/// A message of a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub uid: u32,
    /// The base name (without `:2,...`): stays the same across flag
    /// changes and moves to cur/.
    pub base: String,
    /// The file's current name, in cur/ or (`in_new`) new/.
    pub file: String,
    pub in_new: bool,
    pub flags: Flags,
    /// Keyword letters; `Folder::keyword_names` gives the names.
    pub keywords: KeywordSet,
    /// Bytes on disk (`,S=`, else the file's size).
    pub size: u64,
    /// Bytes with CRLF line ends, when known (`,W=` or the uidlist's W
    /// field, or counted by `Folder::vsize`).
    pub vsize: Option<u64>,
    /// The uidlist's extension fields for this message (P, O, G, W, ...).
    pub ext: Vec<(u8, String)>,
    /// Its mod-sequence (RFC 7162 MODSEQ): when its flags last changed or
    /// it arrived, from posthorn-modseq.
    pub modseq: u64,
    /// RFC 3501 \Recent for this session (the rule: `Store::select`).
    pub recent: bool,
}

impl Message {
    /// An extension field of the uidlist record (`b'P'`: POP3 UIDL of a
    /// migrated mailbox, `b'O'`: POP3 order).
    pub fn ext(&self, key: u8) -> Option<&str> {
        self.ext
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What changed since the previous sync (or, the first time, what there is:
/// everything is new).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The UIDs were given anew (a rebuilt list): a client must forget
    /// everything it knew (RFC 3501 2.3.1.1). `expunged` then holds every
    /// old UID and `new` every current one.
    pub uid_validity_changed: bool,
    /// UIDs that appeared, ascending.
    pub new: Vec<u32>,
    /// UIDs that are gone, ascending.
    pub expunged: Vec<u32>,
    /// UIDs whose flags or keywords changed, ascending.
    pub flags: Vec<u32>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        !self.uid_validity_changed
            && self.new.is_empty()
            && self.expunged.is_empty()
            && self.flags.is_empty()
    }

    /// Add `other` (what happened after `self`) to what is still to be
    /// reported.
    fn merge(&mut self, other: Changes) {
        let mine_new: HashSet<u32> = self.new.iter().copied().collect();
        if other.uid_validity_changed {
            // All the client knew is gone: what `self` had reported as gone,
            // and what `other` calls gone that was not new in `self`.
            let mut gone = std::mem::take(&mut self.expunged);
            gone.extend(other.expunged.iter().filter(|u| !mine_new.contains(u)));
            gone.sort_unstable();
            gone.dedup();
            *self = Changes {
                uid_validity_changed: true,
                new: other.new,
                expunged: gone,
                flags: Vec::new(),
            };
            return;
        }
        let gone_now: HashSet<u32> = other.expunged.iter().copied().collect();
        // Gone again before it was reported as new: never mentioned.
        if !self.uid_validity_changed {
            self.expunged
                .extend(other.expunged.iter().filter(|u| !mine_new.contains(u)));
        }
        self.new.extend(other.new);
        self.new.retain(|u| !gone_now.contains(u));
        self.flags.extend(other.flags);
        let now_new: HashSet<u32> = self.new.iter().copied().collect();
        self.flags
            .retain(|u| !gone_now.contains(u) && !now_new.contains(u));
        for v in [&mut self.new, &mut self.expunged, &mut self.flags] {
            v.sort_unstable();
            v.dedup();
        }
    }
}

/// One message of `Folder::append_many` (IMAP MULTIAPPEND).
pub struct AppendMessage<'a> {
    /// The message, CRLF or LF line ends.
    pub message: &'a mut dyn Read,
    pub flags: Flags,
    /// Keyword names (new ones get a letter of their own).
    pub keywords: Vec<String>,
    /// INTERNALDATE (the file's mtime); None: now.
    pub internal_date: Option<SystemTime>,
}

/// A flag change for `Folder::set_flags_many`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagUpdate {
    pub uid: u32,
    pub flags: Flags,
    /// Keyword names (new ones get a letter of their own).
    pub keywords: Vec<String>,
}

/// Identity and times of what a sync looked at, to skip the next one when
/// nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    new: (i64, i64),
    cur: (i64, i64),
    list: Option<FileStamp>,
}

/// What tells one version of a file written by rename from another:
/// (dev, inode, size, mtime seconds, mtime nanoseconds).
pub(crate) type FileStamp = (u64, u64, i64, i64, i64);

pub(crate) fn file_stamp(st: &nix::sys::stat::FileStat) -> FileStamp {
    (
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime,
        st.st_mtime_nsec,
    )
}

/// One folder, open.
#[derive(Debug)]
pub struct Folder {
    name: String,
    access: Access,
    options: Options,
    root: Arc<File>,
    root_display: PathBuf,
    dir: Arc<File>,
    display: PathBuf,
    cur: File,
    new: File,
    tmp: File,
    uid_validity: u32,
    next_uid: u32,
    guid: Option<[u8; 16]>,
    header_ext: Vec<(u8, String)>,
    /// Ascending by UID.
    messages: Vec<Message>,
    keywords: Option<Keywords>,
    /// Changes found by syncs inside other operations, for the next `sync`.
    pending: Changes,
    /// Virtual sizes counted since the list was last written.
    ext_dirty: bool,
    stamp: Option<Stamp>,
    /// `stamp`'s times were more than a clock tick older than the start of
    /// the sync that took it: a later change cannot share them.
    settled: bool,
    /// The uidlist (dev, inode, size, mtime) whose records are exactly
    /// `messages` (read or written by the last sync): a sync that finds it
    /// so does not read it again. Every writer renames a new file into
    /// place with a later mtime than the old one's (`write_list`,
    /// Dovecot's uidlist code), so a rewritten list never matches.
    list_known: Option<FileStamp>,
    /// posthorn-modseq as of the last sync.
    modseq: ModseqFile,
    /// The posthorn-modseq (dev, inode, size, mtime) `modseq` was read
    /// from or written as; the same rule as `list_known` (`write_modseq`).
    modseq_known: Option<FileStamp>,
    /// Take \Recent (IMAP SELECT: `Store::select`).
    pub(crate) take_recent: bool,
    /// The UIDs this session took \Recent for.
    recent: HashSet<u32>,
    /// Let go of (`release`): `messages` is empty, this is what the last
    /// sync knew of them, for the next sync to tell the changes from.
    released: Option<Released>,
    /// Track changes to new/ and cur/ (`tracker`): an IMAP SELECT.
    pub(crate) track: bool,
    /// Whether new/ and cur/ changed since the last listing other than by
    /// this folder's own renames (tracker.rs); made at the first sync of
    /// a `track`ing folder, None where inotify cannot be had (then the
    /// directories' mtimes tell, with the settle rule).
    tracker: Option<Tracker>,
    /// Syncs that listed new/ and cur/ (`listings`).
    listings: u64,
}

/// What a released folder keeps of each message, a column each (17 bytes
/// a message, where a `Slim` would take 24 with its padding).
#[derive(Debug, Default)]
struct Released {
    uids: Vec<u32>,
    modseqs: Vec<u64>,
    keywords: Vec<KeywordSet>,
    flags: Vec<Flags>,
}

impl Released {
    fn of(messages: &[Message]) -> Released {
        Released {
            uids: messages.iter().map(|m| m.uid).collect(),
            modseqs: messages.iter().map(|m| m.modseq).collect(),
            keywords: messages.iter().map(|m| m.keywords).collect(),
            flags: messages.iter().map(|m| m.flags).collect(),
        }
    }

    fn slim(&self) -> Vec<Slim> {
        (0..self.uids.len())
            .map(|i| Slim {
                modseq: self.modseqs[i],
                uid: self.uids[i],
                keywords: self.keywords[i],
                flags: self.flags[i],
            })
            .collect()
    }
}

/// A uidlist record as a sync reads it: UID, base name, extension fields.
type RecordRef<'a> = (u32, &'a str, &'a [(u8, String)]);

/// What a sync needs to know of a message it saw before to tell what
/// changed: a few bytes, where a `Message` holds its file names.
#[derive(Debug, Clone, Copy)]
struct Slim {
    modseq: u64,
    uid: u32,
    keywords: KeywordSet,
    flags: Flags,
}

impl Slim {
    fn of(m: &Message) -> Slim {
        Slim {
            modseq: m.modseq,
            uid: m.uid,
            keywords: m.keywords,
            flags: m.flags,
        }
    }
}

/// Files in tmp/ older than this are left-overs of deliveries that never
/// finished (a crash between writing and renaming): Dovecot's
/// MAILDIR_TMP_DELETE_SECS.
const TMP_DELETE_SECS: i64 = 36 * 3600;

/// Remove tmp/'s left-overs (Dovecot does this when it opens a folder for
/// writing): regular files not written to for TMP_DELETE_SECS.
/// A failure is logged, never fatal: the folder works without it.
fn clean_tmp(tmp: &File, display: &Path) {
    let Ok(entries) = fsat::list(tmp) else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for e in entries.iter().filter(|e| e.kind == fsat::Kind::File) {
        let Ok(st) = fsat::stat(tmp, &e.name) else {
            continue;
        };
        if st.st_mtime < now - TMP_DELETE_SECS {
            match fsat::unlink(tmp, &e.name) {
                Ok(_) => common::warning!(
                    "{}: removed {} left in tmp/ by an unfinished delivery",
                    display.display(),
                    e.name
                ),
                Err(err) => common::warning!("{}/tmp/{}: {err}", display.display(), e.name),
            }
        }
    }
}

fn open_sub(dir: &File, display: &Path, name: &str) -> Result<File, StoreError> {
    fsat::open_dir(dir, name).at(&display.join(name))
}

impl Folder {
    /// Open a folder (not yet synced: `Store::folder` syncs).
    pub(crate) fn open(store: &Store, name: &str, access: Access) -> Result<Folder, StoreError> {
        let root = store.root_dir().clone();
        let root_display = store.root().to_path_buf();
        let (dir, display) = match names::disk_name(name) {
            None => (root.clone(), root_display.clone()),
            Some(d) => {
                let display = root_display.join(&d);
                let dir = match privilege::walk_dirs(&root, Path::new(&d), None) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(StoreError::NoSuchFolder(name.to_string()))
                    }
                    Err(e) => return Err(StoreError::io(&display, e)),
                };
                (Arc::new(dir), display)
            }
        };
        let cur = open_sub(&dir, &display, "cur")?;
        let new = open_sub(&dir, &display, "new")?;
        let tmp = open_sub(&dir, &display, "tmp")?;
        if access == Access::ReadWrite {
            clean_tmp(&tmp, &display);
        }
        Ok(Folder {
            name: name.to_string(),
            access,
            options: *store.options(),
            root,
            root_display,
            dir,
            display,
            cur,
            new,
            tmp,
            uid_validity: 0,
            next_uid: 1,
            guid: None,
            header_ext: Vec::new(),
            messages: Vec::new(),
            keywords: None,
            pending: Changes::default(),
            ext_dirty: false,
            stamp: None,
            settled: false,
            list_known: None,
            modseq: ModseqFile::default(),
            modseq_known: None,
            take_recent: false,
            recent: HashSet::new(),
            released: None,
            track: false,
            tracker: None,
            listings: 0,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn access(&self) -> Access {
        self.access
    }

    /// The folder directory's path.
    pub fn path(&self) -> &Path {
        &self.display
    }

    pub fn uid_validity(&self) -> u32 {
        self.uid_validity
    }

    /// The UID the next new message will get (RFC 3501 UIDNEXT).
    pub fn uid_next(&self) -> u32 {
        self.next_uid
    }

    /// The mailbox GUID of the uidlist header, as 32 hex digits.
    pub fn guid(&self) -> Option<String> {
        self.guid
            .map(|g| g.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The messages, ascending by UID, as of the last sync.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The message with this UID.
    pub fn message(&self, uid: u32) -> Option<&Message> {
        self.index_of(uid).map(|i| &self.messages[i])
    }

    fn index_of(&self, uid: u32) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    fn uidlist_path(&self) -> PathBuf {
        self.display.join(UIDLIST)
    }

    fn lock(&self) -> Result<DotLock, StoreError> {
        DotLock::acquire(&self.dir, UIDLIST, &self.uidlist_path(), self.options.lock)
    }

    fn writable(&self) -> Result<(), StoreError> {
        match self.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(StoreError::ReadOnly(self.name.clone())),
        }
    }

    /// Let go of the message list until the next `sync` (an IMAP session
    /// that has been quiet for a while: imapd_hibernate_timeout): only the
    /// UIDs, flags and mod-sequences are kept, for that sync to tell what
    /// changed. Until then `messages` is empty.
    pub fn release(&mut self) {
        if self.released.is_some() {
            return;
        }
        self.released = Some(Released::of(&self.messages));
        self.messages = Vec::new();
        self.tracker = None;
        self.keywords = None;
        self.stamp = None;
        self.list_known = None;
        self.modseq_known = None;
        self.modseq = ModseqFile {
            uid_validity: self.modseq.uid_validity,
            highest: self.modseq.highest,
            ..ModseqFile::default()
        };
    }

    /// Is this still the folder `name` names in `store`: not deleted,
    /// renamed or made anew since it was opened?
    pub(crate) fn is_current(&self, store: &Store) -> Result<bool, StoreError> {
        let now = match names::disk_name(&self.name) {
            None => nix::sys::stat::fstat(store.root_dir().as_raw_fd()).at(store.root())?,
            Some(d) => match privilege::walk_dirs(store.root_dir(), Path::new(&d), None) {
                Ok(f) => nix::sys::stat::fstat(f.as_raw_fd()).at(&self.display)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(StoreError::io(&self.display, e)),
            },
        };
        let mine = nix::sys::stat::fstat(self.dir.as_raw_fd()).at(&self.display)?;
        Ok((now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino))
    }

    /// Selected again (`Store::select_again`): as a fresh `Store::select`,
    /// the session's \Recent are taken anew (its old ones are gone with
    /// the old selection), and the folder is brought up to date; a full
    /// listing only when it changed or when there is \Recent to take.
    pub(crate) fn reselect(&mut self) -> Result<(), StoreError> {
        self.recent.clear();
        self.take_recent = true;
        for m in &mut self.messages {
            m.recent = false;
        }
        let now = match fsat::stat(&self.dir, crate::modseq::FILE) {
            Ok(st) => Some(file_stamp(&st)),
            Err(_) => None,
        };
        if now.is_none() || now != self.modseq_known || self.modseq.first_recent < self.next_uid {
            self.stamp = None;
        }
        // What changed meanwhile is in the SELECT's answer, not reported.
        self.sync()?;
        Ok(())
    }

    /// How many syncs listed the directories since the folder was opened
    /// (the rest found nothing new; diagnostics and tests).
    pub fn listings(&self) -> u64 {
        self.listings
    }

    /// `release`d and not synced since.
    pub fn is_released(&self) -> bool {
        self.released.is_some()
    }

    /// Bring the folder up to date with the disk; what changed since the
    /// last call.
    pub fn sync(&mut self) -> Result<Changes, StoreError> {
        // (A released folder has no stamp: never unchanged.)
        if !self.unchanged()? {
            let lock = self.lock()?;
            let c = self.sync_locked(&lock)?;
            self.pending.merge(c);
        }
        Ok(std::mem::take(&mut self.pending))
    }

    fn stamp(&self) -> Result<Stamp, StoreError> {
        let t = |f: &File, p: &Path| -> Result<(i64, i64), StoreError> {
            let st = nix::sys::stat::fstat(f.as_raw_fd()).at(p)?;
            Ok((st.st_mtime, st.st_mtime_nsec))
        };
        let list = match fsat::stat(&self.dir, UIDLIST) {
            Ok(st) => Some(file_stamp(&st)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io(self.uidlist_path(), e)),
        };
        Ok(Stamp {
            new: t(&self.new, &self.display.join("new"))?,
            cur: t(&self.cur, &self.display.join("cur"))?,
            list,
        })
    }

    /// Nothing to do: the directories and the list are as the last sync
    /// saw them, and that sync began more than a clock tick after their
    /// last change (`settled`), so a change since would show as a new
    /// timestamp.
    /// With a tracker: only this folder's own renames since the listing,
    /// and the list is the one it last read or wrote.
    fn unchanged(&self) -> Result<bool, StoreError> {
        let Some(old) = self.stamp else {
            return Ok(false);
        };
        if self.ext_dirty {
            return Ok(false);
        }
        if let Some(t) = &self.tracker {
            return Ok(t.clean() && self.list_is_known()?);
        }
        if !self.settled {
            return Ok(false);
        }
        Ok(self.stamp()? == old)
    }

    /// The uidlist is the one this folder last read or wrote (`list_known`).
    fn list_is_known(&self) -> Result<bool, StoreError> {
        match fsat::stat(&self.dir, UIDLIST) {
            Ok(st) => Ok(self.list_known == Some(file_stamp(&st))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(self.uidlist_path(), e)),
        }
    }

    /// The time now, in nanoseconds since the epoch.
    fn now_nanos() -> i128 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128)
    }

    /// Were the stamp's times all older than `began` (when the listing
    /// that saw them began) by more than a clock tick?
    fn is_settled(s: &Stamp, began: i128) -> bool {
        let times = [Some(s.new), Some(s.cur), s.list.map(|l| (l.3, l.4))];
        let fine = times.iter().flatten().any(|&(_, ns)| ns != 0);
        times.iter().flatten().all(|&(sec, ns)| {
            if fine {
                i128::from(sec) * 1_000_000_000 + i128::from(ns) < began - sync_nanos()
            } else {
                sec < (began / 1_000_000_000) as i64 - SYNC_SECS
            }
        })
    }

    /// Read the list: None when there is none (or it was corrupt, logged
    /// and removed).
    fn read_list(&self) -> Result<Option<UidList>, StoreError> {
        let path = self.uidlist_path();
        match fsat::read_bounded(&self.dir, UIDLIST, uidlist::MAX_FILE) {
            Ok(Some(data)) => match UidList::parse(&data) {
                Ok(l) => Ok(Some(l)),
                Err(e) => {
                    warning!(
                        "{}: {}; rebuilding it",
                        path.display(),
                        StoreError::corrupt(&path, e)
                    );
                    fsat::unlink(&self.dir, UIDLIST).at(&path)?;
                    Ok(None)
                }
            },
            Ok(None) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                warning!("{}: {e}; rebuilding it", path.display());
                fsat::unlink(&self.dir, UIDLIST).at(&path)?;
                Ok(None)
            }
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// List new/ then cur/: base name -> (file name, in new/). A file moved
    /// from new/ to cur/ during the listing is found in cur/.
    fn scan(&self) -> Result<FxHashMap<String, (String, bool)>, StoreError> {
        let mut found: FxHashMap<String, (String, bool)> =
            FxHashMap::with_capacity_and_hasher(self.messages.len() + 16, Default::default());
        let mut dups: Vec<(String, String)> = Vec::new();
        for (dir, in_new, sub) in [(&self.new, true, "new"), (&self.cur, false, "cur")] {
            for e in fsat::list(dir).at(&self.display.join(sub))? {
                if e.kind != Kind::File || !filename::is_valid(&e.name) {
                    continue;
                }
                let base = filename::base(&e.name).to_string();
                match found.get_mut(&base) {
                    None => {
                        found.insert(base, (e.name, in_new));
                    }
                    Some(old) if old.1 && !in_new => *old = (e.name, false),
                    Some(old) => {
                        if old.0 != e.name {
                            dups.push((old.0.clone(), e.name));
                        }
                    }
                }
            }
        }
        if self.access == Access::ReadWrite {
            for (kept, dup) in dups {
                self.fix_duplicate(&kept, &dup, &mut found)?;
            }
        }
        Ok(found)
    }

    /// Two files in cur/ with one base: if they are two files (not links of
    /// one), the second gets a new base in new/ (Dovecot's
    /// maildir_fix_duplicate).
    fn fix_duplicate(
        &self,
        kept: &str,
        dup: &str,
        found: &mut FxHashMap<String, (String, bool)>,
    ) -> Result<(), StoreError> {
        let (Ok(a), Ok(b)) = (fsat::stat(&self.cur, kept), fsat::stat(&self.cur, dup)) else {
            // One of them is gone (renamed meanwhile): no duplicate.
            return Ok(());
        };
        if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
            return Ok(());
        }
        let mut name = filename::unique_base();
        for key in [b'S', b'W'] {
            if let Some(n) = filename::size_field(dup, key) {
                name.push_str(&format!(",{}={n}", key as char));
            }
        }
        match fsat::rename(&self.cur, dup, &self.new, &name, Replace::No) {
            Ok(()) => {
                warning!(
                    "{}: fixed a duplicate: cur/{dup} -> new/{name}",
                    self.display.display()
                );
                found.insert(name.clone(), (name, true));
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(self.display.join("cur").join(dup), e)),
        }
    }

    /// The sync proper, with the uidlist lock held.
    fn sync_locked(&mut self, lock: &DotLock) -> Result<Changes, StoreError> {
        // Tracked from before the listing: what happens from here on is
        // either in it or marks the tracker.
        if self.track && self.tracker.is_none() {
            self.tracker = Tracker::new(&self.new, &self.cur).ok();
        }
        if let Some(t) = &self.tracker {
            t.reset();
        }
        self.listings += 1;
        // Before the stat: a change after it is stamped no earlier than a
        // clock tick before this.
        let began = Self::now_nanos();
        let stamp = self.stamp()?;
        // What the last sync saw, to tell the changes from.
        let mut before: Vec<Slim> = match &self.released {
            Some(r) => r.slim(),
            None => self.messages.iter().map(Slim::of).collect(),
        };
        // The list this folder last read or wrote, untouched since (under
        // the lock, as every writer holds it): its records are `messages`.
        let cached = self.list_known.is_some() && stamp.list == self.list_known;
        self.list_known = None;
        let list = if cached {
            Some(UidList {
                version: 3,
                uid_validity: self.uid_validity,
                next_uid: self.next_uid,
                guid: self.guid,
                header_ext: std::mem::take(&mut self.header_ext),
                records: Vec::new(),
            })
        } else {
            self.read_list()?
        };
        let had_list = list.is_some();
        let mut rewrite = false;
        let mut changes = Changes::default();
        let known = self.uid_validity != 0;
        let mut list = match list {
            Some(l) => {
                if l.version != 3 || l.guid.is_none() {
                    rewrite = true;
                }
                l
            }
            None if known => {
                // The list vanished (or was corrupt) under an open folder:
                // rebuilt from what this folder knows, with its UIDs, as
                // Dovecot rebuilds it from its index.
                rewrite = true;
                UidList {
                    version: 3,
                    uid_validity: self.uid_validity,
                    next_uid: self.next_uid,
                    guid: self.guid,
                    header_ext: self.header_ext.clone(),
                    records: self
                        .messages
                        .iter()
                        .map(|m| Record {
                            uid: m.uid,
                            ext: m.ext.clone(),
                            base: m.base.clone(),
                        })
                        .collect(),
                }
            }
            None => {
                rewrite = true;
                let v = uidvalidity::next(&self.root, &self.root_display)?;
                UidList::new(v, random_guid())
            }
        };
        if known && list.uid_validity != self.uid_validity {
            warning!(
                "{}: UIDVALIDITY changed from {} to {}",
                self.uidlist_path().display(),
                self.uid_validity,
                list.uid_validity
            );
            changes.uid_validity_changed = true;
            before.iter().for_each(|m| changes.expunged.push(m.uid));
            before.clear();
            self.messages.clear();
        }
        if list.next_uid < self.next_uid && !changes.uid_validity_changed && known {
            // UIDNEXT never goes down.
            list.next_uid = self.next_uid;
            rewrite = true;
        }

        // The records: the list's, or (cached) this folder's messages.
        let records: Vec<RecordRef<'_>> = if cached {
            self.messages
                .iter()
                .map(|m| (m.uid, m.base.as_str(), m.ext.as_slice()))
                .collect()
        } else {
            list.records
                .iter()
                .map(|r| (r.uid, r.base.as_str(), r.ext.as_slice()))
                .collect()
        };
        let mut found = self.scan()?;
        if records.iter().any(|r| !found.contains_key(r.1)) {
            // Missing files: list again before calling them expunged
            // (readdir can miss a file renamed while it runs).
            for (k, v) in self.scan()? {
                found.entry(k).or_insert(v);
            }
        }

        // Records whose files exist keep their UIDs; the rest are gone.
        // self.messages and `messages` are ascending by UID: looked up by
        // binary search (these maps were a good part of a sync's time).
        let old = &self.messages;
        let find = |v: &[Message], uid: u32| v.binary_search_by_key(&uid, |m| m.uid).ok();
        let mut messages = Vec::with_capacity(found.len());
        for &(uid, base, ext) in &records {
            let Some((file, in_new)) = found.remove(base) else {
                rewrite = true;
                continue;
            };
            let prev = find(old, uid).map(|i| &old[i]).filter(|m| m.base == base);
            messages.push(self.message_from(uid, base.to_string(), file, in_new, ext, prev)?);
        }
        drop(records);
        // New files: UIDs in Dovecot's order of names.
        let mut fresh: Vec<(String, (String, bool))> = found.into_iter().collect();
        fresh.sort_by(|a, b| filename::sort_cmp(&a.0, &b.0));
        for (base, (file, in_new)) in fresh {
            if list.next_uid == u32::MAX {
                return Err(StoreError::UidsExhausted {
                    path: self.uidlist_path(),
                });
            }
            let uid = list.next_uid;
            list.next_uid += 1;
            rewrite = true;
            messages.push(self.message_from(uid, base, file, in_new, &[], None)?);
        }

        if self.access == Access::ReadWrite {
            self.move_new_to_cur(&mut messages)?;
        }
        // Virtual sizes counted by `vsize` go into the list (W), unless the
        // name has them.
        // (Only counted ones need it: ext_dirty says there are some.)
        for m in messages.iter_mut().filter(|_| self.ext_dirty) {
            if let Some(v) = m.vsize {
                if filename::size_field(&m.base, b'W').is_none() && m.ext(b'W').is_none() {
                    m.ext.push((b'W', v.to_string()));
                    rewrite = true;
                }
            }
        }
        if self.ext_dirty {
            rewrite = true;
        }

        let find_before = |v: &[Slim], uid: u32| v.binary_search_by_key(&uid, |m| m.uid).ok();
        if !changes.uid_validity_changed {
            for m in &before {
                match find(&messages, m.uid).map(|i| &messages[i]) {
                    None => changes.expunged.push(m.uid),
                    Some(n) if (n.flags, n.keywords) != (m.flags, m.keywords) => {
                        changes.flags.push(m.uid)
                    }
                    Some(_) => {}
                }
            }
        }
        changes.new = messages
            .iter()
            .map(|m| m.uid)
            .filter(|&u| changes.uid_validity_changed || find_before(&before, u).is_none())
            .collect();

        self.uid_validity = list.uid_validity;
        self.next_uid = list.next_uid;
        self.guid = Some(list.guid.unwrap_or_else(random_guid));
        self.header_ext = list.header_ext;
        self.messages = messages;
        self.keywords = None;
        if rewrite {
            self.list_known = Some(self.write_list(lock)?);
        } else {
            self.list_known = stamp.list;
        }
        if changes.uid_validity_changed {
            self.recent.clear();
        }
        self.reconcile_modseq(lock, had_list)?;
        if !changes.uid_validity_changed {
            // A new mod-sequence with the flags as they were (changed and
            // changed back, or a rebuilt posthorn-modseq): CONDSTORE clients
            // are told too (RFC 7162 3.2).
            for m in &self.messages {
                if find_before(&before, m.uid)
                    .map(|i| before[i].modseq)
                    .is_some_and(|o| o != 0 && o != m.modseq)
                {
                    changes.flags.push(m.uid);
                }
            }
            changes.flags.sort_unstable();
            changes.flags.dedup();
        }
        self.ext_dirty = false;
        self.stamp = Some(stamp);
        self.settled = Self::is_settled(&stamp, began);
        self.released = None;
        Ok(changes)
    }

    /// `sync_locked` when the only changes since the last one are this
    /// folder's own flag changes, already in `messages`: posthorn-modseq
    /// brought in line (new mod-sequences for them), and any other
    /// message whose mod-sequence it changed reported.
    fn sync_own(&mut self, lock: &DotLock) -> Result<Changes, StoreError> {
        let before: Vec<u64> = self.messages.iter().map(|m| m.modseq).collect();
        self.reconcile_modseq(lock, true)?;
        let mut changes = Changes::default();
        for (m, &old) in self.messages.iter().zip(&before) {
            if old != 0 && old != m.modseq {
                changes.flags.push(m.uid);
            }
        }
        Ok(changes)
    }

    fn message_from(
        &self,
        uid: u32,
        base: String,
        file: String,
        in_new: bool,
        ext: &[(u8, String)],
        prev: Option<&Message>,
    ) -> Result<Message, StoreError> {
        let (flags, keywords) = if in_new {
            (Flags::empty(), KeywordSet::default())
        } else {
            filename::flags(&file)
        };
        let ext_w = || {
            ext.iter()
                .find(|(k, _)| *k == b'W')
                .and_then(|(_, v)| v.parse().ok())
        };
        // The same file as the last sync saw (the usual case): its sizes
        // need not be worked out again (its flags may: `open_message`
        // follows a rename without reading them).
        let (size, vsize) = match prev.filter(|p| p.file == file && p.in_new == in_new) {
            Some(p) => (p.size, p.vsize.or_else(ext_w)),
            None => {
                let size = match (filename::size_field(&base, b'S'), prev) {
                    (Some(s), _) => s,
                    (None, Some(p)) => p.size,
                    (None, None) => {
                        let dir = if in_new { &self.new } else { &self.cur };
                        match fsat::stat(dir, &file) {
                            Ok(st) => st.st_size as u64,
                            Err(_) => 0,
                        }
                    }
                };
                let vsize = filename::size_field(&base, b'W')
                    .or_else(ext_w)
                    .or(prev.and_then(|p| p.vsize));
                (size, vsize)
            }
        };
        Ok(Message {
            uid,
            base,
            file,
            in_new,
            flags,
            keywords,
            size,
            vsize,
            ext: ext.to_vec(),
            modseq: 0,
            recent: false,
        })
    }

    /// Rename new/X to cur/X:2, (Dovecot does this when a folder is opened
    /// for writing).
    fn move_new_to_cur(&self, messages: &mut [Message]) -> Result<(), StoreError> {
        let mut moved = false;
        for m in messages.iter_mut().filter(|m| m.in_new) {
            let target = if m.file.contains(':') {
                m.file.clone()
            } else {
                format!("{}:2,", m.file)
            };
            let moving = || fsat::rename(&self.new, &m.file, &self.cur, &target, Replace::No);
            match tracker::renamed(
                self.tracker.as_ref(),
                tracker::Sub::New,
                &m.file,
                &target,
                moving,
            ) {
                Ok(()) => {
                    moved = true;
                    m.file = target;
                    m.in_new = false;
                }
                // Moved by someone else: found by its base when opened.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    m.in_new = false;
                }
                // Out of space, a name taken: left in new/.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(
                            libc::EEXIST | libc::ENOSPC | libc::EDQUOT | libc::EACCES | libc::EPERM
                        )
                    ) => {}
                Err(e) => return Err(StoreError::io(self.display.join("new").join(&m.file), e)),
            }
        }
        if moved {
            privilege::sync_dir(&self.cur).at(&self.display.join("cur"))?;
            privilege::sync_dir(&self.new).at(&self.display.join("new"))?;
        }
        Ok(())
    }

    /// Write the list from this folder's state: `dovecot-uidlist.tmp`,
    /// fsync, a later mtime than the old list's, rename over it, fsync the
    /// directory.
    /// Returns the new list's (dev, inode, size, mtime) (`list_known`).
    fn write_list(&mut self, lock: &DotLock) -> Result<FileStamp, StoreError> {
        let path = self.uidlist_path();
        let list = UidList {
            version: 3,
            uid_validity: self.uid_validity,
            next_uid: self.next_uid,
            guid: self.guid,
            header_ext: self.header_ext.clone(),
            records: self
                .messages
                .iter()
                .map(|m| Record {
                    uid: m.uid,
                    ext: m.ext.clone(),
                    base: m.base.clone(),
                })
                .collect(),
        };
        let data = list.write(random_guid());
        fsat::unlink(&self.dir, UIDLIST_TMP).at(&path)?;
        let mut f = fsat::create_excl(&self.dir, UIDLIST_TMP, FILE_MODE).at(&path)?;
        f.write_all(&data).at(&path)?;
        // Readers that compare mtimes must see a change (Dovecot: "mtime
        // must be larger than the old one's").
        if let Ok(old) = fsat::stat(&self.dir, UIDLIST) {
            let st = nix::sys::stat::fstat(f.as_raw_fd()).at(&path)?;
            if (st.st_mtime, st.st_mtime_nsec) <= (old.st_mtime, old.st_mtime_nsec) {
                let t = nix::sys::time::TimeSpec::new(old.st_mtime + 1, 0);
                nix::sys::stat::futimens(f.as_raw_fd(), &t, &t).at(&path)?;
            }
        }
        if !lock.is_ours() {
            let _ = fsat::unlink(&self.dir, UIDLIST_TMP);
            return Err(StoreError::io(
                lock.path(),
                io::Error::other("the lock was taken over by another process (held too long)"),
            ));
        }
        // A rename keeps all of these.
        let st = nix::sys::stat::fstat(f.as_raw_fd()).at(&path)?;
        durable::commit(
            f,
            Some(&self.dir),
            Path::new(UIDLIST_TMP),
            &self.dir,
            Path::new(UIDLIST),
            Replace::Yes,
        )
        .map_err(|e| StoreError::io(&path, e.into()))?;
        Ok(file_stamp(&st))
    }

    /// Open a message's file (its bytes as stored: LF line ends). A file
    /// renamed by another session since the last sync is found by its base
    /// name; one that is gone is `Expunged`.
    pub fn open_message(&mut self, uid: u32) -> Result<File, StoreError> {
        let i = self.index_of(uid).ok_or(StoreError::NoSuchMessage(uid))?;
        let m = &self.messages[i];
        let dir = if m.in_new { &self.new } else { &self.cur };
        match fsat::open_file(dir, &m.file) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(self.display.join(&m.file), e)),
        }
        self.relocate(i, false)?;
        let m = &self.messages[i];
        let dir = if m.in_new { &self.new } else { &self.cur };
        match fsat::open_file(dir, &m.file) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::Expunged(uid)),
            Err(e) => Err(StoreError::io(self.display.join(&m.file), e)),
        }
    }

    /// Find message `i`'s file again by its base name: listed without the
    /// lock, then (if missing, and the caller does not hold the lock) with
    /// it, so that no renaming session is between. `Expunged` if it is gone.
    fn relocate(&mut self, i: usize, locked: bool) -> Result<(), StoreError> {
        let base = self.messages[i].base.clone();
        let uid = self.messages[i].uid;
        let mut hit = self.find_base(&base)?;
        if hit.is_none() && !locked {
            let _lock = self.lock()?;
            hit = self.find_base(&base)?;
        }
        let Some((file, in_new)) = hit else {
            return Err(StoreError::Expunged(uid));
        };
        // Only where the file is: a flag change it shows is reported by the
        // next sync.
        let m = &mut self.messages[i];
        m.file = file;
        m.in_new = in_new;
        Ok(())
    }

    fn find_base(&self, base: &str) -> Result<Option<(String, bool)>, StoreError> {
        for (dir, in_new, sub) in [(&self.cur, false, "cur"), (&self.new, true, "new")] {
            for e in fsat::list(dir).at(&self.display.join(sub))? {
                if e.kind == Kind::File && filename::base(&e.name) == base {
                    return Ok(Some((e.name, in_new)));
                }
            }
        }
        Ok(None)
    }

    /// The message's size with CRLF line ends: what POP3 RETR and IMAP
    /// RFC822.SIZE count. From `,W=` or the uidlist, else counted once
    /// (and written to the uidlist as W at the next sync, as Dovecot does).
    pub fn vsize(&mut self, uid: u32) -> Result<u64, StoreError> {
        let i = self.index_of(uid).ok_or(StoreError::NoSuchMessage(uid))?;
        if let Some(v) = self.messages[i].vsize {
            return Ok(v);
        }
        let mut f = self.open_message(uid)?;
        let mut c = VsizeCounter::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf).at(&self.display)?;
            if n == 0 {
                break;
            }
            c.add(&buf[..n]);
        }
        self.messages[i].vsize = Some(c.vsize());
        self.ext_dirty = true;
        Ok(c.vsize())
    }

    /// When the message arrived (IMAP INTERNALDATE): its file's mtime.
    pub fn internal_date(&mut self, uid: u32) -> Result<SystemTime, StoreError> {
        let f = self.open_message(uid)?;
        f.metadata().and_then(|m| m.modified()).at(&self.display)
    }

    /// The folder's keyword table (loaded once per sync).
    pub fn keywords(&mut self) -> Result<&Keywords, StoreError> {
        if self.keywords.is_none() {
            self.keywords = Some(self.read_keywords()?);
        }
        Ok(self.keywords.get_or_insert_with(Keywords::default))
    }

    fn read_keywords(&self) -> Result<Keywords, StoreError> {
        let path = self.display.join(KEYWORDS);
        match fsat::read_bounded(&self.dir, KEYWORDS, 64 * 1024) {
            Ok(Some(d)) => Keywords::parse(&d).map_err(|e| StoreError::corrupt(&path, e)),
            Ok(None) => Ok(Keywords::default()),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// The keyword names of a message (letters without a name are left
    /// out).
    pub fn keyword_names(&mut self, uid: u32) -> Result<Vec<String>, StoreError> {
        let set = self
            .message(uid)
            .ok_or(StoreError::NoSuchMessage(uid))?
            .keywords;
        if set == KeywordSet::default() {
            // Most messages have none: dovecot-keywords is not read for them.
            return Ok(Vec::new());
        }
        let k = self.keywords()?;
        Ok(set
            .iter()
            .filter_map(|i| k.name(i).map(str::to_string))
            .collect())
    }

    /// Letters for keyword names, giving new ones letters (and writing
    /// dovecot-keywords, through its .lock file, before any file name uses
    /// them). Call with the uidlist lock held.
    fn letters_for(&mut self, names: &[String]) -> Result<KeywordSet, StoreError> {
        if names.is_empty() {
            // No keywords: no letters, and no need to read dovecot-keywords.
            return Ok(KeywordSet::default());
        }
        let mut k = self.read_keywords()?;
        let mut set = KeywordSet::default();
        let mut added = false;
        for n in names {
            if !keywords::is_valid(n) {
                return Err(StoreError::BadKeyword(n.clone()));
            }
            let had = k.index(n).is_some();
            let i = k.index_or_add(n).ok_or_else(|| StoreError::KeywordsFull {
                path: self.display.join(KEYWORDS),
            })?;
            added |= !had;
            set.insert(i);
        }
        if added {
            let path = self.display.join(KEYWORDS);
            let _ = fsat::unlink(&self.dir, &format!("{KEYWORDS}.lock"));
            let mut l =
                DotLock::acquire_for_replace(&self.dir, KEYWORDS, &path, self.options.lock)?;
            l.write(&k.write())?;
            l.replace(KEYWORDS)?;
        }
        self.keywords = Some(k);
        Ok(set)
    }

    /// Set a message's flags and keywords (replacing the old ones).
    pub fn set_flags(
        &mut self,
        uid: u32,
        flags: Flags,
        keywords: &[&str],
    ) -> Result<(), StoreError> {
        self.set_flags_many(&[FlagUpdate {
            uid,
            flags,
            keywords: keywords.iter().map(|s| s.to_string()).collect(),
        }])
    }

    /// Several flag changes under one lock. A message expunged meanwhile is
    /// `Expunged` (the others before it are done). The changed messages get
    /// one new mod-sequence.
    pub fn set_flags_many(&mut self, updates: &[FlagUpdate]) -> Result<(), StoreError> {
        self.store_flags(updates, None).map(|_| ())
    }

    /// `set_flags_many` with RFC 7162 3.1.3 UNCHANGEDSINCE: with
    /// `unchanged_since`, the folder is synced first (under the same lock)
    /// and messages whose mod-sequence is above it are left alone; their
    /// UIDs are returned (the MODIFIED response code). UIDs no longer in
    /// the folder after that sync are skipped (the sync's `Changes` report
    /// them expunged).
    pub fn store_flags(
        &mut self,
        updates: &[FlagUpdate],
        unchanged_since: Option<u64>,
    ) -> Result<Vec<u32>, StoreError> {
        self.writable()?;
        let lock = self.lock()?;
        let mut modified = Vec::new();
        let mut todo: Vec<&FlagUpdate> = updates.iter().collect();
        if let Some(limit) = unchanged_since {
            let c = self.sync_locked(&lock)?;
            self.pending.merge(c);
            todo.retain(|u| match self.message(u.uid) {
                Some(m) if m.modseq > limit => {
                    modified.push(u.uid);
                    false
                }
                Some(_) => true,
                None => false,
            });
        }
        modified.sort_unstable();
        modified.dedup();
        let mut renamed = false;
        let mut own = HashSet::new();
        let r = (|| {
            for u in todo {
                let i = self
                    .index_of(u.uid)
                    .ok_or(StoreError::NoSuchMessage(u.uid))?;
                let set = self.letters_for(&u.keywords)?;
                for attempt in 0..2 {
                    let m = &self.messages[i];
                    let target = filename::with_flags(&m.file, u.flags, set);
                    if !m.in_new && target == m.file {
                        break;
                    }
                    let (from, sub) = if m.in_new {
                        (&self.new, tracker::Sub::New)
                    } else {
                        (&self.cur, tracker::Sub::Cur)
                    };
                    let rename = || fsat::rename(from, &m.file, &self.cur, &target, Replace::Yes);
                    match tracker::renamed(self.tracker.as_ref(), sub, &m.file, &target, rename) {
                        Ok(()) => {
                            renamed = true;
                            own.insert(u.uid);
                            let m = &mut self.messages[i];
                            m.file = target;
                            m.in_new = false;
                            m.flags = u.flags;
                            m.keywords = set;
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound && attempt == 0 => {
                            self.relocate(i, true)?;
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            return Err(StoreError::Expunged(u.uid))
                        }
                        Err(e) => return Err(StoreError::io(self.display.join(&m.file), e)),
                    }
                }
            }
            Ok(())
        })();
        if renamed {
            // cur/ is not fsync'ed for a flag change (Dovecot's
            // mail_fsync=optimized neither), nor is posthorn-modseq for it:
            // after a crash the file's boot id starts mod-sequences above
            // every one handed out, and a lost rename shows as a flag
            // change (folder/imap.rs).
            // The sync gives the renamed messages their new mod-sequence
            // (their flags now differ from posthorn-modseq's); the session
            // reports its own changes itself (STORE's FETCH responses).
            // Nothing else changed (the tracker saw only these renames, the
            // list is ours): no listing, only the mod-sequences.
            let own_only = !self.ext_dirty
                && self.tracker.as_ref().is_some_and(Tracker::clean)
                && self.list_is_known()?;
            let mut c = if own_only {
                self.sync_own(&lock)?
            } else {
                self.sync_locked(&lock)?
            };
            c.flags.retain(|u| !own.contains(u));
            self.pending.merge(c);
        }
        drop(lock);
        r.map(|()| modified)
    }

    /// Remove messages (RFC 3501 EXPUNGE, POP3 DELE at QUIT): unlink the
    /// files, write the list, update maildirsize. Returns the UIDs removed
    /// (also those another session removed first); UIDs not in the folder
    /// are ignored.
    pub fn expunge(&mut self, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        self.writable()?;
        let lock = self.lock()?;
        let want: HashSet<u32> = uids.iter().copied().collect();
        let mut c = self.sync_locked(&lock)?;
        // Removed by another session first: reported here, not again.
        let mut gone: Vec<u32> = c
            .expunged
            .iter()
            .copied()
            .filter(|u| want.contains(u))
            .collect();
        c.expunged.retain(|u| !want.contains(u));
        self.pending.merge(c);
        let (mut bytes, mut count) = (0u64, 0u64);
        for i in 0..self.messages.len() {
            let uid = self.messages[i].uid;
            if !want.contains(&uid) {
                continue;
            }
            let mut removed = false;
            for attempt in 0..2 {
                let m = &self.messages[i];
                let dir = if m.in_new { &self.new } else { &self.cur };
                match fsat::unlink(dir, &m.file) {
                    Ok(true) => {
                        removed = true;
                        break;
                    }
                    Ok(false) if attempt == 0 => match self.relocate(i, true) {
                        Ok(()) => {}
                        Err(StoreError::Expunged(_)) => break,
                        Err(e) => return Err(e),
                    },
                    Ok(false) => break,
                    Err(e) => return Err(StoreError::io(self.display.join(&m.file), e)),
                }
            }
            if removed {
                bytes += self.messages[i].size;
                count += 1;
            }
            gone.push(uid);
        }
        gone.sort_unstable();
        let gone_set: HashSet<u32> = gone.iter().copied().collect();
        // The list's records are no longer `messages`: read it again.
        self.list_known = None;
        self.messages.retain(|m| !gone_set.contains(&m.uid));
        if !gone.is_empty() {
            privilege::sync_dir(&self.cur).at(&self.display.join("cur"))?;
            privilege::sync_dir(&self.new).at(&self.display.join("new"))?;
            // Writes the list without them and logs them in posthorn-modseq
            // at one new mod-sequence (RFC 7162 3.2).
            let c = self.sync_locked(&lock)?;
            self.pending.merge(c);
        }
        drop(lock);
        if count > 0 {
            if let Err(e) = quota::update(
                &self.root,
                &self.root_display,
                -(bytes as i64),
                -(count as i64),
            ) {
                warning!("{e}");
            }
        }
        Ok(gone)
    }

    /// Store a new message (IMAP APPEND): `message` with CRLF or LF line
    /// ends is written with LF to tmp/, checked against the quota, fsync'ed,
    /// given `internal_date` as its mtime (what `internal_date` reports, as
    /// Dovecot does), renamed into cur/ with its flags and synced. Returns
    /// its UID.
    pub fn append(
        &mut self,
        message: &mut dyn Read,
        flags: Flags,
        keywords: &[&str],
        internal_date: Option<SystemTime>,
    ) -> Result<u32, StoreError> {
        let uids = self.append_many(&mut [AppendMessage {
            message,
            flags,
            keywords: keywords.iter().map(|s| s.to_string()).collect(),
            internal_date,
        }])?;
        uids.first().copied().ok_or_else(|| {
            StoreError::io(&self.display, io::Error::other("appended message vanished"))
        })
    }

    /// Store several messages, all or none (RFC 3502 MULTIAPPEND): each is
    /// written to tmp/ and fsync'ed as `append` does, and the quota is
    /// checked for all of them together; any failure there removes them all
    /// and nothing is visible. Then, under the lock, they are renamed into
    /// cur/ one after the other; a rename that fails takes back those
    /// already renamed (unlinked before anyone else can sync, since the
    /// lock is held). Only a crash of the machine during those renames can
    /// leave some of them in the folder. Returns their UIDs in order
    /// (ascending: their names sort in the order they were made; RFC 4315
    /// APPENDUID).
    pub fn append_many(
        &mut self,
        messages: &mut [AppendMessage<'_>],
    ) -> Result<Vec<u32>, StoreError> {
        self.writable()?;
        let mut written: Vec<(String, String, u64)> = Vec::with_capacity(messages.len());
        let r = (|| {
            for m in messages.iter_mut() {
                let base = filename::unique_base();
                let tmp_path = self.display.join("tmp").join(&base);
                let w = self.write_tmp(&base, &tmp_path, m.message, m.internal_date);
                match w {
                    Ok((name, size)) => written.push((base, name, size)),
                    Err(e) => {
                        let _ = fsat::unlink(&self.tmp, &base);
                        return Err(e);
                    }
                }
            }
            let bytes = written.iter().map(|w| w.2).sum();
            quota::check(
                &self.root,
                &self.root_display,
                &self.options.quota,
                bytes,
                written.len() as u64,
            )
        })();
        if let Err(e) = r {
            for (base, _, _) in &written {
                let _ = fsat::unlink(&self.tmp, base);
            }
            return Err(e);
        }
        let lock = match self.lock() {
            Ok(l) => l,
            Err(e) => {
                for (base, _, _) in &written {
                    let _ = fsat::unlink(&self.tmp, base);
                }
                return Err(e);
            }
        };
        let mut placed: Vec<String> = Vec::with_capacity(written.len());
        let r = (|| {
            for (m, (base, name, _)) in messages.iter().zip(&written) {
                let set = self.letters_for(&m.keywords)?;
                let target = filename::with_flags(name, m.flags, set);
                fsat::rename(&self.tmp, base, &self.cur, &target, Replace::No)
                    .at(&self.display.join("tmp").join(base))?;
                placed.push(target);
            }
            Ok(())
        })();
        if let Err(e) = r {
            for target in &placed {
                let _ = fsat::unlink(&self.cur, target);
            }
            for (base, _, _) in &written {
                let _ = fsat::unlink(&self.tmp, base);
            }
            return Err(e);
        }
        privilege::sync_dir(&self.cur).at(&self.display.join("cur"))?;
        let c = self.sync_locked(&lock)?;
        self.pending.merge(c);
        drop(lock);
        let bytes: u64 = written.iter().map(|w| w.2).sum();
        if let Err(e) = quota::update(
            &self.root,
            &self.root_display,
            bytes as i64,
            written.len() as i64,
        ) {
            warning!("{e}");
        }
        let by_base: HashMap<&str, u32> = self
            .messages
            .iter()
            .map(|m| (m.base.as_str(), m.uid))
            .collect();
        written
            .iter()
            .map(|(_, name, _)| {
                by_base.get(name.as_str()).copied().ok_or_else(|| {
                    StoreError::io(&self.display, io::Error::other("appended message vanished"))
                })
            })
            .collect()
    }

    /// Write one message to tmp/`base` with LF line ends, fsync it and set
    /// its mtime: its name with `,S=` and `,W=`, and its size.
    fn write_tmp(
        &self,
        base: &str,
        tmp_path: &Path,
        message: &mut dyn Read,
        internal_date: Option<SystemTime>,
    ) -> Result<(String, u64), StoreError> {
        let f = durable::create_new(Some(&self.tmp), Path::new(base), FILE_MODE).at(tmp_path)?;
        let mut w = BufWriter::with_capacity(32 * 1024, f);
        let mut conv = CrlfToLf::default();
        let mut counter = VsizeCounter::default();
        let mut buf = vec![0u8; 32 * 1024];
        let mut out = Vec::with_capacity(32 * 1024);
        loop {
            let n = message.read(&mut buf).at(tmp_path)?;
            out.clear();
            if n == 0 {
                conv.finish(&mut out);
            } else {
                conv.convert(&buf[..n], &mut out);
            }
            counter.add(&out);
            w.write_all(&out).at(tmp_path)?;
            if n == 0 {
                break;
            }
        }
        let f = w
            .into_inner()
            .map_err(|e| StoreError::io(tmp_path, e.into_error()))?;
        f.sync_all().at(tmp_path)?;
        if let Some(t) = internal_date {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
            let ts = nix::sys::time::TimeSpec::from(d);
            nix::sys::stat::futimens(f.as_raw_fd(), &ts, &ts).at(tmp_path)?;
        }
        let name = format!("{base},S={},W={}", counter.size(), counter.vsize());
        Ok((name, counter.size()))
    }

    /// Copy messages to `dest` (IMAP COPY) with their flags and keywords:
    /// hard links where possible, as Dovecot does (the base name stays when
    /// `dest` does not have it yet). Returns (source UID, new UID) pairs.
    pub fn copy_to(
        &mut self,
        uids: &[u32],
        dest: &mut Folder,
    ) -> Result<Vec<(u32, u32)>, StoreError> {
        self.copy_inner(uids, dest, true)
    }

    /// Move messages to `dest` (RFC 6851 MOVE): copied as `copy_to` does
    /// (hard links into `dest`'s tmp/, renamed into its cur/, `dest`'s
    /// uidlist written, all fsync'ed, under `dest`'s lock), then expunged
    /// here (unlinked under this folder's lock). The locks are taken one
    /// after the other, never both at once, so two sessions moving in
    /// opposite directions cannot deadlock. A crash between the two steps
    /// leaves a message in both folders, never in neither; a crash before
    /// the rename leaves a link in `dest`'s tmp/ that `clean_tmp` removes.
    /// Returns (source UID, new UID) pairs (RFC 4315 COPYUID); the source
    /// UIDs are gone from this folder, and the session reports them as it
    /// reports its own EXPUNGE (the next `sync` does not). The quota is not
    /// checked: a move does not add to a user's mail. If the copy fails part
    /// way, nothing is expunged and the error is returned.
    pub fn move_to(
        &mut self,
        uids: &[u32],
        dest: &mut Folder,
    ) -> Result<Vec<(u32, u32)>, StoreError> {
        self.writable()?;
        let pairs = self.copy_inner(uids, dest, false)?;
        let moved: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        self.expunge(&moved)?;
        Ok(pairs)
    }

    fn copy_inner(
        &mut self,
        uids: &[u32],
        dest: &mut Folder,
        check_quota: bool,
    ) -> Result<Vec<(u32, u32)>, StoreError> {
        dest.writable()?;
        let mut picked = Vec::new();
        for &uid in uids {
            let i = self.index_of(uid).ok_or(StoreError::NoSuchMessage(uid))?;
            picked.push(i);
        }
        let bytes: u64 = picked.iter().map(|&i| self.messages[i].size).sum();
        if check_quota {
            quota::check(
                &dest.root,
                &dest.root_display,
                &dest.options.quota,
                bytes,
                picked.len() as u64,
            )?;
        }
        let names_of: Vec<Vec<String>> = {
            let mut v = Vec::new();
            for &i in &picked {
                let uid = self.messages[i].uid;
                v.push(self.keyword_names(uid)?);
            }
            v
        };
        let lock = dest.lock()?;
        let c = dest.sync_locked(&lock)?;
        dest.pending.merge(c);
        let taken: HashSet<String> = dest.messages.iter().map(|m| m.base.clone()).collect();
        let mut placed: Vec<(u32, String)> = Vec::new();
        let mut added_bytes = 0u64;
        let r = (|| {
            for (n, &i) in picked.iter().enumerate() {
                let uid = self.messages[i].uid;
                let base = if taken.contains(&self.messages[i].base) {
                    let mut b = filename::unique_base();
                    for key in [b'S', b'W'] {
                        if let Some(v) = filename::size_field(&self.messages[i].base, key) {
                            b.push_str(&format!(",{}={v}", key as char));
                        }
                    }
                    b
                } else {
                    self.messages[i].base.clone()
                };
                let tmp = filename::unique_base();
                self.place_in_tmp(i, dest, &tmp)?;
                let set = dest.letters_for(&names_of[n])?;
                let m = &self.messages[i];
                let target = filename::with_flags(&base, m.flags, set);
                if let Err(e) = fsat::rename(&dest.tmp, &tmp, &dest.cur, &target, Replace::No) {
                    let _ = fsat::unlink(&dest.tmp, &tmp);
                    return Err(StoreError::io(dest.display.join("cur").join(&target), e));
                }
                added_bytes += m.size;
                placed.push((uid, base));
            }
            Ok(())
        })();
        if !placed.is_empty() {
            privilege::sync_dir(&dest.cur).at(&dest.display.join("cur"))?;
            let c = dest.sync_locked(&lock)?;
            dest.pending.merge(c);
        }
        drop(lock);
        if !placed.is_empty() {
            if let Err(e) = quota::update(
                &dest.root,
                &dest.root_display,
                added_bytes as i64,
                placed.len() as i64,
            ) {
                warning!("{e}");
            }
        }
        r?;
        Ok(placed
            .into_iter()
            .filter_map(|(src, base)| {
                dest.messages
                    .iter()
                    .find(|m| m.base == base)
                    .map(|m| (src, m.uid))
            })
            .collect())
    }

    /// Put message `i`'s file into `dest`'s tmp/ as `tmp`: a hard link, or
    /// a copy (fsync'ed) when linking is not possible.
    fn place_in_tmp(&mut self, i: usize, dest: &Folder, tmp: &str) -> Result<(), StoreError> {
        for attempt in 0..2 {
            let m = &self.messages[i];
            let dir = if m.in_new { &self.new } else { &self.cur };
            match fsat::link(dir, &m.file, &dest.tmp, tmp) {
                Ok(()) => return Ok(()),
                // Without this folder's lock: `dest` may be this very folder
                // (another Folder of it), whose lock is held.
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt == 0 => {
                    self.relocate(i, true)?
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(StoreError::Expunged(m.uid))
                }
                Err(_) => break,
            }
        }
        // Another file system, or links not allowed: copy.
        let m = &self.messages[i];
        let dir = if m.in_new { &self.new } else { &self.cur };
        let mut src = fsat::open_file(dir, &m.file).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::Expunged(m.uid),
            _ => StoreError::io(self.display.join(&m.file), e),
        })?;
        let path = dest.display.join("tmp").join(tmp);
        let mut out = durable::create_new(Some(&dest.tmp), Path::new(tmp), FILE_MODE).at(&path)?;
        // The copy keeps the internal date (the mtime), as a link does.
        let r = io::copy(&mut src, &mut out)
            .and_then(|_| src.metadata())
            .and_then(|md| {
                let ts = nix::sys::time::TimeSpec::new(
                    std::os::unix::fs::MetadataExt::mtime(&md),
                    std::os::unix::fs::MetadataExt::mtime_nsec(&md),
                );
                nix::sys::stat::futimens(out.as_raw_fd(), &ts, &ts).map_err(io::Error::from)
            })
            .and_then(|_| out.sync_all());
        if let Err(e) = r {
            let _ = fsat::unlink(&dest.tmp, tmp);
            return Err(StoreError::io(&path, e));
        }
        Ok(())
    }
}

fn random_guid() -> [u8; 16] {
    let mut g = [0u8; 16];
    if getrandom::getrandom(&mut g).is_err() {
        // No randomness: time and pid still make it unique enough for a
        // mailbox GUID.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        g[..16].copy_from_slice(&t.to_le_bytes());
        g[12..16].copy_from_slice(&std::process::id().to_le_bytes());
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing that began within a clock tick of a directory's last
    /// change proves nothing about later changes in that tick: only one
    /// that began later does (the next sync lists again until then).
    #[test]
    fn settled_counts_from_when_the_listing_began() {
        let at = |sec: i64, ns: i64| Stamp {
            new: (sec, ns),
            cur: (sec, ns),
            list: Some((1, 2, 3, sec, ns)),
        };
        let s = at(1_000, 500_000_000);
        let t = 1_000 * 1_000_000_000i128 + 500_000_000;
        assert!(!Folder::is_settled(&s, t));
        assert!(!Folder::is_settled(&s, t + sync_nanos()));
        assert!(Folder::is_settled(&s, t + sync_nanos() + 1));
        assert!(sync_nanos() >= 1_000_000 && sync_nanos() <= 100_000_000);
        // Whole seconds only (no sub-second timestamps): a second's margin.
        let coarse = at(1_000, 0);
        assert!(!Folder::is_settled(&coarse, 1_001 * 1_000_000_000));
        assert!(Folder::is_settled(&coarse, 1_002 * 1_000_000_000));
    }

    #[test]
    fn changes_merge() {
        let mut a = Changes {
            new: vec![5, 6],
            flags: vec![1],
            ..Default::default()
        };
        a.merge(Changes {
            expunged: vec![6, 2],
            flags: vec![5, 3],
            ..Default::default()
        });
        // 6 came and went before anyone was told: neither.
        assert_eq!(a.new, [5]);
        assert_eq!(a.expunged, [2]);
        assert_eq!(a.flags, [1, 3]);
    }
}
