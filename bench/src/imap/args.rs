//! Command-line flags of posthorn-imap-bench, parsed by hand (std only).
//!
//! Owns the flag table, defaults and the usage text. Accepts `--flag value`
//! and `--flag=value`. The mailboxes are written by `posthorn-pop3-bench
//! make-maildirs` (the same generator, `posthorn_bench::maildir`).
//!
//! Diagnostics: an error string naming the flag and the problem; `--help`
//! returns `Parsed::Help`.

use std::time::Duration;

use posthorn_bench::work::sessions_or_seconds;
use posthorn_bench::{check_clients, check_users, number, split_flag};

pub const USAGE: &str = "\
usage: posthorn-imap-bench [--mode sessions|long|idle] [flags]

IMAP load generator (plain IMAP on TCP, LOGIN with a password).

--mode sessions (a): --clients concurrent clients (a thread each), each
looping over whole sessions until --sessions succeeded in total or --seconds
passed: connect, LOGIN, SELECT INBOX, FETCH 1:* (FLAGS UID RFC822.SIZE),
--fetch x FETCH n (BODY.PEEK[]) of random messages, STORE +FLAGS (\\Seen) on
them, SEARCH UNSEEN, NOOP, LOGOUT.
--mode long (b): one long session per client (connect and LOGIN once, LOGOUT
at the end), looping over rounds of the same commands: SELECT INBOX, FETCH
1:*, --fetch x FETCH BODY.PEEK[], STORE, SEARCH UNSEEN, NOOP; --sessions
counts rounds.
--mode idle (c): --connections connections (opened by --clients threads),
each connect, LOGIN, SELECT INBOX; prints `selected ...` when all are
selected, holds them --hold seconds, then NOOP and LOGOUT on each.

Every response is checked; prints a latency table and one machine-readable
line starting with `result `.

  --host H             server address (default 127.0.0.1)
  --port P             server port (default 2143)
  --mode M             sessions (default), long or idle
  --clients N          concurrent clients (default 1)
  --sessions N         successful sessions (rounds with --mode long) to
                       complete, in total (default 100 unless --seconds)
  --seconds S          stop starting sessions (rounds) after S seconds
  --connections N      idle: connections to hold (default 1000)
  --hold S             idle: seconds to hold them once all are selected
                       (default 10)
  --users N            mailboxes to rotate over (default 10)
  --user-pattern P     user names; %d is the number (default user%d@example.test)
  --first-user N       number of the first user (default 1)
  --password PW        password of every user (default bench)
  --fetch N            FETCH BODY.PEEK[] of random messages per session or
                       round (default 3)
  --shared-mailboxes   let concurrent sessions use the same mailbox (by
                       default a mailbox has one client at a time, and
                       SEARCH UNSEEN is checked against the flags seen)
  --seed N             seed of the random choices (default 1)
  --timeout SECS       socket read/write timeout (default 60)
  --max-failures N     stop after N failed sessions (default: --sessions, or
                       1000 with --seconds)
  --quiet-errors       do not print the first failures to stderr
";

/// Which load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// (a) whole sessions.
    Sessions,
    /// (b) one long session per client, rounds of commands.
    Long,
    /// (c) idle selected connections.
    Idle,
}

impl Mode {
    pub fn key(self) -> &'static str {
        match self {
            Mode::Sessions => "sessions",
            Mode::Long => "long",
            Mode::Idle => "idle",
        }
    }
}

/// A run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub mode: Mode,
    pub clients: usize,
    /// Successful sessions (rounds) to complete; None: until `seconds`.
    pub sessions: Option<u64>,
    pub seconds: Option<Duration>,
    pub connections: usize,
    pub hold: Duration,
    pub users: u32,
    pub user_pattern: String,
    pub first_user: u32,
    pub password: String,
    pub fetch: u32,
    /// One client per mailbox at a time.
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
            port: 2143,
            mode: Mode::Sessions,
            clients: 1,
            sessions: Some(100),
            seconds: None,
            connections: 1000,
            hold: Duration::from_secs(10),
            users: 10,
            user_pattern: "user%d@example.test".into(),
            first_user: 1,
            password: "bench".into(),
            fetch: 3,
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
    Help,
}

/// Parses the flags (program name already removed).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Parsed, String> {
    let mut it = args.into_iter();
    let mut cfg = Config::default();
    let mut sessions = None;
    let mut max_failures = None;
    while let Some(arg) = it.next() {
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--shared-mailboxes" => {
                cfg.exclusive = false;
                continue;
            }
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
        let secs = |flag: &str, v: &str| -> Result<Duration, String> {
            let s: f64 = number(flag, v)?;
            if !(s > 0.0 && s < 1e9) {
                return Err(format!("{flag} must be positive"));
            }
            Ok(Duration::from_secs_f64(s))
        };
        match flag.as_str() {
            "--host" => cfg.host = value()?,
            "--port" => cfg.port = number(&flag, &value()?)?,
            "--mode" => {
                cfg.mode = match value()?.as_str() {
                    "sessions" | "a" => Mode::Sessions,
                    "long" | "b" => Mode::Long,
                    "idle" | "c" => Mode::Idle,
                    m => return Err(format!("--mode {m:?}: expected sessions, long or idle")),
                }
            }
            "--clients" => cfg.clients = number(&flag, &value()?)?,
            "--sessions" => sessions = Some(number(&flag, &value()?)?),
            "--seconds" => cfg.seconds = Some(secs(&flag, &value()?)?),
            "--connections" => cfg.connections = number(&flag, &value()?)?,
            "--hold" => cfg.hold = secs(&flag, &value()?)?,
            "--users" => cfg.users = number(&flag, &value()?)?,
            "--user-pattern" => cfg.user_pattern = value()?,
            "--first-user" => cfg.first_user = number(&flag, &value()?)?,
            "--password" => cfg.password = value()?,
            "--fetch" => cfg.fetch = number(&flag, &value()?)?,
            "--seed" => cfg.seed = number(&flag, &value()?)?,
            "--timeout" => cfg.timeout = Duration::from_secs(number(&flag, &value()?)?),
            "--max-failures" => max_failures = Some(number(&flag, &value()?)?),
            _ => return Err(format!("unknown flag {arg:?} (try --help)")),
        }
    }
    check_users(cfg.users, &cfg.user_pattern, cfg.first_user)?;
    check_clients(cfg.clients, cfg.timeout, &cfg.password)?;
    if cfg.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    (cfg.sessions, cfg.max_failures) = sessions_or_seconds(sessions, cfg.seconds, max_failures)?;
    Ok(Parsed::Run(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Result<Parsed, String> {
        parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn flags() {
        let Ok(Parsed::Run(c)) = run("--port=2243 --mode long --clients 10 --seconds 20 \
             --users 50 --password pw --fetch 5 --shared-mailboxes")
        else {
            panic!("should parse");
        };
        assert_eq!((c.port, c.mode, c.clients), (2243, Mode::Long, 10));
        assert_eq!(
            (c.sessions, c.seconds),
            (None, Some(Duration::from_secs(20)))
        );
        assert_eq!((c.users, c.password.as_str(), c.fetch), (50, "pw", 5));
        assert!(!c.exclusive);
        assert_eq!(c.max_failures, 1000);
        let Ok(Parsed::Run(c)) = run("--mode idle --connections 1000 --hold 2.5") else {
            panic!()
        };
        assert_eq!(
            (c.mode, c.connections, c.hold),
            (Mode::Idle, 1000, Duration::from_millis(2500))
        );
        let Ok(Parsed::Run(c)) = run("") else {
            panic!()
        };
        assert_eq!(
            (c.mode, c.sessions, c.max_failures),
            (Mode::Sessions, Some(100), 100)
        );
        assert_eq!(run("--help"), Ok(Parsed::Help));
    }

    #[test]
    fn errors() {
        for line in [
            "--port",
            "--port x",
            "--bogus",
            "--mode fast",
            "--clients 0",
            "--sessions 0",
            "--users 0",
            "--connections 0",
            "--user-pattern user@example.test",
            "--seconds 0",
            "--hold -1",
            "--timeout 0",
            "--first-user 4294967295 --users 2",
        ] {
            assert!(run(line).is_err(), "{line}");
        }
    }
}
