//! The POP3 session after login, as the mailbox owner's process runs it:
//! commands in, replies and streamed messages out, deletions at QUIT.
//!
//! Owns the TRANSACTION state of RFC 1939 over a `Maildrop`: the message
//! list fixed at login, the deletion marks (DELE, RSET), STAT, LIST, UIDL,
//! NOOP, CAPA, RETR and TOP streamed in chunks through
//! `proto::pop3::MessageWriter`, QUIT and the UPDATE state (deleting the
//! marked messages), the bad-command count, and the log line at the end in
//! Dovecot's shape. Does no socket I/O: reading a message's bytes happens in
//! `produce`, one chunk per call, when the caller asks (`Step::Produce`);
//! deleting is the caller's job off the event loop (`Step::Commit`, then
//! `commit_done`). The Maildrop (the lead's, over mailstore) owns the files.
//!
//! Standards: RFC 1939 5 (STAT, LIST, RETR, DELE, NOOP, RSET), 6 (QUIT and
//! the UPDATE state: a session that ends without QUIT deletes nothing), 7
//! (TOP, UIDL), 3 (multi-line responses); RFC 2449 5 and 6 (CAPA after
//! login: no USER, SASL or STLS), 6.6 (PIPELINING: commands are taken in
//! order, however they arrive); RFC 3206 4 (SYS/TEMP).
//!
//! Security: the input is an authenticated user's, still untrusted: lines
//! are bounded (RFC 2449 4's 255 octets), numbers are checked against the
//! message list (no index from the client reaches the Maildrop unchecked),
//! `max_bad_commands` bad commands in a row close the connection, and input
//! given while the session waits is bounded by MAX_PENDING. A message is
//! never held whole in memory: at most one chunk (CHUNK octets read, twice
//! that written). A message that cannot be read to its end closes the
//! connection without the terminating `.`, so the client cannot mistake a
//! part for the whole.
//!
//! Diagnostics: at the end (`disconnected`) `pop3(USER): Disconnected:
//! Logged out top=0/0, retr=1/1234, del=1/3, size=5678` (Dovecot 2.3's
//! default pop3_logout_format: TOP and RETR count and octets sent, messages
//! deleted of those at login, their total size); warnings for a message
//! that cannot be opened or read and for a failed deletion.

use std::io::{self, Read};
use std::sync::Arc;

use common::{info, warning};
use proto::pop3::{
    self, CapaState, Command, CommandError, LineBuffer, MessageWriter, Reply, RespCode,
};

/// Octets read from a message per `produce` call.
pub const CHUNK: usize = 64 * 1024;

/// Input held while the session waits (streaming, deleting) is bounded by
/// this; beyond it the session closes.
pub const MAX_PENDING: usize = 64 * 1024;

/// Dovecot's reply text for a storage failure (details go to the log).
const INTERNAL_ERROR: &str = "Internal error occurred. Refer to server log for more information.";

/// Settings every transaction session of a process shares.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Close the connection after this many bad commands in a row
    /// (Dovecot's pop3: 20).
    pub max_bad_commands: u32,
}

/// One message of the maildrop, as listed at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// The size with LF counted as CRLF (a Maildir's `,W=` virtual size):
    /// exactly what RETR sends before byte-stuffing.
    pub size: u64,
    /// RFC 1939 7: the unique id, 1 to 70 characters 0x21..=0x7E.
    pub uidl: String,
}

/// The user's mailbox, as the session sees it.
pub trait Maildrop {
    /// The messages at login, in POP3 order (message n is index n-1). The
    /// list must not change during the session.
    fn messages(&self) -> &[MessageInfo];
    /// Message `n` (0-based), LF or CRLF line ends. An error of kind
    /// NotFound means it is gone (expunged by another session).
    fn open(&mut self, n: usize) -> io::Result<Box<dyn Read + Send>>;
    /// Delete these messages (0-based, ascending); called at QUIT only,
    /// by the caller, off the event loop.
    fn delete(&mut self, ns: &[usize]) -> io::Result<()>;
}

/// What the caller must do after feeding input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `out`, keep reading.
    Continue,
    /// Send `out`, then close the connection.
    Close,
    /// Send `out`, then call `produce` (as the connection can take more
    /// output) until it returns something else. Read nothing meanwhile.
    Produce,
    /// QUIT with messages marked: delete these (0-based, ascending) with
    /// `Maildrop::delete`, off the event loop, then call `commit_done`.
    Commit(Vec<usize>),
}

/// A RETR or TOP in progress.
struct Fetch {
    reader: Box<dyn Read + Send>,
    writer: MessageWriter,
    /// The message number as the client gave it (1-based).
    number: u32,
    top: bool,
}

enum State {
    Commands,
    /// Streaming a message (`Step::Produce`).
    Producing(Fetch),
    /// QUIT's deletion (`Step::Commit`).
    Committing,
    Closed,
}

/// One POP3 session in the TRANSACTION state.
pub struct Session {
    cfg: Arc<SessionConfig>,
    user: String,
    lines: LineBuffer,
    state: State,
    /// Messages at login (the Maildrop's list is not asked again for this).
    count: usize,
    total_size: u64,
    deleted: Vec<bool>,
    deleted_count: usize,
    deleted_size: u64,
    /// QUIT deleted the marked messages.
    deletes_done: bool,
    bad_commands: u32,
    top: (u64, u64),
    retr: (u64, u64),
    /// The chunk buffer for `produce`, made on the first RETR or TOP.
    buf: Vec<u8>,
    reason: Option<&'static str>,
    logged: bool,
    /// Replies to send.
    pub out: Vec<u8>,
}

impl Session {
    /// Begin the session of `user`, who just logged in: `+OK Logged in.`,
    /// then `leftover` (the input the login process received after the
    /// authenticating command) is processed as if it had just arrived.
    pub fn start(
        cfg: Arc<SessionConfig>,
        user: String,
        leftover: &[u8],
        maildrop: &mut dyn Maildrop,
    ) -> (Session, Step) {
        let list = maildrop.messages();
        let count = list.len();
        let total_size = list.iter().map(|m| m.size).fold(0u64, u64::saturating_add);
        let mut s = Session {
            cfg,
            user,
            lines: LineBuffer::new(pop3::MAX_COMMAND_LINE),
            state: State::Commands,
            count,
            total_size,
            deleted: vec![false; count],
            deleted_count: 0,
            deleted_size: 0,
            deletes_done: false,
            bad_commands: 0,
            top: (0, 0),
            retr: (0, 0),
            buf: Vec::new(),
            reason: None,
            logged: false,
            out: Vec::with_capacity(512),
        };
        s.reply(Reply::ok("Logged in."));
        let step = s.input(leftover, maildrop);
        (s, step)
    }

    /// Is the session streaming a message or waiting for a deletion? Feed
    /// no input then.
    pub fn busy(&self) -> bool {
        matches!(self.state, State::Producing(_) | State::Committing)
    }

    /// Feed bytes from the client. While `busy()` they are only held
    /// (bounded by MAX_PENDING; past it the session closes) and Continue is
    /// returned: the step given before still stands.
    pub fn input(&mut self, data: &[u8], maildrop: &mut dyn Maildrop) -> Step {
        if matches!(self.state, State::Closed) {
            return Step::Close;
        }
        self.lines.push(data);
        if self.busy() {
            if self.lines.buffered_len() > MAX_PENDING {
                self.reason.get_or_insert("Input buffer full");
                self.state = State::Closed;
                return Step::Close;
            }
            return Step::Continue;
        }
        self.process(maildrop)
    }

    /// After `Step::Produce`: append the next chunk of the message to
    /// `out`, with (once the message is out) its terminator and the replies
    /// to the commands that followed it. Everything pending in `self.out` is
    /// moved to `out` first, so `out` gets the bytes in order.
    pub fn produce(&mut self, out: &mut Vec<u8>, maildrop: &mut dyn Maildrop) -> Step {
        let step = self.produce_chunk(maildrop);
        out.append(&mut self.out);
        step
    }

    fn produce_chunk(&mut self, maildrop: &mut dyn Maildrop) -> Step {
        let State::Producing(fetch) = &mut self.state else {
            return self.pending();
        };
        if self.buf.len() != CHUNK {
            self.buf = vec![0; CHUNK];
        }
        let n = loop {
            match fetch.reader.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The client must not take a part for the whole: no
                    // terminator, the connection ends.
                    warning!(
                        "pop3({}): cannot read message {}: {e}",
                        self.user,
                        fetch.number
                    );
                    self.reason = Some("Error reading a message");
                    self.state = State::Closed;
                    return Step::Close;
                }
            }
        };
        fetch.writer.write(&self.buf[..n], &mut self.out);
        if n > 0 && !fetch.writer.is_done() {
            return Step::Produce;
        }
        fetch.writer.finish(&mut self.out);
        let counter = if fetch.top {
            &mut self.top
        } else {
            &mut self.retr
        };
        counter.1 = counter.1.saturating_add(fetch.writer.sent());
        self.state = State::Commands;
        self.process(maildrop)
    }

    /// The deletion asked for by `Step::Commit` is done (or failed).
    pub fn commit_done(&mut self, result: io::Result<()>) -> Step {
        if !matches!(self.state, State::Committing) {
            return self.pending();
        }
        self.state = State::Closed;
        match result {
            Ok(()) => {
                self.deletes_done = true;
                self.reason = Some("Logged out");
                self.reply(Reply::ok("Logging out, messages deleted."));
            }
            Err(e) => {
                warning!("pop3({}): cannot delete messages: {e}", self.user);
                self.reason = Some("Storage error during logout.");
                self.reply(Reply::err_code(RespCode::SysTemp, INTERNAL_ERROR));
            }
        }
        Step::Close
    }

    /// The client said nothing for too long. (Nothing is written in the
    /// middle of a message.)
    pub fn timed_out(&mut self) -> Step {
        if matches!(self.state, State::Commands) {
            self.reply(Reply::err("Disconnected for inactivity."));
        }
        self.reason.get_or_insert("Inactivity");
        self.state = State::Closed;
        Step::Close
    }

    /// The connection is gone (or being closed): log the line, once.
    pub fn disconnected(&mut self) {
        if !std::mem::replace(&mut self.logged, true) {
            info!("{}", self.disconnect_line());
        }
    }

    /// `pop3(USER): Disconnected: REASON top=N/OCTETS, retr=N/OCTETS,
    /// del=DELETED/MESSAGES, size=OCTETS`.
    pub fn disconnect_line(&self) -> String {
        format!(
            "pop3({}): Disconnected: {} top={}/{}, retr={}/{}, del={}/{}, size={}",
            self.user,
            self.reason.unwrap_or("Connection closed"),
            self.top.0,
            self.top.1,
            self.retr.0,
            self.retr.1,
            if self.deletes_done {
                self.deleted_count
            } else {
                0
            },
            self.count,
            self.total_size
        )
    }

    fn reply(&mut self, r: Reply) {
        r.write_to(&mut self.out);
    }

    /// The step that stands while the session waits.
    fn pending(&self) -> Step {
        match self.state {
            State::Closed => Step::Close,
            _ => Step::Continue,
        }
    }

    /// Run buffered command lines until input runs out or the session must
    /// wait (a message to stream, a deletion) or closes.
    fn process(&mut self, maildrop: &mut dyn Maildrop) -> Step {
        loop {
            match self.state {
                State::Commands => {}
                State::Producing(_) => return Step::Produce,
                State::Committing => return Step::Commit(self.marked()),
                State::Closed => return Step::Close,
            }
            let Some(line) = self.lines.next_line() else {
                return Step::Continue;
            };
            let result = match line {
                Ok(line) => self.command(&line, maildrop),
                Err(_) => Err(pop3::line_too_long()),
            };
            match result {
                Ok(()) => self.bad_commands = 0,
                Err(r) => {
                    self.reply(r);
                    self.bad_commands = self.bad_commands.saturating_add(1);
                    if self.bad_commands >= self.cfg.max_bad_commands {
                        self.reply(Reply::err("Too many bad commands."));
                        self.reason = Some("Too many bad commands.");
                        self.state = State::Closed;
                    }
                }
            }
        }
    }

    /// The marked messages, ascending.
    fn marked(&self) -> Vec<usize> {
        (0..self.count).filter(|&i| self.deleted[i]).collect()
    }

    /// Message number `n` (1-based, from the client) as an index, if it
    /// names a message that is not marked deleted.
    fn message(&self, n: u32) -> Result<usize, Reply> {
        let i = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|&i| i < self.count)
            .ok_or_else(|| Reply::err(format!("There's no message {n}.")))?;
        if self.deleted[i] {
            return Err(Reply::err("Message is deleted."));
        }
        Ok(i)
    }

    /// A message's listed size and uid (the list is as it was at login).
    fn info<'a>(&self, maildrop: &'a dyn Maildrop, i: usize) -> Option<&'a MessageInfo> {
        maildrop.messages().get(i)
    }

    /// One command; Err is a bad command's reply.
    fn command(&mut self, line: &[u8], maildrop: &mut dyn Maildrop) -> Result<(), Reply> {
        let cmd = pop3::parse_command(line).map_err(|e| e.reply())?;
        match cmd {
            Command::Capa => {
                let caps = pop3::capabilities(CapaState {
                    authorization: false,
                    stls: false,
                    plaintext: false,
                });
                Reply::ok("").write_multiline(caps, &mut self.out);
            }
            // RFC 1939 5: the count and size of the messages not deleted.
            Command::Stat => self.reply(Reply::ok(format!(
                "{} {}",
                self.count - self.deleted_count,
                self.total_size.saturating_sub(self.deleted_size)
            ))),
            Command::List(None) => {
                let lines: Vec<String> = (0..self.count)
                    .filter(|&i| !self.deleted[i])
                    .map(|i| {
                        let size = self.info(maildrop, i).map_or(0, |m| m.size);
                        format!("{} {size}", i + 1)
                    })
                    .collect();
                Reply::ok(format!("{} messages:", lines.len()))
                    .write_multiline(lines, &mut self.out);
            }
            Command::List(Some(n)) => {
                let i = self.message(n)?;
                let size = self.info(maildrop, i).map_or(0, |m| m.size);
                self.reply(Reply::ok(format!("{n} {size}")));
            }
            Command::Uidl(None) => {
                let lines: Vec<String> = (0..self.count)
                    .filter(|&i| !self.deleted[i])
                    .filter_map(|i| {
                        self.info(maildrop, i)
                            .map(|m| format!("{} {}", i + 1, m.uidl))
                    })
                    .collect();
                Reply::ok("").write_multiline(lines, &mut self.out);
            }
            Command::Uidl(Some(n)) => {
                let i = self.message(n)?;
                let uidl = self
                    .info(maildrop, i)
                    .map_or("", |m| m.uidl.as_str())
                    .to_owned();
                self.reply(Reply::ok(format!("{n} {uidl}")));
            }
            Command::Retr(n) => self.fetch(n, None, maildrop)?,
            Command::Top { msg, lines } => self.fetch(msg, Some(lines), maildrop)?,
            // RFC 1939 5: DELE only marks; QUIT deletes.
            Command::Dele(n) => {
                let i = self.message(n)?;
                self.deleted[i] = true;
                self.deleted_count += 1;
                let size = self.info(maildrop, i).map_or(0, |m| m.size);
                self.deleted_size = self.deleted_size.saturating_add(size);
                self.reply(Reply::ok("Marked to be deleted."));
            }
            Command::Rset => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                self.deleted_count = 0;
                self.deleted_size = 0;
                self.reply(Reply::ok(""));
            }
            Command::Noop => self.reply(Reply::ok("")),
            // RFC 1939 6: the UPDATE state.
            Command::Quit => {
                if self.deleted_count == 0 {
                    self.reply(Reply::ok("Logging out."));
                    self.reason = Some("Logged out");
                    self.state = State::Closed;
                } else {
                    self.state = State::Committing;
                }
            }
            // Valid only before login; Dovecot's pop3 does not know them.
            Command::User(_)
            | Command::Pass(_)
            | Command::Apop { .. }
            | Command::Auth { .. }
            | Command::Stls => {
                return Err(CommandError::Unknown(cmd.verb().to_owned()).reply());
            }
        }
        Ok(())
    }

    /// RFC 1939 5 RETR (`lines` None) and 7 TOP: open the message, send the
    /// `+OK` line, and stream the rest in `produce`.
    fn fetch(
        &mut self,
        n: u32,
        lines: Option<u64>,
        maildrop: &mut dyn Maildrop,
    ) -> Result<(), Reply> {
        let i = self.message(n)?;
        let size = self.info(maildrop, i).map_or(0, |m| m.size);
        let reader = match maildrop.open(i) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.reply(Reply::err(format!("Message {n} expunged.")));
                return Ok(());
            }
            Err(e) => {
                warning!("pop3({}): cannot open message {n}: {e}", self.user);
                self.reply(Reply::err_code(RespCode::SysTemp, INTERNAL_ERROR));
                return Ok(());
            }
        };
        let (writer, top) = match lines {
            None => {
                self.retr.0 += 1;
                self.reply(Reply::ok(format!("{size} octets")));
                (MessageWriter::retr(), false)
            }
            Some(l) => {
                self.top.0 += 1;
                self.reply(Reply::ok(""));
                (MessageWriter::top(l), true)
            }
        };
        self.state = State::Producing(Fetch {
            reader,
            writer,
            number: n,
            top,
        });
        Ok(())
    }
}
