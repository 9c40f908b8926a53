//! IMAP4rev1 / IMAP4rev2 wire grammar without I/O (RFC 3501, RFC 9051).
//!
//! Owns the server side of the IMAP wire: `CommandReader` turns the client's
//! byte stream into events (commands, continuation requests, APPEND data
//! streamed without buffering, errors that say whether to close);
//! `parse_command` parses one complete command into a `Command`;
//! `response` writes status responses, response codes and the data types
//! responses are built of (strings, sequence sets, flags, dates). Session
//! state (which command is allowed when), the mailbox store, SASL (see
//! `crate::sasl`) and the socket live in imapd.
//!
//! The daemon's loop, in outline:
//!
//! ```text
//! let mut rest = &bytes_read[..];
//! while let Some(ev) = reader.next(&mut rest) {
//!     match ev {
//!         Event::Command(c) => run it (after AUTHENTICATE or IDLE:
//!                              reader.read_raw_line()),
//!         Event::Continue => write "+ OK\r\n",
//!         Event::AppendStart/AppendMessage/AppendData/... => Maildir tmp file
//!                              (reader.reject_append() to refuse),
//!         Event::Error { error, fatal } => write error.status() (or
//!                              error.bye() and close when fatal),
//!         Event::Line(l) => SASL response or DONE (parse_done),
//!     }
//! }
//! ```
//!
//! Standards: RFC 3501 and RFC 9051 (base protocol), RFC 7888 (LITERAL+,
//! LITERAL-), RFC 7162 (CONDSTORE, QRESYNC), RFC 4731 (ESEARCH), RFC 5182
//! (SEARCHRES), RFC 5256 (SORT, THREAD), RFC 5258 (LIST-EXTENDED), RFC 5819
//! (LIST-STATUS), RFC 6154 (SPECIAL-USE), RFC 2971 (ID), RFC 5161
//! (ENABLE), RFC 4978 (COMPRESS), RFC 3516 (BINARY), RFC 9208 (QUOTA), RFC
//! 7889 (APPENDLIMIT), RFC 6855 (UTF8=ACCEPT), RFC 4959 (SASL-IR), RFC 3502
//! (MULTIAPPEND), RFC 2177 (IDLE), RFC 3691 (UNSELECT), RFC 6851 (MOVE),
//! RFC 4315 (UIDPLUS), RFC 5530 (response codes). Each module cites the
//! sections it implements.
//!
//! Security: all input is untrusted. Every buffer and every recursion is
//! bounded by a `Limits` the caller chooses; see `reader` for what happens
//! to input beyond a limit. Nothing here panics on input.
//!
//! Diagnostics: nothing is logged; errors are `CommandError` values whose
//! `status()` is the response to send.

mod command;
mod fetch;
mod lexer;
mod reader;
pub mod response;
mod search;
mod types;

pub use command::{
    parse_command, parse_done, Command, CommandBody, IdParams, ListArgs, ListReturn, ListSelect,
    Qresync, SelectParams, StatusItem, StoreMode, MAX_ID_PAIRS,
};
pub use fetch::{FetchAttr, FetchModifiers, Partial, Section, SectionText};
pub use reader::{CommandReader, Event, LITERAL_MINUS_MAX};
pub use response::{ResponseCode, Status, StatusKind};
pub use search::{SearchArgs, SearchKey, SearchReturn, SortCriterion, SortKey, ThreadAlgorithm};
pub use types::{AString, Date, DateTime, Flag, Mailbox, SeqNum, SequenceSet, StringForm, Tag};

/// The bounds the reader and parser enforce; chosen by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The longest command in octets, the CR of each line and the literals
    /// of commands other than APPEND included (Dovecot's
    /// imap_max_line_length is 64 KiB).
    pub max_line: usize,
    /// The largest APPEND message literal (RFC 7889 APPENDLIMIT).
    pub max_literal: u64,
    /// The largest refused non-synchronizing literal that is read and
    /// discarded (RFC 7888 4); a larger one ends the session with BYE.
    pub max_discard: u64,
    /// LITERAL- is announced instead of LITERAL+: non-synchronizing
    /// literals above 4096 octets are refused (RFC 7888 5).
    pub literal_minus: bool,
    /// Nesting: parentheses (search keys, lists), NOT/OR, body part
    /// numbers.
    pub max_depth: usize,
    /// Items in one command: fetch attributes, search keys, list elements,
    /// and the ranges of each sequence set.
    pub max_items: usize,
}

impl Default for Limits {
    /// Dovecot's line length; 64 MiB messages; LITERAL+.
    fn default() -> Limits {
        Limits {
            max_line: 64 * 1024,
            max_literal: 64 * 1024 * 1024,
            max_discard: 64 * 1024 * 1024,
            literal_minus: false,
            max_depth: 32,
            max_items: 10_000,
        }
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("Unknown command.")]
    UnknownCommand,
    #[error("Invalid arguments: {0}.")]
    Syntax(&'static str),
    #[error("Too deep nesting.")]
    TooDeep,
    #[error("Too many items.")]
    TooMany,
    #[error("Invalid tag.")]
    BadTag,
    #[error("Command line too long.")]
    LineTooLong,
    #[error("Literal too big.")]
    LiteralTooBig,
    /// An APPEND message over `Limits::max_literal` (APPENDLIMIT).
    #[error("Message too big.")]
    MessageTooBig,
}

/// A refused command: its tag when it was read, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct CommandError {
    pub tag: Option<Tag>,
    pub error: ParseError,
}

impl CommandError {
    /// The response: tagged when the tag is known, else untagged (RFC
    /// 3501 7.1.3). BAD, with TOOBIG (RFC 5530 3) for a line or literal
    /// over the limit and LIMIT for too deep or too many; an APPEND message
    /// over APPENDLIMIT is NO [TOOBIG] (RFC 7889, RFC 5530 3).
    pub fn status(&self) -> Status {
        let code = match self.error {
            ParseError::LiteralTooBig | ParseError::LineTooLong | ParseError::MessageTooBig => {
                Some(ResponseCode::TooBig)
            }
            ParseError::TooDeep | ParseError::TooMany => Some(ResponseCode::Limit),
            _ => None,
        };
        let kind = if self.error == ParseError::MessageTooBig {
            StatusKind::No
        } else {
            StatusKind::Bad
        };
        Status {
            kind,
            tag: self.tag.clone(),
            code,
            text: self.error.to_string(),
        }
    }

    /// The response when the session must end (`Event::Error` with
    /// `fatal`): untagged BYE (RFC 3501 7.1.5).
    pub fn bye(&self) -> Status {
        Status {
            kind: StatusKind::Bye,
            tag: None,
            ..self.status()
        }
    }
}
