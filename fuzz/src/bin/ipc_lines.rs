//! Fuzz target ipc_lines: see `posthorn_fuzz::ipc_lines` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS ipc_lines`; reproduce a crash with
//! `fuzz/target/release/ipc_lines < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::ipc_lines(data);
    });
}
