//! The command reader: bytes from the socket in, events out (a complete
//! command, "send a continuation now", APPEND message data as it arrives,
//! errors with their tag and whether the session must end).
//!
//! Owns the framing of commands on the stream: lines, synchronizing and
//! non-synchronizing literals, literal8, the limits on each, and the
//! recovery after an error (what is discarded, when the connection must
//! close). Does not own the syntax inside a command (`command`), what the
//! continuation or error text says, or where APPEND data goes (imapd
//! writes it to a Maildir tmp file as the events come).
//!
//! Standards: RFC 3501 2.2.1 and 7.5 / RFC 9051 2.2.1 and 7.5 (literals and
//! the command continuation request), 6.3.11 (APPEND); RFC 3502 (MULTIAPPEND);
//! RFC 7888 4-5 (LITERAL+ and LITERAL-: non-synchronizing literals, at most
//! 4096 octets under LITERAL-); RFC 3516 4.1 (`~{n}` literal8 in APPEND);
//! RFC 7889 (APPENDLIMIT, TOOBIG); RFC 6855 4 (`UTF8 (~{n})` messages);
//! RFC 4959 / RFC 3501 6.2.2 (AUTHENTICATE continuation lines, read raw
//! with `read_raw_line`); RFC 2177 3 (DONE).
//!
//! Security: every byte is untrusted. The reader holds at most one command
//! (`Limits::max_line` octets, literals of commands other than APPEND
//! included) and never the bytes behind it: `next` consumes input only up
//! to the end of the current event. APPEND message literals are never
//! buffered: they leave as `AppendData` slices of the caller's input.
//! Limits are checked when a literal is announced, so an oversized
//! synchronizing literal is refused before any `+` is sent (and the client,
//! which waits for it, sends nothing more); an oversized non-synchronizing
//! literal (RFC 7888 4) is answered with BAD [TOOBIG] and its announced
//! bytes are read and discarded without being kept, unless it is larger than
//! `Limits::max_discard`, when the session must end with BYE. An over-long
//! line is answered with BAD (tagged when the tag was read) and discarded to
//! its end; if it ended with a non-synchronizing literal, that literal and
//! the rest of the command are discarded too, so its bytes are never read
//! as commands.
//!
//! Diagnostics: nothing is logged; errors are `Event::Error` values carrying
//! a `CommandError` (its `status()` is the response to send).

use std::collections::VecDeque;

use super::command::{is_command_name, parse_command, Command};
use super::lexer::Lexer;
use super::types::{DateTime, Flag, Mailbox, Tag};
use super::{CommandError, Limits, ParseError};

/// What the reader has found in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete command (any but APPEND).
    Command(Command),
    /// A synchronizing literal was accepted: send a command continuation
    /// request (`+ ...` CRLF, RFC 3501 7.5) now.
    Continue,
    /// The line asked for with `read_raw_line`, CRLF removed.
    Line(Vec<u8>),
    /// An APPEND begins (RFC 3501 6.3.11). It ends with `AppendEnd` or an
    /// `Error` with its tag.
    AppendStart { tag: Tag, mailbox: Mailbox },
    /// A message of the APPEND follows (more than one with MULTIAPPEND,
    /// RFC 3502): `size` octets in `AppendData` events, then
    /// `AppendMessageEnd`. `binary` for literal8 (RFC 3516 4.4). The session
    /// may call `CommandReader::reject_append` now (before the `Continue`
    /// that may follow) to refuse it, e.g. NO [TRYCREATE].
    AppendMessage {
        flags: Vec<Flag>,
        date: Option<DateTime>,
        size: u64,
        binary: bool,
        /// Sent as `UTF8 (~{n})` (RFC 6855 4: the client has enabled
        /// UTF8=ACCEPT and the message may have UTF-8 headers).
        utf8: bool,
    },
    /// Message bytes, a piece of the caller's input; how the message is cut
    /// into pieces depends on how the input was.
    AppendData(&'a [u8]),
    /// The current message is complete.
    AppendMessageEnd,
    /// The APPEND command is complete.
    AppendEnd,
    /// A command was refused; `fatal`: send the response untagged as BYE
    /// and close (RFC 3501 7.1.5).
    Error { error: CommandError, fatal: bool },
}

/// The RFC 7888 5 bound on non-synchronizing literals under LITERAL-.
pub const LITERAL_MINUS_MAX: u64 = 4096;

/// The last bytes of a discarded line kept to see a literal announcement.
const TAIL: usize = 24;

#[derive(Debug)]
enum State {
    /// Reading a command line into `buf`.
    Line,
    /// Reading `left` literal octets of a command into `buf`.
    Literal { left: usize },
    /// Passing `left` APPEND message octets through.
    AppendData { left: u64 },
    /// Reading the rest of an APPEND line after a message into `buf`.
    AppendNext,
    /// Dropping `left` octets of a literal, then the rest of the line (and
    /// of the command, if the line announces another non-synchronizing
    /// literal).
    Discard { left: u64, tail: Vec<u8>, raw: bool },
    /// A fatal error was reported; input is ignored.
    Closed,
}

/// Turns the client's byte stream into `Event`s. Feed it with `next`
/// until it returns None (all input consumed), after acting on each event.
#[derive(Debug)]
pub struct CommandReader {
    limits: Limits,
    state: State,
    /// The current command (lines without CRLF; literals inline after their
    /// announcement's CRLF); never longer than `limits.max_line`.
    buf: Vec<u8>,
    /// Where the current line starts in `buf`.
    line_start: usize,
    /// The next line is returned as `Event::Line`.
    raw: bool,
    /// The tag of the APPEND in progress.
    append: Option<Tag>,
    /// The last message announced was synchronizing (for reject_append).
    append_sync: bool,
    /// The last message was `UTF8 (~{n})`: a ")" follows it.
    append_paren: bool,
    pending: VecDeque<Event<'static>>,
}

impl CommandReader {
    /// Give back the buffer's memory when no command is in progress (a
    /// quiet session).
    pub fn shrink(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
        self.pending.shrink_to_fit();
    }

    pub fn new(limits: Limits) -> CommandReader {
        CommandReader {
            limits,
            state: State::Line,
            buf: Vec::new(),
            line_start: 0,
            raw: false,
            append: None,
            append_sync: false,
            append_paren: false,
            pending: VecDeque::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Change the limits (e.g. after ENABLE or login), between commands.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Bytes held for the current command; never above `max_line`.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Return the next line whole as `Event::Line` (an AUTHENTICATE
    /// response, RFC 3501 6.2.2; IDLE's DONE, RFC 2177 3), literals not
    /// interpreted. Call after the event that asks for it.
    pub fn read_raw_line(&mut self) {
        self.raw = true;
    }

    /// Refuse the message just announced by `AppendMessage` (the session
    /// answers the tag itself, e.g. NO [TRYCREATE]). For a synchronizing
    /// literal the `Continue` is withdrawn and the client, which waits for
    /// it, sends nothing more; a non-synchronizing one is read and
    /// discarded with the rest of the command. Called later, while the
    /// message streams (a write failed, the quota ran out), the rest of the
    /// message and of the command are discarded the same way.
    pub fn reject_append(&mut self) {
        if let State::AppendData { left } = self.state {
            // Whether the client was told to send: then its bytes come
            // and are dropped (a caller that calls this too late).
            let told = self.append_sync && !self.pending.contains(&Event::Continue);
            self.pending.retain(|e| *e != Event::Continue);
            self.append = None;
            self.state = if self.append_sync && !told {
                State::Line
            } else {
                State::Discard {
                    left,
                    tail: Vec::new(),
                    raw: false,
                }
            };
        }
    }

    /// The next event, consuming from `input` only what it needs; None when
    /// `input` is used up without an event.
    pub fn next<'a>(&mut self, input: &mut &'a [u8]) -> Option<Event<'a>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            match self.state {
                State::Closed => {
                    *input = &[];
                    return None;
                }
                State::AppendData { left } => {
                    if left == 0 {
                        self.state = State::AppendNext;
                        self.line_start = 0;
                        return Some(Event::AppendMessageEnd);
                    }
                    if input.is_empty() {
                        return None;
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    let (data, rest) = input.split_at(n);
                    *input = rest;
                    self.state = State::AppendData {
                        left: left - n as u64,
                    };
                    return Some(Event::AppendData(data));
                }
                State::Literal { left } => {
                    if input.is_empty() {
                        return None;
                    }
                    let n = left.min(input.len());
                    self.buf.extend_from_slice(&input[..n]);
                    *input = &input[n..];
                    self.state = if left == n {
                        self.line_start = self.buf.len();
                        State::Line
                    } else {
                        State::Literal { left: left - n }
                    };
                }
                State::Discard {
                    ref mut left,
                    ref mut tail,
                    raw,
                } => {
                    if input.is_empty() {
                        return None;
                    }
                    if *left > 0 {
                        let n = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(input.len());
                        *input = &input[n..];
                        *left -= n as u64;
                        continue;
                    }
                    let lf = input.iter().position(|&b| b == b'\n');
                    let end = lf.unwrap_or(input.len());
                    tail.extend_from_slice(&input[..end]);
                    if tail.len() > TAIL {
                        tail.drain(..tail.len() - TAIL);
                    }
                    *input = &input[(end + 1).min(input.len())..];
                    if lf.is_some() {
                        let line = tail.strip_suffix(b"\r").unwrap_or(tail);
                        match literal_at_end(line) {
                            // RFC 7888 4: the client sends a non-synchronizing
                            // literal without waiting; drop it too.
                            Some(lit) if !raw && !lit.sync => {
                                *left = lit.size;
                                tail.clear();
                            }
                            _ => {
                                self.state = State::Line;
                                self.buf.clear();
                                self.line_start = 0;
                            }
                        }
                    }
                }
                State::Line | State::AppendNext => {
                    if input.is_empty() {
                        return None;
                    }
                    if let Some(e) = self.read_line(input) {
                        return Some(e);
                    }
                }
            }
        }
    }

    /// Take bytes up to and including LF into `buf`; at the end of a line,
    /// act on it.
    fn read_line<'a>(&mut self, input: &mut &'a [u8]) -> Option<Event<'a>> {
        let lf = input.iter().position(|&b| b == b'\n');
        let end = lf.unwrap_or(input.len());
        let room = self.limits.max_line.saturating_sub(self.buf.len());
        if end > room {
            // Over-long line: take what fits (so that the tag and the tail
            // do not depend on how the input was cut), keep nothing more,
            // report it now and drop the rest of the line.
            self.buf.extend_from_slice(&input[..room]);
            *input = &input[room..];
            let raw = self.raw;
            let tag = if raw { None } else { self.current_tag() };
            let tail = self.buf[self.buf.len().saturating_sub(TAIL)..].to_vec();
            self.raw = false;
            self.append = None;
            self.buf.clear();
            self.line_start = 0;
            self.state = State::Discard { left: 0, tail, raw };
            return Some(self.error(tag, ParseError::LineTooLong, false));
        }
        self.buf.extend_from_slice(&input[..end]);
        *input = &input[(end + 1).min(input.len())..];
        lf?;
        // RFC 3501 2.2: lines end with CRLF; a bare LF is taken too.
        // (Only a CR of this line: one ending a literal is data.)
        if self.buf.len() > self.line_start && self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if self.raw {
            self.raw = false;
            self.line_start = 0;
            return Some(Event::Line(std::mem::take(&mut self.buf)));
        }
        if matches!(self.state, State::AppendNext) {
            return self.append_next();
        }
        let line = &self.buf[self.line_start..];
        let Some(lit) = literal_at_end(line) else {
            if self.buf.is_empty() {
                // An empty line is not a command; ignore it.
                return None;
            }
            let cmd = std::mem::take(&mut self.buf);
            self.line_start = 0;
            return Some(match parse_command(&cmd, &self.limits) {
                Ok(c) => Event::Command(c),
                Err(error) => Event::Error {
                    error,
                    fatal: false,
                },
            });
        };
        let head_end = self.line_start + lit.start;
        if let Some(r) = self.append_head(head_end, &lit) {
            return match r {
                Ok((tag, mailbox, head)) => {
                    self.pending.push_back(Event::AppendStart {
                        tag: tag.clone(),
                        mailbox,
                    });
                    self.append = Some(tag.clone());
                    self.buf.clear();
                    self.line_start = 0;
                    self.append_message(Some(tag), head, lit)
                }
                Err(error) => Some(self.refuse(error, lit)),
            };
        }
        // A literal inside a command. Before inviting it, the command must
        // have a tag and a name we know (RFC 3501 7.5: the server may
        // answer BAD instead of "+"), so no "+" is ever sent to something
        // that is not IMAP.
        let tag = self.current_tag();
        if tag.is_none() || !self.known_name() {
            let error = if tag.is_none() {
                ParseError::BadTag
            } else {
                ParseError::UnknownCommand
            };
            return Some(self.refuse(CommandError { tag, error }, lit));
        }
        // It counts toward max_line, CRLF too.
        let total = (self.buf.len() as u64)
            .saturating_add(2)
            .saturating_add(lit.size);
        if lit.eight {
            return Some(self.refuse(
                CommandError {
                    tag,
                    error: ParseError::Syntax("literal8 only in APPEND"),
                },
                lit,
            ));
        }
        if total > self.limits.max_line as u64 || self.minus_refused(&lit) {
            return Some(self.refuse(
                CommandError {
                    tag,
                    error: ParseError::LiteralTooBig,
                },
                lit,
            ));
        }
        self.buf.extend_from_slice(b"\r\n");
        // total <= max_line, so size fits usize.
        let left = usize::try_from(lit.size).unwrap_or(usize::MAX);
        if left == 0 {
            self.line_start = self.buf.len();
        } else {
            self.state = State::Literal { left };
        }
        if lit.sync {
            return Some(Event::Continue);
        }
        None
    }

    /// RFC 7888 5: under LITERAL- a non-synchronizing literal may be at
    /// most 4096 octets.
    fn minus_refused(&self, lit: &Literal) -> bool {
        !lit.sync && self.limits.literal_minus && lit.size > LITERAL_MINUS_MAX
    }

    /// After a message of an APPEND: the end of the command, or the next
    /// message of a MULTIAPPEND (RFC 3502 6.3.11: `*(SP [flag-list SP]
    /// [date-time SP] literal)`).
    fn append_next<'a>(&mut self) -> Option<Event<'a>> {
        let tag = self.append.clone();
        let mut line = std::mem::take(&mut self.buf);
        self.line_start = 0;
        self.state = State::Line;
        // RFC 6855 4: utf8-literal = "UTF8" SP "(" literal8 ")".
        if std::mem::take(&mut self.append_paren) {
            if line.first() != Some(&b')') {
                self.append = None;
                return Some(self.error(tag, ParseError::Syntax("expected )"), false));
            }
            line.remove(0);
        }
        if line.is_empty() {
            self.append = None;
            return Some(Event::AppendEnd);
        }
        let syntax = |what| CommandError {
            tag: tag.clone(),
            error: ParseError::Syntax(what),
        };
        let Some(lit) = literal_at_end(&line) else {
            self.append = None;
            return Some(self.error_event(syntax("bad text after the message")));
        };
        let mut lx = Lexer::new(&line[..lit.start], &self.limits);
        let head = lx.sp().and_then(|()| message_head(&mut lx, &lit));
        match head {
            Ok(head) => self.append_message(tag, head, lit),
            Err(error) => {
                self.append = None;
                Some(self.refuse(CommandError { tag, error }, lit))
            }
        }
    }

    /// A message literal of APPEND was announced: check it against the
    /// limits, then announce it.
    fn append_message<'a>(
        &mut self,
        tag: Option<Tag>,
        head: MessageHead,
        lit: Literal,
    ) -> Option<Event<'a>> {
        // RFC 7889 / RFC 7888 4: too big for APPENDLIMIT, or for LITERAL-.
        if lit.size > self.limits.max_literal || self.minus_refused(&lit) {
            self.append = None;
            let error = if lit.size > self.limits.max_literal {
                ParseError::MessageTooBig
            } else {
                ParseError::LiteralTooBig
            };
            let e = self.refuse(CommandError { tag, error }, lit);
            self.pending.push_back(e);
            return self.pending.pop_front();
        }
        self.append_sync = lit.sync;
        self.append_paren = head.utf8;
        self.pending.push_back(Event::AppendMessage {
            flags: head.flags,
            date: head.date,
            size: lit.size,
            binary: lit.eight && !head.utf8,
            utf8: head.utf8,
        });
        if lit.sync {
            self.pending.push_back(Event::Continue);
        }
        self.state = State::AppendData { left: lit.size };
        self.pending.pop_front()
    }

    /// Whether the command so far (up to `head_end`, where a literal is
    /// announced) is an APPEND whose message literal this is: None when it
    /// is not APPEND or the literal is an argument (a mailbox literal).
    fn append_head(
        &self,
        head_end: usize,
        lit: &Literal,
    ) -> Option<Result<(Tag, Mailbox, MessageHead), CommandError>> {
        let head = &self.buf[..head_end];
        let sp = head.iter().position(|&b| b == b' ')?;
        let rest = &head[sp + 1..];
        if rest.len() < 7 || !rest[..7].eq_ignore_ascii_case(b"APPEND ") {
            return None;
        }
        let tag = Tag::new(&head[..sp])?;
        let mut lx = Lexer::new(&rest[7..], &self.limits);
        if lx.at_end() {
            // The literal is the mailbox name (or follows one).
            return None;
        }
        let r = (|| {
            let mailbox = lx.mailbox()?;
            lx.sp()?;
            let head = message_head(&mut lx, lit)?;
            Ok((mailbox, head))
        })();
        Some(match r {
            Ok((mailbox, head)) => Ok((tag, mailbox, head)),
            Err(error) => Err(CommandError {
                tag: Some(tag),
                error,
            }),
        })
    }

    /// Refuse a command whose line ends with the literal `lit`: a
    /// synchronizing literal is never sent (no `+`), a non-synchronizing
    /// one is discarded, or ends the session beyond `max_discard`.
    fn refuse<'a>(&mut self, error: CommandError, lit: Literal) -> Event<'a> {
        self.buf.clear();
        self.line_start = 0;
        if lit.sync {
            self.state = State::Line;
            return self.error_event(error);
        }
        if lit.size > self.limits.max_discard {
            self.state = State::Closed;
            return Event::Error { error, fatal: true };
        }
        self.state = State::Discard {
            left: lit.size,
            tail: Vec::new(),
            raw: false,
        };
        self.error_event(error)
    }

    fn error_event<'a>(&self, error: CommandError) -> Event<'a> {
        Event::Error {
            error,
            fatal: false,
        }
    }

    fn error<'a>(&self, tag: Option<Tag>, error: ParseError, fatal: bool) -> Event<'a> {
        Event::Error {
            error: CommandError { tag, error },
            fatal,
        }
    }

    /// Whether the command being read has a name `parse_command` knows
    /// (after the tag; UID's sub-command is checked by the parser).
    fn known_name(&self) -> bool {
        let Some(sp) = self.buf.iter().position(|&b| b == b' ') else {
            return false;
        };
        let rest = &self.buf[sp + 1..];
        let end = rest
            .iter()
            .position(|&b| !b.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        is_command_name(&rest[..end])
    }

    /// The tag of the command being read, when it has been read whole.
    fn current_tag(&self) -> Option<Tag> {
        if self.append.is_some() {
            return self.append.clone();
        }
        let sp = self.buf.iter().position(|&b| b == b' ')?;
        Tag::new(&self.buf[..sp])
    }
}

/// What precedes a message literal in APPEND.
struct MessageHead {
    flags: Vec<Flag>,
    date: Option<DateTime>,
    utf8: bool,
}

/// `[flag-list SP] [date-time SP] ["UTF8" SP "("]` up to the end (RFC 3501
/// 9 `append`, the SP before the literal included; RFC 6855 4
/// `utf8-literal`, which must be a literal8).
fn message_head(lx: &mut Lexer<'_>, lit: &Literal) -> Result<MessageHead, ParseError> {
    let mut head = MessageHead {
        flags: Vec::new(),
        date: None,
        utf8: false,
    };
    if lx.peek() == Some(b'(') {
        head.flags = lx.flag_list()?;
        lx.sp()?;
    }
    if lx.peek() == Some(b'"') {
        head.date = Some(lx.date_time()?);
        lx.sp()?;
    }
    if lx.peek_keyword() == "UTF8" {
        lx.keyword()?;
        lx.sp()?;
        lx.expect(b'(', "expected (")?;
        if !lit.eight {
            return Err(ParseError::Syntax("UTF8 needs a literal8"));
        }
        head.utf8 = true;
    }
    lx.end()?;
    Ok(head)
}

/// A literal announcement at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Literal {
    /// Where the announcement (`~` or `{`) starts in the line.
    start: usize,
    size: u64,
    sync: bool,
    eight: bool,
}

/// RFC 3501 9 `literal = "{" number "}" CRLF`, RFC 7888 `{n+}`, RFC 3516
/// `~{n}`: the announcement ending `line`, if any. A number too large for
/// 64 bits is taken as u64::MAX, which every limit refuses.
fn literal_at_end(line: &[u8]) -> Option<Literal> {
    let inner = line.strip_suffix(b"}")?;
    let (inner, sync) = match inner.strip_suffix(b"+") {
        Some(i) => (i, false),
        None => (inner, true),
    };
    let digits = inner
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return None;
    }
    let open = inner.len().checked_sub(digits + 1)?;
    if inner[open] != b'{' {
        return None;
    }
    let size = inner[open + 1..].iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    let eight = open > 0 && line[open - 1] == b'~';
    Some(Literal {
        start: if eight { open - 1 } else { open },
        size: size.unwrap_or(u64::MAX),
        sync,
        eight,
    })
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
