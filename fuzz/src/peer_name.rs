//! The client-name harness: common::dns::peer's confirmation of PTR names
//! (what smtpd writes into log lines and the Received: header).
//!
//! Owns what the `peer_name` target feeds and the properties it checks
//! beyond "does not panic": a kept name is one of the PTR names, a host
//! name (letters, digits, inner hyphens; 253 octets at most; its last
//! label not all digits) whose addresses include the client's; the
//! warnings are one line each of printable ASCII; at most MAX_NAMES names
//! are tried. Does not own the look-ups' wire format (hickory's) or the
//! confirmation (common::dns::peer).
//!
//! Standards: RFC 1123 2.1 (host names), RFC 1912 2.1 (forward-confirmed
//! PTR names).
//!
//! Security: the PTR names are the attacker's octets, as a hostile reverse
//! zone serves them; a panic, an abort or a hang is a finding.
//!
//! Diagnostics: a failed property panics with what differed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::dns::peer::{self, Failure, Labels, Lookups, MAX_NAMES};

/// The client: the first byte's bit 0 chooses IPv6.
const CLIENT4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const CLIENT6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

/// The look-ups of one input: PTR names from the bytes; the k-th name's
/// addresses include the client when bit k of the mask is set, else
/// another address, and the look-up fails when bit k of `fail` is.
struct Fed {
    names: Vec<Labels>,
    mask: u8,
    fail: u8,
}

impl Lookups for Fed {
    async fn names(&self, _ip: IpAddr) -> Result<Vec<Labels>, Failure> {
        Ok(self.names.clone())
    }

    async fn addresses(&self, name: &str, v6: bool) -> Result<Vec<IpAddr>, Failure> {
        // Which PTR name this is (the first that spells it).
        let k = self
            .names
            .iter()
            .position(|n| peer::hostname(n).is_some_and(|h| h.eq_ignore_ascii_case(name)))
            .expect("addresses are asked only of PTR names");
        let bit = 1u8 << (k % 8);
        if self.fail & bit != 0 {
            return Err(Failure::NoSuchName);
        }
        let client = if v6 { CLIENT6 } else { CLIENT4 };
        let other = if v6 {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        Ok(vec![if self.mask & bit != 0 { client } else { other }])
    }
}

/// Bytes: flags (bit 0: IPv6 client), the address mask, the failure mask,
/// then PTR names, one per line, labels split at dots (any other octet,
/// NUL, CR and non-ASCII included, is label content).
pub fn peer_name(data: &[u8]) {
    let [flags, mask, fail, rest @ ..] = data else {
        return;
    };
    let fed = Fed {
        names: rest
            .split(|&b| b == b'\n')
            .take(64)
            .map(|n| n.split(|&b| b == b'.').map(<[u8]>::to_vec).collect())
            .collect(),
        mask: *mask,
        fail: *fail,
    };
    let client = if flags & 1 != 0 { CLIENT6 } else { CLIENT4 };
    let rt = common::dns::runtime().expect("a runtime");
    let got = rt.block_on(peer::verify(&fed, client, Duration::from_secs(5)));
    for w in &got.warnings {
        assert!(
            w.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "a warning with a control or non-ASCII octet: {w:?}"
        );
    }
    let valid: Vec<String> = fed.names.iter().filter_map(|n| peer::hostname(n)).collect();
    assert!(got.warnings.len() <= MAX_NAMES.min(valid.len()));
    if let Some(name) = &got.name {
        assert!(valid.contains(name), "{name:?} is not one of the PTR names");
        assert!(name.len() <= 253, "{name:?}");
        assert!(
            name.split('.').all(|l| (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')),
            "{name:?} is not a host name"
        );
        assert!(
            !name
                .rsplit('.')
                .next()
                .unwrap_or("")
                .bytes()
                .all(|b| b.is_ascii_digit()),
            "{name:?} reads as an address"
        );
        let k = fed
            .names
            .iter()
            .position(|n| peer::hostname(n).is_some_and(|h| h.eq_ignore_ascii_case(name)))
            .expect("a PTR name");
        let bit = 1u8 << (k % 8);
        assert!(
            mask & bit != 0 && fail & bit == 0,
            "{name:?} was kept without the client among its addresses"
        );
    }
}
