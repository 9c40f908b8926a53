//! One delivery request: validate it, deliver each recipient, report.
//!
//! Quota: a Maildir recipient with a quota (users file `quota_rule`, as
//! Dovecot reads it) whose Maildir++ maildirsize says it is full, or would
//! be with this message, is deferred with 4.2.2 "Mailbox full: Quota
//! exceeded (mailbox for user is full)" (RFC 3463 4.2.2, Dovecot's text): a
//! temporary failure, bounced by qmgr after the queue lifetime. The message
//! is counted as written (LF line ends) and checked before it is committed;
//! a user already full is refused before anything is written.
//!
//! Folders: a Maildir recipient with `Mailbox::folder` (an address
//! extension, recipient_delimiter_folder = yes) is filed in that folder
//! when the user has it (`folder_dir`: looked up as the user, the exact
//! name or the one differing only in case; never created; a name that is
//! not a valid folder name -- "..", control characters, a leading or
//! trailing separator -- is INBOX).
//!
//! mbox: mailstore::mbox appends under mailbox_delivery_lock's locks; a
//! lock that stays is deferred "4.2.0 mailbox busy" (Postfix's words). The
//! mail spool (`Mailbox::spool`) is written with the user's uid and the
//! spool directory's group as effective ids (never gid 0).
//!
//! Standards: RFC 5321 4.4 (Return-Path at final delivery), RFC 3463 codes.
//!
//! Security: runs as root. The queue file is opened once, O_NOFOLLOW,
//! relative to active/, and must be a regular file owned by active/'s owner
//! (`QueueFile::open_in`); envelope and message come from that descriptor.
//! Mailboxes are reached through directory descriptors (`walk_dirs`), homes
//! made with `make_dir_at`, and everything below a home written with the
//! owner's effective ids (`as_user`, which refuses uid 0).
//!
//! Diagnostics: a queue file that cannot be opened safely is a warning naming
//! the queue id, and its recipients are deferred.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::config::Config;
use common::ipc::{DeliverRequest, Handoff, RecipientResult, Status};
use common::privilege::{self, DirCreate};
use common::quota::Quota;
use common::spool::{Queue, QueueFile, QueueId, Spool, SpoolError};
use common::users::UserTable;
use common::{info, warning};
use mailstore::maildir::Prepared;
use mailstore::mbox::Busy;
use mailstore::quota::OverQuota;
use mailstore::{CrlfToLf, LfReader, Maildir, StoreError};

use crate::aliases::Aliases;
use crate::resolve::{self, Dest, Mailbox, Unresolved};
use crate::{file, pipe};

/// The text of a recipient that was only forwarded.
const FORWARDED: &str = "forwarded to ";

/// Longest header section scanned for loop detection.
const HEADER_SCAN: usize = 256 * 1024;

/// A bad request: the connection is closed (qmgr sent something it must not).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("bad queue id {0:?}")]
    QueueId(String),
    #[error("{0}: recipient index {1} out of range")]
    Index(QueueId, u32),
    #[error("{0}: recipient {1} is not {2:?}")]
    Address(QueueId, u32, String),
}

pub struct Agent {
    pub config: Config,
    pub users: UserTable,
    pub aliases: Aliases,
    pub spool: Spool,
    /// Maildirs held open between deliveries (walking from "/" costs a
    /// dozen system calls); each use first checks, as the owner, that the
    /// path still leads to the same new/.
    pub maildirs: MaildirCache,
    /// active/ held open, with its owner (opened again after a failure).
    pub active: ActiveDir,
}

/// The active queue directory, opened once (O_NOFOLLOW, O_DIRECTORY), and
/// the uid that owns it: queue files must belong to it.
#[derive(Debug, Default)]
pub struct ActiveDir(Option<(std::fs::File, u32)>);

/// Open Maildirs by (path, uid, gid), with (device, inode) of their new/
/// (the map, through Deref), and the deliveries renamed into a new/ that
/// has not been fsynced since.
#[derive(Default)]
pub struct MaildirCache {
    open: OpenMaildirs,
    unsynced: Unsynced,
}

/// Maildirs by (path, uid, gid), with (device, inode) of their new/.
type OpenMaildirs = HashMap<(PathBuf, u32, u32), (Maildir, (u64, u64))>;

/// Deliveries of the batch not yet durable in new/.
#[derive(Default)]
struct Unsynced {
    /// Publish each file as soon as it is written (a batch of one delivery:
    /// nothing to gain by waiting, and one switch of ids fewer).
    now: bool,
    pending: Vec<Pending>,
}

/// A delivery of the batch: the (request, recipient) it belongs to, the
/// mailbox owner's ids, and where the file is.
struct Pending {
    slot: (usize, usize),
    owner: (u32, u32),
    stage: Stage,
}

enum Stage {
    /// Fsynced in tmp/ (`Delivery::prepare`).
    Prepared(Prepared),
    /// Renamed into this Maildir's new/, which still needs its fsync.
    Published(Maildir),
}

impl MaildirCache {
    pub fn new() -> MaildirCache {
        MaildirCache::default()
    }
}

impl std::ops::Deref for MaildirCache {
    type Target = OpenMaildirs;
    fn deref(&self) -> &Self::Target {
        &self.open
    }
}

impl std::ops::DerefMut for MaildirCache {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.open
    }
}

/// Most Maildirs held open (two descriptors each, well under the usual
/// limit of 1024 open files).
const MAILDIR_CACHE: usize = 128;

/// One recipient's outcome: status, DSN code, text, relay, and the
/// addresses qmgr is to forward a copy to.
type Outcome = (Status, &'static str, String, &'static str, Vec<String>);

/// A recipient's result, logged and returned once its mailbox is durable.
struct Finished {
    id: QueueId,
    address: String,
    /// `, orig_to=<a>` or nothing (RecipientDsn::orig_to).
    orig_to: String,
    relay: &'static str,
    delay: f64,
    result: RecipientResult,
    /// Only forwarded (nothing delivered here): qmgr logs the
    /// `to=<forward>, orig_to=<this>, ... (forwarded as ID)` lines, as
    /// Postfix's local does, and this recipient gets no line of its own.
    only_forwarded: bool,
}

impl Agent {
    /// Deliver a request. Err means the request itself is bad (close the
    /// connection); per-recipient trouble is in the results.
    pub fn deliver(&mut self, req: &DeliverRequest) -> Result<Vec<RecipientResult>, RequestError> {
        let (mut done, bad) = self.deliver_batch(std::slice::from_ref(req), &|| true);
        match bad {
            Some(e) => Err(e),
            None => Ok(done.pop().unwrap_or_default()),
        }
    }

    /// Deliver a batch of requests (qmgr writes one in one go). Each
    /// Maildir file is written and fsynced in tmp/; after the whole batch,
    /// and only if `wanted()` still says the results will be read, the
    /// files are renamed into new/ and each new/ is fsynced once; only then
    /// is any recipient logged or returned as sent (a failed rename or fsync
    /// defers the recipients concerned). So a crash while the batch is
    /// written leaves no message in new/ that qmgr will send again. (A batch
    /// of one delivery is renamed as soon as it is written, as it always
    /// was: the same exposure, one switch of ids fewer.) Stops
    /// at the first bad request: returns the results of the requests before
    /// it, and its error (the caller closes the connection).
    pub fn deliver_batch(
        &mut self,
        reqs: &[DeliverRequest],
        wanted: &dyn Fn() -> bool,
    ) -> (Vec<Vec<RecipientResult>>, Option<RequestError>) {
        let mut finished: Vec<Vec<Finished>> = Vec::with_capacity(reqs.len());
        let mut bad = None;
        self.maildirs.unsynced.now = reqs.len() == 1 && reqs[0].recipients.len() == 1;
        for req in reqs {
            let mut one = Vec::with_capacity(req.recipients.len());
            if let Err(e) = self.deliver_unsynced(req, finished.len(), &mut one) {
                bad = Some(e);
                break;
            }
            finished.push(one);
        }
        if wanted() {
            self.publish(&mut finished);
        } else {
            // Nobody will read the results: the prepared files go (dropped:
            // removed from tmp/), and qmgr's successor sends them again.
            self.maildirs.unsynced.pending.clear();
            for f in finished.iter_mut().flatten() {
                if f.result.status == Status::Sent {
                    f.result.status = Status::Deferred;
                    f.result.dsn = "4.3.0".into();
                    f.result.text = "not delivered: the requester has gone".into();
                }
            }
        }
        let results = finished
            .into_iter()
            .map(|req| {
                req.into_iter()
                    .map(|f| {
                        let r = &f.result;
                        if f.only_forwarded && r.status == Status::Sent {
                            return f.result;
                        }
                        let word = match r.status {
                            Status::Sent => "sent",
                            Status::Deferred => "deferred",
                            Status::Bounced => "bounced",
                        };
                        info!(
                            "{}: to=<{}>{}, relay={}, delay={:.2}, dsn={}, status={word} ({})",
                            f.id,
                            f.address,
                            f.orig_to,
                            f.relay,
                            f.delay.max(0.0),
                            r.dsn,
                            r.text
                        );
                        f.result
                    })
                    .collect()
            })
            .collect();
        (results, bad)
    }

    /// Move every prepared file of the batch into its new/ and fsync each
    /// new/ once, with the owner's effective ids (one switch per owner);
    /// the recipients whose rename or fsync fails are deferred.
    fn publish(&mut self, finished: &mut [Vec<Finished>]) {
        let mut groups: Vec<((u32, u32), Vec<Pending>)> = Vec::new();
        for p in std::mem::take(&mut self.maildirs.unsynced.pending) {
            match groups.iter_mut().find(|(o, _)| *o == p.owner) {
                Some((_, g)) => g.push(p),
                None => groups.push((p.owner, vec![p])),
            }
        }
        for ((uid, gid), group) in groups {
            let slots: Vec<(usize, usize)> = group.iter().map(|p| p.slot).collect();
            let group_prepared = group.iter().any(|p| matches!(p.stage, Stage::Prepared(_)));
            let publish = move || {
                let mut failed = Vec::new();
                let mut dirs: Vec<(Maildir, Vec<(usize, usize)>)> = Vec::new();
                for p in group {
                    let md = match p.stage {
                        Stage::Published(md) => md,
                        Stage::Prepared(file) => {
                            let md = file.maildir().clone();
                            if let Err(e) = file.publish() {
                                let text = format!("cannot write {}: {e}", md.root().display());
                                failed.push((p.slot, dsn_of(&e), text));
                                continue;
                            }
                            md
                        }
                    };
                    match dirs.iter_mut().find(|(m, _)| m.shares_new(&md)) {
                        Some((_, s)) => s.push(p.slot),
                        None => dirs.push((md, vec![p.slot])),
                    }
                }
                for (md, slots) in dirs {
                    if let Err(e) = md.sync_new() {
                        let text = format!("cannot sync {}/new: {e}", md.root().display());
                        failed.extend(slots.into_iter().map(|s| (s, dsn_of(&e), text.clone())));
                    }
                }
                Ok(failed)
            };
            // Renames below a home with the owner's ids; only fsyncs of
            // held directories left: no switch needed.
            let failed = if group_prepared {
                privilege::as_user(uid, gid, publish)
            } else {
                publish()
            };
            let failed = failed.unwrap_or_else(|e| {
                let text = format!("cannot publish as uid {uid}: {e}");
                slots.iter().map(|&s| (s, "4.3.0", text.clone())).collect()
            });
            for ((req, rcpt), dsn, text) in failed {
                if let Some(f) = finished.get_mut(req).and_then(|v| v.get_mut(rcpt)) {
                    f.result.status = Status::Deferred;
                    f.result.dsn = dsn.into();
                    f.result.text = text;
                }
            }
        }
    }

    /// One request of a batch (number `slot`): its recipients' results go
    /// to `out`, their Maildirs to `self.maildirs.unsynced`.
    fn deliver_unsynced(
        &mut self,
        req: &DeliverRequest,
        slot: usize,
        out: &mut Vec<Finished>,
    ) -> Result<(), RequestError> {
        let id = QueueId::parse(&req.queue_id)
            .ok_or_else(|| RequestError::QueueId(req.queue_id.clone()))?;
        // Opened once, O_NOFOLLOW, relative to active/, owned by active/'s
        // owner; envelope and message come from that one descriptor.
        let qf = match self.open_queue_file(&id) {
            Ok(q) => q,
            Err(e) => {
                // The queue file is gone or bad: every recipient is deferred;
                // qmgr deals with the file itself.
                let why = format!("cannot read queue file: {e}");
                warning!("{id}: {why}");
                out.extend(req.recipients.iter().map(|r| Finished {
                    id: id.clone(),
                    address: r.address.clone(),
                    orig_to: String::new(),
                    relay: "local",
                    delay: 0.0,
                    result: RecipientResult {
                        index: r.index,
                        status: Status::Deferred,
                        dsn: "4.3.0".into(),
                        text: why.clone(),
                        handoff: Handoff::default(),
                        forward: Vec::new(),
                    },
                    only_forwarded: false,
                }));
                return Ok(());
            }
        };
        let headers = scan_headers(&qf).unwrap_or_default();
        for r in &req.recipients {
            let Some(rec) = qf.recipients.get(r.index as usize) else {
                return Err(RequestError::Index(id, r.index));
            };
            if rec.address != r.address {
                return Err(RequestError::Address(id, r.index, r.address.clone()));
            }
            let mark = self.maildirs.unsynced.pending.len();
            let (status, dsn, text, relay, forward) = self.one(&qf, &rec.address, &headers);
            let only_forwarded = !forward.is_empty() && text.starts_with(FORWARDED);
            for u in &mut self.maildirs.unsynced.pending[mark..] {
                u.slot = (slot, out.len());
            }
            let delay = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
                - qf.arrival as f64;
            out.push(Finished {
                id: id.clone(),
                address: rec.address.clone(),
                orig_to: rec.dsn.orig_to(&rec.address),
                relay,
                delay,
                result: RecipientResult {
                    index: r.index,
                    status,
                    dsn: dsn.into(),
                    text,
                    handoff: Handoff::Delivered,
                    forward,
                },
                only_forwarded,
            });
        }
        Ok(())
    }

    /// Open queue file `id` in active/ through the held directory; on any
    /// failure, once more through a freshly opened one (active/ may have
    /// been replaced or chowned since).
    fn open_queue_file(&mut self, id: &QueueId) -> Result<QueueFile, SpoolError> {
        let path = self.spool.dir(Queue::Active);
        let mut fresh = false;
        loop {
            let (dir, owner) = match &self.active.0 {
                Some((dir, owner)) => (dir, *owner),
                None => {
                    fresh = true;
                    let dir = self.spool.open_dir(Queue::Active)?;
                    let owner = dir.metadata()?.uid();
                    let (dir, owner) = self.active.0.insert((dir, owner));
                    (&*dir, *owner)
                }
            };
            match QueueFile::open_owned(dir, owner, &path, id) {
                Err(_) if !fresh => self.active.0 = None,
                r => return r,
            }
        }
    }

    fn one(&mut self, qf: &QueueFile, rcpt: &str, headers: &Headers) -> Outcome {
        let dests =
            match resolve::destinations(&self.config, &mut self.users, &mut self.aliases, rcpt) {
                Ok(m) => m,
                Err(Unresolved::UnknownUser(t)) => return outcome(Status::Bounced, "5.1.1", t),
                Err(Unresolved::NotLocal(t)) => return outcome(Status::Bounced, "5.3.0", t),
                Err(Unresolved::Loop(t)) => return outcome(Status::Bounced, "5.4.6", t),
                Err(Unresolved::Restricted(t)) => return outcome(Status::Bounced, "5.7.1", t),
                Err(Unresolved::Temporary(t)) => return outcome(Status::Deferred, "4.3.0", t),
            };
        let relay = dests
            .iter()
            .find_map(|d| match d {
                Dest::Mailbox(m) => Some(m.relay),
                _ => None,
            })
            .unwrap_or("local");
        let limit = self.config.int("hopcount_limit").unwrap_or(50) as usize;
        if headers.received > limit {
            return (
                Status::Bounced,
                "5.4.6",
                format!(
                    "mail forwarding loop ({} Received: headers)",
                    headers.received
                ),
                relay,
                Vec::new(),
            );
        }
        if headers
            .delivered_to
            .iter()
            .any(|d| d.eq_ignore_ascii_case(rcpt))
        {
            return (
                Status::Bounced,
                "5.4.6",
                format!("mail forwarding loop for {rcpt}"),
                relay,
                Vec::new(),
            );
        }
        // Every destination (an alias may have several); the first failure
        // defers or bounces the recipient (the ones already written may get
        // it again). Forwards go back to qmgr with the result.
        let mut what = String::new();
        let mut forward = Vec::new();
        for dest in &dests {
            let mbox = match dest {
                Dest::Mailbox(m) => m,
                Dest::Forward(a) => {
                    forward.push(a.clone());
                    continue;
                }
                Dest::Command {
                    command,
                    privs,
                    recipient,
                } => {
                    let env = pipe::Env {
                        sender: &qf.sender,
                        recipient,
                        original: rcpt,
                        delimiter: &self.config.get("recipient_delimiter"),
                    };
                    let limit = self
                        .config
                        .time("command_time_limit")
                        .unwrap_or(Duration::from_secs(1000));
                    let ended = trace_and_message(qf, rcpt)
                        .and_then(|m| pipe::run(command, privs, &env, limit, Box::new(m)));
                    match ended {
                        Ok(pipe::Ended::Delivered) => {
                            what = format!("delivered to command: {command}");
                        }
                        Ok(pipe::Ended::Deferred(t)) => {
                            return (Status::Deferred, "4.3.0", t, "local", Vec::new())
                        }
                        Ok(pipe::Ended::Bounced(t)) => {
                            return (Status::Bounced, "5.3.0", t, "local", Vec::new())
                        }
                        Err(e) => {
                            return (
                                Status::Deferred,
                                "4.3.0",
                                format!("cannot run command \"{command}\": {e}"),
                                "local",
                                Vec::new(),
                            )
                        }
                    }
                    continue;
                }
                Dest::File {
                    path,
                    privs,
                    locking,
                } => {
                    let date = mbox_date(
                        SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_secs(),
                    );
                    let r = trace_and_message(qf, rcpt).and_then(|mut m| {
                        file::deliver(path, privs, locking, &qf.sender, &date, &mut m)
                    });
                    if let Err(e) = r {
                        return (
                            Status::Deferred,
                            dsn_of(&e),
                            format!("cannot append message to file {}: {e}", path.display()),
                            "local",
                            Vec::new(),
                        );
                    }
                    what = format!("delivered to file: {}", path.display());
                    continue;
                }
            };
            if let Err(e) = write_mailbox(mbox, qf, rcpt, &mut self.maildirs) {
                if e.get_ref().is_some_and(|i| i.is::<OverQuota>()) {
                    // RFC 3463 4.2.2: mailbox full; Dovecot's words.
                    return (
                        Status::Deferred,
                        "4.2.2",
                        "Mailbox full: Quota exceeded (mailbox for user is full)".into(),
                        mbox.relay,
                        Vec::new(),
                    );
                }
                if let Some(busy) = e.get_ref().and_then(|i| i.downcast_ref::<Busy>()) {
                    // Postfix: "4.2.0 mailbox busy"; tried again later.
                    return (
                        Status::Deferred,
                        "4.2.0",
                        busy.to_string(),
                        mbox.relay,
                        Vec::new(),
                    );
                }
                let dsn = match e.raw_os_error() {
                    Some(28) => "4.3.1",  // ENOSPC
                    Some(122) => "4.2.2", // EDQUOT
                    _ => "4.2.0",
                };
                let mut text = format!("cannot write {}: {e}", mbox.path.display());
                if let Some(p) = &mbox.default_privs {
                    text.push_str(&format!(
                        " (mail for uid 0 is written with the rights of default_privs {p}, never as root; alias root to a real user in alias_maps)"
                    ));
                }
                return (Status::Deferred, dsn, text, mbox.relay, Vec::new());
            }
            what = if mbox.maildir {
                "delivered to maildir"
            } else {
                "delivered to mailbox"
            }
            .into();
        }
        if what.is_empty() {
            what = format!("{FORWARDED}{}", forward.join(", "));
        }
        (Status::Sent, "2.0.0", what, relay, forward)
    }
}

/// An outcome with no forwards, relay local.
fn outcome(status: Status, dsn: &'static str, text: String) -> Outcome {
    (status, dsn, text, "local", Vec::new())
}

/// What a command or a file gets: `Return-Path:` and `Delivered-To:`, then
/// the message with LF line ends (as a mailbox gets it).
fn trace_and_message(qf: &QueueFile, rcpt: &str) -> io::Result<impl Read + Send + 'static> {
    let prefix = format!("Return-Path: <{}>\nDelivered-To: {rcpt}\n", qf.sender);
    Ok(io::Cursor::new(prefix.into_bytes()).chain(LfReader::new(qf.message()?)))
}

/// Write one mailbox. The home is reached from "/" with `walk_dirs` (as
/// root: only root's links in root's directories are followed; a virtual
/// user's missing home is made and given to them, fsync'ed into its
/// parent); everything below it -- Maildir, cur/ new/ tmp/, the mbox file
/// and its directories -- is done with the owner's effective ids, through
/// descriptors, following no links.
fn write_mailbox(
    mbox: &Mailbox,
    qf: &QueueFile,
    rcpt: &str,
    cache: &mut MaildirCache,
) -> io::Result<()> {
    // recipient_delimiter_folder: the user's folder named by the address
    // extension, when it exists.
    let in_folder;
    let mbox = match mbox.folder.as_deref().map(|f| folder_dir(mbox, f)) {
        Some(Ok(Some(dir))) => {
            in_folder = Mailbox {
                path: mbox.path.join(&dir),
                below_home: mbox.below_home.join(&dir),
                folder: None,
                ..mbox.clone()
            };
            &in_folder
        }
        Some(Err(e)) => return Err(e),
        _ => mbox,
    };
    let key = (mbox.path.clone(), mbox.uid, mbox.gid);
    if mbox.maildir {
        if let Some((md, new_id)) = cache.get(&key).cloned() {
            let new = mbox.path.join("new");
            let r = privilege::as_user(mbox.uid, mbox.gid, || {
                // Still the same new/ at that path (stat only, no link
                // followed at the end; the write goes through the held
                // descriptors)?
                let st =
                    nix::sys::stat::fstatat(None, &new, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                        .map_err(io::Error::from)?;
                if (st.st_dev, st.st_ino) != new_id {
                    return Err(io::Error::other("Maildir moved"));
                }
                maildir_write(
                    &md,
                    qf,
                    rcpt,
                    &mbox.quota,
                    (mbox.uid, mbox.gid),
                    &mut cache.unsynced,
                )
            });
            match r {
                Ok(()) => return Ok(()),
                // Full: no need to look again.
                Err(e) if e.get_ref().is_some_and(|i| i.is::<OverQuota>()) => return Err(e),
                // Moved, removed, or failing: walk again from "/".
                Err(_) => {
                    cache.remove(&key);
                }
            }
        }
    }
    let root_create = DirCreate {
        mode: 0o755,
        owner: None,
    };
    let home = if mbox.create_home {
        let parent = mbox.home.parent().unwrap_or(Path::new("/"));
        let name = mbox.home.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "home has no last component")
        })?;
        let pdir = privilege::open_dir_path(parent, Some(root_create))?;
        let owner = privilege::is_root().then_some((mbox.uid, mbox.gid));
        match privilege::make_dir_at(&pdir, name, 0o700, owner) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        privilege::walk_dirs(&pdir, Path::new(name), None)?
    } else {
        privilege::open_dir_path(&mbox.home, None)?
    };
    // The mail spool (root:mail 2775 on Debian) is written with its group
    // as effective gid, as Postfix's local(8) does; never gid 0.
    let gid = if mbox.spool {
        match home.metadata()?.gid() {
            0 => mbox.gid,
            g => g,
        }
    } else {
        mbox.gid
    };
    let mut prefix = format!("Return-Path: <{}>\n", qf.sender);
    prefix.push_str(&format!("Delivered-To: {rcpt}\n"));
    let msg = qf.message()?;
    privilege::as_user(mbox.uid, gid, move || {
        if mbox.maildir {
            let md = Maildir::open_at(&home, &mbox.below_home, mbox.path.clone(), true)?;
            maildir_write(
                &md,
                qf,
                rcpt,
                &mbox.quota,
                (mbox.uid, mbox.gid),
                &mut cache.unsynced,
            )?;
            if cache.len() >= MAILDIR_CACHE {
                cache.clear();
            }
            let new_id = md.new_id()?;
            cache.insert(key, (md, new_id));
            Ok(())
        } else {
            let name = mbox.below_home.file_name().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "home_mailbox has no file name")
            })?;
            let parent = mbox.below_home.parent().unwrap_or(Path::new(""));
            let dir = privilege::walk_dirs(
                &home,
                parent,
                Some(DirCreate {
                    mode: 0o700,
                    owner: None,
                }),
            )?;
            let date = mbox_date(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
            );
            let mut message = prefix.as_bytes().chain(LfReader::new(msg));
            mailstore::mbox::deliver_at(
                &dir,
                Path::new(name),
                &mbox.path,
                &mbox.locking,
                &qf.sender,
                &date,
                &mut message,
            )
        }
    })
}

/// The Maildir++ directory of the folder `tag` names, if `mbox`'s user
/// has it (looked at as the user): the exact name, else the one folder
/// whose name differs only in case. A tag that is no valid folder name
/// ("..", control characters, "/" at either end, INBOX) names none, and
/// nothing is created. '.' and '/' both separate levels.
fn folder_dir(mbox: &Mailbox, tag: &str) -> io::Result<Option<String>> {
    let Ok(wanted) = mailstore::names::validate(&tag.replace('.', "/")) else {
        return Ok(None);
    };
    if wanted == mailstore::INBOX {
        return Ok(None);
    }
    let missing = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    let home = match privilege::open_dir_path(&mbox.home, None) {
        Err(e) if missing(&e) => return Ok(None),
        r => r?,
    };
    privilege::as_user(mbox.uid, mbox.gid, || {
        let md = match privilege::walk_dirs(&home, &mbox.below_home, None) {
            Err(e) if missing(&e) => return Ok(None),
            r => r?,
        };
        let folders: Vec<(String, String)> = mailstore::fsat::list(&md)?
            .into_iter()
            .filter(|e| e.kind == mailstore::fsat::Kind::Dir)
            .filter_map(|e| mailstore::names::from_disk(&e.name).map(|n| (e.name, n)))
            .collect();
        if let Some((dir, _)) = folders.iter().find(|(_, n)| *n == wanted) {
            return Ok(Some(dir.clone()));
        }
        let lower = wanted.to_lowercase();
        let mut same = folders.iter().filter(|(_, n)| n.to_lowercase() == lower);
        Ok(match (same.next(), same.next()) {
            (Some((dir, _)), None) => Some(dir.clone()),
            _ => None,
        })
    })
}

/// A quota check's result as an io::Error: OverQuota stays recognisable
/// (`get_ref().is::<OverQuota>()`).
fn quota_error(e: StoreError) -> io::Error {
    match e {
        StoreError::OverQuota(o) => io::Error::other(o),
        StoreError::Io { source, path } => {
            io::Error::new(source.kind(), format!("{}: {source}", path.display()))
        }
        other => io::Error::other(other.to_string()),
    }
}

/// Deliver into an open Maildir (as its owner, `owner`): the trace
/// headers, then the message with CRLF turned into LF. The file is on disk
/// in tmp/ when this returns (or already in new/ with `unsynced.now`);
/// `Agent::publish` moves it into new/ and fsyncs new/. With a quota:
/// refused before writing when the user is full already, and before it is
/// prepared when this message would make it so.
fn maildir_write(
    md: &Maildir,
    qf: &QueueFile,
    rcpt: &str,
    quota: &Quota,
    owner: (u32, u32),
    unsynced: &mut Unsynced,
) -> io::Result<()> {
    if !quota.is_unlimited() {
        md.check_quota(quota, 0).map_err(quota_error)?;
    }
    let prefix = format!("Return-Path: <{}>\nDelivered-To: {rcpt}\n", qf.sender);
    let mut d = md.begin()?;
    d.write(prefix.as_bytes())?;
    if let Some(m) = qf.message_bytes() {
        // Read with the envelope: converted in one pass, no second read.
        let mut lf = Vec::with_capacity(m.len());
        let mut conv = CrlfToLf::default();
        conv.convert(m, &mut lf);
        conv.finish(&mut lf);
        d.write(&lf)?;
    } else {
        let mut lf = LfReader::new(qf.message()?);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = lf.read(&mut buf)?;
            if n == 0 {
                break;
            }
            d.write(&buf[..n])?;
        }
    }
    if !quota.is_unlimited() {
        // Dropped on error: the file in tmp/ is removed.
        md.check_quota(quota, d.size()).map_err(quota_error)?;
    }
    let file = d.prepare()?;
    let stage = if unsynced.now {
        file.publish()?;
        Stage::Published(md.clone())
    } else {
        Stage::Prepared(file)
    };
    unsynced.pending.push(Pending {
        slot: (usize::MAX, usize::MAX),
        owner,
        stage,
    });
    Ok(())
}

/// The enhanced status code of a mailbox write failure (RFC 3463).
fn dsn_of(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(28) => "4.3.1",  // ENOSPC
        Some(122) => "4.2.2", // EDQUOT
        _ => "4.2.0",
    }
}

/// asctime(3) form for the mbox From_ line, UTC.
fn mbox_date(unix: u64) -> String {
    // "Tue, 14 Nov 2023 22:13:20 +0000" -> "Tue Nov 14 22:13:20 2023"
    let d = common::log::rfc5322_date(unix);
    let p: Vec<&str> = d.split(' ').collect();
    format!(
        "{} {} {:>2} {} {}",
        p[0].trim_end_matches(','),
        p[2],
        p[1],
        p[4],
        p[3]
    )
}

#[derive(Debug, Default)]
struct Headers {
    received: usize,
    delivered_to: Vec<String>,
}

/// Count Received: headers and collect Delivered-To: values.
fn scan_headers(qf: &QueueFile) -> io::Result<Headers> {
    if let Some(m) = qf.message_bytes() {
        return Ok(headers_in(&m[..m.len().min(HEADER_SCAN)]));
    }
    // The header section only: read in large pieces until its end (an empty
    // line) or HEADER_SCAN bytes.
    let mut r = qf.message()?.take(HEADER_SCAN as u64);
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        let tail = &buf[from..];
        if tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n") {
            break;
        }
    }
    Ok(headers_in(&buf))
}

/// The header section's Received: count and Delivered-To: values.
fn headers_in(buf: &[u8]) -> Headers {
    let starts = |line: &[u8], name: &[u8]| {
        line.get(..name.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(name))
    };
    let mut h = Headers::default();
    for line in buf.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if starts(line, b"received:") {
            h.received += 1;
        } else if starts(line, b"delivered-to:") {
            h.delivered_to
                .push(String::from_utf8_lossy(&line[13..]).trim().to_string());
        }
    }
    h
}

#[cfg(test)]
mod tests {
    #[test]
    fn mbox_dates() {
        assert_eq!(super::mbox_date(1_700_000_000), "Tue Nov 14 22:13:20 2023");
        assert_eq!(super::mbox_date(0), "Thu Jan  1 00:00:00 1970");
    }

    use super::*;
    use common::ipc::DeliverRecipient;
    use common::spool::Envelope;

    /// Delivery switches the effective ids of the whole process (all test
    /// threads): one delivering test at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn agent(name: &str) -> (Agent, std::path::PathBuf) {
        agent_with(name, "")
    }

    /// An agent whose user `demo@example.test` has the users file extra
    /// fields `extra`.
    fn agent_with(name: &str, extra: &str) -> (Agent, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("posthorn-deliver-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (uid, gid) = if privilege::is_root() {
            (4242, 4242)
        } else {
            let me = privilege::current_account();
            (me.uid, me.gid)
        };
        std::fs::write(
            dir.join("users"),
            format!(
                "demo@example.test:x:{uid}:{gid}::{}/home/demo::{extra}\n",
                dir.display()
            ),
        )
        .unwrap();
        let text = format!(
            "queue_directory = {0}/spool\nvirtual_mailbox_domains = example.test\nmydestination = localhost\nalias_maps =\n",
            dir.display()
        );
        let config = Config::parse(&dir, "main.cf", &text).unwrap();
        let spool = Spool::new(config.queue_dir());
        spool.create_dirs().unwrap();
        let a = Agent {
            users: UserTable::new(dir.join("users")),
            aliases: Aliases::new(&[]),
            spool,
            config,
            maildirs: MaildirCache::new(),
            active: ActiveDir::default(),
        };
        (a, dir)
    }

    fn queue(spool: &Spool, body: &[u8]) -> QueueId {
        let mut w = spool
            .create(&Envelope {
                sender: "a@example.org".into(),
                recipients: vec!["demo@example.test".into()],
                attrs: vec![],
                ..Envelope::default()
            })
            .unwrap();
        w.write(body).unwrap();
        w.commit().unwrap()
    }

    fn request(id: &QueueId) -> DeliverRequest {
        DeliverRequest {
            queue_id: id.to_string(),
            sender: "a@example.org".into(),
            arrival: 0,
            nexthop: String::new(),
            recipients: vec![DeliverRecipient {
                index: 0,
                address: "demo@example.test".into(),
            }],
        }
    }

    fn delivered(dir: &std::path::Path) -> Vec<Vec<u8>> {
        std::fs::read_dir(dir.join("home/demo/Maildir/new"))
            .map(|r| {
                r.flatten()
                    .map(|e| std::fs::read(e.path()).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_linked_queue_file_is_not_followed() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (mut a, dir) = agent("link");
        // A real message is delivered (the home is made on the way).
        let id = queue(&a.spool, b"Subject: real\r\n\r\nreal\r\n");
        a.spool
            .move_to(&id, Queue::Incoming, Queue::Active)
            .unwrap();
        let r = a.deliver(&request(&id)).unwrap();
        assert_eq!(r[0].status, Status::Sent, "{r:?}");
        assert_eq!(delivered(&dir).len(), 1);
        // A valid queue file outside the queue (a root-only file, say), and a
        // link to it in active/: never read.
        let secret = queue(&a.spool, b"Subject: secret\r\n\r\nSECRET\r\n");
        let outside = dir.join("secret");
        std::fs::rename(a.spool.path(Queue::Incoming, &secret), &outside).unwrap();
        std::os::unix::fs::symlink(&outside, a.spool.path(Queue::Active, &secret)).unwrap();
        let r = a.deliver(&request(&secret)).unwrap();
        assert_eq!(r[0].status, Status::Deferred);
        assert!(r[0].text.contains("symbolic link"), "{r:?}");
        let all = delivered(&dir);
        assert_eq!(all.len(), 1);
        assert!(!all.iter().any(|m| m.windows(6).any(|w| w == b"SECRET")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_queue_file_of_another_owner_is_not_read() {
        if !privilege::is_root() {
            eprintln!("a_queue_file_of_another_owner_is_not_read: needs root to chown; skipped");
            return;
        }
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (mut a, dir) = agent("owner");
        let id = queue(&a.spool, b"Subject: x\r\n\r\nSECRET\r\n");
        let p = a
            .spool
            .move_to(&id, Queue::Incoming, Queue::Active)
            .unwrap();
        std::os::unix::fs::chown(&p, Some(4343), None).unwrap();
        let r = a.deliver(&request(&id)).unwrap();
        assert_eq!(r[0].status, Status::Deferred);
        assert!(r[0].text.contains("uid 4343"), "{r:?}");
        assert!(delivered(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_batch_is_delivered_and_answered_in_order() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (mut a, dir) = agent("batch");
        let mut reqs = Vec::new();
        for i in 0..5 {
            let body = format!("Subject: {i}\r\n\r\nbody {i}\r\n");
            let id = queue(&a.spool, body.as_bytes());
            a.spool
                .move_to(&id, Queue::Incoming, Queue::Active)
                .unwrap();
            reqs.push(request(&id));
        }
        // The third one is gone from active/: deferred, the others sent.
        std::fs::remove_file(
            a.spool
                .path(Queue::Active, &QueueId::parse(&reqs[2].queue_id).unwrap()),
        )
        .unwrap();
        let (results, bad) = a.deliver_batch(&reqs, &|| true);
        assert!(bad.is_none());
        let status: Vec<Status> = results.iter().map(|r| r[0].status).collect();
        use Status::*;
        assert_eq!(status, [Sent, Sent, Deferred, Sent, Sent]);
        let mut got: Vec<String> = delivered(&dir)
            .iter()
            .map(|m| {
                String::from_utf8_lossy(m)
                    .lines()
                    .nth(2)
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            ["Subject: 0", "Subject: 1", "Subject: 3", "Subject: 4"]
        );
        assert!(
            a.maildirs.unsynced.pending.is_empty(),
            "every file published"
        );
        // A batch whose requester has gone: nothing reaches new/ or stays in tmp/.
        let late: Vec<DeliverRequest> = (0..2)
            .map(|_| {
                let id = queue(&a.spool, b"Subject: late\r\n\r\nlate\r\n");
                a.spool
                    .move_to(&id, Queue::Incoming, Queue::Active)
                    .unwrap();
                request(&id)
            })
            .collect();
        let (results, _) = a.deliver_batch(&late, &|| false);
        assert!(results.iter().all(|r| r[0].status == Status::Deferred));
        assert_eq!(delivered(&dir).len(), 4);
        let tmp = dir.join("home/demo/Maildir/tmp");
        assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_request_ends_the_batch_after_the_good_ones() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (mut a, dir) = agent("badbatch");
        let mut reqs = Vec::new();
        for _ in 0..3 {
            let id = queue(&a.spool, b"Subject: x\r\n\r\nx\r\n");
            a.spool
                .move_to(&id, Queue::Incoming, Queue::Active)
                .unwrap();
            reqs.push(request(&id));
        }
        reqs[1].recipients[0].address = "someone@else.test".into();
        let (results, bad) = a.deliver_batch(&reqs, &|| true);
        assert_eq!(results.len(), 1, "the request before the bad one");
        assert_eq!(results[0][0].status, Status::Sent);
        assert!(matches!(bad, Some(RequestError::Address(..))), "{bad:?}");
        assert_eq!(delivered(&dir).len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn over_quota_is_deferred_with_4_2_2() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (mut a, dir) = agent_with("quota", "userdb_quota_rule=*:storage=300");
        let send = |a: &mut Agent, body: &[u8]| {
            let id = queue(&a.spool, body);
            a.spool
                .move_to(&id, Queue::Incoming, Queue::Active)
                .unwrap();
            a.deliver(&request(&id)).unwrap().remove(0)
        };
        let r = send(&mut a, b"Subject: one\r\n\r\nsmall\r\n");
        assert_eq!(r.status, Status::Sent, "{r:?}");
        let md = dir.join("home/demo/Maildir");
        let names: Vec<String> = std::fs::read_dir(md.join("new"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        // Return-Path, Delivered-To and the message, with LF.
        let size = "Return-Path: <a@example.org>\nDelivered-To: demo@example.test\n".len()
            + "Subject: one\n\nsmall\n".len();
        assert!(
            names[0].ends_with(&format!(",S={size},W={}", size + 5)),
            "{names:?}"
        );
        assert_eq!(
            std::fs::read_to_string(md.join("maildirsize")).unwrap(),
            format!("300S\n0 0\n{size} 1\n")
        );
        // Too large for what is left: deferred, nothing left behind.
        let big = format!("Subject: two\r\n\r\n{}\r\n", "x".repeat(250));
        let r = send(&mut a, big.as_bytes());
        assert_eq!(r.status, Status::Deferred, "{r:?}");
        assert_eq!(r.dsn, "4.2.2");
        assert_eq!(
            r.text,
            "Mailbox full: Quota exceeded (mailbox for user is full)"
        );
        assert_eq!(std::fs::read_dir(md.join("new")).unwrap().count(), 1);
        assert_eq!(std::fs::read_dir(md.join("tmp")).unwrap().count(), 0);
        // A small one still fits.
        let r = send(&mut a, b"Subject: three\r\n\r\nsmall\r\n");
        assert_eq!(r.status, Status::Sent, "{r:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_tag_names_an_existing_folder_and_never_escapes() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (a, dir) = agent("tags");
        let _ = a;
        let home = dir.join("home/demo");
        let md = home.join("Maildir");
        for f in [".Sent", ".Lists.Rust", ".Work", ".work"] {
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(md.join(f).join(sub)).unwrap();
            }
        }
        // Directories a tag could point at outside the Maildir.
        std::fs::create_dir_all(dir.join("home/demo/.Outside/new")).unwrap();
        std::fs::create_dir_all(dir.join("home/Maildir")).unwrap();
        let me = privilege::current_account();
        let mbox = Mailbox {
            path: md.clone(),
            home: home.clone(),
            below_home: PathBuf::from("Maildir"),
            maildir: true,
            uid: me.uid.max(1),
            gid: me.gid,
            relay: "virtual",
            ..Mailbox::default()
        };
        if privilege::is_root() {
            // Listed as the owner.
            for e in walk(&md) {
                std::os::unix::fs::chown(e, Some(mbox.uid), Some(mbox.gid)).unwrap();
            }
        }
        let f = |t: &str| folder_dir(&mbox, t).unwrap();
        assert_eq!(f("Sent").as_deref(), Some(".Sent"));
        assert_eq!(f("sent").as_deref(), Some(".Sent"));
        assert_eq!(f("Lists.Rust").as_deref(), Some(".Lists.Rust"));
        assert_eq!(f("lists/rust").as_deref(), Some(".Lists.Rust"));
        // Two folders differ only in case: the exact one, or none.
        assert_eq!(f("Work").as_deref(), Some(".Work"));
        assert_eq!(f("work").as_deref(), Some(".work"));
        assert_eq!(f("WORK"), None);
        for bad in [
            "",
            "INBOX",
            "inbox",
            "nosuch",
            "new",
            "cur",
            "..",
            "../Outside",
            "../../Maildir",
            "/Sent",
            "Sent/",
            "Se\x01nt",
            "Sent\n",
            ".Sent",
            "Sent..",
            "*",
            "%",
        ] {
            assert_eq!(f(bad), None, "{bad:?}");
        }
        // A user without a Maildir: no folder, nothing made.
        let none = Mailbox {
            home: dir.join("home/nobody-here"),
            ..mbox.clone()
        };
        assert_eq!(folder_dir(&none, "Sent").unwrap(), None);
        assert!(!dir.join("home/nobody-here").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn walk(d: &std::path::Path) -> Vec<PathBuf> {
        let mut v = vec![d.to_path_buf()];
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                v.extend(walk(&e.path()));
            }
        }
        v
    }
}
