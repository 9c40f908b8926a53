//! The IMAP sessions from the outside: imap-login's session before
//! authentication (imapd::login) and the session after it (imapd::session)
//! over a real Maildir in a temporary directory.
//!
//! Owns what the `imap_login` and `imap_session` targets feed and check
//! beyond "does not panic": whole and split input give the same output and
//! the same auth requests; every output line is CRLF-terminated (literals
//! aside) and free of stray control characters; the session ends when it
//! says it does. Does not own the sessions.
//!
//! Standards: RFC 3501 / RFC 9051 (responses), RFC 4959 (SASL-IR).
//!
//! Security: the input is what any client could send; a panic, an abort or
//! a hang is a finding. The Maildir is the harness's own, under the system
//! temporary directory, and removed afterwards.
//!
//! Diagnostics: a failed property panics with what differed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use posthorn_imapd::login::{AuthOutcome, Connection, LoginConfig, LoginSession, Step};
use posthorn_imapd::session::{Session, SessionConfig};

use crate::chunks;

#[derive(Debug, PartialEq, Eq)]
struct LoginResult {
    out: Vec<u8>,
    requests: Vec<(String, String, String)>,
    tls: Option<usize>,
    login: Option<(String, String, Vec<u8>)>,
}

fn login_run(cfg: &Arc<LoginConfig>, conn: &Connection, pieces: Vec<&[u8]>) -> LoginResult {
    let mut s = LoginSession::new(Arc::clone(cfg), conn.clone());
    s.greet();
    let mut r = LoginResult {
        out: std::mem::take(&mut s.out),
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
                Step::Continue => break,
                Step::Close => break 'feed,
                Step::Pause(_) => {
                    assert!(s.busy(), "not busy while paused");
                    s.resume()
                }
                Step::StartTls => {
                    r.tls = Some(r.out.len());
                    let after = s.tls_started();
                    assert_eq!(after, Step::Continue);
                    assert!(s.out.is_empty(), "output after STARTTLS before more input");
                    break 'feed;
                }
                Step::Authenticate(c) => {
                    assert!(s.busy(), "not busy while authenticating");
                    let outcome = match c.password.as_str() {
                        "secret" => AuthOutcome::Ok {
                            user: c.user.clone(),
                        },
                        "temp" => AuthOutcome::TempFail,
                        _ => AuthOutcome::Failed {
                            delay: Duration::from_secs(2),
                        },
                    };
                    r.requests
                        .push((c.mechanism.name().to_string(), c.user, c.password));
                    s.auth_result(outcome)
                }
                Step::LoggedIn {
                    user,
                    tag,
                    mut leftover,
                } => {
                    for p in pieces.by_ref() {
                        leftover.extend_from_slice(p);
                    }
                    r.login = Some((user, tag, leftover));
                    break 'feed;
                }
            };
        }
    }
    s.disconnected();
    r
}

/// IMAP output lines: CRLF at the end, no bare LF or control characters
/// outside literals (`{n}` at a line's end announces n octets).
fn assert_imap_lines(out: &[u8]) {
    let mut rest = out;
    while !rest.is_empty() {
        let Some(i) = rest.windows(2).position(|w| w == b"\r\n") else {
            panic!(
                "output does not end in CRLF: {:?}",
                String::from_utf8_lossy(rest)
            );
        };
        let line = &rest[..i];
        assert!(
            !line.iter().any(|&b| b == b'\n' || b == b'\r' || b == 0),
            "bare LF, CR or NUL in {:?}",
            String::from_utf8_lossy(line)
        );
        rest = &rest[i + 2..];
        // A literal: skip its octets.
        if line.ends_with(b"}") {
            if let Some(open) = line.iter().rposition(|&b| b == b'{') {
                if let Ok(n) = std::str::from_utf8(&line[open + 1..line.len() - 1])
                    .unwrap_or("")
                    .parse::<usize>()
                {
                    assert!(n <= rest.len(), "literal longer than the output");
                    rest = &rest[n..];
                }
            }
        }
    }
}

/// imap-login's session: the first byte picks the split, the second the
/// connection (TLS, cleartext allowed, loopback); the rest is the client.
pub fn imap_login(data: &[u8]) {
    let [seed, knobs, input @ ..] = data else {
        return;
    };
    let cfg = Arc::new(LoginConfig {
        greeting: "posthorn ready.".into(),
        allow_cleartext: knobs & 2 != 0,
        tls_available: knobs & 64 == 0,
        max_auth_failures: 3,
        max_bad_commands: if knobs & 16 == 0 { 3 } else { 20 },
        limits: posthorn_imapd::login_limits(),
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
    };
    let whole = login_run(&cfg, &conn, vec![input]);
    let split = login_run(&cfg, &conn, chunks(*seed, input));
    assert_eq!(
        String::from_utf8_lossy(&whole.out),
        String::from_utf8_lossy(&split.out),
        "output depends on the split"
    );
    assert_eq!(whole, split, "the session's requests depend on the split");
    assert_imap_lines(&whole.out);
}

/// Three messages in a fresh Maildir; the session after login fed the
/// input whole, then (in a second Maildir) split.
fn session_run(dir: &std::path::Path, pieces: Vec<&[u8]>) -> Vec<u8> {
    let _ = std::fs::remove_dir_all(dir);
    let md = dir.join("Maildir");
    let store = mailstore::Store::create_user(&md, mailstore::Options::default())
        .expect("a Maildir in the temporary directory");
    for (i, m) in [
        "From: a@example.org\nSubject: one\n\nbody one\n",
        "From: b@example.org\nSubject: two\nContent-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\npart\n--x--\n",
        "Subject: three\n\n",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(md.join("new").join(format!("100000000{i}.M{i}P1.fuzz")), m)
            .expect("a message file");
    }
    let mut cfg = SessionConfig::standard(proto::imap::Limits {
        max_line: 2048,
        max_literal: 4096,
        max_discard: 4096,
        literal_minus: false,
        max_depth: 8,
        max_items: 64,
    });
    // The command rate bound depends on the clock: off, so that whole and
    // split input give the same output.
    cfg.commands_per_second = 0;
    let cfg = Arc::new(cfg);
    let (mut s, _) = Session::start(cfg, "fuzz".into(), store, Some("a0"), b"");
    let mut out = std::mem::take(&mut s.out);
    for p in pieces {
        let step = s.input(p);
        out.append(&mut s.out);
        if step == posthorn_imapd::session::Step::Close {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    out
}

/// The session after login, commands from the fuzzer, against a real
/// Maildir. Whole and split input must give the same output (UIDVALIDITY
/// and dates aside: both runs make their Maildir within the same second
/// at most one apart, so those lines are compared without digits).
pub fn imap_session(data: &[u8]) {
    let [seed, input @ ..] = data else {
        return;
    };
    let base = std::env::temp_dir().join(format!("posthorn-fuzz-imap-{}", std::process::id()));
    let whole = session_run(&base.join("w"), vec![input]);
    let split = session_run(&base.join("s"), chunks(*seed, input));
    // Empty now (each run removes its Maildir); another thread of the
    // same process may still use it, then it stays for that one to remove.
    let _ = std::fs::remove_dir(&base);
    assert_imap_lines(&whole);
    let strip =
        |o: &[u8]| -> Vec<u8> { o.iter().copied().filter(|b| !b.is_ascii_digit()).collect() };
    assert_eq!(
        String::from_utf8_lossy(&strip(&whole)),
        String::from_utf8_lossy(&strip(&split)),
        "output depends on the split"
    );
}
