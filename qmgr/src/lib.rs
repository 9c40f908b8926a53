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

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};

use common::addr::Domains;
use common::daemon::{self, Listener};
use common::spool::Spool;
use common::{info, warning};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// How often incoming/ is rescanned without a wake-up.
const INCOMING_RESCAN: Duration = Duration::from_secs(5);
/// How long a stopping qmgr waits for deliveries in flight.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Most wake-up connections held open at once.
const MAX_WAKE_CONNECTIONS: usize = 256;

/// The program's entry point (posthorn-qmgr).
pub fn main() {
    let daemon::Worker {
        config,
        listener,
        stop,
        ..
    } = daemon::start("qmgr");
    let Listener::Unix(listener) = listener else {
        common::fatal!("qmgr must be a unix service in master.cf");
    };
    let cfg = &config;
    let settings = match queue::Settings::from_config(cfg) {
        Ok(s) => s,
        Err(e) => exit(QmgrError::from(e)),
    };
    let run_delay = settings.run_delay;
    let slots = local_slots(cfg);
    let spool = Spool::new(cfg.queue_dir());
    let mut qm = queue::QueueManager::new(spool.clone(), settings, Domains::from_config(cfg));
    qm.recover();

    if let Err(e) = run(&stop, listener, &mut qm, slots, run_delay) {
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
    listener: std::os::unix::net::UnixListener,
    qm: &mut queue::QueueManager,
    slots: usize,
    run_delay: Duration,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = UnixListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);

    let (job_tx, job_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    agents::start(
        slots,
        qm.spool.private("local"),
        Arc::new(Mutex::new(job_rx)),
        done_tx,
        Arc::clone(&waker),
    );
    info!("started: {slots} delivery slots for local");

    let mut conns: HashMap<Token, UnixStream> = HashMap::new();
    let mut next_token = 2usize;
    let mut events = Events::with_capacity(256);
    let mut jobs = Vec::new();
    let mut wake = true;
    let mut last_incoming = Instant::now();
    let mut last_deferred: Option<Instant> = None;
    let mut in_flight = 0usize;
    let mut buf = [0u8; 512];

    loop {
        if stop.load(Ordering::Relaxed) {
            // Let deliveries in flight finish (and be recorded) for a moment,
            // so a reload or stop does not deliver them twice.
            let t = Instant::now();
            while in_flight > 0 && t.elapsed() < STOP_GRACE {
                match done_rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(d) => {
                        in_flight -= 1;
                        qm.done(&d.queue_id, d.results);
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            info!("stopping with {in_flight} deliveries in flight");
            return Ok(());
        }
        if wake || last_incoming.elapsed() >= INCOMING_RESCAN {
            wake = false;
            last_incoming = Instant::now();
            qm.scan_incoming(&mut jobs);
        }
        if last_deferred.is_none_or(|t| t.elapsed() >= run_delay) {
            last_deferred = Some(Instant::now());
            qm.scan_deferred(&mut jobs);
        }
        for job in jobs.drain(..) {
            in_flight += 1;
            if job_tx.send(job).is_err() {
                common::fatal!("delivery slots are gone");
            }
        }
        let timeout = Duration::from_millis(500);
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            match ev.token() {
                LISTENER => loop {
                    match listener.accept() {
                        Ok((mut s, _)) => {
                            if conns.len() >= MAX_WAKE_CONNECTIONS {
                                wake = true;
                                continue; // dropped: the client reconnects next time
                            }
                            let t = Token(next_token);
                            next_token += 1;
                            poll.registry().register(&mut s, t, Interest::READABLE)?;
                            conns.insert(t, s);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            warning!("accept: {e}");
                            break;
                        }
                    }
                },
                WAKER => {}
                t => {
                    let mut close = false;
                    if let Some(s) = conns.get_mut(&t) {
                        loop {
                            match s.read(&mut buf) {
                                Ok(0) => {
                                    close = true;
                                    break;
                                }
                                Ok(_) => wake = true,
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                                Err(_) => {
                                    close = true;
                                    break;
                                }
                            }
                        }
                    }
                    if close {
                        if let Some(mut s) = conns.remove(&t) {
                            let _ = poll.registry().deregister(&mut s);
                        }
                    }
                }
            }
        }
        while let Ok(d) = done_rx.try_recv() {
            in_flight = in_flight.saturating_sub(1);
            qm.done(&d.queue_id, d.results);
            // A finished message may have made room, or queued a bounce.
            wake = true;
        }
    }
}
