//! Fuzz target pop3_login: see `posthorn_fuzz::pop3_login` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS pop3_login`; reproduce a crash with
//! `fuzz/target/release/pop3_login < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::pop3_login(data);
    });
}
