//! The password database: the users file with each password field parsed
//! into its scheme, re-read when the file changes.
//!
//! Owns loading (common::users::parse_entries, then scheme::parse per
//! line), the decision whether an entry can log in at all (a known scheme;
//! PLAIN only with auth_allow_plain_passwords = yes), the dummy hash that
//! unknown users are verified against, and the generation number that tells
//! the verification cache the table changed. Does not own the file format
//! (common::users) or verification (scheme.rs, service.rs).
//!
//! Re-reading: the file's modification time, size and inode are looked at
//! at most once a second (as common::users::UserTable does); a changed file
//! is parsed whole and replaces the table only when it parses, so a file
//! that fails to parse keeps the old table.
//!
//! Security: the dummy is the first hashed password of the file (the scheme
//! and cost most users have, in practice; a PLAIN one only when the file
//! has nothing else), else a built-in ARGON2ID hash with doveadm's
//! parameters, so an unknown user costs what a known one costs.
//!
//! Diagnostics (warnings, each once per load): `FILE line N: USER: unknown
//! password scheme "X"; this user cannot log in`, `FILE: N users have PLAIN
//! passwords (the first on line L); refused because
//! auth_allow_plain_passwords = no`, and a parse error with file and line
//! (`...; keeping the previous table`).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::config::ConfigError;
use common::users::{self, User};
use common::warning;

use crate::scheme::{self, SchemeError, Stored};

/// Largest users file read (as common::users).
const MAX_FILE: u64 = 256 << 20;

/// The fallback dummy: ARGON2ID with doveadm's parameters (its password is
/// of no interest: the result of a dummy verification is thrown away).
const DUMMY: &str = "$argon2id$v=19$m=65536,t=3,p=1$LpEjiuxG3WMa+VieIQtJnQ$kSpD2tZXOhjlV0NT+6VcmBVfiwCsOEdWvkrtxtW1EOg";

/// One user of the table.
#[derive(Debug, Clone)]
pub struct PassEntry {
    pub user: User,
    /// The line it came from.
    pub line: usize,
    /// The parsed password field, or why it cannot be used.
    pub password: Result<Arc<Stored>, SchemeError>,
}

/// Why an entry cannot log in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("{0}")]
    Scheme(SchemeError),
    #[error("PLAIN passwords are refused (auth_allow_plain_passwords = no)")]
    PlainRefused,
}

type Stamp = (SystemTime, u64, u64);

/// The users file as auth sees it.
#[derive(Debug)]
pub struct PassDb {
    path: PathBuf,
    allow_plain: bool,
    users: HashMap<String, PassEntry>,
    dummy: Arc<Stored>,
    /// The file's stamp when last looked at (loaded, or failed to load).
    seen: Option<Stamp>,
    checked: Option<Instant>,
    generation: u64,
}

impl PassDb {
    /// An empty table for the file at `path`; `refresh` reads it.
    pub fn new(path: impl Into<PathBuf>, allow_plain: bool) -> PassDb {
        PassDb {
            path: path.into(),
            allow_plain,
            users: HashMap::new(),
            dummy: Arc::new(builtin_dummy()),
            seen: None,
            checked: None,
            generation: 0,
        }
    }

    /// Replace the table with `text` (named `file` in diagnostics).
    pub fn load_text(&mut self, file: &str, text: &str) -> Result<(), ConfigError> {
        let entries = users::parse_entries(file, text)?;
        let mut table = HashMap::with_capacity(entries.len());
        let mut plain = (0usize, 0usize);
        // The first hashed password; the first PLAIN one if there is none.
        let mut dummy: Option<Arc<Stored>> = None;
        for e in entries {
            let password = scheme::parse(&e.password).map(Arc::new);
            match &password {
                Err(err) => warning!(
                    "{file} line {}: {}: {err}; this user cannot log in",
                    e.line,
                    e.user.address
                ),
                Ok(s) => {
                    if matches!(**s, Stored::Plain(_)) {
                        if plain.0 == 0 {
                            plain.1 = e.line;
                        }
                        plain.0 += 1;
                    }
                    let hashed = !matches!(**s, Stored::Plain(_));
                    if dummy
                        .as_ref()
                        .is_none_or(|d| hashed && matches!(**d, Stored::Plain(_)))
                    {
                        dummy = Some(Arc::clone(s));
                    }
                }
            }
            table.insert(
                e.user.address.clone(),
                PassEntry {
                    user: e.user,
                    line: e.line,
                    password,
                },
            );
        }
        if plain.0 > 0 && !self.allow_plain {
            warning!(
                "{file}: {} users have PLAIN passwords (the first on line {}); refused because auth_allow_plain_passwords = no",
                plain.0,
                plain.1
            );
        }
        self.users = table;
        self.dummy = dummy.unwrap_or_else(|| Arc::new(builtin_dummy()));
        self.generation += 1;
        Ok(())
    }

    /// Re-read the file if it changed (looked at most once a second). A
    /// missing file is an empty table; a file that cannot be read or parsed
    /// leaves the table as it was, with a warning.
    pub fn refresh(&mut self) {
        if self
            .checked
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.checked = Some(Instant::now());
        let loc = self.path.display().to_string();
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.seen.is_some() || self.generation == 0 {
                    let _ = self.load_text(&loc, "");
                    self.seen = None;
                }
                return;
            }
            Err(e) => {
                warning!("{loc}: cannot read: {e}; keeping the previous table");
                return;
            }
        };
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
            meta.ino(),
        );
        if self.seen == Some(stamp) {
            return;
        }
        self.seen = Some(stamp);
        if meta.len() > MAX_FILE {
            warning!("{loc}: file too large; keeping the previous table");
            return;
        }
        let loaded = fs::read_to_string(&self.path)
            .map_err(|e| ConfigError {
                location: loc.clone(),
                message: format!("cannot read: {e}"),
            })
            .and_then(|text| self.load_text(&loc, &text));
        if let Err(e) = loaded {
            warning!("{e}; keeping the previous table");
        }
    }

    /// Look at the file at the next `refresh`, whenever that is.
    pub fn invalidate(&mut self) {
        self.checked = None;
    }

    /// A user by lower-case name.
    pub fn get(&self, name: &str) -> Option<&PassEntry> {
        self.users.get(name)
    }

    /// The password this entry logs in with, or why it cannot.
    pub fn usable<'a>(&self, e: &'a PassEntry) -> Result<&'a Arc<Stored>, Unusable> {
        match &e.password {
            Err(err) => Err(Unusable::Scheme(err.clone())),
            Ok(s) if matches!(**s, Stored::Plain(_)) && !self.allow_plain => {
                Err(Unusable::PlainRefused)
            }
            Ok(s) => Ok(s),
        }
    }

    /// What unknown users are verified against.
    pub fn dummy(&self) -> Arc<Stored> {
        Arc::clone(&self.dummy)
    }

    /// Changes whenever the table is replaced.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn builtin_dummy() -> Stored {
    match scheme::parse(DUMMY) {
        Ok(s) => s,
        // The constant parses (tested); a PLAIN dummy is the harmless fallback.
        Err(_) => Stored::Plain(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_dummy_is_argon2id() {
        assert_eq!(builtin_dummy().scheme(), scheme::Scheme::Argon2id);
    }

    #[test]
    fn load_keeps_old_table_on_errors_and_marks_unusable_users() {
        let dir = std::env::temp_dir().join(format!("posthorn-passdb-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users");
        let mut db = PassDb::new(&path, false);
        db.refresh();
        assert!(db.is_empty());
        let g0 = db.generation();
        fs::write(
            &path,
            "a@x:{SHA256-CRYPT}$5$fJGysRZIZEd3E.fB$SrMJNBjxsd6W5PlW6hGlFQ1oboKbUjikM.DTTuTuux9\nb@x:{PLAIN}pw\nc@x:{MD5}abc\n",
        )
        .unwrap();
        db.invalidate();
        db.refresh();
        assert_eq!(db.len(), 3);
        assert!(db.generation() > g0);
        assert_eq!(db.dummy().scheme(), scheme::Scheme::Sha256Crypt);
        assert!(db.usable(db.get("a@x").unwrap()).is_ok());
        assert_eq!(
            db.usable(db.get("b@x").unwrap()),
            Err(Unusable::PlainRefused)
        );
        assert!(matches!(
            db.usable(db.get("c@x").unwrap()),
            Err(Unusable::Scheme(SchemeError::Unknown(_)))
        ));
        // A broken file keeps the table; a repaired one replaces it.
        let g1 = db.generation();
        fs::write(&path, "a@x:x:notanumber\n").unwrap();
        db.invalidate();
        db.refresh();
        assert_eq!((db.len(), db.generation()), (3, g1));
        // Unchanged (and still broken): not parsed again.
        db.invalidate();
        db.refresh();
        assert_eq!(db.generation(), g1);
        fs::write(&path, "d@x:{PLAIN}pw\n").unwrap();
        db.invalidate();
        db.refresh();
        assert_eq!(db.len(), 1);
        assert!(db.get("a@x").is_none());
        // Without invalidate, a second look within a second does not read.
        fs::write(&path, "e@x:{PLAIN}pw\n").unwrap();
        db.refresh();
        assert!(db.get("e@x").is_none());
        // Gone: empty.
        fs::remove_file(&path).unwrap();
        db.invalidate();
        db.refresh();
        assert!(db.is_empty());
        let mut plain = PassDb::new(&path, true);
        plain.load_text("t", "b@x:{PLAIN}pw\n").unwrap();
        assert!(plain.usable(plain.get("b@x").unwrap()).is_ok());
        assert_eq!(plain.dummy().scheme(), scheme::Scheme::Plain);
        // A hashed password is the dummy even after a PLAIN one.
        plain
            .load_text("t", "b@x:{PLAIN}pw\nc@x:{BLF-CRYPT}$2y$04$l313bIvSeqRnCxLguaNCJ.Zyczp9nlaV84wcaIj3Hm5rBz51qILzy\n")
            .unwrap();
        assert_eq!(plain.dummy().scheme(), scheme::Scheme::BlfCrypt);
        fs::remove_dir_all(&dir).unwrap();
    }
}
