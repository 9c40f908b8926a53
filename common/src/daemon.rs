//! The worker skeleton every daemon's main.rs hands itself to.
//!
//! Owns what all workers do the same way (Postfix's single_server and
//! multi_server, Dovecot's master_service): the command line master gives
//! them, reading main.cf with the service's `-o` overrides, logging set-up,
//! the listening socket handed down, dropping root to mail_owner, and noticing
//! SIGTERM or master going away. The daemon keeps its own event loop.
//!
//! Command line (written by master): `posthorn-NAME -c CONFIG_DIR -n SERVICE
//! -t inet|unix [-u] [-o name=value]...` with `-u` meaning "unprivileged: drop
//! to mail_owner". Environment: `POSTHORN_LISTEN_FD` (the listener),
//! `POSTHORN_MASTER_FD` (a pipe whose end of file means master is gone),
//! `POSTHORN_STATUS_FD` (the status pipe to master, common::status: the
//! worker reports `Available` once started, `ConfigError` before exiting
//! on a configuration error),
//! `POSTHORN_LOG` (stderr, syslog, or file:PATH).
//!
//! Diagnostics: configuration errors are fatal with file and line; the
//! worker's exit status tells master whether it failed.

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::log::Target;
use crate::privilege;

/// The socket a worker serves.
#[derive(Debug)]
pub enum Listener {
    /// One or more TCP listeners (an inet service may bind several addresses).
    Tcp(Vec<std::net::TcpListener>),
    Unix(UnixListener),
}

/// A started worker: configuration, listener, stop flag.
#[derive(Debug)]
pub struct Worker {
    pub config: Config,
    pub service: String,
    pub listener: Listener,
    /// Set by SIGTERM/SIGINT, or when master goes away.
    pub stop: Arc<AtomicBool>,
}

impl Worker {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Parsed worker command line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkerArgs {
    pub config_dir: PathBuf,
    pub service: String,
    pub unprivileged: bool,
    pub overrides: Vec<(String, String)>,
}

/// A worker command line master would not write.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("-o {0:?}: expected name=value")]
    NotNameValue(String),
    #[error("unknown argument {0:?}")]
    Unknown(String),
}

/// Parse `-c DIR -n NAME -t TYPE -u -o k=v`.
pub fn parse_args(args: &[String]) -> Result<WorkerArgs, ArgsError> {
    let mut w = WorkerArgs {
        config_dir: PathBuf::from("/etc/posthorn"),
        ..Default::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value =
            |flag: &'static str| it.next().cloned().ok_or(ArgsError::MissingValue(flag));
        match a.as_str() {
            "-c" => w.config_dir = PathBuf::from(value("-c")?),
            "-n" => w.service = value("-n")?,
            "-t" => {
                value("-t")?;
            }
            "-u" => w.unprivileged = true,
            "-o" => {
                let kv = value("-o")?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| ArgsError::NotNameValue(kv.clone()))?;
                w.overrides.push((k.to_string(), v.to_string()));
            }
            other => return Err(ArgsError::Unknown(other.to_string())),
        }
    }
    Ok(w)
}

/// Start a worker named `program` (smtpd, qmgr, local): parse the command
/// line, load the configuration, set up logging, take the listener, drop
/// privileges when master said so. Exits with a log line on any failure.
pub fn start(program: &str) -> Worker {
    crate::status::init_from_env();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target =
        Target::from_env_value(&std::env::var("POSTHORN_LOG").unwrap_or_else(|_| "stderr".into()));
    let wa = match parse_args(&args) {
        Ok(w) => w,
        Err(e) => {
            crate::log::init("posthorn", program, target, "mail");
            crate::config_fatal!(
                "usage: posthorn-{program} -c CONFIG_DIR -n SERVICE [-u] [-o name=value]: {e}"
            );
        }
    };
    let config = match Config::load_with(&wa.config_dir, &wa.overrides) {
        Ok(c) => c,
        Err(e) => {
            crate::log::init("posthorn", program, target, "mail");
            crate::config_fatal!("{e}");
        }
    };
    crate::log::init(
        &config.get("syslog_name"),
        program,
        target,
        &config.get("syslog_facility"),
    );
    if let Some(e) = config.validate().into_iter().next() {
        crate::config_fatal!("{e}");
    }
    let listener = match inherited_listener() {
        Ok(l) => l,
        Err(e) => crate::fatal!("{e}"),
    };
    if wa.unprivileged && privilege::is_root() {
        // Login processes (pre-authentication protocol and TLS) run as
        // login_user, which can read neither the spool nor any mailbox.
        let param = if crate::mastercf::LOGIN_COMMANDS.contains(&program) {
            "login_user"
        } else {
            "mail_owner"
        };
        let owner = config.get(param);
        let Some(acct) = privilege::lookup_user(&owner) else {
            crate::config_fatal!("{param} {owner:?} is not a user on this system");
        };
        // A root mail_owner (development mode as root) means: no drop; master warned.
        if acct.uid != 0 {
            if let Err(e) = privilege::drop_to(&acct) {
                crate::fatal!("cannot drop privileges to {owner}: {e}");
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            crate::fatal!("cannot install signal handler: {e}");
        }
    }
    watch_master(Arc::clone(&stop));
    // Started: from now on a death is not a crash loop (master/src/lib.rs).
    crate::status::report(crate::status::Status::Available);
    Worker {
        config,
        service: wa.service,
        listener,
        stop,
    }
}

/// Why a worker has no listener to serve.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("no listening socket: workers are started by posthorn-master")]
    NotFromMaster,
    #[error("bad POSTHORN_LISTEN_FD {0:?}")]
    BadFd(String),
    #[error("a unix service has exactly one socket")]
    UnixCount,
    #[error("listening socket from master: {0}")]
    Io(#[from] std::io::Error),
}

fn inherited_listener() -> Result<Listener, ListenError> {
    let fds: Vec<i32> = std::env::var("POSTHORN_LISTEN_FD")
        .map_err(|_| ListenError::NotFromMaster)?
        .split(',')
        .map(|f| f.parse().map_err(|_| ListenError::BadFd(f.to_string())))
        .collect::<Result<_, _>>()?;
    match std::env::var("POSTHORN_LISTEN_KIND").as_deref() {
        Ok("unix") => match fds.as_slice() {
            [fd] => Ok(Listener::Unix(privilege::inherited_unix_listener(*fd)?)),
            _ => Err(ListenError::UnixCount),
        },
        _ => Ok(Listener::Tcp(
            fds.iter()
                .map(|fd| privilege::inherited_tcp_listener(*fd))
                .collect::<Result<Vec<_>, _>>()?,
        )),
    }
}

/// When master's pipe reaches end of file, master is gone: set the stop flag,
/// and exit if the daemon has not finished within a grace period.
fn watch_master(stop: Arc<AtomicBool>) {
    let Some(fd) = std::env::var("POSTHORN_MASTER_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    let Ok(mut pipe) = privilege::inherited_pipe(fd) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("master-watch".into())
        .spawn(move || {
            let mut b = [0u8; 16];
            while matches!(pipe.read(&mut b), Ok(n) if n > 0) {}
            crate::warning!("master went away; stopping");
            stop.store(true, Ordering::Relaxed);
            std::thread::sleep(Duration::from_secs(10));
            std::process::exit(0);
        });
    if let Err(e) = spawned {
        crate::warning!("cannot watch master: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args() {
        let a: Vec<String> = "-c /x -n smtp -t inet -u -o a=b=c"
            .split(' ')
            .map(String::from)
            .collect();
        let w = parse_args(&a).unwrap();
        assert_eq!(w.config_dir, PathBuf::from("/x"));
        assert_eq!(w.service, "smtp");
        assert!(w.unprivileged);
        assert_eq!(w.overrides, vec![("a".into(), "b=c".into())]);
        assert!(parse_args(&["-c".into()]).is_err());
        assert!(parse_args(&["--bogus".into()]).is_err());
    }
}
