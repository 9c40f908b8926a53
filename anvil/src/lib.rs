//! posthorn-anvil: connection counting for every daemon that limits clients
//! (Postfix's anvil(8)).
//!
//! One process on `private/anvil`, run by master, unprivileged. Daemons ask
//! it, at each new connection, how many connections this client and the
//! whole service have across all their processes; the counts a daemon
//! registered go away when its connection to anvil closes, so a killed
//! daemon leaves nothing behind. The protocol and the tables are in
//! common::server::anvil; this is the daemon around them, on the server
//! skeleton.
//!
//! Parameters: none of its own (master.cf's process limit must stay 1).
//!
//! Diagnostics: `anvil: malformed request from a peer; closing it`.

use common::daemon::{self, Listener};
use common::server::anvil::AnvilService;
use common::server::{Limits, LocalCounter, Server};

/// The program's entry point (posthorn-anvil).
pub fn main() {
    let worker = daemon::start("anvil");
    let daemon::Worker { listener, stop, .. } = worker;
    if !matches!(listener, Listener::Unix(_)) {
        common::config_fatal!("anvil must be a unix service in master.cf");
    }
    let limits = Limits {
        // Peers are daemons that stay connected for their whole life.
        idle: std::time::Duration::from_secs(365 * 24 * 3600),
        max_connections: 10_000,
        ..Limits::default()
    };
    let server = match Server::<AnvilService>::new(1) {
        Ok(s) => s,
        Err(e) => common::fatal!("{e}"),
    };
    let mut service = AnvilService::default();
    let mut counter = LocalCounter::default();
    // Never drains: a reload stops anvil (daemon::STOP_ON_RELOAD), so the
    // counts stay one table.
    if let Err(e) = server.run(listener, &mut service, &limits, &mut counter, &stop, &stop) {
        common::fatal!("{e}");
    }
}
