//! Fuzz target maildir_uidlist: see `posthorn_fuzz::maildir_uidlist` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS maildir_uidlist`; reproduce a crash with
//! `fuzz/target/release/maildir_uidlist < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::maildir_uidlist(data);
    });
}
