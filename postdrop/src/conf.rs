//! The few main.cf parameters postdrop needs, read without `common`.
//!
//! Owns a small reader of Postfix's main.cf syntax (`name = value`, `#`
//! comments, continuation lines that start with white space, `$name`,
//! `${name}` and `$(name)` expansion) for queue_directory,
//! message_size_limit and alternate_config_directories. Does not own the
//! full parameter table (common::params; the defaults here must match it,
//! which a test in pickup checks).
//!
//! Security: main.cf is root's file; it is read with bounds anyway (at most
//! MAX_FILE bytes, expansion at most MAX_DEPTH deep).

use std::collections::HashMap;

/// Largest main.cf read.
const MAX_FILE: u64 = 1 << 20;
/// Deepest `$name` expansion.
const MAX_DEPTH: usize = 16;

/// Defaults of what postdrop reads (common::params has the same).
pub const DEFAULTS: &[(&str, &str)] = &[
    ("queue_directory", "/var/spool/posthorn"),
    ("message_size_limit", "10240000"),
    ("alternate_config_directories", ""),
];

/// Parsed main.cf values.
#[derive(Debug, Default, Clone)]
pub struct MainCf {
    values: HashMap<String, String>,
}

impl MainCf {
    /// Read `dir/main.cf`.
    pub fn load(dir: &std::path::Path) -> std::io::Result<MainCf> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(dir.join("main.cf"))?
            .take(MAX_FILE)
            .read_to_string(&mut text)?;
        Ok(MainCf::parse(&text))
    }

    pub fn parse(text: &str) -> MainCf {
        let mut values = HashMap::new();
        let mut current: Option<(String, String)> = None;
        for line in text.lines() {
            if line.trim_start().starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = current.as_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                continue;
            }
            if let Some((k, v)) = current.take() {
                values.insert(k, v);
            }
            if let Some((k, v)) = line.split_once('=') {
                current = Some((k.trim().to_string(), v.trim().to_string()));
            }
        }
        if let Some((k, v)) = current {
            values.insert(k, v);
        }
        MainCf { values }
    }

    /// A parameter's value, expanded.
    pub fn get(&self, name: &str) -> String {
        self.expand(&self.raw(name), 0)
    }

    fn raw(&self, name: &str) -> String {
        self.values.get(name).cloned().unwrap_or_else(|| {
            DEFAULTS
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(String::new(), |(_, d)| d.to_string())
        })
    }

    fn expand(&self, v: &str, depth: usize) -> String {
        if depth > MAX_DEPTH || !v.contains('$') {
            return v.to_string();
        }
        let mut out = String::new();
        let mut rest = v;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, tail) = match after.chars().next() {
                Some(open @ ('{' | '(')) => {
                    let close = if open == '{' { '}' } else { ')' };
                    match after.find(close) {
                        Some(j) => (&after[1..j], &after[j + 1..]),
                        None => (after, ""),
                    }
                }
                _ => {
                    let j = after
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(after.len());
                    (&after[..j], &after[j..])
                }
            };
            out.push_str(&self.expand(&self.raw(name), depth + 1));
            rest = tail;
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_continuations_expansion() {
        let m = MainCf::parse(
            "# c\nbase = /srv\nqueue_directory = $base/spool\n\
             alternate_config_directories = /a,\n  ${base}/b\nmessage_size_limit=5\n",
        );
        assert_eq!(m.get("queue_directory"), "/srv/spool");
        assert_eq!(m.get("alternate_config_directories"), "/a, /srv/b");
        assert_eq!(m.get("message_size_limit"), "5");
        let d = MainCf::parse("loop = $loop\n");
        assert_eq!(d.get("queue_directory"), "/var/spool/posthorn");
        let _ = d.get("loop"); // bounded, no overflow
    }
}
