//! posthorn_bench: what the load generators share (std only).
//!
//! `stats` (latency histograms, counters and their output), `rng` (the
//! seeded choices), `maildir` (the test mailboxes), `line` (bounded line
//! reads), `work` (claiming sessions, mailboxes in rotation), `number` (flag
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

/// A flag's value parsed as `T`, or why not: `--flag: "x" is not a valid
/// number`.
pub fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: {v:?} is not a valid number"))
}
