//! SMTP replies: the `Reply` type and its wire encoding.
//!
//! Owns the shape of a reply (code, optional enhanced status code, text lines)
//! and how it is written: single and multiline form, enhanced code on every
//! line. It does not own which reply a situation deserves; that is decided by
//! the command parser (syntax errors) and by smtpd (everything else).
//!
//! Standards: RFC 5321 4.2 (reply syntax, multiline replies), 4.2.1 (reply
//! code classes); RFC 2034 3 (enhanced status code after the reply code, on
//! every line of the reply); RFC 3463 (the enhanced codes).
//!
//! Security: reply text may echo client input (addresses, parameters). When a
//! reply is written or displayed, control characters other than TAB, CR and LF
//! included, become `?`, so a text can never end the reply line early or
//! inject a second reply.
//!
//! Diagnostics: `Display` renders the whole reply on one line for logs.

use std::fmt;

/// One SMTP reply, possibly multiline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code (RFC 5321 4.2), 200..=599 in practice.
    pub code: u16,
    /// Enhanced status code such as `"2.1.0"` (RFC 3463), or None.
    pub enhanced: Option<&'static str>,
    /// Text lines; each becomes one line on the wire. Empty means one line
    /// with no text.
    pub lines: Vec<String>,
}

impl Reply {
    /// A single-line reply.
    pub fn new(code: u16, enhanced: Option<&'static str>, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced,
            lines: vec![text.into()],
        }
    }

    /// A multiline reply; `lines` are sent in order, the last one with SP.
    pub fn multi(code: u16, enhanced: Option<&'static str>, lines: Vec<String>) -> Self {
        Self {
            code,
            enhanced,
            lines,
        }
    }

    /// Append the wire form to `out`.
    ///
    /// RFC 5321 4.2: `Reply-code "-" text CRLF` for all lines but the last,
    /// `Reply-code SP text CRLF` for the last. RFC 2034 3: the enhanced code
    /// follows the reply code and a separator on every line.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let code = self.code.to_string();
        let last = self.lines.len().saturating_sub(1);
        let empty = [String::new()];
        let lines: &[String] = if self.lines.is_empty() {
            &empty
        } else {
            &self.lines
        };
        for (i, text) in lines.iter().enumerate() {
            out.extend_from_slice(code.as_bytes());
            // RFC 5321 4.2: "Reply-code [ SP textstring ] CRLF" for the last
            // line, so no SP when there is nothing after the code.
            if i < last {
                out.push(b'-');
            } else if self.enhanced.is_some() || !text.is_empty() {
                out.push(b' ');
            }
            if let Some(enhanced) = self.enhanced {
                push_sanitized(out, enhanced);
                if !text.is_empty() {
                    out.push(b' ');
                }
            }
            push_sanitized(out, text);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    /// RFC 5321 4.2.1: 2yz (completion) and 3yz (intermediate) are positive.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// RFC 5321 4.2.1: 4yz, transient negative completion.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// RFC 5321 4.2.1: 5yz, permanent negative completion.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

/// One line for logs: code, enhanced code, then the text lines joined by SP.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(enhanced) = self.enhanced {
            write!(f, " {}", sanitize(enhanced))?;
        }
        for line in self.lines.iter().filter(|l| !l.is_empty()) {
            write!(f, " {}", sanitize(line))?;
        }
        Ok(())
    }
}

/// Replace control characters (TAB excepted) with `?`.
fn sanitize(text: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\t';
    if text.contains(bad) {
        text.chars()
            .map(|c| if bad(c) { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

fn push_sanitized(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(sanitize(text).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_table() {
        let multi = |code, enh, lines: &[&str]| {
            Reply::multi(code, enh, lines.iter().map(|s| s.to_string()).collect())
        };
        let table: &[(Reply, &[u8])] = &[
            (Reply::new(250, None, "Ok"), b"250 Ok\r\n"),
            (Reply::new(250, Some("2.1.0"), "Ok"), b"250 2.1.0 Ok\r\n"),
            (
                Reply::new(354, None, "End data with <CR><LF>.<CR><LF>"),
                b"354 End data with <CR><LF>.<CR><LF>\r\n",
            ),
            (
                multi(250, None, &["first", "last"]),
                b"250-first\r\n250 last\r\n",
            ),
            (
                multi(250, Some("2.1.0"), &["first", "middle", "last"]),
                b"250-2.1.0 first\r\n250-2.1.0 middle\r\n250 2.1.0 last\r\n",
            ),
            (multi(221, None, &[]), b"221\r\n"),
            (Reply::new(221, None, ""), b"221\r\n"),
            (Reply::new(250, Some("2.0.0"), ""), b"250 2.0.0\r\n"),
            (multi(250, None, &["", "x"]), b"250-\r\n250 x\r\n"),
            (
                Reply::new(556, Some("5.1.10"), "no mail"),
                b"556 5.1.10 no mail\r\n",
            ),
            // Security: an echoed CR LF cannot start a second reply.
            (
                Reply::new(550, Some("5.1.1"), "<a\r\n250 ok>: rejected"),
                b"550 5.1.1 <a??250 ok>: rejected\r\n",
            ),
            (Reply::new(250, None, "tab\tkept"), b"250 tab\tkept\r\n"),
            (
                Reply::new(250, None, "caf\u{e9}"),
                "250 caf\u{e9}\r\n".as_bytes(),
            ),
        ];
        for (reply, want) in table {
            assert_eq!(
                reply.to_bytes(),
                *want,
                "{reply:?} gave {:?}",
                String::from_utf8_lossy(&reply.to_bytes())
            );
        }
    }

    #[test]
    fn write_to_appends() {
        let mut out = b"x".to_vec();
        Reply::new(250, None, "Ok").write_to(&mut out);
        Reply::new(250, None, "Ok").write_to(&mut out);
        assert_eq!(out, b"x250 Ok\r\n250 Ok\r\n");
    }

    #[test]
    fn display_is_one_line() {
        let table = [
            (Reply::new(250, Some("2.1.0"), "Ok"), "250 2.1.0 Ok"),
            (Reply::new(250, None, "Ok"), "250 Ok"),
            (
                Reply::multi(250, None, vec!["mx".into(), "PIPELINING".into()]),
                "250 mx PIPELINING",
            ),
            (Reply::new(500, Some("5.5.2"), "a\r\nb"), "500 5.5.2 a??b"),
            (Reply::multi(221, None, vec![]), "221"),
        ];
        for (reply, want) in table {
            assert_eq!(reply.to_string(), want);
        }
    }

    #[test]
    fn classes() {
        let table = [
            (220, true, false, false),
            (250, true, false, false),
            (354, true, false, false),
            (421, false, true, false),
            (451, false, true, false),
            (500, false, false, true),
            (554, false, false, true),
        ];
        for (code, positive, transient, permanent) in table {
            let r = Reply::new(code, None, "x");
            assert_eq!(r.is_positive(), positive, "{code}");
            assert_eq!(r.is_transient(), transient, "{code}");
            assert_eq!(r.is_permanent(), permanent, "{code}");
        }
    }
}
