//! Fuzz target smtp_data: see `posthorn_fuzz::smtp_data` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS smtp_data`; reproduce a crash with
//! `fuzz/target/release/smtp_data < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::smtp_data(data);
    });
}
