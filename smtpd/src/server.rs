//! smtpd on the server skeleton: queue files, durable commits, qmgr wake-ups.
//!
//! Owns what is smtpd's own between the skeleton (common::server: sockets,
//! limits, time-outs, the pool) and the protocol (session.rs): the queue-file
//! sink, the commit job that makes a message durable (fsync file, rename,
//! fsync directory) on a pool thread (or in the loop when the session is the
//! process's only connection), the reserve of empty queue files kept
//! ready so file creation stays off the event loop, and waking qmgr once per
//! loop round after commits, with the ids committed; the client's name
//! before the greeting (peername.rs's thread, `Next::Await`, when
//! smtpd_peername_lookup is on). STARTTLS and implicit
//! TLS are the skeleton's (`Next::StartTls`, `Service::tls_ready`); the
//! session decides and logs.
//!
//! Durability: a session gets its `250 Ok: queued as` only after the commit
//! job reports success; a failure gets `452 4.3.1`. A lost wake-up only
//! delays delivery (qmgr scans incoming/ periodically).
//!
//! Diagnostics: `ID: client disconnected before the reply; message queued`.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::auth::{AuthClient, AuthError, AuthReply};
use common::dns::PeerName;
use common::server::{Next, Peer, Refusal, Service, Spawner};
use common::spool::{Envelope, QueueWriter, Reserved, Spool};
use common::tls::TlsInfo;
use common::{info, warning};
use mio::Token;
use proto::smtp::Reply;

use crate::authenticate::{self, Authenticator};
use crate::peername::PeerNames;
use crate::policy::AccessPolicy;
use crate::session::{Authenticated, Client, Policy, Session, Sink, SmtpConfig, Step};

/// Queue files made ahead of time by pool threads.
type Reservations = Arc<Mutex<Vec<Reserved>>>;
/// How many empty queue files to keep ready (made in batches of at least
/// half of it).
const RESERVE: usize = 16;
/// Older reservations are not used (qmgr cleans temporary files after hours).
const RESERVE_MAX_AGE: Duration = Duration::from_secs(600);

/// A commit's outcome: the queue id, or why it failed.
pub type Committed = Result<String, io::Error>;

/// What a pool job brings back to a connection.
pub enum Done {
    /// Step::Commit's.
    Committed(Committed),
    /// Step::Verify's: posthorn-auth's answer.
    Verified(Result<AuthReply, AuthError>),
    /// The client's name, looked up before the greeting.
    Named(PeerName),
    /// Step::Authenticate's: the checks' outcome (None: none in time).
    Authenticated(Option<Authenticated>),
}

/// Connections to posthorn-auth for AUTH, kept between verifications (one
/// per verification running at once).
type AuthClients = Arc<Mutex<Vec<AuthClient>>>;

/// Queue files: a sink that writes the message into incoming/.
pub struct SpoolSink {
    spool: Spool,
    reserved: Reservations,
    writer: Option<QueueWriter>,
}

impl Sink for SpoolSink {
    fn begin(&mut self, env: &Envelope) -> io::Result<String> {
        let ready = self
            .reserved
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .filter(|r| r.age() < RESERVE_MAX_AGE);
        let w = match ready {
            Some(r) => self.spool.create_in(r, env)?,
            None => self.spool.create(env)?,
        };
        let id = w.id().to_string();
        self.writer = Some(w);
        Ok(id)
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.write(data),
            None => Err(io::Error::other("no message in progress")),
        }
    }

    fn abort(&mut self) {
        self.writer = None; // dropping the writer removes the file
    }

    fn prepend(&mut self, fields: &str) -> io::Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.set_prepend(fields),
            None => Err(io::Error::other("no message in progress")),
        }
    }
}

/// One connection: the protocol and its queue file.
pub struct Conn {
    session: Session,
    sink: SpoolSink,
}

/// Make empty queue files until RESERVE are ready, with one directory
/// fsync for the batch.
fn top_up(spool: &Spool, reserved: &Reservations) {
    let missing = match reserved.lock() {
        Ok(v) => RESERVE.saturating_sub(v.len()),
        Err(_) => return,
    };
    if missing < RESERVE / 2 {
        return; // wait for a bigger batch: one fsync for several files
    }
    // A failure here is reported by begin(), which tries again.
    if let Ok(batch) = spool.reserve_batch(missing) {
        if let Ok(mut v) = reserved.lock() {
            v.extend(batch);
        }
    }
}

/// Wakes qmgr after commits, naming the queued ids (`ID\n` each) so qmgr
/// takes them without scanning incoming/; reconnects as needed, never
/// blocks.
struct QmgrNotifier {
    path: PathBuf,
    conn: Option<UnixStream>,
}

impl QmgrNotifier {
    fn notify(&mut self, ids: &[u8]) {
        for _ in 0..2 {
            if self.conn.is_none() {
                match UnixStream::connect(&self.path) {
                    Ok(s) => {
                        let _ = s.set_nonblocking(true);
                        self.conn = Some(s);
                    }
                    Err(_) => return, // qmgr restarting: its periodic scan finds the mail
                }
            }
            if let Some(c) = self.conn.as_mut() {
                match c.write(ids) {
                    // A short write cut a line: qmgr ignores the piece, and
                    // its periodic scan finds that message.
                    Ok(_) => return,
                    // A full socket means qmgr has wake-ups unread already.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => self.conn = None,
                }
            }
        }
    }
}

/// smtpd's `Service`.
pub struct Smtpd {
    cfg: Arc<SmtpConfig>,
    policy: AccessPolicy,
    spool: Spool,
    reserved: Reservations,
    notifier: QmgrNotifier,
    /// Ids committed in this loop round, `ID\n` each, for qmgr.
    committed: Vec<u8>,
    /// Where the reserve is topped up (the running server's pool).
    spawner: Spawner<Token, Done>,
    /// private/auth, for AUTH.
    auth_socket: PathBuf,
    auth_clients: AuthClients,
    /// A top-up job is queued or running.
    topping_up: Arc<AtomicBool>,
    /// Connections open in this process (refused ones included).
    conns: usize,
    /// Client name look-ups (None: smtpd_peername_lookup = no).
    peernames: Option<PeerNames>,
    /// Authentication checks (None: smtpd_authentication_checks empty).
    authenticator: Option<Authenticator>,
}

impl Smtpd {
    pub fn new(
        cfg: Arc<SmtpConfig>,
        policy: AccessPolicy,
        spool: Spool,
        spawner: Spawner<Token, Done>,
        peernames: Option<PeerNames>,
        authenticator: Option<Authenticator>,
    ) -> Self {
        let reserved: Reservations = Arc::new(Mutex::new(Vec::new()));
        top_up(&spool, &reserved);
        Smtpd {
            notifier: QmgrNotifier {
                path: spool.private("qmgr"),
                conn: None,
            },
            cfg,
            policy,
            auth_socket: spool.private("auth"),
            auth_clients: Arc::new(Mutex::new(Vec::new())),
            spool,
            reserved,
            committed: Vec::new(),
            spawner,
            topping_up: Arc::new(AtomicBool::new(false)),
            conns: 0,
            peernames,
            authenticator,
        }
    }

    fn next(&mut self, c: &mut Conn, step: Step, out: &mut Vec<u8>) -> Next<Done> {
        out.append(&mut c.session.out);
        match step {
            Step::Continue => Next::Continue,
            Step::Close => Next::Close,
            Step::Pause(d) => Next::Pause(d),
            Step::StartTls => Next::StartTls,
            Step::Verify => {
                let Some(creds) = c.session.take_credentials() else {
                    common::warning!("verification requested without credentials");
                    return Next::Close;
                };
                // On the pool: a verification waits for a hash computation
                // and for auth's failure delay.
                let (clients, socket) = (Arc::clone(&self.auth_clients), self.auth_socket.clone());
                Next::Run(Box::new(move || {
                    let mut client = clients
                        .lock()
                        .ok()
                        .and_then(|mut v| v.pop())
                        .unwrap_or_else(|| AuthClient::lazy(socket));
                    let answer = client.verify(&creds);
                    // A client that failed dropped its connection; it
                    // reconnects at its next use.
                    if let Ok(mut v) = clients.lock() {
                        v.push(client);
                    }
                    Done::Verified(answer)
                }))
            }
            Step::Authenticate => {
                let start = self.authenticator.as_ref().and_then(|a| {
                    let facts = c.session.authentication_facts()?;
                    let (file, offset, len) = c.sink.writer.as_mut()?.message_so_far().ok()?;
                    Some(
                        a.begin(authenticate::Request {
                            id: facts.queue_id,
                            client: facts.client,
                            helo: facts.helo,
                            mail_from: facts.mail_from,
                            file,
                            offset,
                            len,
                            time: std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap_or_default()
                                .as_secs(),
                        }),
                    )
                });
                match start {
                    Some(start) => Next::Await {
                        start,
                        fallback: Done::Authenticated(None),
                    },
                    None => {
                        let step = c.session.authenticated(None, &mut self.policy, &mut c.sink);
                        self.next(c, step, out)
                    }
                }
            }
            Step::Commit => match c.sink.writer.take() {
                // The only connection of this process: nothing else waits
                // for the loop, so the commit runs here, without two thread
                // hand-offs (another smtpd process accepts meanwhile).
                Some(writer) if self.conns == 1 => {
                    let r = writer.commit().map(|id| id.to_string());
                    self.committed_one(c, r, out)
                }
                Some(writer) => Next::Run(Box::new(move || {
                    Done::Committed(writer.commit().map(|id| id.to_string()))
                })),
                None => {
                    // Cannot happen: Commit follows a begun message. Fail safe.
                    common::warning!("commit requested without a message in progress");
                    Next::Close
                }
            },
        }
    }
}

impl Service for Smtpd {
    type Conn = Conn;
    type Done = Done;

    fn open(&mut self, peer: Peer, out: &mut Vec<u8>) -> (Conn, Next<Done>) {
        let addr = peer.addr;
        let mut c = self.conn(peer);
        // Postfix looks the name up before the greeting, so that every
        // line about the session, `connect from` first, has it.
        if let (Some(ip), Some(names)) = (addr, self.peernames.as_mut()) {
            if let Some(start) = names.begin(ip) {
                let fallback = Done::Named(PeerName::default());
                return (c, Next::Await { start, fallback });
            }
        }
        c.session.greet();
        out.append(&mut c.session.out);
        (c, Next::Continue)
    }

    fn refuse(&mut self, peer: Peer, why: Refusal, out: &mut Vec<u8>) -> Conn {
        let addr = peer.addr;
        let mut c = self.conn(peer);
        let host = &self.cfg.myhostname;
        let reply = match (why, addr) {
            (Refusal::TooManyFromClient, Some(ip)) => Reply::new(
                421,
                Some("4.7.0"),
                format!("{host} Error: too many connections from {ip}"),
            ),
            _ => Reply::new(
                421,
                Some("4.3.2"),
                format!("{host} Error: too many connections"),
            ),
        };
        c.session.refuse(reply);
        out.append(&mut c.session.out);
        c
    }

    fn input(&mut self, c: &mut Conn, data: &[u8], out: &mut Vec<u8>) -> Next<Done> {
        let step = c.session.input(data, &mut self.policy, &mut c.sink);
        self.next(c, step, out)
    }

    fn done(&mut self, c: &mut Conn, r: Done, out: &mut Vec<u8>) -> Next<Done> {
        match r {
            Done::Committed(r) => self.committed_one(c, r, out),
            Done::Verified(answer) => {
                let step = c.session.auth_done(answer, &mut self.policy, &mut c.sink);
                self.next(c, step, out)
            }
            Done::Authenticated(a) => {
                let step = c.session.authenticated(a, &mut self.policy, &mut c.sink);
                self.next(c, step, out)
            }
            Done::Named(peer) => {
                for w in &peer.warnings {
                    warning!("{w}");
                }
                if let Some(name) = peer.name {
                    c.session.set_client_name(name);
                }
                c.session.greet();
                out.append(&mut c.session.out);
                Next::Continue
            }
        }
    }

    fn resume(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> Next<Done> {
        let step = c.session.resume(&mut self.policy, &mut c.sink);
        self.next(c, step, out)
    }

    fn tls_ready(&mut self, c: &mut Conn, info: &TlsInfo, out: &mut Vec<u8>) -> Next<Done> {
        let step = c.session.tls_secured(info, &mut self.policy, &mut c.sink);
        self.next(c, step, out)
    }

    fn timed_out(&mut self, c: &mut Conn, out: &mut Vec<u8>) {
        c.session.timed_out(&mut c.sink);
        out.append(&mut c.session.out);
    }

    fn stopping(&mut self, c: &mut Conn, out: &mut Vec<u8>) -> bool {
        if c.sink.writer.is_some() {
            return false; // inside a message: it gets the grace period
        }
        Reply::new(
            421,
            Some("4.3.2"),
            format!("{} Service shutting down", self.cfg.myhostname),
        )
        .write_to(out);
        true
    }

    fn closed(&mut self, mut c: Conn, lost: bool) {
        self.conns = self.conns.saturating_sub(1);
        c.sink.abort();
        c.session
            .disconnected(if lost { "lost connection" } else { "" });
    }

    fn orphan(&mut self, r: Done) {
        if let Done::Committed(Ok(id)) = r {
            self.committed.extend_from_slice(id.as_bytes());
            self.committed.push(b'\n');
            info!("{id}: client disconnected before the reply; message queued");
        }
    }

    fn tick(&mut self, _stopping: bool) {
        if !self.committed.is_empty() {
            let ids = std::mem::take(&mut self.committed);
            self.notifier.notify(&ids);
        }
    }
}

impl Smtpd {
    /// A commit's outcome: note the id for qmgr, refill the reserve, and
    /// let the session answer.
    fn committed_one(&mut self, c: &mut Conn, r: Committed, out: &mut Vec<u8>) -> Next<Done> {
        if let Ok(id) = &r {
            self.committed.extend_from_slice(id.as_bytes());
            self.committed.push(b'\n');
        }
        self.top_up_later();
        let step = c.session.commit_done(r, &mut self.policy, &mut c.sink);
        self.next(c, step, out)
    }

    fn conn(&mut self, peer: Peer) -> Conn {
        self.conns += 1;
        let client = Client {
            addr: peer.addr,
            port: peer.port,
            name: "unknown".into(),
            trusted: self.policy.trusted(peer.addr),
        };
        Conn {
            session: Session::new(Arc::clone(&self.cfg), client),
            sink: SpoolSink {
                spool: self.spool.clone(),
                reserved: Arc::clone(&self.reserved),
                writer: None,
            },
        }
    }

    /// Top up the reserve on the pool, when a batch is due: a job per
    /// commit would wake a pool thread for nothing most of the time.
    fn top_up_later(&self) {
        let missing = match self.reserved.lock() {
            Ok(v) => RESERVE.saturating_sub(v.len()),
            Err(_) => return,
        };
        if missing < RESERVE / 2 || self.topping_up.swap(true, Ordering::AcqRel) {
            return;
        }
        let flag = Arc::clone(&self.topping_up);
        let (spool, reserved) = (self.spool.clone(), Arc::clone(&self.reserved));
        // Pool gone: begin() makes files itself, and the loop reports the pool.
        let _ = self.spawner.background(Box::new(move || {
            top_up(&spool, &reserved);
            flag.store(false, Ordering::Release);
        }));
    }
}
