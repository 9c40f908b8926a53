//! Fuzz target pop3_session: see `posthorn_fuzz::pop3_session` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS pop3_session`; reproduce a crash with
//! `fuzz/target/release/pop3_session < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::pop3_session(data);
    });
}
