//! posthorn-bench: SMTP load generator for comparing posthorn with Postfix.
//!
//! Opens `--sessions` concurrent SMTP sessions to one server (a thread each)
//! and sends MAIL/RCPT/DATA transactions, reusing each connection for
//! `--per-conn` messages like Postfix's `smtp-source -m`, until `--count`
//! messages got 250 after the final dot; or, with `--exec`, runs a program
//! (`sendmail -t`) per message (`exec`). Owns the run: threads, wall clock
//! and the result line. The conversation is in `client`, message text in
//! `message`, reply parsing in `reply`, flags in `args`. `bench/run.sh`
//! drives it against Postfix and posthorn; see `bench/README.md`.
//!
//! Standards: RFC 5321 (SMTP client), RFC 5322 (message format).
//!
//! Diagnostics: one line on stdout, `accepted=N failed=N seconds=S rate=R`,
//! where seconds run from the first connect to the last 250 and rate is
//! accepted / seconds. The first few failures go to stderr. Exit status 0
//! when all `--count` messages were accepted, 1 otherwise, 2 for bad usage.
//!
//! Parameters: see `args::USAGE` (`posthorn-bench --help`).

mod args;
mod client;
mod exec;
mod message;
mod reply;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use args::Parsed;
use client::{SessionTimes, Shared};

/// Stack per session thread; sessions hold a message or two, no recursion.
const SESSION_STACK: usize = 256 * 1024;

fn main() -> ExitCode {
    let cfg = match args::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(cfg)) => *cfg,
        Ok(Parsed::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("posthorn-bench: {e}");
            eprint!("{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let count = cfg.count;
    let shared = Shared::new(cfg, run_id());
    let started = Instant::now();
    let times = match run(&shared) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("posthorn-bench: cannot start session threads: {e}");
            return ExitCode::FAILURE;
        }
    };

    let accepted = shared.accepted.load(Ordering::Relaxed);
    let failed = shared.failed.load(Ordering::Relaxed);
    let first = times
        .iter()
        .filter_map(|t| t.first_connect)
        .min()
        .unwrap_or(started);
    let last = times
        .iter()
        .filter_map(|t| t.last_accept)
        .max()
        .unwrap_or_else(Instant::now);
    let seconds = last.saturating_duration_since(first).as_secs_f64();
    let rate = if seconds > 0.0 {
        accepted as f64 / seconds
    } else {
        0.0
    };
    if shared.cfg.exec.is_some() {
        // The programs' own CPU (user + system clock ticks of the reaped
        // children: sendmail and what it runs), which the server tree's
        // figure does not include.
        println!(
            "accepted={accepted} failed={failed} seconds={seconds:.3} rate={rate:.1} child_ticks={}",
            exec::children_ticks()
        );
    } else {
        println!("accepted={accepted} failed={failed} seconds={seconds:.3} rate={rate:.1}");
    }
    if accepted >= count {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs all sessions to completion; a session thread that panicked
/// contributes no timestamps.
fn run(shared: &Shared) -> std::io::Result<Vec<SessionTimes>> {
    thread::scope(|s| {
        let mut handles = Vec::with_capacity(shared.cfg.sessions);
        for i in 0..shared.cfg.sessions {
            let h = thread::Builder::new()
                .name(format!("session-{i}"))
                .stack_size(SESSION_STACK)
                .spawn_scoped(s, || match &shared.cfg.exec {
                    Some(p) => exec::run_session(shared, p, &shared.cfg.exec_args),
                    None => client::run_session(shared),
                })?;
            handles.push(h);
        }
        Ok(handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect())
    })
}

/// An identifier unique to this run, for Message-IDs: start time and pid.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}.{:x}", std::process::id())
}
