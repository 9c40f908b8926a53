//! Messages between posthorn processes on Unix sockets, and their framing.
//!
//! A frame is a u32 little-endian length and that many bytes of bincode 2
//! (serde) encoding. Owns the message types and their bounds; the daemons own
//! what they do with them.
//!
//! Security: a peer is another posthorn process, but not trusted: frames over
//! MAX_FRAME are refused, decoding is bounded by MAX_FRAME too (a length
//! field claiming more than the frame holds is an error before anything is
//! allocated), decoding errors are errors, and receivers check every field
//! (queue ids are parsed, paths are never taken from a message).

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 1 << 20;

/// bincode's configuration for frames: standard encoding, and decoding may
/// claim at most MAX_FRAME bytes in all.
fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME>,
> {
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

/// Write one message as a frame (one write call for small frames).
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let mut buf = Vec::new();
    encode_frame(&mut buf, msg)?;
    w.write_all(&buf)?;
    w.flush()
}

/// Append one message as a frame to `buf` (several frames go out in one
/// write: qmgr's batches of requests, local's replies to them).
pub fn encode_frame<T: Serialize>(buf: &mut Vec<u8>, msg: &T) -> io::Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let len = bincode::serde::encode_into_std_write(msg, buf, config())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    if len > MAX_FRAME {
        buf.truncate(start);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "IPC message too large",
        ));
    }
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Read one frame. `Ok(None)` on a clean end of stream before a frame.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = frame_len(len)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    decode(&body).map(Some)
}

/// A frame's length field, checked against MAX_FRAME.
fn frame_len(b: [u8; 4]) -> io::Result<usize> {
    let len = u32::from_le_bytes(b) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("IPC frame of {len} bytes is too large"),
        ));
    }
    Ok(len)
}

/// Decode a frame's body, which must be exactly one message.
fn decode<T: DeserializeOwned>(body: &[u8]) -> io::Result<T> {
    let (msg, used) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad IPC message: {e}")))?;
    if used != body.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "trailing bytes in IPC frame",
        ));
    }
    Ok(msg)
}

/// Reads frames from one stream through a buffer kept between frames: one
/// `read` usually brings a whole frame, or several (a batch of requests),
/// where `read_frame` needs two reads per frame or a fresh buffer each
/// time. Bounded: the buffer grows to at most one frame of MAX_FRAME.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new()
    }
}

impl FrameReader {
    /// Buffer size kept between frames.
    const SIZE: usize = 16 * 1024;

    pub fn new() -> FrameReader {
        FrameReader {
            buf: vec![0; FrameReader::SIZE],
            start: 0,
            end: 0,
        }
    }

    /// Is a whole frame buffered, so that the next `read` needs no system
    /// call? (Also true for a bad length field: `read` reports it.)
    pub fn has_frame(&self) -> bool {
        let have = &self.buf[self.start..self.end];
        have.len() >= 4
            && frame_len([have[0], have[1], have[2], have[3]])
                .map_or(true, |len| have.len() >= 4 + len)
    }

    /// The next frame, reading from `r` as needed. `Ok(None)` on a clean end
    /// of stream before a frame; end of stream inside one is an error.
    pub fn read<R: Read, T: DeserializeOwned>(&mut self, r: &mut R) -> io::Result<Option<T>> {
        loop {
            let have = self.end - self.start;
            // The whole frame's size once its length field is here.
            let need = if have >= 4 {
                let b = &self.buf[self.start..self.start + 4];
                4 + frame_len([b[0], b[1], b[2], b[3]])?
            } else {
                4
            };
            if have >= 4 && have >= need {
                let body = &self.buf[self.start + 4..self.start + need];
                let msg = decode(body);
                self.start += need;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                    if self.buf.len() > FrameReader::SIZE {
                        self.buf.truncate(FrameReader::SIZE);
                        self.buf.shrink_to_fit();
                    }
                }
                return msg.map(Some);
            }
            // Room for the whole frame after what is buffered.
            if self.start + need > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end = have;
                self.start = 0;
                if need > self.buf.len() {
                    self.buf.resize(need, 0);
                }
            }
            match r.read(&mut self.buf[self.end..]) {
                Ok(0) if have == 0 => return Ok(None),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "end of stream inside an IPC frame",
                    ))
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// qmgr -> local delivery: deliver these recipients of the message in active/.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverRequest {
    /// The queue id; the receiver builds the path itself (active/ID).
    pub queue_id: String,
    pub sender: String,
    /// Arrival time, unix seconds (for delay= in the log line).
    pub arrival: u64,
    pub recipients: Vec<DeliverRecipient>,
    /// posthorn-smtp: where to send them (relayhost's syntax: `[host]:port`,
    /// `host:port`, `host`; from transport_maps, relayhost or the recipients'
    /// domain, decided by qmgr). Empty: the agent decides (local delivery).
    pub nexthop: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverRecipient {
    /// Index of the recipient in the queue file.
    pub index: u32,
    pub address: String,
}

/// What became of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Delivered: done.
    Sent,
    /// Try again later.
    Deferred,
    /// Will never work: return to sender.
    Bounced,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientResult {
    pub index: u32,
    pub status: Status,
    /// RFC 3463 enhanced status code, e.g. "5.1.1".
    pub dsn: String,
    /// Human-readable reason, as logged in status=... (...).
    pub text: String,
    /// For a `Sent` recipient: who tells a sender that asked for
    /// NOTIFY=SUCCESS. Last, so the fields before keep their place (bincode
    /// has no defaults for missing fields: both ends are of one build).
    pub handoff: Handoff,
    /// For a `Sent` recipient of local delivery: addresses (aliases,
    /// .forward) that local delivery does not deliver itself. qmgr queues
    /// them as a new message (same sender, `Delivered-To: <recipient>`
    /// prepended) before it records the recipient as done; if it cannot,
    /// the recipient is deferred. Empty from every other agent.
    pub forward: Vec<String>,
}

/// Where a sent recipient's message went, for the success notice (RFC
/// 3461 5.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handoff {
    /// Final delivery here (a mailbox): qmgr's notice says "delivered".
    #[default]
    Delivered,
    /// Handed to a server without DSN: qmgr's notice says "relayed".
    Relayed,
    /// Handed to a server with DSN, NOTIFY passed on: the notice is that
    /// server's to send, not ours.
    Passed,
}

/// local delivery -> qmgr: one result per requested recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverReply {
    pub results: Vec<RecipientResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let req = DeliverRequest {
            queue_id: "0123456789BCDF".into(),
            sender: "a@b".into(),
            arrival: 1,
            nexthop: String::new(),
            recipients: vec![DeliverRecipient {
                index: 3,
                address: "x@y".into(),
            }],
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame::<_, DeliverRequest>(&mut r).unwrap(), Some(req));
        assert_eq!(read_frame::<_, DeliverRequest>(&mut r).unwrap(), None);
        let huge = (MAX_FRAME as u32 + 1).to_le_bytes();
        assert!(read_frame::<_, DeliverRequest>(&mut &huge[..]).is_err());
        let junk = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
        assert!(read_frame::<_, DeliverRequest>(&mut &junk[..]).is_err());
    }

    #[test]
    fn huge_claimed_length_is_an_error_not_an_abort() {
        // queue_id claims 2^60 bytes (varint 0xff then u64), in a 13-byte frame.
        let mut body = vec![0xffu8];
        body.extend_from_slice(&(1u64 << 60).to_le_bytes());
        body.extend_from_slice(b"abc");
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&body);
        let e = read_frame::<_, DeliverRequest>(&mut &frame[..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        // A vector that claims 2^60 elements, likewise.
        let mut body = vec![0x00u8, 0x00, 0x00, 0xff];
        body.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&body);
        assert!(read_frame::<_, DeliverRequest>(&mut &frame[..]).is_err());
    }
    /// fuzz/ ipc_frame, minimised by afl-tmin: a 48-byte frame whose first
    /// recipient's address claims 0x3030303030303030 bytes (varint 0xfd +
    /// u64), nested in the list; and a reply whose dsn claims 2^63 bytes.
    /// Before decoding was bounded, the receiver aborted allocating them.
    #[test]
    fn fuzzed_nested_huge_lengths_are_errors() {
        let mut frame = vec![
            0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x30, 0x30, 0x30, 0xfd, 0x30, 0x30,
        ];
        frame.resize(4 + 0x30, 0x30);
        assert!(read_frame::<_, DeliverRequest>(&mut &frame[..]).is_err());
        let mut frame = vec![0x10, 0, 0, 0, 0x01, 0x00, 0x00, 0xfd];
        frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        frame.resize(4 + 0x10, 0);
        assert!(read_frame::<_, DeliverReply>(&mut &frame[..]).is_err());
    }

    /// Hands out its bytes in reads of at most `step` bytes.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn request(address_len: usize) -> DeliverRequest {
        DeliverRequest {
            queue_id: "0123456789BCDF".into(),
            sender: "a@b".into(),
            arrival: 7,
            nexthop: String::new(),
            recipients: vec![DeliverRecipient {
                index: 0,
                address: "x".repeat(address_len),
            }],
        }
    }

    #[test]
    fn frame_reader_takes_batches_in_any_pieces() {
        // Small frames, one larger than the reader's buffer, and small again.
        let reqs: Vec<DeliverRequest> = [10, 0, 40_000, 3, 17_000]
            .into_iter()
            .map(request)
            .collect();
        let mut wire = Vec::new();
        for r in &reqs {
            encode_frame(&mut wire, r).unwrap();
        }
        for step in [1, 3, 7, 4096, wire.len()] {
            let mut src = Trickle { data: &wire, step };
            let mut fr = FrameReader::new();
            for (i, want) in reqs.iter().enumerate() {
                let got: DeliverRequest = fr.read(&mut src).unwrap().expect("a frame");
                assert_eq!(&got, want, "frame {i}, reads of {step}");
            }
            assert!(!fr.has_frame());
            assert_eq!(fr.read::<_, DeliverRequest>(&mut src).unwrap(), None);
        }
        // All in one read: the rest is there without another read.
        let mut fr = FrameReader::new();
        let mut small = Vec::new();
        for r in [request(1), request(2), request(3)] {
            encode_frame(&mut small, &r).unwrap();
        }
        let mut src = Trickle {
            data: &small,
            step: small.len(),
        };
        assert_eq!(
            fr.read::<_, DeliverRequest>(&mut src).unwrap(),
            Some(request(1))
        );
        assert!(fr.has_frame());
        let mut nothing = Trickle { data: &[], step: 0 };
        assert_eq!(
            fr.read::<_, DeliverRequest>(&mut nothing).unwrap(),
            Some(request(2))
        );
        assert_eq!(
            fr.read::<_, DeliverRequest>(&mut nothing).unwrap(),
            Some(request(3))
        );
        assert!(!fr.has_frame());
    }

    #[test]
    fn frame_reader_errors() {
        // End of stream inside a frame.
        let mut wire = Vec::new();
        encode_frame(&mut wire, &request(5)).unwrap();
        let cut = &wire[..wire.len() - 1];
        let e = FrameReader::new()
            .read::<_, DeliverRequest>(&mut Trickle { data: cut, step: 2 })
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // A length over MAX_FRAME: refused before anything is allocated.
        let huge = (MAX_FRAME as u32 + 1).to_le_bytes();
        let mut fr = FrameReader::new();
        let e = fr
            .read::<_, DeliverRequest>(&mut Trickle {
                data: &huge,
                step: 4,
            })
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(fr.buf.len() <= FrameReader::SIZE);
        // Trailing bytes inside a frame.
        let mut wire = Vec::new();
        encode_frame(&mut wire, &request(5)).unwrap();
        wire.push(0);
        let n = (wire.len() - 4) as u32;
        wire[..4].copy_from_slice(&n.to_le_bytes());
        let e = FrameReader::new()
            .read::<_, DeliverRequest>(&mut Trickle {
                data: &wire,
                step: 100,
            })
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
