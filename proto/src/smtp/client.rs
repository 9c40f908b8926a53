//! The client half of SMTP, without I/O: reading the server's replies,
//! understanding its EHLO, writing commands, and the DATA transparency.
//!
//! Owns `ReplyReader` (bytes from the server in, whole replies out: every
//! line of a multiline reply with the same code, the last one with a space,
//! RFC 5321 4.2; the enhanced status code of RFC 2034 taken from the first
//! line), `Capabilities` (what an EHLO reply offers: SIZE, PIPELINING,
//! STARTTLS, 8BITMIME, SMTPUTF8, CHUNKING, DSN, ENHANCEDSTATUSCODES, AUTH
//! mechanisms), the command writers, and `DotStuffer` (RFC 5321 4.5.2: a
//! line that begins with a dot gets another; the message ends with CRLF and
//! the `.` line, 4.1.1.4). Does not own the conversation (which command
//! when: the outbound client's) or the server half (the rest of
//! proto::smtp).
//!
//! Standards: RFC 5321 (4.1.1 commands, 4.2 replies, 4.5.2 transparency,
//! 4.5.3.1.5 reply line length), RFC 1870 (SIZE), RFC 2034 / RFC 3463
//! (enhanced codes), RFC 2920 (PIPELINING), RFC 3030 (CHUNKING: BDAT),
//! RFC 3207 (STARTTLS), RFC 3461 (DSN parameters), RFC 4954 (AUTH), RFC
//! 6152 (8BITMIME), RFC 6531 (SMTPUTF8).
//!
//! Security: replies come from another server and are untrusted: a line
//! longer than MAX_REPLY_LINE or a reply of more than MAX_REPLY_LINES lines
//! is an error (the caller drops the connection); so is a line that is not
//! `DDD`, `DDD-text` or `DDD text`, or a continuation with another code.
//! Text is kept as UTF-8 with invalid bytes replaced; control characters
//! other than TAB become `?` when it is displayed (Reply's rule), so a log
//! line cannot be split by a peer. Command arguments are the caller's
//! (addresses from the queue file, already checked by smtpd).
//!
//! Diagnostics: `ReplyError` says what was wrong; `ServerReply` displays as
//! one line, as Postfix logs a remote reply (`550 5.1.1 <a@b>: user unknown`).

use std::fmt;

/// RFC 5321 4.5.3.1.5 allows 512 octets per reply line; servers that send
/// more exist, so up to this many are taken (CRLF included).
pub const MAX_REPLY_LINE: usize = 4096;
/// The most lines one reply may have (EHLO replies have about 20).
pub const MAX_REPLY_LINES: usize = 128;

/// One reply of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    pub code: u16,
    /// The RFC 3463 code at the start of the first line's text (`5.1.1`),
    /// when there is one.
    pub enhanced: Option<String>,
    /// The text of each line (after the code and separator; the enhanced
    /// code still in it).
    pub lines: Vec<String>,
}

impl ServerReply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx (DATA's 354, AUTH's 334).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx (and anything outside 2xx-4xx, which no server may send).
    pub fn is_permanent(&self) -> bool {
        !(200..500).contains(&self.code)
    }

    /// The enhanced code, or the one RFC 3463 implies for the class
    /// (`2.0.0`, `4.0.0`, `5.0.0`), as Postfix reports a reply without one.
    pub fn dsn(&self) -> String {
        match &self.enhanced {
            Some(e) => e.clone(),
            None => format!("{}.0.0", (self.code / 100).clamp(2, 5)),
        }
    }
}

/// The whole reply on one line (lines joined by a space), for logs.
impl fmt::Display for ServerReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        for l in self.lines.iter().filter(|l| !l.is_empty()) {
            f.write_str(" ")?;
            for c in l.chars() {
                let c = if c.is_control() && c != '\t' { '?' } else { c };
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Why the server's output is not SMTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line longer than {MAX_REPLY_LINE} octets")]
    LineTooLong,
    #[error("reply of more than {MAX_REPLY_LINES} lines")]
    TooManyLines,
    #[error("malformed reply line: {0:?}")]
    Malformed(String),
    #[error("reply code changed within a multiline reply: {first} then {then}")]
    CodeChanged { first: u16, then: u16 },
}

/// Cuts the server's bytes into replies.
#[derive(Debug, Default)]
pub struct ReplyReader {
    buf: Vec<u8>,
    /// Lines of the reply being read: its code and texts.
    partial: Option<(u16, Vec<String>)>,
    failed: bool,
}

impl ReplyReader {
    pub fn new() -> ReplyReader {
        ReplyReader::default()
    }

    /// Bytes from the server.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole reply, if the bytes fed hold one. After an error the
    /// reader gives nothing more (the connection is to be dropped).
    pub fn next_reply(&mut self) -> Option<Result<ServerReply, ReplyError>> {
        if self.failed {
            return None;
        }
        loop {
            let Some(end) = self.buf.iter().position(|&b| b == b'\n') else {
                if self.buf.len() >= MAX_REPLY_LINE {
                    return Some(self.fail(ReplyError::LineTooLong));
                }
                return None;
            };
            if end + 1 > MAX_REPLY_LINE {
                return Some(self.fail(ReplyError::LineTooLong));
            }
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let line = line
                .strip_suffix(b"\n")
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .unwrap_or(&line);
            let (code, more, text) = match split_line(line) {
                Some(x) => x,
                None => {
                    let shown = String::from_utf8_lossy(line).into_owned();
                    return Some(self.fail(ReplyError::Malformed(shown)));
                }
            };
            let (first, mut texts) = self.partial.take().unwrap_or((code, Vec::new()));
            if first != code {
                return Some(self.fail(ReplyError::CodeChanged { first, then: code }));
            }
            if texts.len() >= MAX_REPLY_LINES {
                return Some(self.fail(ReplyError::TooManyLines));
            }
            texts.push(text);
            if more {
                self.partial = Some((code, texts));
                continue;
            }
            let enhanced = texts.first().and_then(|t| enhanced_code(t, code));
            return Some(Ok(ServerReply {
                code,
                enhanced,
                lines: texts,
            }));
        }
    }

    fn fail(&mut self, e: ReplyError) -> Result<ServerReply, ReplyError> {
        self.failed = true;
        self.buf.clear();
        Err(e)
    }

    /// Bytes received after the last whole reply (a server that talks out
    /// of turn, or what must not be read in the clear before TLS).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// `DDD`, `DDD text` or `DDD-text`: (code, more lines follow, text).
fn split_line(line: &[u8]) -> Option<(u16, bool, String)> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let (more, text) = match line.get(3) {
        None => (false, &[][..]),
        Some(b' ') => (false, &line[4..]),
        Some(b'-') => (true, &line[4..]),
        Some(_) => return None,
    };
    Some((code, more, String::from_utf8_lossy(text).into_owned()))
}

/// RFC 3463 `class.subject.detail` at the start of `text`, its class the
/// reply code's (RFC 2034 3).
fn enhanced_code(text: &str, code: u16) -> Option<String> {
    let word = text.split(' ').next()?;
    let mut parts = word.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let num = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    let ok = parts.next().is_none()
        && class.len() == 1
        && class.as_bytes()[0] == b'0' + (code / 100) as u8
        && matches!(class, "2" | "4" | "5")
        && num(subject, 3)
        && num(detail, 3);
    ok.then(|| word.to_string())
}

/// What an EHLO reply offers (its lines after the first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RFC 1870: Some(limit) when SIZE is offered; 0 means no fixed limit.
    pub size: Option<u64>,
    pub pipelining: bool,
    pub starttls: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub chunking: bool,
    pub dsn: bool,
    pub enhanced_status_codes: bool,
    /// AUTH mechanisms, upper case.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Read an EHLO reply (HELO's offers nothing).
    pub fn from_ehlo(reply: &ServerReply) -> Capabilities {
        let mut c = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "SIZE" => {
                    c.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                "PIPELINING" => c.pipelining = true,
                "STARTTLS" => c.starttls = true,
                "8BITMIME" => c.eight_bit_mime = true,
                "SMTPUTF8" => c.smtputf8 = true,
                "CHUNKING" => c.chunking = true,
                "DSN" => c.dsn = true,
                "ENHANCEDSTATUSCODES" => c.enhanced_status_codes = true,
                "AUTH" => c.auth = words.map(str::to_ascii_uppercase).collect(),
                _ => {}
            }
        }
        c
    }

    /// RFC 1870 5: would the server refuse a message of `bytes` octets?
    pub fn refuses_size(&self, bytes: u64) -> bool {
        matches!(self.size, Some(limit) if limit > 0 && bytes > limit)
    }
}

/// MAIL FROM's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailOptions {
    /// RFC 1870 SIZE=.
    pub size: Option<u64>,
    /// RFC 6152 BODY=8BITMIME.
    pub eight_bit: bool,
    /// RFC 6531 SMTPUTF8.
    pub smtputf8: bool,
    /// RFC 3461 RET= (FULL or HDRS) and ENVID= (already xtext).
    pub ret: Option<String>,
    pub envid: Option<String>,
}

/// `EHLO name` (or HELO, for servers that do not know EHLO).
pub fn write_hello(out: &mut Vec<u8>, ehlo: bool, name: &str) {
    out.extend_from_slice(if ehlo { b"EHLO " } else { b"HELO " });
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `MAIL FROM:<sender>` with its parameters.
pub fn write_mail(out: &mut Vec<u8>, sender: &str, o: &MailOptions) {
    out.extend_from_slice(b"MAIL FROM:<");
    out.extend_from_slice(sender.as_bytes());
    out.push(b'>');
    if let Some(size) = o.size {
        out.extend_from_slice(format!(" SIZE={size}").as_bytes());
    }
    if o.eight_bit {
        out.extend_from_slice(b" BODY=8BITMIME");
    }
    if o.smtputf8 {
        out.extend_from_slice(b" SMTPUTF8");
    }
    if let Some(r) = &o.ret {
        out.extend_from_slice(format!(" RET={r}").as_bytes());
    }
    if let Some(e) = &o.envid {
        out.extend_from_slice(format!(" ENVID={e}").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// `RCPT TO:<recipient>` with RFC 3461 NOTIFY= and ORCPT= (already in
/// their wire form) when given.
pub fn write_rcpt(out: &mut Vec<u8>, recipient: &str, notify: Option<&str>, orcpt: Option<&str>) {
    out.extend_from_slice(b"RCPT TO:<");
    out.extend_from_slice(recipient.as_bytes());
    out.push(b'>');
    if let Some(n) = notify {
        out.extend_from_slice(format!(" NOTIFY={n}").as_bytes());
    }
    if let Some(o) = orcpt {
        out.extend_from_slice(format!(" ORCPT={o}").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// `BDAT size` or `BDAT size LAST` (RFC 3030 2); the chunk follows.
pub fn write_bdat(out: &mut Vec<u8>, size: u64, last: bool) {
    out.extend_from_slice(format!("BDAT {size}").as_bytes());
    if last {
        out.extend_from_slice(b" LAST");
    }
    out.extend_from_slice(b"\r\n");
}

/// A command without arguments: DATA, RSET, NOOP, QUIT, STARTTLS.
pub fn write_simple(out: &mut Vec<u8>, verb: &str) {
    out.extend_from_slice(verb.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// DATA's transparency, streaming (RFC 5321 4.5.2): a dot at the start of
/// a line is doubled; `finish` ends the last line if it was not, and adds
/// the `.` line (4.1.1.4).
#[derive(Debug, Clone)]
pub struct DotStuffer {
    at_line_start: bool,
    empty: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            empty: true,
        }
    }
}

impl DotStuffer {
    pub fn new() -> DotStuffer {
        DotStuffer::default()
    }

    /// Message bytes (CRLF line ends) in, wire bytes out.
    pub fn stuff(&mut self, data: &[u8], out: &mut Vec<u8>) {
        out.reserve(data.len() + data.len() / 64 + 1);
        for &b in data {
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            self.at_line_start = b == b'\n';
        }
        self.empty &= data.is_empty();
    }

    /// The end of the message: CRLF if the last line lacks it, then `.`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.empty && !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        *self = DotStuffer::new();
    }
}

/// A whole message's DATA wire form, appended to `out` (`DotStuffer` in one
/// go).
pub fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    let mut d = DotStuffer::new();
    d.stuff(message, out);
    d.finish(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(wire: &[u8], step: usize) -> Vec<Result<ServerReply, ReplyError>> {
        let mut r = ReplyReader::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(step.max(1)) {
            r.feed(chunk);
            while let Some(x) = r.next_reply() {
                got.push(x);
            }
        }
        got
    }

    #[test]
    fn replies_whole_and_byte_by_byte() {
        let wire = b"220 mx.example.org ESMTP\r\n250-mx.example.org\r\n250-SIZE 1000\r\n250-PIPELINING\r\n250-AUTH plain LOGIN\r\n250 STARTTLS\r\n550 5.1.1 <a@b>: Recipient address rejected\r\n354\r\n421-4.7.0 first\n421 second\r\n";
        for step in [wire.len(), 1, 3] {
            let got = read_all(wire, step);
            assert_eq!(got.len(), 5, "in pieces of {step}");
            let greeting = got[0].clone().unwrap();
            assert_eq!((greeting.code, greeting.enhanced.as_deref()), (220, None));
            let ehlo = got[1].clone().unwrap();
            assert_eq!(ehlo.lines.len(), 5);
            let caps = Capabilities::from_ehlo(&ehlo);
            assert_eq!(
                caps,
                Capabilities {
                    size: Some(1000),
                    pipelining: true,
                    starttls: true,
                    auth: vec!["PLAIN".into(), "LOGIN".into()],
                    ..Capabilities::default()
                }
            );
            assert!(caps.refuses_size(1001) && !caps.refuses_size(1000));
            let no = got[2].clone().unwrap();
            assert!(no.is_permanent());
            assert_eq!(no.dsn(), "5.1.1");
            assert_eq!(
                no.to_string(),
                "550 5.1.1 <a@b>: Recipient address rejected"
            );
            let go = got[3].clone().unwrap();
            assert!(go.is_intermediate() && go.lines == [""]);
            let bye = got[4].clone().unwrap();
            assert!(bye.is_transient());
            assert_eq!(bye.to_string(), "421 4.7.0 first second");
        }
    }

    #[test]
    fn bad_replies() {
        let one = |w: &[u8]| read_all(w, w.len()).pop().unwrap();
        assert!(matches!(one(b"25O ok\r\n"), Err(ReplyError::Malformed(_))));
        assert!(matches!(one(b"250_ok\r\n"), Err(ReplyError::Malformed(_))));
        assert!(matches!(
            one(b"150 one-fifty\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert_eq!(
            one(b"250-a\r\n550 b\r\n"),
            Err(ReplyError::CodeChanged {
                first: 250,
                then: 550
            })
        );
        let long = vec![b'2'; MAX_REPLY_LINE + 1];
        assert_eq!(one(&long), Err(ReplyError::LineTooLong));
        let mut many = Vec::new();
        for _ in 0..=MAX_REPLY_LINES {
            many.extend_from_slice(b"250-x\r\n");
        }
        assert_eq!(one(&many), Err(ReplyError::TooManyLines));
        // After an error, nothing more.
        let mut r = ReplyReader::new();
        r.feed(b"xyz\r\n250 ok\r\n");
        assert!(r.next_reply().unwrap().is_err());
        assert!(r.next_reply().is_none());
        // A class that is not the code's is no enhanced code; controls are
        // shown as '?'.
        let r = one(b"250 5.1.1 odd\r\n").unwrap();
        assert_eq!((r.enhanced.as_deref(), r.dsn().as_str()), (None, "2.0.0"));
        assert_eq!(
            one(b"550 bad\x1b[2J\r\n").unwrap().to_string(),
            "550 bad?[2J"
        );
    }

    #[test]
    fn commands_and_transparency() {
        let mut out = Vec::new();
        write_hello(&mut out, true, "mail.example.org");
        write_mail(
            &mut out,
            "a@example.org",
            &MailOptions {
                size: Some(5000),
                eight_bit: true,
                smtputf8: true,
                ret: Some("HDRS".into()),
                envid: Some("QQ".into()),
            },
        );
        write_rcpt(
            &mut out,
            "b@example.net",
            Some("FAILURE,DELAY"),
            Some("rfc822;b@example.net"),
        );
        write_bdat(&mut out, 12, true);
        write_simple(&mut out, "QUIT");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "EHLO mail.example.org\r\n\
             MAIL FROM:<a@example.org> SIZE=5000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ\r\n\
             RCPT TO:<b@example.net> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b@example.net\r\n\
             BDAT 12 LAST\r\n\
             QUIT\r\n"
        );
        let cases: [(&[u8], &[u8]); 4] = [
            (b".a\r\nb\r\n..\r\n", b"..a\r\nb\r\n...\r\n.\r\n"),
            (b"no end", b"no end\r\n.\r\n"),
            (b"", b".\r\n"),
            (b"x\r\n.\r\n", b"x\r\n..\r\n.\r\n"),
        ];
        for (msg, wire) in cases {
            let mut whole = Vec::new();
            dot_stuff(msg, &mut whole);
            assert_eq!(whole, wire, "{:?}", String::from_utf8_lossy(msg));
            let mut d = DotStuffer::new();
            let mut bytewise = Vec::new();
            for b in msg {
                d.stuff(std::slice::from_ref(b), &mut bytewise);
            }
            d.finish(&mut bytewise);
            assert_eq!(bytewise, wire);
        }
    }
}
