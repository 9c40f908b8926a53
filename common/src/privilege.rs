//! Privileges and inherited descriptors: the only module with `unsafe`.
//!
//! Owns dropping root for good (workers become mail_owner), switching the
//! effective ids for one mailbox write (local delivery, Postfix's set_eugid),
//! user look-ups, and turning descriptors handed down by master back into
//! sockets and pipes. Every unsafe block says why it is sound.
//!
//! Security: `drop_to` sets supplementary groups, gid, then uid, and checks that
//! root cannot be regained. `as_user` is only for single-threaded processes
//! while they do one delivery; it restores root afterwards and refuses to run
//! when the switch failed.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::unistd::{Gid, Uid, User};

/// A user account, as getpwnam(3) gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl From<User> for Account {
    fn from(u: User) -> Account {
        Account {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
        }
    }
}

/// Is this process running with effective uid 0?
pub fn is_root() -> bool {
    Uid::effective().is_root()
}

/// The account of the real user running this process.
pub fn current_account() -> Account {
    match User::from_uid(Uid::current()) {
        Ok(Some(u)) => u.into(),
        _ => Account {
            name: Uid::current().to_string(),
            uid: Uid::current().as_raw(),
            gid: Gid::current().as_raw(),
            home: PathBuf::from("/"),
        },
    }
}

/// getpwnam(3).
pub fn lookup_user(name: &str) -> Option<Account> {
    User::from_name(name).ok().flatten().map(Account::from)
}

/// Look up a group id by name.
pub fn lookup_group(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// Drop root permanently to `account`. A no-op when not root.
pub fn drop_to(account: &Account) -> io::Result<()> {
    if !is_root() {
        return Ok(());
    }
    let gid = Gid::from_raw(account.gid);
    nix::unistd::setgroups(&[gid]).map_err(io::Error::from)?;
    nix::unistd::setgid(gid).map_err(io::Error::from)?;
    nix::unistd::setuid(Uid::from_raw(account.uid)).map_err(io::Error::from)?;
    if account.uid != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(io::Error::other(
            "could regain root after dropping privileges",
        ));
    }
    Ok(())
}

/// Run `f` with effective uid/gid switched to the mailbox owner, then switch
/// back to root. When not root, `f` simply runs as the current user.
/// Only for single-threaded processes (local delivery).
pub fn as_user<T>(uid: u32, gid: u32, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    if !is_root() {
        return f();
    }
    nix::unistd::setgroups(&[Gid::from_raw(gid)]).map_err(io::Error::from)?;
    nix::unistd::setegid(Gid::from_raw(gid)).map_err(io::Error::from)?;
    if let Err(e) = nix::unistd::seteuid(Uid::from_raw(uid)) {
        let _ = nix::unistd::setegid(Gid::from_raw(0));
        return Err(e.into());
    }
    let result = f();
    let back = nix::unistd::seteuid(Uid::from_raw(0))
        .and_then(|()| nix::unistd::setegid(Gid::from_raw(0)))
        .and_then(|()| nix::unistd::setgroups(&[Gid::from_raw(0)]));
    if let Err(e) = back {
        // Continuing as the wrong user would deliver mail with wrong rights.
        crate::fatal!("cannot restore root after delivery as uid {uid}: {e}");
    }
    result
}

/// Let (or stop) a descriptor survive exec, so master can hand it to a worker.
pub fn set_inheritable(fd: RawFd, inherit: bool) -> io::Result<()> {
    let flags = if inherit {
        FdFlag::empty()
    } else {
        FdFlag::FD_CLOEXEC
    };
    fcntl(fd, FcntlArg::F_SETFD(flags))
        .map(drop)
        .map_err(io::Error::from)
}

fn check_open(fd: RawFd) -> io::Result<()> {
    fcntl(fd, FcntlArg::F_GETFD).map(drop).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} handed down by master is not open: {e}"),
        )
    })?;
    // From now on it is ours alone: close it on exec.
    set_inheritable(fd, false)
}

/// Take ownership of a TCP listening socket inherited from master.
pub fn inherited_tcp_listener(fd: RawFd) -> io::Result<std::net::TcpListener> {
    check_open(fd)?;
    // SAFETY: master passed this descriptor number for exactly this purpose
    // (POSTHORN_LISTEN_FD); check_open proved it is open, and nothing else in
    // this process owns it, so taking ownership cannot double-close.
    let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    l.local_addr()?; // fails if it is not a socket
    Ok(l)
}

/// Take ownership of a Unix listening socket inherited from master.
pub fn inherited_unix_listener(fd: RawFd) -> io::Result<UnixListener> {
    check_open(fd)?;
    // SAFETY: as for inherited_tcp_listener.
    let l = unsafe { UnixListener::from_raw_fd(fd) };
    l.local_addr()?;
    Ok(l)
}

/// Take ownership of the read end of master's liveness pipe.
pub fn inherited_pipe(fd: RawFd) -> io::Result<File> {
    check_open(fd)?;
    // SAFETY: as for inherited_tcp_listener; a pipe end is a plain file.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Detach from the terminal: fork, setsid, stdin/out/err to /dev/null.
pub fn daemonize() -> io::Result<()> {
    nix::unistd::daemon(true, false).map_err(io::Error::from)
}
