//! POP3 replies: `+OK`/`-ERR` status lines, response codes, multi-line
//! responses and SASL continuation lines.
//!
//! Owns the wire shape of everything a POP3 server sends that is not message
//! content: the status indicator, an optional RFC 2449 response code in
//! brackets, the text, the dot-stuffed lines of a multi-line response with
//! its terminating `.`, and the `+ ` continuation line of AUTH. It does not
//! own which reply a situation deserves (the parser and the pop3d sessions
//! decide) nor message bodies (`message::MessageWriter`).
//!
//! Standards: RFC 1939 3 (status indicators, multi-line responses,
//! byte-stuffing, the termination octet); RFC 2449 8 (response codes in
//! brackets after the status indicator), 8.1.1 LOGIN-DELAY, 8.1.2 IN-USE;
//! RFC 3206 4 and 5 (SYS/TEMP, SYS/PERM, AUTH); RFC 5034 4 (the `+ `
//! continuation).
//!
//! Security: reply text may echo client input (a command keyword, a message
//! number). On the wire every control character (CR and LF included) becomes
//! `?`, so a text can never end the line early or add a line of its own.
//!
//! Diagnostics: `Display` renders the status line as sent, for logs.

use std::fmt;

/// RFC 2449 8 response codes posthorn sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespCode {
    /// RFC 2449 8.1.2: the maildrop is locked by another session.
    InUse,
    /// RFC 2449 8.1.1: the user logged in too recently.
    LoginDelay,
    /// RFC 3206 4: a temporary problem on the server (try again later).
    SysTemp,
    /// RFC 3206 4: a permanent problem on the server.
    SysPerm,
    /// RFC 3206 5: the credentials are the problem.
    Auth,
}

impl RespCode {
    /// The code as written between the brackets.
    pub fn as_str(&self) -> &'static str {
        match self {
            RespCode::InUse => "IN-USE",
            RespCode::LoginDelay => "LOGIN-DELAY",
            RespCode::SysTemp => "SYS/TEMP",
            RespCode::SysPerm => "SYS/PERM",
            RespCode::Auth => "AUTH",
        }
    }
}

/// One POP3 status line: `+OK text` or `-ERR [CODE] text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `+OK` when true, `-ERR` when false (RFC 1939 3).
    pub ok: bool,
    /// RFC 2449 8: the response code, in brackets after the indicator.
    pub code: Option<RespCode>,
    /// The text after the indicator and code; may be empty.
    pub text: String,
}

impl Reply {
    /// `+OK text`.
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply {
            ok: true,
            code: None,
            text: text.into(),
        }
    }

    /// `-ERR text`.
    pub fn err(text: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            code: None,
            text: text.into(),
        }
    }

    /// `-ERR [CODE] text`.
    pub fn err_code(code: RespCode, text: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            code: Some(code),
            text: text.into(),
        }
    }

    /// Append the status line with its CRLF to `out`.
    ///
    /// RFC 1939 3: a status indicator, then (RFC 2449 8) an optional
    /// response code in brackets, then text; no trailing space when there
    /// is neither code nor text.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.ok { b"+OK" } else { b"-ERR" });
        if let Some(code) = self.code {
            out.extend_from_slice(b" [");
            out.extend_from_slice(code.as_str().as_bytes());
            out.push(b']');
        }
        if !self.text.is_empty() {
            out.push(b' ');
            push_sanitized(out, &self.text);
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    /// Write this status line followed by `lines` as a multi-line response:
    /// each line byte-stuffed, then the terminating `.` line (RFC 1939 3).
    pub fn write_multiline<I, S>(&self, lines: I, out: &mut Vec<u8>)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.write_to(out);
        for line in lines {
            let line = line.as_ref();
            // RFC 1939 3: a line starting with the termination octet gets
            // another one in front of it.
            if line.starts_with('.') {
                out.push(b'.');
            }
            push_sanitized(out, line);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// The status line as sent, without CRLF.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = Vec::new();
        self.write_to(&mut line);
        line.truncate(line.len() - 2);
        f.write_str(&String::from_utf8_lossy(&line))
    }
}

/// RFC 5034 4: a server challenge, `+ ` and the base64 text (empty for an
/// empty challenge), on a line of its own.
pub fn write_continuation(challenge: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"+ ");
    push_sanitized(out, challenge);
    out.extend_from_slice(b"\r\n");
}

/// Append `text` with every control character replaced by `?`.
fn push_sanitized(out: &mut Vec<u8>, text: &str) {
    for c in text.chars() {
        if c.is_control() {
            out.push(b'?');
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let table: &[(Reply, &[u8])] = &[
            (Reply::ok(""), b"+OK\r\n"),
            (Reply::ok("Logged in."), b"+OK Logged in.\r\n"),
            (Reply::err("Unknown command."), b"-ERR Unknown command.\r\n"),
            (
                Reply::err_code(RespCode::Auth, "Authentication failed."),
                b"-ERR [AUTH] Authentication failed.\r\n",
            ),
            (
                Reply::err_code(RespCode::SysTemp, ""),
                b"-ERR [SYS/TEMP]\r\n",
            ),
            (
                Reply::err_code(RespCode::InUse, "Mailbox is locked."),
                b"-ERR [IN-USE] Mailbox is locked.\r\n",
            ),
            (
                Reply::err_code(RespCode::LoginDelay, "x"),
                b"-ERR [LOGIN-DELAY] x\r\n",
            ),
            (
                Reply::err_code(RespCode::SysPerm, "x"),
                b"-ERR [SYS/PERM] x\r\n",
            ),
        ];
        for (reply, wire) in table {
            assert_eq!(reply.to_bytes(), *wire, "{reply:?}");
            assert_eq!(
                reply.to_string().as_bytes(),
                &wire[..wire.len() - 2],
                "{reply:?}"
            );
        }
    }

    /// Client text echoed in a reply cannot add a line.
    #[test]
    fn text_is_sanitized() {
        let r = Reply::err("Unknown command: X\r\n+OK injected\0");
        assert_eq!(r.to_bytes(), b"-ERR Unknown command: X??+OK injected?\r\n");
        let mut out = Vec::new();
        write_continuation("a\rb", &mut out);
        assert_eq!(out, b"+ a?b\r\n");
    }

    #[test]
    fn multiline_is_stuffed_and_terminated() {
        let mut out = Vec::new();
        Reply::ok("2 messages:").write_multiline(["1 120", ".hidden", "..", "2 5\n"], &mut out);
        assert_eq!(
            out,
            b"+OK 2 messages:\r\n1 120\r\n..hidden\r\n...\r\n2 5?\r\n.\r\n"
        );
        let mut out = Vec::new();
        Reply::ok("").write_multiline(Vec::<String>::new(), &mut out);
        assert_eq!(out, b"+OK\r\n.\r\n");
    }

    #[test]
    fn continuation() {
        let mut out = Vec::new();
        write_continuation("", &mut out);
        write_continuation("VXNlcm5hbWU6", &mut out);
        assert_eq!(out, b"+ \r\n+ VXNlcm5hbWU6\r\n");
    }
}
