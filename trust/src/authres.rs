//! The Authentication-Results header (RFC 8601): its text from the results
//! of trust::verify, the one-line log summary, and the streaming filter
//! that removes such headers arriving from outside that claim our
//! authserv-id.
//!
//! Owns the header's shape: `Authentication-Results: AUTHSERV-ID;` then one
//! folded line per method (`spf`, each `dkim`, `dmarc`, `arc`, in that
//! order), `; none` when nothing was checked; property values quoted when
//! they are not tokens, comments stripped of what would end them. Does not
//! own the results (verify.rs) or where the header goes (the queue file's
//! 'H' trailer record, prepended at delivery: common::spool).
//!
//! Standards: RFC 8601 2.2 (syntax), 2.5 (authserv-id), 2.7 (result
//! values), 5 (removal of headers claiming our authserv-id); RFC 5322 2.2
//! (field names), 3.2.2 (CFWS) and 3.2.4 (quoted strings).
//!
//! Security: `ForgedFilter` reads network input: a line's start is held
//! back at most MAX_NAME bytes, an Authentication-Results field at most
//! MAX_FIELD bytes (past that it is judged on what it has: the authserv-id
//! comes first); everything else passes as it comes.

/// Longest field name looked at.
const MAX_NAME: usize = 128;
/// Longest Authentication-Results field held back to find its authserv-id.
pub const MAX_FIELD: usize = 8192;

/// One SPF result (RFC 8601 2.7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spf {
    /// pass, fail, softfail, neutral, none, temperror, permerror.
    pub result: &'static str,
    /// The identity checked: `smtp.mailfrom` (the MAIL FROM address), or
    /// `smtp.helo` (the HELO name) for the null sender.
    pub property: &'static str,
    pub identity: String,
}

/// One DKIM signature's result (RFC 8601 2.7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dkim {
    /// pass, fail, neutral, policy, temperror, permerror.
    pub result: &'static str,
    /// Why it did not pass (a comment).
    pub reason: Option<String>,
    pub domain: String,
    pub selector: String,
    /// The first 8 characters of the signature's base64 (RFC 6008).
    pub b: String,
}

/// The DMARC result (RFC 7489 11.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dmarc {
    /// pass, fail, none, temperror, permerror.
    pub result: &'static str,
    /// The RFC 5322.From domain.
    pub from: String,
    /// The policy published: none, quarantine, reject ("" when none was).
    pub policy: &'static str,
}

/// What was checked of one message; None: that check was not made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Results {
    pub spf: Option<Spf>,
    /// Each signature verified; empty: the message had none (`dkim=none`).
    pub dkim: Option<Vec<Dkim>>,
    /// Signatures past the bound, not verified.
    pub dkim_skipped: usize,
    /// Why DKIM (and ARC) was not checked, when it was meant to be.
    pub dkim_unchecked: Option<String>,
    pub dmarc: Option<Dmarc>,
    /// pass, fail, none (RFC 8617 4.4).
    pub arc: Option<&'static str>,
}

/// The whole header field, folded, with its CRLF.
pub fn header(authserv_id: &str, r: &Results) -> String {
    let mut methods: Vec<String> = Vec::new();
    if let Some(s) = &r.spf {
        methods.push(format!(
            "spf={} {}={}",
            s.result,
            s.property,
            pvalue(&s.identity)
        ));
    }
    if let Some(why) = &r.dkim_unchecked {
        methods.push(format!("dkim=none ({})", comment(why)));
    } else if let Some(list) = &r.dkim {
        if list.is_empty() {
            methods.push("dkim=none".into());
        }
        for d in list {
            let mut m = format!("dkim={}", d.result);
            if let Some(why) = &d.reason {
                m.push_str(&format!(" ({})", comment(why)));
            }
            m.push_str(&format!(
                " header.d={} header.s={}",
                pvalue(&d.domain),
                pvalue(&d.selector)
            ));
            if !d.b.is_empty() {
                m.push_str(&format!(" header.b={}", pvalue(&d.b)));
            }
            methods.push(m);
        }
        if r.dkim_skipped > 0 {
            methods.push(format!(
                "dkim=neutral ({} more signatures not verified)",
                r.dkim_skipped
            ));
        }
    }
    if let Some(d) = &r.dmarc {
        let mut m = format!("dmarc={}", d.result);
        if !d.policy.is_empty() {
            m.push_str(&format!(" (p={})", d.policy));
        }
        if !d.from.is_empty() {
            m.push_str(&format!(" header.from={}", pvalue(&d.from)));
        }
        methods.push(m);
    }
    if let Some(a) = r.arc {
        methods.push(format!("arc={a}"));
    }
    let mut h = format!("Authentication-Results: {}", pvalue(authserv_id));
    if methods.is_empty() {
        h.push_str("; none");
    }
    for m in methods {
        h.push_str(";\r\n\t");
        h.push_str(&m);
    }
    h.push_str("\r\n");
    h
}

/// The log line's text (OpenDMARC's shape): `spf=pass dkim=pass
/// (example.org) dmarc=pass (p=reject) arc=none`.
pub fn summary(r: &Results) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &r.spf {
        parts.push(format!("spf={}", s.result));
    }
    if let Some(why) = &r.dkim_unchecked {
        parts.push(format!("dkim=none ({})", comment(why)));
    } else if let Some(list) = &r.dkim {
        if list.is_empty() {
            parts.push("dkim=none".into());
        }
        for d in list {
            match &d.reason {
                Some(why) => parts.push(format!(
                    "dkim={} ({}: {})",
                    d.result,
                    d.domain,
                    comment(why).trim_end()
                )),
                None => parts.push(format!("dkim={} ({})", d.result, d.domain)),
            }
        }
    }
    if let Some(d) = &r.dmarc {
        if d.policy.is_empty() {
            parts.push(format!("dmarc={}", d.result));
        } else {
            parts.push(format!("dmarc={} (p={})", d.result, d.policy));
        }
    }
    if let Some(a) = r.arc {
        parts.push(format!("arc={a}"));
    }
    parts.join(" ")
}

/// RFC 8601 2.2 pvalue: a token as it is, an address as it is when its
/// parts are, anything else a quoted-string; control characters dropped.
fn pvalue(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    let token = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c))
    };
    let plain = match s.rsplit_once('@') {
        Some((local, domain)) => (local.is_empty() || token(local)) && token(domain),
        None => token(&s),
    };
    if plain {
        return s;
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Comment text: no parentheses, backslashes or control characters.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || "()\\".contains(c) {
                ' '
            } else {
                c
            }
        })
        .take(200)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    Start,
    /// Reading what may be a field name (held in `pending`).
    Name,
    /// In a line that passes through.
    Pass,
    /// In a line of a field held back (`held`).
    Held,
    /// In a line of a field being removed.
    Drop,
    /// The header section has ended: everything passes.
    Body,
}

/// Removes `Authentication-Results:` fields whose authserv-id is ours
/// (compared without regard to case) from a message's header section while
/// it streams; bytes out are the bytes in, in order, less those fields.
#[derive(Debug)]
pub struct ForgedFilter {
    ours: String,
    state: State,
    pending: Vec<u8>,
    /// The name read so far had white space after it (obsolete syntax).
    name_wsp: bool,
    held: Vec<u8>,
    /// The current field is an A-R field being held (`held` non-empty) or
    /// removed.
    in_ar: bool,
    dropping: bool,
    removed: usize,
}

impl ForgedFilter {
    pub fn new(authserv_id: &str) -> ForgedFilter {
        ForgedFilter {
            ours: authserv_id.to_ascii_lowercase(),
            state: State::Start,
            pending: Vec::new(),
            name_wsp: false,
            held: Vec::new(),
            in_ar: false,
            dropping: false,
            removed: 0,
        }
    }

    /// Fields removed so far.
    pub fn removed(&self) -> usize {
        self.removed
    }

    /// Message bytes in; what to pass on appended to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match self.state {
                State::Body => {
                    out.extend_from_slice(&data[i..]);
                    return;
                }
                State::Start => {
                    if b == b' ' || b == b'\t' {
                        // A continuation of the field before.
                        self.state = if self.dropping {
                            State::Drop
                        } else if self.in_ar {
                            State::Held
                        } else {
                            State::Pass
                        };
                        continue;
                    }
                    self.end_field(out);
                    if is_name_byte(b) {
                        self.pending.push(b);
                        self.name_wsp = false;
                        self.state = State::Name;
                        i += 1;
                    } else {
                        self.state = State::Body;
                    }
                }
                State::Name => {
                    i += 1;
                    if b == b':' {
                        let name = self.pending.trim_ascii_end();
                        if name.eq_ignore_ascii_case(b"authentication-results") {
                            self.in_ar = true;
                            self.held.append(&mut self.pending);
                            self.held.push(b':');
                            self.state = State::Held;
                        } else {
                            out.append(&mut self.pending);
                            out.push(b':');
                            self.state = State::Pass;
                        }
                    } else if (b == b' ' || b == b'\t') && self.pending.len() < MAX_NAME {
                        self.name_wsp = true;
                        self.pending.push(b);
                    } else if is_name_byte(b) && !self.name_wsp && self.pending.len() < MAX_NAME {
                        self.pending.push(b);
                    } else {
                        // Too long for a name, or not a field line: passes.
                        out.append(&mut self.pending);
                        out.push(b);
                        self.state = if b == b'\n' {
                            State::Start
                        } else {
                            State::Pass
                        };
                    }
                }
                State::Pass | State::Held | State::Drop => {
                    let rest = &data[i..];
                    let (line, eol) = match rest.iter().position(|&c| c == b'\n') {
                        Some(p) => (&rest[..=p], true),
                        None => (rest, false),
                    };
                    match self.state {
                        State::Pass => out.extend_from_slice(line),
                        State::Held => {
                            self.held.extend_from_slice(line);
                            if self.held.len() > MAX_FIELD {
                                // Judged on its start; the rest follows it.
                                if self.claims_ours() {
                                    self.held.clear();
                                    self.dropping = true;
                                    self.removed += 1;
                                    self.state = State::Drop;
                                } else {
                                    out.append(&mut self.held);
                                    self.state = State::Pass;
                                }
                                self.in_ar = false;
                            }
                        }
                        _ => {}
                    }
                    i += line.len();
                    if eol {
                        self.state = State::Start;
                    }
                }
            }
        }
    }

    /// The message is complete: a field held to its end is judged.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.end_field(out);
        out.append(&mut self.pending);
    }

    /// The field before ends: a held A-R field goes out, or not.
    fn end_field(&mut self, out: &mut Vec<u8>) {
        if self.in_ar {
            if self.claims_ours() {
                self.removed += 1;
                self.held.clear();
            } else {
                out.append(&mut self.held);
            }
        }
        self.in_ar = false;
        self.dropping = false;
    }

    /// Does the held field's authserv-id equal ours?
    fn claims_ours(&self) -> bool {
        let value = match self.held.iter().position(|&c| c == b':') {
            Some(p) => &self.held[p + 1..],
            None => return false,
        };
        authserv_id(value).is_some_and(|id| id.eq_ignore_ascii_case(self.ours.as_bytes()))
    }
}

/// The authserv-id at the start of an Authentication-Results value (after
/// CFWS): a token up to `;`, white space or a comment, or a quoted-string's
/// content.
pub fn authserv_id(v: &[u8]) -> Option<Vec<u8>> {
    let mut i = skip_cfws(v, 0);
    if v.get(i) == Some(&b'"') {
        let mut s = Vec::new();
        i += 1;
        while let Some(&c) = v.get(i) {
            match c {
                b'"' => return Some(s),
                b'\\' => {
                    s.extend(v.get(i + 1));
                    i += 2;
                }
                b'\r' | b'\n' => i += 1,
                _ => {
                    s.push(c);
                    i += 1;
                }
            }
        }
        return None;
    }
    let start = i;
    while let Some(&c) = v.get(i) {
        if matches!(c, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'(') {
            break;
        }
        i += 1;
    }
    (i > start).then(|| v[start..i].to_vec())
}

/// RFC 5322 3.2.2: white space, line breaks and (nested) comments.
fn skip_cfws(v: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(&c) = v.get(i) {
        match c {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => return i,
        }
        i += 1;
    }
    i
}

/// RFC 5322 2.2: ftext, printable US-ASCII but the colon.
fn is_name_byte(b: u8) -> bool {
    (33..=126).contains(&b) && b != b':'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(msg: &str, split: usize) -> (String, usize) {
        let mut f = ForgedFilter::new("MX.Example.NET");
        let mut out = Vec::new();
        if split == 0 {
            f.feed(msg.as_bytes(), &mut out);
        } else {
            for c in msg.as_bytes().chunks(split) {
                f.feed(c, &mut out);
            }
        }
        f.finish(&mut out);
        (String::from_utf8(out).unwrap(), f.removed())
    }

    fn all_splits(msg: &str, want: &str, removed: usize) {
        for split in [0, 1, 2, 3, 7, 64] {
            assert_eq!(
                filter(msg, split),
                (want.to_string(), removed),
                "{msg:?} in pieces of {split}"
            );
        }
    }

    #[test]
    fn ours_are_removed_foreign_ones_kept() {
        all_splits(
            "Received: x\r\nAuthentication-Results: mx.example.net;\r\n\tspf=pass smtp.mailfrom=a@b\r\n\
             authentication-results: (c) other.example; dkim=pass\r\n\
             Authentication-Results : \"mx.example.net\"; none\r\n\
             Authentication-Results:\r\n (comment (nested)) MX.EXAMPLE.NET (x); spf=pass\r\n\
             Subject: hi\r\n\r\nAuthentication-Results: mx.example.net; none\r\n",
            "Received: x\r\nauthentication-results: (c) other.example; dkim=pass\r\n\
             Subject: hi\r\n\r\nAuthentication-Results: mx.example.net; none\r\n",
            3,
        );
        // A prefix of our id, or ours as a prefix, is another id.
        all_splits(
            "Authentication-Results: mx.example.net.evil; none\r\nAuthentication-Results: mx.example; none\r\n\r\n",
            "Authentication-Results: mx.example.net.evil; none\r\nAuthentication-Results: mx.example; none\r\n\r\n",
            0,
        );
        // Last in a message that is all header, without a line end.
        all_splits(
            "To: a\r\nAuthentication-Results: mx.example.net; none",
            "To: a\r\n",
            1,
        );
        // Other lines pass as they are.
        all_splits("nocolon\r\nX: y\r\n", "nocolon\r\nX: y\r\n", 0);
        all_splits("", "", 0);
    }

    #[test]
    fn a_long_field_is_judged_on_its_start() {
        let long = format!(
            "Authentication-Results: mx.example.net;\r\n{}X: y\r\n\r\nbody",
            "\tdkim=pass\r\n".repeat(MAX_FIELD / 8)
        );
        all_splits(&long, "X: y\r\n\r\nbody", 1);
        let long = format!(
            "Authentication-Results: other;\r\n{}X: y\r\n",
            "\tdkim=pass\r\n".repeat(MAX_FIELD / 8)
        );
        all_splits(&long, &long, 0);
    }

    #[test]
    fn the_header_text() {
        let r = Results {
            spf: Some(Spf {
                result: "pass",
                property: "smtp.mailfrom",
                identity: "alice@example.org".into(),
            }),
            dkim: Some(vec![
                Dkim {
                    result: "pass",
                    reason: None,
                    domain: "example.org".into(),
                    selector: "s1".into(),
                    b: "AbCd+/12".into(),
                },
                Dkim {
                    result: "fail",
                    reason: Some("body hash (bh=) mismatch\r\n".into()),
                    domain: "other.example".into(),
                    selector: "sel".into(),
                    b: String::new(),
                },
            ]),
            dkim_skipped: 0,
            dkim_unchecked: None,
            dmarc: Some(Dmarc {
                result: "pass",
                from: "example.org".into(),
                policy: "reject",
            }),
            arc: Some("none"),
        };
        assert_eq!(
            header("mx.example.net", &r),
            "Authentication-Results: mx.example.net;\r\n\
             \tspf=pass smtp.mailfrom=alice@example.org;\r\n\
             \tdkim=pass header.d=example.org header.s=s1 header.b=\"AbCd+/12\";\r\n\
             \tdkim=fail (body hash  bh=  mismatch  ) header.d=other.example header.s=sel;\r\n\
             \tdmarc=pass (p=reject) header.from=example.org;\r\n\
             \tarc=none\r\n"
        );
        assert_eq!(
            summary(&r),
            "spf=pass dkim=pass (example.org) dkim=fail (other.example: body hash  bh=  mismatch) dmarc=pass (p=reject) arc=none"
        );
        assert_eq!(
            header("mx.example.net", &Results::default()),
            "Authentication-Results: mx.example.net; none\r\n"
        );
        let helo = Results {
            spf: Some(Spf {
                result: "softfail",
                property: "smtp.helo",
                identity: "we ird\"".into(),
            }),
            dkim: Some(Vec::new()),
            ..Results::default()
        };
        assert_eq!(
            header("mx", &helo),
            "Authentication-Results: mx;\r\n\tspf=softfail smtp.helo=\"we ird\\\"\";\r\n\tdkim=none\r\n"
        );
        // What the filter reads back is the id written.
        let h = header("mx.example.net", &r);
        let v = h.split_once(':').unwrap().1;
        assert_eq!(authserv_id(v.as_bytes()).unwrap(), b"mx.example.net");
    }
}
