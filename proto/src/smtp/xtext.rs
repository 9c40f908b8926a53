//! xtext (RFC 3461 4): the encoding of DSN and AUTH= parameter values.
//!
//! Owns the grammar check, decoding (for the fields of a delivery status
//! notification, RFC 3464 2.2.1 and 2.3.1, which carry the values without
//! their xtext encoding) and encoding (for values passed on to the next
//! hop). Does not own which parameter may carry what (command.rs).
//!
//! Standards: RFC 3461 4 (xtext), RFC 6533 3 (UTF-8 in xtext values of
//! SMTPUTF8 transactions, accepted as it is).
//!
//! Security: decoding never fails on bytes (bad input is None) and never
//! allocates more than its input; `decode_text` refuses values that decode
//! to control characters, so a value put into a header field cannot end
//! the field (CR, LF) or carry terminal escapes.

/// RFC 3461 4: `xtext = *( xchar / hexchar )`, `xchar` = %d33-126 except
/// "+" and "="; `hexchar = "+" 2HEXDIG`. Lower-case hex is tolerated, and
/// UTF-8 is accepted as RFC 6533 3 allows in SMTPUTF8 transactions.
pub fn is_xtext(s: &str) -> bool {
    decode(s).is_some()
}

/// The bytes an xtext value stands for; None when it is not xtext.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
                continue;
            }
            b'=' => return None,
            c @ (33..=126 | 0x80..) => out.push(c),
            _ => return None,
        }
        i += 1;
    }
    Some(out)
}

/// The text an xtext value stands for, when it is UTF-8 without control
/// characters (what may go into a header field); None otherwise.
pub fn decode_text(s: &str) -> Option<String> {
    let text = String::from_utf8(decode(s)?).ok()?;
    (!text.chars().any(char::is_control)).then_some(text)
}

/// `s` as xtext: "+", "=", and bytes outside %d33-126 as "+" and two
/// upper-case hex digits (RFC 3461 4).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_encode() {
        assert_eq!(decode("QQ314159+2Bx").as_deref(), Some(&b"QQ314159+x"[..]));
        assert_eq!(decode("u+40d.org").as_deref(), Some(&b"u@d.org"[..]));
        assert_eq!(decode("").as_deref(), Some(&b""[..]));
        assert_eq!(
            decode("a+2b").as_deref(),
            Some(&b"a+"[..]),
            "lower-case hex"
        );
        for bad in ["a=b", "a+zz", "a+4", "+", "a b", "a\tb"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        assert_eq!(encode("a+b=c d@e"), "a+2Bb+3Dc+20d@e");
        assert_eq!(encode("caf\u{e9}"), "caf+C3+A9");
        for s in ["plain", "a+b=c d", "x\r\ny", "caf\u{e9}"] {
            assert_eq!(decode(&encode(s)).as_deref(), Some(s.as_bytes()), "{s:?}");
        }
    }

    #[test]
    fn decode_text_refuses_controls() {
        assert_eq!(decode_text("QQ+2B1").as_deref(), Some("QQ+1"));
        assert_eq!(decode_text("a+0D+0AAction:+20x"), None);
        assert_eq!(decode_text("a+00"), None);
        assert_eq!(decode_text("a+1B[2J"), None);
        assert_eq!(decode_text("+FF"), None, "not UTF-8");
        assert_eq!(decode_text("j\u{f6}rg").as_deref(), Some("j\u{f6}rg"));
    }
}
