//! COMPRESS=DEFLATE (RFC 4978) through the session, with a real flate2
//! client: commands raw-deflated and sync-flushed as a client sends them,
//! responses inflated as they come, fed whole and byte by byte.

mod tempdir;

use std::sync::Arc;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use mailstore::{Options, Store};
use posthorn_imapd::session::{Session, SessionConfig, Step};

fn session(name: &str) -> (Session, tempdir::TempMaildir) {
    let md = tempdir::TempMaildir::new("compress", name);
    let store = Store::create_user(&md, Options::default()).unwrap();
    // No command rate bound: the tests below send floods on purpose (the
    // bound has its own test in session.rs).
    let mut cfg = SessionConfig::standard(proto::imap::Limits::default());
    cfg.commands_per_second = 0;
    let cfg = Arc::new(cfg);
    let (mut s, _) = Session::start(cfg, "alice".into(), store, Some("a0"), b"");
    let greeting = String::from_utf8(s.take_output()).unwrap();
    assert!(greeting.contains(" COMPRESS=DEFLATE"), "{greeting}");
    (s, md)
}

/// The client's two deflate streams (raw DEFLATE, 32 KiB window).
struct Client {
    out: Compress,
    inp: Decompress,
}

impl Client {
    fn new() -> Client {
        Client {
            out: Compress::new(Compression::default(), false),
            inp: Decompress::new(false),
        }
    }

    /// A command as the client sends it: compressed, sync-flushed.
    fn deflate(&mut self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() + 1024);
        let mut rest = plain;
        loop {
            out.reserve(rest.len() + 1024);
            let before = self.out.total_in();
            self.out
                .compress_vec(rest, &mut out, FlushCompress::Sync)
                .unwrap();
            rest = &rest[(self.out.total_in() - before) as usize..];
            if rest.is_empty() && out.len() < out.capacity() {
                return out;
            }
        }
    }

    /// Everything the server's bytes inflate to (all of it: the server
    /// flushes at the end of each batch).
    fn inflate(&mut self, mut data: &[u8]) -> String {
        let mut out = Vec::new();
        loop {
            out.reserve(64 * 1024);
            let before = self.inp.total_in();
            self.inp
                .decompress_vec(data, &mut out, FlushDecompress::None)
                .unwrap();
            data = &data[(self.inp.total_in() - before) as usize..];
            if data.is_empty() && out.len() < out.capacity() {
                return String::from_utf8_lossy(&out).into_owned();
            }
        }
    }
}

fn say(s: &mut Session, line: &str) -> String {
    s.input(line.as_bytes());
    String::from_utf8_lossy(&s.take_output()).into_owned()
}

/// Start compression: the OK comes in the clear.
fn compressed(name: &str) -> (Session, Client, tempdir::TempMaildir) {
    let (mut s, md) = session(name);
    let r = say(&mut s, "c1 COMPRESS DEFLATE\r\n");
    assert_eq!(r, "c1 OK DEFLATE active\r\n");
    (s, Client::new(), md)
}

fn send(s: &mut Session, c: &mut Client, line: &str) -> String {
    let wire = c.deflate(line.as_bytes());
    s.input(&wire);
    let out = s.take_output();
    c.inflate(&out)
}

fn send_bytewise(s: &mut Session, c: &mut Client, line: &str) -> String {
    let wire = c.deflate(line.as_bytes());
    let mut text = String::new();
    for b in &wire {
        s.input(std::slice::from_ref(b));
        // each call's output is complete by itself (sync flush)
        let out = s.take_output();
        text.push_str(&c.inflate(&out));
    }
    text
}

#[test]
fn commands_and_responses_are_compressed() {
    let (mut s, mut c, md) = compressed("basic");
    let r = send(&mut s, &mut c, "a1 NOOP\r\n");
    assert_eq!(r, "a1 OK NOOP completed.\r\n");
    std::fs::write(
        md.join("new/1700000000.M1P1.host"),
        "Subject: hi\nFrom: a@b\n\nhello\n",
    )
    .unwrap();
    let r = send_bytewise(&mut s, &mut c, "a2 SELECT INBOX\r\n");
    assert!(r.contains("* 1 EXISTS\r\n"), "{r}");
    assert!(
        r.ends_with("a2 OK [READ-WRITE] Select completed.\r\n"),
        "{r}"
    );
    let r = send_bytewise(&mut s, &mut c, "a3 FETCH 1 BODY.PEEK[]\r\n");
    assert_eq!(
        r,
        "* 1 FETCH (BODY[] {33}\r\nSubject: hi\r\nFrom: a@b\r\n\r\nhello\r\n)\r\na3 OK Fetch completed.\r\n"
    );
    let r = send(&mut s, &mut c, "a4 COMPRESS DEFLATE\r\n");
    assert_eq!(
        r,
        "a4 NO [COMPRESSIONACTIVE] DEFLATE active via COMPRESS.\r\n"
    );
    // an APPEND literal arrives compressed too
    let msg = "Subject: appended\r\n\r\nbody\r\n";
    let r = send(
        &mut s,
        &mut c,
        &format!("a5 APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()),
    );
    assert!(r.contains("a5 OK [APPENDUID "), "{r}");
    let r = send(&mut s, &mut c, "a6 LOGOUT\r\n");
    assert_eq!(r, "* BYE Logging out\r\na6 OK Logout completed.\r\n");
}

#[test]
fn idle_updates_and_timeouts_are_compressed() {
    let (mut s, mut c, md) = compressed("idle");
    send(&mut s, &mut c, "a1 SELECT INBOX\r\n");
    let r = send(&mut s, &mut c, "a2 IDLE\r\n");
    assert_eq!(r, "+ idling\r\n");
    std::fs::write(md.join("new/1700000001.M2P1.host"), "Subject: x\n\nx\n").unwrap();
    s.notify();
    let out = s.take_output();
    assert_eq!(c.inflate(&out), "* 1 EXISTS\r\n* 1 RECENT\r\n");
    let r = send(&mut s, &mut c, "DONE\r\n");
    assert_eq!(r, "a2 OK Idle completed.\r\n");
    s.timed_out();
    let out = s.take_output();
    assert_eq!(c.inflate(&out), "* BYE Disconnected for inactivity.\r\n");
}

#[test]
fn pipelined_after_compress() {
    // A client that compresses right after its COMPRESS line (RFC 4978
    // 3) may send both in one packet.
    let (mut s, _) = session("pipelined");
    let mut c = Client::new();
    let mut wire = b"c1 COMPRESS DEFLATE\r\n".to_vec();
    wire.extend(c.deflate(b"a1 NOOP\r\n"));
    s.input(&wire);
    let out = s.take_output();
    let plain = b"c1 OK DEFLATE active\r\n";
    assert!(out.starts_with(plain), "{out:?}");
    assert_eq!(c.inflate(&out[plain.len()..]), "a1 OK NOOP completed.\r\n");
}

#[test]
fn unknown_mechanism() {
    let (mut s, _) = session("unknown");
    let r = say(&mut s, "c1 COMPRESS LZW\r\n");
    assert_eq!(r, "c1 NO Unsupported compression mechanism.\r\n");
    let r = say(&mut s, "c2 NOOP\r\n");
    assert_eq!(r, "c2 OK NOOP completed.\r\n");
}

#[test]
fn corrupt_input_ends_the_session() {
    let (mut s, mut c, _) = compressed("corrupt");
    // 0xff: a reserved block type (BTYPE 11)
    let step = s.input(&[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(step, Step::Close);
    let out = s.take_output();
    assert_eq!(c.inflate(&out), "* BYE Invalid compressed data.\r\n");
}

#[test]
fn zip_bomb_meets_the_line_limit() {
    // 64 MiB of one line compress to about 64 KiB; the reader's line
    // limit (64 KiB) still applies: BAD, the line skipped, the next
    // command answered.
    let (mut s, mut c, _) = compressed("bomb");
    let mut plain = vec![b'a'; 64 << 20];
    plain.extend_from_slice(b"\r\nb1 NOOP\r\n");
    let wire = c.deflate(&plain);
    assert!(wire.len() < 256 * 1024, "{}", wire.len());
    let mut text = String::new();
    for piece in wire.chunks(16 * 1024) {
        s.input(piece);
        let out = s.take_output();
        text.push_str(&c.inflate(&out));
    }
    assert!(text.starts_with("* BAD "), "{text}");
    assert!(text.ends_with("b1 OK NOOP completed.\r\n"), "{text}");
}

#[test]
fn output_waits_for_the_client() {
    // 300,000 NOOPs with their own tags: their answers (about 8 MB, a
    // few hundred KiB compressed) are not made in one call: the session
    // stops at 256 KiB of compressed output with Step::More, and goes on
    // when resumed.
    let (mut s, mut c, _) = compressed("more");
    let n = 300_000;
    let plain: String = (0..n).map(|i| format!("t{i} NOOP\r\n")).collect();
    let wire = c.deflate(plain.as_bytes());
    let mut step = s.input(&wire);
    let mut text = String::new();
    let mut calls = 1;
    loop {
        let out = s.take_output();
        assert!(out.len() < 300 * 1024, "{}", out.len());
        text.push_str(&c.inflate(&out));
        if step != Step::More {
            break;
        }
        step = s.resume();
        calls += 1;
    }
    assert_eq!(step, Step::Continue);
    assert!(calls > 1, "{calls}");
    assert_eq!(text.matches(" OK NOOP completed.\r\n").count(), n);
    assert!(text.ends_with(&format!("t{} OK NOOP completed.\r\n", n - 1)));
}
