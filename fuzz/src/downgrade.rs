//! The 7-bit downgrade harness: posthorn-smtp's conversion of a message with
//! 8-bit content for a server without 8BITMIME.
//!
//! Owns what the `downgrade` target feeds and the properties it checks
//! beyond "does not panic": the bytes as a whole message, and the same
//! bytes as the body of a one-part text/plain message labelled 8bit.
//! Whatever is converted is 7-bit with lines of at most 998 octets, at most
//! a fixed multiple of the input long, and converting it again changes
//! nothing. The text body can always be converted, and its
//! quoted-printable decodes to the bytes given (or, when it needed no
//! encoding, it is kept as it was and relabelled 7bit). Does not own the
//! conversion (posthorn_smtp::downgrade).
//!
//! Standards: RFC 2045 6.7 (quoted-printable), RFC 5322 2.1.1 (998
//! octets), RFC 6152 3.
//!
//! Security: the message is attacker-shaped; a panic, an abort or a hang
//! is a finding.
//!
//! Diagnostics: a failed property panics with what differed.

use posthorn_smtp::downgrade::{downgrade as convert, MAX_LINE, MAX_MESSAGE};

/// The head of the one-part text message the bytes are the body of.
const TEXT_HEAD: &[u8] = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
    Content-Transfer-Encoding: 8bit\r\n\r\n";

/// posthorn_smtp::downgrade::downgrade on the bytes as a message and as a
/// text body.
pub fn downgrade(data: &[u8]) {
    if let Ok(out) = convert(data) {
        promises(data, &out);
        let again = convert(&out).expect("a converted message converts again");
        assert!(
            again == out,
            "converting again changed it:\n{}\n----\n{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&again)
        );
    }

    let mut msg = TEXT_HEAD.to_vec();
    msg.extend_from_slice(data);
    if msg.len() > MAX_MESSAGE {
        return;
    }
    let out = convert(&msg).expect("a text body can always be converted");
    promises(&msg, &out);
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the header block is kept")
        + 4;
    let (head, body) = out.split_at(end);
    if head.ends_with(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n") {
        let decoded = quoted_printable::decode(body, quoted_printable::ParseMode::Strict)
            .expect("the quoted-printable is well formed");
        assert_eq!(decoded, data, "quoted-printable decodes to the body");
    } else {
        assert!(head.ends_with(b"Content-Transfer-Encoding: 7bit\r\n\r\n"));
        assert_eq!(body, data, "a body that needs no encoding is kept");
    }
}

/// 7-bit, lines of at most MAX_LINE octets, linear in the input.
fn promises(input: &[u8], out: &[u8]) {
    assert!(out.is_ascii(), "8-bit byte in the result");
    for line in out.split(|&b| b == b'\n') {
        let len = line.len() - usize::from(line.ends_with(b"\r"));
        assert!(len <= MAX_LINE, "a line of {len} octets");
    }
    // Quoted-printable is at most about 3.2 times its input; a header
    // field added to a tiny part may be several times that part.
    assert!(
        out.len() <= 16 * input.len() + 256,
        "{} octets from {}",
        out.len(),
        input.len()
    );
}
