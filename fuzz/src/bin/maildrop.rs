//! Fuzz target maildrop: see `posthorn_fuzz::maildrop` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS maildrop`; reproduce a crash with
//! `fuzz/target/release/maildrop < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::maildrop(data);
    });
}
