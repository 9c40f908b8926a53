//! Fuzz target queue_file: see `posthorn_fuzz::queue_file` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS queue_file`; reproduce a crash with
//! `fuzz/target/release/queue_file < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::queue_file(data);
    });
}
