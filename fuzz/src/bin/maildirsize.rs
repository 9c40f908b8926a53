//! Fuzz target maildirsize: see `posthorn_fuzz::maildirsize` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS maildirsize`; reproduce a crash with
//! `fuzz/target/release/maildirsize < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::maildirsize(data);
    });
}
