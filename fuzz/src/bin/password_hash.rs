//! Fuzz target password_hash: see `posthorn_fuzz::password_hash` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS password_hash`; reproduce a crash with
//! `fuzz/target/release/password_hash < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::password_hash(data);
    });
}
