//! main.cf: reading, `$name` expansion and typed access to parameters.
//!
//! Owns the syntax of main.cf (Postfix's: `name = value`, continuation lines
//! begin with white space, `#` comments at the start of a line) and the
//! conversion of values to numbers, sizes, times and lists. It does not own the
//! list of parameters: that is `params::PARAMS`.
//!
//! Diagnostics: every error names the file and line it comes from
//! (`/etc/posthorn/main.cf line 12: message_size_limit: "ten" is not a number`),
//! or the parameter's default when the value came from there.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::params;

/// A configuration error, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `file line N` or `default of NAME` or `-o option`.
    pub location: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone)]
struct Value {
    text: String,
    location: String,
}

/// The effective configuration: main.cf plus `-o` overrides plus defaults.
#[derive(Debug, Clone)]
pub struct Config {
    dir: PathBuf,
    values: HashMap<String, Value>,
    /// Names in the order main.cf gave them, for `posthorn config -n`.
    order: Vec<String>,
}

/// Most nested `$name` expansions before we call it a loop.
const MAX_EXPANSION_DEPTH: usize = 20;
/// Most `$name` substitutions in one value, and its longest expansion: a few
/// names that each use the next several times (`a = $b$b$b$b`, `b = $c$c$c$c`,
/// ...) would otherwise take exponential time and memory (found by fuzz/).
const MAX_SUBSTITUTIONS: usize = 1000;
const MAX_EXPANDED: usize = 1 << 20;
/// Longest main.cf we read; anything larger is a mistake, not a config.
const MAX_MAIN_CF: u64 = 4 << 20;

impl Config {
    /// Read `DIR/main.cf`. A missing file is an error; an empty one is fine.
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        Self::load_with(dir, &[])
    }

    /// Read `DIR/main.cf`, then apply `name=value` overrides (master.cf `-o`).
    pub fn load_with(dir: &Path, overrides: &[(String, String)]) -> Result<Config, ConfigError> {
        let path = dir.join("main.cf");
        let meta = std::fs::metadata(&path).map_err(|e| ConfigError {
            location: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        if meta.len() > MAX_MAIN_CF {
            return Err(ConfigError {
                location: path.display().to_string(),
                message: format!("file is larger than {MAX_MAIN_CF} bytes"),
            });
        }
        let text = std::fs::read(&path).map_err(|e| ConfigError {
            location: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        let text = String::from_utf8(text).map_err(|e| ConfigError {
            location: path.display().to_string(),
            message: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        })?;
        let mut cfg = Self::parse(dir, &path.display().to_string(), &text)?;
        for (name, value) in overrides {
            cfg.set(name, value, "-o option");
        }
        Ok(cfg)
    }

    /// Parse main.cf text. `file` names it in errors.
    pub fn parse(dir: &Path, file: &str, text: &str) -> Result<Config, ConfigError> {
        let mut cfg = Config {
            dir: dir.to_path_buf(),
            values: HashMap::new(),
            order: Vec::new(),
        };
        // (name, value, first line number)
        let mut current: Option<(String, String, usize)> = None;
        for (idx, line) in text.lines().enumerate() {
            let lineno = idx + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if trimmed.starts_with('#') {
                    continue;
                }
                match current.as_mut() {
                    Some((_, value, _)) => {
                        if !value.is_empty() {
                            value.push(' ');
                        }
                        value.push_str(trimmed);
                    }
                    None => {
                        return Err(ConfigError {
                            location: format!("{file} line {lineno}"),
                            message: "continuation line without a parameter before it".into(),
                        })
                    }
                }
                continue;
            }
            if let Some((name, value, at)) = current.take() {
                cfg.set(&name, &value, &format!("{file} line {at}"));
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err(ConfigError {
                    location: format!("{file} line {lineno}"),
                    message: format!("missing '=' after parameter name: {trimmed:?}"),
                });
            };
            let name = name.trim();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            {
                return Err(ConfigError {
                    location: format!("{file} line {lineno}"),
                    message: format!("bad parameter name {name:?}"),
                });
            }
            current = Some((name.to_string(), value.trim().to_string(), lineno));
        }
        if let Some((name, value, at)) = current.take() {
            cfg.set(&name, &value, &format!("{file} line {at}"));
        }
        Ok(cfg)
    }

    /// An empty configuration (all defaults) rooted at `dir`.
    pub fn defaults(dir: &Path) -> Config {
        Config {
            dir: dir.to_path_buf(),
            values: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// Set a value, as main.cf or `-o` would.
    pub fn set(&mut self, name: &str, value: &str, location: &str) {
        if !self.values.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.values.insert(
            name.to_string(),
            Value {
                text: value.to_string(),
                location: location.to_string(),
            },
        );
    }

    /// The configuration directory this was read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Names set explicitly, in main.cf order.
    pub fn explicit_names(&self) -> &[String] {
        &self.order
    }

    /// Explicit names that are not posthorn parameters, with where they were set.
    pub fn unknown_names(&self) -> Vec<(String, String)> {
        self.order
            .iter()
            .filter(|n| params::find(n).is_none())
            .map(|n| (n.clone(), self.values[n].location.clone()))
            .collect()
    }

    /// The unexpanded value: explicit, or the default.
    pub fn raw(&self, name: &str) -> String {
        if name == "config_directory" && !self.values.contains_key(name) {
            return self.dir.display().to_string();
        }
        match self.values.get(name) {
            Some(v) => v.text.clone(),
            None => match params::find(name) {
                // Postfix: mydomain is $myhostname less its first label.
                Some(p) if p.default == "@domain@" => {
                    // A myhostname that refers back to $mydomain must not recurse.
                    thread_local!(static BUSY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
                    if BUSY.with(|b| b.replace(true)) {
                        return builtin_default(p.default);
                    }
                    let h = self.get("myhostname");
                    BUSY.with(|b| b.set(false));
                    match h.split_once('.') {
                        Some((_, d)) if !d.is_empty() => d.to_string(),
                        _ => "localdomain".to_string(),
                    }
                }
                Some(p) => builtin_default(p.default),
                None => String::new(),
            },
        }
    }

    fn location(&self, name: &str) -> String {
        match self.values.get(name) {
            Some(v) => v.location.clone(),
            None => format!("default of {name}"),
        }
    }

    /// The expanded value of a parameter. Unknown names expand to "".
    pub fn get(&self, name: &str) -> String {
        match self.expanded(name) {
            Ok(v) => v,
            // A loop expands to the unexpanded text; `check` reports it.
            Err(_) => self.raw(name),
        }
    }

    /// Expand, reporting `$a -> $b -> $a` loops as errors.
    pub fn get_checked(&self, name: &str) -> Result<String, ConfigError> {
        self.expanded(name).map_err(|message| ConfigError {
            location: self.location(name),
            message: format!("{name}: {message}"),
        })
    }

    fn expanded(&self, name: &str) -> Result<String, String> {
        let mut budget = MAX_SUBSTITUTIONS;
        self.expand(&self.raw(name), 0, &mut budget)
    }

    /// Expand `text`; `budget` counts down the substitutions left.
    fn expand(&self, text: &str, depth: usize, budget: &mut usize) -> Result<String, String> {
        if depth > MAX_EXPANSION_DEPTH {
            return Err("parameter expansion loop (more than 20 levels of $name)".into());
        }
        if !text.contains('$') {
            return Ok(text.to_string());
        }
        let mut out = String::with_capacity(text.len());
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if out.len() > MAX_EXPANDED {
                return Err(format!(
                    "parameter expansion longer than {MAX_EXPANDED} bytes"
                ));
            }
            if bytes[i] != b'$' {
                let next = text[i..].find('$').map_or(text.len(), |n| i + n);
                out.push_str(&text[i..next]);
                i = next;
                continue;
            }
            i += 1;
            if i >= bytes.len() {
                out.push('$');
                break;
            }
            match bytes[i] {
                b'$' => {
                    out.push('$');
                    i += 1;
                }
                open @ (b'{' | b'(') => {
                    let close = if open == b'{' { '}' } else { ')' };
                    let Some(end) = text[i + 1..].find(close) else {
                        return Err(format!("unbalanced '{}' in {text:?}", open as char));
                    };
                    let inner = &text[i + 1..i + 1 + end];
                    i += end + 2;
                    // ${name?text}: text when name is non-empty; ${name:text}: when empty.
                    if let Some(pos) = inner.find(['?', ':']) {
                        let (name, rest) = inner.split_at(pos);
                        let value = self.substitute(name, depth, budget)?;
                        let alt = &rest[1..];
                        let use_alt = if rest.starts_with('?') {
                            !value.is_empty()
                        } else {
                            value.is_empty()
                        };
                        if use_alt {
                            out.push_str(&self.expand(alt, depth + 1, budget)?);
                        }
                    } else {
                        out.push_str(&self.substitute(inner, depth, budget)?);
                    }
                }
                _ => {
                    let start = i;
                    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_')
                    {
                        i += 1;
                    }
                    if start == i {
                        out.push('$');
                    } else {
                        out.push_str(&self.substitute(&text[start..i], depth, budget)?);
                    }
                }
            }
        }
        if out.len() > MAX_EXPANDED {
            return Err(format!(
                "parameter expansion longer than {MAX_EXPANDED} bytes"
            ));
        }
        Ok(out)
    }

    /// The expansion of `$name` inside a value at `depth`.
    fn substitute(&self, name: &str, depth: usize, budget: &mut usize) -> Result<String, String> {
        *budget = budget.checked_sub(1).ok_or_else(|| {
            format!(
                "parameter expansion too large (more than {MAX_SUBSTITUTIONS} $name substitutions)"
            )
        })?;
        self.expand(&self.raw(name), depth + 1, budget)
    }

    /// An error in parameter `name`'s value, located where it was set
    /// (for checks a daemon makes of its own parameters).
    pub fn invalid(&self, name: &str, message: String) -> ConfigError {
        self.bad(name, message)
    }

    fn bad(&self, name: &str, message: String) -> ConfigError {
        ConfigError {
            location: self.location(name),
            message: format!("{name}: {message}"),
        }
    }

    /// A non-negative whole number.
    pub fn int(&self, name: &str) -> Result<u64, ConfigError> {
        let v = self.get(name);
        v.trim()
            .parse::<u64>()
            .map_err(|_| self.bad(name, format!("{v:?} is not a whole number")))
    }

    /// A time: a number with an optional unit s, m, h, d or w (default s).
    pub fn time(&self, name: &str) -> Result<Duration, ConfigError> {
        self.time_with_unit(name, "s")
    }

    /// A time whose bare number is in `unit` (s, m, h, d or w), as
    /// Postfix's delay_warning_time counts hours.
    pub fn time_with_unit(&self, name: &str, unit: &str) -> Result<Duration, ConfigError> {
        let v = self.get(name);
        let bare = !v.trim().is_empty() && v.trim().bytes().all(|b| b.is_ascii_digit());
        let v = if bare {
            format!("{}{unit}", v.trim())
        } else {
            v
        };
        parse_time(&v).ok_or_else(|| {
            self.bad(
                name,
                format!("{v:?} is not a time (a number with unit s, m, h, d or w)"),
            )
        })
    }

    /// yes/no (also true/false, 1/0).
    pub fn bool(&self, name: &str) -> Result<bool, ConfigError> {
        let v = self.get(name);
        match v.trim().to_ascii_lowercase().as_str() {
            "yes" | "true" | "1" | "on" => Ok(true),
            "no" | "false" | "0" | "off" => Ok(false),
            _ => Err(self.bad(name, format!("{v:?} is not yes or no"))),
        }
    }

    /// One of a fixed set of words (case-insensitive), in lower case.
    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<String, ConfigError> {
        let v = self.get(name);
        let word = v.trim().to_ascii_lowercase();
        if allowed.contains(&word.as_str()) {
            Ok(word)
        } else {
            Err(self.bad(name, format!("{v:?} is not one of {}", allowed.join(", "))))
        }
    }

    /// A list separated by commas and/or white space.
    pub fn list(&self, name: &str) -> Vec<String> {
        split_list(&self.get(name))
    }

    /// Check every known parameter's value against the type its default has,
    /// and every expansion for loops. Returns all problems found.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for p in params::PARAMS {
            if let Err(e) = self.get_checked(p.name) {
                errors.push(e);
                continue;
            }
            let r = match kind_of_default(p.default) {
                Kind::Int => self.int(p.name).map(drop),
                Kind::Time => self.time(p.name).map(drop),
                Kind::Bool => self.bool(p.name).map(drop),
                Kind::Text => Ok(()),
            };
            if let Err(e) = r {
                errors.push(e);
            }
        }
        if let Err(e) = crate::net::Networks::parse(&self.get("mynetworks")) {
            errors.push(self.bad("mynetworks", e));
        }
        if let Err(e) = self.one_of("mta_sts_mode", &["enforce", "testing", "none"]) {
            errors.push(e);
        }
        // RFC 8461 3.2: max_age is at most 31557600 seconds.
        if self.int("mta_sts_max_age").is_ok_and(|a| a > 31_557_600) {
            errors.push(self.bad(
                "mta_sts_max_age",
                "more than 31557600 seconds (RFC 8461 3.2)".into(),
            ));
        }
        errors
    }

    // Derived paths used by several programs.

    pub fn queue_dir(&self) -> PathBuf {
        PathBuf::from(self.get("queue_directory"))
    }

    pub fn pid_file(&self) -> PathBuf {
        PathBuf::from(self.get("pid_directory")).join("master.pid")
    }

    /// The path of the passwd-file named by virtual_mailbox_maps.
    pub fn users_file(&self) -> PathBuf {
        let v = self.get("virtual_mailbox_maps");
        PathBuf::from(v.strip_prefix("passwd-file:").unwrap_or(&v))
    }
}

enum Kind {
    Int,
    Time,
    Bool,
    Text,
}

fn kind_of_default(default: &str) -> Kind {
    if default.is_empty() {
        Kind::Text
    } else if default.bytes().all(|b| b.is_ascii_digit()) {
        Kind::Int
    } else if default == "yes" || default == "no" {
        Kind::Bool
    } else if parse_time(default).is_some() {
        Kind::Time
    } else {
        Kind::Text
    }
}

/// `300s`, `5m`, `4h`, `5d`, `1w`, `30` (seconds).
pub fn parse_time(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(pos) => v.split_at(pos),
        None => (v, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(mult)?))
}

/// Split on commas and white space, dropping empty items.
pub fn split_list(v: &str) -> Vec<String> {
    v.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Defaults computed at run time.
pub fn builtin_default(default: &str) -> String {
    match default {
        "@hostname@" => hostname(),
        "@domain@" => {
            let h = hostname();
            match h.split_once('.') {
                Some((_, d)) if !d.is_empty() => d.to_string(),
                _ => "localdomain".to_string(),
            }
        }
        d => d.to_string(),
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::parse(Path::new("/etc/posthorn"), "main.cf", text).expect("parses")
    }

    #[test]
    fn expansion_forms() {
        let c = cfg("myhostname = mx.example.org\nmydomain = example.org\na = ${mydomain?set} ${nope:empty} $(mydomain) $$x\n");
        assert_eq!(c.get("myorigin"), "mx.example.org");
        assert_eq!(
            c.get("mydestination"),
            "mx.example.org, localhost.example.org, localhost"
        );
        assert_eq!(c.get("a"), "set empty example.org $x");
        assert_eq!(
            c.get("virtual_mailbox_maps"),
            "passwd-file:/etc/posthorn/users"
        );
    }

    #[test]
    fn continuation_and_comments() {
        let c = cfg("# comment\nmydestination = a,\n  b\n  # inner comment\n\tc\n");
        assert_eq!(c.list("mydestination"), vec!["a", "b", "c"]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = Config::parse(Path::new("/x"), "main.cf", "a = 1\nthis is wrong\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "main.cf line 2: missing '=' after parameter name: \"this is wrong\""
        );
        let e = Config::parse(Path::new("/x"), "main.cf", "  b\n").unwrap_err();
        assert_eq!(e.location, "main.cf line 1");
        let c = cfg("x = 1\nmessage_size_limit = ten\n");
        assert_eq!(
            c.int("message_size_limit").unwrap_err().to_string(),
            "main.cf line 2: message_size_limit: \"ten\" is not a whole number"
        );
    }

    #[test]
    fn loops_are_reported() {
        let c = cfg("a = $b\nb = $a\n");
        assert!(c.get_checked("a").unwrap_err().message.contains("loop"));
        assert!(cfg("myhostname = $myhostname\n")
            .validate()
            .iter()
            .any(|e| e.message.contains("loop")));
    }

    #[test]
    fn mta_sts_policy_values_are_checked() {
        let msgs = |t: &str| -> Vec<String> {
            cfg(t)
                .validate()
                .into_iter()
                .map(|e| e.to_string())
                .collect()
        };
        assert!(msgs("mta_sts_mode = Enforce\nmta_sts_max_age = 31557600\n").is_empty());
        assert_eq!(
            msgs("mta_sts_mode = strict\nmta_sts_max_age = 31557601\n"),
            [
                "main.cf line 1: mta_sts_mode: \"strict\" is not one of enforce, testing, none",
                "main.cf line 2: mta_sts_max_age: more than 31557600 seconds (RFC 8461 3.2)"
            ]
        );
    }

    /// fuzz/ main_cf: thirteen lines that each use the next name four times
    /// took 4^12 substitutions (minutes, and gigabytes with a few more lines).
    #[test]
    fn exponential_expansion_is_refused() {
        let mut text = String::new();
        for i in 0..12 {
            let next = format!("$a{}", i + 1);
            text.push_str(&format!("a{i} = {}\n", next.repeat(4)));
        }
        text.push_str("a12 = x\n");
        let c = cfg(&text);
        let started = std::time::Instant::now();
        let e = c.get_checked("a0").unwrap_err();
        assert!(e.message.contains("too large"), "{}", e.message);
        assert_eq!(c.get("a0"), "$a1$a1$a1$a1");
        // Fewer levels still expand.
        assert_eq!(c.get("a8"), "x".repeat(4usize.pow(4)));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // A long value used many times is cut off by length.
        let long = format!("b = {}\nc = {}\n", "y".repeat(4096), "$b".repeat(300));
        let e = cfg(&long).get_checked("c").unwrap_err();
        assert!(e.message.contains("longer than"), "{}", e.message);
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("300s"), Some(Duration::from_secs(300)));
        assert_eq!(parse_time("5d"), Some(Duration::from_secs(5 * 86400)));
        assert_eq!(parse_time("42"), Some(Duration::from_secs(42)));
        assert_eq!(parse_time("5x"), None);
        assert!(cfg("").validate().is_empty(), "{:?}", cfg("").validate());
        // A bare number in another unit (delay_warning_time: hours).
        let c = cfg("delay_warning_time = 4\nmaximal_queue_lifetime = 90s\n");
        let hours = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(
            c.time_with_unit("delay_warning_time", "h").unwrap(),
            hours(4)
        );
        assert_eq!(
            c.time_with_unit("maximal_queue_lifetime", "h").unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            c.time("delay_warning_time").unwrap(),
            Duration::from_secs(4)
        );
        assert!(cfg("delay_warning_time = 4x\n")
            .time_with_unit("delay_warning_time", "h")
            .is_err());
    }

    #[test]
    fn mydomain_follows_myhostname() {
        assert_eq!(
            cfg("myhostname = mx.example.org\n").get("mydomain"),
            "example.org"
        );
        assert_eq!(cfg("myhostname = single\n").get("mydomain"), "localdomain");
        // A loop through mydomain's default ends instead of recursing forever.
        let c = cfg("myhostname = mail.$mydomain\n");
        assert!(!c.get("mydomain").is_empty());
    }

    #[test]
    fn unknown_names_are_listed() {
        let c = cfg("mydomain = x\nbogus_param = 1\n");
        assert_eq!(
            c.unknown_names(),
            vec![("bogus_param".to_string(), "main.cf line 2".to_string())]
        );
    }
}
