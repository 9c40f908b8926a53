//! IMAP end to end: mail delivered over SMTP is read, appended, copied,
//! moved and expunged over IMAP with real clients (Python's imaplib, curl,
//! mbsync) and with exact transcripts on the plain port (loopback: logins
//! allowed in the clear): STARTTLS verified against the dev CA and IMAPS,
//! byte-exact BODY[], APPEND with flags and INTERNALDATE, COPYUID and
//! APPENDUID, EXPUNGE and UID EXPUNGE, CLOSE against UNSELECT, IDLE woken
//! by a delivery, two sessions on one mailbox, UIDs across a restart, huge
//! literals refused before the continuation, mailbox names that try to
//! leave the user's mail, another user's mail, and failed logins (one
//! reply, after the delay, in log lines fail2ban's stock filter matches).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{self, crlf_to_lf, read, strip_trace, Smtp, Suite};

const USER: &str = "demo@example.test";
const PASS: &str = "demo";
const OTHER: &str = "other@example.test";
const OTHER_PASS: &str = "secret";

fn imap_port(s: &Suite) -> u16 {
    2143 + s.offset
}

fn imaps_port(s: &Suite) -> u16 {
    2993 + s.offset
}

fn ca(s: &Suite) -> PathBuf {
    s.dir.join("tls").join("ca.pem")
}

fn client(name: &str) -> String {
    format!("{}/../tests/clients/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Messages with what trips up a server: lines of dots, 8-bit text,
/// trailing white space, a big body of long lines.
fn messages() -> Vec<Vec<u8>> {
    let mut big = b"Subject: big\r\nMessage-ID: <big@example.org>\r\n\r\n".to_vec();
    for i in 0..3000 {
        big.extend_from_slice(format!(".{i:05} {}\r\n", "x".repeat(70)).as_bytes());
    }
    vec![
        b"From: Alice <alice@example.org>\r\nSubject: first\r\nMessage-ID: <first@example.org>\r\n\r\n.\r\n..\r\n.leading dot\r\nGr\xc3\xbc\xc3\x9fe\r\nTabs\tand trailing spaces   \r\n\r\nend\r\n".to_vec(),
        b"Subject: second\r\nMessage-ID: <second@example.org>\r\n\r\nshort\r\n".to_vec(),
        big,
    ]
}

/// Deliver `msgs` to `user` one at a time (each waited for, so that arrival
/// order is UID order) and return the delivered files' contents in order.
fn deliver(s: &Suite, user: &str, msgs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let before = s.new_mail(user);
    let mut seen: Vec<PathBuf> = before.clone();
    let mut c = Smtp::connect(s.port);
    c.cmd("EHLO imap.example.org", 250);
    let mut out = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        c.mail("sender@example.org", &[user], m);
        let files = s.wait_mail(user, before.len() + i + 1);
        let new: Vec<PathBuf> = files.into_iter().filter(|f| !seen.contains(f)).collect();
        assert_eq!(new.len(), 1, "one new file per message");
        out.push(read(&new[0]));
        seen.extend(new);
    }
    c.cmd("QUIT", 221);
    out
}

/// LF on disk to CRLF, as IMAP sends it.
fn crlf(lf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lf.len() + lf.len() / 20);
    for (i, &b) in lf.iter().enumerate() {
        if b == b'\n' && (i == 0 || lf[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A raw IMAP client: responses read whole, literals included.
struct Imap {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Imap {
    /// Connect to the plain port; returns the client and the greeting.
    fn connect(port: u16) -> (Imap, String) {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut c = Imap {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let g = c.line();
        (c, g)
    }

    /// Connect and LOGIN; the login's OK is checked.
    fn login(port: u16, user: &str, pass: &str) -> Imap {
        let (mut c, g) = Imap::connect(port);
        assert!(g.starts_with("* OK [CAPABILITY IMAP4rev1 "), "{g}");
        let r = c.cmd(&format!("l LOGIN {user} {pass}"));
        assert!(
            r.last().unwrap().starts_with("l OK [CAPABILITY IMAP4rev1 "),
            "{r:?}"
        );
        c
    }

    /// One response: a line, with any literals it announces, without the
    /// final CRLF.
    fn response(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            let mut l = Vec::new();
            let n = self.r.read_until(b'\n', &mut l).expect("read a line");
            assert!(
                n > 0,
                "the server closed the connection after {:?}",
                String::from_utf8_lossy(&all)
            );
            assert!(l.ends_with(b"\r\n"), "line without CRLF: {l:?}");
            l.truncate(l.len() - 2);
            let literal = literal_size(&l);
            all.extend_from_slice(&l);
            let Some(n) = literal else {
                return all;
            };
            all.extend_from_slice(b"\r\n");
            let mut data = vec![0u8; n];
            self.r.read_exact(&mut data).expect("read a literal");
            all.extend_from_slice(&data);
        }
    }

    fn line(&mut self) -> String {
        String::from_utf8_lossy(&self.response()).into_owned()
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    fn send(&mut self, line: &str) {
        self.raw(format!("{line}\r\n").as_bytes());
    }

    /// Responses up to and including the one tagged like `line`'s tag.
    fn until_tagged(&mut self, tag: &str) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        loop {
            let r = self.response();
            let done = r.starts_with(format!("{tag} ").as_bytes());
            v.push(r);
            if done {
                return v;
            }
        }
    }

    /// Send a tagged command; its responses as text, the tagged one last.
    fn cmd(&mut self, line: &str) -> Vec<String> {
        self.send(line);
        let tag = line.split(' ').next().unwrap();
        self.until_tagged(tag)
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    /// End of file from the server (after it closed).
    fn eof(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }
}

/// `{n}` (or `{n+}`) at the end of a line: the literal's size.
fn literal_size(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The literal after `item {n}\r\n` in a FETCH response.
fn fetched(resp: &[u8], item: &str) -> Vec<u8> {
    let text = resp;
    let key = format!("{item} {{");
    let at = text
        .windows(key.len())
        .position(|w| w == key.as_bytes())
        .unwrap_or_else(|| panic!("no {item} in {:?}", String::from_utf8_lossy(resp)));
    let rest = &text[at + key.len()..];
    let close = rest.iter().position(|&b| b == b'}').unwrap();
    let n: usize = std::str::from_utf8(&rest[..close])
        .unwrap()
        .parse()
        .unwrap();
    rest[close + 3..close + 3 + n].to_vec()
}

/// The number after `key ` in a line (`UIDVALIDITY 1234`).
fn number(line: &str, key: &str) -> u32 {
    let at = line
        .find(&format!("{key} "))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    line[at + key.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {key} in {line}"))
}

/// Run tests/clients/imap_dump.py; facts by kind.
fn imaplib(mode: &str, port: u16, ca: &Path) -> BTreeMap<String, Vec<Vec<String>>> {
    let out = Command::new("python3")
        .arg(client("imap_dump.py"))
        .args([mode, &port.to_string()])
        .arg(ca)
        .args([USER, PASS])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "imaplib {mode}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut facts: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = l.split(' ').map(String::from);
        let kind = f.next().unwrap_or_default();
        facts.entry(kind).or_default().push(f.collect());
    }
    facts
}

#[test]
fn imaplib_over_starttls_and_imaps_reads_mail_byte_exact() {
    let s = Suite::start("imap-imaplib", &[], &[]);
    let sent = messages();
    let files = deliver(&s, USER, &sent);
    for (f, m) in files.iter().zip(&sent) {
        assert_eq!(strip_trace(f), crlf_to_lf(m).as_slice());
    }
    let mut uids = Vec::new();
    for (mode, port) in [("stls", imap_port(&s)), ("ssl", imaps_port(&s))] {
        let facts = imaplib(mode, port, &ca(&s));
        if mode == "stls" {
            let pre = &facts["PRECAPA"][0];
            assert!(pre.contains(&"STARTTLS".to_string()), "{pre:?}");
        }
        let tls = &facts["TLS"][0];
        assert!(
            tls[0] == "TLSv1.3" || tls[0] == "TLSv1.2",
            "{mode}: {tls:?}"
        );
        let caps = &facts["CAPA"][0];
        assert!(!caps.contains(&"STARTTLS".to_string()), "{mode}: {caps:?}");
        assert!(!caps.contains(&"LOGINDISABLED".to_string()), "{caps:?}");
        assert!(caps.contains(&"AUTH=PLAIN".to_string()), "{caps:?}");
        let post = &facts["POSTCAPA"][0];
        for want in [
            "IMAP4REV1",
            "IDLE",
            "UIDPLUS",
            "MOVE",
            "UNSELECT",
            "LITERAL+",
        ] {
            assert!(post.contains(&want.to_string()), "{mode}: {post:?}");
        }
        let login = facts["LOGIN"][0].join(" ");
        assert!(
            login.starts_with("[CAPABILITY IMAP4rev1 ") && login.ends_with("] Logged in"),
            "{login}"
        );
        let sel = &facts["SELECT"][0];
        assert_eq!(sel[0], "3", "{mode}: EXISTS");
        assert_eq!(sel[2], "4", "{mode}: UIDNEXT");
        let msgs = &facts["MSG"];
        assert_eq!(msgs.len(), files.len(), "{mode}");
        for (m, f) in msgs.iter().zip(&files) {
            let body = hex(&m[4]);
            let want = crlf(f);
            assert!(
                body == want,
                "{mode}: UID {} BODY[] is {} bytes, not the delivered file's {} (CRLF):\n{}",
                m[0],
                body.len(),
                want.len(),
                String::from_utf8_lossy(&body[..body.len().min(400)])
            );
            assert_eq!(m[1], want.len().to_string(), "{mode}: RFC822.SIZE");
            assert_eq!(m[2], "\\Recent", "{mode}: flags of UID {}", m[0]);
        }
        uids.push(msgs.iter().map(|m| m[0].clone()).collect::<Vec<_>>());
        assert_eq!(uids.last().unwrap(), &["1", "2", "3"]);
    }
    // The trace headers are the only difference from what was sent.
    let log = s.log();
    assert!(
        log.contains(&format!(
            "Login: user=<{USER}>, method=PLAIN, rip=127.0.0.1"
        )),
        "{log}"
    );
}
