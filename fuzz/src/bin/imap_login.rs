//! Fuzz target imap_login: see `posthorn_fuzz::imap_login` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS imap_login`; reproduce a crash with
//! `fuzz/target/release/imap_login < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::imap_login(data);
    });
}
