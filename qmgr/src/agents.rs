//! Delivery slots: threads that each hold a connection to a delivery agent.
//!
//! Owns talking to `private/local`: one request at a time per connection,
//! reconnecting when the agent restarts. The main loop hands jobs in through a
//! shared channel and is woken (mio Waker) for each result. The number of
//! slots is the maxproc of the transport's master.cf entry, so every slot has
//! an agent process to talk to.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ipc::{self, DeliverReply, DeliverRequest, RecipientResult, Status};
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

/// Start `n` slots for the agent at `socket`.
pub fn start(
    n: usize,
    socket: PathBuf,
    jobs: Arc<Mutex<Receiver<Job>>>,
    done: Sender<Done>,
    waker: Arc<mio::Waker>,
) {
    for i in 0..n {
        let (socket, jobs, done, waker) = (
            socket.clone(),
            Arc::clone(&jobs),
            done.clone(),
            Arc::clone(&waker),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("slot-{i}"))
            .spawn(move || {
                let mut conn: Option<UnixStream> = None;
                loop {
                    let job = {
                        let Ok(rx) = jobs.lock() else { return };
                        match rx.recv() {
                            Ok(j) => j,
                            Err(_) => return, // main loop is gone
                        }
                    };
                    let results = deliver(&mut conn, &socket, &job.req);
                    if done
                        .send(Done {
                            queue_id: job.req.queue_id.clone(),
                            results,
                        })
                        .is_err()
                    {
                        return;
                    }
                    let _ = waker.wake();
                }
            });
        if let Err(e) = spawned {
            common::fatal!("cannot start delivery slot: {e}");
        }
    }
}

fn deliver(
    conn: &mut Option<UnixStream>,
    socket: &PathBuf,
    req: &DeliverRequest,
) -> Vec<RecipientResult> {
    // A cached connection whose agent has gone shows end of file: drop it.
    if conn.as_ref().is_some_and(|s| !alive(s)) {
        *conn = None;
    }
    let mut last_err = String::new();
    for _attempt in 0..3 {
        if conn.is_none() {
            match UnixStream::connect(socket) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(REQUEST_TIMEOUT));
                    *conn = Some(s);
                }
                Err(e) => {
                    last_err = format!("delivery agent {} unavailable: {e}", socket.display());
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
        }
        let Some(s) = conn.as_mut() else { continue };
        if let Err(e) = ipc::write_frame(s, req) {
            // The agent never got the request: safe to try another one.
            last_err = format!("delivery agent: {e}");
            *conn = None;
            continue;
        }
        // From here the agent may have delivered: never send the same request
        // twice; a failure defers, and the retry happens later (at most one
        // extra copy, as for any delivery in flight during a crash).
        match ipc::read_frame::<_, DeliverReply>(s) {
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
fn alive(s: &UnixStream) -> bool {
    use std::io::Read;
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    let r = (&*s).read(&mut b);
    let ok = s.set_nonblocking(false).is_ok();
    ok && matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
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
