//! Command-line flags of posthorn-pop3-bench, parsed by hand (std only).
//!
//! Owns the flag tables, defaults and the usage text of both modes: the
//! load run (default) and `make-maildirs`. Accepts `--flag value` and
//! `--flag=value`.
//!
//! Diagnostics: `ArgError` names the flag and the problem; `--help` returns
//! `Parsed::Help`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use posthorn_bench::maildir::MaildirConfig;
use posthorn_bench::work::sessions_or_seconds;
use posthorn_bench::{check_clients, check_users, split_flag};

pub const USAGE: &str = "\
usage: posthorn-pop3-bench [flags]
       posthorn-pop3-bench make-maildirs --dir DIR [flags]

POP3 load generator: --clients concurrent clients (a thread each), each
looping over sessions until --sessions sessions succeeded in total or
--seconds passed: connect, greeting, USER, PASS, STAT, LIST, UIDL, --retr
RETRs of random messages (each checked octet for octet against LIST's size),
QUIT. Sessions rotate over the mailboxes user1..userN of --user-pattern.
Prints a latency table and one machine-readable line starting with `result `.

  --host H             server address (default 127.0.0.1)
  --port P             server port (default 2110)
  --clients N          concurrent clients (default 1)
  --sessions N         successful sessions to complete, in total (default 100
                       unless --seconds is given)
  --seconds S          stop starting sessions after S seconds
  --users N            mailboxes to rotate over (default 10)
  --user-pattern P     user names; %d is the number (default user%d@example.test)
  --first-user N       number of the first user (default 1)
  --password PW        password of every user (default bench)
  --retr N             RETRs of random messages per session (default 3)
  --retr-all           RETR every message instead (a full download)
  --shared-mailboxes   let concurrent sessions use the same mailbox; by default
                       a mailbox has one session at a time (POP3 servers may
                       lock it: RFC 1939 4, -ERR [IN-USE])
  --seed N             seed of the random choices (default 1)
  --timeout SECS       socket read/write timeout (default 60)
  --max-failures N     stop after N failed sessions (default: --sessions, or
                       1000 with --seconds)
  --quiet-errors       do not print the first failures to stderr

make-maildirs: writes DIR/DOMAIN/LOCAL/Maildir/{new,cur,tmp} for --users
users of --user-pattern, --messages messages each in new/, of random sizes,
names with ,S= and ,W=. Prints one line: maildirs users=N messages=N ...

  --dir DIR            base directory (virtual_mailbox_base)
  --users, --user-pattern, --first-user, --seed   as above
  --messages N         messages per user (default 1000)
  --min-size BYTES     smallest message (default 1024, at least 1024)
  --max-size BYTES     largest message (default 12288)
";

/// A load run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub clients: usize,
    /// Successful sessions to complete; None: until `seconds`.
    pub sessions: Option<u64>,
    pub seconds: Option<Duration>,
    pub users: u32,
    pub user_pattern: String,
    pub first_user: u32,
    pub password: String,
    pub retr: u32,
    pub retr_all: bool,
    /// One session per mailbox at a time.
    pub exclusive: bool,
    pub seed: u64,
    pub timeout: Duration,
    pub max_failures: u64,
    pub quiet_errors: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 2110,
            clients: 1,
            sessions: Some(100),
            seconds: None,
            users: 10,
            user_pattern: "user%d@example.test".into(),
            first_user: 1,
            password: "bench".into(),
            retr: 3,
            retr_all: false,
            exclusive: true,
            seed: 1,
            timeout: Duration::from_secs(60),
            max_failures: 100,
            quiet_errors: false,
        }
    }
}

/// Outcome of parsing the command line.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Config),
    MakeMaildirs(MaildirConfig),
    Help,
}

/// A command line that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    Unknown(String),
    MissingValue(String),
    NotANumber {
        flag: String,
        value: String,
    },
    /// A value out of range, or flags that do not go together.
    Invalid(String),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Unknown(a) => write!(f, "unknown flag {a:?} (try --help)"),
            ArgError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ArgError::NotANumber { flag, value } => {
                write!(f, "{flag}: {value:?} is not a valid number")
            }
            ArgError::Invalid(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for ArgError {}

/// Parses the flags (program name already removed).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Parsed, ArgError> {
    let mut it = args.into_iter().peekable();
    let make = it.peek().is_some_and(|a| a == "make-maildirs");
    if make {
        it.next();
    }
    let mut cfg = Config::default();
    let mut md = MaildirConfig {
        dir: PathBuf::new(),
        users: 10,
        user_pattern: "user%d@example.test".into(),
        first_user: 1,
        messages: 1000,
        min_size: 1024,
        max_size: 12288,
        seed: 1,
    };
    let mut sessions = None;
    let mut max_failures = None;
    while let Some(arg) = it.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--retr-all" if !make => {
                cfg.retr_all = true;
                continue;
            }
            "--shared-mailboxes" if !make => {
                cfg.exclusive = false;
                continue;
            }
            "--quiet-errors" if !make => {
                cfg.quiet_errors = true;
                continue;
            }
            _ => {}
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| ArgError::MissingValue(flag.clone()))
        };
        match (make, flag.as_str()) {
            (_, "--users") => {
                let n = number(&flag, &value()?)?;
                cfg.users = n;
                md.users = n;
            }
            (_, "--user-pattern") => {
                let p = value()?;
                cfg.user_pattern.clone_from(&p);
                md.user_pattern = p;
            }
            (_, "--first-user") => {
                let n = number(&flag, &value()?)?;
                cfg.first_user = n;
                md.first_user = n;
            }
            (_, "--seed") => {
                let n = number(&flag, &value()?)?;
                cfg.seed = n;
                md.seed = n;
            }
            (false, "--host") => cfg.host = value()?,
            (false, "--port") => cfg.port = number(&flag, &value()?)?,
            (false, "--clients") => cfg.clients = number(&flag, &value()?)?,
            (false, "--sessions") => sessions = Some(number(&flag, &value()?)?),
            (false, "--seconds") => {
                let s: f64 = number(&flag, &value()?)?;
                if !(s > 0.0 && s < 1e9) {
                    return Err(ArgError::Invalid("--seconds must be positive".into()));
                }
                cfg.seconds = Some(Duration::from_secs_f64(s));
            }
            (false, "--password") => cfg.password = value()?,
            (false, "--retr") => cfg.retr = number(&flag, &value()?)?,
            (false, "--timeout") => cfg.timeout = Duration::from_secs(number(&flag, &value()?)?),
            (false, "--max-failures") => max_failures = Some(number(&flag, &value()?)?),
            (true, "--dir") => md.dir = PathBuf::from(value()?),
            (true, "--messages") => md.messages = number(&flag, &value()?)?,
            (true, "--min-size") => md.min_size = number(&flag, &value()?)?,
            (true, "--max-size") => md.max_size = number(&flag, &value()?)?,
            _ => return Err(ArgError::Unknown(arg)),
        }
    }
    let invalid = |s: &str| Err(ArgError::Invalid(s.into()));
    check_users(cfg.users, &cfg.user_pattern, cfg.first_user).map_err(ArgError::Invalid)?;
    if make {
        if md.dir.as_os_str().is_empty() {
            return invalid("make-maildirs needs --dir");
        }
        if md.min_size < 1024 {
            return invalid("--min-size must be at least 1024");
        }
        if md.max_size < md.min_size {
            return invalid("--max-size must be at least --min-size");
        }
        return Ok(Parsed::MakeMaildirs(md));
    }
    check_clients(cfg.clients, cfg.timeout, &cfg.password).map_err(ArgError::Invalid)?;
    (cfg.sessions, cfg.max_failures) =
        sessions_or_seconds(sessions, cfg.seconds, max_failures).map_err(ArgError::Invalid)?;
    Ok(Parsed::Run(cfg))
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, ArgError> {
    v.parse().map_err(|_| ArgError::NotANumber {
        flag: flag.to_string(),
        value: v.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Result<Parsed, ArgError> {
        parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn load_flags() {
        let Ok(Parsed::Run(c)) = run("--host 127.0.0.1 --port=2210 --clients 50 --sessions 2000 \
             --users 20 --user-pattern u%d@d.test --password pw --retr 5 --seed 3 --shared-mailboxes")
        else {
            panic!("should parse");
        };
        assert_eq!(c.port, 2210);
        assert_eq!(c.clients, 50);
        assert_eq!(c.sessions, Some(2000));
        assert_eq!(c.seconds, None);
        assert_eq!((c.users, c.user_pattern.as_str()), (20, "u%d@d.test"));
        assert_eq!((c.password.as_str(), c.retr, c.seed), ("pw", 5, 3));
        assert!(!c.exclusive);
        assert_eq!(c.max_failures, 2000);
    }

    #[test]
    fn duration_or_count() {
        let Ok(Parsed::Run(c)) = run("--seconds 2.5") else {
            panic!()
        };
        assert_eq!(
            (c.sessions, c.seconds),
            (None, Some(Duration::from_millis(2500)))
        );
        assert_eq!(c.max_failures, 1000);
        let Ok(Parsed::Run(c)) = run("") else {
            panic!()
        };
        assert_eq!(
            (c.sessions, c.seconds, c.exclusive),
            (Some(100), None, true)
        );
        let Ok(Parsed::Run(c)) = run("--seconds 1 --sessions 7 --retr-all") else {
            panic!()
        };
        assert_eq!((c.sessions, c.retr_all), (Some(7), true));
    }

    #[test]
    fn make_maildirs_flags() {
        let Ok(Parsed::MakeMaildirs(m)) =
            run("make-maildirs --dir /tmp/x --users 3 --messages 5 --min-size 2000 --max-size 3000 --seed 4")
        else {
            panic!("should parse");
        };
        assert_eq!(m.dir, PathBuf::from("/tmp/x"));
        assert_eq!(
            (m.users, m.messages, m.min_size, m.max_size, m.seed),
            (3, 5, 2000, 3000, 4)
        );
    }

    #[test]
    fn errors() {
        for (line, want) in [
            ("--port", ArgError::MissingValue("--port".into())),
            (
                "--port x",
                ArgError::NotANumber {
                    flag: "--port".into(),
                    value: "x".into(),
                },
            ),
            ("--bogus", ArgError::Unknown("--bogus".into())),
            ("--dir /x", ArgError::Unknown("--dir".into())),
            (
                "make-maildirs --dir /x --clients 3",
                ArgError::Unknown("--clients".into()),
            ),
        ] {
            assert_eq!(run(line), Err(want), "{line}");
        }
        for line in [
            "--clients 0",
            "--sessions 0",
            "--users 0",
            "--user-pattern user@example.test",
            "--seconds 0",
            "--seconds -1",
            "--timeout 0",
            "make-maildirs",
            "make-maildirs --dir /x --min-size 100",
            "make-maildirs --dir /x --min-size 2000 --max-size 1500",
            "--first-user 4294967295 --users 2",
        ] {
            assert!(matches!(run(line), Err(ArgError::Invalid(_))), "{line}");
        }
        assert_eq!(run("--help"), Ok(Parsed::Help));
        assert_eq!(run("make-maildirs --help"), Ok(Parsed::Help));
    }
}
