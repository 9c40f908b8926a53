//! Fuzz target maildir_subscriptions: see `posthorn_fuzz::maildir_subscriptions` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS maildir_subscriptions`; reproduce a crash with
//! `fuzz/target/release/maildir_subscriptions < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::maildir_subscriptions(data);
    });
}
