//! Envelope address syntax: what may stand between `<` and `>` in MAIL/RCPT.
//!
//! Owns the syntax check of a Path's content (source route, Mailbox, Domain,
//! address literal) and the split of a mailbox into local part and domain.
//! It does not own comparison, case folding or lookups (common::addr) nor any
//! policy such as "is this domain ours" (smtpd).
//!
//! Standards: RFC 5321 4.1.2 (Path, A-d-l, Mailbox, Local-part, Domain,
//! address-literal), 4.1.3 (IPv4 and IPv6 address literals), 4.5.3.1.2 and
//! 4.5.3.1.3 (domain and path length); RFC 1035 2.3.4 (63-octet labels);
//! RFC 6531 3.3 (UTF-8 in local parts and domains under SMTPUTF8).
//!
//! Deliberate leniency, as Postfix: a dot-string local part may contain
//! leading, trailing or doubled dots ("first..last@", seen from some mobile
//! carriers); domain labels may contain `_`; the 64-octet local part limit of
//! 4.5.3.1.1 is not enforced (VERP and SRS addresses exceed it).
//!
//! Security: input is untrusted; scanning is linear, without recursion, and
//! slices are only taken at ASCII delimiters, so they are on char boundaries.
//!
//! Diagnostics: nothing is logged; results are `bool`/`Option`/`PathError`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a Path's content was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathError {
    /// Not a Mailbox by RFC 5321 4.1.2.
    Syntax,
    /// A valid Mailbox with non-ASCII text, but UTF-8 was not allowed.
    NonAscii,
}

/// Check the content of a Path (without its angle brackets) and return the
/// Mailbox, with any source route removed.
///
/// RFC 5321 4.1.2: `Path = "<" [ A-d-l ":" ] Mailbox ">"`; the source route
/// must be accepted and should be ignored (RFC 5321 C, 3.3).
pub(crate) fn parse_path(inner: &str, allow_utf8: bool) -> Result<&str, PathError> {
    // RFC 5321 4.5.3.1.3: a path is at most 256 octets including "<" ">".
    if inner.len() + 2 > 256 {
        return Err(PathError::Syntax);
    }
    let mailbox = if inner.starts_with('@') {
        strip_route(inner).ok_or(PathError::Syntax)?
    } else {
        inner
    };
    if !is_mailbox(mailbox) {
        return Err(PathError::Syntax);
    }
    // RFC 6531 3.4: non-ASCII addresses only in an SMTPUTF8 transaction.
    if !allow_utf8 && !inner.is_ascii() {
        return Err(PathError::NonAscii);
    }
    Ok(mailbox)
}

/// Remove `@a,@b:` from `@a,@b:user@d`; None when the route is malformed.
/// RFC 5321 4.1.2: `A-d-l = At-domain *( "," At-domain )`, `At-domain = "@" Domain`.
fn strip_route(mut rest: &str) -> Option<&str> {
    loop {
        rest = rest.strip_prefix('@')?;
        let end = rest.find([',', ':'])?;
        if !is_domain(&rest[..end]) {
            return None;
        }
        let sep = rest.as_bytes()[end];
        rest = &rest[end + 1..];
        if sep == b':' {
            return Some(rest);
        }
    }
}

/// RFC 5321 4.1.2: `Mailbox = Local-part "@" ( Domain / address-literal )`.
fn is_mailbox(s: &str) -> bool {
    let local_len = if s.starts_with('"') {
        match quoted_len(s) {
            Some(n) => n,
            None => return false,
        }
    } else {
        match s.find('@') {
            Some(n) => n,
            None => return false,
        }
    };
    let (local, rest) = s.split_at(local_len);
    let Some(domain) = rest.strip_prefix('@') else {
        return false;
    };
    let local_ok = local.starts_with('"') || is_dot_string(local);
    local_ok && (is_domain(domain) || is_address_literal(domain))
}

/// Length of the Quoted-string at the start of `s`, quotes included.
/// RFC 5321 4.1.2: `qtextSMTP = %d32-33 / %d35-91 / %d93-126`,
/// `quoted-pairSMTP = %d92 %d32-126`; RFC 6531 3.3 adds UTF8-non-ascii.
fn quoted_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some(i + 1),
            '\\' => match chars.next() {
                Some((_, ' '..='~')) => {}
                _ => return None,
            },
            ' ' | '!' | '#'..='[' | ']'..='~' => {}
            c if !c.is_ascii() && !c.is_control() => {}
            _ => return None,
        }
    }
    None
}

/// A dot-string local part, leniently: atext and dots, not empty.
/// RFC 5321 4.1.2: `Dot-string = Atom *("." Atom)`, RFC 5322 3.2.3 atext;
/// RFC 6531 3.3 adds UTF8-non-ascii to atext.
fn is_dot_string(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c == '.' || is_atext(c))
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_control())
}

/// A domain name as RFC 5321 4.1.2 `Domain = sub-domain *("." sub-domain)`.
///
/// Labels are 1..=63 octets (RFC 1035 2.3.4) of letters, digits, `-` (not
/// first or last), `_` (Postfix leniency) or non-ASCII (U-labels, RFC 6531
/// 3.3; IDNA validity is not checked here). At most 255 octets (RFC 5321
/// 4.5.3.1.2). The last label must not be all digits, so that `1.2.3.4`
/// without brackets is refused (RFC 5321 4.1.3 requires an address literal).
pub fn is_domain(s: &str) -> bool {
    if s.is_empty() || s.len() > 255 {
        return false;
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || c == '-'
                    || c == '_'
                    || (!c.is_ascii() && !c.is_control())
            })
    };
    if !s.split('.').all(label_ok) {
        return false;
    }
    let last = s.rsplit('.').next().unwrap_or(s); // rsplit yields at least one item
    !last.bytes().all(|b| b.is_ascii_digit())
}

/// An address literal: `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
///
/// RFC 5321 4.1.3. The General-address-literal form (other tags) is refused:
/// no other tag is registered.
pub fn is_address_literal(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return false;
    };
    // RFC 5321 4.1.3: the "IPv6:" tag; Standardized-tag is case-insensitive.
    if inner.len() > 5 && inner.is_char_boundary(5) && inner[..5].eq_ignore_ascii_case("IPv6:") {
        return inner[5..].parse::<Ipv6Addr>().is_ok();
    }
    inner.parse::<Ipv4Addr>().is_ok()
}

/// Split a mailbox at the last `@` outside a quoted local part.
///
/// `"a@b"@example.org` gives `("\"a@b\"", "example.org")`; None when there is
/// no `@` outside quotes.
pub fn split_address(addr: &str) -> Option<(&str, &str)> {
    let mut at = None;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, b) in addr.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if in_quote => escaped = true,
            b'"' => in_quote = !in_quote,
            b'@' if !in_quote => at = Some(i),
            _ => {}
        }
    }
    let at = at?;
    Some((&addr[..at], &addr[at + 1..]))
}

/// True when the address is plain ASCII, i.e. needs no SMTPUTF8 (RFC 6531).
pub fn is_ascii_address(addr: &str) -> bool {
    addr.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_table() {
        use PathError::*;
        let long_local = format!("{}@example.org", "a".repeat(240));
        let too_long = format!("{}@example.org", "a".repeat(250));
        let table: &[(&str, bool, Result<&str, PathError>)] = &[
            ("user@example.org", false, Ok("user@example.org")),
            (
                "u.s.e.r+tag@sub.example.org",
                false,
                Ok("u.s.e.r+tag@sub.example.org"),
            ),
            (
                "!#$%&'*+-/=?^_`{|}~@x.org",
                false,
                Ok("!#$%&'*+-/=?^_`{|}~@x.org"),
            ),
            (
                "first..last.@docomo.example",
                false,
                Ok("first..last.@docomo.example"),
            ),
            ("\"a b\"@x.org", false, Ok("\"a b\"@x.org")),
            ("\"a@b\"@x.org", false, Ok("\"a@b\"@x.org")),
            ("\"a\\\"b\"@x.org", false, Ok("\"a\\\"b\"@x.org")),
            ("\"a>b\"@x.org", false, Ok("\"a>b\"@x.org")),
            ("\"\"@x.org", false, Ok("\"\"@x.org")),
            ("user@[192.0.2.1]", false, Ok("user@[192.0.2.1]")),
            (
                "user@[IPv6:2001:db8::1]",
                false,
                Ok("user@[IPv6:2001:db8::1]"),
            ),
            ("user@[ipv6:::1]", false, Ok("user@[ipv6:::1]")),
            ("user@localhost", false, Ok("user@localhost")),
            ("user@_dmarc.x.org", false, Ok("user@_dmarc.x.org")),
            ("user@123.example", false, Ok("user@123.example")),
            (
                "@a.example,@b.example:user@d.example",
                false,
                Ok("user@d.example"),
            ),
            ("@a.example:user@d.example", false, Ok("user@d.example")),
            (
                "j\u{f6}rg@b\u{fc}cher.example",
                true,
                Ok("j\u{f6}rg@b\u{fc}cher.example"),
            ),
            ("j\u{f6}rg@b\u{fc}cher.example", false, Err(NonAscii)),
            ("\"j\u{f6}rg\"@x.org", false, Err(NonAscii)),
            (long_local.as_str(), false, Ok(long_local.as_str())),
            (too_long.as_str(), false, Err(Syntax)),
            ("user", false, Err(Syntax)),
            ("user@", false, Err(Syntax)),
            ("@example.org", false, Err(Syntax)),
            ("user@@example.org", false, Err(Syntax)),
            ("us er@example.org", false, Err(Syntax)),
            ("us(er@example.org", false, Err(Syntax)),
            ("user@exa mple.org", false, Err(Syntax)),
            ("user@example..org", false, Err(Syntax)),
            ("user@example.org.", false, Err(Syntax)),
            ("user@.example.org", false, Err(Syntax)),
            ("user@-example.org", false, Err(Syntax)),
            ("user@example-.org", false, Err(Syntax)),
            ("user@192.0.2.1", false, Err(Syntax)),
            ("user@[192.0.2.256]", false, Err(Syntax)),
            ("user@[192.0.2]", false, Err(Syntax)),
            ("user@[IPv6:zz::1]", false, Err(Syntax)),
            ("user@[2001:db8::1]", false, Err(Syntax)),
            ("user@[x-tag:abc]", false, Err(Syntax)),
            ("user@[192.0.2.1", false, Err(Syntax)),
            ("\"unterminated@x.org", false, Err(Syntax)),
            ("\"a\"b@x.org", false, Err(Syntax)),
            ("\"a\tb\"@x.org", false, Err(Syntax)),
            ("a\"b\"@x.org", false, Err(Syntax)),
            ("@a.example user@d.example", false, Err(Syntax)),
            ("@a.example,user@d.example", false, Err(Syntax)),
            ("@:user@d.example", false, Err(Syntax)),
            ("@[192.0.2.1]:user@d.example", false, Err(Syntax)),
        ];
        for (input, utf8, want) in table {
            assert_eq!(parse_path(input, *utf8), *want, "{input:?}");
        }
    }

    #[test]
    fn domain_label_limits() {
        let l63 = "a".repeat(63);
        let l64 = "a".repeat(64);
        assert!(is_domain(&format!("{l63}.org")));
        assert!(!is_domain(&format!("{l64}.org")));
        let d255 = format!("{l63}.{l63}.{l63}.{}", "b".repeat(63));
        assert_eq!(d255.len(), 255);
        assert!(is_domain(&d255));
        assert!(!is_domain(&format!("a{d255}")));
    }

    #[test]
    fn split_table() {
        let table: &[(&str, Option<(&str, &str)>)] = &[
            ("user@example.org", Some(("user", "example.org"))),
            ("\"a@b\"@example.org", Some(("\"a@b\"", "example.org"))),
            ("\"a\\\"@b\"@x", Some(("\"a\\\"@b\"", "x"))),
            ("a@b@c", Some(("a@b", "c"))),
            ("Postmaster", None),
            ("\"a@b\"", None),
            ("user@", Some(("user", ""))),
            ("", None),
        ];
        for (input, want) in table {
            assert_eq!(split_address(input), *want, "{input:?}");
        }
    }

    #[test]
    fn ascii() {
        assert!(is_ascii_address("user@example.org"));
        assert!(!is_ascii_address("j\u{f6}rg@example.org"));
    }
}
