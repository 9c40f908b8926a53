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
    let body = bincode::serde::encode_to_vec(msg, config())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "IPC message too large",
        ));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()
}

/// Read one frame. `Ok(None)` on a clean end of stream before a frame.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("IPC frame of {len} bytes is too large"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let (msg, used) = bincode::serde::decode_from_slice(&body, config())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad IPC message: {e}")))?;
    if used != len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "trailing bytes in IPC frame",
        ));
    }
    Ok(Some(msg))
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
}
