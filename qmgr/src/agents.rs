//! Talking to delivery agents: a batch of requests at a time per connection.
//!
//! Owns the request/reply exchange with a delivery agent (`private/local`,
//! `private/smtp`), run as jobs on the
//! server skeleton's pool (common::server::Pool) whose size is the maxproc of
//! the transport's master.cf entry, so every batch has an agent process to
//! talk to. Connections are cached between batches and reopened when the
//! agent restarts.
//!
//! Batches: the requests of a batch go out in one write and the agent
//! answers each, in order, after all of them are delivered and durable
//! (one fsync of each Maildir's new/ for the batch; see posthorn-local).
//! A batch that fails part way defers the requests not answered: they were
//! in flight, so at most they are delivered again later.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ipc::{
    self, DeliverReply, DeliverRequest, FrameReader, Handoff, RecipientResult, Status,
};
use common::warning;

/// Which delivery agent a job goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// private/local: mydestination and virtual_mailbox_domains.
    Local,
    /// private/smtp: every other domain.
    Smtp,
}

/// A job: deliver these recipients, tagged with the message's id.
pub struct Job {
    pub req: DeliverRequest,
    pub transport: Transport,
}

/// A job's outcome.
pub struct Done {
    pub queue_id: String,
    pub results: Vec<RecipientResult>,
}

/// How long an agent may take for a batch before we give up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Connections to the agent, kept between batches. At most one per pool
/// thread is in use, so there are never more than the agent has processes.
pub type Connections = Arc<Mutex<Vec<Conn>>>;

/// A connection to the agent and its reply buffer.
pub struct Conn {
    stream: UnixStream,
    replies: FrameReader,
    /// The destination of the last batch it carried (posthorn-smtp keeps
    /// its SMTP connection to that next hop open for a while).
    dest: String,
}

/// Deliver a batch (on a pool thread): take a cached connection (one whose
/// agent last served `dest` if there is one, so that agent's SMTP session
/// is reused) or open one, and put it back when it is still good. One
/// `Done` per job, in order.
pub fn run(conns: &Connections, socket: &PathBuf, dest: &str, jobs: Vec<Job>) -> Vec<Done> {
    let mut conn = conns.lock().ok().and_then(|mut v| {
        let i = v
            .iter()
            .rposition(|c| c.dest == dest)
            .or(v.len().checked_sub(1))?;
        Some(v.remove(i))
    });
    let reqs: Vec<&DeliverRequest> = jobs.iter().map(|j| &j.req).collect();
    let results = deliver(&mut conn, socket, &reqs);
    if let Some(mut c) = conn {
        c.dest = dest.to_string();
        if let Ok(mut v) = conns.lock() {
            v.push(c);
        }
    }
    jobs.into_iter()
        .zip(results)
        .map(|(j, results)| Done {
            queue_id: j.req.queue_id,
            results,
        })
        .collect()
}

/// Every recipient of `req` deferred with `why`.
fn deferred(req: &DeliverRequest, why: &str) -> Vec<RecipientResult> {
    warning!("{}: {why}", req.queue_id);
    req.recipients
        .iter()
        .map(|r| RecipientResult {
            index: r.index,
            status: Status::Deferred,
            dsn: "4.3.0".into(),
            text: why.to_string(),
            handoff: Handoff::default(),
            forward: Vec::new(),
        })
        .collect()
}

fn deliver(
    conn: &mut Option<Conn>,
    socket: &PathBuf,
    reqs: &[&DeliverRequest],
) -> Vec<Vec<RecipientResult>> {
    // A cached connection whose agent has gone shows end of file: drop it.
    if conn.as_ref().is_some_and(|c| !alive(&c.stream)) {
        *conn = None;
    }
    // All requests in one write.
    let mut wire = Vec::new();
    for req in reqs {
        if let Err(e) = ipc::encode_frame(&mut wire, req) {
            // Cannot happen for a request within the frame limit; fail safe.
            let why = format!("delivery request not sent: {e}");
            return reqs.iter().map(|r| deferred(r, &why)).collect();
        }
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
                        dest: String::new(),
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
        if let Err(e) = c.stream.write_all(&wire) {
            // The agent never got the requests: safe to try another one.
            last_err = format!("delivery agent: {e}");
            *conn = None;
            continue;
        }
        // From here the agent may have delivered: never send the same
        // request twice; a failure defers, and the retry happens later (at
        // most one extra copy, as for any delivery in flight during a crash).
        // One reply per request, in order; the connection's buffer takes
        // several in one read.
        let mut out = Vec::with_capacity(reqs.len());
        for req in reqs {
            let why = match c.replies.read::<_, DeliverReply>(&mut c.stream) {
                Ok(Some(reply)) if valid(req, &reply) => {
                    out.push(reply.results);
                    continue;
                }
                Ok(Some(_)) => "delivery agent sent a reply that does not match the request".into(),
                Ok(None) => "delivery agent closed the connection".into(),
                Err(e) => format!("delivery agent: {e}"),
            };
            // The rest of the batch is in doubt.
            *conn = None;
            out.extend(reqs[out.len()..].iter().map(|r| deferred(r, &why)));
            break;
        }
        return out;
    }
    reqs.iter().map(|r| deferred(r, &last_err)).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use common::ipc::DeliverRecipient;
    use std::os::unix::net::UnixListener;

    fn job(n: u32) -> Job {
        Job {
            transport: Transport::Local,
            req: DeliverRequest {
                queue_id: format!("0000000000000{n}"),
                sender: "a@b".into(),
                arrival: 0,
                nexthop: String::new(),
                recipients: vec![DeliverRecipient {
                    index: n,
                    address: format!("r{n}@example.test"),
                }],
            },
        }
    }

    /// An agent on a real socket that reads `take` requests, answers the
    /// first `answer` of them (sent) and closes.
    fn agent(name: &str, take: usize, answer: usize) -> (PathBuf, std::thread::JoinHandle<()>) {
        let path = std::env::temp_dir().join(format!(
            "posthorn-agents-{name}-{}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut frames = FrameReader::new();
            let mut reqs = Vec::new();
            while reqs.len() < take {
                let r: DeliverRequest = frames.read(&mut s).unwrap().unwrap();
                reqs.push(r);
            }
            let mut out = Vec::new();
            for r in &reqs[..answer] {
                let results = r
                    .recipients
                    .iter()
                    .map(|x| RecipientResult {
                        index: x.index,
                        status: Status::Sent,
                        dsn: "2.0.0".into(),
                        text: "delivered".into(),
                        handoff: Handoff::Delivered,
                        forward: Vec::new(),
                    })
                    .collect();
                ipc::encode_frame(&mut out, &DeliverReply { results }).unwrap();
            }
            s.write_all(&out).unwrap();
        });
        (path, t)
    }

    #[test]
    fn a_batch_is_answered_in_order() {
        let (path, t) = agent("whole", 4, 4);
        let conns = Connections::default();
        let done = run(&conns, &path, "", (0..4).map(job).collect());
        t.join().unwrap();
        let ids: Vec<&str> = done.iter().map(|d| d.queue_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "00000000000000",
                "00000000000001",
                "00000000000002",
                "00000000000003"
            ]
        );
        assert!(done.iter().all(|d| d.results[0].status == Status::Sent));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_batch_cut_short_defers_the_unanswered() {
        let (path, t) = agent("cut", 5, 2);
        let conns = Connections::default();
        let done = run(&conns, &path, "", (0..5).map(job).collect());
        t.join().unwrap();
        let status: Vec<Status> = done.iter().map(|d| d.results[0].status).collect();
        use Status::*;
        assert_eq!(status, [Sent, Sent, Deferred, Deferred, Deferred]);
        assert_eq!(done[4].results[0].index, 4);
        assert!(
            conns.lock().unwrap().is_empty(),
            "a broken connection is not kept"
        );
        let _ = std::fs::remove_file(&path);
    }
}
