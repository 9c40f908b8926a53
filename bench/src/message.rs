//! Test message text for the load generator, and its DATA wire form.
//!
//! Owns the header block (From, To, Subject with the sequence number,
//! Message-ID unique per run and sequence number, Date), the body padding to a
//! requested size with 76-character lines, and dot-stuffing. Does not own the
//! SMTP conversation (see `client`).
//!
//! Standards: RFC 5322 3.3 (date-time), 3.6 (header fields), 2.1.1 (line
//! length: 78 characters recommended, CRLF line ends); RFC 5321 4.5.2
//! (transparency: dot-stuffing) and 4.1.1.4 (`CRLF . CRLF` ends DATA).
//!
//! Diagnostics: none; pure functions.

use std::time::{SystemTime, UNIX_EPOCH};

/// Text characters per body line, CRLF not included.
pub const LINE_TEXT: usize = 76;

/// Every this many body lines one begins with a dot, so that the server's
/// dot-unstuffing is exercised on every message.
const DOT_LINE_EVERY: usize = 16;

/// Fields of one test message.
pub struct Envelope<'a> {
    pub from: &'a str,
    pub to: &'a str,
    /// Unique per run of the generator, used in Message-ID.
    pub run_id: &'a str,
    /// Sequence number of the message within the run, from 1.
    pub seq: u64,
    /// RFC 5322 date-time for the Date header.
    pub date: &'a str,
}

/// Builds the message (header, blank line, body) with CRLF line ends and
/// without dot-stuffing. The result is `size` bytes long, or up to two bytes
/// shorter when the last line cannot be fitted exactly; never longer than
/// `size` unless the header alone is longer.
pub fn build(env: &Envelope<'_>, size: usize) -> Vec<u8> {
    let mut msg = Vec::with_capacity(size.max(512));
    let header = format!(
        "From: <{from}>\r\n\
         To: <{to}>\r\n\
         Subject: posthorn-bench message {seq}\r\n\
         Message-ID: <{run}.{seq}@posthorn-bench.invalid>\r\n\
         Date: {date}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n",
        from = env.from,
        to = env.to,
        seq = env.seq,
        run = env.run_id,
        date = env.date,
    );
    msg.extend_from_slice(header.as_bytes());

    let mut line_no = 0usize;
    loop {
        let remaining = size.saturating_sub(msg.len());
        if remaining < 3 {
            break;
        }
        let text_len = LINE_TEXT.min(remaining - 2);
        push_body_line(&mut msg, env.seq, line_no, text_len);
        line_no += 1;
    }
    msg
}

/// Appends one body line of `text_len` characters plus CRLF.
fn push_body_line(msg: &mut Vec<u8>, seq: u64, line_no: usize, text_len: usize) {
    const FILL: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ ";
    let start = msg.len();
    let lead = if line_no % DOT_LINE_EVERY == DOT_LINE_EVERY - 1 {
        format!(".line {line_no:04} of message {seq} starts with a dot ")
    } else {
        format!("line {line_no:04} of message {seq} ")
    };
    msg.extend(lead.bytes().take(text_len));
    let mut i = line_no;
    while msg.len() - start < text_len {
        msg.push(FILL[i % FILL.len()]);
        i += 1;
    }
    msg.extend_from_slice(b"\r\n");
}

/// Appends the DATA wire form of `msg` to `out`: every line that begins with
/// a dot gets a second one (RFC 5321 4.5.2), a missing final CRLF is added,
/// and the terminating `.` line follows (RFC 5321 4.1.1.4): proto's client
/// half does it.
pub use proto::smtp::client::dot_stuff;

/// Formats a time as an RFC 5322 3.3 date-time in UTC,
/// e.g. `Thu, 01 Jan 1970 00:00:00 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
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

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic
/// Gregorian (Howard Hinnant's civil_from_days, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn env(seq: u64) -> Envelope<'static> {
        Envelope {
            from: "a@b",
            to: "demo@example.test",
            run_id: "r1",
            seq,
            date: "Thu, 01 Jan 1970 00:00:00 +0000",
        }
    }

    /// Reverses dot-stuffing the way a server does; returns the message and
    /// whatever followed the terminating dot line.
    fn unstuff(wire: &[u8]) -> (Vec<u8>, &[u8]) {
        let mut out = Vec::new();
        let mut rest = wire;
        while let Some(pos) = rest.windows(2).position(|w| w == b"\r\n") {
            let line = &rest[..pos + 2];
            rest = &rest[pos + 2..];
            if line == b".\r\n" {
                return (out, rest);
            }
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        panic!("no terminating dot line");
    }

    #[test]
    fn message_has_headers_and_requested_size() {
        for size in [0, 100, 600, 1000, 5120, 5121, 5122, 5123, 65_536] {
            let msg = build(&env(7), size);
            let text = String::from_utf8(msg.clone()).unwrap();
            assert!(text.starts_with("From: <a@b>\r\nTo: <demo@example.test>\r\n"));
            assert!(text.contains("\r\nSubject: posthorn-bench message 7\r\n"));
            assert!(text.contains("\r\nMessage-ID: <r1.7@posthorn-bench.invalid>\r\n"));
            assert!(text.contains("\r\nDate: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
            assert!(text.contains("\r\n\r\n"), "blank line ends the header");
            let header_len = text.find("\r\n\r\n").unwrap() + 4;
            if size >= header_len {
                assert!(
                    msg.len() <= size && msg.len() + 2 >= size,
                    "{size}: {}",
                    msg.len()
                );
            }
            // Only CRLF line ends, no line over 76 characters of text.
            for line in text.split_terminator("\r\n") {
                assert!(line.len() <= LINE_TEXT, "{line:?}");
                assert!(!line.contains(['\r', '\n']));
            }
            assert!(text.ends_with("\r\n"));
        }
    }

    #[test]
    fn message_ids_differ_per_sequence_number() {
        let a = String::from_utf8(build(&env(1), 2000)).unwrap();
        let b = String::from_utf8(build(&env(2), 2000)).unwrap();
        assert!(a.contains("<r1.1@") && b.contains("<r1.2@"));
    }

    #[test]
    fn dot_stuffing_table() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"", b".\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b"a\r\n.b\r\n..c\r\n", b"a\r\n..b\r\n...c\r\n.\r\n"),
            (b"no final crlf", b"no final crlf\r\n.\r\n"),
            (b"x.y\r\n .z\r\n", b"x.y\r\n .z\r\n.\r\n"),
        ];
        for (input, want) in cases {
            let mut out = Vec::new();
            dot_stuff(input, &mut out);
            assert_eq!(out, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn generated_message_survives_stuffing_round_trip() {
        let msg = build(&env(42), 5120);
        assert!(
            msg.windows(3).any(|w| w == b"\n.l"),
            "body has dot-leading lines to exercise stuffing"
        );
        let mut wire = Vec::new();
        dot_stuff(&msg, &mut wire);
        wire.extend_from_slice(b"QUIT\r\n");
        let (back, rest) = unstuff(&wire);
        assert_eq!(back, msg);
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[test]
    fn dates() {
        let at = |s| rfc5322_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(at(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(at(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 +0000");
    }
}
