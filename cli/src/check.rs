//! `posthorn check`'s ownership and mode checks: the spool, the mailbox
//! base, the TLS keys, the users file and the DKIM keys.
//!
//! Owns what owner, group and mode each file should have (the spool as
//! master's prepare_spool and common::spool::SPOOL_DIRS make it) and the
//! one-line report of each difference with its fix. Does not own the
//! configuration checks (admin.rs `check`).
//!
//! Diagnostics: one `Problem` per file and attribute, printed by
//! admin.rs as `posthorn: error: PATH: owner root, expected posthorn: run
//! chown posthorn PATH`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::config::Config;

/// Who should own what (resolved from main.cf and the account database).
#[derive(Debug, Clone)]
pub struct Expect {
    /// mail_owner's name and uid.
    pub owner: (String, u32),
    /// The spool's groups are checked only when root prepared it (master
    /// sets them as root): setgid_group's (maildrop/, public/) and
    /// login_user's group (login/), by name and gid; None: not checked.
    pub postdrop: Option<(String, u32)>,
    pub login_group: Option<(String, u32)>,
    /// pid/ is root's when root runs the suite, else mail_owner's.
    pub root_installed: bool,
    /// The owner of virtual mailboxes without their own uid.
    pub virtual_uid: u32,
}

impl Expect {
    /// From main.cf; None when mail_owner is no account here (reported
    /// by admin.rs).
    pub fn from_config(cfg: &Config) -> Option<Expect> {
        let root = common::privilege::is_root();
        let name = cfg.get("mail_owner");
        let owner = match common::privilege::lookup_user(&name) {
            Some(a) => a,
            None if !root => common::privilege::current_account(),
            None => return None,
        };
        let group = |g: String| common::privilege::lookup_group(&g).map(|gid| (g, gid));
        let login_group = common::privilege::lookup_user(&cfg.get("login_user"))
            .map(|a| (group_name(a.gid), a.gid))
            .or_else(|| Some((group_name(owner.gid), owner.gid)));
        let virtual_uid = cfg
            .get("virtual_uid_maps")
            .strip_prefix("static:")
            .and_then(|u| u.trim().parse().ok())
            .unwrap_or(owner.uid);
        Some(Expect {
            owner: (owner.name.clone(), owner.uid),
            postdrop: if root {
                group(cfg.get("setgid_group")).or(Some((group_name(owner.gid), owner.gid)))
            } else {
                None
            },
            login_group: if root { login_group } else { None },
            root_installed: root,
            virtual_uid,
        })
    }
}

/// One thing wrong with one file, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub what: String,
    pub fix: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: run {}",
            self.path.display(),
            self.what,
            self.fix
        )
    }
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name)
}

/// Every problem found, in a stable order.
pub fn problems(cfg: &Config, e: &Expect) -> Vec<Problem> {
    let mut out = Vec::new();
    spool(&cfg.queue_dir(), e, &mut out);
    mailbox_base(Path::new(&cfg.get("virtual_mailbox_base")), e, &mut out);
    let mut keys: Vec<String> = ["smtpd_tls_key_file", "mailbox_tls_key_file"]
        .iter()
        .map(|k| cfg.get(k))
        .filter(|k| !k.trim().is_empty())
        .collect();
    keys.dedup();
    for k in keys {
        key_file(Path::new(&k), e, &mut out);
    }
    users_file(&cfg.users_file(), e, &mut out);
    dkim_keys(Path::new(&cfg.get("dkim_key_directory")), e, &mut out);
    out
}

/// DKIM keys (dkim_key_directory/DOMAIN/SELECTOR.key): mail_owner's (the
/// signer, posthorn-smtp, reads them as mail_owner), mode 0600 or 0400:
/// anyone else who can read one can sign as the domain.
fn dkim_keys(dir: &Path, e: &Expect, out: &mut Vec<Problem>) {
    let Ok(domains) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files = Vec::new();
    for d in domains.flatten() {
        if let Ok(keys) = std::fs::read_dir(d.path()) {
            files.extend(
                keys.flatten()
                    .map(|k| k.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "key")),
            );
        }
    }
    files.sort();
    for p in files {
        let Ok(m) = std::fs::metadata(&p) else {
            continue;
        };
        check_owner(&p, &m, &e.owner, out);
        check_mode(&p, &m, &[0o600, 0o400], out);
    }
}

/// The spool's directories: owner, group and mode as master makes them.
fn spool(root: &Path, e: &Expect, out: &mut Vec<Problem>) {
    for (name, mode) in common::spool::SPOOL_DIRS {
        let p = root.join(name);
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue; // missing: admin.rs warns (master creates it)
        };
        if !m.is_dir() {
            out.push(Problem {
                path: p.clone(),
                what: "not a directory".into(),
                fix: format!("rm {} (master creates the directory at start)", p.display()),
            });
            continue;
        }
        let owner = if *name == "pid" && e.root_installed {
            ("root".to_string(), 0)
        } else {
            e.owner.clone()
        };
        check_owner(&p, &m, &owner, out);
        let group = match *name {
            "maildrop" | "public" => e.postdrop.clone(),
            "login" => e.login_group.clone(),
            _ => None,
        };
        if let Some((gname, gid)) = group {
            if m.gid() != gid {
                out.push(Problem {
                    path: p.clone(),
                    what: format!("group {}, expected {gname}", group_name(m.gid())),
                    fix: format!("chgrp {gname} {}", p.display()),
                });
            }
        }
        check_mode(&p, &m, &[*mode], out);
    }
}

fn check_owner(p: &Path, m: &std::fs::Metadata, owner: &(String, u32), out: &mut Vec<Problem>) {
    if m.uid() != owner.1 {
        out.push(Problem {
            path: p.to_path_buf(),
            what: format!("owner {}, expected {}", user_name(m.uid()), owner.0),
            fix: format!("chown {} {}", owner.0, p.display()),
        });
    }
}

/// The mode must be one of `allowed`; the fix names the first.
fn check_mode(p: &Path, m: &std::fs::Metadata, allowed: &[u32], out: &mut Vec<Problem>) {
    let mode = m.mode() & 0o7777;
    if !allowed.contains(&mode) {
        out.push(Problem {
            path: p.to_path_buf(),
            what: format!(
                "mode {mode:04o}, expected {}",
                allowed
                    .iter()
                    .map(|a| format!("{a:04o}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            fix: format!("chmod {:04o} {}", allowed[0], p.display()),
        });
    }
}

/// virtual_mailbox_base: the mailbox owner's (or root's), writable by
/// nobody else.
fn mailbox_base(p: &Path, e: &Expect, out: &mut Vec<Problem>) {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return; // created by local delivery when needed
    };
    if m.uid() != e.virtual_uid && m.uid() != 0 {
        let who = user_name(e.virtual_uid);
        out.push(Problem {
            path: p.to_path_buf(),
            what: format!(
                "owner {}, expected {who} (virtual_uid_maps or mail_owner) or root",
                user_name(m.uid())
            ),
            fix: format!("chown {who} {}", p.display()),
        });
    }
    if m.mode() & 0o022 != 0 {
        out.push(Problem {
            path: p.to_path_buf(),
            what: format!(
                "mode {:04o}, writable by group or others",
                m.mode() & 0o7777
            ),
            fix: format!("chmod go-w {}", p.display()),
        });
    }
}

/// A private key: readable by its owner (root, who loads it before the
/// daemons drop privileges, or mail_owner) and at most their group;
/// never by others.
fn key_file(p: &Path, e: &Expect, out: &mut Vec<Problem>) {
    let Ok(m) = std::fs::metadata(p) else {
        return; // admin.rs's TLS check reports a key that does not load
    };
    if m.uid() != 0 && m.uid() != e.owner.1 {
        out.push(Problem {
            path: p.to_path_buf(),
            what: format!(
                "owner {}, expected root or {}",
                user_name(m.uid()),
                e.owner.0
            ),
            fix: format!("chown root {}", p.display()),
        });
    }
    if m.mode() & 0o007 != 0 {
        out.push(Problem {
            path: p.to_path_buf(),
            what: format!(
                "mode {:04o}, a private key readable by others",
                m.mode() & 0o7777
            ),
            fix: format!("chmod 0600 {}", p.display()),
        });
    }
}

/// The users file holds password hashes: 0600 or 0640 (0400, 0440 too).
fn users_file(p: &Path, e: &Expect, out: &mut Vec<Problem>) {
    let Ok(m) = std::fs::metadata(p) else {
        return;
    };
    if m.uid() != 0 && m.uid() != e.owner.1 {
        out.push(Problem {
            path: p.to_path_buf(),
            what: format!(
                "owner {}, expected root or {}",
                user_name(m.uid()),
                e.owner.0
            ),
            fix: format!("chown root {}", p.display()),
        });
    }
    check_mode(p, &m, &[0o600, 0o640, 0o400, 0o440], out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_tree_as_master_makes_it_passes_and_each_fault_is_one_line() {
        let dir = std::env::temp_dir().join(format!("posthorn-check-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let spool = dir.join("spool");
        common::spool::Spool::new(&spool).create_dirs().unwrap();
        let (base, key, users) = (dir.join("vhosts"), dir.join("key.pem"), dir.join("users"));
        fs::create_dir(&base).unwrap();
        chmod(&base, 0o755);
        fs::write(&key, "key").unwrap();
        chmod(&key, 0o600);
        fs::write(&users, "u@example.test:{PLAIN}x::::::\n").unwrap();
        chmod(&users, 0o640);
        fs::write(
            dir.join("main.cf"),
            format!(
                "queue_directory = {}\nvirtual_mailbox_base = {}\nsmtpd_tls_key_file = {}\nvirtual_mailbox_maps = passwd-file:{}\n",
                spool.display(),
                base.display(),
                key.display(),
                users.display()
            ),
        )
        .unwrap();
        let cfg = Config::load(&dir).unwrap();
        let me = common::privilege::current_account();
        let e = Expect {
            owner: (me.name.clone(), me.uid),
            postdrop: None,
            login_group: None,
            root_installed: false,
            virtual_uid: me.uid,
        };
        assert_eq!(problems(&cfg, &e), Vec::new());

        chmod(&spool.join("active"), 0o755);
        chmod(&spool.join("maildrop"), 0o730);
        chmod(&key, 0o644);
        chmod(&users, 0o644);
        chmod(&base, 0o777);
        let lines: Vec<String> = problems(&cfg, &e).iter().map(|p| p.to_string()).collect();
        let (a, m) = (spool.join("active"), spool.join("maildrop"));
        assert_eq!(
            lines,
            [
                format!(
                    "{}: mode 0730, expected 1730: run chmod 1730 {}",
                    m.display(),
                    m.display()
                ),
                format!(
                    "{}: mode 0755, expected 0700: run chmod 0700 {}",
                    a.display(),
                    a.display()
                ),
                format!(
                    "{}: mode 0777, writable by group or others: run chmod go-w {}",
                    base.display(),
                    base.display()
                ),
                format!(
                    "{}: mode 0644, a private key readable by others: run chmod 0600 {}",
                    key.display(),
                    key.display()
                ),
                format!(
                    "{}: mode 0644, expected 0600 or 0640 or 0400 or 0440: run chmod 0600 {}",
                    users.display(),
                    users.display()
                ),
            ]
        );
        // Someone else's spool directory (the owner is checked by uid).
        let other = Expect {
            owner: ("posthorn".into(), me.uid + 1),
            ..e
        };
        let lines: Vec<String> = problems(&cfg, &other)
            .iter()
            .map(|p| p.to_string())
            .collect();
        let hold = spool.join("hold");
        assert!(
            lines.contains(&format!(
                "{}: owner {}, expected posthorn: run chown posthorn {}",
                hold.display(),
                me.name,
                hold.display()
            )),
            "{lines:#?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
