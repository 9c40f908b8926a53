//! mbox delivery: append under an exclusive lock, undo on failure.
//!
//! Owns the mboxrd format (a `From ` separator line, `>From ` quoting of body
//! lines that would look like one, a blank line after each message) and the
//! locking that mutt, Dovecot and procmail agree on for local files (flock).
//!
//! Durability: the file is fsync'ed before `deliver` returns (and its
//! directory, when the file was new); if anything fails the file is truncated
//! back to its old length, so no half message stays behind.
//!
//! Security: the file is opened relative to a directory descriptor with
//! O_NOFOLLOW and must be a regular file; the caller runs this with the
//! mailbox owner's effective ids.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg, OFlag};

use common::privilege;

/// Append one message (LF line endings) read from `message` to the mbox at `path`.
pub fn deliver(path: &Path, sender: &str, date: &str, message: &mut dyn Read) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mbox path has no file name"))?;
    let dir = File::open(parent)?;
    deliver_at(&dir, Path::new(name), sender, date, message)
}

/// Append one message to the mbox `name` in the directory `dir`: never
/// through a symbolic link, only to a regular file.
pub fn deliver_at(
    dir: &File,
    name: &Path,
    sender: &str,
    date: &str,
    message: &mut dyn Read,
) -> io::Result<()> {
    let flags = OFlag::O_RDWR | OFlag::O_APPEND | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let file = match privilege::open_at(Some(dir), name, flags, 0) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let f = privilege::open_at(
                Some(dir),
                name,
                flags | OFlag::O_CREAT | OFlag::O_EXCL,
                0o600,
            )?;
            privilege::sync_dir(dir)?;
            f
        }
        r => r?,
    };
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a regular file", name.display()),
        ));
    }
    let mut file =
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))?;
    let start = file.seek(SeekFrom::End(0))?;
    let result = (|| {
        let sender = if sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            sender
        };
        let mut out = io::BufWriter::new(&mut *file);
        writeln!(out, "From {sender} {date}")?;
        let mut at_line_start = true;
        let mut buf = [0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = message.read(&mut buf)?;
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
            // Quote lines matching ^>*From (mboxrd); needs the whole line start.
            let mut i = 0;
            while i < pending.len() {
                if at_line_start {
                    let rest = &pending[i..];
                    let gts = rest.iter().take_while(|&&b| b == b'>').count();
                    if rest.len() < gts + 5 && !rest[gts..].contains(&b'\n') {
                        break; // wait for more bytes
                    }
                    if rest[gts..].starts_with(b"From ") {
                        out.write_all(b">")?;
                    }
                }
                let end = pending[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map(|p| i + p + 1);
                match end {
                    Some(e) => {
                        out.write_all(&pending[i..e])?;
                        i = e;
                        at_line_start = true;
                    }
                    None => {
                        out.write_all(&pending[i..])?;
                        i = pending.len();
                        at_line_start = false;
                    }
                }
            }
            pending.drain(..i);
        }
        out.write_all(&pending)?;
        if !(pending.is_empty() && at_line_start) {
            out.write_all(b"\n")?;
        }
        out.write_all(b"\n")?;
        out.flush()?;
        drop(out);
        file.sync_all()
    })();
    if result.is_err() {
        let _ = file.set_len(start);
        let _ = file.sync_all();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_separators() {
        let dir = std::env::temp_dir().join(format!("posthorn-mbox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("mbox");
        let _ = std::fs::remove_file(&p);
        deliver(
            &p,
            "a@b",
            "Thu Jan  1 00:00:00 1970",
            &mut &b"Subject: x\n\nFrom me\n>From you\nok\n"[..],
        )
        .unwrap();
        deliver(
            &p,
            "",
            "Thu Jan  1 00:00:00 1970",
            &mut &b"Subject: y\n\nno newline"[..],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "From a@b Thu Jan  1 00:00:00 1970\nSubject: x\n\n>From me\n>>From you\nok\n\n\
             From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: y\n\nno newline\n\n"
        );
        // A link where the mbox should be is refused, its target untouched.
        let target = dir.join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.join("linked");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(deliver(&link, "a@b", "x", &mut &b"x\n"[..]).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
