//! The mailbox process: IMAP sessions after login, as the mailbox owner.
//!
//! Started by the dispatcher (common::login::dispatch) with one owner's uid
//! and gid, never 0; serves every session of that owner the dispatcher
//! hands it, on the server skeleton (`Listener::Handoff`). Each session
//! arrives as a `SessionStart` frame with the client's socket and the tag
//! of its login command, which session.rs answers. IDLE's watcher (an
//! eventfd the process's inotify hub writes: mailstore's tracker.rs) is
//! registered with the loop (`Next::Watch`). When a session ends the
//! process writes one byte back to the dispatcher (its load count); it
//! exits when the dispatcher closes the hand-off socket and the last
//! session has ended.
//!
//! Owns the mapping of session.rs's steps onto the skeleton. Does not own
//! the protocol (session/, cmd/) or the mailbox format (mailstore).
//!
//! Security: runs as the mailbox owner (the dispatcher set uid and gid
//! before exec and refuses uid 0); it refuses to run as root itself. The
//! frame names the user and the Maildir auth resolved; nothing here trusts
//! the client for either.
//!
//! Parameters: imapd_timeout, imapd_hibernate_timeout (a quiet session
//! lets go of its selected folder's message list: `Session::quiet`),
//! mailbox_client_limit, imapd_append_limit,
//! imapd_max_line_length, imapd_max_userip_connections.
//!
//! Diagnostics: `imap(USER): Disconnected: Logged out in=N out=M`
//! (Dovecot's line), store errors with the user.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use common::login::SessionStart;
use common::server::{Limits, LocalCounter, Next, Peer, Refusal, Server, Service};
use common::{info, warning};
use mailstore::{Options, Store};

use crate::session::{Session, SessionConfig, Step};

pub enum Conn {
    /// A session, and the (user, address) it counts against.
    Active(Box<Session>, (String, Option<IpAddr>)),
    Closing,
}

pub struct Mailbox {
    cfg: Arc<SessionConfig>,
    /// Where a session's end is reported (our end of the hand-off socket).
    ends: Option<UnixStream>,
    /// Sessions per (user, client address): Dovecot's
    /// mail_max_userip_connections.
    per_user_ip: HashMap<(String, Option<IpAddr>), u32>,
    max_user_ip: u32,
    /// Sessions went quiet this round: give their memory back (`tick`).
    trim: bool,
}

fn next(s: &mut Session, step: Step, out: &mut Vec<u8>) -> Next<()> {
    out.append(&mut s.take_output());
    for l in s.take_log() {
        warning!("{l}");
    }
    match step {
        Step::Continue => Next::Continue,
        Step::Close => Next::Close,
        Step::Watch(fd) => Next::Watch(fd),
        Step::More => Next::Produce,
        Step::Pause(wait) => Next::Pause(wait),
    }
}

impl Mailbox {
    /// One byte to the dispatcher: a session it handed over is over (its
    /// load count).
    fn session_ended(&mut self) {
        if let Some(e) = self.ends.as_mut() {
            if e.write_all(b"x").is_err() {
                self.ends = None;
            }
        }
    }
}

impl Service for Mailbox {
    type Conn = Conn;
    type Done = ();

    fn open(&mut self, peer: Peer, out: &mut Vec<u8>) -> (Conn, Next<()>) {
        let start = match peer
            .handoff
            .as_deref()
            .map(common::login::unframe::<SessionStart>)
        {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                warning!("bad session hand-off: {e}");
                out.extend_from_slice(b"* BYE Internal error.\r\n");
                return (Conn::Closing, Next::Close);
            }
            None => {
                warning!("a connection without a session hand-off");
                return (Conn::Closing, Next::Close);
            }
        };
        let options = Options {
            quota: start.user.quota,
            ..Options::default()
        };
        let user = start.user.user.clone();
        let key = (user.clone(), start.handoff.client);
        let n = self.per_user_ip.get(&key).copied().unwrap_or(0);
        if self.max_user_ip > 0 && n >= self.max_user_ip {
            info!(
                "imap({user}): Disconnected: Maximum number of connections from user+IP exceeded (imapd_max_userip_connections={})",
                self.max_user_ip
            );
            if let Some(tag) = &start.handoff.tag {
                out.extend_from_slice(
                    format!(
                        "{tag} NO [LIMIT] Maximum number of connections from user+IP exceeded (imapd_max_userip_connections={})\r\n",
                        self.max_user_ip
                    )
                    .as_bytes(),
                );
            }
            // Counted as a session for the dispatcher: report its end.
            self.session_ended();
            return (Conn::Closing, Next::Close);
        }
        // A new user's Maildir is made with its special-use folders, as
        // delivery would.
        let store = match Store::open_with(&start.user.maildir, options)
            .or_else(|_| Store::create_user(&start.user.maildir, options))
        {
            Ok(s) => s,
            Err(e) => {
                warning!("user=<{user}>: cannot open the mailbox: {e}");
                if let Some(tag) = &start.handoff.tag {
                    out.extend_from_slice(
                        format!("{tag} NO [SERVERBUG] Internal error occurred. Refer to server log for more information.\r\n")
                            .as_bytes(),
                    );
                }
                return (Conn::Closing, Next::Close);
            }
        };
        let (mut session, step) = Session::start(
            Arc::clone(&self.cfg),
            user,
            store,
            start.handoff.tag.as_deref(),
            &start.handoff.leftover,
        );
        *self.per_user_ip.entry(key.clone()).or_insert(0) += 1;
        let n = next(&mut session, step, out);
        (Conn::Active(Box::new(session), key), n)
    }

    fn refuse(&mut self, _peer: Peer, _why: Refusal, out: &mut Vec<u8>) -> Conn {
        out.extend_from_slice(b"* BYE [UNAVAILABLE] Too many sessions.\r\n");
        Conn::Closing
    }

    fn input(&mut self, c: &mut Conn, data: &[u8], out: &mut Vec<u8>) -> Next<()> {
        match c {
            Conn::Active(s, _) => {
                let step = s.input(data);
                next(s, step, out)
            }
            Conn::Closing => Next::Close,
        }
    }

    fn notify(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> Next<()> {
        match c {
            Conn::Active(s, _) => {
                let step = s.notify();
                next(s, step, out)
            }
            Conn::Closing => Next::Continue,
        }
    }

    fn done(&mut self, _c: &mut Conn, _r: (), _out: &mut Vec<u8>) -> Next<()> {
        Next::Continue
    }

    /// After `Step::Pause` (the command rate).
    fn resume(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> Next<()> {
        match c {
            Conn::Active(s, _) => {
                let step = s.resume_paused();
                next(s, step, out)
            }
            Conn::Closing => Next::Continue,
        }
    }

    /// After `Step::More` (compressed input waiting): the client has taken
    /// most of the output.
    fn produce(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> Next<()> {
        match c {
            Conn::Active(s, _) => {
                let step = s.resume();
                next(s, step, out)
            }
            Conn::Closing => Next::Continue,
        }
    }

    fn quiet(&mut self, c: &mut Conn) {
        if let Conn::Active(s, _) = c {
            s.quiet();
            self.trim = true;
        }
    }

    fn tick(&mut self, _stopping: bool) {
        let expired = crate::session::kept::expire();
        if std::mem::take(&mut self.trim) || expired {
            common::privilege::release_free_memory();
        }
    }

    fn timed_out(&mut self, c: &mut Conn, out: &mut Vec<u8>) {
        if let Conn::Active(s, _) = c {
            s.timed_out();
            out.append(&mut s.take_output());
        }
    }

    fn stopping(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> bool {
        if let Conn::Active(s, _) = c {
            s.shutdown();
            out.append(&mut s.take_output());
        }
        true
    }

    fn closed(&mut self, c: Conn, _lost: bool) {
        if let Conn::Active(s, key) = c {
            info!(
                "imap({}): Disconnected: Logged out in={} out={}",
                s.user, s.bytes_in, s.bytes_out
            );
            if let Some(n) = self.per_user_ip.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.per_user_ip.remove(&key);
                }
            }
            self.session_ended();
        }
    }

    fn orphan(&mut self, _r: ()) {}
}

/// Run the mailbox process on the hand-off socket (from the dispatcher).
pub fn main() {
    let (worker, ()) = common::daemon::start_with("imapd", |_| ());
    if common::privilege::is_root() {
        common::fatal!("a mailbox process must not run as root");
    }
    let cfg = &worker.config;
    let idle = match cfg.time("imapd_timeout") {
        Ok(t) => t,
        Err(e) => common::config_fatal!("{e}"),
    };
    let client_limit = cfg
        .int("mailbox_client_limit")
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX).max(1))
        .unwrap_or(1000);
    let limits = crate::session_limits(cfg);
    let common::daemon::Worker {
        listener,
        stop,
        drain,
        ..
    } = worker;
    let ends = match &listener {
        common::daemon::Listener::Handoff(s) => s.try_clone().ok(),
        _ => common::config_fatal!("posthorn-imapd runs as the dispatcher or as a mailbox process"),
    };
    let hibernate = match cfg.time("imapd_hibernate_timeout") {
        Ok(t) => t,
        Err(e) => common::config_fatal!("{e}"),
    };
    let server_limits = Limits {
        idle,
        total: None,
        per_client: 0,
        max_connections: client_limit + 16,
        quiet: (!hibernate.is_zero()).then_some(hibernate),
        ..Limits::default()
    };
    let server = match Server::new(1) {
        Ok(s) => s,
        Err(e) => common::fatal!("{e}"),
    };
    let max_user_ip = match cfg.int("imapd_max_userip_connections") {
        Ok(n) => u32::try_from(n).unwrap_or(u32::MAX),
        Err(e) => common::config_fatal!("{e}"),
    };
    let mut service = Mailbox {
        cfg: Arc::new(SessionConfig::standard(limits)),
        ends,
        per_user_ip: HashMap::new(),
        max_user_ip,
        trim: false,
    };
    let mut counter = LocalCounter::default();
    if let Err(e) = server.run(
        listener,
        &mut service,
        &server_limits,
        &mut counter,
        &stop,
        &drain,
    ) {
        common::fatal!("{e}");
    }
}
