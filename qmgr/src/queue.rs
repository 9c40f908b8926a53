//! The active queue: what qmgr knows about each message it is delivering.
//!
//! Owns moving messages incoming -> active -> (removed | deferred), turning
//! recipients into jobs, collecting results, recording completions in the
//! queue file, backoff, expiry, and queueing bounces. Does not own talking to
//! agents (agents.rs) or the event loop (lib.rs).
//!
//! Durability: a recipient is marked done (fdatasync) before its message moves
//! on, except when every recipient is done, where the file is simply removed.
//! A bounce is committed to incoming/ before the bounced recipients are marked.
//! A crash anywhere re-delivers at most the recipients that were in flight.
//!
//! Diagnostics: `ID: from=<s>, size=N, nrcpt=N (queue active)`, `ID: removed`,
//! `ID: sender non-delivery notification: BOUNCEID`, corrupt files moved to
//! corrupt/ with a warning naming the queue id.

use std::collections::HashMap;
use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::addr::{Domains, Route};
use common::config::Config;
use common::ipc::{DeliverRecipient, DeliverRequest, RecipientResult, Status};
use common::spool::{Envelope, Queue, QueueFile, QueueId, Spool, SpoolError};
use common::{error, info, warning};

use crate::agents::Job;
use crate::bounce::{self, Failed};

/// Most recipients in one request to a delivery agent.
const RECIPIENTS_PER_JOB: usize = 50;

struct Active {
    qf: QueueFile,
    outstanding: usize,
    bounced: Vec<Failed>,
    bounced_idx: Vec<usize>,
    deferred: Vec<(usize, String)>,
}

/// Scheduling parameters, read once.
pub struct Settings {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub lifetime: Duration,
    pub bounce_lifetime: Duration,
    pub active_limit: usize,
    pub myhostname: String,
    pub mail_name: String,
    pub double_bounce: String,
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Result<Settings, common::config::ConfigError> {
        Ok(Settings {
            min_backoff: cfg.time("minimal_backoff_time")?,
            max_backoff: cfg.time("maximal_backoff_time")?,
            lifetime: cfg.time("maximal_queue_lifetime")?,
            bounce_lifetime: cfg.time("bounce_queue_lifetime")?,
            active_limit: cfg.int("qmgr_message_active_limit")? as usize,
            myhostname: cfg.get("myhostname"),
            mail_name: cfg.get("mail_name"),
            double_bounce: cfg.get("double_bounce_sender"),
        })
    }
}

pub struct QueueManager {
    pub spool: Spool,
    settings: Settings,
    domains: Domains,
    active: HashMap<String, Active>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl QueueManager {
    pub fn new(spool: Spool, settings: Settings, domains: Domains) -> QueueManager {
        QueueManager {
            spool,
            settings,
            domains,
            active: HashMap::new(),
        }
    }

    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// At start: whatever a previous qmgr left in active/ goes back to
    /// incoming/ (it will be delivered again), and old temporary files go.
    pub fn recover(&self) {
        match self.spool.list(Queue::Active) {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = self.spool.move_to(&id, Queue::Active, Queue::Incoming) {
                        error!("{id}: cannot move back to incoming: {e}");
                    }
                }
            }
            Err(e) => error!("cannot read active queue: {e}"),
        }
        if let Ok(n) = self
            .spool
            .remove_stale_temporaries(Duration::from_secs(6 * 3600))
        {
            if n > 0 {
                info!("removed {n} stale temporary files from incoming");
            }
        }
    }

    /// Take messages from incoming/ (all of them, up to the active limit).
    pub fn scan_incoming(&mut self, jobs: &mut Vec<Job>) {
        let ids = match self.spool.list(Queue::Incoming) {
            Ok(ids) => ids,
            Err(e) => {
                error!("cannot read incoming queue: {e}");
                return;
            }
        };
        for id in ids {
            if self.active.len() >= self.settings.active_limit {
                break;
            }
            self.activate(&id, Queue::Incoming, jobs);
        }
    }

    /// Take messages from deferred/ whose next attempt is due (mtime <= now).
    pub fn scan_deferred(&mut self, jobs: &mut Vec<Job>) {
        let ids = match self.spool.list(Queue::Deferred) {
            Ok(ids) => ids,
            Err(e) => {
                error!("cannot read deferred queue: {e}");
                return;
            }
        };
        let now = SystemTime::now();
        for id in ids {
            if self.active.len() >= self.settings.active_limit {
                break;
            }
            let due = fs::metadata(self.spool.path(Queue::Deferred, &id))
                .and_then(|m| m.modified())
                .map(|t| t <= now)
                .unwrap_or(false);
            if due {
                self.activate(&id, Queue::Deferred, jobs);
            }
        }
    }

    fn activate(&mut self, id: &QueueId, from: Queue, jobs: &mut Vec<Job>) {
        if self.active.contains_key(id.as_str()) {
            return;
        }
        let path = match self.spool.move_to(id, from, Queue::Active) {
            Ok(p) => p,
            Err(e) => {
                // Someone else (postsuper-like tool) moved it: not ours now.
                warning!("{id}: cannot move to active: {e}");
                return;
            }
        };
        let qf = match QueueFile::read(&path) {
            Ok(q) => q,
            Err(SpoolError::Corrupt(why)) => {
                warning!("{id}: {why}; moved to corrupt");
                if let Err(e) = self.spool.move_to(id, Queue::Active, Queue::Corrupt) {
                    error!("{id}: cannot move to corrupt: {e}");
                }
                return;
            }
            Err(SpoolError::Io(e)) => {
                error!("{id}: cannot read queue file: {e}");
                let _ = self.spool.move_to(id, Queue::Active, from);
                return;
            }
        };
        if from == Queue::Incoming {
            info!(
                "{id}: from=<{}>, size={}, nrcpt={} (queue active)",
                qf.sender,
                qf.msg_len,
                qf.recipients.len()
            );
        }
        let mut a = Active {
            qf,
            outstanding: 0,
            bounced: Vec::new(),
            bounced_idx: Vec::new(),
            deferred: Vec::new(),
        };
        let mut local = Vec::new();
        for i in a.qf.pending() {
            let addr = &a.qf.recipients[i].address;
            match self.domains.route(addr) {
                Route::Virtual | Route::System => local.push(DeliverRecipient {
                    index: i as u32,
                    address: addr.clone(),
                }),
                Route::Remote => {
                    let text = "delivery to remote domains (transport smtp) is not available in this version".to_string();
                    info!("{id}: to=<{addr}>, relay=none, delay=0, dsn=4.4.1, status=deferred ({text})");
                    a.deferred.push((i, text));
                }
            }
        }
        for chunk in local.chunks(RECIPIENTS_PER_JOB) {
            a.outstanding += 1;
            jobs.push(Job {
                req: DeliverRequest {
                    queue_id: id.to_string(),
                    sender: a.qf.sender.clone(),
                    arrival: a.qf.arrival,
                    recipients: chunk.to_vec(),
                },
            });
        }
        let idle = a.outstanding == 0;
        self.active.insert(id.to_string(), a);
        if idle {
            self.finish(id.as_str());
        }
    }

    /// A job's results came back.
    pub fn done(&mut self, queue_id: &str, results: Vec<RecipientResult>) {
        let Some(a) = self.active.get_mut(queue_id) else {
            warning!("{queue_id}: results for a message that is not active");
            return;
        };
        a.outstanding = a.outstanding.saturating_sub(1);
        let mut sent = Vec::new();
        for r in results {
            let i = r.index as usize;
            if i >= a.qf.recipients.len() {
                continue;
            }
            match r.status {
                Status::Sent => sent.push(i),
                Status::Deferred => a.deferred.push((i, r.text)),
                Status::Bounced => {
                    a.bounced.push(Failed {
                        address: a.qf.recipients[i].address.clone(),
                        dsn: r.dsn,
                        text: r.text,
                    });
                    a.bounced_idx.push(i);
                }
            }
        }
        if a.outstanding > 0 {
            // Other jobs of this message are still out: record these now.
            if let Err(e) = a.qf.mark_done(&sent) {
                error!("{queue_id}: cannot record delivered recipients: {e}");
            }
        } else {
            // Sent recipients are recorded in finish() only when the file lives on.
            a.qf.mark_done_in_memory(&sent);
            self.finish(queue_id);
        }
    }

    /// Every job of a message is back: remove it, or defer what is left.
    fn finish(&mut self, queue_id: &str) {
        let Some(mut a) = self.active.remove(queue_id) else {
            return;
        };
        let Some(id) = QueueId::parse(queue_id) else {
            return;
        };
        let now = now();
        let age = now.saturating_sub(a.qf.arrival);
        let lifetime = if a.qf.sender.is_empty() {
            self.settings.bounce_lifetime
        } else {
            self.settings.lifetime
        };
        if !a.deferred.is_empty() && age >= lifetime.as_secs() {
            for (i, text) in a.deferred.drain(..) {
                let address = a.qf.recipients[i].address.clone();
                info!("{id}: to=<{address}>, relay=none, delay={age}, dsn=4.4.7, status=expired, returned to sender");
                a.bounced.push(Failed {
                    address,
                    dsn: "4.4.7".into(),
                    text: format!(
                        "message expired after {} days in the queue: {text}",
                        age / 86400
                    ),
                });
                a.bounced_idx.push(i);
            }
        }
        if !a.bounced.is_empty() && !self.send_bounce(&id, &a) {
            // Could not queue the bounce: keep those recipients for later.
            for (f, i) in a.bounced.drain(..).zip(a.bounced_idx.drain(..)) {
                a.deferred.push((i, f.text));
            }
        }
        let path = self.spool.path(Queue::Active, &id);
        if a.deferred.is_empty() {
            match fs::remove_file(&path) {
                Ok(()) => info!("{id}: removed"),
                Err(e) => error!("{id}: cannot remove queue file: {e}"),
            }
            return;
        }
        let mut done_idx: Vec<usize> = (0..a.qf.recipients.len())
            .filter(|i| a.qf.recipients[*i].done)
            .collect();
        done_idx.extend(&a.bounced_idx);
        if let Err(e) = a.qf.mark_done(&done_idx) {
            error!("{id}: cannot record finished recipients: {e}");
        }
        let backoff =
            Duration::from_secs(age).clamp(self.settings.min_backoff, self.settings.max_backoff);
        let next = SystemTime::now() + backoff;
        let r = fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(next));
        if let Err(e) = r {
            warning!("{id}: cannot set next attempt time: {e}");
        }
        if let Err(e) = self.spool.move_to(&id, Queue::Active, Queue::Deferred) {
            error!("{id}: cannot move to deferred: {e}");
        }
    }

    /// Queue a non-delivery notification to the sender. False if it could not
    /// be queued (try again later). Null and double-bounce senders get none.
    fn send_bounce(&self, id: &QueueId, a: &Active) -> bool {
        let sender = &a.qf.sender;
        let (local, _) = common::addr::split(sender);
        if sender.is_empty() || local.eq_ignore_ascii_case(&self.settings.double_bounce) {
            for f in &a.bounced {
                info!(
                    "{id}: undeliverable notice for <{}> not returned: null sender",
                    f.address
                );
            }
            return true;
        }
        let body = bounce::build(
            &a.qf,
            id.as_str(),
            &self.settings.myhostname,
            &self.settings.mail_name,
            now(),
            &a.bounced,
        );
        let env = Envelope {
            sender: String::new(),
            recipients: vec![sender.clone()],
            attrs: vec![
                ("protocol".into(), "bounce".into()),
                ("origin_queue_id".into(), id.to_string()),
            ],
        };
        let r = self.spool.create(&env).and_then(|mut w| {
            w.write(&body)?;
            w.commit()
        });
        match r {
            Ok(bid) => {
                info!("{id}: sender non-delivery notification: {bid}");
                true
            }
            Err(e) => {
                error!("{id}: cannot queue non-delivery notification: {e}");
                false
            }
        }
    }
}
