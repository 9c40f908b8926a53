//! ENABLE (RFC 5161): the extensions a client may switch on, and the
//! CONDSTORE switch the other enabling commands share.
//!
//! Standards: RFC 5161 3.1 (`* ENABLED` lists what this command enabled,
//! nothing enabled before),
//! RFC 7162 3.1 (CONDSTORE and the commands that enable it; HIGHESTMODSEQ
//! when it is enabled with a mailbox selected), 3.2.3 (ENABLE QRESYNC
//! enables CONDSTORE too), RFC 9051 (IMAP4rev2), RFC 6855 3 (UTF8=ACCEPT).

use proto::imap::Tag;

use crate::session::Session;

pub fn enable(s: &mut Session, tag: &Tag, caps: &[String]) {
    let before = s.enabled;
    for c in caps {
        match c.as_str() {
            "CONDSTORE" => enable_condstore(s),
            // RFC 7162 3.2.3: QRESYNC implies CONDSTORE.
            "QRESYNC" => {
                enable_condstore(s);
                s.enabled.qresync = true;
            }
            "IMAP4REV2" => s.enabled.imap4rev2 = true,
            "UTF8=ACCEPT" => s.enabled.utf8 = true,
            _ => {}
        }
    }
    // What this command enabled, each named once as the client asked
    // (CONDSTORE too when QRESYNC brought it in).
    let now = s.enabled;
    let mut enabled: Vec<&str> = Vec::new();
    for c in caps {
        let (name, newly) = match c.as_str() {
            "CONDSTORE" => ("CONDSTORE", now.condstore && !before.condstore),
            "QRESYNC" => ("QRESYNC", now.qresync && !before.qresync),
            "IMAP4REV2" => ("IMAP4rev2", now.imap4rev2 && !before.imap4rev2),
            "UTF8=ACCEPT" => ("UTF8=ACCEPT", now.utf8 && !before.utf8),
            _ => continue,
        };
        if newly && !enabled.contains(&name) {
            enabled.push(name);
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

/// A CONDSTORE enabling command (RFC 7162 3.1: ENABLE, SELECT/EXAMINE
/// (CONDSTORE), STATUS (HIGHESTMODSEQ), FETCH or SEARCH MODSEQ, FETCH
/// CHANGEDSINCE, STORE UNCHANGEDSINCE): from now on every untagged FETCH
/// carries MODSEQ. The first one with a mailbox selected tells the
/// client its HIGHESTMODSEQ (RFC 7162 3.1.2.1; Dovecot's
/// imap_client_enable_condstore).
pub fn enable_condstore(s: &mut Session) {
    if std::mem::replace(&mut s.enabled.condstore, true) {
        return;
    }
    if let Some(view) = &s.selected {
        let m = view.folder.highest_modseq();
        s.out
            .extend_from_slice(format!("* OK [HIGHESTMODSEQ {m}] Highest\r\n").as_bytes());
    }
}
