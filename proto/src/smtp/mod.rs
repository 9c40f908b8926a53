//! SMTP without I/O: commands, replies, line splitting, DATA and BDAT bodies.
//!
//! The client half (reading replies, EHLO capabilities, writing commands,
//! dot-stuffing) is `client`, for the outbound client, the tests and the
//! bench.
//!
//! Owns the SMTP wire grammar for the server side: `parse_command` turns one
//! command line into a `Command` or the exact error `Reply`; `LineBuffer` cuts
//! the input stream into bounded command lines; `DataReceiver` and
//! `BdatReceiver` turn the message phase into message bytes. Session state
//! (which command is allowed when), policy and the socket live in smtpd.
//!
//! Standards: RFC 5321 (SMTP), RFC 2034 (enhanced status codes in replies),
//! RFC 3463 (the codes), RFC 2920 (PIPELINING), RFC 1870 (SIZE), RFC 6152
//! (8BITMIME), RFC 6531 (SMTPUTF8), RFC 3030 (CHUNKING, BINARYMIME), RFC 3461
//! (DSN parameters), RFC 4954 (AUTH), RFC 3207 (STARTTLS).
//!
//! Security: all input is untrusted. See `data` for the end-of-data rules that
//! defeat SMTP smuggling and `line` for the command line length bound.
//!
//! Diagnostics: nothing is logged; errors are `Reply` values.

mod address;
pub mod client;
mod command;
mod data;
mod line;
mod reply;
pub mod xtext;

pub use address::{is_address_literal, is_ascii_address, is_domain, split_address};
pub use command::{
    parse_command, parse_command_with, Body, Command, Extensions, MailParams, RcptParams, Ret,
};
pub use data::{BareLfScan, BdatReceiver, DataProgress, DataReceiver};
pub use line::{LineBuffer, LineTooLong};
pub use reply::Reply;

/// RFC 5321 4.5.3.1.4: the maximum length of a command line, CRLF included.
pub const MAX_COMMAND_LINE: usize = 512;
/// RFC 4954 4: a server takes AUTH response lines (after 334) of at least
/// 12288 octets; with CRLF.
pub const MAX_AUTH_LINE: usize = crate::sasl::MAX_RESPONSE + 2;

/// The EHLO keyword lines after the greeting line, in the order advertised.
///
/// `size_limit` is the message size limit in octets (RFC 1870 4: "SIZE 0"
/// means no fixed limit). VRFY is deliberately not advertised (it is not an
/// EHLO keyword, and address probing is answered by policy in smtpd).
/// STARTTLS and AUTH depend on session state, so smtpd appends them itself.
pub fn ehlo_keywords(size_limit: u64) -> Vec<String> {
    vec![
        "PIPELINING".to_owned(),          // RFC 2920
        format!("SIZE {size_limit}"),     // RFC 1870
        "ENHANCEDSTATUSCODES".to_owned(), // RFC 2034
        "8BITMIME".to_owned(),            // RFC 6152
        "DSN".to_owned(),                 // RFC 3461
        "SMTPUTF8".to_owned(),            // RFC 6531
        "CHUNKING".to_owned(),            // RFC 3030
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ehlo_keywords_order() {
        assert_eq!(
            ehlo_keywords(10_240_000),
            [
                "PIPELINING",
                "SIZE 10240000",
                "ENHANCEDSTATUSCODES",
                "8BITMIME",
                "DSN",
                "SMTPUTF8",
                "CHUNKING"
            ]
        );
    }

    #[test]
    fn ehlo_reply_has_no_enhanced_codes() {
        let mut lines = vec!["mx.example.org".to_owned()];
        lines.extend(ehlo_keywords(0));
        let mut out = Vec::new();
        Reply::multi(250, None, lines).write_to(&mut out);
        assert_eq!(
            out,
            b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 0\r\n250-ENHANCEDSTATUSCODES\r\n\
              250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
        );
    }
}
