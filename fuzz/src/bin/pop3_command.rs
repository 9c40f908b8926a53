//! Fuzz target pop3_command: see `posthorn_fuzz::pop3_command` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS pop3_command`; reproduce a crash with
//! `fuzz/target/release/pop3_command < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::pop3_command(data);
    });
}
