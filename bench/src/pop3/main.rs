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
mod session;
mod stats;
mod wire;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use posthorn_bench::maildir;
use posthorn_bench::stats::rate;
use posthorn_bench::work;

use args::{Config, Parsed};
use session::Shared;
use stats::Stats;

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
    let clients = shared.cfg.clients;
    let results = match work::in_threads(clients, "client", CLIENT_STACK, |i| {
        session::run_client(&shared, i as u64)
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("posthorn-pop3-bench: cannot start client threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (total, seconds) = work::merge_clients(&results, start);
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
        rate(t.octets, seconds) / 1e6,
    );
    t.latency_table(&mut o, "session");
    let _ = writeln!(o, "{}", t.errors_line());
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
        t.octets
    );
    t.result_fields(&mut o);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use stats::{Cmd, ErrorKind};

    #[test]
    fn result_line_has_every_key_in_order() {
        let mut t = Stats::default();
        t.ok_sessions = 10;
        t.commands = 100;
        t.octets = 12345;
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
