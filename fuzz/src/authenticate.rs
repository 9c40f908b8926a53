//! The `authenticate` target: a message as smtpd's authentication checks
//! see it. mail-auth's parser (`AuthenticatedMessage::parse`: headers,
//! DKIM-Signature, ARC sets, the body hashes) and the filter that removes
//! Authentication-Results headers claiming our authserv-id
//! (`posthorn_trust::authres::ForgedFilter`), fed in pieces.

use mail_auth::AuthenticatedMessage;
use posthorn_trust::authres::{authserv_id, ForgedFilter};

use crate::chunks;

/// The first byte picks the split; the rest is the message.
pub fn authenticate(data: &[u8]) {
    let [seed, msg @ ..] = data else {
        return;
    };
    if let Some(m) = AuthenticatedMessage::parse(msg) {
        assert!(m.body_offset as usize <= msg.len());
    }
    let whole = filter(&[msg]);
    let split = filter(&chunks(*seed, msg));
    assert_eq!(whole, split, "the filter depends on how input is split");
    assert!(whole.0.len() <= msg.len());
    // Only whole Authentication-Results fields go: with none in the input,
    // the output is the input.
    let lower = msg.to_ascii_lowercase();
    if !lower
        .windows(b"authentication-results".len())
        .any(|w| w == b"authentication-results")
    {
        assert_eq!(whole.0, msg, "bytes changed without an A-R field");
        assert_eq!(whole.1, 0);
    }
    // What is left claims our id nowhere in the header section the filter
    // saw: filtering again removes nothing.
    let again = filter(&[&whole.0]);
    assert_eq!(again.1, 0, "a field claiming our id survived");
    assert_eq!(again.0, whole.0);
    let _ = authserv_id(msg);
}

fn filter(pieces: &[&[u8]]) -> (Vec<u8>, usize) {
    let mut f = ForgedFilter::new("mx.example.net");
    let mut out = Vec::new();
    for p in pieces {
        f.feed(p, &mut out);
    }
    f.finish(&mut out);
    (out, f.removed())
}
