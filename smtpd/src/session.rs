//! The SMTP session state machine: bytes in, replies and message bytes out.
//!
//! Owns which command is allowed when, the envelope being built, the
//! message phase (DATA and BDAT), size and recipient limits, error counting
//! and the Received: header. Does no I/O: policy decisions are asked of a
//! `Policy`, message bytes go to a `Sink`, replies accumulate in `out` for the
//! caller to send, and committing the queue file is the caller's job
//! (`Step::Commit`, then `commit_done`), as is waiting out the delay that
//! slows down a client making many errors (`Step::Pause`, then `resume`).
//! Transcript tests drive it directly.
//!
//! Standards: RFC 5321 (3.3 mail transactions, 4.1.1 commands, 4.1.3
//! address literals, 4.1.4 order, 4.4 trace information, 4.5.1 postmaster,
//! 4.5.3.1 limits), RFC 1870 (SIZE), RFC 2920 (PIPELINING), RFC 3030
//! (CHUNKING), RFC 6531 (SMTPUTF8), RFC 3461 (DSN: RET and ENVID of MAIL,
//! NOTIFY and ORCPT of each RCPT go into the envelope for qmgr; their
//! syntax errors are proto's 501 replies; a recipient the policy expands
//! through virtual_alias_maps is queued as its final recipients, each
//! with the client's address as ORCPT unless the client gave one), RFC 2034 / 3463, RFC 3207 (STARTTLS:
//! the TLS itself is the caller's, `Step::StartTls` then `tls_secured`),
//! RFC 3848 (ESMTPS, ESMTPA, ESMTPSA in Received:), RFC 4954 (AUTH: the
//! exchange is proto::sasl's, the verification the caller's,
//! `Step::Verify` then `auth_done`; 235, 334, 454, 501, 504, 530, 535,
//! 538), RFC 6409 (submission: mail only after AUTH, relaying for
//! authenticated users; smtpd_client_restrictions and
//! smtpd_sender_restrictions, restrictions.rs; 8.2 and 8.3: a missing Date:
//! and Message-ID: added to an authenticated client's message, headers.rs),
//! RFC 8601 (the authentication checks of a message from a client that did
//! not AUTH are the caller's, `Step::Authenticate` then `authenticated`,
//! whose header goes to the sink as fields to prepend; 5: fields claiming
//! our authserv-id are removed while the message streams, trust::authres;
//! RFC 7489 10.3: a DMARC refusal is 550 5.7.1 at the end of the message).
//!
//! Security: input is bounded (command lines by LineBuffer, messages by
//! message_size_limit while streaming, recipients by smtpd_recipient_limit
//! and smtpd_recipient_overshoot_limit, errors by smtpd_hard_error_limit,
//! NOOP/VRFY/RSET by smtpd_junk_command_limit); only CRLF.CRLF ends DATA,
//! and with smtpd_forbid_bare_newline a message (DATA or BDAT) with bare LF
//! from outside mynetworks is refused, so SMTP smuggling cannot split one
//! message into two here or downstream. Past smtpd_soft_error_limit errors
//! each error reply is held back by smtpd_error_sleep_time (Postfix's
//! tarpit), without blocking the process. Every byte after a STARTTLS
//! line is discarded (RFC 3207 5, CVE-2011-0411), and everything learnt
//! before TLS is forgotten after it (RFC 3207 4.2).
//!
//! Diagnostics: NOQUEUE reject lines in Postfix's shape (fail2ban filters
//! match them), `ID: client=...` (with `sasl_method=, sasl_username=`
//! after AUTH), `warning: CLIENT: SASL PLAIN authentication failed:
//! authentication failure` (fail2ban's postfix-sasl filter), `Anonymous TLS connection established
//! from ...: TLSv1.3 with cipher ...`, `improper command pipelining after
//! STARTTLS from ...`, and the `disconnect from ... commands=N` summary,
//! all through `log`.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use common::auth::{AuthError, AuthReply, Credentials, FailReason};
use common::dsn::{self, MessageDsn, Notify, RecipientDsn, Ret};
use common::spool::Envelope;
use common::tls::TlsInfo;
use common::{info, warning};
use proto::sasl::{self, Exchange, Progress, SaslCredentials, SaslError};
use proto::smtp::{
    self, BareLfScan, BdatReceiver, Body, Command, DataReceiver, Extensions, LineBuffer, Reply,
};

use crate::headers::MissingHeaders;
use crate::restrictions::{self, Restriction, Stage};
use common::table::Tables;
use posthorn_trust::authres::ForgedFilter;
use std::sync::Mutex;

/// Settings a session needs, read once per process.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub myhostname: String,
    pub banner: String,
    pub mail_name: String,
    pub size_limit: u64,
    /// smtpd_recipient_limit; 0 means no limit, as in Postfix.
    pub recipient_limit: usize,
    pub recipient_overshoot_limit: usize,
    pub soft_error_limit: u32,
    pub error_sleep_time: Duration,
    pub hard_error_limit: u32,
    pub junk_command_limit: u32,
    pub vrfy_disabled: bool,
    pub forbid_bare_newline: bool,
    /// STARTTLS: offered, refused, or not a command here.
    pub starttls: StartTlsOffer,
    /// smtpd_tls_security_level = encrypt: no mail before TLS.
    pub tls_required: bool,
    /// smtpd_sasl_auth_enable: AUTH (RFC 4954) through posthorn-auth.
    pub sasl: bool,
    /// smtpd_tls_auth_only: AUTH only under TLS.
    pub tls_auth_only: bool,
    /// auth_allow_cleartext: posthorn-auth takes passwords sent in the
    /// clear from anywhere (else only from loopback).
    pub cleartext_allowed: bool,
    /// smtpd_client_restrictions, at MAIL FROM.
    pub client_restrictions: Vec<Restriction>,
    /// smtpd_sender_restrictions, at MAIL FROM after the client list.
    pub sender_restrictions: Vec<Restriction>,
    /// recipient_delimiter (which sender addresses a user owns).
    pub delimiter: String,
    /// smtpd_sender_login_maps: sender address -> the logins that own it.
    pub sender_login_maps: Option<Arc<Mutex<Tables<Vec<String>>>>>,
    /// smtpd_authentication_checks is not empty: messages of clients that
    /// did not AUTH are verified at the end of DATA (`Step::Authenticate`).
    pub authenticate: bool,
    /// authserv_id: Authentication-Results fields claiming it are removed
    /// from every message received (RFC 8601 5).
    pub authserv_id: String,
}

/// What STARTTLS does (smtpd_tls_security_level, smtpd_tls_cert_file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTlsOffer {
    /// Level `none`: not a command (502), never advertised.
    Off,
    /// TLS wanted but no certificate set: 454, not advertised.
    NoCertificate,
    /// Advertised in EHLO until TLS is active.
    Offered,
}

impl SmtpConfig {
    pub fn from_config(
        cfg: &common::config::Config,
    ) -> Result<SmtpConfig, common::config::ConfigError> {
        let level = cfg.one_of("smtpd_tls_security_level", &["none", "may", "encrypt"])?;
        Ok(SmtpConfig {
            myhostname: cfg.get("myhostname"),
            banner: cfg.get("smtpd_banner"),
            mail_name: cfg.get("mail_name"),
            size_limit: cfg.int("message_size_limit")?,
            recipient_limit: usize_param(cfg, "smtpd_recipient_limit")?,
            recipient_overshoot_limit: usize_param(cfg, "smtpd_recipient_overshoot_limit")?,
            soft_error_limit: u32_param(cfg, "smtpd_soft_error_limit")?,
            error_sleep_time: cfg.time("smtpd_error_sleep_time")?,
            hard_error_limit: u32_param(cfg, "smtpd_hard_error_limit")?,
            junk_command_limit: u32_param(cfg, "smtpd_junk_command_limit")?,
            vrfy_disabled: cfg.get("smtpd_vrfy_reply").trim() == "502",
            forbid_bare_newline: cfg.bool("smtpd_forbid_bare_newline")?,
            starttls: match (
                level.as_str(),
                cfg.get("smtpd_tls_cert_file").trim().is_empty(),
            ) {
                ("none", _) => StartTlsOffer::Off,
                (_, true) => StartTlsOffer::NoCertificate,
                _ => StartTlsOffer::Offered,
            },
            tls_required: level == "encrypt",
            sasl: cfg.bool("smtpd_sasl_auth_enable")?,
            tls_auth_only: cfg.bool("smtpd_tls_auth_only")?,
            cleartext_allowed: cfg.bool("auth_allow_cleartext")?,
            client_restrictions: restrictions::parse(
                cfg,
                "smtpd_client_restrictions",
                Stage::Client,
            )?,
            sender_restrictions: restrictions::parse(
                cfg,
                "smtpd_sender_restrictions",
                Stage::Sender,
            )?,
            delimiter: cfg.get("recipient_delimiter"),
            sender_login_maps: {
                let v = cfg.get("smtpd_sender_login_maps");
                (!v.trim().is_empty())
                    .then(|| Arc::new(Mutex::new(Tables::new(&v, restrictions::owners))))
            },
            authenticate: !cfg.list("smtpd_authentication_checks").is_empty(),
            authserv_id: cfg.get("authserv_id").trim().to_string(),
        })
    }
}

/// A count parameter; values past u32 are as good as no limit.
fn u32_param(cfg: &common::config::Config, name: &str) -> Result<u32, common::config::ConfigError> {
    Ok(u32::try_from(cfg.int(name)?).unwrap_or(u32::MAX))
}

/// A count parameter; values past usize are as good as no limit.
fn usize_param(
    cfg: &common::config::Config,
    name: &str,
) -> Result<usize, common::config::ConfigError> {
    Ok(usize::try_from(cfg.int(name)?).unwrap_or(usize::MAX))
}

/// Access decisions, asked by the session (policy.rs has the real one).
pub trait Policy {
    /// May this client send to this recipient, and what does it stand for?
    /// Err is the reply to give. `authenticated`: the client logged in with
    /// AUTH (it may relay, as Postfix's permit_sasl_authenticated in
    /// smtpd_relay_restrictions).
    fn check_recipient(
        &mut self,
        client: Option<IpAddr>,
        rcpt: &str,
        authenticated: bool,
    ) -> Result<Accepted, Reply>;
    /// Is the client in mynetworks? (Asked once per connection.)
    fn trusted(&self, client: Option<IpAddr>) -> bool;
}

/// What an accepted recipient stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Itself.
    Itself,
    /// These final recipients (virtual_alias_maps), each queued with the
    /// original address as its ORCPT unless the client gave one.
    Aliased(Vec<String>),
}

/// Where message bytes go (the queue file, or memory in tests).
pub trait Sink {
    /// Start a message; returns its queue id.
    fn begin(&mut self, env: &Envelope) -> io::Result<String>;
    fn write(&mut self, data: &[u8]) -> io::Result<()>;
    /// Throw the message away.
    fn abort(&mut self);
    /// Header fields to prepend to the message where it leaves the queue
    /// (the Authentication-Results of `Session::authenticated`).
    fn prepend(&mut self, _fields: &str) -> io::Result<()> {
        Ok(())
    }
}

/// The outcome of the authentication checks of one message
/// (`Step::Authenticate`).
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The Authentication-Results field, with its CRLF.
    pub header: String,
    /// The log line's text: `spf=pass dkim=pass (example.org) ...`.
    pub summary: String,
    /// DMARC enforcement refuses the message: the policy domain.
    pub reject: Option<String>,
    /// The message failed DMARC under p=quarantine (delivered).
    pub quarantine: bool,
}

/// What the caller must do after feeding input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send `out`, keep reading.
    Continue,
    /// The message is complete: make it durable, then call `commit_done`.
    /// Read no more input until then.
    Commit,
    /// Send `out`, then close the connection.
    Close,
    /// The client has made too many errors (smtpd_soft_error_limit): the
    /// session stopped at the command that made the last one, keeping the
    /// rest of its input, as after `Commit`. Hold back everything in `out`
    /// and read nothing for this long, then call `resume`.
    Pause(Duration),
    /// STARTTLS was accepted: send `out` (the 220) in the clear, then do
    /// the TLS handshake and call `tls_secured`. Input after the STARTTLS
    /// line was discarded; feed nothing before `tls_secured`.
    StartTls,
    /// AUTH has credentials: take them (`take_credentials`), have
    /// posthorn-auth verify them, and call `auth_done`. Read no more input
    /// until then.
    Verify,
    /// The message is complete and its authentication checks are due
    /// (smtpd_authentication_checks): run them on the message as queued so
    /// far (`authentication_facts`), then call `authenticated`. Read no
    /// more input until then.
    Authenticate,
}

/// What the authentication checks of a message need from the session.
#[derive(Debug, Clone)]
pub struct AuthFacts {
    pub queue_id: String,
    pub client: IpAddr,
    pub helo: String,
    pub mail_from: String,
}

/// The connecting client.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: Option<IpAddr>,
    /// The local port it connected to (for auth's log lines).
    pub port: u16,
    pub name: String,
    /// In mynetworks (Policy::trusted), asked once at connect.
    pub trusted: bool,
}

impl Client {
    /// `name[addr]`, as in Postfix's log lines.
    pub fn label(&self) -> String {
        match self.addr {
            Some(a) => format!("{}[{a}]", self.name),
            None => format!("{}[local]", self.name),
        }
    }
}

enum Mode {
    Command,
    Data(DataReceiver),
    /// A chunk; `last` says whether it ends the message; `discard` whether it
    /// was refused (its bytes are read and dropped, RFC 3030 2).
    Bdat {
        rx: BdatReceiver,
        last: bool,
        discard: Option<Reply>,
    },
    /// AUTH: command lines are the client's SASL responses.
    Auth(Exchange),
}

#[derive(Default)]
struct Transaction {
    from: Option<String>,
    smtputf8: bool,
    /// RET and ENVID of MAIL FROM (RFC 3461 4.3, 4.4).
    dsn: MessageDsn,
    /// Distinct recipients, in the order given.
    rcpts: Vec<String>,
    /// NOTIFY and ORCPT of each of `rcpts` (RFC 3461 4.1, 4.2).
    rcpt_dsn: Vec<RecipientDsn>,
    /// RCPT commands accepted, duplicates included (smtpd_recipient_limit).
    rcpt_count: usize,
    /// RCPT commands refused for smtpd_recipient_limit.
    overshoot: usize,
    /// BDAT chunks of this message have begun.
    bdat: bool,
    /// The sink has begun the message (queue id known).
    queue_id: Option<String>,
    size: u64,
    too_big: bool,
    write_failed: bool,
    /// A bare LF was in the content (DATA receiver or BDAT chunks).
    bare_newline: bool,
    /// Bare LF across the chunks of a BDAT message.
    bdat_lf: BareLfScan,
    /// A submitted message (from an authenticated client) gets the Date:
    /// and Message-ID: it lacks (RFC 6409 8.2, 8.3).
    headers: Option<MissingHeaders>,
    /// Authentication-Results fields claiming our authserv-id are removed
    /// (RFC 8601 5).
    forged: Option<ForgedFilter>,
}

/// Per-command counters for the disconnect line.
#[derive(Default)]
struct Counters {
    list: Vec<(&'static str, u32, u32)>,
}

impl Counters {
    fn count(&mut self, verb: &'static str, ok: bool) {
        match self.list.iter_mut().find(|(v, _, _)| *v == verb) {
            Some(e) => {
                e.2 += 1;
                if ok {
                    e.1 += 1;
                }
            }
            None => self.list.push((verb, u32::from(ok), 1)),
        }
    }

    /// `ehlo=1 mail=1 rcpt=0/1 data=1 quit=1 commands=4/5`
    fn summary(&self) -> String {
        let mut s = String::new();
        let (mut ok, mut all) = (0, 0);
        for (v, o, a) in &self.list {
            ok += o;
            all += a;
            if o == a {
                s.push_str(&format!("{v}={o} "));
            } else {
                s.push_str(&format!("{v}={o}/{a} "));
            }
        }
        if ok == all {
            s.push_str(&format!("commands={all}"));
        } else {
            s.push_str(&format!("commands={ok}/{all}"));
        }
        s
    }
}

/// One SMTP session.
pub struct Session {
    cfg: Arc<SmtpConfig>,
    client: Client,
    lines: LineBuffer,
    mode: Mode,
    helo: Option<String>,
    esmtp: bool,
    tx: Transaction,
    errors: u32,
    /// NOOP, VRFY and RSET so far (smtpd_junk_command_limit).
    junk: u32,
    /// A BDAT chunk failed: skip chunks until BDAT LAST or RSET (Postfix's
    /// SMTPD_BDAT_STAT_ERROR), so pipelined chunks get a reply each.
    bdat_failed: bool,
    waiting_commit: bool,
    /// `Step::Authenticate` given, `authenticated` not called yet.
    authenticating: bool,
    /// A delay was asked for (`Step::Pause`) and `resume` not called yet.
    pause: Option<Duration>,
    /// STARTTLS accepted, `tls_secured` not called yet.
    tls_wait: bool,
    /// TLS is active: what it negotiated.
    tls: Option<TlsInfo>,
    /// AUTH succeeded: auth's name of the user, and the mechanism.
    user: Option<(String, &'static str)>,
    /// Credentials waiting for `take_credentials` (`Step::Verify`).
    credentials: Option<Credentials>,
    /// `Step::Verify` given, `auth_done` not called yet: the mechanism.
    verifying: Option<&'static str>,
    closing: bool,
    last_verb: &'static str,
    counters: Counters,
    /// Replies to send.
    pub out: Vec<u8>,
}

impl Session {
    pub fn new(cfg: Arc<SmtpConfig>, client: Client) -> Session {
        Session {
            cfg,
            client,
            lines: LineBuffer::new(smtp::MAX_COMMAND_LINE),
            mode: Mode::Command,
            helo: None,
            esmtp: false,
            tx: Transaction::default(),
            errors: 0,
            junk: 0,
            bdat_failed: false,
            waiting_commit: false,
            authenticating: false,
            pause: None,
            tls_wait: false,
            tls: None,
            user: None,
            credentials: None,
            verifying: None,
            closing: false,
            last_verb: "CONNECT",
            counters: Counters::default(),
            out: Vec::with_capacity(512),
        }
    }

    /// The client's confirmed name (looked up before the greeting): used
    /// from now on in log lines and the Received: header, instead of
    /// `unknown`.
    pub fn set_client_name(&mut self, name: String) {
        self.client.name = name;
    }

    /// The 220 greeting.
    pub fn greet(&mut self) {
        info!("connect from {}", self.client.label());
        self.reply(Reply::new(220, None, self.cfg.banner.clone()));
    }

    /// Refuse the connection with `reply` (e.g. too many connections).
    pub fn refuse(&mut self, reply: Reply) -> Step {
        info!("connect from {}", self.client.label());
        warning!("{}: {}", self.client.label(), reply);
        self.reply(reply);
        self.closing = true;
        Step::Close
    }

    /// Is the session waiting for a commit or a pause to end (don't feed
    /// input)?
    pub fn busy(&self) -> bool {
        self.waiting_commit
            || self.authenticating
            || self.pause.is_some()
            || self.tls_wait
            || self.verifying.is_some()
    }

    /// The authenticated user, if AUTH succeeded.
    pub fn user(&self) -> Option<&str> {
        self.user.as_ref().map(|(u, _)| u.as_str())
    }

    /// TLS is active (after STARTTLS, or from the first byte).
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The TLS handshake finished (after `Step::StartTls`, or at once on
    /// an implicit-TLS port). RFC 3207 4.2: the session starts over; the
    /// client must say EHLO again.
    pub fn tls_secured(
        &mut self,
        info: &TlsInfo,
        policy: &mut dyn Policy,
        sink: &mut dyn Sink,
    ) -> Step {
        self.tls_wait = false;
        info!(
            "Anonymous TLS connection established from {}: {info}",
            self.client.label()
        );
        self.tls = Some(info.clone());
        self.reset(sink);
        self.user = None;
        self.helo = None;
        self.esmtp = false;
        self.lines = LineBuffer::new(smtp::MAX_COMMAND_LINE);
        self.process(policy, sink)
    }

    /// The last command, for "lost connection after X" and time-outs.
    pub fn last_verb(&self) -> &'static str {
        self.last_verb
    }

    fn reply(&mut self, r: Reply) {
        r.write_to(&mut self.out);
    }

    /// Log the end of the session.
    pub fn disconnected(&mut self, how: &str) {
        if !how.is_empty() {
            info!(
                "{how} after {} from {}",
                self.last_verb,
                self.client.label()
            );
        }
        info!(
            "disconnect from {} {}",
            self.client.label(),
            self.counters.summary()
        );
    }

    /// The client said nothing for too long.
    pub fn timed_out(&mut self, sink: &mut dyn Sink) -> Step {
        if self.tx.queue_id.is_some() && !self.waiting_commit && !self.authenticating {
            sink.abort();
        }
        info!(
            "timeout after {} from {}",
            self.last_verb,
            self.client.label()
        );
        self.reply(Reply::new(
            421,
            Some("4.4.2"),
            format!("{} Error: timeout exceeded", self.cfg.myhostname),
        ));
        self.closing = true;
        Step::Close
    }

    /// Feed bytes from the client.
    ///
    /// While `busy()` the bytes are only buffered (in command mode, which is
    /// the only mode a session waits in) and the pending step is returned.
    pub fn input(&mut self, data: &[u8], policy: &mut dyn Policy, sink: &mut dyn Sink) -> Step {
        if self.closing {
            return Step::Close;
        }
        if self.tls_wait {
            // RFC 3207 5: nothing sent in the clear after STARTTLS counts.
            return Step::StartTls;
        }
        if self.busy() {
            self.lines.push(data);
            return self.process(policy, sink);
        }
        match self.mode {
            Mode::Command | Mode::Auth(_) => self.lines.push(data),
            _ => {
                let step = self.feed_message(data, sink);
                if step != Step::Continue {
                    return step;
                }
            }
        }
        self.process(policy, sink)
    }

    /// The pause asked for by `Step::Pause` is over: carry on with the
    /// buffered input.
    pub fn resume(&mut self, policy: &mut dyn Policy, sink: &mut dyn Sink) -> Step {
        self.pause = None;
        self.process(policy, sink)
    }

    /// The caller made the message durable (Ok(queue id)) or failed.
    pub fn commit_done(
        &mut self,
        result: Result<String, io::Error>,
        policy: &mut dyn Policy,
        sink: &mut dyn Sink,
    ) -> Step {
        self.waiting_commit = false;
        match result {
            Ok(id) => {
                self.reply(Reply::new(
                    250,
                    Some("2.0.0"),
                    format!("Ok: queued as {id}"),
                ));
                self.counters.count(self.last_verb_lower(), true);
                // Postfix forgives earlier errors once a message got through.
                self.errors = 0;
                self.junk = 0;
            }
            Err(e) => {
                let id = self.tx.queue_id.clone().unwrap_or_else(|| "NOQUEUE".into());
                warning!("{id}: queue file write error: {e}");
                self.reply(Reply::new(
                    452,
                    Some("4.3.1"),
                    "Insufficient system storage",
                ));
                self.counters.count(self.last_verb_lower(), false);
                self.count_error();
            }
        }
        self.tx = Transaction::default();
        self.process(policy, sink)
    }

    /// What the checks of `Step::Authenticate` need.
    pub fn authentication_facts(&self) -> Option<AuthFacts> {
        Some(AuthFacts {
            queue_id: self.tx.queue_id.clone()?,
            client: self.client.addr?,
            helo: self.helo.clone().unwrap_or_default(),
            mail_from: self.tx.from.clone().unwrap_or_default(),
        })
    }

    /// The authentication checks of the message are done (None: no
    /// results, e.g. past their deadline): log them, then refuse the message
    /// (DMARC enforcement) or keep the header for its queue file and ask for
    /// the commit.
    pub fn authenticated(
        &mut self,
        a: Option<Authenticated>,
        policy: &mut dyn Policy,
        sink: &mut dyn Sink,
    ) -> Step {
        self.authenticating = false;
        let id = self.tx.queue_id.clone().unwrap_or_else(|| "NOQUEUE".into());
        match a {
            None => warning!("{id}: authentication checks: no results; queued without them"),
            Some(a) => {
                info!("{id}: {}", a.summary);
                if let Some(domain) = a.reject {
                    // RFC 7489 10.3: the rejection names DMARC.
                    sink.abort();
                    let r = Reply::new(
                        550,
                        Some("5.7.1"),
                        format!("rejected by DMARC policy for {}", header_safe(&domain)),
                    );
                    info!(
                        "{id}: reject: END-OF-MESSAGE from {}: {r}; from=<{}> proto=ESMTP helo=<{}>",
                        self.client.label(),
                        header_safe(self.tx.from.as_deref().unwrap_or("")),
                        header_safe(self.helo.as_deref().unwrap_or("")),
                    );
                    let verb = self.last_verb_lower();
                    self.tx = Transaction::default();
                    self.counters.count(verb, false);
                    self.error_reply(r);
                    return self.process(policy, sink);
                }
                if a.quarantine {
                    info!("{id}: DMARC policy quarantine: delivered, the failure recorded in Authentication-Results");
                }
                if let Err(e) = sink.prepend(&a.header) {
                    warning!("{id}: Authentication-Results not kept: {e}");
                }
            }
        }
        self.waiting_commit = true;
        self.process(policy, sink)
    }

    fn last_verb_lower(&self) -> &'static str {
        if self.last_verb == "BDAT" {
            "bdat"
        } else {
            "data"
        }
    }

    /// Run buffered command lines (and message bytes after DATA) until input
    /// runs out, a commit or a pause is needed, or the session closes.
    fn process(&mut self, policy: &mut dyn Policy, sink: &mut dyn Sink) -> Step {
        loop {
            if self.closing {
                return Step::Close;
            }
            if self.waiting_commit {
                return Step::Commit;
            }
            if self.authenticating {
                return Step::Authenticate;
            }
            if let Some(d) = self.pause {
                return Step::Pause(d);
            }
            if self.tls_wait {
                return Step::StartTls;
            }
            if self.verifying.is_some() {
                return Step::Verify;
            }
            if let Mode::Auth(_) = self.mode {
                match self.lines.next_line() {
                    None => return Step::Continue,
                    Some(Err(_)) => {
                        // RFC 4954 4: a response line over the limit.
                        self.mode = Mode::Command;
                        self.lines.set_max_len(smtp::MAX_COMMAND_LINE);
                        self.auth_failed_reply(Reply::new(
                            500,
                            Some("5.5.6"),
                            "Authentication Exchange line is too long",
                        ));
                    }
                    Some(Ok(line)) => self.auth_response(&line),
                }
                continue;
            }
            if !matches!(self.mode, Mode::Command) {
                let pending = self.lines.take_buffered();
                // RFC 3030 2: a chunk of size 0 (BDAT 0 LAST) is complete
                // without any bytes.
                let empty_chunk = matches!(&self.mode, Mode::Bdat { rx, .. } if rx.is_done());
                if pending.is_empty() && !empty_chunk {
                    return Step::Continue;
                }
                let step = self.feed_message(&pending, sink);
                if step != Step::Continue {
                    return step;
                }
                continue;
            }
            let line = match self.lines.next_line() {
                None => return Step::Continue,
                Some(Err(too_long)) => {
                    self.error_reply(too_long.reply());
                    continue;
                }
                Some(Ok(line)) => line,
            };
            self.command(&line, policy, sink);
        }
    }

    /// A 4xx/5xx reply that counts toward the error limits.
    fn error_reply(&mut self, r: Reply) {
        self.reply(r);
        self.count_error();
    }

    /// One more error: past smtpd_soft_error_limit the replies so far are
    /// held back for smtpd_error_sleep_time (Postfix's smtpd_chat_reply
    /// sleeps; we ask the caller for a pause instead); at
    /// smtpd_hard_error_limit the session ends.
    fn count_error(&mut self) {
        if self.closing {
            return;
        }
        self.errors = self.errors.saturating_add(1);
        if self.errors > self.cfg.soft_error_limit
            && self.errors < self.cfg.hard_error_limit
            && !self.cfg.error_sleep_time.is_zero()
        {
            self.pause = Some(self.cfg.error_sleep_time);
        }
        if self.errors >= self.cfg.hard_error_limit {
            info!(
                "too many errors after {} from {}",
                self.last_verb,
                self.client.label()
            );
            self.reply(Reply::new(
                421,
                Some("4.7.0"),
                format!("{} Error: too many errors", self.cfg.myhostname),
            ));
            self.closing = true;
        }
    }

    fn command(&mut self, line: &[u8], policy: &mut dyn Policy, sink: &mut dyn Sink) {
        // DSN is always advertised; AUTH's parameter is refused unless
        // AUTH is offered.
        let ext = Extensions {
            dsn: true,
            auth: self.auth_offered(),
        };
        let cmd = match smtp::parse_command_with(line, ext) {
            Ok(c) => c,
            Err(r) => {
                self.last_verb = "UNKNOWN";
                self.counters.count("unknown", false);
                self.error_reply(r);
                return;
            }
        };
        let verb = cmd.verb();
        self.last_verb = verb;
        let lower: &'static str = match verb {
            "EHLO" => "ehlo",
            "HELO" => "helo",
            "MAIL" => "mail",
            "RCPT" => "rcpt",
            "DATA" => "data",
            "BDAT" => "bdat",
            "RSET" => "rset",
            "NOOP" => "noop",
            "QUIT" => "quit",
            "VRFY" => "vrfy",
            "HELP" => "help",
            "STARTTLS" => "starttls",
            "AUTH" => "auth",
            _ => "unknown",
        };
        let result = self.dispatch(cmd, policy, sink);
        // DATA/BDAT are counted when the message ends (commit_done), unless refused now.
        match result {
            Ok(counted) => {
                if !counted {
                    self.counters.count(lower, true);
                }
            }
            Err(r) => {
                self.counters.count(lower, false);
                self.error_reply(r);
            }
        }
        // Postfix's SMTPD_CMD_FLAG_LIMIT commands: past the junk limit each
        // one is an error, so they cannot keep a session alive for ever.
        if matches!(verb, "NOOP" | "VRFY" | "RSET") {
            self.junk = self.junk.saturating_add(1);
            if self.junk > self.cfg.junk_command_limit {
                self.count_error();
            }
        }
    }

    /// Ok(true) when the command's success is counted later.
    fn dispatch(
        &mut self,
        cmd: Command,
        policy: &mut dyn Policy,
        sink: &mut dyn Sink,
    ) -> Result<bool, Reply> {
        let bad_seq = |t: &str| Reply::new(503, Some("5.5.1"), format!("Error: {t}"));
        match cmd {
            // RFC 5321 4.1.4: EHLO/HELO also reset any transaction in progress.
            Command::Ehlo(name) => {
                self.reset(sink);
                self.helo = Some(name);
                self.esmtp = true;
                let mut lines = vec![self.cfg.myhostname.clone()];
                lines.extend(smtp::ehlo_keywords(self.cfg.size_limit));
                if self.cfg.starttls == StartTlsOffer::Offered && self.tls.is_none() {
                    // RFC 3207 4; where Postfix lists it, after SIZE.
                    let at = lines
                        .iter()
                        .position(|l| l.starts_with("SIZE"))
                        .map_or(lines.len(), |i| i + 1);
                    lines.insert(at, "STARTTLS".to_string());
                }
                if self.auth_offered() {
                    // RFC 4954 3; Postfix's place: after STARTTLS.
                    let at = lines
                        .iter()
                        .position(|l| l.starts_with("STARTTLS") || l.starts_with("SIZE"))
                        .map_or(lines.len(), |i| i + 1);
                    let at = if lines.get(at).is_some_and(|l| l == "STARTTLS") {
                        at + 1
                    } else {
                        at
                    };
                    lines.insert(at, "AUTH PLAIN LOGIN".to_string());
                }
                self.reply(Reply::multi(250, None, lines));
                Ok(false)
            }
            Command::Helo(name) => {
                self.reset(sink);
                self.helo = Some(name);
                self.esmtp = false;
                self.reply(Reply::new(250, None, self.cfg.myhostname.clone()));
                Ok(false)
            }
            Command::Mail { from, params } => {
                self.need_tls()?;
                if self.helo.is_none() {
                    return Err(bad_seq("send HELO/EHLO first"));
                }
                if self.tx.from.is_some() {
                    return Err(bad_seq("nested MAIL command"));
                }
                if matches!(params.body, Some(Body::BinaryMime)) {
                    return Err(Reply::new(
                        555,
                        Some("5.5.4"),
                        "Unsupported option: BODY=BINARYMIME",
                    ));
                }
                // RFC 1870 6.1: a declared size over the limit is refused now.
                if let Some(size) = params.size {
                    if self.cfg.size_limit > 0 && size > self.cfg.size_limit {
                        return Err(Reply::new(
                            552,
                            Some("5.3.4"),
                            "Message size exceeds fixed limit",
                        ));
                    }
                    // The parser saturates sizes past u64; no file holds that.
                    if size == u64::MAX {
                        return Err(Reply::new(
                            552,
                            Some("5.3.4"),
                            "Message size exceeds file system imposed limit",
                        ));
                    }
                }
                self.check_restrictions(&from)?;
                self.bdat_failed = false;
                self.tx = Transaction {
                    from: Some(from),
                    smtputf8: params.smtputf8,
                    dsn: MessageDsn {
                        ret: params.ret.map(|r| match r {
                            smtp::Ret::Full => Ret::Full,
                            smtp::Ret::Hdrs => Ret::Hdrs,
                        }),
                        envid: params.envid,
                    },
                    ..Default::default()
                };
                self.reply(Reply::new(250, Some("2.1.0"), "Ok"));
                Ok(false)
            }
            Command::Rcpt { to, params } => {
                self.need_tls()?;
                if self.tx.from.is_none() {
                    return Err(bad_seq("need MAIL command"));
                }
                // RFC 5321 4.5.3.1.8: 452 for too many recipients. The first
                // smtpd_recipient_overshoot_limit of these are not errors, so
                // a client with a long list keeps its session and the
                // recipients accepted so far (Postfix's rcpt_overshoot).
                let limit = self.cfg.recipient_limit;
                if limit > 0 && self.tx.rcpt_count >= limit {
                    let too_many = Reply::new(452, Some("4.5.3"), "Error: too many recipients");
                    self.tx.overshoot += 1;
                    if self.tx.overshoot > self.cfg.recipient_overshoot_limit {
                        return Err(too_many);
                    }
                    self.reply(too_many);
                    return Ok(false);
                }
                if !self.tx.smtputf8 && !smtp::is_ascii_address(&to) {
                    return Err(Reply::new(
                        553,
                        Some("5.6.7"),
                        "Must declare SMTPUTF8 to send unicode address",
                    ));
                }
                let accepted = match policy.check_recipient(
                    self.client.addr,
                    &to,
                    self.user.is_some(),
                ) {
                    Ok(a) => a,
                    Err(r) => {
                        info!(
                            "NOQUEUE: reject: RCPT from {}: {}; from=<{}> to=<{to}> proto={} helo=<{}>",
                            self.client.label(),
                            r,
                            self.tx.from.as_deref().unwrap_or(""),
                            if self.esmtp { "ESMTP" } else { "SMTP" },
                            self.helo.as_deref().unwrap_or("")
                        );
                        return Err(r);
                    }
                };
                self.tx.rcpt_count += 1;
                // The parser checked NOTIFY's syntax.
                let notify = params.notify.as_deref().and_then(Notify::parse);
                if let Accepted::Aliased(finals) = accepted {
                    // Each final recipient records the address the client
                    // sent (RFC 3461 4.2), so notices name it; an explicit
                    // ORCPT wins. A final recipient already in the
                    // envelope with the same NOTIFY is not added again:
                    // two aliases of one mailbox deliver once (the local
                    // part compared without case too, as every look-up
                    // of a mailbox folds it).
                    let orcpt = params
                        .orcpt
                        .or_else(|| to.is_ascii().then(|| dsn::default_orcpt(&to)));
                    for r in finals {
                        let seen = self
                            .tx
                            .rcpts
                            .iter()
                            .zip(&self.tx.rcpt_dsn)
                            .any(|(x, d)| x.eq_ignore_ascii_case(&r) && d.notify == notify);
                        if !seen {
                            self.tx.rcpts.push(r);
                            self.tx.rcpt_dsn.push(RecipientDsn {
                                notify,
                                orcpt: orcpt.clone(),
                            });
                        }
                    }
                    self.reply(Reply::new(250, Some("2.1.5"), "Ok"));
                    return Ok(false);
                }
                // RFC 5321 4.5.1: a bare <postmaster> is ours; record it with
                // our domain, as Postfix appends $myorigin (= $myhostname).
                let to = if to.eq_ignore_ascii_case("postmaster") {
                    format!("postmaster@{}", self.cfg.myhostname)
                } else {
                    to
                };
                let dsn = RecipientDsn {
                    notify,
                    orcpt: params.orcpt,
                };
                // Each distinct recipient once, as Postfix's cleanup does
                // (the same address with other DSN parameters is another
                // recipient there too; without an ORCPT, one an alias gave
                // it is no other); every RCPT still gets its 250.
                let seen = self.tx.rcpts.iter().zip(&self.tx.rcpt_dsn).any(|(r, d)| {
                    same_address(r, &to)
                        && (*d == dsn || (dsn.orcpt.is_none() && d.notify == dsn.notify))
                });
                if !seen {
                    self.tx.rcpts.push(to);
                    self.tx.rcpt_dsn.push(dsn);
                }
                self.reply(Reply::new(250, Some("2.1.5"), "Ok"));
                Ok(false)
            }
            Command::Data => {
                if self.tx.bdat {
                    return Err(bad_seq("DATA after BDAT"));
                }
                self.check_can_send()?;
                self.begin_message(sink)?;
                self.reply(Reply::new(354, None, "End data with <CR><LF>.<CR><LF>"));
                self.mode = Mode::Data(DataReceiver::new());
                Ok(true)
            }
            Command::Bdat { size, last } => {
                let refused = if self.bdat_failed {
                    // Postfix: after a failed chunk, skip chunks until LAST.
                    self.bdat_failed = !last;
                    Some(Reply::new(
                        551,
                        Some("5.0.0"),
                        format!("Discarded {size} bytes after earlier error"),
                    ))
                } else {
                    match self.check_can_send() {
                        Err(r) => Some(r),
                        Ok(()) if !self.tx.bdat => match self.begin_message(sink) {
                            Err(r) => Some(r),
                            Ok(()) => {
                                self.tx.bdat = true;
                                None
                            }
                        },
                        Ok(()) => None,
                    }
                };
                self.mode = Mode::Bdat {
                    rx: BdatReceiver::new(size),
                    last,
                    discard: refused,
                };
                // The chunk's bytes follow at once; its reply comes after them.
                Ok(true)
            }
            Command::Rset => {
                self.reset(sink);
                self.reply(Reply::new(250, Some("2.0.0"), "Ok"));
                Ok(false)
            }
            Command::Noop => {
                self.reply(Reply::new(250, Some("2.0.0"), "Ok"));
                Ok(false)
            }
            Command::Quit => {
                self.reply(Reply::new(221, Some("2.0.0"), "Bye"));
                self.reset(sink);
                self.closing = true;
                Ok(false)
            }
            Command::Vrfy(_) => {
                if self.cfg.vrfy_disabled {
                    return Err(Reply::new(502, Some("5.5.1"), "VRFY command is disabled"));
                }
                self.reply(Reply::new(
                    252,
                    Some("2.0.0"),
                    "Cannot VRFY user, but will accept message and attempt delivery",
                ));
                Ok(false)
            }
            Command::Help(_) => {
                self.reply(Reply::new(
                    214,
                    Some("2.0.0"),
                    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
                ));
                Ok(false)
            }
            Command::StartTls => self.starttls(),
            Command::Auth { mechanism, initial } => {
                self.need_tls()?;
                self.auth(&mechanism, initial.as_deref())
            }
        }
    }

    /// STARTTLS (RFC 3207 4), with Postfix's replies.
    fn starttls(&mut self) -> Result<bool, Reply> {
        if self.tls.is_some() {
            return Err(Reply::new(554, Some("5.5.1"), "Error: TLS already active"));
        }
        match self.cfg.starttls {
            StartTlsOffer::Off => Err(Reply::new(
                502,
                Some("5.5.1"),
                "Error: command not implemented",
            )),
            StartTlsOffer::NoCertificate => Err(Reply::new(
                454,
                Some("4.7.0"),
                "TLS not available due to local problem",
            )),
            StartTlsOffer::Offered => {
                self.reply(Reply::new(220, Some("2.0.0"), "Ready to start TLS"));
                // RFC 3207 5 (CVE-2011-0411): whatever came after the
                // command in the clear could have been injected by a man
                // in the middle; it must not run under TLS.
                let rest = self.lines.take_buffered();
                if !rest.is_empty() {
                    info!(
                        "improper command pipelining after STARTTLS from {}: {}",
                        self.client.label(),
                        printable(&rest, 100)
                    );
                }
                self.lines = LineBuffer::new(smtp::MAX_COMMAND_LINE);
                self.tls_wait = true;
                Ok(false)
            }
        }
    }

    /// AUTH may be used now: enabled, and under TLS unless
    /// smtpd_tls_auth_only = no allows it in the clear (from loopback, or
    /// from anywhere with auth_allow_cleartext = yes, as posthorn-auth
    /// would refuse the password otherwise).
    fn auth_offered(&self) -> bool {
        if !self.cfg.sasl {
            return false;
        }
        if self.tls.is_some() {
            return true;
        }
        !self.cfg.tls_auth_only
            && (self.cfg.cleartext_allowed || self.client.addr.is_some_and(|a| a.is_loopback()))
    }

    /// RFC 4954 4: AUTH mechanism [initial-response].
    fn auth(&mut self, mechanism: &str, initial: Option<&str>) -> Result<bool, Reply> {
        let bad_seq = |t: &str| Reply::new(503, Some("5.5.1"), format!("Error: {t}"));
        if !self.auth_offered() {
            if self.cfg.sasl && self.tls.is_none() {
                // RFC 4954 6: offered under TLS only.
                return Err(Reply::new(
                    538,
                    Some("5.7.11"),
                    "Encryption required for requested authentication mechanism",
                ));
            }
            return Err(bad_seq("authentication not enabled"));
        }
        if self.helo.is_none() || !self.esmtp {
            return Err(bad_seq("send EHLO first"));
        }
        if self.user.is_some() {
            return Err(bad_seq("already authenticated"));
        }
        if self.tx.from.is_some() {
            return Err(bad_seq("MAIL transaction in progress"));
        }
        let Some(mech) = sasl::Mechanism::from_name(mechanism) else {
            return Err(Reply::new(
                504,
                Some("5.5.4"),
                "Unrecognized authentication type",
            ));
        };
        match Exchange::start(mech, initial.map(str::as_bytes)) {
            Ok((ex, Progress::Challenge(c))) => {
                self.challenge(&c);
                self.mode = Mode::Auth(ex);
                // RFC 4954 4: responses of up to 12288 octets.
                self.lines.set_max_len(smtp::MAX_AUTH_LINE);
            }
            Ok((_, Progress::Done(creds))) => self.verify(mech, creds),
            Err(e) => {
                let r = self.sasl_error(mech, e);
                self.auth_failed_reply(r);
            }
        }
        Ok(false)
    }

    /// A response line of the exchange in progress.
    fn auth_response(&mut self, line: &[u8]) {
        let Mode::Auth(ex) = &mut self.mode else {
            return;
        };
        let mech = ex.mechanism();
        match ex.step(line) {
            Ok(Progress::Challenge(c)) => self.challenge(&c),
            Ok(Progress::Done(creds)) => {
                self.mode = Mode::Command;
                self.lines.set_max_len(smtp::MAX_COMMAND_LINE);
                self.verify(mech, creds);
            }
            Err(e) => {
                self.mode = Mode::Command;
                self.lines.set_max_len(smtp::MAX_COMMAND_LINE);
                let r = self.sasl_error(mech, e);
                self.auth_failed_reply(r);
            }
        }
    }

    /// RFC 4954 4: `"334" SP [base64] CRLF`: the space even before an
    /// empty challenge (a reply without text has none).
    fn challenge(&mut self, c: &str) {
        self.out.extend_from_slice(b"334 ");
        self.out.extend_from_slice(c.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// The reply to an exchange that went wrong (RFC 4954 4).
    fn sasl_error(&mut self, mech: sasl::Mechanism, e: SaslError) -> Reply {
        match e {
            SaslError::Cancelled => Reply::new(501, Some("5.7.0"), "Authentication aborted"),
            SaslError::BadBase64 => Reply::new(501, Some("5.5.2"), "Cannot decode response"),
            SaslError::TooLong => Reply::new(
                500,
                Some("5.5.6"),
                "Authentication Exchange line is too long",
            ),
            // Malformed credentials: a failed login like any other.
            _ => {
                self.log_auth_failure(mech.name(), "authentication failure");
                auth_failed()
            }
        }
    }

    /// Postfix's line, which fail2ban's postfix-sasl filter matches.
    fn log_auth_failure(&self, mech: &str, why: &str) {
        warning!(
            "{}: SASL {mech} authentication failed: {why}",
            self.client.label()
        );
    }

    /// An AUTH failure: counted as an error (the error limits apply).
    fn auth_failed_reply(&mut self, r: Reply) {
        self.counters.count("auth", false);
        self.error_reply(r);
    }

    /// Credentials are complete: have them verified (`Step::Verify`).
    fn verify(&mut self, mech: sasl::Mechanism, c: SaslCredentials) {
        let loopback = self.client.addr.is_some_and(|a| a.is_loopback());
        self.credentials = Some(Credentials {
            service: "smtp".into(),
            mechanism: match mech {
                sasl::Mechanism::Plain => common::auth::Mechanism::Plain,
                sasl::Mechanism::Login => common::auth::Mechanism::Login,
            },
            authzid: c.authzid,
            user: c.user,
            password: c.password,
            client: self.client.addr,
            local_port: self.client.port,
            secured: self.tls.is_some() || loopback,
        });
        self.verifying = Some(mech.name());
    }

    /// The credentials `Step::Verify` asks to have verified.
    pub fn take_credentials(&mut self) -> Option<Credentials> {
        self.credentials.take()
    }

    /// posthorn-auth's answer (or why there is none) to the credentials
    /// of `Step::Verify`.
    pub fn auth_done(
        &mut self,
        answer: Result<AuthReply, AuthError>,
        policy: &mut dyn Policy,
        sink: &mut dyn Sink,
    ) -> Step {
        let mech = self.verifying.take().unwrap_or("PLAIN");
        self.credentials = None;
        match answer {
            Ok(AuthReply::Ok(info)) => {
                self.reply(Reply::new(235, Some("2.7.0"), "Authentication successful"));
                self.counters.count("auth", true);
                self.user = Some((info.user, mech));
            }
            Ok(AuthReply::Failed { delay_ms, reason }) => {
                let why = match reason {
                    FailReason::CleartextRefused => "cleartext authentication refused",
                    _ => "authentication failure",
                };
                self.log_auth_failure(mech, why);
                self.auth_failed_reply(auth_failed());
                // auth's failure penalty: the reply waits.
                if delay_ms > 0 && !self.closing {
                    let d = Duration::from_millis(u64::from(delay_ms));
                    self.pause = Some(self.pause.map_or(d, |p| p.max(d)));
                }
            }
            Ok(other) => {
                warning!(
                    "{}: SASL {mech}: unexpected answer from the auth service: {other:?}",
                    self.client.label()
                );
                self.auth_failed_reply(auth_temp_failed());
            }
            Err(e) => {
                warning!("{}: SASL {mech}: {e}", self.client.label());
                self.auth_failed_reply(auth_temp_failed());
            }
        }
        self.process(policy, sink)
    }

    /// smtpd_client_restrictions, then smtpd_sender_restrictions.
    fn check_restrictions(&self, from: &str) -> Result<(), Reply> {
        let label = self.client.label();
        let owners = self.cfg.sender_login_maps.as_ref().map(|maps| {
            let mut maps = maps.lock().unwrap_or_else(|e| e.into_inner());
            maps.refresh();
            restrictions::owners_of(&maps, from, &self.cfg.delimiter)
        });
        let facts = restrictions::Facts {
            trusted: self.client.trusted,
            user: self.user(),
            auth_offered: self.auth_offered(),
            sender: from,
            delimiter: &self.cfg.delimiter,
            client_label: &label,
            owners: owners.as_deref(),
        };
        let r = restrictions::check(&self.cfg.client_restrictions, Stage::Client, &facts).and_then(
            |()| restrictions::check(&self.cfg.sender_restrictions, Stage::Sender, &facts),
        );
        if let Err(reply) = &r {
            info!(
                "NOQUEUE: reject: MAIL from {label}: {reply}; from=<{from}> proto=ESMTP helo=<{}>",
                self.helo.as_deref().unwrap_or("")
            );
        }
        r
    }

    /// smtpd_tls_security_level = encrypt: mail only under TLS.
    fn need_tls(&self) -> Result<(), Reply> {
        if self.cfg.tls_required && self.tls.is_none() {
            return Err(Reply::new(
                530,
                Some("5.7.0"),
                "Must issue a STARTTLS command first",
            ));
        }
        Ok(())
    }

    fn check_can_send(&self) -> Result<(), Reply> {
        self.need_tls()?;
        if self.tx.from.is_none() {
            return Err(Reply::new(503, Some("5.5.1"), "Error: need MAIL command"));
        }
        if self.tx.rcpts.is_empty() {
            return Err(Reply::new(554, Some("5.5.1"), "Error: no valid recipients"));
        }
        Ok(())
    }

    /// Open the queue file and write the Received: header.
    fn begin_message(&mut self, sink: &mut dyn Sink) -> Result<(), Reply> {
        // RFC 3848 (ESMTPS), RFC 6531 3.7.3 (UTF8SMTPS).
        // RFC 3848 and RFC 6531 3.7.3 again: an A for AUTH (only after
        // EHLO, so never with plain SMTP).
        let authed = self.user.is_some();
        let proto = match (self.esmtp, self.tx.smtputf8, self.tls.is_some(), authed) {
            (false, _, false, _) => "SMTP",
            (false, _, true, _) => "SMTPS",
            (true, false, false, false) => "ESMTP",
            (true, false, false, true) => "ESMTPA",
            (true, false, true, false) => "ESMTPS",
            (true, false, true, true) => "ESMTPSA",
            (true, true, false, false) => "UTF8ESMTP",
            (true, true, false, true) => "UTF8SMTPA",
            (true, true, true, false) => "UTF8SMTPS",
            (true, true, true, true) => "UTF8SMTPSA",
        };
        let helo = self.helo.clone().unwrap_or_default();
        let mut env = Envelope {
            sender: self.tx.from.clone().unwrap_or_default(),
            recipients: self.tx.rcpts.clone(),
            dsn: self.tx.dsn.clone(),
            recipient_dsn: self.tx.rcpt_dsn.clone(),
            attrs: vec![
                ("client_name".into(), self.client.name.clone()),
                (
                    "client_addr".into(),
                    self.client.addr.map(|a| a.to_string()).unwrap_or_default(),
                ),
                ("helo".into(), helo.clone()),
                ("protocol".into(), proto.into()),
            ],
        };
        if let Some((user, method)) = &self.user {
            env.attrs.push(("sasl_method".into(), (*method).into()));
            env.attrs.push(("sasl_username".into(), user.clone()));
        }
        let id = match sink.begin(&env) {
            Ok(id) => id,
            Err(e) => {
                warning!(
                    "NOQUEUE: cannot create queue file for {}: {e}",
                    self.client.label()
                );
                return Err(Reply::new(
                    452,
                    Some("4.3.1"),
                    "Insufficient system storage",
                ));
            }
        };
        match &self.user {
            Some((user, method)) => info!(
                "{id}: client={}, sasl_method={method}, sasl_username={user}",
                self.client.label()
            ),
            None => info!("{id}: client={}", self.client.label()),
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut h = format!(
            "Received: from {} ({} {})\r\n",
            header_safe(&helo),
            self.client.name,
            address_literal(self.client.addr),
        );
        if let Some(tls) = &self.tls {
            // Postfix's comment: what TLS protected the message with.
            h.push_str(&format!("\t(using {tls})\r\n"));
        }
        h.push_str(&format!(
            "\tby {} ({}) with {proto} id {id}",
            self.cfg.myhostname, self.cfg.mail_name,
        ));
        if let [one] = self.tx.rcpts.as_slice() {
            h.push_str(&format!("\r\n\tfor <{}>", header_safe(one)));
        }
        h.push_str(&format!("; {}\r\n", common::log::rfc5322_date(now)));
        if self.user.is_some() {
            // RFC 6409 8.2, 8.3: Postfix's forms.
            self.tx.headers = Some(MissingHeaders::new(
                format!("Date: {}", common::log::rfc5322_date(now)),
                format!(
                    "Message-ID: <{}.{id}@{}>",
                    common::log::compact_utc(now),
                    self.cfg.myhostname
                ),
            ));
        }
        if !self.cfg.authserv_id.is_empty() {
            self.tx.forged = Some(ForgedFilter::new(&self.cfg.authserv_id));
        }
        self.tx.queue_id = Some(id);
        if let Err(e) = sink.write(h.as_bytes()) {
            self.tx.write_failed = true;
            warning!(
                "{}: queue file write error: {e}",
                self.tx.queue_id.as_deref().unwrap_or("")
            );
        }
        Ok(())
    }

    /// Feed bytes to the DATA or BDAT receiver.
    fn feed_message(&mut self, data: &[u8], sink: &mut dyn Sink) -> Step {
        let mut chunk = Vec::with_capacity(data.len());
        let (consumed, done) = match &mut self.mode {
            Mode::Data(rx) => {
                let p = rx.feed(data, &mut chunk);
                // Only bare LF matters; a bare CR is accepted, as Postfix does.
                if rx.bare_lf_seen() {
                    self.tx.bare_newline = true;
                }
                (p.consumed, p.done)
            }
            Mode::Bdat { rx, .. } => {
                let p = rx.feed(data, &mut chunk);
                (p.consumed, p.done)
            }
            Mode::Command | Mode::Auth(_) => (0, true),
        };
        let discarding = matches!(
            &self.mode,
            Mode::Bdat {
                discard: Some(_),
                ..
            }
        );
        if !discarding {
            if matches!(self.mode, Mode::Bdat { .. }) {
                self.tx.bdat_lf.scan(&chunk);
                if self.tx.bdat_lf.seen() {
                    self.tx.bare_newline = true;
                }
            }
            self.tx.size += chunk.len() as u64;
            if self.cfg.size_limit > 0 && self.tx.size > self.cfg.size_limit {
                self.tx.too_big = true;
            }
            if !chunk.is_empty() {
                self.write_message(sink, &chunk);
            }
        }
        // Bytes after the end of the message are the next commands (pipelining).
        if consumed < data.len() {
            let mut rest = self.lines.take_buffered();
            let mut combined = data[consumed..].to_vec();
            combined.append(&mut rest);
            self.lines.push(&combined);
        }
        if !done {
            return Step::Continue;
        }
        let (last, chunk_bytes) = match std::mem::replace(&mut self.mode, Mode::Command) {
            Mode::Data(_) => (true, 0),
            Mode::Bdat {
                discard: Some(r), ..
            } => {
                self.counters.count("bdat", false);
                self.error_reply(r);
                return self.after_reply();
            }
            Mode::Bdat { last, rx, .. } => (last, rx.bytes_out()),
            Mode::Command | Mode::Auth(_) => return Step::Continue,
        };
        // The end of a submitted message: the fields it lacks, if its
        // header never ended, are written before the checks below (a write
        // that fails is refused with 452 like any other).
        if last {
            let mut tail = Vec::new();
            if let Some(mut f) = self.tx.forged.take() {
                f.finish(&mut tail);
                if f.removed() > 0 {
                    info!(
                        "{}: removed {} Authentication-Results header(s) claiming authserv-id {}",
                        self.tx.queue_id.as_deref().unwrap_or(""),
                        f.removed(),
                        self.cfg.authserv_id
                    );
                }
            }
            if let Some(mut h) = self.tx.headers.take() {
                let mut out = Vec::new();
                h.feed(&tail, &mut out);
                h.finish(&mut out);
                tail = out;
            }
            self.write_message(sink, &tail);
        }
        let verb = self.last_verb_lower();
        let refuse = if self.tx.too_big {
            Some(Reply::new(
                552,
                Some("5.3.4"),
                "Message size exceeds fixed limit",
            ))
        } else if self.tx.write_failed {
            Some(Reply::new(
                452,
                Some("4.3.1"),
                "Insufficient system storage",
            ))
        } else if self.tx.bare_newline && self.cfg.forbid_bare_newline && !self.client.trusted {
            Some(Reply::new(550, Some("5.5.2"), "Error: bare <LF> received"))
        } else {
            None
        };
        // A failed chunk ends the transaction at once, LAST or not (RFC 3030
        // 2: the server may reply with an error to any chunk; its bytes have
        // been read, so the stream stays in step).
        if let Some(r) = refuse {
            sink.abort();
            let id = self.tx.queue_id.clone().unwrap_or_else(|| "NOQUEUE".into());
            info!(
                "{id}: reject: {} from {}: {r}",
                self.last_verb,
                self.client.label()
            );
            self.tx = Transaction::default();
            // Pipelined chunks of the failed message are skipped, each with
            // a reply, until BDAT LAST.
            self.bdat_failed = !last;
            self.counters.count(verb, false);
            self.error_reply(r);
            return self.after_reply();
        }
        if !last {
            self.reply(Reply::new(
                250,
                Some("2.0.0"),
                format!("Ok: {chunk_bytes} bytes"),
            ));
            return Step::Continue;
        }
        // SASL-authenticated submissions are not checked (they are ours).
        if self.cfg.authenticate && self.user.is_none() && self.client.addr.is_some() {
            self.authenticating = true;
            return Step::Authenticate;
        }
        self.waiting_commit = true;
        Step::Commit
    }

    /// Message bytes to the queue file (through the header scanner of a
    /// submitted message), unless the message is refused already.
    fn write_message(&mut self, sink: &mut dyn Sink, data: &[u8]) {
        if self.tx.too_big || self.tx.write_failed {
            return;
        }
        let (filtered, scanned);
        let bytes = match self.tx.forged.as_mut() {
            Some(f) => {
                let mut out = Vec::with_capacity(data.len());
                f.feed(data, &mut out);
                filtered = out;
                &filtered[..]
            }
            None => data,
        };
        let bytes = match self.tx.headers.as_mut() {
            Some(h) => {
                let mut out = Vec::with_capacity(bytes.len() + 128);
                h.feed(bytes, &mut out);
                scanned = out;
                &scanned[..]
            }
            None => bytes,
        };
        if bytes.is_empty() {
            return;
        }
        if let Err(e) = sink.write(bytes) {
            self.tx.write_failed = true;
            warning!(
                "{}: queue file write error: {e}",
                self.tx.queue_id.as_deref().unwrap_or("")
            );
        }
    }

    /// The step after an error reply at the end of a message or chunk.
    fn after_reply(&self) -> Step {
        if self.closing {
            Step::Close
        } else {
            Step::Continue
        }
    }

    /// RSET semantics: drop the transaction (and any message begun).
    fn reset(&mut self, sink: &mut dyn Sink) {
        if self.tx.queue_id.is_some() {
            sink.abort();
        }
        self.tx = Transaction::default();
        self.bdat_failed = false;
    }
}

/// RFC 4954 6: wrong user or password (which one is not said).
fn auth_failed() -> Reply {
    Reply::new(
        535,
        Some("5.7.8"),
        "Error: authentication failed: authentication failure",
    )
}

/// RFC 4954 6: cannot tell now.
fn auth_temp_failed() -> Reply {
    Reply::new(454, Some("4.7.0"), "Temporary authentication failure")
}

/// The same recipient, as Postfix's cleanup compares them for duplicate
/// removal: the domain without regard to case, the local part exactly
/// (RFC 5321 2.4: local parts may be case-sensitive).
fn same_address(a: &str, b: &str) -> bool {
    match (smtp::split_address(a), smtp::split_address(b)) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => a == b,
    }
}

/// The client address for the Received: header: `[IPv6:...]` for IPv6
/// (RFC 5321 4.1.3), an IPv4-mapped IPv6 address as the IPv4 it is.
fn address_literal(addr: Option<IpAddr>) -> String {
    match addr {
        Some(IpAddr::V4(a)) => format!("[{a}]"),
        Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{a}]"),
        },
        None => "[local]".into(),
    }
}

/// Client bytes for a log line: at most `max`, controls and non-ASCII as `?`
/// (Postfix's printable()).
fn printable(b: &[u8], max: usize) -> String {
    b.iter()
        .take(max)
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Text from the client placed in a header: no line breaks, bounded.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(255)
        .collect()
}
