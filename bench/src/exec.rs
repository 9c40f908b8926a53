//! The load generator's exec mode: one process per message, as cron jobs and
//! web applications hand mail to `sendmail -t`.
//!
//! Owns spawning `--exec PROGRAM` (with its `--exec-arg`s) for each message,
//! writing the message (LF line ends, as local programs write it) to its
//! standard input and waiting for it. A message counts as accepted when the
//! program exits 0. Each of `--sessions` threads runs one program at a time.
//! Does not own the message text (`message`) or the result line (`main`).
//!
//! Standards: none (sendmail's command-line convention: exit status 0 means
//! the message was taken; sysexits.h codes otherwise).
//!
//! Diagnostics: the first failures (exit status and the first line the
//! program wrote to stderr) go to stderr, as in SMTP mode.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use crate::client::{Failure, SessionTimes, Shared};
use crate::message::{self, Envelope};

/// Runs programs until the shared work is done; returns the thread's times.
pub fn run_session(shared: &Shared, program: &str, args: &[String]) -> SessionTimes {
    let mut times = SessionTimes::default();
    while let Some(seq) = shared.claim() {
        times.first_connect.get_or_insert_with(Instant::now);
        match one(shared, program, args, seq) {
            Ok(()) => {
                shared.accept();
                times.last_accept = Some(Instant::now());
            }
            Err(f) => shared.fail(seq, &f),
        }
    }
    times
}

/// Spawns the program for message `seq` and waits for it.
fn one(shared: &Shared, program: &str, args: &[String], seq: u64) -> Result<(), Failure> {
    let cfg = &shared.cfg;
    let date = message::rfc5322_date(SystemTime::now());
    let crlf = message::build(
        &Envelope {
            from: &cfg.from,
            to: &cfg.to,
            run_id: shared.run_id(),
            seq,
            date: &date,
        },
        cfg.size,
    );
    let text: Vec<u8> = crlf.into_iter().filter(|&b| b != b'\r').collect();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::io("spawn", e))?;
    let written = child.stdin.take().map(|mut i| i.write_all(&text));
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait().map_err(|e| Failure::io("wait", e))?;
    if let Some(Err(e)) = written {
        return Err(Failure::io("stdin", e));
    }
    if !status.success() {
        return Err(Failure::exit(status, err.lines().next().unwrap_or("")));
    }
    Ok(())
}

/// User + system clock ticks of this process's reaped children
/// (/proc/self/stat fields 16 and 17, cutime and cstime; proc(5)), 0 when
/// unreadable.
pub fn children_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces: count from its ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field N is f[N - 3].
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    num(16 - 3) + num(17 - 3)
}
