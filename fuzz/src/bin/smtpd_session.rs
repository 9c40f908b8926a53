//! Fuzz target smtpd_session: see `posthorn_fuzz::smtpd_session` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS smtpd_session`; reproduce a crash with
//! `fuzz/target/release/smtpd_session < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::smtpd_session(data);
    });
}
