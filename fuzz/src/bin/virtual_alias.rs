//! Fuzz target virtual_alias: see `posthorn_fuzz::virtual_alias` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS virtual_alias`; reproduce a crash with
//! `fuzz/target/release/virtual_alias < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::virtual_alias(data);
    });
}
