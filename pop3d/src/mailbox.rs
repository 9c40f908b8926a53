//! The mailbox process: POP3 sessions after login, as the mailbox owner.
//!
//! Started by the dispatcher (common::login::dispatch) with one owner's uid
//! and gid, never 0; serves every session of that owner the dispatcher
//! hands it, on the server skeleton (`Listener::Handoff`). Each session
//! arrives as a `SessionStart` frame with the client's socket: the maildrop
//! is opened (lock, sync) on the pool, then session.rs runs the TRANSACTION
//! state. When a session ends the process writes one byte back to the
//! dispatcher, which is how it knows this process's load. It exits when the
//! dispatcher closes the hand-off socket and the last session has ended.
//!
//! Owns the mapping of session.rs's steps onto the skeleton. Does not own
//! the protocol (session.rs) or the mailbox format (mailstore).
//!
//! Security: runs as the mailbox owner (the dispatcher set uid and gid
//! before exec and refuses uid 0); it refuses to run as root itself. A
//! frame names the user and the Maildir auth resolved; nothing here trusts
//! the client for either.
//!
//! Diagnostics: `Disconnected: Logged out top=..., retr=..., del=...,
//! size=...` (session.rs), `user=<U>: ... -ERR [IN-USE]`, store errors with
//! the file.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use common::login::SessionStart;
use common::server::{Limits, LocalCounter, Next, Peer, Refusal, Server, Service};
use common::{info, warning};
use mailstore::Options;

use crate::maildrop::{OpenError, StoreMaildrop, UidlFormat};
use crate::session::{Session, SessionConfig, Step};

/// Pool threads for opening maildrops and deleting at QUIT.
const POOL_THREADS: usize = 4;

/// What a pool job of a session returns.
pub enum Done {
    Opened(Result<Box<StoreMaildrop>, OpenError>),
    /// QUIT's deletions ran; the maildrop comes back with the result.
    Committed(Box<StoreMaildrop>, std::io::Result<()>),
}

enum State {
    /// The maildrop is being opened.
    Opening,
    Active {
        session: Box<Session>,
        maildrop: Box<StoreMaildrop>,
    },
    /// QUIT's deletions are running on the pool.
    Committing {
        session: Box<Session>,
    },
    Closing,
}

pub struct Conn {
    start: Option<Box<SessionStart>>,
    state: State,
}

pub struct Mailbox {
    cfg: Arc<SessionConfig>,
    uidl: UidlFormat,
    /// Where a session's end is reported (our end of the hand-off socket).
    ends: Option<UnixStream>,
}

impl Mailbox {
    fn map(&mut self, c: &mut Conn, step: Step, out: &mut Vec<u8>) -> Next<Done> {
        let State::Active {
            mut session,
            maildrop,
        } = std::mem::replace(&mut c.state, State::Closing)
        else {
            return Next::Close;
        };
        out.append(&mut session.out);
        match step {
            Step::Continue => {
                c.state = State::Active { session, maildrop };
                Next::Continue
            }
            Step::Produce => {
                c.state = State::Active { session, maildrop };
                Next::Produce
            }
            Step::Close => {
                c.state = State::Active { session, maildrop };
                Next::Close
            }
            Step::Commit(ns) => {
                c.state = State::Committing { session };
                let mut maildrop = maildrop;
                Next::Run(Box::new(move || {
                    let r = crate::session::Maildrop::delete(maildrop.as_mut(), &ns);
                    Done::Committed(maildrop, r)
                }))
            }
        }
    }
}

impl Service for Mailbox {
    type Conn = Conn;
    type Done = Done;

    fn open(&mut self, peer: Peer, out: &mut Vec<u8>) -> (Conn, Next<Done>) {
        let start = peer
            .handoff
            .as_deref()
            .map(common::login::unframe::<SessionStart>);
        let start = match start {
            Some(Ok(s)) => Box::new(s),
            Some(Err(e)) => {
                warning!("bad session hand-off: {e}");
                out.extend_from_slice(b"-ERR [SYS/TEMP] Internal error.\r\n");
                return (
                    Conn {
                        start: None,
                        state: State::Closing,
                    },
                    Next::Close,
                );
            }
            None => {
                warning!("a connection without a session hand-off");
                return (
                    Conn {
                        start: None,
                        state: State::Closing,
                    },
                    Next::Close,
                );
            }
        };
        let maildir = start.user.maildir.clone();
        let quota = start.user.quota;
        let uidl = self.uidl.clone();
        let job = Box::new(move || {
            let options = Options {
                quota,
                ..Options::default()
            };
            Done::Opened(StoreMaildrop::open(&maildir, options, &uidl).map(Box::new))
        });
        (
            Conn {
                start: Some(start),
                state: State::Opening,
            },
            Next::Run(job),
        )
    }

    fn refuse(&mut self, _peer: Peer, _why: Refusal, out: &mut Vec<u8>) -> Conn {
        out.extend_from_slice(b"-ERR [SYS/TEMP] Too many sessions.\r\n");
        Conn {
            start: None,
            state: State::Closing,
        }
    }

    fn input(&mut self, c: &mut Conn, data: &[u8], out: &mut Vec<u8>) -> Next<Done> {
        let step = match &mut c.state {
            State::Active { session, maildrop } => session.input(data, maildrop.as_mut()),
            // Input while opening or committing: the skeleton reads none
            // while a job runs; anything else here is after a close.
            _ => return Next::Continue,
        };
        self.map(c, step, out)
    }

    fn done(&mut self, c: &mut Conn, r: Done, out: &mut Vec<u8>) -> Next<Done> {
        let Some(start) = c.start.as_ref() else {
            return Next::Close;
        };
        let user = start.user.user.clone();
        match r {
            Done::Opened(Ok(mut maildrop)) => {
                let (session, step) = Session::start(
                    Arc::clone(&self.cfg),
                    user,
                    &start.handoff.leftover,
                    maildrop.as_mut(),
                );
                c.state = State::Active {
                    session: Box::new(session),
                    maildrop,
                };
                self.map(c, step, out)
            }
            Done::Opened(Err(OpenError::InUse)) => {
                info!("Disconnected: user=<{user}>: mailbox is locked by another POP3 session");
                out.extend_from_slice(
                    b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n",
                );
                Next::Close
            }
            Done::Opened(Err(e)) => {
                warning!("user=<{user}>: cannot open the mailbox: {e}");
                out.extend_from_slice(
                    b"-ERR [SYS/TEMP] Internal error occurred. Refer to server log for more information.\r\n",
                );
                Next::Close
            }
            Done::Committed(maildrop, result) => {
                let State::Committing { mut session } =
                    std::mem::replace(&mut c.state, State::Closing)
                else {
                    return Next::Close;
                };
                if let Err(e) = &result {
                    warning!("user=<{user}>: deleting at QUIT: {e}");
                }
                let step = session.commit_done(result);
                c.state = State::Active { session, maildrop };
                self.map(c, step, out)
            }
        }
    }

    fn resume(&mut self, _c: &mut Conn, _out: &mut Vec<u8>) -> Next<Done> {
        Next::Continue
    }

    fn produce(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> Next<Done> {
        let step = match &mut c.state {
            State::Active { session, maildrop } => session.produce(out, maildrop.as_mut()),
            _ => return Next::Continue,
        };
        self.map(c, step, out)
    }

    fn timed_out(&mut self, c: &mut Conn, out: &mut Vec<u8>) {
        if let State::Active { session, .. } = &mut c.state {
            session.timed_out();
            out.append(&mut session.out);
        }
    }

    fn stopping(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> bool {
        match &mut c.state {
            State::Active { session, .. } if !session.busy() => {
                out.extend_from_slice(b"-ERR Server shutting down.\r\n");
                true
            }
            State::Closing => true,
            _ => false,
        }
    }

    fn closed(&mut self, mut c: Conn, _lost: bool) {
        match &mut c.state {
            State::Active { session, .. } | State::Committing { session } => session.disconnected(),
            _ => {}
        }
        if c.start.is_some() {
            // One byte: this session is over (the dispatcher's count).
            if let Some(s) = self.ends.as_mut() {
                if s.write_all(b"x").is_err() {
                    self.ends = None;
                }
            }
        }
    }

    fn orphan(&mut self, _r: Done) {}
}

/// Run the mailbox process on the hand-off socket `fd` (from the
/// dispatcher).
pub fn main() {
    let (worker, ()) = common::daemon::start_with("pop3d", |_| ());
    if common::privilege::is_root() {
        common::fatal!("a mailbox process must not run as root");
    }
    let cfg = &worker.config;
    let uidl = match UidlFormat::parse(&cfg.get("pop3d_uidl_format")) {
        Ok(u) => u,
        Err(e) => common::config_fatal!("{e}"),
    };
    let idle = match cfg.time("pop3d_timeout") {
        Ok(t) => t,
        Err(e) => common::config_fatal!("{e}"),
    };
    let client_limit = cfg
        .int("mailbox_client_limit")
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX).max(1))
        .unwrap_or(1000);
    let common::daemon::Worker {
        listener,
        stop,
        drain,
        ..
    } = worker;
    let ends = match &listener {
        common::daemon::Listener::Handoff(s) => s.try_clone().ok(),
        _ => common::config_fatal!("posthorn-pop3d runs as the dispatcher or as a mailbox process"),
    };
    let limits = Limits {
        idle,
        total: None,
        per_client: 0,
        // The dispatcher keeps below this; a few more are allowed rather
        // than refusing a session already logged in.
        max_connections: client_limit + 16,
        ..Limits::default()
    };
    let server = match Server::new(POOL_THREADS) {
        Ok(s) => s,
        Err(e) => common::fatal!("{e}"),
    };
    let mut service = Mailbox {
        cfg: Arc::new(SessionConfig {
            max_bad_commands: 20,
        }),
        uidl,
        ends,
    };
    let mut counter = LocalCounter::default();
    if let Err(e) = server.run(listener, &mut service, &limits, &mut counter, &stop, &drain) {
        common::fatal!("{e}");
    }
}
