//! The queue: directory layout, queue ids, and the queue file format.
//!
//! Owns how a message is kept on disk between smtpd and final delivery. Does
//! not own scheduling (qmgr) or what a recipient means (local delivery).
//!
//! Layout below queue_directory: `maildrop/ incoming/ active/ deferred/ hold/
//! corrupt/ private/ public/ pid/`. A message lives in exactly one of incoming,
//! active, deferred, hold or corrupt; it moves between them by rename(2), which
//! is atomic, so a crash leaves it in one place or the other.
//!
//! Queue file (version 2), little-endian:
//!
//! ```text
//! "PHQ" 0x02                      magic and version
//! record*                         type u8, length u32, data
//!   'T'  arrival, u64 unix seconds
//!   'S'  sender address ("" for the null sender)
//!   'E'  RET and ENVID (RFC 3461), optional: u8 0 none, 1 FULL, 2 HDRS;
//!        then ENVID as sent (xtext), or nothing
//!   'A'  attribute "name=value" (client_addr, helo, protocol, ...)
//!   'R'  recipient, pending       (the type byte becomes 'D' when done:
//!   'D'  recipient, done           one byte rewritten in place, Postfix's way)
//!   'N'  NOTIFY and ORCPT of the recipient record just before it,
//!        optional: u8 NOTIFY bits (0 none, 1 NEVER, 2 SUCCESS, 4 FAILURE,
//!        8 DELAY); then ORCPT as sent ("type;xtext"), or nothing
//!   'W'  delay warning, u64 unix seconds it was sent, 0 not yet: rewritten
//!        in place (fdatasync'ed) when qmgr sends it, so it goes once
//!   'M'  message length, u64      then exactly that many message bytes
//! trailer (optional)              after the message, up to EOF
//!   'H'  header fields to prepend to the message where it leaves the
//!        queue (smtpd's Authentication-Results), UTF-8, each line ending
//!        in CRLF; first in the trailer, at most one, written by commit
//!   'F'  last deferral reason of a recipient: u32 recipient index (in
//!        record order), then the reason text (UTF-8)
//! ```
//!
//! The 'H' fields are part of the message for every reader: `message()`
//! and `message_bytes()` give them first, `message_size()` counts them
//! (`msg_len` is the bytes on disk after 'M'). So local delivery, the SMTP
//! client, forwarded copies and `posthorn queue show` all see them, and
//! the message file itself is never rewritten after its commit.
//!
//! The trailer: what qmgr last heard about each recipient still pending
//! (for mailq). qmgr rewrites it whole when it defers a message
//! (`record_reasons`: the 'H' record as it was, the reasons, then the
//! file cut to that length, fdatasync), so it stays small and a crash
//! leaves the 'H' record whole (rewritten with the same bytes) and the
//! reasons whole, cut short, or gone. A
//! reader takes the records it can and ignores a tail it cannot (a torn
//! write, or more than `MAX_TRAILER`): reasons are advice, and never make
//! a message corrupt. Files without one read as before.
//!
//! Versions: a reader takes version 1 files (written before DSN: no 'E',
//! 'N' or 'W' records, which are corrupt there; such a message gets no
//! delay warning, having nowhere to record it) and version 2. Every file is
//! written as version 2, with a 'W' record.
//!
//! Durability (Postfix's way): a queue file is created in incoming/ under its
//! queue id with mode 0600, ahead of time and in batches whose directory is
//! fsync'ed once (`Spool::reserve_batch`), so its name is on disk before any
//! message goes into it. `commit` writes the message, sets the owner execute
//! bit (mode 0700: "complete") and fsyncs the file: one journal commit
//! between a client's final dot and the 250. qmgr takes only complete files
//! from incoming/; an incomplete one (a writer that died) is removed after
//! hours by `remove_stale_temporaries`. A recipient's completion
//! is one byte rewritten and fdatasync'ed before the next step. Moves between
//! queues never replace an existing file (`durable::rename_at`, no-replace):
//! an existing target is an `AlreadyExists` error that the caller logs.
//!
//! Reading: the envelope is parsed from large positioned reads (a small
//! queue file comes in one); `QueueFile::open_owned` (local delivery) also
//! keeps the first `MESSAGE_KEPT` bytes of the message, so a message up to
//! that size is read from disk once for all its recipients.
//!
//! Security: the reader treats a queue file as untrusted input: every length is
//! bounded and checked against the file size; a bad file is `Corrupt`, and the
//! caller moves it to corrupt/ with a log line instead of crashing. A queue
//! file is opened once, with O_NOFOLLOW, and must be a regular file (a link
//! or anything else is `Corrupt`); envelope, message and `mark_done` all use
//! that one descriptor, so the file cannot be swapped between steps.
//! `QueueFile::open_in` (for root's local delivery) also requires the file to
//! belong to the owner of its queue directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::fcntl::OFlag;

use crate::dsn::{self, MessageDsn, Notify, RecipientDsn, Ret};
use crate::durable::{self, Replace};
use crate::privilege;

const MAGIC: &[u8; 3] = b"PHQ";
/// The version written; `parse` also reads `VERSION_1`.
const VERSION: u8 = 2;
/// Before DSN: no 'E', 'N' or 'W' records.
const VERSION_1: u8 = 1;
/// Largest non-message record.
const MAX_RECORD: u32 = 64 * 1024;
/// Largest envelope (all records before the message).
const MAX_ENVELOPE: u64 = 64 << 20;
/// Bytes per read while parsing an envelope (a small queue file whole).
const ENVELOPE_READ: usize = 16 * 1024;
/// Largest trailer read (deferral reasons); past it, reasons are not kept.
const MAX_TRAILER: u64 = 256 * 1024;
/// Longest deferral reason kept (longer ones are cut at a character).
pub const MAX_REASON: usize = 1000;
/// Message bytes `QueueFile::open_owned` keeps in memory.
pub const MESSAGE_KEPT: usize = 256 * 1024;
/// Largest 'H' trailer record (header fields to prepend).
pub const MAX_PREPEND: usize = 64 * 1024;

/// The queues a message can be in, and the other spool directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    Maildrop,
    Incoming,
    Active,
    Deferred,
    Hold,
    Corrupt,
}

impl Queue {
    pub fn name(self) -> &'static str {
        match self {
            Queue::Maildrop => "maildrop",
            Queue::Incoming => "incoming",
            Queue::Active => "active",
            Queue::Deferred => "deferred",
            Queue::Hold => "hold",
            Queue::Corrupt => "corrupt",
        }
    }
}

/// Every directory below queue_directory, with its mode (Postfix's modes;
/// maildrop is group postdrop and sticky, the group bit set by the installer).
pub const SPOOL_DIRS: &[(&str, u32)] = &[
    ("maildrop", 0o1730),
    ("incoming", 0o700),
    ("active", 0o700),
    ("deferred", 0o700),
    ("hold", 0o700),
    ("corrupt", 0o700),
    // DMARC observations (smtpd's authentication checks), for `posthorn
    // dmarc report` (trust::dmarc_store).
    ("dmarc", 0o700),
    ("private", 0o700),
    ("public", 0o710),
    // The post-login dispatchers' sockets (login/pop3, login/imap): mail_owner's,
    // group login_user's, so login processes reach them and nothing else here.
    ("login", 0o750),
    ("pid", 0o755),
    // MTA-STS policies cached by posthorn-smtp (trust::mta_sts) and the
    // TLS results it records for TLS-RPT (trust::tlsrpt): mail_owner's.
    ("mta-sts", 0o700),
    ("tlsrpt", 0o700),
];

/// A queue id: 11 characters of arrival time in microseconds and 3 of
/// randomness, all from a base-32 alphabet, so ids sort by arrival.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(String);

const ALPHABET: &[u8; 32] = b"0123456789BCDFGHJKLMNPQRSTVWXYZb";
const ID_LEN: usize = 14;

impl QueueId {
    /// A fresh id. Uniqueness is finally enforced by O_EXCL on creation.
    pub fn generate() -> QueueId {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        // Per process, once: a random start for the counter, mixed with the
        // pid (randomness only spreads ids; O_EXCL makes them unique).
        static SEED: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(|| {
            let mut rnd = [0u8; 4];
            let _ = getrandom::getrandom(&mut rnd);
            u32::from_le_bytes(rnd) ^ std::process::id().rotate_left(5)
        });
        let tail = (seed ^ COUNTER.fetch_add(7919, Ordering::Relaxed)) & 0x7fff;
        let mut s = String::with_capacity(ID_LEN);
        for i in (0..11).rev() {
            s.push(ALPHABET[((micros >> (i * 5)) & 31) as usize] as char);
        }
        for i in (0..3).rev() {
            s.push(ALPHABET[((tail >> (i * 5)) & 31) as usize] as char);
        }
        QueueId(s)
    }

    /// Parse a file name; anything else (temporary files, junk) is None.
    pub fn parse(s: &str) -> Option<QueueId> {
        (s.len() == ID_LEN && s.bytes().all(|b| ALPHABET.contains(&b)))
            .then(|| QueueId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a queue file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("corrupt queue file: {0}")]
    Corrupt(String),
}

/// What smtpd (or pickup) knows before the message body.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    pub sender: String,
    pub recipients: Vec<String>,
    /// name=value pairs for logs and bounces: client_name, client_addr, helo, protocol.
    pub attrs: Vec<(String, String)>,
    /// RET and ENVID (RFC 3461).
    pub dsn: MessageDsn,
    /// NOTIFY and ORCPT of `recipients`, by index; a recipient past its
    /// end has none.
    pub recipient_dsn: Vec<RecipientDsn>,
}

/// The spool rooted at queue_directory.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    pub fn new(root: impl Into<PathBuf>) -> Spool {
        Spool { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, q: Queue) -> PathBuf {
        self.root.join(q.name())
    }

    pub fn path(&self, q: Queue, id: &QueueId) -> PathBuf {
        self.dir(q).join(id.as_str())
    }

    pub fn private(&self, name: &str) -> PathBuf {
        self.root.join("private").join(name)
    }

    /// Open a queue directory (O_DIRECTORY, O_NOFOLLOW) for `QueueFile::open_in`.
    pub fn open_dir(&self, q: Queue) -> io::Result<File> {
        privilege::open_at(None, &self.dir(q), OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)
    }

    /// Create the spool tree (mode per SPOOL_DIRS). Existing directories are kept.
    pub fn create_dirs(&self) -> io::Result<()> {
        fs::create_dir_all(&self.root)?;
        for (name, mode) in SPOOL_DIRS {
            let p = self.root.join(name);
            match fs::create_dir(&p) {
                Ok(()) => fs::set_permissions(&p, fs::Permissions::from_mode(*mode))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Start a new message in incoming/ under a temporary name.
    pub fn create(&self, env: &Envelope) -> io::Result<QueueWriter> {
        let r = self
            .reserve_batch(1)?
            .pop()
            .ok_or_else(|| io::Error::other("no queue file reserved"))?;
        self.create_in(r, env)
    }

    /// Reserve `n` queue files and make their names durable with one fsync
    /// of incoming/.
    pub fn reserve_batch(&self, n: usize) -> io::Result<Vec<Reserved>> {
        let v = (0..n)
            .map(|_| self.reserve_one())
            .collect::<io::Result<Vec<_>>>()?;
        privilege::sync_dir(&File::open(self.dir(Queue::Incoming))?)?;
        Ok(v)
    }

    /// Create an empty, incomplete (mode 0600) queue file for a future
    /// message. Creating a file can wait for the file system's journal; smtpd
    /// does it ahead of time, off the path between a client's DATA and our
    /// reply. Its name is durable only after the directory fsync of
    /// `reserve_batch`.
    fn reserve_one(&self) -> io::Result<Reserved> {
        let dir = self.dir(Queue::Incoming);
        for _ in 0..100 {
            let id = QueueId::generate();
            let path = dir.join(id.as_str());
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
            {
                Ok(file) => {
                    let m = file.metadata()?;
                    return Ok(Reserved {
                        file: Some(file),
                        id,
                        path,
                        inode: (m.dev(), m.ino()),
                        created: Instant::now(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("could not find a free queue id"))
    }

    /// Start a new message in a reserved file.
    pub fn create_in(&self, mut r: Reserved, env: &Envelope) -> io::Result<QueueWriter> {
        let arrival = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let file = r
            .file
            .take()
            .ok_or_else(|| io::Error::other("reserved file already used"))?;
        let mut w = QueueWriter {
            file: Some(BufWriter::with_capacity(32 * 1024, file)),
            path: r.path.clone(),
            id: r.id.clone(),
            inode: r.inode,
            written: 0,
            len_offset: 0,
            msg_len: 0,
            prepend: Vec::new(),
            committed: false,
        };
        w.write_envelope(arrival, env)?;
        Ok(w)
    }

    /// Move a message from one queue to another (rename, atomic). Never
    /// replaces a file already in `to`: that is an `AlreadyExists` error.
    pub fn move_to(&self, id: &QueueId, from: Queue, to: Queue) -> io::Result<PathBuf> {
        let dest = self.path(to, id);
        durable::rename_at(None, &self.path(from, id), None, &dest, Replace::No)?;
        Ok(dest)
    }

    /// The ids in a queue, sorted (oldest first). Temporary files, and in
    /// incoming/ files not yet complete (no execute bit), are skipped.
    pub fn list(&self, q: Queue) -> io::Result<Vec<QueueId>> {
        let mut ids: Vec<QueueId> = fs::read_dir(self.dir(q))?
            .filter_map(|e| e.ok())
            .filter(|e| q != Queue::Incoming || is_complete(e))
            .filter_map(|e| e.file_name().to_str().and_then(QueueId::parse))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Is `id` in incoming/ for qmgr: a complete queue file, or something
    /// that is no regular file (which qmgr quarantines)? One lstat.
    pub fn complete(&self, id: &QueueId) -> bool {
        fs::symlink_metadata(self.path(Queue::Incoming, id)).is_ok_and(|m| for_qmgr(&m))
    }

    /// Remove incomplete files older than `age` left by a writer that died
    /// (and temporary files of older versions).
    pub fn remove_stale_temporaries(&self, age: Duration) -> io::Result<usize> {
        let mut n = 0;
        for e in fs::read_dir(self.dir(Queue::Incoming))?.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.ends_with(".tmp") && (QueueId::parse(name).is_none() || is_complete(&e)) {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().unwrap_or_default() > age)
                .unwrap_or(false);
            if old && fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Is this directory entry for qmgr: a complete queue file (owner execute
/// bit), or anything that is no regular file (qmgr quarantines it)?
fn is_complete(e: &fs::DirEntry) -> bool {
    e.metadata().is_ok_and(|m| for_qmgr(&m))
}

/// The test behind `is_complete` and `Spool::complete`, on lstat data.
fn for_qmgr(m: &fs::Metadata) -> bool {
    !m.is_file() || m.permissions().mode() & 0o100 != 0
}

/// An empty, incomplete queue file made ahead of time
/// (`Spool::reserve_batch`). Dropped unused, it is removed.
#[derive(Debug)]
pub struct Reserved {
    file: Option<File>,
    id: QueueId,
    path: PathBuf,
    inode: (u64, u64),
    created: Instant,
}

impl Reserved {
    /// How long ago it was made (old ones may have been cleaned away).
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A message being written. Dropping it without `commit` removes the file.
#[derive(Debug)]
pub struct QueueWriter {
    file: Option<BufWriter<File>>,
    id: QueueId,
    path: PathBuf,
    /// (device, inode) of the file as created.
    inode: (u64, u64),
    /// Bytes written so far (buffered or not).
    written: u64,
    len_offset: u64,
    msg_len: u64,
    /// Header fields for the 'H' trailer record.
    prepend: Vec<u8>,
    committed: bool,
}

impl QueueWriter {
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    /// Message bytes written so far.
    pub fn message_len(&self) -> u64 {
        self.msg_len
    }

    fn out(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("queue file already closed"))
    }

    fn record(&mut self, kind: u8, data: &[u8]) -> io::Result<()> {
        if data.len() > MAX_RECORD as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "envelope record too long",
            ));
        }
        let out = self.out()?;
        out.write_all(&[kind])?;
        out.write_all(&(data.len() as u32).to_le_bytes())?;
        out.write_all(data)?;
        self.written += 5 + data.len() as u64;
        Ok(())
    }

    fn write_envelope(&mut self, arrival: u64, env: &Envelope) -> io::Result<()> {
        self.out()?.write_all(MAGIC)?;
        self.out()?.write_all(&[VERSION])?;
        self.written += 4;
        self.record(b'T', &arrival.to_le_bytes())?;
        self.record(b'S', env.sender.as_bytes())?;
        if !env.dsn.is_empty() {
            let ret = match env.dsn.ret {
                None => 0,
                Some(Ret::Full) => 1,
                Some(Ret::Hdrs) => 2,
            };
            let mut e = vec![ret];
            e.extend_from_slice(env.dsn.envid.as_deref().unwrap_or("").as_bytes());
            self.record(b'E', &e)?;
        }
        for (k, v) in &env.attrs {
            self.record(b'A', format!("{k}={v}").as_bytes())?;
        }
        for (i, r) in env.recipients.iter().enumerate() {
            self.record(b'R', r.as_bytes())?;
            if let Some(d) = env.recipient_dsn.get(i).filter(|d| !d.is_empty()) {
                let mut n = vec![d.notify.map_or(0, Notify::bits)];
                n.extend_from_slice(d.orcpt.as_deref().unwrap_or("").as_bytes());
                self.record(b'N', &n)?;
            }
        }
        self.record(b'W', &0u64.to_le_bytes())?;
        // Header is 4 bytes of magic; each record is 5 + len. The length field
        // of 'M' is patched in commit().
        self.len_offset = self.written + 5;
        self.record(b'M', &0u64.to_le_bytes())
    }

    /// Header fields (each line ending in CRLF) to prepend to the message
    /// where it leaves the queue: an 'H' trailer record written by
    /// `commit`. Longer than MAX_PREPEND, or not UTF-8: refused.
    pub fn set_prepend(&mut self, fields: &str) -> io::Result<()> {
        if fields.len() > MAX_PREPEND {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "header fields to prepend too long",
            ));
        }
        self.prepend = fields.as_bytes().to_vec();
        Ok(())
    }

    /// The message written so far, for a reader before the commit (smtpd's
    /// authentication checks): the bytes flushed, the file opened again
    /// read-only (never through a link, and only if it is still the file
    /// written), the message's offset in it and its length.
    pub fn message_so_far(&mut self) -> io::Result<(File, u64, u64)> {
        self.out()?.flush()?;
        let file = privilege::open_at(
            None,
            &self.path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            0,
        )?;
        let m = file.metadata()?;
        if (m.dev(), m.ino()) != self.inode {
            return Err(io::Error::other(format!(
                "{}: no longer the queue file written",
                self.path.display()
            )));
        }
        Ok((file, self.len_offset + 8, self.msg_len))
    }

    /// Append message bytes.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.msg_len += data.len() as u64;
        self.out()?.write_all(data)
    }

    /// Make the message durable and visible to qmgr: flush, fix the
    /// length, mark the file complete (mode 0700) and fsync it. Its name is
    /// already durable (`Spool::reserve_batch`). On an error the file is
    /// removed (dropped uncommitted), so nothing half-written is delivered.
    pub fn commit(mut self) -> io::Result<QueueId> {
        let out = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("queue file already closed"))?;
        // The length goes into the buffered bytes when they still hold it
        // (a message under the buffer size: one write for the whole file),
        // else into the file.
        let (mut file, buf) = out.into_parts();
        let mut buf = buf.map_err(|_| io::Error::other("queue file writer panicked"))?;
        let start = (self.written + self.msg_len).saturating_sub(buf.len() as u64);
        let len = self.msg_len.to_le_bytes();
        match usize::try_from(self.len_offset.wrapping_sub(start)) {
            Ok(at) if self.len_offset >= start && at + 8 <= buf.len() => {
                buf[at..at + 8].copy_from_slice(&len);
                file.write_all(&buf)?;
            }
            _ => {
                file.write_all(&buf)?;
                file.write_all_at(&len, self.len_offset)?;
            }
        }
        if !self.prepend.is_empty() {
            file.write_all(&prepend_record(&self.prepend))?;
        }
        // The file must still be the one qmgr will find under its name (a
        // spool moved or broken under us is a failure). Checked before the
        // execute bit: from then on qmgr may take (move) the file at once.
        let here = fs::symlink_metadata(&self.path)?;
        if (here.dev(), here.ino()) != self.inode {
            return Err(io::Error::other(format!(
                "{}: no longer the queue file written",
                self.path.display()
            )));
        }
        file.set_permissions(fs::Permissions::from_mode(0o700))?;
        if let Err(e) = file.sync_all() {
            // Incomplete again: never delivered, cleaned up later.
            let _ = file.set_permissions(fs::Permissions::from_mode(0o600));
            return Err(e);
        }
        self.committed = true;
        Ok(self.id.clone())
    }
}

impl Drop for QueueWriter {
    fn drop(&mut self) {
        if !self.committed {
            self.file.take();
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    pub done: bool,
    /// Offset of the record's type byte, for `mark_done`.
    pub offset: u64,
    /// NOTIFY and ORCPT (RFC 3461).
    pub dsn: RecipientDsn,
    /// Why its last delivery attempt was deferred (the trailer), if known.
    pub reason: Option<String>,
}

/// Where a message stands with its delay warning ('W' record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayWarning {
    /// A version 1 file: nowhere to record one, so none is sent.
    Unrecorded,
    /// Not sent yet.
    Pending,
    /// Sent at this time (unix seconds).
    Sent(u64),
}

/// A queue file's envelope, read back, and the one descriptor it was read
/// from (the message and `mark_done` use it too).
#[derive(Debug, Clone)]
pub struct QueueFile {
    pub path: PathBuf,
    file: Arc<File>,
    pub arrival: u64,
    pub sender: String,
    pub attrs: Vec<(String, String)>,
    pub recipients: Vec<Recipient>,
    /// RET and ENVID (RFC 3461).
    pub dsn: MessageDsn,
    pub warning: DelayWarning,
    /// Offset of the 'W' record's data, for `mark_warned`.
    warn_offset: u64,
    pub msg_offset: u64,
    pub msg_len: u64,
    /// The first bytes of the message, when kept (`open_owned`).
    kept: Option<Arc<[u8]>>,
    /// The 'H' trailer record: header fields that go before the message.
    prepend: Option<Arc<[u8]>>,
    /// The whole message with `prepend` before it, when kept.
    whole: Option<Arc<[u8]>>,
}

impl QueueFile {
    /// Read the envelope of a queue file. The message itself stays on disk.
    /// Opened read-write when allowed (for `mark_done`), else read-only;
    /// never through a symbolic link.
    pub fn read(path: &Path) -> Result<QueueFile, SpoolError> {
        let flags = OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let file = match privilege::open_at(None, path, OFlag::O_RDWR | flags, 0) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EACCES | libc::EROFS | libc::EPERM)
                ) =>
            {
                privilege::open_at(None, path, OFlag::O_RDONLY | flags, 0)
            }
            r => r,
        }
        .map_err(not_followed)?;
        QueueFile::from_file(file, path.to_path_buf())
    }

    /// Read the queue file `id` in the queue directory `dir` (from
    /// `Spool::open_dir`), read-only, for a process that is more privileged
    /// than the queue's owner (local delivery as root): no symbolic link,
    /// a regular file, owned by the owner of `dir`.
    pub fn open_in(dir: &File, dir_path: &Path, id: &QueueId) -> Result<QueueFile, SpoolError> {
        let owner = dir.metadata()?.uid();
        QueueFile::open_owned(dir, owner, dir_path, id)
    }

    /// `open_in` for a caller that holds `dir` open and knows its owner
    /// (local delivery: an open and one fstat per message). The first
    /// `MESSAGE_KEPT` bytes of the message stay in memory, so a message of
    /// up to that size is read from the file once (`message`,
    /// `message_bytes`).
    pub fn open_owned(
        dir: &File,
        owner: u32,
        dir_path: &Path,
        id: &QueueId,
    ) -> Result<QueueFile, SpoolError> {
        let file = privilege::open_at(
            Some(dir),
            Path::new(id.as_str()),
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            0,
        )
        .map_err(not_followed)?;
        let meta = file.metadata()?;
        let uid = meta.uid();
        if uid != owner {
            return Err(SpoolError::Corrupt(format!(
                "queue file owned by uid {uid}, not by uid {owner} who owns its queue directory; not read"
            )));
        }
        QueueFile::parse(file, &meta, dir_path.join(id.as_str()), MESSAGE_KEPT)
    }

    /// Read the envelope from an open queue file (which must be a regular
    /// file). `path` is only for messages.
    pub fn from_file(file: File, path: PathBuf) -> Result<QueueFile, SpoolError> {
        let meta = file.metadata()?;
        QueueFile::parse(file, &meta, path, 0)
    }

    /// The reader behind `from_file` and `open_owned`: the file is read
    /// from the start in large positioned reads (the first usually takes
    /// all of a small file); up to `keep` bytes of the message that came
    /// with them are kept.
    fn parse(
        file: File,
        meta: &fs::Metadata,
        path: PathBuf,
        keep: usize,
    ) -> Result<QueueFile, SpoolError> {
        if !meta.file_type().is_file() {
            return Err(SpoolError::Corrupt("not a regular file; not read".into()));
        }
        let size = meta.len();
        let file = Arc::new(file);
        let mut r = Chunks::new(&file, size, ENVELOPE_READ.max(keep));
        let corrupt = |m: &str| SpoolError::Corrupt(m.to_string());
        let head = r
            .take(4)?
            .ok_or_else(|| corrupt("shorter than its header"))?;
        if &head[..3] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let version = head[3];
        if version != VERSION && version != VERSION_1 {
            return Err(SpoolError::Corrupt(format!(
                "unsupported version {version}"
            )));
        }
        let mut qf = QueueFile {
            path,
            file: Arc::clone(&file),
            arrival: 0,
            sender: String::new(),
            attrs: Vec::new(),
            recipients: Vec::new(),
            dsn: MessageDsn::default(),
            warning: DelayWarning::Unrecorded,
            warn_offset: 0,
            msg_offset: 0,
            msg_len: 0,
            kept: None,
            prepend: None,
            whole: None,
        };
        let mut pos: u64 = 4;
        let (mut seen_t, mut seen_s, mut seen_e, mut seen_w) = (false, false, false, false);
        // The record before this one was a recipient's (for 'N').
        let mut after_recipient = false;
        loop {
            if pos > MAX_ENVELOPE {
                return Err(corrupt("envelope too large"));
            }
            let rh = r
                .take(5)?
                .ok_or_else(|| corrupt("truncated before the message"))?;
            let kind = rh[0];
            let len = u32::from_le_bytes([rh[1], rh[2], rh[3], rh[4]]);
            if len > MAX_RECORD || pos + 5 + u64::from(len) > size {
                return Err(SpoolError::Corrupt(format!(
                    "record '{}' of bad length {len}",
                    kind as char
                )));
            }
            let data = r
                .take(len as usize)?
                .ok_or_else(|| corrupt("truncated record"))?;
            let text = || {
                std::str::from_utf8(data)
                    .map(str::to_string)
                    .map_err(|_| corrupt("record is not UTF-8"))
            };
            if version == VERSION_1 && matches!(kind, b'E' | b'N' | b'W') {
                return Err(SpoolError::Corrupt(format!(
                    "record '{}' in a version 1 queue file",
                    kind as char
                )));
            }
            let was_recipient = std::mem::replace(&mut after_recipient, false);
            match kind {
                b'T' => {
                    let b: [u8; 8] = data.try_into().map_err(|_| corrupt("bad arrival record"))?;
                    qf.arrival = u64::from_le_bytes(b);
                    seen_t = true;
                }
                b'S' => {
                    qf.sender = text()?;
                    seen_s = true;
                }
                b'A' => {
                    let t = text()?;
                    let (k, v) = t
                        .split_once('=')
                        .ok_or_else(|| corrupt("attribute without '='"))?;
                    qf.attrs.push((k.to_string(), v.to_string()));
                }
                b'R' | b'D' => {
                    qf.recipients.push(Recipient {
                        address: text()?,
                        done: kind == b'D',
                        offset: pos,
                        dsn: RecipientDsn::default(),
                        reason: None,
                    });
                    after_recipient = true;
                }
                b'E' => {
                    let (&ret, envid) = data
                        .split_first()
                        .ok_or_else(|| corrupt("empty 'E' record"))?;
                    if std::mem::replace(&mut seen_e, true) {
                        return Err(corrupt("second 'E' record"));
                    }
                    qf.dsn.ret = match ret {
                        0 => None,
                        1 => Some(Ret::Full),
                        2 => Some(Ret::Hdrs),
                        _ => return Err(corrupt("bad RET in 'E' record")),
                    };
                    if !envid.is_empty() {
                        let envid = std::str::from_utf8(envid)
                            .ok()
                            .filter(|e| dsn::valid_envid(e))
                            .ok_or_else(|| corrupt("bad ENVID in 'E' record"))?;
                        qf.dsn.envid = Some(envid.to_string());
                    }
                }
                b'N' => {
                    let r = match qf.recipients.last_mut() {
                        Some(r) if was_recipient => r,
                        _ => return Err(corrupt("'N' record not after a recipient")),
                    };
                    let (&bits, orcpt) = data
                        .split_first()
                        .ok_or_else(|| corrupt("empty 'N' record"))?;
                    if bits != 0 {
                        r.dsn.notify = Some(
                            Notify::from_bits(bits)
                                .ok_or_else(|| corrupt("bad NOTIFY in 'N' record"))?,
                        );
                    }
                    if !orcpt.is_empty() {
                        let orcpt = std::str::from_utf8(orcpt)
                            .ok()
                            .filter(|o| dsn::orcpt_parts(o).is_some())
                            .ok_or_else(|| corrupt("bad ORCPT in 'N' record"))?;
                        r.dsn.orcpt = Some(orcpt.to_string());
                    }
                }
                b'W' => {
                    let b: [u8; 8] = data.try_into().map_err(|_| corrupt("bad 'W' record"))?;
                    if std::mem::replace(&mut seen_w, true) {
                        return Err(corrupt("second 'W' record"));
                    }
                    qf.warning = match u64::from_le_bytes(b) {
                        0 => DelayWarning::Pending,
                        t => DelayWarning::Sent(t),
                    };
                    qf.warn_offset = pos + 5;
                }
                b'M' => {
                    let b: [u8; 8] = data.try_into().map_err(|_| corrupt("bad message record"))?;
                    qf.msg_len = u64::from_le_bytes(b);
                    qf.msg_offset = pos + 5 + 8;
                    // checked: a length near 2^64 must be Corrupt, not an
                    // overflow (found by fuzz/, queue_file). What follows
                    // the message is the trailer.
                    if qf
                        .msg_offset
                        .checked_add(qf.msg_len)
                        .is_none_or(|end| end > size)
                    {
                        return Err(SpoolError::Corrupt(format!(
                            "message length {} runs past the file's end ({size})",
                            qf.msg_len
                        )));
                    }
                    break;
                }
                k => {
                    return Err(SpoolError::Corrupt(format!(
                        "unknown record type 0x{k:02x}"
                    )))
                }
            }
            pos += 5 + u64::from(len);
        }
        if !seen_t || !seen_s {
            return Err(corrupt("missing arrival or sender record"));
        }
        if qf.recipients.is_empty() {
            return Err(corrupt("no recipients"));
        }
        if keep > 0 {
            // What the reads brought of the message (it starts right here).
            let mut kept = r.rest();
            kept.truncate(keep.min(usize::try_from(qf.msg_len).unwrap_or(usize::MAX)));
            qf.kept = Some(Arc::from(kept));
        }
        qf.read_trailer(size);
        if let Some(k) = qf.kept.as_ref().filter(|k| k.len() as u64 == qf.msg_len) {
            qf.whole = Some(match &qf.prepend {
                Some(p) => Arc::from([&p[..], &k[..]].concat()),
                None => Arc::clone(k),
            });
        }
        Ok(qf)
    }

    /// Where the message ends (and the trailer starts).
    fn msg_end(&self) -> u64 {
        self.msg_offset + self.msg_len
    }

    /// Take the deferral reasons of the trailer (see the file header): the
    /// records that read whole, up to the first that does not.
    fn read_trailer(&mut self, size: u64) {
        let end = self.msg_end();
        let len = size.saturating_sub(end);
        if len == 0 || len > MAX_TRAILER {
            return;
        }
        let mut buf = vec![0u8; len as usize];
        if self.file.read_exact_at(&mut buf, end).is_err() {
            return;
        }
        let mut rest = &buf[..];
        if rest.len() >= 5 && rest[0] == b'H' {
            let n = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            match rest.get(5..5 + n).filter(|_| n <= MAX_PREPEND) {
                Some(h) if prepend_valid(h) => {
                    self.prepend = Some(Arc::from(h));
                    rest = &rest[5 + n..];
                }
                // Torn or not ours: no fields, no reasons.
                _ => return,
            }
        }
        while rest.len() >= 9 && rest[0] == b'F' {
            let n = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            let Some(data) = rest.get(5..5 + n).filter(|d| d.len() >= 4) else {
                break;
            };
            let i = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
            match (std::str::from_utf8(&data[4..]), self.recipients.get_mut(i)) {
                (Ok(text), Some(r)) if text.len() <= MAX_REASON => {
                    r.reason = Some(text.to_string());
                }
                _ => break,
            }
            rest = &rest[5 + n..];
        }
    }

    /// Record why recipients were deferred (index, reason), keeping the
    /// reasons of the other pending recipients: the trailer is rewritten
    /// whole (truncated to the message's end, written, fdatasync'ed)
    /// through the descriptor the envelope was read from. Done recipients
    /// lose theirs; reasons are cut at `MAX_REASON` bytes, and what would
    /// pass `MAX_TRAILER` is left out.
    pub fn record_reasons(&mut self, reasons: &[(usize, &str)]) -> io::Result<()> {
        for &(i, text) in reasons {
            if let Some(r) = self.recipients.get_mut(i) {
                r.reason = Some(cut(text, MAX_REASON).to_string());
            }
        }
        let mut trailer = match &self.prepend {
            Some(p) => prepend_record(p),
            None => Vec::new(),
        };
        for (i, r) in self.recipients.iter().enumerate() {
            let Some(text) = r.reason.as_deref().filter(|_| !r.done) else {
                continue;
            };
            if (trailer.len() + 9 + text.len()) as u64 > MAX_TRAILER {
                break;
            }
            trailer.push(b'F');
            trailer.extend_from_slice(&(4 + text.len() as u32).to_le_bytes());
            trailer.extend_from_slice(&(i as u32).to_le_bytes());
            trailer.extend_from_slice(text.as_bytes());
        }
        // The 'H' record is rewritten with the bytes it has: a crash
        // leaves it whole whatever becomes of the reasons.
        let end = self.msg_end();
        self.file.write_all_at(&trailer, end)?;
        self.file.set_len(end + trailer.len() as u64)?;
        self.file.sync_data()
    }

    /// The header fields prepended to the message (the 'H' record), if any.
    pub fn prepended(&self) -> Option<&[u8]> {
        self.prepend.as_deref()
    }

    /// The message's size as delivered: the prepended fields and the
    /// message.
    pub fn message_size(&self) -> u64 {
        self.prepend.as_ref().map_or(0, |p| p.len() as u64) + self.msg_len
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A reader over exactly the message bytes, from the descriptor the
    /// envelope was read from (positioned reads: readers are independent).
    pub fn message(&self) -> io::Result<MessageReader> {
        Ok(MessageReader {
            file: Arc::clone(&self.file),
            prefix: self.prepend.clone(),
            prefix_pos: 0,
            kept: self.kept.clone(),
            start: self.msg_offset,
            pos: self.msg_offset,
            end: self.msg_offset + self.msg_len,
        })
    }

    /// The whole message, when it is in memory (read with the envelope by
    /// `open_owned`); None for a larger message or another reader.
    pub fn message_bytes(&self) -> Option<&[u8]> {
        self.whole.as_deref()
    }

    /// Record that recipients are done (delivered, or bounced and the bounce
    /// queued): rewrite their type bytes, through the descriptor the envelope
    /// was read from, and fdatasync before returning.
    pub fn mark_done(&mut self, indexes: &[usize]) -> io::Result<()> {
        if indexes.is_empty() {
            return Ok(());
        }
        let f = &self.file;
        for &i in indexes {
            if let Some(r) = self.recipients.get_mut(i) {
                f.write_all_at(b"D", r.offset)?;
                r.done = true;
            }
        }
        f.sync_data()
    }

    /// Record that the delay warning was sent at `when` (unix seconds, not
    /// 0): rewrite the 'W' record through the descriptor the envelope was
    /// read from, and fdatasync before returning. A version 1 file has no
    /// such record: an `Unsupported` error, and nothing written.
    pub fn mark_warned(&mut self, when: u64) -> io::Result<()> {
        if self.warning == DelayWarning::Unrecorded {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "queue file has no delay warning record (version 1)",
            ));
        }
        let when = when.max(1);
        self.file
            .write_all_at(&when.to_le_bytes(), self.warn_offset)?;
        self.file.sync_data()?;
        self.warning = DelayWarning::Sent(when);
        Ok(())
    }

    /// Note recipients as done without writing (the caller is about to remove
    /// or rewrite the file anyway).
    pub fn mark_done_in_memory(&mut self, indexes: &[usize]) {
        for &i in indexes {
            if let Some(r) = self.recipients.get_mut(i) {
                r.done = true;
            }
        }
    }

    /// Pending recipients' indexes.
    pub fn pending(&self) -> Vec<usize> {
        (0..self.recipients.len())
            .filter(|&i| !self.recipients[i].done)
            .collect()
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

/// The message bytes of a queue file: from the bytes kept in memory (which
/// start at the message's offset `start`), then positioned reads on a
/// shared descriptor, from `pos` up to `end`.
#[derive(Debug)]
pub struct MessageReader {
    file: Arc<File>,
    /// The prepended fields, read first.
    prefix: Option<Arc<[u8]>>,
    prefix_pos: usize,
    kept: Option<Arc<[u8]>>,
    start: u64,
    pos: u64,
    end: u64,
}

impl Read for MessageReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(p) = &self.prefix {
            if let Some(have) = p.get(self.prefix_pos..).filter(|h| !h.is_empty()) {
                let n = buf.len().min(have.len());
                buf[..n].copy_from_slice(&have[..n]);
                self.prefix_pos += n;
                return Ok(n);
            }
        }
        let left = self.end.saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        if let Some(kept) = &self.kept {
            let at = usize::try_from(self.pos - self.start).unwrap_or(usize::MAX);
            if let Some(have) = kept.get(at..).filter(|h| !h.is_empty()) {
                let n = n.min(have.len());
                buf[..n].copy_from_slice(&have[..n]);
                self.pos += n as u64;
                return Ok(n);
            }
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

/// The 'H' trailer record of `fields`.
fn prepend_record(fields: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(5 + fields.len());
    r.push(b'H');
    r.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    r.extend_from_slice(fields);
    r
}

/// An 'H' record's fields as written: UTF-8, non-empty, every line ending
/// in CRLF (no bare CR or LF), so nothing torn or foreign is delivered.
fn prepend_valid(h: &[u8]) -> bool {
    if h.is_empty() || !h.ends_with(b"\r\n") || std::str::from_utf8(h).is_err() {
        return false;
    }
    h.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => h.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && h[i - 1] == b'\r',
        _ => true,
    })
}

/// Sequential reads of a queue file from its start, for the envelope
/// parser: `step` bytes (or what is left of the file) per positioned read,
/// into one buffer whose consumed part is dropped when more is needed.
struct Chunks<'a> {
    file: &'a File,
    size: u64,
    step: usize,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    base: u64,
    /// Bytes of `buf` consumed.
    used: usize,
}

impl<'a> Chunks<'a> {
    fn new(file: &'a File, size: u64, step: usize) -> Chunks<'a> {
        Chunks {
            file,
            size,
            step,
            buf: Vec::new(),
            base: 0,
            used: 0,
        }
    }

    /// The next `n` bytes; None when the file ends first.
    fn take(&mut self, n: usize) -> io::Result<Option<&[u8]>> {
        if self.buf.len() - self.used < n {
            self.buf.drain(..self.used);
            self.base += self.used as u64;
            self.used = 0;
            let have = self.base + self.buf.len() as u64;
            let left = self.size.saturating_sub(have);
            let short = (n - self.buf.len()) as u64;
            if left < short {
                return Ok(None);
            }
            // At least what is missing, at most the rest of the file.
            let want = left.min(short.max(self.step as u64)) as usize;
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            if let Err(e) = self.file.read_exact_at(&mut self.buf[old..], have) {
                return match e.kind() {
                    // The file shrank under us: as truncated.
                    io::ErrorKind::UnexpectedEof => Ok(None),
                    _ => Err(e),
                };
            }
        }
        let at = self.used;
        self.used += n;
        Ok(Some(&self.buf[at..at + n]))
    }

    /// What was read and not consumed.
    fn rest(mut self) -> Vec<u8> {
        self.buf.drain(..self.used);
        self.buf
    }
}

/// An open that met a symbolic link (O_NOFOLLOW) or a directory is a bad queue file, not an
/// I/O problem to retry: it goes to corrupt/.
fn not_followed(e: io::Error) -> SpoolError {
    if e.raw_os_error() == Some(libc::ELOOP) {
        SpoolError::Corrupt("queue file is a symbolic link; not followed".into())
    } else if e.raw_os_error() == Some(libc::EISDIR) {
        SpoolError::Corrupt("not a regular file; not read".into())
    } else {
        SpoolError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_spool(name: &str) -> Spool {
        let dir =
            std::env::temp_dir().join(format!("posthorn-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = Spool::new(&dir);
        s.create_dirs().unwrap();
        s
    }

    fn env() -> Envelope {
        Envelope {
            sender: "a@example.org".into(),
            recipients: vec!["b@example.test".into(), "c@example.test".into()],
            attrs: vec![("client_addr".into(), "127.0.0.1".into())],
            ..Envelope::default()
        }
    }

    /// A record as the writer lays it out.
    fn rec(kind: u8, data: &[u8]) -> Vec<u8> {
        let mut r = vec![kind];
        r.extend_from_slice(&(data.len() as u32).to_le_bytes());
        r.extend_from_slice(data);
        r
    }

    /// A queue file by hand: `version`, the records, then the message.
    fn by_hand(version: u8, records: &[Vec<u8>], message: &[u8]) -> Vec<u8> {
        let mut f = b"PHQ".to_vec();
        f.push(version);
        for r in records {
            f.extend_from_slice(r);
        }
        f.extend(rec(b'M', &(message.len() as u64).to_le_bytes()));
        f.extend_from_slice(message);
        f
    }

    #[test]
    fn dsn_round_trip_and_delay_warning_recorded_once() {
        let s = temp_spool("dsn");
        let mut e = env();
        e.dsn = MessageDsn {
            ret: Some(Ret::Hdrs),
            envid: Some("QQ314159+2Bx".into()),
        };
        // The first recipient has none, the second both.
        e.recipient_dsn = vec![
            RecipientDsn::default(),
            RecipientDsn {
                notify: Notify::parse("SUCCESS,DELAY"),
                orcpt: Some("rfc822;c+40example.test".into()),
            },
        ];
        let mut w = s.create(&e).unwrap();
        w.write(b"Subject: dsn\r\n\r\nx\r\n").unwrap();
        let id = w.commit().unwrap();
        let path = s.path(Queue::Incoming, &id);
        let mut qf = QueueFile::read(&path).unwrap();
        assert_eq!(qf.dsn, e.dsn);
        assert_eq!(qf.recipients[0].dsn, RecipientDsn::default());
        assert_eq!(qf.recipients[1].dsn, e.recipient_dsn[1]);
        assert_eq!(qf.warning, DelayWarning::Pending);
        let mut body = Vec::new();
        qf.message().unwrap().read_to_end(&mut body).unwrap();
        assert_eq!(body, b"Subject: dsn\r\n\r\nx\r\n");
        // mark_done still finds the recipient records among 'N's.
        qf.mark_done(&[1]).unwrap();
        qf.mark_warned(1_700_000_000).unwrap();
        let again = QueueFile::read(&path).unwrap();
        assert_eq!(again.pending(), vec![0]);
        assert_eq!(again.warning, DelayWarning::Sent(1_700_000_000));
        assert_eq!(again.recipients[1].dsn, e.recipient_dsn[1]);
        // Without DSN: no 'E' or 'N', still a 'W'.
        let mut w = s.create(&env()).unwrap();
        w.write(b"x").unwrap();
        let plain = QueueFile::read(&s.path(Queue::Incoming, &w.commit().unwrap())).unwrap();
        assert_eq!(plain.dsn, MessageDsn::default());
        assert_eq!(plain.warning, DelayWarning::Pending);
        fs::remove_dir_all(s.root()).unwrap();
    }

    /// Files written before DSN (version 1) still read; they have no
    /// delay warning record, and mark_warned writes nothing into them.
    #[test]
    fn version_1_files_still_read() {
        let s = temp_spool("v1");
        let path = s.dir(Queue::Incoming).join("v1");
        let records = [
            rec(b'T', &1_700_000_000u64.to_le_bytes()),
            rec(b'S', b"a@example.org"),
            rec(b'A', b"client_addr=127.0.0.1"),
            rec(b'R', b"b@example.test"),
            rec(b'D', b"c@example.test"),
        ];
        let file = by_hand(1, &records, b"Subject: old\r\n\r\nold\r\n");
        fs::write(&path, &file).unwrap();
        let mut qf = QueueFile::read(&path).unwrap();
        assert_eq!(qf.arrival, 1_700_000_000);
        assert_eq!(qf.pending(), vec![0]);
        assert_eq!(qf.recipients[0].dsn, RecipientDsn::default());
        assert_eq!(qf.warning, DelayWarning::Unrecorded);
        let e = qf.mark_warned(1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert_eq!(fs::read(&path).unwrap(), file, "nothing written");
        qf.mark_done(&[0]).unwrap();
        assert!(QueueFile::read(&path).unwrap().recipients[0].done);
        // The new records are corrupt in a version 1 file.
        for extra in [rec(b'W', &0u64.to_le_bytes()), rec(b'E', b"\x01")] {
            let mut r = records.to_vec();
            r.push(extra);
            fs::write(&path, by_hand(1, &r, b"x")).unwrap();
            assert!(
                matches!(QueueFile::read(&path), Err(SpoolError::Corrupt(m)) if m.contains("version 1")),
            );
        }
        fs::write(&path, by_hand(3, &records, b"x")).unwrap();
        assert!(
            matches!(QueueFile::read(&path), Err(SpoolError::Corrupt(m)) if m.contains("version 3"))
        );
        fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn bad_dsn_records_are_corrupt() {
        let s = temp_spool("baddsn");
        let path = s.dir(Queue::Incoming).join("bad");
        let head = || vec![rec(b'T', &1u64.to_le_bytes()), rec(b'S', b"a@example.org")];
        let rcpt = || rec(b'R', b"b@example.test");
        let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
            ("'N' first", vec![rec(b'N', b"\x02"), rcpt()]),
            (
                "'N' twice",
                vec![rcpt(), rec(b'N', b"\x02"), rec(b'N', b"\x04")],
            ),
            ("NOTIFY NEVER and more", vec![rcpt(), rec(b'N', b"\x03")]),
            ("NOTIFY bit 16", vec![rcpt(), rec(b'N', b"\x10")]),
            ("empty 'N'", vec![rcpt(), rec(b'N', b"")]),
            (
                "ORCPT with CRLF",
                vec![rcpt(), rec(b'N', b"\x02rfc822;a+0D+0Ab")],
            ),
            ("ORCPT without type", vec![rcpt(), rec(b'N', b"\x00a@b")]),
            ("RET 3", vec![rec(b'E', b"\x03"), rcpt()]),
            ("ENVID with a space", vec![rec(b'E', b"\x00a b"), rcpt()]),
            (
                "'E' twice",
                vec![rec(b'E', b"\x01"), rec(b'E', b"\x02"), rcpt()],
            ),
            ("short 'W'", vec![rcpt(), rec(b'W', b"\x00")]),
            (
                "'W' twice",
                vec![rcpt(), rec(b'W', &[0; 8]), rec(b'W', &[0; 8])],
            ),
        ];
        for (what, tail) in cases {
            let mut r = head();
            r.extend(tail);
            fs::write(&path, by_hand(2, &r, b"x")).unwrap();
            let got = QueueFile::read(&path);
            assert!(
                matches!(got, Err(SpoolError::Corrupt(_))),
                "{what}: {got:?}"
            );
        }
        fs::remove_dir_all(s.root()).unwrap();
    }

    /// Deferral reasons live in a trailer after the message: they read
    /// back, are rewritten whole, leave the message and its kept bytes
    /// alone, and a torn or foreign tail is ignored, never corrupt.
    #[test]
    fn deferral_reasons_in_the_trailer() {
        let s = temp_spool("reasons");
        let mut w = s.create(&env()).unwrap();
        w.write(b"Subject: r\r\n\r\nbody\r\n").unwrap();
        let id = w.commit().unwrap();
        let path = s.path(Queue::Incoming, &id);
        let plain = fs::read(&path).unwrap();
        let mut qf = QueueFile::read(&path).unwrap();
        assert_eq!(qf.recipients[0].reason, None);
        qf.record_reasons(&[(0, "connect to x: refused"), (1, "4.2.2 over quota")])
            .unwrap();
        let again = QueueFile::read(&path).unwrap();
        assert_eq!(
            again.recipients[0].reason.as_deref(),
            Some("connect to x: refused")
        );
        assert_eq!(
            again.recipients[1].reason.as_deref(),
            Some("4.2.2 over quota")
        );
        // The message is what it was, for every reader.
        let dir = s.open_dir(Queue::Incoming).unwrap();
        let owner = dir.metadata().unwrap().uid();
        let owned = QueueFile::open_owned(&dir, owner, &s.dir(Queue::Incoming), &id).unwrap();
        assert_eq!(
            owned.message_bytes(),
            Some(&b"Subject: r\r\n\r\nbody\r\n"[..])
        );
        let mut body = Vec::new();
        again.message().unwrap().read_to_end(&mut body).unwrap();
        assert_eq!(body, b"Subject: r\r\n\r\nbody\r\n");
        // A recipient done loses its reason; a new reason replaces the old.
        let mut qf = again;
        qf.mark_done(&[1]).unwrap();
        let long = "é".repeat(MAX_REASON);
        qf.record_reasons(&[(0, &long)]).unwrap();
        let again = QueueFile::read(&path).unwrap();
        let r0 = again.recipients[0].reason.clone().unwrap();
        assert!(
            r0.len() <= MAX_REASON && r0.starts_with('é'),
            "cut at a character"
        );
        assert_eq!(again.recipients[1].reason, None);
        // Torn writes and garbage after the message: the whole records
        // read, the rest is ignored, the file is never corrupt.
        let full = fs::read(&path).unwrap();
        for cut in plain.len()..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let qf = QueueFile::read(&path).unwrap();
            assert_eq!(
                qf.recipients[0].reason.is_some(),
                cut == full.len(),
                "cut {cut}"
            );
        }
        for tail in [
            &b"\0\0\0\0\0\0\0\0\0\0"[..],
            b"F\x05\0\0\0\x09\0\0\0x",
            b"F\xff\xff\xff\xff",
        ] {
            let mut f = plain.clone();
            f.extend_from_slice(tail);
            fs::write(&path, &f).unwrap();
            let qf = QueueFile::read(&path).unwrap();
            assert!(qf.recipients.iter().all(|r| r.reason.is_none()), "{tail:?}");
        }
        fs::remove_dir_all(s.root()).unwrap();
    }

    /// The 'H' trailer record: its fields come first for every reader,
    /// count in the size, survive the reasons being rewritten, and a torn
    /// or foreign one is left out, never corrupt.
    #[test]
    fn prepended_fields_in_the_trailer() {
        let s = temp_spool("prepend");
        let mut w = s.create(&env()).unwrap();
        w.write(b"Subject: r\r\n\r\nbody\r\n").unwrap();
        let ar = "Authentication-Results: mx;\r\n\tspf=pass smtp.mailfrom=a@b\r\n";
        w.set_prepend(ar).unwrap();
        let id = w.commit().unwrap();
        let path = s.path(Queue::Incoming, &id);
        let want = format!("{ar}Subject: r\r\n\r\nbody\r\n");
        let check = |reasons: bool| {
            let qf = QueueFile::read(&path).unwrap();
            let mut m = Vec::new();
            qf.message().unwrap().read_to_end(&mut m).unwrap();
            assert_eq!(String::from_utf8(m).unwrap(), want);
            assert_eq!(qf.message_size(), want.len() as u64);
            assert_eq!(qf.msg_len, 20);
            assert_eq!(qf.recipients[0].reason.is_some(), reasons);
            let dir = s.open_dir(Queue::Incoming).unwrap();
            let owner = dir.metadata().unwrap().uid();
            let owned = QueueFile::open_owned(&dir, owner, &s.dir(Queue::Incoming), &id).unwrap();
            assert_eq!(owned.message_bytes(), Some(want.as_bytes()));
            let mut m = Vec::new();
            owned.message().unwrap().read_to_end(&mut m).unwrap();
            assert_eq!(m, want.as_bytes());
        };
        check(false);
        let with_h = fs::read(&path).unwrap();
        let mut qf = QueueFile::read(&path).unwrap();
        qf.record_reasons(&[(0, "connect to x: refused")]).unwrap();
        check(true);
        // Reasons torn: the fields stay.
        let full = fs::read(&path).unwrap();
        for cut in with_h.len()..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let qf = QueueFile::read(&path).unwrap();
            assert_eq!(qf.prepended(), Some(ar.as_bytes()), "cut {cut}");
        }
        // The record torn, or not header text: no fields.
        let plain = with_h.len() - 5 - ar.len();
        for cut in plain..with_h.len() {
            fs::write(&path, &with_h[..cut]).unwrap();
            let qf = QueueFile::read(&path).unwrap();
            assert_eq!(qf.prepended(), None, "cut {cut}");
            assert_eq!(qf.message_size(), 20);
        }
        for bad in ["X: y\n", "X: y", "X: \r y\r\n"] {
            let mut f = with_h[..plain].to_vec();
            f.extend_from_slice(&prepend_record(bad.as_bytes()));
            fs::write(&path, &f).unwrap();
            assert_eq!(QueueFile::read(&path).unwrap().prepended(), None, "{bad:?}");
        }
        fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn ids_sort_by_time_and_parse() {
        let a = QueueId::generate();
        std::thread::sleep(Duration::from_millis(2));
        let b = QueueId::generate();
        assert!(a < b, "{a} < {b}");
        assert_eq!(QueueId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(QueueId::parse(&format!("{a}.tmp")), None);
        assert_eq!(QueueId::parse("short"), None);
    }

    #[test]
    fn write_commit_read_mark() {
        let s = temp_spool("rw");
        let mut w = s.create(&env()).unwrap();
        w.write(b"Subject: hi\r\n\r\nbody\r\n").unwrap();
        let id = w.commit().unwrap();
        assert_eq!(s.list(Queue::Incoming).unwrap(), vec![id.clone()]);
        let path = s.move_to(&id, Queue::Incoming, Queue::Active).unwrap();
        let mut qf = QueueFile::read(&path).unwrap();
        assert_eq!(qf.sender, "a@example.org");
        assert_eq!(qf.attr("client_addr"), Some("127.0.0.1"));
        assert_eq!(qf.pending(), vec![0, 1]);
        let mut body = Vec::new();
        qf.message().unwrap().read_to_end(&mut body).unwrap();
        assert_eq!(body, b"Subject: hi\r\n\r\nbody\r\n");
        qf.mark_done(&[1]).unwrap();
        let again = QueueFile::read(&path).unwrap();
        assert_eq!(again.pending(), vec![0]);
        assert!(again.recipients[1].done);
        fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let s = temp_spool("drop");
        let mut w = s.create(&env()).unwrap();
        w.write(b"x").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(s.dir(Queue::Incoming)).unwrap().count(), 0);
        fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn truncated_and_garbage_files_are_corrupt() {
        let s = temp_spool("corrupt");
        let mut w = s.create(&env()).unwrap();
        w.write(b"0123456789").unwrap();
        let id = w.commit().unwrap();
        let path = s.path(Queue::Incoming, &id);
        let full = fs::read(&path).unwrap();
        for cut in [0, 3, 10, full.len() - 1] {
            fs::write(&path, &full[..cut]).unwrap();
            assert!(
                matches!(QueueFile::read(&path), Err(SpoolError::Corrupt(_))),
                "cut at {cut}"
            );
        }
        let mut bad = full.clone();
        bad[4] = b'Z';
        fs::write(&path, &bad).unwrap();
        assert!(matches!(
            QueueFile::read(&path),
            Err(SpoolError::Corrupt(_))
        ));
        fs::write(&path, b"hello world, not a queue file").unwrap();
        assert!(matches!(
            QueueFile::read(&path),
            Err(SpoolError::Corrupt(_))
        ));
        fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn symlinked_queue_file_is_corrupt_not_followed() {
        let s = temp_spool("link");
        let mut w = s.create(&env()).unwrap();
        w.write(b"Subject: secret\r\n\r\nsecret\r\n").unwrap();
        let real = w.commit().unwrap();
        let id = QueueId::parse("00000000000001").unwrap();
        let link = s.path(Queue::Active, &id);
        std::os::unix::fs::symlink(s.path(Queue::Incoming, &real), &link).unwrap();
        assert!(
            matches!(QueueFile::read(&link), Err(SpoolError::Corrupt(m)) if m.contains("symbolic link")),
            "read"
        );
        let dir = s.open_dir(Queue::Active).unwrap();
        assert!(matches!(
            QueueFile::open_in(&dir, &s.dir(Queue::Active), &id),
            Err(SpoolError::Corrupt(_))
        ));
        // A directory (or other non-file) in its place is corrupt too.
        fs::remove_file(&link).unwrap();
        fs::create_dir(&link).unwrap();
        assert!(matches!(
            QueueFile::read(&link),
            Err(SpoolError::Corrupt(_))
        ));
        fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn one_descriptor_for_envelope_message_and_mark_done() {
        let s = temp_spool("onefd");
        let mut w = s.create(&env()).unwrap();
        w.write(b"the real message\r\n").unwrap();
        let id = w.commit().unwrap();
        let path = s.move_to(&id, Queue::Incoming, Queue::Active).unwrap();
        let dir = s.open_dir(Queue::Active).unwrap();
        let mut qf = QueueFile::read(&path).unwrap();
        let ro = QueueFile::open_in(&dir, &s.dir(Queue::Active), &id).unwrap();
        // Swap the file under its name: readers keep the file they opened.
        let keep = s.root().join("kept");
        fs::rename(&path, &keep).unwrap();
        fs::write(&path, b"an impostor").unwrap();
        for q in [&qf, &ro] {
            let mut body = Vec::new();
            q.message().unwrap().read_to_end(&mut body).unwrap();
            assert_eq!(body, b"the real message\r\n");
        }
        qf.mark_done(&[0]).unwrap();
        assert_eq!(
            fs::read(&path).unwrap(),
            b"an impostor",
            "the impostor is untouched"
        );
        assert!(QueueFile::read(&keep).unwrap().recipients[0].done);
        fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn open_owned_keeps_the_message_and_reads_past_what_it_kept() {
        let s = temp_spool("kept");
        let dir = s.open_dir(Queue::Incoming).unwrap();
        let owner = dir.metadata().unwrap().uid();
        // Small: all in memory. Large: the first MESSAGE_KEPT bytes.
        let small = b"Subject: small\r\n\r\nbody\r\n".to_vec();
        let large: Vec<u8> = (0..MESSAGE_KEPT + 70_001)
            .map(|i| (i % 251) as u8)
            .collect();
        for body in [small, large] {
            let mut w = s.create(&env()).unwrap();
            w.write(&body).unwrap();
            let id = w.commit().unwrap();
            let qf = QueueFile::open_owned(&dir, owner, &s.dir(Queue::Incoming), &id).unwrap();
            assert_eq!(qf.recipients.len(), 2);
            let mut read = Vec::new();
            qf.message().unwrap().read_to_end(&mut read).unwrap();
            assert_eq!(read, body, "{} bytes", body.len());
            // In pieces that cross the end of the kept bytes.
            let mut pieces = Vec::new();
            let mut r = qf.message().unwrap();
            let mut buf = [0u8; 7001];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                pieces.extend_from_slice(&buf[..n]);
            }
            assert_eq!(pieces, body);
            match qf.message_bytes() {
                Some(m) => assert_eq!(m, &body[..]),
                None => assert!(body.len() > MESSAGE_KEPT),
            }
            // The envelope reader without keeping reads the same.
            let plain = QueueFile::read(&s.path(Queue::Incoming, &id)).unwrap();
            assert!(plain.message_bytes().is_none());
            assert_eq!(plain.msg_len, body.len() as u64);
        }
        fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn open_in_wants_the_queue_owner() {
        if !crate::privilege::is_root() {
            eprintln!("open_in_wants_the_queue_owner: needs root to chown; skipped");
            return;
        }
        let s = temp_spool("owner");
        let mut w = s.create(&env()).unwrap();
        w.write(b"x").unwrap();
        let id = w.commit().unwrap();
        let path = s.move_to(&id, Queue::Incoming, Queue::Active).unwrap();
        std::os::unix::fs::chown(&path, Some(4242), None).unwrap();
        let dir = s.open_dir(Queue::Active).unwrap();
        assert!(matches!(
            QueueFile::open_in(&dir, &s.dir(Queue::Active), &id),
            Err(SpoolError::Corrupt(m)) if m.contains("uid 4242")
        ));
        fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn moves_never_replace() {
        let s = temp_spool("noreplace");
        let mut w = s.create(&env()).unwrap();
        w.write(b"x").unwrap();
        let id = w.commit().unwrap();
        fs::write(s.path(Queue::Active, &id), b"already here").unwrap();
        let e = s.move_to(&id, Queue::Incoming, Queue::Active).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            fs::read(s.path(Queue::Active, &id)).unwrap(),
            b"already here"
        );
        assert!(
            s.path(Queue::Incoming, &id).exists(),
            "the message stays where it was"
        );
        fs::remove_dir_all(s.root()).unwrap();
    }

    /// fuzz/ queue_file, minimised: an 'M' record whose message length is
    /// 2^64 - 1 overflowed `msg_offset + msg_len` (a panic with overflow
    /// checks, as in tests and the fuzz build).
    #[test]
    fn message_length_near_u64_max_is_corrupt() {
        let s = temp_spool("overflow");
        let path = s.dir(Queue::Incoming).join("overflow");
        fs::write(
            &path,
            b"PHQ\x01M\x08\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff",
        )
        .unwrap();
        let r = QueueFile::read(&path);
        assert!(matches!(r, Err(SpoolError::Corrupt(_))), "{r:?}");
        fs::remove_dir_all(s.root()).unwrap();
    }
}
