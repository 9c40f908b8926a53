//! Privileges and inherited descriptors: the only module with `unsafe`.
//!
//! Owns dropping root for good (workers become mail_owner), switching the
//! effective ids for one mailbox write (local delivery, Postfix's set_eugid),
//! user look-ups, turning descriptors handed down by master back into
//! sockets and pipes, passing a descriptor to another process over a Unix
//! socket (`send_fd`, `recv_fd`: SCM_RIGHTS), and the *at()-style file
//! access that a privileged process uses in directories a lesser account
//! owns (`open_at`, `walk_dirs`, `make_dir_at`, `sync_dir`). Every unsafe
//! block says why it is sound.
//!
//! Security: `drop_to` sets supplementary groups, gid, then uid, and checks that
//! root cannot be regained. `as_user` is only for single-threaded processes
//! while they do one delivery; it restores root afterwards, refuses to run
//! when the switch failed, and refuses uid 0 (no mailbox is written as root).
//! `open_at` never follows a symbolic link in the last component; `walk_dirs`
//! follows one only when both the link and the directory holding it belong
//! to root (an administrator's `/home -> /data/home`), so nobody but root can
//! redirect a privileged walk. `recv_fd` takes at most one descriptor per
//! message, close-on-exec from the start (MSG_CMSG_CLOEXEC), and closes any
//! others a peer sent along, so a peer cannot fill our descriptor table.

#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{fcntl, AtFlags, FcntlArg, FdFlag, OFlag};
use nix::sys::stat::{Mode, SFlag};
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
/// Changes only the calling thread's credentials (local delivery's main
/// thread); other threads of the process keep root.
/// Refuses uid 0: a mailbox is never written as root (local delivery maps
/// root to default_privs before it gets here).
pub fn as_user<T>(uid: u32, gid: u32, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    if !is_root() {
        return f();
    }
    if uid == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "refusing to write a mailbox as uid 0",
        ));
    }
    // Per-thread credential changes (raw system calls): glibc's wrappers
    // change every thread of the process, which costs a signal round trip
    // to each other thread (master-watch) several times per delivery. Only
    // this thread touches mailboxes; the others keep root and never do.
    thread_to(gid, uid)?;
    let result = f();
    if let Err(e) = thread_back_to_root() {
        // Continuing as the wrong user would deliver mail with wrong rights.
        crate::fatal!("cannot restore root after delivery as uid {uid}: {e}");
    }
    result
}

/// -1: leave this id (real and saved ids stay root, so the thread can come back).
const KEEP: libc::c_long = -1;

/// This thread's supplementary groups.
fn thread_setgroups(gid: u32) -> io::Result<()> {
    let groups = [gid as libc::gid_t];
    // SAFETY: setgroups reads exactly one gid_t from a live array; the raw
    // syscall changes only the calling thread's credentials.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, 1 as libc::c_long, groups.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This thread's effective gid.
fn thread_setegid(gid: u32) -> io::Result<()> {
    // SAFETY: integer arguments only; changes only the calling thread.
    let r = unsafe { libc::syscall(libc::SYS_setresgid, KEEP, gid as libc::c_long, KEEP) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This thread's effective uid.
fn thread_seteuid(uid: u32) -> io::Result<()> {
    // SAFETY: integer arguments only; changes only the calling thread.
    let r = unsafe { libc::syscall(libc::SYS_setresuid, KEEP, uid as libc::c_long, KEEP) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// From root to `uid`/`gid`: groups and gid while still root, uid last.
fn thread_to(gid: u32, uid: u32) -> io::Result<()> {
    thread_setgroups(gid)?;
    thread_setegid(gid)?;
    if let Err(e) = thread_seteuid(uid) {
        let _ = thread_setegid(0);
        let _ = thread_setgroups(0);
        return Err(e);
    }
    Ok(())
}

/// Back to root: uid first (it gives back the right to change the rest).
fn thread_back_to_root() -> io::Result<()> {
    thread_seteuid(0)?;
    thread_setegid(0)?;
    thread_setgroups(0)
}

/// openat(2) of `name` relative to `dir` (None: the current directory, or
/// `name` is absolute). O_NOFOLLOW and O_CLOEXEC are always added: a
/// symbolic link as the last component is an error (ELOOP), never followed.
pub fn open_at(dir: Option<&File>, name: &Path, flags: OFlag, mode: u32) -> io::Result<File> {
    openat_raw(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        mode,
    )
}

/// openat(2) with exactly the flags given.
fn openat_raw(dir: Option<&File>, name: &Path, flags: OFlag, mode: u32) -> io::Result<File> {
    let fd = nix::fcntl::openat(
        dir.map(|d| d.as_raw_fd()),
        name,
        flags | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
    .map_err(io::Error::from)?;
    // SAFETY: openat has just returned this descriptor and nothing else in
    // this process knows its number, so the File is its only owner.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// fsync a directory, so that entries made in it survive a crash. Works on
/// O_PATH descriptors too (they are reopened for the fsync).
pub fn sync_dir(dir: &File) -> io::Result<()> {
    match dir.sync_all() {
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => openat_raw(
            Some(dir),
            Path::new("."),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            0,
        )?
        .sync_all(),
        r => r,
    }
}

/// How `walk_dirs` makes the directories that are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirCreate {
    /// Permission bits of each new directory.
    pub mode: u32,
    /// Owner and group given to each new directory (needs root); None keeps
    /// the effective ids that made it.
    pub owner: Option<(u32, u32)>,
}

/// Make the directory `name` in `dir` (mkdirat), check that what is there
/// now is the directory we made (not a link swapped in), give it to `owner`
/// through its descriptor, and fsync `dir`. Returns the new directory
/// opened. An existing entry is `AlreadyExists`.
pub fn make_dir_at(
    dir: &File,
    name: &OsStr,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<File> {
    nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(mode))
        .map_err(io::Error::from)?;
    let new = open_at(
        Some(dir),
        Path::new(name),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        0,
    )?;
    let meta = new.metadata()?;
    if meta.uid() != Uid::effective().as_raw() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}: replaced while being created (owner uid {})",
                Path::new(name).display(),
                meta.uid()
            ),
        ));
    }
    if let Some((uid, gid)) = owner {
        if (meta.uid(), meta.gid()) != (uid, gid) {
            std::os::unix::fs::fchown(&new, Some(uid), Some(gid))?;
        }
    }
    // mkdir applies the umask: set the bits asked for.
    nix::sys::stat::fchmod(new.as_raw_fd(), Mode::from_bits_truncate(mode))
        .map_err(io::Error::from)?;
    sync_dir(dir)?;
    Ok(new)
}

/// Open the directory `rel` below `start` one component at a time with
/// openat(2), never by path: a symbolic link is followed only when it and
/// the directory holding it both belong to root; any other link is an error
/// (PermissionDenied). `..` is refused. With `create`, missing components are
/// made with `make_dir_at` (each fsync'ed into its parent). The result is an
/// O_PATH descriptor: good for *at() calls, `metadata` and `sync_dir`.
pub fn walk_dirs(start: &File, rel: &Path, create: Option<DirCreate>) -> io::Result<File> {
    let mut cur: Option<File> = None;
    for c in rel.components() {
        let name = match c {
            Component::Normal(n) => n,
            Component::CurDir => continue,
            Component::RootDir => {
                cur = Some(open_at(
                    None,
                    Path::new("/"),
                    OFlag::O_PATH | OFlag::O_DIRECTORY,
                    0,
                )?);
                continue;
            }
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: \"..\" in a mailbox path", rel.display()),
                ))
            }
        };
        let next = step(cur.as_ref().unwrap_or(start), name, create)?;
        cur = Some(next);
    }
    match cur {
        Some(f) => Ok(f),
        None => openat_raw(
            Some(start),
            Path::new("."),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            0,
        ),
    }
}

/// Open an absolute directory path with `walk_dirs` from "/".
pub fn open_dir_path(path: &Path, create: Option<DirCreate>) -> io::Result<File> {
    if !path.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not an absolute path", path.display()),
        ));
    }
    let root = open_at(None, Path::new("/"), OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?;
    walk_dirs(&root, path, create)
}

/// One component of `walk_dirs`.
fn step(dir: &File, name: &OsStr, create: Option<DirCreate>) -> io::Result<File> {
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let st = nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW);
    match (st, create) {
        (Ok(st), _) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
            let owner = dir.metadata()?.uid();
            if owner == 0 && st.st_uid == 0 {
                // Root's own link in root's own directory: the administrator's.
                openat_raw(Some(dir), Path::new(name), dir_flags, 0)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{}: symbolic link (owner uid {}) in a directory owned by uid {owner}: not followed",
                        Path::new(name).display(),
                        st.st_uid
                    ),
                ))
            }
        }
        (Ok(_), _) => open_at(Some(dir), Path::new(name), dir_flags, 0),
        (Err(Errno::ENOENT), Some(c)) => {
            match make_dir_at(dir, name, c.mode, c.owner) {
                Ok(_) => open_at(Some(dir), Path::new(name), dir_flags, 0),
                // Made by someone else meanwhile: open what is there, no link.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    open_at(Some(dir), Path::new(name), dir_flags, 0)
                }
                Err(e) => Err(e),
            }
        }
        (Err(e), _) => Err(io::Error::from(e)),
    }
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

/// Take ownership of a connected Unix stream socket inherited from our
/// parent (a hand-off socket, `Listener::Handoff`).
pub fn inherited_unix_stream(fd: RawFd) -> io::Result<UnixStream> {
    check_open(fd)?;
    // SAFETY: as for inherited_tcp_listener.
    let s = unsafe { UnixStream::from_raw_fd(fd) };
    s.local_addr()?;
    Ok(s)
}

/// Send `bytes` with the descriptor `fd` attached to their first byte
/// (SCM_RIGHTS), all of them: what the first sendmsg did not take is
/// written after it. Blocks as `sock` does (give it a write time-out).
pub fn send_fd(sock: &UnixStream, bytes: &[u8], fd: BorrowedFd) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    if bytes.is_empty() {
        // A descriptor travels with at least one byte of data.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "send_fd: no bytes to carry the descriptor",
        ));
    }
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let sent = loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(bytes)],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => break n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    };
    let mut w = sock;
    w.write_all(&bytes[sent..])
}

/// Most descriptors one message may carry on Linux (SCM_MAX_FD): room for
/// all of them, so the control data is never truncated (a truncated message
/// would leave descriptors installed that we could not see to close).
const SCM_MAX_FD: usize = 253;

/// One recvmsg(2): up to `buf.len()` bytes, and the descriptor that came
/// with them if any (close-on-exec). A message with several descriptors
/// gives the first; the others are closed. `(0, None)` is end of file.
pub fn recv_fd(sock: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    recv_fd_from(sock.as_fd(), buf)
}

/// `recv_fd` on any Unix stream socket (a mio one, in the server skeleton).
pub fn recv_fd_from(sock: BorrowedFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut cmsg = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => break m,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    };
    let n = msg.bytes;
    let mut got: Vec<OwnedFd> = Vec::new();
    match msg.cmsgs() {
        Ok(cmsgs) => {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for fd in fds {
                        // SAFETY: the kernel has just installed this
                        // descriptor in our table for this message; nothing
                        // else in the process knows its number, so the
                        // OwnedFd is its only owner (and closes it).
                        got.push(unsafe { OwnedFd::from_raw_fd(fd) });
                    }
                }
            }
        }
        // Truncated control data: the room above is for the most a message
        // can carry, so only other control messages could be cut; the
        // descriptors that did not fit were discarded by the kernel.
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "recv_fd: control data truncated",
            ))
        }
    }
    let mut fds = got.into_iter();
    let first = fds.next();
    // Extra descriptors are closed here (dropped).
    drop(fds);
    Ok((n, first))
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

/// Give the kernel back the heap's free pages (glibc's malloc_trim(0)),
/// after much was freed at once: a mailbox process whose sessions went
/// quiet (imapd_hibernate_timeout) would otherwise keep the freed message
/// lists resident. Nothing where the C library has no such call.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes a plain integer, touches only the
        // allocator's own state under its own locks, and is safe to call
        // at any time from any thread.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
