//! Where mail for a recipient goes: the next hop and its addresses.
//!
//! Owns the look-ups of a next hop (common::addr::NextHop, relayhost's
//! syntax, chosen by qmgr: `[host]:port` or `[address]:port` is that host,
//! no MX look-up; `host` or `host:port` the hosts of its MX records): the
//! look-ups (`Dns`: hickory 0.26's stub
//! resolver, /etc/resolv.conf's servers or `dns_servers`, set up by
//! common::dns): MX records in
//! preference order, equal ones in random order; no MX record means the
//! domain itself (the implicit MX); a lone MX of "." is RFC 7505's null MX
//! (the domain takes no mail: bounce 5.1.10); a domain that does not exist
//! bounces (5.1.2); a failing name service defers (4.4.3). Does not own the
//! SMTP conversation (session.rs).
//!
//! Standards: RFC 5321 5.1 (MX order, implicit MX), RFC 7505 (null MX),
//! RFC 1035.
//!
//! Diagnostics: look-up failures are the texts of the deferrals and
//! bounces (`Name service error for name=D type=MX: ...`).

use std::net::SocketAddr;

use common::dns::{self, DnsError};
use hickory_resolver::proto::rr::{RData, RecordType};

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
}

/// MX and address look-ups: hickory's stub resolver on a current-thread
/// runtime of this process, with /etc/resolv.conf's servers or
/// `dns_servers`.
pub struct Dns {
    rt: tokio::runtime::Runtime,
    resolver: dns::TokioResolver,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dns")
    }
}

impl Dns {
    /// `servers`: ADDR:PORT (or ADDR, port 53) each; empty: the system's
    /// (common::dns sets both up, for smtpd's client names too).
    pub fn new(servers: &[String]) -> Result<Dns, DnsError> {
        let rt = dns::runtime()?;
        let resolver = rt.block_on(async { dns::resolver(servers) })?;
        Ok(Dns { rt, resolver })
    }

    /// The hosts mail for `domain` goes to, most preferred first (equal
    /// preferences in random order, RFC 5321 5.1); the domain itself when
    /// it has no MX (the implicit MX).
    pub fn mx_hosts(&self, domain: &str) -> Result<Vec<String>, Unroutable> {
        let name = format!("{}.", domain.trim_end_matches('.'));
        match self
            .rt
            .block_on(self.resolver.lookup(name.as_str(), RecordType::MX))
        {
            Ok(mx) => {
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
                Ok(records.into_iter().map(|(_, h)| h).collect())
            }
            Err(e) if e.is_nx_domain() => Err(Unroutable::NoSuchDomain(domain.to_string())),
            Err(e) if e.is_no_records_found() => Ok(vec![domain.to_string()]),
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
