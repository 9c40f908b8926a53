//! Where mail for a recipient goes: the next hop.
//!
//! Owns reading `relayhost` (Postfix's syntax: `[host]:port` or
//! `[address]:port` is that host, no MX lookup; `host` or `host:port` would
//! be the host's MX records) and turning a next hop into addresses to try.
//! Does not own the SMTP conversation (session.rs).
//!
//! Not yet: MX lookups (hickory-resolver, with RFC 7505 null MX and the
//! implicit MX of RFC 5321 5.1). Until then a `relayhost` without brackets
//! is looked up as a host name (its A and AAAA records, through the
//! system's resolver), and mail for a domain with no relayhost set is
//! deferred, saying so: `relayhost` is how posthorn sends to other domains
//! in this version.
//!
//! Standards: RFC 5321 5.1 (the order of addresses), 2.3.5 (domain names).
//!
//! Diagnostics: a relayhost that does not parse is a `ConfigError` naming
//! the parameter.

use std::net::{SocketAddr, ToSocketAddrs};

use common::config::{Config, ConfigError};

/// A next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub host: String,
    pub port: u16,
    /// `[host]`: the host itself; else its MX records.
    pub literal: bool,
}

impl NextHop {
    /// `relayhost`: None when empty.
    pub fn relayhost(cfg: &Config) -> Result<Option<NextHop>, ConfigError> {
        let v = cfg.get("relayhost");
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        NextHop::parse(v).map(Some).ok_or_else(|| {
            cfg.invalid(
                "relayhost",
                format!("{v:?} is not [host]:port, host:port or host"),
            )
        })
    }

    /// `[host]:port`, `[host]`, `host:port`, `host` (port 25).
    pub fn parse(v: &str) -> Option<NextHop> {
        let (host, rest, literal) = match v.strip_prefix('[') {
            Some(r) => {
                let (h, rest) = r.split_once(']')?;
                (h, rest, true)
            }
            None => match v.rsplit_once(':') {
                Some((h, _)) if !h.contains(':') => (h, &v[h.len()..], false),
                _ => (v, "", false),
            },
        };
        let port = match rest {
            "" => 25,
            p => p.strip_prefix(':')?.parse().ok().filter(|&p| p > 0)?,
        };
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
        ok.then(|| NextHop {
            host: host.to_string(),
            port,
            literal,
        })
    }

    /// The addresses to try, in order (the system resolver's: IPv6 and
    /// IPv4 as it sorts them).
    pub fn addresses(&self) -> std::io::Result<Vec<SocketAddr>> {
        Ok((self.host.as_str(), self.port).to_socket_addrs()?.collect())
    }

    /// Postfix's `relay=` form without the address: `host`.
    pub fn name(&self) -> &str {
        &self.host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayhost_forms() {
        let hop = |h: &str, port, literal| NextHop {
            host: h.into(),
            port,
            literal,
        };
        assert_eq!(
            NextHop::parse("[127.0.0.1]:2526"),
            Some(hop("127.0.0.1", 2526, true))
        );
        assert_eq!(
            NextHop::parse("[mail.example.org]"),
            Some(hop("mail.example.org", 25, true))
        );
        assert_eq!(NextHop::parse("[::1]:25"), Some(hop("::1", 25, true)));
        assert_eq!(
            NextHop::parse("smtp.example.org:587"),
            Some(hop("smtp.example.org", 587, false))
        );
        assert_eq!(
            NextHop::parse("example.org"),
            Some(hop("example.org", 25, false))
        );
        for bad in ["[x", "[x]:", "[x]:0", "x:99999", "a b", "[]:25", "x:y"] {
            assert_eq!(NextHop::parse(bad), None, "{bad}");
        }
    }
}
