//! Mode (c): idle SELECTed connections, for the server's memory per
//! connection.
//!
//! Owns opening `--connections` connections (connect, LOGIN, SELECT INBOX,
//! by `--clients` threads in parallel; connection i uses mailbox i modulo
//! `--users`), announcing on stdout when all are selected, holding them for
//! `--hold` seconds without a byte sent, then a NOOP (the connection must
//! still be alive and selected) and LOGOUT on each. A connection that could
//! not be opened, or fails its NOOP or LOGOUT, is an error of its kind.
//! Does not own the commands (`session::Conn`).
//!
//! Diagnostics: `selected connections=N failed=N seconds=S` on stdout
//! (flushed) once every connection is selected or has failed, for the
//! driving script to measure the server then; the first failures on stderr.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Instant;

use posthorn_bench::maildir::user_name;
use posthorn_bench::work;

use super::args::Config;
use super::session::{report_failure, Conn};
use super::stats::Stats;

/// Stack per opening thread.
const STACK: usize = 256 * 1024;

/// What an idle run measured.
#[derive(Debug, Default)]
pub struct IdleResult {
    pub stats: Stats,
    /// Connections selected and held.
    pub held: u64,
    /// Seconds from the first connect until all were selected.
    pub setup_seconds: f64,
}

/// Runs mode (c).
pub fn run(cfg: &Config) -> std::io::Result<IdleResult> {
    let next = AtomicUsize::new(0);
    let failures = AtomicU64::new(0);
    let conns: Mutex<Vec<Conn>> = Mutex::new(Vec::with_capacity(cfg.connections));
    let start = Instant::now();
    // Open: each thread takes the next connection number until none is left.
    let mut stats = in_threads(cfg, |st| loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= cfg.connections {
            break;
        }
        let user = user_name(
            &cfg.user_pattern,
            cfg.first_user + (i as u64 % u64::from(cfg.users)) as u32,
        );
        let opened = Conn::open(cfg, &user, st).and_then(|mut c| c.select(st).map(|_| c));
        match opened {
            Ok(c) => conns.lock().unwrap_or_else(|p| p.into_inner()).push(c),
            Err(f) => {
                st.failed_sessions += 1;
                st.error(f.kind());
                report_failure(cfg, failures.fetch_add(1, Ordering::Relaxed), &user, &f);
            }
        }
    })?;
    let setup_seconds = start.elapsed().as_secs_f64();
    let conns = conns.into_inner().unwrap_or_else(|p| p.into_inner());
    let held = conns.len() as u64;
    println!(
        "selected connections={held} failed={} seconds={setup_seconds:.3}",
        stats.failed_sessions
    );
    let _ = std::io::stdout().flush();
    thread::sleep(cfg.hold);

    // Release: NOOP and LOGOUT on each, spread over the threads.
    let conns = Mutex::new(conns);
    let closing = in_threads(cfg, |st| loop {
        let Some(mut c) = conns.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
            break;
        };
        if let Err(f) = c.noop(st).and_then(|()| c.logout(st)) {
            st.failed_sessions += 1;
            st.error(f.kind());
            report_failure(
                cfg,
                failures.fetch_add(1, Ordering::Relaxed),
                "held connection",
                &f,
            );
        } else {
            st.ok_sessions += 1;
        }
    })?;
    stats.merge(&closing);
    Ok(IdleResult {
        stats,
        held,
        setup_seconds,
    })
}

/// Runs `work` on `--clients` threads (at most one per connection), each
/// with its own Stats, and returns them merged.
fn in_threads(cfg: &Config, work: impl Fn(&mut Stats) + Sync) -> std::io::Result<Stats> {
    let n = cfg.clients.min(cfg.connections).max(1);
    let all = work::in_threads(n, "idle", STACK, |_| {
        let mut st = Stats::default();
        work(&mut st);
        st
    })?;
    let mut total = Stats::default();
    for st in &all {
        total.merge(st);
    }
    Ok(total)
}
