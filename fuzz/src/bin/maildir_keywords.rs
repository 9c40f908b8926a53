//! Fuzz target maildir_keywords: see `posthorn_fuzz::maildir_keywords` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS maildir_keywords`; reproduce a crash with
//! `fuzz/target/release/maildir_keywords < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::maildir_keywords(data);
    });
}
