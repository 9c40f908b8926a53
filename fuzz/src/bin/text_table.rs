//! Fuzz target text_table: see `posthorn_fuzz::text_table` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS text_table`; reproduce a crash with
//! `fuzz/target/release/text_table < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::text_table(data);
    });
}
