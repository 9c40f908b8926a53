//! The active queue: what qmgr knows about each message it is delivering.
//!
//! Owns moving messages incoming -> active -> (removed | deferred), turning
//! recipients into jobs, collecting results, recording completions in the
//! queue file, backoff, expiry, and queueing bounces. Does not own talking to
//! agents (agents.rs) or the event loop (lib.rs).
//!
//! Durability: a recipient is marked done (fdatasync) before its message moves
//! on, except when every recipient is done, where the file is simply removed.
//! A bounce is committed to incoming/ before the bounced recipients are marked,
//! and a success notice before the recipients it reports (those stay pending
//! on disk until the message's last job is back; a notice that cannot be
//! queued defers them, as Postfix's "defer if the success can't be
//! reported"). A crash anywhere re-delivers at most the recipients that were
//! in flight or waiting for their success notice. A delay warning is
//! committed before the queue file records it ('W'), so it goes once, a
//! crash between the two aside.
//!
//! Notifications (RFC 3461 and Postfix): failures are returned to the
//! sender unless the recipient's NOTIFY leaves out FAILURE (NEVER included);
//! a success notice ("delivered" by posthorn-local, "relayed" to a server
//! without DSN; none after a server with DSN took NOTIFY on) only for
//! NOTIFY=SUCCESS; one delay warning per message once it has waited
//! delay_warning_time (0: never), for the deferred recipients without
//! NOTIFY or with DELAY. A failed or expired notification (null sender) is
//! reported once to postmaster from double_bounce_sender@myhostname (a
//! double bounce); failures of that sender's mail are dropped: no loop.
//!
//! Scheduling (Postfix's qmgr): a deferred message waits in deferred/ with its
//! next attempt time as the file's mtime. That wait is the message's age,
//! kept between minimal_backoff_time and maximal_backoff_time, so the gap
//! between attempts doubles from the minimum up to the maximum (`backoff`).
//! A message still undeliverable when it is older than maximal_queue_lifetime
//! (bounce_queue_lifetime for the null sender) is returned (`expired`). Time
//! comes from the manager's clock, which tests set.
//!
//! Diagnostics: `ID: from=<s>, size=N, nrcpt=N (queue active)`, `ID: removed`,
//! `ID: sender non-delivery notification: BOUNCEID`, `ID: sender delay
//! notification: NOTICEID`, `ID: sender delivery status notification:
//! NOTICEID` (Postfix's lines), `ID: to=<r>, ...,
//! status=expired, returned to sender`; failures are `QmgrError`s, one line
//! each (corrupt files moved to corrupt/ with a warning naming the queue id).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::addr::{Domains, Route};
use common::config::Config;
use common::dsn::Notify;
use common::info;
use common::ipc::{DeliverRecipient, DeliverRequest, Handoff, RecipientResult, Status};
use common::spool::{DelayWarning, Envelope, Queue, QueueFile, QueueId, Spool, SpoolError};

use crate::agents::{Job, Transport};
use crate::bounce::{self, Action, Entry, Kind, Report};
use crate::control::{self, Op, Reply};
use crate::error::QmgrError;
use crate::transport::{self, TransportMaps};

/// Most recipients in one request to a delivery agent.
const RECIPIENTS_PER_JOB: usize = 50;

struct Active {
    qf: QueueFile,
    outstanding: usize,
    /// Recipients that failed for good (a notice only for those whose
    /// NOTIFY asks for failures: `bounce_entries`).
    bounced: Vec<Entry>,
    bounced_idx: Vec<usize>,
    /// Sent recipients whose sender asked NOTIFY=SUCCESS: done once the
    /// notice is queued.
    succeeded: Vec<Entry>,
    succeeded_idx: Vec<usize>,
    /// Recipients to try again: (index, status, reason).
    deferred: Vec<Deferral>,
}

/// A recipient to try again.
struct Deferral {
    index: usize,
    /// RFC 3463 status (4.x.x).
    status: String,
    text: String,
}

/// Scheduling parameters, read once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// queue_run_delay: how often deferred/ is scanned.
    pub run_delay: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub lifetime: Duration,
    pub bounce_lifetime: Duration,
    /// delay_warning_time: when a still deferred message's sender is
    /// warned; zero for never.
    pub delay_warning: Duration,
    pub active_limit: usize,
    pub myhostname: String,
    pub mail_name: String,
    pub double_bounce: String,
    /// relayhost: the next hop of mail for other domains (empty: their MX).
    pub relayhost: String,
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Result<Settings, common::config::ConfigError> {
        Ok(Settings {
            run_delay: cfg.time("queue_run_delay")?,
            min_backoff: cfg.time("minimal_backoff_time")?,
            max_backoff: cfg.time("maximal_backoff_time")?,
            lifetime: cfg.time("maximal_queue_lifetime")?,
            bounce_lifetime: cfg.time("bounce_queue_lifetime")?,
            // Postfix's unit for a bare number here is hours.
            delay_warning: cfg.time_with_unit("delay_warning_time", "h")?,
            active_limit: cfg.int("qmgr_message_active_limit")? as usize,
            myhostname: cfg.get("myhostname"),
            mail_name: cfg.get("mail_name"),
            double_bounce: cfg.get("double_bounce_sender"),
            relayhost: {
                let v = cfg.get("relayhost").trim().to_string();
                if !v.is_empty() && common::addr::NextHop::parse(&v, 25).is_none() {
                    return Err(cfg.invalid(
                        "relayhost",
                        format!("{v:?} is not [host]:port, host:port or host"),
                    ));
                }
                v
            },
        })
    }
}

/// How long to wait before the next attempt of a message `age` old: its age,
/// but at least `min` and at most `max` (Postfix's qmgr). Attempts made on
/// time are therefore `min` apart at first, then the gap doubles (the age
/// doubles with each wait as long as the wait is the age) until it is `max`.
/// When `max` is below `min`, `max` wins (no panic on a bad main.cf).
pub fn backoff(age: Duration, min: Duration, max: Duration) -> Duration {
    age.max(min).min(max)
}

/// When to try a message that arrived at `arrival` (unix seconds) again,
/// after a failed attempt at `now`.
pub fn next_attempt(arrival: u64, now: SystemTime, s: &Settings) -> SystemTime {
    let age = Duration::from_secs(unix(now).saturating_sub(arrival));
    now + backoff(age, s.min_backoff, s.max_backoff)
}

/// A deferred message is due when its next attempt time (its file's mtime)
/// has come.
pub fn due(mtime: SystemTime, now: SystemTime) -> bool {
    mtime <= now
}

/// Has a message that arrived at `arrival` outlived its queue lifetime at
/// `now`? Bounces (null sender) have their own, usually shorter, lifetime.
pub fn expired(arrival: u64, now: SystemTime, null_sender: bool, s: &Settings) -> bool {
    let lifetime = if null_sender {
        s.bounce_lifetime
    } else {
        s.lifetime
    };
    unix(now).saturating_sub(arrival) >= lifetime.as_secs()
}

/// An `error:` or `retry:` text of transport_maps: its leading enhanced
/// status code (`5.1.1 text`, its class matching `default`'s) or `default`,
/// and the rest.
fn status_and_text(text: &str, default: &str) -> (String, String) {
    if let Some((code, rest)) = text.split_once(' ') {
        let parts: Vec<&str> = code.split('.').collect();
        let numeric = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        if numeric && code.as_bytes()[0] == default.as_bytes()[0] {
            return (code.to_string(), rest.trim().to_string());
        }
    }
    (default.to_string(), text.to_string())
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

pub struct QueueManager {
    pub spool: Spool,
    settings: Settings,
    domains: Domains,
    active: HashMap<String, Active>,
    clock: Box<dyn Fn() -> SystemTime>,
    /// Messages this manager queued itself (bounces) since the last look.
    pub queued_here: Vec<QueueId>,
    /// master.cf has an smtp service (posthorn-smtp) for other domains.
    pub smtp: bool,
    /// transport_maps.
    pub transport: TransportMaps,
    /// Operations asked (posthorn queue) for messages in flight: applied
    /// when their deliveries are back (`retire`).
    after: HashMap<String, Op>,
    /// virtual_alias_maps and virtual_alias_domains: applied to the copies
    /// local delivery forwards; a recipient left in a virtual alias domain
    /// is returned (Postfix's trivial-rewrite sends it to the error
    /// transport). None: no virtual aliases (unit tests).
    pub virtual_alias: Option<common::virtual_alias::VirtualAlias>,
}

impl QueueManager {
    pub fn new(spool: Spool, settings: Settings, domains: Domains) -> QueueManager {
        QueueManager {
            spool,
            settings,
            domains,
            active: HashMap::new(),
            clock: Box::new(SystemTime::now),
            queued_here: Vec::new(),
            smtp: false,
            transport: TransportMaps::default(),
            after: HashMap::new(),
            virtual_alias: None,
        }
    }

    /// The same manager with another clock (tests move time forward).
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + 'static) -> QueueManager {
        self.clock = Box::new(clock);
        self
    }

    fn now(&self) -> SystemTime {
        (self.clock)()
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
                    if let Err(source) = self.spool.move_to(&id, Queue::Active, Queue::Incoming) {
                        QmgrError::Recover { id, source }.log();
                    }
                }
            }
            Err(source) => QmgrError::ListQueue {
                queue: Queue::Active.name(),
                source,
            }
            .log(),
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

    /// An administrator's operation (control.rs): at once for a message no
    /// delivery holds, after its deliveries for one in flight. A requeued
    /// message is named in `queued_here`, to be taken now.
    pub fn control(&mut self, id: &QueueId, op: Op) -> Reply {
        if self.active.contains_key(id.as_str()) {
            if op == Op::Release {
                return Reply::None;
            }
            self.after.insert(id.to_string(), op);
            return Reply::Later;
        }
        match control::apply(&self.spool, id, op, false) {
            Ok(Some(_)) => {
                info!("{id}: {}", op.logged());
                if op == Op::Requeue {
                    self.queued_here.push(id.clone());
                }
                Reply::Ok
            }
            Ok(None) => Reply::None,
            Err(source) => {
                QmgrError::Control {
                    id: id.clone(),
                    op: op.word(),
                    source,
                }
                .log();
                Reply::Error
            }
        }
    }

    /// Take messages from incoming/ (all of them, up to the active limit).
    pub fn scan_incoming(&mut self, jobs: &mut Vec<Job>) {
        let ids = match self.spool.list(Queue::Incoming) {
            Ok(ids) => ids,
            Err(source) => {
                QmgrError::ListQueue {
                    queue: Queue::Incoming.name(),
                    source,
                }
                .log();
                return;
            }
        };
        for id in ids {
            if self.active.len() >= self.settings.active_limit {
                break;
            }
            if let Err(e) = self.activate(&id, Queue::Incoming, jobs) {
                e.log();
            }
        }
    }

    /// Take the named messages from incoming/ (smtpd names what it queued
    /// in its wake-up): no directory scan. Ids that are not complete files
    /// in incoming/ are ignored (the periodic scan finds anything missed).
    /// Returns false when the active limit left some behind.
    pub fn take_incoming(&mut self, ids: &mut Vec<QueueId>, jobs: &mut Vec<Job>) -> bool {
        for id in ids.drain(..) {
            if self.active.len() >= self.settings.active_limit {
                return false;
            }
            if !self.spool.complete(&id) {
                continue;
            }
            if let Err(e) = self.activate(&id, Queue::Incoming, jobs) {
                e.log();
            }
        }
        true
    }

    /// Take messages from deferred/ whose next attempt is due (mtime <= now).
    /// `all`: every deferred message, due or not (`posthorn flush`).
    pub fn scan_deferred(&mut self, jobs: &mut Vec<Job>, all: bool) {
        let ids = match self.spool.list(Queue::Deferred) {
            Ok(ids) => ids,
            Err(source) => {
                QmgrError::ListQueue {
                    queue: Queue::Deferred.name(),
                    source,
                }
                .log();
                return;
            }
        };
        let now = self.now();
        for id in ids {
            if self.active.len() >= self.settings.active_limit {
                break;
            }
            // Gone or unreadable: not due (whoever moved it owns it now).
            let is_due = fs::metadata(self.spool.path(Queue::Deferred, &id))
                .and_then(|m| m.modified())
                .is_ok_and(|t| all || due(t, now));
            if is_due {
                if let Err(e) = self.activate(&id, Queue::Deferred, jobs) {
                    e.log();
                }
            }
        }
    }

    fn activate(
        &mut self,
        id: &QueueId,
        from: Queue,
        jobs: &mut Vec<Job>,
    ) -> Result<(), QmgrError> {
        if self.active.contains_key(id.as_str()) {
            return Ok(());
        }
        // Failing here means someone else (a postsuper-like tool) moved it: not ours now.
        let path = self
            .spool
            .move_to(id, from, Queue::Active)
            .map_err(|source| QmgrError::Activate {
                id: id.clone(),
                source,
            })?;
        let qf = match QueueFile::read(&path) {
            Ok(q) => q,
            Err(SpoolError::Corrupt(why)) => {
                QmgrError::Corrupt {
                    id: id.clone(),
                    why,
                }
                .log();
                return self
                    .spool
                    .move_to(id, Queue::Active, Queue::Corrupt)
                    .map(drop)
                    .map_err(|source| QmgrError::Quarantine {
                        id: id.clone(),
                        source,
                    });
            }
            Err(SpoolError::Io(source)) => {
                // Back where it came from, to be tried at the next scan.
                let _ = self.spool.move_to(id, Queue::Active, from);
                return Err(QmgrError::ReadQueueFile {
                    id: id.clone(),
                    source,
                });
            }
        };
        if from == Queue::Incoming {
            info!(
                "{id}: from=<{}>, size={}, nrcpt={} (queue active)",
                qf.sender,
                qf.message_size(),
                qf.recipients.len()
            );
        }
        let mut a = Active {
            qf,
            outstanding: 0,
            bounced: Vec::new(),
            bounced_idx: Vec::new(),
            succeeded: Vec::new(),
            succeeded_idx: Vec::new(),
            deferred: Vec::new(),
        };
        let mut local = Vec::new();
        // Other destinations, a job per next hop (one SMTP session each), in
        // the order they first appear.
        let mut remote: Vec<(String, Vec<DeliverRecipient>)> = Vec::new();
        for i in a.qf.pending() {
            let addr = &a.qf.recipients[i].address;
            let r = DeliverRecipient {
                index: i as u32,
                address: addr.clone(),
            };
            // A virtual alias domain's address that was not rewritten (mail
            // from pickup or a forward naming no entry): nobody there.
            if let Some(v) = self.virtual_alias.as_mut() {
                if v.is_alias_domain(common::addr::split(addr).1) {
                    let (dsn, text) = (
                        "5.1.1",
                        format!("<{addr}>: User unknown in virtual alias table"),
                    );
                    info!("{id}: to=<{addr}>, relay=none, delay=0, dsn={dsn}, status=bounced ({text})");
                    a.bounced.push(Entry {
                        address: addr.clone(),
                        dsn: a.qf.recipients[i].dsn.clone(),
                        action: Action::Failed,
                        status: dsn.into(),
                        text,
                    });
                    a.bounced_idx.push(i);
                    continue;
                }
            }
            let nexthop = match self.transport.lookup(addr) {
                Some(transport::Route::Local) => None,
                Some(transport::Route::Smtp(hop)) => {
                    Some(hop.unwrap_or_else(|| self.default_nexthop(addr)))
                }
                Some(transport::Route::Error(text)) => {
                    let (dsn, text) = status_and_text(&text, "5.0.0");
                    info!("{id}: to=<{addr}>, relay=none, delay=0, dsn={dsn}, status=bounced ({text})");
                    a.bounced.push(Entry {
                        address: addr.clone(),
                        dsn: a.qf.recipients[i].dsn.clone(),
                        action: Action::Failed,
                        status: dsn,
                        text,
                    });
                    a.bounced_idx.push(i);
                    continue;
                }
                Some(transport::Route::Retry(text)) => {
                    let (dsn, text) = status_and_text(&text, "4.0.0");
                    info!("{id}: to=<{addr}>, relay=none, delay=0, dsn={dsn}, status=deferred ({text})");
                    a.deferred.push(Deferral {
                        index: i,
                        status: dsn,
                        text,
                    });
                    continue;
                }
                None => match self.domains.route(addr) {
                    Route::Virtual | Route::System => None,
                    Route::Remote => Some(self.default_nexthop(addr)),
                },
            };
            match nexthop {
                None => local.push(r),
                Some(hop) if self.smtp => match remote.iter_mut().find(|(h, _)| *h == hop) {
                    Some((_, v)) => v.push(r),
                    None => remote.push((hop, vec![r])),
                },
                Some(_) => {
                    let text = "no smtp service in master.cf for other domains".to_string();
                    info!("{id}: to=<{addr}>, relay=none, delay=0, dsn=4.4.1, status=deferred ({text})");
                    a.deferred.push(Deferral {
                        index: i,
                        status: "4.4.1".into(),
                        text,
                    });
                }
            }
        }
        let batches = local
            .chunks(RECIPIENTS_PER_JOB)
            .map(|c| (Transport::Local, String::new(), c))
            .chain(remote.iter().flat_map(|(hop, v)| {
                v.chunks(RECIPIENTS_PER_JOB)
                    .map(|c| (Transport::Smtp, hop.clone(), c))
            }));
        for (transport, nexthop, chunk) in batches {
            a.outstanding += 1;
            jobs.push(Job {
                req: DeliverRequest {
                    queue_id: id.to_string(),
                    sender: a.qf.sender.clone(),
                    arrival: a.qf.arrival,
                    recipients: chunk.to_vec(),
                    nexthop,
                },
                transport,
            });
        }
        let idle = a.outstanding == 0;
        self.active.insert(id.to_string(), a);
        if idle {
            self.finish(id.as_str());
        }
        Ok(())
    }

    /// The next hop of a recipient no transport_maps entry names: relayhost,
    /// else the recipient's domain (its MX hosts).
    fn default_nexthop(&self, addr: &str) -> String {
        if !self.settings.relayhost.is_empty() {
            return self.settings.relayhost.clone();
        }
        addr.rsplit_once('@')
            .map_or("", |(_, d)| d)
            .trim_end_matches('.')
            .to_ascii_lowercase()
    }

    /// A job's results came back.
    pub fn done(&mut self, queue_id: &str, results: Vec<RecipientResult>) {
        let Some(a) = self.active.get_mut(queue_id) else {
            QmgrError::NotActive {
                id: queue_id.to_string(),
            }
            .log();
            return;
        };
        a.outstanding = a.outstanding.saturating_sub(1);
        let mut sent = Vec::new();
        for mut r in results {
            let i = r.index as usize;
            let Some(rcpt) = a.qf.recipients.get(i) else {
                continue;
            };
            if r.status == Status::Sent && !r.forward.is_empty() {
                // Local delivery's forwards (aliases, .forward): a new
                // message, durable before this recipient is recorded done.
                match forward(
                    &self.spool,
                    self.virtual_alias.as_mut(),
                    queue_id,
                    &a.qf,
                    &rcpt.address,
                    &r.forward,
                ) {
                    Ok(fid) => {
                        let delay = unix((self.clock)()).saturating_sub(a.qf.arrival);
                        for to in &r.forward {
                            info!(
                                "{queue_id}: to=<{to}>, orig_to=<{}>, relay=local, delay={delay}, dsn=2.0.0, status=sent (forwarded as {fid})",
                                rcpt.address
                            );
                        }
                        self.queued_here.push(fid);
                    }
                    Err(source) => {
                        let e = QmgrError::Forward {
                            id: QueueId::parse(queue_id).unwrap_or_else(QueueId::generate),
                            rcpt: rcpt.address.clone(),
                            source,
                        };
                        e.log();
                        r.status = Status::Deferred;
                        r.dsn = "4.3.0".into();
                        r.text = e.to_string();
                    }
                }
            }
            let entry = |action| Entry {
                address: rcpt.address.clone(),
                dsn: rcpt.dsn.clone(),
                action,
                status: r.dsn.clone(),
                text: r.text.clone(),
            };
            match r.status {
                // RFC 3461 5.2: a server with DSN took NOTIFY on; the
                // notice is its to send.
                Status::Sent if rcpt.dsn.wants(Notify::SUCCESS) && r.handoff != Handoff::Passed => {
                    let action = match r.handoff {
                        Handoff::Relayed => Action::Relayed,
                        _ => Action::Delivered,
                    };
                    a.succeeded.push(entry(action));
                    a.succeeded_idx.push(i);
                }
                Status::Sent => sent.push(i),
                Status::Deferred => a.deferred.push(Deferral {
                    index: i,
                    status: r.dsn,
                    text: r.text,
                }),
                Status::Bounced => {
                    a.bounced.push(entry(Action::Failed));
                    a.bounced_idx.push(i);
                }
            }
        }
        if a.outstanding > 0 {
            // Other jobs of this message are still out: record these now.
            if let Err(source) = a.qf.mark_done(&sent) {
                if let Some(id) = QueueId::parse(queue_id) {
                    QmgrError::RecordDelivered { id, source }.log();
                }
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
        let now = self.now();
        if !a.deferred.is_empty()
            && expired(a.qf.arrival, now, a.qf.sender.is_empty(), &self.settings)
        {
            let age = unix(now).saturating_sub(a.qf.arrival);
            for d in a.deferred.drain(..) {
                let rcpt = &a.qf.recipients[d.index];
                // As Postfix: the status of the last deferral (4.2.2 for a
                // full mailbox), else RFC 3463's 4.4.7 (delivery time expired).
                let status = if d.status.starts_with("4.") {
                    d.status.clone()
                } else {
                    "4.4.7".to_string()
                };
                info!("{id}: to=<{}>, relay=none, delay={age}, dsn={status}, status=expired, returned to sender", rcpt.address);
                a.bounced.push(Entry {
                    address: rcpt.address.clone(),
                    dsn: rcpt.dsn.clone(),
                    action: Action::Failed,
                    status,
                    text: format!(
                        "message expired after {} days in the queue: {}",
                        age / 86400,
                        d.text
                    ),
                });
                a.bounced_idx.push(d.index);
            }
        }
        if !a.bounced.is_empty() {
            if let Err(e) = self.send_bounce(&id, &a, now) {
                e.log();
                // Could not queue the bounce: keep those recipients for later.
                for (f, i) in a.bounced.drain(..).zip(a.bounced_idx.drain(..)) {
                    a.deferred.push(Deferral {
                        index: i,
                        status: f.status,
                        text: f.text,
                    });
                }
            }
        }
        if !a.succeeded.is_empty() {
            let entries = std::mem::take(&mut a.succeeded);
            let idx = std::mem::take(&mut a.succeeded_idx);
            match self.send_notice(&id, &a, Kind::Success, &entries, now) {
                Ok(()) => a.qf.mark_done_in_memory(&idx),
                Err(e) => {
                    e.log();
                    // Postfix: defer when the success cannot be reported.
                    for (f, i) in entries.into_iter().zip(idx) {
                        a.deferred.push(Deferral {
                            index: i,
                            status: "4.3.0".into(),
                            text: format!("delivered, but the success notice failed: {}", f.text),
                        });
                    }
                }
            }
        }
        self.delay_warning(&id, &mut a, now);
        if let Err(e) = self.retire(&id, a, now) {
            e.log();
        }
    }

    /// The delay warning (Postfix's defer service): once a message still
    /// deferred is delay_warning_time old, its sender hears once about the
    /// deferred recipients that did not ask for silence (NOTIFY without
    /// DELAY), and the queue file records it. A version 1 file (nowhere to
    /// record it) gets none; one that cannot be queued is tried at the next
    /// attempt.
    fn delay_warning(&mut self, id: &QueueId, a: &mut Active, now: SystemTime) {
        let warn = self.settings.delay_warning;
        let age = unix(now).saturating_sub(a.qf.arrival);
        if a.deferred.is_empty()
            || warn.is_zero()
            || age < warn.as_secs()
            || a.qf.warning != DelayWarning::Pending
            || self.no_notices(&a.qf.sender)
        {
            return;
        }
        let entries: Vec<Entry> = a
            .deferred
            .iter()
            .filter_map(|d| {
                let rcpt = &a.qf.recipients[d.index];
                rcpt.dsn.wants(Notify::DELAY).then(|| Entry {
                    address: rcpt.address.clone(),
                    dsn: rcpt.dsn.clone(),
                    action: Action::Delayed,
                    // A deferral is a 4.x.x status (a bounce that could not
                    // be queued keeps its 5.x.x reason, not its class).
                    status: format!("4{}", d.status.get(1..).unwrap_or(".0.0")),
                    text: d.text.clone(),
                })
            })
            .collect();
        if !entries.is_empty() {
            if let Err(e) = self.send_notice(id, a, Kind::Delay, &entries, now) {
                e.log();
                return;
            }
        }
        // Recorded even when nobody wanted one: the question is settled.
        if let Err(source) = a.qf.mark_warned(unix(now)) {
            QmgrError::RecordWarning {
                id: id.clone(),
                source,
            }
            .log();
        }
    }

    /// The null sender and double_bounce_sender get no notifications.
    fn no_notices(&self, sender: &str) -> bool {
        let (local, _) = common::addr::split(sender);
        sender.is_empty() || local.eq_ignore_ascii_case(&self.settings.double_bounce)
    }

    /// Remove a finished message, or record what is done and defer the rest
    /// until its next attempt time.
    /// An operation asked while it was in flight is applied now: delete
    /// removes it, hold and requeue put what is left in hold/ or incoming/
    /// instead of deferred/.
    fn retire(&mut self, id: &QueueId, a: Active, now: SystemTime) -> Result<(), QmgrError> {
        let Active {
            mut qf,
            bounced_idx,
            deferred,
            ..
        } = a;
        let path = self.spool.path(Queue::Active, id);
        let op = self.after.remove(id.as_str());
        if deferred.is_empty() || op == Some(Op::Delete) {
            fs::remove_file(&path).map_err(|source| QmgrError::Remove {
                id: id.clone(),
                source,
            })?;
            info!("{id}: removed");
            return Ok(());
        }
        let mut done_idx: Vec<usize> = (0..qf.recipients.len())
            .filter(|i| qf.recipients[*i].done)
            .collect();
        done_idx.extend(&bounced_idx);
        if let Err(source) = qf.mark_done(&done_idx) {
            QmgrError::RecordFinished {
                id: id.clone(),
                source,
            }
            .log();
        }
        // For mailq; before the mtime, which a write would change.
        let reasons: Vec<(usize, &str)> = deferred
            .iter()
            .map(|d| (d.index, d.text.as_str()))
            .collect();
        if let Err(source) = qf.record_reasons(&reasons) {
            QmgrError::RecordReasons {
                id: id.clone(),
                source,
            }
            .log();
        }
        let next = next_attempt(qf.arrival, now, &self.settings);
        let r = fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(next));
        if let Err(source) = r {
            QmgrError::NextAttempt {
                id: id.clone(),
                source,
            }
            .log();
        }
        let to = match op {
            Some(Op::Hold) => Queue::Hold,
            Some(Op::Requeue) => Queue::Incoming,
            _ => Queue::Deferred,
        };
        self.spool
            .move_to(id, Queue::Active, to)
            .map_err(|source| QmgrError::Defer {
                id: id.clone(),
                source,
            })?;
        if let Some(op) = op {
            info!("{id}: {}", op.logged());
            if op == Op::Requeue {
                self.queued_here.push(id.clone());
            }
        }
        Ok(())
    }

    /// Queue a non-delivery notification to the sender, for the recipients
    /// whose NOTIFY asks for failures. An error means it was not queued
    /// (try again later). Null and double-bounce senders get none.
    fn send_bounce(&mut self, id: &QueueId, a: &Active, now: SystemTime) -> Result<(), QmgrError> {
        if a.qf.sender.is_empty() && !a.bounced.is_empty() {
            // A notification that could not be delivered (a double
            // bounce): to postmaster, once, from double_bounce_sender, whose
            // own failures are dropped (Postfix's 2bounce_notice_recipient).
            let from = format!(
                "{}@{}",
                self.settings.double_bounce, self.settings.myhostname
            );
            let all = a.bounced.clone();
            return self.queue_notice(id, a, Kind::Failure, &all, now, "postmaster", &from);
        }
        if self.no_notices(&a.qf.sender) {
            for f in &a.bounced {
                info!(
                    "{id}: undeliverable notice for <{}> not returned: double-bounce sender",
                    f.address
                );
            }
            return Ok(());
        }
        let wanted: Vec<Entry> = a
            .bounced
            .iter()
            .filter(|e| e.dsn.wants(Notify::FAILURE))
            .cloned()
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        self.send_notice(id, a, Kind::Failure, &wanted, now)
    }

    /// Queue a notification of `kind` about `entries` to the message's
    /// sender, from the null sender (RFC 5321 4.5.5).
    fn send_notice(
        &mut self,
        id: &QueueId,
        a: &Active,
        kind: Kind,
        entries: &[Entry],
        now: SystemTime,
    ) -> Result<(), QmgrError> {
        if self.no_notices(&a.qf.sender) {
            return Ok(());
        }
        let to = a.qf.sender.clone();
        self.queue_notice(id, a, kind, entries, now, &to, "")
    }

    /// Queue a notification of `kind` about `entries` to `to`, from
    /// `from` (the null sender, or double_bounce_sender for postmaster's).
    #[allow(clippy::too_many_arguments)]
    fn queue_notice(
        &mut self,
        id: &QueueId,
        a: &Active,
        kind: Kind,
        entries: &[Entry],
        now: SystemTime,
        to: &str,
        from: &str,
    ) -> Result<(), QmgrError> {
        let sender = &to.to_string();
        let report = Report {
            kind,
            queue_id: id.as_str(),
            sender,
            dsn: &a.qf.dsn,
            arrival: a.qf.arrival,
            myhostname: &self.settings.myhostname,
            mail_name: &self.settings.mail_name,
            now: unix(now),
            warn_after: self.settings.delay_warning,
            lifetime: self.settings.lifetime,
            recipients: entries,
        };
        let env = Envelope {
            sender: from.to_string(),
            recipients: vec![sender.clone()],
            attrs: vec![
                ("protocol".into(), "bounce".into()),
                ("origin_queue_id".into(), id.to_string()),
            ],
            ..Envelope::default()
        };
        let queued =
            a.qf.message()
                .and_then(|original| bounce::build(&report, original, a.qf.message_size()))
                .and_then(|body| {
                    let mut w = self.spool.create(&env)?;
                    w.write(&body)?;
                    w.commit()
                });
        let what = match kind {
            Kind::Failure => "non-delivery",
            Kind::Delay => "delay",
            Kind::Success => "delivery status",
        };
        match queued {
            Ok(bid) => {
                let whom = if from.is_empty() {
                    "sender"
                } else {
                    "postmaster"
                };
                info!("{id}: {whom} {what} notification: {bid}");
                self.queued_here.push(bid);
                Ok(())
            }
            Err(source) => Err(QmgrError::QueueNotice {
                id: id.clone(),
                what,
                source,
            }),
        }
    }
}

/// Queue the copy of `qf` that local delivery forwards for `rcpt` to
/// `to` (aliases and .forward targets it does not deliver itself): a new
/// message with the same envelope sender and `Delivered-To: <rcpt>`
/// prepended (Postfix's loop detection: the copy bounces when it comes back
/// to `rcpt`), committed (fsync, rename, fsync) before this returns.
fn forward(
    spool: &Spool,
    virtual_alias: Option<&mut common::virtual_alias::VirtualAlias>,
    queue_id: &str,
    qf: &QueueFile,
    rcpt: &str,
    to: &[String],
) -> io::Result<QueueId> {
    if rcpt.contains(['\r', '\n']) || to.iter().any(|t| t.contains(['\r', '\n', '<', '>'])) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "forward address with a line break or angle bracket",
        ));
    }
    // virtual_alias_maps, as for mail that comes in (Postfix's cleanup
    // rewrites forwarded mail too); a table that cannot be read now defers.
    let (recipients, recipient_dsn) = match virtual_alias {
        Some(v) => v
            .rewrite_envelope(to, None)
            .map_err(|e| io::Error::other(e.to_string()))?
            .into_iter()
            .unzip(),
        None => (to.to_vec(), Vec::new()),
    };
    let env = Envelope {
        sender: qf.sender.clone(),
        recipients,
        recipient_dsn,
        attrs: vec![
            ("protocol".into(), "forward".into()),
            ("origin_queue_id".into(), queue_id.to_string()),
        ],
        ..Envelope::default()
    };
    let mut w = spool.create(&env)?;
    w.write(format!("Delivered-To: {rcpt}\r\n").as_bytes())?;
    let mut m = qf.message()?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = m.read(&mut buf)?;
        if n == 0 {
            break;
        }
        w.write(&buf[..n])?;
    }
    w.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(300);
    const MAX: Duration = Duration::from_secs(4000);
    const DAY: u64 = 86400;

    fn settings() -> Settings {
        // Postfix's defaults.
        Settings {
            run_delay: Duration::from_secs(300),
            min_backoff: MIN,
            max_backoff: MAX,
            lifetime: Duration::from_secs(5 * DAY),
            bounce_lifetime: Duration::from_secs(DAY),
            delay_warning: Duration::ZERO,
            active_limit: 100,
            myhostname: "mx.example.test".into(),
            mail_name: "posthorn".into(),
            double_bounce: "double-bounce".into(),
            relayhost: String::new(),
        }
    }

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn backoff_is_the_age_between_min_and_max() {
        let s = |n| Duration::from_secs(n);
        assert_eq!(backoff(s(0), MIN, MAX), MIN);
        assert_eq!(backoff(s(299), MIN, MAX), MIN);
        assert_eq!(backoff(s(301), MIN, MAX), s(301));
        assert_eq!(backoff(s(3999), MIN, MAX), s(3999));
        assert_eq!(backoff(s(4001), MIN, MAX), MAX);
        assert_eq!(backoff(s(30 * DAY), MIN, MAX), MAX);
    }

    #[test]
    fn backoff_with_min_above_max_does_not_panic() {
        // Duration::clamp would panic here (it did before).
        let s = |n| Duration::from_secs(n);
        assert_eq!(backoff(s(0), s(600), s(60)), s(60));
        assert_eq!(backoff(s(1000), s(600), s(60)), s(60));
    }

    #[test]
    fn retries_made_on_time_double_the_gap_up_to_the_maximum() {
        // A message that fails at arrival and at every attempt after, each
        // attempt made exactly when it falls due.
        let s = settings();
        let arrival = 1_700_000_000;
        let mut now = at(arrival);
        let mut gaps = Vec::new();
        for _ in 0..8 {
            let next = next_attempt(arrival, now, &s);
            gaps.push(next.duration_since(now).unwrap().as_secs());
            now = next;
        }
        assert_eq!(gaps, [300, 300, 600, 1200, 2400, 4000, 4000, 4000]);
    }

    #[test]
    fn next_attempt_is_measured_from_now_not_arrival() {
        let s = settings();
        // Failed 10 minutes after arrival: wait its age, 600 s.
        assert_eq!(next_attempt(1000, at(1600), &s), at(2200));
        // A clock before the arrival (clock stepped back): the minimum.
        assert_eq!(next_attempt(5000, at(1000), &s), at(1300));
    }

    #[test]
    fn due_when_the_mtime_has_come() {
        assert!(due(at(100), at(100)));
        assert!(due(at(99), at(100)));
        assert!(!due(at(101), at(100)));
    }

    #[test]
    fn expiry_after_the_queue_lifetime() {
        let s = settings();
        let arrival = 1_700_000_000;
        assert!(!expired(arrival, at(arrival + 5 * DAY - 1), false, &s));
        assert!(expired(arrival, at(arrival + 5 * DAY), false, &s));
        // Bounces: bounce_queue_lifetime (one day here).
        assert!(!expired(arrival, at(arrival + DAY - 1), true, &s));
        assert!(expired(arrival, at(arrival + DAY), true, &s));
        // A clock before the arrival is not "very old".
        assert!(!expired(arrival, at(arrival - 10), false, &s));
    }

    /// A spool in a fresh temporary directory, removed on drop.
    struct TempSpool(std::path::PathBuf);

    impl TempSpool {
        fn new(name: &str) -> (TempSpool, Spool) {
            let dir = std::env::temp_dir().join(format!(
                "posthorn-qmgr-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&dir);
            let spool = Spool::new(&dir);
            spool.create_dirs().expect("create spool");
            (TempSpool(dir), spool)
        }
    }

    impl Drop for TempSpool {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn domains() -> Domains {
        Domains {
            virtual_domains: vec!["example.test".into()],
            mydestination: vec!["localhost".into()],
            delimiter: String::new(),
        }
    }

    /// Queue a message from `sender` to a remote recipient (which this
    /// version always defers) and move it to deferred/, due now.
    fn deferred_message(spool: &Spool, sender: &str) -> QueueId {
        let env = Envelope {
            sender: sender.into(),
            recipients: vec!["someone@elsewhere.example".into()],
            attrs: vec![],
            ..Envelope::default()
        };
        let mut w = spool.create(&env).expect("create");
        w.write(b"Subject: old\r\n\r\nstill here\r\n")
            .expect("write");
        let id = w.commit().expect("commit");
        spool
            .move_to(&id, Queue::Incoming, Queue::Deferred)
            .expect("to deferred");
        id
    }

    fn manager(spool: &Spool, offset: Duration) -> QueueManager {
        manager_with(spool, offset, settings())
    }

    fn manager_with(spool: &Spool, offset: Duration, s: Settings) -> QueueManager {
        QueueManager::new(spool.clone(), s, domains())
            .with_clock(move || SystemTime::now() + offset)
    }

    /// The messages in incoming/ (the notifications queued), as text.
    fn queued_notices(spool: &Spool) -> Vec<(QueueFile, String)> {
        spool
            .list(Queue::Incoming)
            .unwrap()
            .into_iter()
            .map(|id| {
                let qf = QueueFile::read(&spool.path(Queue::Incoming, &id)).unwrap();
                let mut text = String::new();
                std::io::Read::read_to_string(&mut qf.message().unwrap(), &mut text).unwrap();
                (qf, text)
            })
            .collect()
    }

    fn result(index: u32, status: Status, handoff: Handoff) -> RecipientResult {
        let (dsn, text) = match status {
            Status::Sent => ("2.0.0", "delivered to maildir"),
            Status::Deferred => ("4.2.2", "mailbox full"),
            Status::Bounced => ("5.1.1", "unknown user"),
        };
        RecipientResult {
            index,
            status,
            dsn: dsn.into(),
            text: text.into(),
            handoff,
            forward: Vec::new(),
        }
    }

    /// Queue a message to local recipients with these NOTIFY values and
    /// activate it: its id, with the jobs made.
    fn active_message(qm: &mut QueueManager, notify: &[Option<&str>]) -> QueueId {
        let recipients: Vec<String> = (0..notify.len())
            .map(|i| format!("u{i}@example.test"))
            .collect();
        let env = Envelope {
            sender: "alice@example.org".into(),
            recipients,
            attrs: vec![],
            dsn: common::dsn::MessageDsn {
                ret: None,
                envid: Some("env+2B1".into()),
            },
            recipient_dsn: notify
                .iter()
                .map(|n| common::dsn::RecipientDsn {
                    notify: n.and_then(Notify::parse),
                    orcpt: Some("rfc822;orig+40example.org".into()),
                })
                .collect(),
        };
        let mut w = qm.spool.create(&env).unwrap();
        w.write(b"Subject: dsn\r\n\r\nthe body\r\n").unwrap();
        let id = w.commit().unwrap();
        let mut jobs = Vec::new();
        qm.scan_incoming(&mut jobs);
        assert_eq!(jobs.len(), 1);
        assert!(qm.spool.list(Queue::Incoming).unwrap().is_empty());
        id
    }

    /// An operation on a message in flight waits for its deliveries: hold
    /// puts what is left in hold/ (done recipients recorded, the deferral
    /// reason too), delete removes it; release of a message in flight is
    /// nothing; a message at rest is handled at once.
    #[test]
    fn operations_on_a_message_in_flight_wait_for_its_deliveries() {
        let (_t, spool) = TempSpool::new("control");
        let mut qm = manager(&spool, Duration::ZERO);
        let id = active_message(&mut qm, &[None, None]);
        assert_eq!(qm.control(&id, Op::Release), Reply::None);
        assert_eq!(qm.control(&id, Op::Hold), Reply::Later);
        assert!(
            spool.path(Queue::Active, &id).exists(),
            "untouched meanwhile"
        );
        qm.done(
            id.as_str(),
            vec![
                result(0, Status::Sent, Handoff::Delivered),
                result(1, Status::Deferred, Handoff::Delivered),
            ],
        );
        let held = QueueFile::read(&spool.path(Queue::Hold, &id)).unwrap();
        assert_eq!(held.pending(), vec![1]);
        assert_eq!(held.recipients[1].reason.as_deref(), Some("mailbox full"));
        // At rest: at once. Released, it is deferred and due.
        assert_eq!(qm.control(&id, Op::Release), Reply::Ok);
        assert!(spool.path(Queue::Deferred, &id).exists());
        assert_eq!(qm.control(&id, Op::Requeue), Reply::Ok);
        assert_eq!(qm.queued_here, vec![id.clone()]);
        qm.queued_here.clear();
        // Deleted while in flight: gone when its delivery is back, even
        // with recipients left.
        let mut jobs = Vec::new();
        qm.scan_incoming(&mut jobs);
        assert_eq!(qm.control(&id, Op::Delete), Reply::Later);
        qm.done(
            id.as_str(),
            vec![result(1, Status::Deferred, Handoff::Delivered)],
        );
        for q in [Queue::Incoming, Queue::Active, Queue::Deferred, Queue::Hold] {
            assert!(!spool.path(q, &id).exists(), "{q:?}");
        }
        assert_eq!(qm.control(&id, Op::Delete), Reply::None);
    }

    #[test]
    fn failure_notices_follow_notify() {
        let (_t, spool) = TempSpool::new("notify-failure");
        let mut qm = manager(&spool, Duration::ZERO);
        // NEVER, SUCCESS (no FAILURE), none (failures), FAILURE.
        let id = active_message(
            &mut qm,
            &[Some("NEVER"), Some("SUCCESS"), None, Some("FAILURE")],
        );
        let results = (0..4)
            .map(|i| result(i, Status::Bounced, Handoff::default()))
            .collect();
        qm.done(id.as_str(), results);
        assert!(
            !spool.path(Queue::Active, &id).exists(),
            "all done: removed"
        );
        let notices = queued_notices(&spool);
        assert_eq!(notices.len(), 1, "one bounce");
        let (qf, text) = &notices[0];
        assert_eq!(qf.sender, "");
        assert!(text.contains("\r\nSubject: Undelivered Mail Returned to Sender\r\n"));
        for (i, wanted) in [(0, false), (1, false), (2, true), (3, true)] {
            let field = format!("Final-Recipient: rfc822; u{i}@example.test\r\n");
            assert_eq!(text.contains(&field), wanted, "u{i}: {text}");
        }
        assert!(text.contains("\r\nOriginal-Envelope-Id: env+1\r\n"));
        assert!(text.contains("\r\nOriginal-Recipient: rfc822; orig@example.org\r\n"));
        assert!(text.contains("the body"), "RET absent: the whole message");
    }

    #[test]
    fn forwards_are_queued_before_the_recipient_is_done() {
        let (_t, spool) = TempSpool::new("forward");
        let mut qm = manager(&spool, Duration::ZERO);
        let id = active_message(&mut qm, &[None, None]);
        let mut fwd = result(0, Status::Sent, Handoff::Delivered);
        fwd.forward = vec!["far@remote.example".into(), "x@remote.example".into()];
        qm.done(
            id.as_str(),
            vec![fwd, result(1, Status::Sent, Handoff::Delivered)],
        );
        assert!(
            !spool.path(Queue::Active, &id).exists(),
            "all done: removed"
        );
        let queued = queued_notices(&spool);
        assert_eq!(queued.len(), 1, "one copy for both addresses");
        let (qf, text) = &queued[0];
        assert_eq!(qf.sender, "alice@example.org", "the same envelope sender");
        let to: Vec<&str> = qf.recipients.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(to, ["far@remote.example", "x@remote.example"]);
        assert_eq!(
            text,
            "Delivered-To: u0@example.test\r\nSubject: dsn\r\n\r\nthe body\r\n"
        );
        assert_eq!(qm.queued_here.len(), 1, "qmgr takes it at once");

        // A forward address that could inject a header: not queued, the
        // recipient deferred (the message stays).
        let (_t2, spool2) = TempSpool::new("forward-bad");
        let mut qm = manager(&spool2, Duration::ZERO);
        let id = active_message(&mut qm, &[None]);
        let mut bad = result(0, Status::Sent, Handoff::Delivered);
        bad.forward = vec!["a@b\r\nBcc: x@y".into()];
        qm.done(id.as_str(), vec![bad]);
        assert!(queued_notices(&spool2).is_empty());
        assert_eq!(spool2.list(Queue::Deferred).unwrap(), [id]);
    }

    #[test]
    fn nobody_asked_for_a_notice_none_is_queued() {
        let (_t, spool) = TempSpool::new("notify-never");
        let mut qm = manager(&spool, Duration::ZERO);
        let id = active_message(&mut qm, &[Some("NEVER"), Some("DELAY")]);
        let results = (0..2)
            .map(|i| result(i, Status::Bounced, Handoff::default()))
            .collect();
        qm.done(id.as_str(), results);
        assert!(!spool.path(Queue::Active, &id).exists());
        assert!(queued_notices(&spool).is_empty());
    }

    #[test]
    fn success_notices_delivered_relayed_or_passed_on() {
        let (_t, spool) = TempSpool::new("notify-success");
        let mut qm = manager(&spool, Duration::ZERO);
        let id = active_message(
            &mut qm,
            &[
                Some("SUCCESS"),
                Some("SUCCESS,FAILURE"),
                Some("SUCCESS"),
                None,
                Some("FAILURE"),
            ],
        );
        let results = vec![
            result(0, Status::Sent, Handoff::Delivered),
            result(1, Status::Sent, Handoff::Relayed),
            // A server with DSN took NOTIFY on: its notice, not ours.
            result(2, Status::Sent, Handoff::Passed),
            result(3, Status::Sent, Handoff::Delivered),
            result(4, Status::Sent, Handoff::Delivered),
        ];
        qm.done(id.as_str(), results);
        assert!(!spool.path(Queue::Active, &id).exists());
        let notices = queued_notices(&spool);
        assert_eq!(notices.len(), 1, "one success notice");
        let text = &notices[0].1;
        assert!(text.contains("\r\nSubject: Successful Mail Delivery Report\r\n"));
        assert!(text.contains(
            "Final-Recipient: rfc822; u0@example.test\r\nAction: delivered\r\nStatus: 2.0.0\r\n"
        ));
        assert!(text.contains(
            "Final-Recipient: rfc822; u1@example.test\r\nAction: relayed\r\nStatus: 2.0.0\r\n"
        ));
        for i in [2, 3, 4] {
            assert!(
                !text.contains(&format!("u{i}@example.test")),
                "u{i}: {text}"
            );
        }
        assert!(text.contains("\r\nContent-Type: text/rfc822-headers\r\n"));
        assert!(!text.contains("the body"), "headers only");
    }

    /// Sent recipients that wait for their success notice stay pending on
    /// disk while another job of the message is out.
    #[test]
    fn success_recipients_are_marked_after_their_notice() {
        let (_t, spool) = TempSpool::new("notify-success-order");
        let mut qm = manager(&spool, Duration::ZERO);
        let id = active_message(&mut qm, &[Some("SUCCESS"), None]);
        // Pretend a second job is out.
        qm.active.get_mut(id.as_str()).unwrap().outstanding += 1;
        qm.done(
            id.as_str(),
            vec![
                result(0, Status::Sent, Handoff::Delivered),
                result(1, Status::Sent, Handoff::Delivered),
            ],
        );
        let on_disk = QueueFile::read(&spool.path(Queue::Active, &id)).unwrap();
        assert_eq!(
            on_disk.pending(),
            vec![0],
            "u1 recorded, u0 waits for its notice"
        );
        assert!(queued_notices(&spool).is_empty());
        qm.done(id.as_str(), vec![]);
        assert!(!spool.path(Queue::Active, &id).exists());
        assert_eq!(queued_notices(&spool).len(), 1);
    }

    #[test]
    fn one_delay_warning_after_delay_warning_time() {
        let (_t, spool) = TempSpool::new("delay");
        let warned = |spool: &Spool| {
            queued_notices(spool)
                .into_iter()
                .filter(|(_, t)| t.contains("Subject: Delayed Mail (still being retried)"))
                .count()
        };
        let id = deferred_message(&spool, "alice@example.org");
        let s = Settings {
            delay_warning: Duration::from_secs(3600),
            ..settings()
        };
        // Younger than delay_warning_time: none yet.
        manager_with(&spool, Duration::from_secs(1800), s.clone())
            .scan_deferred(&mut Vec::new(), true);
        assert_eq!(warned(&spool), 0);
        // Older: one, recorded in the queue file.
        manager_with(&spool, Duration::from_secs(7200), s.clone())
            .scan_deferred(&mut Vec::new(), true);
        let notices = queued_notices(&spool);
        assert_eq!(notices.len(), 1, "{notices:?}");
        let text = &notices[0].1;
        assert!(text.contains("Final-Recipient: rfc822; someone@elsewhere.example\r\nAction: delayed\r\nStatus: 4.4.1\r\n"), "{text}");
        assert!(text.contains("no smtp service in master.cf for other domains"));
        assert!(text.contains("for more than 1 hour(s)."));
        let qf = QueueFile::read(&spool.path(Queue::Deferred, &id)).unwrap();
        assert!(
            matches!(qf.warning, DelayWarning::Sent(_)),
            "{:?}",
            qf.warning
        );
        // A new manager (a restarted qmgr), later attempts: no second one.
        for hours in [3, 5] {
            manager_with(&spool, Duration::from_secs(hours * 3600), s.clone())
                .scan_deferred(&mut Vec::new(), true);
        }
        assert_eq!(warned(&spool), 1);
        assert!(spool.path(Queue::Deferred, &id).exists());
    }

    #[test]
    fn no_delay_warning_unless_asked_for_or_possible() {
        let s = Settings {
            delay_warning: Duration::from_secs(3600),
            ..settings()
        };
        let later = Duration::from_secs(7200);
        // The null sender; NOTIFY without DELAY; delay_warning_time 0.
        let (_t, spool) = TempSpool::new("delay-none");
        deferred_message(&spool, "");
        manager_with(&spool, later, s.clone()).scan_deferred(&mut Vec::new(), true);
        let env = Envelope {
            sender: "alice@example.org".into(),
            recipients: vec!["someone@elsewhere.example".into()],
            recipient_dsn: vec![common::dsn::RecipientDsn {
                notify: Notify::parse("FAILURE"),
                orcpt: None,
            }],
            ..Envelope::default()
        };
        let mut w = spool.create(&env).unwrap();
        w.write(b"x").unwrap();
        let id = w.commit().unwrap();
        spool
            .move_to(&id, Queue::Incoming, Queue::Deferred)
            .unwrap();
        manager_with(&spool, later, s.clone()).scan_deferred(&mut Vec::new(), true);
        let qf = QueueFile::read(&spool.path(Queue::Deferred, &id)).unwrap();
        assert!(
            matches!(qf.warning, DelayWarning::Sent(_)),
            "settled: {:?}",
            qf.warning
        );
        deferred_message(&spool, "bob@example.org");
        manager(&spool, later).scan_deferred(&mut Vec::new(), true);
        assert!(queued_notices(&spool).is_empty());
    }

    #[test]
    fn a_young_deferred_message_is_deferred_again_with_backoff() {
        let (_t, spool) = TempSpool::new("young");
        let id = deferred_message(&spool, "alice@example.org");
        // One hour later: due, deferred again, next attempt an hour after
        // that (its age): two hours from the real now.
        let mut qm = manager(&spool, Duration::from_secs(3600));
        let mut jobs = Vec::new();
        qm.scan_deferred(&mut jobs, false);
        assert!(jobs.is_empty(), "a remote recipient gets no local job");
        assert_eq!(qm.active_count(), 0);
        let path = spool.path(Queue::Deferred, &id);
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        let wait = mtime.duration_since(SystemTime::now()).unwrap().as_secs();
        assert!((7190..=7200).contains(&wait), "next attempt in {wait}s");
        assert!(spool.list(Queue::Incoming).unwrap().is_empty(), "no bounce");
        // Not due yet: a scan an hour later leaves it where it is.
        let mut qm = manager(&spool, Duration::from_secs(3600 + 60));
        qm.scan_deferred(&mut jobs, false);
        assert!(path.exists());
    }

    #[test]
    fn a_too_old_deferred_message_bounces_to_its_sender() {
        let (_t, spool) = TempSpool::new("expired");
        let id = deferred_message(&spool, "alice@example.org");
        // Six days later: past maximal_queue_lifetime (5 days).
        let mut qm = manager(&spool, Duration::from_secs(6 * DAY));
        let mut jobs = Vec::new();
        qm.scan_deferred(&mut jobs, false);
        for q in [Queue::Deferred, Queue::Active] {
            assert!(!spool.path(q, &id).exists(), "original gone from {q:?}");
        }
        let bounces = spool.list(Queue::Incoming).unwrap();
        assert_eq!(bounces.len(), 1, "one notification queued");
        let b = QueueFile::read(&spool.path(Queue::Incoming, &bounces[0])).unwrap();
        assert_eq!(b.sender, "", "null sender (RFC 5321 4.5.5)");
        assert_eq!(b.recipients[0].address, "alice@example.org");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut b.message().unwrap(), &mut text).unwrap();
        assert!(
            // The last deferral's status, as Postfix (no smtp service: 4.4.1).
            text.contains("Final-Recipient: rfc822; someone@elsewhere.example\r\nAction: failed\r\nStatus: 4.4.1\r\n"),
            "{text}"
        );
        assert!(text.contains("message expired after 6 days in the queue"));
        assert!(text.contains("\r\nSubject: old\r\n\r\nstill here\r\n"));
    }

    #[test]
    fn a_relayhost_that_does_not_parse_is_a_configuration_error() {
        let parse = |v: &str| {
            let cfg = Config::parse(
                std::path::Path::new("/etc/posthorn"),
                "main.cf",
                &format!("relayhost = {v}\n"),
            )
            .unwrap();
            Settings::from_config(&cfg).map(|s| s.relayhost)
        };
        assert_eq!(parse("[10.0.0.1]:2525").unwrap(), "[10.0.0.1]:2525");
        assert_eq!(parse("").unwrap(), "");
        let e = parse("[unclosed").unwrap_err().to_string();
        assert!(
            e.contains("relayhost") && e.contains("is not [host]:port"),
            "{e}"
        );
    }

    #[test]
    fn an_expired_bounce_goes_to_postmaster_once() {
        let (_t, spool) = TempSpool::new("expired-bounce");
        let id = deferred_message(&spool, "");
        // Past bounce_queue_lifetime (1 day here), well short of 5 days.
        let mut qm = manager(&spool, Duration::from_secs(2 * DAY));
        qm.scan_deferred(&mut Vec::new(), false);
        assert!(!spool.path(Queue::Deferred, &id).exists());
        // One notice, to postmaster, from double_bounce_sender.
        let queued = spool.list(Queue::Incoming).unwrap();
        assert_eq!(queued.len(), 1);
        let notice = QueueFile::read(&spool.path(Queue::Incoming, &queued[0])).unwrap();
        assert_eq!(notice.sender, "double-bounce@mx.example.test");
        assert_eq!(notice.recipients[0].address, "postmaster");

        // That notice expiring in turn is dropped: nothing more is queued.
        let (_t2, spool) = TempSpool::new("expired-double-bounce");
        let id = deferred_message(&spool, "double-bounce@mx.example.test");
        let mut qm = manager(&spool, Duration::from_secs(6 * DAY));
        qm.scan_deferred(&mut Vec::new(), false);
        assert!(!spool.path(Queue::Deferred, &id).exists());
        assert!(spool.list(Queue::Incoming).unwrap().is_empty());
    }
}
