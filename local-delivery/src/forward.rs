//! ~/.forward and :include: files: found (forward_path), read with the
//! right user's rights, split into destinations.
//!
//! Owns forward_path's expansion (Postfix's `$home`, `$user`, `$local`,
//! `$domain`, `$extension`, `$recipient`, `$shell`, `${recipient_delimiter}`
//! -- empty when the address has no extension, as in Postfix, so the default
//! `$home/.forward${recipient_delimiter}${extension}, $home/.forward` tries
//! `.forward+ext` only for an address with one -- and the `${name?text}`
//! and `${name:text}` conditionals) and reading the files. What a
//! destination means is resolve.rs's.
//!
//! Security: local delivery runs as root; a .forward is opened with the
//! user's effective ids (root's own with root's), an :include: file with the
//! rights of the list that names it (the alias table's owner or
//! default_privs, the .forward's user, the including file's owner), never
//! through a symbolic link (O_NOFOLLOW), only a regular file, at most
//! `aliases::MAX_FILE` bytes. A .forward must belong to its user and not be
//! group or world writable; an :include: file must not be group or world
//! writable. Its destinations get the rights of the file's owner
//! (default_privs when root owns it), as Postfix's local(8) does.
//!
//! Diagnostics: a .forward that is unsafe or that the user may not read is
//! skipped with a warning (mail goes to the mailbox; started by an ordinary
//! user, other users' closed homes are skipped quietly); any other read
//! error and every
//! :include: problem defer the recipient (4.3.0) with the reason.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use common::aliases::{self, MAX_FILE};
use common::config::Config;
use common::privilege::{self, Account};
use common::warning;

use crate::resolve::{Privs, Unresolved};

/// The destinations of `acct`'s .forward for `recipient` (with extension
/// `ext`): the first file of forward_path that exists, or None.
pub fn read_forward(
    cfg: &Config,
    acct: &Account,
    recipient: &str,
    ext: Option<&str>,
) -> Result<Option<Vec<String>>, Unresolved> {
    let shell = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(acct.uid))
        .ok()
        .flatten()
        .map(|u| u.shell.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (local, domain) = common::addr::split(recipient);
    let vars = Vars {
        home: acct.home.to_string_lossy().into_owned(),
        user: acct.name.clone(),
        local: local.to_string(),
        domain: domain.to_string(),
        extension: ext.unwrap_or("").to_string(),
        recipient: recipient.to_string(),
        shell,
        delimiter: if ext.is_some() {
            cfg.get("recipient_delimiter")
                .chars()
                .next()
                .map(String::from)
                .unwrap_or_default()
        } else {
            String::new()
        },
    };
    for path in forward_paths(&cfg.raw("forward_path"), &vars) {
        if !path.is_absolute() {
            continue;
        }
        let (text, meta) = match read_as(&path, acct.uid, acct.gid) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            // As Postfix (lstat as the user fails): not there. Started by
            // an ordinary user, other users' homes are closed to us.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                if privilege::is_root() {
                    warning!("{}: {e}: ignored", path.display());
                }
                continue;
            }
            Err(e) => {
                return Err(Unresolved::Temporary(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        if meta.uid() != acct.uid {
            warning!(
                "{}: owned by uid {}, not by {} (uid {}): ignored",
                path.display(),
                meta.uid(),
                acct.name,
                acct.uid
            );
            continue;
        }
        if meta.mode() & 0o022 != 0 {
            warning!("{}: group or world writable: ignored", path.display());
            continue;
        }
        let list = aliases::split_values(&text);
        if list.is_empty() {
            // An empty .forward: Postfix delivers to the mailbox.
            continue;
        }
        return Ok(Some(list));
    }
    Ok(None)
}

/// An :include: file read with `privs`: its destinations and its owner.
pub fn read_include(path: &Path, privs: &Privs) -> Result<(Vec<String>, (u32, u32)), Unresolved> {
    if !path.is_absolute() {
        return Err(Unresolved::Temporary(format!(
            ":include:{}: not an absolute path",
            path.display()
        )));
    }
    let (text, meta) = read_as(path, privs.uid, privs.gid)
        .map_err(|e| Unresolved::Temporary(format!(":include:{}: {e}", path.display())))?;
    if meta.mode() & 0o022 != 0 {
        return Err(Unresolved::Temporary(format!(
            ":include:{}: group or world writable: not used",
            path.display()
        )));
    }
    Ok((aliases::split_values(&text), (meta.uid(), meta.gid())))
}

/// Read a regular file with effective ids `uid`/`gid` (as root; uid 0
/// reads as root itself), never through a symbolic link.
fn read_as(path: &Path, uid: u32, gid: u32) -> io::Result<(String, std::fs::Metadata)> {
    let open = || -> io::Result<File> {
        privilege::open_at(
            None,
            path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            0,
        )
    };
    let file = if uid == 0 || !privilege::is_root() {
        open()?
    } else {
        privilege::as_user(uid, gid, open)?
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > MAX_FILE {
        return Err(io::Error::other("file too large"));
    }
    let mut text = String::new();
    file.take(MAX_FILE).read_to_string(&mut text)?;
    Ok((text, meta))
}

/// The values forward_path's `$name`s take for one recipient.
#[derive(Debug, Default)]
struct Vars {
    home: String,
    user: String,
    local: String,
    domain: String,
    extension: String,
    recipient: String,
    shell: String,
    delimiter: String,
}

impl Vars {
    fn get(&self, name: &str) -> Option<&str> {
        Some(match name {
            "home" => &self.home,
            "user" => &self.user,
            "local" => &self.local,
            "domain" => &self.domain,
            "extension" => &self.extension,
            "recipient" => &self.recipient,
            "shell" => &self.shell,
            "recipient_delimiter" => &self.delimiter,
            _ => return None,
        })
    }
}

/// forward_path's items (comma or white space separated), expanded; an
/// item naming an unknown variable is dropped.
fn forward_paths(spec: &str, vars: &Vars) -> Vec<PathBuf> {
    spec.split([',', ' ', '\t', '\n'])
        .filter(|s| !s.is_empty())
        .filter_map(|item| expand(item, vars).map(PathBuf::from))
        .collect()
}

/// Expand `$name`, `${name}`, `${name?text}` (text when name is not
/// empty) and `${name:text}` (text when it is).
fn expand(item: &str, vars: &Vars) -> Option<String> {
    let mut out = String::new();
    let mut rest = item;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}')?;
            let body = &inner[..end];
            rest = &inner[end + 1..];
            if let Some((name, text)) = body.split_once('?') {
                if !vars.get(name)?.is_empty() {
                    out.push_str(&expand(text, vars)?);
                }
            } else if let Some((name, text)) = body.split_once(':') {
                if vars.get(name)?.is_empty() {
                    out.push_str(&expand(text, vars)?);
                }
            } else {
                out.push_str(vars.get(body)?);
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            out.push_str(vars.get(&after[..end])?);
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(ext: &str) -> Vars {
        Vars {
            home: "/home/al".into(),
            user: "al".into(),
            local: "al+x".into(),
            domain: "localhost".into(),
            extension: ext.into(),
            recipient: "al+x@localhost".into(),
            shell: "/bin/sh".into(),
            delimiter: if ext.is_empty() { "" } else { "+" }.into(),
        }
    }

    #[test]
    fn forward_path_expands_as_postfix_does() {
        let default = "$home/.forward${recipient_delimiter}${extension}, $home/.forward";
        assert_eq!(
            forward_paths(default, &vars("x")),
            [
                PathBuf::from("/home/al/.forward+x"),
                PathBuf::from("/home/al/.forward")
            ]
        );
        // No extension: the first item is the plain file too.
        assert_eq!(
            forward_paths(default, &vars("")),
            [
                PathBuf::from("/home/al/.forward"),
                PathBuf::from("/home/al/.forward")
            ]
        );
        assert_eq!(
            forward_paths(
                "/fw/${user}${extension?-ext}/f /fw/$user.${domain:none}",
                &vars("x")
            ),
            [PathBuf::from("/fw/al-ext/f"), PathBuf::from("/fw/al.")]
        );
        assert!(forward_paths("$nosuch/x, ${unclosed", &vars("")).is_empty());
    }

    #[test]
    fn a_forward_file_must_be_the_users_and_not_writable_by_others() {
        let me = privilege::current_account();
        let dir = std::env::temp_dir().join(format!("posthorn-forward-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "forward_path = {}/$user.forward\nrecipient_delimiter = +\n",
            dir.display()
        );
        let cfg = Config::parse(&dir, "main.cf", &text).unwrap();
        let f = dir.join(format!("{}.forward", me.name));
        let read = || read_forward(&cfg, &me, &format!("{}@localhost", me.name), None);
        assert_eq!(read(), Ok(None), "no file");
        std::fs::write(&f, "# me\n\\me, \"|/bin/cat\"\n/tmp/x\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            read(),
            Ok(Some(vec![
                "\\me".into(),
                "|/bin/cat".into(),
                "/tmp/x".into()
            ]))
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(read(), Ok(None), "world writable: ignored");
        std::fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &f).unwrap();
        assert!(
            matches!(read(), Err(Unresolved::Temporary(t)) if t.contains("symbolic") || t.contains("link") || t.contains("loop")),
            "a link is not followed"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
