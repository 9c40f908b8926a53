//! Fuzz target imap_command: see `posthorn_fuzz::imap_command` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS imap_command`; reproduce a crash with
//! `fuzz/target/release/imap_command < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::imap_command(data);
    });
}
