//! The users file: virtual mailbox users in Dovecot's passwd-file format.
//!
//! `user@domain:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields`
//!
//! Owns reading the names and the uid, gid and home fields (for smtpd's
//! recipient check and local delivery), and writing entries for
//! `posthorn user add`. The password field is skipped on reading: only the
//! auth service looks at hashes.
//!
//! Diagnostics: a malformed line is an error naming the file and line.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::config::ConfigError;
use crate::quota::Quota;

/// Largest users file we read.
const MAX_FILE: u64 = 256 << 20;

/// One user, without the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The address, lower case.
    pub address: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub home: Option<PathBuf>,
    /// From the extra fields (`userdb_quota_rule=*:storage=1G`).
    pub quota: Quota,
}

/// Parse users-file text into entries keyed by lower-case address.
pub fn parse(file: &str, text: &str) -> Result<HashMap<String, User>, ConfigError> {
    let mut users = HashMap::new();
    for (idx, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let err = |message: String| ConfigError {
            location: format!("{file} line {}", idx + 1),
            message,
        };
        // Seven fields split by ':'; the eighth, the extra fields, may
        // itself contain ':' (quota rules) and is split by white space.
        let fields: Vec<&str> = line.splitn(8, ':').collect();
        let address = fields[0].trim().to_ascii_lowercase();
        if address.is_empty() || address.contains(char::is_whitespace) {
            return Err(err(format!("bad user name {:?}", fields[0])));
        }
        let num = |i: usize, what: &str| -> Result<Option<u32>, ConfigError> {
            match fields.get(i).map(|s| s.trim()) {
                None | Some("") => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| err(format!("{what} {v:?} is not a number"))),
            }
        };
        let uid = num(2, "uid")?;
        let gid = num(3, "gid")?;
        let home = fields
            .get(5)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        if let Some(h) = &home {
            if !h.is_absolute() {
                return Err(err(format!(
                    "home {:?} is not an absolute path",
                    h.display()
                )));
            }
        }
        let mut quota = Quota::default();
        for field in fields.get(7).map_or("", |s| s.trim()).split_whitespace() {
            quota.apply_field(field).map_err(err)?;
        }
        users.insert(
            address.clone(),
            User {
                address,
                uid,
                gid,
                home,
                quota,
            },
        );
    }
    Ok(users)
}

/// A users file, re-read when it changes (checked at most once a second).
#[derive(Debug)]
pub struct UserTable {
    path: PathBuf,
    users: HashMap<String, User>,
    stamp: Option<(SystemTime, u64)>,
    checked: Option<Instant>,
}

impl UserTable {
    pub fn new(path: impl Into<PathBuf>) -> UserTable {
        UserTable {
            path: path.into(),
            users: HashMap::new(),
            stamp: None,
            checked: None,
        }
    }

    /// Re-read the file if it changed. A missing file is an empty table.
    pub fn refresh(&mut self) -> Result<(), ConfigError> {
        if self
            .checked
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return Ok(());
        }
        self.checked = Some(Instant::now());
        let loc = || self.path.display().to_string();
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.users.clear();
                self.stamp = None;
                return Ok(());
            }
            Err(e) => {
                return Err(ConfigError {
                    location: loc(),
                    message: format!("cannot read: {e}"),
                })
            }
        };
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        if self.stamp == Some(stamp) {
            return Ok(());
        }
        if meta.len() > MAX_FILE {
            return Err(ConfigError {
                location: loc(),
                message: "file too large".into(),
            });
        }
        let text = fs::read_to_string(&self.path).map_err(|e| ConfigError {
            location: loc(),
            message: format!("cannot read: {e}"),
        })?;
        self.users = parse(&loc(), &text)?;
        self.stamp = Some(stamp);
        Ok(())
    }

    /// Force the next `refresh` to look at the file.
    pub fn invalidate(&mut self) {
        self.checked = None;
    }

    /// Look up a lower-case address.
    pub fn get(&self, address: &str) -> Option<&User> {
        self.users.get(address)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Add or replace a user's line, atomically and durably (`durable::replace_file`).
/// `password` is the whole password field, e.g. `{SHA512-CRYPT}$6$...`.
pub fn upsert(path: &Path, address: &str, password: &str) -> io::Result<bool> {
    let address = address.to_ascii_lowercase();
    if address.contains([':', '\n', '\r']) || password.contains([':', '\n', '\r']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "':' and newlines are not allowed",
        ));
    }
    let old = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o640);
    let mut out = String::with_capacity(old.len() + 128);
    let mut replaced = false;
    for line in old.lines() {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if name == address && !line.trim_start().starts_with('#') {
            let rest: Vec<&str> = line.splitn(3, ':').collect();
            out.push_str(&format!("{address}:{password}"));
            if let Some(tail) = rest.get(2) {
                out.push(':');
                out.push_str(tail);
            } else {
                out.push_str("::::::");
            }
            replaced = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !replaced {
        out.push_str(&format!("{address}:{password}::::::\n"));
    }
    // Keep the owner and group (root:posthorn): smtpd reads the file as mail_owner.
    let owner = fs::metadata(path)
        .ok()
        .filter(|_| crate::privilege::is_root())
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.uid(), m.gid())
        });
    crate::durable::replace_file(path, out.as_bytes(), mode, owner)?;
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_fields() {
        let u = parse(
            "users",
            "# c\nDemo@Example.TEST:{PLAIN}x:1000:1001::/home/demo::\nb@x:{PLAIN}y\n",
        )
        .unwrap();
        let d = &u["demo@example.test"];
        assert_eq!(
            (d.uid, d.gid, d.home.as_deref()),
            (Some(1000), Some(1001), Some(Path::new("/home/demo")))
        );
        assert_eq!(u["b@x"].uid, None);
        let e = parse("users", "a@b:x:notnum\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "users line 1: uid \"notnum\" is not a number"
        );
        assert!(parse("users", "a@b:x:1:1::relative\n").is_err());
        let u = parse(
            "users",
            "q@x:{PLAIN}x:::::: userdb_quota_rule=*:storage=1M userdb_quota_rule2=*:messages=3\n",
        )
        .unwrap();
        assert_eq!(
            u["q@x"].quota,
            Quota {
                storage: Some(1 << 20),
                messages: Some(3)
            }
        );
        let e = parse("users", "\nq@x:{PLAIN}x::::::quota_rule=*:storage=x\n").unwrap_err();
        assert!(e.to_string().starts_with("users line 2: quota rule"), "{e}");
    }

    #[test]
    fn upsert_replaces() {
        let dir = std::env::temp_dir().join(format!("posthorn-users-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("users");
        let _ = fs::remove_file(&p);
        assert!(!upsert(&p, "A@x", "{PLAIN}1").unwrap());
        assert!(!upsert(&p, "b@x", "{PLAIN}2").unwrap());
        assert!(upsert(&p, "a@x", "{PLAIN}3").unwrap());
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "a@x:{PLAIN}3::::::\nb@x:{PLAIN}2::::::\n"
        );
        let mut t = UserTable::new(&p);
        t.refresh().unwrap();
        assert_eq!(t.len(), 2);
        assert!(upsert(&p, "bad:name", "x").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
