//! Fuzz target users_file: see `posthorn_fuzz::users_file` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS users_file`; reproduce a crash with
//! `fuzz/target/release/users_file < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::users_file(data);
    });
}
