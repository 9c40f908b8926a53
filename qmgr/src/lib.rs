//! posthorn-qmgr: the queue manager.
//!
//! Owns the queue after smtpd: picks up messages from incoming/ (when woken
//! through `private/qmgr`, and every few seconds in case a wake-up was lost),
//! moves them to active/, hands their recipients to delivery agents, records
//! the results, and removes, defers or bounces. Retries deferred/ messages
//! when their time comes (exponential backoff). At start it puts whatever was
//! left in active/ back into incoming/.
//!
//! Wake-up protocol: a client connects to `private/qmgr` and writes lines.
//! A line that is a queue id means "this message is complete in incoming/"
//! (smtpd names what it queued, so qmgr takes it without scanning the
//! directory); `flush` (from `posthorn flush`) means "try every deferred
//! message now, due or not"; `delete ID`, `hold ID`, `release ID` and
//! `requeue ID` (from `posthorn queue`) are operations on a queued message,
//! each answered with a line (control.rs); any other line means "look at
//! incoming/". Clients may keep
//! the connection. Lines are at most 64 bytes; a longer one counts as "any
//! other line". The parse (`Wake`) is the same for any split of the input.
//!
//! Parameters: queue_run_delay, minimal_backoff_time, maximal_backoff_time,
//! maximal_queue_lifetime, bounce_queue_lifetime, delay_warning_time,
//! qmgr_message_active_limit,
//! virtual_mailbox_domains, mydestination, myhostname, mail_name,
//! double_bounce_sender, transport_maps, relayhost,
//! smtp_destination_concurrency_limit. Two transports: `local`
//! (mydestination and virtual_mailbox_domains) and `smtp` (every other
//! domain; posthorn-smtp), transport_maps (transport.rs) deciding first.
//! An smtp job is a message's recipients for one next hop (the table's,
//! relayhost, or the domain). Delivery concurrency is the maxproc of each's
//! master.cf service: that many batches of requests in flight, one per
//! agent process; an smtp batch is one job, at most
//! smtp_destination_concurrency_limit of them per next hop, the next hops
//! with jobs waiting taking turns (`Fair`), each job preferably to the
//! agent that served its next hop last (it may hold the connection). Without an smtp service,
//! mail for other domains is deferred. A lone message goes at once; messages that come while a batch
//! is out wait for it and then go together; with 4 waiting, or once the
//! batch out is 100 ms old (checked each loop round, at least every
//! second), other slots take them. So an agent delivers several messages
//! per round trip and per fsync of new/ (see `Qmgr::dispatch`).
//!
//! Diagnostics: see queue.rs; every failure is a `QmgrError` (error.rs),
//! logged as one line.

mod agents;
pub mod bounce;
pub mod control;
mod error;
pub mod queue;
pub mod transport;

pub use error::QmgrError;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use mio::Token;

use common::addr::Domains;
use common::daemon::{self, Listener};
use common::server::{Limits, LocalCounter, Next, Peer, Refusal, Server, Service, Spawner};
use common::spool::{QueueId, Spool};
use common::{info, warning};

/// How often incoming/ is rescanned without a wake-up.
const INCOMING_RESCAN: Duration = Duration::from_secs(5);
/// Most wake-up connections held open at once.
const MAX_WAKE_CONNECTIONS: usize = 256;
/// Longest wake-up line (a queue id is 14 characters).
const MAX_WAKE_LINE: usize = 64;
/// Most ids remembered between two loop rounds; past that, a full scan.
const MAX_NAMED: usize = 10_000;
/// The pool key of delivery jobs (no connection has it).
const DELIVERY: Token = Token(usize::MAX - 8);
/// Most requests in one batch to a delivery agent.
const MAX_BATCH: usize = 16;
/// While a batch is out, this many waiting jobs go out as another batch.
const RELEASE: usize = 4;
/// How long new jobs wait for the batch out before other slots take them.
const HOLD: Duration = Duration::from_millis(100);

/// The program's entry point (posthorn-qmgr).
pub fn main() {
    let daemon::Worker {
        config,
        listener,
        stop,
        ..
    } = daemon::start("qmgr");
    if !matches!(listener, Listener::Unix(_)) {
        common::config_fatal!("qmgr must be a unix service in master.cf");
    }
    let cfg = &config;
    let settings = match queue::Settings::from_config(cfg) {
        Ok(s) => s,
        Err(e) => {
            let e = QmgrError::from(e);
            e.log();
            common::status::report(common::status::Status::ConfigError);
            std::process::exit(78)
        }
    };
    let run_delay = settings.run_delay;
    let slots = [
        service_slots(cfg, "local").unwrap_or_else(|| {
            warning!("master.cf has no local service; local deliveries will be deferred");
            1
        }),
        service_slots(cfg, "smtp").unwrap_or(0),
    ];
    let spool = Spool::new(cfg.queue_dir());
    let mut qm = queue::QueueManager::new(spool.clone(), settings, Domains::from_config(cfg));
    qm.smtp = slots[1] > 0;
    qm.transport = transport::TransportMaps::new(&cfg.get("transport_maps"));
    qm.virtual_alias = match common::virtual_alias::VirtualAlias::from_config(cfg) {
        Ok(v) => Some(v),
        Err(e) => common::config_fatal!("{e}"),
    };
    let dest_limit = match cfg.int("smtp_destination_concurrency_limit") {
        Ok(n) if n > 0 => n as usize,
        Ok(_) => usize::MAX,
        Err(e) => {
            QmgrError::from(e).log();
            common::status::report(common::status::Status::ConfigError);
            std::process::exit(78)
        }
    };
    qm.recover();

    if let Err(e) = run(&stop, listener, qm, slots, dest_limit, run_delay) {
        exit(QmgrError::EventLoop(e));
    }
}

/// Log a fatal error and exit (master restarts qmgr).
fn exit(e: QmgrError) -> ! {
    e.log();
    std::process::exit(1)
}

/// The maxproc of master.cf's unix service `name` running command `name`
/// (local, smtp): how many deliveries at once; None without one.
fn service_slots(cfg: &common::config::Config, name: &str) -> Option<usize> {
    let path = cfg.dir().join("master.cf");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let dpl = cfg.int("default_process_limit").unwrap_or(100) as u32;
    match common::mastercf::parse(&path.display().to_string(), &text, dpl) {
        Ok(services) => services
            .iter()
            .find(|s| {
                s.name == name && s.command == name && s.kind == common::mastercf::ServiceType::Unix
            })
            .map(|s| s.maxproc as usize),
        Err(e) => {
            warning!("{e}");
            None
        }
    }
}

/// One transport's deliveries: its agent's socket and connections, the
/// jobs waiting, the batches out.
struct Lane {
    name: &'static str,
    socket: std::path::PathBuf,
    conns: agents::Connections,
    /// Jobs waiting for a free delivery slot (local).
    pending: VecDeque<agents::Job>,
    /// Jobs waiting, per destination (smtp).
    fair: Fair,
    /// Most batches in flight to one destination (smtp).
    dest_limit: usize,
    /// Batches that may be in flight at once (agent processes).
    slots: usize,
    /// Batches in flight.
    in_flight: usize,
    /// When the last batch went out.
    last_dispatch: Instant,
}

fn run(
    stop: &AtomicBool,
    listener: Listener,
    qm: queue::QueueManager,
    slots: [usize; 2],
    dest_limit: usize,
    run_delay: Duration,
) -> Result<(), common::server::ServerError> {
    let server = Server::<Qmgr>::new(slots[0] + slots[1])?;
    let lane = |name: &'static str, slots: usize| Lane {
        name,
        socket: qm.spool.private(name),
        conns: agents::Connections::default(),
        pending: VecDeque::new(),
        fair: Fair::default(),
        dest_limit,
        slots,
        in_flight: 0,
        last_dispatch: Instant::now(),
    };
    let lanes = [lane("local", slots[0]), lane("smtp", slots[1])];
    let mut q = Qmgr {
        qm,
        lanes,
        spawner: server.pool().spawner(),
        jobs: Vec::new(),
        wake: true,
        named: Vec::new(),
        starved: false,
        last_incoming: Instant::now(),
        last_deferred: None,
        run_delay,
        flush: false,
    };
    info!(
        "started: {} delivery slots for local, {} for smtp",
        slots[0], slots[1]
    );
    let limits = Limits {
        // smtpd keeps its wake-up connection for its whole life.
        idle: Duration::from_secs(365 * 24 * 3600),
        max_connections: MAX_WAKE_CONNECTIONS,
        ..Limits::default()
    };
    server.run(
        listener,
        &mut q,
        &limits,
        &mut LocalCounter::default(),
        stop,
        // Never drains: a reload stops qmgr (daemon::STOP_ON_RELOAD), and
        // the new one starts when this one has gone.
        stop,
    )?;
    info!(
        "stopping with {} delivery batches in flight",
        q.lanes.iter().map(|l| l.in_flight).sum::<usize>()
    );
    Ok(())
}

/// qmgr on the server skeleton: wake-up connections in, deliveries on the
/// pool, scans once per loop round.
struct Qmgr {
    qm: queue::QueueManager,
    /// local, smtp.
    lanes: [Lane; 2],
    spawner: Spawner<Token, Batch>,
    /// New jobs of this loop round.
    jobs: Vec<agents::Job>,
    /// Look at all of incoming/.
    wake: bool,
    /// Ids smtpd (or this qmgr, for bounces) queued: take just these.
    named: Vec<QueueId>,
    /// The active limit left named messages behind.
    starved: bool,
    last_incoming: Instant,
    last_deferred: Option<Instant>,
    run_delay: Duration,
    /// `posthorn flush` asked: every deferred message at the next tick.
    flush: bool,
}

/// A finished batch: its lane, its destination (smtp), and a result per job.
type Batch = (usize, String, Vec<agents::Done>);

/// A wake-up connection's unfinished line (the parser of private/qmgr).
#[derive(Default)]
pub struct Wake {
    line: Vec<u8>,
    garbage: bool,
    /// A `flush` line came (taken by `take_flush`).
    flush: bool,
    /// Control lines (`OP ID`, control.rs) to answer, in order; no id for
    /// one whose id does not parse.
    requests: Vec<(control::Op, Option<QueueId>)>,
}

impl Wake {
    /// Take wake-up bytes: queue ids go to `named`; returns true when
    /// something else asks for a look at all of incoming/.
    pub fn feed(&mut self, data: &[u8], named: &mut Vec<QueueId>) -> bool {
        let mut scan = false;
        for &b in data {
            if b != b'\n' {
                if self.line.len() < MAX_WAKE_LINE {
                    self.line.push(b);
                } else {
                    self.garbage = true;
                }
                continue;
            }
            if !self.garbage && self.line == b"flush" {
                self.flush = true;
                self.line.clear();
                continue;
            }
            if let Some(r) = control::request(&self.line).filter(|_| !self.garbage) {
                if self.requests.len() < MAX_NAMED {
                    self.requests.push(r);
                }
                self.line.clear();
                continue;
            }
            let id = std::str::from_utf8(&self.line)
                .ok()
                .and_then(QueueId::parse);
            match id {
                Some(id) if !self.garbage && named.len() < MAX_NAMED => named.push(id),
                _ => scan = true,
            }
            self.line.clear();
            self.garbage = false;
        }
        scan
    }

    /// The control lines (`OP ID`) since the last call, in order.
    pub fn take_requests(&mut self) -> Vec<(control::Op, Option<QueueId>)> {
        std::mem::take(&mut self.requests)
    }

    /// Was `flush` asked for since the last call?
    pub fn take_flush(&mut self) -> bool {
        std::mem::take(&mut self.flush)
    }
}

impl Service for Qmgr {
    type Conn = Wake;
    type Done = Batch;

    fn open(&mut self, _peer: Peer, _out: &mut Vec<u8>) -> (Wake, Next<Self::Done>) {
        (Wake::default(), Next::Continue)
    }

    fn refuse(&mut self, _peer: Peer, _why: Refusal, _out: &mut Vec<u8>) -> Wake {
        // Dropped: the client reconnects next time. Look anyway.
        self.wake = true;
        Wake::default()
    }

    fn input(&mut self, c: &mut Wake, data: &[u8], out: &mut Vec<u8>) -> Next<Self::Done> {
        self.wake |= c.feed(data, &mut self.named);
        if c.take_flush() {
            info!("flush: every deferred message is tried now");
            self.flush = true;
        }
        for (op, id) in c.take_requests() {
            let reply = match id {
                Some(id) => self.qm.control(&id, op),
                None => control::Reply::None,
            };
            out.extend_from_slice(reply.word().as_bytes());
            out.push(b'\n');
        }
        self.named.append(&mut self.qm.queued_here);
        Next::Continue
    }

    fn done(&mut self, _c: &mut Wake, r: Self::Done, _out: &mut Vec<u8>) -> Next<Self::Done> {
        self.orphan(r);
        Next::Continue
    }

    fn resume(&mut self, _c: &mut Wake, _out: &mut Vec<u8>) -> Next<Self::Done> {
        Next::Continue
    }

    fn timed_out(&mut self, _c: &mut Wake, _out: &mut Vec<u8>) {}

    fn stopping(&mut self, _c: &mut Wake, _out: &mut Vec<u8>) -> bool {
        true
    }

    fn closed(&mut self, _c: Wake, _lost: bool) {}

    /// A batch of deliveries finished: record them. A finished message may
    /// have made room (when the active limit left messages behind: look
    /// again), or queued a bounce (taken by id).
    fn orphan(&mut self, (lane, dest, batch): Batch) {
        if let Some(l) = self.lanes.get_mut(lane) {
            l.in_flight = l.in_flight.saturating_sub(1);
            l.fair.finished(&dest);
        }
        for d in batch {
            self.qm.done(&d.queue_id, d.results);
        }
        self.named.append(&mut self.qm.queued_here);
        if self.starved {
            self.wake = true;
        }
    }

    /// Deliveries in flight are waited for (a while) when stopping, so a
    /// reload or stop does not deliver them twice.
    fn busy(&self) -> bool {
        self.lanes.iter().any(|l| l.in_flight > 0)
    }

    fn tick(&mut self, stopping: bool) {
        if stopping {
            return;
        }
        self.qm.transport.refresh();
        if self.wake || self.last_incoming.elapsed() >= INCOMING_RESCAN {
            self.wake = false;
            self.starved = false;
            self.named.clear();
            self.last_incoming = Instant::now();
            self.qm.scan_incoming(&mut self.jobs);
        } else if !self.named.is_empty() && !self.qm.take_incoming(&mut self.named, &mut self.jobs)
        {
            // The active limit left some behind: scan when there is room.
            self.starved = true;
            self.named.clear();
        }
        let flush = std::mem::take(&mut self.flush);
        if flush
            || self
                .last_deferred
                .is_none_or(|t| t.elapsed() >= self.run_delay)
        {
            self.last_deferred = Some(Instant::now());
            self.qm.scan_deferred(&mut self.jobs, flush);
        }
        for j in self.jobs.drain(..) {
            match j.transport {
                agents::Transport::Local => self.lanes[0].pending.push_back(j),
                agents::Transport::Smtp => self.lanes[1].fair.push(j),
            }
        }
        for lane in 0..self.lanes.len() {
            self.dispatch(lane);
        }
    }
}

impl Qmgr {
    /// Hand pending jobs to free delivery slots, in batches. With no batch
    /// out, everything waiting goes at once (up to MAX_BATCH). While one is
    /// out, new jobs wait for it (so a quiet stream of messages is delivered
    /// a few at a time, with one fsync of new/ and one round trip for each
    /// few) until RELEASE of them wait (they go as another batch, so a
    /// busy queue keeps several agents working), or until the last batch
    /// went out HOLD ago (a slow mailbox does not hold up the others for
    /// long; then the free slots share them).
    fn dispatch(&mut self, lane: usize) {
        let l = &mut self.lanes[lane];
        // smtp (its jobs wait in `fair`, local's in `pending`): a job at a
        // time, the destinations taking turns, none with more than
        // dest_limit in flight (so one slow or dead destination holds at
        // most that many agents, and a busy one does not starve the others).
        while l.in_flight < l.slots {
            let Some((dest, job)) = l.fair.next(l.dest_limit) else {
                break;
            };
            submit(&self.spawner, l, lane, dest, vec![job]);
        }
        while l.in_flight < l.slots && !l.pending.is_empty() {
            let n = match batch_size(
                l.pending.len(),
                l.slots - l.in_flight,
                l.in_flight,
                l.last_dispatch.elapsed() >= HOLD,
            ) {
                Some(n) => n,
                None => break,
            };
            let batch: Vec<agents::Job> = l.pending.drain(..n).collect();
            submit(&self.spawner, l, lane, String::new(), batch);
        }
    }
}

/// A batch of `lane` for `dest` out to a delivery slot (on the pool).
fn submit(
    spawner: &Spawner<Token, Batch>,
    l: &mut Lane,
    lane: usize,
    dest: String,
    batch: Vec<agents::Job>,
) {
    let (conns, socket) = (l.conns.clone(), l.socket.clone());
    l.in_flight += 1;
    l.last_dispatch = Instant::now();
    let job = Box::new(move || {
        let done = agents::run(&conns, &socket, &dest, batch);
        (lane, dest, done)
    });
    if spawner.submit(DELIVERY, job).is_err() {
        common::fatal!("delivery pool is gone ({})", l.name);
    }
}

/// The smtp lane's waiting jobs: a queue per destination (next hop), the
/// destinations with jobs taking turns, and how many each has in flight.
#[derive(Default)]
struct Fair {
    queues: HashMap<String, VecDeque<agents::Job>>,
    /// The destinations that have jobs waiting (exactly the keys of
    /// `queues`), in turn order.
    order: VecDeque<String>,
    busy: HashMap<String, usize>,
}

impl Fair {
    fn push(&mut self, job: agents::Job) {
        let dest = job.req.nexthop.clone();
        let q = self.queues.entry(dest.clone()).or_default();
        if q.is_empty() {
            self.order.push_back(dest);
        }
        q.push_back(job);
    }

    /// The next job of the first destination in turn with fewer than
    /// `limit` in flight; that destination goes to the back of the line.
    fn next(&mut self, limit: usize) -> Option<(String, agents::Job)> {
        for _ in 0..self.order.len() {
            let dest = self.order.pop_front()?;
            let busy = self.busy.get(&dest).copied().unwrap_or(0);
            if busy >= limit {
                self.order.push_back(dest);
                continue;
            }
            let q = self.queues.get_mut(&dest)?;
            let job = q.pop_front()?;
            if q.is_empty() {
                self.queues.remove(&dest);
            } else {
                self.order.push_back(dest.clone());
            }
            *self.busy.entry(dest.clone()).or_default() += 1;
            return Some((dest, job));
        }
        None
    }

    /// A job of `dest` came back.
    fn finished(&mut self, dest: &str) {
        if let Some(n) = self.busy.get_mut(dest) {
            *n -= 1;
            if *n == 0 {
                self.busy.remove(dest);
            }
        }
    }
}

/// How many of `pending` jobs the next batch takes, with `free` slots free
/// and `in_flight` batches out (`stale`: the last went out HOLD ago);
/// None: wait for a batch to come back.
fn batch_size(pending: usize, free: usize, in_flight: usize, stale: bool) -> Option<usize> {
    if in_flight == 0 || pending >= RELEASE {
        Some(pending.min(MAX_BATCH))
    } else if stale {
        Some(pending.div_ceil(free.max(1)).clamp(1, MAX_BATCH))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_lines_name_ids_or_ask_for_a_scan() {
        let mut w = Wake::default();
        let mut named = Vec::new();
        // Ids, split anywhere across reads.
        assert!(!w.feed(b"1M15JB86WC93b4\n1M15JB8", &mut named));
        assert!(!w.feed(b"6W2GKPK\n", &mut named));
        let ids: Vec<&str> = named.iter().map(|i| i.as_str()).collect();
        assert_eq!(ids, ["1M15JB86WC93b4", "1M15JB86W2GKPK"]);
        // Anything else: scan, once the line is whole.
        assert!(!w.feed(b"W", &mut named));
        assert!(w.feed(b"\n", &mut named));
        assert!(w.feed(b"not an id\n", &mut named));
        assert!(w.feed(&[b'x'; 200], &mut named) | w.feed(b"\n", &mut named));
        assert_eq!(named.len(), 2, "no id taken from garbage");
        assert!(w.line.is_empty());
        // flush, split across reads: no scan, no id, a flush.
        assert!(!w.feed(b"flu", &mut named) && !w.feed(b"sh\n", &mut named));
        assert!(w.take_flush() && !w.take_flush());
        assert_eq!(named.len(), 2);
        // Control lines, split too: requests, no scan, no id named.
        assert!(!w.feed(b"hold 1M15JB86WC93b4\ndel", &mut named));
        assert!(!w.feed(b"ete bad-id\n", &mut named));
        assert_eq!(
            w.requests,
            [
                (control::Op::Hold, QueueId::parse("1M15JB86WC93b4")),
                (control::Op::Delete, None)
            ]
        );
        assert_eq!(named.len(), 2);
    }

    #[test]
    fn destinations_take_turns_within_their_limit() {
        let job = |dest: &str, n: usize| agents::Job {
            transport: agents::Transport::Smtp,
            req: common::ipc::DeliverRequest {
                queue_id: format!("{dest}{n}"),
                sender: String::new(),
                arrival: 0,
                recipients: Vec::new(),
                nexthop: dest.to_string(),
            },
        };
        let mut f = Fair::default();
        for n in 0..5 {
            f.push(job("busy.example", n));
        }
        f.push(job("a.example", 0));
        f.push(job("b.example", 0));
        let next = |f: &mut Fair| f.next(2).map(|(_, j)| j.req.queue_id);
        // busy.example does not take every slot: the others get theirs in
        // turn, and it stops at its limit of 2.
        assert_eq!(next(&mut f).as_deref(), Some("busy.example0"));
        assert_eq!(next(&mut f).as_deref(), Some("a.example0"));
        assert_eq!(next(&mut f).as_deref(), Some("b.example0"));
        assert_eq!(next(&mut f).as_deref(), Some("busy.example1"));
        assert_eq!(next(&mut f), None, "busy.example is at its limit");
        f.finished("a.example");
        assert_eq!(
            next(&mut f),
            None,
            "a.example's finish frees none of busy's"
        );
        f.finished("busy.example");
        assert_eq!(next(&mut f).as_deref(), Some("busy.example2"));
        f.finished("busy.example");
        f.finished("busy.example");
        assert_eq!(next(&mut f).as_deref(), Some("busy.example3"));
        assert_eq!(next(&mut f).as_deref(), Some("busy.example4"));
        assert_eq!(next(&mut f), None);
        assert!(f.queues.is_empty() && f.order.is_empty());
    }

    #[test]
    fn jobs_wait_for_the_batch_out_unless_many_wait_or_it_is_slow() {
        // Nothing out: all that waits goes, up to MAX_BATCH.
        assert_eq!(
            batch_size(1, 8, 0, false),
            Some(1),
            "a lone job goes at once"
        );
        assert_eq!(batch_size(5, 8, 0, false), Some(5));
        assert_eq!(batch_size(40, 8, 0, false), Some(16));
        // A batch out: wait for it, unless RELEASE wait.
        assert_eq!(batch_size(3, 7, 1, false), None);
        assert_eq!(batch_size(4, 7, 1, false), Some(4));
        assert_eq!(batch_size(30, 7, 3, false), Some(16));
        // The last batch went out long ago: the free slots share the jobs.
        assert_eq!(batch_size(1, 7, 1, true), Some(1));
        assert_eq!(batch_size(3, 2, 1, true), Some(2));
        assert_eq!(batch_size(5, 0, 8, true), Some(5), "free is at least 1");
    }
}
