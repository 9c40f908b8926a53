//! The POP3 session before authentication, as the login process runs it:
//! bytes in, replies and credentials out.
//!
//! Owns the AUTHORIZATION state of RFC 1939: the greeting (with an APOP
//! timestamp when APOP is on), CAPA, STLS, USER/PASS, APOP and SASL AUTH
//! (PLAIN and LOGIN, with continuation lines and initial responses), QUIT;
//! whether passwords may be sent on this connection; the failure count and
//! the command rate; the log lines at the end, in Dovecot's shape. Does no
//! I/O: complete credentials leave as `Step::Authenticate`, and the caller
//! (who asks the auth service) answers with `auth_result`; TLS is the
//! caller's after `Step::StartTls`; waiting out a delay is the caller's after
//! `Step::Pause` (then `resume`); after `Step::LoggedIn` the connection and
//! the pipelined input that followed the authenticating command go to the
//! mailbox process. Idle and total login time limits are the caller's
//! (`timed_out` writes the reply).
//!
//! Standards: RFC 1939 4 and 7 (greeting, APOP timestamp, USER, PASS, APOP,
//! QUIT), RFC 2449 5 and 6 (CAPA and its list), 8 (response codes);
//! RFC 2595 4 (STLS; no input before the handshake survives it), RFC 5034 4
//! (AUTH, initial response, `+ ` continuations, `*` to cancel), RFC 4616
//! (PLAIN), draft-murchison-sasl-login (LOGIN), RFC 3206 (SYS/TEMP, AUTH).
//!
//! Security: plaintext logins (USER/PASS, PLAIN, LOGIN) are refused with
//! Dovecot's `[AUTH]` reply unless TLS is active, the client is on this host
//! (loopback, or its address is ours), or the administrator allows
//! cleartext; CAPA then advertises neither USER nor a mechanism that sends a
//! password. Every byte received after the STLS line and before the TLS
//! handshake is discarded (CVE-2011-0411). A failed login gets the same
//! reply whatever failed (unknown user or wrong password), after the delay
//! auth asks for; `max_auth_failures` failures close the connection, as do
//! `max_bad_commands` bad commands in a row; more than `command_limit`
//! commands in `command_window` pause the session for a window. Lines are
//! bounded (RFC 2449 4's 255 octets; 4 KiB for AUTH, PASS and SASL
//! responses), and input given while the session waits is bounded by
//! MAX_PENDING. Passwords never appear in `Debug` output or logs.
//!
//! Diagnostics: at the end (`disconnected`) one line in Dovecot's shape,
//! which fail2ban's dovecot filter matches: `Disconnected (auth failed, 2
//! attempts in 4 secs): user=<bob>, method=PLAIN, rip=192.0.2.1,
//! lip=192.0.2.2, TLS`, `Aborted login (no auth attempts in 0 secs):
//! user=<>, rip=...`, `Disconnected: Too many bad commands (...)`,
//! `Disconnected (tried to use disallowed plaintext auth): ...`; after a
//! login the caller has `log_login` write `Login: user=<bob>,
//! method=PLAIN, rip=..., lip=..., mpid=1234, TLS`. The lines are made in
//! common::login::log, shared with imap-login; a warning when the caller calls out of turn.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{info, warning};
use proto::pop3::{self, CapaState, Command, CommandError, LineBuffer, Reply, RespCode};
use proto::sasl::{self, Exchange, Progress, SaslError};

use common::login::log::{End, Peer, Record, Wait};

/// Input held while the session waits (for auth, TLS, a pause) is bounded
/// by this; beyond it the session closes.
pub const MAX_PENDING: usize = 64 * 1024;

/// Dovecot's reply when passwords may not be sent on this connection.
const PLAINTEXT_DISALLOWED: &str =
    "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.";
/// Dovecot's reply to every failed login.
const AUTH_FAILED: &str = "Authentication failed.";

/// Settings every login session of a process shares.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// The greeting text after `+OK` (Dovecot's login_greeting), e.g.
    /// `posthorn ready.`.
    pub greeting: String,
    /// Passwords may be sent without TLS from anywhere (auth_allow_cleartext).
    pub allow_cleartext: bool,
    /// TLS is configured, so STLS can be offered on a plaintext connection.
    pub tls_available: bool,
    /// Close the connection after this many failed logins.
    pub max_auth_failures: u32,
    /// Close the connection after this many bad commands in a row
    /// (Dovecot's pop3-login: 3).
    pub max_bad_commands: u32,
    /// More than this many commands in `command_window` pause the session
    /// for a window.
    pub command_limit: u32,
    /// See `command_limit`.
    pub command_window: Duration,
}

/// What the caller knows of this connection when it is accepted.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// The client's address (None on a Unix socket).
    pub rip: Option<IpAddr>,
    /// Our address the client connected to.
    pub lip: Option<IpAddr>,
    /// TLS from the first byte (port 995).
    pub tls: bool,
    /// The RFC 1939 7 APOP timestamp (`<pid.clock@host>`) for the greeting
    /// when APOP is enabled; None disables APOP.
    pub apop_challenge: Option<String>,
}

/// How the client authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// SASL PLAIN, or USER and PASS (as Dovecot, which logs them as PLAIN).
    Plain,
    /// SASL LOGIN.
    Login,
    /// RFC 1939 7 APOP: `password` is the MD5 digest in lower-case hex.
    Apop,
}

impl Mechanism {
    /// The name in logs and for the auth service.
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::Apop => "APOP",
        }
    }
}

/// Complete credentials for the auth service to check.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub mechanism: Mechanism,
    /// The identity to act as (SASL authzid); empty for the user itself.
    pub authzid: String,
    pub user: String,
    /// The password, or for APOP the hex digest.
    pub password: String,
    /// For APOP, the timestamp of the greeting the digest covers.
    pub apop_challenge: Option<String>,
}

/// Never shows the password.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("authzid", &self.authzid)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("apop_challenge", &self.apop_challenge)
            .finish()
    }
}

/// The auth service's answer to `Step::Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Logged in as `user` (the name auth resolved, which may differ from
    /// what the client typed).
    Ok { user: String },
    /// Wrong user or password: reply after `delay`.
    Failed { delay: Duration },
    /// Auth could not decide (unreachable, overloaded).
    TempFail,
}

/// What the caller must do after feeding input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `out`, keep reading.
    Continue,
    /// Send `out`, then close the connection.
    Close,
    /// Send `out` once this long has passed (hold it until then), read
    /// nothing meanwhile, then call `resume`.
    Pause(Duration),
    /// Send `out` (the STLS `+OK`), start the TLS handshake, then call
    /// `tls_started`. Read nothing in plaintext meanwhile.
    StartTls,
    /// Send `out`, ask auth about these credentials and give its answer to
    /// `auth_result`. Read nothing meanwhile.
    Authenticate(Credentials),
    /// Send `out`; the login session is over. Hand the connection to the
    /// mailbox process for `user` with `leftover`, the client's input that
    /// followed the authenticating command (pipelining), as if it had just
    /// arrived there. Call `log_login` once the mailbox process is known.
    LoggedIn { user: String, leftover: Vec<u8> },
}

/// Where the session is.
enum State {
    /// Reading commands.
    Commands,
    /// A SASL exchange waits for the client's next response line.
    Sasl(Exchange),
    /// `Step::Authenticate` was given; waiting for `auth_result`.
    Authenticating,
    /// A failed login's delay (`Step::Pause`); `resume` sends the reply and
    /// closes when `close`.
    FailDelay {
        close: bool,
    },
    /// The command rate's pause (`Step::Pause`).
    RatePause,
    /// `Step::StartTls` was given; waiting for `tls_started`.
    Tls,
    /// `Step::LoggedIn` was given.
    LoggedIn,
    Closed,
}

/// One POP3 connection before login.
pub struct LoginSession {
    cfg: Arc<LoginConfig>,
    conn: Connection,
    lines: LineBuffer,
    state: State,
    /// TLS is active (from the first byte or after STLS).
    tls: bool,
    /// The name given by USER, waiting for PASS.
    user: Option<String>,
    failures: u32,
    bad_commands: u32,
    /// Start of the command rate window and the commands in it.
    window: Option<(Instant, u32)>,
    /// What the log lines will say.
    log: Record,
    /// Replies to send.
    pub out: Vec<u8>,
}

impl LoginSession {
    pub fn new(cfg: Arc<LoginConfig>, conn: Connection) -> LoginSession {
        LoginSession {
            tls: conn.tls,
            cfg,
            conn,
            lines: LineBuffer::new(pop3::MAX_AUTH_LINE),
            state: State::Commands,
            user: None,
            failures: 0,
            bad_commands: 0,
            window: None,
            log: Record::new(),
            out: Vec::with_capacity(512),
        }
    }

    /// The greeting (RFC 1939 4), with the APOP timestamp when APOP is on
    /// (RFC 1939 7).
    pub fn greet(&mut self) {
        let text = match &self.conn.apop_challenge {
            Some(ts) => format!("{} {ts}", self.cfg.greeting),
            None => self.cfg.greeting.clone(),
        };
        self.reply(Reply::ok(text));
    }

    /// Is the session waiting for the caller (auth, TLS, a pause)? Feed no
    /// input then.
    pub fn busy(&self) -> bool {
        matches!(
            self.state,
            State::Authenticating | State::FailDelay { .. } | State::RatePause | State::Tls
        )
    }

    /// Feed bytes from the client.
    ///
    /// While `busy()` the bytes are only held (bounded by MAX_PENDING; past
    /// it the session closes), and Continue is returned: the step given
    /// before still stands. In the STLS wait they are discarded.
    pub fn input(&mut self, data: &[u8]) -> Step {
        match self.state {
            State::Closed => return Step::Close,
            State::LoggedIn => {
                warning!("pop3 login: input after the login was handed on");
                return Step::Close;
            }
            // RFC 2595 4: nothing sent before the handshake may be taken
            // as coming over TLS.
            State::Tls => return Step::Continue,
            _ => {}
        }
        self.lines.push(data);
        if self.busy() {
            if self.lines.buffered_len() > MAX_PENDING {
                return self.close(End::InputOverflow);
            }
            return Step::Continue;
        }
        self.process()
    }

    /// The pause asked for by `Step::Pause` is over.
    pub fn resume(&mut self) -> Step {
        match std::mem::replace(&mut self.state, State::Commands) {
            State::FailDelay { close } => {
                self.reply(Reply::err_code(RespCode::Auth, AUTH_FAILED));
                if close {
                    return self.close(End::AuthFailures);
                }
            }
            State::RatePause => self.window = None,
            other => {
                self.state = other;
                return self.pending();
            }
        }
        self.process()
    }

    /// The TLS handshake after STLS succeeded: carry on, over TLS now.
    pub fn tls_started(&mut self) -> Step {
        if !matches!(self.state, State::Tls) {
            return self.pending();
        }
        self.tls = true;
        self.state = State::Commands;
        // RFC 2595 4: what the client said before TLS is forgotten.
        self.user = None;
        self.lines.take_buffered();
        self.process()
    }

    /// The auth service's answer to `Step::Authenticate`.
    pub fn auth_result(&mut self, outcome: AuthOutcome) -> Step {
        if !matches!(self.state, State::Authenticating) {
            warning!("pop3 login: auth result without a request");
            return self.close(End::Disconnected);
        }
        self.state = State::Commands;
        match outcome {
            AuthOutcome::Ok { user } => {
                self.state = State::LoggedIn;
                self.log.logged_in = Some(user.clone());
                // Everything after the authenticating command is the
                // mailbox process's (RFC 2449 6.6: the client may pipeline).
                let leftover = self.lines.take_buffered();
                Step::LoggedIn { user, leftover }
            }
            AuthOutcome::Failed { delay } => {
                self.failures = self.failures.saturating_add(1);
                self.log.failed();
                let close = self.failures >= self.cfg.max_auth_failures;
                if !delay.is_zero() {
                    self.state = State::FailDelay { close };
                    return Step::Pause(delay);
                }
                self.reply(Reply::err_code(RespCode::Auth, AUTH_FAILED));
                if close {
                    return self.close(End::AuthFailures);
                }
                self.process()
            }
            AuthOutcome::TempFail => {
                self.log.failed();
                // RFC 3206 4: not the client's fault; try again later.
                self.reply(Reply::err_code(
                    RespCode::SysTemp,
                    "Temporary authentication failure.",
                ));
                self.process()
            }
        }
    }

    /// The client said nothing for too long.
    pub fn timed_out(&mut self) -> Step {
        if !matches!(self.state, State::Tls | State::Closed | State::LoggedIn) {
            self.reply(Reply::err("Disconnected for inactivity."));
        }
        self.close(End::Inactivity)
    }

    /// The connection is gone (or being closed): log Dovecot's line, once.
    /// Nothing is logged for a session that logged in (see `log_login`).
    pub fn disconnected(&mut self) {
        if let Some(line) = self.disconnect_line() {
            if self.log.first_log() {
                info!("{line}");
            }
        }
    }

    /// The line `disconnected` logs, or None after a login.
    pub fn disconnect_line(&self) -> Option<String> {
        self.log.disconnect_line(self.waiting(), &self.peer())
    }

    /// Log the `Login:` line after `Step::LoggedIn`, with the pid of the
    /// mailbox process when the caller knows it.
    pub fn log_login(&mut self, mpid: Option<u32>) {
        if let Some(line) = self.login_line(mpid) {
            if self.log.first_log() {
                info!("{line}");
            }
        }
    }

    /// `Login: user=<bob>, method=PLAIN, rip=..., lip=..., mpid=N, TLS`, or
    /// None before a login.
    pub fn login_line(&self, mpid: Option<u32>) -> Option<String> {
        self.log.login_line(mpid, &self.peer())
    }

    /// The connection as the log lines name it.
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
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                };
                ip.is_loopback() || Some(ip) == self.conn.lip
            }
            None => false,
        }
    }

    /// May passwords be sent on this connection?
    fn plaintext_allowed(&self) -> bool {
        self.cfg.allow_cleartext || self.tls || self.secured_by_address()
    }

    fn reply(&mut self, r: Reply) {
        r.write_to(&mut self.out);
    }

    /// What the session waits for now, if anything the log line names.
    fn waiting(&self) -> Option<Wait> {
        match self.state {
            State::Sasl(_) => Some(Wait::Sasl),
            State::Authenticating => Some(Wait::Auth),
            _ => None,
        }
    }

    fn close(&mut self, end: End) -> Step {
        self.log.end(end, self.waiting());
        self.state = State::Closed;
        Step::Close
    }

    /// The step that stands while the session waits.
    fn pending(&self) -> Step {
        match self.state {
            State::Closed | State::LoggedIn => Step::Close,
            _ => Step::Continue,
        }
    }

    /// Run buffered lines until input runs out or the session must wait.
    fn process(&mut self) -> Step {
        loop {
            if !matches!(self.state, State::Commands | State::Sasl(_)) {
                return self.pending();
            }
            // The next command waits out the window (none is waiting after
            // the last one of a burst).
            if let Some((_, n)) = self.window.filter(|_| self.lines.buffered_len() > 0) {
                if n > self.cfg.command_limit {
                    self.state = State::RatePause;
                    return Step::Pause(self.cfg.command_window);
                }
            }
            let Some(line) = self.lines.next_line() else {
                return Step::Continue;
            };
            self.count_command();
            let step = match std::mem::replace(&mut self.state, State::Commands) {
                State::Sasl(ex) => self.sasl_response(ex, line),
                _ => match line {
                    Ok(line) => self.command(&line),
                    Err(_) => self.bad_command(pop3::line_too_long()),
                },
            };
            if let Some(step) = step {
                return step;
            }
        }
    }

    /// One more command in the rate window.
    fn count_command(&mut self) {
        let now = Instant::now();
        match &mut self.window {
            Some((start, n)) if now.duration_since(*start) < self.cfg.command_window => *n += 1,
            w => *w = Some((now, 1)),
        }
    }

    /// An error reply for a bad command; too many in a row close.
    fn bad_command(&mut self, r: Reply) -> Option<Step> {
        self.reply(r);
        self.bad_commands = self.bad_commands.saturating_add(1);
        if self.bad_commands >= self.cfg.max_bad_commands {
            self.reply(Reply::err("Too many bad commands."));
            return Some(self.close(End::BadCommands));
        }
        None
    }

    /// A login attempt failed here, without asking auth.
    fn failed(&mut self, r: Reply) -> Option<Step> {
        self.reply(r);
        self.failures = self.failures.saturating_add(1);
        self.log.failed();
        if self.failures >= self.cfg.max_auth_failures {
            return Some(self.close(End::AuthFailures));
        }
        None
    }

    /// A plaintext login on a connection that may not carry one.
    fn plaintext_refused(&mut self) -> Option<Step> {
        self.log.tried_plaintext = true;
        self.failed(Reply::err_code(RespCode::Auth, PLAINTEXT_DISALLOWED))
    }

    fn authenticate(&mut self, creds: Credentials) -> Option<Step> {
        self.log.user = creds.user.clone();
        self.state = State::Authenticating;
        Some(Step::Authenticate(creds))
    }

    fn command(&mut self, line: &[u8]) -> Option<Step> {
        let cmd = match pop3::parse_command(line) {
            Ok(c) => c,
            // Dovecot's pop3-login does not echo the keyword, and knows no
            // TRANSACTION command, whatever its arguments.
            Err(CommandError::Unknown(_)) => {
                return self.bad_command(Reply::err("Unknown command."))
            }
            Err(_) if transaction_keyword(line) => {
                return self.bad_command(Reply::err("Unknown command."))
            }
            Err(CommandError::ApopSyntax | CommandError::ApopDigest)
                if self.conn.apop_challenge.is_none() =>
            {
                return self.bad_command(Reply::err("APOP not enabled."));
            }
            Err(e) => return self.bad_command(e.reply()),
        };
        self.bad_commands = 0;
        match cmd {
            Command::Capa => {
                let caps = pop3::capabilities(CapaState {
                    authorization: true,
                    stls: self.cfg.tls_available && !self.tls,
                    plaintext: self.plaintext_allowed(),
                });
                Reply::ok("").write_multiline(caps, &mut self.out);
                None
            }
            Command::Stls => self.stls(),
            Command::User(name) => {
                if !self.plaintext_allowed() {
                    self.log.user = name;
                    self.log.attempt(None);
                    return self.plaintext_refused();
                }
                self.log.user = name.clone();
                self.user = Some(name);
                self.reply(Reply::ok(""));
                None
            }
            Command::Pass(password) => {
                if !self.plaintext_allowed() {
                    self.log.attempt(None);
                    return self.plaintext_refused();
                }
                let Some(user) = self.user.take() else {
                    self.reply(Reply::err("No username given."));
                    return None;
                };
                self.log.attempt(Some(Mechanism::Plain.name()));
                self.authenticate(Credentials {
                    mechanism: Mechanism::Plain,
                    authzid: String::new(),
                    user,
                    password,
                    apop_challenge: None,
                })
            }
            Command::Apop { user, digest } => {
                let Some(challenge) = self.conn.apop_challenge.clone() else {
                    return self.bad_command(Reply::err("APOP not enabled."));
                };
                self.log.attempt(Some(Mechanism::Apop.name()));
                self.authenticate(Credentials {
                    mechanism: Mechanism::Apop,
                    authzid: String::new(),
                    user,
                    password: digest,
                    apop_challenge: Some(challenge),
                })
            }
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
            Command::Quit => {
                self.reply(Reply::ok("Logging out"));
                Some(self.close(End::Quit))
            }
            // RFC 1939 4: only these are valid before authentication.
            Command::Stat
            | Command::List(_)
            | Command::Retr(_)
            | Command::Top { .. }
            | Command::Dele(_)
            | Command::Rset
            | Command::Noop
            | Command::Uidl(_) => self.bad_command(Reply::err("Unknown command.")),
        }
    }

    /// RFC 2595 4: STLS.
    fn stls(&mut self) -> Option<Step> {
        if self.tls {
            self.reply(Reply::err("TLS is already active."));
            return None;
        }
        if !self.cfg.tls_available {
            self.reply(Reply::err("TLS support isn't enabled."));
            return None;
        }
        self.reply(Reply::ok("Begin TLS negotiation now."));
        // RFC 2595 4 (CVE-2011-0411): whatever was pipelined behind STLS
        // arrived in plaintext; it must not run as if it came over TLS.
        self.lines.take_buffered();
        self.state = State::Tls;
        Some(Step::StartTls)
    }

    /// RFC 5034 4: AUTH.
    fn auth(&mut self, mechanism: Option<String>, initial: Option<String>) -> Option<Step> {
        let Some(name) = mechanism else {
            // The mechanism list without AUTH's argument (what old Outlook
            // asks), as Dovecot answers it.
            let mechs: &[&str] = if self.plaintext_allowed() {
                &["PLAIN", "LOGIN"]
            } else {
                &[]
            };
            Reply::ok("").write_multiline(mechs, &mut self.out);
            return None;
        };
        let Some(mech) = sasl::Mechanism::from_name(&name) else {
            self.log.attempt(None);
            return self.failed(Reply::err_code(
                RespCode::Auth,
                "Unsupported authentication mechanism.",
            ));
        };
        self.log.attempt(Some(mech.name()));
        if !self.plaintext_allowed() {
            return self.plaintext_refused();
        }
        match Exchange::start(mech, initial.as_deref().map(str::as_bytes)) {
            Ok((ex, progress)) => self.sasl_progress(ex, progress),
            Err(e) => self.sasl_failed(e),
        }
    }

    /// The next response line of a SASL exchange.
    fn sasl_response(
        &mut self,
        mut ex: Exchange,
        line: Result<Vec<u8>, pop3::LineTooLong>,
    ) -> Option<Step> {
        let Ok(line) = line else {
            return self.failed(pop3::line_too_long());
        };
        match ex.step(&line) {
            Ok(progress) => self.sasl_progress(ex, progress),
            Err(e) => self.sasl_failed(e),
        }
    }

    fn sasl_progress(&mut self, ex: Exchange, progress: Progress) -> Option<Step> {
        match progress {
            Progress::Challenge(c) => {
                // RFC 5034 4: "+ " and the base64 challenge.
                pop3::write_continuation(&c, &mut self.out);
                self.state = State::Sasl(ex);
                None
            }
            Progress::Done(c) => {
                let mechanism = match ex.mechanism() {
                    sasl::Mechanism::Plain => Mechanism::Plain,
                    sasl::Mechanism::Login => Mechanism::Login,
                };
                self.authenticate(Credentials {
                    mechanism,
                    authzid: c.authzid,
                    user: c.user,
                    password: c.password,
                    apop_challenge: None,
                })
            }
        }
    }

    fn sasl_failed(&mut self, e: SaslError) -> Option<Step> {
        match e {
            // RFC 5034 4: the client's `*` ends the exchange with -ERR.
            SaslError::Cancelled => {
                self.log.aborted();
                self.reply(Reply::err("Authentication aborted by client."));
                None
            }
            SaslError::BadBase64 => self.failed(Reply::err_code(
                RespCode::Auth,
                "Invalid base64 in response",
            )),
            // Malformed credentials fail as a wrong password would.
            _ => self.failed(Reply::err_code(RespCode::Auth, AUTH_FAILED)),
        }
    }
}

/// Does the line start with a TRANSACTION state keyword (RFC 1939 5, 7)?
fn transaction_keyword(line: &[u8]) -> bool {
    let keyword = line.split(|&b| b == b' ').next().unwrap_or_default();
    [
        "STAT", "LIST", "RETR", "TOP", "DELE", "RSET", "NOOP", "UIDL",
    ]
    .iter()
    .any(|k| keyword.eq_ignore_ascii_case(k.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Arc<LoginConfig> {
        Arc::new(LoginConfig {
            greeting: "posthorn ready.".into(),
            allow_cleartext: false,
            tls_available: true,
            max_auth_failures: 3,
            max_bad_commands: 3,
            command_limit: 50,
            command_window: Duration::from_secs(3600),
        })
    }

    fn conn(rip: &str) -> Connection {
        Connection {
            rip: Some(rip.parse().expect("address")),
            lip: Some("192.0.2.2".parse().expect("address")),
            tls: false,
            apop_challenge: None,
        }
    }

    /// Drop the seconds, which depend on the clock.
    fn secs_free(line: &str) -> String {
        line.split(' ')
            .map(|w| {
                if w.bytes().all(|b| b.is_ascii_digit()) {
                    "S"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn address_security() {
        let table = [
            ("127.0.0.1", true),
            ("127.1.2.3", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("192.0.2.2", true), // our own address
            ("192.0.2.1", false),
            ("2001:db8::1", false),
        ];
        for (ip, secured) in table {
            let s = LoginSession::new(cfg(), conn(ip));
            assert_eq!(s.plaintext_allowed(), secured, "{ip}");
        }
        let s = LoginSession::new(
            cfg(),
            Connection {
                tls: true,
                ..conn("192.0.2.1")
            },
        );
        assert!(s.plaintext_allowed());
    }

    #[test]
    fn log_lines() {
        let mut s = LoginSession::new(cfg(), conn("192.0.2.1"));
        s.greet();
        assert_eq!(
            secs_free(&s.disconnect_line().expect("a line")),
            "Disconnected (no auth attempts in S secs): user=<>, rip=192.0.2.1, lip=192.0.2.2"
        );
        let _ = s.input(b"USER bob\r\n");
        assert_eq!(
            s.disconnect_line().expect("a line"),
            "Disconnected (tried to use disallowed plaintext auth): user=<bob>, rip=192.0.2.1, lip=192.0.2.2"
        );
        // Over TLS: a failed PASS, then QUIT.
        let mut s = LoginSession::new(
            cfg(),
            Connection {
                tls: true,
                ..conn("192.0.2.1")
            },
        );
        let step = s.input(b"USER b<o>b, rip=6.6.6.6\r\nPASS x\r\n");
        assert!(matches!(step, Step::Authenticate(_)));
        assert_eq!(
            secs_free(&s.disconnect_line().expect("a line")),
            "Disconnected (disconnected while authenticating, waited S secs): user=<b?o?b??rip=6.6.6.6>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, TLS"
        );
        assert_eq!(
            s.auth_result(AuthOutcome::Failed {
                delay: Duration::ZERO
            }),
            Step::Continue
        );
        assert_eq!(s.input(b"QUIT\r\n"), Step::Close);
        assert_eq!(
            secs_free(&s.disconnect_line().expect("a line")),
            "Aborted login (auth failed, S attempts in S secs): user=<b?o?b??rip=6.6.6.6>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, TLS"
        );
        // Login: no disconnect line, a Login line.
        let mut s = LoginSession::new(cfg(), conn("127.0.0.1"));
        let step = s.input(b"AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n");
        assert!(matches!(step, Step::Authenticate(_)));
        let step = s.auth_result(AuthOutcome::Ok {
            user: "bob@example.test".into(),
        });
        assert_eq!(
            step,
            Step::LoggedIn {
                user: "bob@example.test".into(),
                leftover: Vec::new()
            }
        );
        assert_eq!(s.disconnect_line(), None);
        assert_eq!(
            s.login_line(Some(4242)).expect("a line"),
            "Login: user=<bob@example.test>, method=PLAIN, rip=127.0.0.1, lip=192.0.2.2, mpid=4242, secured"
        );
    }

    #[test]
    fn credentials_debug_hides_password() {
        let c = Credentials {
            mechanism: Mechanism::Plain,
            authzid: String::new(),
            user: "bob".into(),
            password: "hunter2".into(),
            apop_challenge: None,
        };
        let shown = format!("{:?}", Step::Authenticate(c));
        assert!(
            shown.contains("bob") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
