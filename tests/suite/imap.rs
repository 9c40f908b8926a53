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

/// The untagged OK lines of a SELECT: (UIDVALIDITY, UIDNEXT).
fn select_codes(r: &[String]) -> (u32, u32) {
    let v = r
        .iter()
        .find(|l| l.contains("[UIDVALIDITY "))
        .expect("UIDVALIDITY");
    let n = r.iter().find(|l| l.contains("[UIDNEXT ")).expect("UIDNEXT");
    (number(v, "UIDVALIDITY"), number(n, "UIDNEXT"))
}

const FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/// A message APPEND must keep byte for byte: 8-bit header, a lone dot,
/// no line end after the last line.
const APPENDED: &[u8] =
    b"Subject: appended\r\nX-Bytes: \xc3\xa4 8-bit\r\n\r\n.\r\nbody\r\nlast line without newline";

#[test]
fn append_copy_move_expunge_close_and_unselect() {
    let s = Suite::start("imap-append", &[], &[]);
    let files = deliver(&s, USER, &messages()[..2]);
    let mut c = Imap::login(imap_port(&s), USER, PASS);
    assert_eq!(c.cmd("c1 CREATE Folder"), ["c1 OK Create completed."]);
    let r = c.cmd("c2 STATUS Folder (MESSAGES UIDNEXT UIDVALIDITY)");
    let w = number(&r[0], "UIDVALIDITY");
    assert_eq!(
        r,
        [
            format!("* STATUS \"Folder\" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY {w})"),
            "c2 OK Status completed.".into()
        ]
    );
    let r = c.cmd("s1 SELECT INBOX");
    let (v, _) = select_codes(&r);
    assert_eq!(
        r,
        [
            format!("* FLAGS ({FLAGS})"),
            format!("* OK [PERMANENTFLAGS ({FLAGS} \\*)] Flags permitted."),
            "* 2 EXISTS".into(),
            "* 2 RECENT".into(),
            "* OK [UNSEEN 1] First unseen.".into(),
            format!("* OK [UIDVALIDITY {v}] UIDs valid"),
            "* OK [UIDNEXT 3] Predicted next UID".into(),
            "s1 OK [READ-WRITE] Select completed.".into(),
        ]
    );
    assert_ne!(v, w, "two mailboxes, two UIDVALIDITYs");
    // APPEND to the selected mailbox, synchronizing literal: flags,
    // keyword and date kept, the message byte for byte, EXISTS at once.
    c.send(&format!(
        "a1 APPEND INBOX (\\Seen \\Flagged $Label1) \"01-Jan-2020 12:34:56 +0200\" {{{}}}",
        APPENDED.len()
    ));
    assert_eq!(c.line(), "+ OK");
    c.raw(APPENDED);
    c.raw(b"\r\n");
    assert_eq!(
        c.until_tagged("a1")
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect::<Vec<_>>(),
        [
            "* 3 EXISTS".to_string(),
            "* 3 RECENT".into(),
            format!("a1 OK [APPENDUID {v} 3] Append completed.")
        ]
    );
    c.send("f1 FETCH 3 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])");
    let r = c.until_tagged("f1");
    let mut want = format!(
        "* 3 FETCH (UID 3 FLAGS (\\Flagged \\Seen \\Recent $Label1) INTERNALDATE \" 1-Jan-2020 10:34:56 +0000\" RFC822.SIZE {0} BODY[] {{{0}}}\r\n",
        APPENDED.len()
    )
    .into_bytes();
    want.extend_from_slice(APPENDED);
    want.push(b')');
    assert_eq!(
        String::from_utf8_lossy(&r[0]),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(r[0], want, "APPEND kept every byte");
    assert_eq!(r[1], b"f1 OK Fetch completed.");
    // APPEND elsewhere with a non-synchronizing literal (LITERAL+).
    c.raw(format!("a2 APPEND Folder {{{}+}}\r\n", APPENDED.len()).as_bytes());
    c.raw(APPENDED);
    c.raw(b"\r\n");
    assert_eq!(
        String::from_utf8_lossy(&c.until_tagged("a2")[0]),
        format!("a2 OK [APPENDUID {w} 1] Append completed.")
    );
    // COPY: COPYUID with the source and destination UIDs.
    assert_eq!(
        c.cmd("k1 COPY 1:2 Folder"),
        [format!("k1 OK [COPYUID {w} 1:2 2:3] Copy completed.")]
    );
    // MOVE (RFC 6851 4.3): COPYUID untagged, then the EXPUNGE.
    assert_eq!(
        c.cmd("m1 UID MOVE 3 Folder"),
        [
            format!("* OK [COPYUID {w} 3 4] Moved UIDs."),
            "* 3 EXPUNGE".into(),
            "m1 OK Move completed.".into()
        ]
    );
    // UID EXPUNGE takes only the named \Deleted message; EXPUNGE the rest.
    assert_eq!(
        c.cmd("d1 STORE 1:2 +FLAGS.SILENT (\\Deleted)"),
        ["d1 OK Store completed."]
    );
    assert_eq!(
        c.cmd("e1 UID EXPUNGE 2"),
        ["* 2 EXPUNGE", "e1 OK Expunge completed."]
    );
    assert_eq!(
        c.cmd("e2 UID FETCH 1:* (FLAGS)"),
        [
            "* 1 FETCH (UID 1 FLAGS (\\Deleted \\Recent))",
            "e2 OK Fetch completed."
        ]
    );
    assert_eq!(
        c.cmd("e3 EXPUNGE"),
        ["* 1 EXPUNGE", "e3 OK Expunge completed."]
    );
    assert_eq!(
        c.cmd("e4 STATUS INBOX (MESSAGES UIDNEXT)"),
        [
            "* STATUS \"INBOX\" (MESSAGES 0 UIDNEXT 4)",
            "e4 OK Status completed."
        ]
    );
    // Folder: the appended message (1), the copies (2, 3), the moved one (4).
    let r = c.cmd("x1 SELECT Folder");
    assert_eq!(select_codes(&r), (w, 5));
    c.send("x2 UID FETCH 1:* (BODY.PEEK[])");
    let r = c.until_tagged("x2");
    assert_eq!(r.len(), 5, "four messages and OK");
    let bodies: Vec<Vec<u8>> = r[..4].iter().map(|r| fetched(r, "BODY[]")).collect();
    assert_eq!(bodies[0], APPENDED);
    assert!(bodies[1] == crlf(&files[0]), "COPY kept UID 1's bytes");
    assert!(bodies[2] == crlf(&files[1]), "COPY kept UID 2's bytes");
    assert_eq!(bodies[3], APPENDED, "MOVE kept the bytes");
    // UNSELECT leaves \Deleted messages; CLOSE expunges them silently.
    assert_eq!(
        c.cmd("x3 STORE 1 +FLAGS.SILENT (\\Deleted)"),
        ["x3 OK Store completed."]
    );
    assert_eq!(c.cmd("x4 UNSELECT"), ["x4 OK Unselect completed."]);
    assert_eq!(
        c.cmd("x5 STATUS Folder (MESSAGES)"),
        [
            "* STATUS \"Folder\" (MESSAGES 4)",
            "x5 OK Status completed."
        ]
    );
    let r = c.cmd("x6 SELECT Folder");
    assert!(r.contains(&"* 4 EXISTS".to_string()), "{r:?}");
    assert_eq!(
        c.cmd("x7 STORE 2 +FLAGS.SILENT (\\Deleted)"),
        ["x7 OK Store completed."]
    );
    assert_eq!(c.cmd("x8 CLOSE"), ["x8 OK Close completed."]);
    assert_eq!(
        c.cmd("x9 STATUS Folder (MESSAGES UIDNEXT)"),
        [
            "* STATUS \"Folder\" (MESSAGES 2 UIDNEXT 5)",
            "x9 OK Status completed."
        ]
    );
    // After CLOSE no mailbox is selected.
    assert_eq!(c.cmd("y1 FETCH 1 FLAGS"), ["y1 BAD No mailbox selected."]);
    let r = c.cmd("y2 LOGOUT");
    assert_eq!(r, ["* BYE Logging out", "y2 OK Logout completed."]);
    assert!(c.eof());
}
