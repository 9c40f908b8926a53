//! posthorn-pop3d: POP3 (issue 7; design in doc/mail-access.md). Not built yet.

pub mod login;
pub mod session;

/// The program's entry point (posthorn-pop3d).
pub fn main() {
    common::daemon::start("pop3d");
    common::config_fatal!("posthorn-pop3d is not built yet");
}
