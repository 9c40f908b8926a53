//! DMARC aggregate reports (RFC 7489 7.2) from one UTC day of observations
//! (trust::dmarc_store): one report per policy domain, its rows grouped by
//! source address, identifiers and results with their messages counted,
//! written as mail-auth's XML, gzip-compressed, under the RFC 7489 7.2.1.1
//! file name `receiver!policy-domain!begin!end.xml.gz`.
//!
//! Owns: grouping, the report metadata, the file name and the file.
//! Does not own: the observations (dmarc_store, smtpd), the message and
//! its submission (mail-auth's `Report::to_rfc5322`, then sendmail: the
//! admin command). [`destinations`] finds where a domain wants its reports
//! (its DMARC record's rua) and drops the addresses whose domain has not
//! agreed to take them (RFC 7489 7.1).
//!
//! Diagnostics: errors name the file.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use mail_auth::flate2::write::GzEncoder;
use mail_auth::flate2::Compression;
use mail_auth::report::{PolicyPublished, Record, Report};

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::dmarc::Dmarc;
use mail_auth::hickory_resolver::proto::rr::RecordType;
use mail_auth::hickory_resolver::TokioResolver;

use crate::dmarc_store::{self, Observation};
use crate::records::{same_organization, Rdata};
use crate::records_check::lookup;

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0:?} is not a date (YYYY-MM-DD)")]
    BadDate(String),
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
}

/// Who reports (RFC 7489 7.2.1.1 and the report's report_metadata).
#[derive(Debug, Clone)]
pub struct Reporter {
    /// org_name: dmarc_report_organization.
    pub org_name: String,
    /// email: dmarc_report_address.
    pub email: String,
    /// The receiver domain of the file name: mydomain.
    pub receiver: String,
    /// myhostname, for the report ids.
    pub host: String,
}

/// One domain's report.
#[derive(Debug, Clone)]
pub struct DomainReport {
    pub domain: String,
    pub report: Report,
    /// Messages counted in it.
    pub messages: u64,
    /// `receiver!policy-domain!begin!end.xml.gz`.
    pub file_name: String,
}

/// The first second of the UTC day `date` (YYYY-MM-DD).
pub fn day_start(date: &str) -> Result<u64, ReportError> {
    let bad = || ReportError::BadDate(date.into());
    let mut parts = date.splitn(3, '-');
    let mut num = |len: usize| -> Result<i64, ReportError> {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != len || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse().map_err(|_| bad())
    };
    let (y, m, d) = (num(4)?, num(2)?, num(2)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let start = u64::try_from(days).map_err(|_| bad())? * 86_400;
    // 2026-02-30 would land on March 2nd: the day file's name says so.
    if dmarc_store::day_file(Path::new(""), start) != Path::new(&format!("{date}.jsonl")) {
        return Err(bad());
    }
    Ok(start)
}

/// The reports of the day that begins at `begin`, one per policy domain
/// (only `only` when given), in domain order.
pub fn reports(
    observations: &[Observation],
    begin: u64,
    reporter: &Reporter,
    only: Option<&str>,
) -> Vec<DomainReport> {
    let end = begin + 86_399;
    // Per domain: the policy last seen, and rows in first-seen order with
    // their counts.
    type Rows = (PolicyPublished, Vec<(Record, u64)>, HashMap<Record, usize>);
    let mut domains: BTreeMap<String, Rows> = BTreeMap::new();
    for o in observations {
        let domain = o.policy.domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() || only.is_some_and(|d| !d.eq_ignore_ascii_case(&domain)) {
            continue;
        }
        let entry = domains
            .entry(domain)
            .or_insert_with(|| (o.policy.clone(), Vec::new(), HashMap::new()));
        entry.0 = o.policy.clone();
        let mut key = o.record.clone();
        key.row.count = 0;
        let n = u64::from(o.record.row.count.max(1));
        match entry.2.get(&key) {
            Some(&i) => entry.1[i].1 += n,
            None => {
                entry.2.insert(key.clone(), entry.1.len());
                entry.1.push((key, n));
            }
        }
    }
    domains
        .into_iter()
        .map(|(domain, (mut policy, rows, _))| {
            policy.domain = domain.clone();
            let mut report = Report::new()
                .with_version(1.0)
                .with_org_name(&reporter.org_name)
                .with_email(&reporter.email)
                .with_report_id(format!("{begin}.{domain}@{}", reporter.host))
                .with_date_range_begin(begin)
                .with_date_range_end(end)
                .with_generator(format!("posthorn {}", env!("CARGO_PKG_VERSION")))
                .with_policy_published(policy);
            let mut messages = 0;
            for (mut rec, n) in rows {
                messages += n;
                rec.row.count = u32::try_from(n).unwrap_or(u32::MAX);
                report.add_record(rec);
            }
            DomainReport {
                file_name: format!("{}!{domain}!{begin}!{end}.xml.gz", reporter.receiver),
                domain,
                report,
                messages,
            }
        })
        .collect()
}

/// The report's XML, gzip-compressed (RFC 7489 7.2.1.1).
pub fn gzip_xml(report: &Report) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(report.to_xml().as_bytes());
    gz.finish().unwrap_or_default()
}

/// Write `r` into `dir` (replacing a report of the same name): its path.
pub fn write(dir: &Path, r: &DomainReport) -> Result<PathBuf, ReportError> {
    let path = dir.join(&r.file_name);
    common::durable::replace_file(&path, &gzip_xml(&r.report), 0o644, None)
        .map_err(|e| ReportError::Io(path.clone(), e))?;
    Ok(path)
}

/// Where `domain` wants its aggregate reports: the mailto: addresses of
/// the rua tag of its DMARC record (RFC 7489 6.3), less those in another
/// organization's domain that has not published
/// `DOMAIN._report._dmarc.THEIRS` (7.1), which are returned apart.
pub async fn destinations(
    resolver: &TokioResolver,
    domain: &str,
) -> Result<(Vec<String>, Vec<String>), String> {
    let txt = lookup(resolver, &format!("_dmarc.{domain}"), RecordType::TXT).await?;
    let records: Vec<Dmarc> = txt
        .iter()
        .filter_map(|r| match r {
            Rdata::Txt(t) => Dmarc::parse(t.as_bytes()).ok(),
            _ => None,
        })
        .collect();
    // RFC 7489 6.6.3: not exactly one record means no policy.
    let [record] = records.as_slice() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let (mut to, mut refused) = (Vec::new(), Vec::new());
    for uri in &record.rua {
        let addr = uri.uri.trim().to_string();
        let Some((_, theirs)) = addr.rsplit_once('@') else {
            continue;
        };
        if addr.is_empty() || to.contains(&addr) || refused.contains(&addr) {
            continue;
        }
        let agreed = same_organization(domain, theirs)
            || lookup(
                resolver,
                &format!("{domain}._report._dmarc.{theirs}"),
                RecordType::TXT,
            )
            .await?
            .iter()
            .any(|r| matches!(r, Rdata::Txt(t) if t.trim_start().to_ascii_lowercase().starts_with("v=dmarc1")));
        if agreed {
            to.push(addr);
        } else {
            refused.push(addr);
        }
    }
    Ok((to, refused))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::report::{ActionDisposition, DmarcResult};
    use std::io::Read;

    #[test]
    fn dates() {
        assert_eq!(day_start("1970-01-01").unwrap(), 0);
        assert_eq!(day_start("2026-11-30").unwrap(), 1_795_996_800);
        assert_eq!(day_start("2000-02-29").unwrap(), 951_782_400);
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-1-01",
            "x",
            "",
            "2026-11-30x",
        ] {
            assert!(day_start(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rows_are_grouped_and_counted_per_domain() {
        let obs = |domain: &str, ip: &str, dkim: DmarcResult| {
            let mut o = Observation {
                time: 1_795_996_800 + 60,
                policy: PolicyPublished::default(),
                record: Record::default(),
            };
            o.policy.domain = domain.into();
            o.record.row.count = 1;
            o.record.row.source_ip = Some(ip.parse().unwrap());
            o.record.row.policy_evaluated.dkim = dkim;
            o.record.row.policy_evaluated.disposition = ActionDisposition::None;
            o.record.identifiers.header_from = domain.to_ascii_lowercase();
            o
        };
        let all = vec![
            obs("a.example", "192.0.2.1", DmarcResult::Pass),
            obs("b.example", "192.0.2.9", DmarcResult::Fail),
            obs("A.example", "192.0.2.1", DmarcResult::Pass),
            obs("a.example", "192.0.2.2", DmarcResult::Pass),
            obs("a.example", "192.0.2.1", DmarcResult::Fail),
        ];
        let who = Reporter {
            org_name: "posthorn.example".into(),
            email: "postmaster@posthorn.example".into(),
            receiver: "posthorn.example".into(),
            host: "mail.posthorn.example".into(),
        };
        let r = reports(&all, 1_795_996_800, &who, None);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].file_name,
            "posthorn.example!a.example!1795996800!1796083199.xml.gz"
        );
        assert_eq!(r[0].messages, 4);
        let counts: Vec<(String, u32)> = r[0]
            .report
            .records()
            .iter()
            .map(|x| (x.source_ip().unwrap().to_string(), x.count()))
            .collect();
        assert_eq!(
            counts,
            [
                ("192.0.2.1".to_string(), 2),
                ("192.0.2.2".into(), 1),
                ("192.0.2.1".into(), 1)
            ]
        );
        let mut xml = String::new();
        mail_auth::flate2::read::GzDecoder::new(&gzip_xml(&r[0].report)[..])
            .read_to_string(&mut xml)
            .unwrap();
        let back = Report::parse_xml(xml.as_bytes()).unwrap();
        assert_eq!(back.domain(), "a.example");
        assert_eq!(back.records().len(), 3);
        assert_eq!(back.org_name(), "posthorn.example");
        let only = reports(&all, 1_795_996_800, &who, Some("b.example"));
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].messages, 1);
    }
}
