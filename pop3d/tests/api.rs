//! The sessions' calls that transcripts do not reach: time-outs, input at
//! the wrong moment, the bounds on input held while a session waits, and
//! the steps a pipelined leftover can produce at start.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use posthorn_pop3d::login::{self, AuthOutcome, Connection, LoginConfig, LoginSession};
use posthorn_pop3d::session::{self, Maildrop, MessageInfo, Session, SessionConfig};

fn login_cfg() -> Arc<LoginConfig> {
    Arc::new(LoginConfig {
        greeting: "posthorn ready.".into(),
        allow_cleartext: false,
        tls_available: true,
        max_auth_failures: 3,
        max_bad_commands: 3,
        command_limit: 50,
        command_window: Duration::from_secs(3600),
    })
}

fn tls_conn() -> Connection {
    Connection {
        rip: Some([192, 0, 2, 1].into()),
        lip: Some([192, 0, 2, 2].into()),
        tls: true,
        apop_challenge: None,
    }
}

fn out(s: &mut LoginSession) -> String {
    String::from_utf8(std::mem::take(&mut s.out)).expect("ASCII replies")
}

/// `N secs` with the number replaced.
fn secs_free(line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    (0..words.len())
        .map(|i| {
            let secs = words.get(i + 1).is_some_and(|n| n.starts_with("secs"));
            if secs && words[i].bytes().all(|b| b.is_ascii_digit()) {
                "S"
            } else {
                words[i]
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn login_timeout() {
    let mut s = LoginSession::new(login_cfg(), tls_conn());
    s.greet();
    assert_eq!(out(&mut s), "+OK posthorn ready.\r\n");
    assert_eq!(s.timed_out(), login::Step::Close);
    assert_eq!(out(&mut s), "-ERR Disconnected for inactivity.\r\n");
    assert_eq!(
        secs_free(&s.disconnect_line().expect("a line")),
        "Disconnected: Inactivity (no auth attempts in S secs): user=<>, rip=192.0.2.1, lip=192.0.2.2, TLS"
    );
    // Closed: input is refused, nothing more is written.
    assert_eq!(s.input(b"CAPA\r\n"), login::Step::Close);
    assert_eq!(out(&mut s), "");
}

/// A time-out in the middle of a SASL exchange says so in the log line.
#[test]
fn login_timeout_in_sasl() {
    let mut s = LoginSession::new(login_cfg(), tls_conn());
    assert_eq!(s.input(b"AUTH LOGIN\r\n"), login::Step::Continue);
    assert_eq!(out(&mut s), "+ VXNlcm5hbWU6\r\n");
    assert_eq!(s.timed_out(), login::Step::Close);
    assert_eq!(
        secs_free(&s.disconnect_line().expect("a line")),
        "Disconnected: Inactivity (client didn't finish SASL auth, waited S secs): user=<>, method=LOGIN, rip=192.0.2.1, lip=192.0.2.2, TLS"
    );
}

/// Input while auth is asked is held, bounded, and the answer carries on
/// with it; an answer nobody asked for closes.
#[test]
fn login_input_while_authenticating() {
    let mut s = LoginSession::new(login_cfg(), tls_conn());
    let step = s.input(b"USER bob\r\nPASS x\r\nCAPA\r\n");
    assert!(matches!(step, login::Step::Authenticate(_)), "{step:?}");
    assert!(s.busy());
    assert_eq!(s.input(b"QUIT\r\n"), login::Step::Continue);
    assert_eq!(out(&mut s), "+OK\r\n");
    let step = s.auth_result(AuthOutcome::Failed {
        delay: Duration::from_secs(1),
    });
    assert_eq!(step, login::Step::Pause(Duration::from_secs(1)));
    assert_eq!(out(&mut s), "");
    assert_eq!(s.resume(), login::Step::Close);
    let text = out(&mut s);
    assert!(
        text.starts_with("-ERR [AUTH] Authentication failed.\r\n+OK\r\nCAPA\r\n"),
        "{text}"
    );
    assert!(text.ends_with(".\r\n+OK Logging out\r\n"), "{text}");

    let mut s = LoginSession::new(login_cfg(), tls_conn());
    assert_eq!(
        s.auth_result(AuthOutcome::Ok { user: "bob".into() }),
        login::Step::Close
    );

    let mut s = LoginSession::new(login_cfg(), tls_conn());
    let step = s.input(b"USER bob\r\nPASS x\r\n");
    assert!(matches!(step, login::Step::Authenticate(_)));
    let flood = b"NOOP\r\n".repeat(1000);
    let mut step = login::Step::Continue;
    for _ in 0..20 {
        step = s.input(&flood);
        if step == login::Step::Close {
            break;
        }
    }
    assert_eq!(step, login::Step::Close);
    assert_eq!(
        secs_free(&s.disconnect_line().expect("a line")),
        "Disconnected: Input buffer full (disconnected while authenticating, waited S secs): user=<bob>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, TLS"
    );
}

/// After STLS nothing is read until the handshake; a second `tls_started`
/// or an early `resume` changes nothing.
#[test]
fn login_stls_wait() {
    let conn = Connection {
        tls: false,
        ..tls_conn()
    };
    let mut s = LoginSession::new(login_cfg(), conn);
    assert_eq!(s.input(b"STLS\r\n"), login::Step::StartTls);
    assert_eq!(out(&mut s), "+OK Begin TLS negotiation now.\r\n");
    assert!(s.busy());
    assert_eq!(s.input(b"USER injected\r\n"), login::Step::Continue);
    assert_eq!(s.resume(), login::Step::Continue);
    assert_eq!(out(&mut s), "");
    assert_eq!(s.tls_started(), login::Step::Continue);
    assert_eq!(s.tls_started(), login::Step::Continue);
    assert_eq!(out(&mut s), "");
    assert_eq!(s.input(b"PASS secret\r\n"), login::Step::Continue);
    assert_eq!(out(&mut s), "-ERR No username given.\r\n");
}

/// The APOP greeting carries the timestamp the caller made.
#[test]
fn apop_greeting() {
    let conn = Connection {
        apop_challenge: Some("<4242.1700000000@mail.example.test>".into()),
        ..tls_conn()
    };
    let mut s = LoginSession::new(login_cfg(), conn);
    s.greet();
    assert_eq!(
        out(&mut s),
        "+OK posthorn ready. <4242.1700000000@mail.example.test>\r\n"
    );
}

/// A maildrop in memory.
struct Drop1 {
    list: Vec<MessageInfo>,
    deleted: Vec<usize>,
}

impl Maildrop for Drop1 {
    fn messages(&self) -> &[MessageInfo] {
        &self.list
    }
    fn open(&mut self, _: usize) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(io::Cursor::new(b"Subject: x\n\nbody\n".to_vec())))
    }
    fn delete(&mut self, ns: &[usize]) -> io::Result<()> {
        self.deleted.extend_from_slice(ns);
        Ok(())
    }
}

fn drop1() -> Drop1 {
    Drop1 {
        list: vec![
            MessageInfo {
                size: 19,
                uidl: "a".into(),
            },
            MessageInfo {
                size: 19,
                uidl: "b".into(),
            },
        ],
        deleted: Vec::new(),
    }
}

fn session_cfg() -> Arc<SessionConfig> {
    Arc::new(SessionConfig {
        max_bad_commands: 20,
    })
}

/// A leftover that ends in QUIT after DELE: the session asks for the
/// deletion straight from `start`, and reads nothing more.
#[test]
fn start_with_quit_commits() {
    let mut drop = drop1();
    let (mut s, step) = Session::start(
        session_cfg(),
        "bob".into(),
        b"DELE 2\r\nQUIT\r\nSTAT\r\n",
        &mut drop,
    );
    assert_eq!(step, session::Step::Commit(vec![1]));
    assert!(s.busy());
    assert_eq!(s.input(b"NOOP\r\n", &mut drop), session::Step::Continue);
    let result = drop.delete(&[1]);
    assert_eq!(s.commit_done(result), session::Step::Close);
    assert_eq!(drop.deleted, [1]);
    let text = String::from_utf8(std::mem::take(&mut s.out)).expect("ASCII");
    assert_eq!(
        text,
        "+OK Logged in.\r\n+OK Marked to be deleted.\r\n+OK Logging out, messages deleted.\r\n"
    );
    assert_eq!(
        s.disconnect_line(),
        "pop3(bob): Disconnected: Logged out top=0/0, retr=0/0, del=1/2, size=38"
    );
    assert_eq!(s.input(b"STAT\r\n", &mut drop), session::Step::Close);
}

/// A time-out writes its -ERR between commands, and nothing in the middle
/// of a message (which would corrupt it).
#[test]
fn session_timeouts() {
    let mut drop = drop1();
    let (mut s, _) = Session::start(session_cfg(), "bob".into(), b"", &mut drop);
    s.out.clear();
    assert_eq!(s.timed_out(), session::Step::Close);
    assert_eq!(s.out, b"-ERR Disconnected for inactivity.\r\n");
    assert_eq!(
        s.disconnect_line(),
        "pop3(bob): Disconnected: Inactivity top=0/0, retr=0/0, del=0/2, size=38"
    );

    let (mut s, step) = Session::start(session_cfg(), "bob".into(), b"RETR 1\r\n", &mut drop);
    assert_eq!(step, session::Step::Produce);
    s.out.clear();
    assert_eq!(s.timed_out(), session::Step::Close);
    assert_eq!(s.out, b"");
    let mut out = Vec::new();
    assert_eq!(s.produce(&mut out, &mut drop), session::Step::Close);
    assert_eq!(s.commit_done(Ok(())), session::Step::Close);
    assert_eq!(out, b"");
}

/// `commit_done` and `produce` at the wrong moment change nothing.
#[test]
fn session_calls_out_of_turn() {
    let mut drop = drop1();
    let (mut s, step) = Session::start(session_cfg(), "bob".into(), b"", &mut drop);
    assert_eq!(step, session::Step::Continue);
    s.out.clear();
    assert_eq!(s.commit_done(Ok(())), session::Step::Continue);
    let mut out = Vec::new();
    assert_eq!(s.produce(&mut out, &mut drop), session::Step::Continue);
    assert!(out.is_empty());
    assert_eq!(s.input(b"STAT\r\n", &mut drop), session::Step::Continue);
    assert_eq!(s.out, b"+OK 2 38\r\n");
}
