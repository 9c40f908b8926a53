//! posthorn-auth: the only process that reads password hashes (Dovecot's
//! auth process; design in doc/mail-access.md, manual posthorn-auth(8)).
//!
//! One process on `private/auth` (master.cf `auth unix - n n - 1 auth`),
//! run as root because the users file is `0600 root`; it answers the
//! mailbox dispatchers (Verify) and smtpd (Lookup) with `common::auth`
//! frames on the server skeleton. Layout: scheme.rs (password schemes),
//! passdb.rs (the users file), penalty.rs (failure delays), cache.rs
//! (remembered logins), service.rs (the protocol, who may connect).
//!
//! Parameters: virtual_mailbox_maps (the users file), auth_allow_cleartext,
//! auth_allow_plain_passwords, auth_failure_delay, auth_worker_max_count,
//! auth_cache_ttl, mail_owner (who may connect), and for the mailbox in the
//! answers virtual_mailbox_base, virtual_uid_maps, virtual_gid_maps,
//! default_privs.
//!
//! Diagnostics: configuration errors are fatal with file and line; see
//! service.rs and passdb.rs for the log lines.

pub mod cache;
pub mod passdb;
pub mod penalty;
pub mod scheme;
pub mod service;

use common::daemon::{self, Listener};
use common::server::{Limits, LocalCounter, Server};

use crate::service::{AuthService, Settings};

/// The program's entry point (posthorn-auth).
pub fn main() {
    let worker = daemon::start("auth");
    let settings = match Settings::from_config(&worker.config) {
        Ok(s) => s,
        Err(e) => common::config_fatal!("{e}"),
    };
    let daemon::Worker {
        config,
        listener,
        stop,
        ..
    } = worker;
    if !matches!(listener, Listener::Unix(_)) {
        common::config_fatal!("auth must be a unix service in master.cf");
    }
    let limits = Limits {
        // Peers (smtpd, the dispatchers) keep their connection; one that
        // was idle an hour reconnects when it needs auth again.
        idle: std::time::Duration::from_secs(3600),
        max_connections: 1000,
        ..Limits::default()
    };
    // The pool's threads are the hash workers: at most this many at once.
    let server = match Server::<AuthService>::new(settings.workers) {
        Ok(s) => s,
        Err(e) => common::fatal!("{e}"),
    };
    let mut service = match AuthService::new(config, settings) {
        Ok(s) => s,
        Err(e) => common::fatal!("no randomness for the cache's salt: {e}"),
    };
    service.passdb_mut().refresh();
    let mut counter = LocalCounter::default();
    // auth stops on reload (daemon::STOP_ON_RELOAD): its clients hold their
    // connections for life, so a draining auth would never exit.
    if let Err(e) = server.run(listener, &mut service, &limits, &mut counter, &stop, &stop) {
        common::fatal!("{e}");
    }
}
