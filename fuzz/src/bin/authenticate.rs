//! Fuzz target authenticate: see `posthorn_fuzz::authenticate` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS authenticate`; reproduce a crash with
//! `fuzz/target/release/authenticate < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::authenticate(data);
    });
}
