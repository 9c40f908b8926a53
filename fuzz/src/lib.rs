//! posthorn's fuzz harnesses: one function per parser of untrusted input.
//!
//! Owns what each fuzz target feeds its parser and the properties it checks
//! beyond "does not panic": streaming parsers give the same result for any
//! split of their input, replies never carry a bare CR or LF, DATA ends
//! exactly where a reference reading of RFC 5321 says it ends. The binaries in
//! src/bin/ wrap these functions in `afl::fuzz!`; tests/corpus.rs runs every
//! committed seed and regression input through them without AFL.
//!
//! Does not own the parsers (proto, common, smtpd) or how a crash becomes a
//! regression test (a `#[test]` in the crate that owns the parser).
//!
//! Standards: RFC 5321 2.3.8, 4.1.1.4, 4.2, 4.5.2 (the DATA oracle and the
//! reply line shape); RFC 3030 2 (BDAT).
//!
//! Security: every function here takes attacker-shaped bytes; a panic, an
//! abort or a hang is a finding. Assertions state the property they guard.
//!
//! Diagnostics: a failed property panics with what differed; afl-fuzz records
//! the input under fuzz/out/TARGET/default/crashes/.

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::addr::{self, Domains, Route};
use common::config::Config;
use common::spool::{Envelope, QueueFile};
use posthorn_smtpd::session::{Client, Policy, Session, Sink, SmtpConfig, Step};
use proto::smtp::{self, BdatReceiver, DataReceiver, LineBuffer, Reply};

/// A harness: takes the fuzzer's bytes, panics on a finding.
pub type Harness = fn(&[u8]);

/// Every fuzz target: its name (the binary and corpus directory) and harness.
pub const TARGETS: &[(&str, Harness)] = &[
    ("smtp_command", smtp_command),
    ("smtp_data", smtp_data),
    ("smtpd_session", smtpd_session),
    ("queue_file", queue_file),
    ("ipc_frame", ipc_frame),
    ("main_cf", main_cf),
    ("master_cf", master_cf),
    ("users_file", users_file),
    ("ipc_lines", ipc_lines),
];

/// Chunk lengths for feeding `len` bytes to a streaming parser. `seed` 0 is
/// one chunk; otherwise lengths are 1..=seed, drawn from a small generator so
/// that the fuzzer controls the split with one byte.
pub fn split_points(seed: u8, len: usize) -> Vec<usize> {
    if seed == 0 || len == 0 {
        return if len == 0 { Vec::new() } else { vec![len] };
    }
    let mut state = u32::from(seed).wrapping_mul(0x9e37_79b9) | 1;
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state % u32::from(seed)) as usize + 1;
        let n = n.min(left);
        out.push(n);
        left -= n;
    }
    out
}

/// Cut `data` into the chunks `split_points` gives.
fn chunks(seed: u8, data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    for n in split_points(seed, data.len()) {
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

/// RFC 5321 4.2: every reply line is three digits, "-" or SP or nothing, text
/// without CR, LF or other controls, and CRLF.
fn assert_reply_lines(out: &[u8]) {
    assert!(
        out.is_empty() || out.ends_with(b"\r\n"),
        "reply output does not end in CRLF: {out:?}"
    );
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line
            .strip_suffix(b"\r")
            .unwrap_or_else(|| panic!("reply line with a bare LF: {line:?}"));
        assert!(
            line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit),
            "reply line without a code: {line:?}"
        );
        assert!(
            line.len() == 3 || matches!(line[3], b' ' | b'-'),
            "reply code not followed by SP or '-': {line:?}"
        );
        assert!(
            !line
                .iter()
                .any(|&b| b == b'\r' || (b < 0x20 && b != b'\t') || b == 0x7f),
            "control character in a reply line: {line:?}"
        );
    }
}

fn assert_reply(r: &Reply) {
    assert!((200..=599).contains(&r.code), "reply code {}", r.code);
    assert_reply_lines(&r.to_bytes());
}

/// Command lines: bytes through `LineBuffer` (in chunks the first byte picks,
/// and at once; both must give the same lines), each line through
/// `parse_command` and the address helpers.
pub fn smtp_command(data: &[u8]) {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let drain = |lb: &mut LineBuffer, lines: &mut Vec<Result<Vec<u8>, smtp::LineTooLong>>| {
        while let Some(l) = lb.next_line() {
            lines.push(l);
        }
    };
    let mut whole = LineBuffer::new(smtp::MAX_COMMAND_LINE);
    let mut lines_whole = Vec::new();
    whole.push(input);
    drain(&mut whole, &mut lines_whole);
    let mut split = LineBuffer::new(smtp::MAX_COMMAND_LINE);
    let mut lines_split = Vec::new();
    for c in chunks(seed, input) {
        split.push(c);
        drain(&mut split, &mut lines_split);
        // The documented bound: an unterminated line costs at most max_len.
        assert!(split.buffered_len() < smtp::MAX_COMMAND_LINE);
    }
    assert_eq!(
        lines_whole, lines_split,
        "lines depend on how input is split"
    );
    assert_eq!(whole.take_buffered(), split.take_buffered());
    for line in lines_whole {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                assert_reply(&e.reply());
                continue;
            }
        };
        // RFC 5321 4.5.3.1.4: 512 octets with the CRLF.
        assert!(line.len() < smtp::MAX_COMMAND_LINE);
        assert!(!line.contains(&b'\n'));
        match smtp::parse_command(&line) {
            Ok(cmd) => {
                assert!(!cmd.verb().is_empty());
            }
            Err(r) => {
                assert!(r.is_permanent(), "syntax error reply {r}");
                assert_reply(&r);
            }
        }
        if let Ok(s) = std::str::from_utf8(&line) {
            smtp::is_domain(s);
            smtp::is_address_literal(s);
            smtp::is_ascii_address(s);
            if let Some((local, domain)) = smtp::split_address(s) {
                assert!(s.len() > local.len() + domain.len());
            }
        }
    }
}

/// Remove the dot at the start of each line (RFC 5321 4.5.2), reading line
/// starts off the raw input: the start, and after each CR LF.
fn unstuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        let line_start = i == 0 || (i >= 2 && &raw[i - 2..i] == b"\r\n");
        if !(b == b'.' && line_start) {
            out.push(b);
        }
    }
    out
}

/// DATA and BDAT bodies. First byte: bit 0 picks BDAT, the rest is the split
/// seed. DATA is checked against a reference: the message ends at the first
/// CR LF "." CR LF (the start counting as after CR LF), and nowhere else.
pub fn smtp_data(data: &[u8]) {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let seed = mode >> 1;
    if mode & 1 == 1 {
        let Some((size, input)) = input.split_first_chunk::<2>() else {
            return;
        };
        let size = u64::from(u16::from_le_bytes(*size));
        let mut rx = BdatReceiver::new(size);
        let mut out = Vec::new();
        let mut consumed = 0;
        for c in chunks(seed, input) {
            if rx.is_done() {
                break;
            }
            let p = rx.feed(c, &mut out);
            assert!(p.consumed <= c.len());
            assert_eq!(p.done, rx.is_done());
            consumed += p.consumed;
            if !p.done {
                assert_eq!(p.consumed, c.len(), "BDAT stopped early");
            }
        }
        let want = (size as usize).min(input.len());
        assert_eq!(consumed, want);
        assert_eq!(out, &input[..want]);
        assert_eq!(rx.bytes_out(), want as u64);
        assert_eq!(rx.remaining(), size - want as u64);
        return;
    }

    let run = |pieces: Vec<&[u8]>| {
        let mut rx = DataReceiver::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        for c in pieces {
            let p = rx.feed(c, &mut out);
            assert!(p.consumed <= c.len());
            assert_eq!(p.done, rx.is_done());
            consumed += p.consumed;
            if p.done {
                break;
            }
            assert_eq!(p.consumed, c.len(), "DATA stopped before the end");
        }
        assert_eq!(rx.bytes_out(), out.len() as u64);
        assert!(out.len() <= consumed, "output longer than input");
        (
            out,
            consumed,
            rx.is_done(),
            rx.bare_lf_seen(),
            rx.bare_cr_seen(),
        )
    };
    let whole = run(vec![input]);
    let split = run(chunks(seed, input));
    assert_eq!(whole, split, "DATA result depends on how input is split");
    let (out, consumed, done, bare_lf, bare_cr) = whole;

    // The reference: "\r\n" + input, first "\r\n.\r\n".
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(input);
    let end = framed.windows(5).position(|w| w == b"\r\n.\r\n");
    assert_eq!(
        done,
        end.is_some(),
        "end of DATA disagrees with RFC 5321 4.1.1.4"
    );
    match end {
        Some(p) => {
            // In input offsets the marker starts at p - 2; its CR LF belongs
            // to the message (there is none when the input starts with ".").
            assert_eq!(consumed, p + 3, "DATA ended at the wrong byte");
            let content = &input[..p.saturating_sub(2)];
            let mut expect = unstuff(content);
            if p > 0 {
                expect.extend_from_slice(b"\r\n");
            }
            assert_eq!(out, expect, "unstuffed message differs");
            let mut body = content.to_vec();
            if p > 0 {
                body.extend_from_slice(b"\r\n");
            }
            let ref_lf = body
                .iter()
                .enumerate()
                .any(|(i, &b)| b == b'\n' && (i == 0 || body[i - 1] != b'\r'));
            let ref_cr = body
                .iter()
                .enumerate()
                .any(|(i, &b)| b == b'\r' && body.get(i + 1) != Some(&b'\n'));
            assert_eq!(bare_lf, ref_lf, "bare LF flag");
            assert_eq!(bare_cr, ref_cr, "bare CR flag");
        }
        None => {
            assert_eq!(consumed, input.len());
            // At most "." CR is held back, which unstuffs to CR.
            let expect = unstuff(input);
            assert!(
                expect.starts_with(&out),
                "DATA output is not the unstuffed input"
            );
            assert!(expect.len() - out.len() <= 1, "DATA held back too much");
        }
    }
}

/// The policy for the session target: the real domain routing, a fixed user
/// list, relaying for 10/8.
struct FuzzPolicy {
    domains: Domains,
}

impl Policy for FuzzPolicy {
    fn check_recipient(&mut self, client: Option<IpAddr>, rcpt: &str) -> Result<(), Reply> {
        let key = addr::lookup_key(rcpt, &self.domains.delimiter);
        let known = match self.domains.route(rcpt) {
            Route::Virtual => ["demo@example.test", "bob@example.test"].contains(&key.as_str()),
            Route::System => matches!(addr::split(&key).0, "postmaster" | "root"),
            Route::Remote => self.trusted(client),
        };
        if known {
            Ok(())
        } else {
            Err(Reply::new(
                550,
                Some("5.1.1"),
                format!("<{rcpt}>: Recipient address rejected"),
            ))
        }
    }

    fn trusted(&self, client: Option<IpAddr>) -> bool {
        matches!(client, Some(IpAddr::V4(a)) if a.octets()[0] == 10)
    }
}

/// Keeps message bodies (without the Received: header, which holds the time).
#[derive(Default)]
struct MemSink {
    n: usize,
    current: Option<Vec<u8>>,
    header_seen: bool,
    queued: Vec<Vec<u8>>,
}

impl Sink for MemSink {
    fn begin(&mut self, env: &Envelope) -> io::Result<String> {
        assert!(
            !env.recipients.is_empty(),
            "message begun without recipients"
        );
        self.n += 1;
        self.current = Some(Vec::new());
        self.header_seen = false;
        Ok(format!("FUZZ{}", self.n))
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let cur = self.current.as_mut().expect("write without begin");
        if !std::mem::replace(&mut self.header_seen, true) {
            return Ok(());
        }
        cur.extend_from_slice(data);
        Ok(())
    }

    fn abort(&mut self) {
        self.current = None;
    }
}

/// What a session did: its output, where in the output it paused and for how
/// long, and the messages queued.
type SessionResult = (Vec<u8>, Vec<(usize, Duration)>, Vec<Vec<u8>>);

/// One whole session over `input`, cut into `pieces`, driven as the event
/// loop drives it (commits succeed, pauses are resumed at once).
fn session_run(cfg: &Arc<SmtpConfig>, addr: IpAddr, pieces: Vec<&[u8]>) -> SessionResult {
    let mut policy = FuzzPolicy {
        domains: Domains {
            virtual_domains: vec!["example.test".into()],
            mydestination: vec!["localhost".into(), "mail.example.test".into()],
            delimiter: "+".into(),
        },
    };
    let client = Client {
        addr: Some(addr),
        name: "client.example".into(),
        trusted: policy.trusted(Some(addr)),
    };
    let mut sink = MemSink::default();
    let mut s = Session::new(cfg.clone(), client);
    s.greet();
    let mut out = std::mem::take(&mut s.out);
    let mut pauses = Vec::new();
    'feed: for piece in pieces {
        assert!(!s.busy());
        let mut step = s.input(piece, &mut policy, &mut sink);
        loop {
            out.append(&mut s.out);
            step = match step {
                Step::Continue => break,
                Step::Close => break 'feed,
                Step::Commit => {
                    let msg = sink.current.take().expect("commit with a message");
                    sink.queued.push(msg);
                    s.commit_done(Ok(format!("FUZZ{}", sink.n)), &mut policy, &mut sink)
                }
                Step::Pause(d) => {
                    assert!(s.busy(), "not busy while paused");
                    pauses.push((out.len(), d));
                    s.resume(&mut policy, &mut sink)
                }
            };
        }
    }
    s.disconnected("");
    (out, pauses, sink.queued)
}

/// The smtpd session from the outside: the first byte picks the split, the
/// second the client (10.0.0.1 trusted, or 192.0.2.1) and limits; the rest is
/// what the client sends. Whole and split runs must give the same replies,
/// pauses and messages, and every reply line must be well formed.
pub fn smtpd_session(data: &[u8]) {
    let [seed, knobs, input @ ..] = data else {
        return;
    };
    let cfg = Arc::new(SmtpConfig {
        myhostname: "mail.example.test".into(),
        banner: "mail.example.test ESMTP posthorn".into(),
        mail_name: "posthorn".into(),
        // Small limits so the fuzzer reaches them.
        size_limit: if knobs & 1 == 0 { 10_240_000 } else { 64 },
        recipient_limit: if knobs & 2 == 0 { 1000 } else { 2 },
        recipient_overshoot_limit: if knobs & 2 == 0 { 1000 } else { 3 },
        soft_error_limit: if knobs & 64 == 0 { 10 } else { 1 },
        error_sleep_time: Duration::from_secs(1),
        hard_error_limit: if knobs & 4 == 0 { 20 } else { 3 },
        junk_command_limit: if knobs & 128 == 0 { 100 } else { 3 },
        vrfy_disabled: knobs & 8 != 0,
        forbid_bare_newline: knobs & 16 == 0,
    });
    let addr: IpAddr = if knobs & 32 == 0 {
        IpAddr::from([192, 0, 2, 1])
    } else {
        IpAddr::from([10, 0, 0, 1])
    };
    let whole = session_run(&cfg, addr, vec![input]);
    let split = session_run(&cfg, addr, chunks(*seed, input));
    assert_eq!(
        String::from_utf8_lossy(&whole.0),
        String::from_utf8_lossy(&split.0),
        "replies depend on how input is split"
    );
    assert_eq!(whole.1, split.1, "pauses depend on how input is split");
    assert_eq!(whole.2, split.2, "messages depend on how input is split");
    assert_reply_lines(&whole.0);
}

/// A queue file's envelope: the bytes in a memory file (memfd), read by
/// `QueueFile::from_file` as `read` and `open_in` do after opening.
pub fn queue_file(data: &[u8]) {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let fd = memfd_create(c"posthorn-fuzz-queue-file", MemFdCreateFlag::MFD_CLOEXEC)
        .expect("memfd_create");
    let mut file = std::fs::File::from(fd);
    file.write_all(data).expect("write to a memory file");
    let path = PathBuf::from("/nonexistent/fuzz/queue-file");
    if let Ok(qf) = QueueFile::from_file(file, path) {
        assert!(!qf.recipients.is_empty());
        assert_eq!(qf.msg_offset + qf.msg_len, data.len() as u64);
        for r in &qf.recipients {
            // mark_done rewrites this byte: it must be the record's type.
            let at = usize::try_from(r.offset).expect("offset in the file");
            assert!(matches!(data[at], b'R' | b'D'), "recipient offset");
            assert_eq!(data[at] == b'D', r.done);
        }
        qf.pending();
        qf.attr("client_addr");
    }
}

/// IPC frames, decoded as each message type a peer may be sent; a decoded
/// message must encode back to the same frame. The buffered `FrameReader`
/// (local's requests, qmgr's replies) must decode the same frames as
/// `read_frame`, whatever pieces the stream arrives in.
pub fn ipc_frame(data: &[u8]) {
    use common::ipc::{self, DeliverReply, DeliverRequest, FrameReader};
    /// Hands out `data` in reads of at most `step` bytes.
    struct Pieces<'a>(&'a [u8], usize);
    impl io::Read for Pieces<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    fn each<T>(data: &[u8])
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let mut r = data;
        let mut frames = Vec::new();
        // Several frames back to back, as a stream carries them.
        while let Ok(Some(msg)) = ipc::read_frame::<_, T>(&mut r) {
            let mut buf = Vec::new();
            ipc::write_frame(&mut buf, &msg).expect("re-encode");
            let again: T = ipc::read_frame(&mut &buf[..])
                .expect("decode")
                .expect("a frame");
            assert_eq!(again, msg, "IPC round trip");
            frames.push(msg);
        }
        for step in [1, 7, 4096, data.len().max(1)] {
            let mut fr = FrameReader::new();
            let mut src = Pieces(data, step);
            let mut got = Vec::new();
            while let Ok(Some(msg)) = fr.read::<_, T>(&mut src) {
                got.push(msg);
            }
            assert_eq!(got, frames, "FrameReader with reads of {step}");
        }
    }
    each::<DeliverRequest>(data);
    each::<DeliverReply>(data);
}

/// A fixed config directory for the config targets (never read).
fn etc() -> &'static Path {
    Path::new("/nonexistent/fuzz/etc")
}

/// main.cf text (after the UTF-8 check `Config::load` makes), then everything
/// the daemons ask of it: validation, expansion of every name, the typed
/// getters and the derived settings.
pub fn main_cf(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = Config::parse(etc(), "main.cf", text) else {
        return;
    };
    cfg.validate();
    for name in cfg.explicit_names() {
        let _ = cfg.get_checked(name);
        cfg.get(name);
        let _ = cfg.int(name);
        let _ = cfg.time(name);
        let _ = cfg.bool(name);
        cfg.list(name);
    }
    cfg.unknown_names();
    let _ = SmtpConfig::from_config(&cfg);
    Domains::from_config(&cfg);
    cfg.users_file();
    cfg.queue_dir();
    cfg.pid_file();
}

/// master.cf text, and the listen addresses of each inet service.
pub fn master_cf(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // default_process_limit
    let Ok(services) = common::mastercf::parse("master.cf", text, 100) else {
        return;
    };
    for s in &services {
        assert!(s.maxproc > 0);
        s.key();
        if s.kind == common::mastercf::ServiceType::Inet {
            for (ifs, proto) in [(vec![], "all"), (vec!["loopback-only".into()], "ipv4")] {
                let _ = common::mastercf::inet_addresses(&s.name, &ifs, proto);
            }
        }
    }
}

/// The users file (Dovecot passwd-file lines).
pub fn users_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(users) = common::users::parse("users", text) {
        for (key, u) in &users {
            assert_eq!(key, &u.address);
            assert_eq!(key, &key.to_ascii_lowercase());
            assert!(u.home.as_ref().is_none_or(|h| h.is_absolute()));
        }
    }
}

/// The small line and record protocols between daemons: anvil's requests
/// (common::server::anvil), qmgr's wake-up lines (posthorn_qmgr::Wake) and
/// the worker status records (common::status). The first byte picks the
/// split. Checks: the wake-up parse names the same ids for any split;
/// anvil answers only well-formed lines, one line per `C`, and forgets
/// everything a peer held once the peer closes; status records that decode
/// encode back to the same bytes.
pub fn ipc_lines(data: &[u8]) {
    use common::server::anvil::AnvilService;
    use common::server::{Next, Peer, Service};
    use common::status::{Status, RECORD};

    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    // qmgr's wake-up lines, whole and split.
    let mut whole = Vec::new();
    let scan_whole = posthorn_qmgr::Wake::default().feed(data, &mut whole);
    let mut split = Vec::new();
    let mut w = posthorn_qmgr::Wake::default();
    let mut scan_split = false;
    for piece in chunks(seed, data) {
        scan_split |= w.feed(piece, &mut split);
    }
    assert_eq!(whole, split, "wake-up ids depend on the split");
    assert_eq!(scan_whole, scan_split, "scan request depends on the split");

    // anvil: three peers take turns by piece; then all close.
    let peer = Peer {
        addr: None,
        port: 0,
    };
    let mut svc = AnvilService::default();
    let mut conns: Vec<Option<_>> = (0..3)
        .map(|_| Some(svc.open(peer, &mut Vec::new()).0))
        .collect();
    for (i, piece) in chunks(seed, data).into_iter().enumerate() {
        let slot = &mut conns[i % 3];
        let Some(c) = slot.as_mut() else { continue };
        let mut out = Vec::new();
        let next = svc.input(c, piece, &mut out);
        let text = String::from_utf8(out).expect("anvil answers in ASCII");
        for line in text.lines() {
            let mut f = line.split(' ');
            let n: u32 = f.next().and_then(|n| n.parse().ok()).expect("count");
            let t: u32 = f.next().and_then(|n| n.parse().ok()).expect("total");
            assert!(n >= 1 && t >= n && f.next().is_none(), "answer {line:?}");
        }
        if matches!(next, Next::Close) {
            if let Some(c) = slot.take() {
                svc.closed(c, false);
            }
        }
    }
    for c in conns.into_iter().flatten() {
        svc.closed(c, true);
    }
    let (mut fresh, _) = svc.open(peer, &mut Vec::new());
    let mut out = Vec::new();
    let _ = svc.input(&mut fresh, b"C smtp 192.0.2.1\n", &mut out);
    assert_eq!(out, b"1 1\n", "counts left behind by closed peers");

    // Status records.
    for c in data.chunks_exact(RECORD) {
        let mut r = [0u8; RECORD];
        r.copy_from_slice(c);
        if let Some((pid, s)) = Status::decode(&r) {
            assert_eq!(Status::decode(&s.encode(pid)), Some((pid, s)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_points_cover_the_input() {
        for seed in 0..=255u8 {
            for len in [0, 1, 7, 600] {
                let p = split_points(seed, len);
                assert_eq!(p.iter().sum::<usize>(), len);
                assert!(p
                    .iter()
                    .all(|&n| n > 0 && (seed == 0 || n <= usize::from(seed))));
            }
        }
    }

    /// Every committed seed and every regression input (fuzz/regressions/
    /// TARGET/, crashes found and fixed) passes its harness without AFL.
    #[test]
    fn corpus_and_regressions_pass() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (name, harness) in TARGETS {
            let mut seen = 0;
            for dir in ["corpus", "regressions"] {
                let Ok(entries) = std::fs::read_dir(base.join(dir).join(name)) else {
                    continue;
                };
                for e in entries {
                    let path = e.expect("directory entry").path();
                    let data = std::fs::read(&path).expect("seed");
                    eprintln!("{name}: {}", path.display());
                    harness(&data);
                    seen += 1;
                }
            }
            assert!(seen > 0, "no seeds for {name}");
        }
    }

    #[test]
    fn unstuff_reference() {
        assert_eq!(unstuff(b"..a\r\n.b\r\nc.d"), b".a\r\nb\r\nc.d");
    }
}
