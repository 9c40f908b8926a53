//! Fuzz target maildir_modseq: see `posthorn_fuzz::maildir_modseq` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS maildir_modseq`; reproduce a crash with
//! `fuzz/target/release/maildir_modseq < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::maildir_modseq(data);
    });
}
