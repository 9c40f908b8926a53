//! Maildir delivery: tmp/, fsync, rename into new/, fsync new/.
//!
//! Owns delivering one message into a Maildir's new/ under a unique name
//! (`SECONDS.M<usec>P<pid>Q<n>.HOST,S=<size>,W=<vsize>`, the form Dovecot
//! writes and reads: S the bytes on disk, W the bytes with CRLF line ends,
//! so that readers need neither stat nor a pass over the file), the quota
//! check before a delivery is committed, and the maildirsize line after
//! it. Does not own who the mailbox belongs to (local delivery), what goes
//! in the message (the caller streams it in, with LF line ends), or UIDs
//! (folder.rs gives them when the folder is next synced).
//!
//! Standards: the Maildir specification (cr.yp.to/proto/maildir.html);
//! Maildir++ (`,S=`, maildirsize); Dovecot's `,W=`.
//!
//! Durability: the file is written in tmp/, then `common::durable::commit`
//! fsyncs it, renames it into new/ (never replacing a file) and fsyncs new/
//! before `commit` returns; a crash before that leaves at most a file in
//! tmp/, which readers ignore. A batch of deliveries goes in three steps
//! instead: `Delivery::prepare` (fsync, still in tmp/) for each, then
//! `Prepared::publish` (rename into new/) for each, then `Maildir::sync_new`
//! once, so a crash while the batch is written leaves nothing in new/.
//! Directories made on the way are fsync'ed into their parents.
//!
//! Security: everything is reached through directory descriptors with
//! *at() calls (`common::privilege::walk_dirs`): a symbolic link planted for
//! the Maildir, cur/, new/ or tmp/ is not followed unless root put it in a
//! root-owned directory, and message files are made with O_EXCL|O_NOFOLLOW.
//! The caller runs this with the mailbox owner's effective ids.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::durable::{self, Replace};
use common::privilege::{self, DirCreate};
use common::quota::Quota;
use common::warning;

use crate::error::StoreError;
use crate::filename::{self, VsizeCounter};
use crate::quota;

/// Mode of Maildir directories made at delivery.
const DIR_MODE: u32 = 0o700;

/// A Maildir: a directory with cur/, new/ and tmp/, held open.
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
    dir: Arc<File>,
    tmp: Arc<File>,
    new: Arc<File>,
}

impl Maildir {
    /// Open the Maildir `rel` below the directory `base` (a descriptor), with
    /// `walk_dirs`; with `create`, missing directories (the Maildir, its
    /// parents below `base`, cur/ new/ tmp/) are made with mode 0700 by the
    /// current effective user and fsync'ed into their parents. `display` is
    /// the Maildir's path, for messages.
    pub fn open_at(base: &File, rel: &Path, display: PathBuf, create: bool) -> io::Result<Maildir> {
        let how = create.then_some(DirCreate {
            mode: DIR_MODE,
            owner: None,
        });
        let md = privilege::walk_dirs(base, rel, how)?;
        let sub = |name: &str| privilege::walk_dirs(&md, Path::new(name), how);
        sub("cur")?;
        sub("new")?;
        // new/ is fsync'ed after every delivery: a real (not O_PATH)
        // descriptor, opened without following a link.
        let new = privilege::open_at(
            Some(&md),
            Path::new("new"),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            0,
        )?;
        Ok(Maildir {
            tmp: Arc::new(sub("tmp")?),
            new: Arc::new(new),
            dir: Arc::new(md),
            root: display,
        })
    }

    /// (device, inode) of new/, to check that a Maildir held open is still
    /// the one at its path.
    pub fn new_id(&self) -> io::Result<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = self.new.metadata()?;
        Ok((m.dev(), m.ino()))
    }

    /// Open a Maildir by absolute path (relative: below the current
    /// directory), creating it and its parents with mode 0700 if needed.
    pub fn create(root: impl Into<PathBuf>) -> io::Result<Maildir> {
        let root = root.into();
        let abs = if root.is_absolute() {
            root.clone()
        } else {
            std::env::current_dir()?.join(&root)
        };
        let top = privilege::open_dir_path(Path::new("/"), None)?;
        Maildir::open_at(&top, &abs, root, true)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Would a message of `bytes` bytes go over `quota`?
    /// (`StoreError::OverQuota` if so; reads or recalculates maildirsize.)
    pub fn check_quota(&self, quota: &Quota, bytes: u64) -> Result<(), StoreError> {
        quota::check(&self.dir, &self.root, quota, bytes, 1)
    }

    /// fsync new/: makes the names of `Prepared::publish` durable.
    pub fn sync_new(&self) -> io::Result<()> {
        privilege::sync_dir(&self.new)
    }

    /// Do `self` and `other` hold the same open new/ (one `sync_new` for both)?
    pub fn shares_new(&self, other: &Maildir) -> bool {
        Arc::ptr_eq(&self.new, &other.new)
    }

    /// Start a delivery: a new file in tmp/.
    pub fn begin(&self) -> io::Result<Delivery> {
        for _ in 0..10 {
            let base = filename::unique_base();
            match durable::create_new(Some(&self.tmp), Path::new(&base), 0o600) {
                Ok(f) => {
                    return Ok(Delivery {
                        file: Some(io::BufWriter::with_capacity(32 * 1024, f)),
                        base,
                        maildir: self.clone(),
                        size: VsizeCounter::default(),
                        done: false,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("could not create a unique file in tmp/"))
    }
}

/// A message being written into tmp/. Dropped without `commit`, it is removed.
#[derive(Debug)]
pub struct Delivery {
    file: Option<io::BufWriter<File>>,
    base: String,
    maildir: Maildir,
    size: VsizeCounter,
    done: bool,
}

impl Delivery {
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.size.add(data);
        match self.file.as_mut() {
            Some(f) => f.write_all(data),
            None => Err(io::Error::other("delivery already finished")),
        }
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size.size()
    }

    /// fsync, rename into new/ as `BASE,S=<size>,W=<vsize>` (never over an
    /// existing file), fsync new/, then add a line to maildirsize if there
    /// is one (a failure there is logged: the message is delivered).
    /// Returns the final path.
    pub fn commit(self) -> io::Result<PathBuf> {
        self.finish(true)
    }

    /// fsync the file, which stays in tmp/: complete on disk, invisible to
    /// readers, removed if the `Prepared` is dropped unpublished.
    pub fn prepare(mut self) -> io::Result<Prepared> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("delivery already finished"))?;
        f.flush()?;
        f.get_ref().sync_all()?;
        Ok(Prepared(self))
    }

    fn finish(mut self, sync_new: bool) -> io::Result<PathBuf> {
        let f = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("delivery already finished"))?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        let name = format!(
            "{},S={},W={}",
            self.base,
            self.size.size(),
            self.size.vsize()
        );
        let commit = if sync_new {
            durable::commit
        } else {
            rename_prepared
        };
        let r = commit(
            f,
            Some(&self.maildir.tmp),
            Path::new(&self.base),
            &self.maildir.new,
            Path::new(&name),
            Replace::No,
        );
        if !matches!(r, Err(durable::DurableError::Rename(_))) {
            self.done = true;
        }
        r?;
        let md = &self.maildir;
        if let Err(e) = quota::update(&md.dir, &md.root, self.size.size() as i64, 1) {
            warning!("{e}");
        }
        Ok(md.root.join("new").join(name))
    }
}

/// A delivery whose file is on disk in tmp/ (`Delivery::prepare`).
#[derive(Debug)]
pub struct Prepared(Delivery);

impl Prepared {
    /// Rename the file into new/ (never over an existing file). Its name is
    /// durable only after `Maildir::sync_new`, which the caller must call
    /// (once for several deliveries) before it reports any of them
    /// delivered. Returns the final path.
    pub fn publish(self) -> io::Result<PathBuf> {
        self.0.finish(false)
    }

    /// The Maildir it goes into.
    pub fn maildir(&self) -> &Maildir {
        &self.0.maildir
    }
}

/// `durable::commit`'s rename alone, for a file `Delivery::prepare`
/// has fsynced already (the caller fsyncs new/ later).
fn rename_prepared(
    file: File,
    tmp_dir: Option<&File>,
    tmp: &Path,
    dir: &File,
    name: &Path,
    replace: Replace,
) -> Result<(), durable::DurableError> {
    drop(file);
    durable::rename_at(tmp_dir, tmp, Some(dir), name, replace)
        .map_err(durable::DurableError::Rename)
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.done {
            self.file.take();
            let _ = nix::unistd::unlinkat(
                Some(self.maildir.tmp.as_raw_fd()),
                Path::new(&self.base),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn deliver_and_abort() {
        let dir = std::env::temp_dir().join(format!("posthorn-maildir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let md = Maildir::create(dir.join("a/b/Maildir")).unwrap();
        assert!(
            Maildir::create(dir.join("a/b/Maildir")).is_ok(),
            "opening again is fine"
        );
        let mut d = md.begin().unwrap();
        d.write(b"Subject: x\n\nhello\n").unwrap();
        let p = d.commit().unwrap();
        assert!(p.starts_with(md.root().join("new")));
        assert!(
            p.to_str().unwrap().ends_with(",S=18,W=21"),
            "{}",
            p.display()
        );
        assert_eq!(fs::read(&p).unwrap(), b"Subject: x\n\nhello\n");
        let mut d = md.begin().unwrap();
        d.write(b"partial").unwrap();
        drop(d);
        assert_eq!(fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(md.root().join("new")).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn prepared_deliveries_stay_in_tmp_until_published() {
        let dir =
            std::env::temp_dir().join(format!("posthorn-maildir-unsynced-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let md = Maildir::create(dir.join("Maildir")).unwrap();
        let again = md.clone();
        let other = Maildir::create(dir.join("Maildir")).unwrap();
        assert!(md.shares_new(&again));
        assert!(!md.shares_new(&other), "opened twice: two descriptors");
        let mut prepared = Vec::new();
        for i in 0..3 {
            let mut d = md.begin().unwrap();
            d.write(format!("Subject: {i}\n\n").as_bytes()).unwrap();
            prepared.push(d.prepare().unwrap());
        }
        assert_eq!(fs::read_dir(md.root().join("tmp")).unwrap().count(), 3);
        assert_eq!(fs::read_dir(md.root().join("new")).unwrap().count(), 0);
        // One dropped unpublished: gone from tmp/, never in new/.
        drop(prepared.pop());
        let paths: Vec<PathBuf> = prepared
            .into_iter()
            .map(|p| {
                assert!(p.maildir().shares_new(&md));
                p.publish().unwrap()
            })
            .collect();
        md.sync_new().unwrap();
        assert_eq!(paths.len(), 2);
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(fs::read(p).unwrap(), format!("Subject: {i}\n\n").as_bytes());
        }
        assert_eq!(fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn planted_links_are_not_followed() {
        let dir =
            std::env::temp_dir().join(format!("posthorn-maildir-links-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let elsewhere = dir.join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        if common::privilege::is_root() {
            // Root's own links in root's own directories are followed (an
            // administrator's): make the test directory someone else's.
            std::os::unix::fs::chown(&dir, Some(4242), Some(4242)).unwrap();
        }
        for sub in ["tmp", "new", "cur"] {
            let md = dir.join(format!("box-{sub}"));
            Maildir::create(&md).unwrap();
            if common::privilege::is_root() {
                std::os::unix::fs::chown(&md, Some(4242), Some(4242)).unwrap();
            }
            fs::remove_dir(md.join(sub)).unwrap();
            std::os::unix::fs::symlink(&elsewhere, md.join(sub)).unwrap();
            assert!(Maildir::create(&md).is_err(), "{sub} as a link is refused");
        }
        // The Maildir itself as a link (in a directory not owned by root, or
        // a link not owned by root).
        let md = dir.join("box-self");
        std::os::unix::fs::symlink(&elsewhere, &md).unwrap();
        assert!(
            Maildir::create(&md).is_err(),
            "Maildir as a link is refused"
        );
        assert_eq!(
            fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "nothing made at the target"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
