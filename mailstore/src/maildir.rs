//! Maildir delivery: tmp/, fsync, rename into new/, fsync new/.
//!
//! Owns the Maildir directory layout and unique file names
//! (`SECONDS.M<usec>P<pid>Q<n>.HOST,S=<size>`, the form Dovecot writes and
//! reads). Does not own who the mailbox belongs to (local delivery) or what
//! goes in the message (the caller streams it in).
//!
//! Standards: the Maildir specification (cr.yp.to/proto/maildir.html);
//! Dovecot's `,S=` size field.
//!
//! Durability: the file is written in tmp/, fsync'ed, renamed into new/, and
//! new/ is fsync'ed before `deliver` returns; a crash before that leaves at
//! most a file in tmp/, which readers ignore.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A Maildir: a directory with cur/, new/ and tmp/.
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
}

impl Maildir {
    /// A Maildir known to exist (no directories are created).
    pub fn existing(root: impl Into<PathBuf>) -> Maildir {
        Maildir { root: root.into() }
    }

    /// Open a Maildir, creating it (and its parents) with mode 0700 if needed.
    pub fn create(root: impl Into<PathBuf>) -> io::Result<Maildir> {
        let root = root.into();
        let mut b = fs::DirBuilder::new();
        b.recursive(true).mode(0o700);
        for sub in ["cur", "new", "tmp"] {
            b.create(root.join(sub))?;
        }
        Ok(Maildir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Start a delivery: a new file in tmp/.
    pub fn begin(&self) -> io::Result<Delivery> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let host = host_part();
        for _ in 0..10 {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let base = format!(
                "{}.M{}P{}Q{}.{host}",
                now.as_secs(),
                now.subsec_micros(),
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let tmp = self.root.join("tmp").join(&base);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
            {
                Ok(f) => {
                    return Ok(Delivery {
                        file: Some(io::BufWriter::with_capacity(64 * 1024, f)),
                        tmp,
                        base,
                        root: self.root.clone(),
                        size: 0,
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

/// The host name as Maildir file names carry it ('/' and ':' escaped), once.
fn host_part() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
            .replace('/', "\\057")
            .replace(':', "\\072")
    })
}

/// A message being written into tmp/. Dropped without `commit`, it is removed.
#[derive(Debug)]
pub struct Delivery {
    file: Option<io::BufWriter<File>>,
    tmp: PathBuf,
    base: String,
    root: PathBuf,
    size: u64,
    done: bool,
}

impl Delivery {
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.size += data.len() as u64;
        match self.file.as_mut() {
            Some(f) => f.write_all(data),
            None => Err(io::Error::other("delivery already finished")),
        }
    }

    /// fsync, rename into new/, fsync new/. Returns the final path.
    pub fn commit(mut self) -> io::Result<PathBuf> {
        let f = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("delivery already finished"))?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        let dest = self
            .root
            .join("new")
            .join(format!("{},S={}", self.base, self.size));
        fs::rename(&self.tmp, &dest)?;
        self.done = true;
        File::open(self.root.join("new"))?.sync_all()?;
        Ok(dest)
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.done {
            self.file.take();
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliver_and_abort() {
        let dir = std::env::temp_dir().join(format!("posthorn-maildir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let md = Maildir::create(dir.join("a/b/Maildir")).unwrap();
        let mut d = md.begin().unwrap();
        d.write(b"Subject: x\n\nhello\n").unwrap();
        let p = d.commit().unwrap();
        assert!(p.starts_with(md.root().join("new")));
        assert!(p.to_str().unwrap().ends_with(",S=18"));
        assert_eq!(fs::read(&p).unwrap(), b"Subject: x\n\nhello\n");
        let mut d = md.begin().unwrap();
        d.write(b"partial").unwrap();
        drop(d);
        assert_eq!(fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(md.root().join("new")).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
