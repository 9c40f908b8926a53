//! Envelope addresses: splitting, case folding for lookups, extensions.
//!
//! Owns the rules for comparing addresses (domain case-insensitive; local part
//! folded to lower case for table lookups, as Postfix does) and for removing a
//! recipient_delimiter extension. Parsing the SMTP path syntax is proto's job.
//!
//! Standards: RFC 5321 2.4 (local parts may be case-sensitive, but lookups
//! here fold them as every common MTA does), 4.5.1 (postmaster).

use crate::config::Config;

/// How a recipient's domain is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// virtual_mailbox_domains: a user of the users file.
    Virtual,
    /// mydestination (or no domain): a system user.
    System,
    /// Anyone else's domain: outbound SMTP, only for clients allowed to relay.
    Remote,
}

/// The domain lists that decide a recipient's route, expanded once.
#[derive(Debug, Clone, Default)]
pub struct Domains {
    pub virtual_domains: Vec<String>,
    pub mydestination: Vec<String>,
    pub delimiter: String,
}

impl Domains {
    pub fn from_config(cfg: &Config) -> Domains {
        Domains {
            virtual_domains: cfg.list("virtual_mailbox_domains"),
            mydestination: cfg.list("mydestination"),
            delimiter: cfg.get("recipient_delimiter"),
        }
    }

    /// The route of an address (by its domain).
    pub fn route(&self, address: &str) -> Route {
        let (_, domain) = split(address);
        if domain_in(domain, &self.virtual_domains) {
            Route::Virtual
        } else if domain.is_empty() || domain_in(domain, &self.mydestination) {
            Route::System
        } else {
            Route::Remote
        }
    }
}

/// A next hop of outbound mail, in relayhost's and transport(5)'s syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub host: String,
    pub port: u16,
    /// `[host]`: the host itself; else its MX records.
    pub literal: bool,
}

impl NextHop {
    /// `[host]:port`, `[host]`, `host:port`, `host` (`default_port` when
    /// none is given).
    pub fn parse(v: &str, default_port: u16) -> Option<NextHop> {
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
            "" => default_port,
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
}

/// `local@domain` split at the last `@`. An address without `@` has no domain.
pub fn split(addr: &str) -> (&str, &str) {
    match addr.rfind('@') {
        Some(pos) => (&addr[..pos], &addr[pos + 1..]),
        None => (addr, ""),
    }
}

/// The lookup key of an address: lower case, extension removed.
pub fn lookup_key(addr: &str, delimiters: &str) -> String {
    let (local, domain) = split(addr);
    let local = strip_extension(local, delimiters);
    if domain.is_empty() {
        local.to_ascii_lowercase()
    } else {
        format!(
            "{}@{}",
            local.to_ascii_lowercase(),
            domain.to_ascii_lowercase()
        )
    }
}

/// `user+ext` -> `user` when `+` is one of `delimiters`.
pub fn strip_extension<'a>(local: &'a str, delimiters: &str) -> &'a str {
    if delimiters.is_empty() {
        return local;
    }
    match local.find(|c| delimiters.contains(c)) {
        Some(pos) if pos > 0 => &local[..pos],
        _ => local,
    }
}

/// Is `domain` one of `list` (case-insensitive, trailing dot ignored)?
pub fn domain_in(domain: &str, list: &[String]) -> bool {
    let d = domain.trim_end_matches('.');
    list.iter()
        .any(|x| x.trim_end_matches('.').eq_ignore_ascii_case(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(split("a@b@c"), ("a@b", "c"));
        assert_eq!(
            lookup_key("Joe+Lists@Example.TEST", "+"),
            "joe@example.test"
        );
        assert_eq!(
            lookup_key("Joe+Lists@Example.TEST", ""),
            "joe+lists@example.test"
        );
        assert_eq!(lookup_key("+x@d", "+"), "+x@d");
        assert_eq!(lookup_key("Postmaster", ""), "postmaster");
        assert!(domain_in("EXAMPLE.test.", &["example.test".into()]));
        assert!(!domain_in("example.org", &["example.test".into()]));
        let d = Domains {
            virtual_domains: vec!["v.test".into()],
            mydestination: vec!["localhost".into()],
            delimiter: String::new(),
        };
        assert_eq!(d.route("a@V.test"), Route::Virtual);
        assert_eq!(d.route("root@localhost"), Route::System);
        assert_eq!(d.route("postmaster"), Route::System);
        assert_eq!(d.route("a@example.org"), Route::Remote);
    }

    #[test]
    fn next_hop_forms() {
        let hop = |h: &str, port, literal| NextHop {
            host: h.into(),
            port,
            literal,
        };
        assert_eq!(
            NextHop::parse("[127.0.0.1]:2526", 25),
            Some(hop("127.0.0.1", 2526, true))
        );
        assert_eq!(
            NextHop::parse("[mail.example.org]", 25),
            Some(hop("mail.example.org", 25, true))
        );
        assert_eq!(NextHop::parse("[::1]:25", 25), Some(hop("::1", 25, true)));
        assert_eq!(
            NextHop::parse("smtp.example.org:587", 25),
            Some(hop("smtp.example.org", 587, false))
        );
        assert_eq!(
            NextHop::parse("example.org", 2525),
            Some(hop("example.org", 2525, false)),
            "no port: the default given"
        );
        for bad in ["[x", "[x]:", "[x]:0", "x:99999", "a b", "[]:25", "x:y"] {
            assert_eq!(NextHop::parse(bad, 25), None, "{bad}");
        }
    }
}
