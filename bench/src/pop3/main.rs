//! posthorn-pop3-bench: POP3 load generator for comparing posthorn with Dovecot.
//!
//! Runs `--clients` concurrent POP3 clients (a thread each) against one
//! server; each loops over whole sessions (connect, USER, PASS, STAT, LIST,
//! UIDL, RETR of random messages checked against LIST's sizes, QUIT) on the
//! mailboxes user1..userN in rotation, until `--sessions` sessions
//! succeeded or `--seconds` passed. Owns the run: threads, wall clock, the
//! report. `make-maildirs` writes the test mailboxes instead (`maildir`).
//! The conversation is in `session`, line reading in `wire`, histograms in
//! `stats`, flags in `args`. `bench/pop3.sh` drives it against Dovecot and
//! posthorn; see `bench/README.md`.
//!
//! Standards: RFC 1939 (POP3), RFC 2449 8.1.1 ([IN-USE]); no TLS (std
//! only: the measurement is plaintext on loopback).
//!
//! Diagnostics: a human-readable report on stdout (throughput, latency per
//! command type and per session: count, p50, p99, max, mean, in ms; errors
//! by kind), then one machine-readable line:
//!
//! `result sessions=N failed=N commands=N seconds=S sessions_per_s=R
//! commands_per_s=R retr_octets=N session_p50_ms=.. session_p99_ms=..
//! session_max_ms=.. CMD_p50_ms=.. CMD_p99_ms=.. CMD_max_ms=.. (CMD:
//! connect user pass stat list uidl retr quit) err_KIND=N (KIND: connect
//! greeting user pass in_use refused size_mismatch protocol empty timeout
//! io)`
//!
//! Keys are only ever added, never renamed or reordered. `seconds` runs
//! from the first session's connect to the last session's end. The first
//! few failures go to stderr. Exit status 0 when every session succeeded
//! (and, with `--sessions`, all of them ran), 1 otherwise, 2 for bad usage.
//!
//! Parameters: see `args::USAGE` (`posthorn-pop3-bench --help`).

mod args;
mod maildir;
mod rng;
mod session;
mod stats;
mod wire;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::thread;
use std::time::Instant;

use args::{Config, Parsed};
use session::{ClientResult, Shared};
use stats::{Cmd, ErrorKind, Histogram, Stats};

/// Stack per client thread; a session holds a line buffer and a size list.
const CLIENT_STACK: usize = 256 * 1024;

fn main() -> ExitCode {
    let cfg = match args::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(cfg)) => cfg,
        Ok(Parsed::MakeMaildirs(md)) => return make_maildirs(&md),
        Ok(Parsed::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("posthorn-pop3-bench: {e}");
            eprint!("{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let shared = Shared::new(cfg, start);
    let results = match run(&shared) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("posthorn-pop3-bench: cannot start client threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut total = Stats::default();
    for r in &results {
        total.merge(&r.stats);
    }
    let first = results
        .iter()
        .filter_map(|r| r.first_start)
        .min()
        .unwrap_or(start);
    let last = results
        .iter()
        .filter_map(|r| r.last_end)
        .max()
        .unwrap_or_else(Instant::now);
    let seconds = last.saturating_duration_since(first).as_secs_f64();
    print!("{}", report(&shared.cfg, &total, seconds));
    println!("{}", result_line(&total, seconds));
    let complete = shared.cfg.sessions.is_none_or(|n| total.ok_sessions >= n);
    if total.failed_sessions == 0 && complete && total.ok_sessions > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn make_maildirs(md: &maildir::MaildirConfig) -> ExitCode {
    match maildir::make_maildirs(md) {
        Ok(s) => {
            println!(
                "maildirs users={} messages={} octets={} virtual_octets={} dir={}",
                s.users,
                s.messages,
                s.octets,
                s.virtual_octets,
                md.dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("posthorn-pop3-bench: make-maildirs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs all clients to completion; a client that panicked contributes
/// nothing.
fn run(shared: &Shared) -> std::io::Result<Vec<ClientResult>> {
    thread::scope(|s| {
        let mut handles = Vec::with_capacity(shared.cfg.clients);
        for i in 0..shared.cfg.clients {
            let h = thread::Builder::new()
                .name(format!("client-{i}"))
                .stack_size(CLIENT_STACK)
                .spawn_scoped(s, move || session::run_client(shared, i as u64))?;
            handles.push(h);
        }
        Ok(handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect())
    })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn rate(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// The human-readable report.
fn report(cfg: &Config, t: &Stats, seconds: f64) -> String {
    let mut o = String::new();
    let retr = if cfg.retr_all {
        "every message retrieved".to_string()
    } else {
        format!("{} RETR per session", cfg.retr)
    };
    let _ = writeln!(
        o,
        "posthorn-pop3-bench: {}:{}, {} clients, {} mailboxes {} from {} ({}), {retr}",
        cfg.host,
        cfg.port,
        cfg.clients,
        cfg.users,
        cfg.user_pattern,
        cfg.first_user,
        if cfg.exclusive {
            "one session per mailbox at a time"
        } else {
            "shared"
        },
    );
    let _ = writeln!(
        o,
        "{} sessions ok, {} failed in {seconds:.3} s: {:.1} sessions/s, {:.1} commands/s, {:.2} MB/s retrieved",
        t.ok_sessions,
        t.failed_sessions,
        rate(t.ok_sessions, seconds),
        rate(t.commands, seconds),
        rate(t.retr_octets, seconds) / 1e6,
    );
    let _ = writeln!(
        o,
        "{:<12} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "latency ms", "count", "p50", "p99", "max", "mean"
    );
    let row = |o: &mut String, name: &str, h: &Histogram| {
        let _ = writeln!(
            o,
            "{name:<12} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            h.count(),
            ms(h.percentile_us(50.0)),
            ms(h.percentile_us(99.0)),
            ms(h.max_us()),
            h.mean_us() / 1000.0
        );
    };
    for c in Cmd::ALL {
        row(&mut o, c.key(), t.cmd_ref(c));
    }
    row(&mut o, "session", &t.session);
    let errs: Vec<String> = ErrorKind::ALL
        .iter()
        .filter(|&&k| t.errors(k) > 0)
        .map(|&k| format!("{}={}", k.key(), t.errors(k)))
        .collect();
    let _ = writeln!(
        o,
        "errors: {}",
        if errs.is_empty() {
            "none".to_string()
        } else {
            errs.join(" ")
        }
    );
    o
}

/// The machine-readable line (see the file header for its keys).
fn result_line(t: &Stats, seconds: f64) -> String {
    let mut o = format!(
        "result sessions={} failed={} commands={} seconds={seconds:.3} sessions_per_s={:.1} \
         commands_per_s={:.1} retr_octets={}",
        t.ok_sessions,
        t.failed_sessions,
        t.commands,
        rate(t.ok_sessions, seconds),
        rate(t.commands, seconds),
        t.retr_octets
    );
    let mut lat = |name: &str, h: &Histogram| {
        let _ = write!(
            o,
            " {name}_p50_ms={:.3} {name}_p99_ms={:.3} {name}_max_ms={:.3}",
            ms(h.percentile_us(50.0)),
            ms(h.percentile_us(99.0)),
            ms(h.max_us())
        );
    };
    lat("session", &t.session);
    for c in Cmd::ALL {
        lat(c.key(), t.cmd_ref(c));
    }
    for k in ErrorKind::ALL {
        let _ = write!(o, " err_{}={}", k.key(), t.errors(k));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn result_line_has_every_key_in_order() {
        let mut t = Stats::default();
        t.ok_sessions = 10;
        t.commands = 100;
        t.retr_octets = 12345;
        t.session.record(Duration::from_micros(1500));
        t.cmd(Cmd::Retr).record(Duration::from_micros(250));
        t.error(ErrorKind::SizeMismatch);
        t.failed_sessions = 1;
        let line = result_line(&t, 2.0);
        assert!(
            line.starts_with(
                "result sessions=10 failed=1 commands=100 seconds=2.000 sessions_per_s=5.0 \
             commands_per_s=50.0 retr_octets=12345 session_p50_ms=1.5"
            ),
            "{line}"
        );
        assert!(line.contains(" retr_p50_ms=0.25"), "{line}");
        assert!(
            line.contains(" err_size_mismatch=1 err_protocol=0"),
            "{line}"
        );
        let keys: Vec<&str> = line
            .split(' ')
            .skip(1)
            .map(|kv| kv.split_once('=').unwrap().0)
            .collect();
        assert_eq!(keys.len(), 7 + 3 + 8 * 3 + 11);
        assert!(keys.ends_with(&["err_empty", "err_timeout", "err_io"]));
        let r = report(&Config::default(), &t, 2.0);
        assert!(r.contains("errors: size_mismatch=1"), "{r}");
    }
}
