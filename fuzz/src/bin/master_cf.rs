//! Fuzz target master_cf: see `posthorn_fuzz::master_cf` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS master_cf`; reproduce a crash with
//! `fuzz/target/release/master_cf < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::master_cf(data);
    });
}
