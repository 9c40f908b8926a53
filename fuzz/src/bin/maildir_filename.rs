//! Fuzz target maildir_filename: see `posthorn_fuzz::maildir_filename` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS maildir_filename`; reproduce a crash with
//! `fuzz/target/release/maildir_filename < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::maildir_filename(data);
    });
}
