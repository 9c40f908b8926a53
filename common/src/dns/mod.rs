//! The name service of posthorn's processes: which name servers to ask,
//! /etc/hosts, and clients' names.
//!
//! Owns the set-up every user of DNS shares: the name servers (`dns_servers`,
//! else /etc/resolv.conf's, with its options), hickory 0.26's stub resolver
//! on them (`resolver`: posthorn-smtp's MX and address look-ups, and
//! posthorn-trust's SPF, DKIM and DMARC ones through mail-auth, which is
//! built on the same hickory), its DNSSEC-validating twin
//! (`validating_resolver`: DANE's TLSA and MX look-ups) and the
//! current-thread tokio runtime hickory runs on. smtpd asks the name servers directly for its clients' names
//! (peer.rs), after /etc/hosts (hosts.rs). Does not own what is looked up
//! when: the daemons do.
//!
//! Standards: RFC 1035 (the servers' messages, hickory's), RFC 4035 5
//! (DNSSEC validation, hickory's).
//!
//! Diagnostics: `DnsError`, for the daemon to log (a resolver that cannot be
//! set up is not fatal to either user).

pub mod hosts;
pub mod peer;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::NameServerConfig;
use hickory_resolver::net::runtime::TokioRuntimeProvider;

pub use hickory_resolver::config::{ResolverConfig, ResolverOpts};
pub use hickory_resolver::TokioResolver;
pub use hosts::Hosts;
pub use peer::{NameService, PeerName};

/// Why the name service cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("dns_servers: {0:?} is not ADDR or ADDR:PORT")]
    BadServer(String),
    #[error("/etc/resolv.conf: {0}")]
    SystemConf(#[source] hickory_resolver::net::NetError),
    #[error("cannot set up the resolver: {0}")]
    Resolver(#[source] hickory_resolver::net::NetError),
    #[error("dnssec_trust_anchor_file {path}: {why}")]
    TrustAnchor { path: String, why: String },
    #[error("cannot start the resolver's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The name servers to ask and how: `servers` (ADDR or ADDR:PORT each, port
/// 53 by default, over UDP and TCP) with a 5 s time-out and 2 attempts per
/// query, or, when empty, /etc/resolv.conf's servers and options.
pub fn servers(servers: &[String]) -> Result<(ResolverConfig, ResolverOpts), DnsError> {
    if servers.is_empty() {
        return hickory_resolver::system_conf::read_system_conf().map_err(DnsError::SystemConf);
    }
    let mut config = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
    for s in servers {
        let addr: SocketAddr = match s.parse() {
            Ok(a) => a,
            Err(_) => SocketAddr::new(s.parse().map_err(|_| DnsError::BadServer(s.clone()))?, 53),
        };
        let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
        for c in &mut ns.connections {
            c.port = addr.port();
        }
        config.add_name_server(ns);
    }
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(5);
    opts.attempts = 2;
    Ok((config, opts))
}

/// hickory's stub resolver on `servers` (see [`servers`]), with its cache;
/// it runs on the tokio runtime of whoever awaits its look-ups.
pub fn resolver(servers: &[String]) -> Result<TokioResolver, DnsError> {
    let (config, opts) = self::servers(servers)?;
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(DnsError::Resolver)
}

/// A resolver for `servers` that validates answers with DNSSEC itself
/// (RFC 4035 5), from the trust anchors of `anchor_file` (DNSKEY records
/// in zone-file form) or, when None, the root's built into hickory (KSKs
/// 20326 and 38696). Each record it returns carries its proof (secure,
/// insecure, bogus); DANE's TLSA and MX look-ups go through it.
pub fn validating_resolver(
    servers: &[String],
    anchor_file: Option<&std::path::Path>,
) -> Result<TokioResolver, DnsError> {
    use hickory_resolver::proto::dnssec::TrustAnchors;
    let (config, mut opts) = self::servers(servers)?;
    opts.validate = true;
    let anchors = match anchor_file {
        Some(path) => TrustAnchors::from_file(path).map_err(|e| DnsError::TrustAnchor {
            path: path.display().to_string(),
            why: e.to_string(),
        })?,
        None => TrustAnchors::default(),
    };
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .with_trust_anchor(std::sync::Arc::new(anchors))
        .build()
        .map_err(DnsError::Resolver)
}

/// A current-thread runtime for hickory (its I/O and timers).
pub fn runtime() -> Result<tokio::runtime::Runtime, DnsError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DnsError::Runtime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn servers_are_addresses_with_an_optional_port() {
        let (cfg, opts) =
            servers(&["127.0.0.1:5353".into(), "::1".into(), "[::1]:54".into()]).expect("servers");
        let got: Vec<(IpAddr, Vec<u16>)> = cfg
            .name_servers()
            .iter()
            .map(|ns| (ns.ip, ns.connections.iter().map(|c| c.port).collect()))
            .collect();
        // Each over UDP and TCP.
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        assert_eq!(
            got,
            vec![
                (ip("127.0.0.1"), vec![5353, 5353]),
                (ip("::1"), vec![53, 53]),
                (ip("::1"), vec![54, 54]),
            ]
        );
        assert_eq!(opts.attempts, 2);
        for bad in ["example.org", "127.0.0.1:x", ""] {
            assert!(
                matches!(servers(&[bad.into()]), Err(DnsError::BadServer(_))),
                "{bad:?}"
            );
        }
    }
}
