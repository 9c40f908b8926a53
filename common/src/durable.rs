//! Durable writes: the one sequence every file that must survive a crash goes
//! through (O_EXCL temporary file, write, fsync, rename that never replaces,
//! fsync of the directory).
//!
//! Owns the steps and their order; does not own file names or formats (the
//! spool, mailstore and the users file choose theirs). Used by
//! `mailstore::maildir::Delivery::commit` (whose batches use `rename_at`
//! and fsync the directory once for several files), `users::change`, and
//! `spool::Spool::move_to` (the no-replace rename). Queue files do not
//! rename at commit: they are reserved under their name and marked complete
//! (common::spool).
//!
//! Durability: after `commit` returns Ok the data and the directory entry
//! are on disk. A `Rename` error means nothing is visible under the final
//! name; a `SyncDir` error means the file is in place but its entry may not
//! yet be on disk.
//!
//! Security: temporary files are made with O_CREAT|O_EXCL|O_NOFOLLOW relative
//! to a directory descriptor, so a planted link or file is an error, never a
//! target. `rename_at` with `Replace::No` uses renameat2(RENAME_NOREPLACE), or
//! link(2)+unlink(2) where the file system does not support it, so an existing
//! file is never replaced: the caller gets `AlreadyExists` and logs it.
//!
//! Diagnostics: errors only; callers log them with their queue id or path.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;

use crate::privilege;

/// May the final rename replace an existing file?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Never (queue files, mailbox files): an existing target is an error.
    No,
    /// Yes: the point is to replace it atomically (a table rewritten whole).
    Yes,
}

/// What went wrong in `commit`, and how far it got.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// Writing or fsyncing the temporary file, or the rename itself: nothing
    /// is visible under the final name.
    #[error("{0}")]
    Rename(io::Error),
    /// The rename happened; the directory fsync failed.
    #[error("{0}")]
    SyncDir(io::Error),
}

impl From<DurableError> for io::Error {
    fn from(e: DurableError) -> io::Error {
        match e {
            DurableError::Rename(e) | DurableError::SyncDir(e) => e,
        }
    }
}

/// Create a new file `name` in `dir` (None: relative to the current
/// directory, or `name` is absolute): O_CREAT|O_EXCL|O_NOFOLLOW, write-only.
pub fn create_new(dir: Option<&File>, name: &Path, mode: u32) -> io::Result<File> {
    privilege::open_at(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
        mode,
    )
}

/// Rename `from` (in `from_dir`) to `to` (in `to_dir`). With `Replace::No`
/// an existing `to` is `AlreadyExists` and nothing changes.
pub fn rename_at(
    from_dir: Option<&File>,
    from: &Path,
    to_dir: Option<&File>,
    to: &Path,
    replace: Replace,
) -> io::Result<()> {
    let (fd1, fd2) = (
        from_dir.map(|d| d.as_raw_fd()),
        to_dir.map(|d| d.as_raw_fd()),
    );
    if replace == Replace::Yes {
        return nix::fcntl::renameat(fd1, from, fd2, to).map_err(io::Error::from);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    match nix::fcntl::renameat2(
        fd1,
        from,
        fd2,
        to,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => return Ok(()),
        // Not supported by this file system (or kernel): link and unlink.
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::ENOTSUP) => {}
        Err(e) => return Err(e.into()),
    }
    nix::unistd::linkat(fd1, from, fd2, to, nix::fcntl::AtFlags::empty())
        .map_err(io::Error::from)?;
    nix::unistd::unlinkat(fd1, from, nix::unistd::UnlinkatFlags::NoRemoveDir)
        .map_err(io::Error::from)
}

/// Finish a durable write: fsync `file`, rename `tmp` (in `tmp_dir`) to
/// `name` (in `dir`), fsync `dir`.
pub fn commit(
    file: File,
    tmp_dir: Option<&File>,
    tmp: &Path,
    dir: &File,
    name: &Path,
    replace: Replace,
) -> Result<(), DurableError> {
    commit_unsynced(file, tmp_dir, tmp, dir, name, replace)?;
    privilege::sync_dir(dir).map_err(DurableError::SyncDir)
}

/// `commit` without the last step: the data is on disk and the file has
/// its name, which is durable only after the caller fsyncs `dir`
/// (`privilege::sync_dir`); nothing may be reported done before that.
pub fn commit_unsynced(
    file: File,
    tmp_dir: Option<&File>,
    tmp: &Path,
    dir: &File,
    name: &Path,
    replace: Replace,
) -> Result<(), DurableError> {
    file.sync_all().map_err(DurableError::Rename)?;
    drop(file);
    rename_at(tmp_dir, tmp, Some(dir), name, replace).map_err(DurableError::Rename)
}

/// Replace (or create) the file at `path` with `data`, atomically and
/// durably: a fresh temporary file beside it, `mode` and `owner` set on it
/// before the data goes in, then `commit` with `Replace::Yes`.
pub fn replace_file(
    path: &Path,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (Some(parent), Some(base)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = File::open(parent)?;
    let (tmp, mut f) = loop {
        let tmp = format!(
            ".{}.{}.{}.tmp",
            base.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        match create_new(Some(&dir), Path::new(&tmp), mode) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        // O_CREAT applies the umask: set the bits asked for.
        nix::sys::stat::fchmod(
            f.as_raw_fd(),
            nix::sys::stat::Mode::from_bits_truncate(mode),
        )
        .map_err(io::Error::from)?;
        f.write_all(data)
    })();
    let result = result.and_then(|()| {
        commit(
            f,
            Some(&dir),
            Path::new(&tmp),
            &dir,
            Path::new(base),
            Replace::Yes,
        )
        .map_err(io::Error::from)
    });
    if result.is_err() {
        let _ = nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            Path::new(&tmp),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("posthorn-durable-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn commit_never_replaces() {
        let d = temp_dir("noreplace");
        let dir = File::open(&d).unwrap();
        fs::write(d.join("final"), b"old").unwrap();
        let mut f = create_new(Some(&dir), Path::new("tmp"), 0o600).unwrap();
        f.write_all(b"new").unwrap();
        let e = commit(
            f,
            Some(&dir),
            Path::new("tmp"),
            &dir,
            Path::new("final"),
            Replace::No,
        )
        .unwrap_err();
        assert!(
            matches!(&e, DurableError::Rename(e) if e.kind() == io::ErrorKind::AlreadyExists),
            "{e:?}"
        );
        assert_eq!(fs::read(d.join("final")).unwrap(), b"old");
        assert_eq!(
            fs::read(d.join("tmp")).unwrap(),
            b"new",
            "the temporary file stays for the caller"
        );
        // To a free name it works, and the temporary name is gone.
        let f = File::options().write(true).open(d.join("tmp")).unwrap();
        commit(
            f,
            Some(&dir),
            Path::new("tmp"),
            &dir,
            Path::new("other"),
            Replace::No,
        )
        .unwrap();
        assert_eq!(fs::read(d.join("other")).unwrap(), b"new");
        assert!(!d.join("tmp").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn create_new_refuses_links_and_existing_files() {
        let d = temp_dir("excl");
        let dir = File::open(&d).unwrap();
        fs::write(d.join("target"), b"keep").unwrap();
        std::os::unix::fs::symlink(d.join("target"), d.join("link")).unwrap();
        assert!(create_new(Some(&dir), Path::new("link"), 0o600).is_err());
        assert_eq!(
            create_new(Some(&dir), Path::new("target"), 0o600)
                .unwrap_err()
                .kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(fs::read(d.join("target")).unwrap(), b"keep");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn replace_file_replaces_atomically() {
        let d = temp_dir("replace");
        let p = d.join("table");
        replace_file(&p, b"one\n", 0o640, None).unwrap();
        replace_file(&p, b"two\n", 0o640, None).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            fs::read_dir(&d).unwrap().count(),
            1,
            "no temporary file left"
        );
        fs::remove_dir_all(&d).unwrap();
    }
}
