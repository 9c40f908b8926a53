//! File operations relative to a directory descriptor, never following a
//! symbolic link: what the store does inside a Maildir.
//!
//! Owns listing a directory (through a fresh descriptor of it), opening,
//! creating, reading bounded files, renaming, linking, unlinking and
//! removing a folder's tree, each with *at() calls and O_NOFOLLOW. Does not
//! own how the Maildir itself is reached (common::privilege::walk_dirs, from
//! store.rs and maildir.rs).
//!
//! Security: the mailbox owner can plant links and odd files anywhere in
//! the Maildir; this module is why that reaches nothing outside it: a link
//! is an error where a file or directory is opened (O_NOFOLLOW), is not
//! followed by `remove_tree` (it is unlinked), and reads are bounded.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use common::privilege;

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A symbolic link, device, socket or FIFO: never used.
    Other,
}

/// One directory entry (UTF-8 names only; others are skipped).
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
}

/// The entries of `dir` (not "." and ".."). Names that are not UTF-8 are
/// left out (the store has no use for them). When the file system does not
/// say an entry's type, it is looked up without following links.
pub fn list(dir: &File) -> io::Result<Vec<Entry>> {
    let fresh = privilege::open_at(
        Some(dir),
        Path::new("."),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        0,
    )?;
    let mut d = Dir::from(fresh).map_err(io::Error::from)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e.map_err(io::Error::from)?;
        let raw: &CStr = e.file_name();
        let bytes = raw.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let Ok(name) = std::str::from_utf8(bytes) else {
            continue;
        };
        let kind = match e.file_type() {
            Some(Type::File) => Kind::File,
            Some(Type::Directory) => Kind::Dir,
            Some(_) => Kind::Other,
            None => match stat(dir, name) {
                Ok(st) => kind_of(&st),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            },
        };
        out.push(Entry {
            name: name.to_string(),
            kind,
        });
    }
    Ok(out)
}

pub fn kind_of(st: &FileStat) -> Kind {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => Kind::File,
        SFlag::S_IFDIR => Kind::Dir,
        _ => Kind::Other,
    }
}

/// fstatat without following a link.
pub fn stat(dir: &File, name: &str) -> io::Result<FileStat> {
    nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        Path::new(name),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// Open the directory `name` in `dir` for listing and fsync (no link).
pub fn open_dir(dir: &File, name: &str) -> io::Result<File> {
    privilege::open_at(
        Some(dir),
        Path::new(name),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        0,
    )
}

/// Open the regular file `name` in `dir` for reading (no link, no device:
/// O_NONBLOCK so that a FIFO planted there cannot block the open).
pub fn open_file(dir: &File, name: &str) -> io::Result<File> {
    let f = privilege::open_at(
        Some(dir),
        Path::new(name),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK,
        0,
    )?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{name}: not a regular file"),
        ));
    }
    // Back to blocking reads for a regular file (no effect on them anyway).
    nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()))
        .map_err(io::Error::from)?;
    Ok(f)
}

/// The whole regular file `name`, or None if it does not exist. Larger
/// than `max` bytes is an error (InvalidData).
pub fn read_bounded(dir: &File, name: &str, max: usize) -> io::Result<Option<Vec<u8>>> {
    let f = match open_file(dir, name) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    f.take(max as u64 + 1).read_to_end(&mut out)?;
    if out.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{name}: larger than {max} bytes"),
        ));
    }
    Ok(Some(out))
}

/// Create `name` in `dir` with O_EXCL (no link followed), read-write.
pub fn create_excl(dir: &File, name: &str, mode: u32) -> io::Result<File> {
    privilege::open_at(
        Some(dir),
        Path::new(name),
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
        mode,
    )
}

/// unlinkat a file; a missing one is fine.
pub fn unlink(dir: &File, name: &str) -> io::Result<bool> {
    match nix::unistd::unlinkat(
        Some(dir.as_raw_fd()),
        Path::new(name),
        UnlinkatFlags::NoRemoveDir,
    ) {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// renameat, replacing or not.
pub fn rename(
    from_dir: &File,
    from: &str,
    to_dir: &File,
    to: &str,
    replace: common::durable::Replace,
) -> io::Result<()> {
    common::durable::rename_at(
        Some(from_dir),
        Path::new(from),
        Some(to_dir),
        Path::new(to),
        replace,
    )
}

/// A hard link `to` (in `to_dir`) of `from` (in `from_dir`), not following
/// a link at `from`.
pub fn link(from_dir: &File, from: &str, to_dir: &File, to: &str) -> io::Result<()> {
    nix::unistd::linkat(
        Some(from_dir.as_raw_fd()),
        Path::new(from),
        Some(to_dir.as_raw_fd()),
        Path::new(to),
        AtFlags::empty(),
    )
    .map_err(io::Error::from)
}

/// mkdirat with `mode` (the umask applied; fixed with fchmod by callers
/// that care).
pub fn mkdir(dir: &File, name: &str, mode: u32) -> io::Result<()> {
    nix::sys::stat::mkdirat(
        Some(dir.as_raw_fd()),
        Path::new(name),
        Mode::from_bits_truncate(mode),
    )
    .map_err(io::Error::from)
}

/// Deepest tree `remove_tree` goes into (a folder is its directory and
/// cur/ new/ tmp/; anything much deeper was put there to make us work).
const MAX_DEPTH: usize = 8;

/// Remove the directory `name` in `dir` and everything in it, through
/// descriptors: links are unlinked, not followed.
pub fn remove_tree(dir: &File, name: &str) -> io::Result<()> {
    remove_tree_depth(dir, name, 0)
}

fn remove_tree_depth(dir: &File, name: &str, depth: usize) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "{name}: directories nested more than {MAX_DEPTH} deep"
        )));
    }
    let sub = open_dir(dir, name)?;
    for e in list(&sub)? {
        match e.kind {
            Kind::Dir => remove_tree_depth(&sub, &e.name, depth + 1)?,
            _ => {
                unlink(&sub, &e.name)?;
            }
        }
    }
    match nix::unistd::unlinkat(
        Some(dir.as_raw_fd()),
        OsStr::from_bytes(name.as_bytes()),
        UnlinkatFlags::RemoveDir,
    ) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn links_are_not_followed() {
        let d = std::env::temp_dir().join(format!("posthorn-fsat-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("box/sub/deeper")).unwrap();
        fs::create_dir_all(d.join("outside")).unwrap();
        fs::write(d.join("outside/keep"), b"keep").unwrap();
        fs::write(d.join("box/file"), b"data").unwrap();
        std::os::unix::fs::symlink(d.join("outside"), d.join("box/sub/link")).unwrap();
        std::os::unix::fs::symlink(d.join("outside/keep"), d.join("box/flink")).unwrap();
        let top = File::open(&d).unwrap();
        let bx = open_dir(&top, "box").unwrap();
        assert!(open_file(&bx, "flink").is_err());
        assert!(open_dir(&bx, "sub/link").is_err());
        assert_eq!(read_bounded(&bx, "file", 4).unwrap().unwrap(), b"data");
        assert!(read_bounded(&bx, "file", 3).is_err());
        assert!(read_bounded(&bx, "missing", 3).unwrap().is_none());
        let mut names: Vec<_> = list(&bx)
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            names,
            [
                ("file".to_string(), Kind::File),
                ("flink".to_string(), Kind::Other),
                ("sub".to_string(), Kind::Dir)
            ]
        );
        remove_tree(&top, "box").unwrap();
        assert!(!d.join("box").exists());
        assert_eq!(fs::read(d.join("outside/keep")).unwrap(), b"keep");
        fs::remove_dir_all(&d).unwrap();
    }
}
