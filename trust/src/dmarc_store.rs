//! DMARC observations kept for aggregate reports (RFC 7489 7.2): smtpd
//! appends one JSON line per evaluated message to
//! `$queue_directory/dmarc/YYYY-MM-DD.jsonl` (the UTC day it arrived);
//! `posthorn dmarc report` reads them back and groups them per policy
//! domain into mail-auth's report structures.
//!
//! The files are `crate::daylog`'s: one O_APPEND write per line, torn lines
//! skipped.

use std::path::Path;

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

pub use crate::daylog::{day_file, StoreError};

/// Append `o` to its day's file in `dir` (created mode 0600).
pub fn append(dir: &Path, o: &Observation) -> Result<(), StoreError> {
    crate::daylog::append(dir, o.time, o)
}

/// Every observation of the day file `path` (unreadable lines skipped).
pub fn read(path: &Path) -> Result<Vec<Observation>, StoreError> {
    crate::daylog::read(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
