//! Transcript tests: the two POP3 sessions against C:/S: fixture files.
//!
//! tests/transcripts/login/*.txt run the login session (`login::LoginSession`)
//! with a small in-memory auth service; tests/transcripts/session/*.txt run
//! the transaction session (`session::Session`) over an in-memory maildrop.
//! Both are the real sessions; only the caller around them is the runner.
//!
//! Settings, at the top of a file (anything else starting with `@` is an
//! error, so a misspelt setting cannot silently test the defaults):
//!
//! - login: `@cleartext` (auth_allow_cleartext), `@no-tls` (no STLS),
//!   `@tls` (TLS from the first byte), `@client ADDR` (default 192.0.2.1;
//!   ours is 192.0.2.2), `@apop TIMESTAMP` (APOP on, with this greeting
//!   timestamp), `@failures N`, `@bad N`, `@rate N` (commands per window; the
//!   window is 100 s, so pauses show as `P: 100s`), `@delay SECS` (auth's
//!   failure delay, default 2), `@user NAME PASSWORD` (users auth accepts:
//!   bob@example.test/secret always; for APOP only RFC 1939's example,
//!   mrose with digest c4c9334bac560ecc979e58001b3e22fb).
//! - session: `@user NAME` (default bob@example.test), `@message UIDL TEXT`
//!   (a message; TEXT with escapes; its size is the CRLF size, as a
//!   Maildir's ,W= records it), `@size N` (the last message's listed size
//!   instead), `@bad N`, `@trickle N` (readers return at most N octets per
//!   read), `@read-fail MSG N` (message MSG's reader fails after N octets),
//!   `@open-fail MSG gone|error` (repeatable), `@leftover TEXT` (input pipelined behind
//!   the login).
//!
//! Conversation lines: `C:` lines are sent with CRLF appended, `R:` lines are
//! raw bytes (escapes \r \n \t \0 \\ \xNN) sent as they are; consecutive client
//! lines are sent in one piece (pipelining). `S:` lines are the exact server
//! lines expected next (escapes as in R:; a trailing `*` matches any rest).
//! Among them, what the session asked of its caller: `P: D` a pause (Debug
//! form such as `2s`; the runner resumes at once), `T:` a TLS handshake (the
//! runner completes it), `A: MECH authzid=<..> user=<..> pass=<..>` an auth
//! request (`challenge=<..>` added for APOP; answered from the users, or
//! TempFail after `@tempfail`), `L: USER leftover=<..>` the hand-off after
//! login (escaped), `D: N N` QUIT's deletion (1-based; fails after
//! `@commit-fail`). `X:` says the session is closed, `G: LINE` checks the
//! log line it would write now (login: `N secs` as `S secs`).
//!
//! Every transcript runs twice: once with each client piece in one call,
//! once byte by byte. The runner answers a request at the end of the piece
//! (bytes after it reach the waiting session, as they could from a socket),
//! and both runs must give the same lines.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use posthorn_pop3d::login::{AuthOutcome, Connection, Credentials, LoginConfig, LoginSession};
use posthorn_pop3d::session::{self, Maildrop, MessageInfo, Session, SessionConfig};

/// Markers among the server lines start with a NUL, which no reply holds.
const MARK: u8 = 0;

/// Why a transcript could not be set up.
#[derive(Debug)]
enum SetupError {
    /// An `@` line the runner does not know.
    UnknownSetting(String),
    /// A setting whose value does not parse.
    BadValue(String),
    Io(io::Error),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::UnknownSetting(l) => write!(f, "unknown setting {l:?}"),
            SetupError::BadValue(l) => write!(f, "bad value in {l:?}"),
            SetupError::Io(e) => write!(f, "reading the transcript: {e}"),
        }
    }
}

impl std::error::Error for SetupError {}

fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = it.by_ref().take(2).collect();
                let hex = std::str::from_utf8(&hex).expect("ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("\\xNN"));
            }
            Some(o) => panic!("bad escape \\{}", o as char),
            None => panic!("trailing backslash"),
        }
    }
    out
}

/// Bytes for messages: printable ASCII as is, the rest escaped.
fn escape(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0 => s.push_str("\\0"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

fn show(line: &[u8]) -> String {
    match line.split_first() {
        Some((&MARK, rest)) => String::from_utf8_lossy(rest).into_owned(),
        _ => format!("S: {}", escape(line)),
    }
}

fn marker(text: &str) -> Vec<u8> {
    let mut m = vec![MARK];
    m.extend_from_slice(text.as_bytes());
    m
}

fn matches(expected: &[u8], got: &[u8]) -> bool {
    match expected.strip_suffix(b"*") {
        Some(prefix) => got.starts_with(prefix),
        None => expected == got,
    }
}

/// `N secs` with the number replaced, for log lines whose seconds depend
/// on the clock.
fn secs_free(line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let secs = words.get(i + 1).is_some_and(|n| n.starts_with("secs"));
        if secs && w.bytes().all(|b| b.is_ascii_digit()) {
            out.push("S");
        } else {
            out.push(w);
        }
    }
    out.join(" ")
}

/// Server output and caller events as the transcript sees them.
#[derive(Default)]
struct Got {
    /// Output not yet cut into lines.
    raw: Vec<u8>,
    lines: Vec<Vec<u8>>,
}

impl Got {
    fn output(&mut self, out: &mut Vec<u8>) {
        self.raw.append(out);
    }

    /// Cut the output into lines; it must end at a line end.
    fn flush(&mut self) {
        if self.raw.is_empty() {
            return;
        }
        assert!(
            self.raw.ends_with(b"\r\n"),
            "output does not end with CRLF: {}",
            escape(&self.raw)
        );
        let raw = std::mem::take(&mut self.raw);
        let mut rest = &raw[..];
        while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
            self.lines.push(rest[..i].to_vec());
            rest = &rest[i + 2..];
        }
    }

    fn mark(&mut self, text: &str) {
        self.flush();
        self.lines.push(marker(text));
    }

    fn take(&mut self) -> Vec<Vec<u8>> {
        self.flush();
        std::mem::take(&mut self.lines)
    }
}

/// What a runner drives; the transcript loop is shared.
trait Driver {
    /// Send one client piece (whole or byte by byte), then do what the
    /// session asked.
    fn feed(&mut self, piece: &[u8], bytewise: bool);
    fn got(&mut self) -> &mut Got;
    fn closed(&self) -> bool;
    /// A directive among the conversation lines (`@tempfail`, `@commit-fail`).
    fn directive(&mut self, line: &str) -> bool;
    /// The log line the session would write now.
    fn log_line(&self) -> String;
}

/// Feed a piece; the first step other than `continue` is returned (later
/// input reaches the waiting session, which holds it).
fn feed_steps<S, F>(
    piece: &[u8],
    bytewise: bool,
    is_continue: fn(&S) -> bool,
    mut input: F,
) -> Option<S>
where
    F: FnMut(&[u8]) -> S,
{
    let mut first = None;
    let pieces: Vec<&[u8]> = if bytewise {
        piece.chunks(1).collect()
    } else {
        vec![piece]
    };
    for p in pieces {
        let step = input(p);
        if first.is_none() && !is_continue(&step) {
            first = Some(step);
        }
    }
    first
}

// ---- the login session ----

struct LoginRun {
    s: LoginSession,
    users: Vec<(String, String)>,
    delay: Duration,
    tempfail_next: bool,
    closed: bool,
    got: Got,
}

/// RFC 1939 7's APOP example: this user and digest (of the example
/// timestamp and "tanstaaf") are the one APOP login the runner's auth takes.
const APOP_USER: &str = "mrose";
const APOP_DIGEST: &str = "c4c9334bac560ecc979e58001b3e22fb";

impl LoginRun {
    fn answer(&mut self, c: &Credentials) -> AuthOutcome {
        if std::mem::take(&mut self.tempfail_next) {
            return AuthOutcome::TempFail;
        }
        let ok = match c.apop_challenge {
            Some(_) => c.user == APOP_USER && c.password == APOP_DIGEST,
            None => self
                .users
                .iter()
                .any(|(u, p)| *u == c.user && *p == c.password),
        };
        if ok {
            AuthOutcome::Ok {
                user: c.user.clone(),
            }
        } else {
            AuthOutcome::Failed { delay: self.delay }
        }
    }

    fn act(&mut self, mut step: posthorn_pop3d::login::Step) {
        use posthorn_pop3d::login::Step;
        loop {
            self.got.output(&mut self.s.out);
            step = match step {
                Step::Continue => return,
                Step::Close => {
                    self.closed = true;
                    return;
                }
                Step::Pause(d) => {
                    assert!(self.s.busy(), "busy while paused");
                    self.got.mark(&format!("P: {d:?}"));
                    self.s.resume()
                }
                Step::StartTls => {
                    assert!(self.s.busy(), "busy during the handshake");
                    self.got.mark("T:");
                    self.s.tls_started()
                }
                Step::Authenticate(c) => {
                    assert!(self.s.busy(), "busy while authenticating");
                    let mut a = format!(
                        "A: {} authzid=<{}> user=<{}> pass=<{}>",
                        c.mechanism.name(),
                        c.authzid,
                        c.user,
                        c.password
                    );
                    if let Some(ch) = &c.apop_challenge {
                        a.push_str(&format!(" challenge=<{ch}>"));
                    }
                    self.got.mark(&a);
                    let outcome = self.answer(&c);
                    self.s.auth_result(outcome)
                }
                Step::LoggedIn { user, leftover } => {
                    self.got
                        .mark(&format!("L: {user} leftover=<{}>", escape(&leftover)));
                    self.closed = true;
                    return;
                }
            };
        }
    }
}

impl Driver for LoginRun {
    fn feed(&mut self, piece: &[u8], bytewise: bool) {
        use posthorn_pop3d::login::Step;
        if self.closed {
            return;
        }
        let s = &mut self.s;
        let first = feed_steps(piece, bytewise, |st| *st == Step::Continue, |p| s.input(p));
        self.act(first.unwrap_or(Step::Continue));
    }
    fn got(&mut self) -> &mut Got {
        &mut self.got
    }
    fn closed(&self) -> bool {
        self.closed
    }
    fn directive(&mut self, line: &str) -> bool {
        if line == "@tempfail" {
            self.tempfail_next = true;
            return true;
        }
        false
    }
    fn log_line(&self) -> String {
        let line = self
            .s
            .disconnect_line()
            .or_else(|| self.s.login_line(Some(1234)))
            .unwrap_or_default();
        secs_free(&line)
    }
}

fn login_run(lines: &[&str]) -> Result<(LoginRun, usize), SetupError> {
    let mut cfg = LoginConfig {
        greeting: "posthorn ready.".into(),
        allow_cleartext: false,
        tls_available: true,
        max_auth_failures: 3,
        max_bad_commands: 3,
        command_limit: 50,
        command_window: Duration::from_secs(100),
    };
    let mut conn = Connection {
        rip: Some([192, 0, 2, 1].into()),
        lip: Some([192, 0, 2, 2].into()),
        tls: false,
        apop_challenge: None,
    };
    let mut users = vec![("bob@example.test".to_string(), "secret".to_string())];
    let mut delay = Duration::from_secs(2);
    let first = settings(lines, |key, value, bad| {
        let number = |v: &str| v.parse::<u32>().map_err(|_| bad());
        match key {
            "@cleartext" => cfg.allow_cleartext = true,
            "@no-tls" => cfg.tls_available = false,
            "@tls" => conn.tls = true,
            "@client" => conn.rip = Some(value.parse().map_err(|_| bad())?),
            "@apop" if !value.is_empty() => conn.apop_challenge = Some(value.to_string()),
            "@failures" => cfg.max_auth_failures = number(value)?,
            "@bad" => cfg.max_bad_commands = number(value)?,
            "@rate" => cfg.command_limit = number(value)?,
            "@delay" => delay = Duration::from_secs(number(value)?.into()),
            "@user" => {
                let (u, p) = value.split_once(' ').ok_or_else(bad)?;
                users.push((u.to_string(), p.to_string()));
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let mut s = LoginSession::new(Arc::new(cfg), conn);
    s.greet();
    let mut run = LoginRun {
        s,
        users,
        delay,
        tempfail_next: false,
        closed: false,
        got: Got::default(),
    };
    run.got.output(&mut run.s.out);
    Ok((run, first))
}

// ---- the transaction session ----

/// A maildrop in memory.
#[derive(Default)]
struct MemDrop {
    list: Vec<MessageInfo>,
    bodies: Vec<Vec<u8>>,
    trickle: Option<usize>,
    read_fail: Option<(usize, usize)>,
    open_fail: Vec<(usize, io::ErrorKind)>,
    deleted: Vec<usize>,
    /// Reads of message bytes (to see that streaming happened in pieces).
    reads: Arc<std::sync::atomic::AtomicUsize>,
}

/// A message reader that can trickle and fail.
struct MemReader {
    data: Vec<u8>,
    at: usize,
    max: usize,
    fail_at: Option<usize>,
    reads: Arc<std::sync::atomic::AtomicUsize>,
}

impl Read for MemReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut end = self.data.len().min(self.at + self.max.min(buf.len()));
        if let Some(f) = self.fail_at {
            if self.at >= f {
                return Err(io::Error::other("injected read error"));
            }
            end = end.min(f);
        }
        let n = end - self.at;
        buf[..n].copy_from_slice(&self.data[self.at..end]);
        self.at = end;
        Ok(n)
    }
}

impl Maildrop for MemDrop {
    fn messages(&self) -> &[MessageInfo] {
        &self.list
    }
    fn open(&mut self, n: usize) -> io::Result<Box<dyn Read + Send>> {
        if let Some(&(_, kind)) = self.open_fail.iter().find(|f| f.0 == n) {
            return Err(io::Error::new(kind, "injected open error"));
        }
        Ok(Box::new(MemReader {
            data: self.bodies[n].clone(),
            at: 0,
            max: self.trickle.unwrap_or(usize::MAX),
            fail_at: self.read_fail.filter(|f| f.0 == n).map(|f| f.1),
            reads: Arc::clone(&self.reads),
        }))
    }
    fn delete(&mut self, ns: &[usize]) -> io::Result<()> {
        self.deleted.extend_from_slice(ns);
        Ok(())
    }
}

/// A Maildir's virtual size: LF counted as CRLF (a CR before it kept).
fn crlf_size(body: &[u8]) -> u64 {
    let bare_lf = body
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || body[i - 1] != b'\r'))
        .count();
    (body.len() + bare_lf) as u64
}

struct SessionRun {
    s: Session,
    drop: MemDrop,
    fail_commit: bool,
    closed: bool,
    got: Got,
}

impl SessionRun {
    fn act(&mut self, mut step: session::Step) {
        use session::Step;
        loop {
            self.got.output(&mut self.s.out);
            step = match step {
                Step::Continue => return,
                Step::Close => {
                    self.closed = true;
                    return;
                }
                Step::Produce => {
                    assert!(self.s.busy(), "busy while producing");
                    let mut out = Vec::new();
                    let step = self.s.produce(&mut out, &mut self.drop);
                    assert!(self.s.out.is_empty(), "produce leaves nothing in out");
                    assert!(
                        out.len() <= 2 * session::CHUNK + 4096,
                        "one chunk at a time"
                    );
                    self.got.output(&mut out);
                    step
                }
                Step::Commit(ns) => {
                    assert!(self.s.busy(), "busy while committing");
                    let shown: Vec<String> = ns.iter().map(|n| (n + 1).to_string()).collect();
                    self.got.mark(&format!("D: {}", shown.join(" ")));
                    let result = if std::mem::take(&mut self.fail_commit) {
                        Err(io::Error::other("injected delete error"))
                    } else {
                        self.drop.delete(&ns)
                    };
                    self.s.commit_done(result)
                }
            };
        }
    }
}

impl Driver for SessionRun {
    fn feed(&mut self, piece: &[u8], bytewise: bool) {
        use session::Step;
        if self.closed {
            return;
        }
        let (s, drop) = (&mut self.s, &mut self.drop);
        let first = feed_steps(
            piece,
            bytewise,
            |st| *st == Step::Continue,
            |p| s.input(p, drop),
        );
        self.act(first.unwrap_or(Step::Continue));
    }
    fn got(&mut self) -> &mut Got {
        &mut self.got
    }
    fn closed(&self) -> bool {
        self.closed
    }
    fn directive(&mut self, line: &str) -> bool {
        if line == "@commit-fail" {
            self.fail_commit = true;
            return true;
        }
        false
    }
    fn log_line(&self) -> String {
        self.s.disconnect_line()
    }
}

fn session_run(lines: &[&str]) -> Result<(SessionRun, usize), SetupError> {
    let mut cfg = SessionConfig {
        max_bad_commands: 20,
    };
    let mut user = "bob@example.test".to_string();
    let mut drop = MemDrop::default();
    let mut leftover = Vec::new();
    let first = settings(lines, |key, value, bad| {
        let number = |v: &str| v.parse::<usize>().map_err(|_| bad());
        match key {
            "@user" if !value.is_empty() => user = value.to_string(),
            "@message" => {
                let (uidl, text) = value.split_once(' ').unwrap_or((value, ""));
                let body = unescape(text);
                drop.list.push(MessageInfo {
                    size: crlf_size(&body),
                    uidl: uidl.to_string(),
                });
                drop.bodies.push(body);
            }
            "@size" => {
                let size = value.parse::<u64>().map_err(|_| bad())?;
                drop.list.last_mut().ok_or_else(bad)?.size = size;
            }
            "@bad" => cfg.max_bad_commands = value.parse().map_err(|_| bad())?,
            "@trickle" => drop.trickle = Some(number(value)?).filter(|&n| n > 0),
            "@read-fail" => {
                let (m, n) = value.split_once(' ').ok_or_else(bad)?;
                drop.read_fail = Some((number(m)?.checked_sub(1).ok_or_else(bad)?, number(n)?));
            }
            "@open-fail" => {
                let (m, kind) = value.split_once(' ').ok_or_else(bad)?;
                let kind = match kind {
                    "gone" => io::ErrorKind::NotFound,
                    "error" => io::ErrorKind::PermissionDenied,
                    _ => return Err(bad()),
                };
                drop.open_fail
                    .push((number(m)?.checked_sub(1).ok_or_else(bad)?, kind));
            }
            "@leftover" => leftover = unescape(value),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let (s, step) = Session::start(Arc::new(cfg), user, &leftover, &mut drop);
    let mut run = SessionRun {
        s,
        drop,
        fail_commit: false,
        closed: false,
        got: Got::default(),
    };
    run.act(step);
    Ok((run, first))
}

// ---- the shared loop ----

/// Apply the settings at the top of a transcript with `apply(key, value,
/// bad)`, which says whether it knew the key; returns the first line that
/// is not a setting.
fn settings<F>(lines: &[&str], mut apply: F) -> Result<usize, SetupError>
where
    F: FnMut(&str, &str, &dyn Fn() -> SetupError) -> Result<bool, SetupError>,
{
    let mut i = 0;
    while let Some(&l) = lines.get(i) {
        if l.is_empty() || l.starts_with('#') {
            i += 1;
            continue;
        }
        if !l.starts_with('@') || matches!(l, "@tempfail" | "@commit-fail") {
            break;
        }
        let (key, value) = l.split_once(' ').unwrap_or((l, ""));
        let bad = || SetupError::BadValue(l.to_string());
        if !apply(key, value, &bad)? {
            return Err(SetupError::UnknownSetting(l.to_string()));
        }
        i += 1;
    }
    Ok(i)
}

fn run_text(name: &str, text: &str, bytewise: bool) -> Result<Vec<String>, SetupError> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut run, first): (Box<dyn Driver>, usize) = if name.contains("login") {
        let (r, f) = login_run(&lines)?;
        (Box::new(r), f)
    } else {
        let (r, f) = session_run(&lines)?;
        (Box::new(r), f)
    };
    let where_ = |n: usize| {
        format!(
            "{name}:{}{}",
            n + 1,
            if bytewise { " (byte by byte)" } else { "" }
        )
    };
    let mut transcript = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut expected: Vec<(usize, Vec<u8>)> = Vec::new();
    let check = |run: &mut Box<dyn Driver>,
                 expected: &mut Vec<(usize, Vec<u8>)>,
                 transcript: &mut Vec<String>| {
        let got = run.got().take();
        for (k, g) in got.iter().enumerate() {
            let Some((n, e)) = expected.get(k) else {
                panic!(
                    "{}: unexpected {} (after {} expected)",
                    where_(expected.last().map_or(0, |x| x.0)),
                    show(g),
                    expected.len()
                );
            };
            assert!(
                matches(e, g),
                "{}: expected {}, got {}",
                where_(*n),
                show(e),
                show(g)
            );
        }
        if got.len() < expected.len() {
            let (n, e) = &expected[got.len()];
            panic!("{}: expected {}, got nothing more", where_(*n), show(e));
        }
        transcript.extend(got.iter().map(|g| show(g)));
        expected.clear();
    };
    let flush = |run: &mut Box<dyn Driver>, pending: &mut Vec<u8>| {
        if !pending.is_empty() {
            let p = std::mem::take(pending);
            run.feed(&p, bytewise);
        }
    };
    for (n, line) in lines.iter().enumerate().skip(first) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "C:" | "R:" => {
                if !expected.is_empty() {
                    check(&mut run, &mut expected, &mut transcript);
                }
                if tag == "C:" {
                    pending.extend_from_slice(rest.as_bytes());
                    pending.extend_from_slice(b"\r\n");
                } else {
                    pending.extend(unescape(rest));
                }
            }
            "S:" => {
                flush(&mut run, &mut pending);
                expected.push((n, unescape(rest)));
            }
            "P:" | "T:" | "A:" | "L:" | "D:" => {
                flush(&mut run, &mut pending);
                expected.push((n, marker(line)));
            }
            "X:" => {
                flush(&mut run, &mut pending);
                check(&mut run, &mut expected, &mut transcript);
                assert!(run.closed(), "{}: session should be closed", where_(n));
            }
            "G:" => {
                flush(&mut run, &mut pending);
                check(&mut run, &mut expected, &mut transcript);
                assert_eq!(run.log_line(), rest, "{}: log line", where_(n));
            }
            _ if line.starts_with('@') => {
                flush(&mut run, &mut pending);
                if !run.directive(line) {
                    return Err(SetupError::UnknownSetting(line.to_string()));
                }
            }
            _ => panic!("{}: bad transcript line {line:?}", where_(n)),
        }
    }
    flush(&mut run, &mut pending);
    check(&mut run, &mut expected, &mut transcript);
    Ok(transcript)
}

fn run_dir(sub: &str, at_least: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/transcripts")
        .join(sub);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= at_least,
        "{sub}: {} transcripts",
        files.len()
    );
    for f in files {
        let text = std::fs::read_to_string(&f)
            .map_err(SetupError::Io)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let name = format!(
            "{sub}/{}",
            f.file_name().unwrap_or_default().to_string_lossy()
        );
        let run =
            |bytewise| run_text(&name, &text, bytewise).unwrap_or_else(|e| panic!("{name}: {e}"));
        let whole = run(false);
        let bytewise = run(true);
        assert_eq!(
            whole, bytewise,
            "{name}: byte-by-byte feeding changed the result"
        );
    }
}

#[test]
fn login_transcripts() {
    run_dir("login", 10);
}

#[test]
fn session_transcripts() {
    run_dir("session", 8);
}

/// The runner refuses what it does not understand instead of running the
/// transcript with defaults, and a wrong expectation fails the run.
#[test]
fn runner_refuses_and_fails() {
    let refused: &[(&str, &str, &str)] = &[
        ("login", "@frobnicate\nS: +OK *\n", "UnknownSetting"),
        ("login", "S: +OK *\n@cleartext\n", "UnknownSetting"),
        ("login", "@failures many\nS: +OK *\n", "BadValue"),
        ("login", "@client 999.1.1.1\nS: +OK *\n", "BadValue"),
        ("session", "@message\n@open-fail 1 sometimes\n", "BadValue"),
        ("session", "@size 10\n", "BadValue"),
        ("session", "@tempfail\n", "UnknownSetting"),
    ];
    for (kind, text, want) in refused {
        match run_text(kind, text, false) {
            Ok(_) => panic!("{text:?}: accepted"),
            Err(e) => assert!(format!("{e:?}").starts_with(want), "{text:?}: {e:?}"),
        }
    }
    let wrong: &[(&str, &str)] = &[
        ("login", "S: +OK posthorn ready.\nS: +OK\n"),
        ("login", "S: -ERR *\n"),
        ("login", "S: +OK *\nC: USER bob\nS: +OK\n"),
        ("login", "@cleartext\nS: +OK *\nC: USER bob@example.test\nC: PASS x\nS: +OK\nA: PLAIN authzid=<> user=<bob@example.test> pass=<x>\n"),
        ("login", "S: +OK *\nX:\n"),
        ("login", "S: +OK *\nG: Login: user=<>\n"),
        ("session", "S: +OK Logged in.\nC: STAT\nS: +OK 1 0\n"),
    ];
    for (kind, text) in wrong {
        let r = std::panic::catch_unwind(|| run_text(kind, text, false));
        assert!(r.is_err(), "{text:?} should fail");
    }
    assert_eq!(
        run_text("login", "# comment\n\n@cleartext\nS: +OK *\n", false).expect("runs"),
        ["S: +OK posthorn ready."]
    );
}

/// A message larger than several chunks streams in pieces (never the whole
/// message in one `produce`), byte-exact, with LIST's size equal to the
/// octets before byte-stuffing.
#[test]
fn big_message_streams_in_chunks() {
    let mut body = Vec::new();
    let mut i = 0;
    while body.len() < 5 * session::CHUNK {
        if i % 7 == 0 {
            body.extend_from_slice(b".");
        }
        body.extend_from_slice(format!("line {i} of a long message\n").as_bytes());
        i += 1;
    }
    let mut drop = MemDrop::default();
    drop.list.push(MessageInfo {
        size: crlf_size(&body),
        uidl: "big".into(),
    });
    drop.bodies.push(body.clone());
    let cfg = Arc::new(SessionConfig {
        max_bad_commands: 20,
    });
    let (mut s, step) = Session::start(
        cfg,
        "bob".into(),
        b"LIST 1\r\nRETR 1\r\nQUIT\r\n",
        &mut drop,
    );
    assert_eq!(step, session::Step::Produce);
    let head = String::from_utf8(std::mem::take(&mut s.out)).expect("ASCII");
    let size = crlf_size(&body);
    assert_eq!(
        head,
        format!("+OK Logged in.\r\n+OK 1 {size}\r\n+OK {size} octets\r\n")
    );
    let mut wire = Vec::new();
    let mut calls = 0;
    loop {
        let mut out = Vec::new();
        let step = s.produce(&mut out, &mut drop);
        calls += 1;
        assert!(out.len() <= 2 * session::CHUNK + 64);
        wire.extend_from_slice(&out);
        if step != session::Step::Produce {
            assert_eq!(step, session::Step::Close);
            break;
        }
    }
    assert!(calls >= 5, "{calls} produce calls");
    let end = b".\r\n+OK Logging out.\r\n";
    assert!(wire.ends_with(end));
    let sent = &wire[..wire.len() - end.len()];
    // Un-stuff and compare with the CRLF form.
    let mut unstuffed = Vec::new();
    let mut start = true;
    let mut k = 0;
    while k < sent.len() {
        if start && sent[k] == b'.' {
            k += 1;
        }
        unstuffed.push(sent[k]);
        start = sent[k] == b'\n';
        k += 1;
    }
    assert_eq!(unstuffed.len() as u64, size);
    let crlf: Vec<u8> = body
        .iter()
        .flat_map(|&b| {
            if b == b'\n' {
                vec![b'\r', b'\n']
            } else {
                vec![b]
            }
        })
        .collect();
    assert_eq!(unstuffed, crlf);
    assert_eq!(
        s.disconnect_line(),
        format!(
            "pop3(bob): Disconnected: Logged out top=0/0, retr=1/{}, del=0/1, size={size}",
            sent.len()
        )
    );
}

/// Input given while a message streams waits for its turn; too much of it
/// closes the session.
#[test]
fn input_while_busy_is_bounded() {
    let mut drop = MemDrop::default();
    drop.list.push(MessageInfo {
        size: 3,
        uidl: "a".into(),
    });
    drop.bodies.push(b"a\r\n".to_vec());
    let cfg = Arc::new(SessionConfig {
        max_bad_commands: 20,
    });
    let (mut s, step) = Session::start(cfg, "bob".into(), b"RETR 1\r\n", &mut drop);
    assert_eq!(step, session::Step::Produce);
    assert_eq!(s.input(b"NOOP\r\n", &mut drop), session::Step::Continue);
    let mut out = Vec::new();
    while s.produce(&mut out, &mut drop) == session::Step::Produce {}
    assert!(out.ends_with(b"a\r\n.\r\n+OK\r\n"), "{}", escape(&out));
    let (mut s, _) = Session::start(
        Arc::new(SessionConfig {
            max_bad_commands: 20,
        }),
        "bob".into(),
        b"RETR 1\r\n",
        &mut drop,
    );
    let junk = b"NOOP\r\n".repeat(200);
    let mut step = session::Step::Continue;
    for _ in 0..100 {
        step = s.input(&junk, &mut drop);
        if step == session::Step::Close {
            break;
        }
    }
    assert_eq!(step, session::Step::Close);
}
