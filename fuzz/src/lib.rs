//! posthorn's fuzz harnesses: one function per parser of untrusted input.
//!
//! Owns what each fuzz target feeds its parser and the properties it checks
//! beyond "does not panic": streaming parsers give the same result for any
//! split of their input, replies never carry a bare CR or LF, DATA ends
//! exactly where a reference reading of RFC 5321 says it ends. The binaries in
//! src/bin/ wrap these functions in `afl::fuzz!`; tests/corpus.rs runs every
//! committed seed and regression input through them without AFL.
//!
//! Does not own the parsers (proto, common, smtpd, pop3d) or how a crash
//! becomes a regression test (a `#[test]` in the crate that owns the
//! parser). The POP3 and SASL harnesses are in `pop3`, the client-name one
//! in `peer_name`, the 7-bit downgrade's in `downgrade`,
//! DKIM signing and ARC sealing's in `dkim_sign`, the DNS records'
//! verdicts in `records`.
//!
//! Standards: RFC 5321 2.3.8, 4.1.1.4, 4.2, 4.5.2 (the DATA oracle and the
//! reply line shape); RFC 3030 2 (BDAT); RFC 3207 5 (nothing after STARTTLS
//! is answered in the clear); RFC 3501 5.1.3 (modified UTF-7 folder names);
//! Dovecot's Maildir formats (mailstore).
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
use posthorn_smtpd::restrictions::Restriction;
use posthorn_smtpd::session::{
    Accepted, Client, Policy, Session, Sink, SmtpConfig, StartTlsOffer, Step,
};
use proto::smtp::{self, BdatReceiver, DataReceiver, LineBuffer, Reply};

mod authenticate;
mod dkim_sign;
mod downgrade;
mod imap;
mod imap_session;
mod mta_sts;
mod peer_name;
mod pop3;
mod records;
pub use authenticate::authenticate;
pub use dkim_sign::dkim_sign;
pub use downgrade::downgrade;
pub use imap::imap_command;
pub use imap_session::{imap_login, imap_session};
pub use mta_sts::mta_sts_policy;
pub use peer_name::peer_name;
pub use pop3::{pop3_command, pop3_login, pop3_session, sasl};
pub use records::dns_records;

/// A harness: takes the fuzzer's bytes, panics on a finding.
pub type Harness = fn(&[u8]);

/// Every fuzz target: its name (the binary and corpus directory) and harness.
pub const TARGETS: &[(&str, Harness)] = &[
    ("smtp_command", smtp_command),
    ("smtp_reply", smtp_reply),
    ("smtp_data", smtp_data),
    ("smtpd_session", smtpd_session),
    ("queue_file", queue_file),
    ("ipc_frame", ipc_frame),
    ("main_cf", main_cf),
    ("text_table", text_table),
    ("master_cf", master_cf),
    ("users_file", users_file),
    ("maildrop", maildrop),
    ("aliases", aliases),
    ("ipc_lines", ipc_lines),
    ("handoff_frames", handoff_frames),
    ("auth_request", auth_request),
    ("password_hash", password_hash),
    ("pop3_command", pop3_command),
    ("pop3_login", pop3_login),
    ("pop3_session", pop3_session),
    ("sasl", sasl),
    ("maildir_uidlist", maildir_uidlist),
    ("maildir_modseq", maildir_modseq),
    ("maildir_keywords", maildir_keywords),
    ("maildirsize", maildirsize),
    ("maildir_filename", maildir_filename),
    ("maildir_subscriptions", maildir_subscriptions),
    ("imap_command", imap_command),
    ("imap_login", imap_login),
    ("imap_session", imap_session),
    ("peer_name", peer_name),
    ("downgrade", downgrade),
    ("dkim_sign", dkim_sign),
    ("virtual_alias", virtual_alias),
    ("authenticate", authenticate),
    ("mta_sts_policy", mta_sts_policy),
    ("dns_records", dns_records),
];

/// In smtpd_session input: a TLS handshake ends here. What comes before it
/// (since the last mark) is the clear text, what follows is under TLS.
pub const TLS_MARK: &[u8] = b"\0TLS\0";

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

/// A server's replies as the outbound client reads them:
/// `proto::smtp::client::ReplyReader` on the bytes in chunks the first byte
/// picks and at once (the same replies, and the same error, either way),
/// each reply's capabilities and display; every reply within the bounds.
pub fn smtp_reply(data: &[u8]) {
    use proto::smtp::client::{Capabilities, ReplyReader, MAX_REPLY_LINES};
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let read = |pieces: Vec<&[u8]>| {
        let mut r = ReplyReader::new();
        let mut got = Vec::new();
        for p in pieces {
            r.feed(p);
            while let Some(x) = r.next_reply() {
                let stop = x.is_err();
                got.push(x);
                if stop {
                    return got;
                }
            }
        }
        got
    };
    let whole = read(vec![input]);
    let split = read(chunks(seed, input));
    assert_eq!(whole, split, "replies depend on how input is split");
    for r in whole.into_iter().flatten() {
        assert!((200..=599).contains(&r.code), "code {}", r.code);
        assert!(!r.lines.is_empty() && r.lines.len() <= MAX_REPLY_LINES);
        let shown = r.to_string();
        assert!(!shown.contains(['\r', '\n']), "{shown:?}");
        let dsn = r.dsn();
        assert_eq!(dsn.as_bytes()[0], b'0' + (r.code / 100) as u8, "{dsn}");
        let caps = Capabilities::from_ehlo(&r);
        let _ = caps.refuses_size(u64::MAX);
    }
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
                // DSN values the parser takes are what the queue file
                // keeps (and what a notification and the next hop get).
                match &cmd {
                    smtp::Command::Mail { params, .. } => {
                        if let Some(e) = &params.envid {
                            assert!(common::dsn::valid_envid(e), "ENVID {e:?}");
                        }
                    }
                    smtp::Command::Rcpt { params, .. } => {
                        if let Some(o) = &params.orcpt {
                            assert!(common::dsn::orcpt_parts(o).is_some(), "ORCPT {o:?}");
                        }
                        if let Some(n) = &params.notify {
                            assert!(common::dsn::Notify::parse(n).is_some(), "NOTIFY {n:?}");
                        }
                    }
                    _ => {}
                }
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
    fn check_recipient(
        &mut self,
        client: Option<IpAddr>,
        rcpt: &str,
        authenticated: bool,
    ) -> Result<Accepted, Reply> {
        let key = addr::lookup_key(rcpt, &self.domains.delimiter);
        let known = match self.domains.route(rcpt) {
            Route::Virtual => ["demo@example.test", "bob@example.test"].contains(&key.as_str()),
            Route::System => matches!(addr::split(&key).0, "postmaster" | "root"),
            Route::Remote => authenticated || self.trusted(client),
        };
        if known {
            Ok(Accepted::Itself)
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

/// One whole session over `segments` (the input between TLS marks), each
/// cut into pieces, driven as the event loop drives it (commits succeed,
/// pauses are resumed at once; after `Step::StartTls` nothing more of the
/// segment is fed, the handshake "succeeds" and the next segment follows).
fn session_run(cfg: &Arc<SmtpConfig>, addr: IpAddr, segments: Vec<Vec<&[u8]>>) -> SessionResult {
    let mut policy = FuzzPolicy {
        domains: Domains {
            virtual_domains: vec!["example.test".into()],
            mydestination: vec!["localhost".into(), "mail.example.test".into()],
            delimiter: "+".into(),
        },
    };
    let client = Client {
        addr: Some(addr),
        port: 587,
        name: "client.example".into(),
        trusted: policy.trusted(Some(addr)),
    };
    let mut sink = MemSink::default();
    let mut s = Session::new(cfg.clone(), client);
    s.greet();
    let mut out = std::mem::take(&mut s.out);
    let mut pauses = Vec::new();
    let info = common::tls::TlsInfo {
        protocol: "TLSv1.3".into(),
        cipher: "TLS_AES_256_GCM_SHA384".into(),
        bits: 256,
    };
    'feed: for pieces in segments {
        let mut secured = false;
        for piece in pieces {
            assert!(!s.busy());
            let mut step = s.input(piece, &mut policy, &mut sink);
            loop {
                out.append(&mut s.out);
                step = match step {
                    Step::Continue => break,
                    Step::Close => break 'feed,
                    Step::Authenticate => {
                        assert!(s.busy(), "not busy while authenticating");
                        // Every other message fails DMARC under enforcement.
                        let a = posthorn_smtpd::session::Authenticated {
                            header: "Authentication-Results: mail.example.test; none\r\n".into(),
                            summary: "none".into(),
                            reject: (sink.n % 2 == 0).then(|| "example.org".into()),
                            quarantine: false,
                        };
                        s.authenticated(Some(a), &mut policy, &mut sink)
                    }
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
                    Step::Verify => {
                        // posthorn-auth's answer: demo@example.test with
                        // password x, else a failure with its delay.
                        let c = s.take_credentials().expect("credentials to verify");
                        let answer = if c.user.eq_ignore_ascii_case("demo@example.test")
                            && c.password == "x"
                        {
                            common::auth::AuthReply::Ok(common::auth::UserInfo {
                                user: "demo@example.test".into(),
                                uid: 0,
                                gid: 0,
                                home: Default::default(),
                                maildir: Default::default(),
                                quota: Default::default(),
                                default_privs: false,
                            })
                        } else {
                            common::auth::AuthReply::Failed {
                                delay_ms: 2000,
                                reason: common::auth::FailReason::Credentials,
                            }
                        };
                        s.auth_done(Ok(answer), &mut policy, &mut sink)
                    }
                    Step::StartTls => {
                        // RFC 3207 5: the 220 is the last thing said in the clear.
                        assert!(
                            out.ends_with(b"220 2.0.0 Ready to start TLS\r\n"),
                            "output after STARTTLS in the clear"
                        );
                        secured = true;
                        s.tls_secured(&info, &mut policy, &mut sink)
                    }
                };
            }
            if secured {
                break; // the rest of this segment would be the TLS records
            }
        }
    }
    s.disconnected("");
    (out, pauses, sink.queued)
}

/// The smtpd session from the outside: the first byte picks the split (and
/// whether mail needs AUTH), the second the client (10.0.0.1 trusted, or
/// 192.0.2.1) and limits; AUTH verifies demo@example.test with password x; the rest is
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
        starttls: if seed & 0x40 == 0 {
            StartTlsOffer::Offered
        } else {
            StartTlsOffer::NoCertificate
        },
        tls_required: seed & 0x80 != 0,
        // AUTH on (in the clear too unless knobs say TLS only: the client
        // is not loopback, hence cleartext allowed); the submission
        // restrictions on half the time.
        sasl: true,
        tls_auth_only: knobs & 8 != 0,
        cleartext_allowed: true,
        client_restrictions: if seed & 0x20 == 0 {
            Vec::new()
        } else {
            vec![Restriction::PermitSaslAuthenticated, Restriction::Reject]
        },
        sender_restrictions: vec![Restriction::RejectSenderLoginMismatch],
        sender_login_maps: None,
        delimiter: "+".into(),
        authenticate: true,
        authserv_id: "mail.example.test".into(),
    });
    let addr: IpAddr = if knobs & 32 == 0 {
        IpAddr::from([192, 0, 2, 1])
    } else {
        IpAddr::from([10, 0, 0, 1])
    };
    let segments = split_at_marks(input, TLS_MARK);
    let whole = session_run(&cfg, addr, segments.iter().map(|s| vec![*s]).collect());
    let split = session_run(
        &cfg,
        addr,
        segments.iter().map(|s| chunks(*seed, s)).collect(),
    );
    assert_eq!(
        String::from_utf8_lossy(&whole.0),
        String::from_utf8_lossy(&split.0),
        "replies depend on how input is split"
    );
    assert_eq!(whole.1, split.1, "pauses depend on how input is split");
    assert_eq!(whole.2, split.2, "messages depend on how input is split");
    assert_reply_lines(&whole.0);
}

/// `data` cut at every `mark` (the marks dropped).
fn split_at_marks<'a>(data: &'a [u8], mark: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(p) = rest.windows(mark.len()).position(|w| w == mark) {
        out.push(&rest[..p]);
        rest = &rest[p + mark.len()..];
    }
    out.push(rest);
    out
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
        assert!(qf.msg_offset + qf.msg_len <= data.len() as u64);
        for r in &qf.recipients {
            // mark_done rewrites this byte: it must be the record's type.
            let at = usize::try_from(r.offset).expect("offset in the file");
            assert!(matches!(data[at], b'R' | b'D'), "recipient offset");
            assert_eq!(data[at] == b'D', r.done);
        }
        qf.pending();
        qf.attr("client_addr");
        // DSN values come back only in the shapes smtpd takes (so none
        // can break a command to the next hop or a notification's field).
        if let Some(e) = &qf.dsn.envid {
            assert!(common::dsn::valid_envid(e), "ENVID {e:?}");
        }
        for r in &qf.recipients {
            if let Some(o) = &r.dsn.orcpt {
                assert!(common::dsn::orcpt_parts(o).is_some(), "ORCPT {o:?}");
            }
            if let Some(n) = r.dsn.notify {
                assert_eq!(common::dsn::Notify::from_bits(n.bits()), Some(n));
            }
        }
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

/// A lookup table's text (common::table, Postfix's texthash format) with
/// transport_maps' values: keys are lower case and single words, every
/// warning names the file and a line that exists, and a next hop of an
/// `smtp:` entry parses as one.
pub fn text_table(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    let mut warnings = Vec::new();
    let table = common::table::parse_table("t", &text, posthorn_qmgr::transport::route, |w| {
        warnings.push(w)
    });
    for (k, v) in &table {
        assert!(
            !k.is_empty() && !k.contains(char::is_whitespace),
            "key {k:?}"
        );
        assert_eq!(*k, k.to_ascii_lowercase());
        if let posthorn_qmgr::transport::Route::Smtp(Some(hop)) = v {
            assert!(common::addr::NextHop::parse(hop, 25).is_some(), "{hop:?}");
        }
    }
    for w in &warnings {
        let n: usize = w
            .strip_prefix("t, line ")
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("warning without a line: {w:?}"));
        assert!(n >= 1 && n <= lines, "{w:?} of {lines} lines");
    }
}

/// virtual_alias_maps expansion: the first byte holds knobs (bit 0:
/// propagate_unmatched_extensions has virtual, bit 1: recipient_delimiter
/// `+-` instead of `+`, bit 2: small limits, recursion 4 and expansion 8),
/// the first line up to four recipients separated by spaces, the rest the
/// table (a temporary file, read as smtpd reads it; alias.test and any
/// domain that is a key of its own are virtual alias domains).
pub fn virtual_alias(data: &[u8]) {
    use common::virtual_alias::{Settings, VirtualAlias, VirtualError};
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (first, table) = text.split_once('\n').unwrap_or((&text, ""));
    let dir = std::env::temp_dir().join(format!(
        "posthorn-fuzz-virtual-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    /// Removes the table's directory when the run ends, however it ends.
    struct Gone(std::path::PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _gone = Gone(dir.clone());
    let path = dir.join("virtual");
    if std::fs::write(&path, table).is_err() {
        return;
    }
    let maps = format!("texthash:{}", path.display());
    let (recursion, expansion) = if knobs & 4 != 0 { (4, 8) } else { (1000, 1000) };
    let mut v = VirtualAlias::new(Settings {
        domains: format!("alias.test {maps}"),
        maps,
        myorigin: "mail.example.test".into(),
        mydestination: vec!["mail.example.test".into(), "localhost".into()],
        recipient_delimiter: if knobs & 2 != 0 { "+-" } else { "+" }.into(),
        propagate: knobs & 1 != 0,
        recursion_limit: recursion,
        expansion_limit: expansion,
    });
    for rcpt in first.split(' ').filter(|r| !r.is_empty()).take(4) {
        let got = v.expand(rcpt);
        assert_eq!(got, v.expand(rcpt), "the same answer twice for {rcpt:?}");
        match got {
            Ok(e) => {
                assert!(!e.recipients.is_empty(), "{rcpt:?}");
                assert!(e.recipients.len() <= expansion, "{rcpt:?}: {e:?}");
                if !e.rewritten {
                    assert_eq!(e.recipients, [rcpt], "no entry: itself");
                }
                for (i, a) in e.recipients.iter().enumerate() {
                    assert!(
                        !e.recipients[..i].iter().any(|b| b.eq_ignore_ascii_case(a)),
                        "{rcpt:?}: {a:?} twice in {e:?}"
                    );
                }
            }
            Err(VirtualError::Unknown(a)) => {
                assert_eq!(a, rcpt);
                assert!(v.is_alias_domain(common::addr::split(rcpt).1), "{rcpt:?}");
            }
            Err(VirtualError::Table(_)) => panic!("the table was written"),
            Err(VirtualError::TooMany(_) | VirtualError::TooDeep(_)) => {}
        }
    }
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

/// A reader that returns at most the split points' sizes per read (a
/// trickling pipe, as postdrop's standard input may be).
struct Trickle<'a> {
    data: &'a [u8],
    sizes: std::vec::IntoIter<usize>,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self
            .sizes
            .next()
            .unwrap_or(self.data.len())
            .min(buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The maildrop record stream (postdrop::maildrop::Reader: what postdrop
/// reads from a local user and pickup reads from maildrop/), then pickup's
/// header parsing of the message (posthorn_pickup::headers). The first
/// byte: bit 0 reads as a file (uid record first), bit 1 small limits,
/// the rest the split of the reads. Checks: the same records or error for
/// any split; the bounds hold (message bytes, recipients, text without
/// controls); records written back parse to the same records; header
/// parsing ends inside the input and finds fields that start there.
pub fn maildrop(data: &[u8]) {
    use postdrop::maildrop::{self as md, Limits, Reader, Record, Source};
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let source = if seed & 1 == 1 {
        Source::File
    } else {
        Source::Client
    };
    let limits = if seed & 2 == 2 {
        Limits {
            message_size: 100,
            recipients: 3,
        }
    } else {
        Limits::default()
    };
    let whole = md::parse_all(data, source, limits);
    let mut r = Reader::new(
        Trickle {
            data,
            sizes: split_points(seed >> 2, data.len()).into_iter(),
        },
        source,
        limits,
    );
    let mut split = Vec::new();
    let split_result = loop {
        match r.next_record() {
            Ok(Some(rec)) => split.push(rec),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.to_string()),
        }
    };
    match (&whole, &split_result) {
        (Ok(w), Ok(())) => assert_eq!(w, &split),
        (Err(a), Err(b)) => assert_eq!(&a.to_string(), b),
        _ => panic!("split changed the outcome: {whole:?} vs {split_result:?}"),
    }
    let Ok(records) = whole else { return };
    let mut message = Vec::new();
    let mut rcpts = 0;
    for rec in &records {
        match rec {
            Record::Sender(t) | Record::FullName(t) | Record::Recipient(t) => {
                assert!(t.len() <= md::MAX_ADDRESS && !t.chars().any(char::is_control));
                rcpts += usize::from(matches!(rec, Record::Recipient(_)));
            }
            Record::Data(d) => message.extend_from_slice(d),
            _ => {}
        }
    }
    assert!(rcpts <= limits.recipients);
    assert!(message.len() as u64 <= limits.message_size);
    assert_eq!(records.last(), Some(&Record::End));
    let mut again = md::MAGIC.to_vec();
    for rec in &records {
        md::write(&mut again, rec).expect("written to memory");
    }
    assert_eq!(
        md::parse_all(&again, source, limits).expect("written back parses"),
        records
    );
    // pickup's header parsing of the message.
    for complete in [false, true] {
        if let Some(end) = posthorn_pickup::headers::header_end(&message, complete) {
            assert!(end <= message.len());
            for f in posthorn_pickup::headers::fields(&message[..end]) {
                assert!(!f.name.is_empty() && !f.name.contains(':'));
                for a in posthorn_pickup::headers::addresses(&f.value()) {
                    assert!(!a.is_empty());
                }
            }
        }
    }
}

/// aliases(5) text (alias_maps tables) and destination lists (~/.forward
/// and :include: files, which users write), `common::aliases::parse_all`
/// and `split_values`. Checks: names are lower case single words with at
/// least one destination; destinations are trimmed, non-empty, without a
/// line end, and split again they stay one; every error names a line that
/// exists; `parse` agrees with `parse_all`.
pub fn aliases(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("aliases");
    let (map, errors) = common::aliases::parse_all(file, text);
    let lines = text.lines().count();
    for e in &errors {
        if let common::aliases::AliasError::Syntax { line, .. } = e {
            assert!(*line >= 1 && *line <= lines, "{e}");
        }
    }
    match common::aliases::parse(file, text) {
        Ok(m) => {
            assert!(errors.is_empty());
            assert_eq!(m, map);
        }
        Err(e) => assert_eq!(e.to_string(), errors[0].to_string()),
    }
    let dest_ok = |v: &str| {
        assert!(!v.is_empty() && v.trim() == v, "{v:?}");
        assert!(!v.contains(['\n', '\r']), "{v:?}");
    };
    for (name, values) in &map {
        assert_eq!(name, &name.to_ascii_lowercase());
        assert!(!name.is_empty() && !name.contains(char::is_whitespace));
        assert!(!values.is_empty());
        values.iter().for_each(|v| dest_ok(v));
    }
    for v in common::aliases::split_values(text) {
        dest_ok(&v);
        if !v.contains(['"', ',']) && !v.starts_with('#') {
            assert_eq!(common::aliases::split_values(&v), std::slice::from_ref(&v));
        }
    }
}

/// The small line and record protocols between daemons: anvil's requests
/// (common::server::anvil), qmgr's wake-up lines (posthorn_qmgr::Wake) and
/// the worker status records (common::status). The first byte picks the
/// split. Checks: the wake-up parse names the same ids and control
/// requests (posthorn queue's `OP ID` lines) for any split;
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
    let mut whole_w = posthorn_qmgr::Wake::default();
    let scan_whole = whole_w.feed(data, &mut whole);
    let mut split = Vec::new();
    let mut w = posthorn_qmgr::Wake::default();
    let mut scan_split = false;
    for piece in chunks(seed, data) {
        scan_split |= w.feed(piece, &mut split);
    }
    assert_eq!(whole, split, "wake-up ids depend on the split");
    assert_eq!(
        whole_w.take_requests(),
        w.take_requests(),
        "control lines depend on the split"
    );
    assert_eq!(scan_whole, scan_split, "scan request depends on the split");

    // anvil: three peers take turns by piece; then all close.
    let peer = Peer::default();
    let mut svc = AnvilService::default();
    let mut conns: Vec<Option<_>> = (0..3)
        .map(|_| Some(svc.open(peer.clone(), &mut Vec::new()).0))
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

/// Connections handed from one process to another (common::server::
/// handoff): frames, a u32 length and the body, back to back on a stream
/// whose sender is not trusted. The first byte picks the split. Checks: the
/// same frames for any split; each frame is its length prefix and that many
/// bytes, at most ipc::MAX_FRAME; a frame claiming more ends the stream
/// before its body is read.
pub fn handoff_frames(data: &[u8]) {
    use common::server::handoff::FrameReader;
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    fn run<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> (Vec<Vec<u8>>, bool) {
        let mut r = FrameReader::default();
        let mut frames = Vec::new();
        for mut piece in pieces {
            while !piece.is_empty() {
                let n = r.want().min(piece.len());
                match r.push(&piece[..n]) {
                    Ok(Some(f)) => {
                        let len = u32::from_le_bytes([f[0], f[1], f[2], f[3]]) as usize;
                        assert_eq!(f.len(), 4 + len, "frame length");
                        assert!(len <= common::ipc::MAX_FRAME);
                        frames.push(f);
                    }
                    Ok(None) => {}
                    Err(_) => return (frames, true),
                }
                piece = &piece[n..];
            }
        }
        (frames, false)
    }
    let whole = run(std::iter::once(data));
    let split = run(chunks(seed, data).into_iter());
    assert_eq!(whole, split, "frames depend on the split");
    let used: usize = whole.0.iter().map(Vec::len).sum();
    assert_eq!(
        &data[..used],
        whole.0.concat().as_slice(),
        "frames are the stream"
    );
}

/// The users file of the auth_request target: one user per scheme with
/// the cheapest parameters (doveadm pw -r 1000 / -r 4; Argon2 m=8,t=1), so
/// unknown users are checked against the cheap SHA256-CRYPT dummy, a uid-0
/// user, and users who cannot log in.
const AUTH_USERS: &str = "\
plain@example.test:{PLAIN}pw::::::userdb_quota_rule=*:storage=1M
sha256@example.test:{SHA256-CRYPT}$5$rounds=1000$DecXjCgZNFPA4y8y$ZpLY/SP53zLRTn1olmpPfNC5CEQ3Uw7Xx9kef0p6qj.:7:8::/srv/sha256::
sha512@example.test:$6$rounds=1000$WoYo9JOshaFoB9AH$8mngmYMXbpYczee1cgLie.FT4ORd1CjPmNtjBM5uCS5iQ1GPf7s8qz3Vlw1P.o0ymQRX.ZQopR0an7.8tnzH9.::::::
blf@example.test:{BLF-CRYPT}$2y$04$l313bIvSeqRnCxLguaNCJ.Zyczp9nlaV84wcaIj3Hm5rBz51qILzy::::::
argon2id@example.test:{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$ZnV6emZ1enpmdXp6ZnV6eg$z6lxJGH2hnggxBmUDa8d/kBT7tx3LD7lm4fV+cPq+FU::::::
argon2i@example.test:{ARGON2I}$argon2i$v=19$m=8,t=1,p=1$ZnV6emZ1enpmdXp6ZnV6eg$r6cv3sApVrHF4ek29rI1g+4dwoau+p5D8eqppUHG+9s::::::
zero@example.test:{PLAIN}pw:0:0::/srv/zero::
odd@example.test:{MD5-CRYPT}$1$x$y::::::
empty@example.test:::::::
";

/// The auth service (posthorn_auth::service::AuthService, with the table
/// above) fed one connection's bytes: request frames, decoded and answered;
/// hash jobs run inline as the pool would. The first byte picks the split.
/// Checks: the output is whole response frames, one per request answered,
/// with the requests' ids in order, and the same for any split.
pub fn auth_request(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let (whole, whole_ids) = auth_run(&[rest]);
    let (split, split_ids) = auth_run(&chunks(seed, rest));
    assert_eq!(whole, split, "auth answers depend on the split");
    assert_eq!(whole_ids, split_ids);
    let mut r = &whole[..];
    let mut ids = whole_ids.iter();
    while !r.is_empty() {
        let resp: common::auth::AuthResponse = common::ipc::read_frame(&mut r)
            .expect("the service writes whole frames")
            .expect("a frame");
        assert_eq!(Some(&resp.id), ids.next(), "answers in request order");
    }
    assert!(ids.next().is_none(), "every answered request has its frame");
}

/// One connection through a fresh service: (output, ids of the requests
/// taken, in order).
fn auth_run(pieces: &[&[u8]]) -> (Vec<u8>, Vec<u64>) {
    use common::server::{Next, Peer, Service};
    use posthorn_auth::passdb::PassDb;
    use posthorn_auth::service::{AuthService, Settings};
    let dir = Path::new("/nonexistent/posthorn-fuzz");
    let cfg = Config::parse(
        dir,
        "main.cf",
        "virtual_mailbox_base = /vmail\nvirtual_uid_maps = static:5000\nvirtual_gid_maps = static:5001\nauth_allow_plain_passwords = yes\n",
    )
    .expect("the fuzz main.cf parses");
    let settings = Settings::from_config(&cfg).expect("auth settings");
    let mut db = PassDb::new(dir.join("users"), settings.allow_plain);
    db.load_text("users", AUTH_USERS)
        .expect("the fuzz users file parses");
    let mut svc = AuthService::with_passdb(cfg, settings, db).expect("auth service");
    let peer = Peer {
        uid: Some(0),
        ..Peer::default()
    };
    let mut out = Vec::new();
    let (mut conn, next) = svc.open(peer, &mut out);
    assert!(matches!(next, Next::Continue), "root may connect");
    let mut ids = Vec::new();
    // The ids of the requests, seen by decoding the same stream alongside.
    let mut shadow = Vec::new();
    'feed: for p in pieces {
        shadow.extend_from_slice(p);
        let mut next = svc.input(&mut conn, p, &mut out);
        loop {
            match next {
                Next::Continue => break,
                Next::Close => break 'feed,
                Next::Pause(_) => panic!("auth never pauses"),
                Next::StartTls
                | Next::Produce
                | Next::HandOff { .. }
                | Next::Watch(_)
                | Next::Await { .. } => {
                    panic!("auth has no TLS, streaming, hand-off or watch")
                }
                Next::Run(job) => {
                    let r = job();
                    next = svc.done(&mut conn, r, &mut out);
                }
            }
        }
    }
    while let Ok(Some(req)) = common::auth::take_request(&mut shadow) {
        ids.push(req.id);
    }
    // Requests after a close are not answered; trim to the answers.
    let mut answered = 0;
    let mut r = &out[..];
    while let Ok(Some(_)) = common::ipc::read_frame::<_, common::auth::AuthResponse>(&mut r) {
        answered += 1;
    }
    ids.truncate(answered);
    svc.closed(conn, false);
    (out, ids)
}

/// A users-file password field (first line) and a password (the rest):
/// `posthorn_auth::scheme::parse`, then, when the parameters are cheap,
/// `verify` and `verify_apop`. Checks: no panic; a PLAIN field verifies its
/// own password and not another.
pub fn password_hash(data: &[u8]) {
    use posthorn_auth::scheme::{self, Stored};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (field, password) = text.split_once('\n').unwrap_or((text, ""));
    let _ = scheme::Scheme::from_name(field);
    let stored = match scheme::parse(field) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    // The bounds admit hashes that take seconds (legitimately): verify
    // only the cheap ones here.
    let cheap = match &stored {
        Stored::Argon2 { .. } => stored.work() <= 1024,
        Stored::ShaCrypt { rounds, .. } => *rounds <= 1000,
        Stored::Bcrypt { cost, .. } => *cost <= 5,
        Stored::Plain(_) => true,
    };
    if cheap {
        let _ = stored.verify(password);
        let _ = stored.verify_apop(password, field);
    }
    if let Stored::Plain(p) = &stored {
        assert!(stored.verify(p), "a PLAIN password verifies itself");
        let other = format!("{p}x");
        assert!(!stored.verify(&other), "and nothing longer");
    }
    let _ = format!("{stored:?} {}", stored.scheme());
}

/// A Maildir's `dovecot-uidlist` (mailstore::uidlist). Checks: a list that
/// parses has ascending UIDs below its next UID and non-empty base names
/// without '/' or ':'; written back (version 3) it parses to the same list.
pub fn maildir_uidlist(data: &[u8]) {
    use mailstore::uidlist::UidList;
    let Ok(l) = UidList::parse(data) else {
        return;
    };
    let uids: Vec<u32> = l.records.iter().map(|r| r.uid).collect();
    assert!(uids.windows(2).all(|w| w[0] < w[1]), "UIDs not ascending");
    assert!(
        uids.last().is_none_or(|u| *u < l.next_uid),
        "next UID not above the last"
    );
    for r in &l.records {
        assert!(
            !r.base.is_empty() && !r.base.contains(['/', ':']),
            "base {:?}",
            r.base
        );
        assert!(r.ext.iter().all(|(k, _)| k.is_ascii_uppercase()));
    }
    let out = l.write([0x5a; 16]);
    let again = UidList::parse(&out).expect("a written list parses");
    assert_eq!(again.version, 3);
    assert_eq!(again.guid, Some(l.guid.unwrap_or([0x5a; 16])));
    assert_eq!(
        (
            again.uid_validity,
            again.next_uid,
            &again.header_ext,
            &again.records
        ),
        (l.uid_validity, l.next_uid, &l.header_ext, &l.records),
        "uidlist round trip"
    );
}

/// A folder's `posthorn-modseq` (mailstore::modseq). Checks: a file that
/// parses has UIDs and mod-sequences in range (0 < modseq <= HIGHESTMODSEQ,
/// expunges above the floor); written back it parses to the same file; a
/// reconcile with its own messages changes nothing, and one with a message
/// fewer raises HIGHESTMODSEQ by one and logs that UID.
pub fn maildir_modseq(data: &[u8]) {
    use mailstore::modseq::ModseqFile;
    let Ok(f) = ModseqFile::parse(data) else {
        return;
    };
    assert!(f.floor <= f.highest && f.highest <= mailstore::modseq::MAX_MODSEQ);
    for e in f.messages.values() {
        assert!(e.modseq > 0 && e.modseq <= f.highest, "modseq in range");
    }
    for r in &f.expunged {
        assert!(r.first > 0 && r.first <= r.last, "expunge range");
        assert!(r.modseq > f.floor && r.modseq <= f.highest);
    }
    let again = ModseqFile::parse(&f.write()).expect("a written file parses");
    assert_eq!(again, f, "modseq round trip");
    let current: Vec<_> = f
        .messages
        .iter()
        .map(|(u, e)| (*u, e.flags, e.keywords))
        .collect();
    let mut g = f.clone();
    assert!(!g.reconcile(f.uid_validity, &current), "nothing changed");
    assert_eq!(g, f);
    if let Some((&gone, _)) = f.messages.iter().next() {
        if f.highest < mailstore::modseq::MAX_MODSEQ {
            assert!(g.reconcile(f.uid_validity, &current[1..]));
            assert_eq!(g.highest, f.highest + 1);
            let v = g.expunged_since(f.highest);
            assert!(v.uids.iter().any(|&(a, b)| a <= gone && gone <= b));
        }
    }
}

/// A folder's `dovecot-keywords` (mailstore::keywords). Checks: at most 26
/// valid names, each found at its index case-insensitively; written back it
/// parses to the same table.
pub fn maildir_keywords(data: &[u8]) {
    use mailstore::keywords::{self, Keywords};
    let Ok(k) = Keywords::parse(data) else {
        return;
    };
    let mut n = 0;
    for (i, name) in k.iter() {
        assert!(i < keywords::MAX_KEYWORDS && keywords::is_valid(name));
        assert_eq!(k.index(&name.to_ascii_uppercase()), Some(i));
        n += 1;
    }
    assert!(n <= keywords::MAX_KEYWORDS);
    assert_eq!(
        Keywords::parse(&k.write()).expect("written keywords parse"),
        k
    );
}

/// Maildir++ `maildirsize` (mailstore::quota). Checks: totals are not
/// negative; the limits line written for the parsed limits parses to them.
pub fn maildirsize(data: &[u8]) {
    use mailstore::quota::{limits_line, Maildirsize};
    let Ok(m) = Maildirsize::parse(data) else {
        return;
    };
    assert!(m.bytes >= 0 && m.messages >= 0 && m.lines >= 1);
    let again = Maildirsize::parse(format!("{}\n0 0\n", limits_line(&m.limits)).as_bytes())
        .expect("a written limits line parses");
    assert_eq!(again.limits, m.limits);
}

/// Maildir message file names (mailstore::filename): sizes, flags and
/// keyword letters, Dovecot's sort order. The first byte splits the input
/// into two names. Checks: replacing the flags keeps the base and sizes and
/// reads back as set; the order is antisymmetric.
pub fn maildir_filename(data: &[u8]) {
    use mailstore::filename::{self, Flags, KeywordSet};
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cut = (usize::from(seed) % (text.len() + 1)..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    let (a, b) = text.split_at(cut);
    for name in [a, b] {
        let _ = filename::is_valid(name);
        let (f, k) = filename::flags(name);
        for (nf, nk) in [
            (f, k),
            (Flags::empty(), KeywordSet::default()),
            (
                Flags::SEEN | Flags::DRAFT | Flags::TRASHED,
                KeywordSet(0b1010_0001),
            ),
        ] {
            let renamed = filename::with_flags(name, nf, nk);
            assert_eq!(
                filename::flags(&renamed),
                (nf, nk),
                "{name:?} -> {renamed:?}"
            );
            assert_eq!(filename::base(&renamed), filename::base(name));
            for key in [b'S', b'W'] {
                assert_eq!(
                    filename::size_field(&renamed, key),
                    filename::size_field(name, key)
                );
            }
        }
    }
    assert_eq!(filename::sort_cmp(a, b), filename::sort_cmp(b, a).reverse());
    let mut c = filename::VsizeCounter::default();
    c.add(data);
    assert!(c.vsize() >= c.size() && c.vsize() <= 2 * c.size());
}

/// The `subscriptions` file and folder names on disk (mailstore::
/// subscriptions, names). Checks: subscribed names are valid folder names
/// and the file written for them parses to them; a directory name that
/// decodes to a folder encodes back to itself.
pub fn maildir_subscriptions(data: &[u8]) {
    use mailstore::names;
    if let Ok(subs) = mailstore::subscriptions::parse(data) {
        for n in &subs {
            assert_eq!(names::validate(n).expect("a valid name"), *n);
        }
        let again = mailstore::subscriptions::parse(&mailstore::subscriptions::write(&subs))
            .expect("written subscriptions parse");
        assert_eq!(again, subs);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            if let Some(name) = names::from_disk(line) {
                assert_eq!(names::disk_name(&name).as_deref(), Some(line));
            }
            if let Some(d) = names::decode_utf7(line) {
                assert_eq!(names::encode_utf7(&d), line);
            }
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
