//! DMARC observations kept for aggregate reports (RFC 7489 7.2): smtpd
//! appends one JSON line per evaluated message to
//! `$queue_directory/dmarc/YYYY-MM-DD.jsonl` (the UTC day it arrived);
//! `posthorn dmarc report` reads them back and groups them per policy
//! domain into mail-auth's report structures.
//!
//! A line is written with one write(2) on a file opened O_APPEND, so
//! concurrent smtpd processes never interleave within a line; a torn last
//! line (a crash mid-write) is skipped by the reader.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use mail_auth::report::{PolicyPublished, Record};
use serde::{Deserialize, Serialize};

/// One evaluated message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// When it arrived, seconds since the epoch.
    pub time: u64,
    /// The DMARC record of the From: domain, as published.
    pub policy: PolicyPublished,
    /// Source address, identifiers, SPF and DKIM results, disposition
    /// (`row.count` is 1).
    pub record: Record,
}

/// Why an observation could not be kept or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
}

/// The file of the UTC day of `time` in `dir`.
pub fn day_file(dir: &Path, time: u64) -> PathBuf {
    let (y, m, d) = civil(time / 86_400);
    dir.join(format!("{y:04}-{m:02}-{d:02}.jsonl"))
}

/// Append `o` to its day's file in `dir` (created mode 0600).
pub fn append(dir: &Path, o: &Observation) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = day_file(dir, o.time);
    let mut line = serde_json::to_vec(o).unwrap_or_default();
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

/// Every observation of the day file `path` (unreadable lines skipped).
pub fn read(path: &Path) -> Result<Vec<Observation>, StoreError> {
    let f = std::fs::File::open(path).map_err(|e| StoreError::Io(path.into(), e))?;
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).split(b'\n') {
        let line = line.map_err(|e| StoreError::Io(path.into(), e))?;
        // A torn line runs into the next one: the next starts at its
        // last `{"time":`.
        let mut from = 0;
        while let Some(i) = find(&line[from..], b"{\"time\":") {
            let start = from + i;
            if let Ok(o) = serde_json::from_slice::<Observation>(&line[start..]) {
                out.push(o);
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

/// Days since 1970-01-01 as (year, month, day), proleptic Gregorian
/// (Howard Hinnant's civil_from_days).
pub(crate) fn civil(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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

    #[test]
    fn observations_round_trip_and_a_torn_line_is_skipped() {
        let dir = std::env::temp_dir().join(format!("dmarc-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut o = Observation {
            time: 1_795_996_800,
            policy: PolicyPublished::default(),
            record: Record::default(),
        };
        o.policy.domain = "example.org".into();
        o.record.identifiers.header_from = "example.org".into();
        append(&dir, &o).unwrap();
        let path = day_file(&dir, o.time);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"time\":1,\"pol").unwrap();
        drop(f);
        append(&dir, &o).unwrap();
        assert_eq!(read(&path).unwrap(), vec![o.clone(), o]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
