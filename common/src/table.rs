//! Lookup tables in text files: Postfix's `texthash:` semantics.
//!
//! Owns reading the tables a parameter names (transport_maps,
//! smtp_tls_policy_maps, smtpd_sender_login_maps, ...): one `key value`
//! per line, `#` comments and blank lines ignored, a line that starts with
//! white space continuing the one before, keys compared in lower case. The
//! files are read into memory and read again when one changes (its size,
//! modification time or inode), so there is no postmap step; `texthash:`,
//! `hash:`, `lmdb:` and a bare path all name the text file. What a key
//! means and the order of keys to try are the caller's.
//!
//! Diagnostics: a bad line (no value, or a value the caller's parser
//! refuses) is skipped with `warning: FILE, line N: why`; the rest of the
//! table stands. A file that cannot be read is a warning (once until it
//! changes) and answers nothing until it can be read.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::warning;

/// How often the files are looked at for changes.
const RECHECK: Duration = Duration::from_secs(1);

/// A parameter's tables, each value parsed into a `V`.
pub struct Tables<V> {
    tables: Vec<Table<V>>,
    parse: fn(&str) -> Result<V, String>,
    checked: Option<Instant>,
}

struct Table<V> {
    path: PathBuf,
    /// (modification time, size, inode) of what was read; None: unread.
    stamp: Option<(SystemTime, u64, u64)>,
    /// The last read failed (warned once).
    failed: bool,
    entries: HashMap<String, V>,
}

impl<V> std::fmt::Debug for Tables<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tables.iter().map(|t| &t.path))
            .finish()
    }
}

impl<V> Tables<V> {
    /// The tables `value` names (a parameter's value: comma or white space
    /// separated), read now; each value goes through `parse`.
    pub fn new(value: &str, parse: fn(&str) -> Result<V, String>) -> Tables<V> {
        let tables = value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|spec| Table {
                path: PathBuf::from(
                    ["texthash:", "hash:", "lmdb:"]
                        .iter()
                        .find_map(|p| spec.strip_prefix(p))
                        .unwrap_or(spec),
                ),
                stamp: None,
                failed: false,
                entries: HashMap::new(),
            })
            .collect();
        let mut t = Tables {
            tables,
            parse,
            checked: None,
        };
        t.refresh();
        t
    }

    /// No tables named.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Read again the tables whose files changed (looked at at most once a
    /// second).
    pub fn refresh(&mut self) {
        if self.checked.is_some_and(|t| t.elapsed() < RECHECK) {
            return;
        }
        self.checked = Some(Instant::now());
        for t in &mut self.tables {
            t.refresh(self.parse);
        }
    }

    /// The value of `key` (already in lower case) in the first table that
    /// has it.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.tables.iter().find_map(|t| t.entries.get(key))
    }

    /// The first of `keys` any table has (keys in order, each in every
    /// table in order).
    pub fn find<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> Option<&V> {
        keys.into_iter().find_map(|k| self.get(k))
    }

    /// The first table whose file cannot be read now (it answers nothing
    /// until it can), for callers that must not take "no entry" for an
    /// answer then.
    pub fn unreadable(&self) -> Option<&std::path::Path> {
        self.tables
            .iter()
            .find(|t| t.failed)
            .map(|t| t.path.as_path())
    }

    /// Look at the files now, whatever the time since the last look (tests).
    pub fn refresh_now(&mut self) {
        self.checked = None;
        self.refresh();
    }
}

impl<V> Table<V> {
    fn refresh(&mut self, parse: fn(&str) -> Result<V, String>) {
        use std::os::unix::fs::MetadataExt;
        let read = std::fs::metadata(&self.path).and_then(|meta| {
            let stamp = (
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                meta.len(),
                meta.ino(),
            );
            if self.stamp == Some(stamp) {
                return Ok(None);
            }
            std::fs::read(&self.path).map(|b| Some((stamp, b)))
        });
        match read {
            Ok(None) => {}
            Ok(Some((stamp, bytes))) => {
                let file = self.path.display().to_string();
                self.entries = parse_table(&file, &String::from_utf8_lossy(&bytes), parse, |w| {
                    warning!("{w}")
                });
                self.stamp = Some(stamp);
                self.failed = false;
            }
            Err(e) => {
                if !self.failed {
                    warning!("cannot read table {}: {e}", self.path.display());
                }
                self.failed = true;
                self.stamp = None;
                self.entries.clear();
            }
        }
    }
}

/// Parse a table's text: key (lower case) -> parsed value. Each bad line
/// goes to `warn` as `FILE, line N: why` and is skipped; a later line with
/// the same key wins, as in Postfix's texthash.
pub fn parse_table<V>(
    file: &str,
    text: &str,
    parse: fn(&str) -> Result<V, String>,
    mut warn: impl FnMut(String),
) -> HashMap<String, V> {
    let mut logical: Vec<(usize, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some((_, prev)) = logical.last_mut() {
                prev.push(' ');
                prev.push_str(trimmed);
                continue;
            }
        }
        logical.push((n + 1, trimmed.to_string()));
    }
    let mut out = HashMap::new();
    for (n, line) in logical {
        let Some((key, value)) = line.split_once(char::is_whitespace) else {
            warn(format!(
                "{file}, line {n}: expected format: key whitespace value"
            ));
            continue;
        };
        match parse(value.trim()) {
            Ok(v) => {
                out.insert(key.to_ascii_lowercase(), v);
            }
            Err(why) => warn(format!("{file}, line {n}: {why}")),
        }
    }
    out
}

/// The keys of a domain for tables with Postfix's parent matching off
/// (transport_maps, smtp_tls_policy_maps): `domain`, then `.parent` for
/// each parent (`.example.org` matches `a.b.example.org`, not
/// `example.org`).
pub fn domain_keys(domain: &str) -> Vec<String> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mut keys = Vec::new();
    if domain.is_empty() {
        return keys;
    }
    let mut rest = domain.as_str();
    while let Some((_, parent)) = rest.split_once('.') {
        keys.push(format!(".{parent}"));
        rest = parent;
    }
    keys.insert(0, domain);
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(v: &str) -> Result<String, String> {
        if v.contains('!') {
            Err(format!("bad value {v:?}"))
        } else {
            Ok(v.to_string())
        }
    }

    #[test]
    fn lines_comments_continuations_and_bad_lines() {
        let mut warnings = Vec::new();
        let t = parse_table(
            "/etc/t",
            "# comment\n\nKey1 value one\nkey2\n  continued value\nnovalue\nkey3 bang!\nkey1 again\n",
            any,
            |w| warnings.push(w),
        );
        assert_eq!(t["key1"], "again", "a later line wins");
        assert_eq!(t["key2"], "continued value");
        assert!(!t.contains_key("key3"));
        assert_eq!(
            warnings,
            [
                "/etc/t, line 6: expected format: key whitespace value",
                "/etc/t, line 7: bad value \"bang!\"",
            ]
        );
    }

    #[test]
    fn read_again_when_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("posthorn-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a");
        let b = dir.join("b");
        std::fs::write(&a, "x 1\n").unwrap();
        std::fs::write(&b, "x 2\ny 3\n").unwrap();
        let mut t = Tables::new(
            &format!("texthash:{}, hash:{}", a.display(), b.display()),
            any,
        );
        assert_eq!(
            t.get("x").map(String::as_str),
            Some("1"),
            "first table wins"
        );
        assert_eq!(t.find(["z", "y"]).map(String::as_str), Some("3"));
        std::fs::write(&a, "z 9\n").unwrap();
        t.refresh_now();
        assert_eq!(t.get("x").map(String::as_str), Some("2"));
        assert_eq!(t.get("z").map(String::as_str), Some("9"));
        std::fs::remove_file(&a).unwrap();
        t.refresh_now();
        assert_eq!(t.get("z"), None, "a file gone answers nothing");
        assert_eq!(t.unreadable(), Some(a.as_path()));
        assert!(Tables::new("", any).get("x").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn domain_keys_in_order() {
        assert_eq!(
            domain_keys("A.B.Example.ORG."),
            ["a.b.example.org", ".b.example.org", ".example.org", ".org"]
        );
        assert!(domain_keys("").is_empty());
    }
}
