//! TLS-RPT (RFC 8460): the result of each outbound TLS session with a
//! destination that has a policy (MTA-STS now; DANE's TLSA through the
//! same `record`), kept as one JSON line per session in
//! `$queue_directory/tlsrpt/YYYY-MM-DD.jsonl` (the UTC day of the session),
//! and the daily report of a policy domain built from them (mail-auth's
//! report::tlsrpt structures, which serialize to RFC 8460's JSON).
//!
//! Same discipline as dmarc_store.rs: one write(2) per line on a file
//! opened O_APPEND (concurrent posthorn-smtp processes never interleave
//! within a line); a torn line is skipped by the reader.
//!
//! Standards: RFC 8460 4 (report schema), 4.3 (result types).

use std::collections::BTreeMap;

use std::net::IpAddr;
use std::path::Path;

use mail_auth::report::tlsrpt::{DateRange, FailureDetails, Policy, PolicyDetails, Summary};
pub use mail_auth::report::tlsrpt::{PolicyType, ResultType, TlsReport};
use serde::{Deserialize, Serialize};

pub use crate::daylog::day_file;

/// One TLS session (or one attempt that failed before one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// When, seconds since the epoch.
    pub time: u64,
    /// sts or tlsa (no-policy-found is not recorded).
    pub policy_type: PolicyType,
    /// The recipient domain whose policy applied.
    pub policy_domain: String,
    /// The policy as published: an MTA-STS policy's lines, or the TLSA
    /// records in presentation form.
    pub policy_string: Vec<String>,
    /// MTA-STS: the policy's mx patterns.
    pub mx_host: Vec<String>,
    /// The MX host connected to (or meant to be).
    pub mx: Option<String>,
    /// Its address.
    pub ip: Option<IpAddr>,
    /// None: success; else the failure.
    pub failure: Option<ResultType>,
    /// Detail for the report's additional-information (why it failed).
    pub detail: Option<String>,
}

pub use crate::daylog::StoreError;

/// Append `s` to its day's file in `dir` (created mode 0600). This is the
/// API the outbound client calls for every session with a policy, MTA-STS
/// and DANE alike.
pub fn record(dir: &Path, s: &Session) -> Result<(), StoreError> {
    crate::daylog::append(dir, s.time, s)
}

/// Every session of the day file `path` (unreadable lines skipped; a
/// missing file is an empty day).
pub fn read(path: &Path) -> Result<Vec<Session>, StoreError> {
    match crate::daylog::read(path) {
        Err(StoreError::Io(_, e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        r => r,
    }
}

/// Who reports.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// tlsrpt_organization.
    pub organization: String,
    /// tlsrpt_contact.
    pub contact: String,
    /// myhostname, for the report-id.
    pub hostname: String,
}

/// The report of `domain` for the UTC day starting at `day_start`
/// (seconds since the epoch) from `sessions` (others' domains ignored):
/// one policy entry per distinct policy, its success and failure counts,
/// failures grouped by result type, MX host and address.
pub fn report(sessions: &[Session], domain: &str, day_start: u64, who: &Reporter) -> TlsReport {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    type Key = (String, Vec<String>, Vec<String>);
    let mut policies: BTreeMap<Key, (Policy, BTreeMap<String, FailureDetails>)> = BTreeMap::new();
    for s in sessions
        .iter()
        .filter(|s| s.policy_domain.eq_ignore_ascii_case(&domain))
        .filter(|s| s.time >= day_start && s.time < day_start + 86_400)
    {
        let kind = serde_json::to_string(&s.policy_type).unwrap_or_default();
        let key = (kind, s.policy_string.clone(), s.mx_host.clone());
        let (policy, failures) = policies.entry(key).or_insert_with(|| {
            let mut details = PolicyDetails::new(s.policy_type, domain.clone());
            details.policy_string = s.policy_string.clone();
            details.mx_host = s.mx_host.clone();
            (
                Policy {
                    policy: details,
                    summary: Summary {
                        total_success: 0,
                        total_failure: 0,
                    },
                    failure_details: Vec::new(),
                },
                BTreeMap::new(),
            )
        });
        let Some(result) = s.failure else {
            policy.summary.total_success += 1;
            continue;
        };
        policy.summary.total_failure += 1;
        let fkey = format!(
            "{}|{}|{}|{}",
            serde_json::to_string(&result).unwrap_or_default(),
            s.mx.as_deref().unwrap_or(""),
            s.ip.map(|i| i.to_string()).unwrap_or_default(),
            s.detail.as_deref().unwrap_or("")
        );
        let f = failures.entry(fkey).or_insert_with(|| FailureDetails {
            result_type: result,
            receiving_mx_hostname: s.mx.clone(),
            receiving_ip: s.ip,
            additional_information: s.detail.clone(),
            ..Default::default()
        });
        f.failed_session_count += 1;
    }
    let (y, m, d) = common::log::civil_from_days((day_start / 86_400) as i64);
    TlsReport {
        organization_name: Some(who.organization.clone()),
        date_range: DateRange::from_timestamps(day_start as i64, day_start as i64 + 86_399),
        contact_info: Some(who.contact.clone()),
        report_id: format!("{y:04}-{m:02}-{d:02}_{domain}@{}", who.hostname),
        policies: policies
            .into_values()
            .map(|(mut p, f)| {
                p.failure_details = f.into_values().collect();
                p
            })
            .collect(),
    }
}

/// `YYYY-MM-DD` as the second its UTC day starts.
pub fn parse_day(s: &str) -> Option<u64> {
    let mut it = s.splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Reject 2026-02-31 and the like: it must come back as itself.
    (common::log::civil_from_days(days as i64) == (y, m, d)).then_some(days * 86_400)
}

/// (year, month, day) as days since 1970-01-01 (Howard Hinnant's
/// days_from_civil, the inverse of dmarc_store's civil).
fn days_from_civil(y: i64, m: u32, d: u32) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468).max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn session(time: u64, failure: Option<ResultType>) -> Session {
        Session {
            time,
            policy_type: PolicyType::Sts,
            policy_domain: "example.org".into(),
            policy_string: vec!["version: STSv1".into(), "mode: enforce".into()],
            mx_host: vec!["mx.example.org".into()],
            mx: Some("mx.example.org".into()),
            ip: Some("192.0.2.1".parse().unwrap()),
            failure,
            detail: None,
        }
    }

    #[test]
    fn days() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2026-11-30"), Some(1_795_996_800));
        assert_eq!(parse_day("2000-02-29"), Some(951_782_400));
        for bad in ["2026-02-30", "2026-13-01", "26-11-30", "2026-1-30", "x", ""] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn sessions_round_trip_and_make_a_report() {
        let dir = std::env::temp_dir().join(format!("tlsrpt-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let day = 1_795_996_800;
        let ok = session(day + 10, None);
        let bad = session(day + 20, Some(ResultType::CertificateHostMismatch));
        record(&dir, &ok).unwrap();
        let path = day_file(&dir, day);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"time\":1,\"pol").unwrap();
        drop(f);
        record(&dir, &bad).unwrap();
        record(&dir, &bad).unwrap();
        let mut other = ok.clone();
        other.policy_domain = "other.example".into();
        record(&dir, &other).unwrap();
        let all = read(&path).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[1], bad);
        let who = Reporter {
            organization: "posthorn.example".into(),
            contact: "postmaster@posthorn.example".into(),
            hostname: "mx.posthorn.example".into(),
        };
        let r = report(&all, "Example.org", day, &who);
        assert_eq!(r.policies.len(), 1);
        let p = &r.policies[0];
        assert_eq!((p.summary.total_success, p.summary.total_failure), (1, 2));
        assert_eq!(p.failure_details.len(), 1);
        assert_eq!(p.failure_details[0].failed_session_count, 2);
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["organization-name"], "posthorn.example");
        assert_eq!(json["date-range"]["start-datetime"], "2026-11-30T00:00:00Z");
        assert_eq!(json["date-range"]["end-datetime"], "2026-11-30T23:59:59Z");
        assert_eq!(json["policies"][0]["policy"]["policy-type"], "sts");
        assert_eq!(
            json["policies"][0]["failure-details"][0]["result-type"],
            "certificate-host-mismatch"
        );
        assert_eq!(read(&dir.join("none.jsonl")).unwrap(), Vec::new());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
