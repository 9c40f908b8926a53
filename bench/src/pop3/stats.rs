//! The command types and error kinds of posthorn-pop3-bench.
//!
//! Owns their names in the output; recording, merging and printing the
//! figures is `posthorn_bench::stats`.
//!
//! Diagnostics: none.

use posthorn_bench::stats::{self, Kind};

/// The counters of a client thread or of the run.
pub type Stats = stats::Stats<Cmd, ErrorKind>;

/// The command types whose latency is recorded, in output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// TCP connect and the server's greeting.
    Connect,
    User,
    Pass,
    Stat,
    List,
    Uidl,
    Retr,
    Quit,
}

impl Kind for Cmd {
    const ALL: &'static [Cmd] = &[
        Cmd::Connect,
        Cmd::User,
        Cmd::Pass,
        Cmd::Stat,
        Cmd::List,
        Cmd::Uidl,
        Cmd::Retr,
        Cmd::Quit,
    ];

    fn key(self) -> &'static str {
        match self {
            Cmd::Connect => "connect",
            Cmd::User => "user",
            Cmd::Pass => "pass",
            Cmd::Stat => "stat",
            Cmd::List => "list",
            Cmd::Uidl => "uidl",
            Cmd::Retr => "retr",
            Cmd::Quit => "quit",
        }
    }
}

/// Why a session failed, one counter each; `key` names it in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// TCP connect refused or failed.
    Connect,
    /// The greeting was not `+OK`.
    Greeting,
    /// `-ERR` to USER.
    User,
    /// `-ERR` to PASS (not `[IN-USE]`).
    Pass,
    /// `-ERR [IN-USE]` (RFC 2449 8.1.1): the mailbox is locked by another session.
    InUse,
    /// `-ERR` to STAT, LIST, UIDL, RETR or QUIT.
    Refused,
    /// RETR delivered a different number of octets than LIST said.
    SizeMismatch,
    /// A malformed reply, or LIST/UIDL disagreeing with STAT.
    Protocol,
    /// STAT reported an empty mailbox: nothing to retrieve.
    Empty,
    /// No reply within --timeout.
    Timeout,
    /// Connection closed or another I/O error.
    Io,
}

impl Kind for ErrorKind {
    const ALL: &'static [ErrorKind] = &[
        ErrorKind::Connect,
        ErrorKind::Greeting,
        ErrorKind::User,
        ErrorKind::Pass,
        ErrorKind::InUse,
        ErrorKind::Refused,
        ErrorKind::SizeMismatch,
        ErrorKind::Protocol,
        ErrorKind::Empty,
        ErrorKind::Timeout,
        ErrorKind::Io,
    ];

    fn key(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Greeting => "greeting",
            ErrorKind::User => "user",
            ErrorKind::Pass => "pass",
            ErrorKind::InUse => "in_use",
            ErrorKind::Refused => "refused",
            ErrorKind::SizeMismatch => "size_mismatch",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Empty => "empty",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
        }
    }
}
