//! Fuzz target auth_request: see `posthorn_fuzz::auth_request` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS auth_request`; reproduce a crash with
//! `fuzz/target/release/auth_request < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::auth_request(data);
    });
}
