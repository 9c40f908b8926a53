//! Fuzz target ipc_frame: see `posthorn_fuzz::ipc_frame` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS ipc_frame`; reproduce a crash with
//! `fuzz/target/release/ipc_frame < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::ipc_frame(data);
    });
}
