//! Where a recipient's mail goes: policy, no I/O but table look-ups.
//!
//! A recipient of virtual_mailbox_domains is a virtual user from the users
//! file: home from its entry or `$virtual_mailbox_base/DOMAIN/LOCALPART`,
//! Maildir/ below it, owner from its entry, virtual_uid_maps/virtual_gid_maps
//! or mail_owner. A recipient of mydestination is a system user (getpwnam):
//! `~/$home_mailbox`, Maildir when that ends in '/', else mbox; owned by the
//! user. Anything else is not ours to deliver.

use std::path::PathBuf;

use common::addr;
use common::config::Config;
use common::privilege::{self, Account};
use common::users::UserTable;

/// A resolved mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub path: PathBuf,
    pub maildir: bool,
    pub uid: u32,
    pub gid: u32,
    /// For virtual users whose home may need creating: (home, uid, gid).
    pub home: Option<PathBuf>,
    /// "virtual" or "local", for relay= in the log.
    pub relay: &'static str,
}

/// Why a recipient cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// 5.1.1: no such user.
    UnknownUser(String),
    /// 4.3.0: configuration or table problem, try later.
    Temporary(String),
    /// 5.3.0: not a domain we deliver for.
    NotLocal(String),
}

/// Resolve `address` to a mailbox.
pub fn resolve(cfg: &Config, users: &mut UserTable, address: &str) -> Result<Mailbox, Unresolved> {
    let key = addr::lookup_key(address, &cfg.get("recipient_delimiter"));
    let (local, domain) = addr::split(&key);
    if addr::domain_in(domain, &cfg.list("virtual_mailbox_domains")) {
        users
            .refresh()
            .map_err(|e| Unresolved::Temporary(format!("users file: {e}")))?;
        let Some(u) = users.get(&key) else {
            return Err(Unresolved::UnknownUser(format!("unknown user: \"{key}\"")));
        };
        let owner = mailbox_owner(cfg).map_err(Unresolved::Temporary)?;
        let home = u.home.clone().unwrap_or_else(|| {
            PathBuf::from(cfg.get("virtual_mailbox_base"))
                .join(sanitize(domain))
                .join(sanitize(local))
        });
        return Ok(Mailbox {
            path: home.join("Maildir"),
            maildir: true,
            uid: u.uid.unwrap_or(owner.0),
            gid: u.gid.unwrap_or(owner.1),
            home: Some(home),
            relay: "virtual",
        });
    }
    let mydest = cfg.list("mydestination");
    if domain.is_empty() || addr::domain_in(domain, &mydest) {
        let Some(acct) = privilege::lookup_user(local) else {
            return Err(Unresolved::UnknownUser(format!(
                "unknown user: \"{local}\""
            )));
        };
        let hm = cfg.get("home_mailbox");
        let maildir = hm.ends_with('/');
        return Ok(Mailbox {
            path: acct.home.join(hm.trim_end_matches('/')),
            maildir,
            uid: acct.uid,
            gid: acct.gid,
            home: None,
            relay: "local",
        });
    }
    Err(Unresolved::NotLocal(format!(
        "domain {domain} is not delivered locally"
    )))
}

/// Owner of virtual mailboxes without uid/gid in the users file.
fn mailbox_owner(cfg: &Config) -> Result<(u32, u32), String> {
    let stat = |name: &str| -> Result<Option<u32>, String> {
        let v = cfg.get(name);
        if v.is_empty() {
            return Ok(None);
        }
        v.strip_prefix("static:")
            .and_then(|n| n.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| format!("{name} = {v:?}: only static:NUMBER is supported"))
    };
    let uid = stat("virtual_uid_maps")?;
    let gid = stat("virtual_gid_maps")?;
    if let (Some(u), Some(g)) = (uid, gid) {
        return Ok((u, g));
    }
    let owner: Account = if privilege::is_root() {
        let name = cfg.get("mail_owner");
        privilege::lookup_user(&name).ok_or_else(|| format!("mail_owner {name:?} is not a user"))?
    } else {
        privilege::current_account()
    };
    Ok((uid.unwrap_or(owner.uid), gid.unwrap_or(owner.gid)))
}

/// A path component from an address part: no '/', no leading '.'.
fn sanitize(part: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn setup(name: &str) -> (Config, UserTable, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("posthorn-resolve-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("users"),
            "demo@example.test:{PLAIN}x::::\nhomed@example.test:x:7:8::/srv/h::\n",
        )
        .unwrap();
        let text = "virtual_mailbox_domains = example.test\nvirtual_mailbox_base = /vmail\nrecipient_delimiter = +\nmydestination = localhost\nvirtual_uid_maps = static:5000\nvirtual_gid_maps = static:5001\n";
        let cfg = Config::parse(&dir, "main.cf", text).unwrap();
        let users = UserTable::new(dir.join("users"));
        (cfg, users, dir)
    }

    #[test]
    fn virtual_users() {
        let (cfg, mut users, dir) = setup("v");
        let m = resolve(&cfg, &mut users, "Demo+tag@EXAMPLE.test").unwrap();
        assert_eq!(m.path, Path::new("/vmail/example.test/demo/Maildir"));
        assert_eq!(
            (m.uid, m.gid, m.maildir, m.relay),
            (5000, 5001, true, "virtual")
        );
        let m = resolve(&cfg, &mut users, "homed@example.test").unwrap();
        assert_eq!(
            (m.path.as_path(), m.uid, m.gid),
            (Path::new("/srv/h/Maildir"), 7, 8)
        );
        assert_eq!(
            resolve(&cfg, &mut users, "nobody@example.test"),
            Err(Unresolved::UnknownUser(
                "unknown user: \"nobody@example.test\"".into()
            ))
        );
        assert!(matches!(
            resolve(&cfg, &mut users, "x@elsewhere.org"),
            Err(Unresolved::NotLocal(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn system_users() {
        let (cfg, mut users, dir) = setup("s");
        let me = privilege::current_account();
        let m = resolve(&cfg, &mut users, &format!("{}@localhost", me.name)).unwrap();
        assert_eq!(m.path, me.home.join("Maildir"));
        assert_eq!(m.uid, me.uid);
        assert!(matches!(
            resolve(&cfg, &mut users, "no-such-user-xyz@localhost"),
            Err(Unresolved::UnknownUser(_))
        ));
        assert_eq!(sanitize("../x"), "_.._x");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
