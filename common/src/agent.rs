//! What the delivery agents (posthorn-local, posthorn-smtp) share in
//! serving qmgr's connections on their unix service: waiting for a
//! request while watching the stop flag, and telling whether qmgr has gone
//! (requests it left behind are not delivered: their messages are back in
//! incoming/ and will be asked for again).

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use crate::daemon::Worker;
use crate::ipc::{DeliverRequest, FrameReader};
use crate::{error, warning};

/// Accept qmgr's connections on `listener` and `serve` each to its end,
/// one at a time, until the worker is told to stop.
pub fn accept_loop(
    listener: &UnixListener,
    worker: &Worker,
    mut serve: impl FnMut(UnixStream) -> io::Result<()>,
) {
    if let Err(e) = listener.set_nonblocking(true) {
        crate::fatal!("listener: {e}");
    }
    while !worker.stopping() {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = serve(stream) {
                    if e.kind() != io::ErrorKind::UnexpectedEof {
                        warning!("connection from qmgr: {e}");
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_readable(listener, Duration::from_millis(500));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                error!("accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// A qmgr connection just accepted: blocking, with a 60 s read time-out
/// (a request's frame, once begun, comes whole).
pub fn prepare(stream: &UnixStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))
}

/// The next request on a qmgr connection (`prepare`d), waited for while
/// watching the stop flag: None when qmgr closed the connection or the
/// worker is to stop.
pub fn next_request(
    stream: &UnixStream,
    frames: &mut FrameReader,
    worker: &Worker,
) -> io::Result<Option<DeliverRequest>> {
    while !frames.has_frame() && !wait_readable(stream, Duration::from_millis(500)) {
        if worker.stopping() {
            return Ok(None);
        }
    }
    frames.read::<_, DeliverRequest>(&mut &*stream)
}

/// Has the other end closed the connection (end of file waiting to be read)?
pub fn peer_gone(stream: &UnixStream) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    let mut b = [0u8; 1];
    matches!(
        recv(
            stream.as_raw_fd(),
            &mut b,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Ok(0)
    )
}

/// Wait until `fd` is readable (or at end of file). False on time-out.
pub fn wait_readable(fd: &impl AsFd, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    matches!(poll(&mut fds, ms), Ok(n) if n > 0)
}
