//! Fuzz target mta_sts_policy: see `posthorn_fuzz::mta_sts_policy` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS mta_sts_policy`; reproduce a crash with
//! `fuzz/target/release/mta_sts_policy < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::mta_sts_policy(data);
    });
}
