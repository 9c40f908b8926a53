//! /etc/hosts, in file order, as the C library's `files` name service
//! reads it for getnameinfo() and getaddrinfo().
//!
//! Owns parsing the file and its two questions: the name of an address (the
//! first name, the canonical one, of the first line with the address) and
//! the addresses of a name (of every line that lists it, among its aliases
//! too, case-insensitively). hickory's own table forgets the order of the
//! file, so an address with several names (`127.0.0.1 localhost vm`) would
//! get any of them; Postfix, through the C library, gets the first.
//!
//! Diagnostics: none; an unreadable file is an empty table, and lines that
//! do not parse are skipped, as the C library does.

use std::net::IpAddr;

/// The lines of a hosts file: an address and its names, in file order.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    lines: Vec<(IpAddr, Vec<String>)>,
}

impl Hosts {
    /// /etc/hosts (empty when it cannot be read).
    pub fn system() -> Hosts {
        Hosts::parse(&std::fs::read_to_string("/etc/hosts").unwrap_or_default())
    }

    /// `ADDRESS NAME [ALIAS...]` lines; `#` starts a comment.
    pub fn parse(text: &str) -> Hosts {
        let mut lines = Vec::new();
        for line in text.lines() {
            let line = line.split_once('#').map_or(line, |(l, _)| l);
            let mut fields = line.split_whitespace();
            let Some(Ok(addr)) = fields.next().map(str::parse::<IpAddr>) else {
                continue;
            };
            let names: Vec<String> = fields.map(str::to_string).collect();
            if !names.is_empty() {
                lines.push((addr.to_canonical(), names));
            }
        }
        Hosts { lines }
    }

    /// The name of `ip`: the first name of the first line with it.
    pub fn name(&self, ip: IpAddr) -> Option<&str> {
        let ip = ip.to_canonical();
        self.lines
            .iter()
            .find(|(a, _)| *a == ip)
            .map(|(_, names)| names[0].as_str())
    }

    /// The addresses of `name` of one family (IPv6 or IPv4), in file order.
    pub fn addresses(&self, name: &str, v6: bool) -> Vec<IpAddr> {
        let name = name.trim_end_matches('.');
        self.lines
            .iter()
            .filter(|(a, names)| {
                a.is_ipv6() == v6 && names.iter().any(|n| n.eq_ignore_ascii_case(name))
            })
            .map(|(a, _)| *a)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# The usual lines.
127.0.0.1 localhost vm runsc
::1       localhost ip6-localhost   # a comment
127.0.1.1\thost.example.org host
not-an-address name
192.0.2.9
192.0.2.7 Mail.Example.org
192.0.2.8 mail.example.org
127.0.0.1 second-line
";

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn an_address_is_named_by_the_first_name_of_its_first_line() {
        let h = Hosts::parse(FILE);
        assert_eq!(h.name(ip("127.0.0.1")), Some("localhost"));
        assert_eq!(h.name(ip("::1")), Some("localhost"));
        assert_eq!(h.name(ip("127.0.1.1")), Some("host.example.org"));
        assert_eq!(h.name(ip("::ffff:127.0.1.1")), Some("host.example.org"));
        assert_eq!(h.name(ip("192.0.2.9")), None, "a line without a name");
        assert_eq!(h.name(ip("192.0.2.1")), None);
    }

    #[test]
    fn a_name_has_the_addresses_of_every_line_listing_it() {
        let h = Hosts::parse(FILE);
        assert_eq!(h.addresses("localhost", false), [ip("127.0.0.1")]);
        assert_eq!(h.addresses("localhost.", true), [ip("::1")]);
        assert_eq!(h.addresses("runsc", false), [ip("127.0.0.1")]);
        assert_eq!(
            h.addresses("MAIL.example.org", false),
            [ip("192.0.2.7"), ip("192.0.2.8")]
        );
        assert!(h.addresses("host", true).is_empty());
        assert!(h.addresses("name", false).is_empty());
        assert!(Hosts::parse("").addresses("localhost", false).is_empty());
    }
}
