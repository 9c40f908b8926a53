//! The IMAP session after login, as the mailbox process runs it: bytes in,
//! responses out, the user's store underneath.
//!
//! Owns the authenticated and selected states of RFC 3501 / RFC 9051: the
//! reader (proto::imap::CommandReader), the command table (`command`:
//! one module per command group under cmd/, as Dovecot's cmd-*.c), what the
//! client has enabled (RFC 5161), the selected mailbox (view.rs), IDLE, and
//! the APPEND in progress. Does no network I/O: the caller (mailbox.rs)
//! feeds input and sends `out`.
//!
//! Standards: RFC 3501 6.3-6.4 and 7, RFC 9051, RFC 2177 (IDLE), RFC 5161
//! (ENABLE), RFC 2342 (NAMESPACE), RFC 2971 (ID), RFC 4315 (UIDPLUS), RFC
//! 6851 (MOVE), RFC 3691 (UNSELECT), RFC 7162 (CONDSTORE/QRESYNC), RFC 4978
//! (COMPRESS: compress.rs; input is inflated before the reader sees it,
//! `out` compressed at the end of every call).
//!
//! Security: runs as the mailbox owner; every mailbox name goes through
//! mailstore's validation (no `..`, `/`, absolute or control characters:
//! the store refuses them), so a session cannot leave the user's mail
//! directory. Input is bounded by the reader's limits; `max_bad_commands`
//! bad commands in a row end the session.
//!
//! Diagnostics: `Disconnected: Logged out in=N out=M` (Dovecot's imap
//! line), store errors with the user (mailbox.rs logs what `take_log`
//! returns).

pub mod compress;
pub mod kept;
pub mod view;

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use mailstore::{Store, StoreError};
use proto::imap::{CommandBody, CommandReader, Event, Flag, Limits, ResponseCode, Status, Tag};

use crate::cmd;
use view::{Report, View};

/// Settings every session of a process shares.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The capabilities after login (CAPABILITY, the login OK's code).
    pub capabilities: Vec<String>,
    pub limits: Limits,
    pub max_bad_commands: u32,
    /// Commands a session may run in one second before the rest wait for
    /// the next (0: no bound); `COMMANDS_PER_SECOND` in `standard`.
    pub commands_per_second: u32,
}

impl SessionConfig {
    /// The capabilities posthorn's imapd implements.
    pub fn standard(limits: Limits) -> SessionConfig {
        let mut caps: Vec<String> = [
            "IMAP4rev1",
            "IMAP4rev2",
            "SASL-IR",
            "LITERAL+",
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UIDPLUS",
            "MULTIAPPEND",
            "MOVE",
            "UNSELECT",
            "CHILDREN",
            "SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "ESEARCH",
            "CONDSTORE",
            "QRESYNC",
            "BINARY",
            "UTF8=ACCEPT",
            "SORT",
            "SORT=DISPLAY",
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "QUOTA=RES-MESSAGE",
            "COMPRESS=DEFLATE",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        caps.push(format!("APPENDLIMIT={}", limits.max_literal));
        SessionConfig {
            capabilities: caps,
            limits,
            max_bad_commands: 20,
            commands_per_second: COMMANDS_PER_SECOND,
        }
    }
}

/// What the caller must do after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send `out`, keep reading.
    Continue,
    /// Send `out`, then close.
    Close,
    /// Send `out`, keep reading, and call `notify` when this descriptor is
    /// readable (IDLE's inotify watcher).
    Watch(RawFd),
    /// Send `out`, read nothing, and call `resume` once the client has
    /// taken most of it: compressed input is waiting (compress.rs).
    More,
    /// Read nothing for this long, then call `resume_paused`: the client
    /// sent more than `COMMANDS_PER_SECOND` commands in a second.
    Pause(std::time::Duration),
}

/// Commands one session may have run in one second before the rest wait
/// for the next (RFC 3501 sets no bound; this one is far above what a
/// pipelining client sends, and keeps one flooding client from taking the
/// mailbox process from its other sessions).
pub const COMMANDS_PER_SECOND: u32 = 1000;

/// RFC 5161 ENABLEd extensions (and CONDSTORE switched on by its other
/// enabling commands, RFC 7162 3.1; QRESYNC implies CONDSTORE, 3.2.3).
#[derive(Debug, Clone, Copy, Default)]
pub struct Enabled {
    pub condstore: bool,
    pub qresync: bool,
    pub imap4rev2: bool,
    pub utf8: bool,
}

/// An APPEND in progress (RFC 3501 6.3.11, RFC 3502 MULTIAPPEND).
pub struct Append {
    pub tag: Tag,
    pub mailbox: String,
    /// The message being received.
    pub message: Vec<u8>,
    pub flags: Vec<Flag>,
    pub date: Option<i64>,
    /// UIDs appended so far (APPENDUID).
    pub uids: Vec<u32>,
    pub uid_validity: u32,
    /// The first failure; the rest of the command is read and ignored.
    pub failed: Option<Status>,
    /// Messages received so far: (bytes, flags, date).
    pub received: Vec<(Vec<u8>, Vec<Flag>, Option<i64>)>,
    /// Octets announced so far (bounded by APPENDLIMIT).
    pub total: u64,
}

enum State {
    Commands,
    /// IDLE: waiting for DONE.
    Idle(Tag),
    Append(Box<Append>),
    Closed,
}

/// One IMAP session after login.
pub struct Session {
    cfg: Arc<SessionConfig>,
    pub user: String,
    pub store: Store,
    reader: CommandReader,
    input: Vec<u8>,
    state: State,
    pub selected: Option<View>,
    pub enabled: Enabled,
    /// The IDLE watcher (kept for the session's life once made).
    watcher: Option<mailstore::Watcher>,
    /// Which folder the watcher watches.
    watching: Option<String>,
    bad_commands: u32,
    /// Bytes in and out, for the log line.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Responses to send.
    pub out: Vec<u8>,
    /// Lines for the log (errors the client only hears about as NO).
    log: Vec<String>,
    /// RFC 4978 COMPRESS=DEFLATE, once active (compress.rs).
    deflate: Option<Box<compress::Deflate>>,
    /// Where the output not yet compressed starts in `out`.
    plain_from: usize,
    /// COMPRESS was just accepted: the rest of the input is compressed.
    compress_switch: bool,
    /// A `Step::Watch` held back while `Step::More` was returned.
    held_watch: Option<RawFd>,
    /// The command rate's window: when it began, commands in it.
    rate: (std::time::Instant, u32),
}

impl Session {
    /// A session that has just logged in: answer the login's `tag` with
    /// the capabilities, then run `leftover` (pipelined commands).
    pub fn start(
        cfg: Arc<SessionConfig>,
        user: String,
        store: Store,
        tag: Option<&str>,
        leftover: &[u8],
    ) -> (Session, Step) {
        let mut s = Session {
            reader: CommandReader::new(cfg.limits.clone()),
            cfg,
            user,
            store,
            input: Vec::new(),
            state: State::Commands,
            selected: None,
            enabled: Enabled::default(),
            watcher: None,
            watching: None,
            bad_commands: 0,
            rate: (std::time::Instant::now(), 0),
            bytes_in: 0,
            bytes_out: 0,
            out: Vec::with_capacity(4096),
            log: Vec::new(),
            deflate: None,
            plain_from: 0,
            compress_switch: false,
            held_watch: None,
        };
        let caps = ResponseCode::Capability(s.cfg.capabilities.clone());
        match tag.and_then(|t| Tag::new(t.as_bytes())) {
            Some(t) => Status::ok(Some(&t), "Logged in").with_code(caps),
            None => Status::preauth("Logged in").with_code(caps),
        }
        .write(&mut s.out);
        s.bytes_out = s.out.len() as u64;
        let step = s.input(leftover);
        (s, step)
    }

    /// Feed bytes from the client.
    pub fn input(&mut self, data: &[u8]) -> Step {
        if matches!(self.state, State::Closed) {
            return Step::Close;
        }
        self.bytes_in += data.len() as u64;
        self.plain_from = self.out.len();
        let step = match self.deflate.as_mut() {
            Some(d) => {
                d.feed(data);
                Step::Continue
            }
            None => {
                self.input.extend_from_slice(data);
                self.process()
            }
        };
        let step = self.inflate_input(step);
        self.seal(true);
        step
    }

    /// The output to send, taken (compressed once COMPRESS is active;
    /// `out` holds only what is ready to send between calls).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The watcher's descriptor is readable: in IDLE, report what changed
    /// (RFC 2177 3); otherwise the changes wait for the next command.
    pub fn notify(&mut self) -> Step {
        if let Some(w) = &self.watcher {
            let _ = w.drain();
        }
        self.plain_from = self.out.len();
        if matches!(self.state, State::Idle(_)) {
            self.sync_report(Report::All);
        }
        self.seal(true);
        if matches!(self.state, State::Closed) {
            return Step::Close;
        }
        Step::Continue
    }

    /// Quiet for imapd_hibernate_timeout: let go of what the next command
    /// can rebuild (the selected folder's message list: the next command
    /// syncs it first, `wake`), and of buffers grown for earlier commands.
    /// An IDLE session keeps its watcher: a change wakes it as before.
    pub fn quiet(&mut self) {
        if !matches!(self.state, State::Commands | State::Idle(_)) {
            return;
        }
        if let Some(view) = self.selected.as_mut() {
            view.folder.release();
            view.shrink();
        }
        if self.input.is_empty() {
            self.input = Vec::new();
        }
        if self.out.is_empty() {
            self.out = Vec::new();
        }
        self.reader.shrink();
    }

    /// Before a command: a released folder is synced (its changes wait for
    /// the report at the command's end, as any other sync's).
    fn wake(&mut self) {
        if let Some(view) = self.selected.as_mut() {
            if view.folder.is_released() {
                if let Err(e) = view.sync() {
                    self.log.push(format!("{}: sync: {e}", view.folder.name()));
                }
            }
        }
    }

    /// The client was idle too long.
    pub fn timed_out(&mut self) {
        self.plain_from = self.out.len();
        Status::bye("Disconnected for inactivity.").write(&mut self.out);
        self.state = State::Closed;
        self.seal(true);
    }

    /// The daemon is stopping.
    pub fn shutdown(&mut self) {
        self.plain_from = self.out.len();
        Status::bye("Server shutting down.").write(&mut self.out);
        self.state = State::Closed;
        self.seal(true);
    }

    /// Log lines gathered since the last call.
    pub fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    fn process(&mut self) -> Step {
        let out_before = self.out.len();
        let mut pos = 0;
        let mut step = Step::Continue;
        loop {
            if matches!(self.state, State::Closed) {
                step = Step::Close;
                break;
            }
            if pos < self.input.len() {
                if let Some(wait) = self.rate_wait() {
                    step = Step::Pause(wait);
                    break;
                }
            }
            let mut rest = &self.input[pos..];
            let before = rest.len();
            let Some(event) = self.reader.next(&mut rest) else {
                pos += before - rest.len();
                break;
            };
            let used = before - rest.len();
            // APPEND data borrows the input: take it here.
            if let Event::AppendData(d) = event {
                if let State::Append(a) = &mut self.state {
                    if a.failed.is_none() {
                        a.message.extend_from_slice(d);
                    }
                }
                pos += used;
                continue;
            }
            let event = owned(event);
            pos += used;
            if let Some(s) = self.event(event) {
                step = s;
                if step == Step::Close {
                    break;
                }
            }
            if std::mem::take(&mut self.compress_switch) {
                // RFC 4978 3: what follows COMPRESS is compressed.
                let rest = self.input.split_off(pos);
                if let Some(d) = self.deflate.as_mut() {
                    d.feed(&rest);
                }
                break;
            }
        }
        self.input.drain(..pos.min(self.input.len()));
        // what this call wrote (before compression), for the log line
        self.bytes_out += self.out.len().saturating_sub(out_before) as u64;
        step
    }

    /// The rest of the rate window when this session has used it up.
    fn rate_wait(&mut self) -> Option<std::time::Duration> {
        let second = std::time::Duration::from_secs(1);
        let elapsed = self.rate.0.elapsed();
        if elapsed >= second {
            self.rate = (std::time::Instant::now(), 0);
            return None;
        }
        let limit = self.cfg.commands_per_second;
        (limit > 0 && self.rate.1 >= limit).then(|| second - elapsed)
    }

    /// A `Step::Pause` is over: run the input that waited.
    pub fn resume_paused(&mut self) -> Step {
        if matches!(self.state, State::Closed) {
            return Step::Close;
        }
        self.plain_from = self.out.len();
        let step = if self.deflate.is_some() {
            Step::Continue
        } else {
            self.process()
        };
        let step = self.inflate_input(step);
        self.seal(true);
        step
    }

    fn event(&mut self, event: Option<Event<'static>>) -> Option<Step> {
        let event = event?;
        if matches!(event, Event::Command(_) | Event::AppendStart { .. }) {
            self.rate.1 = self.rate.1.saturating_add(1);
        }
        match event {
            Event::Command(c) => {
                if matches!(self.state, State::Idle(_)) {
                    // The reader is in raw-line mode during IDLE; a command
                    // here is a bug in the order of calls.
                    return None;
                }
                self.wake();
                self.command(c.tag, c.body)
            }
            Event::Continue => {
                proto::imap::response::write_continuation(&mut self.out, "OK");
                None
            }
            Event::Line(line) => {
                if let State::Idle(tag) = std::mem::replace(&mut self.state, State::Commands) {
                    // RFC 2177 3: DONE ends IDLE; anything else is BAD.
                    if proto::imap::parse_done(&line) {
                        Status::ok(Some(&tag), "Idle completed.").write(&mut self.out);
                    } else {
                        Status::bad(Some(&tag), "Expected DONE.").write(&mut self.out);
                    }
                    self.sync_report(Report::All);
                }
                None
            }
            Event::AppendStart { tag, mailbox } => {
                self.wake();
                cmd::append::start(self, tag, &mailbox);
                None
            }
            Event::AppendMessage {
                flags, date, size, ..
            } => {
                cmd::append::message(self, flags, date, size);
                None
            }
            Event::AppendMessageEnd => {
                cmd::append::message_end(self);
                None
            }
            Event::AppendEnd => {
                cmd::append::end(self);
                None
            }
            Event::AppendData(_) => None,
            Event::Error { error, fatal } => {
                if let State::Append(a) = std::mem::replace(&mut self.state, State::Commands) {
                    cmd::append::abort(self, *a);
                }
                if fatal {
                    error.bye().write(&mut self.out);
                    self.state = State::Closed;
                    return Some(Step::Close);
                }
                error.status().write(&mut self.out);
                self.count_bad()
            }
        }
    }

    fn count_bad(&mut self) -> Option<Step> {
        self.bad_commands = self.bad_commands.saturating_add(1);
        if self.bad_commands >= self.cfg.max_bad_commands {
            Status::bye("Too many invalid IMAP commands.").write(&mut self.out);
            self.state = State::Closed;
            return Some(Step::Close);
        }
        None
    }

    /// The command table: which module runs each command, and in which
    /// states it is valid (RFC 3501 3).
    fn command(&mut self, tag: Tag, body: CommandBody) -> Option<Step> {
        self.bad_commands = 0;
        let needs_selected = matches!(
            body,
            CommandBody::Check
                | CommandBody::Close
                | CommandBody::Unselect
                | CommandBody::Expunge
                | CommandBody::UidExpunge(_)
                | CommandBody::Search { .. }
                | CommandBody::Fetch { .. }
                | CommandBody::Store { .. }
                | CommandBody::Copy { .. }
                | CommandBody::Move { .. }
                | CommandBody::Sort { .. }
                | CommandBody::Thread { .. }
        );
        if needs_selected && self.selected.is_none() {
            return self.bad(&tag, "No mailbox selected.");
        }
        let start = self.out.len();
        let report = match body {
            CommandBody::Capability => {
                self.out.extend_from_slice(b"* CAPABILITY ");
                self.out
                    .extend_from_slice(self.cfg.capabilities.join(" ").as_bytes());
                self.out.extend_from_slice(b"\r\n");
                self.ok(&tag, "Capability completed.");
                Report::All
            }
            CommandBody::Noop => {
                self.sync_report(Report::All);
                if matches!(self.state, State::Closed) {
                    return Some(Step::Close);
                }
                self.ok(&tag, "NOOP completed.");
                return None;
            }
            CommandBody::Check => {
                self.sync_report(Report::All);
                if matches!(self.state, State::Closed) {
                    return Some(Step::Close);
                }
                self.ok(&tag, "Check completed.");
                return None;
            }
            CommandBody::Logout => {
                Status::bye("Logging out").write(&mut self.out);
                self.ok(&tag, "Logout completed.");
                self.state = State::Closed;
                return Some(Step::Close);
            }
            CommandBody::StartTls => {
                return self.bad(&tag, "TLS is already active.");
            }
            CommandBody::Authenticate { .. } | CommandBody::Login { .. } => {
                return self.bad(&tag, "Already logged in.");
            }
            CommandBody::Id(_) => {
                self.out
                    .extend_from_slice(b"* ID (\"name\" \"posthorn\")\r\n");
                self.ok(&tag, "ID completed.");
                Report::All
            }
            CommandBody::Enable(caps) => {
                cmd::misc::enable(self, &tag, &caps);
                Report::All
            }
            CommandBody::Namespace => {
                // RFC 2342 5: one personal namespace, "." separated.
                self.out
                    .extend_from_slice(b"* NAMESPACE ((\"\" \".\")) NIL NIL\r\n");
                self.ok(&tag, "Namespace completed.");
                Report::All
            }
            CommandBody::Idle => {
                return self.idle(tag);
            }
            CommandBody::Select { mailbox, params } => {
                cmd::select::select(self, &tag, &mailbox, &params, false);
                return None;
            }
            CommandBody::Examine { mailbox, params } => {
                cmd::select::select(self, &tag, &mailbox, &params, true);
                return None;
            }
            CommandBody::Close => {
                cmd::select::close(self, &tag, true);
                return None;
            }
            CommandBody::Unselect => {
                cmd::select::close(self, &tag, false);
                return None;
            }
            CommandBody::Expunge => {
                cmd::select::expunge(self, &tag, None);
                Report::All
            }
            CommandBody::UidExpunge(set) => {
                cmd::select::expunge(self, &tag, Some(&set));
                Report::All
            }
            CommandBody::Create {
                mailbox,
                special_use: _,
            } => {
                cmd::mailboxes::create(self, &tag, &mailbox);
                Report::All
            }
            CommandBody::Delete(mailbox) => {
                cmd::mailboxes::delete(self, &tag, &mailbox);
                Report::All
            }
            CommandBody::Rename { from, to } => {
                cmd::mailboxes::rename(self, &tag, &from, &to);
                Report::All
            }
            CommandBody::Subscribe(mailbox) => {
                cmd::mailboxes::subscribe(self, &tag, &mailbox, true);
                Report::All
            }
            CommandBody::Unsubscribe(mailbox) => {
                cmd::mailboxes::subscribe(self, &tag, &mailbox, false);
                Report::All
            }
            CommandBody::List(args) => {
                cmd::mailboxes::list(self, &tag, &args);
                Report::All
            }
            CommandBody::Lsub { reference, pattern } => {
                cmd::mailboxes::lsub(self, &tag, &reference, &pattern);
                Report::All
            }
            CommandBody::Status { mailbox, items } => {
                cmd::mailboxes::status(self, &tag, &mailbox, &items);
                Report::All
            }
            CommandBody::Fetch {
                uid,
                set,
                attrs,
                modifiers,
            } => {
                cmd::fetch::fetch(self, &tag, uid, &set, &attrs, &modifiers);
                if uid {
                    Report::All
                } else {
                    Report::NoExpunges
                }
            }
            CommandBody::Store {
                uid,
                set,
                unchanged_since,
                mode,
                silent,
                flags,
            } => {
                cmd::store::store(self, &tag, uid, &set, unchanged_since, mode, silent, &flags);
                if uid {
                    Report::All
                } else {
                    Report::NoExpunges
                }
            }
            CommandBody::Search { uid, args } => {
                cmd::search::search(self, &tag, uid, &args);
                if uid {
                    Report::All
                } else {
                    Report::NoExpunges
                }
            }
            CommandBody::Copy { uid, set, mailbox } => {
                cmd::copy::copy(self, &tag, uid, &set, &mailbox, false);
                Report::All
            }
            CommandBody::Move { uid, set, mailbox } => {
                cmd::copy::copy(self, &tag, uid, &set, &mailbox, true);
                Report::All
            }
            CommandBody::Sort {
                uid,
                criteria,
                args,
            } => {
                cmd::sort::sort(self, &tag, uid, &criteria, &args);
                if uid {
                    Report::All
                } else {
                    Report::NoExpunges
                }
            }
            CommandBody::Thread {
                uid,
                algorithm,
                args,
            } => {
                cmd::thread::thread(self, &tag, uid, &algorithm, &args);
                if uid {
                    Report::All
                } else {
                    Report::NoExpunges
                }
            }
            CommandBody::Compress(alg) => {
                // reports itself: nothing may follow its OK uncompressed
                self.compress(&tag, &alg);
                return None;
            }
            CommandBody::GetQuota(root) => {
                cmd::quota::get_quota(self, &tag, &root);
                Report::All
            }
            CommandBody::GetQuotaRoot(mailbox) => {
                cmd::quota::get_quota_root(self, &tag, &mailbox);
                Report::All
            }
            CommandBody::SetQuota { .. } => {
                cmd::quota::set_quota(self, &tag);
                Report::All
            }
        };
        self.finish(start, report);
        if matches!(self.state, State::Closed) {
            return Some(Step::Close);
        }
        None
    }

    /// Put the updates the client is due (view.rs) before the tagged
    /// response the command wrote last, as Dovecot does: the client has
    /// them when it sees the command complete.
    fn finish(&mut self, start: usize, report: Report) {
        if self.selected.is_none() || self.out.len() < start + 2 {
            return;
        }
        let body = &self.out[start..self.out.len() - 2];
        let line_start = body
            .windows(2)
            .rposition(|w| w == b"\r\n")
            .map_or(start, |i| start + i + 2);
        let tagged = self.out.split_off(line_start);
        self.sync_report(report);
        // A session ended by the sync (its mailbox was deleted) says BYE
        // and nothing more.
        if !matches!(self.state, State::Closed) {
            self.out.extend_from_slice(&tagged);
        }
    }

    /// RFC 2177: IDLE.
    /// The watcher is made at the first IDLE on a folder (not at SELECT:
    /// most sessions never IDLE), before the sync, so that a change after
    /// the sync wakes the session.
    fn idle(&mut self, tag: Tag) -> Option<Step> {
        let watch = self.watch_selected();
        self.sync_report(Report::All);
        proto::imap::response::write_continuation(&mut self.out, "idling");
        self.reader.read_raw_line();
        self.state = State::Idle(tag);
        watch
    }

    /// Watch the selected folder (for IDLE).
    fn watch_selected(&mut self) -> Option<Step> {
        let view = self.selected.as_ref()?;
        let name = view.folder.name().to_string();
        if self.watching.as_deref() == Some(name.as_str()) {
            return None;
        }
        match view.folder.watcher() {
            Ok(w) => {
                let fd = w.as_raw_fd();
                self.watcher = Some(w);
                self.watching = Some(name);
                Some(Step::Watch(fd))
            }
            Err(e) => {
                self.log.push(format!("inotify for {name}: {e}"));
                None
            }
        }
    }

    /// Sync the selected folder and write what the client is due.
    pub fn sync_report(&mut self, what: Report) {
        let enabled = self.enabled;
        let Some(view) = self.selected.as_mut() else {
            return;
        };
        if let Err(e) = view.sync() {
            let name = view.folder.name().to_string();
            if name != mailstore::INBOX && !self.store.exists(&name).unwrap_or(true) {
                // Deleted by another session: Dovecot's answer.
                Status::bye("Selected mailbox was deleted, have to disconnect.")
                    .write(&mut self.out);
                self.selected = None;
                self.state = State::Closed;
                return;
            }
            self.log.push(format!("{name}: sync: {e}"));
        }
        view.report(what, enabled, &mut self.out);
    }

    /// Report without syncing (after a command that synced itself).
    pub fn report(&mut self, what: Report) {
        let enabled = self.enabled;
        if let Some(view) = self.selected.as_mut() {
            view.report(what, enabled, &mut self.out);
        }
    }

    pub fn ok(&mut self, tag: &Tag, text: &str) {
        Status::ok(Some(tag), text).write(&mut self.out);
    }

    pub fn ok_code(&mut self, tag: &Tag, code: ResponseCode, text: &str) {
        Status::ok(Some(tag), text)
            .with_code(code)
            .write(&mut self.out);
    }

    pub fn no(&mut self, tag: &Tag, code: Option<ResponseCode>, text: &str) {
        let mut s = Status::no(Some(tag), text);
        s.code = code;
        s.write(&mut self.out);
    }

    pub fn bad(&mut self, tag: &Tag, text: &str) -> Option<Step> {
        Status::bad(Some(tag), text).write(&mut self.out);
        self.count_bad()
    }

    /// A store error as the client hears it (Dovecot's texts), the cause
    /// logged when it is the server's.
    pub fn store_error(&mut self, tag: &Tag, e: &StoreError) {
        let (code, text): (Option<ResponseCode>, String) = match e {
            StoreError::NoSuchFolder(_) => (
                Some(ResponseCode::NonExistent),
                "Mailbox doesn't exist.".into(),
            ),
            StoreError::FolderExists(_) => (
                Some(ResponseCode::AlreadyExists),
                "Mailbox already exists".into(),
            ),
            StoreError::BadName { why, .. } => (None, format!("Invalid mailbox name: {why}")),
            StoreError::HasChildren(_) => (
                Some(ResponseCode::InUse),
                "Mailbox has children, delete them first".into(),
            ),
            StoreError::Inbox(what) => (None, format!("INBOX can't be {what}.")),
            StoreError::ReadOnly(_) => (Some(ResponseCode::Cannot), "Mailbox is read-only.".into()),
            StoreError::Expunged(_) | StoreError::NoSuchMessage(_) => (
                Some(ResponseCode::ExpungeIssued),
                "Some of the requested messages no longer exist.".into(),
            ),
            StoreError::OverQuota(q) => (Some(ResponseCode::OverQuota), q.to_string()),
            StoreError::BadKeyword(k) => (None, format!("Invalid keyword {k}")),
            StoreError::KeywordsFull { .. } => (
                Some(ResponseCode::Limit),
                "Too many keywords in this mailbox.".into(),
            ),
            StoreError::LockTimeout { .. } => {
                self.log.push(format!("user={}: {e}", self.user));
                (
                    Some(ResponseCode::InUse),
                    "Mailbox is locked, try again later.".into(),
                )
            }
            _ => {
                self.log.push(format!("user={}: {e}", self.user));
                (
                    Some(ResponseCode::ServerBug),
                    "Internal error occurred. Refer to server log for more information.".into(),
                )
            }
        };
        self.no(tag, code, &text);
    }

    pub(crate) fn set_state_append(&mut self, a: Box<Append>) {
        self.state = State::Append(a);
    }

    pub(crate) fn take_append(&mut self) -> Option<Box<Append>> {
        match std::mem::replace(&mut self.state, State::Commands) {
            State::Append(a) => Some(a),
            other => {
                self.state = other;
                None
            }
        }
    }

    pub(crate) fn append_mut(&mut self) -> Option<&mut Append> {
        match &mut self.state {
            State::Append(a) => Some(a),
            _ => None,
        }
    }

    pub(crate) fn reader_mut(&mut self) -> &mut CommandReader {
        &mut self.reader
    }

    pub(crate) fn log_line(&mut self, line: String) {
        self.log.push(line);
    }
}

/// `* N FETCH (UID n FLAGS (...))` for a message of the view.
pub fn write_fetch_flags(view: &mut View, seq: u32, uid: u32, with_uid: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
    if with_uid {
        out.extend_from_slice(format!("UID {uid} ").as_bytes());
    }
    out.extend_from_slice(b"FLAGS ");
    cmd::fetch::write_flags(view, uid, out);
    out.extend_from_slice(b")\r\n");
}

/// The event without its borrow of the input (APPEND data is taken by the
/// caller before).
pub(crate) fn owned(e: Event<'_>) -> Option<Event<'static>> {
    Some(match e {
        Event::Command(c) => Event::Command(c),
        Event::Continue => Event::Continue,
        Event::Line(l) => Event::Line(l),
        Event::AppendStart { tag, mailbox } => Event::AppendStart { tag, mailbox },
        Event::AppendMessage {
            flags,
            date,
            size,
            binary,
            utf8,
        } => Event::AppendMessage {
            flags,
            date,
            size,
            binary,
            utf8,
        },
        Event::AppendData(_) => return None,
        Event::AppendMessageEnd => Event::AppendMessageEnd,
        Event::AppendEnd => Event::AppendEnd,
        Event::Error { error, fatal } => Event::Error { error, fatal },
    })
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(v) = self.selected.take() {
            kept::keep(&self.user, self.store.root(), v.folder);
        }
    }
}
