//! The DKIM signing and ARC sealing harness: posthorn-smtp's signing of a
//! message it relays (posthorn_trust::sign), whose headers and body a
//! submitter wrote.
//!
//! Owns what the `dkim_sign` target feeds and the properties it checks
//! beyond "does not panic": the bytes are the message; a key directory
//! (made once) holds an Ed25519 key for example.org and an RSA ARC key.
//! A signature is made exactly when the From: header names one author at
//! example.org; its fields are ASCII header lines (CR LF, a name,
//! continuation lines folded) of at most 998 octets that name d=example.org.
//! The ARC-Authentication-Results text is one line without controls that
//! starts with the authserv-id; a seal, when made, is three fields with
//! i=1 (no earlier chain is verified: no resolver). Does not own the
//! cryptography (mail-auth) or DNS.
//!
//! Standards: RFC 6376 3.5, 5.4; RFC 8617 4.1; RFC 5322 2.1.1.
//!
//! Security: the message is attacker-shaped; a panic, an abort or a hang
//! is a finding.
//!
//! Diagnostics: a failed property panics with what differed.

use std::path::PathBuf;
use std::sync::OnceLock;

use posthorn_trust::sign::{self, Algorithm, ArcSettings, Sealed};

/// The key directory, made once per process.
fn keys() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("posthorn-fuzz-dkim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        sign::keygen(&d, "example.org", "ed", Algorithm::Ed25519, 2048, None)
            .expect("an Ed25519 key");
        let arc = d.join("arc");
        sign::keygen(&arc, "example.org", "seal", Algorithm::Rsa, 2048, None).expect("an RSA key");
        d
    })
}

/// Header lines as RFC 5322 2.2 and 2.1.1 want them.
fn well_formed_fields(f: &[u8], name: &str) {
    assert!(f.is_ascii(), "ASCII fields");
    assert!(f.ends_with(b"\r\n"), "ends with CR LF");
    let text = String::from_utf8_lossy(f);
    for (i, line) in text.split_terminator("\r\n").enumerate() {
        assert!(line.len() <= 998, "a line of {} octets", line.len());
        assert!(!line.contains(['\r', '\n']), "a bare CR or LF: {line:?}");
        if i == 0 {
            assert!(line.starts_with(name), "{line:?}");
        }
    }
}

/// posthorn_trust::sign::dkim_sign, copied_results and arc_seal on the
/// bytes as a message.
pub fn dkim_sign(data: &[u8]) {
    let dir = keys();
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data.len(), |p| p + 4);
    let from = sign::from_domain(&data[..head_end]);
    match sign::dkim_sign(dir, &[], &mut &data[..]) {
        Ok(Some(s)) => {
            assert_eq!(s.domain, "example.org");
            assert_eq!(from.as_deref(), Some("example.org"));
            assert_eq!(s.selectors, ["ed"]);
            well_formed_fields(&s.fields, "DKIM-Signature: ");
            let unfolded: String = String::from_utf8_lossy(&s.fields)
                .split_ascii_whitespace()
                .collect();
            assert!(unfolded.contains("d=example.org;"), "{unfolded}");
        }
        Ok(None) => assert_ne!(from.as_deref(), Some("example.org"), "not signed"),
        // A message whose header section has none of the fields to sign.
        Err(sign::SignError::Sign(_)) => {}
        Err(e) => panic!("{e}"),
    }

    let ar = sign::copied_results(data, "mx.example.org");
    assert!(ar.starts_with("mx.example.org"), "{ar:?}");
    assert!(!ar.chars().any(char::is_control), "{ar:?}");

    if data.len() > 64 * 1024 {
        return;
    }
    let settings = ArcSettings {
        key_dir: dir.join("arc"),
        domain: "example.org".into(),
        selector: "seal".into(),
        authserv_id: "mx.example.org".into(),
        headers: Vec::new(),
    };
    match sign::arc_seal(&settings, data, None) {
        Ok(Sealed::Set(fields, cv)) => {
            assert_eq!(cv, "none");
            let text = String::from_utf8_lossy(&fields).into_owned();
            well_formed_fields(&fields, "ARC-Seal: ");
            for f in [
                "ARC-Seal: ",
                "ARC-Message-Signature: ",
                "ARC-Authentication-Results: i=1; ",
            ] {
                assert!(text.contains(f), "{f} in {text}");
            }
        }
        Ok(Sealed::Skipped(_)) | Err(sign::SignError::Sign(_)) => {}
        Err(e) => panic!("{e}"),
    }
}
