//! Command-line flags of posthorn-bench, parsed by hand (std only).
//!
//! Owns the flag table, defaults and the usage text. Accepts `--flag value`
//! and `--flag=value`.
//!
//! Diagnostics: returns a one-line error for unknown flags, missing values
//! and values that do not parse; `--help` returns `Parsed::Help`.

use std::time::Duration;

pub const USAGE: &str = "\
usage: posthorn-bench [flags]

SMTP load generator: opens --sessions concurrent sessions (one thread each),
each sends EHLO once per connection and then MAIL/RCPT/DATA transactions,
--per-conn messages per connection, until --count messages got 250 after the
final dot. Prints: accepted=N failed=N seconds=S rate=R

  --host H           server address (default 127.0.0.1)
  --port P           server port (default 2525)
  --sessions N       concurrent sessions (default 1)
  --count N          messages to get accepted in total (default 100)
  --size BYTES       message size, header included (default 5120)
  --from ADDR        envelope sender and From: (default bench@example.test)
  --to ADDR          envelope recipient and To: (default demo@example.test)
  --per-conn N       messages per connection before QUIT and reconnect
                     (default 100, like smtp-source -m; alias --per-session)
  --helo NAME        EHLO argument (default posthorn-bench.localhost)
  --timeout SECS     read/write timeout per reply (default 60)
  --max-failures N   give up after N failed transactions (default: --count)
  --quiet-errors     do not print the first failures to stderr
  --exec PROGRAM     exec mode: instead of SMTP, run PROGRAM once per message
                     with the message (LF line ends) on its standard input,
                     --sessions programs at a time; exit 0 = accepted
                     (e.g. --exec /usr/sbin/sendmail --exec-arg -t)
  --exec-arg ARG     an argument for PROGRAM (repeat for several)
  --message FILE     send FILE (LF or CRLF line ends) as every message instead
                     of a generated one (--size is then ignored), e.g. one
                     message DKIM-signed ahead of the run
";

/// Parsed configuration of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub sessions: usize,
    pub count: u64,
    pub size: usize,
    pub from: String,
    pub to: String,
    pub per_conn: u64,
    pub helo: String,
    pub timeout: Duration,
    pub max_failures: u64,
    pub quiet_errors: bool,
    /// Exec mode: a program run per message (None: SMTP).
    pub exec: Option<String>,
    pub exec_args: Vec<String>,
    /// `--message`: the message sent every time, CRLF line ends, not yet
    /// dot-stuffed (None: generated per message).
    pub message: Option<Vec<u8>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 2525,
            sessions: 1,
            count: 100,
            size: 5120,
            from: "bench@example.test".into(),
            to: "demo@example.test".into(),
            per_conn: 100,
            helo: "posthorn-bench.localhost".into(),
            timeout: Duration::from_secs(60),
            max_failures: 100,
            quiet_errors: false,
            exec: None,
            exec_args: Vec::new(),
            message: None,
        }
    }
}

/// Outcome of parsing the command line.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Box<Config>),
    Help,
}

/// Parses the flags (program name already removed).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Parsed, String> {
    let mut cfg = Config::default();
    let mut max_failures = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--quiet-errors" => {
                cfg.quiet_errors = true;
                continue;
            }
            _ => {}
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--host" => cfg.host = value()?,
            "--port" => cfg.port = number(&flag, &value()?)?,
            "--sessions" => cfg.sessions = number(&flag, &value()?)?,
            "--count" => cfg.count = number(&flag, &value()?)?,
            "--size" => cfg.size = number(&flag, &value()?)?,
            "--from" => cfg.from = value()?,
            "--to" => cfg.to = value()?,
            "--per-conn" | "--per-session" => cfg.per_conn = number(&flag, &value()?)?,
            "--helo" => cfg.helo = value()?,
            "--timeout" => cfg.timeout = Duration::from_secs(number(&flag, &value()?)?),
            "--max-failures" => max_failures = Some(number(&flag, &value()?)?),
            "--exec" => cfg.exec = Some(value()?),
            "--exec-arg" => cfg.exec_args.push(value()?),
            "--message" => {
                let path = value()?;
                let raw = std::fs::read(&path).map_err(|e| format!("--message {path}: {e}"))?;
                cfg.message = Some(crlf(&raw));
            }
            _ => return Err(format!("unknown flag {arg:?} (try --help)")),
        }
    }
    if cfg.sessions == 0 {
        return Err("--sessions must be at least 1".into());
    }
    if cfg.per_conn == 0 {
        return Err("--per-conn must be at least 1".into());
    }
    if cfg.timeout.is_zero() {
        return Err("--timeout must be at least 1".into());
    }
    cfg.max_failures = max_failures.unwrap_or(cfg.count.max(1));
    Ok(Parsed::Run(Box::new(cfg)))
}

/// `raw` with every line ending in CRLF (a lone LF becomes CRLF).
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: {v:?} is not a valid number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Parsed, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn full_command_line() {
        let line = "--host 127.0.0.1 --port 2626 --sessions 20 --count 2000 --size=4096 \
                    --from a@b --to demo@example.test --per-session 7";
        let Ok(Parsed::Run(c)) = parse(line.split_whitespace().map(String::from)) else {
            panic!("should parse");
        };
        assert_eq!(c.port, 2626);
        assert_eq!(c.sessions, 20);
        assert_eq!(c.count, 2000);
        assert_eq!(c.size, 4096);
        assert_eq!(c.from, "a@b");
        assert_eq!(c.per_conn, 7);
        assert_eq!(c.max_failures, 2000);
    }

    #[test]
    fn exec_mode() {
        let Ok(Parsed::Run(c)) = run(&[
            "--exec",
            "/usr/sbin/sendmail",
            "--exec-arg",
            "-t",
            "--exec-arg=-i",
        ]) else {
            panic!("should parse");
        };
        assert_eq!(c.exec.as_deref(), Some("/usr/sbin/sendmail"));
        assert_eq!(c.exec_args, ["-t", "-i"]);
        assert!(run(&["--exec"]).is_err());
    }

    #[test]
    fn message_file_gets_crlf_line_ends() {
        assert_eq!(
            crlf(b"A: b\n\nbody\r\nlast"),
            b"A: b\r\n\r\nbody\r\nlast\r\n"
        );
        assert!(run(&["--message", "/nonexistent/posthorn-bench"]).is_err());
    }

    #[test]
    fn errors() {
        assert!(run(&["--port"]).is_err());
        assert!(run(&["--port", "x"]).is_err());
        assert!(run(&["--sessions", "0"]).is_err());
        assert!(run(&["--bogus"]).is_err());
        assert_eq!(run(&["--help"]), Ok(Parsed::Help));
    }
}
