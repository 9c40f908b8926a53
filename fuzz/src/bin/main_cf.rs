//! Fuzz target main_cf: see `posthorn_fuzz::main_cf` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS main_cf`; reproduce a crash with
//! `fuzz/target/release/main_cf < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::main_cf(data);
    });
}
