//! Latency histograms and the counters of one run of posthorn-pop3-bench.
//!
//! Owns recording (per command type and per session, in microseconds),
//! merging the per-thread records, percentiles, and the error tally by kind.
//! Does not own the output format (see `main`).
//!
//! A histogram is log-linear, as HdrHistogram is: values below 64 µs have a
//! bucket each, above that every power of two is split into 64 buckets, so a
//! reported percentile is within 1.6 % of the true value (it is the upper
//! edge of its bucket, never below the true value, and never above the exact
//! maximum, which is kept separately). Its size is fixed (2,240 counters)
//! however long the run.
//!
//! Diagnostics: none.

use std::time::Duration;

/// Sub-buckets per power of two: 2^SUB_BITS.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Powers of two above the linear range; 2^40 µs is 12 days.
const MAX_EXP: u32 = 40;
const BUCKETS: usize = (SUB + (MAX_EXP - SUB_BITS) as u64 * SUB) as usize;

/// The command types whose latency is recorded, in output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// TCP connect and the server's greeting.
    Connect,
    User,
    Pass,
    Stat,
    List,
    Uidl,
    Retr,
    Quit,
}

impl Cmd {
    pub const ALL: [Cmd; 8] = [
        Cmd::Connect,
        Cmd::User,
        Cmd::Pass,
        Cmd::Stat,
        Cmd::List,
        Cmd::Uidl,
        Cmd::Retr,
        Cmd::Quit,
    ];

    /// Lower-case name, used in the machine-readable line.
    pub fn key(self) -> &'static str {
        match self {
            Cmd::Connect => "connect",
            Cmd::User => "user",
            Cmd::Pass => "pass",
            Cmd::Stat => "stat",
            Cmd::List => "list",
            Cmd::Uidl => "uidl",
            Cmd::Retr => "retr",
            Cmd::Quit => "quit",
        }
    }
}

/// Latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum_us: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

/// Bucket of value `v` (µs).
fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros(); // >= SUB_BITS
    if msb >= MAX_EXP {
        return BUCKETS - 1;
    }
    let shift = msb - SUB_BITS;
    // (v >> shift) is in SUB..2*SUB.
    (SUB + u64::from(shift) * SUB + ((v >> shift) - SUB)) as usize
}

/// Largest value (µs) that falls into bucket `b`.
fn upper_edge(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB {
        return b;
    }
    let shift = (b - SUB) / SUB;
    let mantissa = SUB + (b - SUB) % SUB;
    ((mantissa + 1) << shift) - 1
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(us)] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    pub fn mean_us(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.count as f64
        }
    }

    /// The smallest value (µs, to the bucket's upper edge) that at least
    /// `pct` percent of the samples do not exceed; 0 when empty.
    pub fn percentile_us(&self, pct: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((pct / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_edge(b).min(self.max_us);
            }
        }
        self.max_us
    }
}

/// Why a session failed, one counter each; `key` names it in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// TCP connect refused or failed.
    Connect,
    /// The greeting was not `+OK`.
    Greeting,
    /// `-ERR` to USER.
    User,
    /// `-ERR` to PASS (not `[IN-USE]`).
    Pass,
    /// `-ERR [IN-USE]` (RFC 2449 8.1.1): the mailbox is locked by another session.
    InUse,
    /// `-ERR` to STAT, LIST, UIDL, RETR or QUIT.
    Refused,
    /// RETR delivered a different number of octets than LIST said.
    SizeMismatch,
    /// A malformed reply, or LIST/UIDL disagreeing with STAT.
    Protocol,
    /// STAT reported an empty mailbox: nothing to retrieve.
    Empty,
    /// No reply within --timeout.
    Timeout,
    /// Connection closed or another I/O error.
    Io,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::Connect,
        ErrorKind::Greeting,
        ErrorKind::User,
        ErrorKind::Pass,
        ErrorKind::InUse,
        ErrorKind::Refused,
        ErrorKind::SizeMismatch,
        ErrorKind::Protocol,
        ErrorKind::Empty,
        ErrorKind::Timeout,
        ErrorKind::Io,
    ];

    pub fn key(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Greeting => "greeting",
            ErrorKind::User => "user",
            ErrorKind::Pass => "pass",
            ErrorKind::InUse => "in_use",
            ErrorKind::Refused => "refused",
            ErrorKind::SizeMismatch => "size_mismatch",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Empty => "empty",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
        }
    }

    fn index(self) -> usize {
        ErrorKind::ALL.iter().position(|&k| k == self).unwrap_or(0)
    }
}

/// Everything one client thread (or, merged, the run) measured.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Per `Cmd::ALL` entry: latency of commands answered `+OK`.
    pub cmds: [Histogram; 8],
    /// Whole sessions that succeeded: connect to QUIT's reply.
    pub session: Histogram,
    pub ok_sessions: u64,
    pub failed_sessions: u64,
    /// Commands answered (`+OK` or `-ERR`), connect/greeting not counted.
    pub commands: u64,
    /// Content octets received in RETR responses.
    pub retr_octets: u64,
    errors: [u64; 11],
}

impl Stats {
    pub fn cmd(&mut self, c: Cmd) -> &mut Histogram {
        let i = Cmd::ALL.iter().position(|&x| x == c).unwrap_or(0);
        &mut self.cmds[i]
    }

    pub fn cmd_ref(&self, c: Cmd) -> &Histogram {
        let i = Cmd::ALL.iter().position(|&x| x == c).unwrap_or(0);
        &self.cmds[i]
    }

    pub fn error(&mut self, k: ErrorKind) {
        self.errors[k.index()] += 1;
    }

    pub fn errors(&self, k: ErrorKind) -> u64 {
        self.errors[k.index()]
    }

    pub fn merge(&mut self, o: &Stats) {
        for (a, b) in self.cmds.iter_mut().zip(&o.cmds) {
            a.merge(b);
        }
        self.session.merge(&o.session);
        self.ok_sessions += o.ok_sessions;
        self.failed_sessions += o.failed_sessions;
        self.commands += o.commands;
        self.retr_octets += o.retr_octets;
        for (a, b) in self.errors.iter_mut().zip(&o.errors) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_edges_contain_their_values() {
        let mut last = 0;
        for v in (0..200_000u64).chain([1 << 30, (1 << 40) - 1]) {
            let b = bucket(v);
            assert!(b >= last, "bucket order at {v}");
            last = b;
            assert!(upper_edge(b) >= v, "edge of {v}");
            // Within 1/64 of the value above the linear range.
            assert!(upper_edge(b) - v <= v / SUB, "precision at {v}");
            if b > 0 {
                assert!(upper_edge(b - 1) < v, "previous edge below {v}");
            }
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile_us(50.0), 0);
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max_us(), 1000);
        let p50 = h.percentile_us(50.0);
        assert!((500..=508).contains(&p50), "{p50}");
        let p99 = h.percentile_us(99.0);
        assert!((990..=1000).contains(&p99), "{p99}");
        assert_eq!(h.percentile_us(100.0), 1000);
        assert!((h.mean_us() - 500.5).abs() < 1e-9);
        // Small values are exact.
        let mut s = Histogram::default();
        for us in [3, 5, 7, 9] {
            s.record(Duration::from_micros(us));
        }
        assert_eq!(s.percentile_us(50.0), 5);
        assert_eq!(s.percentile_us(75.0), 7);
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        a.cmd(Cmd::Retr).record(Duration::from_micros(100));
        b.cmd(Cmd::Retr).record(Duration::from_micros(300));
        b.error(ErrorKind::SizeMismatch);
        b.ok_sessions = 2;
        a.failed_sessions = 1;
        a.merge(&b);
        assert_eq!(a.cmd_ref(Cmd::Retr).count(), 2);
        assert_eq!(a.cmd_ref(Cmd::Retr).max_us(), 300);
        assert_eq!(a.errors(ErrorKind::SizeMismatch), 1);
        assert_eq!((a.ok_sessions, a.failed_sessions), (2, 1));
    }
}
