//! Fuzz target handoff_frames: see `posthorn_fuzz::handoff_frames` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS handoff_frames`; reproduce a crash with
//! `fuzz/target/release/handoff_frames < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::handoff_frames(data);
    });
}
