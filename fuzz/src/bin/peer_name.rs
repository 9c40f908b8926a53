//! Fuzz target peer_name: see `posthorn_fuzz::peer_name` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS peer_name`; reproduce a crash with
//! `fuzz/target/release/peer_name < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::peer_name(data);
    });
}
