//! The maildrop record stream: what sendmail writes to postdrop and what
//! postdrop leaves in maildrop/ for pickup.
//!
//! Owns the format, its writer and its strict reader. Does not own what the
//! records mean for the queue (pickup) or where files go (postdrop).
//!
//! Format (little-endian), the same on postdrop's standard input and in a
//! maildrop file, except that only a file has the 'U' record:
//!
//! ```text
//! "PHM" 0x01                      magic and version
//! record*                         type u8, length u32, data
//!   'U'  uid of the submitter, u32 (files only: postdrop writes it, first)
//!   'S'  envelope sender, once ("" for the null sender)
//!   'F'  full name (sendmail -F), at most once
//!   'R'  recipient, any number up to the bound
//!   'X'  extract recipients from the headers (sendmail -t), empty, at most once
//!   'N'  DSN NOTIFY of every recipient, u8 bits (1 NEVER, or 2 SUCCESS |
//!        4 FAILURE | 8 DELAY), at most once
//!   'B'  body type, u8 (0 7BIT, 1 8BITMIME), at most once
//!   'D'  message bytes, 1 to MAX_CHUNK of them; after the first 'D' only
//!        'D' and 'E' follow
//!   'E'  end, empty; nothing may follow it
//! ```
//!
//! Security: the reader takes its input as hostile (a local user writes
//! postdrop's input; pickup reads files as untrusted). Every record length
//! is bounded before anything is allocated (addresses and names
//! MAX_ADDRESS, chunks MAX_CHUNK), the message by `Limits::message_size`,
//! recipients by `Limits::recipients`; record order and counts are fixed;
//! text is UTF-8 without control characters (nothing can end a header line
//! early). A stream without its 'E' (a writer that died) is `Truncated`.
//!
//! Diagnostics: every failure is one `FormatError` variant.

use std::io::{self, Read, Write};

/// Magic and version.
pub const MAGIC: &[u8; 4] = b"PHM\x01";
/// Longest sender, recipient or full name.
pub const MAX_ADDRESS: usize = 1024;
/// Largest 'D' record.
pub const MAX_CHUNK: usize = 64 * 1024;
/// Most recipients in one submission.
pub const MAX_RECIPIENTS: usize = 10_000;

/// NOTIFY bits, as common::dsn's (the queue file's).
pub const NOTIFY_NEVER: u8 = 1;
pub const NOTIFY_SUCCESS: u8 = 2;
pub const NOTIFY_FAILURE: u8 = 4;
pub const NOTIFY_DELAY: u8 = 8;

/// sendmail -B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
}

/// The bounds a reader enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most message bytes (message_size_limit; 0: no limit).
    pub message_size: u64,
    /// Most 'R' records.
    pub recipients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            message_size: 10_240_000,
            recipients: MAX_RECIPIENTS,
        }
    }
}

/// Who wrote the stream: sendmail (no 'U') or postdrop (a file: 'U' first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Client,
    File,
}

/// One record, decoded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Uid(u32),
    Sender(String),
    FullName(String),
    Recipient(String),
    Extract,
    Notify(u8),
    Body(BodyType),
    Data(Vec<u8>),
    End,
}

/// Why a stream is refused.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    #[error("not a maildrop stream (bad magic)")]
    BadMagic,
    #[error("truncated (no end record)")]
    Truncated,
    #[error("unknown record type 0x{0:02x}")]
    UnknownRecord(u8),
    #[error("record '{kind}' has a bad length {len}")]
    BadLength { kind: char, len: u32 },
    #[error("record '{0}' out of order")]
    OutOfOrder(char),
    #[error("record '{0}' repeated")]
    Repeated(char),
    #[error("record '{0}' has a bad value")]
    BadValue(char),
    #[error("too many recipients")]
    TooManyRecipients,
    #[error("message too big")]
    TooBig,
    #[error("no sender record")]
    NoSender,
    #[error("no recipients (and no request to extract them)")]
    NoRecipients,
    #[error("data after the end record")]
    TrailingData,
}

/// Write one record.
pub fn write_record(out: &mut impl Write, kind: u8, data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record too long"))?;
    out.write_all(&[kind])?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(data)
}

/// Write `rec` (what a reader returned, or what sendmail builds).
pub fn write(out: &mut impl Write, rec: &Record) -> io::Result<()> {
    match rec {
        Record::Uid(u) => write_record(out, b'U', &u.to_le_bytes()),
        Record::Sender(s) => write_record(out, b'S', s.as_bytes()),
        Record::FullName(s) => write_record(out, b'F', s.as_bytes()),
        Record::Recipient(s) => write_record(out, b'R', s.as_bytes()),
        Record::Extract => write_record(out, b'X', &[]),
        Record::Notify(n) => write_record(out, b'N', &[*n]),
        Record::Body(b) => write_record(out, b'B', &[u8::from(*b == BodyType::EightBitMime)]),
        Record::Data(d) => {
            for c in d.chunks(MAX_CHUNK) {
                write_record(out, b'D', c)?;
            }
            Ok(())
        }
        Record::End => write_record(out, b'E', &[]),
    }
}

/// Where the reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Magic,
    Envelope,
    Data,
    Done,
}

/// The strict reader.
#[derive(Debug)]
pub struct Reader<R> {
    input: R,
    source: Source,
    limits: Limits,
    state: State,
    records: usize,
    seen: [bool; 6],
    recipients: usize,
    extract: bool,
    data: u64,
}

impl<R: Read> Reader<R> {
    pub fn new(input: R, source: Source, limits: Limits) -> Reader<R> {
        Reader {
            input,
            source,
            limits,
            state: State::Magic,
            records: 0,
            seen: [false; 6],
            recipients: 0,
            extract: false,
            data: 0,
        }
    }

    /// Message bytes read so far.
    pub fn data_len(&self) -> u64 {
        self.data
    }

    /// The next record; `Ok(None)` after `Record::End` (the input then
    /// proved to end there).
    pub fn next_record(&mut self) -> Result<Option<Record>, FormatError> {
        match self.state {
            State::Done => return Ok(None),
            State::Magic => {
                let mut m = [0u8; 4];
                self.read_exact(&mut m)?;
                if &m != MAGIC {
                    return Err(FormatError::BadMagic);
                }
                self.state = State::Envelope;
            }
            _ => {}
        }
        let mut head = [0u8; 5];
        self.read_exact(&mut head)?;
        let kind = head[0];
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        let c = char::from(kind);
        let bad_len = || FormatError::BadLength { kind: c, len };
        let max = match kind {
            b'U' => 4,
            b'N' | b'B' => 1,
            b'X' | b'E' => 0,
            b'S' | b'F' | b'R' => MAX_ADDRESS,
            b'D' => MAX_CHUNK,
            _ => return Err(FormatError::UnknownRecord(kind)),
        };
        let exact = matches!(kind, b'U' | b'N' | b'B');
        if len as usize > max || (exact && len as usize != max) || (kind == b'D' && len == 0) {
            return Err(bad_len());
        }
        let first = self.records == 0;
        self.records += 1;
        if kind == b'U' && (self.source == Source::Client || !first) {
            return Err(FormatError::OutOfOrder(c));
        }
        if first && self.source == Source::File && kind != b'U' {
            return Err(FormatError::OutOfOrder(c));
        }
        if self.state == State::Data && !matches!(kind, b'D' | b'E') {
            return Err(FormatError::OutOfOrder(c));
        }
        if matches!(kind, b'D' | b'E') && self.state == State::Envelope {
            if !self.seen[0] {
                return Err(FormatError::NoSender);
            }
            if self.recipients == 0 && !self.extract {
                return Err(FormatError::NoRecipients);
            }
            self.state = State::Data;
        }
        if kind == b'D' {
            self.data += u64::from(len);
            if self.limits.message_size > 0 && self.data > self.limits.message_size {
                return Err(FormatError::TooBig);
            }
        }
        let mut buf = vec![0u8; len as usize];
        self.read_exact(&mut buf)?;
        let once = |r: &mut Self, i: usize| {
            if std::mem::replace(&mut r.seen[i], true) {
                Err(FormatError::Repeated(c))
            } else {
                Ok(())
            }
        };
        Ok(Some(match kind {
            b'U' => Record::Uid(u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]])),
            b'S' => {
                once(self, 0)?;
                Record::Sender(text(buf, c, true)?)
            }
            b'F' => {
                once(self, 1)?;
                Record::FullName(text(buf, c, true)?)
            }
            b'R' => {
                self.recipients += 1;
                if self.recipients > self.limits.recipients {
                    return Err(FormatError::TooManyRecipients);
                }
                Record::Recipient(text(buf, c, false)?)
            }
            b'X' => {
                once(self, 2)?;
                self.extract = true;
                Record::Extract
            }
            b'N' => {
                once(self, 3)?;
                let n = buf[0];
                let ok = n == NOTIFY_NEVER
                    || (n != 0 && n & !(NOTIFY_SUCCESS | NOTIFY_FAILURE | NOTIFY_DELAY) == 0);
                if !ok {
                    return Err(FormatError::BadValue(c));
                }
                Record::Notify(n)
            }
            b'B' => {
                once(self, 4)?;
                match buf[0] {
                    0 => Record::Body(BodyType::SevenBit),
                    1 => Record::Body(BodyType::EightBitMime),
                    _ => return Err(FormatError::BadValue(c)),
                }
            }
            b'D' => Record::Data(buf),
            _ => {
                // 'E': the input must end here.
                let mut one = [0u8; 1];
                loop {
                    match self.input.read(&mut one) {
                        Ok(0) => break,
                        Ok(_) => return Err(FormatError::TrailingData),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                self.state = State::Done;
                Record::End
            }
        }))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), FormatError> {
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                FormatError::Truncated
            } else {
                FormatError::Io(e)
            }
        })
    }
}

/// Record text: UTF-8, no control characters; empty only where allowed.
fn text(buf: Vec<u8>, kind: char, empty_ok: bool) -> Result<String, FormatError> {
    let s = String::from_utf8(buf).map_err(|_| FormatError::BadValue(kind))?;
    if (!empty_ok && s.is_empty()) || s.chars().any(char::is_control) {
        return Err(FormatError::BadValue(kind));
    }
    Ok(s)
}

/// Parse a whole stream (tests and the fuzz target): every record, or the
/// first error.
pub fn parse_all(bytes: &[u8], source: Source, limits: Limits) -> Result<Vec<Record>, FormatError> {
    let mut r = Reader::new(bytes, source, limits);
    let mut v = Vec::new();
    while let Some(rec) = r.next_record()? {
        v.push(rec);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(source: Source, recs: &[Record]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        if source == Source::File {
            write(&mut out, &Record::Uid(1000)).unwrap();
        }
        for r in recs {
            write(&mut out, r).unwrap();
        }
        out
    }

    fn good() -> Vec<Record> {
        vec![
            Record::Sender("alice".into()),
            Record::FullName("Alice A.".into()),
            Record::Recipient("bob@example.test".into()),
            Record::Notify(NOTIFY_SUCCESS | NOTIFY_FAILURE),
            Record::Body(BodyType::EightBitMime),
            Record::Data(b"Subject: x\r\n\r\nhi\r\n".to_vec()),
            Record::End,
        ]
    }

    #[test]
    fn round_trip_client_and_file() {
        let l = Limits::default();
        assert_eq!(
            parse_all(&stream(Source::Client, &good()), Source::Client, l).unwrap(),
            good()
        );
        let mut want = vec![Record::Uid(1000)];
        want.extend(good());
        assert_eq!(
            parse_all(&stream(Source::File, &good()), Source::File, l).unwrap(),
            want
        );
    }

    #[test]
    fn refusals() {
        let l = Limits::default();
        let err = |source, recs: &[Record]| {
            parse_all(&stream(source, recs), source, l)
                .unwrap_err()
                .to_string()
        };
        // A client may not claim a uid; a file must start with one.
        let mut with_uid = vec![Record::Uid(0)];
        with_uid.extend(good());
        assert!(err(Source::Client, &with_uid).contains("out of order"));
        let mut no_uid = MAGIC.to_vec();
        for r in good() {
            write(&mut no_uid, &r).unwrap();
        }
        assert!(parse_all(&no_uid, Source::File, l).is_err());
        // No end record: a writer that died.
        assert!(err(Source::Client, &good()[..6]).contains("truncated"));
        // Envelope after data.
        let mut late = good();
        late.insert(6, Record::Recipient("x@y".into()));
        assert!(err(Source::Client, &late).contains("out of order"));
        // Repeats, missing sender, no recipients.
        let mut two = good();
        two.insert(0, Record::Sender("b".into()));
        assert!(err(Source::Client, &two).contains("repeated"));
        assert!(err(Source::Client, &good()[1..]).contains("no sender"));
        let norcpt = vec![Record::Sender("a".into()), Record::End];
        assert!(err(Source::Client, &norcpt).contains("no recipients"));
        let extract = vec![Record::Sender("a".into()), Record::Extract, Record::End];
        assert!(parse_all(&stream(Source::Client, &extract), Source::Client, l).is_ok());
        // Header injection through an address.
        let mut inj = good();
        inj[0] = Record::Sender("a\r\nBcc: x".into());
        assert!(err(Source::Client, &inj).contains("bad value"));
        // Bad NOTIFY bits.
        let mut n = good();
        n[3] = Record::Notify(NOTIFY_NEVER | NOTIFY_SUCCESS);
        assert!(err(Source::Client, &n).contains("bad value"));
        // Trailing bytes after the end.
        let mut t = stream(Source::Client, &good());
        t.push(0);
        assert!(matches!(
            parse_all(&t, Source::Client, l),
            Err(FormatError::TrailingData)
        ));
        // Bad magic, unknown record, oversized lengths (nothing allocated).
        assert!(matches!(
            parse_all(b"XXXX", Source::Client, l),
            Err(FormatError::BadMagic)
        ));
        let mut u = MAGIC.to_vec();
        u.extend_from_slice(&[b'Z', 0, 0, 0, 0]);
        assert!(matches!(
            parse_all(&u, Source::Client, l),
            Err(FormatError::UnknownRecord(b'Z'))
        ));
        let mut big = MAGIC.to_vec();
        big.extend_from_slice(&[b'S', 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            parse_all(&big, Source::Client, l),
            Err(FormatError::BadLength { .. })
        ));
    }

    #[test]
    fn bounds() {
        let small = Limits {
            message_size: 10,
            recipients: 2,
        };
        let mut recs = good();
        recs[5] = Record::Data(vec![b'a'; 11]);
        assert!(matches!(
            parse_all(&stream(Source::Client, &recs), Source::Client, small),
            Err(FormatError::TooBig)
        ));
        let mut many = vec![Record::Sender("a".into())];
        many.extend((0..3).map(|i| Record::Recipient(format!("r{i}@x"))));
        many.push(Record::End);
        assert!(matches!(
            parse_all(&stream(Source::Client, &many), Source::Client, small),
            Err(FormatError::TooManyRecipients)
        ));
    }

    #[test]
    fn every_truncation_and_mutation_is_an_error_not_a_panic() {
        let l = Limits::default();
        let full = stream(Source::File, &good());
        for n in 0..full.len() {
            assert!(
                parse_all(&full[..n], Source::File, l).is_err(),
                "cut at {n}"
            );
        }
        for i in 0..full.len() {
            for b in [0u8, 1, 0x7f, 0xff, b'E', b'D'] {
                let mut m = full.clone();
                m[i] = b;
                let _ = parse_all(&m, Source::File, l);
            }
        }
    }
}
