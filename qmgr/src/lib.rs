//! posthorn-qmgr: the queue manager.
//!
//! Owns the queue after smtpd: picks up messages from incoming/ (when woken
//! through `private/qmgr`, and every few seconds in case a wake-up was lost),
//! moves them to active/, hands their recipients to delivery agents, records
//! the results, and removes, defers or bounces. Retries deferred/ messages
//! when their time comes (exponential backoff). At start it puts whatever was
//! left in active/ back into incoming/.
//!
//! Wake-up protocol: a client connects to `private/qmgr` and writes any bytes;
//! each read means "look at incoming/". Clients may keep the connection.
//!
//! Parameters: queue_run_delay, minimal_backoff_time, maximal_backoff_time,
//! maximal_queue_lifetime, bounce_queue_lifetime, qmgr_message_active_limit,
//! virtual_mailbox_domains, mydestination, myhostname, mail_name,
//! double_bounce_sender. Delivery concurrency is the maxproc of master.cf's
//! `local` service.
//!
//! Diagnostics: see queue.rs; every failure is a `QmgrError` (error.rs),
//! logged as one line.

mod agents;
pub mod bounce;
mod error;
pub mod queue;

pub use error::QmgrError;

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use mio::Token;

use common::addr::Domains;
use common::daemon::{self, Listener};
use common::server::{Limits, LocalCounter, Next, Peer, Refusal, Server, Service, Spawner};
use common::spool::Spool;
use common::{info, warning};

/// How often incoming/ is rescanned without a wake-up.
const INCOMING_RESCAN: Duration = Duration::from_secs(5);
/// Most wake-up connections held open at once.
const MAX_WAKE_CONNECTIONS: usize = 256;
/// The pool key of delivery jobs (no connection has it).
const DELIVERY: Token = Token(usize::MAX - 8);

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
    let slots = local_slots(cfg);
    let spool = Spool::new(cfg.queue_dir());
    let qm = queue::QueueManager::new(spool.clone(), settings, Domains::from_config(cfg));
    qm.recover();

    if let Err(e) = run(&stop, listener, qm, slots, run_delay) {
        exit(QmgrError::EventLoop(e));
    }
}

/// Log a fatal error and exit (master restarts qmgr).
fn exit(e: QmgrError) -> ! {
    e.log();
    std::process::exit(1)
}

/// The maxproc of master.cf's `local` service: how many deliveries at once.
fn local_slots(cfg: &common::config::Config) -> usize {
    let path = cfg.dir().join("master.cf");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let dpl = cfg.int("default_process_limit").unwrap_or(100) as u32;
    match common::mastercf::parse(&path.display().to_string(), &text, dpl) {
        Ok(services) => match services
            .iter()
            .find(|s| s.name == "local" && s.command == "local")
        {
            Some(s) => s.maxproc as usize,
            None => {
                warning!("master.cf has no local service; local deliveries will be deferred");
                1
            }
        },
        Err(e) => {
            warning!("{e}");
            1
        }
    }
}

fn run(
    stop: &AtomicBool,
    listener: Listener,
    qm: queue::QueueManager,
    slots: usize,
    run_delay: Duration,
) -> Result<(), common::server::ServerError> {
    let server = Server::<Qmgr>::new(slots)?;
    let mut q = Qmgr {
        local: qm.spool.private("local"),
        qm,
        conns: agents::Connections::default(),
        spawner: server.pool().spawner(),
        jobs: Vec::new(),
        wake: true,
        last_incoming: Instant::now(),
        last_deferred: None,
        run_delay,
        in_flight: 0,
    };
    info!("started: {slots} delivery slots for local");
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
    )?;
    info!("stopping with {} deliveries in flight", q.in_flight);
    Ok(())
}

/// qmgr on the server skeleton: wake-up connections in, deliveries on the
/// pool, scans once per loop round.
struct Qmgr {
    qm: queue::QueueManager,
    local: std::path::PathBuf,
    conns: agents::Connections,
    spawner: Spawner<Token, agents::Done>,
    jobs: Vec<agents::Job>,
    wake: bool,
    last_incoming: Instant,
    last_deferred: Option<Instant>,
    run_delay: Duration,
    in_flight: usize,
}

impl Service for Qmgr {
    type Conn = ();
    type Done = agents::Done;

    fn open(&mut self, _peer: Peer, _out: &mut Vec<u8>) -> ((), Next<agents::Done>) {
        ((), Next::Continue)
    }

    fn refuse(&mut self, _peer: Peer, _why: Refusal, _out: &mut Vec<u8>) {
        // Dropped: the client reconnects next time. Look anyway.
        self.wake = true;
    }

    fn input(&mut self, _c: &mut (), _data: &[u8], _out: &mut Vec<u8>) -> Next<agents::Done> {
        self.wake = true;
        Next::Continue
    }

    fn done(&mut self, _c: &mut (), r: agents::Done, _out: &mut Vec<u8>) -> Next<agents::Done> {
        self.orphan(r);
        Next::Continue
    }

    fn resume(&mut self, _c: &mut (), _out: &mut Vec<u8>) -> Next<agents::Done> {
        Next::Continue
    }

    fn timed_out(&mut self, _c: &mut (), _out: &mut Vec<u8>) {}

    fn stopping(&mut self, _c: &mut (), _out: &mut Vec<u8>) -> bool {
        true
    }

    fn closed(&mut self, _c: (), _lost: bool) {}

    /// A delivery finished: record it. A finished message may have made
    /// room, or queued a bounce: look again.
    fn orphan(&mut self, d: agents::Done) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.qm.done(&d.queue_id, d.results);
        self.wake = true;
    }

    /// Deliveries in flight are waited for (a while) when stopping, so a
    /// reload or stop does not deliver them twice.
    fn busy(&self) -> bool {
        self.in_flight > 0
    }

    fn tick(&mut self, stopping: bool) {
        if stopping {
            return;
        }
        if self.wake || self.last_incoming.elapsed() >= INCOMING_RESCAN {
            self.wake = false;
            self.last_incoming = Instant::now();
            self.qm.scan_incoming(&mut self.jobs);
        }
        if self
            .last_deferred
            .is_none_or(|t| t.elapsed() >= self.run_delay)
        {
            self.last_deferred = Some(Instant::now());
            self.qm.scan_deferred(&mut self.jobs);
        }
        for job in self.jobs.drain(..) {
            let (conns, local) = (self.conns.clone(), self.local.clone());
            self.in_flight += 1;
            if self
                .spawner
                .submit(DELIVERY, Box::new(move || agents::run(&conns, &local, job)))
                .is_err()
            {
                common::fatal!("delivery pool is gone");
            }
        }
    }
}
