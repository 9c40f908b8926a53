//! Where a recipient's mail goes: policy, no I/O but table look-ups.
//!
//! A recipient of virtual_mailbox_domains is a virtual user from the users
//! file: home from its entry or `$virtual_mailbox_base/DOMAIN/LOCALPART`,
//! Maildir/ below it, owner from its entry, virtual_uid_maps/virtual_gid_maps
//! or mail_owner (`common::users::resolve_virtual`, which auth uses too, so
//! the mailbox processes and delivery agree). A recipient of mydestination is first looked up in
//! alias_maps (common::aliases; the destinations are resolved in turn, up
//! to MAX_ALIAS_DEPTH deep: `destinations` gives mailboxes, commands,
//! files and addresses to forward, see `Dest`), then as a system user
//! (getpwnam), whose ~/.forward (forward.rs) lists destinations the same
//! way:
//! `~/$home_mailbox`, Maildir when that ends in '/', else mbox; with an
//! empty home_mailbox the mbox `$mail_spool_directory/USER` (Postfix's
//! default); owned by the user. An mbox is locked as mailbox_delivery_lock
//! says (`Mailbox::locking`). Anything else is not ours to deliver.
//!
//! With recipient_delimiter_folder = yes, a Maildir recipient's address
//! extension (`user+ext`) is kept as `Mailbox::folder`: deliver.rs files
//! the message in that folder when the user has it.
//!
//! postmaster (RFC 5321 4.5.1) always has a destination: `postmaster@` a
//! virtual domain without its own users-file entry is the local postmaster;
//! a local postmaster that is neither an alias nor a user is root.
//!
//! Security: no mailbox is written as uid 0 or gid 0. A recipient whose uid
//! (or gid) is 0 -- root, or a virtual user mapped to 0 -- gets the ids of
//! default_privs instead (Postfix's local(8) does this for deliveries to
//! files and commands); default_privs must not be root. Root's mailbox
//! normally is not writable by default_privs: that delivery is deferred with
//! a log line that says to alias root to a real user.

use std::path::{Path, PathBuf};

use common::addr;
use common::config::Config;
use common::privilege;
use common::quota::Quota;
use common::users::{self, UserTable};
use mailstore::mbox::Locking;

use crate::aliases::Aliases;

/// How deep aliases may point to aliases.
const MAX_ALIAS_DEPTH: usize = 10;

/// A resolved mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mailbox {
    /// The whole path, for log lines.
    pub path: PathBuf,
    /// The home directory, reached from "/" with `walk_dirs`.
    pub home: PathBuf,
    /// The mailbox below the home (relative), reached as the owner.
    pub below_home: PathBuf,
    /// Virtual users' homes are made when missing; system users' are not.
    pub create_home: bool,
    pub maildir: bool,
    pub uid: u32,
    pub gid: u32,
    /// The uid or gid was 0 and was replaced by default_privs (this name).
    pub default_privs: Option<String>,
    /// "virtual" or "local", for relay= in the log.
    pub relay: &'static str,
    /// The user's quota (virtual users: from the users file).
    pub quota: Quota,
    /// An mbox in mail_spool_directory (`home` is the spool, `below_home`
    /// the user's name): made and locked with the spool directory's group.
    pub spool: bool,
    /// How an mbox is locked (mailbox_delivery_lock and its waits).
    pub locking: Locking,
    /// The address extension, when recipient_delimiter_folder is on and
    /// this is a Maildir: the folder to file into if the user has it.
    pub folder: Option<String>,
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
    /// 5.4.6: aliases that point at each other too deep.
    Loop(String),
    /// 5.7.1: a command or file destination that allow_mail_to_commands or
    /// allow_mail_to_files does not allow here.
    Restricted(String),
}

/// The rights of a command or file delivery and the account its
/// environment describes (Postfix's usr_attr): an alias table's owner, a
/// .forward's user, an :include: file's owner; default_privs for root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privs {
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub home: PathBuf,
    pub shell: String,
}

/// Where a destination list came from (allow_mail_to_commands and
/// allow_mail_to_files name these classes, as Postfix's do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Alias,
    Forward,
    Include,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Alias => "alias",
            Class::Forward => "forward",
            Class::Include => "include",
        }
    }
}

/// One destination of a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A virtual or system user's mailbox.
    Mailbox(Mailbox),
    /// `|command`, run by /bin/sh -c with `privs`; `recipient` is the
    /// address whose alias or .forward named it (RECIPIENT, LOCAL, ...).
    Command {
        command: String,
        privs: Privs,
        recipient: String,
    },
    /// `/file` (mbox, locked as mailbox_delivery_lock says) or `/dir/`
    /// (Maildir), written with `privs`.
    File {
        path: PathBuf,
        privs: Privs,
        locking: Locking,
    },
    /// An address local delivery does not deliver itself: qmgr queues a
    /// copy for it.
    Forward(String),
}

/// The list a destination was found in.
struct Source {
    class: Class,
    privs: Privs,
    /// The address whose entry this is (for the command environment).
    recipient: String,
    /// Its local part (without extension) and domain, for "own name" entries.
    name: String,
    domain: String,
}

/// Everything `expand` reads.
struct Ctx<'a> {
    cfg: &'a Config,
    users: &'a mut UserTable,
    aliases: &'a mut Aliases,
}

/// Resolve `address` to its mailboxes, through alias_maps (no duplicates);
/// the mailboxes only (tests and callers that want no commands).
pub fn resolve_all(
    cfg: &Config,
    users: &mut UserTable,
    aliases: &mut Aliases,
    address: &str,
) -> Result<Vec<Mailbox>, Unresolved> {
    Ok(destinations(cfg, users, aliases, address)?
        .into_iter()
        .filter_map(|d| match d {
            Dest::Mailbox(m) => Some(m),
            _ => None,
        })
        .collect())
}

/// Resolve `address` to its destinations: alias_maps entries and the
/// user's ~/.forward (forward_path) expanded, local addresses in them
/// resolved in turn (up to MAX_ALIAS_DEPTH deep), the rest forwarded. No
/// duplicates.
pub fn destinations(
    cfg: &Config,
    users: &mut UserTable,
    aliases: &mut Aliases,
    address: &str,
) -> Result<Vec<Dest>, Unresolved> {
    let mut out = Vec::new();
    let mut ctx = Ctx {
        cfg,
        users,
        aliases,
    };
    expand(&mut ctx, address, 0, &mut out)?;
    Ok(out)
}

fn expand(
    ctx: &mut Ctx,
    address: &str,
    depth: usize,
    out: &mut Vec<Dest>,
) -> Result<(), Unresolved> {
    if depth > MAX_ALIAS_DEPTH {
        return Err(Unresolved::Loop(format!(
            "alias expansion of {address} is more than {MAX_ALIAS_DEPTH} deep"
        )));
    }
    let cfg = ctx.cfg;
    let delim = cfg.get("recipient_delimiter");
    let key = addr::lookup_key(address, &delim);
    let (local, domain) = addr::split(&key);
    let local_domain = domain.is_empty() || addr::domain_in(domain, &cfg.list("mydestination"));
    let virtual_domain = addr::domain_in(domain, &cfg.list("virtual_mailbox_domains"));
    if virtual_domain && local.eq_ignore_ascii_case("postmaster") {
        // RFC 5321 4.5.1: postmaster of every domain; the local one unless
        // the users file has this domain's own.
        ctx.users
            .refresh()
            .map_err(|e| Unresolved::Temporary(format!("users file: {e}")))?;
        if ctx.users.get(&key).is_none() {
            return expand(ctx, "postmaster", depth + 1, out);
        }
    }
    if local_domain && !virtual_domain {
        let name = local.to_ascii_lowercase();
        let (full_local, _) = addr::split(address);
        let shown_domain = if domain.is_empty() {
            cfg.get("myhostname")
        } else {
            domain.to_string()
        };
        let recipient = format!("{full_local}@{shown_domain}");
        let found = ctx
            .aliases
            .find(&name)
            .map_err(|e| Unresolved::Temporary(e.to_string()))?;
        if let Some(found) = found {
            let src = Source {
                class: Class::Alias,
                privs: owner_privs(cfg, found.owner)?,
                recipient,
                name,
                domain: domain.to_string(),
            };
            for t in &found.values {
                target(ctx, t, &src, depth, out)?;
            }
            return Ok(());
        }
        let account = privilege::lookup_user(local);
        if account.is_none() && name == "postmaster" {
            return expand(ctx, "root", depth + 1, out);
        }
        if let Some(acct) = account {
            let ext = extension(full_local, &delim);
            if let Some(list) = crate::forward::read_forward(cfg, &acct, &recipient, ext)? {
                let src = Source {
                    class: Class::Forward,
                    privs: owner_privs(cfg, (acct.uid, acct.gid))?,
                    recipient,
                    name,
                    domain: domain.to_string(),
                };
                for t in &list {
                    target(ctx, t, &src, depth, out)?;
                }
                return Ok(());
            }
        }
    }
    if depth > 0 && !local_domain && !virtual_domain {
        // Postfix's local forwards what it does not deliver itself.
        push(out, Dest::Forward(address.to_string()));
        return Ok(());
    }
    // The address as given: resolve() keeps its extension (a folder).
    push(out, Dest::Mailbox(resolve(cfg, ctx.users, address)?));
    Ok(())
}

/// One destination of a list (`src`): a command, a file, an :include:
/// file, `\user`, the list's own name, or an address.
fn target(
    ctx: &mut Ctx,
    t: &str,
    src: &Source,
    depth: usize,
    out: &mut Vec<Dest>,
) -> Result<(), Unresolved> {
    let cfg = ctx.cfg;
    let allowed = |param: &str| {
        cfg.list(param)
            .iter()
            .any(|c| c.eq_ignore_ascii_case(src.class.name()))
    };
    if let Some(command) = t.strip_prefix('|') {
        if !allowed("allow_mail_to_commands") {
            return Err(Unresolved::Restricted(format!(
                "mail to command is restricted ({} destination {t:?}; allow_mail_to_commands)",
                src.class.name()
            )));
        }
        push(
            out,
            Dest::Command {
                command: command.trim().to_string(),
                privs: src.privs.clone(),
                recipient: src.recipient.clone(),
            },
        );
        return Ok(());
    }
    if t.starts_with('/') {
        if !allowed("allow_mail_to_files") {
            return Err(Unresolved::Restricted(format!(
                "mail to file is restricted ({} destination {t:?}; allow_mail_to_files)",
                src.class.name()
            )));
        }
        push(
            out,
            Dest::File {
                path: PathBuf::from(t),
                privs: src.privs.clone(),
                locking: locking(cfg)?,
            },
        );
        return Ok(());
    }
    if let Some(path) = t.strip_prefix(":include:") {
        if depth >= MAX_ALIAS_DEPTH {
            return Err(Unresolved::Loop(format!(
                ":include: {path} nested more than {MAX_ALIAS_DEPTH} deep"
            )));
        }
        let (list, owner) = crate::forward::read_include(Path::new(path.trim()), &src.privs)?;
        let inner = Source {
            class: Class::Include,
            privs: owner_privs(cfg, owner)?,
            recipient: src.recipient.clone(),
            name: src.name.clone(),
            domain: src.domain.clone(),
        };
        for t in &list {
            target(ctx, t, &inner, depth + 1, out)?;
        }
        return Ok(());
    }
    if let Some(user) = t.strip_prefix('\\') {
        // "\user": that user's own mailbox, no alias, no .forward.
        push(out, Dest::Mailbox(resolve(cfg, ctx.users, user)?));
        return Ok(());
    }
    let (tl, td) = addr::split(t);
    let tl = addr::strip_extension(tl, &cfg.get("recipient_delimiter"));
    if tl.eq_ignore_ascii_case(&src.name) && (td.is_empty() || td.eq_ignore_ascii_case(&src.domain))
    {
        // "root: root, ..." and a user's own name in their .forward: the
        // mailbox itself (a copy kept).
        push(out, Dest::Mailbox(resolve(cfg, ctx.users, t)?));
        return Ok(());
    }
    expand(ctx, t, depth + 1, out)
}

/// The extension of a local part (after the first recipient_delimiter
/// character), if any.
fn extension<'a>(local: &'a str, delimiters: &str) -> Option<&'a str> {
    if delimiters.is_empty() {
        return None;
    }
    match local.find(|c| delimiters.contains(c)) {
        Some(pos) if pos > 0 => Some(&local[pos + 1..]),
        _ => None,
    }
}

/// The rights of a file owned by `owner` (uid, gid): that user's (with
/// their passwd entry for the environment), default_privs for root.
/// Started by an ordinary user (development mode), the current user's.
pub fn owner_privs(cfg: &Config, owner: (u32, u32)) -> Result<Privs, Unresolved> {
    let from = |u: nix::unistd::User| Privs {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        user: u.name,
        home: u.dir,
        shell: u.shell.to_string_lossy().into_owned(),
    };
    let by_uid = |uid: u32| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
    };
    if !privilege::is_root() {
        let me = privilege::current_account();
        return Ok(by_uid(me.uid).map(from).unwrap_or(Privs {
            uid: me.uid,
            gid: me.gid,
            user: me.name,
            home: me.home,
            shell: "/bin/sh".into(),
        }));
    }
    if owner.0 == 0 {
        let name = cfg.get("default_privs");
        let (uid, gid, _) =
            users::unprivileged_ids(cfg, 0, 0).map_err(|e| Unresolved::Temporary(e.to_string()))?;
        let u = by_uid(uid)
            .ok_or_else(|| Unresolved::Temporary(format!("default_privs {name}: no such user")))?;
        return Ok(Privs {
            uid,
            gid,
            ..from(u)
        });
    }
    Ok(match by_uid(owner.0) {
        Some(u) => from(u),
        None => Privs {
            uid: owner.0,
            gid: owner.1,
            user: owner.0.to_string(),
            home: PathBuf::from("/"),
            shell: "/bin/sh".into(),
        },
    })
}

fn push(out: &mut Vec<Dest>, d: Dest) {
    if !out.contains(&d) {
        out.push(d);
    }
}

/// Resolve `address` to a mailbox, without aliases.
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
        // common::users: the same resolution auth gives the mailbox processes.
        let m = users::resolve_virtual(cfg, u).map_err(|e| Unresolved::Temporary(e.to_string()))?;
        return Ok(Mailbox {
            path: m.maildir,
            home: m.home,
            below_home: PathBuf::from(users::MAILDIR),
            create_home: true,
            maildir: true,
            uid: m.uid,
            gid: m.gid,
            default_privs: m.default_privs,
            relay: "virtual",
            quota: u.quota,
            folder: folder_of(cfg, address)?,
            ..Mailbox::default()
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
        let (uid, gid, default_privs) = users::unprivileged_ids(cfg, acct.uid, acct.gid)
            .map_err(|e| Unresolved::Temporary(e.to_string()))?;
        if hm.trim().is_empty() {
            // Postfix's default: $mail_spool_directory/USER.
            let spool = PathBuf::from(cfg.get("mail_spool_directory"));
            if !spool.is_absolute() {
                return Err(Unresolved::Temporary(format!(
                    "mail_spool_directory = {}: not an absolute path",
                    spool.display()
                )));
            }
            // The passwd name, one plain path component.
            let name = PathBuf::from(&acct.name);
            if acct.name.is_empty()
                || acct.name.contains(char::is_control)
                || !name
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
                || name.components().count() != 1
            {
                return Err(Unresolved::Temporary(format!(
                    "user name {:?} cannot name a file in mail_spool_directory",
                    acct.name
                )));
            }
            return Ok(Mailbox {
                path: spool.join(&name),
                home: spool,
                below_home: name,
                create_home: false,
                maildir: false,
                uid,
                gid,
                default_privs,
                relay: "local",
                quota: Quota::default(),
                spool: true,
                locking: locking(cfg)?,
                folder: None,
            });
        }
        let maildir = hm.ends_with('/');
        let below = PathBuf::from(hm.trim_end_matches('/'));
        if below.as_os_str().is_empty()
            || !below
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return Err(Unresolved::Temporary(format!(
                "home_mailbox = {hm:?}: must be a relative path without \"..\""
            )));
        }
        return Ok(Mailbox {
            path: acct.home.join(&below),
            home: acct.home,
            below_home: below,
            create_home: false,
            maildir,
            uid,
            gid,
            default_privs,
            relay: "local",
            quota: Quota::default(),
            spool: false,
            locking: if maildir {
                Locking::default()
            } else {
                locking(cfg)?
            },
            folder: if maildir {
                folder_of(cfg, address)?
            } else {
                None
            },
        });
    }
    Err(Unresolved::NotLocal(format!(
        "domain {domain} is not delivered locally"
    )))
}

/// mailbox_delivery_lock and its waits.
fn locking(cfg: &Config) -> Result<Locking, Unresolved> {
    let bad = |e: common::config::ConfigError| Unresolved::Temporary(e.to_string());
    let attempts = cfg.int("deliver_lock_attempts").map_err(bad)?;
    Locking {
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX).max(1),
        delay: cfg.time("deliver_lock_delay").map_err(bad)?,
        stale: cfg.time("stale_lock_time").map_err(bad)?,
        ..Locking::default()
    }
    .with_methods(&cfg.list("mailbox_delivery_lock"))
    .map_err(|e| Unresolved::Temporary(format!("mailbox_delivery_lock: {e}")))
}

/// The address extension of `address` (what follows the first
/// recipient_delimiter character, as the sender wrote it), when
/// recipient_delimiter_folder is on.
fn folder_of(cfg: &Config, address: &str) -> Result<Option<String>, Unresolved> {
    let on = cfg
        .bool("recipient_delimiter_folder")
        .map_err(|e| Unresolved::Temporary(e.to_string()))?;
    let delimiters = cfg.get("recipient_delimiter");
    if !on || delimiters.is_empty() {
        return Ok(None);
    }
    let (local, _) = addr::split(address);
    let user = addr::strip_extension(local, &delimiters);
    // Past the delimiter character (which may be more than one byte).
    let mut rest = local[user.len()..].chars();
    rest.next();
    let ext = rest.as_str();
    Ok((!ext.is_empty()).then(|| ext.to_string()))
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
        assert_eq!(m.home, Path::new("/vmail/example.test/demo"));
        assert_eq!(m.below_home, Path::new("Maildir"));
        assert_eq!(
            (m.uid, m.gid, m.maildir, m.relay, m.create_home),
            (5000, 5001, true, "virtual", true)
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
        assert!(!m.create_home);
        if me.uid != 0 {
            assert_eq!((m.uid, m.default_privs), (me.uid, None));
        }
        assert!(matches!(
            resolve(&cfg, &mut users, "no-such-user-xyz@localhost"),
            Err(Unresolved::UnknownUser(_))
        ));
        assert_eq!(users::sanitize("../x"), "_.._x");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn root_gets_default_privs_never_uid_0() {
        let (mut cfg, mut users, dir) = setup("root");
        let nobody = privilege::lookup_user("nobody").expect("a nobody user");
        let m = resolve(&cfg, &mut users, "root@localhost").unwrap();
        assert_eq!((m.uid, m.gid), (nobody.uid, nobody.gid));
        assert_eq!(m.default_privs.as_deref(), Some("nobody"));
        // A virtual user whose uid is 0 likewise.
        std::fs::write(dir.join("users"), "zero@example.test:x:0:0::/srv/z::\n").unwrap();
        users.invalidate();
        let m = resolve(&cfg, &mut users, "zero@example.test").unwrap();
        assert_eq!((m.uid, m.gid), (nobody.uid, nobody.gid));
        // default_privs must not be root itself.
        cfg.set("default_privs", "root", "test");
        assert!(matches!(
            resolve(&cfg, &mut users, "root@localhost"),
            Err(Unresolved::Temporary(t)) if t.contains("privileged")
        ));
        cfg.set("default_privs", "no-such-user-xyz", "test");
        assert!(matches!(
            resolve(&cfg, &mut users, "root@localhost"),
            Err(Unresolved::Temporary(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn aliases_and_postmaster() {
        let (cfg, mut users, dir) = setup("alias");
        let none = Aliases::new(&[]);
        // No aliases at all: postmaster is root (with default_privs' ids).
        let mut a = none;
        let m = resolve_all(&cfg, &mut users, &mut a, "postmaster@localhost").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].home, privilege::lookup_user("root").unwrap().home);
        assert!(m[0].uid != 0);
        // postmaster of a virtual domain without its own entry: the same.
        let v = resolve_all(&cfg, &mut users, &mut a, "PostMaster@example.test").unwrap();
        assert_eq!(v, m);
        // root aliased to a virtual user, postmaster to root.
        let p = dir.join("aliases");
        std::fs::write(&p, "postmaster: root\nroot: demo@example.test, root\nloop1: loop2\nloop2: loop1\nprog: |/bin/true\n").unwrap();
        let mut a = Aliases::new(&[format!("hash:{}", p.display())]);
        let m = resolve_all(&cfg, &mut users, &mut a, "postmaster").unwrap();
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[0].path, Path::new("/vmail/example.test/demo/Maildir"));
        assert_eq!(m[1].relay, "local");
        assert!(m.iter().all(|m| m.uid != 0 && m.gid != 0));
        assert!(matches!(
            resolve_all(&cfg, &mut users, &mut a, "loop1@localhost"),
            Err(Unresolved::Loop(_))
        ));
        // A command: with the rights of the table's owner (default_privs
        // for root's table; the current user when not root).
        let d = destinations(&cfg, &mut users, &mut a, "prog@localhost").unwrap();
        let Dest::Command {
            command,
            privs,
            recipient,
        } = &d[0]
        else {
            panic!("{d:?}")
        };
        assert_eq!(
            (command.as_str(), recipient.as_str()),
            ("/bin/true", "prog@localhost")
        );
        assert!(privs.uid != 0 || !privilege::is_root());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_forward_file_keeps_a_copy_with_the_users_own_name() {
        let (mut cfg, mut users, dir) = setup("fwd");
        let me = privilege::current_account();
        cfg.set(
            "forward_path",
            &format!("{}/$user.forward", dir.display()),
            "test",
        );
        let fw = dir.join(format!("{}.forward", me.name));
        std::fs::write(
            &fw,
            format!(
                "\\{0}, {0}, {0}@localhost, far@remote.example, demo@example.test\n",
                me.name
            ),
        )
        .unwrap();
        let mut a = Aliases::new(&[]);
        let d = destinations(&cfg, &mut users, &mut a, &format!("{}@localhost", me.name)).unwrap();
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(
            matches!(&d[0], Dest::Mailbox(m) if m.home == me.home),
            "{d:?}"
        );
        assert_eq!(d[1], Dest::Forward("far@remote.example".into()));
        assert!(matches!(&d[2], Dest::Mailbox(m) if m.relay == "virtual"));
        // Not a list of their own: no .forward, the mailbox.
        std::fs::remove_file(&fw).unwrap();
        let d = destinations(&cfg, &mut users, &mut a, &format!("{}@localhost", me.name)).unwrap();
        assert!(
            matches!(&d[..], [Dest::Mailbox(m)] if m.home == me.home),
            "{d:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn destinations_of_every_kind() {
        let (cfg, mut users, dir) = setup("kinds");
        let mut cfg = cfg;
        let list = dir.join("list");
        std::fs::write(&list, "demo@example.test\nfar@remote.example\n|/bin/cat\n").unwrap();
        let p = dir.join("aliases");
        std::fs::write(
            &p,
            format!(
                "all: demo@example.test, far@remote.example, \"|/bin/cat\", /var/mail/x, /srv/md/, :include:{}\nbare: other\nother: x@remote.example\n",
                list.display()
            ),
        )
        .unwrap();
        let mut a = Aliases::new(&[format!("hash:{}", p.display())]);
        // include not in allow_mail_to_commands: the command in the list is refused.
        let r = destinations(&cfg, &mut users, &mut a, "all@localhost");
        assert!(
            matches!(&r, Err(Unresolved::Restricted(t)) if t.contains("mail to command is restricted")),
            "{r:?}"
        );
        cfg.set("allow_mail_to_commands", "alias, forward, include", "test");
        let d = destinations(&cfg, &mut users, &mut a, "all@localhost").unwrap();
        let kinds: Vec<String> = d
            .iter()
            .map(|d| match d {
                Dest::Mailbox(m) => format!("mailbox {}", m.path.display()),
                Dest::Command { command, .. } => format!("command {command}"),
                Dest::File { path, .. } => format!("file {}", path.display()),
                Dest::Forward(a) => format!("forward {a}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "mailbox /vmail/example.test/demo/Maildir",
                "forward far@remote.example",
                "command /bin/cat",
                "file /var/mail/x",
                "file /srv/md/",
            ],
            "no duplicates from the include file"
        );
        // A bare name resolves in the local domain; a remote target is forwarded.
        let d = destinations(&cfg, &mut users, &mut a, "bare@localhost").unwrap();
        assert_eq!(d, [Dest::Forward("x@remote.example".into())]);
        // A remote recipient at the top is not ours.
        assert!(matches!(
            destinations(&cfg, &mut users, &mut a, "x@remote.example"),
            Err(Unresolved::NotLocal(_))
        ));
        // Files are restricted too.
        cfg.set("allow_mail_to_files", "forward", "test");
        assert!(matches!(
            destinations(&cfg, &mut users, &mut a, "all@localhost"),
            Err(Unresolved::Restricted(t)) if t.contains("mail to file")
        ));
        // Aliases are for mydestination only: a virtual user is not aliased.
        let d = resolve_all(&cfg, &mut users, &mut a, "demo@example.test").unwrap();
        assert_eq!(d.len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn empty_home_mailbox_is_the_mail_spool() {
        let (mut cfg, mut users, dir) = setup("spool");
        cfg.set("home_mailbox", "", "test");
        cfg.set("mail_spool_directory", "/var/spool/mail", "test");
        let me = privilege::current_account();
        let m = resolve(&cfg, &mut users, &format!("{}+x@localhost", me.name)).unwrap();
        assert_eq!(m.path, Path::new("/var/spool/mail").join(&me.name));
        assert_eq!(m.home, Path::new("/var/spool/mail"));
        assert_eq!(m.below_home, Path::new(&me.name));
        assert!(m.spool && !m.maildir && !m.create_home);
        assert_eq!(
            m.locking,
            Locking::default(),
            "fcntl, dotlock; 20 x 1 s; 500 s"
        );
        assert_eq!(m.folder, None, "no folders in an mbox");
        assert!(m.uid != 0);
        cfg.set("mailbox_delivery_lock", "flock", "test");
        cfg.set("deliver_lock_attempts", "3", "test");
        let m = resolve(&cfg, &mut users, &me.name).unwrap();
        assert!(m.locking.flock && !m.locking.fcntl && !m.locking.dotlock);
        assert_eq!(m.locking.attempts, 3);
        cfg.set("mailbox_delivery_lock", "fcntl, lockf", "test");
        assert!(matches!(
            resolve(&cfg, &mut users, &me.name),
            Err(Unresolved::Temporary(t)) if t.contains("lockf")
        ));
        cfg.set("mailbox_delivery_lock", "fcntl", "test");
        cfg.set("mail_spool_directory", "var/mail", "test");
        assert!(matches!(
            resolve(&cfg, &mut users, &me.name),
            Err(Unresolved::Temporary(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_extension_is_the_folder_when_turned_on() {
        let (mut cfg, mut users, dir) = setup("folder");
        let m = resolve(&cfg, &mut users, "demo+Lists@example.test").unwrap();
        assert_eq!(m.folder, None, "off by default");
        cfg.set("recipient_delimiter_folder", "yes", "test");
        let m = resolve(&cfg, &mut users, "Demo+Lists.Rust@example.test").unwrap();
        assert_eq!(m.folder.as_deref(), Some("Lists.Rust"), "as written");
        assert_eq!(m.path, Path::new("/vmail/example.test/demo/Maildir"));
        let m = resolve(&cfg, &mut users, "demo@example.test").unwrap();
        assert_eq!(m.folder, None);
        let m = resolve(&cfg, &mut users, "demo+@example.test").unwrap();
        assert_eq!(m.folder, None);
        let me = privilege::current_account();
        let m = resolve(&cfg, &mut users, &format!("{}+a+b@localhost", me.name)).unwrap();
        assert_eq!(m.folder.as_deref(), Some("a+b"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
