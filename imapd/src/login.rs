//! The IMAP session before authentication, as imap-login runs it: bytes
//! in, responses and credentials out.
//!
//! Owns the not-authenticated state of RFC 3501 / RFC 9051: the greeting
//! with its capability list, CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN,
//! AUTHENTICATE (PLAIN and LOGIN, with SASL-IR initial responses and
//! continuation lines), ID; whether passwords may be sent on this
//! connection; the failure and bad-command counts; the log lines at the end
//! (common::login::log, Dovecot's shape). Does no I/O: complete credentials
//! leave as `Step::Authenticate` and the caller answers with `auth_result`;
//! TLS is the caller's after `Step::StartTls`; after `Step::LoggedIn` the
//! connection, the tag of the authenticating command (the mailbox process
//! answers it, with the post-login capabilities) and the input that
//! followed go to the mailbox process.
//!
//! Standards: RFC 3501 6.1 and 6.2 (CAPABILITY, NOOP, LOGOUT, STARTTLS,
//! AUTHENTICATE, LOGIN; LOGINDISABLED), RFC 9051 6.1-6.2, RFC 4959
//! (SASL-IR), RFC 4616 (PLAIN), RFC 2971 (ID), RFC 5530 (response codes:
//! AUTHENTICATIONFAILED, PRIVACYREQUIRED, UNAVAILABLE), RFC 2595 3.1 and
//! RFC 3501 6.2.1 (no input before the handshake survives STARTTLS).
//!
//! Security: plaintext logins are refused unless TLS is active, the client
//! is on this host, or auth_allow_cleartext is set; the capability list then
//! says LOGINDISABLED and offers no AUTH= mechanism (RFC 3501 6.2.3).
//! Every byte after the STARTTLS line and before the handshake is discarded
//! (CVE-2011-0411). A failed login gets one reply whatever failed, after
//! auth's delay; `max_auth_failures` failures or `max_bad_commands` bad
//! commands in a row end the connection with BYE. Input is bounded by the
//! reader's limits (a literal over them is refused before `+`) and, while
//! the session waits, by MAX_PENDING. Passwords never reach a log.
//!
//! Diagnostics: Dovecot's `Login:` and `Disconnected (...)` lines, which
//! fail2ban's dovecot filter matches (common::login::log).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use common::info;
use common::login::log::{End, Peer, Record, Wait};
use proto::imap::{CommandBody, CommandReader, Event, Limits, ResponseCode, Status, Tag};
use proto::sasl::{self, Exchange, Progress, SaslError};

/// Input held while the session waits (for auth, TLS, a pause); beyond it
/// the session closes.
pub const MAX_PENDING: usize = 64 * 1024;

/// Dovecot's reply when passwords may not be sent on this connection.
const PLAINTEXT_DISALLOWED: &str =
    "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.";
/// Dovecot's reply to every failed login.
const AUTH_FAILED: &str = "Authentication failed.";

/// Settings every login session of a process shares.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// The greeting text after the capability code, e.g. `posthorn ready.`.
    pub greeting: String,
    /// Passwords may be sent without TLS from anywhere (auth_allow_cleartext).
    pub allow_cleartext: bool,
    /// TLS is configured, so STARTTLS can be offered on a plaintext
    /// connection.
    pub tls_available: bool,
    /// Close the connection after this many failed logins.
    pub max_auth_failures: u32,
    /// Close after this many bad commands in a row (Dovecot: 10).
    pub max_bad_commands: u32,
    /// The reader's bounds before login (no APPEND: literals are small).
    pub limits: Limits,
}

/// What the caller knows of this connection when it is accepted.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub rip: Option<IpAddr>,
    pub lip: Option<IpAddr>,
    /// TLS from the first byte (port 993).
    pub tls: bool,
}

/// Complete credentials for the auth service to check.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub mechanism: sasl::Mechanism,
    pub authzid: String,
    pub user: String,
    pub password: String,
}

/// Never shows the password.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("authzid", &self.authzid)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// The auth service's answer to `Step::Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Ok { user: String },
    Failed { delay: Duration },
    TempFail,
}

/// What the caller must do after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `out`, keep reading.
    Continue,
    /// Send `out`, then close.
    Close,
    /// Hold `out` for this long, read nothing, then call `resume`.
    Pause(Duration),
    /// Send `out` (the STARTTLS OK), start TLS, then call `tls_started`.
    StartTls,
    /// Send `out`, ask auth, give its answer to `auth_result`.
    Authenticate(Credentials),
    /// The login session is over: hand the connection to the mailbox
    /// process for `user`, which answers `tag`, with `leftover` as the
    /// client's next input.
    LoggedIn {
        user: String,
        tag: String,
        leftover: Vec<u8>,
    },
}

enum State {
    Commands,
    /// A SASL exchange waits for the client's next response line.
    Sasl(Tag, Exchange),
    /// Waiting for `auth_result` on this tag.
    Authenticating(Tag),
    /// A failed login's delay; `resume` answers the tag.
    FailDelay {
        tag: Tag,
        close: bool,
    },
    Tls,
    LoggedIn,
    Closed,
}

/// One IMAP connection before login.
pub struct LoginSession {
    cfg: Arc<LoginConfig>,
    conn: Connection,
    reader: CommandReader,
    /// Input not yet given to the reader.
    input: Vec<u8>,
    state: State,
    tls: bool,
    failures: u32,
    bad_commands: u32,
    /// The APPEND just refused (BAD before login): the reader's own refusal
    /// of its message, if any, is not a second answer to the tag.
    append_refused: Option<Tag>,
    log: Record,
    /// Responses to send.
    pub out: Vec<u8>,
}

impl LoginSession {
    pub fn new(cfg: Arc<LoginConfig>, conn: Connection) -> LoginSession {
        LoginSession {
            tls: conn.tls,
            reader: CommandReader::new(cfg.limits.clone()),
            cfg,
            conn,
            input: Vec::new(),
            state: State::Commands,
            failures: 0,
            bad_commands: 0,
            append_refused: None,
            log: Record::new(),
            out: Vec::with_capacity(512),
        }
    }

    /// The capabilities before login (RFC 3501 6.2.3, RFC 4959 3).
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = ["IMAP4rev1", "IMAP4rev2", "SASL-IR", "ID", "ENABLE", "IDLE"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        caps.push("LITERAL+".into());
        if self.cfg.tls_available && !self.tls {
            caps.push("STARTTLS".into());
        }
        if self.plaintext_allowed() {
            caps.push("AUTH=PLAIN".into());
            caps.push("AUTH=LOGIN".into());
        } else {
            caps.push("LOGINDISABLED".into());
        }
        caps
    }

    /// `* OK [CAPABILITY ...] greeting` (RFC 3501 7.1.1, 7.2.1).
    pub fn greet(&mut self) {
        Status::ok(None, self.cfg.greeting.clone())
            .with_code(ResponseCode::Capability(self.capabilities()))
            .write(&mut self.out);
    }

    /// Is the session waiting for the caller? Input is only held then.
    pub fn busy(&self) -> bool {
        matches!(
            self.state,
            State::Authenticating(_) | State::FailDelay { .. } | State::Tls
        )
    }

    /// Feed bytes from the client.
    pub fn input(&mut self, data: &[u8]) -> Step {
        match self.state {
            State::Closed | State::LoggedIn => return Step::Close,
            // RFC 3501 6.2.1: nothing sent before the handshake counts.
            State::Tls => return Step::Continue,
            _ => {}
        }
        self.input.extend_from_slice(data);
        if self.busy() {
            if self.input.len() > MAX_PENDING {
                return self.close(End::InputOverflow);
            }
            return Step::Continue;
        }
        self.process()
    }

    /// The pause of a failed login is over.
    pub fn resume(&mut self) -> Step {
        match std::mem::replace(&mut self.state, State::Commands) {
            State::FailDelay { tag, close } => {
                Status::no(Some(&tag), AUTH_FAILED)
                    .with_code(ResponseCode::AuthenticationFailed)
                    .write(&mut self.out);
                if close {
                    return self.bye_close(
                        "Too many invalid authentication attempts.",
                        End::AuthFailures,
                    );
                }
                self.process()
            }
            other => {
                self.state = other;
                self.pending()
            }
        }
    }

    /// The TLS handshake after STARTTLS succeeded.
    pub fn tls_started(&mut self) -> Step {
        if !matches!(self.state, State::Tls) {
            return self.pending();
        }
        self.tls = true;
        self.state = State::Commands;
        self.input.clear();
        self.reader = CommandReader::new(self.cfg.limits.clone());
        self.process()
    }

    /// The auth service's answer to `Step::Authenticate`.
    pub fn auth_result(&mut self, outcome: AuthOutcome) -> Step {
        let State::Authenticating(tag) = std::mem::replace(&mut self.state, State::Commands) else {
            common::warning!("imap login: auth result without a request");
            return self.close(End::Disconnected);
        };
        match outcome {
            AuthOutcome::Ok { user } => {
                self.state = State::LoggedIn;
                self.log.logged_in = Some(user.clone());
                let leftover = std::mem::take(&mut self.input);
                Step::LoggedIn {
                    user,
                    tag: tag.as_str().to_string(),
                    leftover,
                }
            }
            AuthOutcome::Failed { delay } => {
                self.failures = self.failures.saturating_add(1);
                self.log.failed();
                let close = self.failures >= self.cfg.max_auth_failures;
                if !delay.is_zero() {
                    self.state = State::FailDelay { tag, close };
                    return Step::Pause(delay);
                }
                self.state = State::FailDelay { tag, close };
                self.resume()
            }
            AuthOutcome::TempFail => {
                self.log.failed();
                Status::no(Some(&tag), "Temporary authentication failure.")
                    .with_code(ResponseCode::Unavailable)
                    .write(&mut self.out);
                self.process()
            }
        }
    }

    /// The client said nothing for too long.
    pub fn timed_out(&mut self) -> Step {
        if !matches!(self.state, State::Tls | State::Closed | State::LoggedIn) {
            Status::bye("Disconnected for inactivity.").write(&mut self.out);
        }
        self.close(End::Inactivity)
    }

    /// The connection is gone: log Dovecot's line, once (nothing after a
    /// login: see `log_login`).
    pub fn disconnected(&mut self) {
        if let Some(line) = self.log.disconnect_line(self.waiting(), &self.peer()) {
            if self.log.first_log() {
                info!("{line}");
            }
        }
    }

    /// Log the `Login:` line after `Step::LoggedIn`.
    pub fn log_login(&mut self, mpid: Option<u32>) {
        if let Some(line) = self.log.login_line(mpid, &self.peer()) {
            if self.log.first_log() {
                info!("{line}");
            }
        }
    }

    /// The `Disconnected`/`Aborted login` line, for tests.
    pub fn disconnect_line(&self) -> Option<String> {
        self.log.disconnect_line(self.waiting(), &self.peer())
    }

    /// The `Login:` line after `Step::LoggedIn`, for tests.
    pub fn login_line(&self, mpid: Option<u32>) -> Option<String> {
        self.log.login_line(mpid, &self.peer())
    }

    fn peer(&self) -> Peer {
        Peer {
            rip: self.conn.rip,
            lip: self.conn.lip,
            tls: self.tls,
            secured: self.secured_by_address(),
        }
    }

    /// The client is on this host: loopback, or its address is ours.
    fn secured_by_address(&self) -> bool {
        match self.conn.rip {
            Some(ip) => {
                let ip = ip.to_canonical();
                ip.is_loopback() || Some(ip) == self.conn.lip
            }
            None => false,
        }
    }

    fn plaintext_allowed(&self) -> bool {
        self.cfg.allow_cleartext || self.tls || self.secured_by_address()
    }

    fn waiting(&self) -> Option<Wait> {
        match self.state {
            State::Sasl(..) => Some(Wait::Sasl),
            State::Authenticating(_) => Some(Wait::Auth),
            _ => None,
        }
    }

    fn close(&mut self, end: End) -> Step {
        self.log.end(end, self.waiting());
        self.state = State::Closed;
        Step::Close
    }

    fn bye_close(&mut self, text: &str, end: End) -> Step {
        Status::bye(text).write(&mut self.out);
        self.close(end)
    }

    fn pending(&self) -> Step {
        match self.state {
            State::Closed | State::LoggedIn => Step::Close,
            _ => Step::Continue,
        }
    }

    /// Run buffered input until it runs out or the session must wait.
    fn process(&mut self) -> Step {
        let mut pos = 0;
        let step = loop {
            if !matches!(self.state, State::Commands | State::Sasl(..)) {
                break self.pending();
            }
            let mut rest = &self.input[pos..];
            let before = rest.len();
            // Owned: the session keeps no borrow of its input.
            let event = self.reader.next(&mut rest).map(crate::session::owned);
            pos += before - rest.len();
            let Some(event) = event else {
                break Step::Continue;
            };
            let Some(event) = event else { continue };
            if let Some(step) = self.event(event) {
                break step;
            }
        };
        self.input.drain(..pos.min(self.input.len()));
        step
    }

    fn event(&mut self, event: Event<'static>) -> Option<Step> {
        let append_refused = self.append_refused.take();
        match event {
            Event::Command(cmd) => {
                let tag = cmd.tag.clone();
                self.command(tag, cmd.body)
            }
            Event::Continue => {
                proto::imap::response::write_continuation(&mut self.out, "OK");
                None
            }
            Event::Line(line) => match std::mem::replace(&mut self.state, State::Commands) {
                State::Sasl(tag, mut ex) => match ex.step(&line) {
                    Ok(p) => self.sasl_progress(tag, ex, p),
                    Err(e) => self.sasl_failed(&tag, e),
                },
                other => {
                    self.state = other;
                    None
                }
            },
            // RFC 3501 6.3.11: APPEND needs the authenticated state.
            Event::AppendStart { tag, .. } => {
                self.reader.reject_append();
                self.append_refused = Some(tag.clone());
                self.bad(&tag, "Please log in first.")
            }
            Event::AppendMessage { .. } => {
                self.reader.reject_append();
                None
            }
            // One answer per command (RFC 3501 2.2.2): a message too big
            // for the login limits was refused above already.
            Event::Error {
                error,
                fatal: false,
            } if append_refused.is_some() && error.tag == append_refused => None,
            Event::AppendData(_) | Event::AppendMessageEnd | Event::AppendEnd => None,
            Event::Error { error, fatal } => {
                if fatal {
                    error.bye().write(&mut self.out);
                    return Some(self.close(End::BadCommands));
                }
                error.status().write(&mut self.out);
                self.count_bad()
            }
        }
    }

    fn bad(&mut self, tag: &Tag, text: &str) -> Option<Step> {
        Status::bad(Some(tag), text).write(&mut self.out);
        self.count_bad()
    }

    /// Too many bad commands in a row end the session (Dovecot's text).
    fn count_bad(&mut self) -> Option<Step> {
        self.bad_commands = self.bad_commands.saturating_add(1);
        if self.bad_commands >= self.cfg.max_bad_commands {
            return Some(self.bye_close("Too many invalid IMAP commands.", End::BadCommands));
        }
        None
    }

    /// A login failed here, without asking auth.
    fn failed(&mut self, status: Status) -> Option<Step> {
        status.write(&mut self.out);
        self.failures = self.failures.saturating_add(1);
        self.log.failed();
        if self.failures >= self.cfg.max_auth_failures {
            return Some(self.bye_close(
                "Too many invalid authentication attempts.",
                End::AuthFailures,
            ));
        }
        None
    }

    fn plaintext_refused(&mut self, tag: &Tag) -> Option<Step> {
        self.log.tried_plaintext = true;
        self.failed(
            Status::no(Some(tag), PLAINTEXT_DISALLOWED).with_code(ResponseCode::PrivacyRequired),
        )
    }

    fn command(&mut self, tag: Tag, body: CommandBody) -> Option<Step> {
        self.bad_commands = 0;
        let caps = self.capabilities();
        let plaintext = self.plaintext_allowed();
        let out = &mut self.out;
        match body {
            CommandBody::Capability => {
                out.extend_from_slice(b"* CAPABILITY ");
                out.extend_from_slice(caps.join(" ").as_bytes());
                out.extend_from_slice(b"\r\n");
                Status::ok(
                    Some(&tag),
                    "Pre-login capabilities listed, post-login capabilities have more.",
                )
                .write(&mut self.out);
                None
            }
            CommandBody::Noop => {
                Status::ok(Some(&tag), "NOOP completed.").write(out);
                None
            }
            CommandBody::Logout => {
                Status::bye("Logging out").write(out);
                Status::ok(Some(&tag), "Logout completed.").write(out);
                Some(self.close(End::Quit))
            }
            CommandBody::Id(_) => {
                // RFC 2971 3.2: the server's own fields.
                out.extend_from_slice(b"* ID (\"name\" \"posthorn\")\r\n");
                Status::ok(Some(&tag), "ID completed.").write(out);
                None
            }
            CommandBody::StartTls => self.starttls(&tag),
            CommandBody::Login { user, password } => {
                let user = String::from_utf8_lossy(&user.bytes).into_owned();
                self.log.user = user.clone();
                if !plaintext {
                    self.log.attempt(None);
                    // Dovecot's warning that the password has gone out.
                    out.extend_from_slice(b"* BAD [ALERT] Plaintext authentication not allowed without SSL/TLS, but your client did it anyway. If anyone was listening, the password was exposed.\r\n");
                    return self.plaintext_refused(&tag);
                }
                self.log.attempt(Some(sasl::Mechanism::Plain.name()));
                let Ok(password) = String::from_utf8(password.bytes) else {
                    return self.failed(
                        Status::no(Some(&tag), AUTH_FAILED)
                            .with_code(ResponseCode::AuthenticationFailed),
                    );
                };
                self.authenticate(
                    tag,
                    Credentials {
                        mechanism: sasl::Mechanism::Plain,
                        authzid: String::new(),
                        user,
                        password,
                    },
                )
            }
            CommandBody::Authenticate { mechanism, initial } => {
                self.authenticate_command(tag, &mechanism, initial)
            }
            _ => self.bad(&tag, "Please log in first."),
        }
    }

    /// RFC 3501 6.2.1.
    fn starttls(&mut self, tag: &Tag) -> Option<Step> {
        if self.tls {
            return self.bad(tag, "TLS is already active.");
        }
        if !self.cfg.tls_available {
            return self.bad(tag, "TLS support isn't enabled.");
        }
        Status::ok(Some(tag), "Begin TLS negotiation now.").write(&mut self.out);
        // CVE-2011-0411: whatever was pipelined behind STARTTLS came in
        // plaintext and must not run as if it came over TLS.
        self.input.clear();
        self.state = State::Tls;
        Some(Step::StartTls)
    }

    /// RFC 3501 6.2.2, RFC 4959.
    fn authenticate_command(
        &mut self,
        tag: Tag,
        name: &str,
        initial: Option<String>,
    ) -> Option<Step> {
        let Some(mech) = sasl::Mechanism::from_name(name) else {
            self.log.attempt(None);
            return self.failed(Status::no(
                Some(&tag),
                "Unsupported authentication mechanism.",
            ));
        };
        self.log.attempt(Some(mech.name()));
        if !self.plaintext_allowed() {
            return self.plaintext_refused(&tag);
        }
        match Exchange::start(mech, initial.as_deref().map(str::as_bytes)) {
            Ok((ex, p)) => self.sasl_progress(tag, ex, p),
            Err(e) => self.sasl_failed(&tag, e),
        }
    }

    fn sasl_progress(&mut self, tag: Tag, ex: Exchange, p: Progress) -> Option<Step> {
        match p {
            Progress::Challenge(c) => {
                // RFC 3501 7.5: "+ " and the base64 challenge (empty for
                // PLAIN's first).
                self.out.extend_from_slice(b"+ ");
                self.out.extend_from_slice(c.as_bytes());
                self.out.extend_from_slice(b"\r\n");
                self.reader.read_raw_line();
                self.state = State::Sasl(tag, ex);
                None
            }
            Progress::Done(c) => {
                self.log.user = c.user.clone();
                self.authenticate(
                    tag,
                    Credentials {
                        mechanism: ex.mechanism(),
                        authzid: c.authzid,
                        user: c.user,
                        password: c.password,
                    },
                )
            }
        }
    }

    fn sasl_failed(&mut self, tag: &Tag, e: SaslError) -> Option<Step> {
        match e {
            SaslError::Cancelled => {
                self.log.aborted();
                self.bad(tag, "Authentication aborted by client.")
            }
            SaslError::BadBase64 => self.failed(Status::bad(
                Some(tag),
                "Invalid base64 data in continued response",
            )),
            _ => self.failed(
                Status::no(Some(tag), AUTH_FAILED).with_code(ResponseCode::AuthenticationFailed),
            ),
        }
    }

    fn authenticate(&mut self, tag: Tag, creds: Credentials) -> Option<Step> {
        self.log.user = creds.user.clone();
        self.state = State::Authenticating(tag);
        Some(Step::Authenticate(creds))
    }
}
