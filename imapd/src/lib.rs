//! posthorn-imapd and posthorn-imap-login: IMAP4rev1 and IMAP4rev2 (RFC 3501,
//! RFC 9051) with the extensions clients rely on, split as doc/mail-access.md
//! draws it for POP3:
//!
//! - `posthorn-imap-login` (login_server.rs, as login_user): TLS and the
//!   protocol before authentication (login.rs).
//! - `posthorn-imapd` as the post-login dispatcher (`login/imap`, as root):
//!   common::login::dispatch, which asks auth and starts mailbox processes.
//! - `posthorn-imapd` as a mailbox process (mailbox.rs, the owner's uid):
//!   the authenticated and selected states (session/, cmd/) over the
//!   user's Maildir (mailstore); the message model in mime/.
//!
//! In master.cf as `imap`/`imaps` (imap-login) and `login/imap` (imapd);
//! `posthorn dev` listens on 2143 (STARTTLS) and 2993 (IMAPS).

pub mod cmd;
pub mod login;
mod login_server;
mod mailbox;
pub mod mime;
pub mod session;

use common::daemon::{self, Listener};
use common::login::dispatch::{self, Settings};
use common::login::Protocol;
use proto::imap::Limits;

/// The reader's bounds before login: no APPEND, short literals.
pub fn login_limits() -> Limits {
    Limits {
        max_line: 8 * 1024,
        max_literal: 0,
        max_discard: 8 * 1024,
        ..Limits::default()
    }
}

/// The reader's bounds after login, from imapd_max_line_length and
/// imapd_append_limit (Dovecot's imap_max_line_length 64 KiB; 64 MiB).
pub fn session_limits(cfg: &common::config::Config) -> Limits {
    let int = |name: &str, default: u64| cfg.int(name).unwrap_or(default);
    let max_literal = int("imapd_append_limit", 64 << 20);
    Limits {
        max_line: usize::try_from(int("imapd_max_line_length", 64 << 10)).unwrap_or(64 << 10),
        max_literal,
        max_discard: max_literal,
        ..Limits::default()
    }
}

/// The program's entry point (posthorn-imapd): the dispatcher, or a
/// mailbox process when the dispatcher started it.
pub fn main() {
    if std::env::var("POSTHORN_LISTEN_KIND").as_deref() == Ok("handoff") {
        return mailbox::main();
    }
    let worker = daemon::start("imapd");
    let settings = match Settings::from_config(&worker.config, Protocol::Imap) {
        Ok(s) => s,
        Err(e) => common::config_fatal!("{e}"),
    };
    let daemon::Worker {
        listener,
        stop,
        drain,
        ..
    } = worker;
    let Listener::Unix(l) = listener else {
        common::config_fatal!("imapd is the post-login dispatcher: master.cf login/imap unix ...");
    };
    if let Err(e) = dispatch::run(l, settings, &stop, &drain) {
        common::fatal!("{e}");
    }
}

/// The program's entry point (posthorn-imap-login).
pub fn login_main() {
    login_server::main()
}
