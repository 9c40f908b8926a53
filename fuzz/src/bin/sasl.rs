//! Fuzz target sasl: see `posthorn_fuzz::sasl` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS sasl`; reproduce a crash with
//! `fuzz/target/release/sasl < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::sasl(data);
    });
}
