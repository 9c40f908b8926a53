//! Where mail for a recipient goes: the next hop and its addresses.
//!
//! Owns the look-ups of a next hop (common::addr::NextHop, relayhost's
//! syntax, chosen by qmgr: `[host]:port` or `[address]:port` is that host,
//! no MX look-up; `host` or `host:port` the hosts of its MX records): the
//! look-ups (`Dns`: hickory's stub
//! resolver, /etc/resolv.conf's servers or `dns_servers`, set up by
//! common::dns): MX records in
//! preference order, equal ones in random order; no MX record means the
//! domain itself (the implicit MX); a lone MX of "." is RFC 7505's null MX
//! (the domain takes no mail: bounce 5.1.10); a domain that does not exist
//! bounces (5.1.2); a failing name service defers (4.4.3). For DANE
//! (dane.rs), the look-ups validated with DNSSEC in this process
//! (`dane_mx_hosts`, `tlsa`: a second resolver, with the trust anchors of
//! dnssec_trust_anchor_file or the root's built in): whether the MX records
//! are secure, and the TLSA records of a host. Does not own the SMTP
//! conversation (session.rs).
//!
//! Standards: RFC 5321 5.1 (MX order, implicit MX), RFC 7505 (null MX),
//! RFC 1035, RFC 4035 (DNSSEC validation, hickory's), RFC 7672 2.2 (TLSA
//! and MX look-ups for DANE).
//!
//! Diagnostics: look-up failures are the texts of the deferrals and
//! bounces (`Name service error for name=D type=MX: ...`).

use std::cell::OnceCell;
use std::net::SocketAddr;
use std::path::PathBuf;

use common::dns::{self, DnsError};
use hickory_resolver::proto::rr::{RData, RecordType};

use crate::dane::Tlsa;

pub use common::addr::NextHop;

/// Why a destination has no addresses to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unroutable {
    /// The domain does not exist (NXDOMAIN): bounce, 5.1.2.
    NoSuchDomain(String),
    /// RFC 7505: the domain takes no mail (a lone MX of "." at preference
    /// 0): bounce, 5.1.10.
    NullMx(String),
    /// The name service failed or timed out: defer, 4.4.3.
    TempFail(String),
    /// DANE's validated look-up failed or was bogus: defer, 4.7.5.
    Bogus(String),
}

/// MX and address look-ups: hickory's stub resolver on a current-thread
/// runtime of this process, with /etc/resolv.conf's servers or
/// `dns_servers`.
pub struct Dns {
    rt: tokio::runtime::Runtime,
    resolver: dns::TokioResolver,
    servers: Vec<String>,
    /// dnssec_trust_anchor_file (None: the root's keys built into hickory).
    anchor_file: Option<PathBuf>,
    /// The validating resolver, made when DANE first needs it.
    secure: OnceCell<Result<dns::TokioResolver, String>>,
}

/// What DNSSEC says about a TLSA RRset (RFC 7672 2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsaLookup {
    /// Secure records (usable or not).
    Secure(Vec<Tlsa>),
    /// No records (secure or insecure denial), or insecure ones: DANE
    /// does not apply.
    None,
    /// Bogus or failed: the host cannot be used under DANE (RFC 7672
    /// 2.2: not even without it, where TLSA records may exist).
    Failed(String),
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dns")
    }
}

impl Dns {
    /// `servers`: ADDR:PORT (or ADDR, port 53) each; empty: the system's
    /// (common::dns sets both up, for smtpd's client names too).
    /// `anchor_file`: dnssec_trust_anchor_file, for the DANE look-ups.
    pub fn new(servers: &[String], anchor_file: Option<PathBuf>) -> Result<Dns, DnsError> {
        let rt = dns::runtime()?;
        let resolver = rt.block_on(async { dns::resolver(servers) })?;
        Ok(Dns {
            rt,
            resolver,
            servers: servers.to_vec(),
            anchor_file,
            secure: OnceCell::new(),
        })
    }

    fn secure(&self) -> Result<&dns::TokioResolver, String> {
        self.secure
            .get_or_init(|| {
                self.rt
                    .block_on(async {
                        dns::validating_resolver(&self.servers, self.anchor_file.as_deref())
                    })
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// `mx_hosts` through the validating resolver, for DANE, and whether
    /// the MX records are secure (RFC 7672 2.2.1: only then are the hosts
    /// reference identifiers; false when insecure, or when there are none
    /// and the domain is its own host). The hosts tried are these, never
    /// the unvalidated resolver's: a forged MX answer there must not pass
    /// as the secure one's. Bogus or failing: `Unroutable::Bogus`.
    pub fn dane_mx_hosts(&self, domain: &str) -> Result<(Vec<String>, bool), Unroutable> {
        let resolver = self.secure().map_err(Unroutable::Bogus)?;
        self.mx_hosts_with(resolver, domain, true)
    }

    /// The TLSA records of `host` for `port` (RFC 7672 2.2:
    /// `_PORT._tcp.HOST`), validated.
    pub fn tlsa(&self, host: &str, port: u16) -> TlsaLookup {
        let resolver = match self.secure() {
            Ok(r) => r,
            Err(e) => return TlsaLookup::Failed(e),
        };
        let name = format!("_{port}._tcp.{}.", host.trim_end_matches('.'));
        match self
            .rt
            .block_on(resolver.lookup(name.as_str(), RecordType::TLSA))
        {
            Ok(l) => {
                let mut records = Vec::new();
                let mut secure = true;
                for r in l.answers() {
                    if let RData::TLSA(t) = &r.data {
                        secure &= r.proof.is_secure();
                        records.push(Tlsa {
                            usage: t.cert_usage.into(),
                            selector: t.selector.into(),
                            matching: t.matching.into(),
                            data: t.cert_data.clone(),
                        });
                    }
                }
                match (records.is_empty(), secure) {
                    (true, _) => TlsaLookup::None,
                    (false, true) => TlsaLookup::Secure(records),
                    // Insecure records are ignored (RFC 7672 2.2).
                    (false, false) => TlsaLookup::None,
                }
            }
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => TlsaLookup::None,
            Err(e) => TlsaLookup::Failed(format!("TLSA lookup error for {host}:{port}: {e}")),
        }
    }

    /// The hosts mail for `domain` goes to, most preferred first (equal
    /// preferences in random order, RFC 5321 5.1); the domain itself when
    /// it has no MX (the implicit MX).
    pub fn mx_hosts(&self, domain: &str) -> Result<Vec<String>, Unroutable> {
        self.mx_hosts_with(&self.resolver, domain, false)
            .map(|(hosts, _)| hosts)
    }

    /// `mx_hosts` through `resolver`, and whether every MX record is
    /// DNSSEC-secure; `validating`: failures are `Bogus`.
    fn mx_hosts_with(
        &self,
        resolver: &dns::TokioResolver,
        domain: &str,
        validating: bool,
    ) -> Result<(Vec<String>, bool), Unroutable> {
        let name = format!("{}.", domain.trim_end_matches('.'));
        match self
            .rt
            .block_on(resolver.lookup(name.as_str(), RecordType::MX))
        {
            Ok(mx) => {
                let secure = mx
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == RecordType::MX)
                    .all(|r| r.proof.is_secure());
                let mut records: Vec<(u16, String)> = mx
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(m) => Some((
                            m.preference,
                            m.exchange.to_ascii().trim_end_matches('.').to_string(),
                        )),
                        _ => None,
                    })
                    .collect();
                if records.len() == 1 && records[0].1.is_empty() {
                    return Err(Unroutable::NullMx(domain.to_string()));
                }
                records.retain(|(_, h)| !h.is_empty());
                shuffle(&mut records);
                records.sort_by_key(|(p, _)| *p);
                let secure = secure && !records.is_empty();
                Ok((records.into_iter().map(|(_, h)| h).collect(), secure))
            }
            Err(e) if e.is_nx_domain() => Err(Unroutable::NoSuchDomain(domain.to_string())),
            Err(e) if e.is_no_records_found() => Ok((vec![domain.to_string()], false)),
            Err(e) if validating => Err(Unroutable::Bogus(format!(
                "MX lookup error for {domain} (DNSSEC): {e}"
            ))),
            Err(e) => Err(Unroutable::TempFail(format!(
                "Name service error for name={domain} type=MX: {e}"
            ))),
        }
    }

    /// The addresses of `host` (an address literal is itself), on `port`.
    pub fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Unroutable> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let name = format!("{}.", host.trim_end_matches('.'));
        match self.rt.block_on(self.resolver.lookup_ip(name.as_str())) {
            Ok(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(ip, port)).collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(Unroutable::TempFail(format!(
                "Name service error for name={host} type=A: {e}"
            ))),
        }
    }
}

/// Equal preferences in random order (a stable sort by preference after).
fn shuffle<T>(v: &mut [T]) {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos() as u64 | 1);
    for i in (1..v.len()).rev() {
        // xorshift
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}
