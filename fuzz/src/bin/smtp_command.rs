//! Fuzz target smtp_command: see `posthorn_fuzz::smtp_command` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS smtp_command`; reproduce a crash with
//! `fuzz/target/release/smtp_command < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::smtp_command(data);
    });
}
