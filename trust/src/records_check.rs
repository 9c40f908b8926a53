//! `posthorn dns --check`: each record of trust::records looked up through
//! the configured resolver (trust::dns) and judged (records::judge); SPF
//! is also evaluated for each of this host's addresses (A and AAAA of
//! myhostname) with mail-auth's SPF, so a record that parses but does not
//! let this host send is wrong.
//!
//! Diagnostics: one verdict per record; a failed look-up (time-out,
//! SERVFAIL) is its own verdict, never "missing".
//!
//! Standards: RFC 7208 4 (check_host() for the domain with this host's
//! addresses), RFC 1035 (the look-ups, hickory's).

use std::net::IpAddr;

use mail_auth::hickory_resolver::proto::rr::{RData, RecordType};
use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{MessageAuthenticator, SpfResult};

use crate::records::{judge, Kind, Rdata, Record, Verdict};

/// Look up every record and judge it, in order.
pub async fn check(resolver: &TokioResolver, host: &str, records: &[Record]) -> Vec<Verdict> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let rtype = match r.data {
            Rdata::Mx(..) => RecordType::MX,
            Rdata::Txt(_) => RecordType::TXT,
            Rdata::Tlsa(..) => RecordType::TLSA,
            Rdata::Srv(..) => RecordType::SRV,
        };
        let verdict = match lookup(resolver, &r.name, rtype).await {
            Err(e) => Verdict::Failed(e),
            Ok(found) => match judge(r, &found) {
                Verdict::Ok if r.kind == Kind::Spf => spf_lets_host_send(resolver, host, r).await,
                v => v,
            },
        };
        out.push(verdict);
    }
    out
}

/// The records of `rtype` at `name`: empty for NXDOMAIN or no records.
pub async fn lookup(
    resolver: &TokioResolver,
    name: &str,
    rtype: RecordType,
) -> Result<Vec<Rdata>, String> {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    let lookup = match resolver.lookup(fqdn.as_str(), rtype).await {
        Ok(l) => l,
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let name = |n: &mail_auth::hickory_resolver::proto::rr::Name| {
        n.to_ascii().trim_end_matches('.').to_string()
    };
    Ok(lookup
        .answers()
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::MX(mx) => Some(Rdata::Mx(mx.preference, name(&mx.exchange))),
            RData::TXT(txt) => Some(Rdata::Txt(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s))
                    .collect(),
            )),
            RData::TLSA(t) => Some(Rdata::Tlsa(
                t.cert_usage.into(),
                t.selector.into(),
                t.matching.into(),
                t.cert_data.clone(),
            )),
            RData::SRV(s) => Some(Rdata::Srv(s.priority, s.weight, s.port, name(&s.target))),
            _ => None,
        })
        .collect())
}

/// RFC 7208 check_host() for the domain of `spf` with each address of
/// `host`: every one must pass.
async fn spf_lets_host_send(resolver: &TokioResolver, host: &str, spf: &Record) -> Verdict {
    let fqdn = format!("{}.", host.trim_end_matches('.'));
    // A and AAAA both (a resolver's lookup_ip stops at the first family
    // that has addresses).
    let mut addrs: Vec<IpAddr> = Vec::new();
    for rtype in [RecordType::A, RecordType::AAAA] {
        match resolver.lookup(fqdn.as_str(), rtype).await {
            Ok(l) => addrs.extend(l.answers().iter().filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => {}
            Err(e) => return Verdict::Failed(format!("{host}: {e}")),
        }
    }
    let expected = spf.data.to_string();
    let found = match lookup(resolver, &spf.name, RecordType::TXT).await {
        Ok(found) => found
            .iter()
            .filter(|r| matches!(r, Rdata::Txt(t) if t.to_ascii_lowercase().starts_with("v=spf1")))
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => return Verdict::Failed(e),
    };
    if addrs.is_empty() {
        return Verdict::Wrong {
            found: format!("{found} ({host} has no address to send from)"),
            expected,
        };
    }
    let auth = MessageAuthenticator(resolver.clone());
    let sender = format!("postmaster@{}", spf.name);
    let mut failing = Vec::new();
    for ip in addrs {
        let out = auth
            .verify_spf(SpfParameters::verify_mail_from(ip, host, host, &sender))
            .await;
        match out.result() {
            SpfResult::Pass => {}
            SpfResult::TempError => {
                return Verdict::Failed(format!("SPF of {} for {ip}: temperror", spf.name))
            }
            r => failing.push(format!("{ip} gets {}", crate::verify::spf_result(r))),
        }
    }
    if failing.is_empty() {
        Verdict::Ok
    } else {
        Verdict::Wrong {
            found: format!("{found} ({})", failing.join(", ")),
            expected,
        }
    }
}
