//! A client's name, forward-confirmed: the name(s) of its address (PTR),
//! kept only when that name's addresses include the client's address, as
//! Postfix's smtpd_peer.c does through getnameinfo() and getaddrinfo().
//!
//! Owns the confirmation (`verify`, over any `Lookups`, so it is tested
//! without a network), what counts as a host name, and the real look-ups
//! (`NameService`): /etc/hosts first, in file order (hosts.rs), then the
//! name servers, asked directly. Not through hickory's resolver: it answers
//! every address of 127.0.0.0/8 and ::1 with "localhost" itself (RFC 6761)
//! and its hosts table forgets the file's order; the C library Postfix
//! uses asks /etc/hosts, then the servers. Does not own when to look up or
//! how long to wait in all: the caller gives the bound.
//!
//! Standards: RFC 1035 3.5 (IN-ADDR.ARPA), RFC 3596 2.5 (IP6.ARPA), RFC 952
//! and RFC 1123 2.1 (host names: letters, digits, hyphens), RFC 1912 2.1
//! (a PTR name should have the address among its A records).
//!
//! Security: the name is never an access decision today; it goes into log
//! lines and the Received: header. So a name is kept only when every label
//! is 1 to 63 letters, digits and inner hyphens, 253 octets in all, and the
//! last label is not all digits (no name that reads as an address): a PTR
//! record can hold any octets, and its owner chooses them. At most
//! MAX_NAMES names of one address are tried.
//!
//! Diagnostics: `PeerName::warnings`, Postfix's lines for a name that is
//! not confirmed: `hostname NAME does not resolve to address ADDR` (with
//! `: REASON` when the look-up failed); no line for an address without a
//! usable name.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use std::sync::Arc;

use hickory_resolver::config::{ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::FirstAnswer;
use hickory_resolver::net::{DnsHandle, NetError, RetryDnsHandle};
use hickory_resolver::proto::op::{DnsRequestOptions, Query};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};

use super::Hosts;

/// Names of one address tried at most (Postfix, through getnameinfo(),
/// tries one).
pub const MAX_NAMES: usize = 4;

/// A name as a PTR record or /etc/hosts has it, label by label, unchecked.
pub type Labels = Vec<Vec<u8>>;

/// Why a look-up found nothing; displayed as the C library's gai_strerror()
/// texts, which Postfix's warnings show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// NXDOMAIN.
    NoSuchName,
    /// The name exists, without records of the type.
    NoData,
    /// A server failure, a time-out, no server to ask.
    Temporary,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Failure::NoSuchName => "Name or service not known",
            Failure::NoData => "No address associated with hostname",
            Failure::Temporary => "Temporary failure in name resolution",
        })
    }
}

/// The two look-ups a confirmation makes.
pub trait Lookups {
    /// The names of `ip` (PTR records).
    fn names(&self, ip: IpAddr) -> impl Future<Output = Result<Vec<Labels>, Failure>> + Send;
    /// The addresses of `name` of one family (AAAA records when `v6`, else
    /// A records).
    fn addresses(
        &self,
        name: &str,
        v6: bool,
    ) -> impl Future<Output = Result<Vec<IpAddr>, Failure>> + Send;
}

/// A client's name: confirmed, or none (`unknown` in Postfix's logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerName {
    pub name: Option<String>,
    /// Why names were not confirmed, one warning line each.
    pub warnings: Vec<String>,
}

/// `labels` as a host name fit for a log line or a header, or None.
pub fn hostname(labels: &[Vec<u8>]) -> Option<String> {
    let ldh = |l: &[u8]| {
        (1..=63).contains(&l.len())
            && l.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && l.first() != Some(&b'-')
            && l.last() != Some(&b'-')
    };
    let last = labels.last()?;
    if !labels.iter().all(|l| ldh(l)) || last.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut name = String::with_capacity(64);
    for l in labels {
        if !name.is_empty() {
            name.push('.');
        }
        // ASCII, checked above.
        name.extend(l.iter().map(|&b| char::from(b)));
    }
    (name.len() <= 253).then_some(name)
}

/// The confirmed name of `ip`, within `within` for both look-ups together:
/// the first of its names (at most MAX_NAMES of those that are host names)
/// whose addresses include `ip`.
pub async fn verify<L: Lookups>(l: &L, ip: IpAddr, within: Duration) -> PeerName {
    let ip = ip.to_canonical();
    let deadline = tokio::time::Instant::now() + within;
    let mut out = PeerName::default();
    let names = match tokio::time::timeout_at(deadline, l.names(ip)).await {
        Ok(Ok(names)) => names,
        // No name, or none in time: "unknown", as getnameinfo() failing is.
        Ok(Err(_)) | Err(_) => return out,
    };
    let mut tried: Vec<String> = Vec::new();
    for name in names.iter().filter_map(|n| hostname(n)) {
        if tried.len() == MAX_NAMES {
            break;
        }
        if tried.iter().any(|t| t.eq_ignore_ascii_case(&name)) {
            continue;
        }
        tried.push(name.clone());
        let found = tokio::time::timeout_at(deadline, l.addresses(&name, ip.is_ipv6())).await;
        match found {
            Ok(Ok(addrs)) if addrs.iter().any(|a| a.to_canonical() == ip) => {
                out.name = Some(name);
                return out;
            }
            Ok(Ok(_)) => out
                .warnings
                .push(format!("hostname {name} does not resolve to address {ip}")),
            Ok(Err(why)) => out.warnings.push(format!(
                "hostname {name} does not resolve to address {ip}: {why}"
            )),
            Err(_) => {
                out.warnings.push(format!(
                    "hostname {name} does not resolve to address {ip}: {}",
                    Failure::Temporary
                ));
                break;
            }
        }
    }
    out
}

/// The real look-ups: /etc/hosts, then the name servers.
pub struct NameService {
    hosts: Hosts,
    /// None: /etc/hosts only.
    dns: Option<RetryDnsHandle<NameServerPool<TokioRuntimeProvider>>>,
}

impl NameService {
    /// Ask `config`'s servers (common::dns::servers) after `hosts`.
    pub fn new(
        config: &ResolverConfig,
        opts: ResolverOpts,
        hosts: Hosts,
    ) -> Result<NameService, super::DnsError> {
        let attempts = opts.attempts;
        // hickory's pool wants a TLS set-up even for plain DNS (the
        // resolver's builder fails the same way without one).
        let tls = TlsConfig::new().map_err(super::DnsError::Resolver)?;
        let cx = Arc::new(PoolContext::new(opts, tls));
        let pool = NameServerPool::from_config(
            config.name_servers().to_vec(),
            cx,
            TokioRuntimeProvider::default(),
        );
        Ok(NameService {
            hosts,
            dns: Some(RetryDnsHandle::new(pool, attempts)),
        })
    }

    /// /etc/hosts only (no server could be set up): every other address
    /// is unknown.
    pub fn hosts_only(hosts: Hosts) -> NameService {
        NameService { hosts, dns: None }
    }

    /// `verify` with these look-ups.
    pub async fn peer_name(&self, ip: IpAddr, within: Duration) -> PeerName {
        verify(self, ip, within).await
    }

    /// The records of `name` and `rtype` in a server's answer.
    async fn query(&self, name: Name, rtype: RecordType) -> Result<Vec<RData>, Failure> {
        let Some(dns) = &self.dns else {
            return Err(Failure::Temporary);
        };
        let response = dns
            .lookup(Query::query(name, rtype), DnsRequestOptions::default())
            .first_answer()
            .await
            .map_err(|e: NetError| {
                if e.is_nx_domain() {
                    Failure::NoSuchName
                } else if e.is_no_records_found() {
                    Failure::NoData
                } else {
                    Failure::Temporary
                }
            })?;
        // The answer section holds what the server found for the question
        // (and any CNAME records leading to it, RFC 2317's classless
        // delegation of PTR records among them).
        Ok(response.answers.iter().map(|r| r.data.clone()).collect())
    }
}

impl Lookups for NameService {
    async fn names(&self, ip: IpAddr) -> Result<Vec<Labels>, Failure> {
        if let Some(name) = self.hosts.name(ip) {
            return Ok(vec![name
                .split('.')
                .map(|l| l.as_bytes().to_vec())
                .collect()]);
        }
        let names: Vec<Labels> = self
            .query(Name::from(ip), RecordType::PTR)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::PTR(p) => Some(p.0.iter().map(<[u8]>::to_vec).collect()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Err(Failure::NoData);
        }
        Ok(names)
    }

    async fn addresses(&self, name: &str, v6: bool) -> Result<Vec<IpAddr>, Failure> {
        let listed = self.hosts.addresses(name, v6);
        if !listed.is_empty() {
            return Ok(listed);
        }
        // A checked host name: it parses.
        let Ok(fqdn) = Name::from_ascii(format!("{name}.")) else {
            return Err(Failure::NoSuchName);
        };
        let rtype = if v6 { RecordType::AAAA } else { RecordType::A };
        Ok(self
            .query(fqdn, rtype)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Look-ups from tables: PTR names by address, addresses by name; a
    /// name or address in `hang` never answers.
    #[derive(Default)]
    struct Table {
        ptr: HashMap<IpAddr, Result<Vec<Labels>, Failure>>,
        addr: HashMap<String, Result<Vec<IpAddr>, Failure>>,
        hang: Vec<String>,
    }

    fn labels(name: &str) -> Labels {
        name.split('.').map(|l| l.as_bytes().to_vec()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    impl Table {
        fn ptr(mut self, ip: &str, names: &[&str]) -> Table {
            let names = names.iter().map(|n| labels(n)).collect();
            self.ptr.insert(ip.parse().expect("address"), Ok(names));
            self
        }

        fn addr(mut self, name: &str, addrs: &[&str]) -> Table {
            self.addr
                .insert(name.into(), Ok(addrs.iter().map(|a| ip(a)).collect()));
            self
        }

        fn fail(mut self, name: &str, why: Failure) -> Table {
            self.addr.insert(name.into(), Err(why));
            self
        }
    }

    impl Lookups for Table {
        async fn names(&self, ip: IpAddr) -> Result<Vec<Labels>, Failure> {
            if self.hang.contains(&ip.to_string()) {
                std::future::pending::<()>().await;
            }
            self.ptr
                .get(&ip)
                .cloned()
                .unwrap_or(Err(Failure::NoSuchName))
        }

        async fn addresses(&self, name: &str, v6: bool) -> Result<Vec<IpAddr>, Failure> {
            if self.hang.iter().any(|h| h == name) {
                std::future::pending::<()>().await;
            }
            let all = self
                .addr
                .get(name)
                .cloned()
                .unwrap_or(Err(Failure::NoSuchName))?;
            Ok(all.into_iter().filter(|a| a.is_ipv6() == v6).collect())
        }
    }

    fn run(t: &Table, client: &str) -> PeerName {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(verify(t, ip(client), Duration::from_millis(200)))
    }

    fn named(name: &str) -> PeerName {
        PeerName {
            name: Some(name.into()),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn a_name_whose_addresses_include_the_client_is_kept() {
        let t = Table::default()
            .ptr("192.0.2.1", &["mail.example.org"])
            .addr(
                "mail.example.org",
                &["192.0.2.9", "192.0.2.1", "2001:db8::1"],
            )
            .ptr("2001:db8::1", &["mail.example.org"])
            .ptr("::ffff:192.0.2.1", &["never.asked.example"]);
        assert_eq!(run(&t, "192.0.2.1"), named("mail.example.org"));
        assert_eq!(run(&t, "2001:db8::1"), named("mail.example.org"));
        // An IPv4-mapped client is its IPv4 address.
        assert_eq!(run(&t, "::ffff:192.0.2.1"), named("mail.example.org"));
    }

    #[test]
    fn a_name_that_does_not_lead_back_is_unknown_with_postfix_warnings() {
        let t = Table::default()
            .ptr("192.0.2.2", &["liar.example.org"])
            .addr("liar.example.org", &["192.0.2.200"])
            .ptr("192.0.2.3", &["gone.example.org"])
            .ptr("192.0.2.4", &["v6only.example.org"])
            .addr("v6only.example.org", &["2001:db8::4"])
            .ptr("192.0.2.5", &["broken.example.org"])
            .fail("broken.example.org", Failure::Temporary);
        let unknown = |w: &str| PeerName {
            name: None,
            warnings: vec![w.into()],
        };
        assert_eq!(
            run(&t, "192.0.2.2"),
            unknown("hostname liar.example.org does not resolve to address 192.0.2.2")
        );
        assert_eq!(
            run(&t, "192.0.2.3"),
            unknown(
                "hostname gone.example.org does not resolve to address 192.0.2.3: Name or service not known"
            )
        );
        assert_eq!(
            run(&t, "192.0.2.4"),
            unknown("hostname v6only.example.org does not resolve to address 192.0.2.4"),
            "only addresses of the client's family count"
        );
        assert_eq!(
            run(&t, "192.0.2.5"),
            unknown(
                "hostname broken.example.org does not resolve to address 192.0.2.5: Temporary failure in name resolution"
            )
        );
    }

    #[test]
    fn no_name_is_unknown_without_a_warning() {
        let mut t = Table::default();
        t.ptr.insert(ip("192.0.2.6"), Err(Failure::Temporary));
        assert_eq!(run(&t, "192.0.2.6"), PeerName::default());
        assert_eq!(run(&t, "192.0.2.7"), PeerName::default(), "NXDOMAIN");
    }

    #[test]
    fn several_names_are_tried_in_order_up_to_the_limit() {
        let t = Table::default()
            .ptr(
                "192.0.2.8",
                &[
                    "a.example",
                    "b.example",
                    "A.EXAMPLE",
                    "c.example",
                    "d.example",
                ],
            )
            .addr("b.example", &["192.0.2.80"])
            .addr("c.example", &["192.0.2.8"]);
        let got = run(&t, "192.0.2.8");
        assert_eq!(got.name.as_deref(), Some("c.example"));
        assert_eq!(got.warnings.len(), 2, "{got:?}");
        let t = Table::default()
            .ptr(
                "192.0.2.9",
                &[
                    "a.example",
                    "b.example",
                    "c.example",
                    "d.example",
                    "e.example",
                ],
            )
            .addr("e.example", &["192.0.2.9"]);
        let got = run(&t, "192.0.2.9");
        assert_eq!(got.name, None, "the fifth name is not tried");
        assert_eq!(got.warnings.len(), MAX_NAMES);
    }

    #[test]
    fn names_that_are_not_host_names_are_never_used() {
        let long_label = "a".repeat(64);
        let long_name = vec!["abcdefghi"; 26].join(".");
        assert!(long_name.len() > 253);
        let hostile = [
            "evil.example\nsmtpd[1]: forged line",
            "bad label.example",
            "x\u{7f}.example",
            "caf\u{e9}.example",
            "under_score.example",
            "-lead.example",
            "trail-.example",
            "empty..example",
            "192.0.2.10",
            "1.2.3.4.5",
            long_label.as_str(),
            long_name.as_str(),
            "",
        ];
        let mut t = Table::default().ptr("192.0.2.10", &hostile);
        for h in hostile {
            t = t.addr(h, &["192.0.2.10"]);
        }
        assert_eq!(run(&t, "192.0.2.10"), PeerName::default());
        // Bytes that are not UTF-8 at all.
        let mut t = Table::default().addr("ok.example", &["192.0.2.11"]);
        t.ptr.insert(
            ip("192.0.2.11"),
            Ok(vec![
                vec![b"\xff\xfe".to_vec(), b"example".to_vec()],
                labels("ok.example"),
            ]),
        );
        assert_eq!(run(&t, "192.0.2.11"), named("ok.example"));
        // What is a host name.
        for good in ["localhost", "a.b", "x-1.example", "1a.example", "a.123a"] {
            assert_eq!(hostname(&labels(good)).as_deref(), Some(good), "{good}");
        }
        assert_eq!(hostname(&[]), None);
    }

    #[test]
    fn look_ups_that_never_answer_end_at_the_bound() {
        let t = Table {
            hang: vec!["192.0.2.12".into()],
            ..Table::default()
        };
        assert_eq!(run(&t, "192.0.2.12"), PeerName::default());
        let t = Table {
            hang: vec!["slow.example".into()],
            ..Table::default()
                .ptr("192.0.2.13", &["slow.example", "fast.example"])
                .addr("fast.example", &["192.0.2.13"])
        };
        assert_eq!(
            run(&t, "192.0.2.13"),
            PeerName {
                name: None,
                warnings: vec![
                    "hostname slow.example does not resolve to address 192.0.2.13: Temporary failure in name resolution".into()
                ],
            },
            "the bound is for the whole, not for each name"
        );
    }

    #[test]
    fn etc_hosts_comes_first_in_its_own_order() {
        let hosts = Hosts::parse("127.0.0.1 localhost vm\n192.0.2.20 here.example\n");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // No server to ask: only the file answers.
        let ns = NameService::hosts_only(hosts);
        let name = |a: &str| {
            rt.block_on(ns.peer_name(ip(a), Duration::from_secs(5)))
                .name
        };
        assert_eq!(name("127.0.0.1").as_deref(), Some("localhost"));
        assert_eq!(name("192.0.2.20").as_deref(), Some("here.example"));
        assert_eq!(name("192.0.2.21"), None);
        assert_eq!(name("::1"), None, "not in this file");
    }
}
