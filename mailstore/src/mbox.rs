//! mbox delivery: append under an exclusive lock, undo on failure.
//!
//! Owns the mboxrd format (a `From ` separator line, `>From ` quoting of body
//! lines that would look like one, a blank line after each message) and the
//! locking that mutt, Dovecot and procmail agree on for local files (flock).
//!
//! Durability: the file is fsync'ed before `deliver` returns; if anything
//! fails the file is truncated back to its old length, so no half message
//! stays behind.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// Append one message (LF line endings) read from `message` to the mbox at `path`.
pub fn deliver(path: &Path, sender: &str, date: &str, message: &mut dyn Read) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
