//! Test mailboxes for the POP3 and IMAP benchmarks: Maildirs full of plausible mail.
//!
//! Owns `make-maildirs`: for each user `BASE/DOMAIN/LOCAL/Maildir/` with
//! `new/`, `cur/` and `tmp/`, and `--messages` files in `new/` of random
//! sizes between `--min-size` and `--max-size` octets (exact), with
//! realistic header fields, LF line ends, and Maildir++ file names that
//! carry both sizes (`,S=` octets on disk, `,W=` octets with CRLF line ends:
//! what POP3's LIST reports, so a server need not read the file to know
//! it). The layout is posthorn's `$virtual_mailbox_base/DOMAIN/LOCAL` and
//! Dovecot's `home=BASE/%d/%n` with `mail_location = maildir:~/Maildir`.
//! Everything is derived from `--seed`: the same flags make the same bytes.
//! Does not own ownership or permissions (the script sets them) nor the
//! users file (password hashes are the script's, with `doveadm pw`).
//!
//! Standards: RFC 5322 2.1 (lines, here LF as stored in Maildir), 3.3
//! (date-time), 3.6 (header fields); Maildir (cr.yp.to/proto/maildir.html:
//! unique names in new/); Maildir++ `,S=` and Dovecot's `,W=` size fields.
//! Body lines that begin with `.` (from the 12th body line) and lines of
//! just `.` (from the 23rd), in all messages over about 1.5 KiB, make nearly
//! every RETR exercise the server's byte stuffing (RFC 1939 3).
//!
//! Diagnostics: returns `MaildirError` naming the path.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::rng::Rng;

/// Base of the Date fields and file names: 2026-01-01 00:00:00 UTC.
const BASE_TIME: u64 = 1_767_225_600;

/// Body text width (RFC 5322 2.1.1 recommends at most 78).
const WIDTH: usize = 72;

const WORDS: &[&str] = &[
    "the", "mail", "server", "queue", "message", "delivery", "of", "and", "to", "a", "in",
    "meeting", "report", "attached", "please", "review", "before", "friday", "thanks", "regards",
    "schedule", "project", "update", "budget", "draft", "final", "version", "notes", "from",
    "call", "question", "about", "team", "next", "week", "quarter", "numbers", "look", "good",
    "we", "should", "discuss", "this", "with", "everyone", "on", "monday", "morning", "list",
];

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirConfig {
    /// Base directory: mailboxes go to `dir/DOMAIN/LOCAL/Maildir`.
    pub dir: PathBuf,
    pub users: u32,
    /// User name pattern; `%d` becomes the user's number.
    pub user_pattern: String,
    pub first_user: u32,
    pub messages: u32,
    pub min_size: usize,
    pub max_size: usize,
    pub seed: u64,
}

/// What was generated.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub users: u32,
    pub messages: u64,
    /// Octets on disk (sum of `,S=`).
    pub octets: u64,
    /// Octets with CRLF line ends (sum of `,W=`).
    pub virtual_octets: u64,
}

#[derive(Debug)]
pub enum MaildirError {
    Io {
        path: PathBuf,
        err: io::Error,
    },
    /// A user name without `@domain`, or one that is no safe path component.
    BadName(String),
    /// The header alone is longer than the requested message size.
    TooSmall {
        size: usize,
        header: usize,
    },
}

impl fmt::Display for MaildirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaildirError::Io { path, err } => write!(f, "{}: {err}", path.display()),
            MaildirError::BadName(n) => {
                write!(
                    f,
                    "user name {n:?}: expected local@domain, no '/' and not '.' or '..'"
                )
            }
            MaildirError::TooSmall { size, header } => write!(
                f,
                "a message of {size} octets cannot hold its {header}-octet header; raise --min-size"
            ),
        }
    }
}

impl std::error::Error for MaildirError {}

/// The user name for number `n`: `pattern` with `%d` replaced.
pub fn user_name(pattern: &str, n: u32) -> String {
    pattern.replacen("%d", &n.to_string(), 1)
}

/// `(local, domain)` of a user name, lower case, each a safe path component.
pub fn split_user(name: &str) -> Result<(String, String), MaildirError> {
    let bad = || MaildirError::BadName(name.to_string());
    let (local, domain) = name.rsplit_once('@').ok_or_else(bad)?;
    let ok = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0']);
    if !ok(local) || !ok(domain) {
        return Err(bad());
    }
    Ok((local.to_ascii_lowercase(), domain.to_ascii_lowercase()))
}

/// Writes all mailboxes. Existing files of the same name are replaced.
pub fn make_maildirs(cfg: &MaildirConfig) -> Result<Summary, MaildirError> {
    let mut sum = Summary::default();
    for i in 0..cfg.users {
        let n = cfg.first_user + i;
        let name = user_name(&cfg.user_pattern, n);
        let md = maildir_path(&cfg.dir, &name)?;
        for sub in ["new", "cur", "tmp"] {
            let d = md.join(sub);
            fs::create_dir_all(&d).map_err(|err| MaildirError::Io { path: d, err })?;
        }
        let mut rng = Rng::stream(cfg.seed, u64::from(n));
        for seq in 0..cfg.messages {
            let size = rng.between(cfg.min_size as u64, cfg.max_size as u64) as usize;
            let msg = message(&name, n, seq, size, &mut rng)?;
            let w = virtual_size(&msg);
            let path = md.join("new").join(file_name(n, seq, msg.len(), w));
            fs::write(&path, &msg).map_err(|err| MaildirError::Io { path, err })?;
            sum.messages += 1;
            sum.octets += msg.len() as u64;
            sum.virtual_octets += w as u64;
        }
        sum.users += 1;
    }
    Ok(sum)
}

/// Octets of `msg` with every LF counted as CRLF (what POP3 sends).
pub fn virtual_size(msg: &[u8]) -> usize {
    msg.len() + msg.iter().filter(|&&b| b == b'\n').count()
}

/// A Maildir file name for new/: `TIME.M<usec>P<pid>Q<seq>.HOST,S=<s>,W=<w>`,
/// unique per user and sequence number.
pub fn file_name(user: u32, seq: u32, size: usize, vsize: usize) -> String {
    let t = BASE_TIME + u64::from(seq) * 60;
    let usec = (u64::from(seq) * 7919 + u64::from(user) * 104_729) % 1_000_000;
    format!("{t}.M{usec}P{user}Q{seq}.bench.example,S={size},W={vsize}")
}

/// One message of exactly `size` octets, LF line ends.
pub fn message(
    user: &str,
    n: u32,
    seq: u32,
    size: usize,
    rng: &mut Rng,
) -> Result<Vec<u8>, MaildirError> {
    let t = BASE_TIME + u64::from(seq) * 60;
    let date = rfc5322_date(t);
    let sender = rng.below(40);
    let relay = rng.below(8) + 1;
    let header = format!(
        "Return-Path: <sender{sender}@lists.example.org>\n\
         Delivered-To: {user}\n\
         Received: from mx{relay}.example.org (mx{relay}.example.org [192.0.2.{relay}])\n\
         \tby mail.example.test (posthorn) with ESMTPS id B{n:04}Q{seq:06}\n\
         \tfor <{user}>; {date}\n\
         Received: from [198.51.100.{sender}] (helo=workstation{sender}.example.org)\n\
         \tby mx{relay}.example.org with ESMTPSA; {date}\n\
         Date: {date}\n\
         From: \"Sender {sender}\" <sender{sender}@example.org>\n\
         To: {user}\n\
         Subject: Bench message {seq} for {user}, {size} octets\n\
         Message-ID: <{seq}.{n}.bench@mx{relay}.example.org>\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8; format=flowed\n\
         Content-Transfer-Encoding: 7bit\n\
         \n"
    );
    // The body needs at least one line ("x\n") after the header.
    if header.len() + 2 > size {
        return Err(MaildirError::TooSmall {
            size,
            header: header.len(),
        });
    }
    let mut msg = Vec::with_capacity(size);
    msg.extend_from_slice(header.as_bytes());
    let mut line_no = 0usize;
    let mut line = String::with_capacity(WIDTH + 1);
    loop {
        let remaining = size - msg.len();
        if remaining <= WIDTH + 1 {
            // The last line, exactly filling the size: words, then padding.
            words_line(rng, &mut line, remaining - 1);
            msg.extend_from_slice(line.as_bytes());
            msg.push(b'\n');
            break;
        }
        line.clear();
        match line_no % 23 {
            // A line of just "." (stuffed to ".." on the wire).
            22 => line.push('.'),
            // Paragraph breaks.
            7 | 15 => {}
            // A line that begins with a dot (".signature", "...").
            11 => {
                line.push_str("...");
                let rest = rng.between(10, WIDTH as u64 - 3) as usize;
                let mut tail = String::new();
                words_line(rng, &mut tail, rest);
                line.push_str(&tail);
            }
            _ => {
                let len = rng.between(40, WIDTH as u64) as usize;
                words_line(rng, &mut line, len);
            }
        }
        msg.extend_from_slice(line.as_bytes());
        msg.push(b'\n');
        line_no += 1;
    }
    debug_assert_eq!(msg.len(), size);
    Ok(msg)
}

/// Fills `out` with exactly `len` characters of words separated by spaces,
/// not starting with a dot or a space.
fn words_line(rng: &mut Rng, out: &mut String, len: usize) {
    out.clear();
    while out.len() < len {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    out.truncate(len);
    // A truncated line may end in a space; harmless, but keep lines tidy.
    if out.ends_with(' ') {
        out.pop();
        out.push('x');
    }
}

/// RFC 5322 3.3 date-time in UTC, e.g. `Thu, 01 Jan 2026 00:00:00 +0000`.
pub fn rfc5322_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The path of a user's Maildir under `dir`.
pub fn maildir_path(dir: &Path, user: &str) -> Result<PathBuf, MaildirError> {
    let (local, domain) = split_user(user)?;
    Ok(dir.join(domain).join(local).join("Maildir"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, key: &str) -> usize {
        let start = name.find(key).unwrap() + key.len();
        let rest = &name[start..];
        let end = rest.find(',').unwrap_or(rest.len());
        rest[..end].parse().unwrap()
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(BASE_TIME), "Thu, 01 Jan 2026 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(951_782_400 + 3661),
            "Tue, 29 Feb 2000 01:01:01 +0000"
        );
    }

    #[test]
    fn messages_have_exact_sizes_headers_and_dot_lines() {
        let mut rng = Rng::new(3);
        for size in [1024, 1025, 1100, 4096, 12288] {
            let m = message("user7@example.test", 7, 42, size, &mut rng).unwrap();
            assert_eq!(m.len(), size);
            assert!(!m.contains(&b'\r'), "LF line ends only");
            assert!(m.ends_with(b"\n"));
            let text = String::from_utf8(m.clone()).unwrap();
            let (head, body) = text.split_once("\n\n").unwrap();
            for f in [
                "Return-Path:",
                "Received:",
                "Date: Thu, 01 Jan 2026 00:42:00 +0000",
                "From:",
                "To: user7@example.test",
                "Subject:",
                "Message-ID:",
                "MIME-Version:",
            ] {
                assert!(head.contains(f), "{f} in {head}");
            }
            assert!(text.lines().all(|l| l.len() <= 78), "short lines");
            if size >= 4096 {
                assert!(body.lines().any(|l| l == "."), "a lone dot line");
                assert!(body.lines().any(|l| l.starts_with("...")), "a dot-led line");
            }
        }
        assert!(matches!(
            message("u@example.test", 1, 1, 300, &mut rng),
            Err(MaildirError::TooSmall { size: 300, .. })
        ));
    }

    #[test]
    fn maildirs_with_sizes_in_names() {
        let dir = std::env::temp_dir().join(format!("pop3-bench-md-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let cfg = MaildirConfig {
            dir: dir.clone(),
            users: 2,
            user_pattern: "User%d@Example.test".into(),
            first_user: 1,
            messages: 20,
            min_size: 1024,
            max_size: 3000,
            seed: 9,
        };
        let sum = make_maildirs(&cfg).unwrap();
        assert_eq!((sum.users, sum.messages), (2, 40));
        let mut total = 0u64;
        let mut vtotal = 0u64;
        for u in ["user1", "user2"] {
            let md = dir.join("example.test").join(u).join("Maildir");
            assert!(md.join("cur").is_dir() && md.join("tmp").is_dir());
            let mut n = 0;
            for e in fs::read_dir(md.join("new")).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().into_string().unwrap();
                let data = fs::read(e.path()).unwrap();
                assert_eq!(field(&name, ",S="), data.len(), "{name}");
                assert_eq!(field(&name, ",W="), virtual_size(&data), "{name}");
                assert!((1024..=3000).contains(&data.len()));
                assert!(!name.contains(':'), "no info part in new/");
                total += data.len() as u64;
                vtotal += virtual_size(&data) as u64;
                n += 1;
            }
            assert_eq!(n, 20);
        }
        assert_eq!((sum.octets, sum.virtual_octets), (total, vtotal));
        // The same seed makes the same bytes.
        let first = fs::read_dir(dir.join("example.test/user1/Maildir/new"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .min()
            .unwrap();
        let before = fs::read(&first).unwrap();
        make_maildirs(&cfg).unwrap();
        assert_eq!(fs::read(&first).unwrap(), before);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn user_names() {
        assert_eq!(user_name("user%d@example.test", 12), "user12@example.test");
        assert_eq!(
            split_user("A@B.test").unwrap(),
            ("a".into(), "b.test".into())
        );
        for bad in ["nodomain", "@d", "u@", "../x@d", "u@..", "a/b@d"] {
            assert!(split_user(bad).is_err(), "{bad}");
        }
        assert_eq!(
            maildir_path(Path::new("/b"), "u@d").unwrap(),
            Path::new("/b/d/u/Maildir")
        );
    }
}
