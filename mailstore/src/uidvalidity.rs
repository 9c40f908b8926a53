//! UIDVALIDITY values for new UID lists: Dovecot's `dovecot-uidvalidity`
//! files at the Maildir's top, so that posthorn and Dovecot never give two
//! lists of one user the same value.
//!
//! ```text
//! dovecot-uidvalidity             the last value given, 8 hex digits
//! dovecot-uidvalidity.6553f100    empty; renamed to the next value by whoever takes it
//! ```
//!
//! Owns taking the next value: rename `dovecot-uidvalidity.<cur>` to
//! `.<cur+1>` (an atomic step that only one process wins; a loser tries the
//! next value, then rescans), then record it in `dovecot-uidvalidity`. With
//! no such files the first value is the current time. This is Dovecot's
//! mailbox-uidvalidity.c.
//!
//! Standards: RFC 3501 2.3.1.1 (UIDVALIDITY must change when UIDs are
//! reassigned; it never goes back for a name).
//!
//! Security: files are made with O_EXCL/O_NOFOLLOW through the Maildir's
//! descriptor; the contents are parsed as at most 8 hex digits.
//!
//! Diagnostics: none of its own; failures are `StoreError::Io`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::OFlag;

use crate::error::{At, StoreError};
use crate::fsat;

const FILE: &str = "dovecot-uidvalidity";
const RETRIES: u32 = 10;

/// The next UIDVALIDITY for a list in the Maildir `root`.
pub fn next(root: &Arc<File>, display: &Path) -> Result<u32, StoreError> {
    let path = display.join(FILE);
    if let Some(cur) = read_main(root) {
        if let Some(v) = advance(root, cur)? {
            write_main(root, v).at(&path)?;
            return Ok(v);
        }
    }
    // Rescan: the largest `dovecot-uidvalidity.XXXXXXXX`.
    let prefix = format!("{FILE}.");
    let mut values: Vec<u32> = fsat::list(root)
        .at(display)?
        .iter()
        .filter_map(|e| e.name.strip_prefix(&prefix))
        .filter(|h| h.len() == 8)
        .filter_map(|h| u32::from_str_radix(h, 16).ok())
        .collect();
    values.sort_unstable();
    let v = match values.last() {
        Some(&max) => {
            if values[0] != max {
                // Duplicates: Dovecot removes the oldest.
                let _ = fsat::unlink(root, &format!("{FILE}.{:08x}", values[0]));
            }
            match advance(root, max)? {
                Some(v) => v,
                None => fallback(),
            }
        }
        None => {
            let mut v = fallback();
            for _ in 0..RETRIES {
                match fsat::create_excl(root, &format!("{FILE}.{v:08x}"), 0o444) {
                    Ok(_) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => v = bump(v),
                    Err(e) => return Err(StoreError::io(&path, e)),
                }
            }
            v
        }
    };
    write_main(root, v).at(&path)?;
    common::privilege::sync_dir(root).at(display)?;
    Ok(v)
}

fn bump(v: u32) -> u32 {
    v.wrapping_add(1).max(1)
}

/// The current time (Dovecot's fallback and first value).
fn fallback() -> u32 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() as u32);
    t.max(1)
}

/// Rename `.cur` to `.cur+1` (trying the following values when someone
/// else got there first). None: no file to rename.
fn advance(root: &Arc<File>, mut cur: u32) -> Result<Option<u32>, StoreError> {
    for _ in 0..RETRIES {
        let next = bump(cur);
        match fsat::rename(
            root,
            &format!("{FILE}.{cur:08x}"),
            root,
            &format!("{FILE}.{next:08x}"),
            common::durable::Replace::Yes,
        ) {
            Ok(()) => return Ok(Some(next)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => cur = next,
            Err(e) => return Err(StoreError::io(Path::new(FILE), e)),
        }
    }
    Ok(None)
}

fn read_main(root: &Arc<File>) -> Option<u32> {
    let mut f = fsat::open_file(root, FILE).ok()?;
    let mut buf = [0u8; 8];
    let n = f.read(&mut buf).ok()?;
    let s = std::str::from_utf8(&buf[..n]).ok()?;
    u32::from_str_radix(s.trim(), 16).ok().filter(|v| *v != 0)
}

fn write_main(root: &Arc<File>, v: u32) -> std::io::Result<()> {
    let mut f = common::privilege::open_at(
        Some(root),
        Path::new(FILE),
        OFlag::O_RDWR | OFlag::O_CREAT,
        0o600,
    )?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(format!("{v:08x}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn values_ascend_and_follow_dovecot_files() {
        let d = std::env::temp_dir().join(format!("posthorn-uidvalidity-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let root = Arc::new(File::open(&d).unwrap());
        let a = next(&root, &d).unwrap();
        let now = fallback();
        assert!(a <= now && a + 5 >= now, "the first value is the time");
        let b = next(&root, &d).unwrap();
        assert_eq!(b, a + 1);
        assert_eq!(
            fs::read_to_string(d.join(FILE)).unwrap(),
            format!("{b:08x}")
        );
        assert!(d.join(format!("{FILE}.{b:08x}")).exists());
        // Dovecot's files, as the fixture has them.
        fs::remove_dir_all(&d).unwrap();
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(FILE), "6b0bc28c").unwrap();
        fs::write(d.join("dovecot-uidvalidity.6b0bc28c"), "").unwrap();
        let root = Arc::new(File::open(&d).unwrap());
        assert_eq!(next(&root, &d).unwrap(), 0x6b0bc28d);
        // The main file lost: the rescan finds the value.
        fs::remove_file(d.join(FILE)).unwrap();
        assert_eq!(next(&root, &d).unwrap(), 0x6b0bc28e);
        fs::remove_dir_all(&d).unwrap();
    }
}
