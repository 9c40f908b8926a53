//! Address lists (From, To, Cc, ...) parsed as Dovecot's message-address.c
//! does with MESSAGE_ADDRESS_PARSE_FLAG_FILL_MISSING: what cannot be parsed
//! is kept as far as it goes and the holes are filled with the markers
//! `MISSING_MAILBOX`, `MISSING_DOMAIN`, `SYNTAX_ERROR` and `INVALID_ROUTE`,
//! so that ENVELOPE shows exactly what Dovecot shows.
//!
//! Owns: one header value to a list of [`Address`]. Writing them as IMAP
//! is `envelope.rs`.
//!
//! Standards: RFC 5322 3.4 (address, mailbox, group, angle-addr,
//! addr-spec), 4.4 (obsolete routes, obs-local-part with loose dots);
//! RFC 3501 7.4.2 (a group is a start entry with the group name as mailbox
//! and NIL host, and an end entry of four NILs).
//!
//! Security: iterative; at most `MAX_ADDRESSES` entries per header so a
//! hostile list cannot grow without bound beyond the header's own size.
//!
//! Diagnostics: none; broken syntax shows as the fill-in markers.

use super::rfc822::Parser;

/// One entry of an IMAP address list (RFC 3501 7.4.2 address structure).
/// Group start: `mailbox` = group name, `domain` = None; group end: all
/// None.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub name: Option<Vec<u8>>,
    pub route: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub domain: Option<Vec<u8>>,
}

/// Entries kept from one header (Dovecot passes UINT_MAX; a header of
/// 10 MB holds far fewer than this anyway).
const MAX_ADDRESSES: usize = 100_000;

struct Ctx<'a> {
    p: Parser<'a>,
    addrs: Vec<Address>,
    addr: Address,
    invalid: bool,
    /// Dovecot's ctx->str: the last local-part read, even a broken one.
    s: Vec<u8>,
}

/// Parses one address header value (RFC 5322 3.4 address-list).
pub fn parse(value: &[u8]) -> Vec<Address> {
    let mut p = Parser::new(value);
    p.last_comment = Some(Vec::new());
    p.nul_replacement = true;
    let mut c = Ctx {
        p,
        addrs: Vec::new(),
        addr: Address::default(),
        invalid: false,
        s: Vec::new(),
    };
    if c.p.skip_lwsp() == Ok(true) {
        c.address_list();
    }
    c.addrs
}

impl Ctx<'_> {
    fn push(&mut self) {
        if self.addrs.len() < MAX_ADDRESSES {
            self.addrs.push(std::mem::take(&mut self.addr));
        } else {
            self.addr = Address::default();
        }
        self.invalid = false;
    }

    fn local_part(&mut self) -> Result<bool, ()> {
        let mut s = Vec::new();
        let ret = if self.p.peek() == b'"' {
            self.p.quoted_string(&mut s)
        } else {
            self.nonstrict_dot_atom(&mut s)
        };
        self.s = s;
        let ret = ret?;
        self.addr.mailbox = Some(self.s.clone());
        Ok(ret)
    }

    /// obs-local-part with leading, trailing and doubled dots (RFC 5322 4.4).
    fn nonstrict_dot_atom(&mut self, s: &mut Vec<u8>) -> Result<bool, ()> {
        let mut ret: Result<bool, ()> = Err(());
        loop {
            while self.p.peek() == b'.' && !self.p.at_end() {
                s.push(b'.');
                self.p.pos += 1;
                if self.p.at_end() {
                    return Ok(false);
                }
                ret = Ok(true);
            }
            if self.p.peek() == b'@' {
                break;
            }
            ret = self.p.atom(s);
            if !(ret == Ok(true) && self.p.peek() == b'.') {
                break;
            }
        }
        ret
    }

    fn domain(&mut self) -> Result<bool, ()> {
        let mut s = Vec::new();
        let ret = self.p.domain(&mut s)?;
        self.addr.domain = Some(s);
        Ok(ret)
    }

    /// obs-domain-list: "@a,@b" kept as the route.
    fn domain_list(&mut self) -> Result<bool, ()> {
        let mut s = Vec::new();
        loop {
            if self.p.at_end() {
                return Ok(false);
            }
            if self.p.peek() != b'@' {
                break;
            }
            if !s.is_empty() {
                s.push(b',');
            }
            s.push(b'@');
            if !self.p.domain(&mut s)? {
                return Ok(false);
            }
            while self.p.skip_lwsp() == Ok(true) && self.p.peek() == b',' {
                self.p.pos += 1;
            }
        }
        self.addr.route = Some(s);
        Ok(true)
    }

    fn angle_addr(&mut self) -> Result<bool, ()> {
        self.p.pos += 1; // '<'
        if !self.p.skip_lwsp()? {
            return Err(());
        }
        if self.p.peek() == b'@' {
            if self.domain_list() == Ok(true) && self.p.peek() == b':' {
                self.p.pos += 1;
            } else {
                self.addr.route = Some(b"INVALID_ROUTE".to_vec());
                if self.p.at_end() {
                    return Err(());
                }
            }
            if !self.p.skip_lwsp()? {
                return Err(());
            }
        }
        if self.p.peek() != b'>' {
            if !self.local_part()? {
                return Err(());
            }
            if self.p.peek() == b'@' && !self.domain()? {
                return Err(());
            }
        }
        if self.p.peek() != b'>' || self.p.at_end() {
            return Err(());
        }
        self.p.pos += 1;
        self.p.skip_lwsp()
    }

    fn name_addr(&mut self) -> Result<bool, ()> {
        let mut s = Vec::new();
        if self.p.phrase(&mut s) != Ok(true) || self.p.peek() != b'<' {
            return Err(());
        }
        self.addr.name = if s.is_empty() { None } else { Some(s) };
        if self.angle_addr().is_err() {
            self.addr.domain = Some(b"SYNTAX_ERROR".to_vec());
            self.invalid = true;
        }
        Ok(!self.p.at_end())
    }

    fn addr_spec(&mut self) -> Result<bool, ()> {
        self.p.last_comment = Some(Vec::new());
        let quoted = self.p.peek() == b'"';
        let mut ret = self.local_part();
        if ret != Ok(true) {
            self.invalid = true;
        }
        let mut domain_tried = false;
        if ret != Ok(false) && !self.p.at_end() && self.p.peek() == b'@' {
            domain_tried = true;
            let r2 = self.domain();
            if r2 != Ok(true) {
                ret = r2;
            }
        }
        let comment = self.p.last_comment.clone().unwrap_or_default();
        if !comment.is_empty() {
            self.addr.name = Some(comment);
        } else if !domain_tried {
            // "user" alone is a mailbox; "user more words" a display name
            let mut s = std::mem::take(&mut self.s);
            s.push(b' ');
            let orig = s.len();
            let _ = self.p.phrase(&mut s);
            if s.len() != orig {
                self.addr.mailbox = None;
                self.addr.name = Some(s);
            } else if !quoted {
                self.addr.domain = Some(Vec::new());
            }
            self.invalid = true;
            ret = Err(());
        }
        ret
    }

    fn fill_missing(&mut self) {
        if self.addr.mailbox.is_none() {
            self.addr.mailbox = Some(b"MISSING_MAILBOX".to_vec());
        }
        if self.addr.domain.as_ref().is_none_or(|d| d.is_empty()) {
            self.addr.domain = Some(b"MISSING_DOMAIN".to_vec());
        }
        self.push();
    }

    fn mailbox(&mut self) -> Result<bool, ()> {
        let start = self.p.pos;
        let mut ret = self.name_addr();
        if ret.is_err() {
            self.p.pos = start;
            ret = self.addr_spec();
            if self.invalid
                && self.addr.name.is_none()
                && self.addr.mailbox.is_some()
                && self.addr.domain.is_none()
            {
                self.addr.name = self.addr.mailbox.take();
            }
        }
        self.fill_missing();
        ret
    }

    fn group(&mut self) -> Result<bool, ()> {
        let mut s = Vec::new();
        if self.p.phrase(&mut s) != Ok(true) || self.p.peek() != b':' {
            return Err(());
        }
        self.p.pos += 1;
        let mut ret = self.p.skip_lwsp();
        self.addr.mailbox = Some(s);
        self.push();
        if ret == Ok(true) && self.p.peek() != b';' {
            loop {
                let _ = self.mailbox();
                if self.p.at_end() || self.p.peek() != b',' {
                    break;
                }
                self.p.pos += 1;
                if self.p.skip_lwsp() != Ok(true) {
                    ret = Err(());
                    break;
                }
                if self.addrs.len() >= MAX_ADDRESSES {
                    break;
                }
            }
        }
        if ret.is_ok() {
            if self.p.at_end() || self.p.peek() != b';' {
                ret = Err(());
            } else {
                self.p.pos += 1;
                ret = self.p.skip_lwsp();
            }
        }
        self.push();
        Ok(ret != Ok(false))
    }

    fn address(&mut self) -> Result<bool, ()> {
        let start = self.p.pos;
        match self.group() {
            Err(()) => {
                self.p.pos = start;
                self.mailbox()
            }
            ok => ok,
        }
    }

    fn address_list(&mut self) {
        while self.addrs.len() < MAX_ADDRESSES {
            if self.address() == Ok(false) {
                break;
            }
            if self.p.at_end() || self.p.peek() != b',' {
                break;
            }
            self.p.pos += 1;
            match self.p.skip_lwsp() {
                Ok(true) => {}
                Ok(false) => break,
                Err(()) => {
                    // ends with some garbage
                    self.fill_missing();
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: Option<&str>, mailbox: &str, domain: &str) -> Address {
        Address {
            name: name.map(|n| n.as_bytes().to_vec()),
            route: None,
            mailbox: Some(mailbox.as_bytes().to_vec()),
            domain: Some(domain.as_bytes().to_vec()),
        }
    }

    #[test]
    fn name_addr_and_addr_spec() {
        assert_eq!(
            parse(b"Bob <bob@example.net>, carol@example.net"),
            vec![
                one(Some("Bob"), "bob", "example.net"),
                one(None, "carol", "example.net")
            ]
        );
    }

    #[test]
    fn empty_value_is_no_address() {
        assert!(parse(b"").is_empty());
        assert!(parse(b"  (just a comment) ").is_empty());
    }

    #[test]
    fn group_has_start_and_end_entries() {
        let a = parse(b"undisclosed-recipients:;");
        assert_eq!(a.len(), 2);
        assert_eq!(
            a[0].mailbox.as_deref(),
            Some(&b"undisclosed-recipients"[..])
        );
        assert_eq!(a[1], Address::default());
    }
}
