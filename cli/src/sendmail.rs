//! sendmail: the Sendmail-compatible command local programs hand mail to.
//!
//! Owns the command line (Postfix's sendmail options), reading the message
//! from standard input (LF or CRLF lines, a missing final newline added,
//! a lone "." line ending it unless -i/-oi), the SMTP dialogue of -bs, and
//! handing each message to postdrop as a record stream
//! (postdrop::maildrop). Does not own the spool (postdrop writes maildrop/,
//! pickup queues), recipient extraction for -t and the headers local mail
//! gets (pickup), the queue listing (-bp: `crate::queue::mailq`), alias
//! databases (-bi, `crate::newaliases::run`) or flushing (-q, admin.rs).
//!
//! postdrop: the installed setgid postdrop next to this executable
//! (/usr/sbin/postdrop beside /usr/sbin/posthorn) when it is there and
//! setgid; otherwise (development mode, cargo builds) this executable under
//! the name postdrop, which runs the same code without privilege.
//!
//! Start-up is cheap on purpose (one message per process in the bench):
//! no main.cf is read unless -bs needs myhostname and message_size_limit,
//! no DNS, no TLS.
//!
//! Exit status (sysexits.h): 0 queued; 64 (EX_USAGE) bad options or no
//! recipients; 65 (EX_DATAERR) -t without recipients on the command line
//! and none in the header; 67 (EX_NOUSER) the invoking user has no login
//! name; -bi newaliases' status; 71 (EX_OSERR) postdrop could not
//! be run; 75 (EX_TEMPFAIL) postdrop failed for a passing reason; otherwise
//! postdrop's own status (65 bad or too big message, 77 configuration
//! directory not allowed, 78 configuration error).
//!
//! Standards: RFC 5321 (the -bs dialogue); sysexits.h.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use postdrop::maildrop::{self, BodyType, Record};
use proto::smtp::{parse_command_with, Command as SmtpCommand, DataReceiver, Extensions, Reply};

pub const EX_USAGE: i32 = 64;
pub const EX_DATAERR: i32 = 65;
pub const EX_NOUSER: i32 = 67;
pub const EX_OSERR: i32 = 71;
pub const EX_TEMPFAIL: i32 = 75;

/// Longest -bs command line.
const MAX_LINE: u64 = 4096;

/// What sendmail was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// -bm (the default): read a message from standard input.
    #[default]
    Deliver,
    /// -bs: SMTP on standard input and output.
    Smtp,
    /// -bp: list the queue (mailq).
    Mailq,
    /// -bi: rebuild the alias database (newaliases).
    Newaliases,
    /// -q: try every deferred message now.
    Flush,
    /// -qINTERVAL and the like: nothing to do.
    Ignore,
}

/// The parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub mode: Mode,
    /// -t
    pub extract: bool,
    /// -i, -oi
    pub ignore_dots: bool,
    /// -f, -r
    pub sender: Option<String>,
    /// -F
    pub full_name: Option<String>,
    /// -N, as NOTIFY bits.
    pub notify: Option<u8>,
    /// -B
    pub body: Option<BodyType>,
    /// -C
    pub config_dir: Option<PathBuf>,
    /// -v
    pub verbose: bool,
    pub recipients: Vec<String>,
}

/// A command line sendmail refuses (EX_USAGE).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("option -{0} requires an argument")]
    MissingArgument(char),
    #[error("invalid option -{0}")]
    UnknownOption(char),
    #[error("-N: bad DSN notification {0:?} (never, or a list of success, delay, failure)")]
    Notify(String),
    #[error("-B: bad body type {0:?} (7BIT or 8BITMIME)")]
    Body(String),
    #[error("-b{0}: unsupported mode{1}")]
    Mode(String, &'static str),
}

/// Options that take an argument (Postfix's getopt string
/// "A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx").
const WITH_ARG: &str = "ABCFLNORVXbefhopr";
/// Options without one.
const FLAGS: &str = "GIUcimntvx";

/// Parse sendmail's command line (without argv[0]). Options end at the
/// first argument that is no option, or at `--`.
pub fn parse_options(args: &[String]) -> Result<Options, UsageError> {
    let mut o = Options::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        for (at, c) in a[1..].char_indices() {
            if c == 'q' {
                // -q alone flushes; -qRsite and -qSsite too (all of it);
                // -qINTERVAL (a queue-run interval) has nothing to do.
                let rest = &a[1 + at + 1..];
                o.mode = match rest.chars().next() {
                    None | Some('R' | 'S') => Mode::Flush,
                    _ => Mode::Ignore,
                };
                break;
            }
            if WITH_ARG.contains(c) {
                let rest = &a[1 + at + c.len_utf8()..];
                let value = if rest.is_empty() {
                    i += 1;
                    args.get(i).cloned().ok_or(UsageError::MissingArgument(c))?
                } else {
                    rest.to_string()
                };
                apply(&mut o, c, value)?;
                break;
            }
            if !FLAGS.contains(c) {
                return Err(UsageError::UnknownOption(c));
            }
            match c {
                't' => o.extract = true,
                'i' => o.ignore_dots = true,
                'v' => o.verbose = true,
                // -G -I -U -c -m -n -x: Sendmail's, ignored as Postfix does.
                _ => {}
            }
        }
        i += 1;
    }
    for a in &args[i.min(args.len())..] {
        // A recipient argument may be a comma-separated list.
        o.recipients.extend(
            a.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    Ok(o)
}

/// An option with its argument.
fn apply(o: &mut Options, c: char, v: String) -> Result<(), UsageError> {
    match c {
        'f' | 'r' => o.sender = Some(v),
        'F' => o.full_name = Some(v),
        'C' => o.config_dir = Some(PathBuf::from(v)),
        'N' => o.notify = Some(parse_notify(&v).ok_or(UsageError::Notify(v))?),
        'B' => {
            o.body = Some(match v.to_ascii_uppercase().as_str() {
                "7BIT" => BodyType::SevenBit,
                "8BITMIME" => BodyType::EightBitMime,
                _ => return Err(UsageError::Body(v)),
            })
        }
        // -oi is -i; every other -oX is Sendmail's and ignored.
        'o' if v == "i" => o.ignore_dots = true,
        'b' => {
            o.mode = match v.as_str() {
                "m" => Mode::Deliver,
                "s" => Mode::Smtp,
                "p" => Mode::Mailq,
                "i" => Mode::Newaliases,
                "d" | "D" => return Err(UsageError::Mode(v, ": use posthorn start")),
                _ => return Err(UsageError::Mode(v, "")),
            }
        }
        // -A -L -O -R -V -X -e -h -p: accepted and ignored, as Postfix
        // ignores them (or has no use for them here).
        _ => {}
    }
    Ok(())
}

/// -N's value: `never`, or a list of success, delay, failure.
pub fn parse_notify(v: &str) -> Option<u8> {
    let mut bits = 0u8;
    for w in v.split(',').map(|w| w.trim().to_ascii_lowercase()) {
        bits |= match w.as_str() {
            "never" => maildrop::NOTIFY_NEVER,
            "success" => maildrop::NOTIFY_SUCCESS,
            "delay" => maildrop::NOTIFY_DELAY,
            "failure" => maildrop::NOTIFY_FAILURE,
            _ => return None,
        };
    }
    (bits == maildrop::NOTIFY_NEVER || (bits != 0 && bits & maildrop::NOTIFY_NEVER == 0))
        .then_some(bits)
}

/// The entry point: `sendmail ARGS` (ARGS without argv[0]).
pub fn main(args: Vec<String>) -> i32 {
    let o = match parse_options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sendmail: fatal: {e}");
            return EX_USAGE;
        }
    };
    match o.mode {
        Mode::Deliver => deliver(&o),
        Mode::Smtp => smtp(&o),
        Mode::Mailq => crate::queue::mailq(&crate::config_dir(o.config_dir.clone())),
        Mode::Newaliases => newaliases(&crate::config_dir(o.config_dir.clone())),
        Mode::Flush => crate::admin::flush(&crate::config_dir(o.config_dir.clone())),
        Mode::Ignore => 0,
    }
}

/// -bi: `newaliases` (checks the alias_maps tables; there is no database
/// to build).
fn newaliases(dir: &Path) -> i32 {
    crate::newaliases::run(dir)
}

/// The invoking user's login name and full name (GECOS).
fn login() -> Option<(String, String)> {
    let u = nix::unistd::User::from_uid(nix::unistd::getuid()).ok()??;
    let gecos = u.gecos.to_string_lossy();
    let full = gecos.split(',').next().unwrap_or("").trim().to_string();
    Some((u.name, full))
}

/// The envelope records of one submission (before the message).
fn envelope(o: &Options, sender: &str, full_name: Option<&str>, rcpts: &[String]) -> Vec<Record> {
    let mut v = vec![Record::Sender(sender.to_string())];
    if let Some(f) = full_name.filter(|f| !f.is_empty()) {
        v.push(Record::FullName(f.to_string()));
    }
    v.extend(rcpts.iter().map(|r| Record::Recipient(r.clone())));
    if o.extract {
        v.push(Record::Extract);
    }
    if let Some(n) = o.notify {
        v.push(Record::Notify(n));
    }
    if let Some(b) = o.body {
        v.push(Record::Body(b));
    }
    v
}

/// Why a record could not go in (text postdrop would refuse).
fn check_text(what: &str, s: &str) -> Result<(), String> {
    if s.len() > maildrop::MAX_ADDRESS || s.chars().any(char::is_control) {
        return Err(format!("bad {what} {s:?}"));
    }
    Ok(())
}

/// The default mode: one message from standard input.
fn deliver(o: &Options) -> i32 {
    if !o.extract && o.recipients.is_empty() {
        eprintln!("sendmail: fatal: no recipients specified");
        return EX_USAGE;
    }
    let me = login();
    let sender = match (&o.sender, &me) {
        (Some(s), _) => s.clone(),
        (None, Some((name, _))) => name.clone(),
        (None, None) => {
            eprintln!(
                "sendmail: fatal: no login name found for user ID {}",
                nix::unistd::getuid()
            );
            return EX_NOUSER;
        }
    };
    let sender = if sender == "<>" {
        String::new()
    } else {
        sender
    };
    let full_name = o
        .full_name
        .clone()
        .or_else(|| std::env::var("NAME").ok())
        .or_else(|| me.filter(|_| o.sender.is_none()).map(|(_, f)| f));
    let checks = std::iter::once(("sender", &sender))
        .chain(o.recipients.iter().map(|r| ("recipient", r)))
        .chain(full_name.iter().map(|f| ("full name", f)));
    for (what, s) in checks {
        if let Err(e) = check_text(what, s) {
            eprintln!("sendmail: fatal: {e}");
            return EX_USAGE;
        }
    }
    let records = envelope(o, &sender, full_name.as_deref(), &o.recipients);
    let ignore_dots = o.ignore_dots;
    let mut stdin = io::stdin().lock();
    // -t alone: the header must name a recipient, or nothing is queued
    // (Postfix would bounce it later; an error now is kinder).
    let mut head = Vec::new();
    if o.extract && o.recipients.is_empty() {
        match header_recipients(&mut stdin, &mut head) {
            Ok(true) => {}
            Ok(false) => {
                eprintln!("sendmail: fatal: no recipient addresses found in message header");
                return EX_DATAERR;
            }
            Err(e) => {
                eprintln!("sendmail: fatal: reading the message: {e}");
                return EX_TEMPFAIL;
            }
        }
    }
    submit(o.config_dir.as_deref(), &records, |out| {
        copy_message(io::Cursor::new(head).chain(stdin), out, ignore_dots)
    })
}

/// Read the header section of the message into `head` (at most
/// posthorn_pickup::HEADER_LIMIT bytes, as pickup reads it) and say
/// whether its To:, Cc: or Bcc: (Resent- ones when present) name anybody.
fn header_recipients(input: &mut impl Read, head: &mut Vec<u8>) -> io::Result<bool> {
    use posthorn_pickup::headers;
    let mut buf = [0u8; 8192];
    let end = loop {
        let eof = head.len() >= posthorn_pickup::HEADER_LIMIT
            || match input.read(&mut buf) {
                Ok(0) => true,
                Ok(n) => {
                    head.extend_from_slice(&buf[..n]);
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                Err(e) => return Err(e),
            };
        if let Some(end) = headers::header_end(head, eof) {
            break end;
        }
        if eof {
            break head.len();
        }
    };
    let fields = headers::fields(&head[..end]);
    let resent = fields
        .iter()
        .any(|f| f.name.to_ascii_lowercase().starts_with("resent-"));
    let names: [&str; 3] = if resent {
        ["resent-to", "resent-cc", "resent-bcc"]
    } else {
        ["to", "cc", "bcc"]
    };
    Ok(fields
        .iter()
        .filter(|f| names.iter().any(|n| f.is(n)))
        .any(|f| !headers::addresses(&f.value()).is_empty()))
}

/// Run postdrop, write `records`, then the message (`body` writes raw
/// message bytes, chunked into 'D' records here), then the end record.
/// Returns sendmail's exit status.
fn submit(
    config_dir: Option<&Path>,
    records: &[Record],
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> i32 {
    let mut cmd = postdrop_command();
    if let Some(d) = config_dir {
        cmd.arg("-c").arg(d);
    }
    let mut child = match cmd.stdin(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sendmail: fatal: cannot run postdrop: {e}");
            return EX_OSERR;
        }
    };
    let written = (|| {
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no pipe to postdrop"))?;
        let mut out = BufWriter::with_capacity(maildrop::MAX_CHUNK + 5, stdin);
        out.write_all(maildrop::MAGIC)?;
        for r in records {
            maildrop::write(&mut out, r)?;
        }
        let mut chunks = Chunker {
            out: &mut out,
            buf: Vec::with_capacity(maildrop::MAX_CHUNK),
        };
        body(&mut chunks)?;
        chunks.flush()?;
        maildrop::write(&mut out, &Record::End)?;
        out.flush()
    })();
    let status = match child.wait() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sendmail: fatal: postdrop: {e}");
            return EX_TEMPFAIL;
        }
    };
    match (status.code(), written) {
        (Some(0), Ok(())) => 0,
        // postdrop said why on standard error.
        (Some(code), _) if code != 0 => code,
        (_, Err(e)) => {
            eprintln!("sendmail: fatal: writing to postdrop: {e}");
            EX_TEMPFAIL
        }
        _ => {
            eprintln!("sendmail: fatal: postdrop ended by {status}");
            EX_TEMPFAIL
        }
    }
}

/// postdrop: the installed setgid one beside this executable, else this
/// executable as postdrop (see the header).
fn postdrop_command() -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/sbin/posthorn"));
    if let Some(p) = exe.parent().map(|d| d.join("postdrop")) {
        if std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o2000 != 0)
        {
            return Command::new(p);
        }
    }
    let mut c = Command::new(exe);
    c.arg0("postdrop");
    c
}

/// Message bytes into 'D' records of at most MAX_CHUNK.
struct Chunker<'a, W: Write> {
    out: &'a mut W,
    buf: Vec<u8>,
}

impl<W: Write> Write for Chunker<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(maildrop::MAX_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == maildrop::MAX_CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            maildrop::write_record(self.out, b'D', &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Where `copy_message` stands in a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    Start,
    /// "." at a line start, held back.
    Dot,
    /// "." CR at a line start, held back.
    DotCr,
    Middle,
}

/// Copy a message from `input` to `out` with CRLF line ends (LF or CRLF
/// in; a bare CR inside a line is kept), adding the last line's end when
/// missing. Without `ignore_dots` a line that is only "." ends the
/// message. Streams: nothing is held but a held-back dot.
pub fn copy_message(input: impl Read, out: &mut dyn Write, ignore_dots: bool) -> io::Result<()> {
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let mut state = LineState::Start;
    let mut last_cr = false;
    let mut buf = Vec::with_capacity(64 * 1024 + 1024);
    loop {
        let data = input.fill_buf()?;
        if data.is_empty() {
            break;
        }
        let n = data.len();
        buf.clear();
        for &b in data {
            match state {
                LineState::Start if b == b'.' && !ignore_dots => {
                    state = LineState::Dot;
                    continue;
                }
                LineState::Dot | LineState::DotCr if b == b'\n' => {
                    out.write_all(&buf)?;
                    return Ok(()); // the end of the message
                }
                LineState::Dot if b == b'\r' => {
                    state = LineState::DotCr;
                    continue;
                }
                LineState::Dot => {
                    buf.push(b'.');
                    last_cr = false;
                }
                LineState::DotCr => {
                    buf.extend_from_slice(b".\r");
                    last_cr = true;
                }
                _ => {}
            }
            if b == b'\n' {
                if !last_cr {
                    buf.push(b'\r');
                }
                buf.push(b'\n');
                state = LineState::Start;
                last_cr = false;
            } else {
                buf.push(b);
                last_cr = b == b'\r';
                state = LineState::Middle;
            }
        }
        input.consume(n);
        out.write_all(&buf)?;
    }
    match state {
        // "." as the last line, without its newline: the end.
        LineState::Dot | LineState::DotCr => Ok(()),
        LineState::Start => Ok(()),
        LineState::Middle => out.write_all(if last_cr { b"\n" } else { b"\r\n" }),
    }
}

/// -bs: an SMTP dialogue on standard input and output; each message goes
/// through postdrop.
fn smtp(o: &Options) -> i32 {
    let dir = crate::config_dir(o.config_dir.clone());
    let cfg = match common::config::Config::load(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sendmail: fatal: {e}");
            return 78;
        }
    };
    let host = cfg.get("myhostname");
    let limit = cfg.int("message_size_limit").unwrap_or(10_240_000);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let stdin = io::stdin();
    let mut input = BufReader::with_capacity(64 * 1024, stdin.lock());
    match smtp_session(o, &host, limit, &mut input, &mut out) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sendmail: fatal: -bs: {e}");
            EX_TEMPFAIL
        }
    }
}

fn reply(out: &mut dyn Write, r: &Reply) -> io::Result<()> {
    out.write_all(&r.to_bytes())?;
    out.flush()
}

/// The -bs dialogue proper (SMTP over any reader and writer).
pub fn smtp_session(
    o: &Options,
    host: &str,
    size_limit: u64,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> io::Result<()> {
    reply(
        out,
        &Reply::new(220, None, format!("{host} ESMTP posthorn")),
    )?;
    let mut sender: Option<String> = None;
    let mut body = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        input.take(MAX_LINE).read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Ok(()); // end of input
        }
        if !line.ends_with(b"\n") && line.len() as u64 >= MAX_LINE {
            // Skip the rest of the long line.
            let mut rest = Vec::new();
            input.read_until(b'\n', &mut rest)?;
            reply(out, &Reply::new(500, Some("5.5.2"), "Error: line too long"))?;
            continue;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let r = match parse_command_with(text, Extensions::BASE) {
            Err(r) => r,
            Ok(SmtpCommand::Ehlo(_)) => Reply::multi(
                250,
                None,
                vec![
                    host.to_string(),
                    "PIPELINING".into(),
                    format!("SIZE {size_limit}"),
                    "8BITMIME".into(),
                    "ENHANCEDSTATUSCODES".into(),
                ],
            ),
            Ok(SmtpCommand::Helo(_)) => Reply::new(250, None, host.to_string()),
            Ok(SmtpCommand::Mail { from, params }) => {
                if sender.is_some() {
                    Reply::new(503, Some("5.5.1"), "Error: nested MAIL command")
                } else if params
                    .size
                    .is_some_and(|s| size_limit > 0 && s > size_limit)
                {
                    Reply::new(552, Some("5.3.4"), "Message size exceeds fixed limit")
                } else if check_text("sender", &from).is_err() {
                    Reply::new(501, Some("5.1.7"), "Bad sender address syntax")
                } else {
                    body = match params.body {
                        Some(proto::smtp::Body::SevenBit) => Some(BodyType::SevenBit),
                        Some(proto::smtp::Body::EightBitMime) => Some(BodyType::EightBitMime),
                        _ => None,
                    };
                    sender = Some(from);
                    Reply::new(250, Some("2.1.0"), "Ok")
                }
            }
            Ok(SmtpCommand::Rcpt { to, .. }) => {
                if sender.is_none() {
                    Reply::new(503, Some("5.5.1"), "Error: need MAIL command")
                } else if rcpts.len() >= maildrop::MAX_RECIPIENTS {
                    Reply::new(452, Some("4.5.3"), "Error: too many recipients")
                } else if to.is_empty() || check_text("recipient", &to).is_err() {
                    Reply::new(501, Some("5.1.3"), "Bad recipient address syntax")
                } else {
                    rcpts.push(to);
                    Reply::new(250, Some("2.1.5"), "Ok")
                }
            }
            Ok(SmtpCommand::Data) => match &sender {
                None => Reply::new(503, Some("5.5.1"), "Error: need MAIL command"),
                Some(_) if rcpts.is_empty() => {
                    Reply::new(554, Some("5.5.1"), "Error: no valid recipients")
                }
                Some(s) => {
                    reply(
                        out,
                        &Reply::new(354, None, "End data with <CR><LF>.<CR><LF>"),
                    )?;
                    let message = receive_data(input, size_limit)?;
                    let r = match message {
                        None => Reply::new(552, Some("5.3.4"), "Error: message file too big"),
                        Some(m) => {
                            let opts = Options {
                                extract: false,
                                notify: o.notify,
                                body,
                                ..Options::default()
                            };
                            let recs = envelope(&opts, s, o.full_name.as_deref(), &rcpts);
                            match submit(o.config_dir.as_deref(), &recs, |w| w.write_all(&m)) {
                                0 => Reply::new(250, Some("2.0.0"), "Ok: queued"),
                                _ => {
                                    Reply::new(451, Some("4.3.0"), "Error: queue file write error")
                                }
                            }
                        }
                    };
                    sender = None;
                    rcpts.clear();
                    r
                }
            },
            Ok(SmtpCommand::Rset) => {
                sender = None;
                rcpts.clear();
                Reply::new(250, Some("2.0.0"), "Ok")
            }
            Ok(SmtpCommand::Noop) => Reply::new(250, Some("2.0.0"), "Ok"),
            Ok(SmtpCommand::Quit) => {
                reply(out, &Reply::new(221, Some("2.0.0"), "Bye"))?;
                return Ok(());
            }
            Ok(SmtpCommand::Vrfy(_)) => Reply::new(502, Some("5.5.1"), "VRFY command is disabled"),
            Ok(_) => Reply::new(502, Some("5.5.1"), "Error: command not implemented"),
        };
        reply(out, &r)?;
    }
}

/// DATA's message, unstuffed; None when it passed `limit` (read to its
/// end anyway, so the dialogue stays in step).
fn receive_data(input: &mut dyn BufRead, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut rx = DataReceiver::new();
    let mut message = Vec::new();
    let mut too_big = false;
    let mut chunk = Vec::new();
    while !rx.is_done() {
        let data = input.fill_buf()?;
        if data.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "end of input in DATA",
            ));
        }
        chunk.clear();
        let p = rx.feed(data, &mut chunk);
        input.consume(p.consumed);
        if limit > 0 && (message.len() + chunk.len()) as u64 > limit {
            too_big = true;
            message = Vec::new();
        }
        if !too_big {
            message.extend_from_slice(&chunk);
        }
    }
    Ok((!too_big).then_some(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options() {
        let o = parse_options(&args(
            "-t -i -f alice -F Alice -N success,delay -B 8BITMIME",
        ))
        .unwrap();
        assert!(o.extract && o.ignore_dots);
        assert_eq!(o.sender.as_deref(), Some("alice"));
        assert_eq!(o.full_name.as_deref(), Some("Alice"));
        assert_eq!(
            o.notify,
            Some(maildrop::NOTIFY_SUCCESS | maildrop::NOTIFY_DELAY)
        );
        assert_eq!(o.body, Some(BodyType::EightBitMime));
        assert!(o.recipients.is_empty());

        // Attached values, bundled flags, -oi, ignored options, --.
        let o = parse_options(&args(
            "-ti -oi -odb -ralice -om -L x -- -bob@x carol@y,dave@z",
        ))
        .unwrap();
        assert!(o.extract && o.ignore_dots);
        assert_eq!(o.sender.as_deref(), Some("alice"));
        assert_eq!(o.recipients, ["-bob@x", "carol@y", "dave@z"]);
        // Options end at the first recipient.
        let o = parse_options(&args("bob@x -t")).unwrap();
        assert!(!o.extract);
        assert_eq!(o.recipients, ["bob@x", "-t"]);

        assert_eq!(parse_options(&args("-bs")).unwrap().mode, Mode::Smtp);
        assert_eq!(parse_options(&args("-bp")).unwrap().mode, Mode::Mailq);
        assert_eq!(parse_options(&args("-bi")).unwrap().mode, Mode::Newaliases);
        assert_eq!(parse_options(&args("-q")).unwrap().mode, Mode::Flush);
        assert_eq!(parse_options(&args("-q30m")).unwrap().mode, Mode::Ignore);
        assert_eq!(
            parse_options(&args("-C /etc/x -v")).unwrap().config_dir,
            Some(PathBuf::from("/etc/x"))
        );
        assert_eq!(
            parse_options(&args("-N never")).unwrap().notify,
            Some(maildrop::NOTIFY_NEVER)
        );

        assert_eq!(
            parse_options(&args("-f")),
            Err(UsageError::MissingArgument('f'))
        );
        assert_eq!(
            parse_options(&args("-k")),
            Err(UsageError::UnknownOption('k'))
        );
        assert!(matches!(
            parse_options(&args("-N never,success")),
            Err(UsageError::Notify(_))
        ));
        assert!(matches!(
            parse_options(&args("-B binary")),
            Err(UsageError::Body(_))
        ));
        assert!(matches!(
            parse_options(&args("-bd")),
            Err(UsageError::Mode(..))
        ));
    }

    /// A -bs transcript run in memory (the path that queues is the
    /// suite's: tests/suite/sendmail.rs).
    #[test]
    fn bs_transcript_without_queueing() {
        let t = "\
S: 220 h.example ESMTP posthorn
C: HELO c
S: 250 h.example
C: EHLO c
S: 250-h.example
S: 250-PIPELINING
S: 250-SIZE 40
S: 250-8BITMIME
S: 250 ENHANCEDSTATUSCODES
C: RCPT TO:<a@b>
S: 503 5.5.1 Error: need MAIL command
C: DATA
S: 503 5.5.1 Error: need MAIL command
C: MAIL FROM:<a@example.org> SIZE=41
S: 552 5.3.4 Message size exceeds fixed limit
C: MAIL FROM:<a@example.org> BODY=8BITMIME
S: 250 2.1.0 Ok
C: MAIL FROM:<b@example.org>
S: 503 5.5.1 Error: nested MAIL command
C: DATA
S: 554 5.5.1 Error: no valid recipients
C: RCPT TO:<demo@example.test>
S: 250 2.1.5 Ok
C: DATA
S: 354 End data with <CR><LF>.<CR><LF>
C: 0123456789012345678901234567890123456789
C: .
S: 552 5.3.4 Error: message file too big
C: VRFY x
S: 502 5.5.1 VRFY command is disabled
C: STARTTLS
S: 502 5.5.1 Error: command not implemented
C: RSET
S: 250 2.0.0 Ok
C: bogus
S: 500 5.5.2 Error: command not recognized
C: QUIT
S: 221 2.0.0 Bye
C: NOOP
";
        let mut input = Vec::new();
        let mut want = Vec::new();
        for l in t.lines() {
            if let Some(c) = l.strip_prefix("C: ") {
                input.extend_from_slice(format!("{c}\r\n").as_bytes());
            } else if let Some(r) = l.strip_prefix("S: ") {
                want.extend_from_slice(format!("{r}\r\n").as_bytes());
            }
        }
        let mut out = Vec::new();
        let mut reader = &input[..];
        smtp_session(&Options::default(), "h.example", 40, &mut reader, &mut out).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want)
        );
    }

    fn copy(input: &[u8], ignore_dots: bool) -> Vec<u8> {
        let mut out = Vec::new();
        copy_message(input, &mut out, ignore_dots).unwrap();
        out
    }

    #[test]
    fn message_lines() {
        assert_eq!(copy(b"a\nb\n", false), b"a\r\nb\r\n");
        assert_eq!(copy(b"a\r\nb\r\n", false), b"a\r\nb\r\n");
        assert_eq!(copy(b"a\nno newline", false), b"a\r\nno newline\r\n");
        assert_eq!(copy(b"a\n.\nafter\n", false), b"a\r\n");
        assert_eq!(copy(b"a\r\n.\r\nafter\n", false), b"a\r\n");
        assert_eq!(copy(b"a\n.\nafter\n", true), b"a\r\n.\r\nafter\r\n");
        assert_eq!(copy(b".a\n..\n.", false), b".a\r\n..\r\n");
        assert_eq!(copy(b"bare\rcr\n", false), b"bare\rcr\r\n");
        assert_eq!(copy(b"", false), b"");
        assert_eq!(copy(b"x\r", false), b"x\r\n");
    }
}
