//! One delivery request: validate it, deliver each recipient, report.
//!
//! Standards: RFC 5321 4.4 (Return-Path at final delivery), RFC 3463 codes.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use common::config::Config;
use common::ipc::{DeliverRequest, RecipientResult, Status};
use common::privilege;
use common::spool::{Queue, QueueFile, QueueId, Spool, SpoolError};
use common::users::UserTable;
use common::{info, warning};
use mailstore::{LfReader, Maildir};

use crate::resolve::{self, Mailbox, Unresolved};

/// Longest header section scanned for loop detection.
const HEADER_SCAN: usize = 256 * 1024;

pub struct Agent {
    pub config: Config,
    pub users: UserTable,
    pub spool: Spool,
    /// Maildirs created or seen by this process: no mkdir for them again.
    pub known_maildirs: std::collections::HashSet<std::path::PathBuf>,
}

impl Agent {
    /// Deliver a request. Err means the request itself is bad (close the
    /// connection); per-recipient trouble is in the results.
    pub fn deliver(&mut self, req: &DeliverRequest) -> Result<Vec<RecipientResult>, String> {
        let id = QueueId::parse(&req.queue_id)
            .ok_or_else(|| format!("bad queue id {:?}", req.queue_id))?;
        let path = self.spool.path(Queue::Active, &id);
        let qf = match QueueFile::read(&path) {
            Ok(q) => q,
            Err(e) => {
                // The queue file is gone or bad: every recipient is deferred;
                // qmgr deals with the file itself.
                let why = match e {
                    SpoolError::Io(e) => format!("cannot read queue file: {e}"),
                    SpoolError::Corrupt(m) => m,
                };
                warning!("{id}: {why}");
                return Ok(req
                    .recipients
                    .iter()
                    .map(|r| RecipientResult {
                        index: r.index,
                        status: Status::Deferred,
                        dsn: "4.3.0".into(),
                        text: why.clone(),
                    })
                    .collect());
            }
        };
        let mut results = Vec::with_capacity(req.recipients.len());
        let headers = scan_headers(&qf).unwrap_or_default();
        for r in &req.recipients {
            let Some(rec) = qf.recipients.get(r.index as usize) else {
                return Err(format!("{id}: recipient index {} out of range", r.index));
            };
            if rec.address != r.address {
                return Err(format!(
                    "{id}: recipient {} is not {:?}",
                    r.index, r.address
                ));
            }
            let (status, dsn, text, relay) = self.one(&qf, &rec.address, &headers);
            let delay = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
                - qf.arrival as f64;
            let word = match status {
                Status::Sent => "sent",
                Status::Deferred => "deferred",
                Status::Bounced => "bounced",
            };
            info!(
                "{id}: to=<{}>, relay={relay}, delay={:.2}, dsn={dsn}, status={word} ({text})",
                rec.address,
                delay.max(0.0)
            );
            results.push(RecipientResult {
                index: r.index,
                status,
                dsn: dsn.into(),
                text,
            });
        }
        Ok(results)
    }

    fn one(
        &mut self,
        qf: &QueueFile,
        rcpt: &str,
        headers: &Headers,
    ) -> (Status, &'static str, String, &'static str) {
        let mbox = match resolve::resolve(&self.config, &mut self.users, rcpt) {
            Ok(m) => m,
            Err(Unresolved::UnknownUser(t)) => return (Status::Bounced, "5.1.1", t, "local"),
            Err(Unresolved::NotLocal(t)) => return (Status::Bounced, "5.3.0", t, "local"),
            Err(Unresolved::Temporary(t)) => return (Status::Deferred, "4.3.0", t, "local"),
        };
        let limit = self.config.int("hopcount_limit").unwrap_or(50) as usize;
        if headers.received > limit {
            return (
                Status::Bounced,
                "5.4.6",
                format!(
                    "mail forwarding loop ({} Received: headers)",
                    headers.received
                ),
                mbox.relay,
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
                mbox.relay,
            );
        }
        let known = self.known_maildirs.contains(&mbox.path);
        match write_mailbox(&mbox, qf, rcpt, known) {
            Ok(()) => {
                if mbox.maildir && !known && self.known_maildirs.len() < 100_000 {
                    self.known_maildirs.insert(mbox.path.clone());
                }
                let what = if mbox.maildir {
                    "delivered to maildir"
                } else {
                    "delivered to mailbox"
                };
                (Status::Sent, "2.0.0", what.into(), mbox.relay)
            }
            Err(e) => {
                self.known_maildirs.remove(&mbox.path);
                let dsn = match e.raw_os_error() {
                    Some(28) => "4.3.1",  // ENOSPC
                    Some(122) => "4.2.2", // EDQUOT
                    _ => "4.2.0",
                };
                (
                    Status::Deferred,
                    dsn,
                    format!("cannot write {}: {e}", mbox.path.display()),
                    mbox.relay,
                )
            }
        }
    }
}

/// Create a virtual user's home (owned by them) when it does not exist.
fn ensure_home(home: &Path, uid: u32, gid: u32) -> io::Result<()> {
    if home.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(home.parent().unwrap_or(home))?;
    match fs::DirBuilder::new().mode(0o700).create(home) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    if privilege::is_root() {
        std::os::unix::fs::chown(home, Some(uid), Some(gid))?;
    }
    Ok(())
}

fn write_mailbox(mbox: &Mailbox, qf: &QueueFile, rcpt: &str, known: bool) -> io::Result<()> {
    if let (Some(home), false) = (&mbox.home, known) {
        ensure_home(home, mbox.uid, mbox.gid)?;
    }
    let mut prefix = format!("Return-Path: <{}>\n", qf.sender);
    prefix.push_str(&format!("Delivered-To: {rcpt}\n"));
    // Open the queue file before switching: active/ is mail_owner's, 0700.
    let msg = qf.message()?;
    privilege::as_user(mbox.uid, mbox.gid, move || {
        if mbox.maildir {
            // A known Maildir that was removed meanwhile fails in begin();
            // the delivery is deferred and the next attempt creates it.
            let md = if known {
                Maildir::existing(&mbox.path)
            } else {
                Maildir::create(&mbox.path)?
            };
            let mut d = md.begin()?;
            d.write(prefix.as_bytes())?;
            let mut lf = LfReader::new(msg);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = lf.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                d.write(&buf[..n])?;
            }
            d.commit().map(drop)
        } else {
            if let Some(parent) = mbox.path.parent() {
                fs::create_dir_all(parent)?;
            }
            let date = mbox_date(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
            );
            let mut message = prefix.as_bytes().chain(LfReader::new(msg));
            mailstore::mbox::deliver(&mbox.path, &qf.sender, &date, &mut message)
        }
    })
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
    let mut buf = Vec::new();
    qf.message()?
        .take(HEADER_SCAN as u64)
        .read_to_end(&mut buf)?;
    let mut h = Headers::default();
    for line in buf.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with(b"received:") {
            h.received += 1;
        } else if lower.starts_with(b"delivered-to:") {
            h.delivered_to
                .push(String::from_utf8_lossy(&line[13..]).trim().to_string());
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    #[test]
    fn mbox_dates() {
        assert_eq!(super::mbox_date(1_700_000_000), "Tue Nov 14 22:13:20 2023");
        assert_eq!(super::mbox_date(0), "Thu Jan  1 00:00:00 1970");
    }
}
