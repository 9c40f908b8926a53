//! posthorn-pop3d and posthorn-pop3-login: POP3 (RFC 1939, 2449, 2595,
//! 5034), split as doc/mail-access.md draws it.
//!
//! Three roles, one crate:
//! - `posthorn-pop3-login` (login_server.rs, master.cf `pop3`/`pop3s`, as
//!   login_user): TLS and the protocol before authentication (login.rs).
//! - `posthorn-pop3d` as the post-login dispatcher (master.cf `login/pop3`,
//!   as root): common::login::dispatch, which asks auth and starts the
//!   mailbox processes.
//! - `posthorn-pop3d` as a mailbox process (mailbox.rs, started by the
//!   dispatcher with the mailbox owner's uid): the TRANSACTION state
//!   (session.rs) over the user's Maildir (maildrop.rs, mailstore).
//!
//! The protocol modules (login.rs, session.rs) are sans-I/O and tested with
//! transcripts (tests/transcripts/); the *_server modules map them onto the
//! server skeleton.
//!
//! Parameters: see login_server.rs and mailbox.rs; the dispatcher's are
//! mailbox_client_limit, mailbox_idle_timeout, login_user, queue_directory,
//! daemon_directory.

pub mod login;
mod login_server;
mod mailbox;
mod maildrop;
pub mod session;

use common::daemon::{self, Listener};
use common::login::dispatch::{self, Settings};
use common::login::Protocol;

pub use maildrop::UidlFormat;

/// The program's entry point (posthorn-pop3d): the dispatcher, or a mailbox
/// process when the dispatcher started it (its listener is a hand-off
/// socket).
pub fn main() {
    if std::env::var("POSTHORN_LISTEN_KIND").as_deref() == Ok("handoff") {
        return mailbox::main();
    }
    let worker = daemon::start("pop3d");
    let settings = match Settings::from_config(&worker.config, Protocol::Pop3) {
        Ok(s) => s,
        Err(e) => common::config_fatal!("{e}"),
    };
    if let Err(e) = UidlFormat::parse(&worker.config.get("pop3d_uidl_format")) {
        common::config_fatal!("{e}");
    }
    let daemon::Worker {
        listener,
        stop,
        drain,
        ..
    } = worker;
    let Listener::Unix(l) = listener else {
        common::config_fatal!("pop3d is the post-login dispatcher: master.cf login/pop3 unix ...");
    };
    if let Err(e) = dispatch::run(l, settings, &stop, &drain) {
        common::fatal!("{e}");
    }
}

/// The program's entry point (posthorn-pop3-login).
pub fn login_main() {
    login_server::main()
}
