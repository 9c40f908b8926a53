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
use std::process::{Command, Stdio};
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
    // The trace headers are the only difference from what was sent.
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

#[test]
fn idle_is_woken_by_a_delivery_at_once() {
    let s = Suite::start("imap-idle", &[], &[]);
    let mut c = Imap::login(imap_port(&s), USER, PASS);
    let r = c.cmd("s1 SELECT INBOX");
    assert!(r.contains(&"* 0 EXISTS".to_string()), "{r:?}");
    let mut smtp = Smtp::connect(s.port);
    smtp.cmd("EHLO idle.example.org", 250);
    for n in 1..=2 {
        c.send(&format!("i{n} IDLE"));
        assert_eq!(c.line(), "+ idling");
        smtp.mail(
            "sender@example.org",
            &[USER],
            format!("Subject: wake up {n}\r\n\r\nnow\r\n").as_bytes(),
        );
        // Measured from the end of the SMTP transaction, so the time
        // includes queueing and delivery: a poll interval would show.
        let t = Instant::now();
        assert_eq!(c.line(), format!("* {n} EXISTS"));
        let waited = t.elapsed();
        eprintln!("IDLE {n}: EXISTS {waited:?} after the SMTP reply");
        assert!(
            waited < Duration::from_secs(2),
            "IDLE heard of the delivery after {waited:?}"
        );
        assert_eq!(c.line(), format!("* {n} RECENT"));
        c.send("DONE");
        assert_eq!(c.line(), format!("i{n} OK Idle completed."));
    }
    // The same over IMAPS, where the login process relays the TLS.
    let mut py = Command::new("python3")
        .arg(client("imap_idle.py"))
        .arg(imaps_port(&s).to_string())
        .arg(ca(&s))
        .args([USER, PASS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut out = BufReader::new(py.stdout.take().unwrap());
    let mut l = String::new();
    out.read_line(&mut l).unwrap();
    assert_eq!(l, "READY + idling\n");
    smtp.mail(
        "sender@example.org",
        &[USER],
        b"Subject: wake up over TLS\r\n\r\nnow\r\n",
    );
    let t = Instant::now();
    l.clear();
    out.read_line(&mut l).unwrap();
    let waited = t.elapsed();
    eprintln!("IDLE over IMAPS: EXISTS {waited:?} after the SMTP reply");
    assert_eq!(l, "LINE * 3 EXISTS\n");
    assert!(
        waited < Duration::from_secs(2),
        "IDLE over IMAPS heard of the delivery after {waited:?}"
    );
    py.stdin.as_mut().unwrap().write_all(b"done\n").unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "LINE * 1 RECENT\nDONE c OK Idle completed.\n");
    assert!(py.wait().unwrap().success());
    // The plain session hears of it at its next command.
    assert_eq!(
        c.cmd("i5 NOOP"),
        ["* 3 EXISTS", "* 2 RECENT", "i5 OK NOOP completed."]
    );
    smtp.cmd("QUIT", 221);
    // Anything but DONE ends IDLE with BAD.
    c.send("i4 IDLE");
    assert_eq!(c.line(), "+ idling");
    c.send("NOOP");
    assert_eq!(c.line(), "i4 BAD Expected DONE.");
    assert_eq!(c.cmd("i6 NOOP"), ["i6 OK NOOP completed."]);
}

#[test]
fn two_sessions_see_each_others_flags_and_expunges() {
    let s = Suite::start("imap-two", &[], &[]);
    deliver(&s, USER, &messages());
    let mut a = Imap::login(imap_port(&s), USER, PASS);
    let mut b = Imap::login(imap_port(&s), USER, PASS);
    let ra = a.cmd("a1 SELECT INBOX");
    let rb = b.cmd("b1 SELECT INBOX");
    assert_eq!(select_codes(&ra), select_codes(&rb));
    // \Recent went to the session that selected first (RFC 3501 2.3.2).
    assert!(ra.contains(&"* 3 RECENT".to_string()), "{ra:?}");
    assert!(rb.contains(&"* 0 RECENT".to_string()), "{rb:?}");
    assert_eq!(
        a.cmd("a2 STORE 1 +FLAGS (\\Flagged)"),
        [
            "* 1 FETCH (FLAGS (\\Flagged \\Recent))",
            "a2 OK Store completed."
        ]
    );
    assert_eq!(
        b.cmd("b2 NOOP"),
        [
            "* 1 FETCH (UID 1 FLAGS (\\Flagged))",
            "b2 OK NOOP completed."
        ]
    );
    // B marks 2 deleted and expunges; A hears of both at its NOOP.
    assert_eq!(
        b.cmd("b3 STORE 2 +FLAGS.SILENT (\\Deleted)"),
        ["b3 OK Store completed."]
    );
    assert_eq!(
        b.cmd("b4 EXPUNGE"),
        ["* 2 EXPUNGE", "b4 OK Expunge completed."]
    );
    let r = a.cmd("a3 NOOP");
    assert_eq!(r.first().map(String::as_str), Some("* 2 EXPUNGE"), "{r:?}");
    assert_eq!(r.last().map(String::as_str), Some("a3 OK NOOP completed."));
    assert!(r.len() <= 3, "{r:?}");
    // Both now agree: UIDs 1 and 3, 1 flagged.
    for (c, t) in [(&mut a, "a4"), (&mut b, "b5")] {
        let r = c.cmd(&format!("{t} FETCH 1:* (UID FLAGS)"));
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(
            r[0].starts_with("* 1 FETCH (UID 1 FLAGS (\\Flagged"),
            "{r:?}"
        );
        assert!(r[1].starts_with("* 2 FETCH (UID 3 FLAGS ("), "{r:?}");
    }
    // An expunge is not told during FETCH by sequence number (RFC 3501
    // 7.4.1): it waits for a command that may tell it.
    assert_eq!(
        a.cmd("a5 STORE 2 +FLAGS.SILENT (\\Deleted)"),
        ["a5 OK Store completed."]
    );
    assert_eq!(
        a.cmd("a6 EXPUNGE"),
        ["* 2 EXPUNGE", "a6 OK Expunge completed."]
    );
    let r = b.cmd("b6 FETCH 2 (UID)");
    assert!(!r.iter().any(|l| l.contains("EXPUNGE")), "{r:?}");
    let r = b.cmd("b7 NOOP");
    assert_eq!(r.first().map(String::as_str), Some("* 2 EXPUNGE"), "{r:?}");
    assert_eq!(
        b.cmd("b8 UID SEARCH ALL"),
        ["* SEARCH 1", "b8 OK Search completed."]
    );
    // In IDLE, A hears of B's flag change and expunge as they happen.
    deliver(&s, USER, &messages()[1..2]);
    // B looked first: \Recent is B's. A's RECENT counts the message it
    // still has from its SELECT (UID 1), not the expunged ones.
    assert_eq!(
        b.cmd("b9 NOOP"),
        ["* 2 EXISTS", "* 1 RECENT", "b9 OK NOOP completed."]
    );
    assert_eq!(
        a.cmd("a7 NOOP"),
        ["* 2 EXISTS", "* 1 RECENT", "a7 OK NOOP completed."]
    );
    a.send("a8 IDLE");
    assert_eq!(a.line(), "+ idling");
    b.cmd("c1 STORE 2 +FLAGS (\\Deleted)");
    assert_eq!(a.line(), "* 2 FETCH (UID 4 FLAGS (\\Deleted))");
    b.cmd("c2 EXPUNGE");
    assert_eq!(a.line(), "* 2 EXPUNGE");
    a.send("DONE");
    assert_eq!(a.line(), "a8 OK Idle completed.");
}

#[test]
fn uidvalidity_and_uids_survive_a_restart() {
    let mut s = Suite::start("imap-restart", &[], &[]);
    deliver(&s, USER, &messages());
    let mut c = Imap::login(imap_port(&s), USER, PASS);
    assert_eq!(c.cmd("c1 CREATE Keep"), ["c1 OK Create completed."]);
    c.raw(b"c2 APPEND Keep {6+}\r\nx: y\r\n\r\n");
    let r = c.until_tagged("c2");
    let keep = String::from_utf8_lossy(&r[0]).into_owned();
    assert!(keep.ends_with(" 1] Append completed."), "{keep}");
    let r = c.cmd("c3 SELECT INBOX");
    let (v, next) = select_codes(&r);
    assert_eq!(next, 4);
    // Expunge UID 3: its UID must not come back for the next message.
    c.cmd("c4 UID STORE 3 +FLAGS.SILENT (\\Deleted)");
    assert_eq!(
        c.cmd("c5 EXPUNGE"),
        ["* 3 EXPUNGE", "c5 OK Expunge completed."]
    );
    let before = c.cmd("c6 UID FETCH 1:* (UID RFC822.SIZE)");
    c.cmd("c7 LOGOUT");
    s.stop();
    s.spawn(&[], &[]);
    let mut c = Imap::login(imap_port(&s), USER, PASS);
    let r = c.cmd("d1 SELECT INBOX");
    assert_eq!(select_codes(&r), (v, 4), "UIDVALIDITY and UIDNEXT kept");
    let after = c.cmd("d2 UID FETCH 1:* (UID RFC822.SIZE)");
    assert_eq!(
        before[..before.len() - 1],
        after[..after.len() - 1],
        "UIDs after a restart"
    );
    let r = c.cmd("d3 STATUS Keep (UIDVALIDITY UIDNEXT MESSAGES)");
    assert_eq!(
        r[0],
        format!(
            "* STATUS \"Keep\" (UIDVALIDITY {} UIDNEXT 2 MESSAGES 1)",
            number(&keep, "APPENDUID")
        )
    );
    // New mail after the restart gets the next UID, not the expunged one.
    deliver(&s, USER, &messages()[1..2]);
    let r = c.cmd("d4 NOOP");
    assert_eq!(r[0], "* 3 EXISTS", "{r:?}");
    assert_eq!(
        c.cmd("d5 FETCH 3 (UID)"),
        ["* 3 FETCH (UID 4)", "d5 OK Fetch completed."]
    );
}

#[test]
fn huge_literals_are_refused_before_the_continuation() {
    let s = Suite::start("imap-literal", &[], &[]);
    let (mut c, _) = Imap::connect(imap_port(&s));
    // Before login: a synchronizing literal past the bound is refused at
    // once, no "+", and the connection goes on.
    c.send("a1 LOGIN {99999999}");
    assert_eq!(c.line(), "a1 BAD [TOOBIG] Literal too big.");
    assert_eq!(c.cmd("a2 NOOP"), ["a2 OK NOOP completed."]);
    // A literal within bounds gets "+ OK" and works.
    c.send(&format!("a3 LOGIN {{{}}}", USER.len()));
    assert_eq!(c.line(), "+ OK");
    c.send(&format!("{USER} {PASS}"));
    let r = c.until_tagged("a3");
    assert!(
        String::from_utf8_lossy(&r[0]).starts_with("a3 OK [CAPABILITY IMAP4rev1 "),
        "{r:?}"
    );
    // After login: APPEND past APPENDLIMIT is refused before "+".
    c.send("b1 APPEND INBOX {999999999}");
    assert_eq!(c.line(), "b1 NO [TOOBIG] Message too big.");
    c.send("b2 APPEND INBOX (\\Seen) {67108865}");
    assert_eq!(c.line(), "b2 NO [TOOBIG] Message too big.");
    assert_eq!(c.cmd("b3 NOOP"), ["b3 OK NOOP completed."]);
    assert_eq!(
        c.cmd("b4 STATUS INBOX (MESSAGES)"),
        ["* STATUS \"INBOX\" (MESSAGES 0)", "b4 OK Status completed."]
    );
    // A non-synchronizing one cannot be refused before it is sent: the
    // server says BYE and closes rather than read it.
    c.send("b5 APPEND INBOX {999999999+}");
    assert_eq!(c.line(), "* BYE [TOOBIG] Message too big.");
    assert!(c.eof());
    let (mut c, _) = Imap::connect(imap_port(&s));
    c.send("a1 LOGIN {99999999+}");
    assert_eq!(c.line(), "* BYE [TOOBIG] Literal too big.");
    assert!(c.eof());
}

/// Every directory under `dir`, relative to it.
fn dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                out.push(e.path().strip_prefix(dir).unwrap().to_path_buf());
                todo.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn mailbox_names_stay_inside_the_users_own_mail() {
    let s = Suite::start(
        "imap-names",
        &["other@example.test:secret"],
        &["auth_failure_delay=1s"],
    );
    deliver(
        &s,
        OTHER,
        &[b"Subject: for other only\r\n\r\nsecret text\r\n".to_vec()],
    );
    let mail = s.dir.join("mail");
    let before = dirs(&mail);
    let mut c = Imap::login(imap_port(&s), USER, PASS);
    let sep = "NO Character not allowed in mailbox name: '/'";
    let empty = "NO Invalid mailbox name: empty level (leading, trailing or double '.')";
    let mut all = Vec::new();
    for (cmd, want) in [
        ("CREATE ../x", sep),
        ("SELECT ../../etc", sep),
        ("SELECT \"/etc\"", sep),
        ("CREATE a/b", sep),
        ("EXAMINE \"INBOX/../../other\"", sep),
        ("STATUS ../other (MESSAGES)", sep),
        ("RENAME Sent ../../x", sep),
        ("DELETE ../other", sep),
        ("APPEND ../../x {1+}\r\nx", sep),
        // '.' is the hierarchy separator: ".." is an empty level.
        ("CREATE ..", empty),
        ("CREATE .hidden", empty),
        ("SELECT foo..bar", empty),
        ("CREATE \"INBOX..\"", empty),
        // '/' and control characters smuggled in modified UTF-7.
        ("CREATE &AC8-etc", "NO Mailbox name is not valid mUTF-7"),
        (
            "CREATE &AAE-x",
            "NO Invalid mailbox name: control character",
        ),
        (
            "CREATE \"a\x7fb\"",
            "NO Invalid mailbox name: control character",
        ),
        ("SELECT \"\"", "NO Invalid mailbox name: empty"),
        // `~user` (another user's mail elsewhere) is refused outright.
        (
            "SELECT ~other",
            "NO Invalid mailbox name: it may not begin with '~'",
        ),
        (
            "STATUS ~other (MESSAGES)",
            "NO Invalid mailbox name: it may not begin with '~'",
        ),
        (
            "SELECT \"~other@example.test\"",
            "NO Invalid mailbox name: it may not begin with '~'",
        ),
        ("SELECT other", "NO [NONEXISTENT] Mailbox doesn't exist."),
        ("LIST \"~other\" \"*\"", "OK List completed."),
        ("LIST \"\" \"../*\"", "OK List completed."),
        ("LIST \"../\" \"*\"", "OK List completed."),
        ("LIST \"\" \"~other*\"", "OK List completed."),
    ] {
        let r = c.cmd(&format!("t {cmd}"));
        assert_eq!(r, [format!("t {want}")], "{cmd}");
        all.extend(r);
    }
    // After UTF8=ACCEPT names are UTF-8: '/' is still refused.
    assert_eq!(
        c.cmd("u1 ENABLE UTF8=ACCEPT"),
        ["* ENABLED UTF8=ACCEPT", "u1 OK Enabled."]
    );
    assert_eq!(c.cmd("u2 SELECT \"../x\""), [format!("u2 {sep}")]);
    assert_eq!(c.cmd("u3 CREATE \"\u{e4}/x\""), [format!("u3 {sep}")]);
    let r = c.cmd("u4 LIST \"\" *");
    assert_eq!(
        r,
        [
            "* LIST (\\HasNoChildren) \".\" \"INBOX\"",
            "* LIST (\\HasNoChildren \\Archive) \".\" \"Archive\"",
            "* LIST (\\HasNoChildren \\Drafts) \".\" \"Drafts\"",
            "* LIST (\\HasNoChildren \\Junk) \".\" \"Junk\"",
            "* LIST (\\HasNoChildren \\Sent) \".\" \"Sent\"",
            "* LIST (\\HasNoChildren \\Trash) \".\" \"Trash\"",
            "u4 OK List completed.",
        ]
    );
    assert_eq!(
        c.cmd("u5 STATUS INBOX (MESSAGES)"),
        ["* STATUS \"INBOX\" (MESSAGES 0)", "u5 OK Status completed."]
    );
    all.extend(r);
    assert!(!all.iter().any(|l| l.contains("for other only")), "{all:?}");
    c.cmd("u6 LOGOUT");
    assert_eq!(dirs(&mail), before, "no directory made or removed");
    // Logging in as other: demo's password does not do, nor does PLAIN
    // with other as the authorization identity and demo's credentials.
    let plain =
        |authz: &str, user: &str, pass: &str| base64(format!("{authz}\0{user}\0{pass}").as_bytes());
    let (mut c, _) = Imap::connect(imap_port(&s));
    let failed = "NO [AUTHENTICATIONFAILED] Authentication failed.";
    assert_eq!(
        c.cmd(&format!("p1 LOGIN {OTHER} {PASS}")),
        [format!("p1 {failed}")]
    );
    assert_eq!(
        c.cmd(&format!(
            "p2 AUTHENTICATE PLAIN {}",
            plain(OTHER, USER, PASS)
        )),
        [format!("p2 {failed}")]
    );
    // Other's own login sees its message, still unseen.
    let (mut o, _) = Imap::connect(imap_port(&s));
    let r = o.cmd(&format!(
        "o0 AUTHENTICATE PLAIN {}",
        plain("", OTHER, OTHER_PASS)
    ));
    assert!(r[0].starts_with("o0 OK [CAPABILITY IMAP4rev1 "), "{r:?}");
    assert_eq!(
        o.cmd("o1 STATUS INBOX (MESSAGES UNSEEN)"),
        [
            "* STATUS \"INBOX\" (MESSAGES 1 UNSEEN 1)",
            "o1 OK Status completed."
        ]
    );
}

/// RFC 4648 base64, for SASL PLAIN.
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn failed_logins_look_the_same_and_are_delayed() {
    let s = Suite::start("imap-fail", &[], &["auth_failure_delay=1s"]);
    let failed = "NO [AUTHENTICATIONFAILED] Authentication failed.";
    for (n, cmd) in [
        format!("LOGIN {USER} wrong"),
        "LOGIN nobody@example.test demo".to_string(),
        format!(
            "AUTHENTICATE PLAIN {}",
            base64(format!("\0{USER}\0wrong").as_bytes())
        ),
    ]
    .iter()
    .enumerate()
    {
        let (mut c, _) = Imap::connect(imap_port(&s));
        let t = Instant::now();
        let r = c.cmd(&format!("f{n} {cmd}"));
        let waited = t.elapsed();
        assert_eq!(r, [format!("f{n} {failed}")], "{cmd}");
        assert!(
            waited >= Duration::from_millis(900),
            "{cmd}: answered after {waited:?}, before the failure delay"
        );
        assert_eq!(
            c.cmd("z LOGOUT"),
            ["* BYE Logging out", "z OK Logout completed."]
        );
        assert!(c.eof());
    }
    s.wait_log("(auth failed, 1 attempts in ");
    let log = s.log();
    assert!(
        log.contains("posthorn/imap-login[")
            && log.contains("user=<nobody@example.test>, method=PLAIN, rip=127.0.0.1"),
        "{log}"
    );
    assert!(!log.contains("wrong"), "no password in the log:\n{log}");
    if !harness::tool("fail2ban-regex") {
        return;
    }
    let out = Command::new("fail2ban-regex")
        .arg(s.dir.join("log"))
        .arg(r"dovecot[_daemon=posthorn/\S+]")
        .output()
        .expect("fail2ban-regex runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let matched = text
        .lines()
        .find(|l| l.starts_with("Lines:"))
        .and_then(|l| l.split(',').find(|p| p.contains("matched")))
        .and_then(|p| {
            p.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u32>().ok())
        })
        .unwrap_or(0);
    assert!(
        matched >= 3,
        "fail2ban's dovecot filter matched {matched} lines:\n{text}\nlog:\n{log}"
    );
}

/// Run curl as demo; (exit code, stdout).
fn curl(s: &Suite, url: &str, extra: &[&str]) -> (Option<i32>, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(ca(s))
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs");
    (out.status.code(), out.stdout)
}

#[test]
fn curl_lists_and_fetches_over_imaps_and_starttls() {
    if !harness::tool("curl") {
        return;
    }
    let s = Suite::start("imap-curl", &[], &[]);
    let files = deliver(&s, USER, &messages());
    let login = format!("{USER}:{PASS}");
    let base = format!("imaps://127.0.0.1:{}/", imaps_port(&s));
    let (code, list) = curl(&s, &base, &["-u", &login]);
    assert_eq!(code, Some(0));
    assert_eq!(
        String::from_utf8_lossy(&list),
        "* LIST (\\HasNoChildren) \".\" \"INBOX\"\r\n\
         * LIST (\\HasNoChildren \\Archive) \".\" \"Archive\"\r\n\
         * LIST (\\HasNoChildren \\Drafts) \".\" \"Drafts\"\r\n\
         * LIST (\\HasNoChildren \\Junk) \".\" \"Junk\"\r\n\
         * LIST (\\HasNoChildren \\Sent) \".\" \"Sent\"\r\n\
         * LIST (\\HasNoChildren \\Trash) \".\" \"Trash\"\r\n"
    );
    for (i, f) in files.iter().enumerate() {
        let uid = i + 1;
        let (code, got) = curl(&s, &format!("{base}INBOX;UID={uid}"), &["-u", &login]);
        assert_eq!(code, Some(0), "UID {uid}");
        assert!(
            got == crlf(f),
            "curl UID {uid}: {} bytes, the delivered file (CRLF) has {}",
            got.len(),
            crlf(f).len()
        );
    }
    // STARTTLS on the plain port (imap:// with --ssl-reqd): a search.
    let plain = format!("imap://127.0.0.1:{}/", imap_port(&s));
    let (code, found) = curl(
        &s,
        &format!("{plain}INBOX?SUBJECT%20second"),
        &["-u", &login, "--ssl-reqd"],
    );
    assert_eq!(code, Some(0));
    assert_eq!(String::from_utf8_lossy(&found), "* SEARCH 2\r\n");
    // A UID that is not there, and a wrong password: curl's own errors
    // (78: remote file not found, 67: login denied).
    let (code, _) = curl(&s, &format!("{base}INBOX;UID=99"), &["-u", &login]);
    assert_eq!(code, Some(78));
    let (code, _) = curl(&s, &base, &["-u", &format!("{USER}:wrong")]);
    assert_eq!(code, Some(67));
}

/// Files in a local Maildir folder (new/ and cur/), by the UID mbsync put
/// in their names (`,U=n`).
fn synced(dir: &Path) -> Vec<(u32, Vec<u8>)> {
    let mut v: Vec<(u32, Vec<u8>)> = ["new", "cur"]
        .iter()
        .flat_map(|d| std::fs::read_dir(dir.join(d)).unwrap().flatten())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let uid = name
                .split(",U=")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no UID in {name}"));
            (uid, read(&e.path()))
        })
        .collect();
    v.sort();
    v
}

/// A message without the `X-TUID:` header line mbsync adds.
fn without_tuid(m: &[u8]) -> Vec<u8> {
    let at = m
        .windows(8)
        .position(|w| w == b"X-TUID: ")
        .filter(|&i| i == 0 || m[i - 1] == b'\n')
        .unwrap_or_else(|| panic!("no X-TUID: in {}", String::from_utf8_lossy(m)));
    let end = at + m[at..].iter().position(|&b| b == b'\n').unwrap() + 1;
    [&m[..at], &m[end..]].concat()
}

#[test]
fn mbsync_syncs_a_folder_both_ways_byte_exact() {
    if !harness::tool("mbsync") {
        return;
    }
    let s = Suite::start("imap-mbsync", &[], &[]);
    let files = deliver(&s, USER, &messages());
    let mut c = Imap::login(imap_port(&s), USER, PASS);
    assert_eq!(c.cmd("c1 CREATE Folder"), ["c1 OK Create completed."]);
    c.raw(format!("c2 APPEND Folder (\\Seen) {{{}+}}\r\n", APPENDED.len()).as_bytes());
    c.raw(APPENDED);
    c.raw(b"\r\n");
    c.until_tagged("c2");
    let work = s.dir.join("mbsync");
    let local = work.join("local");
    std::fs::create_dir_all(&local).unwrap();
    let run = |tls: &str, port: u16| {
        let rc = work.join("mbsyncrc");
        std::fs::write(
            &rc,
            format!(
                "IMAPAccount posthorn\nHost localhost\nPort {port}\nUser {USER}\nPass {PASS}\n\
                 SSLType {tls}\nCertificateFile {}\n\n\
                 IMAPStore remote\nAccount posthorn\n\n\
                 MaildirStore local\nPath {1}/\nInbox {1}/INBOX\nSubFolders Verbatim\n\n\
                 Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX Folder\nCreate Both\nSyncState *\n",
                ca(&s).display(),
                local.display()
            ),
        )
        .unwrap();
        let out = Command::new("mbsync")
            .arg("-c")
            .arg(&rc)
            .arg("sync")
            .env("HOME", &work)
            .output()
            .expect("mbsync runs");
        assert!(
            out.status.success(),
            "mbsync ({tls}): {}{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            s.log()
        );
    };
    run("IMAPS", imaps_port(&s));
    // The near side holds the server's messages with LF line ends, as on
    // the server's disk, and the X-TUID: header mbsync adds to every
    // message it carries over (to find it again); apart from that, byte
    // for byte.
    let inbox = synced(&local.join("INBOX"));
    assert_eq!(inbox.len(), 3);
    for ((uid, got), f) in inbox.iter().zip(&files) {
        let got = without_tuid(got);
        assert!(
            got == *f,
            "INBOX UID {uid}: {} bytes, not the delivered {}:\n{}",
            got.len(),
            f.len(),
            String::from_utf8_lossy(&got[..got.len().min(400)])
        );
    }
    let folder = synced(&local.join("Folder"));
    assert_eq!(folder.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&without_tuid(&folder[0].1)),
        String::from_utf8_lossy(&crlf_to_lf(APPENDED))
    );
    // A message written into the local Maildir (flagged and seen) reaches
    // the server over STARTTLS.
    let made = b"Subject: from mbsync\nFrom: near@example.org\n\nmade locally\n.\nend\n";
    std::fs::write(local.join("Folder/cur/1700000000.local1.host:2,FS"), made).unwrap();
    run("STARTTLS", imap_port(&s));
    let r = c.cmd("x1 EXAMINE Folder");
    assert!(r.contains(&"* 2 EXISTS".to_string()), "{r:?}");
    c.send("x2 FETCH 2 (UID FLAGS BODY.PEEK[])");
    let r = c.until_tagged("x2");
    let line = String::from_utf8_lossy(&r[0]).into_owned();
    assert!(
        line.starts_with("* 2 FETCH (UID 2 FLAGS (\\Flagged \\Seen"),
        "{line}"
    );
    // Apart from mbsync's X-TUID: header, the server has the local file
    // byte for byte (CRLF on the wire).
    let body = fetched(&r[0], "BODY[]");
    assert_eq!(
        String::from_utf8_lossy(&without_tuid(&body)),
        String::from_utf8_lossy(&crlf(made))
    );
    // And the near side now knows it by that UID, its file unchanged.
    let folder = synced(&local.join("Folder"));
    assert_eq!(folder.len(), 2);
    assert_eq!(folder[1], (2, made.to_vec()));
    // A sync with nothing to do changes nothing.
    run("IMAPS", imaps_port(&s));
    assert_eq!(synced(&local.join("Folder")), folder);
    assert_eq!(synced(&local.join("INBOX")), inbox);
}

#[test]
fn a_command_pipelined_after_starttls_is_not_executed() {
    let s = Suite::start("imap-stls", &[], &[]);
    let out = Command::new("python3")
        .arg(client("imap_starttls_injection.py"))
        .arg(imap_port(&s).to_string())
        .arg(ca(&s))
        .args([USER, PASS])
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "STARTTLS a OK Begin TLS negotiation now.",
            "AFTER c OK NOOP completed.",
            "AFTER d BAD Please log in first.",
            "AFTER * BYE Logging out",
            "AFTER e OK Logout completed.",
        ],
        "the injected LOGIN was executed"
    );
}
