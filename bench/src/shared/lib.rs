//! posthorn_bench: what the load generators share (std only).
//!
//! `stats` (latency histograms, counters and their output), `rng` (the
//! seeded choices), `maildir` (the test mailboxes), `line` (bounded line
//! reads, connecting), `work` (claiming sessions, mailboxes in rotation), `number` (flag
//! values). Each generator (POP3 in `src/pop3`, IMAP
//! in `src/imap`) owns its protocol, flags and report; the SMTP generator
//! (`src/main.rs`) predates this and shares nothing yet.
//!
//! Diagnostics: none here; see each module.

pub mod line;
pub mod maildir;
pub mod rng;
pub mod stats;
pub mod work;

/// `--flag=value` as the flag and its inline value; anything else as itself
/// with no value.
pub fn split_flag(arg: &str) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
        _ => (arg.to_string(), None),
    }
}

/// The checks of the mailbox flags both generators take: `--users` at least
/// 1, `--user-pattern` with `%d` and no spaces or line ends, `--first-user`
/// + `--users` within u32.
pub fn check_users(users: u32, pattern: &str, first_user: u32) -> Result<(), String> {
    if users == 0 {
        return Err("--users must be at least 1".into());
    }
    if !pattern.contains("%d") {
        return Err("--user-pattern must contain %d (the user's number)".into());
    }
    if first_user.checked_add(users - 1).is_none() {
        return Err("--first-user + --users is too large".into());
    }
    if pattern.contains([' ', '\r', '\n']) {
        return Err("user names cannot hold spaces or line ends".into());
    }
    Ok(())
}

/// The checks of the client flags both generators take: `--clients` at
/// least 1, `--timeout` at least a second, a password without line ends.
pub fn check_clients(
    clients: usize,
    timeout: std::time::Duration,
    password: &str,
) -> Result<(), String> {
    if clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if timeout.is_zero() {
        return Err("--timeout must be at least 1".into());
    }
    if password.contains(['\r', '\n']) {
        return Err("the password cannot hold line ends".into());
    }
    Ok(())
}

/// A flag's value parsed as `T`, or why not: `--flag: "x" is not a valid
/// number`.
pub fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: {v:?} is not a valid number"))
}
