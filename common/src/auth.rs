//! The auth protocol (`private/auth`): what the mailbox dispatchers and
//! smtpd ask posthorn-auth, its answers, and the blocking client they use.
//!
//! Frames are common::ipc frames (u32 length, bincode 2). The client sends
//! an `AuthRequest` and reads one `AuthResponse` with the same id; one
//! request at a time per connection (a client that wants concurrency opens
//! more connections). `Verify` checks credentials and answers with the
//! user's mailbox (`UserInfo`); `Lookup` says whether a user exists, without
//! a password. Owns the types, their bounds and the client; posthorn-auth
//! owns the answers.
//!
//! Standards: RFC 4616 (PLAIN: authzid, authcid, password), RFC 1939 7
//! (APOP: the client's digest of the greeting's challenge and the secret).
//!
//! Security: a request over MAX_REQUEST bytes is a protocol error (the
//! service closes the connection); user names over MAX_USER bytes and
//! passwords over MAX_PASSWORD bytes are refused without hashing. An answer
//! whose id is not the request's is an error, and the connection is dropped
//! after any error or time-out, so a late answer is never taken for the next
//! one. `Credentials`' Debug output hides the password.
//!
//! Diagnostics: `AuthError` says what failed (connect, time-out, closed,
//! protocol); the caller logs it and answers its client "try again later".

use std::fmt;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ipc;
use crate::quota::Quota;

/// The longest user name (and authzid) auth considers.
pub const MAX_USER: usize = 255;
/// The longest password (or APOP digest) auth considers.
pub const MAX_PASSWORD: usize = 1024;
/// The largest request frame the service reads (its body; well above what
/// MAX_USER and MAX_PASSWORD allow, below ipc::MAX_FRAME).
pub const MAX_REQUEST: usize = 64 * 1024;
/// How long `AuthClient::verify` waits for an answer by default.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `AuthClient::lookup` waits for an answer by default.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A request to posthorn-auth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    /// Chosen by the client; the response carries it back.
    pub id: u64,
    pub body: AuthBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthBody {
    /// Check a password and answer with the user's mailbox.
    Verify(Credentials),
    /// Does this user exist (smtpd's recipient check)? `user` is the
    /// lookup key: an address, without extension; case does not matter.
    Lookup { user: String },
}

/// What a login process collected from its client.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// "pop3", "imap" or "smtp" (for log lines).
    pub service: String,
    pub mechanism: Mechanism,
    /// RFC 4616's authorization identity: empty, or the user itself (no
    /// master users).
    pub authzid: String,
    /// The user name as the client typed it (auth compares lower case).
    pub user: String,
    /// The password; for APOP the client's hex digest.
    pub password: String,
    /// The client's address (None when unknown).
    pub client: Option<IpAddr>,
    /// The local port the client connected to.
    pub local_port: u16,
    /// TLS is active, or the client is on loopback.
    pub secured: bool,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("service", &self.service)
            .field("mechanism", &self.mechanism)
            .field("authzid", &self.authzid)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("client", &self.client)
            .field("local_port", &self.local_port)
            .field("secured", &self.secured)
            .finish()
    }
}

/// How the client sent its password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mechanism {
    /// SASL PLAIN (RFC 4616).
    Plain,
    /// SASL LOGIN.
    Login,
    /// POP3 USER/PASS, IMAP LOGIN.
    UserPass,
    /// POP3 APOP (RFC 1939 7): `password` is the hex MD5 digest of
    /// `challenge` followed by the secret.
    Apop { challenge: String },
}

impl Mechanism {
    /// The name Dovecot's log lines use (`method=PLAIN`).
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::Plain | Mechanism::UserPass => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::Apop { .. } => "APOP",
        }
    }
}

/// posthorn-auth's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResponse {
    /// The request's id.
    pub id: u64,
    pub body: AuthReply,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthReply {
    /// Verified (Verify), or exists (Lookup).
    Ok(UserInfo),
    /// Lookup only: no such user. (Verify answers Failed for unknown users.)
    NotFound,
    /// Verification failed. The requester waits `delay_ms` before it
    /// answers its client (auth's failure penalty).
    Failed { delay_ms: u32, reason: FailReason },
    /// auth cannot answer now (configuration or users-file problem); the
    /// text is for the requester's log, not for the client.
    TempFail(String),
}

/// Why a Verify failed. Unknown user and wrong password are one reason:
/// nobody is told which it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailReason {
    /// Unknown user, wrong password, or a user who cannot log in.
    Credentials,
    /// The connection is neither TLS nor loopback, and
    /// auth_allow_cleartext = no.
    CleartextRefused,
    /// An authzid other than the user (master users are not supported).
    AuthzidRefused,
    /// A user name or password over the bounds, or a user name with
    /// characters no user can have.
    Invalid,
}

/// A user's mailbox, as common::users resolves it (local delivery uses the
/// same resolution).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The canonical name: the users file's, lower case.
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// Absolute.
    pub maildir: PathBuf,
    pub quota: Quota,
    /// The user resolved to uid or gid 0 and was given default_privs' ids;
    /// the dispatcher refuses mailbox access for such a user.
    pub default_privs: bool,
}

/// Why a call to auth did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot connect to the auth service at {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("the auth service did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the auth service closed the connection")]
    Closed,
    #[error("auth service connection: {0}")]
    Io(io::Error),
    #[error("bad answer from the auth service: {0}")]
    Protocol(String),
}

/// A blocking client of `private/auth`. Reconnects once when the service
/// closed the connection (it was restarted); drops the connection after a
/// time-out or a protocol error.
#[derive(Debug)]
pub struct AuthClient {
    path: PathBuf,
    stream: Option<UnixStream>,
    next_id: u64,
    verify_timeout: Duration,
    lookup_timeout: Duration,
}

impl AuthClient {
    /// Connect to the auth service's socket (`$queue_directory/private/auth`).
    pub fn connect(path: impl Into<PathBuf>) -> Result<AuthClient, AuthError> {
        let mut c = AuthClient::lazy(path);
        c.stream = Some(c.open()?);
        Ok(c)
    }

    /// A client that connects at its first request.
    pub fn lazy(path: impl Into<PathBuf>) -> AuthClient {
        AuthClient {
            path: path.into(),
            stream: None,
            next_id: 1,
            verify_timeout: VERIFY_TIMEOUT,
            lookup_timeout: LOOKUP_TIMEOUT,
        }
    }

    /// Other time-outs than VERIFY_TIMEOUT and LOOKUP_TIMEOUT.
    pub fn with_timeouts(mut self, verify: Duration, lookup: Duration) -> AuthClient {
        self.verify_timeout = verify;
        self.lookup_timeout = lookup;
        self
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Check credentials: `Ok(UserInfo)`, `Failed { delay_ms, reason }`
    /// (wait, then tell the client it failed) or `TempFail`.
    pub fn verify(&mut self, credentials: &Credentials) -> Result<AuthReply, AuthError> {
        let t = self.verify_timeout;
        self.call(AuthBody::Verify(credentials.clone()), t)
    }

    /// Look a user up: `Ok(UserInfo)`, `NotFound` or `TempFail`.
    pub fn lookup(&mut self, user: &str) -> Result<AuthReply, AuthError> {
        let t = self.lookup_timeout;
        self.call(
            AuthBody::Lookup {
                user: user.to_string(),
            },
            t,
        )
    }

    fn open(&self) -> Result<UnixStream, AuthError> {
        UnixStream::connect(&self.path).map_err(|source| AuthError::Connect {
            path: self.path.clone(),
            source,
        })
    }

    fn call(&mut self, body: AuthBody, timeout: Duration) -> Result<AuthReply, AuthError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut frame = Vec::new();
        ipc::write_frame(&mut frame, &AuthRequest { id, body }).map_err(AuthError::Io)?;
        let fresh = self.stream.is_none();
        match self.round_trip(id, &frame, timeout) {
            // The service was restarted since the last request: once more
            // on a new connection.
            Err(AuthError::Closed) if !fresh => self.round_trip(id, &frame, timeout),
            r => r,
        }
    }

    fn round_trip(
        &mut self,
        id: u64,
        frame: &[u8],
        timeout: Duration,
    ) -> Result<AuthReply, AuthError> {
        let mut stream = match self.stream.take() {
            Some(s) => s,
            None => self.open()?,
        };
        let r = exchange(&mut stream, id, frame, timeout);
        if r.is_ok() {
            self.stream = Some(stream);
        }
        r
    }
}

fn exchange(
    stream: &mut UnixStream,
    id: u64,
    frame: &[u8],
    timeout: Duration,
) -> Result<AuthReply, AuthError> {
    let timeout = timeout.max(Duration::from_millis(1));
    let io_err = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => AuthError::Timeout(timeout),
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::NotConnected => AuthError::Closed,
        _ => AuthError::Io(e),
    };
    stream
        .set_write_timeout(Some(timeout))
        .map_err(AuthError::Io)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(AuthError::Io)?;
    stream.write_all(frame).map_err(io_err)?;
    let resp: AuthResponse = match ipc::read_frame(stream) {
        Ok(Some(r)) => r,
        Ok(None) => return Err(AuthError::Closed),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(AuthError::Protocol(e.to_string()))
        }
        Err(e) => return Err(io_err(e)),
    };
    if resp.id != id {
        return Err(AuthError::Protocol(format!(
            "answer to request {} where {id} was asked",
            resp.id
        )));
    }
    Ok(resp.body)
}

/// The service's side of the framing: take one whole request from the front
/// of `buf` (what a connection has sent so far). `Ok(None)`: not whole yet.
/// An error means the peer does not speak the protocol: close it.
pub fn take_request(buf: &mut Vec<u8>) -> Result<Option<AuthRequest>, io::Error> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_REQUEST {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("request of {len} bytes is too large"),
        ));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let req = ipc::read_frame(&mut &buf[..4 + len])?;
    buf.drain(..4 + len);
    req.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "empty frame"))
        .map(Some)
}

/// Append a response frame to `out`.
pub fn put_response(out: &mut Vec<u8>, resp: &AuthResponse) -> io::Result<()> {
    ipc::write_frame(out, resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            service: "pop3".into(),
            mechanism: Mechanism::Apop {
                challenge: "<1.2@h>".into(),
            },
            authzid: String::new(),
            user: "Demo@Example.Test".into(),
            password: "secret".into(),
            client: Some("192.0.2.1".parse().unwrap()),
            local_port: 110,
            secured: false,
        }
    }

    #[test]
    fn frames_round_trip_and_are_bounded() {
        let req = AuthRequest {
            id: 7,
            body: AuthBody::Verify(creds()),
        };
        let mut buf = Vec::new();
        ipc::write_frame(&mut buf, &req).unwrap();
        ipc::write_frame(
            &mut buf,
            &AuthRequest {
                id: 8,
                body: AuthBody::Lookup { user: "x".into() },
            },
        )
        .unwrap();
        let whole = buf.clone();
        // Byte by byte: nothing until the first frame is whole.
        let mut part = Vec::new();
        let mut got = Vec::new();
        for b in whole {
            part.push(b);
            while let Some(r) = take_request(&mut part).unwrap() {
                got.push(r);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], req);
        assert!(part.is_empty());
        let mut big = ((MAX_REQUEST + 1) as u32).to_le_bytes().to_vec();
        assert!(take_request(&mut big).is_err());
        let mut junk = vec![2, 0, 0, 0, 0xff, 0xff];
        assert!(take_request(&mut junk).is_err());
        let mut empty = vec![0, 0, 0, 0];
        assert!(take_request(&mut empty).is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let d = format!("{:?}", creds());
        assert!(!d.contains("secret"), "{d}");
        assert!(d.contains("Demo@Example.Test"), "{d}");
    }

    #[test]
    fn client_reconnects_once_and_checks_ids() {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("posthorn-auth-client-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("auth");
        let l = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            // First connection: one answer, then closed (a restart).
            let (mut s, _) = l.accept().unwrap();
            let r: AuthRequest = ipc::read_frame(&mut s).unwrap().unwrap();
            ipc::write_frame(
                &mut s,
                &AuthResponse {
                    id: r.id,
                    body: AuthReply::NotFound,
                },
            )
            .unwrap();
            drop(s);
            // Second: answers with the wrong id.
            let (mut s, _) = l.accept().unwrap();
            let r: AuthRequest = ipc::read_frame(&mut s).unwrap().unwrap();
            ipc::write_frame(
                &mut s,
                &AuthResponse {
                    id: r.id + 1,
                    body: AuthReply::NotFound,
                },
            )
            .unwrap();
            // Third: never answers.
            let (mut s, _) = l.accept().unwrap();
            let _: Option<AuthRequest> = ipc::read_frame(&mut s).unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
        let mut c = AuthClient::connect(&path)
            .unwrap()
            .with_timeouts(Duration::from_millis(200), Duration::from_millis(200));
        assert_eq!(c.lookup("a").unwrap(), AuthReply::NotFound);
        // The server closed: the client reconnects and gets the bad id.
        assert!(matches!(c.lookup("b"), Err(AuthError::Protocol(_))));
        assert!(matches!(c.verify(&creds()), Err(AuthError::Timeout(_))));
        server.join().unwrap();
        // Nobody listens any more.
        drop(std::fs::remove_file(&path));
        assert!(matches!(c.lookup("c"), Err(AuthError::Connect { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
