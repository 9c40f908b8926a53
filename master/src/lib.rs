//! posthorn-master: the supervisor.
//!
//! Owns the process tree: takes the pid-file lock (one master per
//! configuration), creates the spool, binds every master.cf service's socket,
//! spawns maxproc workers per service with the socket handed down, restarts
//! workers that die, reloads on SIGHUP and stops everything on SIGTERM or
//! SIGINT. Does not own any mail: workers do.
//!
//! Restarts (Postfix's use count, via common::status): every worker reports
//! on one shared status pipe. A worker that dies after it reported
//! `Available` is replaced at once, whatever killed it. A service is
//! throttled (restarts delayed, growing up to 60 s) only when a worker dies
//! before it became available, or reports a configuration error: the real
//! crash loop of a daemon that cannot start.
//!
//! Security: sockets in private/ and public/ (directories mail_owner owns)
//! are bound with mail_owner's effective ids and the right umask, so root
//! never chmods or chowns a path there that a symlink could redirect.
//!
//! Reload: main.cf and master.cf are read again (a bad file is logged and the
//! old configuration kept); sockets of unchanged services stay open, so no
//! connection is refused; every old worker gets SIGHUP: a worker on the
//! server skeleton stops accepting and serves its open connections until
//! they end by themselves (so no session is cut, and a TLS session keeps
//! the certificate it began with), while the new workers, with the new
//! configuration, take the new connections. qmgr, anvil, auth and local treat
//! SIGHUP as SIGTERM (common::daemon::STOP_ON_RELOAD). New workers start at
//! once, except qmgr: the new one starts when the old one has exited (one
//! qmgr owns active/ at a time).
//!
//! Parameters: queue_directory, pid_directory, daemon_directory, mail_owner,
//! setgid_group, inet_interfaces, inet_protocols, default_process_limit.
//!
//! Diagnostics: `daemon started -- version V, configuration DIR`,
//! `reload -- ...`, `terminating on signal N`, a warning for every worker
//! that exits unexpectedly (`process posthorn-smtpd pid N killed by signal
//! 9`, `... exit status N`), and `service NAME (CMD): bad command startup --
//! throttling for Ns` when a service is throttled. Configuration errors
//! name file and line.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};

use common::config::Config;
use common::log::Target;
use common::mastercf::{self, Service, ServiceType};
use common::privilege;
use common::spool::Spool;
use common::status::Status;
use common::{error, info, warning};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long workers get to finish after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// A worker's exit status for an unusable configuration (sysexits.h).
const EX_CONFIG: i32 = 78;
/// Longest wait before restarting a failing service.
const MAX_THROTTLE: Duration = Duration::from_secs(60);

/// Why master cannot start or reload; each variant is one log line.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error(transparent)]
    Config(#[from] common::config::ConfigError),
    #[error("{path}: cannot read: {err}")]
    Read { path: PathBuf, err: io::Error },
    #[error("mail_owner {0:?} is not a user on this system (create it, or set mail_owner)")]
    NoMailOwner(String),
    #[error("{path}: cannot create the spool: {err}")]
    Spool { path: PathBuf, err: io::Error },
    #[error("{path}: {err}")]
    File { path: PathBuf, err: io::Error },
    #[error("the posthorn mail system is already running (pid {pid}, lock {path})")]
    Running { pid: String, path: PathBuf },
    #[error("cannot write pid file: {0}")]
    PidFile(io::Error),
    #[error("master.cf line {line}: {msg}")]
    Inet { line: usize, msg: String },
    #[error("bind {what} for service {service}: {err}")]
    Bind {
        what: String,
        service: String,
        err: io::Error,
    },
    #[error("{what}: {err}")]
    Os { what: &'static str, err: io::Error },
}

fn os(what: &'static str) -> impl FnOnce(nix::Error) -> MasterError {
    move |e| MasterError::Os {
        what,
        err: io::Error::from(e),
    }
}

/// Options for running master.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_dir: PathBuf,
    /// Detach and log to syslog (or maillog_file); else stay and log to stderr.
    pub daemonize: bool,
}

/// `posthorn-master [-c DIR] [-d]`: -d stays in the foreground.
pub fn main_with_args(args: Vec<String>) -> i32 {
    let mut opts = Options {
        config_dir: PathBuf::from("/etc/posthorn"),
        daemonize: true,
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" => match it.next() {
                Some(d) => opts.config_dir = PathBuf::from(d),
                None => {
                    eprintln!("posthorn-master: -c needs a directory");
                    return 2;
                }
            },
            "-d" => opts.daemonize = false,
            other => {
                eprintln!("posthorn-master: unknown argument {other:?}\nusage: posthorn-master [-c config_dir] [-d]");
                return 2;
            }
        }
    }
    match run(&opts, |_| {}) {
        Ok(()) => 0,
        Err(e) => {
            common::log::log(common::log::Level::Fatal, format_args!("{e}"));
            if opts.daemonize {
                // Not detached yet (or stderr is /dev/null): tell whoever started us.
                eprintln!("posthorn-master: fatal: {e}");
            }
            1
        }
    }
}

/// Everything master needs from the configuration, checked.
struct Settings {
    config: Config,
    services: Vec<Service>,
}

fn load(dir: &Path) -> Result<Settings, MasterError> {
    let config = Config::load(dir)?;
    if let Some(e) = config.validate().into_iter().next() {
        return Err(e.into());
    }
    let path = dir.join("master.cf");
    let text = fs::read_to_string(&path).map_err(|err| MasterError::Read {
        path: path.clone(),
        err,
    })?;
    // validate() checked it parses.
    let dpl = config.int("default_process_limit").unwrap_or_default() as u32;
    let services = mastercf::parse(&path.display().to_string(), &text, dpl)?;
    Ok(Settings { config, services })
}

/// A bound socket of a service.
enum Bound {
    Tcp(Vec<TcpListener>),
    Unix(UnixListener, PathBuf),
}

impl Bound {
    fn fds(&self) -> Vec<i32> {
        match self {
            Bound::Tcp(ls) => ls.iter().map(|l| l.as_raw_fd()).collect(),
            Bound::Unix(l, _) => vec![l.as_raw_fd()],
        }
    }
}

struct Svc {
    def: Service,
    bound: Bound,
    /// What the listener was bound for; a change means rebinding on reload.
    bind_key: String,
    generation: u64,
    fail_streak: u32,
    throttled_until: Option<Instant>,
}

struct Proc {
    key: String,
    generation: u64,
    /// Reported `Available`: it started, so its death is not a crash loop.
    available: bool,
    /// Reported a configuration error.
    config_error: bool,
    served: u64,
}

/// Apply workers' status reports to their processes.
fn note_status(procs: &mut HashMap<i32, Proc>, reports: Vec<(u32, Status)>) {
    for (pid, st) in reports {
        let Some(p) = i32::try_from(pid).ok().and_then(|pid| procs.get_mut(&pid)) else {
            continue; // not (or no longer) a child of ours
        };
        match st {
            Status::Available | Status::Busy => p.available = true,
            Status::Served(n) => {
                p.available = true;
                p.served = n;
            }
            Status::ConfigError => p.config_error = true,
        }
    }
}

/// Run master until SIGTERM/SIGINT. `ready` is called with the list of
/// listening addresses once everything is bound (dev mode prints them).
pub fn run(opts: &Options, ready: impl FnOnce(&[String])) -> Result<(), MasterError> {
    let target = if opts.daemonize {
        Target::Syslog
    } else {
        Target::Stderr
    };
    let settings = match load(&opts.config_dir) {
        Ok(s) => s,
        Err(e) => {
            common::log::init("posthorn", "master", target, "mail");
            return Err(e);
        }
    };
    let cfg = &settings.config;
    let target = match (opts.daemonize, cfg.get("maillog_file")) {
        (true, f) if !f.is_empty() => Target::File(PathBuf::from(f)),
        (t, _) => {
            if t {
                Target::Syslog
            } else {
                Target::Stderr
            }
        }
    };
    common::log::init(
        &cfg.get("syslog_name"),
        "master",
        target.clone(),
        &cfg.get("syslog_facility"),
    );

    let owner = mail_owner(cfg)?;
    let spool = Spool::new(cfg.queue_dir());
    prepare_spool(&spool, cfg, &owner)?;
    let pid_file = cfg.pid_file();
    let lock = lock_pid_file(&pid_file)?;

    let mut svcs: HashMap<String, Svc> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut listening = Vec::new();
    for def in &settings.services {
        let (bound, key) = bind(def, cfg, &spool, &owner)?;
        listening.extend(describe(def, &bound));
        order.push(def.key());
        svcs.insert(
            def.key(),
            Svc {
                def: def.clone(),
                bound,
                bind_key: key,
                generation: 1,
                fail_streak: 0,
                throttled_until: None,
            },
        );
    }

    if opts.daemonize {
        privilege::daemonize().map_err(|err| MasterError::Os {
            what: "cannot detach",
            err,
        })?;
        common::log::after_fork();
    }
    write_pid(&lock)?;
    // The write end stays here (close-on-exec); workers see EOF when master dies.
    let (pipe_r, _pipe_w) = nix::unistd::pipe().map_err(os("pipe"))?;
    // Workers report on one shared pipe; master reads it without blocking.
    let (status_r, status_w) = nix::unistd::pipe().map_err(os("status pipe"))?;
    let mut status_r = File::from(status_r);
    nix::fcntl::fcntl(
        status_r.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(os("status pipe"))?;
    let mut status_pending = Vec::new();
    let mut signals = signal_hook::iterator::Signals::new([SIGCHLD, SIGTERM, SIGINT, SIGHUP])
        .map_err(|err| MasterError::Os {
            what: "signals",
            err,
        })?;

    info!(
        "daemon started -- version {VERSION}, configuration {}",
        opts.config_dir.display()
    );
    for l in &listening {
        info!("listening on {l}");
    }
    ready(&listening);

    let mut config = settings.config;
    let mut procs: HashMap<i32, Proc> = HashMap::new();
    let mut stopping: Option<Instant> = None;
    loop {
        for sig in signals.pending() {
            match sig {
                SIGTERM | SIGINT if stopping.is_none() => {
                    info!("terminating on signal {sig}");
                    stopping = Some(Instant::now());
                    for pid in procs.keys() {
                        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
                    }
                }
                SIGHUP if stopping.is_none() => match load(&opts.config_dir) {
                    Ok(new) => {
                        info!(
                            "reload -- version {VERSION}, configuration {}",
                            opts.config_dir.display()
                        );
                        reload(
                            new,
                            &mut config,
                            &mut svcs,
                            &mut order,
                            &mut procs,
                            &spool,
                            &owner,
                        );
                    }
                    Err(e) => error!("reload refused, keeping the running configuration: {e}"),
                },
                _ => {}
            }
        }
        match common::status::read_all(&mut status_r, &mut status_pending) {
            Ok(reports) => note_status(&mut procs, reports),
            Err(e) => warning!("status pipe: {e}"),
        }
        reap(&mut procs, &mut svcs, stopping.is_some());
        if let Some(t) = stopping {
            if procs.is_empty() {
                break;
            }
            if t.elapsed() > STOP_GRACE {
                for (pid, p) in &procs {
                    warning!("process {} pid {pid} did not stop; killing it", p.key);
                    let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
                }
            }
        } else {
            for key in &order {
                if let Some(svc) = svcs.get_mut(key) {
                    spawn_missing(
                        svc,
                        &mut procs,
                        &config,
                        &opts.config_dir,
                        &target,
                        [pipe_r.as_raw_fd(), status_w.as_raw_fd()],
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(pipe_r);
    for svc in svcs.values() {
        if let Bound::Unix(_, path) = &svc.bound {
            let _ = fs::remove_file(path);
        }
    }
    let _ = fs::remove_file(&pid_file);
    info!("stopped");
    Ok(())
}

fn mail_owner(cfg: &Config) -> Result<privilege::Account, MasterError> {
    if !privilege::is_root() {
        return Ok(privilege::current_account());
    }
    let name = cfg.get("mail_owner");
    let acct = privilege::lookup_user(&name).ok_or(MasterError::NoMailOwner(name.clone()))?;
    if acct.uid == 0 {
        // Development mode started by root writes this; production must not.
        warning!("mail_owner {name:?} is root: workers run without privilege separation");
    }
    Ok(acct)
}

/// The group of login/: login_user's (the login processes'), or
/// mail_owner's when there is no such account (no login services then).
fn login_gid(cfg: &Config, owner: &privilege::Account) -> u32 {
    if !privilege::is_root() {
        return owner.gid;
    }
    privilege::lookup_user(&cfg.get("login_user")).map_or(owner.gid, |a| a.gid)
}

/// Create the spool tree and, as root, give it to mail_owner.
fn prepare_spool(
    spool: &Spool,
    cfg: &Config,
    owner: &privilege::Account,
) -> Result<(), MasterError> {
    spool.create_dirs().map_err(|err| MasterError::Spool {
        path: spool.root().to_path_buf(),
        err,
    })?;
    if privilege::is_root() {
        let postdrop = privilege::lookup_group(&cfg.get("setgid_group"));
        for (name, _) in common::spool::SPOOL_DIRS {
            let p = spool.root().join(name);
            let gid = match *name {
                "maildrop" | "public" => postdrop.unwrap_or(owner.gid),
                "login" => login_gid(cfg, owner),
                _ => owner.gid,
            };
            let uid = if *name == "pid" { 0 } else { owner.uid };
            // Never through a symlink (the queue directory is root's, but
            // a misconfigured one might not be).
            nix::unistd::fchownat(
                None,
                &p,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| MasterError::File {
                path: p.clone(),
                err: e.into(),
            })?;
        }
    }
    Ok(())
}

/// Lock master.pid, refusing when another master holds it.
fn lock_pid_file(path: &Path) -> Result<nix::fcntl::Flock<File>, MasterError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|err| MasterError::File {
            path: dir.to_path_buf(),
            err,
        })?;
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|err| MasterError::File {
            path: path.to_path_buf(),
            err,
        })?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(l),
        Err((_, _)) => {
            let pid = fs::read_to_string(path).unwrap_or_default();
            Err(MasterError::Running {
                pid: pid.trim().to_string(),
                path: path.to_path_buf(),
            })
        }
    }
}

fn write_pid(lock: &nix::fcntl::Flock<File>) -> Result<(), MasterError> {
    let mut f: &File = lock;
    f.set_len(0)
        .and_then(|()| f.write_all(format!("{:>10}\n", std::process::id()).as_bytes()))
        .map_err(MasterError::PidFile)
}

fn bind_key(def: &Service, cfg: &Config) -> String {
    format!(
        "{}|{}|{}|{}",
        def.key(),
        def.private,
        cfg.get("inet_interfaces"),
        cfg.get("inet_protocols")
    )
}

fn bind(
    def: &Service,
    cfg: &Config,
    spool: &Spool,
    owner: &privilege::Account,
) -> Result<(Bound, String), MasterError> {
    let key = bind_key(def, cfg);
    match def.kind {
        ServiceType::Inet => {
            let addrs = mastercf::inet_addresses(
                &def.name,
                &cfg.list("inet_interfaces"),
                &cfg.get("inet_protocols"),
            )
            .map_err(|msg| MasterError::Inet {
                line: def.line,
                msg,
            })?;
            let mut ls = Vec::new();
            for a in addrs {
                let l = TcpListener::bind(a).map_err(|err| MasterError::Bind {
                    what: a.to_string(),
                    service: def.name.clone(),
                    err,
                })?;
                ls.push(l);
            }
            Ok((Bound::Tcp(ls), key))
        }
        ServiceType::Unix => {
            // login/NAME (a post-login dispatcher): in login/, group
            // login_user's, mode 0660, so login processes reach it.
            let (path, umask, ids) = match def.name.strip_prefix("login/") {
                Some(name) => (
                    spool.root().join("login").join(name),
                    0o117,
                    privilege::Account {
                        gid: login_gid(cfg, owner),
                        ..owner.clone()
                    },
                ),
                None => {
                    let dir = if def.private { "private" } else { "public" };
                    let umask = if def.private { 0o177 } else { 0o111 };
                    (spool.root().join(dir).join(&def.name), umask, owner.clone())
                }
            };
            // The directory is mail_owner's: act there only with its ids, so
            // a planted symlink gains nothing (no chmod/chown by path as root).
            let l = as_owner(&ids, umask, || {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                UnixListener::bind(&path)
            })
            .map_err(|err| MasterError::Bind {
                what: path.display().to_string(),
                service: def.name.clone(),
                err,
            })?;
            Ok((Bound::Unix(l, path), key))
        }
    }
}

/// Run `f` with mail_owner's effective uid and gid (when root) and `umask`.
fn as_owner<T>(
    owner: &privilege::Account,
    umask: u32,
    f: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    use nix::sys::stat::{umask as set_umask, Mode};
    use nix::unistd::{getegid, geteuid, setegid, seteuid, Gid, Uid};
    let old_mask = set_umask(Mode::from_bits_truncate(umask as _));
    let switch = privilege::is_root() && owner.uid != 0;
    let (euid, egid) = (geteuid(), getegid());
    let result = if switch {
        match setegid(Gid::from_raw(owner.gid)).and_then(|()| seteuid(Uid::from_raw(owner.uid))) {
            Ok(()) => {
                let r = f();
                // Back to root before anything else runs.
                if let Err(e) = seteuid(euid).and_then(|()| setegid(egid)) {
                    common::fatal!("cannot restore root's ids after binding a socket: {e}");
                }
                r
            }
            Err(e) => {
                let _ = seteuid(euid);
                let _ = setegid(egid);
                Err(e.into())
            }
        }
    } else {
        f()
    };
    set_umask(old_mask);
    result
}

fn describe(def: &Service, bound: &Bound) -> Vec<String> {
    match bound {
        Bound::Tcp(ls) => ls
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| format!("{a} ({})", def.command))
            .collect(),
        Bound::Unix(_, _) => Vec::new(),
    }
}

/// Where a worker's program is: daemon_directory/posthorn-CMD, or (with an
/// empty daemon_directory, or when this executable is the multi-call
/// `posthorn`) this executable run under the worker's name.
fn program(cfg: &Config, command: &str) -> (PathBuf, String) {
    let name = format!("posthorn-{command}");
    let dd = cfg.get("daemon_directory");
    if !dd.is_empty() {
        let p = Path::new(&dd).join(&name);
        if p.exists() {
            return (p, name);
        }
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("posthorn"));
    (exe, name)
}

fn spawn_missing(
    svc: &mut Svc,
    procs: &mut HashMap<i32, Proc>,
    cfg: &Config,
    dir: &Path,
    target: &Target,
    pipes: [i32; 2],
) {
    if svc.throttled_until.is_some_and(|t| Instant::now() < t) {
        return;
    }
    let key = svc.def.key();
    let live_current = procs
        .values()
        .filter(|p| p.key == key && p.generation == svc.generation)
        .count();
    let live_old = procs
        .values()
        .filter(|p| p.key == key && p.generation != svc.generation)
        .count();
    if svc.def.command == "qmgr" && live_old > 0 {
        return; // one qmgr at a time: the new one starts when the old has gone
    }
    for _ in live_current..svc.def.maxproc as usize {
        match spawn(svc, cfg, dir, target, pipes) {
            Ok(pid) => {
                procs.insert(
                    pid,
                    Proc {
                        key: key.clone(),
                        generation: svc.generation,
                        available: false,
                        config_error: false,
                        served: 0,
                    },
                );
            }
            Err(e) => {
                error!(
                    "cannot start {} for service {}: {e}",
                    svc.def.command, svc.def.name
                );
                throttle(svc);
                return;
            }
        }
    }
}

fn spawn(
    svc: &Svc,
    cfg: &Config,
    dir: &Path,
    target: &Target,
    [pipe, status]: [i32; 2],
) -> io::Result<i32> {
    let (path, name) = program(cfg, &svc.def.command);
    let fds = svc.bound.fds();
    let mut cmd = Command::new(&path);
    cmd.arg0(&name)
        .arg("-c")
        .arg(dir)
        .arg("-n")
        .arg(&svc.def.name)
        .arg("-t")
        .arg(if svc.def.kind == ServiceType::Inet {
            "inet"
        } else {
            "unix"
        });
    if svc.def.unprivileged {
        cmd.arg("-u");
    }
    for (k, v) in &svc.def.overrides {
        cmd.arg("-o").arg(format!("{k}={v}"));
    }
    cmd.env(
        "POSTHORN_LISTEN_FD",
        fds.iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(","),
    )
    .env(
        "POSTHORN_LISTEN_KIND",
        if svc.def.kind == ServiceType::Inet {
            "inet"
        } else {
            "unix"
        },
    )
    .env("POSTHORN_MASTER_FD", pipe.to_string())
    .env("POSTHORN_STATUS_FD", status.to_string())
    .env("POSTHORN_LOG", target.env_value())
    .stdin(std::process::Stdio::null())
    .process_group(0);
    // The descriptors survive exec only for the duration of this spawn; the
    // process is single-threaded here, so no other spawn can race.
    let inherit: Vec<i32> = fds.iter().copied().chain([pipe, status]).collect();
    for fd in &inherit {
        privilege::set_inheritable(*fd, true)?;
    }
    let child = cmd.spawn();
    for fd in &inherit {
        privilege::set_inheritable(*fd, false)?;
    }
    Ok(child?.id() as i32)
}

fn throttle(svc: &mut Svc) {
    svc.fail_streak += 1;
    let wait = Duration::from_millis(250u64 << svc.fail_streak.min(8)).min(MAX_THROTTLE);
    warning!(
        "service {} ({}): bad command startup -- throttling for {}s",
        svc.def.name,
        svc.def.command,
        wait.as_secs_f32()
    );
    svc.throttled_until = Some(Instant::now() + wait);
}

/// Collect exited children; note failures of current workers.
fn reap(procs: &mut HashMap<i32, Proc>, svcs: &mut HashMap<String, Svc>, stopping: bool) {
    loop {
        let status = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(s) => s,
        };
        let (pid, how, code) = match status {
            WaitStatus::Exited(pid, code) => (pid, format!("exit status {code}"), Some(code)),
            WaitStatus::Signaled(pid, sig, _) => {
                (pid, format!("killed by signal {}", sig as i32), None)
            }
            _ => continue,
        };
        let Some(p) = procs.remove(&pid.as_raw()) else {
            continue;
        };
        let Some(svc) = svcs.get_mut(&p.key) else {
            continue;
        };
        if stopping || p.generation != svc.generation {
            continue;
        }
        warning!(
            "process posthorn-{} pid {pid} {how}{}",
            svc.def.command,
            if p.config_error {
                " (configuration error)"
            } else if p.available {
                ""
            } else {
                " before it started serving"
            }
        );
        // Postfix throttles only a process that served nothing (use count
        // 0); here: one that never became available, or could not use its
        // configuration. Anything else is replaced at once.
        if p.config_error || code == Some(EX_CONFIG) || !p.available {
            throttle(svc);
        } else {
            svc.fail_streak = 0;
            svc.throttled_until = None;
        }
    }
}

fn reload(
    new: Settings,
    config: &mut Config,
    svcs: &mut HashMap<String, Svc>,
    order: &mut Vec<String>,
    procs: &mut HashMap<i32, Proc>,
    spool: &Spool,
    owner: &privilege::Account,
) {
    let mut next: HashMap<String, Svc> = HashMap::new();
    let mut next_order = Vec::new();
    for def in &new.services {
        let key = def.key();
        let bk = bind_key(def, &new.config);
        let reuse = svcs.remove(&key).filter(|old| old.bind_key == bk);
        let svc = match reuse {
            Some(mut old) => {
                old.def = def.clone();
                old.generation += 1;
                old.fail_streak = 0;
                old.throttled_until = None;
                old
            }
            None => match bind(def, &new.config, spool, owner) {
                Ok((bound, bind_key)) => {
                    for l in describe(def, &bound) {
                        info!("listening on {l}");
                    }
                    // Generation above any old process of the same key.
                    Svc {
                        def: def.clone(),
                        bound,
                        bind_key,
                        generation: next_generation(procs, &key),
                        fail_streak: 0,
                        throttled_until: None,
                    }
                }
                Err(e) => {
                    error!("reload: {e}; service {key} not started");
                    continue;
                }
            },
        };
        next_order.push(key.clone());
        next.insert(key, svc);
    }
    // Removed services: their sockets close when dropped below.
    for (_, old) in svcs.drain() {
        if let Bound::Unix(_, path) = &old.bound {
            let _ = fs::remove_file(path);
        }
    }
    // Drain, not stop (see the header): sessions finish on the old workers.
    for pid in procs.keys() {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGHUP);
    }
    // Every running process is now of an old generation.
    for p in procs.values_mut() {
        p.generation = 0;
    }
    *svcs = next;
    *order = next_order;
    *config = new.config;
}

fn next_generation(procs: &HashMap<i32, Proc>, key: &str) -> u64 {
    procs
        .values()
        .filter(|p| p.key == key)
        .map(|p| p.generation)
        .max()
        .unwrap_or(0)
        + 1
}
