//! The POP3 and SASL harnesses: proto::pop3's command parser, proto::sasl,
//! and pop3d's two sessions.
//!
//! Owns what the `pop3_command`, `pop3_login`, `pop3_session` and `sasl`
//! targets feed and the properties they check beyond "does not panic":
//! command lines are the same for any split and every parsed command
//! renders back to a line that parses to it; the sessions give the same
//! output and ask their caller the same things for any split of their
//! input; nothing runs after STLS before the handshake; strict base64 is
//! canonical; credentials that come out of an exchange are never empty or
//! NUL-bearing. Does not own the parsers (proto, pop3d).
//!
//! Standards: RFC 1939 3 (multi-line responses, CRLF), RFC 2449 4 (line
//! lengths), RFC 2595 4 (nothing before the handshake survives STLS),
//! RFC 4616 2 and RFC 4648 4 (PLAIN, base64).
//!
//! Security: every function takes attacker-shaped bytes; a panic, an abort
//! or a hang is a finding.
//!
//! Diagnostics: a failed property panics with what differed.

use std::io::{self, Read};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use posthorn_pop3d::login::{self, AuthOutcome, Connection, LoginConfig, LoginSession};
use posthorn_pop3d::session::{self, Maildrop, MessageInfo, Session, SessionConfig};
use proto::pop3::{self, Command, LineBuffer};
use proto::sasl::{self, Exchange, Progress, SaslCredentials};

use crate::chunks;

/// Output lines: CRLF only (a bare CR may be message content); unless the
/// output was cut (a message that could not be read), it ends at a line end.
fn assert_crlf_lines(out: &[u8], cut: bool) {
    assert!(
        cut || out.is_empty() || out.ends_with(b"\r\n"),
        "output does not end with CRLF: {:?}",
        String::from_utf8_lossy(out)
    );
    for (i, &b) in out.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r', "bare LF in the output");
        }
    }
}

/// Protocol lines (no message content): non-empty, no control characters.
fn assert_protocol_lines(out: &[u8]) {
    assert_crlf_lines(out, false);
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = &line[..line.len() - 1];
        assert!(!line.is_empty(), "empty protocol line");
        assert!(
            !line.iter().any(|&b| b < 0x20 || b == 0x7f),
            "control character in {:?}",
            String::from_utf8_lossy(line)
        );
    }
}

/// A parsed command as a canonical line.
fn render(cmd: &Command) -> String {
    let num = |n: &Option<u32>| n.map(|n| format!(" {n}")).unwrap_or_default();
    match cmd {
        Command::User(u) => format!("USER {u}"),
        // "PASS" and "PASS " both give an empty password.
        Command::Pass(p) if p.is_empty() => "PASS".to_string(),
        Command::Pass(p) => format!("PASS {p}"),
        Command::Apop { user, digest } => format!("APOP {user} {digest}"),
        Command::Auth { mechanism, initial } => {
            let mut s = "AUTH".to_string();
            if let Some(m) = mechanism {
                s.push(' ');
                s.push_str(m);
            }
            if let Some(i) = initial {
                s.push(' ');
                s.push_str(i);
            }
            s
        }
        Command::List(n) => format!("LIST{}", num(n)),
        Command::Uidl(n) => format!("UIDL{}", num(n)),
        Command::Retr(n) => format!("RETR {n}"),
        Command::Dele(n) => format!("DELE {n}"),
        Command::Top { msg, lines } => format!("TOP {msg} {lines}"),
        other => other.verb().to_string(),
    }
}

/// POP3 command lines: bytes through `LineBuffer` at the login bound (in
/// chunks the first byte picks, and at once: the same lines), each line
/// through `parse_command`; a command renders to a line that parses to
/// the same command; an error is one well-formed `-ERR` line.
pub fn pop3_command(data: &[u8]) {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let drain = |lb: &mut LineBuffer, lines: &mut Vec<Result<Vec<u8>, pop3::LineTooLong>>| {
        while let Some(l) = lb.next_line() {
            lines.push(l);
        }
    };
    let mut whole = LineBuffer::new(pop3::MAX_AUTH_LINE);
    let mut lines_whole = Vec::new();
    whole.push(input);
    drain(&mut whole, &mut lines_whole);
    let mut split = LineBuffer::new(pop3::MAX_AUTH_LINE);
    let mut lines_split = Vec::new();
    for c in chunks(seed, input) {
        split.push(c);
        drain(&mut split, &mut lines_split);
        assert!(split.buffered_len() < pop3::MAX_AUTH_LINE);
    }
    assert_eq!(lines_whole, lines_split, "lines depend on the split");
    for line in lines_whole.into_iter().flatten() {
        match pop3::parse_command(&line) {
            Ok(cmd) => {
                if !matches!(cmd, Command::Auth { .. } | Command::Pass(_)) {
                    // RFC 2449 4: 255 octets with CRLF.
                    assert!(line.len() + 2 <= pop3::MAX_COMMAND_LINE, "{cmd:?}");
                }
                let again = render(&cmd);
                assert!(again.len() <= line.len(), "{again:?} longer than its line");
                assert_eq!(
                    pop3::parse_command(again.as_bytes()).as_ref(),
                    Ok(&cmd),
                    "{again:?} does not parse back"
                );
            }
            Err(e) => {
                let r = e.reply();
                assert!(!r.ok);
                let wire = r.to_bytes();
                assert!(wire.starts_with(b"-ERR "));
                assert_protocol_lines(&wire);
                assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 1);
            }
        }
    }
}

/// What a login session did: its output, its pauses (where and how long),
/// the auth requests (mechanism, authzid, user, password), the TLS start,
/// and the login (user, leftover plus all input after it).
#[derive(Debug, PartialEq, Eq)]
struct LoginResult {
    out: Vec<u8>,
    pauses: Vec<(usize, Duration)>,
    requests: Vec<(String, String, String, String)>,
    tls: Option<usize>,
    login: Option<(String, Vec<u8>)>,
}

/// One login session over `pieces`, driven as the event loop drives it:
/// every step is resolved before the next piece; auth says Ok to the
/// password "secret", TempFail to "temp", and fails the rest after
/// `delay`. At STLS the fuzzed stream ends (what follows would be TLS).
fn login_run(
    cfg: &Arc<LoginConfig>,
    conn: &Connection,
    delay: Duration,
    pieces: Vec<&[u8]>,
) -> LoginResult {
    let mut s = LoginSession::new(Arc::clone(cfg), conn.clone());
    s.greet();
    let mut r = LoginResult {
        out: std::mem::take(&mut s.out),
        pauses: Vec::new(),
        requests: Vec::new(),
        tls: None,
        login: None,
    };
    let mut pieces = pieces.into_iter();
    'feed: while let Some(piece) = pieces.next() {
        assert!(!s.busy(), "busy between pieces");
        let mut step = s.input(piece);
        loop {
            r.out.append(&mut s.out);
            step = match step {
                login::Step::Continue => break,
                login::Step::Close => break 'feed,
                login::Step::Pause(d) => {
                    assert!(s.busy(), "not busy while paused");
                    r.pauses.push((r.out.len(), d));
                    s.resume()
                }
                login::Step::StartTls => {
                    assert!(s.busy(), "not busy in the handshake");
                    r.tls = Some(r.out.len());
                    // RFC 2595 4: whatever came with STLS is gone, so the
                    // handshake's end runs nothing.
                    let after = s.tls_started();
                    assert_eq!(after, login::Step::Continue);
                    assert!(s.out.is_empty(), "output after STLS before more input");
                    break 'feed;
                }
                login::Step::Authenticate(c) => {
                    assert!(s.busy(), "not busy while authenticating");
                    assert!(!c.user.is_empty(), "a request without a user");
                    let outcome = match c.password.as_str() {
                        "secret" => AuthOutcome::Ok {
                            user: c.user.clone(),
                        },
                        "temp" => AuthOutcome::TempFail,
                        _ => AuthOutcome::Failed { delay },
                    };
                    r.requests.push((
                        c.mechanism.name().to_string(),
                        c.authzid,
                        c.user,
                        c.password,
                    ));
                    s.auth_result(outcome)
                }
                login::Step::LoggedIn { user, mut leftover } => {
                    // The rest of the stream goes to the mailbox process.
                    for p in pieces.by_ref() {
                        leftover.extend_from_slice(p);
                    }
                    r.login = Some((user, leftover));
                    break 'feed;
                }
            };
        }
    }
    s.disconnected();
    r
}

/// The login session from the outside: the first byte picks the split, the
/// second the connection (TLS, cleartext allowed, loopback, APOP) and the
/// limits; the rest is what the client sends. Whole and split runs must
/// give the same output, pauses, auth requests, TLS start and login, and
/// every output line must be a well-formed protocol line.
pub fn pop3_login(data: &[u8]) {
    let [seed, knobs, input @ ..] = data else {
        return;
    };
    let cfg = Arc::new(LoginConfig {
        greeting: "posthorn ready.".into(),
        allow_cleartext: knobs & 2 != 0,
        tls_available: knobs & 64 == 0,
        max_auth_failures: if knobs & 16 == 0 { 3 } else { 1 },
        max_bad_commands: if knobs & 16 == 0 { 3 } else { 20 },
        command_limit: if knobs & 32 == 0 { 50 } else { 2 },
        // Long, so that the clock cannot change the result.
        command_window: Duration::from_secs(3600),
    });
    let rip: IpAddr = if knobs & 4 == 0 {
        [192, 0, 2, 1].into()
    } else {
        [127, 0, 0, 1].into()
    };
    let conn = Connection {
        rip: Some(rip),
        lip: Some([192, 0, 2, 2].into()),
        tls: knobs & 1 != 0,
        apop_challenge: (knobs & 8 != 0).then(|| "<1896.697170952@dbc.mtview.ca.us>".into()),
    };
    let delay = if knobs & 128 == 0 {
        Duration::from_secs(2)
    } else {
        Duration::ZERO
    };
    let whole = login_run(&cfg, &conn, delay, vec![input]);
    let split = login_run(&cfg, &conn, delay, chunks(*seed, input));
    assert_eq!(
        String::from_utf8_lossy(&whole.out),
        String::from_utf8_lossy(&split.out),
        "output depends on the split"
    );
    assert_eq!(whole, split, "the session's requests depend on the split");
    assert_protocol_lines(&whole.out);
}

/// A maildrop in memory for the session target.
struct FuzzDrop {
    list: Vec<MessageInfo>,
    bodies: Vec<&'static [u8]>,
    trickle: usize,
    read_fail: Option<(usize, usize)>,
    gone: Option<usize>,
}

struct FuzzReader {
    data: &'static [u8],
    at: usize,
    max: usize,
    fail_at: Option<usize>,
}

impl Read for FuzzReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.fail_at.is_some_and(|f| self.at >= f) {
            return Err(io::Error::other("fuzz read error"));
        }
        let mut end = self.data.len().min(self.at + self.max.min(buf.len()));
        if let Some(f) = self.fail_at {
            end = end.min(f);
        }
        let n = end - self.at;
        buf[..n].copy_from_slice(&self.data[self.at..end]);
        self.at = end;
        Ok(n)
    }
}

impl Maildrop for FuzzDrop {
    fn messages(&self) -> &[MessageInfo] {
        &self.list
    }
    fn open(&mut self, n: usize) -> io::Result<Box<dyn Read + Send>> {
        if self.gone == Some(n) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(Box::new(FuzzReader {
            data: self.bodies[n],
            at: 0,
            max: self.trickle,
            fail_at: self.read_fail.filter(|f| f.0 == n).map(|f| f.1),
        }))
    }
    fn delete(&mut self, _: &[usize]) -> io::Result<()> {
        Ok(())
    }
}

/// The messages of the session target: LF, CRLF, dots, a bare CR, no
/// final newline, empty.
const BODIES: [&[u8]; 4] = [
    b"Subject: a\n\n.body\n..\nend\n",
    b"Subject: b\r\n\r\nline\r\n.\r\n",
    b"X: c\n\nbare\rcr\n.no newline",
    b"",
];

/// What a transaction session did: output, deletions asked for, whether a
/// message was cut off (a read error closed the connection mid-message).
type SessionResult = (Vec<u8>, Vec<Vec<usize>>, bool);

fn session_run(knobs: u8, leftover: &[u8], pieces: Vec<&[u8]>) -> SessionResult {
    let mut drop = FuzzDrop {
        list: BODIES
            .iter()
            .enumerate()
            .map(|(i, b)| MessageInfo {
                // The Maildir's ,W=: LF counted as CRLF.
                size: (b.len()
                    + b.iter()
                        .enumerate()
                        .filter(|&(k, &c)| c == b'\n' && (k == 0 || b[k - 1] != b'\r'))
                        .count()) as u64,
                uidl: format!("u{i}"),
            })
            .collect(),
        bodies: BODIES.to_vec(),
        trickle: [usize::MAX, 1, 7, 64][usize::from(knobs & 3)],
        read_fail: (knobs & 4 != 0).then_some((0, 9)),
        gone: (knobs & 8 != 0).then_some(1),
    };
    let cfg = Arc::new(SessionConfig {
        max_bad_commands: if knobs & 16 == 0 { 20 } else { 2 },
    });
    let fail_commit = knobs & 32 != 0;
    let (mut s, mut step) = Session::start(cfg, "fuzz".into(), leftover, &mut drop);
    let mut out = Vec::new();
    let mut commits = Vec::new();
    let mut pieces = pieces.into_iter();
    'feed: loop {
        loop {
            out.append(&mut s.out);
            step = match step {
                session::Step::Continue => break,
                session::Step::Close => break 'feed,
                session::Step::Produce => {
                    let mut chunk = Vec::new();
                    let next = s.produce(&mut chunk, &mut drop);
                    assert!(
                        chunk.len() <= 2 * session::CHUNK + 1024,
                        "one chunk at a time"
                    );
                    out.append(&mut chunk);
                    next
                }
                session::Step::Commit(ns) => {
                    assert!(ns.windows(2).all(|w| w[0] < w[1]), "ascending");
                    assert!(ns.iter().all(|&n| n < BODIES.len()), "in range");
                    assert!(!ns.is_empty());
                    commits.push(ns);
                    s.commit_done(if fail_commit {
                        Err(io::Error::other("fuzz delete error"))
                    } else {
                        Ok(())
                    })
                }
            };
        }
        let Some(piece) = pieces.next() else { break };
        assert!(!s.busy(), "busy between pieces");
        step = s.input(piece, &mut drop);
    }
    // The session's own account of why it ended.
    let cut = s.disconnect_line().contains("Error reading a message");
    s.disconnected();
    (out, commits, cut)
}

/// The transaction session over a four-message maildrop: the first byte
/// picks the split, the second the readers (trickle, a read error, a gone
/// message), the limits and a failing deletion; then a length byte and
/// that much leftover from the login, then what the client sends. Whole
/// and split runs must give the same output and deletions; the output is
/// CRLF lines only.
pub fn pop3_session(data: &[u8]) {
    let [seed, knobs, n, rest @ ..] = data else {
        return;
    };
    let (leftover, input) = rest.split_at(usize::from(*n).min(rest.len()));
    let whole = session_run(*knobs, leftover, vec![input]);
    let split = session_run(*knobs, leftover, chunks(*seed, input));
    assert_eq!(
        String::from_utf8_lossy(&whole.0),
        String::from_utf8_lossy(&split.0),
        "output depends on the split"
    );
    assert_eq!(whole.1, split.1, "deletions depend on the split");
    assert_eq!(whole.2, split.2, "cut depends on the split");
    assert_crlf_lines(&whole.0, whole.2);
}

/// Credentials out of an exchange: never empty, never a NUL, bounded.
fn assert_credentials(c: &SaslCredentials) {
    assert!(!c.user.is_empty() && !c.password.is_empty());
    for f in [&c.authzid, &c.user, &c.password] {
        assert!(!f.contains('\0') && f.len() <= sasl::MAX_FIELD);
    }
}

/// SASL: the first byte picks the mechanism (bit 0: LOGIN) and whether the
/// first line is an initial response (bit 1); the rest, cut at LF, are the
/// client's lines. Also: strict base64 is canonical (what decodes encodes
/// back to the same text), and PLAIN decoding of the raw bytes.
pub fn sasl(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if let Ok(decoded) = sasl::decode_base64(rest) {
        assert_eq!(
            sasl::encode_base64(&decoded).as_bytes(),
            rest,
            "non-canonical base64 accepted"
        );
    }
    if let Ok(c) = sasl::decode_plain(rest) {
        assert_credentials(&c);
    }
    let mech = if mode & 1 == 0 {
        sasl::Mechanism::Plain
    } else {
        sasl::Mechanism::Login
    };
    let mut lines = rest.split(|&b| b == b'\n');
    let initial = if mode & 2 != 0 { lines.next() } else { None };
    let Ok((mut ex, mut progress)) = Exchange::start(mech, initial) else {
        return;
    };
    loop {
        match progress {
            Progress::Done(c) => {
                assert_credentials(&c);
                assert_eq!(ex.step(b""), Err(sasl::SaslError::Finished));
                return;
            }
            Progress::Challenge(ch) => {
                assert!(
                    sasl::decode_base64(ch.as_bytes()).is_ok(),
                    "challenge {ch:?}"
                );
                let Some(line) = lines.next() else { return };
                match ex.step(line) {
                    Ok(p) => progress = p,
                    Err(_) => {
                        assert_eq!(ex.step(b""), Err(sasl::SaslError::Finished));
                        return;
                    }
                }
            }
        }
    }
}
