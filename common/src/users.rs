//! The users file: virtual mailbox users in Dovecot's passwd-file format,
//! and where a virtual user's mail lives.
//!
//! `user@domain:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields`
//!
//! Owns reading the file (names, the uid, gid and home fields, quota rules
//! in the extra fields, and the raw password field for the auth service,
//! which alone interprets it), the resolution of a virtual user to its
//! mailbox (home, Maildir, owner; shared by local delivery and auth, so the
//! two agree by construction), and the atomic edits of `posthorn user`.
//! Does not own password schemes (posthorn-auth's `scheme` module).
//!
//! Security: no mailbox is owned by uid 0 or gid 0: a user that resolves to
//! either gets default_privs' ids instead (and `default_privs` says so);
//! default_privs must not be privileged itself. Homes come only from the
//! file or from `$virtual_mailbox_base/DOMAIN/LOCALPART` with '/' and
//! leading dots taken out of the parts. New files are 0600; a rewritten
//! file keeps its mode and, as root, its owner.
//!
//! Diagnostics: a malformed line is an error naming the file and line;
//! resolution errors name the parameter that is wrong.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::addr;
use crate::config::{Config, ConfigError};
use crate::privilege;
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

/// One line of the users file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its line number (from 1), for diagnostics.
    pub line: usize,
    pub user: User,
    /// The password field as written (`{SCHEME}hash`, or a bare crypt hash).
    pub password: String,
}

/// Parse users-file text into its entries, in file order.
pub fn parse_entries(file: &str, text: &str) -> Result<Vec<Entry>, ConfigError> {
    let mut entries = Vec::new();
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
        entries.push(Entry {
            line: idx + 1,
            user: User {
                address,
                uid,
                gid,
                home,
                quota,
            },
            password: fields.get(1).map_or("", |s| s.trim()).to_string(),
        });
    }
    Ok(entries)
}

/// Parse users-file text into users keyed by lower-case address (a later
/// line for the same address replaces an earlier one). Password fields are
/// dropped.
pub fn parse(file: &str, text: &str) -> Result<HashMap<String, User>, ConfigError> {
    Ok(parse_entries(file, text)?
        .into_iter()
        .map(|e| (e.user.address.clone(), e.user))
        .collect())
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

/// Where a virtual user's mail goes: the same answer for local delivery and
/// auth's UserInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualMailbox {
    /// The home directory (absolute).
    pub home: PathBuf,
    /// `home/Maildir`.
    pub maildir: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// The uid or gid was 0 and was replaced by default_privs (this name).
    pub default_privs: Option<String>,
}

/// The Maildir below a virtual user's home.
pub const MAILDIR: &str = "Maildir";

/// Why a user cannot be given a mailbox owner or home (a configuration
/// problem: the caller answers "try again later" and logs this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{name} = {value:?}: only static:NUMBER is supported")]
    IdMap { name: &'static str, value: String },
    #[error("mail_owner {0:?} is not a user")]
    NoMailOwner(String),
    #[error("default_privs {0:?} is not a user")]
    NoDefaultPrivs(String),
    #[error("default_privs {name:?} is a privileged user (uid {uid} gid {gid})")]
    PrivilegedDefaultPrivs { name: String, uid: u32, gid: u32 },
    #[error("home {0:?} is not an absolute path (virtual_mailbox_base must be absolute)")]
    RelativeHome(PathBuf),
}

/// Resolve a virtual user: home from its entry or
/// `$virtual_mailbox_base/DOMAIN/LOCALPART`, Maildir/ below it, uid and gid
/// from the entry, else virtual_uid_maps/virtual_gid_maps, else mail_owner
/// (the current user when not root); 0 replaced by default_privs.
pub fn resolve_virtual(cfg: &Config, u: &User) -> Result<VirtualMailbox, ResolveError> {
    let owner = match (u.uid, u.gid) {
        (Some(uid), Some(gid)) => (uid, gid),
        _ => mailbox_owner(cfg)?,
    };
    let home = match &u.home {
        Some(h) => h.clone(),
        None => {
            let (local, domain) = addr::split(&u.address);
            PathBuf::from(cfg.get("virtual_mailbox_base"))
                .join(sanitize(domain))
                .join(sanitize(local))
        }
    };
    if !home.is_absolute() {
        return Err(ResolveError::RelativeHome(home));
    }
    let (uid, gid, default_privs) =
        unprivileged_ids(cfg, u.uid.unwrap_or(owner.0), u.gid.unwrap_or(owner.1))?;
    Ok(VirtualMailbox {
        maildir: home.join(MAILDIR),
        home,
        uid,
        gid,
        default_privs,
    })
}

/// Replace uid 0 and gid 0 by default_privs' ids; the third value names
/// default_privs when that happened.
pub fn unprivileged_ids(
    cfg: &Config,
    uid: u32,
    gid: u32,
) -> Result<(u32, u32, Option<String>), ResolveError> {
    if uid != 0 && gid != 0 {
        return Ok((uid, gid, None));
    }
    let name = cfg.get("default_privs");
    let Some(acct) = privilege::lookup_user(&name) else {
        return Err(ResolveError::NoDefaultPrivs(name));
    };
    if acct.uid == 0 || acct.gid == 0 {
        return Err(ResolveError::PrivilegedDefaultPrivs {
            name,
            uid: acct.uid,
            gid: acct.gid,
        });
    }
    Ok((
        if uid == 0 { acct.uid } else { uid },
        if gid == 0 { acct.gid } else { gid },
        Some(name),
    ))
}

/// Owner of virtual mailboxes without uid/gid in the users file.
fn mailbox_owner(cfg: &Config) -> Result<(u32, u32), ResolveError> {
    let stat = |name: &'static str| -> Result<Option<u32>, ResolveError> {
        let v = cfg.get(name);
        if v.is_empty() {
            return Ok(None);
        }
        v.strip_prefix("static:")
            .and_then(|n| n.trim().parse().ok())
            .map(Some)
            .ok_or(ResolveError::IdMap { name, value: v })
    };
    let uid = stat("virtual_uid_maps")?;
    let gid = stat("virtual_gid_maps")?;
    if let (Some(u), Some(g)) = (uid, gid) {
        return Ok((u, g));
    }
    let owner = if privilege::is_root() {
        let name = cfg.get("mail_owner");
        privilege::lookup_user(&name).ok_or(ResolveError::NoMailOwner(name))?
    } else {
        privilege::current_account()
    };
    Ok((uid.unwrap_or(owner.uid), gid.unwrap_or(owner.gid)))
}

/// A path component from an address part: no '/', no leading '.'.
pub fn sanitize(part: &str) -> String {
    let s: String = part
        .chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect();
    if s.starts_with('.') || s.is_empty() {
        format!("_{s}")
    } else {
        s
    }
}

/// An edit of the users file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// Add a user with this password field; an error if it exists.
    Add(&'a str),
    /// Set an existing user's password field; an error if it does not exist.
    Passwd(&'a str),
    /// Add the user or set its password field.
    Set(&'a str),
    /// Remove the user; an error if it does not exist.
    Delete,
}

/// Why an edit of the users file was not made.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} does not exist")]
    NoSuchUser(String),
    #[error("{0:?}: ':', white space and control characters are not allowed in a user name")]
    BadName(String),
    #[error("':' and control characters are not allowed in the password field")]
    BadPassword,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Make one change to the users file at `path`, atomically and durably
/// (`durable::replace_file`), under an exclusive lock on its directory so
/// that two edits do not lose one another. Returns whether the user existed.
/// Comments, other lines and the rest of a changed line (uid, gid, home,
/// extra fields) are kept as they were.
pub fn change(path: &Path, address: &str, change: Change) -> Result<bool, EditError> {
    let address = address.trim().to_ascii_lowercase();
    if address.is_empty()
        || address.contains(|c: char| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(EditError::BadName(address));
    }
    let password = match change {
        Change::Add(p) | Change::Passwd(p) | Change::Set(p) => Some(p),
        Change::Delete => None,
    };
    if password.is_some_and(|p| p.contains(|c: char| c == ':' || c.is_control())) {
        return Err(EditError::BadPassword);
    }
    let io_err = |source: io::Error| EditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let lock = fs::File::open(dir).map_err(io_err)?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io_err(e.into()))?;
    let old = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_err(e)),
    };
    let meta = fs::metadata(path).ok();
    let mode = meta
        .as_ref()
        .map_or(0o600, |m| m.permissions().mode() & 0o777);
    let mut out = String::with_capacity(old.len() + 128);
    let mut found = false;
    for line in old.lines() {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if found || name != address || line.trim_start().starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        found = true;
        let Some(password) = password else {
            continue; // Delete: the line goes.
        };
        if matches!(change, Change::Add(_)) {
            return Err(EditError::Exists(address));
        }
        out.push_str(&address);
        out.push(':');
        out.push_str(password);
        match line.splitn(3, ':').nth(2) {
            Some(tail) => {
                out.push(':');
                out.push_str(tail);
            }
            None => out.push_str("::::::"),
        }
        out.push('\n');
    }
    match (found, change) {
        (false, Change::Passwd(_) | Change::Delete) => return Err(EditError::NoSuchUser(address)),
        (false, Change::Add(p) | Change::Set(p)) => {
            out.push_str(&format!("{address}:{p}::::::\n"));
        }
        _ => {}
    }
    // Keep the owner (root in the package: the file is 0600 root, read by
    // auth and local delivery only).
    let owner = meta.filter(|_| privilege::is_root()).map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.uid(), m.gid())
    });
    crate::durable::replace_file(path, out.as_bytes(), mode, owner).map_err(io_err)?;
    Ok(found)
}

/// The addresses in the users file, in file order (a missing file has none).
pub fn list(path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ConfigError {
                location: path.display().to_string(),
                message: format!("cannot read: {e}"),
            })
        }
    };
    Ok(parse_entries(&path.display().to_string(), &text)?
        .into_iter()
        .map(|e| e.user.address)
        .collect())
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

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("posthorn-users-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn edits() {
        let dir = temp("edit");
        let p = dir.join("users");
        assert!(!change(&p, "A@x", Change::Add("{PLAIN}1")).unwrap());
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!change(&p, "b@x", Change::Set("{PLAIN}2")).unwrap());
        assert!(matches!(
            change(&p, "a@X", Change::Add("{PLAIN}9")),
            Err(EditError::Exists(a)) if a == "a@x"
        ));
        assert!(change(&p, "a@x", Change::Passwd("{PLAIN}3")).unwrap());
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "a@x:{PLAIN}3::::::\nb@x:{PLAIN}2::::::\n"
        );
        assert!(matches!(
            change(&p, "c@x", Change::Passwd("{PLAIN}3")),
            Err(EditError::NoSuchUser(_))
        ));
        // The rest of a line is kept; comments stay; the mode stays.
        fs::write(
            &p,
            "# users\na@x:{PLAIN}3:7:8::/h::userdb_quota_rule=*:storage=1M\nb@x:{PLAIN}2::::::\n",
        )
        .unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(change(&p, "A@x", Change::Passwd("{PLAIN}4")).unwrap());
        assert!(change(&p, "b@x", Change::Delete).unwrap());
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "# users\na@x:{PLAIN}4:7:8::/h::userdb_quota_rule=*:storage=1M\n"
        );
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(matches!(
            change(&p, "b@x", Change::Delete),
            Err(EditError::NoSuchUser(_))
        ));
        assert_eq!(list(&p).unwrap(), vec!["a@x".to_string()]);
        assert!(list(&dir.join("missing")).unwrap().is_empty());
        let mut t = UserTable::new(&p);
        t.refresh().unwrap();
        assert_eq!(t.len(), 1);
        assert!(matches!(
            change(&p, "bad:name", Change::Add("x")),
            Err(EditError::BadName(_))
        ));
        assert!(matches!(
            change(&p, "a b", Change::Add("x")),
            Err(EditError::BadName(_))
        ));
        assert!(matches!(
            change(&p, "c@x", Change::Add("x:y")),
            Err(EditError::BadPassword)
        ));
        assert!(matches!(
            change(&p, "c@x", Change::Add("x\ny")),
            Err(EditError::BadPassword)
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn entries_keep_the_password_field() {
        let e = parse_entries(
            "users",
            "# c\n\na@x:{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA::\nb@x\n",
        )
        .unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].line, e[0].password.as_str()),
            (3, "{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA")
        );
        assert_eq!((e[1].line, e[1].password.as_str()), (4, ""));
    }

    #[test]
    fn virtual_resolution() {
        let dir = temp("resolve");
        let text = "virtual_mailbox_base = /vmail\nvirtual_uid_maps = static:5000\nvirtual_gid_maps = static:5001\n";
        let mut cfg = Config::parse(&dir, "main.cf", text).unwrap();
        let u = parse(
            "users",
            "Demo@Example.TEST:x\nh@x:x:7:8::/srv/h::\nz@x:x:0:0::/srv/z::\n../.@x:x\n",
        )
        .unwrap();
        let m = resolve_virtual(&cfg, &u["demo@example.test"]).unwrap();
        assert_eq!(
            m,
            VirtualMailbox {
                home: PathBuf::from("/vmail/example.test/demo"),
                maildir: PathBuf::from("/vmail/example.test/demo/Maildir"),
                uid: 5000,
                gid: 5001,
                default_privs: None,
            }
        );
        let m = resolve_virtual(&cfg, &u["h@x"]).unwrap();
        assert_eq!(
            (m.maildir.as_path(), m.uid, m.gid),
            (Path::new("/srv/h/Maildir"), 7, 8)
        );
        let m = resolve_virtual(&cfg, &u["../.@x"]).unwrap();
        assert_eq!(m.home, Path::new("/vmail/x/_.._."));
        let nobody = privilege::lookup_user("nobody").expect("a nobody user");
        let m = resolve_virtual(&cfg, &u["z@x"]).unwrap();
        assert_eq!(
            (m.uid, m.gid, m.default_privs.as_deref()),
            (nobody.uid, nobody.gid, Some("nobody"))
        );
        cfg.set("default_privs", "root", "test");
        assert!(matches!(
            resolve_virtual(&cfg, &u["z@x"]),
            Err(ResolveError::PrivilegedDefaultPrivs { .. })
        ));
        cfg.set("virtual_uid_maps", "hash:/x", "test");
        assert_eq!(
            resolve_virtual(&cfg, &u["demo@example.test"])
                .unwrap_err()
                .to_string(),
            "virtual_uid_maps = \"hash:/x\": only static:NUMBER is supported"
        );
        cfg.set("virtual_uid_maps", "static:1", "test");
        cfg.set("virtual_mailbox_base", "relative", "test");
        assert!(matches!(
            resolve_virtual(&cfg, &u["demo@example.test"]),
            Err(ResolveError::RelativeHome(_))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
