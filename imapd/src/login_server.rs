//! posthorn-imap-login: IMAP before authentication, as login_user.
//!
//! Runs login.rs's session on the server skeleton with TLS (STARTTLS, or
//! IMAPS with imapd_tls_wrappermode): when the client's credentials are
//! complete, a pool job sends them to the post-login dispatcher (`login/imap`,
//! common::login) and waits for its answer; a failure is answered after the
//! delay auth asked for; a success hands the connection (and the input that
//! followed the login command) to the dispatcher, which gives it to the
//! mailbox process of the user's uid. A plaintext connection's socket goes
//! there itself; a TLS connection is relayed by this process.
//!
//! Owns the mapping of login.rs's steps onto the skeleton and the frames to
//! the dispatcher. Does not own the protocol (login.rs), passwords (auth)
//! or mailboxes (the mailbox process).
//!
//! Security: runs as login_user (daemon::start drops to it), which can
//! read no mailbox, no queue file and no password hash; the TLS key is
//! loaded before that drop. A command pipelined after STARTTLS is discarded
//! (login.rs). Passwords are never logged.
//!
//! Parameters: mailbox_tls_cert_file, mailbox_tls_key_file,
//! imapd_tls_wrappermode, imapd_login_timeout, imapd_max_connections,
//! imapd_client_connection_count_limit, auth_allow_cleartext, mail_name,
//! queue_directory.
//!
//! Diagnostics: Dovecot's lines (login.rs): `Login: user=<U>, method=PLAIN,
//! rip=IP, lip=IP, TLS`, `Disconnected (auth failed, N attempts in S secs):
//! user=<U>, method=PLAIN, rip=IP, lip=IP`, which fail2ban's dovecot filter
//! matches; `warning: dispatcher ...` when the mailbox side cannot answer.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::auth;
use common::login::{self, Handoff, LoginAnswer, LoginRequest, Protocol};
use common::server::{Limits, LocalCounter, Next, Peer, Refusal, Server, Service};
use common::tls::{TlsInfo, TlsSetup};
use common::warning;

use crate::login::{AuthOutcome, Connection, LoginConfig, LoginSession, Step};
use proto::sasl;

/// Pool threads: each waits for one answer from the dispatcher (which
/// includes a password hash, queued in auth behind at most
/// auth_worker_max_count others).
const POOL_THREADS: usize = 16;

/// A pool job's result: the dispatcher's answer, and on Ok the connection
/// that carries the hand-off.
pub type Done = io::Result<(LoginAnswer, Option<UnixStream>)>;

pub struct Conn {
    session: LoginSession,
    peer: Peer,
    tls: Option<TlsInfo>,
    /// After Ok: the connection to the dispatcher for the hand-off.
    dispatcher: Option<UnixStream>,
    mechanism: &'static str,
}

pub struct LoginServer {
    cfg: Arc<LoginConfig>,
    /// $queue_directory/login/imap.
    dispatcher: PathBuf,
}

impl LoginServer {
    fn map(&mut self, c: &mut Conn, step: Step, out: &mut Vec<u8>) -> Next<Done> {
        out.append(&mut c.session.out);
        match step {
            Step::Continue => Next::Continue,
            Step::Close => Next::Close,
            Step::Pause(d) => Next::Pause(d),
            Step::StartTls => Next::StartTls,
            Step::Authenticate(creds) => {
                let loopback = c.peer.addr.is_some_and(|a| a.is_loopback());
                c.mechanism = creds.mechanism.name();
                let mechanism = match creds.mechanism {
                    sasl::Mechanism::Plain => auth::Mechanism::Plain,
                    sasl::Mechanism::Login => auth::Mechanism::Login,
                };
                let req = LoginRequest {
                    protocol: Protocol::Imap,
                    mechanism,
                    authzid: creds.authzid.clone(),
                    user: creds.user.clone(),
                    password: creds.password.clone(),
                    client: c.peer.addr,
                    local_port: c.peer.port,
                    secured: c.tls.is_some() || loopback,
                };
                let socket = self.dispatcher.clone();
                Next::Run(Box::new(move || login::authenticate(&socket, &req)))
            }
            Step::LoggedIn {
                user,
                tag,
                leftover,
            } => {
                let Some(to) = c.dispatcher.take() else {
                    warning!("logged in without a dispatcher connection");
                    return Next::Close;
                };
                c.session.log_login(None);
                let handoff = Handoff {
                    user,
                    client: c.peer.addr,
                    client_port: c.peer.client_port,
                    local: c.peer.local,
                    local_port: c.peer.port,
                    tls: c.tls.as_ref().map(|t| t.to_string()),
                    mechanism: c.mechanism.to_string(),
                    leftover,
                    login_pid: std::process::id(),
                    tag: Some(tag),
                };
                match login::frame(&handoff) {
                    Ok(frame) => Next::HandOff { to, frame },
                    Err(e) => {
                        warning!("hand-off frame: {e}");
                        Next::Close
                    }
                }
            }
        }
    }
}

impl Service for LoginServer {
    type Conn = Conn;
    type Done = Done;

    fn open(&mut self, peer: Peer, out: &mut Vec<u8>) -> (Conn, Next<Done>) {
        let session = LoginSession::new(
            Arc::clone(&self.cfg),
            Connection {
                rip: peer.addr,
                lip: peer.local,
                tls: peer.tls,
            },
        );
        let mut c = Conn {
            session,
            peer,
            tls: None,
            dispatcher: None,
            mechanism: "PLAIN",
        };
        c.session.greet();
        out.append(&mut c.session.out);
        (c, Next::Continue)
    }

    fn refuse(&mut self, peer: Peer, _why: Refusal, out: &mut Vec<u8>) -> Conn {
        out.extend_from_slice(b"* BYE [UNAVAILABLE] Too many connections.\r\n");
        Conn {
            session: LoginSession::new(
                Arc::clone(&self.cfg),
                Connection {
                    rip: peer.addr,
                    ..Connection::default()
                },
            ),
            peer,
            tls: None,
            dispatcher: None,
            mechanism: "PLAIN",
        }
    }

    fn input(&mut self, c: &mut Conn, data: &[u8], out: &mut Vec<u8>) -> Next<Done> {
        let step = c.session.input(data);
        self.map(c, step, out)
    }

    fn done(&mut self, c: &mut Conn, r: Done, out: &mut Vec<u8>) -> Next<Done> {
        let outcome = match r {
            Ok((LoginAnswer::Ok { user }, Some(stream))) => {
                c.dispatcher = Some(stream);
                AuthOutcome::Ok { user }
            }
            Ok((LoginAnswer::Ok { .. }, None)) => AuthOutcome::TempFail,
            Ok((LoginAnswer::Failed { delay_ms }, _)) => AuthOutcome::Failed {
                delay: Duration::from_millis(u64::from(delay_ms)),
            },
            Ok((LoginAnswer::TempFail { reason }, _)) => {
                warning!("dispatcher: {reason}");
                AuthOutcome::TempFail
            }
            Err(e) => {
                warning!("dispatcher {}: {e}", self.dispatcher.display());
                AuthOutcome::TempFail
            }
        };
        let step = c.session.auth_result(outcome);
        self.map(c, step, out)
    }

    fn resume(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> Next<Done> {
        let step = c.session.resume();
        self.map(c, step, out)
    }

    fn tls_ready(&mut self, c: &mut Conn, info: &TlsInfo, out: &mut Vec<u8>) -> Next<Done> {
        // Postfix's line, with the protocol and cipher.
        common::info!(
            "TLS connection established from [{}]: {info}",
            c.peer
                .addr
                .map_or_else(|| "unknown".to_string(), |a| a.to_string())
        );
        c.tls = Some(info.clone());
        let step = c.session.tls_started();
        self.map(c, step, out)
    }

    fn timed_out(&mut self, c: &mut Conn, out: &mut Vec<u8>) {
        let _ = c.session.timed_out();
        out.append(&mut c.session.out);
    }

    fn stopping(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> bool {
        if c.session.busy() {
            return false;
        }
        out.extend_from_slice(b"* BYE Server shutting down.\r\n");
        true
    }

    fn closed(&mut self, mut c: Conn, _lost: bool) {
        c.session.disconnected();
    }

    fn orphan(&mut self, _r: Done) {}
}

/// The program's entry point (posthorn-imap-login).
pub fn main() {
    // The key is read while the process may still be root.
    let (worker, tls) = common::daemon::start_with("imap-login", |cfg| {
        match common::tls::from_params(cfg, "mailbox_tls_cert_file", "mailbox_tls_key_file") {
            Ok(t) => t,
            Err(e) => common::config_fatal!("{e}"),
        }
    });
    let cfg = &worker.config;
    let bool_param = |name: &str| match cfg.bool(name) {
        Ok(v) => v,
        Err(e) => common::config_fatal!("{e}"),
    };
    let int = |name: &str| match cfg.int(name) {
        Ok(v) => v,
        Err(e) => common::config_fatal!("{e}"),
    };
    let wrapper = bool_param("imapd_tls_wrappermode");
    if wrapper && tls.is_none() {
        common::config_fatal!(
            "imapd_tls_wrappermode = yes needs a certificate (mailbox_tls_cert_file)"
        );
    }
    let login_cfg = LoginConfig {
        greeting: format!("{} ready.", cfg.get("mail_name")),
        allow_cleartext: bool_param("auth_allow_cleartext"),
        tls_available: tls.is_some(),
        max_auth_failures: 3,
        max_bad_commands: 10,
        limits: crate::login_limits(),
    };
    let limits = Limits {
        idle: match cfg.time("imapd_login_timeout") {
            Ok(t) => t,
            Err(e) => common::config_fatal!("{e}"),
        },
        total: None,
        per_client: u32::try_from(int("imapd_client_connection_count_limit")).unwrap_or(u32::MAX),
        max_connections: usize::try_from(int("imapd_max_connections"))
            .unwrap_or(usize::MAX)
            .max(1),
        ..Limits::default()
    };
    let mut service = LoginServer {
        cfg: Arc::new(login_cfg),
        dispatcher: cfg.queue_dir().join("login").join(Protocol::Imap.name()),
    };
    let common::daemon::Worker {
        listener,
        stop,
        drain,
        ..
    } = worker;
    let mut server = match Server::new(POOL_THREADS) {
        Ok(s) => s,
        Err(e) => common::fatal!("{e}"),
    };
    if let Some(config) = tls {
        server = server.with_tls(TlsSetup {
            config,
            implicit: wrapper,
        });
    }
    // login_user cannot reach private/anvil: connections are counted per
    // process.
    let mut counter = LocalCounter::default();
    if let Err(e) = server.run(listener, &mut service, &limits, &mut counter, &stop, &drain) {
        common::fatal!("{e}");
    }
}
