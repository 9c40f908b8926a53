//! Transcript tests: the two IMAP sessions against C:/S: fixture files.
//!
//! tests/transcripts/login/*.txt run the login session
//! (`login::LoginSession`) with a small in-memory auth service;
//! tests/transcripts/session/*.txt run the session after login
//! (`session::Session`) over a real Maildir in a temp directory, made anew
//! for each run. Both are the real sessions; only the caller around them is
//! the runner. The design and syntax are pop3d's (pop3d/tests/transcripts.rs).
//!
//! Settings, at the top of a file (anything else starting with `@` is an
//! error, so a misspelt setting cannot silently test the defaults):
//!
//! - login: `@cleartext` (auth_allow_cleartext), `@no-tls` (no STARTTLS),
//!   `@tls` (TLS from the first byte), `@client ADDR` (default 192.0.2.1;
//!   ours is 192.0.2.2), `@failures N` (default 3), `@bad N` (default 10),
//!   `@delay SECS` (auth's failure delay, default 2), `@user NAME PASSWORD`
//!   (users auth accepts: bob@example.test/secret always), `@max-line N`.
//! - session: `@user NAME` (default bob@example.test), `@tag TAG` (the
//!   login's tag, default a0; `-` for PREAUTH), `@folder NAME` (created
//!   before the session starts), `@message FLAGS TEXT` (a message in
//!   INBOX, or in the last `@in FOLDER`; FLAGS `new` puts it in new/, else
//!   it goes to cur/ with these Maildir info letters, `-` for none; TEXT
//!   with escapes as in R:, written as it is), `@date EPOCH` (the mtime, so
//!   the INTERNALDATE, of the messages that follow; default 1793613600,
//!   2026-11-02 10:00:00 +0000), `@bad N`, `@max-line N`, `@max-literal N`,
//!   `@leftover TEXT` (input pipelined behind the login).
//!
//! Conversation lines: `C:` lines are sent with CRLF appended, `R:` lines
//! are raw bytes (escapes \r \n \t \0 \\ \xNN) sent as they are;
//! consecutive client lines are sent in one piece (pipelining); a blank
//! line ends a piece. `S:` lines
//! are the exact server lines expected next (escapes as in R:; a trailing
//! `*` matches any rest; `$UIDVALIDITY` and `$MODSEQ` each match a run of
//! digits, since UIDVALIDITY comes from the time and mod-sequences from the
//! clock). Among them, what the session asked of its caller: `P: D` a pause
//! (Debug form such as `2s`; the runner resumes at once), `T:` a TLS
//! handshake (the runner completes it), `A: MECH authzid=<..> user=<..>
//! pass=<..>` an auth request (answered from the users, or TempFail after
//! `@tempfail`), `L: USER tag=<..> leftover=<..>` the hand-off after login
//! (escaped). `N:
//! deliver TEXT` (session) writes a message into INBOX's new/ and calls
//! `notify`, as the watcher would. `X:` says the session is closed, `G:
//! LINE` checks the log line it would write now (`*` and placeholders as in S:) (login: `N secs` as `S
//! secs`; session: the lines from `take_log`, joined by ` | `).
//!
//! Every transcript runs twice: once with each client piece in one call,
//! once byte by byte. The runner answers a request at the end of the piece
//! (bytes after it reach the waiting session, as they could from a socket),
//! and both runs must give the same lines.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailstore::{Options, Store};
use posthorn_imapd::login::{AuthOutcome, Connection, Credentials, LoginConfig, LoginSession};
use posthorn_imapd::session::{Session, SessionConfig};
use proto::imap::Limits;

/// Markers among the server lines start with these bytes, which no reply
/// holds (a reply may hold a NUL, in a BINARY literal).
const MARK: &[u8] = b"\0\xffMARK ";

/// The default mtime of messages: 2026-11-02 10:00:00 +0000.
const DEFAULT_DATE: u64 = 1_793_613_600;

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
            SetupError::Io(e) => write!(f, "setting up: {e}"),
        }
    }
}

impl std::error::Error for SetupError {}

impl From<io::Error> for SetupError {
    fn from(e: io::Error) -> SetupError {
        SetupError::Io(e)
    }
}

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
    match line.strip_prefix(MARK) {
        Some(rest) => String::from_utf8_lossy(rest).into_owned(),
        None => format!("S: {}", escape(line)),
    }
}

fn marker(text: &str) -> Vec<u8> {
    let mut m = MARK.to_vec();
    m.extend_from_slice(text.as_bytes());
    m
}

/// The placeholders that match a run of digits.
const DIGITS: [&[u8]; 2] = [b"$UIDVALIDITY", b"$MODSEQ"];

/// Does `got` match `expected` (placeholders, a trailing `*`)?
fn matches(mut expected: &[u8], mut got: &[u8]) -> bool {
    loop {
        if expected == b"*" {
            return true;
        }
        if let Some(p) = DIGITS.iter().find(|p| expected.starts_with(p)) {
            let n = got.iter().take_while(|b| b.is_ascii_digit()).count();
            if n == 0 {
                return false;
            }
            (expected, got) = (&expected[p.len()..], &got[n..]);
            continue;
        }
        match (expected.split_first(), got.split_first()) {
            (None, None) => return true,
            (Some((e, er)), Some((g, gr))) if e == g => (expected, got) = (er, gr),
            _ => return false,
        }
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
    /// A directive among the conversation lines (`@tempfail`, `N:`).
    fn directive(&mut self, line: &str) -> Result<bool, SetupError>;
    /// The log line the session would write now.
    fn log_line(&mut self) -> String;
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

impl LoginRun {
    fn answer(&mut self, c: &Credentials) -> AuthOutcome {
        if std::mem::take(&mut self.tempfail_next) {
            return AuthOutcome::TempFail;
        }
        let ok = self
            .users
            .iter()
            .any(|(u, p)| *u == c.user && *p == c.password);
        if ok {
            AuthOutcome::Ok {
                user: c.user.clone(),
            }
        } else {
            AuthOutcome::Failed { delay: self.delay }
        }
    }

    fn act(&mut self, mut step: posthorn_imapd::login::Step) {
        use posthorn_imapd::login::Step;
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
                    self.got.mark(&format!(
                        "A: {} authzid=<{}> user=<{}> pass=<{}>",
                        c.mechanism.name(),
                        c.authzid,
                        c.user,
                        c.password
                    ));
                    let outcome = self.answer(&c);
                    self.s.auth_result(outcome)
                }
                Step::LoggedIn {
                    user,
                    tag,
                    leftover,
                } => {
                    self.got.mark(&format!(
                        "L: {user} tag=<{tag}> leftover=<{}>",
                        escape(&leftover)
                    ));
                    self.closed = true;
                    return;
                }
            };
        }
    }
}

impl Driver for LoginRun {
    fn feed(&mut self, piece: &[u8], bytewise: bool) {
        use posthorn_imapd::login::Step;
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
    fn directive(&mut self, line: &str) -> Result<bool, SetupError> {
        if line == "@tempfail" {
            self.tempfail_next = true;
            return Ok(true);
        }
        Ok(false)
    }
    fn log_line(&mut self) -> String {
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
        max_bad_commands: 10,
        limits: posthorn_imapd::login_limits(),
    };
    let mut conn = Connection {
        rip: Some([192, 0, 2, 1].into()),
        lip: Some([192, 0, 2, 2].into()),
        tls: false,
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
            "@failures" => cfg.max_auth_failures = number(value)?,
            "@bad" => cfg.max_bad_commands = number(value)?,
            "@delay" => delay = Duration::from_secs(number(value)?.into()),
            "@max-line" => cfg.limits.max_line = number(value)? as usize,
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

// ---- the session after login ----

struct SessionRun {
    s: Session,
    maildir: PathBuf,
    delivered: u32,
    closed: bool,
    got: Got,
}

impl SessionRun {
    fn act(&mut self, step: posthorn_imapd::session::Step) {
        self.got.output(&mut self.s.out);
        if step == posthorn_imapd::session::Step::Close {
            self.closed = true;
        }
    }
}

/// The temp directory goes with the run.
impl Drop for SessionRun {
    fn drop(&mut self) {
        if let Some(dir) = self.maildir.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Driver for SessionRun {
    fn feed(&mut self, piece: &[u8], bytewise: bool) {
        use posthorn_imapd::session::Step;
        if self.closed {
            return;
        }
        let s = &mut self.s;
        let pieces: Vec<&[u8]> = if bytewise {
            piece.chunks(1).collect()
        } else {
            vec![piece]
        };
        // Unlike login, nothing here waits; `Watch` (IDLE's watcher) is
        // not shown, since when it comes depends on how input is cut.
        for p in pieces {
            let step = s.input(p);
            self.got.output(&mut s.out);
            if step == Step::Close {
                self.closed = true;
                break;
            }
        }
    }
    fn got(&mut self) -> &mut Got {
        &mut self.got
    }
    fn closed(&self) -> bool {
        self.closed
    }
    fn directive(&mut self, line: &str) -> Result<bool, SetupError> {
        let Some(text) = line.strip_prefix("N: deliver ") else {
            return Ok(false);
        };
        self.delivered += 1;
        let name = format!("1800000000.M{}P1.delivered", self.delivered);
        let path = self.maildir.join("new").join(name);
        std::fs::write(&path, unescape(text))?;
        let step = self.s.notify();
        self.act(step);
        Ok(true)
    }
    fn log_line(&mut self) -> String {
        self.s.take_log().join(" | ")
    }
}

/// A fresh directory per run.
fn temp_maildir() -> io::Result<PathBuf> {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "posthorn-imapd-tx-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d.join("Maildir"))
}

/// A folder's Maildir directory (Maildir++: `.Name` under the root).
fn folder_dir(root: &Path, name: &str) -> PathBuf {
    if name.eq_ignore_ascii_case("INBOX") {
        root.to_path_buf()
    } else {
        root.join(format!(".{name}"))
    }
}

fn session_run(lines: &[&str]) -> Result<(SessionRun, usize), SetupError> {
    let root = temp_maildir()?;
    let store = Store::create_user(&root, Options::default())
        .map_err(|e| SetupError::Io(io::Error::other(e.to_string())))?;
    let mut cfg = SessionConfig::standard(Limits::default());
    let mut user = "bob@example.test".to_string();
    let mut tag = Some("a0".to_string());
    let mut leftover = Vec::new();
    let mut folder = "INBOX".to_string();
    let mut date = DEFAULT_DATE;
    let mut n = 0;
    let first = settings(lines, |key, value, bad| {
        let number = |v: &str| v.parse::<u64>().map_err(|_| bad());
        match key {
            "@user" if !value.is_empty() => user = value.to_string(),
            "@tag" => tag = Some(value.to_string()).filter(|t| t != "-"),
            "@folder" => store.create(value).map_err(|_| bad())?,
            "@in" => folder = value.to_string(),
            "@date" => date = number(value)?,
            "@message" => {
                let (flags, text) = value.split_once(' ').unwrap_or((value, ""));
                n += 1;
                let dir = folder_dir(&root, &folder);
                let base = format!("{}.M{n}P1.host", 1_700_000_000 + n);
                let path = match flags {
                    "new" => dir.join("new").join(base),
                    "-" => dir.join("cur").join(format!("{base}:2,")),
                    f => dir.join("cur").join(format!("{base}:2,{f}")),
                };
                std::fs::write(&path, unescape(text))?;
                let t = SystemTime::UNIX_EPOCH + Duration::from_secs(date);
                std::fs::File::options()
                    .write(true)
                    .open(&path)?
                    .set_modified(t)?;
            }
            "@bad" => cfg.max_bad_commands = number(value)? as u32,
            "@max-line" => cfg.limits.max_line = number(value)? as usize,
            "@max-literal" => {
                cfg.limits.max_literal = number(value)?;
                cfg = SessionConfig {
                    max_bad_commands: cfg.max_bad_commands,
                    ..SessionConfig::standard(cfg.limits.clone())
                };
            }
            "@leftover" => leftover = unescape(value),
            _ => return Ok(false),
        }
        Ok(true)
    });
    let first = match first {
        Ok(f) => f,
        Err(e) => {
            if let Some(dir) = root.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(e);
        }
    };
    let (s, step) = Session::start(Arc::new(cfg), user, store, tag.as_deref(), &leftover);
    let mut run = SessionRun {
        s,
        maildir: root,
        delivered: 0,
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
        if !l.starts_with('@') || l == "@tempfail" {
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
        // For writing fixtures: record without comparing.
        if show_mode() {
            transcript.extend(got.iter().map(|g| show(g)));
            expected.clear();
            return;
        }
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
        // Lines with placeholders are kept as expected: their digits
        // differ between the two runs.
        transcript.extend(got.iter().zip(expected.iter()).map(|(g, (_, e))| {
            if DIGITS.iter().any(|p| e.windows(p.len()).any(|w| w == *p)) {
                show(e)
            } else {
                show(g)
            }
        }));
        expected.clear();
    };
    let flush = |run: &mut Box<dyn Driver>, pending: &mut Vec<u8>| {
        if !pending.is_empty() {
            let p = std::mem::take(pending);
            run.feed(&p, bytewise);
        }
    };
    for (n, line) in lines.iter().enumerate().skip(first) {
        if line.is_empty() {
            // A blank line ends a piece of pipelined client lines.
            flush(&mut run, &mut pending);
            if show_mode() {
                check(&mut run, &mut expected, &mut transcript);
                transcript.push(String::new());
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "C:" | "R:" => {
                if !expected.is_empty() {
                    check(&mut run, &mut expected, &mut transcript);
                }
                if show_mode() {
                    if pending.is_empty() {
                        check(&mut run, &mut expected, &mut transcript);
                    }
                    transcript.push(line.to_string());
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
            "P:" | "T:" | "A:" | "L:" => {
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
                let log = run.log_line();
                assert!(
                    matches(rest.as_bytes(), log.as_bytes()),
                    "{}: log line: expected {rest:?}, got {log:?}",
                    where_(n)
                );
            }
            _ if line.starts_with('@') || tag == "N:" => {
                flush(&mut run, &mut pending);
                if tag == "N:" {
                    check(&mut run, &mut expected, &mut transcript);
                    if show_mode() {
                        transcript.push(line.to_string());
                    }
                }
                if !run.directive(line)? {
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

/// TRANSCRIPT_SHOW=1: for writing fixtures, print each transcript (client
/// lines and what the session said) instead of comparing.
fn show_mode() -> bool {
    std::env::var_os("TRANSCRIPT_SHOW").is_some()
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
        if show_mode() {
            eprintln!("== {name}\n{}", whole.join("\n"));
            continue;
        }
        let bytewise = run(true);
        assert_eq!(
            whole, bytewise,
            "{name}: byte-by-byte feeding changed the result"
        );
    }
}

#[test]
fn login_transcripts() {
    run_dir("login", 14);
}

#[test]
fn session_transcripts() {
    run_dir("session", 13);
}

/// The runner refuses what it does not understand instead of running the
/// transcript with defaults, and a wrong expectation fails the run.
#[test]
fn runner_refuses_and_fails() {
    let refused: &[(&str, &str, &str)] = &[
        ("login", "@frobnicate\nS: * OK *\n", "UnknownSetting"),
        ("login", "S: * OK *\n@cleartext\n", "UnknownSetting"),
        ("login", "@failures many\nS: * OK *\n", "BadValue"),
        ("login", "@client 999.1.1.1\nS: * OK *\n", "BadValue"),
        ("session", "@date yesterday\n", "BadValue"),
        ("session", "@folder ../x\n", "BadValue"),
        ("session", "@tempfail\n", "UnknownSetting"),
        ("session", "S: a0 OK *\nN: frobnicate\n", "UnknownSetting"),
    ];
    for (kind, text, want) in refused {
        match run_text(kind, text, false) {
            Ok(_) => panic!("{text:?}: accepted"),
            Err(e) => assert!(format!("{e:?}").starts_with(want), "{text:?}: {e:?}"),
        }
    }
    let wrong: &[(&str, &str)] = &[
        ("login", "S: * OK posthorn ready.\n"),
        ("login", "S: * OK *\nS: * OK\n"),
        ("login", "S: * OK *\nC: a NOOP\nS: a OK\n"),
        ("login", "S: * OK *\nX:\n"),
        ("login", "S: * OK *\nG: Login: user=<>\n"),
        ("session", "S: a0 OK *\nC: a1 NOOP\nS: a1 NO *\n"),
        (
            "session",
            "S: a0 OK *\nC: a1 SELECT INBOX\nS: * $MODSEQ EXISTS\n",
        ),
    ];
    for (kind, text) in wrong {
        let r = std::panic::catch_unwind(|| run_text(kind, text, false));
        assert!(r.is_err(), "{text:?} should fail");
    }
    assert!(matches(
        b"* OK [UIDVALIDITY $UIDVALIDITY] x",
        b"* OK [UIDVALIDITY 17] x"
    ));
    assert!(!matches(
        b"* OK [UIDVALIDITY $UIDVALIDITY] x",
        b"* OK [UIDVALIDITY ] x"
    ));
    assert!(matches(b"a *", b"a b c"));
    assert_eq!(
        run_text("login", "# comment\n\n@cleartext\nS: * OK *\n", false).expect("runs"),
        ["S: * OK [CAPABILITY IMAP4rev1 IMAP4rev2 SASL-IR ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN] posthorn ready."]
    );
}
