//! Fuzz target downgrade: see `posthorn_fuzz::downgrade` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS downgrade`; reproduce a crash with
//! `fuzz/target/release/downgrade < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::downgrade(data);
    });
}
