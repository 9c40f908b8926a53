//! The command types and error kinds of posthorn-imap-bench.
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
    Login,
    Select,
    /// `FETCH 1:* (FLAGS UID RFC822.SIZE)`
    FetchAll,
    /// `FETCH n (BODY.PEEK[])`
    FetchBody,
    Store,
    Search,
    Noop,
    Logout,
}

impl Kind for Cmd {
    const ALL: &'static [Cmd] = &[
        Cmd::Connect,
        Cmd::Login,
        Cmd::Select,
        Cmd::FetchAll,
        Cmd::FetchBody,
        Cmd::Store,
        Cmd::Search,
        Cmd::Noop,
        Cmd::Logout,
    ];

    fn key(self) -> &'static str {
        match self {
            Cmd::Connect => "connect",
            Cmd::Login => "login",
            Cmd::Select => "select",
            Cmd::FetchAll => "fetch_all",
            Cmd::FetchBody => "fetch_body",
            Cmd::Store => "store",
            Cmd::Search => "search",
            Cmd::Noop => "noop",
            Cmd::Logout => "logout",
        }
    }
}

/// Why a session (or round, or idle connection) failed, one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// TCP connect refused or failed.
    Connect,
    /// The greeting was not `* OK`.
    Greeting,
    /// `NO` or `BAD` to LOGIN.
    Login,
    /// `NO` or `BAD` to another command.
    Refused,
    /// An untagged BYE before LOGOUT: the server ended the session.
    Bye,
    /// A BODY[] literal of another size than RFC822.SIZE said.
    SizeMismatch,
    /// A malformed response, or one that contradicts an earlier one.
    Protocol,
    /// SELECT found no messages.
    Empty,
    /// No response within --timeout.
    Timeout,
    /// Connection closed or another I/O error.
    Io,
}

impl Kind for ErrorKind {
    const ALL: &'static [ErrorKind] = &[
        ErrorKind::Connect,
        ErrorKind::Greeting,
        ErrorKind::Login,
        ErrorKind::Refused,
        ErrorKind::Bye,
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
            ErrorKind::Login => "login",
            ErrorKind::Refused => "refused",
            ErrorKind::Bye => "bye",
            ErrorKind::SizeMismatch => "size_mismatch",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Empty => "empty",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
        }
    }
}
