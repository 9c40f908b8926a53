//! Fuzz target imap_session: see `posthorn_fuzz::imap_session` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS imap_session`; reproduce a crash with
//! `fuzz/target/release/imap_session < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::imap_session(data);
    });
}
