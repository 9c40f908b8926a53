//! A test's directory under the system temp directory, removed when the
//! test ends (dropped, also when the test panics), so runs leave nothing in
//! /tmp. Shared by the integration tests (`mod tempdir;`); not every test
//! uses every part.
#![allow(dead_code)]

use std::ops::Deref;
use std::path::{Path, PathBuf};

/// `$TMPDIR/posthorn-imapd-PREFIX-NAME-PID`, empty at the start.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str, name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "posthorn-imapd-{prefix}-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `Maildir` in a `TempDir`: derefs to the Maildir's path.
pub struct TempMaildir {
    _dir: TempDir,
    maildir: PathBuf,
}

impl TempMaildir {
    pub fn new(prefix: &str, name: &str) -> TempMaildir {
        let dir = TempDir::new(prefix, name);
        let maildir = dir.join("Maildir");
        TempMaildir { _dir: dir, maildir }
    }
}

impl Deref for TempMaildir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.maildir
    }
}

/// A value (a session on the Maildir) that keeps its directory alive:
/// derefs to the value; the directory goes when it is dropped.
pub struct Held<T> {
    value: T,
    _dir: TempMaildir,
}

impl<T> Held<T> {
    pub fn new(value: T, dir: TempMaildir) -> Held<T> {
        Held { value, _dir: dir }
    }
}

impl<T> Deref for Held<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> std::ops::DerefMut for Held<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}
