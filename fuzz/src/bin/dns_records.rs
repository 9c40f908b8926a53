//! Fuzz target dns_records: see `posthorn_fuzz::dns_records` for what it feeds and checks.
//!
//! Run with `fuzz/run.sh SECONDS dns_records`; reproduce a crash with
//! `fuzz/target/release/dns_records < CRASH_FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        posthorn_fuzz::dns_records(data);
    });
}
