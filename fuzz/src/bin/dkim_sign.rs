//! Fuzz target dkim_sign: see `posthorn_fuzz::dkim_sign` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS dkim_sign`; reproduce a crash with
//! `fuzz/target/release/dkim_sign < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::dkim_sign(data);
    });
}
