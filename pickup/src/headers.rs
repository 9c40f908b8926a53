//! The header section of a locally submitted message: where it ends, its
//! fields, and the addresses of To/Cc/Bcc for `sendmail -t`.
//!
//! Owns finding the header section (as smtpd/src/headers.rs does: lines
//! are fields, `name:` with a printable ASCII name without a colon, or
//! continuations starting with a space or tab; the first other line ends
//! the section) and reading address lists. Does not own which fields are
//! added or removed (lib.rs).
//!
//! Standards: RFC 5322 2.2 (fields), 2.2.3 (folding), 3.4 (address lists:
//! display names, angle addresses, groups, comments, quoted strings), 3.6.3
//! (To, Cc, Bcc), 3.6.6 (Resent-*).
//!
//! Security: the input is a local user's; everything is bounded by the
//! caller's header limit, and address parsing never fails (what does not
//! parse yields no address).

/// One header field: its name and its raw lines (with line endings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub raw: Vec<u8>,
}

impl Field {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The value, unfolded (line endings removed), lossy UTF-8.
    pub fn value(&self) -> String {
        let s = String::from_utf8_lossy(&self.raw);
        let v = s.split_once(':').map_or("", |(_, v)| v);
        v.replace(['\r', '\n'], "")
    }
}

/// Is `line` (without its line ending) the start of a field? Its name then.
fn field_name(line: &[u8]) -> Option<&str> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return None;
    }
    std::str::from_utf8(name).ok()
}

/// Where the header section of `buf` ends (the offset of the first line
/// that is no field or continuation), or None when that needs more bytes.
/// `complete`: no more bytes will come (then the whole buffer may be header).
pub fn header_end(buf: &[u8], complete: bool) -> Option<usize> {
    let mut at = 0;
    let mut first = true;
    while at < buf.len() {
        let Some(nl) = buf[at..].iter().position(|&b| b == b'\n') else {
            // A last line without its end: decided once nothing more comes.
            if !complete {
                return None;
            }
            let line = &buf[at..];
            let cont = !first && matches!(line.first(), Some(b' ' | b'\t'));
            return Some(if cont || field_name(line).is_some() {
                buf.len()
            } else {
                at
            });
        };
        let line = &buf[at..at + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let cont = !first && matches!(line.first(), Some(b' ' | b'\t'));
        if !cont && field_name(line).is_none() {
            return Some(at);
        }
        first = false;
        at += nl + 1;
    }
    complete.then_some(buf.len())
}

/// The fields of a header section (`buf` ends where `header_end` said).
pub fn fields(buf: &[u8]) -> Vec<Field> {
    let mut v: Vec<Field> = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let end = buf[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |n| at + n + 1);
        let line = &buf[at..end];
        match (line.first(), v.last_mut()) {
            (Some(b' ' | b'\t'), Some(f)) => f.raw.extend_from_slice(line),
            _ => {
                if let Some(name) = field_name(line) {
                    v.push(Field {
                        name: name.to_string(),
                        raw: line.to_vec(),
                    });
                }
            }
        }
        at = end;
    }
    v
}

/// The addresses of an address list (RFC 5322 3.4): each mailbox's
/// addr-spec, group members included; display names and comments dropped.
pub fn addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    // The current element outside angle brackets and comments, and the
    // last angle address in it.
    let mut plain = String::new();
    let mut angle: Option<String> = None;
    let mut in_angle = false;
    let mut quoted = false;
    let mut comment = 0usize;
    let mut chars = value.chars();
    let mut finish = |plain: &mut String, angle: &mut Option<String>| {
        let a = match angle.take() {
            Some(a) => a,
            None => std::mem::take(plain),
        };
        plain.clear();
        // A source route (@a,@b:user@host) is dropped (RFC 5322 4.4).
        let a = match a.rsplit_once(':') {
            Some((route, rest)) if route.starts_with('@') => rest.to_string(),
            _ => a,
        };
        let a = without_spaces(&a);
        if !a.is_empty() {
            out.push(a);
        }
    };
    while let Some(c) = chars.next() {
        if comment > 0 {
            match c {
                '\\' => {
                    chars.next();
                }
                '(' => comment += 1,
                ')' => comment -= 1,
                _ => {}
            }
            continue;
        }
        if quoted {
            let target = if in_angle {
                angle.get_or_insert_with(String::new)
            } else {
                &mut plain
            };
            match c {
                '\\' => {
                    target.push('\\');
                    if let Some(n) = chars.next() {
                        target.push(n);
                    }
                }
                '"' => {
                    quoted = false;
                    target.push('"');
                }
                _ => target.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                if in_angle {
                    angle.get_or_insert_with(String::new).push('"');
                } else {
                    plain.push('"');
                }
            }
            '(' => comment = 1,
            '<' if !in_angle => {
                in_angle = true;
                angle = Some(String::new());
            }
            '>' if in_angle => in_angle = false,
            ',' if !in_angle => finish(&mut plain, &mut angle),
            // A group's display name ends at its colon; its end is ';'.
            ':' if !in_angle && angle.is_none() && !plain.contains('@') => plain.clear(),
            ';' if !in_angle => finish(&mut plain, &mut angle),
            _ if in_angle => angle.get_or_insert_with(String::new).push(c),
            _ => plain.push(c),
        }
    }
    finish(&mut plain, &mut angle);
    // A display name without an angle address ("Fred Bloggs" alone) is
    // no address; an addr-spec has no spaces between its words.
    out.retain(|a| !a.starts_with('"') || a.contains('@'));
    out
}

/// An addr-spec without the white space between its words (kept inside
/// quoted strings).
fn without_spaces(a: &str) -> String {
    let mut out = String::with_capacity(a.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in a.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c.is_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_section_ends() {
        assert_eq!(header_end(b"A: 1\r\nB: 2\r\n\r\nbody", false), Some(12));
        assert_eq!(
            header_end(b"A: 1\r\n  more\r\nbody line\r\n", false),
            Some(14)
        );
        assert_eq!(header_end(b"A: 1\r\nB: 2", false), None);
        assert_eq!(header_end(b"A: 1\r\nB: 2", true), Some(10));
        assert_eq!(header_end(b"\r\nbody", false), Some(0));
        assert_eq!(header_end(b" x\r\n", false), Some(0));
        assert_eq!(header_end(b"", true), Some(0));
    }

    #[test]
    fn fields_with_continuations() {
        let f = fields(b"To: a@b,\r\n  c@d\r\nSubject: s\r\n");
        assert_eq!(f.len(), 2);
        assert!(f[0].is("to"));
        assert_eq!(f[0].value(), " a@b,  c@d");
        assert_eq!(addresses(&f[0].value()), ["a@b", "c@d"]);
    }

    #[test]
    fn address_lists() {
        let cases: &[(&str, &[&str])] = &[
            ("demo@example.test", &["demo@example.test"]),
            ("Demo User <demo@example.test>", &["demo@example.test"]),
            (
                "\"Doe, John\" <john@x.example>, jane@y.example (Jane)",
                &["john@x.example", "jane@y.example"],
            ),
            ("undisclosed-recipients:;", &[]),
            ("friends: a@x, B <b@y>; c@z", &["a@x", "b@y", "c@z"]),
            ("<@relay.example:user@host.example>", &["user@host.example"]),
            (
                "\"quoted local\"@x.example",
                &["\"quoted local\"@x.example"],
            ),
            ("root", &["root"]),
            ("", &[]),
            ("(only a comment)", &[]),
            ("a@b (c, d), <e@f", &["a@b", "e@f"]),
        ];
        for (input, want) in cases {
            assert_eq!(&addresses(input), want, "{input}");
        }
    }
}
