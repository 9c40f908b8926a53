//! From login to mailbox: the frames between a login process, the post-login
//! dispatcher and the per-user mailbox process (doc/mail-access.md).
//!
//! A login process (unprivileged: no mailbox, no hash) opens one connection
//! to the dispatcher's socket `login/PROTOCOL` per authentication attempt:
//!
//! ```text
//! login -> dispatcher   LoginRequest                 (the credentials)
//! dispatcher -> login   LoginAnswer                  (after asking auth)
//! login -> dispatcher   Handoff + the client's socket (SCM_RIGHTS), after Ok only
//! dispatcher -> mailbox process  SessionStart + the same socket
//! ```
//!
//! The dispatcher binds the hand-off to the answer on the same connection:
//! a login process can hand over only a session whose credentials it has
//! just had verified, for the user auth named.
//!
//! Owns the frame types and the login side's blocking exchange (run on the
//! skeleton's pool). Does not own the protocols (pop3d, imapd) or the
//! dispatcher's process management (login::dispatch).
//!
//! Security: every frame is a common::ipc frame (bounded); a dispatcher
//! checks the peer's credentials and that the hand-off names the user it
//! verified; the password travels only on the login -> dispatcher -> auth
//! path over Unix sockets and is never logged.

use std::io;
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{Mechanism, UserInfo};
use crate::ipc;

pub mod dispatch;
pub mod log;

/// The mailbox protocols that have login processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Pop3,
    Imap,
}

impl Protocol {
    /// The service name (auth's `service`, the dispatcher socket's name).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
        }
    }
}

/// login -> dispatcher: check these credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub protocol: Protocol,
    pub mechanism: Mechanism,
    pub authzid: String,
    pub user: String,
    pub password: String,
    pub client: Option<IpAddr>,
    pub local_port: u16,
    /// TLS is active, or the client is on loopback.
    pub secured: bool,
}

/// dispatcher -> login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginAnswer {
    /// Verified: send the Handoff next, on this connection.
    Ok { user: String },
    /// Wrong credentials (or unknown user: the same answer). Wait
    /// `delay_ms` before telling the client.
    Failed { delay_ms: u32 },
    /// Auth or the mailbox side cannot answer now.
    TempFail { reason: String },
}

/// login -> dispatcher, with the client's socket: a logged-in session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    /// The user of the preceding Ok.
    pub user: String,
    pub client: Option<IpAddr>,
    pub client_port: u16,
    pub local: Option<IpAddr>,
    pub local_port: u16,
    /// `TLSv1.3 with cipher ...` when the login process holds a TLS session
    /// (the socket passed on is then the plaintext side of its relay).
    pub tls: Option<String>,
    /// How the user authenticated (for the log: PLAIN, LOGIN, USER, APOP).
    pub mechanism: String,
    /// Client input after the authenticating command, not yet processed.
    pub leftover: Vec<u8>,
    /// IMAP: the tag of the authenticating command, which the mailbox
    /// process answers (`TAG OK [CAPABILITY ...] Logged in`, as Dovecot's
    /// imap process does); None for POP3, whose login process answers.
    pub tag: Option<String>,
    /// The login process's pid (Dovecot's mpid in log lines: here the
    /// login side's).
    pub login_pid: u32,
}

/// dispatcher -> mailbox process, with the client's socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStart {
    pub handoff: Handoff,
    pub user: UserInfo,
}

/// Encode a frame (length + body) for `Next::HandOff` or `send_fd`.
pub fn frame<T: Serialize>(msg: &T) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    ipc::write_frame(&mut out, msg)?;
    Ok(out)
}

/// Decode one whole frame from `bytes` (as received with a descriptor).
pub fn unframe<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    let mut r = bytes;
    let msg = ipc::read_frame(&mut r)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "empty hand-off frame"))?;
    if !r.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "trailing bytes after a hand-off frame",
        ));
    }
    Ok(msg)
}

/// How long a login process waits for the dispatcher's answer (it includes
/// the hash computation, queued behind others).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The login side of one authentication attempt, blocking (run it on the
/// pool): connect to the dispatcher at `socket`, send the request, wait for
/// the answer. On `Ok`, the stream is returned to carry the hand-off.
pub fn authenticate(
    socket: &Path,
    req: &LoginRequest,
) -> io::Result<(LoginAnswer, Option<UnixStream>)> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    ipc::write_frame(&mut s, req)?;
    let answer: LoginAnswer = ipc::read_frame(&mut s)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the dispatcher closed the connection without an answer",
        )
    })?;
    let keep = matches!(answer, LoginAnswer::Ok { .. });
    Ok((answer, keep.then_some(s)))
}
