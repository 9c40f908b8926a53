//! POP3 command parsing: one command line in, a `Command` or a
//! `CommandError` (which knows its `-ERR` reply) out.
//!
//! Owns the syntax of every command posthorn's POP3 server understands in
//! either state, and the exact error for each malformed line. It does not
//! own which command is allowed in which state, whether a message number
//! names a message, or whether a SASL mechanism is offered: the pop3d
//! sessions decide those (and may answer a well-formed command with an
//! error).
//!
//! Standards: RFC 1939 3 (keywords are case-insensitive, arguments separated
//! by a single space), 4-7 (USER, PASS, APOP, QUIT, STAT, LIST, RETR, DELE,
//! NOOP, RSET, TOP, UIDL); RFC 2449 4 (command line length), 5 (CAPA);
//! RFC 2595 4 (STLS); RFC 5034 4 (AUTH with an optional initial response,
//! `=` for an empty one).
//!
//! Security: the line is untrusted. NUL, CR and every other control
//! character, and bytes that are not UTF-8, are refused before anything
//! looks at the line, so no later step (and no reply or log line echoing a
//! keyword) sees them. Numbers are decimal digits only, without sign, and
//! overflow is an error, never a wrap. An echoed argument is cut to 40
//! characters (RFC 2449 4's argument length). No recursion; allocation is
//! bounded by the line, which the caller's `LineBuffer` bounds.
//!
//! Diagnostics: nothing is logged; every error is a `CommandError`, whose
//! `reply()` is the `-ERR` line to send (Dovecot's texts).

use std::fmt;

use super::reply::Reply;

/// RFC 2449 4: a command line is at most 255 octets, CRLF included.
pub const MAX_COMMAND_LINE: usize = 255;

/// The longest AUTH or PASS line (and SASL response line) accepted, CRLF
/// included: RFC 2449 4's limit is too short for a SASL initial response
/// or a long password, so, like Dovecot, these lines may be longer.
pub const MAX_AUTH_LINE: usize = 4096;

/// RFC 2449 4: keywords and arguments are at most 40 characters; this much
/// of a bad argument is echoed in the error reply.
const MAX_ECHO: usize = 40;

/// One parsed POP3 command.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// RFC 1939 7: `USER name`; the name as sent, never empty.
    User(String),
    /// RFC 1939 7: `PASS string`; everything after `PASS `, spaces included.
    Pass(String),
    /// RFC 1939 7: `APOP name digest`; the digest is 32 hex digits, lower-cased.
    Apop { user: String, digest: String },
    /// RFC 5034 4: `AUTH mechanism [initial-response]`; the mechanism
    /// upper-cased, the response still base64 (`=` for an empty one). No
    /// mechanism at all is the old way of asking for the mechanism list.
    Auth {
        mechanism: Option<String>,
        initial: Option<String>,
    },
    /// RFC 2449 5.
    Capa,
    /// RFC 2595 4.
    Stls,
    /// RFC 1939 5.
    Stat,
    /// RFC 1939 5: `LIST [msg]`.
    List(Option<u32>),
    /// RFC 1939 5: `RETR msg`.
    Retr(u32),
    /// RFC 1939 7: `TOP msg n`.
    Top { msg: u32, lines: u64 },
    /// RFC 1939 5: `DELE msg`.
    Dele(u32),
    /// RFC 1939 5.
    Rset,
    /// RFC 1939 5.
    Noop,
    /// RFC 1939 4 and 6.
    Quit,
    /// RFC 1939 7: `UIDL [msg]`.
    Uidl(Option<u32>),
}

impl Command {
    /// The keyword, upper case, for logs and counters.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Apop { .. } => "APOP",
            Command::Auth { .. } => "AUTH",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Top { .. } => "TOP",
            Command::Dele(_) => "DELE",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Uidl(_) => "UIDL",
        }
    }
}

/// Never shows the password of PASS (or an AUTH initial response).
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::User(u) => write!(f, "User({u:?})"),
            Command::Pass(_) => f.write_str("Pass(<hidden>)"),
            Command::Apop { user, .. } => write!(f, "Apop({user:?}, <hidden>)"),
            Command::Auth { mechanism, initial } => write!(
                f,
                "Auth({mechanism:?}, {})",
                if initial.is_some() {
                    "<hidden>"
                } else {
                    "None"
                }
            ),
            Command::List(n) => write!(f, "List({n:?})"),
            Command::Retr(n) => write!(f, "Retr({n})"),
            Command::Top { msg, lines } => write!(f, "Top({msg}, {lines})"),
            Command::Dele(n) => write!(f, "Dele({n})"),
            Command::Uidl(n) => write!(f, "Uidl({n:?})"),
            other => f.write_str(other.verb()),
        }
    }
}

/// Why a command line was refused; each variant is one `-ERR` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A keyword this server does not know (as sent, cut to 40 characters).
    #[error("{}", with_arg("Unknown command", .0))]
    Unknown(String),
    /// RFC 2449 4: the line is longer than a command line may be.
    #[error("Input line too long.")]
    TooLong,
    /// NUL, CR or another control character in the line.
    #[error("Invalid characters in command.")]
    Control,
    /// The line is not UTF-8.
    #[error("Invalid UTF-8 in command.")]
    NotUtf8,
    /// A message number that does not start with a digit (or is missing).
    #[error("{}", with_arg("Invalid message number", .0))]
    BadNumber(String),
    /// A message number past 2^32-1.
    #[error("{}", with_arg("Message number too large", .0))]
    NumberTooLarge(String),
    /// Something other than the end of the line after a message number.
    #[error("{}", with_arg("Noise after message number", .0))]
    NoiseAfterNumber(String),
    /// TOP's line count does not start with a digit (or is missing).
    #[error("{}", with_arg("Invalid size", .0))]
    BadSize(String),
    /// TOP's line count past 2^64-1.
    #[error("{}", with_arg("Size too large", .0))]
    SizeTooLarge(String),
    /// Something other than the end of the line after TOP's line count.
    #[error("{}", with_arg("Noise after size", .0))]
    NoiseAfterSize(String),
    /// USER without a name.
    #[error("No username given.")]
    NoUser,
    /// APOP without a name and a 32-character digest.
    #[error("Invalid parameters.")]
    ApopSyntax,
    /// APOP with a digest that is not hexadecimal.
    #[error("Invalid characters in MD5 response.")]
    ApopDigest,
}

impl CommandError {
    /// The `-ERR` reply for this error.
    pub fn reply(&self) -> Reply {
        Reply::err(self.to_string())
    }
}

/// `what: arg` (the argument cut to MAX_ECHO characters), or `what.` when
/// there is no argument to show.
fn with_arg(what: &str, arg: &str) -> String {
    if arg.is_empty() {
        format!("{what}.")
    } else {
        format!("{what}: {}", arg.chars().take(MAX_ECHO).collect::<String>())
    }
}

/// Parse one command line, given without its CRLF (or LF).
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    // A bare CR (the line buffer keeps a CR that is not before the LF), NUL
    // and other controls are never part of a command.
    if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(CommandError::Control);
    }
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(CommandError::NotUtf8);
    };
    // RFC 1939 3: the keyword, then arguments separated by a single space.
    let (keyword, args) = match line.split_once(' ') {
        Some((k, a)) => (k, Some(a)),
        None => (line, None),
    };
    let upper = keyword.to_ascii_uppercase();
    // RFC 2449 4: 255 octets with CRLF; AUTH and PASS may be longer.
    if line.len() + 2 > MAX_COMMAND_LINE && !matches!(upper.as_str(), "AUTH" | "PASS") {
        return Err(CommandError::TooLong);
    }
    let args = args.unwrap_or("");
    // RFC 1939 3: keywords are case-insensitive.
    match upper.as_str() {
        "USER" => match args {
            "" => Err(CommandError::NoUser),
            name => Ok(Command::User(name.to_owned())),
        },
        // RFC 1939 7: the password may contain spaces; take it whole.
        "PASS" => Ok(Command::Pass(args.to_owned())),
        "APOP" => parse_apop(args),
        "AUTH" => Ok(parse_auth(args)),
        // RFC 2449 5, RFC 2595 4, RFC 1939 5: no arguments; as Dovecot
        // does, any that are sent are ignored.
        "CAPA" => Ok(Command::Capa),
        "STLS" => Ok(Command::Stls),
        "STAT" => Ok(Command::Stat),
        "RSET" => Ok(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => Ok(Command::Quit),
        "LIST" => optional_number(args).map(Command::List),
        "UIDL" => optional_number(args).map(Command::Uidl),
        "RETR" => number_only(args).map(Command::Retr),
        "DELE" => number_only(args).map(Command::Dele),
        "TOP" => parse_top(args),
        _ => Err(CommandError::Unknown(
            keyword.chars().take(MAX_ECHO).collect(),
        )),
    }
}

/// A message number at the start of `s` (leading spaces skipped), and the
/// rest of `s` after its digits.
fn message_number(s: &str) -> Result<(u32, &str), CommandError> {
    let s = s.trim_start_matches(' ');
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(CommandError::BadNumber(s.to_owned()));
    }
    // Digits only (no sign): parse cannot fail except by overflow.
    let n = s[..digits]
        .parse::<u32>()
        .map_err(|_| CommandError::NumberTooLarge(s.to_owned()))?;
    Ok((n, &s[digits..]))
}

/// `msg`, with nothing but spaces after it.
fn number_only(args: &str) -> Result<u32, CommandError> {
    let (n, rest) = message_number(args)?;
    if !rest.trim_end_matches(' ').is_empty() {
        return Err(CommandError::NoiseAfterNumber(rest.to_owned()));
    }
    Ok(n)
}

/// `[msg]`: nothing (or only spaces) is None.
fn optional_number(args: &str) -> Result<Option<u32>, CommandError> {
    if args.trim_matches(' ').is_empty() {
        Ok(None)
    } else {
        number_only(args).map(Some)
    }
}

/// RFC 1939 7: `TOP msg n`, both required.
fn parse_top(args: &str) -> Result<Command, CommandError> {
    let (msg, rest) = message_number(args)?;
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(CommandError::NoiseAfterNumber(rest.to_owned()));
    }
    let rest = rest.trim_start_matches(' ');
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(CommandError::BadSize(rest.to_owned()));
    }
    let lines = rest[..digits]
        .parse::<u64>()
        .map_err(|_| CommandError::SizeTooLarge(rest.to_owned()))?;
    let tail = &rest[digits..];
    if !tail.trim_end_matches(' ').is_empty() {
        return Err(CommandError::NoiseAfterSize(tail.to_owned()));
    }
    Ok(Command::Top { msg, lines })
}

/// RFC 1939 7: `APOP name digest`, the digest an MD5 sum in 32 hex digits.
fn parse_apop(args: &str) -> Result<Command, CommandError> {
    let Some((user, digest)) = args.split_once(' ') else {
        return Err(CommandError::ApopSyntax);
    };
    if user.is_empty() || digest.len() != 32 {
        return Err(CommandError::ApopSyntax);
    }
    if !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CommandError::ApopDigest);
    }
    Ok(Command::Apop {
        user: user.to_owned(),
        digest: digest.to_ascii_lowercase(),
    })
}

/// RFC 5034 4: `AUTH mechanism [initial-response]`. The mechanism name and
/// the response are judged by the session (unknown mechanism, bad base64),
/// which has the replies for them.
fn parse_auth(args: &str) -> Command {
    let args = args.trim_start_matches(' ');
    if args.is_empty() {
        return Command::Auth {
            mechanism: None,
            initial: None,
        };
    }
    let (mechanism, initial) = match args.split_once(' ') {
        Some((m, i)) => (m, Some(i.to_owned())),
        None => (args, None),
    };
    Command::Auth {
        mechanism: Some(mechanism.to_ascii_uppercase()),
        initial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parse result in a compact form for the table.
    fn show(r: &Result<Command, CommandError>) -> String {
        match r {
            Err(e) => format!("-ERR {e}"),
            Ok(Command::User(u)) => format!("USER <{u}>"),
            Ok(Command::Pass(p)) => format!("PASS <{p}>"),
            Ok(Command::Apop { user, digest }) => format!("APOP <{user}> {digest}"),
            Ok(Command::Auth { mechanism, initial }) => format!(
                "AUTH {} {}",
                mechanism.as_deref().unwrap_or("-"),
                initial.as_deref().map_or("-".into(), |i| format!("<{i}>"))
            ),
            Ok(Command::List(n)) => format!("LIST {n:?}"),
            Ok(Command::Uidl(n)) => format!("UIDL {n:?}"),
            Ok(Command::Retr(n)) => format!("RETR {n}"),
            Ok(Command::Dele(n)) => format!("DELE {n}"),
            Ok(Command::Top { msg, lines }) => format!("TOP {msg} {lines}"),
            Ok(c) => c.verb().to_owned(),
        }
    }

    const DIGEST: &str = "c4c9334bac560ecc979e58001b3e22fb";

    /// (command line without CRLF, exact result)
    #[rustfmt::skip]
    const TABLE: &[(&[u8], &str)] = &[
        // USER, PASS
        (b"USER bob", "USER <bob>"),
        (b"user bob@example.org", "USER <bob@example.org>"),
        (b"USER  bob", "USER < bob>"),
        (b"USER bob smith", "USER <bob smith>"),
        (b"USER", "-ERR No username given."),
        (b"USER ", "-ERR No username given."),
        (b"PASS secret", "PASS <secret>"),
        (b"pass two words ", "PASS <two words >"),
        (b"PASS", "PASS <>"),
        (b"PASS ", "PASS <>"),
        (b"PASS  lead", "PASS < lead>"),
        // APOP
        (b"APOP mrose c4c9334bac560ecc979e58001b3e22fb", "APOP <mrose> c4c9334bac560ecc979e58001b3e22fb"),
        (b"apop mrose C4C9334BAC560ECC979E58001B3E22FB", "APOP <mrose> c4c9334bac560ecc979e58001b3e22fb"),
        (b"APOP", "-ERR Invalid parameters."),
        (b"APOP mrose", "-ERR Invalid parameters."),
        (b"APOP  c4c9334bac560ecc979e58001b3e22fb", "-ERR Invalid parameters."),
        (b"APOP mrose c4c9334bac560ecc979e58001b3e22f", "-ERR Invalid parameters."),
        (b"APOP mrose c4c9334bac560ecc979e58001b3e22fbb", "-ERR Invalid parameters."),
        (b"APOP mrose  c4c9334bac560ecc979e58001b3e22fb", "-ERR Invalid parameters."),
        (b"APOP mrose c4c9334bac560ecc979e58001b3e22fx", "-ERR Invalid characters in MD5 response."),
        // AUTH
        (b"AUTH", "AUTH - -"),
        (b"AUTH ", "AUTH - -"),
        (b"AUTH PLAIN", "AUTH PLAIN -"),
        (b"auth plain", "AUTH PLAIN -"),
        (b"AUTH PLAIN AGJvYgBzZWNyZXQ=", "AUTH PLAIN <AGJvYgBzZWNyZXQ=>"),
        (b"AUTH PLAIN =", "AUTH PLAIN <=>"),
        (b"AUTH LOGIN Ym9i", "AUTH LOGIN <Ym9i>"),
        (b"AUTH X-UNKNOWN a b", "AUTH X-UNKNOWN <a b>"),
        (b"AUTH  PLAIN", "AUTH PLAIN -"),
        // Commands without arguments; arguments are ignored, as Dovecot does.
        (b"CAPA", "CAPA"),
        (b"capa", "CAPA"),
        (b"CaPa", "CAPA"),
        (b"STLS", "STLS"),
        (b"STLS now", "STLS"),
        (b"STAT", "STAT"),
        (b"RSET", "RSET"),
        (b"NOOP", "NOOP"),
        (b"NOOP anything", "NOOP"),
        (b"QUIT", "QUIT"),
        (b"quit", "QUIT"),
        // LIST, UIDL
        (b"LIST", "LIST None"),
        (b"LIST ", "LIST None"),
        (b"LIST 1", "LIST Some(1)"),
        (b"list 42", "LIST Some(42)"),
        (b"LIST  3", "LIST Some(3)"),
        (b"LIST 3 ", "LIST Some(3)"),
        (b"LIST 007", "LIST Some(7)"),
        (b"LIST 0", "LIST Some(0)"),
        (b"LIST 4294967295", "LIST Some(4294967295)"),
        (b"LIST 4294967296", "-ERR Message number too large: 4294967296"),
        (b"LIST 99999999999999999999999", "-ERR Message number too large: 99999999999999999999999"),
        (b"LIST x", "-ERR Invalid message number: x"),
        (b"LIST -1", "-ERR Invalid message number: -1"),
        (b"LIST +1", "-ERR Invalid message number: +1"),
        (b"LIST 1x", "-ERR Noise after message number: x"),
        (b"LIST 1 2", "-ERR Noise after message number:  2"),
        (b"LIST 0x10", "-ERR Noise after message number: x10"),
        (b"UIDL", "UIDL None"),
        (b"UIDL 2", "UIDL Some(2)"),
        (b"UIDL two", "-ERR Invalid message number: two"),
        // RETR, DELE
        (b"RETR 1", "RETR 1"),
        (b"retr 12", "RETR 12"),
        (b"RETR", "-ERR Invalid message number."),
        (b"RETR ", "-ERR Invalid message number."),
        (b"RETR 1.5", "-ERR Noise after message number: .5"),
        (b"RETR \xc2\xb9", "-ERR Invalid message number: \u{b9}"),
        (b"RETR 1 1", "-ERR Noise after message number:  1"),
        (b"DELE 3", "DELE 3"),
        (b"DELE", "-ERR Invalid message number."),
        (b"DELE 1,2", "-ERR Noise after message number: ,2"),
        // TOP
        (b"TOP 1 10", "TOP 1 10"),
        (b"top 1 0", "TOP 1 0"),
        (b"TOP  1  10 ", "TOP 1 10"),
        (b"TOP 1 18446744073709551615", "TOP 1 18446744073709551615"),
        (b"TOP 1 18446744073709551616", "-ERR Size too large: 18446744073709551616"),
        (b"TOP 1", "-ERR Invalid size."),
        (b"TOP 1 ", "-ERR Invalid size."),
        (b"TOP", "-ERR Invalid message number."),
        (b"TOP x 1", "-ERR Invalid message number: x 1"),
        (b"TOP 1x 1", "-ERR Noise after message number: x 1"),
        (b"TOP 1 x", "-ERR Invalid size: x"),
        (b"TOP 1 -1", "-ERR Invalid size: -1"),
        (b"TOP 1 2 3", "-ERR Noise after size:  3"),
        (b"TOP 1 2x", "-ERR Noise after size: x"),
        (b"TOP 4294967296 1", "-ERR Message number too large: 4294967296 1"),
        // Unknown keywords and garbage
        (b"", "-ERR Unknown command."),
        (b" STAT", "-ERR Unknown command."),
        (b"XTND XMIT", "-ERR Unknown command: XTND"),
        (b"LAST", "-ERR Unknown command: LAST"),
        (b"STATS", "-ERR Unknown command: STATS"),
        (b"GET / HTTP/1.0", "-ERR Unknown command: GET"),
        (b"EHLO mx.example.org", "-ERR Unknown command: EHLO"),
        (b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "-ERR Unknown command: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        (b"\0", "-ERR Invalid characters in command."),
        (b"USER bob\0", "-ERR Invalid characters in command."),
        (b"PASS se\0cret", "-ERR Invalid characters in command."),
        (b"STAT\r", "-ERR Invalid characters in command."),
        (b"RSET\rDELE 1", "-ERR Invalid characters in command."),
        (b"USER a\x1bb", "-ERR Invalid characters in command."),
        (b"USER a\tb", "-ERR Invalid characters in command."),
        (b"NOOP\x7f", "-ERR Invalid characters in command."),
        (b"USER \xff", "-ERR Invalid UTF-8 in command."),
        (b"\xc0\xafSTAT", "-ERR Invalid UTF-8 in command."),
        ("USER j\u{f6}rg".as_bytes(), "USER <j\u{f6}rg>"),
    ];

    #[test]
    fn table() {
        let failures: Vec<String> = TABLE
            .iter()
            .filter_map(|(line, want)| {
                let got = show(&parse_command(line));
                (got != *want).then(|| {
                    format!(
                        "{:?}\n   want {want}\n    got {got}",
                        String::from_utf8_lossy(line)
                    )
                })
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    /// RFC 2449 4: 255 octets with CRLF for ordinary commands; AUTH and
    /// PASS lines may be longer (the line buffer bounds them).
    #[test]
    fn line_length() {
        let user = |n: usize| format!("USER {}", "u".repeat(n - 5 - 2)).into_bytes();
        assert!(matches!(parse_command(&user(255)), Ok(Command::User(_))));
        assert_eq!(parse_command(&user(256)), Err(CommandError::TooLong));
        let pass = format!("PASS {}", "p".repeat(3000));
        assert!(matches!(parse_command(pass.as_bytes()), Ok(Command::Pass(p)) if p.len() == 3000));
        let auth = format!("AUTH PLAIN {}", "A".repeat(3000));
        assert!(matches!(
            parse_command(auth.as_bytes()),
            Ok(Command::Auth { initial: Some(i), .. }) if i.len() == 3000
        ));
        let unknown = "X".repeat(300);
        assert_eq!(
            parse_command(unknown.as_bytes()),
            Err(CommandError::TooLong)
        );
    }

    #[test]
    fn replies() {
        assert_eq!(
            parse_command(b"RETR x").map_err(|e| e.reply().to_bytes()),
            Err(b"-ERR Invalid message number: x\r\n".to_vec())
        );
        assert_eq!(
            CommandError::TooLong.reply().to_bytes(),
            b"-ERR Input line too long.\r\n"
        );
    }

    #[test]
    fn verbs() {
        let table: &[(&[u8], &str)] = &[
            (b"USER x", "USER"),
            (b"PASS", "PASS"),
            (b"TOP 1 1", "TOP"),
            (b"uidl", "UIDL"),
            (b"AUTH", "AUTH"),
            (b"stls", "STLS"),
        ];
        for (line, verb) in table {
            assert_eq!(parse_command(line).map(|c| c.verb()), Ok(*verb));
        }
    }

    /// Passwords never reach a Debug rendering (which may end up in logs).
    #[test]
    fn debug_hides_secrets() {
        for line in [
            &b"PASS hunter2"[..],
            b"AUTH PLAIN aHVudGVyMg==",
            b"APOP bob c4c9334bac560ecc979e58001b3e22fb",
        ] {
            let c = parse_command(line).expect("valid");
            let shown = format!("{c:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("aHVudGVyMg"), "{shown}");
            assert!(!shown.contains(DIGEST), "{shown}");
        }
    }

    /// No input may panic; every line of a crude mutation corpus parses or errs.
    #[test]
    fn never_panics() {
        let seeds: &[&[u8]] = &[
            b"TOP 12 4294967295",
            b"APOP bob c4c9334bac560ecc979e58001b3e22fb",
            b"AUTH PLAIN AGJvYgBzZWNyZXQ=",
            b"LIST 18446744073709551616",
            "USER j\u{f6}rg".as_bytes(),
        ];
        let bytes = [
            0u8, b'\r', b'\n', b' ', b'0', b'9', b'-', b'=', b'.', 0xc3, 0xff, 0x7f,
        ];
        for seed in seeds {
            for cut in 0..=seed.len() {
                let _ = parse_command(&seed[..cut]);
                for &b in &bytes {
                    let mut line = seed.to_vec();
                    line.insert(cut, b);
                    let _ = parse_command(&line);
                    if cut < seed.len() {
                        line.remove(cut + 1);
                        let _ = parse_command(&line);
                    }
                }
            }
        }
    }
}
