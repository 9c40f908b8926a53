//! Fuzz target smtp_reply: see `posthorn_fuzz::smtp_reply` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS smtp_reply`; reproduce a crash with
//! `fuzz/target/release/smtp_reply < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::smtp_reply(data);
    });
}
