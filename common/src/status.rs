//! The status channel from each worker to master (Postfix's AVAIL/TAKEN).
//!
//! Owns the one message type workers send and its fixed-size encoding on the
//! pipe master hands every worker (`POSTHORN_STATUS_FD`). All workers share
//! one pipe; a record is 16 bytes, far below PIPE_BUF, so writes from
//! different processes never interleave. Master decides what a status means
//! (master/src/lib.rs): a worker that dies before it reported `Available`, or
//! that reported `ConfigError`, is a failing service and gets throttled; one
//! that dies after it was available is replaced at once.
//!
//! Record: pid u32 LE, kind u8, 3 bytes zero, count u64 LE (Served only).
//!
//! Security: master treats a record as a claim by the process whose pid it
//! names, and only for pids that are its own children.
//!
//! Diagnostics: none here; a worker without a status pipe (started by hand,
//! or tests) reports nothing.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::Mutex;

use crate::privilege;

/// What a worker tells master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Started: configuration read, listener taken, privileges dropped.
    Available,
    /// At its connection limit: accepts nothing more for now.
    Busy,
    /// Connections or requests served so far (sent when it changes, at most
    /// about once a second).
    Served(u64),
    /// Exiting because the configuration is unusable.
    ConfigError,
}

/// The size of one record on the pipe.
pub const RECORD: usize = 16;

impl Status {
    pub fn encode(self, pid: u32) -> [u8; RECORD] {
        let mut r = [0u8; RECORD];
        r[..4].copy_from_slice(&pid.to_le_bytes());
        let (kind, n) = match self {
            Status::Available => (1, 0),
            Status::Busy => (2, 0),
            Status::Served(n) => (3, n),
            Status::ConfigError => (4, 0),
        };
        r[4] = kind;
        r[8..].copy_from_slice(&n.to_le_bytes());
        r
    }

    /// Decode one record: the pid it is about and the status, or None for a
    /// record of unknown kind.
    pub fn decode(r: &[u8; RECORD]) -> Option<(u32, Status)> {
        let mut pid = [0u8; 4];
        pid.copy_from_slice(&r[..4]);
        let mut n = [0u8; 8];
        n.copy_from_slice(&r[8..]);
        let s = match r[4] {
            1 => Status::Available,
            2 => Status::Busy,
            3 => Status::Served(u64::from_le_bytes(n)),
            4 => Status::ConfigError,
            _ => return None,
        };
        Some((u32::from_le_bytes(pid), s))
    }
}

/// The worker's end of the pipe, set up once by the skeleton.
static PIPE: Mutex<Option<File>> = Mutex::new(None);

/// Take the status pipe master handed down (`POSTHORN_STATUS_FD`), if any.
pub fn init_from_env() {
    let Some(fd) = std::env::var("POSTHORN_STATUS_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    if let Ok(f) = privilege::inherited_pipe(fd) {
        if let Ok(mut p) = PIPE.lock() {
            *p = Some(f);
        }
    }
}

/// Tell master. Failures are ignored: master may be gone, and a worker
/// without master stops on its own (daemon::watch_master).
pub fn report(s: Status) {
    let rec = s.encode(std::process::id());
    if let Ok(mut p) = PIPE.lock() {
        if let Some(f) = p.as_mut() {
            let _ = f.write_all(&rec);
        }
    }
}

/// Master's side: read every whole record available on a non-blocking pipe.
pub fn read_all(pipe: &mut File, pending: &mut Vec<u8>) -> io::Result<Vec<(u32, Status)>> {
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let whole = pending.len() / RECORD * RECORD;
    let out = pending[..whole]
        .chunks_exact(RECORD)
        .filter_map(|c| {
            let mut r = [0u8; RECORD];
            r.copy_from_slice(c);
            Status::decode(&r)
        })
        .collect();
    pending.drain(..whole);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in [
            Status::Available,
            Status::Busy,
            Status::Served(u64::MAX),
            Status::ConfigError,
        ] {
            assert_eq!(Status::decode(&s.encode(4242)), Some((4242, s)));
        }
        let mut bad = Status::Available.encode(1);
        bad[4] = 99;
        assert_eq!(Status::decode(&bad), None);
    }

    #[test]
    fn partial_records_wait_for_the_rest() {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let mut r = File::from(r);
        let mut w = File::from(w);
        use std::os::fd::AsRawFd;
        nix::fcntl::fcntl(
            r.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .expect("nonblock");
        let a = Status::Served(7).encode(10);
        let b = Status::ConfigError.encode(11);
        w.write_all(&a).expect("write");
        w.write_all(&b[..5]).expect("write");
        let mut pending = Vec::new();
        assert_eq!(
            read_all(&mut r, &mut pending).expect("read"),
            vec![(10, Status::Served(7))]
        );
        w.write_all(&b[5..]).expect("write");
        assert_eq!(
            read_all(&mut r, &mut pending).expect("read"),
            vec![(11, Status::ConfigError)]
        );
        assert!(pending.is_empty());
    }
}
