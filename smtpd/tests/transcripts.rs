//! Transcript tests: the SMTP session against C:/S: fixture files.
//!
//! Each file in tests/transcripts/ is a conversation with the real session
//! and the real `policy::AccessPolicy`, built in memory from main.cf lines
//! (`BASE_MAIN_CF` plus the file's settings) and a users file in a temporary
//! directory.
//!
//! Settings, at the top of a file (anything else starting with `@` there is
//! an error, so a misspelt setting cannot silently test the defaults):
//! `@size N` (message_size_limit), `@errors N` (smtpd_hard_error_limit),
//! `@recipients N` (smtpd_recipient_limit), `@set name = value` (any main.cf
//! parameter of the table), `@client ADDR` (the client's address, default
//! 192.0.2.1), `@client-name NAME` (its confirmed name, as smtpd's look-up
//! before the greeting sets it; default none: `unknown`), `@user ADDRESS`
//! (one more users-file entry), `@alias KEY VALUE` (a line of a
//! virtual_alias_maps table in the temporary directory; with any, the
//! table is virtual_alias_maps, before the `@set` lines).
//!
//! Conversation lines: `C:` lines are sent with CRLF appended, `R:` lines are
//! raw bytes (escapes \r \n \0 \t \\) sent as they are; consecutive client
//! lines are sent in one piece (pipelining). `S:` lines are the exact server
//! lines expected next (a trailing `*` matches any rest of the line). `P: D`
//! says the session asked for a pause of D (`Step::Pause`, Debug form such
//! as `1s`) at that point among the server lines; the runner resumes at once
//! and records where the pause was. `M:` checks the last queued message
//! after the Received: header (escapes as in R:; a `*` matches any run of
//! characters within one line), `H:` its Received: header
//! (escapes, trailing `*`), `E:` its envelope recipients (separated by
//! spaces), `D:` its RET and ENVID (`RET=HDRS ENVID=x`, in that order;
//! `D:` alone for none), `N:` one of its recipients with its NOTIFY and
//! ORCPT (`N: a@b NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+40b`; the address
//! alone for none). `X:` says the session is closed. `@commit-fail` makes the next
//! commit fail as a full disk would. `T: INFO` is the end of a TLS handshake
//! (INFO as common::tls::TlsInfo displays it): the session must have asked
//! for it (`Step::StartTls`) since the last `T:`; until then the runner
//! feeds nothing more, as the event loop reads nothing more in the clear
//! (the rest of a piece sent with STARTTLS is never fed byte by byte, and
//! must be discarded by the session when fed whole).
//! AUTH (`Step::Verify`) is answered at once from the users file, as
//! posthorn-auth would: every user's password is `x`; a wrong one is a
//! failure with a 2 s delay (auth_failure_delay), which shows as `P: 2s`.
//! The authentication checks at the end of DATA (`Step::Authenticate`,
//! smtpd_authentication_checks) are answered at once with no results
//! (`Authentication-Results: transcript; none`, kept as the message's
//! prepended fields, which `A:` checks; escapes as in R:).
//!
//! Every transcript runs twice: once with each client piece in one call,
//! once byte by byte, and both runs must give the same server lines and
//! pauses.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::addr::Domains;
use common::auth::{AuthReply, FailReason, UserInfo};
use common::config::{Config, ConfigError};
use common::net::Networks;
use common::spool::Envelope;
use common::tls::TlsInfo;
use common::users::UserTable;
use common::virtual_alias::VirtualAlias;
use posthorn_smtpd::policy::{AccessPolicy, LookupError, UserLookup};
use posthorn_smtpd::session::{Authenticated, Client, Policy, Session, Sink, SmtpConfig, Step};

/// The main.cf every transcript starts from.
const BASE_MAIN_CF: &str = "\
myhostname = mail.example.test
mydestination = $myhostname, localhost
virtual_mailbox_domains = example.test
mynetworks = 127.0.0.0/8 10.0.0.0/8
";

/// The users file every transcript starts from (passwd-file format).
const BASE_USERS: &str = "\
demo@example.test:{PLAIN}x::::::
bob@example.test:{PLAIN}x::::::
";

/// What stands for a pause among the server lines (no reply holds a NUL).
const PAUSE_MARK: &str = "\0pause ";

/// Why a transcript could not be set up.
#[derive(Debug)]
enum SetupError {
    /// An `@` line the runner does not know.
    UnknownSetting(String),
    /// `@set` of a parameter that is not in common::params.
    UnknownParameter(String),
    /// A setting whose value does not parse.
    BadValue(String),
    /// The configuration the settings make is not valid.
    Config(ConfigError),
    /// mynetworks does not parse.
    Networks(String),
    /// The temporary directory could not be written.
    Io(io::Error),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::UnknownSetting(l) => write!(f, "unknown setting {l:?}"),
            SetupError::UnknownParameter(l) => write!(f, "unknown main.cf parameter in {l:?}"),
            SetupError::BadValue(l) => write!(f, "bad value in {l:?}"),
            SetupError::Config(e) => write!(f, "configuration: {e}"),
            SetupError::Networks(e) => write!(f, "mynetworks: {e}"),
            SetupError::Io(e) => write!(f, "temporary directory: {e}"),
        }
    }
}

impl std::error::Error for SetupError {}

/// A temporary configuration directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> io::Result<TempDir> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "posthorn-smtpd-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real policy and session settings, built from main.cf text and a
/// users file, as lib.rs builds them from /etc/posthorn.
struct Setup {
    _dir: TempDir,
    cfg: SmtpConfig,
    policy: AccessPolicy,
}

impl Setup {
    fn new(settings: &[(String, String)], users: &str, aliases: &str) -> Result<Setup, SetupError> {
        let dir = TempDir::new().map_err(SetupError::Io)?;
        std::fs::write(dir.0.join("users"), users).map_err(SetupError::Io)?;
        let mut cfg = Config::parse(&dir.0, "main.cf", BASE_MAIN_CF).map_err(SetupError::Config)?;
        if !aliases.is_empty() {
            let table = dir.0.join("virtual");
            std::fs::write(&table, aliases).map_err(SetupError::Io)?;
            cfg.set(
                "virtual_alias_maps",
                &format!("texthash:{}", table.display()),
                "transcript",
            );
        }
        for (name, value) in settings {
            cfg.set(name, value, "transcript");
        }
        let smtp = SmtpConfig::from_config(&cfg).map_err(SetupError::Config)?;
        let mynetworks = Networks::parse(&cfg.get("mynetworks")).map_err(SetupError::Networks)?;
        let policy = AccessPolicy {
            domains: Domains::from_config(&cfg),
            mynetworks,
            users: Box::new(FileUsers(UserTable::new(cfg.users_file()))),
            local_aliases: common::aliases::Aliases::new(&cfg.list("alias_maps")),
            virtual_aliases: VirtualAlias::from_config(&cfg).map_err(SetupError::Config)?,
        };
        Ok(Setup {
            _dir: dir,
            cfg: smtp,
            policy,
        })
    }
}

/// The fixture's users file as the policy's user table (in production
/// smtpd asks posthorn-auth, which reads the same file).
struct FileUsers(UserTable);

impl UserLookup for FileUsers {
    fn exists(&mut self, key: &str) -> Result<bool, LookupError> {
        self.0
            .refresh()
            .map_err(|e| LookupError::TempFail(e.to_string()))?;
        Ok(self.0.get(key).is_some())
    }
}

/// A queued message: its envelope recipients and its bytes.
struct Queued {
    rcpts: Vec<String>,
    bytes: Vec<u8>,
    /// RET and ENVID, as `D:` shows them.
    dsn: String,
    /// Each recipient with its NOTIFY and ORCPT, as `N:` shows them.
    rcpt_dsn: Vec<String>,
    /// The fields to prepend (`Sink::prepend`), as `A:` shows them.
    prepend: String,
}

#[derive(Default)]
struct MemSink {
    current: Option<Queued>,
    queued: Vec<Queued>,
    n: usize,
}

impl Sink for MemSink {
    fn begin(&mut self, env: &Envelope) -> io::Result<String> {
        self.n += 1;
        let mut dsn = Vec::new();
        if let Some(r) = env.dsn.ret {
            dsn.push(format!("RET={}", r.as_str()));
        }
        if let Some(e) = &env.dsn.envid {
            dsn.push(format!("ENVID={e}"));
        }
        let rcpt_dsn = env
            .recipients
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let d = env.recipient_dsn.get(i).cloned().unwrap_or_default();
                let mut line = r.clone();
                if let Some(n) = d.notify {
                    line.push_str(&format!(" NOTIFY={n}"));
                }
                if let Some(o) = &d.orcpt {
                    line.push_str(&format!(" ORCPT={o}"));
                }
                line
            })
            .collect();
        self.current = Some(Queued {
            rcpts: env.recipients.clone(),
            prepend: String::new(),
            bytes: Vec::new(),
            dsn: dsn.join(" "),
            rcpt_dsn,
        });
        Ok(format!("QID{}", self.n))
    }
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.current
            .as_mut()
            .ok_or_else(|| io::Error::other("no message"))?
            .bytes
            .extend_from_slice(data);
        Ok(())
    }
    fn abort(&mut self) {
        self.current = None;
    }

    fn prepend(&mut self, fields: &str) -> io::Result<()> {
        match self.current.as_mut() {
            Some(q) => {
                q.prepend = fields.to_string();
                Ok(())
            }
            None => Err(io::Error::other("no message")),
        }
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
            Some(o) => panic!("bad escape \\{}", o as char),
            None => panic!("trailing backslash"),
        }
    }
    out
}

/// The Received: header (all its lines) and the rest of the message.
fn split_received(msg: &[u8]) -> (&[u8], &[u8]) {
    assert!(
        msg.starts_with(b"Received: "),
        "message starts with Received:"
    );
    let mut i = 0;
    loop {
        let end = msg[i..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| i + p + 2)
            .expect("header line ends");
        i = end;
        if !matches!(msg.get(i), Some(b' ' | b'\t')) {
            return msg.split_at(i);
        }
    }
}

struct Run {
    session: Session,
    sink: MemSink,
    policy: AccessPolicy,
    /// The users file, for AUTH.
    users: UserTable,
    fail_next_commit: bool,
    closed: bool,
    /// The session asked for TLS (`Step::StartTls`) and has not had it.
    starttls: bool,
    /// Server lines and pause marks taken from the session so far.
    got: Vec<String>,
}

impl Run {
    fn feed(&mut self, input: &[u8], bytewise: bool) {
        if self.starttls {
            return; // the event loop reads nothing in the clear now
        }
        if bytewise {
            for b in input {
                if self.starttls {
                    break;
                }
                let step =
                    self.session
                        .input(std::slice::from_ref(b), &mut self.policy, &mut self.sink);
                self.after(step);
            }
        } else {
            let step = self.session.input(input, &mut self.policy, &mut self.sink);
            self.after(step);
        }
    }

    /// Do what the event loop does for each step; a pause is resumed at
    /// once, and recorded after the replies it holds back.
    fn after(&mut self, mut step: Step) {
        loop {
            match step {
                Step::Commit => {
                    let result = if std::mem::take(&mut self.fail_next_commit) {
                        self.sink.current = None;
                        Err(std::io::Error::from_raw_os_error(28))
                    } else {
                        let msg = self.sink.current.take().expect("commit with a message");
                        self.sink.queued.push(msg);
                        Ok(format!("QID{}", self.sink.n))
                    };
                    step = self
                        .session
                        .commit_done(result, &mut self.policy, &mut self.sink);
                }
                Step::Pause(d) => {
                    assert!(self.session.busy(), "busy while paused");
                    self.drain();
                    self.got.push(format!("{PAUSE_MARK}{d:?}"));
                    step = self.session.resume(&mut self.policy, &mut self.sink);
                }
                Step::Close => {
                    self.closed = true;
                    return;
                }
                Step::StartTls => {
                    self.starttls = true;
                    return;
                }
                Step::Verify => {
                    let c = self
                        .session
                        .take_credentials()
                        .expect("credentials to verify");
                    self.users.refresh().expect("users file");
                    let key = c.user.to_ascii_lowercase();
                    let known = self.users.get(&key).is_some();
                    let answer = if known
                        && c.password == "x"
                        && (c.authzid.is_empty() || c.authzid == c.user)
                    {
                        AuthReply::Ok(UserInfo {
                            user: key,
                            uid: 0,
                            gid: 0,
                            home: PathBuf::new(),
                            maildir: PathBuf::new(),
                            quota: Default::default(),
                            default_privs: false,
                        })
                    } else {
                        AuthReply::Failed {
                            delay_ms: 2000,
                            reason: FailReason::Credentials,
                        }
                    };
                    step = self
                        .session
                        .auth_done(Ok(answer), &mut self.policy, &mut self.sink);
                }
                Step::Authenticate => {
                    assert!(self.session.busy(), "busy while authenticating");
                    let a = Authenticated {
                        header: "Authentication-Results: transcript; none\r\n".into(),
                        summary: "none".into(),
                        reject: None,
                        quarantine: false,
                    };
                    step = self
                        .session
                        .authenticated(Some(a), &mut self.policy, &mut self.sink);
                }
                Step::Continue => return,
            }
        }
    }

    fn drain(&mut self) {
        let out = std::mem::take(&mut self.session.out);
        let text = String::from_utf8(out).expect("replies are UTF-8");
        self.got
            .extend(text.split_terminator("\r\n").map(str::to_string));
    }

    fn take_lines(&mut self) -> Vec<String> {
        self.drain();
        std::mem::take(&mut self.got)
    }

    fn last_queued(&self, at: &str) -> &Queued {
        self.sink
            .queued
            .last()
            .unwrap_or_else(|| panic!("{at}: no message queued"))
    }
}

/// `want` with each `*` standing for any run of characters within one
/// line (none of them a line feed).
fn glob(want: &str, got: &str) -> bool {
    let mut parts = want.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = got.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (k, part) in parts.iter().enumerate() {
        let last = k + 1 == parts.len();
        // The shortest run that is followed by `part` (the whole rest for
        // the last part), within the line.
        let found = (0..=rest.len()).find(|&i| {
            rest.is_char_boundary(i)
                && !rest[..i].contains('\n')
                && if last {
                    &rest[i..] == *part
                } else {
                    rest[i..].starts_with(part)
                }
        });
        match found {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

fn matches(expected: &str, got: &str) -> bool {
    match expected.strip_suffix('*') {
        Some(prefix) => got.starts_with(prefix),
        None => expected == got,
    }
}

fn show(line: &str) -> String {
    match line.strip_prefix(PAUSE_MARK) {
        Some(d) => format!("P: {d}"),
        None => format!("{line:?}"),
    }
}

/// What the settings at the top of a transcript say.
struct Settings {
    /// main.cf (name, value) pairs, applied after `BASE_MAIN_CF`.
    params: Vec<(String, String)>,
    client: IpAddr,
    /// `@client-name`.
    client_name: Option<String>,
    /// The users file text.
    users: String,
    /// The virtual_alias_maps table text (`@alias`).
    aliases: String,
    /// The first line that is not a setting.
    first: usize,
}

/// Read the settings at the top of a transcript: main.cf parameters, the
/// client address, extra users.
fn settings(lines: &[&str]) -> Result<Settings, SetupError> {
    let mut params = Vec::new();
    let mut client: IpAddr = "192.0.2.1".parse().expect("a literal address");
    let mut client_name = None;
    let mut users = BASE_USERS.to_string();
    let mut aliases = String::new();
    let mut i = 0;
    while let Some(&l) = lines.get(i) {
        if l.is_empty() || l.starts_with('#') {
            i += 1;
            continue;
        }
        if !l.starts_with('@') || l == "@commit-fail" {
            break;
        }
        let (key, value) = l.split_once(' ').unwrap_or((l, ""));
        let bad = || SetupError::BadValue(l.to_string());
        let number = |v: &str| v.parse::<u64>().map(|_| v.to_string()).map_err(|_| bad());
        match key {
            "@size" => params.push(("message_size_limit".into(), number(value)?)),
            "@errors" => params.push(("smtpd_hard_error_limit".into(), number(value)?)),
            "@recipients" => params.push(("smtpd_recipient_limit".into(), number(value)?)),
            "@set" => {
                let (name, v) = value.split_once('=').ok_or_else(bad)?;
                let name = name.trim();
                if common::params::find(name).is_none() {
                    return Err(SetupError::UnknownParameter(l.to_string()));
                }
                params.push((name.to_string(), v.trim().to_string()));
            }
            "@client" => client = value.parse().map_err(|_| bad())?,
            "@client-name" if !value.is_empty() => client_name = Some(value.to_string()),
            "@client-name" => return Err(bad()),
            "@user" if !value.is_empty() && !value.contains(':') => {
                users.push_str(&format!("{value}:{{PLAIN}}x::::::\n"));
            }
            "@user" => return Err(bad()),
            "@alias" if value.contains(' ') => {
                aliases.push_str(value);
                aliases.push('\n');
            }
            "@alias" => return Err(bad()),
            _ => return Err(SetupError::UnknownSetting(l.to_string())),
        }
        i += 1;
    }
    Ok(Settings {
        params,
        client,
        client_name,
        users,
        aliases,
        first: i,
    })
}

fn run_transcript(path: &Path, bytewise: bool) -> Result<Vec<String>, SetupError> {
    let text = std::fs::read_to_string(path).map_err(SetupError::Io)?;
    run_text(&path.display().to_string(), &text, bytewise)
}

fn run_text(name: &str, text: &str, bytewise: bool) -> Result<Vec<String>, SetupError> {
    let lines: Vec<&str> = text.lines().collect();
    let Settings {
        params,
        client: client_addr,
        client_name,
        users,
        aliases,
        first,
    } = settings(&lines)?;
    let setup = Setup::new(&params, &users, &aliases)?;
    let users = UserTable::new(setup._dir.0.join("users"));
    let Setup { _dir, cfg, policy } = setup;
    let client = Client {
        addr: Some(client_addr),
        port: 25,
        name: "unknown".into(),
        trusted: policy.trusted(Some(client_addr)),
    };
    let mut run = Run {
        session: Session::new(Arc::new(cfg), client),
        sink: MemSink::default(),
        policy,
        users,
        fail_next_commit: false,
        closed: false,
        starttls: false,
        got: Vec::new(),
    };
    if let Some(name) = client_name {
        run.session.set_client_name(name);
    }
    run.session.greet();
    let mut transcript = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut expected: Vec<(usize, String)> = Vec::new();
    let where_ = |n: usize| {
        format!(
            "{name}:{}{}",
            n + 1,
            if bytewise { " (byte by byte)" } else { "" }
        )
    };
    let check =
        |run: &mut Run, expected: &mut Vec<(usize, String)>, transcript: &mut Vec<String>| {
            let got = run.take_lines();
            for (k, g) in got.iter().enumerate() {
                let Some((n, e)) = expected.get(k) else {
                    panic!(
                        "{}: unexpected server line {} (after {} expected)",
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
                panic!(
                    "{}: expected {}, server sent nothing more",
                    where_(*n),
                    show(e)
                );
            }
            transcript.extend(got);
            expected.clear();
        };
    let flush = |run: &mut Run, pending: &mut Vec<u8>| {
        if !pending.is_empty() {
            let p = std::mem::take(pending);
            run.feed(&p, bytewise);
        }
    };
    for (n, line) in lines.iter().enumerate().skip(first) {
        if line.starts_with('#') {
            continue;
        }
        if let Some(c) = line
            .strip_prefix("C: ")
            .or_else(|| (*line == "C:").then_some(""))
        {
            if !expected.is_empty() {
                check(&mut run, &mut expected, &mut transcript);
            }
            pending.extend_from_slice(c.as_bytes());
            pending.extend_from_slice(b"\r\n");
        } else if let Some(r) = line.strip_prefix("R: ") {
            if !expected.is_empty() {
                check(&mut run, &mut expected, &mut transcript);
            }
            pending.extend(unescape(r));
        } else if let Some(s) = line.strip_prefix("S: ") {
            flush(&mut run, &mut pending);
            expected.push((n, s.to_string()));
        } else if let Some(d) = line.strip_prefix("P: ") {
            flush(&mut run, &mut pending);
            expected.push((n, format!("{PAUSE_MARK}{d}")));
        } else if *line == "@commit-fail" {
            run.fail_next_commit = true;
        } else if let Some(m) = line
            .strip_prefix("M: ")
            .or_else(|| (*line == "M:").then_some(""))
        {
            flush(&mut run, &mut pending);
            check(&mut run, &mut expected, &mut transcript);
            let (_, body) = split_received(&run.last_queued(&where_(n)).bytes);
            let got = String::from_utf8_lossy(body);
            let want = String::from_utf8_lossy(&unescape(m)).into_owned();
            assert!(
                glob(&want, &got),
                "{}: queued message\n got: {got:?}\nwant: {want:?}",
                where_(n)
            );
        } else if let Some(h) = line.strip_prefix("H: ") {
            flush(&mut run, &mut pending);
            check(&mut run, &mut expected, &mut transcript);
            let (received, _) = split_received(&run.last_queued(&where_(n)).bytes);
            let got = String::from_utf8_lossy(received);
            let want = String::from_utf8_lossy(&unescape(h)).into_owned();
            assert!(
                matches(&want, &got),
                "{}: Received: header\n want {want:?}\n  got {got:?}",
                where_(n)
            );
        } else if let Some(a) = line
            .strip_prefix("A: ")
            .or_else(|| (*line == "A:").then_some(""))
        {
            flush(&mut run, &mut pending);
            check(&mut run, &mut expected, &mut transcript);
            let got = &run.last_queued(&where_(n)).prepend;
            let want = String::from_utf8_lossy(&unescape(a)).into_owned();
            assert_eq!(got, &want, "{}: prepended fields", where_(n));
        } else if let Some(e) = line.strip_prefix("E: ") {
            flush(&mut run, &mut pending);
            check(&mut run, &mut expected, &mut transcript);
            let rcpts = &run.last_queued(&where_(n)).rcpts;
            let want: Vec<&str> = e.split(' ').filter(|s| !s.is_empty()).collect();
            assert_eq!(rcpts, &want, "{}: envelope recipients", where_(n));
        } else if let Some(d) = line
            .strip_prefix("D: ")
            .or_else(|| (*line == "D:").then_some(""))
        {
            flush(&mut run, &mut pending);
            check(&mut run, &mut expected, &mut transcript);
            let got = &run.last_queued(&where_(n)).dsn;
            assert_eq!(got, d, "{}: RET and ENVID", where_(n));
        } else if let Some(d) = line.strip_prefix("N: ") {
            flush(&mut run, &mut pending);
            check(&mut run, &mut expected, &mut transcript);
            let got = &run.last_queued(&where_(n)).rcpt_dsn;
            assert!(
                got.iter().any(|g| g == d),
                "{}: no recipient {d:?} in {got:?}",
                where_(n)
            );
        } else if let Some(t) = line.strip_prefix("T: ") {
            flush(&mut run, &mut pending);
            check(&mut run, &mut expected, &mut transcript);
            assert!(run.starttls, "{}: TLS without STARTTLS", where_(n));
            run.starttls = false;
            let info = tls_info(t).unwrap_or_else(|| panic!("{}: bad T: line", where_(n)));
            let step = run
                .session
                .tls_secured(&info, &mut run.policy, &mut run.sink);
            run.after(step);
            transcript.push(format!("T: {t}"));
        } else if *line == "X:" {
            flush(&mut run, &mut pending);
            check(&mut run, &mut expected, &mut transcript);
            assert!(run.closed, "{}: session should be closed", where_(n));
        } else if line.starts_with('@') {
            return Err(SetupError::UnknownSetting(line.to_string()));
        } else if !line.is_empty() {
            panic!("{}: bad transcript line {line:?}", where_(n));
        }
    }
    flush(&mut run, &mut pending);
    check(&mut run, &mut expected, &mut transcript);
    Ok(transcript)
}

/// `TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)`.
fn tls_info(t: &str) -> Option<TlsInfo> {
    let (protocol, rest) = t.split_once(" with cipher ")?;
    let (cipher, bits) = rest.split_once(" (")?;
    let bits = bits.split_once('/')?.0.parse().ok()?;
    let info = TlsInfo {
        protocol: protocol.to_string(),
        cipher: cipher.to_string(),
        bits,
    };
    (info.to_string() == t).then_some(info)
}

#[test]
fn transcripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/transcripts is there")
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "transcript files found: {}", files.len());
    for f in files {
        let run = |bytewise| {
            run_transcript(&f, bytewise).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        };
        let whole = run(false);
        let bytewise = run(true);
        assert_eq!(
            whole,
            bytewise,
            "{}: byte-by-byte feeding changed the replies",
            f.display()
        );
    }
}

/// The runner refuses what it does not understand instead of running the
/// transcript with defaults.
#[test]
fn runner_refuses_unknown_settings() {
    let cases: &[(&str, &str)] = &[
        ("@frobnicate 1\nS: 220 *\n", "UnknownSetting"),
        ("@expect-pause 1\nS: 220 *\n", "UnknownSetting"),
        ("S: 220 *\n@size 10\n", "UnknownSetting"),
        ("@set no_such_parameter = 1\nS: 220 *\n", "UnknownParameter"),
        ("@set message_size_limit\nS: 220 *\n", "BadValue"),
        ("@size ten\nS: 220 *\n", "BadValue"),
        ("@client 999.1.1.1\nS: 220 *\n", "BadValue"),
        ("@set smtpd_soft_error_limit = many\nS: 220 *\n", "Config"),
        ("@set mynetworks = 10.0.0.0/99\nS: 220 *\n", "Networks"),
    ];
    for (text, want) in cases {
        match run_text("inline", text, false) {
            Ok(_) => panic!("{text:?}: accepted"),
            Err(e) => assert!(format!("{e:?}").starts_with(want), "{text:?}: {e:?}"),
        }
    }
    assert_eq!(
        run_text("inline", "# comment\n\n@size 10\nS: 220 *\n", false)
            .expect("a good transcript runs"),
        ["220 mail.example.test ESMTP posthorn"]
    );
}

/// A wrong expectation fails the run: a missing line, a wrong line, a
/// pause that did not happen, a pause that was not expected.
#[test]
fn runner_fails_on_mismatch() {
    let cases = [
        "S: 220 *\nS: 250 *\n",
        "S: 221 *\n",
        "S: 220 *\nC: NOOP\nP: 1s\nS: 250 2.0.0 Ok\n",
        "@set smtpd_soft_error_limit = 0\nS: 220 *\nC: FOO\nS: 500 5.5.2 Error: command not recognized\n",
        "S: 220 *\nC: QUIT\nS: 221 2.0.0 Bye\nM: x\n",
    ];
    for text in cases {
        let r = std::panic::catch_unwind(|| run_text("inline", text, false));
        assert!(r.is_err(), "{text:?} should fail");
    }
    // The last-but-one case passes once the pause is expected.
    let ok = "@set smtpd_soft_error_limit = 0\nS: 220 *\nC: FOO\nS: 500 5.5.2 Error: command not recognized\nP: 1s\n";
    assert!(run_text("inline", ok, false).is_ok());
}

/// Step::Pause as the event loop sees it: the reply to the error is in
/// `out`, the session is busy, input given meanwhile is only buffered, and
/// `resume` carries on with all of it.
#[test]
fn pause_holds_input_until_resume() {
    let params = [("smtpd_soft_error_limit".to_string(), "0".to_string())];
    let Setup { _dir, cfg, policy } = Setup::new(&params, BASE_USERS, "").expect("setup");
    let mut policy = policy;
    let mut sink = MemSink::default();
    let client = Client {
        addr: Some("192.0.2.1".parse().expect("a literal address")),
        port: 25,
        name: "unknown".into(),
        trusted: false,
    };
    let mut s = Session::new(Arc::new(cfg), client);
    s.greet();
    s.out.clear();
    let step = s.input(b"FOO\r\nNOOP\r\n", &mut policy, &mut sink);
    assert_eq!(step, Step::Pause(std::time::Duration::from_secs(1)));
    assert!(s.busy());
    assert_eq!(s.out, b"500 5.5.2 Error: command not recognized\r\n");
    let step = s.input(b"NOOP\r\n", &mut policy, &mut sink);
    assert_eq!(step, Step::Pause(std::time::Duration::from_secs(1)));
    assert_eq!(s.out, b"500 5.5.2 Error: command not recognized\r\n");
    s.out.clear();
    assert_eq!(s.resume(&mut policy, &mut sink), Step::Continue);
    assert!(!s.busy());
    assert_eq!(s.out, b"250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
}
