//! Client names before the greeting (Postfix's smtpd_peername_lookup): one
//! look-up thread per smtpd process, many look-ups at once.
//!
//! Owns the thread and the bound on look-ups in flight. The thread runs a
//! current-thread tokio runtime: each look-up is a task there (common::dns
//! NameService: /etc/hosts, then the name servers, forward-confirmed), and
//! its result goes back to the event loop through the connection's ticket
//! (`Next::Await`), which wakes the loop as a finished pool job does. So a
//! slow or dead name server holds only the sessions waiting for their own
//! names, never a pool thread, the loop, other sessions or their queue
//! writes. Does not own what a name is used for (session.rs: log lines and
//! the Received: header) or how it is confirmed (common::dns::peer).
//!
//! Security: every look-up ends within smtpd_peername_lookup_timeout, and
//! at most MAX_IN_FLIGHT run at once; a client past that is `unknown` at
//! once, without a look-up.
//!
//! Diagnostics: `client name look-ups: N in flight; more clients are
//! unknown` (a warning, once each time the bound is reached).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::dns::{Hosts, NameService, ResolverConfig, ResolverOpts};
use common::server::Ticket;
use common::warning;
use mio::Token;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use crate::server::Done;

/// Look-ups one process runs at once at most (each holds a socket).
pub const MAX_IN_FLIGHT: usize = 64;

/// How a session's look-up starts (`Next::Await`'s `start`).
pub type Start = Box<dyn FnOnce(Ticket<Token, Done>)>;

/// What the look-up thread is asked.
struct Request {
    ip: IpAddr,
    ticket: Ticket<Token, Done>,
    /// Counts the look-up in flight until it is dropped.
    _slot: Slot,
}

/// One look-up in flight.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The way to the look-up thread.
pub struct PeerNames {
    tx: UnboundedSender<Request>,
    in_flight: Arc<AtomicUsize>,
    /// The bound was reached and said so; not again until a look-up starts.
    full: bool,
}

impl PeerNames {
    /// Start the thread: look-ups of `servers` (None: /etc/hosts only), each
    /// bounded by `within`.
    pub fn start(
        servers: Option<(ResolverConfig, ResolverOpts)>,
        within: Duration,
    ) -> Result<PeerNames, common::dns::DnsError> {
        let rt = common::dns::runtime()?;
        let hosts = Hosts::system();
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("peername".into())
            .spawn(move || {
                rt.block_on(serve(rx, servers, hosts, within));
            })
            .map_err(common::dns::DnsError::Runtime)?;
        Ok(PeerNames {
            tx,
            in_flight: Arc::new(AtomicUsize::new(0)),
            full: false,
        })
    }

    /// The start of a look-up of `ip`, for `Next::Await`; None at the
    /// bound (the client is unknown).
    pub fn begin(&mut self, ip: IpAddr) -> Option<Start> {
        if self.in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
            if !self.full {
                self.full = true;
                warning!(
                    "client name look-ups: {MAX_IN_FLIGHT} in flight; more clients are unknown"
                );
            }
            return None;
        }
        self.full = false;
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(Arc::clone(&self.in_flight));
        let tx = self.tx.clone();
        Some(Box::new(move |ticket| {
            // The thread gone: the request drops, and its ticket delivers
            // the fallback (unknown).
            let _ = tx.send(Request {
                ip,
                ticket,
                _slot: slot,
            });
        }))
    }
}

/// The look-up thread: a task per request, until smtpd drops its sender.
async fn serve(
    mut rx: UnboundedReceiver<Request>,
    servers: Option<(ResolverConfig, ResolverOpts)>,
    hosts: Hosts,
    within: Duration,
) {
    let names = Arc::new(match servers {
        Some((config, opts)) => match NameService::new(&config, opts, hosts.clone()) {
            Ok(names) => names,
            Err(e) => {
                warning!("client name look-ups: {e}; /etc/hosts only");
                NameService::hosts_only(hosts)
            }
        },
        None => NameService::hosts_only(hosts),
    });
    while let Some(req) = rx.recv().await {
        let names = Arc::clone(&names);
        tokio::spawn(async move {
            let name = names.peer_name(req.ip, within).await;
            req.ticket.finish(Done::Named(name));
        });
    }
}
