//! SPF, DKIM, DMARC and ARC of inbound mail at the end of DATA
//! (smtpd_authentication_checks): one verification thread per smtpd
//! process, many messages at once.
//!
//! Owns the thread and the bounds on verifications. The thread runs a
//! current-thread tokio runtime: each message is a task there (trust::verify
//! on trust::dns's resolver, with the process's DNS cache), and its outcome
//! goes back to the event loop through the connection's ticket
//! (`Next::Await`), as peername.rs does. So a slow or dead name server
//! holds only the sessions waiting for their own messages, never the loop
//! or other sessions. The message is not copied in the loop: the thread
//! reads it from the queue file (a descriptor duplicated from the writer,
//! the bytes written so far flushed), at most MAX_HELD bytes; a larger
//! message gets SPF only (`dkim=none (message too large to verify)`).
//! At most RUNNING messages are held and verified at once; the others wait
//! their turn holding only a descriptor. Also appends the DMARC
//! observation ($queue_directory/dmarc/, trust::dmarc_store).
//!
//! Does not own what is checked or the header text (trust::verify,
//! trust::authres), or what the session does with the outcome
//! (session.rs: the header as the queue file's 'H' record, or 550 5.7.1
//! under dmarc_enforce).
//!
//! Security: every verification ends within DEADLINE (waiting for a turn
//! included); past it the message is queued without results. A DNS failure
//! is a temperror result, never a lost or refused message.
//!
//! Diagnostics: `warning: ID: authentication checks: ...` (an unreadable
//! queue file, a DMARC observation not kept, a deadline passed).

use std::fs::File;
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::server::Ticket;
use common::warning;
use mio::Token;
use posthorn_trust::verify::{DmarcAction, Transaction, Verifier};
use posthorn_trust::{authres, dmarc_store};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;

use crate::server::Done;
use crate::session::Authenticated;

/// Largest message held in memory for DKIM, ARC and DMARC.
pub const MAX_HELD: u64 = 32 << 20;
/// Messages held and verified at once.
pub const RUNNING: usize = 4;
/// Longest wait for one message's results, its turn included.
pub const DEADLINE: Duration = Duration::from_secs(150);

/// How a session's verification starts (`Next::Await`'s `start`).
pub type Start = Box<dyn FnOnce(Ticket<Token, Done>)>;

/// One message to verify.
pub struct Request {
    pub id: String,
    pub client: IpAddr,
    pub helo: String,
    pub mail_from: String,
    /// The queue file, and where the message is in it.
    pub file: File,
    pub offset: u64,
    pub len: u64,
    pub time: u64,
}

/// The way to the verification thread.
pub struct Authenticator {
    tx: UnboundedSender<(Request, Ticket<Token, Done>)>,
}

/// What the thread needs besides requests.
pub struct Settings {
    pub verifier: Verifier,
    pub authserv_id: String,
    pub myhostname: String,
    pub enforce: bool,
    /// $queue_directory/dmarc.
    pub dmarc_dir: PathBuf,
}

impl Authenticator {
    pub fn start(settings: Settings) -> Result<Authenticator, common::dns::DnsError> {
        let rt = common::dns::runtime()?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("authenticate".into())
            .spawn(move || {
                rt.block_on(serve(rx, Arc::new(settings)));
            })
            .map_err(common::dns::DnsError::Runtime)?;
        Ok(Authenticator { tx })
    }

    /// The start of `r`'s verification, for `Next::Await`.
    pub fn begin(&self, r: Request) -> Start {
        let tx = self.tx.clone();
        Box::new(move |ticket| {
            // The thread gone: the request drops, and its ticket delivers
            // the fallback (queued without results).
            let _ = tx.send((r, ticket));
        })
    }
}

async fn serve(mut rx: UnboundedReceiver<(Request, Ticket<Token, Done>)>, s: Arc<Settings>) {
    let turns = Arc::new(Semaphore::new(RUNNING));
    while let Some((req, ticket)) = rx.recv().await {
        let (s, turns) = (Arc::clone(&s), Arc::clone(&turns));
        tokio::spawn(async move {
            let id = req.id.clone();
            let work = async {
                let _turn = turns.acquire().await.ok()?;
                Some(verify(&s, req).await)
            };
            match tokio::time::timeout(DEADLINE, work).await {
                Ok(Some(a)) => ticket.finish(Done::Authenticated(Some(a))),
                Ok(None) => drop(ticket),
                Err(_) => {
                    warning!(
                        "{id}: authentication checks: no results within {}s; queued without them",
                        DEADLINE.as_secs()
                    );
                    drop(ticket);
                }
            }
        });
    }
}

async fn verify(s: &Settings, req: Request) -> Authenticated {
    let message = if req.len <= MAX_HELD {
        let mut buf = vec![0u8; req.len as usize];
        match req.file.read_exact_at(&mut buf, req.offset) {
            Ok(()) => Ok(buf),
            Err(e) => {
                warning!("{}: authentication checks: queue file: {e}", req.id);
                Err("queue file unreadable")
            }
        }
    } else {
        Err("message too large to verify")
    };
    let tx = Transaction {
        client: req.client,
        helo: &req.helo,
        mail_from: &req.mail_from,
        myhostname: &s.myhostname,
        time: req.time,
    };
    let mut v = s
        .verifier
        .verify(&tx, message.as_deref().map_err(|e| *e))
        .await;
    let reject = s.enforce && v.action == DmarcAction::Reject;
    v.applied(reject);
    if let Some(o) = &v.observation {
        if let Err(e) = dmarc_store::append(&s.dmarc_dir, o) {
            warning!(
                "{}: authentication checks: DMARC observation not kept: {e}",
                req.id
            );
        }
    }
    let domain = v
        .results
        .dmarc
        .as_ref()
        .map(|d| d.from.clone())
        .unwrap_or_default();
    Authenticated {
        header: authres::header(&s.authserv_id, &v.results),
        summary: authres::summary(&v.results),
        reject: reject.then(|| domain.clone()),
        quarantine: v.action == DmarcAction::Quarantine,
    }
}
