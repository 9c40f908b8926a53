//! SMTP command parsing: one command line in, a `Command` or an error `Reply` out.
//!
//! Owns the syntax of every command posthorn's smtpd understands and the exact
//! reply for each syntax error. It does not own command sequencing (MAIL
//! before RCPT, EHLO first), whether an extension is enabled, or any policy:
//! smtpd decides those and may refuse a well-formed command.
//!
//! Standards: RFC 5321 4.1.1 (commands), 4.1.2 (argument grammar), 4.1.4
//! (verbs are case-insensitive); RFC 1870 (SIZE); RFC 6152 (BODY=8BITMIME);
//! RFC 3030 (BDAT, BODY=BINARYMIME); RFC 6531 (SMTPUTF8); RFC 3461 (RET,
//! ENVID, NOTIFY, ORCPT); RFC 4954 (AUTH command and AUTH= parameter);
//! RFC 3207 (STARTTLS); RFC 2034 and RFC 3463 (enhanced codes in the replies).
//!
//! Security: the line is untrusted. NUL, other control characters and
//! non-UTF-8 bytes are refused before anything else looks at it, so no later
//! step (and no reply echoing a parameter) sees them. Numbers are parsed from
//! digits only, with overflow refused. No recursion; allocation is bounded by
//! the line length, which `LineBuffer` bounds.
//!
//! Diagnostics: nothing is logged; every error is the `Reply` to send.

use super::address::{self, PathError};
use super::reply::Reply;
use super::xtext::{self, is_xtext};

/// One parsed SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// RFC 5321 4.1.1.1; the argument as sent (policy judges it).
    Ehlo(String),
    /// RFC 5321 4.1.1.1.
    Helo(String),
    /// RFC 5321 4.1.1.2; `from` is "" for the null reverse-path `<>`.
    Mail { from: String, params: MailParams },
    /// RFC 5321 4.1.1.3; `to` may be a bare `Postmaster` (any case).
    Rcpt { to: String, params: RcptParams },
    /// RFC 5321 4.1.1.4.
    Data,
    /// RFC 3030 2: `BDAT size [LAST]`.
    Bdat { size: u64, last: bool },
    /// RFC 5321 4.1.1.5.
    Rset,
    /// RFC 5321 4.1.1.9; any argument is ignored.
    Noop,
    /// RFC 5321 4.1.1.10.
    Quit,
    /// RFC 5321 4.1.1.6; the argument as sent.
    Vrfy(String),
    /// RFC 5321 4.1.1.8.
    Help(Option<String>),
    /// RFC 3207 4.
    StartTls,
    /// RFC 4954 4; `mechanism` upper-cased, `initial` still base64 ("=" for empty).
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

impl Command {
    /// The verb, upper case, for logs and counters.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy(_) => "VRFY",
            Command::Help(_) => "HELP",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }
}

/// ESMTP parameters of MAIL FROM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// RFC 1870 6: declared message size.
    pub size: Option<u64>,
    /// RFC 6152 / RFC 3030: BODY=.
    pub body: Option<Body>,
    /// RFC 6531 3.4: SMTPUTF8 (no value).
    pub smtputf8: bool,
    /// RFC 3461 4.3: RET=.
    pub ret: Option<Ret>,
    /// RFC 3461 4.4: ENVID=, still xtext-encoded.
    pub envid: Option<String>,
    /// RFC 4954 5: AUTH=, still xtext-encoded (`<>` when unknown).
    pub auth: Option<String>,
}

/// The BODY= value of MAIL FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `7BIT` (RFC 6152 2).
    SevenBit,
    /// `8BITMIME` (RFC 6152 2).
    EightBitMime,
    /// `BINARYMIME` (RFC 3030 3); only valid with BDAT.
    BinaryMime,
}

/// The RET= value of MAIL FROM (RFC 3461 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

/// ESMTP parameters of RCPT TO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// RFC 3461 4.1: NOTIFY=, upper-cased, e.g. `SUCCESS,FAILURE` or `NEVER`.
    pub notify: Option<String>,
    /// RFC 3461 4.2: ORCPT=, as sent (`addr-type;xtext`).
    pub orcpt: Option<String>,
}

/// The optional extensions whose MAIL/RCPT parameters are accepted.
///
/// A parameter belongs to the extension that defines it; when that extension
/// was not advertised in the EHLO reply the parameter is refused as
/// `555 5.5.4 Unsupported option: NAME=VALUE`, as Postfix does (RFC 5321
/// 4.1.1.11: parameters of extensions the server did not announce are
/// errors). SIZE, BODY and SMTPUTF8 are always advertised and always accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extensions {
    /// RFC 3461 DSN: RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT.
    pub dsn: bool,
    /// RFC 4954 AUTH: the AUTH= parameter of MAIL.
    pub auth: bool,
}

impl Extensions {
    /// Every extension this parser knows.
    pub const ALL: Extensions = Extensions {
        dsn: true,
        auth: true,
    };
    /// Only the extensions that are always on (no DSN, no AUTH).
    pub const BASE: Extensions = Extensions {
        dsn: false,
        auth: false,
    };
}

/// Parse one command line, given without its CRLF (or LF), accepting the
/// parameters of every extension (see `parse_command_with`).
pub fn parse_command(line: &[u8]) -> Result<Command, Reply> {
    parse_command_with(line, Extensions::ALL)
}

/// Parse one command line, given without its CRLF (or LF); MAIL and RCPT
/// parameters of extensions not in `ext` are refused with 555.
pub fn parse_command_with(line: &[u8], ext: Extensions) -> Result<Command, Reply> {
    if line.contains(&0) {
        return Err(err(500, "5.5.2", "Error: NUL character in command"));
    }
    // RFC 5321 2.4: commands are ASCII; RFC 6531 3.3 allows UTF-8 in
    // arguments, so anything that is not UTF-8 is garbage.
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(err(500, "5.5.2", "Error: bad UTF-8 syntax"));
    };
    // A bare CR (or any control) inside a command line is never valid and is
    // a known ingredient of smuggling and response injection tricks.
    if line.contains(|c: char| c.is_control() && c != '\t') {
        return Err(err(500, "5.5.2", "Error: bad syntax"));
    }
    // Trailing white space is tolerated, as Postfix does.
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
    // RFC 5321 4.1.4: verbs are case-insensitive. Verbs are ASCII, so
    // uppercasing cannot change what matches.
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" => helo_arg(args, "EHLO").map(Command::Ehlo),
        "HELO" => helo_arg(args, "HELO").map(Command::Helo),
        "MAIL" => parse_mail(args, ext),
        "RCPT" => parse_rcpt(args, ext),
        "DATA" => no_args(args, Command::Data, "Syntax: DATA"),
        "BDAT" => parse_bdat(args),
        "RSET" => no_args(args, Command::Rset, "Syntax: RSET"),
        "NOOP" => Ok(Command::Noop), // RFC 5321 4.1.1.9: "NOOP [ SP String ]"
        "QUIT" => no_args(args, Command::Quit, "Syntax: QUIT"),
        "VRFY" => match args.trim_start() {
            "" => Err(err(501, "5.5.4", "Syntax: VRFY address")),
            a => Ok(Command::Vrfy(a.to_owned())),
        },
        "HELP" => match args.trim_start() {
            "" => Ok(Command::Help(None)),
            a => Ok(Command::Help(Some(a.to_owned()))),
        },
        // RFC 3207 4: "STARTTLS" takes no parameters.
        "STARTTLS" => no_args(args, Command::StartTls, "Syntax: STARTTLS"),
        "AUTH" => parse_auth(args),
        _ => Err(err(500, "5.5.2", "Error: command not recognized")),
    }
}

fn err(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
    Reply::new(code, Some(enhanced), text)
}

/// The EHLO/HELO argument: required, returned as sent. Before EHLO no
/// extension (ENHANCEDSTATUSCODES included) is in effect, so no enhanced code.
fn helo_arg(args: &str, verb: &str) -> Result<String, Reply> {
    match args.trim_start() {
        "" => Err(Reply::new(501, None, format!("Syntax: {verb} hostname"))),
        a => Ok(a.to_owned()),
    }
}

fn no_args(args: &str, cmd: Command, usage: &'static str) -> Result<Command, Reply> {
    if args.trim_start().is_empty() {
        Ok(cmd)
    } else {
        Err(err(501, "5.5.4", usage))
    }
}

/// `prefix` matched case-insensitively at the start of `s`.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    // The prefix is ASCII, so a match ends on a char boundary.
    head.eq_ignore_ascii_case(prefix.as_bytes())
        .then(|| &s[prefix.len()..])
}

/// Split `"FROM:<path> params"` after the keyword into the path's content and
/// the parameter text, honouring quoted strings (which may contain `>`).
/// RFC 5321 4.1.1.2 writes `MAIL FROM:<path>` with no space; Postfix and
/// many others accept one space after the colon, and so do we.
fn split_path<'a>(args: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let rest = strip_prefix_ci(args, keyword)?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let body = rest.strip_prefix('<')?;
    let bytes = body.as_bytes();
    let mut in_quote = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quote => i += 1, // quoted-pairSMTP: skip the next byte
            b'"' => in_quote = !in_quote,
            b'>' if !in_quote => {
                let tail = &body[i + 1..];
                // RFC 5321 4.1.1.2: parameters follow the path after SP.
                return (tail.is_empty() || tail.starts_with(' ')).then_some((&body[..i], tail));
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// ESMTP parameters as `(keyword, value)`; None on bad keyword syntax.
/// RFC 5321 4.1.2: `esmtp-param = esmtp-keyword ["=" esmtp-value]`,
/// `esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`.
fn esmtp_params(tail: &str) -> Option<Vec<(&str, Option<&str>)>> {
    let mut params = Vec::new();
    for param in tail.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        let key_ok = key
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !key_ok {
            return None;
        }
        params.push((key, value));
    }
    Some(params)
}

fn unsupported(param: (&str, Option<&str>)) -> Reply {
    let text = match param {
        (k, Some(v)) => format!("Unsupported option: {k}={v}"),
        (k, None) => format!("Unsupported option: {k}"),
    };
    err(555, "5.5.4", text)
}

fn duplicate(key: &str) -> Reply {
    err(
        501,
        "5.5.4",
        format!("Error: duplicate {} parameter", key.to_ascii_uppercase()),
    )
}

/// Digits only (no sign, no space), without overflow.
fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Digits only (no sign, no space); a value too large for u64 becomes
/// u64::MAX, which is larger than any message we could take.
fn parse_size(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

fn parse_mail(args: &str, ext: Extensions) -> Result<Command, Reply> {
    let syntax = || err(501, "5.5.4", "Syntax: MAIL FROM:<address>");
    let (inner, tail) = split_path(args, "FROM:").ok_or_else(syntax)?;
    let bad_addr = || err(501, "5.1.7", "Bad sender address syntax");
    // Syntax first (UTF-8 allowed), the SMTPUTF8 check after the parameters.
    if !inner.is_empty() && address::parse_path(inner, true).is_err() {
        return Err(bad_addr());
    }
    let mut params = MailParams::default();
    for (key, value) in esmtp_params(tail).ok_or_else(syntax)? {
        match key.to_ascii_uppercase().as_str() {
            // RFC 1870 6: "SIZE=" 1*20DIGIT. Twenty digits can exceed u64:
            // such a value saturates, so the session refuses it as too large
            // (552 5.3.4, RFC 1870 6.1) rather than as bad syntax.
            "SIZE" => {
                let size = value.and_then(parse_size);
                let size = size.ok_or_else(|| err(501, "5.5.4", "Bad message size syntax"))?;
                if params.size.replace(size).is_some() {
                    return Err(duplicate(key));
                }
            }
            // RFC 6152 2, RFC 3030 3.
            "BODY" => {
                let body = match value.map(str::to_ascii_uppercase).as_deref() {
                    Some("7BIT") => Body::SevenBit,
                    Some("8BITMIME") => Body::EightBitMime,
                    Some("BINARYMIME") => Body::BinaryMime,
                    _ => return Err(unsupported((key, value))),
                };
                if params.body.replace(body).is_some() {
                    return Err(duplicate(key));
                }
            }
            // RFC 6531 3.4: the SMTPUTF8 parameter has no value.
            "SMTPUTF8" => {
                if value.is_some() {
                    return Err(syntax());
                }
                if std::mem::replace(&mut params.smtputf8, true) {
                    return Err(duplicate(key));
                }
            }
            // RFC 3461 4.3: RET=FULL / RET=HDRS.
            "RET" | "ENVID" if !ext.dsn => return Err(unsupported((key, value))),
            "AUTH" if !ext.auth => return Err(unsupported((key, value))),
            "RET" => {
                let ret = match value.map(str::to_ascii_uppercase).as_deref() {
                    Some("FULL") => Ret::Full,
                    Some("HDRS") => Ret::Hdrs,
                    _ => return Err(err(501, "5.5.4", "Bad RET parameter syntax")),
                };
                if params.ret.replace(ret).is_some() {
                    return Err(duplicate(key));
                }
            }
            // RFC 3461 4.4: ENVID=xtext, at most 100 characters; what it
            // stands for goes into notifications (Original-Envelope-Id:),
            // so it must be text without controls, as Postfix's allprint().
            "ENVID" => {
                let envid = value
                    .filter(|v| !v.is_empty() && v.len() <= 100 && xtext::decode_text(v).is_some());
                let envid = envid.ok_or_else(|| err(501, "5.5.4", "Bad ENVID parameter syntax"))?;
                if params.envid.replace(envid.to_owned()).is_some() {
                    return Err(duplicate(key));
                }
            }
            // RFC 4954 5: AUTH=xtext (the mailbox) or AUTH=<>.
            "AUTH" => {
                let auth = value.filter(|v| !v.is_empty() && is_xtext(v));
                let auth = auth.ok_or_else(|| err(501, "5.5.4", "Bad AUTH parameter syntax"))?;
                if params.auth.replace(auth.to_owned()).is_some() {
                    return Err(duplicate(key));
                }
            }
            _ => return Err(unsupported((key, value))),
        }
    }
    let from = if inner.is_empty() {
        String::new() // RFC 5321 4.1.1.2: the null reverse-path "<>"
    } else {
        match address::parse_path(inner, params.smtputf8) {
            Ok(mailbox) => mailbox.to_owned(),
            // RFC 6531 3.5 and Postfix: 553 5.6.7 for an undeclared UTF-8 address.
            Err(PathError::NonAscii) => {
                return Err(err(
                    553,
                    "5.6.7",
                    "Must declare SMTPUTF8 to send unicode address",
                ))
            }
            Err(PathError::Syntax) => return Err(bad_addr()),
        }
    };
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(args: &str, ext: Extensions) -> Result<Command, Reply> {
    let syntax = || err(501, "5.5.4", "Syntax: RCPT TO:<address>");
    let (inner, tail) = split_path(args, "TO:").ok_or_else(syntax)?;
    // RFC 5321 4.1.1.3: "<Postmaster>" without a domain must be accepted.
    // UTF-8 is left to the session, which knows whether SMTPUTF8 was given.
    let to = if inner.eq_ignore_ascii_case("postmaster") {
        inner
    } else {
        address::parse_path(inner, true)
            .map_err(|_| err(501, "5.1.3", "Bad recipient address syntax"))?
    };
    let mut params = RcptParams::default();
    for (key, value) in esmtp_params(tail).ok_or_else(syntax)? {
        match key.to_ascii_uppercase().as_str() {
            // RFC 3461 4.1, 4.2: only when DSN was advertised.
            "NOTIFY" | "ORCPT" if !ext.dsn => return Err(unsupported((key, value))),
            // RFC 3461 4.1: NOTIFY="NEVER" / 1#("SUCCESS" / "FAILURE" / "DELAY").
            "NOTIFY" => {
                let notify = value.map(str::to_ascii_uppercase).filter(|v| is_notify(v));
                let notify = notify
                    .ok_or_else(|| err(501, "5.5.4", "Error: Bad NOTIFY parameter syntax"))?;
                if params.notify.replace(notify).is_some() {
                    return Err(duplicate(key));
                }
            }
            // RFC 3461 4.2: ORCPT=addr-type ";" xtext, addr-type an atom.
            "ORCPT" => {
                let orcpt = value.filter(|v| is_orcpt(v));
                let orcpt =
                    orcpt.ok_or_else(|| err(501, "5.5.4", "Error: Bad ORCPT parameter syntax"))?;
                if params.orcpt.replace(orcpt.to_owned()).is_some() {
                    return Err(duplicate(key));
                }
            }
            _ => return Err(unsupported((key, value))),
        }
    }
    Ok(Command::Rcpt {
        to: to.to_owned(),
        params,
    })
}

fn is_notify(v: &str) -> bool {
    v == "NEVER"
        || v.split(',')
            .all(|k| matches!(k, "SUCCESS" | "FAILURE" | "DELAY"))
}

fn is_orcpt(v: &str) -> bool {
    let Some((addr_type, addr)) = v.split_once(';') else {
        return false;
    };
    let type_ok = !addr_type.is_empty()
        && addr_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    // RFC 3461 4.2: the whole parameter is at most 500 characters. The
    // address goes into notifications (Original-Recipient:): text without
    // controls once decoded.
    type_ok && !addr.is_empty() && v.len() <= 500 && xtext::decode_text(addr).is_some()
}

/// RFC 3030 2: `bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF`.
fn parse_bdat(args: &str) -> Result<Command, Reply> {
    let syntax = || err(501, "5.5.4", "Syntax: BDAT size [LAST]");
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let size = words.next().and_then(parse_number).ok_or_else(syntax)?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(syntax()),
    };
    if words.next().is_some() {
        return Err(syntax());
    }
    Ok(Command::Bdat { size, last })
}

/// RFC 4954 4: `"AUTH" SP sasl-mech [SP initial-response]`, where
/// `sasl-mech = 1*20(UPPER-ALPHA / DIGIT / "-" / "_")` (matched without case)
/// and the initial response is base64 or "=".
fn parse_auth(args: &str) -> Result<Command, Reply> {
    let syntax = || err(501, "5.5.4", "Syntax: AUTH mechanism");
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().ok_or_else(syntax)?;
    let mech_ok = mechanism.len() <= 20
        && mechanism
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !mech_ok {
        return Err(syntax());
    }
    let initial = words.next();
    let base64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    };
    if initial.is_some_and(|s| !base64(s)) || words.next().is_some() {
        return Err(syntax());
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial: initial.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsed command in one exact line: the verb, the arguments, and every
    /// parameter that is set. Errors are shown as their reply.
    fn show(result: &Result<Command, Reply>) -> String {
        let cmd = match result {
            Ok(cmd) => cmd,
            Err(reply) => return reply.to_string(),
        };
        let mut out = cmd.verb().to_owned();
        let mut add = |s: String| {
            out.push(' ');
            out.push_str(&s);
        };
        match cmd {
            Command::Ehlo(a) | Command::Helo(a) | Command::Vrfy(a) => add(a.clone()),
            Command::Help(a) => a.iter().for_each(|a| add(a.clone())),
            Command::Mail { from, params } => {
                add(format!("<{from}>"));
                let p = params;
                p.size.iter().for_each(|v| add(format!("SIZE={v}")));
                p.body.iter().for_each(|v| add(format!("BODY={v:?}")));
                if p.smtputf8 {
                    add("SMTPUTF8".into());
                }
                p.ret.iter().for_each(|v| add(format!("RET={v:?}")));
                p.envid.iter().for_each(|v| add(format!("ENVID={v}")));
                p.auth.iter().for_each(|v| add(format!("AUTH={v}")));
            }
            Command::Rcpt { to, params } => {
                add(format!("<{to}>"));
                params
                    .notify
                    .iter()
                    .for_each(|v| add(format!("NOTIFY={v}")));
                params.orcpt.iter().for_each(|v| add(format!("ORCPT={v}")));
            }
            Command::Bdat { size, last } => {
                add(size.to_string());
                if *last {
                    add("LAST".into());
                }
            }
            Command::Auth { mechanism, initial } => {
                add(mechanism.clone());
                initial.iter().for_each(|v| add(v.clone()));
            }
            Command::Data | Command::Rset | Command::Noop | Command::Quit | Command::StartTls => {}
        }
        out
    }

    const SYNTAX_MAIL: &str = "501 5.5.4 Syntax: MAIL FROM:<address>";
    const SYNTAX_RCPT: &str = "501 5.5.4 Syntax: RCPT TO:<address>";
    const SYNTAX_BDAT: &str = "501 5.5.4 Syntax: BDAT size [LAST]";
    const SYNTAX_AUTH: &str = "501 5.5.4 Syntax: AUTH mechanism";
    const BAD_SENDER: &str = "501 5.1.7 Bad sender address syntax";
    const BAD_RCPT: &str = "501 5.1.3 Bad recipient address syntax";
    const BAD_SIZE: &str = "501 5.5.4 Bad message size syntax";
    const UNKNOWN: &str = "500 5.5.2 Error: command not recognized";
    const NUL: &str = "500 5.5.2 Error: NUL character in command";
    const BAD_UTF8: &str = "500 5.5.2 Error: bad UTF-8 syntax";
    const BAD_SYNTAX: &str = "500 5.5.2 Error: bad syntax";

    /// (command line without CRLF, exact result)
    #[rustfmt::skip]
    const TABLE: &[(&[u8], &str)] = &[
        // EHLO / HELO
        (b"EHLO mx.example.org", "EHLO mx.example.org"),
        (b"ehlo [192.0.2.1]", "EHLO [192.0.2.1]"),
        (b"EHLO  mx.example.org  ", "EHLO mx.example.org"),
        (b"HELO x", "HELO x"),
        (b"EHLO", "501 Syntax: EHLO hostname"),
        (b"EHLO ", "501 Syntax: EHLO hostname"),
        (b"HELO", "501 Syntax: HELO hostname"),
        (b"EHLO\tx", UNKNOWN),
        // MAIL: paths
        (b"MAIL FROM:<user@example.org>", "MAIL <user@example.org>"),
        (b"mail from:<user@example.org>", "MAIL <user@example.org>"),
        (b"MAIL FROM: <user@example.org>", "MAIL <user@example.org>"),
        (b"MAIL FROM:<>", "MAIL <>"),
        (b"MAIL FROM:<> ", "MAIL <>"),
        (b"MAIL FROM: <>", "MAIL <>"),
        (b"MAIL FROM:<@a.org,@b.org:u@d.org>", "MAIL <u@d.org>"),
        (b"MAIL FROM:<\"a b\"@x.org>", "MAIL <\"a b\"@x.org>"),
        (b"MAIL FROM:<\"a>b\"@x.org> SIZE=5", "MAIL <\"a>b\"@x.org> SIZE=5"),
        (b"MAIL FROM:<u@[192.0.2.1]>", "MAIL <u@[192.0.2.1]>"),
        (b"MAIL FROM:<u@[IPv6:2001:db8::1]>", "MAIL <u@[IPv6:2001:db8::1]>"),
        (b"MAIL", SYNTAX_MAIL),
        (b"MAIL FROM:", SYNTAX_MAIL),
        (b"MAIL FROM:user@example.org", SYNTAX_MAIL),
        (b"MAIL FROM:<user@example.org", SYNTAX_MAIL),
        (b"MAIL FROM:  <user@example.org>", SYNTAX_MAIL),
        (b"MAIL FROM :<user@example.org>", SYNTAX_MAIL),
        (b"MAIL  FROM:<user@example.org>", SYNTAX_MAIL),
        (b"MAIL TO:<user@example.org>", SYNTAX_MAIL),
        (b"MAIL FROM:<<a@b.org>>", SYNTAX_MAIL),
        (b"MAIL FROM:<user>", BAD_SENDER),
        (b"MAIL FROM:<Postmaster>", BAD_SENDER),
        (b"MAIL FROM:<user@>", BAD_SENDER),
        (b"MAIL FROM:<us er@example.org>", BAD_SENDER),
        (b"MAIL FROM:<a@b.org@c.org>", BAD_SENDER),
        (b"MAIL FROM:<<a@b.org>", BAD_SENDER),
        (b"MAIL FROM:<a@192.0.2.1>", BAD_SENDER),
        (b"MAIL FROM:<@a.org u@d.org>", BAD_SENDER),
        (b"MAIL FROM:<\"a@b.org>", SYNTAX_MAIL),
        // MAIL: SMTPUTF8 (RFC 6531)
        (b"MAIL FROM:<a@b.org> SMTPUTF8", "MAIL <a@b.org> SMTPUTF8"),
        ("MAIL FROM:<j\u{f6}rg@b\u{fc}cher.example> SMTPUTF8".as_bytes(), "MAIL <j\u{f6}rg@b\u{fc}cher.example> SMTPUTF8"),
        ("MAIL FROM:<j\u{f6}rg@example.org>".as_bytes(), "553 5.6.7 Must declare SMTPUTF8 to send unicode address"),
        ("MAIL FROM:<j\u{f6} rg@example.org> SMTPUTF8".as_bytes(), BAD_SENDER),
        (b"MAIL FROM:<a@b.org> SMTPUTF8=yes", SYNTAX_MAIL),
        // MAIL: parameters
        (b"MAIL FROM:<a@b.org> SIZE=1000 BODY=8BITMIME", "MAIL <a@b.org> SIZE=1000 BODY=EightBitMime"),
        (b"MAIL FROM:<a@b.org>  body=7bit", "MAIL <a@b.org> BODY=SevenBit"),
        (b"MAIL FROM:<a@b.org> BODY=BINARYMIME", "MAIL <a@b.org> BODY=BinaryMime"),
        (b"MAIL FROM:<a@b.org> RET=hdrs ENVID=QQ314159+2Bx AUTH=<>", "MAIL <a@b.org> RET=Hdrs ENVID=QQ314159+2Bx AUTH=<>"),
        (b"MAIL FROM:<a@b.org> RET=FULL", "MAIL <a@b.org> RET=Full"),
        (b"MAIL FROM:<a@b.org> AUTH=e+3Dmc2@example.com", "MAIL <a@b.org> AUTH=e+3Dmc2@example.com"),
        (b"MAIL FROM:<a@b.org> SIZE=0", "MAIL <a@b.org> SIZE=0"),
        (b"MAIL FROM:<a@b.org> SIZE=18446744073709551615", "MAIL <a@b.org> SIZE=18446744073709551615"),
        (b"MAIL FROM:<a@b.org>SIZE=1", SYNTAX_MAIL),
        (b"MAIL FROM:<a@b.org> =1", SYNTAX_MAIL),
        (b"MAIL FROM:<a@b.org> -X=1", SYNTAX_MAIL),
        (b"MAIL FROM:<a@b.org> SIZE=abc", BAD_SIZE),
        (b"MAIL FROM:<a@b.org> SIZE=", BAD_SIZE),
        (b"MAIL FROM:<a@b.org> SIZE", BAD_SIZE),
        (b"MAIL FROM:<a@b.org> SIZE=+5", BAD_SIZE),
        (b"MAIL FROM:<a@b.org> SIZE=-1", BAD_SIZE),
        (b"MAIL FROM:<a@b.org> SIZE=1 000", "555 5.5.4 Unsupported option: 000"),
        (b"MAIL FROM:<a@b.org> SIZE=18446744073709551616", "MAIL <a@b.org> SIZE=18446744073709551615"),
        (b"MAIL FROM:<a@b.org> SIZE=99999999999999999999999", "MAIL <a@b.org> SIZE=18446744073709551615"),
        (b"MAIL FROM:<a@b.org> SIZE=1 SIZE=2", "501 5.5.4 Error: duplicate SIZE parameter"),
        (b"MAIL FROM:<a@b.org> BODY=9BIT", "555 5.5.4 Unsupported option: BODY=9BIT"),
        (b"MAIL FROM:<a@b.org> BODY", "555 5.5.4 Unsupported option: BODY"),
        (b"MAIL FROM:<a@b.org> RET=ALL", "501 5.5.4 Bad RET parameter syntax"),
        (b"MAIL FROM:<a@b.org> ENVID=a=b", "501 5.5.4 Bad ENVID parameter syntax"),
        (b"MAIL FROM:<a@b.org> ENVID=a+zz", "501 5.5.4 Bad ENVID parameter syntax"),
        (b"MAIL FROM:<a@b.org> ENVID=", "501 5.5.4 Bad ENVID parameter syntax"),
        (b"MAIL FROM:<a@b.org> ENVID=a+0D+0AX-Injected:+20yes", "501 5.5.4 Bad ENVID parameter syntax"),
        (b"MAIL FROM:<a@b.org> ENVID=a+00", "501 5.5.4 Bad ENVID parameter syntax"),
        (b"MAIL FROM:<a@b.org> ENVID=a+FF", "501 5.5.4 Bad ENVID parameter syntax"),
        (b"MAIL FROM:<a@b.org> RET=HDRS RET=FULL", "501 5.5.4 Error: duplicate RET parameter"),
        (b"MAIL FROM:<a@b.org> AUTH", "501 5.5.4 Bad AUTH parameter syntax"),
        (b"MAIL FROM:<a@b.org> XFOO=1", "555 5.5.4 Unsupported option: XFOO=1"),
        (b"MAIL FROM:<a@b.org> XFOO", "555 5.5.4 Unsupported option: XFOO"),
        (b"MAIL FROM:<> SIZE=1 BOGUS", "555 5.5.4 Unsupported option: BOGUS"),
        // RCPT
        (b"RCPT TO:<user@example.org>", "RCPT <user@example.org>"),
        (b"rcpt to: <user@example.org>", "RCPT <user@example.org>"),
        (b"RCPT TO:<Postmaster>", "RCPT <Postmaster>"),
        (b"RCPT TO:<POSTMASTER>", "RCPT <POSTMASTER>"),
        (b"RCPT TO:<@relay.org:u@d.org>", "RCPT <u@d.org>"),
        ("RCPT TO:<j\u{f6}rg@example.org>".as_bytes(), "RCPT <j\u{f6}rg@example.org>"),
        (b"RCPT TO:<u@d.org> NOTIFY=success,delay ORCPT=rfc822;u+40d.org", "RCPT <u@d.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;u+40d.org"),
        (b"RCPT TO:<u@d.org> NOTIFY=NEVER", "RCPT <u@d.org> NOTIFY=NEVER"),
        (b"RCPT", SYNTAX_RCPT),
        (b"RCPT TO:", SYNTAX_RCPT),
        (b"RCPT TO:u@d.org", SYNTAX_RCPT),
        (b"RCPT FROM:<u@d.org>", SYNTAX_RCPT),
        (b"RCPT TO:<u@d.org>x", SYNTAX_RCPT),
        (b"RCPT TO:<>", BAD_RCPT),
        (b"RCPT TO:<user>", BAD_RCPT),
        (b"RCPT TO:<Postmaster@>", BAD_RCPT),
        (b"RCPT TO:<u@d..org>", BAD_RCPT),
        (b"RCPT TO:<u@d.org> NOTIFY=NEVER,SUCCESS", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
        (b"RCPT TO:<u@d.org> NOTIFY=", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
        (b"RCPT TO:<u@d.org> ORCPT=u@d.org", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
        (b"RCPT TO:<u@d.org> ORCPT=rfc822;", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
        (b"RCPT TO:<u@d.org> ORCPT=rfc822;u+0D+0A@d.org", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
        (b"RCPT TO:<u@d.org> ORCPT=;u@d.org", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
        (b"RCPT TO:<u@d.org> NOTIFY=SUCCESS,,DELAY", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
        (b"RCPT TO:<u@d.org> NOTIFY=NEVER,NEVER", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
        (b"RCPT TO:<u@d.org> SIZE=10", "555 5.5.4 Unsupported option: SIZE=10"),
        (b"RCPT TO:<u@d.org> NOTIFY=NEVER NOTIFY=NEVER", "501 5.5.4 Error: duplicate NOTIFY parameter"),
        // DATA, BDAT, RSET, NOOP, QUIT
        (b"DATA", "DATA"),
        (b"data  ", "DATA"),
        (b"DATA x", "501 5.5.4 Syntax: DATA"),
        (b"BDAT 0", "BDAT 0"),
        (b"BDAT 100 LAST", "BDAT 100 LAST"),
        (b"bdat 100 last", "BDAT 100 LAST"),
        (b"BDAT 18446744073709551615", "BDAT 18446744073709551615"),
        (b"BDAT", SYNTAX_BDAT),
        (b"BDAT x", SYNTAX_BDAT),
        (b"BDAT -1", SYNTAX_BDAT),
        (b"BDAT +1", SYNTAX_BDAT),
        (b"BDAT 1 FIRST", SYNTAX_BDAT),
        (b"BDAT 1 LAST x", SYNTAX_BDAT),
        (b"BDAT 18446744073709551616", SYNTAX_BDAT),
        (b"RSET", "RSET"),
        (b"RSET now", "501 5.5.4 Syntax: RSET"),
        (b"NOOP", "NOOP"),
        (b"NOOP anything at all", "NOOP"),
        (b"QUIT", "QUIT"),
        (b"QuIt", "QUIT"),
        (b"QUIT please", "501 5.5.4 Syntax: QUIT"),
        // VRFY, HELP, STARTTLS, AUTH
        (b"VRFY postmaster", "VRFY postmaster"),
        (b"VRFY <u@d.org>", "VRFY <u@d.org>"),
        (b"VRFY", "501 5.5.4 Syntax: VRFY address"),
        (b"HELP", "HELP"),
        (b"HELP MAIL", "HELP MAIL"),
        (b"STARTTLS", "STARTTLS"),
        (b"starttls", "STARTTLS"),
        (b"STARTTLS now", "501 5.5.4 Syntax: STARTTLS"),
        (b"AUTH PLAIN", "AUTH PLAIN"),
        (b"auth plain AHVzZXIAcGFzcw==", "AUTH PLAIN AHVzZXIAcGFzcw=="),
        (b"AUTH EXTERNAL =", "AUTH EXTERNAL ="),
        (b"AUTH scram-sha-256", "AUTH SCRAM-SHA-256"),
        (b"AUTH", SYNTAX_AUTH),
        (b"AUTH PLAIN a b", SYNTAX_AUTH),
        (b"AUTH PLAIN !!!", SYNTAX_AUTH),
        (b"AUTH ABCDEFGHIJKLMNOPQRSTU", SYNTAX_AUTH),
        // Unknown verbs and garbage
        (b"", UNKNOWN),
        (b" NOOP", UNKNOWN),
        (b"EXPN staff", UNKNOWN),
        (b"GET / HTTP/1.0", UNKNOWN),
        (b"MAIL:FROM:<a@b.org>", UNKNOWN),
        (b"DATAX", UNKNOWN),
        (b"\0", NUL),
        (b"NOOP\0", NUL),
        (b"\0QUIT", NUL),
        (b"MAIL FROM:<a\0@b.org>", NUL),
        (b"RCPT TO:<\xff@b.org>\0", NUL),
        (b"RCPT TO:<\xff@b.org>", BAD_UTF8),
        (b"EHLO \xc3", BAD_UTF8),
        (b"\xc0\xafQUIT", BAD_UTF8),
        (b"RSET\rMAIL FROM:<a@b.org>", BAD_SYNTAX),
        (b"NOOP\r", BAD_SYNTAX),
        (b"EHLO a\x1bb", BAD_SYNTAX),
        ("EHLO a\u{85}b".as_bytes(), BAD_SYNTAX),
        (b"MAIL FROM:<a@b.org>\x7f", BAD_SYNTAX),
        (b"NOOP\t", "NOOP"),
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

    #[test]
    fn error_replies_have_one_line_and_codes() {
        let Err(reply) = parse_command(b"MAIL FROM:<user>") else {
            panic!("expected an error");
        };
        assert_eq!(reply.to_bytes(), b"501 5.1.7 Bad sender address syntax\r\n");
        let Err(reply) = parse_command(b"EHLO") else {
            panic!("expected an error");
        };
        assert_eq!(reply.to_bytes(), b"501 Syntax: EHLO hostname\r\n");
    }

    #[test]
    fn verbs() {
        let table: &[(&[u8], &str)] = &[
            (b"EHLO x", "EHLO"),
            (b"MAIL FROM:<>", "MAIL"),
            (b"RCPT TO:<Postmaster>", "RCPT"),
            (b"BDAT 1", "BDAT"),
            (b"AUTH LOGIN", "AUTH"),
            (b"STARTTLS", "STARTTLS"),
        ];
        for (line, verb) in table {
            assert_eq!(parse_command(line).map(|c| c.verb()), Ok(*verb));
        }
    }

    /// Without DSN and AUTH advertised, their parameters are refused with
    /// Postfix's 555 (the whole parameter echoed), before their syntax is
    /// looked at; the always-on parameters still parse.
    #[test]
    fn unadvertised_extensions() {
        #[rustfmt::skip]
        let table: &[(&[u8], &str)] = &[
            (b"MAIL FROM:<a@b.org> RET=FULL", "555 5.5.4 Unsupported option: RET=FULL"),
            (b"MAIL FROM:<a@b.org> ret=hdrs", "555 5.5.4 Unsupported option: ret=hdrs"),
            (b"MAIL FROM:<a@b.org> RET=ALL", "555 5.5.4 Unsupported option: RET=ALL"),
            (b"MAIL FROM:<a@b.org> ENVID=QQ314159", "555 5.5.4 Unsupported option: ENVID=QQ314159"),
            (b"MAIL FROM:<a@b.org> AUTH=<>", "555 5.5.4 Unsupported option: AUTH=<>"),
            (b"MAIL FROM:<a@b.org> SIZE=10 AUTH", "555 5.5.4 Unsupported option: AUTH"),
            (b"RCPT TO:<u@d.org> NOTIFY=NEVER", "555 5.5.4 Unsupported option: NOTIFY=NEVER"),
            (b"RCPT TO:<u@d.org> ORCPT=rfc822;u+40d.org", "555 5.5.4 Unsupported option: ORCPT=rfc822;u+40d.org"),
            (b"MAIL FROM:<a@b.org> SIZE=10 BODY=8BITMIME SMTPUTF8", "MAIL <a@b.org> SIZE=10 BODY=EightBitMime SMTPUTF8"),
            (b"RCPT TO:<u@d.org>", "RCPT <u@d.org>"),
        ];
        for (line, want) in table {
            let got = show(&parse_command_with(line, Extensions::BASE));
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(line));
        }
    }

    /// No input may panic; every line of a crude mutation corpus parses or errs.
    #[test]
    fn never_panics() {
        let seeds: &[&[u8]] = &[
            b"MAIL FROM:<\"a\\\"b\"@[IPv6:::1]> SIZE=1 ENVID=+41 AUTH=<>",
            b"RCPT TO:<@a,@b:c@d> NOTIFY=DELAY ORCPT=rfc822;x+40y",
            b"BDAT 12 LAST",
            b"AUTH PLAIN =",
        ];
        let bytes = [
            0u8, b'\r', b'\n', b'"', b'\\', b'<', b'>', b'@', b':', b'=', b'+', 0xc3, 0xff, b' ',
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
