//! Day files of JSON lines: `DIR/YYYY-MM-DD.jsonl`, one file per UTC day,
//! one record per line, for what posthorn keeps for daily reports (DMARC
//! observations, TLS-RPT sessions).
//!
//! A line is written with one write(2) on a file opened O_APPEND (created
//! 0600, never through a symbolic link), so concurrent writers never
//! interleave within a line; a torn last line (a crash mid-write) runs into
//! the next one, and the reader takes the next record from its last
//! `{"time":` (every record's first field is its `time`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a record could not be kept or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
}

/// The file of the UTC day of `time` in `dir`.
pub fn day_file(dir: &Path, time: u64) -> PathBuf {
    let (y, m, d) = common::log::civil_from_days((time / 86_400) as i64);
    dir.join(format!("{y:04}-{m:02}-{d:02}.jsonl"))
}

/// Append `record` (whose first field is `time`) to the day file of `time`.
pub fn append<T: Serialize>(dir: &Path, time: u64, record: &T) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = day_file(dir, time);
    let mut line = serde_json::to_vec(record).unwrap_or_default();
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| StoreError::Io(path.clone(), e))?;
    f.write_all(&line).map_err(|e| StoreError::Io(path, e))
}

/// Every record of the day file `path` (unreadable lines skipped).
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    // The directory is mail_owner's and the reader may be root: never
    // through a symbolic link it put there.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| StoreError::Io(path.into(), e))?;
    if !f
        .metadata()
        .map_err(|e| StoreError::Io(path.into(), e))?
        .is_file()
    {
        return Err(StoreError::Io(
            path.into(),
            std::io::Error::other("not a regular file"),
        ));
    }
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).split(b'\n') {
        let line = line.map_err(|e| StoreError::Io(path.into(), e))?;
        let mut from = 0;
        while let Some(i) = find(&line[from..], b"{\"time\":") {
            let start = from + i;
            if let Ok(r) = serde_json::from_slice::<T>(&line[start..]) {
                out.push(r);
                break;
            }
            from = start + 1;
        }
    }
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_files_are_utc_dates() {
        let dir = Path::new("/x");
        assert_eq!(day_file(dir, 0), Path::new("/x/1970-01-01.jsonl"));
        // 2026-11-30 00:00:00 UTC and one second before.
        assert_eq!(
            day_file(dir, 1_795_996_800),
            Path::new("/x/2026-11-30.jsonl")
        );
        assert_eq!(
            day_file(dir, 1_795_996_799),
            Path::new("/x/2026-11-29.jsonl")
        );
        assert_eq!(day_file(dir, 951_782_400), Path::new("/x/2000-02-29.jsonl"));
    }
}
