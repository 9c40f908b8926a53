//! One IMAP client of the load: a connection and the commands of a session,
//! each response checked, and the client loops of modes (a) and (b).
//!
//! Owns the conversation: connect and greeting, LOGIN, SELECT INBOX, FETCH
//! 1:* (FLAGS UID RFC822.SIZE), FETCH n (BODY.PEEK[]), STORE +FLAGS
//! (\Seen), SEARCH UNSEEN, NOOP, LOGOUT, in lock step (each tagged response
//! read before the next command), with the checks a careful client makes:
//! every response's tag, every untagged response read and looked at, SELECT
//! sends EXISTS and UIDVALIDITY, FETCH 1:* lists every message once with
//! ascending UIDs, each BODY[] literal has exactly RFC822.SIZE octets with
//! CRLF line ends and BODY.PEEK does not set \Seen, STORE's untagged FETCH
//! shows \Seen, SEARCH UNSEEN returns exactly the messages without \Seen
//! (when the mailbox is not shared), LOGOUT sends BYE, nothing is expunged.
//! Uses `posthorn_bench::work` to claim sessions (rounds) and mailboxes.
//! Does not own response reading (`wire`) or the statistics (`stats`).
//!
//! Standards: RFC 3501 6.1.3 (LOGOUT: BYE, then OK), 6.2.3 (LOGIN), 6.3.1
//! (SELECT: required EXISTS, FLAGS, RECENT, UIDVALIDITY), 6.4.4 (SEARCH),
//! 6.4.5 (FETCH; BODY.PEEK does not set \Seen), 6.4.6 (STORE and its
//! untagged FETCH), 7.4.1 (EXPUNGE), 2.3.1.1 (UIDs ascend with sequence
//! numbers), 2.3.4 (RFC822.SIZE: octets of the message as sent, CRLF).
//!
//! Diagnostics: a failed session (round, idle connection) counts once,
//! under the `ErrorKind` of its first problem; the first `REPORT_FIRST`
//! failures are printed to stderr with the user, the command and the
//! server's response.

use std::fmt;
use std::io::{self, BufReader, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use posthorn_bench::line;
use posthorn_bench::maildir::user_name;
use posthorn_bench::rng::Rng;
use posthorn_bench::work::{self, Mailboxes, Work};

use super::args::{Config, Mode};
use super::stats::{Cmd, ErrorKind, Stats};
use super::wire::{self, Kind, Response, Status, Value, WireError};

/// How many failures are printed to stderr.
const REPORT_FIRST: u64 = 5;

/// Pause after a failure, so a dead server is not spun on.
const FAILURE_PAUSE: Duration = Duration::from_millis(20);

/// Read buffer per connection: a FETCH of a 12 KiB message in one read.
const READ_BUFFER: usize = 64 * 1024;

/// State shared by all clients of one run.
pub struct Shared {
    pub cfg: Config,
    work: Work,
    mailboxes: Mailboxes,
}

impl Shared {
    pub fn new(cfg: Config, start: Instant) -> Self {
        Shared {
            work: Work::new(
                cfg.sessions,
                cfg.seconds.map(|s| start + s),
                cfg.max_failures,
            ),
            mailboxes: Mailboxes::new(cfg.users, cfg.exclusive),
            cfg,
        }
    }

    /// Records a failure and gives its claim back for another try.
    fn fail(&self, user: &str, f: &Failure) {
        report_failure(&self.cfg, self.work.fail(), user, f);
    }

    fn user(&self, mbox: usize) -> String {
        user_name(&self.cfg.user_pattern, self.cfg.first_user + mbox as u32)
    }
}

/// Prints failure number `n` (0-based) if it is among the first few.
pub fn report_failure(cfg: &Config, n: u64, user: &str, f: &Failure) {
    if n < REPORT_FIRST && !cfg.quiet_errors {
        eprintln!("posthorn-imap-bench: {user}: {f}");
    }
}

/// What one client thread measured, and when it started and ended work.
pub type ClientResult = work::ClientResult<Cmd, ErrorKind>;

/// Runs client number `id` until the shared work is done: whole sessions
/// (mode a) or rounds in one long session (mode b).
pub fn run_client(shared: &Shared, id: u64) -> ClientResult {
    let mut res = ClientResult::default();
    let mut rng = Rng::stream(shared.cfg.seed, id);
    let mut view = View::default();
    match shared.cfg.mode {
        Mode::Long => long_client(shared, &mut res, &mut rng, &mut view),
        _ => session_client(shared, &mut res, &mut rng, &mut view),
    }
    res
}

/// Mode (a): whole sessions, each on the next free mailbox.
fn session_client(shared: &Shared, res: &mut ClientResult, rng: &mut Rng, view: &mut View) {
    let cfg = &shared.cfg;
    while shared.work.claim() {
        let mbox = shared.mailboxes.acquire();
        let user = shared.user(mbox);
        let t0 = Instant::now();
        res.first_start.get_or_insert(t0);
        let outcome = session(cfg, &user, rng, view, &mut res.stats);
        shared.mailboxes.release(mbox);
        let t1 = Instant::now();
        res.last_end = Some(t1);
        match outcome {
            Ok(()) => {
                res.stats.ok_sessions += 1;
                res.stats.session.record(t1 - t0);
            }
            Err(f) => {
                res.stats.failed_sessions += 1;
                res.stats.error(f.kind());
                shared.fail(&user, &f);
                thread::sleep(FAILURE_PAUSE);
            }
        }
    }
}

/// One whole session of mode (a).
fn session(
    cfg: &Config,
    user: &str,
    rng: &mut Rng,
    view: &mut View,
    stats: &mut Stats,
) -> Result<(), Failure> {
    let mut c = Conn::open(cfg, user, stats)?;
    round(&mut c, cfg, rng, view, stats)?;
    c.logout(stats)
}

/// Mode (b): one mailbox for the client's whole run, one long session on
/// it (opened again after a failure), rounds of commands until the work is
/// done, then LOGOUT.
fn long_client(shared: &Shared, res: &mut ClientResult, rng: &mut Rng, view: &mut View) {
    let cfg = &shared.cfg;
    let mbox = shared.mailboxes.acquire();
    let user = shared.user(mbox);
    let mut conn: Option<Conn> = None;
    let failed = |res: &mut ClientResult, f: Failure| {
        res.stats.failed_sessions += 1;
        res.stats.error(f.kind());
        shared.fail(&user, &f);
        thread::sleep(FAILURE_PAUSE);
    };
    while shared.work.claim() {
        res.first_start.get_or_insert_with(Instant::now);
        let c = match conn.take() {
            Some(c) => c,
            None => match Conn::open(cfg, &user, &mut res.stats) {
                Ok(c) => c,
                Err(f) => {
                    res.last_end = Some(Instant::now());
                    failed(res, f);
                    continue;
                }
            },
        };
        let mut c = c;
        let t0 = Instant::now();
        let outcome = round(&mut c, cfg, rng, view, &mut res.stats);
        let t1 = Instant::now();
        res.last_end = Some(t1);
        match outcome {
            Ok(()) => {
                res.stats.ok_sessions += 1;
                res.stats.session.record(t1 - t0);
                conn = Some(c);
            }
            Err(f) => failed(res, f),
        }
    }
    if let Some(mut c) = conn {
        if let Err(f) = c.logout(&mut res.stats) {
            // A LOGOUT that fails is a failure of the run, not of a round
            // that had been counted as done.
            res.stats.error(f.kind());
            res.stats.failed_sessions += 1;
            report_failure(cfg, 0, &user, &f);
        }
        res.last_end = Some(Instant::now());
    }
    shared.mailboxes.release(mbox);
}

/// The commands after LOGIN and before LOGOUT: SELECT INBOX, FETCH 1:*,
/// `--fetch` x FETCH BODY.PEEK[] of random messages, STORE +FLAGS (\Seen) on
/// them, SEARCH UNSEEN, NOOP.
fn round(
    c: &mut Conn,
    cfg: &Config,
    rng: &mut Rng,
    view: &mut View,
    stats: &mut Stats,
) -> Result<(), Failure> {
    let n = c.select(stats)?;
    c.fetch_all(stats, view, n)?;
    let picks: Vec<u32> = (0..cfg.fetch)
        .map(|_| rng.below(u64::from(n)) as u32 + 1)
        .collect();
    for &m in &picks {
        c.fetch_body(stats, view, m)?;
    }
    if !picks.is_empty() {
        c.store_seen(stats, view, &picks)?;
    }
    c.search_unseen(stats, view, cfg.exclusive)?;
    c.noop(stats)
}

/// Why a session (round, connection) failed.
#[derive(Debug)]
pub enum Failure {
    /// The connection could not be made.
    Connect(io::Error),
    /// An I/O or framing problem while waiting for the response to `cmd`.
    Wire { cmd: &'static str, err: WireError },
    /// `NO` or `BAD` (or a greeting that is not `* OK`).
    Refused { cmd: &'static str, text: String },
    /// An untagged BYE while `cmd` ran (not LOGOUT).
    Bye { cmd: &'static str, text: String },
    /// A response that does not say what RFC 3501 says it must, or
    /// contradicts an earlier one.
    Protocol { cmd: &'static str, detail: String },
    /// A BODY[] of another size than RFC822.SIZE (message, listed, got).
    SizeMismatch { msg: u32, listed: u64, got: u64 },
    /// SELECT found an empty INBOX.
    Empty,
}

impl Failure {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Failure::Connect(_) => ErrorKind::Connect,
            Failure::Wire { err, .. } if err.is_timeout() => ErrorKind::Timeout,
            Failure::Wire {
                err: WireError::Bad(_) | WireError::TooLong(_),
                ..
            } => ErrorKind::Protocol,
            Failure::Wire { .. } => ErrorKind::Io,
            Failure::Refused {
                cmd: "greeting", ..
            } => ErrorKind::Greeting,
            Failure::Refused { cmd: "LOGIN", .. } => ErrorKind::Login,
            Failure::Refused { .. } => ErrorKind::Refused,
            Failure::Bye { .. } => ErrorKind::Bye,
            Failure::Protocol { .. } => ErrorKind::Protocol,
            Failure::SizeMismatch { .. } => ErrorKind::SizeMismatch,
            Failure::Empty => ErrorKind::Empty,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Wire { cmd, err } => write!(f, "{cmd}: {err}"),
            Failure::Refused { cmd, text } => write!(f, "{cmd}: {text}"),
            Failure::Bye { cmd, text } => write!(f, "{cmd}: untagged BYE {text}"),
            Failure::Protocol { cmd, detail } => write!(f, "{cmd}: {detail}"),
            Failure::SizeMismatch { msg, listed, got } => write!(
                f,
                "FETCH {msg} BODY[]: {got} octets received, RFC822.SIZE said {listed}"
            ),
            Failure::Empty => write!(f, "SELECT: INBOX is empty, nothing to fetch"),
        }
    }
}

impl std::error::Error for Failure {}

fn protocol(cmd: &'static str, detail: impl Into<String>) -> Failure {
    Failure::Protocol {
        cmd,
        detail: detail.into(),
    }
}

/// What the client knows of the selected mailbox, by sequence number - 1.
#[derive(Debug, Default)]
pub struct View {
    msgs: Vec<Option<Msg>>,
}

#[derive(Debug, Clone, Copy)]
struct Msg {
    uid: u32,
    size: u64,
    seen: bool,
}

impl View {
    fn msg(&self, seq: u32) -> Option<&Msg> {
        self.msgs.get(seq as usize - 1)?.as_ref()
    }
}

/// One IMAP connection.
pub struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
    tags: u32,
    resp: Response,
    /// Messages in the selected mailbox (EXISTS), None before SELECT.
    exists: Option<u32>,
}

impl Conn {
    /// Connects and reads the greeting; records `Cmd::Connect`.
    pub fn connect(cfg: &Config, stats: &mut Stats) -> Result<Conn, Failure> {
        let t0 = Instant::now();
        let (stream, w) =
            line::connect(&cfg.host, cfg.port, cfg.timeout).map_err(Failure::Connect)?;
        let mut c = Conn {
            r: BufReader::with_capacity(READ_BUFFER, stream),
            w,
            tags: 0,
            resp: Response::default(),
            exists: None,
        };
        let cmd = "greeting";
        wire::read_response(&mut c.r, &mut c.resp).map_err(|err| Failure::Wire { cmd, err })?;
        // RFC 3501 7.1: the greeting is an untagged OK (PREAUTH or BYE
        // are not what a LOGIN client can use).
        match wire::classify(&c.resp, "*") {
            Ok(Kind::Status(Status::Ok, _)) => {}
            _ => {
                return Err(Failure::Refused {
                    cmd,
                    text: c.resp.shown(),
                })
            }
        }
        stats.cmd(Cmd::Connect).record(t0.elapsed());
        Ok(c)
    }

    /// Connect, greeting and LOGIN as `user`.
    pub fn open(cfg: &Config, user: &str, stats: &mut Stats) -> Result<Conn, Failure> {
        let mut c = Conn::connect(cfg, stats)?;
        let args = format!("{} {}", wire::quoted(user), wire::quoted(&cfg.password));
        let t = Instant::now();
        c.command(stats, "LOGIN", &args, |_, _| Ok(()))?;
        stats.cmd(Cmd::Login).record(t.elapsed());
        Ok(c)
    }

    /// Sends `cmd args` with a new tag and reads responses up to the tagged
    /// one, handing each untagged response to `each`. EXPUNGE, a shrinking
    /// EXISTS, a continuation request, and BYE (but to LOGOUT) are errors.
    fn command(
        &mut self,
        stats: &mut Stats,
        cmd: &'static str,
        args: &str,
        mut each: impl FnMut(Kind<'_>, &Response) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        self.tags += 1;
        let tag = format!("a{}", self.tags);
        let mut line = Vec::with_capacity(tag.len() + cmd.len() + args.len() + 4);
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        line.extend_from_slice(cmd.as_bytes());
        if !args.is_empty() {
            line.push(b' ');
            line.extend_from_slice(args.as_bytes());
        }
        line.extend_from_slice(b"\r\n");
        let wire_err = |err| Failure::Wire { cmd, err };
        self.w
            .write_all(&line)
            .map_err(|e| wire_err(WireError::Io(e)))?;
        loop {
            wire::read_response(&mut self.r, &mut self.resp).map_err(wire_err)?;
            let kind = wire::classify(&self.resp, &tag).map_err(wire_err)?;
            match kind {
                Kind::Tagged(Status::Ok, _) => {
                    stats.commands += 1;
                    return Ok(());
                }
                Kind::Tagged(_, _) => {
                    stats.commands += 1;
                    return Err(Failure::Refused {
                        cmd,
                        text: self.resp.shown(),
                    });
                }
                Kind::Continuation => {
                    return Err(protocol(cmd, "a continuation request, no literal was sent"))
                }
                Kind::Status(Status::Bye, _) if cmd != "LOGOUT" => {
                    return Err(Failure::Bye {
                        cmd,
                        text: self.resp.shown(),
                    })
                }
                // RFC 3501 7.4.1: nothing here deletes a message.
                Kind::Expunge(n) => {
                    return Err(protocol(cmd, format!("unexpected EXPUNGE of {n}")))
                }
                Kind::Exists(n) => {
                    if self.exists.is_some_and(|e| n < e) {
                        return Err(protocol(cmd, format!("EXISTS fell to {n} without EXPUNGE")));
                    }
                    self.exists = Some(n);
                    each(kind, &self.resp)?;
                }
                _ => each(kind, &self.resp)?,
            }
        }
    }

    /// SELECT INBOX: returns the number of messages (RFC 3501 6.3.1).
    pub fn select(&mut self, stats: &mut Stats) -> Result<u32, Failure> {
        const CMD: &str = "SELECT";
        let t = Instant::now();
        self.exists = None;
        let mut uidvalidity = false;
        self.command(stats, CMD, "INBOX", |k, _| {
            if let Kind::Status(Status::Ok, text) = k {
                uidvalidity |= text.starts_with(b"[UIDVALIDITY ");
            }
            Ok(())
        })?;
        let Some(n) = self.exists else {
            return Err(protocol(CMD, "no EXISTS"));
        };
        if !uidvalidity {
            return Err(protocol(CMD, "no OK [UIDVALIDITY n]"));
        }
        if n == 0 {
            return Err(Failure::Empty);
        }
        stats.cmd(Cmd::Select).record(t.elapsed());
        Ok(n)
    }

    /// FETCH 1:* (FLAGS UID RFC822.SIZE): every message once, UIDs ascending.
    fn fetch_all(&mut self, stats: &mut Stats, view: &mut View, n: u32) -> Result<(), Failure> {
        const CMD: &str = "FETCH 1:*";
        let t = Instant::now();
        view.msgs.clear();
        view.msgs.resize(n as usize, None);
        let msgs = &mut view.msgs;
        self.command(stats, "FETCH", "1:* (FLAGS UID RFC822.SIZE)", |k, _| {
            let Kind::Fetch(seq, data) = k else {
                return Ok(());
            };
            let bad = |what: &str| protocol(CMD, format!("message {seq}: {what}"));
            let slot = msgs
                .get_mut((seq as usize).wrapping_sub(1))
                .ok_or_else(|| bad("beyond EXISTS"))?;
            if slot.is_some() {
                return Err(bad("listed twice"));
            }
            let (mut uid, mut size, mut flags) = (None, None, None);
            for (name, v) in
                wire::fetch_items(data).map_err(|err| Failure::Wire { cmd: CMD, err })?
            {
                match name.to_ascii_uppercase().as_slice() {
                    b"UID" => uid = v.number().and_then(|u| u32::try_from(u).ok()),
                    b"RFC822.SIZE" => size = v.number(),
                    b"FLAGS" => flags = Some(has_seen(&v).ok_or_else(|| bad("FLAGS not a list"))?),
                    _ => {}
                }
            }
            match (uid, size, flags) {
                (Some(uid), Some(size), Some(seen)) if uid > 0 => {
                    *slot = Some(Msg { uid, size, seen });
                    Ok(())
                }
                _ => Err(bad("without a valid UID, RFC822.SIZE or FLAGS")),
            }
        })?;
        let mut last = 0;
        for (i, m) in view.msgs.iter().enumerate() {
            let Some(m) = m else {
                return Err(protocol(CMD, format!("message {} not listed", i + 1)));
            };
            // RFC 3501 2.3.1.1: UIDs ascend with the sequence numbers.
            if m.uid <= last {
                return Err(protocol(CMD, format!("UID {} after UID {last}", m.uid)));
            }
            last = m.uid;
        }
        stats.cmd(Cmd::FetchAll).record(t.elapsed());
        Ok(())
    }

    /// FETCH seq (BODY.PEEK[]): the literal has exactly RFC822.SIZE octets,
    /// CRLF line ends, and the message stays unseen.
    fn fetch_body(&mut self, stats: &mut Stats, view: &View, seq: u32) -> Result<(), Failure> {
        const CMD: &str = "FETCH BODY.PEEK[]";
        let t = Instant::now();
        let known = *view
            .msg(seq)
            .ok_or_else(|| protocol(CMD, "no such message"))?;
        let mut got: Option<u64> = None;
        self.command(
            stats,
            "FETCH",
            &format!("{seq} (BODY.PEEK[])"),
            |k, resp| {
                let Kind::Fetch(s, data) = k else {
                    return Ok(());
                };
                let items =
                    wire::fetch_items(data).map_err(|err| Failure::Wire { cmd: CMD, err })?;
                for (name, v) in items {
                    match name.to_ascii_uppercase().as_slice() {
                        // RFC 3501 6.4.5: BODY.PEEK[] does not set \Seen.
                        b"FLAGS" if s == seq && !known.seen && has_seen(&v) == Some(true) => {
                            return Err(protocol(CMD, format!("message {seq} became \\Seen")));
                        }
                        b"BODY[]" if s == seq => {
                            let Value::Literal(i) = v else {
                                return Err(protocol(
                                    CMD,
                                    format!("BODY[] of {seq} is not a literal"),
                                ));
                            };
                            let body = resp.literal(i).unwrap_or_default();
                            if got.is_some() {
                                return Err(protocol(CMD, format!("BODY[] of {seq} sent twice")));
                            }
                            if bare_lf(body) {
                                return Err(protocol(
                                    CMD,
                                    format!("BODY[] of {seq} has a bare LF"),
                                ));
                            }
                            got = Some(body.len() as u64);
                        }
                        _ => {}
                    }
                }
                Ok(())
            },
        )?;
        let got = got.ok_or_else(|| protocol(CMD, format!("no BODY[] for message {seq}")))?;
        if got != known.size {
            return Err(Failure::SizeMismatch {
                msg: seq,
                listed: known.size,
                got,
            });
        }
        stats.octets += got;
        stats.cmd(Cmd::FetchBody).record(t.elapsed());
        Ok(())
    }

    /// STORE picks +FLAGS (\Seen): an untagged FETCH for a picked message
    /// must show \Seen (RFC 3501 6.4.6).
    fn store_seen(
        &mut self,
        stats: &mut Stats,
        view: &mut View,
        picks: &[u32],
    ) -> Result<(), Failure> {
        const CMD: &str = "STORE";
        let t = Instant::now();
        let set: Vec<String> = picks.iter().map(u32::to_string).collect();
        let args = format!("{} +FLAGS (\\Seen)", set.join(","));
        self.command(stats, CMD, &args, |k, _| {
            let Kind::Fetch(s, data) = k else {
                return Ok(());
            };
            if !picks.contains(&s) {
                return Ok(());
            }
            let items = wire::fetch_items(data).map_err(|err| Failure::Wire { cmd: CMD, err })?;
            for (name, v) in items {
                if name.eq_ignore_ascii_case(b"FLAGS") && has_seen(&v) != Some(true) {
                    return Err(protocol(CMD, format!("message {s}: FLAGS without \\Seen")));
                }
            }
            Ok(())
        })?;
        for &p in picks {
            if let Some(Some(m)) = view.msgs.get_mut(p as usize - 1) {
                m.seen = true;
            }
        }
        stats.cmd(Cmd::Store).record(t.elapsed());
        Ok(())
    }

    /// SEARCH UNSEEN: numbers within EXISTS; when the mailbox is ours
    /// alone, exactly the messages without \Seen.
    fn search_unseen(
        &mut self,
        stats: &mut Stats,
        view: &View,
        exact: bool,
    ) -> Result<(), Failure> {
        const CMD: &str = "SEARCH";
        let t = Instant::now();
        let mut found: Option<Vec<u32>> = None;
        self.command(stats, CMD, "UNSEEN", |k, _| {
            if let Kind::Search(data) = k {
                let nums =
                    wire::search_numbers(data).map_err(|err| Failure::Wire { cmd: CMD, err })?;
                found.get_or_insert_with(Vec::new).extend(nums);
            }
            Ok(())
        })?;
        // RFC 3501 6.4.4: the untagged SEARCH response is required.
        let mut found = found.ok_or_else(|| protocol(CMD, "no untagged SEARCH"))?;
        let n = view.msgs.len() as u32;
        if let Some(&bad) = found.iter().find(|&&m| m > n) {
            return Err(protocol(CMD, format!("message {bad} beyond EXISTS {n}")));
        }
        if exact {
            found.sort_unstable();
            found.dedup();
            let want: Vec<u32> = (1..=n)
                .filter(|&s| view.msg(s).is_some_and(|m| !m.seen))
                .collect();
            if found != want {
                return Err(protocol(
                    CMD,
                    format!(
                        "UNSEEN found {} messages, the flags say {} are unseen",
                        found.len(),
                        want.len()
                    ),
                ));
            }
        }
        stats.cmd(Cmd::Search).record(t.elapsed());
        Ok(())
    }

    pub fn noop(&mut self, stats: &mut Stats) -> Result<(), Failure> {
        let t = Instant::now();
        self.command(stats, "NOOP", "", |_, _| Ok(()))?;
        stats.cmd(Cmd::Noop).record(t.elapsed());
        Ok(())
    }

    /// LOGOUT: BYE, then the tagged OK (RFC 3501 6.1.3).
    pub fn logout(&mut self, stats: &mut Stats) -> Result<(), Failure> {
        let t = Instant::now();
        let mut bye = false;
        self.command(stats, "LOGOUT", "", |k, _| {
            bye |= matches!(k, Kind::Status(Status::Bye, _));
            Ok(())
        })?;
        if !bye {
            return Err(protocol("LOGOUT", "no untagged BYE before the OK"));
        }
        stats.cmd(Cmd::Logout).record(t.elapsed());
        Ok(())
    }
}

/// Whether a FLAGS list holds \Seen; None when `v` is not a list.
fn has_seen(v: &Value<'_>) -> Option<bool> {
    let Value::List(flags) = v else {
        return None;
    };
    Some(
        flags
            .iter()
            .any(|f| matches!(f, Value::Atom(a) if a.eq_ignore_ascii_case(b"\\Seen"))),
    )
}

/// True when `body` has a LF not preceded by CR (IMAP sends messages with
/// CRLF line ends, RFC 3501 2.3.4 and 4.3).
fn bare_lf(body: &[u8]) -> bool {
    body.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || body[i - 1] != b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use posthorn_bench::stats::Kind as _;

    /// How the fake server misbehaves.
    #[derive(Clone, Copy, Default)]
    struct Faults {
        /// RFC822.SIZE of message 2 one octet more than its body.
        wrong_size: bool,
        /// BODY.PEEK[] sets \Seen.
        peek_sets_seen: bool,
        /// SEARCH UNSEEN leaves out the last unseen message.
        short_search: bool,
        /// LOGOUT without BYE.
        no_bye: bool,
        /// Bodies with bare LF line ends.
        bare_lf: bool,
    }

    /// Seen flags per user, kept across sessions as a server does.
    type Flags = Arc<Mutex<HashMap<String, Vec<bool>>>>;

    fn body(i: usize, lf: bool) -> Vec<u8> {
        let eol = if lf { "\n" } else { "\r\n" };
        let mut m = format!("Subject: m{i}{eol}{eol}").into_bytes();
        for k in 0..=i * 7 {
            m.extend_from_slice(format!("line {k} of message {i} {{3}}{eol}").as_bytes());
        }
        m
    }

    /// A fake IMAP server of 5 messages per user; returns its port.
    fn fake_server(f: Faults) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let flags: Flags = Arc::default();
        thread::spawn(move || {
            for s in l.incoming() {
                let s = s.unwrap();
                let flags = flags.clone();
                thread::spawn(move || serve(s, f, &flags));
            }
        });
        port
    }

    fn serve(s: TcpStream, f: Faults, flags: &Flags) {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let bodies: Vec<Vec<u8>> = (1..=5).map(|i| body(i, f.bare_lf)).collect();
        let mut user = String::new();
        let _ = w.write_all(b"* OK fake ready\r\n");
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut it = line.trim_end().splitn(3, ' ');
            let (tag, cmd, args) = (
                it.next().unwrap_or(""),
                it.next().unwrap_or("").to_ascii_uppercase(),
                it.next().unwrap_or(""),
            );
            let mut out = String::new();
            let mut fl = flags.lock().unwrap();
            match cmd.as_str() {
                "LOGIN" => {
                    user = args.split(' ').next().unwrap_or("").to_string();
                    fl.entry(user.clone()).or_insert_with(|| vec![false; 5]);
                }
                "SELECT" => out.push_str(
                    "* FLAGS (\\Seen)\r\n* 5 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 7] ok\r\n",
                ),
                "FETCH" if args.starts_with("1:*") => {
                    for (i, b) in bodies.iter().enumerate() {
                        let size = b.len() + usize::from(f.wrong_size && i == 1);
                        let seen = if fl[&user][i] { "\\Seen" } else { "" };
                        out.push_str(&format!(
                            "* {} FETCH (UID {} RFC822.SIZE {size} FLAGS ({seen}))\r\n",
                            i + 1,
                            i + 11
                        ));
                    }
                }
                "FETCH" => {
                    let n: usize = args.split(' ').next().unwrap().parse().unwrap();
                    let mut head = format!("* {n} FETCH (");
                    if f.peek_sets_seen {
                        fl.get_mut(&user).unwrap()[n - 1] = true;
                        head.push_str("FLAGS (\\Seen) ");
                    }
                    let b = &bodies[n - 1];
                    let _ = w.write_all(format!("{head}BODY[] {{{}}}\r\n", b.len()).as_bytes());
                    let _ = w.write_all(b);
                    out.push_str(")\r\n");
                }
                "STORE" => {
                    let set = args.split(' ').next().unwrap();
                    for n in set.split(',') {
                        let n: usize = n.parse().unwrap();
                        fl.get_mut(&user).unwrap()[n - 1] = true;
                        out.push_str(&format!("* {n} FETCH (FLAGS (\\Seen))\r\n"));
                    }
                }
                "SEARCH" => {
                    let mut unseen: Vec<String> = (1..=5)
                        .filter(|&n| !fl[&user][n - 1])
                        .map(|n| n.to_string())
                        .collect();
                    if f.short_search {
                        unseen.pop();
                    }
                    out.push_str(
                        &format!("* SEARCH {}\r\n", unseen.join(" ")).replace(" \r", "\r"),
                    );
                }
                "LOGOUT" if !f.no_bye => out.push_str("* BYE bye\r\n"),
                _ => {}
            }
            drop(fl);
            out.push_str(&format!("{tag} OK done\r\n"));
            if w.write_all(out.as_bytes()).is_err() || cmd == "LOGOUT" {
                return;
            }
        }
    }

    fn config(port: u16) -> Config {
        Config {
            port,
            clients: 2,
            sessions: Some(12),
            users: 3,
            password: "pw".into(),
            max_failures: 12,
            quiet_errors: true,
            ..Config::default()
        }
    }

    fn run(cfg: Config) -> Stats {
        let shared = Shared::new(cfg, Instant::now());
        let mut total = Stats::default();
        thread::scope(|s| {
            let hs: Vec<_> = (0..shared.cfg.clients)
                .map(|i| {
                    let sh = &shared;
                    s.spawn(move || run_client(sh, i as u64))
                })
                .collect();
            for h in hs {
                total.merge(&h.join().unwrap().stats);
            }
        });
        total
    }

    #[test]
    fn sessions_against_a_correct_server() {
        let st = run(config(fake_server(Faults::default())));
        assert_eq!(
            (st.ok_sessions, st.failed_sessions),
            (12, 0),
            "{}",
            st.errors_line()
        );
        // LOGIN SELECT FETCH 3xFETCH STORE SEARCH NOOP LOGOUT.
        assert_eq!(st.commands, 12 * 10);
        assert_eq!(st.cmd_ref(Cmd::FetchBody).count(), 36);
        assert_eq!(st.cmd_ref(Cmd::Connect).count(), 12);
        for &k in ErrorKind::ALL {
            assert_eq!(st.errors(k), 0, "{}", k.key());
        }
        assert!(st.octets > 0);
    }

    #[test]
    fn long_sessions_count_rounds() {
        let mut cfg = config(fake_server(Faults::default()));
        cfg.mode = Mode::Long;
        let st = run(cfg);
        assert_eq!(
            (st.ok_sessions, st.failed_sessions),
            (12, 0),
            "{}",
            st.errors_line()
        );
        // Two clients: LOGIN and LOGOUT once each, 8 commands a round.
        assert_eq!(st.commands, 12 * 8 + 2 * 2);
        assert_eq!(st.cmd_ref(Cmd::Login).count(), 2);
    }

    #[test]
    fn each_fault_fails_sessions_under_its_kind() {
        let d = Faults::default;
        // (fault, bodies fetched per session, the kind it must count as).
        // One body a session for SEARCH: the first session of each mailbox
        // then leaves unseen messages for the short answer to leave out.
        for (f, fetch, kind) in [
            (
                Faults {
                    wrong_size: true,
                    ..d()
                },
                5,
                ErrorKind::SizeMismatch,
            ),
            (
                Faults {
                    peek_sets_seen: true,
                    ..d()
                },
                5,
                ErrorKind::Protocol,
            ),
            (
                Faults {
                    short_search: true,
                    ..d()
                },
                1,
                ErrorKind::Protocol,
            ),
            (
                Faults {
                    no_bye: true,
                    ..d()
                },
                3,
                ErrorKind::Protocol,
            ),
            (
                Faults {
                    bare_lf: true,
                    ..d()
                },
                3,
                ErrorKind::Protocol,
            ),
        ] {
            let mut cfg = config(fake_server(f));
            cfg.max_failures = 3;
            cfg.fetch = fetch;
            let st = run(cfg);
            assert!(st.failed_sessions >= 3, "{kind:?}: {}", st.errors_line());
            assert_eq!(
                st.errors(kind),
                st.failed_sessions,
                "{kind:?}: {}",
                st.errors_line()
            );
        }
    }
}
