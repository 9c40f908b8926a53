//! Delivery to a file (`/path` in an alias, .forward or :include:).
//!
//! Owns appending to the file named: mbox format through mailstore's mbox
//! code (its From_ line, quoting, and the locks of mailbox_delivery_lock,
//! as for a mailbox), or Maildir when the path ends
//! in `/` (Postfix's rule), with the rights of the list that named it
//! (`Privs`: never uid 0). The directory holding the file is reached from
//! "/" with `walk_dirs` (only root's links in root's directories are
//! followed) and the file opened O_NOFOLLOW, all as that user; nothing is
//! created but the file itself (and a Maildir's subdirectories).
//!
//! Diagnostics: errors are returned (the caller defers the recipient with
//! the reason).

use std::io::{self, Read};
use std::path::Path;

use common::privilege;
use mailstore::mbox::Locking;
use mailstore::Maildir;

use crate::resolve::Privs;

/// Append `message` (LF line ends, trace headers included) to `path` as
/// `privs`; `sender` and `date` make the mbox From_ line.
pub fn deliver(
    path: &Path,
    privs: &Privs,
    locking: &Locking,
    sender: &str,
    date: &str,
    message: &mut dyn Read,
) -> io::Result<()> {
    let text = path.to_string_lossy();
    let maildir = text.ends_with('/');
    let trimmed = Path::new(text.trim_end_matches('/'));
    let (Some(parent), Some(name)) = (trimmed.parent(), trimmed.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        ));
    };
    privilege::as_user(privs.uid, privs.gid, || {
        let dir = privilege::open_dir_path(parent, None)?;
        if maildir {
            let md = Maildir::open_at(&dir, Path::new(name), trimmed.to_path_buf(), true)?;
            let mut d = md.begin()?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = message.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                d.write(&buf[..n])?;
            }
            d.commit().map(drop)
        } else {
            mailstore::mbox::deliver_at(
                &dir,
                Path::new(name),
                trimmed,
                locking,
                sender,
                date,
                message,
            )
        }
    })
}
