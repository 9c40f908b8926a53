//! Network lists such as mynetworks: `127.0.0.0/8`, `[::1]/128`, `192.0.2.7`.
//!
//! Owns matching a client address against a list of networks. Does not own
//! which list means what (that is each daemon's policy).
//!
//! Diagnostics: `Networks::parse` returns the first bad item in its error.

use std::net::IpAddr;

/// One network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A list of networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(Vec<Network>);

impl Networks {
    /// Parse a comma or white space separated list.
    pub fn parse(list: &str) -> Result<Networks, String> {
        let mut nets = Vec::new();
        for item in crate::config::split_list(list) {
            nets.push(
                parse_one(&item)
                    .ok_or_else(|| format!("bad network {item:?} (expected address/prefix)"))?,
            );
        }
        Ok(Networks(nets))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }
}

fn parse_one(item: &str) -> Option<Network> {
    let (addr, prefix) = match item.rsplit_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
        None => (item, None),
    };
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(max);
    (prefix <= max).then_some(Network { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let n = Networks::parse("127.0.0.0/8, [::1]/128 192.0.2.7").unwrap();
        assert!(n.contains("127.1.2.3".parse().unwrap()));
        assert!(n.contains("::1".parse().unwrap()));
        assert!(n.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(n.contains("192.0.2.7".parse().unwrap()));
        assert!(!n.contains("192.0.2.8".parse().unwrap()));
        assert!(!n.contains("10.0.0.1".parse().unwrap()));
        assert!(Networks::parse("").unwrap() == Networks::default());
        assert!(Networks::parse("10.0.0.0/33").is_err());
        assert!(Networks::parse("nonsense").is_err());
        assert!(Networks::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }
}
