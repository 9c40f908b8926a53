//! posthorn-pickup: takes locally submitted mail from maildrop/ into the
//! queue (Postfix's pickup with the part of cleanup local mail needs).
//!
//! Owns turning each complete maildrop file (`M.*`, written by postdrop)
//! into a queue file in incoming/: it parses the file as untrusted input
//! (postdrop::maildrop's strict reader, with message_size_limit), checks
//! that its uid record is the file's owner, writes the queue file with
//! common::spool (durable: `QueueWriter::commit`, as smtpd's), wakes qmgr
//! with the queue id (as smtpd does, `private/qmgr`), and only then removes
//! the maildrop file; a crash in between delivers the message twice at
//! worst, never loses it. Does not own the record format (postdrop) or
//! delivery (qmgr). Virtual alias rewriting is not done here (yet).
//!
//! What it adds, as Postfix's cleanup does for local submissions: a
//! `Received: by $myhostname ($mail_name, from userid UID)` line first,
//! and at the end of the header section From: (the sender, with the -F full
//! name), Date: and Message-ID: (`<YYYYMMDDhhmmss.ID@$myhostname>`, smtpd's
//! form) when missing. A sender or recipient without a domain gets
//! @$myorigin (Postfix's append_at_myorigin). With sendmail -t the
//! recipients of To:, Cc: and Bcc: (Resent-To:, Resent-Cc:, Resent-Bcc:
//! when the message has Resent- fields) are added to the envelope and Bcc:
//! (Resent-Bcc:) is removed. -N becomes every recipient's DSN NOTIFY.
//!
//! Wake-up: at start, whenever a client connects to `public/pickup` (the
//! socket postdrop pokes: group postdrop), and every `wakeup` seconds of
//! its master.cf line (default 60) in case a poke was lost.
//!
//! Security: runs as mail_owner. A maildrop file is opened once, O_NOFOLLOW,
//! relative to maildrop/, must be a regular file, and is locked (flock)
//! until it is removed, so two pickups (a reload's overlap) never queue it
//! twice; everything in it is
//! bounded (the reader's limits, HEADER_LIMIT for the header section held
//! in memory; the body streams). A file that does not parse, has no
//! recipients, or whose uid record is not its owner goes to corrupt/ with
//! a warning naming it; a file that vanished is skipped; files being
//! written (`T.*`) are not looked at until they are a day old, then removed.
//!
//! Diagnostics: `ID: uid=UID from=<SENDER>` per message (then qmgr's
//! lines); `warning: maildrop/NAME: REASON; moved to corrupt/NAME`.
//!
//! Recipients are rewritten with virtual_alias_maps as smtpd does at RCPT
//! (`VirtualAlias::rewrite_envelope`); an unknown address of a virtual alias
//! domain is left for qmgr to return.
//!
//! Parameters: queue_directory, myhostname, myorigin, mail_name,
//! message_size_limit, virtual_alias_maps, virtual_alias_domains,
//! virtual_alias_recursion_limit, virtual_alias_expansion_limit,
//! propagate_unmatched_extensions, recipient_delimiter, mydestination.

pub mod headers;

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::fcntl::OFlag;

use common::config::Config;
use common::daemon::{self, Listener};
use common::dsn::{Notify, RecipientDsn};
use common::durable::{self, Replace};
use common::privilege;
use common::spool::{Envelope, Queue, QueueId, QueueWriter, Reserved, Spool};
use common::{info, warning};
use postdrop::maildrop::{FormatError, Limits, Reader, Record, Source};

/// Most header bytes held in memory; past it the rest is body.
pub const HEADER_LIMIT: usize = 100 * 1024;
/// Periodic scan without a wake-up (when master.cf gives no wakeup).
const DEFAULT_WAKEUP: Duration = Duration::from_secs(60);
/// Empty queue files made at once (one fsync of incoming/ for them all, as
/// smtpd's reserve), and how old one may be when used.
const RESERVE: usize = 16;
const RESERVE_MAX_AGE: Duration = Duration::from_secs(600);
/// Temporary files of a postdrop that died are removed after this.
const STALE_TEMPORARY: Duration = Duration::from_secs(24 * 3600);

/// Why a maildrop file was not queued.
#[derive(Debug, thiserror::Error)]
pub enum PickupError {
    /// The file is bad: it goes to corrupt/.
    #[error("{0}")]
    Corrupt(String),
    /// Reading it or writing the queue failed: it stays, for a later try.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl From<FormatError> for PickupError {
    fn from(e: FormatError) -> Self {
        match e {
            FormatError::Io(e) => PickupError::Io(e),
            e => PickupError::Corrupt(e.to_string()),
        }
    }
}

/// What pickup needs from main.cf.
#[derive(Debug, Clone)]
pub struct Settings {
    pub myhostname: String,
    pub myorigin: String,
    pub mail_name: String,
    pub limits: Limits,
    /// virtual_alias_maps and virtual_alias_domains (as smtpd's RCPT).
    pub virtual_alias: common::virtual_alias::Settings,
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Result<Settings, common::config::ConfigError> {
        Ok(Settings {
            myhostname: cfg.get("myhostname"),
            myorigin: cfg.get("myorigin"),
            mail_name: cfg.get("mail_name"),
            limits: Limits {
                message_size: cfg.int("message_size_limit")?,
                recipients: postdrop::maildrop::MAX_RECIPIENTS,
            },
            virtual_alias: common::virtual_alias::Settings::from_config(cfg)?,
        })
    }
}

/// The program's entry point (posthorn-pickup).
pub fn main() {
    let daemon::Worker {
        config,
        listener,
        stop,
        service,
        ..
    } = daemon::start("pickup");
    let Listener::Unix(listener) = listener else {
        common::config_fatal!("pickup must be a unix service in master.cf");
    };
    let settings = match Settings::from_config(&config) {
        Ok(s) => s,
        Err(e) => common::config_fatal!("{e}"),
    };
    let wakeup = wakeup(&config, &service);
    let spool = Spool::new(config.queue_dir());
    let mut p = match Pickup::new(spool, settings) {
        Ok(p) => p,
        Err(e) => common::fatal!("{}: {e}", config.queue_dir().join("maildrop").display()),
    };
    if let Err(e) = p.run(&listener, &stop, wakeup) {
        common::fatal!("{e}");
    }
}

/// The wakeup column of this service's master.cf line.
fn wakeup(cfg: &Config, service: &str) -> Duration {
    let path = cfg.dir().join("master.cf");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let dpl = cfg.int("default_process_limit").unwrap_or(100) as u32;
    common::mastercf::parse(&path.display().to_string(), &text, dpl)
        .ok()
        .and_then(|v| v.into_iter().find(|s| s.name == service))
        .map(|s| s.wakeup)
        .filter(|w| *w > 0)
        .map_or(DEFAULT_WAKEUP, Duration::from_secs)
}

/// The pickup service.
pub struct Pickup {
    spool: Spool,
    settings: Settings,
    maildrop: File,
    corrupt: File,
    qmgr: Option<UnixStream>,
    /// Queue files reserved ahead (`Spool::reserve_batch`).
    reserved: Vec<Reserved>,
    virtual_alias: common::virtual_alias::VirtualAlias,
}

impl Pickup {
    pub fn new(spool: Spool, settings: Settings) -> io::Result<Pickup> {
        let open = |q| spool.open_dir(q);
        let virtual_alias =
            common::virtual_alias::VirtualAlias::new(settings.virtual_alias.clone());
        Ok(Pickup {
            virtual_alias,
            maildrop: open(Queue::Maildrop)?,
            corrupt: open(Queue::Corrupt)?,
            spool,
            settings,
            qmgr: None,
            reserved: Vec::new(),
        })
    }

    /// Scan at start, then on every poke and every `wakeup`.
    pub fn run(
        &mut self,
        listener: &UnixListener,
        stop: &AtomicBool,
        wakeup: Duration,
    ) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let mut last_scan = Instant::now();
        self.scan(stop);
        while !stop.load(Ordering::Relaxed) {
            let mut fds = [nix::poll::PollFd::new(
                listener.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let mut poked = false;
            loop {
                match listener.accept() {
                    Ok(_) => poked = true, // the connection is dropped: the poke is all
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        warning!("accept on public/pickup: {e}");
                        break;
                    }
                }
            }
            if poked || last_scan.elapsed() >= wakeup {
                last_scan = Instant::now();
                self.scan(stop);
            }
        }
        Ok(())
    }

    /// Queue every complete file in maildrop/, oldest name first, until
    /// `stop` is set.
    pub fn scan(&mut self, stop: &AtomicBool) {
        let rd = match std::fs::read_dir(self.spool.dir(Queue::Maildrop)) {
            Ok(rd) => rd,
            Err(e) => {
                warning!("maildrop: {e}");
                return;
            }
        };
        let mut names = Vec::new();
        for e in rd.flatten() {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if name.starts_with(postdrop::FINAL_PREFIX) {
                names.push(name);
            } else if name.starts_with(postdrop::TEMP_PREFIX) {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().unwrap_or_default() > STALE_TEMPORARY);
                if old {
                    let _ = nix::unistd::unlinkat(
                        Some(std::os::fd::AsRawFd::as_raw_fd(&self.maildrop)),
                        name.as_str(),
                        nix::unistd::UnlinkatFlags::NoRemoveDir,
                    );
                }
            }
        }
        names.sort();
        for name in names {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.take(&name);
        }
    }

    /// Queue one maildrop file, or move it to corrupt/.
    pub fn take(&mut self, name: &str) {
        let file = match privilege::open_at(
            Some(&self.maildrop),
            Path::new(name),
            OFlag::O_RDONLY | OFlag::O_NONBLOCK,
            0,
        ) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return self.quarantine(name, "a symbolic link");
            }
            Err(e) => return warning!("maildrop/{name}: {e}"),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return warning!("maildrop/{name}: {e}"),
        };
        if !meta.is_file() {
            return self.quarantine(name, "not a regular file");
        }
        // One pickup per file, even while a reload overlaps an old pickup
        // with its successor: the lock is held until the file is removed,
        // and a file removed before we had the lock is done.
        let file = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        {
            Ok(f) => f,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return,
            Err((_, e)) => return warning!("maildrop/{name}: lock: {e}"),
        };
        match file.metadata() {
            Ok(m) if m.nlink() > 0 => {}
            _ => return,
        }
        match self.queue(&file, meta.uid()) {
            Ok((id, sender)) => {
                info!("{id}: uid={} from=<{sender}>", meta.uid());
                self.notify(&id);
                if let Err(e) = nix::unistd::unlinkat(
                    Some(std::os::fd::AsRawFd::as_raw_fd(&self.maildrop)),
                    name,
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                ) {
                    warning!("{id}: cannot remove maildrop/{name}: {e}");
                }
            }
            Err(PickupError::Corrupt(why)) => self.quarantine(name, &why),
            Err(PickupError::Io(e)) => warning!("maildrop/{name}: {e}; will try again"),
        }
    }

    /// Move a bad file to corrupt/ (removing it when even that fails).
    fn quarantine(&self, name: &str, why: &str) {
        for n in 0..10 {
            let target = if n == 0 {
                name.to_string()
            } else {
                format!("{name}.{n}")
            };
            match durable::rename_at(
                Some(&self.maildrop),
                Path::new(name),
                Some(&self.corrupt),
                Path::new(&target),
                Replace::No,
            ) {
                Ok(()) => {
                    let _ = privilege::sync_dir(&self.corrupt);
                    return warning!("maildrop/{name}: {why}; moved to corrupt/{target}");
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(e) => {
                    warning!("maildrop/{name}: {why}; cannot move it to corrupt/: {e}");
                    break;
                }
            }
        }
        let _ = nix::unistd::unlinkat(
            Some(std::os::fd::AsRawFd::as_raw_fd(&self.maildrop)),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        warning!("maildrop/{name}: removed");
    }

    /// Wake qmgr with the queue id (as smtpd does); never blocks.
    fn notify(&mut self, id: &QueueId) {
        let line = format!("{id}\n");
        for _ in 0..2 {
            if self.qmgr.is_none() {
                match UnixStream::connect(self.spool.private("qmgr")) {
                    Ok(s) => {
                        let _ = s.set_nonblocking(true);
                        self.qmgr = Some(s);
                    }
                    Err(_) => return, // qmgr's periodic scan finds it
                }
            }
            if let Some(c) = self.qmgr.as_mut() {
                match c.write(line.as_bytes()) {
                    Ok(_) => return,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => self.qmgr = None,
                }
            }
        }
    }

    /// Parse `file` (owned by `uid`) and write its queue file; the queue
    /// id and the envelope sender.
    pub fn queue(&mut self, file: &File, uid: u32) -> Result<(QueueId, String), PickupError> {
        let settings = self.settings.clone();
        let s = &settings;
        let mut r = Reader::new(
            BufReader::with_capacity(64 * 1024, file),
            Source::File,
            s.limits,
        );
        let mut sender = None;
        let mut full_name = None;
        let mut rcpts: Vec<String> = Vec::new();
        let mut extract = false;
        let mut notify = None;
        let mut head = Vec::new();
        let mut ended = false;
        loop {
            match r.next_record()? {
                Some(Record::Uid(u)) if u != uid => {
                    return Err(PickupError::Corrupt(format!(
                        "uid record {u} is not the file's owner {uid}"
                    )));
                }
                Some(Record::Uid(_)) => {}
                Some(Record::Sender(v)) => sender = Some(v),
                Some(Record::FullName(v)) => full_name = Some(v),
                Some(Record::Recipient(v)) => rcpts.push(v),
                Some(Record::Extract) => extract = true,
                Some(Record::Notify(n)) => notify = Notify::from_bits(n),
                Some(Record::Body(_)) => {}
                Some(Record::Data(d)) => {
                    head = d;
                    break;
                }
                Some(Record::End) | None => {
                    ended = true;
                    break;
                }
            }
        }
        // The header section, whole in memory (bounded).
        let end = loop {
            if let Some(end) = headers::header_end(&head, ended) {
                break end;
            }
            if head.len() >= HEADER_LIMIT {
                break head
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(head.len(), |i| i + 1);
            }
            match r.next_record()? {
                Some(Record::Data(d)) => head.extend_from_slice(&d),
                _ => ended = true,
            }
        };
        let fields = headers::fields(&head[..end]);
        let sender = qualify(sender.as_deref().unwrap_or_default(), &s.myorigin);
        let resent = fields
            .iter()
            .any(|f| f.name.to_ascii_lowercase().starts_with("resent-"));
        let (to, cc, bcc) = if resent {
            ("resent-to", "resent-cc", "resent-bcc")
        } else {
            ("to", "cc", "bcc")
        };
        if extract {
            for f in fields.iter().filter(|f| f.is(to) || f.is(cc) || f.is(bcc)) {
                rcpts.extend(headers::addresses(&f.value()));
            }
        }
        let mut recipients: Vec<String> = Vec::new();
        for r in rcpts {
            let q = qualify(&r, &s.myorigin);
            if !q.is_empty() && !recipients.iter().any(|x| x.eq_ignore_ascii_case(&q)) {
                recipients.push(q);
            }
        }
        if recipients.is_empty() {
            return Err(PickupError::Corrupt(
                "no recipient addresses found".to_string(),
            ));
        }
        if let Some(bad) = recipients
            .iter()
            .find(|r| r.len() > postdrop::maildrop::MAX_ADDRESS || r.chars().any(char::is_control))
        {
            return Err(PickupError::Corrupt(format!("bad recipient {bad:?}")));
        }
        // virtual_alias_maps, as smtpd applies it at RCPT (Postfix's
        // cleanup for both); a table that cannot be read now leaves the file
        // for a later scan.
        let (recipients, recipient_dsn): (Vec<String>, Vec<RecipientDsn>) = self
            .virtual_alias
            .rewrite_envelope(&recipients, notify)
            .map_err(|e| PickupError::Io(io::Error::other(e.to_string())))?
            .into_iter()
            .unzip();
        let env = Envelope {
            sender: sender.clone(),
            recipient_dsn,
            recipients,
            attrs: vec![("uid".into(), uid.to_string())],
            ..Default::default()
        };
        let mut w = self.writer(&env)?;
        let id = w.id().clone();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let date = common::log::rfc5322_date(now);
        w.write(
            format!(
                "Received: by {} ({}, from userid {uid})\r\n\tid {id}; {date}\r\n",
                s.myhostname, s.mail_name
            )
            .as_bytes(),
        )?;
        let has = |n: &str| fields.iter().any(|f| f.is(n));
        let mut out = Vec::with_capacity(end + 256);
        for f in &fields {
            if !(extract && f.is(bcc)) {
                out.extend_from_slice(&f.raw);
            }
        }
        // A last field without its line end gets one before ours.
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
        if !has("from") {
            out.extend_from_slice(from_field(&sender, full_name.as_deref()).as_bytes());
        }
        if !has("date") {
            out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
        }
        if !has("message-id") {
            out.extend_from_slice(
                format!(
                    "Message-ID: <{}.{id}@{}>\r\n",
                    common::log::compact_utc(now),
                    s.myhostname
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(&head[end..]);
        w.write(&out)?;
        drop(head);
        if !ended {
            copy_body(&mut r, &mut w)?;
        }
        let id = w.commit()?;
        Ok((id, sender))
    }
}

impl Pickup {
    /// A queue file for `env`: a reserved one (made in batches, so a burst
    /// of submissions costs one directory fsync per RESERVE messages).
    fn writer(&mut self, env: &Envelope) -> io::Result<QueueWriter> {
        self.reserved.retain(|r| r.age() < RESERVE_MAX_AGE);
        if self.reserved.is_empty() {
            self.reserved = self.spool.reserve_batch(RESERVE)?;
        }
        match self.reserved.pop() {
            Some(r) => self.spool.create_in(r, env),
            None => self.spool.create(env),
        }
    }
}

/// The rest of the message, record by record.
fn copy_body<R: io::Read>(r: &mut Reader<R>, w: &mut QueueWriter) -> Result<(), PickupError> {
    while let Some(rec) = r.next_record()? {
        if let Record::Data(d) = rec {
            w.write(&d)?;
        }
    }
    Ok(())
}

/// An address with @$myorigin when it has no domain; `<>` and "" are the
/// null sender.
pub fn qualify(addr: &str, myorigin: &str) -> String {
    let a = addr.trim();
    let a = a
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(a);
    if a.is_empty() || a.contains('@') {
        a.to_string()
    } else {
        format!("{a}@{myorigin}")
    }
}

/// `From: "Full Name" <sender>` (Postfix's header_from_format = standard).
fn from_field(sender: &str, full_name: Option<&str>) -> String {
    let sender = if sender.is_empty() {
        "MAILER-DAEMON"
    } else {
        sender
    };
    match full_name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => {
            let q = n.replace('\\', "\\\\").replace('"', "\\\"");
            format!("From: \"{q}\" <{sender}>\r\n")
        }
        None => format!("From: {sender}\r\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualify_and_from() {
        assert_eq!(qualify("joe", "h.example"), "joe@h.example");
        assert_eq!(qualify("<joe@x>", "h"), "joe@x");
        assert_eq!(qualify("<>", "h"), "");
        assert_eq!(
            from_field("joe@h", Some("Joe \"J\" Bloggs")),
            "From: \"Joe \\\"J\\\" Bloggs\" <joe@h>\r\n"
        );
        assert_eq!(from_field("", None), "From: MAILER-DAEMON\r\n");
    }

    #[test]
    fn defaults_match_the_parameter_table() {
        for (name, default) in postdrop::conf::DEFAULTS {
            let p = common::params::PARAMS
                .iter()
                .find(|p| p.name == *name)
                .unwrap_or_else(|| panic!("{name} is not in common::params"));
            assert_eq!(p.default, *default, "{name}");
        }
    }
}
