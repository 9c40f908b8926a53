//! alias_maps, partly: aliases(5) files that map a local name to addresses.
//!
//! Owns reading the tables named by `alias_maps` (`hash:PATH`, `texthash:PATH`
//! or a bare PATH; all three read the aliases(5) source text at PATH directly,
//! there is no .db) and looking a name up. A table is re-read when its file
//! changes. Does not own what a target means (resolve.rs).
//!
//! Partial: only `name: address, address, ...` entries are supported, with
//! continuation lines and `#` comments. `|command`, `/file` and `:include:`
//! destinations are read but refused at delivery (the recipient is deferred
//! with a log line saying so). No `owner-` or `-request` handling.
//!
//! Standards: aliases(5) as Postfix reads it (name, colon, comma-separated
//! values; a line starting with white space continues the previous one).
//!
//! Diagnostics: a malformed line or an unreadable file is an `AliasError`
//! naming the file and line; the delivery is deferred.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Largest aliases file read.
const MAX_FILE: u64 = 64 << 20;

/// Why an alias lookup failed (the recipient is deferred).
#[derive(Debug, thiserror::Error)]
pub enum AliasError {
    #[error("alias_maps: {0:?}: only hash:, texthash: or a file name is supported")]
    Type(String),
    #[error("{file} line {line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{0}: {1}")]
    Io(String, io::Error),
}

#[derive(Debug)]
struct Table {
    path: PathBuf,
    stamp: Option<(SystemTime, u64)>,
    map: HashMap<String, Vec<String>>,
}

/// The tables of alias_maps, in order: the first that has a name wins.
#[derive(Debug)]
pub struct Aliases {
    tables: Vec<Table>,
    bad: Option<String>,
}

impl Aliases {
    /// From the value of alias_maps (comma or space separated).
    pub fn new(spec: &[String]) -> Aliases {
        let mut a = Aliases {
            tables: Vec::new(),
            bad: None,
        };
        for item in spec {
            let path = match item.split_once(':') {
                Some(("hash" | "texthash", p)) => p,
                None if item.starts_with('/') => item.as_str(),
                _ => {
                    a.bad = Some(item.clone());
                    continue;
                }
            };
            a.tables.push(Table {
                path: PathBuf::from(path),
                stamp: None,
                map: HashMap::new(),
            });
        }
        a
    }

    /// The values of `name` (lower-cased local part), if any table has it.
    pub fn lookup(&mut self, name: &str) -> Result<Option<Vec<String>>, AliasError> {
        if let Some(b) = &self.bad {
            return Err(AliasError::Type(b.clone()));
        }
        let name = name.to_ascii_lowercase();
        for t in &mut self.tables {
            t.refresh()?;
            if let Some(v) = t.map.get(&name) {
                return Ok(Some(v.clone()));
            }
        }
        Ok(None)
    }
}

impl Table {
    fn refresh(&mut self) -> Result<(), AliasError> {
        let loc = || self.path.display().to_string();
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.map.clear();
                self.stamp = None;
                return Ok(());
            }
            Err(e) => return Err(AliasError::Io(loc(), e)),
        };
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        if self.stamp == Some(stamp) {
            return Ok(());
        }
        if meta.len() > MAX_FILE {
            return Err(AliasError::Io(loc(), io::Error::other("file too large")));
        }
        let text = fs::read_to_string(&self.path).map_err(|e| AliasError::Io(loc(), e))?;
        self.map = parse(&self.path, &text)?;
        self.stamp = Some(stamp);
        Ok(())
    }
}

/// Parse aliases(5) text: `name: value, value`, continuation lines start
/// with white space, `#` starts a comment line.
pub fn parse(file: &Path, text: &str) -> Result<HashMap<String, Vec<String>>, AliasError> {
    // Join continuation lines first, remembering where each entry began.
    let mut entries: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match entries.last_mut() {
                Some((_, e)) => {
                    e.push(' ');
                    e.push_str(line.trim());
                }
                None => {
                    return Err(AliasError::Syntax {
                        file: file.display().to_string(),
                        line: i + 1,
                        message: "continuation line without an entry".into(),
                    })
                }
            }
        } else {
            entries.push((i + 1, line.to_string()));
        }
    }
    let mut map = HashMap::new();
    for (line, e) in entries {
        let Some((name, values)) = e.split_once(':') else {
            return Err(AliasError::Syntax {
                file: file.display().to_string(),
                line,
                message: format!("no ':' after the name in {e:?}"),
            });
        };
        let name = name.trim().trim_matches('"').to_ascii_lowercase();
        let values: Vec<String> = values
            .split(',')
            .map(|v| v.trim().trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if name.is_empty() || name.contains(char::is_whitespace) || values.is_empty() {
            return Err(AliasError::Syntax {
                file: file.display().to_string(),
                line,
                message: format!("bad entry {e:?}"),
            });
        }
        map.insert(name, values);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_continuations_and_comments() {
        let m = parse(
            Path::new("aliases"),
            "# comment\nPostmaster: root\nroot: alice,\n  bob@example.test\n\"abuse\": postmaster\n",
        )
        .unwrap();
        assert_eq!(m["postmaster"], vec!["root"]);
        assert_eq!(m["root"], vec!["alice", "bob@example.test"]);
        assert_eq!(m["abuse"], vec!["postmaster"]);
        let e = parse(Path::new("aliases"), "ok: x\nbroken line\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "aliases line 2: no ':' after the name in \"broken line\""
        );
        assert!(parse(Path::new("a"), "  leading: x\n").is_err());
        assert!(parse(Path::new("a"), "empty:\n").is_err());
    }

    #[test]
    fn map_types_and_lookup() {
        let dir = std::env::temp_dir().join(format!("posthorn-aliases-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("aliases");
        fs::write(&p, "postmaster: root\n").unwrap();
        let mut a = Aliases::new(&[format!("hash:{}", p.display())]);
        assert_eq!(
            a.lookup("PostMaster").unwrap(),
            Some(vec!["root".to_string()])
        );
        assert_eq!(a.lookup("nobody-here").unwrap(), None);
        let mut missing = Aliases::new(&["texthash:/nonexistent/aliases".to_string()]);
        assert_eq!(
            missing.lookup("root").unwrap(),
            None,
            "a missing file is empty"
        );
        let mut bad = Aliases::new(&["ldap:foo".to_string()]);
        assert!(matches!(bad.lookup("root"), Err(AliasError::Type(_))));
        fs::remove_dir_all(&dir).unwrap();
    }
}
