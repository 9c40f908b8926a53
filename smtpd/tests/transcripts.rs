//! Transcript tests: the SMTP session against C:/S: fixture files.
//!
//! Each file in tests/transcripts/ is a conversation. `C:` lines are sent
//! with CRLF appended, `R:` lines are raw bytes (escapes \r \n \0 \t \\) sent
//! as they are; consecutive client lines are sent in one piece (pipelining).
//! `S:` lines are the exact server lines expected next (a trailing `*`
//! matches any rest of the line). `M:` checks the last queued message (after
//! the Received: header, escapes as in R:). `X:` says the session is closed.
//! `@size N`, `@client ADDR`, `@errors N`, `@recipients N` set up the
//! session; `@commit-fail` makes the next commit fail as a full disk would.
//!
//! Every transcript runs twice: once with each client piece in one call,
//! once byte by byte, and both runs must give the same server lines.

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use common::spool::Envelope;
use posthorn_smtpd::session::{Client, Policy, Session, Sink, SmtpConfig, Step};
use proto::smtp::Reply;

struct FakePolicy;

impl Policy for FakePolicy {
    fn check_recipient(&mut self, client: Option<IpAddr>, rcpt: &str) -> Result<(), Reply> {
        let lower = rcpt.to_ascii_lowercase();
        match lower.rsplit_once('@').map(|(_, d)| d) {
            Some("example.test") => {
                if ["demo@example.test", "bob@example.test"].contains(&lower.as_str()) {
                    Ok(())
                } else {
                    Err(Reply::new(550, Some("5.1.1"), format!("<{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table")))
                }
            }
            _ if self.trusted(client) => Ok(()),
            _ => Err(Reply::new(
                554,
                Some("5.7.1"),
                format!("<{rcpt}>: Relay access denied"),
            )),
        }
    }

    fn trusted(&self, client: Option<IpAddr>) -> bool {
        matches!(client, Some(IpAddr::V4(a)) if a.octets()[0] == 10)
    }
}

#[derive(Default)]
struct MemSink {
    current: Option<Vec<u8>>,
    queued: Vec<Vec<u8>>,
    n: usize,
}

impl Sink for MemSink {
    fn begin(&mut self, _env: &Envelope) -> io::Result<String> {
        self.n += 1;
        self.current = Some(Vec::new());
        Ok(format!("QID{}", self.n))
    }
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.current
            .as_mut()
            .ok_or_else(|| io::Error::other("no message"))?
            .extend_from_slice(data);
        Ok(())
    }
    fn abort(&mut self) {
        self.current = None;
    }
}

fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(o) => panic!("bad escape \\{}", o as char),
            None => panic!("trailing backslash"),
        }
    }
    out
}

fn strip_received(msg: &[u8]) -> &[u8] {
    assert!(
        msg.starts_with(b"Received: "),
        "message starts with Received:"
    );
    let mut i = 0;
    loop {
        let end = msg[i..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| i + p + 2)
            .expect("header line ends");
        i = end;
        if !matches!(msg.get(i), Some(b' ' | b'\t')) {
            return &msg[i..];
        }
    }
}

struct Run {
    session: Session,
    sink: MemSink,
    policy: FakePolicy,
    fail_next_commit: bool,
    closed: bool,
}

impl Run {
    fn feed(&mut self, input: &[u8], bytewise: bool) {
        if bytewise {
            for b in input {
                let step =
                    self.session
                        .input(std::slice::from_ref(b), &mut self.policy, &mut self.sink);
                self.after(step);
            }
        } else {
            let step = self.session.input(input, &mut self.policy, &mut self.sink);
            self.after(step);
        }
    }

    fn after(&mut self, mut step: Step) {
        while step == Step::Commit {
            let result = if std::mem::take(&mut self.fail_next_commit) {
                self.sink.current = None;
                Err("No space left on device".to_string())
            } else {
                let msg = self.sink.current.take().expect("commit with a message");
                self.sink.queued.push(msg);
                Ok(format!("QID{}", self.sink.n))
            };
            step = self
                .session
                .commit_done(result, &mut self.policy, &mut self.sink);
        }
        if step == Step::Close {
            self.closed = true;
        }
    }

    fn take_lines(&mut self) -> Vec<String> {
        let out = std::mem::take(&mut self.session.out);
        let text = String::from_utf8(out).expect("replies are UTF-8");
        text.split_terminator("\r\n").map(str::to_string).collect()
    }
}

fn matches(expected: &str, got: &str) -> bool {
    match expected.strip_suffix('*') {
        Some(prefix) => got.starts_with(prefix),
        None => expected == got,
    }
}

fn run_transcript(path: &Path, bytewise: bool) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut cfg = SmtpConfig {
        myhostname: "mail.example.test".into(),
        banner: "mail.example.test ESMTP posthorn".into(),
        mail_name: "posthorn".into(),
        size_limit: 10_240_000,
        recipient_limit: 1000,
        hard_error_limit: 20,
        vrfy_disabled: false,
        forbid_bare_newline: true,
    };
    let mut client_addr: IpAddr = "192.0.2.1".parse().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len()
        && (lines[i].starts_with('@') || lines[i].starts_with('#') || lines[i].is_empty())
    {
        let l = lines[i];
        if let Some(v) = l.strip_prefix("@size ") {
            cfg.size_limit = v.parse().unwrap();
        } else if let Some(v) = l.strip_prefix("@client ") {
            client_addr = v.parse().unwrap();
        } else if let Some(v) = l.strip_prefix("@errors ") {
            cfg.hard_error_limit = v.parse().unwrap();
        } else if let Some(v) = l.strip_prefix("@recipients ") {
            cfg.recipient_limit = v.parse().unwrap();
        }
        i += 1;
    }
    let policy = FakePolicy;
    let client = Client {
        addr: Some(client_addr),
        name: "unknown".into(),
        trusted: policy.trusted(Some(client_addr)),
    };
    let mut run = Run {
        session: Session::new(Arc::new(cfg), client),
        sink: MemSink::default(),
        policy,
        fail_next_commit: false,
        closed: false,
    };
    run.session.greet();
    let mut transcript = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut expected: Vec<(usize, &str)> = Vec::new();
    let where_ = |n: usize| {
        format!(
            "{}:{}{}",
            path.display(),
            n + 1,
            if bytewise { " (byte by byte)" } else { "" }
        )
    };
    let check = |run: &mut Run, expected: &mut Vec<(usize, &str)>, transcript: &mut Vec<String>| {
        let got = run.take_lines();
        for (k, g) in got.iter().enumerate() {
            let Some((n, e)) = expected.get(k) else {
                panic!(
                    "{}: unexpected server line {g:?} (after {} expected)",
                    where_(expected.last().map_or(0, |x| x.0)),
                    expected.len()
                );
            };
            assert!(matches(e, g), "{}: expected {e:?}, got {g:?}", where_(*n));
        }
        if got.len() < expected.len() {
            let (n, e) = expected[got.len()];
            panic!("{}: expected {e:?}, server sent nothing more", where_(n));
        }
        transcript.extend(got);
        expected.clear();
    };
    for (n, line) in lines.iter().enumerate().skip(i) {
        if line.starts_with('#') {
            continue;
        }
        if let Some(c) = line
            .strip_prefix("C: ")
            .or_else(|| (*line == "C:").then_some(""))
        {
            if !expected.is_empty() {
                check(&mut run, &mut expected, &mut transcript);
            }
            pending.extend_from_slice(c.as_bytes());
            pending.extend_from_slice(b"\r\n");
        } else if let Some(r) = line.strip_prefix("R: ") {
            if !expected.is_empty() {
                check(&mut run, &mut expected, &mut transcript);
            }
            pending.extend(unescape(r));
        } else if let Some(s) = line.strip_prefix("S: ") {
            if !pending.is_empty() {
                let p = std::mem::take(&mut pending);
                run.feed(&p, bytewise);
            }
            expected.push((n, s));
        } else if *line == "@commit-fail" {
            run.fail_next_commit = true;
        } else if let Some(m) = line
            .strip_prefix("M: ")
            .or_else(|| (*line == "M:").then_some(""))
        {
            if !pending.is_empty() {
                let p = std::mem::take(&mut pending);
                run.feed(&p, bytewise);
            }
            check(&mut run, &mut expected, &mut transcript);
            let last = run
                .sink
                .queued
                .last()
                .unwrap_or_else(|| panic!("{}: no message queued", where_(n)));
            let body = strip_received(last);
            assert_eq!(
                String::from_utf8_lossy(body),
                String::from_utf8_lossy(&unescape(m)),
                "{}: queued message",
                where_(n)
            );
        } else if *line == "X:" {
            if !pending.is_empty() {
                let p = std::mem::take(&mut pending);
                run.feed(&p, bytewise);
            }
            check(&mut run, &mut expected, &mut transcript);
            assert!(run.closed, "{}: session should be closed", where_(n));
        } else if !line.is_empty() {
            panic!("{}: bad transcript line {line:?}", where_(n));
        }
    }
    if !pending.is_empty() {
        let p = std::mem::take(&mut pending);
        run.feed(&p, bytewise);
    }
    check(&mut run, &mut expected, &mut transcript);
    transcript
}

#[test]
fn transcripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 8, "transcript files found: {}", files.len());
    for f in files {
        let whole = run_transcript(&f, false);
        let bytewise = run_transcript(&f, true);
        assert_eq!(
            whole,
            bytewise,
            "{}: byte-by-byte feeding changed the replies",
            f.display()
        );
    }
}
