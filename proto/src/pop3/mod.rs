//! POP3 without I/O: commands, replies, capabilities, message bodies.
//!
//! Owns the POP3 wire grammar for the server side: `parse_command` turns one
//! command line into a `Command` or a `CommandError` that knows its `-ERR`
//! reply; `Reply` writes status lines, response codes and multi-line
//! responses; `MessageWriter` turns a stored message into a RETR or TOP body
//! as it streams in; `capabilities` is the CAPA list. Command lines are cut
//! by the same bounded `LineBuffer` SMTP uses. Session state (which command
//! is allowed when), authentication and the maildrop live in pop3d; SASL
//! decoding in `crate::sasl`.
//!
//! Standards: RFC 1939 (POP3), RFC 2449 (CAPA, response codes, line
//! lengths), RFC 2595 4 (STLS), RFC 5034 (SASL AUTH), RFC 3206 (SYS and
//! AUTH response codes).
//!
//! Security: all input is untrusted; see `command` for the line checks and
//! `message` for why a stored message cannot end a response early.
//!
//! Diagnostics: nothing is logged; errors are `CommandError` values.

mod command;
mod message;
mod reply;

pub use crate::smtp::{LineBuffer, LineTooLong};
pub use command::{parse_command, Command, CommandError, MAX_AUTH_LINE, MAX_COMMAND_LINE};
pub use message::MessageWriter;
pub use reply::{write_continuation, Reply, RespCode};

/// What the session may offer in CAPA (RFC 2449 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapaState {
    /// Before authentication (the AUTHORIZATION state).
    pub authorization: bool,
    /// STLS may be used now: TLS is configured and not active yet.
    pub stls: bool,
    /// USER/PASS and password SASL mechanisms are allowed on this connection.
    pub plaintext: bool,
}

/// The CAPA list, in Dovecot's order (RFC 2449 6): CAPA, TOP, UIDL,
/// RESP-CODES, PIPELINING, AUTH-RESP-CODE; before authentication also STLS
/// (when it can be used), USER (when plaintext logins are allowed) and SASL
/// with the mechanisms that may be used (none when passwords may not be
/// sent on this connection).
pub fn capabilities(state: CapaState) -> Vec<&'static str> {
    let mut caps = vec![
        "CAPA",           // RFC 2449 5
        "TOP",            // RFC 2449 6.1
        "UIDL",           // RFC 2449 6.8
        "RESP-CODES",     // RFC 2449 6.4
        "PIPELINING",     // RFC 2449 6.6
        "AUTH-RESP-CODE", // RFC 3206 6
    ];
    if state.authorization {
        if state.stls {
            caps.push("STLS"); // RFC 2595 4
        }
        if state.plaintext {
            caps.push("USER"); // RFC 2449 6.2
            caps.push("SASL PLAIN LOGIN"); // RFC 2449 6.3, RFC 5034 3
        } else {
            caps.push("SASL");
        }
    }
    caps
}

/// The `-ERR` for a command line longer than the line buffer takes.
pub fn line_too_long() -> Reply {
    CommandError::TooLong.reply()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capa_lists() {
        let base = [
            "CAPA",
            "TOP",
            "UIDL",
            "RESP-CODES",
            "PIPELINING",
            "AUTH-RESP-CODE",
        ];
        let st = |authorization, stls, plaintext| CapaState {
            authorization,
            stls,
            plaintext,
        };
        assert_eq!(capabilities(st(false, true, true)), base);
        let mut pre = base.to_vec();
        pre.extend(["STLS", "SASL"]);
        assert_eq!(capabilities(st(true, true, false)), pre);
        let mut tls = base.to_vec();
        tls.extend(["USER", "SASL PLAIN LOGIN"]);
        assert_eq!(capabilities(st(true, false, true)), tls);
        let mut out = Vec::new();
        Reply::ok("").write_multiline(capabilities(st(true, false, false)), &mut out);
        assert_eq!(
            out,
            b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSASL\r\n.\r\n"
        );
    }
}
