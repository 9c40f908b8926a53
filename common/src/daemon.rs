//! The worker skeleton every daemon's main.rs hands itself to.
//!
//! Owns what all workers do the same way (Postfix's single_server and
//! multi_server, Dovecot's master_service): the command line master gives
//! them, reading main.cf with the service's `-o` overrides, logging set-up,
//! the listening socket handed down, loading what must be read as root
//! (TLS keys: `start_with`), dropping root to mail_owner, and noticing
//! SIGTERM, SIGHUP or master going away. The daemon keeps its own event
//! loop.
//!
//! Command line (written by master): `posthorn-NAME -c CONFIG_DIR -n SERVICE
//! -t inet|unix [-u] [-o name=value]...` with `-u` meaning "unprivileged: drop
//! to mail_owner". Environment: `POSTHORN_LISTEN_FD` (the listener),
//! `POSTHORN_LISTEN_KIND` (inet, unix, or handoff: a connected Unix socket
//! on which connections arrive as descriptors, `Listener::Handoff`),
//! `POSTHORN_MASTER_FD` (a pipe whose end of file means master is gone),
//! `POSTHORN_STATUS_FD` (the status pipe to master, common::status: the
//! worker reports `Available` once started, `ConfigError` before exiting
//! on a configuration error),
//! `POSTHORN_LOG` (stderr, syslog, or file:PATH).
//!
//! Signals: SIGTERM and SIGINT set `stop` (`posthorn stop`: finish quickly).
//! SIGHUP (master's reload) sets `drain`: a server skeleton stops accepting
//! and serves its connections until they end by themselves, then returns,
//! so a reload drops no connection. Daemons that must make way for their
//! replacement at once treat SIGHUP as SIGTERM (`STOP_ON_RELOAD`: qmgr, as
//! one qmgr owns active/ at a time; anvil, whose counts must be one table;
//! auth, whose peers keep their connections for their whole life, so a
//! draining auth would never end, and who reconnect; local, which is not on
//! the skeleton and finishes one delivery at most; pickup, which finishes
//! the file it is queueing).
//!
//! Diagnostics: configuration errors are fatal with file and line; the
//! worker's exit status tells master whether it failed.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
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
    /// A connected Unix socket on which another process sends connections
    /// (a frame and the client's descriptor each, common::server's
    /// hand-off); its end of file means the sender has gone.
    Handoff(UnixStream),
}

/// Programs that stop on SIGHUP instead of draining (see the header).
pub const STOP_ON_RELOAD: &[&str] = &["qmgr", "anvil", "auth", "local", "pickup"];

/// A started worker: configuration, listener, stop and drain flags.
#[derive(Debug)]
pub struct Worker {
    pub config: Config,
    pub service: String,
    pub listener: Listener,
    /// Set by SIGTERM/SIGINT, or when master goes away (and by SIGHUP in
    /// the programs of STOP_ON_RELOAD).
    pub stop: Arc<AtomicBool>,
    /// Set by SIGHUP (master's reload): stop accepting, finish the
    /// connections there are, then exit.
    pub drain: Arc<AtomicBool>,
}

impl Worker {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn draining(&self) -> bool {
        self.drain.load(Ordering::Relaxed)
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
    start_with(program, |_| ()).0
}

/// `start`, with `prepare` run on the configuration while the process may
/// still be root, before privileges are dropped: what only root may read
/// (a TLS key: `prepare` loads it with common::tls and may exit with
/// config_fatal!) is read there, so the worker never opens it afterwards.
pub fn start_with<T>(program: &str, prepare: impl FnOnce(&Config) -> T) -> (Worker, T) {
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
    let prepared = prepare(&config);
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
    let drain = Arc::new(AtomicBool::new(false));
    let on_hup = if STOP_ON_RELOAD.contains(&program) {
        &stop
    } else {
        &drain
    };
    for (sig, flag) in [
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGHUP, on_hup),
    ] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(flag)) {
            crate::fatal!("cannot install signal handler: {e}");
        }
    }
    watch_master(Arc::clone(&stop));
    // Started: from now on a death is not a crash loop (master/src/lib.rs).
    crate::status::report(crate::status::Status::Available);
    let worker = Worker {
        config,
        service: wa.service,
        listener,
        stop,
        drain,
    };
    (worker, prepared)
}

/// Why a worker has no listener to serve.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("no listening socket: workers are started by posthorn-master")]
    NotFromMaster,
    #[error("bad POSTHORN_LISTEN_FD {0:?}")]
    BadFd(String),
    #[error("a unix or hand-off service has exactly one socket")]
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
        Ok("handoff") => match fds.as_slice() {
            [fd] => Ok(Listener::Handoff(privilege::inherited_unix_stream(*fd)?)),
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
