//! alias_maps: aliases(5) tables that map a local name to destinations.
//!
//! Owns reading the tables named by `alias_maps` (`hash:PATH`, `texthash:PATH`
//! or a bare PATH; all three read the aliases(5) source text at PATH directly,
//! there is no .db and no postalias step), looking a name up, the owner of
//! the table a name was found in (Postfix runs an alias's commands and file
//! deliveries with the table owner's rights, default_privs when that is
//! root), and splitting a destination list (an entry's right-hand side, a
//! ~/.forward or an :include: file) into destinations. A table is re-read
//! when its file changes. Does not own what a destination means
//! (posthorn-local's resolve.rs) nor who may receive mail (smtpd asks
//! `Aliases::contains` for local_recipient_maps' `$alias_maps` part).
//!
//! Standards: aliases(5) as Postfix reads it (name, colon, comma-separated
//! values; a line starting with white space continues the previous one;
//! `#` starts a comment line; double quotes around a name or a value that
//! holds commas, colons or white space).
//!
//! Security: tables come from the administrator; a table is at most
//! MAX_FILE bytes. `.forward` and `:include:` text is read by local
//! delivery with the user's rights and split here, at most MAX_FILE bytes.
//!
//! Diagnostics: a malformed line or an unreadable file is an `AliasError`
//! naming the file and line; local delivery defers the recipient, and
//! `newaliases` (`check`) prints every one.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Largest aliases, .forward or :include: file read.
pub const MAX_FILE: u64 = 64 << 20;

/// Why an alias lookup failed (the recipient is deferred).
#[derive(Debug, thiserror::Error)]
pub enum AliasError {
    #[error("alias_maps: {0:?}: only hash:, texthash: or a file name is supported")]
    Type(String),
    #[error("{file}, line {line}: {message}")]
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
    stamp: Option<(SystemTime, u64, u64)>,
    owner: (u32, u32),
    map: HashMap<String, Vec<String>>,
}

/// The tables of alias_maps, in order: the first that has a name wins.
#[derive(Debug)]
pub struct Aliases {
    tables: Vec<Table>,
    bad: Option<String>,
}

/// A name found in a table: its destinations and the table it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub values: Vec<String>,
    /// The table file's owner (uid, gid).
    pub owner: (u32, u32),
    pub file: PathBuf,
}

/// The path of one alias_maps item, or None when its type is not ours.
pub fn table_path(item: &str) -> Option<&str> {
    match item.split_once(':') {
        Some(("hash" | "texthash", p)) => Some(p),
        None if item.starts_with('/') => Some(item),
        _ => None,
    }
}

impl Aliases {
    /// From the value of alias_maps (comma or space separated).
    pub fn new(spec: &[String]) -> Aliases {
        let mut a = Aliases {
            tables: Vec::new(),
            bad: None,
        };
        for item in spec {
            let Some(path) = table_path(item) else {
                a.bad = Some(item.clone());
                continue;
            };
            a.tables.push(Table {
                path: PathBuf::from(path),
                stamp: None,
                owner: (0, 0),
                map: HashMap::new(),
            });
        }
        a
    }

    /// The values of `name` (lower-cased local part), if any table has it.
    pub fn lookup(&mut self, name: &str) -> Result<Option<Vec<String>>, AliasError> {
        Ok(self.find(name)?.map(|f| f.values))
    }

    /// `name` (a local part) with the table it was found in.
    pub fn find(&mut self, name: &str) -> Result<Option<Found>, AliasError> {
        if let Some(b) = &self.bad {
            return Err(AliasError::Type(b.clone()));
        }
        let name = name.to_ascii_lowercase();
        for t in &mut self.tables {
            t.refresh()?;
            if let Some(v) = t.map.get(&name) {
                return Ok(Some(Found {
                    values: v.clone(),
                    owner: t.owner,
                    file: t.path.clone(),
                }));
            }
        }
        Ok(None)
    }

    /// Does some table have `name`? A table that cannot be read counts
    /// as an error (smtpd answers 451).
    pub fn contains(&mut self, name: &str) -> Result<bool, AliasError> {
        Ok(self.find(name)?.is_some())
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
            meta.ino(),
        );
        if self.stamp == Some(stamp) {
            return Ok(());
        }
        if meta.len() > MAX_FILE {
            return Err(AliasError::Io(loc(), io::Error::other("file too large")));
        }
        let text = fs::read_to_string(&self.path).map_err(|e| AliasError::Io(loc(), e))?;
        let (map, mut errors) = parse_all(&self.path, &text);
        if !errors.is_empty() {
            return Err(errors.remove(0));
        }
        self.map = map;
        self.owner = (meta.uid(), meta.gid());
        self.stamp = Some(stamp);
        Ok(())
    }
}

/// Every problem of the alias_maps tables `spec` (what `newaliases`
/// prints): bad table types, unreadable files, malformed lines. A missing
/// file is no error (an empty table), as for delivery.
pub fn check(spec: &[String]) -> Vec<AliasError> {
    let mut out = Vec::new();
    for item in spec {
        let Some(path) = table_path(item) else {
            out.push(AliasError::Type(item.clone()));
            continue;
        };
        let path = Path::new(path);
        let text = match fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => Err(e),
            Ok(m) if m.len() > MAX_FILE => Err(io::Error::other("file too large")),
            Ok(_) => fs::read_to_string(path),
        };
        match text {
            Ok(t) => out.extend(parse_all(path, &t).1),
            Err(e) => out.push(AliasError::Io(path.display().to_string(), e)),
        }
    }
    out
}

/// Parse aliases(5) text: `name: value, value`, continuation lines start
/// with white space, `#` starts a comment line. The first error is
/// returned.
pub fn parse(file: &Path, text: &str) -> Result<HashMap<String, Vec<String>>, AliasError> {
    let (map, mut errors) = parse_all(file, text);
    if errors.is_empty() {
        Ok(map)
    } else {
        Err(errors.remove(0))
    }
}

/// Parse aliases(5) text into the good entries and an error for each bad
/// line (a later entry for the same name replaces an earlier one, as
/// postalias does with a warning).
pub fn parse_all(file: &Path, text: &str) -> (HashMap<String, Vec<String>>, Vec<AliasError>) {
    let syntax = |line, message| AliasError::Syntax {
        file: file.display().to_string(),
        line,
        message,
    };
    let mut errors = Vec::new();
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
                None => errors.push(syntax(i + 1, "continuation line without an entry".into())),
            }
        } else {
            entries.push((i + 1, line.to_string()));
        }
    }
    let mut map = HashMap::new();
    for (line, e) in entries {
        let Some((name, values)) = split_name(&e) else {
            errors.push(syntax(line, format!("no ':' after the name in {e:?}")));
            continue;
        };
        let name = name.to_ascii_lowercase();
        let values = split_values(values);
        if name.is_empty() || name.contains(char::is_whitespace) || values.is_empty() {
            errors.push(syntax(line, format!("bad entry {e:?}")));
            continue;
        }
        map.insert(name, values);
    }
    (map, errors)
}

/// `name: rest`, the name possibly in double quotes (then it may hold ':').
fn split_name(entry: &str) -> Option<(String, &str)> {
    if let Some(q) = entry.strip_prefix('"') {
        let end = q.find('"')?;
        let rest = q[end + 1..].trim_start().strip_prefix(':')?;
        return Some((q[..end].to_string(), rest));
    }
    let (name, rest) = entry.split_once(':')?;
    Some((name.trim().to_string(), rest))
}

/// Split a destination list at commas (and line ends) outside double
/// quotes; each destination trimmed, its quotes removed. Used for alias
/// values, ~/.forward and :include: files (`#` lines are comments there).
pub fn split_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    // A lone CR ends a line as LF does: no destination holds a line end
    // (found by fuzz/, aliases).
    for line in text.split(['\n', '\r']) {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let mut cur = String::new();
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    cur.push(c);
                }
                ',' if !quoted => {
                    push_value(&mut out, &cur);
                    cur.clear();
                }
                _ => cur.push(c),
            }
        }
        push_value(&mut out, &cur);
    }
    out
}

fn push_value(out: &mut Vec<String>, v: &str) {
    let v = v.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
        .trim();
    if !v.is_empty() {
        out.push(v.to_string());
    }
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
            "aliases, line 2: no ':' after the name in \"broken line\""
        );
        assert!(parse(Path::new("a"), "  leading: x\n").is_err());
        assert!(parse(Path::new("a"), "empty:\n").is_err());
    }

    #[test]
    fn quoted_destinations_keep_their_commas() {
        let m = parse(
            Path::new("aliases"),
            "prog: \"|/usr/bin/x -a, b\", /var/log/m, :include:/etc/list\n\"a:b\": c\n",
        )
        .unwrap();
        assert_eq!(
            m["prog"],
            vec!["|/usr/bin/x -a, b", "/var/log/m", ":include:/etc/list"]
        );
        assert_eq!(m["a:b"], vec!["c"]);
        assert_eq!(
            split_values("# list\nalice, bob\n\n\\carol\n"),
            vec!["alice", "bob", "\\carol"]
        );
    }

    #[test]
    fn every_error_is_reported() {
        let (m, e) = parse_all(Path::new("f"), " cont\nok: x\nbad\nempty:\n");
        assert_eq!(m.len(), 1);
        let lines: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            [
                "f, line 1: continuation line without an entry",
                "f, line 3: no ':' after the name in \"bad\"",
                "f, line 4: bad entry \"empty:\"",
            ]
        );
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
        let f = a.find("postmaster").unwrap().unwrap();
        let meta = fs::metadata(&p).unwrap();
        assert_eq!(f.owner, (meta.uid(), meta.gid()));
        assert_eq!(a.lookup("nobody-here").unwrap(), None);
        assert!(!a.contains("nobody-here").unwrap());
        let mut missing = Aliases::new(&["texthash:/nonexistent/aliases".to_string()]);
        assert_eq!(
            missing.lookup("root").unwrap(),
            None,
            "a missing file is empty"
        );
        let mut bad = Aliases::new(&["ldap:foo".to_string()]);
        assert!(matches!(bad.lookup("root"), Err(AliasError::Type(_))));
        fs::write(&p, "ok: x\nbroken\n").unwrap();
        let errors = check(&[format!("hash:{}", p.display()), "ldap:foo".into()]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
