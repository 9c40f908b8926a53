//! Logging in Postfix's shape: `posthorn/smtpd[1234]: 4Fh2xK: client=...`.
//!
//! One line per event. In the foreground lines go to standard error with a
//! timestamp and host name (the maillog_file shape); in the background to
//! syslog on /dev/log (RFC 3164, facility mail) or to maillog_file when set.
//! Log analysers and fail2ban filters written for Postfix match the part
//! after the timestamp.
//!
//! Security: client-supplied text reaches log lines (HELO names, addresses);
//! control characters are replaced by '?' so no one can forge a log line, and a
//! line is cut at MAX_LINE bytes.
//!
//! I/O: each line is one write(2) (atomic on a pipe below PIPE_BUF), so lines
//! of several processes sharing master's stderr never interleave.

use std::fmt::{self, Write as _};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

const MAX_LINE: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warning,
    Error,
    Fatal,
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stderr,
    Syslog,
    File(PathBuf),
}

impl Target {
    /// The name used in the POSTHORN_LOG environment variable master hands down.
    pub fn env_value(&self) -> String {
        match self {
            Target::Stderr => "stderr".into(),
            Target::Syslog => "syslog".into(),
            Target::File(p) => format!("file:{}", p.display()),
        }
    }

    pub fn from_env_value(v: &str) -> Target {
        match v {
            "stderr" => Target::Stderr,
            v => match v.strip_prefix("file:") {
                Some(p) => Target::File(PathBuf::from(p)),
                None => Target::Syslog,
            },
        }
    }
}

struct Logger {
    tag: String,
    host: String,
    target: Target,
    facility: u8,
    syslog: Mutex<Option<UnixDatagram>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Set up logging for this process. `program` is e.g. "smtpd"; lines are
/// tagged `syslog_name/program[pid]`. Later calls are ignored.
pub fn init(syslog_name: &str, program: &str, target: Target, facility: &str) {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let facility = match facility {
        "daemon" => 3,
        "user" => 1,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => 2, // mail
    };
    let _ = LOGGER.set(Logger {
        tag: format!("{syslog_name}/{program}"),
        host: host.split('.').next().unwrap_or("").to_string(),
        target,
        facility,
        syslog: Mutex::new(None),
    });
}

/// Log one event. Before `init`, lines go to stderr tagged `posthorn`.
pub fn log(level: Level, args: fmt::Arguments) {
    let mut msg = String::with_capacity(128);
    match level {
        Level::Info => {}
        Level::Warning => msg.push_str("warning: "),
        Level::Error => msg.push_str("error: "),
        Level::Fatal => msg.push_str("fatal: "),
    }
    let _ = msg.write_fmt(args);
    let msg = sanitize(msg);
    let Some(l) = LOGGER.get() else {
        let _ = std::io::stderr().write_all(format!("posthorn: {msg}\n").as_bytes());
        return;
    };
    match &l.target {
        Target::Stderr => {
            let line = stamped(l, &msg);
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        Target::File(p) => {
            let line = stamped(l, &msg);
            let ok = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if ok.is_err() {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
        Target::Syslog => {
            let severity = match level {
                Level::Info => 6,
                Level::Warning => 4,
                Level::Error => 3,
                Level::Fatal => 2,
            };
            // RFC 3164 without a timestamp: syslogd stamps it on arrival.
            let line = format!("<{}>{}: {msg}", l.facility * 8 + severity, tag_now(&l.tag));
            let mut sock = l.syslog.lock().unwrap_or_else(|e| e.into_inner());
            for _ in 0..2 {
                if sock.is_none() {
                    *sock = UnixDatagram::unbound()
                        .ok()
                        .filter(|s| s.connect("/dev/log").is_ok());
                }
                match sock.as_ref().map(|s| s.send(line.as_bytes())) {
                    Some(Ok(_)) => return,
                    Some(Err(_)) => *sock = None,
                    None => break,
                }
            }
            // No syslog daemon: say it on stderr rather than lose it.
            let _ = std::io::stderr().write_all(format!("{}: {msg}\n", tag_now(&l.tag)).as_bytes());
        }
    }
}

/// Control characters become '?', and the message is cut at MAX_LINE
/// characters. Printable ASCII within the limit (nearly every line) is
/// taken as it is, without a copy.
fn sanitize(msg: String) -> String {
    if msg.len() <= MAX_LINE && msg.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return msg;
    }
    msg.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_LINE)
        .collect()
}

/// `TIMESTAMP HOST name/program[pid]: msg` and a newline, in one buffer.
fn stamped(l: &Logger, msg: &str) -> String {
    let mut line = String::with_capacity(48 + l.host.len() + l.tag.len() + msg.len());
    push_timestamp(&mut line);
    line.push(' ');
    line.push_str(&l.host);
    line.push(' ');
    line.push_str(&l.tag);
    line.push('[');
    push_number(&mut line, u64::from(pid()), 1);
    line.push_str("]: ");
    line.push_str(msg);
    line.push('\n');
    line
}

/// RFC 3339 UTC time with microseconds.
pub fn timestamp() -> String {
    let mut s = String::with_capacity(27);
    push_timestamp(&mut s);
    s
}

/// Append `timestamp()`'s text (digits written directly: the formatting
/// machinery cost more than the rest of a log line).
fn push_timestamp(out: &mut String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (y, m, d) = civil_from_days((secs / 86400) as i64);
    let rem = secs % 86400;
    push_number(out, y.max(0) as u64, 4);
    out.push('-');
    push_number(out, u64::from(m), 2);
    out.push('-');
    push_number(out, u64::from(d), 2);
    out.push('T');
    push_number(out, rem / 3600, 2);
    out.push(':');
    push_number(out, rem / 60 % 60, 2);
    out.push(':');
    push_number(out, rem % 60, 2);
    out.push('.');
    push_number(out, u64::from(now.subsec_micros()), 6);
    out.push('Z');
}

/// Append `v` in decimal, zero-padded to `width` digits.
fn push_number(out: &mut String, mut v: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for _ in digits.len() - i..width {
        out.push('0');
    }
    for &b in &digits[i..] {
        out.push(char::from(b));
    }
}

/// A time in UTC as the names and numbers the date formats below print.
struct Utc {
    weekday: &'static str,
    month: &'static str,
    day: u32,
    year: i64,
    hms: String,
}

fn utc(unix: u64) -> Utc {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (unix / 86400) as i64;
    let (year, m, day) = civil_from_days(days);
    let rem = unix % 86400;
    Utc {
        weekday: DAYS[(days % 7) as usize],
        month: MONTHS[(m - 1) as usize],
        day,
        year,
        hms: format!("{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60),
    }
}

/// RFC 5322 3.3 date-time in UTC, for Received: and Date: headers.
pub fn rfc5322_date(unix: u64) -> String {
    let t = utc(unix);
    format!(
        "{}, {} {} {} {} +0000",
        t.weekday, t.day, t.month, t.year, t.hms
    )
}

/// asctime(3)'s layout in UTC, without its newline: `Sun Nov  1 21:51:49
/// 2026` (mailq's arrival times, postcat's).
pub fn asctime_utc(unix: u64) -> String {
    let t = utc(unix);
    format!("{} {} {:2} {} {}", t.weekday, t.month, t.day, t.hms, t.year)
}

/// `YYYYMMDDhhmmss` in UTC (Postfix's Message-ID prefix).
pub fn compact_utc(unix: u64) -> String {
    let (y, m, d) = civil_from_days((unix / 86400) as i64);
    let rem = unix % 86400;
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `info!("{id}: client={name}[{addr}]")`
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Info, format_args!($($t)*)) };
}

#[macro_export]
macro_rules! warning {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Warning, format_args!($($t)*)) };
}

#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Error, format_args!($($t)*)) };
}

/// Log and exit with status 1.
#[macro_export]
macro_rules! fatal {
    ($($t:tt)*) => {{
        $crate::log::log($crate::log::Level::Fatal, format_args!($($t)*));
        std::process::exit(1)
    }};
}

/// Log, tell master the configuration is unusable (so it throttles the
/// service instead of restarting it at once), and exit with EX_CONFIG.
#[macro_export]
macro_rules! config_fatal {
    ($($t:tt)*) => {{
        $crate::log::log($crate::log::Level::Fatal, format_args!($($t)*));
        $crate::status::report($crate::status::Status::ConfigError);
        std::process::exit(78)
    }};
}

/// This process's pid, looked up once (getpid per log line showed in
/// profiles); `after_fork` resets it.
static PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A process that forked after `init` (master detaching) calls this.
pub fn after_fork() {
    PID.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// `name/program[pid]`.
fn tag_now(tag: &str) -> String {
    format!("{tag}[{}]", pid())
}

/// This process's pid (cached; see `PID`).
fn pid() -> u32 {
    use std::sync::atomic::Ordering;
    let mut pid = PID.load(Ordering::Relaxed);
    if pid == 0 {
        pid = std::process::id();
        PID.store(pid, Ordering::Relaxed);
    }
    pid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(compact_utc(0), "19700101000000");
        assert_eq!(asctime_utc(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime_utc(1_795_969_205), "Sun Nov 29 16:20:05 2026");
        assert_eq!(compact_utc(1_795_969_205), "20261129162005");
        assert_eq!(
            rfc5322_date(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
    }

    #[test]
    fn timestamps_and_numbers() {
        let t = timestamp();
        assert_eq!(t.len(), 27, "{t}");
        let shape: String = t
            .chars()
            .map(|c| if c.is_ascii_digit() { 'd' } else { c })
            .collect();
        assert_eq!(shape, "dddd-dd-ddTdd:dd:dd.ddddddZ");
        let mut s = String::new();
        push_number(&mut s, 7, 2);
        push_number(&mut s, 0, 1);
        push_number(&mut s, 12345, 2);
        push_number(&mut s, u64::MAX, 1);
        assert_eq!(s, format!("07012345{}", u64::MAX));
    }

    #[test]
    fn sanitize_replaces_controls_and_cuts() {
        let same = |m: &str| {
            let want: String = m
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .take(MAX_LINE)
                .collect();
            assert_eq!(sanitize(m.to_string()), want, "{m:?}");
        };
        same("plain: to=<a@b>, status=sent (delivered to maildir)");
        same("a\r\nforged: line\t\x7f end");
        same("C1 \u{85} and \u{9f}, UTF-8 ü and ☃ stay");
        same(&"x".repeat(MAX_LINE));
        same(&"x".repeat(MAX_LINE + 1));
        same(&"ü".repeat(MAX_LINE));
    }

    #[test]
    fn targets_round_trip() {
        for t in [Target::Stderr, Target::Syslog, Target::File("/x/y".into())] {
            assert_eq!(Target::from_env_value(&t.env_value()), t);
        }
    }
}
