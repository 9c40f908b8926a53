//! posthorn-imap-bench: IMAP load generator for comparing posthorn with Dovecot.
//!
//! Three loads against one server, plain IMAP on TCP with LOGIN: (a)
//! `--mode sessions`, `--clients` concurrent clients (a thread each) looping
//! over whole sessions (connect, LOGIN, SELECT INBOX, FETCH 1:* (FLAGS UID
//! RFC822.SIZE), FETCH BODY.PEEK[] of random messages, STORE +FLAGS
//! (\Seen), SEARCH UNSEEN, NOOP, LOGOUT) on the mailboxes user1..userN in
//! rotation until `--sessions` succeeded or `--seconds` passed; (b) `--mode
//! long`, the same commands in rounds in one long session per client; (c)
//! `--mode idle`, `--connections` connections selected and held idle, for
//! the server's memory per connection. Owns the run: threads, wall clock,
//! the report. The conversation is in `session`, mode (c) in `idle`,
//! response reading in `wire`, flags in `args`; histograms, the seeded RNG
//! and work claiming are `posthorn_bench`'s. The mailboxes are written by
//! `posthorn-pop3-bench make-maildirs`. `bench/imap.sh` drives it against
//! Dovecot and posthorn; see `bench/README.md`.
//!
//! Standards: RFC 3501 (IMAP4rev1); no TLS (std only: the measurement is
//! plaintext on loopback).
//!
//! Diagnostics: a human-readable report on stdout (throughput, latency per
//! command type and per session or round: count, p50, p99, max, mean, in
//! ms; errors by kind), then one machine-readable line:
//!
//! `result mode=M sessions=N failed=N commands=N seconds=S sessions_per_s=R
//! commands_per_s=R body_octets=N connections=N held=N setup_seconds=S
//! session_p50_ms=.. session_p99_ms=.. session_max_ms=.. CMD_p50_ms=..
//! CMD_p99_ms=.. CMD_max_ms=.. (CMD: connect login select fetch_all
//! fetch_body store search noop logout) err_KIND=N (KIND: connect greeting
//! login refused bye size_mismatch protocol empty timeout io)`
//!
//! With `--mode long`, sessions are rounds and `session_*` their latency;
//! with `--mode idle`, sessions are connections closed cleanly after the
//! hold, `held` those that were selected, `setup_seconds` the time to
//! select them all. Keys are only ever added, never renamed or reordered.
//! `seconds` runs from the first session's start to the last one's end.
//! Mode idle also prints `selected connections=N failed=N seconds=S` as
//! soon as all are selected. Exit status 0 when nothing failed (and, with
//! `--sessions`, all of them ran; with idle, all connections were held), 1
//! otherwise, 2 for bad usage.
//!
//! Parameters: see `args::USAGE` (`posthorn-imap-bench --help`).

mod args;
mod idle;
mod session;
mod stats;
mod wire;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use posthorn_bench::stats::rate;
use posthorn_bench::work;

use args::{Config, Mode, Parsed};
use session::Shared;
use stats::Stats;

/// Stack per client thread; a session holds a response buffer and a view
/// of the mailbox (1,000 entries).
const CLIENT_STACK: usize = 256 * 1024;

/// What a run measured, whatever the mode.
struct Outcome {
    stats: Stats,
    seconds: f64,
    held: u64,
    setup_seconds: f64,
}

fn main() -> ExitCode {
    let cfg = match args::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(cfg)) => cfg,
        Ok(Parsed::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("posthorn-imap-bench: {e}");
            eprint!("{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let out = match cfg.mode {
        Mode::Idle => idle::run(&cfg).map(|r| Outcome {
            seconds: r.setup_seconds,
            held: r.held,
            setup_seconds: r.setup_seconds,
            stats: r.stats,
        }),
        Mode::Sessions | Mode::Long => clients(cfg.clone()),
    };
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("posthorn-imap-bench: cannot start client threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report(&cfg, &out));
    println!("{}", result_line(&cfg, &out));
    let t = &out.stats;
    let complete = match cfg.mode {
        Mode::Idle => out.held == cfg.connections as u64,
        _ => cfg.sessions.is_none_or(|n| t.ok_sessions >= n),
    };
    if t.failed_sessions == 0 && complete && t.ok_sessions > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Modes (a) and (b): runs all clients to completion; a client that
/// panicked contributes nothing.
fn clients(cfg: Config) -> std::io::Result<Outcome> {
    let start = Instant::now();
    let shared = Shared::new(cfg, start);
    let results = work::in_threads(shared.cfg.clients, "client", CLIENT_STACK, |i| {
        session::run_client(&shared, i as u64)
    })?;
    let (stats, seconds) = work::merge_clients(&results, start);
    Ok(Outcome {
        stats,
        seconds,
        held: 0,
        setup_seconds: 0.0,
    })
}

/// The human-readable report.
fn report(cfg: &Config, out: &Outcome) -> String {
    let t = &out.stats;
    let mut o = String::new();
    let share = if cfg.exclusive {
        "one client per mailbox at a time"
    } else {
        "shared"
    };
    let _ = writeln!(
        o,
        "posthorn-imap-bench: {}:{}, mode {}, {} clients, {} mailboxes {} from {} ({share}), {} FETCH BODY.PEEK[] per {}",
        cfg.host,
        cfg.port,
        cfg.mode.key(),
        cfg.clients,
        cfg.users,
        cfg.user_pattern,
        cfg.first_user,
        cfg.fetch,
        if cfg.mode == Mode::Long { "round" } else { "session" },
    );
    let label = match cfg.mode {
        Mode::Sessions | Mode::Long => {
            let unit = if cfg.mode == Mode::Long {
                "round"
            } else {
                "session"
            };
            let _ = writeln!(
                o,
                "{} {unit}s ok, {} failed in {:.3} s: {:.1} {unit}s/s, {:.1} commands/s, {:.2} MB/s fetched",
                t.ok_sessions,
                t.failed_sessions,
                out.seconds,
                rate(t.ok_sessions, out.seconds),
                rate(t.commands, out.seconds),
                rate(t.octets, out.seconds) / 1e6,
            );
            unit
        }
        Mode::Idle => {
            let _ = writeln!(
                o,
                "{} of {} connections selected in {:.3} s and held {:.1} s; {} closed cleanly, {} failed",
                out.held,
                cfg.connections,
                out.setup_seconds,
                cfg.hold.as_secs_f64(),
                t.ok_sessions,
                t.failed_sessions,
            );
            "connection"
        }
    };
    t.latency_table(&mut o, label);
    let _ = writeln!(o, "{}", t.errors_line());
    o
}

/// The machine-readable line (see the file header for its keys).
fn result_line(cfg: &Config, out: &Outcome) -> String {
    let t = &out.stats;
    let mut o = format!(
        "result mode={} sessions={} failed={} commands={} seconds={:.3} sessions_per_s={:.1} \
         commands_per_s={:.1} body_octets={} connections={} held={} setup_seconds={:.3}",
        cfg.mode.key(),
        t.ok_sessions,
        t.failed_sessions,
        t.commands,
        out.seconds,
        rate(t.ok_sessions, out.seconds),
        rate(t.commands, out.seconds),
        t.octets,
        if cfg.mode == Mode::Idle {
            cfg.connections
        } else {
            cfg.clients
        },
        out.held,
        out.setup_seconds,
    );
    t.result_fields(&mut o);
    o
}
