//! Dovecot's dot-locks: `<file>.lock`, created with O_EXCL, holding
//! `<pid>:<host>`, removed when done; replaced when stale.
//!
//! Owns taking, touching and dropping a lock file, and Dovecot's rule for a
//! stale one (file-dotlock.c): a lock more than 2 seconds old whose pid is
//! not alive on this host is replaced at once; any other lock is replaced
//! when neither it nor the file it protects has changed for `stale`
//! (Dovecot: 120 s for dovecot-uidlist, 30 s for subscriptions). Waiting
//! gives up after `timeout` (Dovecot: stale + 2 s). Also owns the other use
//! of a dot-lock, writing the new contents of a file into its lock file and
//! renaming it over the file (`DotLock::replace`), as Dovecot updates
//! dovecot-keywords and subscriptions. mbox.rs locks mbox files with it
//! too (`USER.lock` in the mail spool, stale after Postfix's
//! stale_lock_time), which mutt and mailx honour as well.
//!
//! Standards: none; compatibility with Dovecot's lib/file-dotlock.c with
//! `dotlock_use_excl = yes` (its default), so that Dovecot and posthorn
//! processes exclude each other.
//!
//! Security: the lock file is made with O_EXCL|O_NOFOLLOW relative to the
//! folder's descriptor; a link planted at its name is never written
//! through. A pid in a lock file is only used with kill(pid, 0).
//!
//! Diagnostics: replacing a stale lock is a warning naming the file and why;
//! a lock that stays is `StoreError::LockTimeout`.
//!
//! Unlike Dovecot, a lock holding this process's own pid is treated as
//! alive: posthorn processes have several threads, and another thread's
//! lock is not stale.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal;
use nix::unistd::Pid;

use common::warning;

use crate::error::{At, StoreError};
use crate::filename::{hostname, pid};
use crate::fsat;

/// A lock this young is not checked for a dead pid (its writer may not
/// have written it yet): Dovecot's STALE_PID_CHECK_SECS.
const PID_CHECK_AGE: i64 = 2;

/// How long to wait and when a lock is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockSettings {
    /// Give up waiting after this long.
    pub timeout: Duration,
    /// A lock that, with the file it protects, has not changed for this
    /// long is replaced.
    pub stale: Duration,
}

impl LockSettings {
    /// dovecot-uidlist's (MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT, and its
    /// default wait of that plus 2 s).
    pub const UIDLIST: LockSettings = LockSettings {
        timeout: Duration::from_secs(122),
        stale: Duration::from_secs(120),
    };
    /// subscriptions' (SUBSCRIPTION_FILE_LOCK_TIMEOUT/CHANGE_TIMEOUT).
    pub const SUBSCRIPTIONS: LockSettings = LockSettings {
        timeout: Duration::from_secs(120),
        stale: Duration::from_secs(30),
    };
}

/// A held lock; dropped, it is removed (if it is still ours).
#[derive(Debug)]
pub struct DotLock {
    dir: Arc<File>,
    name: String,
    path: PathBuf,
    file: Option<File>,
    dev: u64,
    ino: u64,
}

/// What a waiter remembers of a lock file between looks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Seen {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: i64,
    ctime: i64,
}

impl Seen {
    fn of(st: &nix::sys::stat::FileStat) -> Seen {
        Seen {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: st.st_mtime,
            ctime: st.st_ctime,
        }
    }
}

/// The name a lock is written under before it is linked into place;
/// removed when the attempt ends, whichever way.
struct TempName<'a> {
    dir: &'a File,
    name: String,
}

impl Drop for TempName<'_> {
    fn drop(&mut self) {
        let _ = fsat::unlink(self.dir, &self.name);
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl DotLock {
    /// Lock `file` in `dir`: create `file.lock` holding our pid and host.
    /// `display` is `file`'s path, for messages.
    pub fn acquire(
        dir: &Arc<File>,
        file: &str,
        display: &Path,
        settings: LockSettings,
    ) -> Result<DotLock, StoreError> {
        Self::create(dir, file, display, settings, true)
    }

    /// Lock `file` for replacing it: the lock file is created empty and
    /// written by the caller (`write`), then renamed over `file`
    /// (`replace`).
    pub fn acquire_for_replace(
        dir: &Arc<File>,
        file: &str,
        display: &Path,
        settings: LockSettings,
    ) -> Result<DotLock, StoreError> {
        Self::create(dir, file, display, settings, false)
    }

    fn create(
        dir: &Arc<File>,
        file: &str,
        display: &Path,
        settings: LockSettings,
        write_pid: bool,
    ) -> Result<DotLock, StoreError> {
        let name = format!("{file}.lock");
        let lock_path = lock_path(display);
        let start = Instant::now();
        let mut seen: Option<Seen> = None;
        let mut protected_seen: Option<Seen> = None;
        // When the lock or the protected file last changed (seconds).
        let mut last_change = 0i64;
        let mut wait = Duration::from_millis(20);
        // A lock that names its holder comes into being whole: written
        // under a name of our own, then linked to the lock's name (as
        // Dovecot's file_dotlock does). Created and then written, a kill
        // between the two would leave an empty lock, stale only by age.
        let temp = if write_pid {
            // Unique to this attempt: threads of one process lock too.
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let t = format!("{name}.tmp.{}.{n}", pid());
            let _ = fsat::unlink(dir, &t);
            let mut f = fsat::create_excl(dir, &t, 0o600).at(&lock_path)?;
            let t = TempName { dir, name: t };
            f.write_all(format!("{}:{}", pid(), hostname()).as_bytes())
                .at(&lock_path)?;
            Some((t, f))
        } else {
            None
        };
        let took = |f: File| -> Result<DotLock, StoreError> {
            let st = nix::sys::stat::fstat(f.as_raw_fd()).at(&lock_path)?;
            Ok(DotLock {
                dir: dir.clone(),
                name: name.clone(),
                path: lock_path.clone(),
                file: Some(f),
                dev: st.st_dev,
                ino: st.st_ino,
            })
        };
        loop {
            let attempt = match &temp {
                Some((t, f)) => fsat::link(dir, &t.name, dir, &name).and_then(|()| f.try_clone()),
                None => fsat::create_excl(dir, &name, 0o600),
            };
            match attempt {
                Ok(f) => {
                    return took(f);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(StoreError::io(&lock_path, e));
                }
            }
            let now = now_secs();
            let st = match fsat::stat(dir, &name) {
                Ok(st) => st,
                // Gone meanwhile: try again at once.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&lock_path, e)),
            };
            let cur = Seen::of(&st);
            if seen != Some(cur) {
                // First look: the lock's own time; later: now.
                let t = if seen.is_none() {
                    if cur.mtime <= now && cur.mtime > cur.ctime {
                        cur.mtime
                    } else {
                        cur.ctime
                    }
                } else {
                    now
                };
                last_change = last_change.max(t);
                seen = Some(cur);
                wait = Duration::from_millis(20);
            }
            if cur.mtime < now - PID_CHECK_AGE {
                if let Some(holder) = read_local_pid(dir, &name) {
                    if holder != pid() && !alive(holder) {
                        // Dead holder: replace, if it is still that file.
                        if fsat::stat(dir, &name).ok().map(|s| Seen::of(&s)) == Some(cur) {
                            warning!(
                                "{}: replacing the lock of process {holder}, which no longer exists",
                                lock_path.display()
                            );
                            let _ = fsat::unlink(dir, &name);
                            settle();
                        }
                        continue;
                    }
                }
            }
            let stale = settings.stale.as_secs() as i64;
            if now > last_change + stale {
                // Has the protected file changed meanwhile (a holder at work)?
                if let Ok(pst) = fsat::stat(dir, file) {
                    let p = Seen::of(&pst);
                    if protected_seen.is_some_and(|old| old != p) {
                        last_change = now;
                    } else if protected_seen.is_none() {
                        last_change = last_change.max(p.mtime.max(p.ctime).min(now));
                    }
                    protected_seen = Some(p);
                }
                if now > last_change + stale {
                    warning!(
                        "{}: replacing a lock unchanged for {} s",
                        lock_path.display(),
                        now - last_change
                    );
                    let _ = fsat::unlink(dir, &name);
                    settle();
                    continue;
                }
            }
            let waited = start.elapsed();
            if waited >= settings.timeout {
                return Err(StoreError::LockTimeout {
                    path: lock_path,
                    waited,
                });
            }
            // 0.5..1.0 of the wait (from the clock's nanoseconds, so that
            // waiters do not wake in step), growing to half a second.
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let jitter = 0.5 + f64::from(nanos % 1000) / 2000.0;
            std::thread::sleep(
                wait.mul_f64(jitter)
                    .min(settings.timeout.saturating_sub(waited)),
            );
            wait = (wait * 3 / 2).min(Duration::from_millis(500));
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Show that the holder is still at work (Dovecot touches its locks
    /// every 10 s during long syncs), so others do not take it for stale.
    pub fn touch(&self) -> Result<(), StoreError> {
        if let Some(f) = &self.file {
            let now = nix::sys::time::TimeSpec::from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default(),
            );
            nix::sys::stat::futimens(f.as_raw_fd(), &now, &now).at(&self.path)?;
        }
        Ok(())
    }

    /// Is the lock file at its name still the one we made (not replaced by
    /// someone who took it for stale)?
    pub fn is_ours(&self) -> bool {
        fsat::stat(&self.dir, &self.name)
            .map(|st| st.st_dev == self.dev && st.st_ino == self.ino)
            .unwrap_or(false)
    }

    /// Write `data` as the new contents (a lock from `acquire_for_replace`).
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| StoreError::io(&self.path, io::Error::other("lock already used")))?;
        f.write_all(data).at(&self.path)?;
        f.sync_all().at(&self.path)
    }

    /// Rename the lock file over the file it locks (its new contents), and
    /// make that durable. Fails if the lock was taken from us meanwhile.
    pub fn replace(mut self, target: &str) -> Result<(), StoreError> {
        if !self.is_ours() {
            return Err(StoreError::io(
                &self.path,
                io::Error::other("lock was replaced by another process"),
            ));
        }
        self.file.take();
        let r = fsat::rename(
            &self.dir,
            &self.name,
            &self.dir,
            target,
            common::durable::Replace::Yes,
        )
        .at(&self.path);
        // Renamed (or failed): nothing left to remove on drop unless the
        // rename failed.
        if r.is_ok() {
            self.ino = 0;
            self.dev = 0;
        }
        r?;
        common::privilege::sync_dir(&self.dir).at(&self.path)
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        self.file.take();
        if self.ino != 0 && self.is_ours() {
            let _ = fsat::unlink(&self.dir, &self.name);
        }
    }
}

/// `display` with ".lock" appended, for messages.
fn lock_path(display: &Path) -> PathBuf {
    let mut s = display.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// After replacing a stale lock, wait a moment so that another process
/// replacing it at the same time does not remove ours (Dovecot sleeps
/// 0.1-0.2 s).
fn settle() {
    let jitter = u64::from(std::process::id() % 100);
    std::thread::sleep(Duration::from_millis(100 + jitter));
}

/// The pid in a lock file if it names this host (`pid:host`).
fn read_local_pid(dir: &File, name: &str) -> Option<u32> {
    let mut buf = Vec::new();
    fsat::open_file(dir, name)
        .ok()?
        .take(512)
        .read_to_end(&mut buf)
        .ok()?;
    let s = std::str::from_utf8(&buf).ok()?;
    let s = s.strip_suffix('\n').unwrap_or(s);
    let (p, host) = s.split_once(':')?;
    if host != hostname() {
        return None;
    }
    p.parse().ok().filter(|p| *p > 0 && *p <= i32::MAX as u32)
}

/// kill(pid, 0): alive unless ESRCH.
fn alive(p: u32) -> bool {
    !matches!(
        signal::kill(Pid::from_raw(p as i32), None),
        Err(Errno::ESRCH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn dir(name: &str) -> (PathBuf, Arc<File>) {
        let d =
            std::env::temp_dir().join(format!("posthorn-dotlock-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let f = Arc::new(File::open(&d).unwrap());
        (d, f)
    }

    const SHORT: LockSettings = LockSettings {
        timeout: Duration::from_millis(600),
        stale: Duration::from_secs(3600),
    };

    #[test]
    fn excludes_and_releases() {
        let (d, f) = dir("basic");
        let l = DotLock::acquire(&f, "x", &d.join("x"), SHORT).unwrap();
        let content = fs::read_to_string(d.join("x.lock")).unwrap();
        assert_eq!(content, format!("{}:{}", std::process::id(), hostname()));
        // Our own pid is alive: a second taker waits and gives up.
        let e = DotLock::acquire(&f, "x", &d.join("x"), SHORT).unwrap_err();
        assert!(matches!(e, StoreError::LockTimeout { .. }), "{e}");
        assert!(e.to_string().contains("x.lock"), "{e}");
        l.touch().unwrap();
        drop(l);
        assert!(!d.join("x.lock").exists());
        let l = DotLock::acquire(&f, "x", &d.join("x"), SHORT).unwrap();
        drop(l);
        fs::remove_dir_all(&d).unwrap();
    }

    fn age(path: &Path, secs: i64) {
        let t = nix::sys::time::TimeSpec::new(now_secs() - secs, 0);
        nix::sys::stat::utimensat(
            None,
            path,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }

    #[test]
    fn dead_pid_is_replaced() {
        let (d, f) = dir("deadpid");
        // A pid that is not alive: a child that has exited and been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        fs::write(d.join("x.lock"), format!("{dead}:{}", hostname())).unwrap();
        age(&d.join("x.lock"), 10);
        let l = DotLock::acquire(&f, "x", &d.join("x"), SHORT).unwrap();
        assert!(l.is_ours());
        drop(l);
        // Another host's pid is not checked: the lock stays until stale.
        fs::write(d.join("x.lock"), format!("{dead}:other.host.invalid")).unwrap();
        age(&d.join("x.lock"), 10);
        assert!(DotLock::acquire(&f, "x", &d.join("x"), SHORT).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn unchanged_lock_is_stale() {
        let (d, f) = dir("stale");
        fs::write(d.join("x"), b"protected").unwrap();
        // A lock without a pid (or of another host), unchanged for `stale`
        // (its ctime counts: an mtime set back does not make it stale).
        fs::write(d.join("x.lock"), b"").unwrap();
        age(&d.join("x.lock"), 100);
        let s = LockSettings {
            timeout: Duration::from_secs(10),
            stale: Duration::from_secs(1),
        };
        let start = Instant::now();
        let l = DotLock::acquire(&f, "x", &d.join("x"), s).unwrap();
        assert!(
            start.elapsed() >= Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        drop(l);
        // A fresh lock is not stale.
        fs::write(d.join("x.lock"), b"").unwrap();
        let s = LockSettings {
            timeout: Duration::from_millis(500),
            stale: Duration::from_secs(30),
        };
        assert!(DotLock::acquire(&f, "x", &d.join("x"), s).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn replace_writes_through_the_lock() {
        let (d, f) = dir("replace");
        fs::write(d.join("subscriptions"), b"old").unwrap();
        let mut l =
            DotLock::acquire_for_replace(&f, "subscriptions", &d.join("subscriptions"), SHORT)
                .unwrap();
        l.write(b"new").unwrap();
        l.replace("subscriptions").unwrap();
        assert_eq!(fs::read(d.join("subscriptions")).unwrap(), b"new");
        assert!(!d.join("subscriptions.lock").exists());
        // A link planted at the lock's name is never written through.
        std::os::unix::fs::symlink(d.join("subscriptions"), d.join("other.lock")).unwrap();
        assert!(DotLock::acquire(&f, "other", &d.join("other"), SHORT).is_err());
        assert_eq!(fs::read(d.join("subscriptions")).unwrap(), b"new");
        fs::remove_dir_all(&d).unwrap();
    }
}
