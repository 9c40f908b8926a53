//! ENABLE (RFC 5161): the extensions a client may switch on.
//!
//! Standards: RFC 5161 3.1 (`* ENABLED` lists what this command enabled),
//! RFC 7162 3.1 (CONDSTORE), RFC 9051 (IMAP4rev2),
//! RFC 6855 3 (UTF8=ACCEPT).

use proto::imap::Tag;

use crate::session::Session;

pub fn enable(s: &mut Session, tag: &Tag, caps: &[String]) {
    let mut enabled = Vec::new();
    for c in caps {
        let newly = match c.as_str() {
            "CONDSTORE" => !std::mem::replace(&mut s.enabled.condstore, true),
            // Not announced yet (SELECT's QRESYNC parameter is to come).
            "QRESYNC" => false,
            "IMAP4REV2" => !std::mem::replace(&mut s.enabled.imap4rev2, true),
            "UTF8=ACCEPT" => !std::mem::replace(&mut s.enabled.utf8, true),
            _ => false,
        };
        if newly {
            enabled.push(if c == "IMAP4REV2" {
                "IMAP4rev2"
            } else {
                c.as_str()
            });
        }
    }
    s.out.extend_from_slice(b"* ENABLED");
    for c in enabled {
        s.out.push(b' ');
        s.out.extend_from_slice(c.as_bytes());
    }
    s.out.extend_from_slice(b"\r\n");
    s.ok(tag, "Enabled.");
}
