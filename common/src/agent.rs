//! What the delivery agents (posthorn-local, posthorn-smtp) share in
//! serving qmgr's connections on their unix service: waiting for a
//! request while watching the stop flag, and telling whether qmgr has gone
//! (requests it left behind are not delivered: their messages are back in
//! incoming/ and will be asked for again).

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

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
