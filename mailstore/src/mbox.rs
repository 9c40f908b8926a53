//! mbox delivery: append under the configured locks, undo on failure.
//!
//! Owns the mboxrd format (a `From ` separator line, `>From ` quoting of
//! body lines matching `^>*From ` -- so `From x` becomes `>From x` and
//! `>From x` becomes `>>From x` --, a message without a final newline
//! given one, and a blank line after each message) and the locking that
//! mutt, mailx, procmail and Dovecot agree on for a Debian mail spool
//! (Postfix's mailbox_delivery_lock = fcntl, dotlock): a dot-lock
//! `NAME.lock` beside the file (mailstore::dotlock, the same file Dovecot
//! and mutt's mutt_dotlock make), then a POSIX record lock (fcntl F_SETLK)
//! on the whole file; flock(2) is a third choice. Each lock is tried in a
//! bounded wait (Postfix's deliver_lock_attempts times, deliver_lock_delay
//! apart); a lock that stays is [`Busy`] (the caller defers: 4.2.0
//! "mailbox busy"). A dot-lock unchanged (and its mbox unchanged) for
//! stale_lock_time, or whose holder is a dead process of this host, is
//! removed (dotlock.rs's rules).
//!
//! Durability: the file is fsync'ed before `deliver` returns (and its
//! directory, when the file was new); if anything fails the file is truncated
//! back to its old length, so no half message stays behind.
//!
//! Security: everything is relative to a directory descriptor: the file is
//! opened with O_NOFOLLOW, created with O_EXCL (mode 0600), and must be a
//! regular file with one link, owned by the effective uid; the caller runs
//! this with the mailbox owner's effective uid (for the mail spool, with
//! the spool directory's group as effective gid, as Postfix's local(8)
//! does, so that a root:mail 2775 /var/mail needs no root).
//!
//! Diagnostics: errors are io::Error; a lock that stays is an
//! `io::Error::other(Busy)` (find it with `get_ref().is::<Busy>()`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

use common::privilege;

use crate::dotlock::{DotLock, LockSettings};
use crate::error::StoreError;

/// Which locks a delivery takes and how long it waits for each
/// (mailbox_delivery_lock, deliver_lock_attempts, deliver_lock_delay,
/// stale_lock_time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locking {
    /// A POSIX record lock on the whole file (fcntl F_SETLK).
    pub fcntl: bool,
    /// flock(2) on the file.
    pub flock: bool,
    /// `NAME.lock` in the file's directory.
    pub dotlock: bool,
    /// Tries per lock before giving up (at least 1).
    pub attempts: u32,
    /// The wait between tries.
    pub delay: Duration,
    /// A dot-lock unchanged this long is removed.
    pub stale: Duration,
}

impl Default for Locking {
    /// Postfix's Linux defaults: fcntl, dotlock; 20 tries 1 s apart; 500 s.
    fn default() -> Locking {
        Locking {
            fcntl: true,
            flock: false,
            dotlock: true,
            attempts: 20,
            delay: Duration::from_secs(1),
            stale: Duration::from_secs(500),
        }
    }
}

/// A mailbox_delivery_lock value that is not a list of known methods.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mbox lock method {0:?} (known: fcntl, flock, dotlock)")]
pub struct UnknownMethod(pub String);

impl Locking {
    /// Set the methods from a mailbox_delivery_lock value ("fcntl, dotlock").
    pub fn with_methods(mut self, methods: &[String]) -> Result<Locking, UnknownMethod> {
        self.fcntl = false;
        self.flock = false;
        self.dotlock = false;
        for m in methods {
            match m.to_ascii_lowercase().as_str() {
                "fcntl" => self.fcntl = true,
                "flock" => self.flock = true,
                "dotlock" => self.dotlock = true,
                _ => return Err(UnknownMethod(m.clone())),
            }
        }
        Ok(self)
    }
}

/// The mbox stayed locked by someone else for the whole bounded wait.
#[derive(Debug, thiserror::Error)]
#[error("{}: mailbox busy ({method} lock held by another process)", path.display())]
pub struct Busy {
    pub path: PathBuf,
    pub method: &'static str,
}

/// Append one message (LF line endings) read from `message` to the mbox at
/// `path`, with the default locks.
pub fn deliver(path: &Path, sender: &str, date: &str, message: &mut dyn Read) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mbox path has no file name"))?;
    let dir = File::open(parent)?;
    deliver_at(
        &dir,
        Path::new(name),
        path,
        &Locking::default(),
        sender,
        date,
        message,
    )
}

/// Append one message to the mbox `name` in the directory `dir` (`display`
/// is its path, for messages) under the locks `locking` asks for: never
/// through a symbolic link, only to a regular file.
pub fn deliver_at(
    dir: &File,
    name: &Path,
    display: &Path,
    locking: &Locking,
    sender: &str,
    date: &str,
    message: &mut dyn Read,
) -> io::Result<()> {
    let attempts = locking.attempts.max(1);
    // The dot-lock first (as Postfix's mbox_open and mutt do), so that a
    // holder of the dot-lock never waits for us on the file.
    let dotlock = if locking.dotlock {
        let lname = name
            .to_str()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mbox name is not UTF-8"))?;
        let settings = LockSettings {
            timeout: locking.delay * (attempts - 1),
            stale: locking.stale,
        };
        let dir = Arc::new(dir.try_clone()?);
        match DotLock::acquire(&dir, lname, display, settings) {
            Ok(l) => Some(l),
            Err(StoreError::LockTimeout { .. }) => {
                return Err(io::Error::other(Busy {
                    path: display.to_path_buf(),
                    method: "dotlock",
                }))
            }
            Err(StoreError::Io { source, path }) => {
                return Err(io::Error::new(
                    source.kind(),
                    format!("{}: {source}", path.display()),
                ))
            }
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
    } else {
        None
    };
    let file = open_mbox(dir, name, display)?;
    if locking.fcntl {
        retry(locking, display, "fcntl", || {
            let lock = libc::flock {
                l_type: libc::F_WRLCK as libc::c_short,
                l_whence: libc::SEEK_SET as libc::c_short,
                l_start: 0,
                l_len: 0, // to the end, however far it grows
                l_pid: 0,
            };
            nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_SETLK(&lock)).map(|_| ())
        })?;
    }
    let _flock = if locking.flock {
        let mut held = None;
        retry(locking, display, "flock", || {
            let dup = file.try_clone().map_err(|_| Errno::EBADF)?;
            match Flock::lock(dup, FlockArg::LockExclusiveNonblock) {
                Ok(l) => {
                    held = Some(l);
                    Ok(())
                }
                Err((_, e)) => Err(e),
            }
        })?;
        held
    } else {
        None
    };
    let result = append(&file, sender, date, message);
    // Unlocked in reverse: the file (closing it drops the fcntl lock), then
    // the dot-lock.
    drop(_flock);
    drop(file);
    drop(dotlock);
    result
}

/// Try `lock` up to `attempts` times, `delay` apart; EAGAIN/EACCES/
/// EWOULDBLOCK mean someone else holds it.
fn retry(
    locking: &Locking,
    display: &Path,
    method: &'static str,
    mut lock: impl FnMut() -> nix::Result<()>,
) -> io::Result<()> {
    let attempts = locking.attempts.max(1);
    for i in 0..attempts {
        match lock() {
            Ok(()) => return Ok(()),
            Err(Errno::EAGAIN | Errno::EACCES) => {
                if i + 1 < attempts {
                    std::thread::sleep(locking.delay);
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("{}: {method} lock: {e}", display.display()),
                ))
            }
        }
    }
    Err(io::Error::other(Busy {
        path: display.to_path_buf(),
        method,
    }))
}

/// Open (or create, 0600, O_EXCL) the mbox: a regular file with one link,
/// owned by the effective uid.
fn open_mbox(dir: &File, name: &Path, display: &Path) -> io::Result<File> {
    let flags = OFlag::O_RDWR | OFlag::O_APPEND | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let file = match privilege::open_at(Some(dir), name, flags, 0) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let f = privilege::open_at(
                Some(dir),
                name,
                flags | OFlag::O_CREAT | OFlag::O_EXCL,
                0o600,
            )?;
            privilege::sync_dir(dir)?;
            f
        }
        r => r?,
    };
    let st = file.metadata()?;
    let bad = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: {why}", display.display()),
        ))
    };
    if !st.file_type().is_file() {
        return bad("not a regular file");
    }
    // Postfix's checks: a hard link could make us write someone's file.
    if st.nlink() != 1 {
        return bad(&format!("has {} links, expected 1", st.nlink()));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if st.uid() != euid {
        return bad(&format!("owned by uid {}, not {euid}", st.uid()));
    }
    Ok(file)
}

/// Append the From_ line, the quoted message and the blank line; fsync;
/// truncate back on failure.
fn append(file: &File, sender: &str, date: &str, message: &mut dyn Read) -> io::Result<()> {
    let mut file = file;
    let start = file.seek(SeekFrom::End(0))?;
    let result = (|| {
        let sender = if sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            sender
        };
        let mut out = io::BufWriter::new(&mut file);
        writeln!(out, "From {sender} {date}")?;
        let mut at_line_start = true;
        let mut buf = [0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = message.read(&mut buf)?;
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
            // Quote lines matching ^>*From (mboxrd); needs the whole line start.
            let mut i = 0;
            while i < pending.len() {
                if at_line_start {
                    let rest = &pending[i..];
                    let gts = rest.iter().take_while(|&&b| b == b'>').count();
                    if rest.len() < gts + 5 && !rest[gts..].contains(&b'\n') {
                        break; // wait for more bytes
                    }
                    if rest[gts..].starts_with(b"From ") {
                        out.write_all(b">")?;
                    }
                }
                let end = pending[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map(|p| i + p + 1);
                match end {
                    Some(e) => {
                        out.write_all(&pending[i..e])?;
                        i = e;
                        at_line_start = true;
                    }
                    None => {
                        out.write_all(&pending[i..])?;
                        i = pending.len();
                        at_line_start = false;
                    }
                }
            }
            pending.drain(..i);
        }
        out.write_all(&pending)?;
        if !(pending.is_empty() && at_line_start) {
            out.write_all(b"\n")?;
        }
        out.write_all(b"\n")?;
        out.flush()?;
        drop(out);
        file.sync_all()
    })();
    if result.is_err() {
        let _ = file.set_len(start);
        let _ = file.sync_all();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_separators() {
        let dir = std::env::temp_dir().join(format!("posthorn-mbox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("mbox");
        let _ = std::fs::remove_file(&p);
        deliver(
            &p,
            "a@b",
            "Thu Jan  1 00:00:00 1970",
            &mut &b"Subject: x\n\nFrom me\n>From you\nok\n"[..],
        )
        .unwrap();
        deliver(
            &p,
            "",
            "Thu Jan  1 00:00:00 1970",
            &mut &b"Subject: y\n\nno newline"[..],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "From a@b Thu Jan  1 00:00:00 1970\nSubject: x\n\n>From me\n>>From you\nok\n\n\
             From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: y\n\nno newline\n\n"
        );
        // A link where the mbox should be is refused, its target untouched.
        let target = dir.join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.join("linked");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(deliver(&link, "a@b", "x", &mut &b"x\n"[..]).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A reader that hands out one byte at a time: "From " split across reads.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.split_first() {
                Some((b, rest)) if !buf.is_empty() => {
                    buf[0] = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn mboxrd_quoting_does_not_depend_on_read_sizes() {
        let dir = std::env::temp_dir().join(format!("posthorn-mbox-rd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let msg = b"From: x\n\nFrom a\n>From b\n>>From c\nFrom\n>From\nFromage\n From d\n>>Fro";
        let want = "From s@x Thu Jan  1 00:00:00 1970\nFrom: x\n\n>From a\n>>From b\n>>>From c\nFrom\n>From\nFromage\n From d\n>>Fro\n\n";
        for (i, whole) in [true, false].into_iter().enumerate() {
            let p = dir.join(format!("m{i}"));
            let date = "Thu Jan  1 00:00:00 1970";
            if whole {
                deliver(&p, "s@x", date, &mut &msg[..]).unwrap();
            } else {
                deliver(&p, "s@x", date, &mut Trickle(msg)).unwrap();
            }
            assert_eq!(std::fs::read_to_string(&p).unwrap(), want);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn quick(attempts: u32) -> Locking {
        Locking {
            attempts,
            delay: Duration::from_millis(50),
            ..Locking::default()
        }
    }

    fn deliver_quick(dir: &Path, locking: &Locking, body: &[u8]) -> io::Result<()> {
        let d = File::open(dir).unwrap();
        deliver_at(
            &d,
            Path::new("user"),
            &dir.join("user"),
            locking,
            "a@b",
            "Thu Jan  1 00:00:00 1970",
            &mut &body[..],
        )
    }

    fn is_busy(r: &io::Result<()>, method: &str) -> bool {
        matches!(r, Err(e) if e.get_ref().and_then(|i| i.downcast_ref::<Busy>()).is_some_and(|b| b.method == method))
    }

    #[test]
    fn a_held_dot_lock_makes_it_busy_and_a_stale_one_is_removed() {
        let dir = std::env::temp_dir().join(format!("posthorn-mbox-dl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        deliver_quick(&dir, &quick(2), b"one\n").unwrap();
        let before = std::fs::read(dir.join("user")).unwrap();
        // mutt's lock: an empty user.lock.
        std::fs::write(dir.join("user.lock"), b"").unwrap();
        let r = deliver_quick(&dir, &quick(3), b"two\n");
        assert!(is_busy(&r, "dotlock"), "{r:?}");
        assert_eq!(std::fs::read(dir.join("user")).unwrap(), before);
        assert!(dir.join("user.lock").exists(), "someone else's lock stays");
        // Released: delivered, and our own lock is gone again.
        std::fs::remove_file(dir.join("user.lock")).unwrap();
        deliver_quick(&dir, &quick(2), b"two\n").unwrap();
        assert!(!dir.join("user.lock").exists());
        // A lock that stays unchanged past stale_lock_time is removed.
        std::fs::write(dir.join("user.lock"), b"").unwrap();
        let stale = Locking {
            attempts: 100,
            stale: Duration::from_secs(1),
            ..quick(100)
        };
        deliver_quick(&dir, &stale, b"three\n").unwrap();
        let all = std::fs::read_to_string(dir.join("user")).unwrap();
        assert_eq!(all.matches("From a@b").count(), 3, "{all}");
        assert!(!dir.join("user.lock").exists());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "no lock or temporary file left: {names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_held_fcntl_lock_makes_it_busy() {
        let dir = std::env::temp_dir().join(format!("posthorn-mbox-fl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        deliver_quick(&dir, &quick(2), b"one\n").unwrap();
        let before = std::fs::read(dir.join("user")).unwrap();
        // An open file description lock conflicts with our POSIX record
        // lock even within this process (fcntl(2)), as another process's
        // F_SETLK (mutt's) would.
        let holder = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("user"))
            .unwrap();
        let lock = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        nix::fcntl::fcntl(holder.as_raw_fd(), nix::fcntl::FcntlArg::F_OFD_SETLK(&lock)).unwrap();
        let r = deliver_quick(&dir, &quick(3), b"two\n");
        assert!(is_busy(&r, "fcntl"), "{r:?}");
        assert_eq!(std::fs::read(dir.join("user")).unwrap(), before);
        assert!(!dir.join("user.lock").exists(), "our dot-lock is released");
        // fcntl off (dotlock only): not waited for.
        let dot_only = quick(1).with_methods(&["dotlock".into()]).unwrap();
        deliver_quick(&dir, &dot_only, b"two\n").unwrap();
        drop(holder);
        deliver_quick(&dir, &quick(1), b"three\n").unwrap();
        let all = std::fs::read_to_string(dir.join("user")).unwrap();
        assert_eq!(all.matches("From a@b").count(), 3, "{all}");
        // flock as a choice.
        let fl = quick(1)
            .with_methods(&["flock".into(), "dotlock".into()])
            .unwrap();
        assert!((fl.flock, fl.fcntl, fl.dotlock) == (true, false, true));
        deliver_quick(&dir, &fl, b"four\n").unwrap();
        assert!(quick(1).with_methods(&["lockf".into()]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_hard_linked_mbox_is_refused() {
        let dir = std::env::temp_dir().join(format!("posthorn-mbox-hl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("other"), b"keep").unwrap();
        std::fs::hard_link(dir.join("other"), dir.join("user")).unwrap();
        let r = deliver_quick(&dir, &quick(1), b"x\n");
        assert!(
            matches!(&r, Err(e) if e.to_string().contains("links")),
            "{r:?}"
        );
        assert_eq!(std::fs::read(dir.join("other")).unwrap(), b"keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
