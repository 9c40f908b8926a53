//! Talking to delivery agents: one request at a time per connection.
//!
//! Owns the request/reply exchange with `private/local`, run as jobs on the
//! server skeleton's pool (common::server::Pool) whose size is the maxproc of
//! the transport's master.cf entry, so every job has an agent process to
//! talk to. Connections are cached between requests and reopened when the
//! agent restarts.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ipc::{self, DeliverReply, DeliverRequest, FrameReader, RecipientResult, Status};
use common::warning;

/// A job: deliver these recipients, tagged with the message's id.
pub struct Job {
    pub req: DeliverRequest,
}

/// A job's outcome.
pub struct Done {
    pub queue_id: String,
    pub results: Vec<RecipientResult>,
}

/// How long an agent may take for one request before we give up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Connections to the agent, kept between requests. At most one per pool
/// thread is in use, so there are never more than the agent has processes.
pub type Connections = Arc<Mutex<Vec<Conn>>>;

/// A connection to the agent and its reply buffer.
pub struct Conn {
    stream: UnixStream,
    replies: FrameReader,
}

/// Deliver one request (on a pool thread): take a cached connection or open
/// one, and put it back when it is still good.
pub fn run(conns: &Connections, socket: &PathBuf, job: Job) -> Done {
    let mut conn = conns.lock().ok().and_then(|mut v| v.pop());
    let results = deliver(&mut conn, socket, &job.req);
    if let Some(c) = conn {
        if let Ok(mut v) = conns.lock() {
            v.push(c);
        }
    }
    Done {
        queue_id: job.req.queue_id,
        results,
    }
}

fn deliver(
    conn: &mut Option<Conn>,
    socket: &PathBuf,
    req: &DeliverRequest,
) -> Vec<RecipientResult> {
    // A cached connection whose agent has gone shows end of file: drop it.
    if conn.as_ref().is_some_and(|c| !alive(&c.stream)) {
        *conn = None;
    }
    let mut last_err = String::new();
    for _attempt in 0..3 {
        if conn.is_none() {
            match UnixStream::connect(socket) {
                Ok(stream) => {
                    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
                    *conn = Some(Conn {
                        stream,
                        replies: FrameReader::new(),
                    });
                }
                Err(e) => {
                    last_err = format!("delivery agent {} unavailable: {e}", socket.display());
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        if let Err(e) = ipc::write_frame(&mut c.stream, req) {
            // The agent never got the request: safe to try another one.
            last_err = format!("delivery agent: {e}");
            *conn = None;
            continue;
        }
        // From here the agent may have delivered: never send the same request
        // twice; a failure defers, and the retry happens later (at most one
        // extra copy, as for any delivery in flight during a crash).
        // One reply per request; the connection's buffer takes length and
        // body in one read.
        match c.replies.read::<_, DeliverReply>(&mut c.stream) {
            Ok(Some(reply)) if valid(req, &reply) => return reply.results,
            Ok(Some(_)) => {
                last_err = "delivery agent sent a reply that does not match the request".into()
            }
            Ok(None) => last_err = "delivery agent closed the connection".into(),
            Err(e) => last_err = format!("delivery agent: {e}"),
        }
        *conn = None;
        break;
    }
    warning!("{}: {last_err}", req.queue_id);
    req.recipients
        .iter()
        .map(|r| RecipientResult {
            index: r.index,
            status: Status::Deferred,
            dsn: "4.3.0".into(),
            text: last_err.clone(),
        })
        .collect()
}

/// Is the agent at the other end still there (no end of file pending)?
/// One non-blocking peek: nothing to read means alive.
fn alive(s: &UnixStream) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 1];
    matches!(
        recv(
            s.as_raw_fd(),
            &mut b,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Err(nix::errno::Errno::EAGAIN)
    )
}

/// The reply must answer exactly the recipients asked about.
fn valid(req: &DeliverRequest, reply: &DeliverReply) -> bool {
    reply.results.len() == req.recipients.len()
        && reply
            .results
            .iter()
            .zip(&req.recipients)
            .all(|(a, b)| a.index == b.index)
}
