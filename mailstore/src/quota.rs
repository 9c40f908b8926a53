//! Maildir++ quota: the `maildirsize` file at the Maildir's top, as
//! Dovecot's `maildir` quota backend keeps it.
//!
//! ```text
//! 1073741824S,1000C      the limits: bytes S, messages C (0S when none)
//! 52345 17               bytes and messages at the last recalculation
//! 1260 1                 then one line per change: a delivery ...
//! -1260 -1               ... an expunge
//! ```
//!
//! Owns reading the usage, recalculating it from the folders (the `,S=`
//! sizes of every file in new/ and cur/ of every folder, stat where a name
//! has none), the check before storing (`check`), and the lines appended
//! after a change (`update`). The limits come from the users file
//! (common::quota::Quota); the file's first line only says which limits it
//! was counted for.
//!
//! The file is recalculated, as the Maildir++ specification and Dovecot
//! (quota-maildir.c) say, when it is missing, larger than 5120 bytes,
//! malformed (logged), written for other limits, or shows the user over
//! quota while having more than one change line or being older than 15
//! minutes. A recalculation is written only if no folder changed while it
//! was counted; otherwise the file is removed, to be counted again next
//! time. With no limits an existing file is kept up to date but none is
//! made.
//!
//! Standards: the Maildir++ quota specification (Courier's maildirquota);
//! Dovecot's quota rules (no grace: a message that would go over the limit
//! is refused).
//!
//! Security: the file is read bounded (5120 bytes) through the Maildir's
//! descriptor, never through a link; numbers are checked for overflow.
//!
//! Diagnostics: a malformed file is a warning naming it; I/O failures are
//! `StoreError::Io` with the path.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::OFlag;

use common::quota::Quota;
use common::warning;

use crate::error::{At, ParseError, StoreError};
use crate::filename;
use crate::fsat::{self, Kind};

/// The file's name in the Maildir.
pub const FILE: &str = "maildirsize";
/// Larger files are recalculated (Maildir++: 5120 bytes).
pub const MAX_FILE: usize = 5120;
/// An over-quota file older than this is recalculated (Dovecot's
/// MAILDIRSIZE_STALE_SECS).
const STALE_SECS: i64 = 15 * 60;

/// What a user's mail takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub messages: u64,
}

/// Storing something would go over a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Quota exceeded (mailbox for user is full): {} of {} bytes, {} of {} messages in use, {bytes} more bytes",
    usage.bytes, fmt_limit(quota.storage), usage.messages, fmt_limit(quota.messages))]
pub struct OverQuota {
    pub usage: Usage,
    pub quota: Quota,
    /// What was to be added.
    pub bytes: u64,
    pub messages: u64,
}

fn fmt_limit(l: Option<u64>) -> String {
    l.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

/// A parsed maildirsize file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maildirsize {
    /// The limits it was counted for (0 in the file: None).
    pub limits: Quota,
    /// Sums of all lines after the first.
    pub bytes: i64,
    pub messages: i64,
    /// How many lines after the first.
    pub lines: usize,
}

impl Maildirsize {
    /// Parse a whole file (a last line without LF is ignored: a write cut
    /// short).
    pub fn parse(data: &[u8]) -> Result<Maildirsize, ParseError> {
        if data.len() > MAX_FILE {
            return Err(ParseError::new(0, format!("larger than {MAX_FILE} bytes")));
        }
        let Some(end) = data.iter().rposition(|b| *b == b'\n') else {
            return Err(ParseError::new(1, "no complete line"));
        };
        let text =
            std::str::from_utf8(&data[..end]).map_err(|_| ParseError::new(0, "not UTF-8"))?;
        let mut lines = text.split('\n');
        let first = lines.next().unwrap_or("");
        let mut limits = Quota::default();
        for part in first.split(',').filter(|p| !p.is_empty()) {
            // The unit is the last byte; anything but S or C (a multi-byte
            // character too) is an error.
            let (num, storage) = if let Some(n) = part.strip_suffix('S') {
                (n, true)
            } else if let Some(n) = part.strip_suffix('C') {
                (n, false)
            } else {
                return Err(ParseError::new(1, format!("invalid limit {part:?}")));
            };
            if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::new(1, format!("invalid limit {part:?}")));
            }
            let n: u64 = num
                .parse()
                .map_err(|_| ParseError::new(1, format!("limit {part:?} too large")))?;
            let n = (n > 0).then_some(n);
            if storage {
                limits.storage = n;
            } else {
                limits.messages = n;
            }
        }
        let (mut bytes, mut messages, mut count) = (0i64, 0i64, 0usize);
        for (i, line) in lines.enumerate() {
            let no = i + 2;
            let mut f = line.split_ascii_whitespace();
            let (Some(b), Some(m), None) = (f.next(), f.next(), f.next()) else {
                return Err(ParseError::new(no, "expected \"<bytes> <messages>\""));
            };
            let b: i64 = b
                .parse()
                .map_err(|_| ParseError::new(no, format!("invalid byte count {b:?}")))?;
            let m: i64 = m
                .parse()
                .map_err(|_| ParseError::new(no, format!("invalid message count {m:?}")))?;
            bytes = bytes
                .checked_add(b)
                .ok_or_else(|| ParseError::new(no, "byte count overflows"))?;
            messages = messages
                .checked_add(m)
                .ok_or_else(|| ParseError::new(no, "message count overflows"))?;
            count += 1;
        }
        if count == 0 {
            return Err(ParseError::new(2, "no usage line"));
        }
        if bytes < 0 || messages < 0 {
            return Err(ParseError::new(0, "negative usage"));
        }
        Ok(Maildirsize {
            limits,
            bytes,
            messages,
            lines: count,
        })
    }
}

/// The first line for `quota`, as Dovecot writes it.
pub fn limits_line(quota: &Quota) -> String {
    let mut s = String::new();
    if quota.storage.is_some() || quota.messages.is_none() {
        s.push_str(&format!("{}S", quota.storage.unwrap_or(0)));
    }
    if let Some(c) = quota.messages {
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(&format!("{c}C"));
    }
    s
}

/// The usage of the Maildir `root` (its descriptor; `display` its path).
pub fn usage(root: &Arc<File>, display: &Path, quota: &Quota) -> Result<Usage, StoreError> {
    let path = display.join(FILE);
    match fsat::read_bounded(root, FILE, MAX_FILE) {
        Ok(Some(data)) => match Maildirsize::parse(&data) {
            Ok(m) => {
                let over = quota.storage.is_some_and(|l| m.bytes as u64 > l)
                    || quota.messages.is_some_and(|l| m.messages as u64 > l);
                let old = || {
                    fsat::stat(root, FILE)
                        .map(|st| st.st_mtime < now() - STALE_SECS)
                        .unwrap_or(true)
                };
                if m.limits == *quota && !(over && (m.lines > 1 || old())) {
                    return Ok(Usage {
                        bytes: m.bytes as u64,
                        messages: m.messages as u64,
                    });
                }
            }
            Err(e) => warning!("{}: {e}; recalculating", path.display()),
        },
        Ok(None) => {}
        // Too large: recalculated.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {}
        Err(e) => return Err(StoreError::io(&path, e)),
    }
    recalculate(root, display, quota)
}

/// Would adding `bytes` in `messages` messages go over `quota`?
pub fn check(
    root: &Arc<File>,
    display: &Path,
    quota: &Quota,
    bytes: u64,
    messages: u64,
) -> Result<(), StoreError> {
    if quota.is_unlimited() {
        return Ok(());
    }
    let u = usage(root, display, quota)?;
    let over_bytes = quota
        .storage
        .is_some_and(|l| u.bytes.saturating_add(bytes) > l);
    let over_count = quota
        .messages
        .is_some_and(|l| u.messages.saturating_add(messages) > l);
    if over_bytes || over_count {
        return Err(StoreError::OverQuota(OverQuota {
            usage: u,
            quota: *quota,
            bytes,
            messages,
        }));
    }
    Ok(())
}

/// Record a change (`+size 1` for a new message, `-size -1` for an
/// expunge) by appending a line, if the file exists (with O_APPEND, one
/// write, as the Maildir++ specification says). A missing file is
/// recalculated when it is next needed.
pub fn update(
    root: &Arc<File>,
    display: &Path,
    bytes: i64,
    messages: i64,
) -> Result<(), StoreError> {
    if bytes == 0 && messages == 0 {
        return Ok(());
    }
    let path = display.join(FILE);
    let mut f = match common::privilege::open_at(
        Some(root),
        Path::new(FILE),
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_NONBLOCK,
        0,
    ) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    if !f.metadata().at(&path)?.is_file() {
        return Err(StoreError::io(
            &path,
            std::io::Error::other("not a regular file"),
        ));
    }
    f.write_all(format!("{bytes} {messages}\n").as_bytes())
        .at(&path)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Every folder directory's new/ and cur/: (directory, name) pairs.
fn mail_dirs(root: &Arc<File>) -> std::io::Result<Vec<File>> {
    let mut dirs = Vec::new();
    let mut folders = vec![None];
    for e in fsat::list(root)? {
        if e.kind == Kind::Dir && crate::names::from_disk(&e.name).is_some() {
            folders.push(Some(e.name));
        }
    }
    for f in folders {
        let fdir = match &f {
            None => None,
            Some(name) => match fsat::open_dir(root, name) {
                Ok(d) => Some(d),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            },
        };
        let base: &File = fdir.as_ref().unwrap_or(root);
        for sub in ["new", "cur"] {
            match fsat::open_dir(base, sub) {
                Ok(d) => dirs.push(d),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(dirs)
}

fn mtime_ns(f: &File) -> std::io::Result<(i64, i64)> {
    let st = nix::sys::stat::fstat(f.as_raw_fd()).map_err(std::io::Error::from)?;
    Ok((st.st_mtime, st.st_mtime_nsec))
}

/// Count every folder and write the result (see the header).
pub fn recalculate(root: &Arc<File>, display: &Path, quota: &Quota) -> Result<Usage, StoreError> {
    let dirs = mail_dirs(root).at(display)?;
    let mut before = Vec::with_capacity(dirs.len());
    let mut u = Usage::default();
    for d in &dirs {
        before.push(mtime_ns(d).at(display)?);
        for e in fsat::list(d).at(display)? {
            if e.kind == Kind::Dir || !filename::is_valid(&e.name) {
                continue;
            }
            let size = match filename::size_field(&e.name, b'S') {
                Some(s) => s,
                None => match fsat::stat(d, &e.name) {
                    Ok(st) => st.st_size as u64,
                    Err(_) => continue,
                },
            };
            u.bytes += size;
            u.messages += 1;
        }
    }
    let mut changed = false;
    for (d, b) in dirs.iter().zip(&before) {
        if mtime_ns(d).at(display)? != *b {
            changed = true;
        }
    }
    let exists = fsat::stat(root, FILE).is_ok();
    if changed {
        // Counted while mail moved: not trustworthy enough to write down.
        if exists {
            fsat::unlink(root, FILE).at(&display.join(FILE))?;
        }
    } else if !quota.is_unlimited() || exists {
        write(root, display, quota, u)?;
    }
    Ok(u)
}

fn write(root: &Arc<File>, display: &Path, quota: &Quota, u: Usage) -> Result<(), StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let path = display.join(FILE);
    let tmp = format!(
        "{FILE}.{}.{}.{}",
        filename::hostname().replace('/', "_"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut f = common::durable::create_new(Some(root), Path::new(&tmp), 0o600).at(&path)?;
    let text = format!("{}\n{} {}\n", limits_line(quota), u.bytes, u.messages);
    let r = f.write_all(text.as_bytes()).at(&path).and_then(|()| {
        common::durable::commit(
            f,
            Some(root),
            Path::new(&tmp),
            root,
            Path::new(FILE),
            common::durable::Replace::Yes,
        )
        .map_err(|e| StoreError::io(&path, e.into()))
    });
    if r.is_err() {
        let _ = fsat::unlink(root, &tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: Option<u64>, m: Option<u64>) -> Quota {
        Quota {
            storage: s,
            messages: m,
        }
    }

    #[test]
    fn parse_good() {
        let m = Maildirsize::parse(b"1000S,10C\n500 3\n100 1\n-50 -1\n").unwrap();
        assert_eq!(m.limits, q(Some(1000), Some(10)));
        assert_eq!((m.bytes, m.messages, m.lines), (550, 3, 3));
        let m = Maildirsize::parse(b"0S\n0 0\n12 1\n12 ").unwrap();
        assert_eq!(m.limits, q(None, None));
        assert_eq!(
            (m.bytes, m.messages, m.lines),
            (12, 1, 2),
            "cut-off last line ignored"
        );
        let m = Maildirsize::parse(b"5C\n  7   2\n").unwrap();
        assert_eq!(m.limits, q(None, Some(5)));
        assert_eq!(
            Maildirsize::parse(b"\n1 1\n").unwrap().limits,
            q(None, None)
        );
    }

    #[test]
    fn parse_bad() {
        let cases: &[(&[u8], usize)] = &[
            (b"", 1),
            (b"1000S", 1),
            (b"1000S\n", 2),
            (b"1000X\n0 0\n", 1),
            (b"S\n0 0\n", 1),
            (b"-5S\n0 0\n", 1),
            (b"99999999999999999999999S\n0 0\n", 1),
            (b"0S\n1\n", 2),
            (b"0S\n1 2 3\n", 2),
            (b"0S\nx 1\n", 2),
            (b"0S\n10 1\n-20 -1\n", 0),
            (b"0S\n9223372036854775807 1\n1 1\n", 3),
        ];
        for (data, line) in cases {
            let e = Maildirsize::parse(data).unwrap_err();
            assert_eq!(e.line, *line, "{:?}: {e}", String::from_utf8_lossy(data));
        }
        assert!(Maildirsize::parse(&vec![b'\n'; MAX_FILE + 1]).is_err());
    }

    /// Found by fuzz/ maildirsize: a limit ending in a multi-byte character
    /// was cut inside it (a panic in local delivery, on a file the mailbox
    /// owner can write).
    #[test]
    fn limit_ending_in_a_multibyte_character_is_an_error() {
        for data in ["50\u{3bc}\n0 0\n", "5550C\u{451}\n1 1\n", "\u{3cb}\n0 0\n"] {
            let e = Maildirsize::parse(data.as_bytes()).unwrap_err();
            assert_eq!(e.line, 1, "{data:?}: {e}");
        }
    }

    #[test]
    fn limits_lines() {
        assert_eq!(limits_line(&q(Some(1000), Some(10))), "1000S,10C");
        assert_eq!(limits_line(&q(None, Some(10))), "10C");
        assert_eq!(limits_line(&q(Some(5), None)), "5S");
        assert_eq!(limits_line(&q(None, None)), "0S");
        for quota in [
            q(Some(1000), Some(10)),
            q(None, Some(10)),
            q(Some(5), None),
            q(None, None),
        ] {
            let m =
                Maildirsize::parse(format!("{}\n0 0\n", limits_line(&quota)).as_bytes()).unwrap();
            assert_eq!(m.limits, quota);
        }
    }
}
