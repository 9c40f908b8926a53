//! The resolver behind SPF, DKIM, DMARC, MTA-STS and DANE look-ups:
//! hickory 0.26 (the version mail-auth is built on) with the name servers
//! of `dns_servers`, or /etc/resolv.conf's when that is empty, with the same
//! time-out and attempts as the rest of posthorn (common::dns).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::MessageAuthenticator;

/// Why the resolver cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("dns_servers: {0:?} is not ADDR or ADDR:PORT")]
    BadServer(String),
    #[error("/etc/resolv.conf: {0}")]
    SystemConf(String),
    #[error("cannot set up the resolver: {0}")]
    Resolver(String),
}

/// `servers` (ADDR or ADDR:PORT each, port 53 by default, over UDP and TCP)
/// with a 5 s time-out and 2 attempts per query, or, when empty,
/// /etc/resolv.conf's servers and options.
pub fn config(servers: &[String]) -> Result<(ResolverConfig, ResolverOpts), DnsError> {
    if servers.is_empty() {
        return mail_auth::hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| DnsError::SystemConf(e.to_string()));
    }
    let mut config = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
    for s in servers {
        let addr: SocketAddr = match s.parse() {
            Ok(a) => a,
            Err(_) => SocketAddr::new(
                s.parse::<IpAddr>()
                    .map_err(|_| DnsError::BadServer(s.clone()))?,
                53,
            ),
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

/// A resolver for `servers` (see [`config`]); it runs on the tokio runtime
/// of whoever awaits its look-ups.
pub fn resolver(servers: &[String]) -> Result<TokioResolver, DnsError> {
    let (config, opts) = config(servers)?;
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(|e| DnsError::Resolver(e.to_string()))
}

/// mail-auth's verifier on [`resolver`].
pub fn authenticator(servers: &[String]) -> Result<MessageAuthenticator, DnsError> {
    Ok(MessageAuthenticator(resolver(servers)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_addresses_with_an_optional_port() {
        let (cfg, opts) =
            config(&["127.0.0.1:5353".into(), "::1".into(), "[::1]:54".into()]).expect("servers");
        let got: Vec<(IpAddr, Vec<u16>)> = cfg
            .name_servers()
            .iter()
            .map(|ns| (ns.ip, ns.connections.iter().map(|c| c.port).collect()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("127.0.0.1".parse().unwrap(), vec![5353, 5353]),
                ("::1".parse().unwrap(), vec![53, 53]),
                ("::1".parse().unwrap(), vec![54, 54]),
            ]
        );
        assert_eq!(opts.attempts, 2);
        for bad in ["example.org", "127.0.0.1:x", ""] {
            assert!(
                matches!(config(&[bad.into()]), Err(DnsError::BadServer(_))),
                "{bad:?}"
            );
        }
    }
}
