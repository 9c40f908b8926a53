//! Fuzz target aliases: see `posthorn_fuzz::aliases` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS aliases`; reproduce a crash with
//! `fuzz/target/release/aliases < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::aliases(data);
    });
}
