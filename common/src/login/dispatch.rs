//! The post-login dispatcher: from a verified login to a process running as
//! the mailbox's owner (doc/mail-access.md).
//!
//! Owns: the `login/PROTOCOL` socket's connections from login processes (one
//! per authentication attempt, a thread each, bounded), relaying their
//! credentials to auth, the answer, the hand-off (frame + the client's
//! descriptor), and the mailbox processes: one or more per (uid, gid),
//! started with that uid and gid (never 0), each serving many sessions of
//! that owner; a mailbox process gets the session as `SessionStart` + the
//! descriptor on a socketpair, and writes one byte back per session that
//! ends, which is how the dispatcher knows its load. An idle mailbox process
//! (no session for `mailbox_idle_timeout`) is let go: its socket is closed,
//! it finishes and exits. Does not own any protocol, mailbox or hash.
//!
//! Runs as root (master.cf `unpriv n`): it starts processes as other users.
//! Does nothing by path but connect to auth and exec its own program.
//!
//! Security: login processes connect only as login_user (or root, or the
//! dispatcher's own uid in development mode: SO_PEERCRED); every frame is
//! bounded; a hand-off is accepted only right after an Ok on the same
//! connection and only for the user auth verified; a user whose mailbox
//! resolves to uid 0 is refused (`TempFail`, logged).
//!
//! Diagnostics: `warning: connection from uid N refused`, `NAME: mailbox
//! owned by root; login refused`, `started mailbox process pid N for uid U`,
//! `mailbox process pid N (uid U) exited: ...`.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::{AuthClient, AuthReply, Credentials};
use crate::config::Config;
use crate::ipc;
use crate::login::{Handoff, LoginAnswer, LoginRequest, Protocol, SessionStart};
use crate::privilege;
use crate::{info, warning};

/// Connections from login processes served at once; more wait in the
/// listen queue.
const MAX_THREADS: usize = 256;
/// A login process must send its request (and its hand-off) within this.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the dispatcher cannot run.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("the dispatcher serves a unix socket (master.cf: login/NAME unix ...)")]
    NotUnix,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What the dispatcher needs to know, from main.cf and its command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub protocol: Protocol,
    /// private/auth.
    pub auth_socket: PathBuf,
    /// Sessions one mailbox process serves at most (mailbox_client_limit).
    pub client_limit: u32,
    /// The processes one owner's users are spread over, by user
    /// (mailbox_owner_process_count; 0 in main.cf: one per CPU).
    pub spread: u32,
    /// A mailbox process with no session for this long is let go.
    pub idle_timeout: Duration,
    /// login_user's uid (None: whoever it is not, only root and ourselves).
    pub login_uid: Option<u32>,
    /// The program and arguments a mailbox process is started with.
    pub program: PathBuf,
    pub argv0: String,
    pub args: Vec<String>,
}

impl Settings {
    pub fn from_config(
        cfg: &Config,
        protocol: Protocol,
    ) -> Result<Settings, crate::config::ConfigError> {
        let client_limit = u32::try_from(cfg.int("mailbox_client_limit")?)
            .unwrap_or(u32::MAX)
            .max(1);
        let idle_timeout = cfg.time("mailbox_idle_timeout")?;
        let spread = match u32::try_from(cfg.int("mailbox_owner_process_count")?).unwrap_or(1) {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            n => n,
        };
        let login_uid = privilege::lookup_user(&cfg.get("login_user")).map(|a| a.uid);
        let argv0 = format!("posthorn-{}d", protocol.name());
        let dd = cfg.get("daemon_directory");
        let installed = (!dd.is_empty())
            .then(|| PathBuf::from(&dd).join(&argv0))
            .filter(|p| p.exists());
        let program = installed
            .or_else(|| std::env::current_exe().ok())
            .unwrap_or_else(|| PathBuf::from(&argv0));
        // The same command line master gave us, less -u: the mailbox
        // process reads the same main.cf with the same -o overrides.
        let args = std::env::args().skip(1).filter(|a| a != "-u").collect();
        Ok(Settings {
            protocol,
            auth_socket: PathBuf::from(cfg.get("queue_directory"))
                .join("private")
                .join("auth"),
            client_limit,
            spread,
            idle_timeout,
            login_uid,
            program,
            argv0,
            args,
        })
    }
}

/// One mailbox process.
struct MailboxProc {
    pid: u32,
    sock: UnixStream,
    /// Sessions handed to it and not yet reported over.
    sessions: Arc<AtomicU32>,
    /// Gone (its socket closed or failed).
    gone: Arc<AtomicBool>,
    last_used: Instant,
}

/// The mailbox processes, by owner and slot (`slot`).
#[derive(Default)]
struct Procs {
    by_owner: HashMap<(u32, u32, u32), Vec<MailboxProc>>,
}

/// Which of an owner's `spread` process slots serves `user`: always the
/// same for one user, so that its sessions share a process (its folders'
/// state, its user+address count), while the many virtual users of one
/// owner use every CPU.
fn slot(user: &str, spread: u32) -> u32 {
    if spread <= 1 {
        return 0;
    }
    // FNV-1a: stable across processes and releases.
    let h = user.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h % u64::from(spread)) as u32
}

/// Serve `listener` until `stop` (close every mailbox process's sessions:
/// they get SIGTERM) or `drain` (let them finish) is set.
pub fn run(
    listener: UnixListener,
    settings: Settings,
    stop: &AtomicBool,
    drain: &AtomicBool,
) -> Result<(), DispatchError> {
    listener.set_nonblocking(true)?;
    let settings = Arc::new(settings);
    let procs = Arc::new(Mutex::new(Procs::default()));
    let threads = Arc::new(AtomicUsize::new(0));
    let me = nix::unistd::geteuid().as_raw();
    start_reaper();
    let mut last_sweep = Instant::now();
    while !stop.load(Ordering::Relaxed) && !drain.load(Ordering::Relaxed) {
        if !wait_readable(&listener, Duration::from_millis(500)) {
            if last_sweep.elapsed() > Duration::from_secs(5) {
                sweep(&procs, settings.idle_timeout);
                last_sweep = Instant::now();
            }
            continue;
        }
        let (conn, _) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warning!("accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        match peer_uid(&conn) {
            Some(uid) if uid == 0 || uid == me || Some(uid) == settings.login_uid => {}
            other => {
                warning!(
                    "connection from uid {} refused: only login_user may hand over logins",
                    other.map_or("unknown".to_string(), |u| u.to_string())
                );
                continue;
            }
        }
        if threads.load(Ordering::Relaxed) >= MAX_THREADS {
            warning!("{MAX_THREADS} logins in progress; a login process must retry");
            continue;
        }
        threads.fetch_add(1, Ordering::Relaxed);
        let (settings, procs, threads) = (
            Arc::clone(&settings),
            Arc::clone(&procs),
            Arc::clone(&threads),
        );
        let spawned = std::thread::Builder::new()
            .name("login".into())
            .spawn(move || {
                if let Err(e) = serve(conn, &settings, &procs) {
                    warning!("login exchange: {e}");
                }
                threads.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            warning!("cannot start a thread: {e}");
        }
    }
    // Stopping: close every mailbox process's socket (they finish and
    // exit); on a stop, tell them to end their sessions now.
    let now_stop = stop.load(Ordering::Relaxed);
    let mut p = procs.lock().unwrap_or_else(|e| e.into_inner());
    for (_, list) in p.by_owner.drain() {
        for mp in list {
            let _ = mp.sock.shutdown(std::net::Shutdown::Both);
            if now_stop {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(mp.pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
    }
    Ok(())
}

/// One login process connection: request, answer, and after Ok the hand-off.
fn serve(mut conn: UnixStream, settings: &Settings, procs: &Mutex<Procs>) -> Result<(), io::Error> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let Some(req) = ipc::read_frame::<_, LoginRequest>(&mut conn)? else {
        return Ok(());
    };
    if req.protocol != settings.protocol {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a {} login on the {} dispatcher",
                req.protocol.name(),
                settings.protocol.name()
            ),
        ));
    }
    let verify = Credentials {
        service: req.protocol.name().to_string(),
        mechanism: req.mechanism.clone(),
        authzid: req.authzid.clone(),
        user: req.user.clone(),
        password: req.password.clone(),
        client: req.client,
        local_port: req.local_port,
        secured: req.secured,
    };
    let reply = AuthClient::connect(&settings.auth_socket).and_then(|mut a| a.verify(&verify));
    let (answer, user) = match reply {
        Ok(AuthReply::Ok(user)) if user.default_privs || user.uid == 0 || user.gid == 0 => {
            warning!(
                "{}: mailbox owned by root; login refused (give the user a uid of its own)",
                user.user
            );
            (
                LoginAnswer::TempFail {
                    reason: "mailbox not available".into(),
                },
                None,
            )
        }
        Ok(AuthReply::Ok(user)) => (
            LoginAnswer::Ok {
                user: user.user.clone(),
            },
            Some(user),
        ),
        Ok(AuthReply::Failed { delay_ms, .. }) => (LoginAnswer::Failed { delay_ms }, None),
        Ok(AuthReply::NotFound) => (LoginAnswer::Failed { delay_ms: 0 }, None),
        Ok(AuthReply::TempFail(why)) => (LoginAnswer::TempFail { reason: why }, None),
        Err(e) => {
            warning!("auth: {e}");
            (
                LoginAnswer::TempFail {
                    reason: "authentication service unavailable".into(),
                },
                None,
            )
        }
    };
    ipc::write_frame(&mut conn, &answer)?;
    let Some(user) = user else {
        return Ok(());
    };
    let (handoff, fd) = read_handoff(&conn)?;
    if handoff.user != user.user {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "hand-off for {:?} after a login of {:?}",
                handoff.user, user.user
            ),
        ));
    }
    let start = SessionStart { handoff, user };
    deliver(procs, settings, start, fd)
}

/// Read the hand-off frame and the descriptor that comes with its first
/// bytes.
fn read_handoff(conn: &UnixStream) -> io::Result<(Handoff, OwnedFd)> {
    let mut buf = vec![0u8; 64 * 1024];
    let (n, fd) = privilege::recv_fd(conn, &mut buf)?;
    let fd = fd.ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "hand-off without a descriptor")
    })?;
    let mut have = buf[..n].to_vec();
    if have.len() < 4 {
        let mut more = [0u8; 4];
        let need = 4 - have.len();
        (&*conn).read_exact(&mut more[..need])?;
        have.extend_from_slice(&more[..need]);
    }
    let len = u32::from_le_bytes([have[0], have[1], have[2], have[3]]) as usize;
    if len > ipc::MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "hand-off frame too large",
        ));
    }
    if have.len() < 4 + len {
        let start = have.len();
        have.resize(4 + len, 0);
        (&*conn).read_exact(&mut have[start..])?;
    }
    have.truncate(4 + len);
    Ok((super::unframe(&have)?, fd))
}

/// Give the session to a mailbox process of its owner, starting one if
/// needed.
fn deliver(
    procs: &Mutex<Procs>,
    settings: &Settings,
    start: SessionStart,
    fd: OwnedFd,
) -> io::Result<()> {
    let frame = super::frame(&start)?;
    let owner = (start.user.uid, start.user.gid);
    let key = (owner.0, owner.1, slot(&start.user.user, settings.spread));
    for _ in 0..2 {
        let mut p = procs.lock().unwrap_or_else(|e| e.into_inner());
        let list = p.by_owner.entry(key).or_default();
        list.retain(|mp| !mp.gone.load(Ordering::Relaxed));
        let pick = list
            .iter()
            .position(|mp| mp.sessions.load(Ordering::Relaxed) < settings.client_limit);
        let i = match pick {
            Some(i) => i,
            None => {
                list.push(spawn(settings, owner)?);
                list.len() - 1
            }
        };
        let mp = &mut list[i];
        match privilege::send_fd(&mp.sock, &frame, fd.as_fd()) {
            Ok(()) => {
                mp.sessions.fetch_add(1, Ordering::Relaxed);
                mp.last_used = Instant::now();
                return Ok(());
            }
            Err(e) => {
                warning!("mailbox process pid {}: {e}; starting another", mp.pid);
                mp.gone.store(true, Ordering::Relaxed);
            }
        }
    }
    Err(io::Error::other("no mailbox process takes the session"))
}

/// Start a mailbox process for `(uid, gid)`.
fn spawn(settings: &Settings, (uid, gid): (u32, u32)) -> io::Result<MailboxProc> {
    let (mine, theirs) = UnixStream::pair()?;
    let mut cmd = Command::new(&settings.program);
    cmd.arg0(&settings.argv0)
        .args(&settings.args)
        // Its listener is the hand-off socket (daemon::Listener::Handoff).
        .env("POSTHORN_LISTEN_FD", theirs.as_raw_fd().to_string())
        .env("POSTHORN_LISTEN_KIND", "handoff")
        .env_remove("POSTHORN_MASTER_FD")
        .env_remove("POSTHORN_STATUS_FD")
        .stdin(Stdio::null());
    if privilege::is_root() {
        // std clears the supplementary groups (setgroups(0)) before
        // setuid when it changes the uid as root.
        cmd.uid(uid).gid(gid);
    }
    privilege::set_inheritable(theirs.as_raw_fd(), true)?;
    let child = cmd.spawn();
    drop(theirs);
    let child = child?;
    let pid = child.id();
    // The reaper thread collects its exit status.
    drop(child);
    info!("started mailbox process pid {pid} for uid {uid}");
    let sessions = Arc::new(AtomicU32::new(0));
    let gone = Arc::new(AtomicBool::new(false));
    let mut reader = mine.try_clone()?;
    {
        let (sessions, gone) = (Arc::clone(&sessions), Arc::clone(&gone));
        std::thread::Builder::new()
            .name("mailbox-ends".into())
            .spawn(move || {
                // One byte per session that ended; end of file: the
                // process has gone.
                let mut b = [0u8; 256];
                loop {
                    match reader.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let n = n as u32;
                            let _ =
                                sessions.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                                    Some(s.saturating_sub(n))
                                });
                        }
                    }
                }
                gone.store(true, Ordering::Relaxed);
            })?;
    }
    Ok(MailboxProc {
        pid,
        sock: mine,
        sessions,
        gone,
        last_used: Instant::now(),
    })
}

/// Let go of mailbox processes that have had no session for `idle`.
fn sweep(procs: &Mutex<Procs>, idle: Duration) {
    let mut p = procs.lock().unwrap_or_else(|e| e.into_inner());
    for list in p.by_owner.values_mut() {
        list.retain(|mp| {
            let idle_now =
                mp.sessions.load(Ordering::Relaxed) == 0 && mp.last_used.elapsed() > idle;
            if idle_now || mp.gone.load(Ordering::Relaxed) {
                // Closing our end: it finishes what it has and exits.
                let _ = mp.sock.shutdown(std::net::Shutdown::Both);
                return false;
            }
            true
        });
    }
    p.by_owner.retain(|_, l| !l.is_empty());
}

/// Collect the exit status of mailbox processes as they end.
fn start_reaper() {
    let spawned = std::thread::Builder::new()
        .name("reaper".into())
        .spawn(|| loop {
            use nix::sys::wait::{waitpid, WaitStatus};
            match waitpid(None::<nix::unistd::Pid>, None) {
                Ok(WaitStatus::Exited(pid, 0)) => info!("mailbox process pid {pid} exited"),
                Ok(WaitStatus::Exited(pid, code)) => {
                    warning!("mailbox process pid {pid} exit status {code}")
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    warning!("mailbox process pid {pid} killed by signal {}", sig as i32)
                }
                Ok(_) => {}
                Err(nix::errno::Errno::ECHILD) => std::thread::sleep(Duration::from_millis(500)),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        });
    if let Err(e) = spawned {
        warning!("cannot start the reaper thread: {e}");
    }
}

fn peer_uid(s: &UnixStream) -> Option<u32> {
    nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::PeerCredentials)
        .ok()
        .map(|c| c.uid())
}

fn wait_readable(fd: &impl AsFd, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let ms =
        PollTimeout::try_from(timeout.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::NONE);
    matches!(poll(&mut fds, ms), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::slot;

    #[test]
    fn a_user_keeps_its_slot_and_users_use_every_slot() {
        assert_eq!(slot("user1@example.test", 1), 0);
        assert_eq!(slot("user1@example.test", 0), 0);
        let a = slot("user1@example.test", 2);
        assert_eq!(a, slot("user1@example.test", 2));
        let mut seen = [0u32; 4];
        for i in 0..100 {
            seen[slot(&format!("user{i}@example.test"), 4) as usize] += 1;
        }
        // 100 users over 4 slots: none empty, none with most of them.
        assert!(seen.iter().all(|&n| (10..=40).contains(&n)), "{seen:?}");
    }
}
