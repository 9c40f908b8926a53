//! posthorn-auth: the only process that reads password hashes (issue 7;
//! design in doc/mail-access.md). Not built yet.

/// The program's entry point (posthorn-auth).
pub fn main() {
    common::daemon::start("auth");
    common::config_fatal!("posthorn-auth is not built yet");
}
