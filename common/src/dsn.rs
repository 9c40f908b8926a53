//! What a sender asked of delivery status notifications (RFC 3461), as kept
//! with a queued message: RET and ENVID for the message, NOTIFY and ORCPT
//! for each recipient.
//!
//! Owns the values and their meaning (who wants which notice); does not own
//! their SMTP syntax (proto::smtp parses and checks it, proto::smtp::xtext
//! decodes it), their place in the queue file (spool.rs), or the notices
//! themselves (qmgr's bounce.rs).
//!
//! Standards: RFC 3461 4.1 (NOTIFY), 4.2 (ORCPT), 4.3 (RET), 4.4 (ENVID).
//!
//! Security: ENVID and ORCPT are kept as the client sent them (xtext), and
//! are taken back from a queue file only when they still are xtext whose
//! decoded text has no control characters (`valid_envid`, `orcpt_parts`),
//! so neither can break a command line to the next hop nor a header field
//! of a notification.

use proto::smtp::xtext;

/// RFC 3461 4.3: what of the message a failure notice returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

impl Ret {
    /// The parameter's value: FULL or HDRS.
    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }
}

/// RFC 3461 4.1: NOTIFY=NEVER, or any of SUCCESS, FAILURE and DELAY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify(u8);

impl Notify {
    pub const NEVER: Notify = Notify(1);
    pub const SUCCESS: Notify = Notify(2);
    pub const FAILURE: Notify = Notify(4);
    pub const DELAY: Notify = Notify(8);

    /// The parameter's value (any case): NEVER alone, or a list of the
    /// others; None for anything else.
    pub fn parse(v: &str) -> Option<Notify> {
        if v.eq_ignore_ascii_case("NEVER") {
            return Some(Notify::NEVER);
        }
        let mut bits = 0;
        for word in v.split(',') {
            bits |= match word.to_ascii_uppercase().as_str() {
                "SUCCESS" => Notify::SUCCESS.0,
                "FAILURE" => Notify::FAILURE.0,
                "DELAY" => Notify::DELAY.0,
                _ => return None,
            };
        }
        Some(Notify(bits))
    }

    /// The bits as stored; see `from_bits`.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Stored bits back; None unless they are NEVER alone or a non-empty
    /// set of the other three.
    pub fn from_bits(b: u8) -> Option<Notify> {
        match b {
            1 => Some(Notify::NEVER),
            b if b != 0 && b & !0b1110 == 0 => Some(Notify(b)),
            _ => None,
        }
    }

    pub fn contains(self, kind: Notify) -> bool {
        self.0 & kind.0 == kind.0
    }
}

impl std::fmt::Display for Notify {
    /// The parameter's value: `NEVER`, or e.g. `SUCCESS,DELAY`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Notify::NEVER {
            return f.write_str("NEVER");
        }
        let words = [
            (Notify::SUCCESS, "SUCCESS"),
            (Notify::FAILURE, "FAILURE"),
            (Notify::DELAY, "DELAY"),
        ];
        let names: Vec<&str> = words
            .iter()
            .filter(|(k, _)| self.contains(*k))
            .map(|(_, n)| *n)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// The message's RET and ENVID (MAIL FROM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageDsn {
    pub ret: Option<Ret>,
    /// ENVID as the client sent it (xtext).
    pub envid: Option<String>,
}

impl MessageDsn {
    pub fn is_empty(&self) -> bool {
        self.ret.is_none() && self.envid.is_none()
    }

    /// The envelope id as text (for Original-Envelope-Id:).
    pub fn envid_text(&self) -> Option<String> {
        self.envid.as_deref().and_then(xtext::decode_text)
    }
}

/// A recipient's NOTIFY and ORCPT (RCPT TO).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientDsn {
    pub notify: Option<Notify>,
    /// ORCPT as the client sent it: `addr-type;xtext`.
    pub orcpt: Option<String>,
}

impl RecipientDsn {
    pub fn is_empty(&self) -> bool {
        self.notify.is_none() && self.orcpt.is_none()
    }

    /// Does the sender want a notice of `kind` (SUCCESS, FAILURE or DELAY)
    /// about this recipient? Without NOTIFY: failures and delays, as
    /// Postfix does (RFC 3461 4.1 leaves it to the implementation).
    pub fn wants(&self, kind: Notify) -> bool {
        match self.notify {
            None => kind != Notify::SUCCESS,
            Some(n) => n.contains(kind),
        }
    }

    /// The original recipient as `(addr-type, address)`, decoded (for
    /// Original-Recipient:).
    /// The log lines' `, orig_to=<a>` for a recipient delivered as
    /// `address` (Postfix's field for an address rewritten on the way, e.g.
    /// by virtual_alias_maps, whose original smtpd keeps as the ORCPT):
    /// empty when there is no rfc822 ORCPT or it is the address itself.
    pub fn orig_to(&self, address: &str) -> String {
        match self.orcpt_text() {
            Some((t, a))
                if t.eq_ignore_ascii_case("rfc822") && !a.eq_ignore_ascii_case(address) =>
            {
                format!(", orig_to=<{a}>")
            }
            _ => String::new(),
        }
    }

    pub fn orcpt_text(&self) -> Option<(String, String)> {
        let (t, a) = orcpt_parts(self.orcpt.as_deref()?)?;
        Some((t.to_string(), a))
    }
}

/// Is `v` an ENVID value we keep: xtext of text without controls, at most
/// 100 characters (RFC 3461 4.4)?
pub fn valid_envid(v: &str) -> bool {
    !v.is_empty() && v.len() <= 100 && xtext::decode_text(v).is_some()
}

/// An ORCPT value (RFC 3461 4.2: `addr-type ";" xtext`, at most 500
/// characters) as its type and decoded address; None when malformed.
pub fn orcpt_parts(v: &str) -> Option<(&str, String)> {
    let (addr_type, addr) = v.split_once(';')?;
    let type_ok = !addr_type.is_empty()
        && addr_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !type_ok || addr.is_empty() || v.len() > 500 {
        return None;
    }
    Some((addr_type, xtext::decode_text(addr)?))
}

/// The ORCPT Postfix's SMTP client sends for a recipient that came
/// without one: `rfc822;` and the address, as xtext.
pub fn default_orcpt(address: &str) -> String {
    format!("rfc822;{}", xtext::encode(address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_parse_show_and_bits() {
        for (v, shown) in [
            ("NEVER", "NEVER"),
            ("never", "NEVER"),
            ("success", "SUCCESS"),
            ("DELAY,SUCCESS", "SUCCESS,DELAY"),
            ("FAILURE,DELAY,SUCCESS", "SUCCESS,FAILURE,DELAY"),
        ] {
            let n = Notify::parse(v).unwrap_or_else(|| panic!("{v}"));
            assert_eq!(n.to_string(), shown);
            assert_eq!(Notify::from_bits(n.bits()), Some(n));
        }
        for bad in ["", "NEVER,SUCCESS", "SUCCESS,", "ALWAYS"] {
            assert_eq!(Notify::parse(bad), None, "{bad:?}");
        }
        for bad in [0, 3, 16, 0x81] {
            assert_eq!(Notify::from_bits(bad), None, "{bad}");
        }
    }

    #[test]
    fn orig_to_only_for_another_address() {
        let d = |o: &str| RecipientDsn {
            notify: None,
            orcpt: Some(o.into()),
        };
        assert_eq!(
            d("rfc822;Info+2Bx@alias.test").orig_to("bob@example.test"),
            ", orig_to=<Info+x@alias.test>"
        );
        assert_eq!(d("rfc822;bob@Example.Test").orig_to("bob@example.test"), "");
        assert_eq!(d("x400;bob@other").orig_to("bob@example.test"), "");
        assert_eq!(RecipientDsn::default().orig_to("bob@example.test"), "");
    }

    #[test]
    fn who_wants_what() {
        let none = RecipientDsn::default();
        assert!(none.wants(Notify::FAILURE) && none.wants(Notify::DELAY));
        assert!(!none.wants(Notify::SUCCESS));
        let never = RecipientDsn {
            notify: Some(Notify::NEVER),
            orcpt: None,
        };
        for k in [Notify::SUCCESS, Notify::FAILURE, Notify::DELAY] {
            assert!(!never.wants(k));
        }
        let success = RecipientDsn {
            notify: Notify::parse("SUCCESS"),
            orcpt: None,
        };
        assert!(success.wants(Notify::SUCCESS));
        assert!(!success.wants(Notify::FAILURE) && !success.wants(Notify::DELAY));
    }

    #[test]
    fn orcpt_and_envid() {
        assert_eq!(
            orcpt_parts("rfc822;bob+2Bx+40example.org"),
            Some(("rfc822", "bob+x@example.org".to_string()))
        );
        for bad in [
            "rfc822",
            ";a@b",
            "rfc822;",
            "rfc 822;a@b",
            "rfc822;a+0D+0Ab",
            "rfc822;a b",
        ] {
            assert_eq!(orcpt_parts(bad), None, "{bad:?}");
        }
        assert_eq!(default_orcpt("a+b@c.org"), "rfc822;a+2Bb@c.org");
        assert!(valid_envid("QQ314159"));
        assert!(!valid_envid("") && !valid_envid("a+0A") && !valid_envid(&"x".repeat(101)));
        let m = MessageDsn {
            ret: None,
            envid: Some("id+2B1".into()),
        };
        assert_eq!(m.envid_text().as_deref(), Some("id+1"));
    }
}
