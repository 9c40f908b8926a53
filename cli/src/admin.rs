//! `posthorn start|stop|reload|status|check|config` (dns: dns.rs). check's owner and
//! mode checks are check.rs's.
//!
//! Diagnostics: errors go to standard error as `posthorn: ...` with a
//! non-zero exit; configuration errors name file and line.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::config::Config;
use common::params::PARAMS;

#[derive(Args)]
pub struct DirArg {
    /// Configuration directory (default: $POSTHORN_CONFIG_DIR or /etc/posthorn).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
}

impl DirArg {
    pub fn dir(&self) -> PathBuf {
        crate::config_dir(self.config.clone())
    }
}

#[derive(Args)]
pub struct ConfigArgs {
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Only parameters set in main.cf.
    #[arg(short = 'n')]
    pub non_default: bool,
    /// Default values instead of effective ones.
    #[arg(short = 'd')]
    pub defaults: bool,
    /// Print the names' documentation too.
    #[arg(short = 'v')]
    pub verbose: bool,
    /// Edit main.cf: set each name=value given (like postconf -e).
    #[arg(short = 'e')]
    pub edit: bool,
    /// Parameter names to print (all when none), or name=value with -e.
    pub names: Vec<String>,
}

fn load(dir: &Path) -> Result<Config, i32> {
    Config::load(dir).map_err(|e| {
        eprintln!("posthorn: {e}");
        1
    })
}

/// The pid of a running master, if any.
pub(crate) fn running(cfg: &Config) -> Option<i32> {
    let text = std::fs::read_to_string(cfg.pid_file()).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    kill(Pid::from_raw(pid), None).ok().map(|()| pid)
}

pub fn start(dir: &Path) -> i32 {
    let Ok(cfg) = load(dir) else { return 1 };
    if let Some(pid) = running(&cfg) {
        eprintln!("posthorn: the mail system is already running (pid {pid})");
        return 1;
    }
    // Run master under its own name (daemon_directory/posthorn-master, or
    // this executable as posthorn-master), as `postfix start` does: it binds
    // its sockets, detaches (its first process exits) and writes the pid file.
    let daemon_dir = cfg.get("daemon_directory");
    let installed = Path::new(&daemon_dir).join("posthorn-master");
    let mut cmd = if !daemon_dir.is_empty() && installed.is_file() {
        std::process::Command::new(installed)
    } else {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("posthorn"));
        let mut c = std::process::Command::new(exe);
        std::os::unix::process::CommandExt::arg0(&mut c, "posthorn-master");
        c
    };
    let status = cmd
        .arg("-c")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(_) => return 1, // master said why on stderr
        Err(e) => {
            eprintln!("posthorn: cannot run master: {e}");
            return 1;
        }
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) {
        if let Some(pid) = running(&cfg) {
            eprintln!("posthorn: started the mail system (pid {pid})");
            return 0;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "posthorn: master did not write {} within 15 seconds; see the mail log",
        cfg.pid_file().display()
    );
    1
}

pub fn stop(dir: &Path) -> i32 {
    let Ok(cfg) = load(dir) else { return 1 };
    let Some(pid) = running(&cfg) else {
        eprintln!("posthorn: the mail system is not running");
        return 1;
    };
    if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
        eprintln!("posthorn: cannot signal master (pid {pid}): {e}");
        return 1;
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if kill(Pid::from_raw(pid), None).is_err() {
            eprintln!("posthorn: stopped the mail system (pid {pid})");
            return 0;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("posthorn: master (pid {pid}) has not stopped after 30 seconds");
    1
}

pub fn reload(dir: &Path) -> i32 {
    let Ok(cfg) = load(dir) else { return 1 };
    let Some(pid) = running(&cfg) else {
        eprintln!("posthorn: the mail system is not running");
        return 1;
    };
    match kill(Pid::from_raw(pid), Signal::SIGHUP) {
        Ok(()) => {
            eprintln!("posthorn: refreshing the mail system (pid {pid})");
            0
        }
        Err(e) => {
            eprintln!("posthorn: cannot signal master (pid {pid}): {e}");
            1
        }
    }
}

/// `posthorn flush`: ask qmgr (private/qmgr) to try every deferred
/// message now, as Postfix's `postqueue -f`.
pub fn flush(dir: &Path) -> i32 {
    use std::io::Write as _;
    let Ok(cfg) = load(dir) else { return 1 };
    if running(&cfg).is_none() {
        eprintln!("posthorn: the mail system is not running");
        return 1;
    }
    let socket = common::spool::Spool::new(cfg.queue_dir()).private("qmgr");
    match std::os::unix::net::UnixStream::connect(&socket).and_then(|mut s| s.write_all(b"flush\n"))
    {
        Ok(()) => {
            eprintln!("posthorn: the queue manager tries every deferred message now");
            0
        }
        Err(e) => {
            eprintln!("posthorn: {}: {e}", socket.display());
            1
        }
    }
}

pub fn status(dir: &Path) -> i32 {
    let Ok(cfg) = load(dir) else { return 1 };
    match running(&cfg) {
        Some(pid) => {
            println!("posthorn: the mail system is running: PID: {pid}");
            0
        }
        None => {
            println!("posthorn: the mail system is not running");
            3
        }
    }
}

/// Everything an administrator gets wrong, reported at once.
pub fn check(dir: &Path) -> i32 {
    let Ok(cfg) = load(dir) else { return 1 };
    let mut errors = 0;
    for e in cfg.validate() {
        eprintln!("posthorn: error: {e}");
        errors += 1;
    }
    for (name, loc) in cfg.unknown_names() {
        eprintln!("posthorn: warning: {loc}: unknown parameter {name}");
    }
    let mcf = dir.join("master.cf");
    match std::fs::read_to_string(&mcf) {
        Ok(text) => {
            let dpl = cfg.int("default_process_limit").unwrap_or(100) as u32;
            match common::mastercf::parse(&mcf.display().to_string(), &text, dpl) {
                Ok(services) => errors += check_services(dir, &services),
                Err(e) => {
                    eprintln!("posthorn: error: {e}");
                    errors += 1;
                }
            }
        }
        Err(e) => {
            eprintln!("posthorn: error: {}: {e}", mcf.display());
            errors += 1;
        }
    }
    let users = cfg.users_file();
    if let Ok(text) = std::fs::read_to_string(&users) {
        if let Err(e) = common::users::parse(&users.display().to_string(), &text) {
            eprintln!("posthorn: error: {e}");
            errors += 1;
        }
    }
    errors += check_tls(&cfg);
    let spool = cfg.queue_dir();
    for (name, _) in common::spool::SPOOL_DIRS {
        let p = spool.join(name);
        if !p.is_dir() {
            eprintln!(
                "posthorn: warning: {} is missing (master creates it at start)",
                p.display()
            );
        }
    }
    if common::privilege::is_root()
        && common::privilege::lookup_user(&cfg.get("mail_owner")).is_none()
    {
        eprintln!(
            "posthorn: error: mail_owner {:?} is not a user on this system",
            cfg.get("mail_owner")
        );
        errors += 1;
    }
    // Owners and modes (check.rs): the spool, the mailbox base, the TLS
    // keys, the users file.
    if let Some(expect) = crate::check::Expect::from_config(&cfg) {
        for p in crate::check::problems(&cfg, &expect) {
            eprintln!("posthorn: error: {p}");
            errors += 1;
        }
    }
    if errors > 0 {
        1
    } else {
        0
    }
}

/// What each master.cf service needs with its own -o settings: a service in
/// TLS wrapper mode (smtps, pop3s, imaps) needs a certificate, a login service
/// needs login_user. Returns the number of errors.
fn check_services(dir: &Path, services: &[common::mastercf::Service]) -> i32 {
    let mut errors = 0;
    for svc in services {
        let Ok(c) = Config::load_with(dir, &svc.overrides) else {
            continue; // main.cf's own errors are reported above
        };
        let at = format!("master.cf line {} ({})", svc.line, svc.name);
        let wrapper =
            |mode: &str, cert: &str| c.bool(mode).unwrap_or(false) && c.get(cert).trim().is_empty();
        if (svc.command == "smtpd" && wrapper("smtpd_tls_wrappermode", "smtpd_tls_cert_file"))
            || (svc.command == "pop3-login"
                && wrapper("pop3d_tls_wrappermode", "mailbox_tls_cert_file"))
            || (svc.command == "imap-login"
                && wrapper("imapd_tls_wrappermode", "mailbox_tls_cert_file"))
        {
            eprintln!(
                "posthorn: error: {at}: TLS wrapper mode without a certificate: set smtpd_tls_cert_file (and smtpd_tls_key_file) in main.cf, or remove the service"
            );
            errors += 1;
        }
        if common::mastercf::LOGIN_COMMANDS.contains(&svc.command.as_str())
            && common::privilege::is_root()
            && common::privilege::lookup_user(&c.get("login_user")).is_none()
        {
            eprintln!(
                "posthorn: error: {at}: login_user {:?} is not a user on this system (create it, or set login_user)",
                c.get("login_user")
            );
            errors += 1;
        }
    }
    errors
}

/// The TLS certificates and keys load as the daemons will load them (as
/// root for a package: the key may be readable by root only). Returns the
/// number of errors.
fn check_tls(cfg: &Config) -> i32 {
    let mut errors = 0;
    let mut checked = Vec::new();
    for (cert, key) in [
        ("smtpd_tls_cert_file", "smtpd_tls_key_file"),
        ("mailbox_tls_cert_file", "mailbox_tls_key_file"),
    ] {
        let files = (cfg.get(cert), cfg.get(key));
        if files.0.trim().is_empty() || checked.contains(&files) {
            continue;
        }
        if let Err(e) = common::tls::from_params(cfg, cert, key) {
            eprintln!("posthorn: error: {cert}/{key}: {e}");
            errors += 1;
        }
        checked.push(files);
    }
    errors
}

pub fn config(a: &ConfigArgs) -> i32 {
    let dir = crate::config_dir(a.config.clone());
    if a.edit {
        return match edit_main_cf(&dir.join("main.cf"), &a.names) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("posthorn: {e}");
                1
            }
        };
    }
    let cfg = if a.defaults {
        Config::defaults(&dir)
    } else {
        match load(&dir) {
            Ok(c) => c,
            Err(code) => return code,
        }
    };
    let names: Vec<String> = if !a.names.is_empty() {
        a.names.clone()
    } else if a.non_default {
        cfg.explicit_names().to_vec()
    } else {
        PARAMS.iter().map(|p| p.name.to_string()).collect()
    };
    let mut code = 0;
    for n in names {
        let known = common::params::find(&n);
        if known.is_none() && !cfg.explicit_names().contains(&n) {
            eprintln!("posthorn: warning: {n}: unknown parameter");
            code = 1;
            continue;
        }
        let value = if a.defaults {
            known
                .map(|p| common::config::builtin_default(p.default))
                .unwrap_or_default()
        } else {
            cfg.get(&n)
        };
        if a.verbose {
            if let Some(p) = known {
                println!("# {}", p.doc);
            }
        }
        if value.is_empty() {
            println!("{n} =");
        } else {
            println!("{n} = {value}");
        }
    }
    code
}

/// Replace or append `name = value` lines in main.cf, atomically.
fn edit_main_cf(path: &Path, settings: &[String]) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for kv in settings {
        let Some((name, value)) = kv.split_once('=') else {
            return Err(format!("-e {kv:?}: expected name=value"));
        };
        let (name, value) = (name.trim(), value.trim());
        if common::params::find(name).is_none() {
            eprintln!("posthorn: warning: {name}: unknown parameter");
        }
        let new = if value.is_empty() {
            format!("{name} =")
        } else {
            format!("{name} = {value}")
        };
        let at = lines.iter().position(|l| {
            !l.starts_with([' ', '\t', '#'])
                && l.split_once('=').is_some_and(|(n, _)| n.trim() == name)
        });
        match at {
            Some(i) => {
                lines[i] = new;
                // Drop the old value's continuation lines.
                while lines
                    .get(i + 1)
                    .is_some_and(|l| l.starts_with([' ', '\t']) && !l.trim().is_empty())
                {
                    lines.remove(i + 1);
                }
            }
            None => lines.push(new),
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    let tmp = path.with_extension("cf.tmp");
    std::fs::write(&tmp, out).map_err(|e| format!("{}: {e}", tmp.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}
