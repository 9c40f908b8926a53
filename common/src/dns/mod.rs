//! The name service of posthorn's processes: which name servers to ask,
//! /etc/hosts, and clients' names.
//!
//! Owns the set-up both users of DNS share: the name servers (`dns_servers`,
//! else /etc/resolv.conf's, with its options) and the current-thread tokio
//! runtime hickory runs on. posthorn-smtp builds its stub resolver (MX and
//! address look-ups) from them; smtpd asks the name servers directly for
//! its clients' names (peer.rs), after /etc/hosts (hosts.rs). Does not own
//! what is looked up when: the daemons do.
//!
//! Standards: RFC 1035 (the servers' messages, hickory's).
//!
//! Diagnostics: `DnsError`, for the daemon to log (a resolver that cannot be
//! set up is not fatal to either user).

pub mod hosts;
pub mod peer;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::NameServerConfigGroup;

pub use hickory_resolver::config::{ResolverConfig, ResolverOpts};
pub use hosts::Hosts;
pub use peer::{NameService, PeerName};

/// Why the name service cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("dns_servers: {0:?} is not ADDR or ADDR:PORT")]
    BadServer(String),
    #[error("/etc/resolv.conf: {0}")]
    SystemConf(#[source] hickory_resolver::ResolveError),
    #[error("cannot start the resolver's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The name servers to ask and how: `servers` (ADDR or ADDR:PORT each, port
/// 53 by default) with a 5 s time-out and 2 attempts per query, or, when
/// empty, /etc/resolv.conf's servers and options.
pub fn servers(servers: &[String]) -> Result<(ResolverConfig, ResolverOpts), DnsError> {
    if servers.is_empty() {
        return hickory_resolver::system_conf::read_system_conf().map_err(DnsError::SystemConf);
    }
    let mut group = NameServerConfigGroup::new();
    for s in servers {
        let addr: SocketAddr = match s.parse() {
            Ok(a) => a,
            Err(_) => SocketAddr::new(s.parse().map_err(|_| DnsError::BadServer(s.clone()))?, 53),
        };
        group.merge(NameServerConfigGroup::from_ips_clear(
            &[addr.ip()],
            addr.port(),
            true,
        ));
    }
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(5);
    opts.attempts = 2;
    Ok((ResolverConfig::from_parts(None, Vec::new(), group), opts))
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

    #[test]
    fn servers_are_addresses_with_an_optional_port() {
        let (config, opts) =
            servers(&["127.0.0.1:5353".into(), "::1".into(), "[::1]:54".into()]).expect("servers");
        let addrs: Vec<SocketAddr> = config
            .name_servers()
            .iter()
            .map(|ns| ns.socket_addr)
            .collect();
        // Each over UDP and TCP.
        for a in ["127.0.0.1:5353", "[::1]:53", "[::1]:54"] {
            let a: SocketAddr = a.parse().expect("address");
            assert_eq!(addrs.iter().filter(|x| **x == a).count(), 2, "{a}");
        }
        assert_eq!(opts.attempts, 2);
        for bad in ["example.org", "127.0.0.1:x", ""] {
            assert!(
                matches!(servers(&[bad.into()]), Err(DnsError::BadServer(_))),
                "{bad:?}"
            );
        }
    }
}
