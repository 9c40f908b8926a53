//! Latency histograms, run counters and their output, shared by the load
//! generators (posthorn-pop3-bench, posthorn-imap-bench).
//!
//! Owns recording (per command type and per session, in microseconds),
//! merging the per-thread records, percentiles, the error tally by kind, and
//! the latency rows and `KEY=value` fields both generators print. A
//! generator names its command types and error kinds with two enums that
//! implement `Kind`; the output format around the rows is the generator's.
//!
//! A histogram is log-linear, as HdrHistogram is: values below 64 µs have a
//! bucket each, above that every power of two is split into 64 buckets, so a
//! reported percentile is within 1.6 % of the true value (it is the upper
//! edge of its bucket, never below the true value, and never above the exact
//! maximum, which is kept separately). Its size is fixed (2,240 counters)
//! however long the run.
//!
//! Diagnostics: none.

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::time::Duration;

/// Sub-buckets per power of two: 2^SUB_BITS.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Powers of two above the linear range; 2^40 µs is 12 days.
const MAX_EXP: u32 = 40;
const BUCKETS: usize = (SUB + (MAX_EXP - SUB_BITS) as u64 * SUB) as usize;

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

/// A closed set of names: the command types, or the error kinds, of one
/// generator. `ALL` is the output order; `key` the lower-case name used in
/// the machine-readable line.
pub trait Kind: Copy + Eq + 'static {
    const ALL: &'static [Self];

    fn key(self) -> &'static str;

    fn index(self) -> usize {
        Self::ALL.iter().position(|&k| k == self).unwrap_or(0)
    }
}

/// Everything one client thread (or, merged, the run) measured: `C` names
/// the command types, `E` the error kinds.
#[derive(Debug, Clone)]
pub struct Stats<C: Kind, E: Kind> {
    /// Per `C::ALL` entry: latency of commands that succeeded.
    cmds: Vec<Histogram>,
    /// Whole sessions (or rounds) that succeeded.
    pub session: Histogram,
    pub ok_sessions: u64,
    pub failed_sessions: u64,
    /// Commands answered (the greeting not counted).
    pub commands: u64,
    /// Message octets received (POP3 RETR, IMAP BODY[]).
    pub octets: u64,
    errors: Vec<u64>,
    kinds: PhantomData<(C, E)>,
}

impl<C: Kind, E: Kind> Default for Stats<C, E> {
    fn default() -> Self {
        Stats {
            cmds: vec![Histogram::default(); C::ALL.len()],
            session: Histogram::default(),
            ok_sessions: 0,
            failed_sessions: 0,
            commands: 0,
            octets: 0,
            errors: vec![0; E::ALL.len()],
            kinds: PhantomData,
        }
    }
}

impl<C: Kind, E: Kind> Stats<C, E> {
    pub fn cmd(&mut self, c: C) -> &mut Histogram {
        &mut self.cmds[c.index()]
    }

    pub fn cmd_ref(&self, c: C) -> &Histogram {
        &self.cmds[c.index()]
    }

    pub fn error(&mut self, k: E) {
        self.errors[k.index()] += 1;
    }

    pub fn errors(&self, k: E) -> u64 {
        self.errors[k.index()]
    }

    pub fn merge(&mut self, o: &Self) {
        for (a, b) in self.cmds.iter_mut().zip(&o.cmds) {
            a.merge(b);
        }
        self.session.merge(&o.session);
        self.ok_sessions += o.ok_sessions;
        self.failed_sessions += o.failed_sessions;
        self.commands += o.commands;
        self.octets += o.octets;
        for (a, b) in self.errors.iter_mut().zip(&o.errors) {
            *a += b;
        }
    }

    /// The latency table: a header, a row per command type, then `session`
    /// (named `session_label`): count, p50, p99, max, mean in ms.
    pub fn latency_table(&self, o: &mut String, session_label: &str) {
        let _ = writeln!(
            o,
            "{:<12} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "latency ms", "count", "p50", "p99", "max", "mean"
        );
        let row = |o: &mut String, name: &str, h: &Histogram| {
            let _ = writeln!(
                o,
                "{name:<12} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                h.count(),
                ms(h.percentile_us(50.0)),
                ms(h.percentile_us(99.0)),
                ms(h.max_us()),
                h.mean_us() / 1000.0
            );
        };
        for &c in C::ALL {
            row(o, c.key(), self.cmd_ref(c));
        }
        row(o, session_label, &self.session);
    }

    /// `errors: none`, or `errors: KIND=N ...` for the nonzero kinds.
    pub fn errors_line(&self) -> String {
        let errs: Vec<String> = E::ALL
            .iter()
            .filter(|&&k| self.errors(k) > 0)
            .map(|&k| format!("{}={}", k.key(), self.errors(k)))
            .collect();
        if errs.is_empty() {
            "errors: none".to_string()
        } else {
            format!("errors: {}", errs.join(" "))
        }
    }

    /// The latency and error fields of the result line: ` session_p50_ms=..
    /// session_p99_ms=.. session_max_ms=..`, the same for each command type,
    /// then ` err_KIND=N` for every kind.
    pub fn result_fields(&self, o: &mut String) {
        let mut lat = |name: &str, h: &Histogram| {
            let _ = write!(
                o,
                " {name}_p50_ms={:.3} {name}_p99_ms={:.3} {name}_max_ms={:.3}",
                ms(h.percentile_us(50.0)),
                ms(h.percentile_us(99.0)),
                ms(h.max_us())
            );
        };
        lat("session", &self.session);
        for &c in C::ALL {
            lat(c.key(), self.cmd_ref(c));
        }
        for &k in E::ALL {
            let _ = write!(o, " err_{}={}", k.key(), self.errors(k));
        }
    }
}

/// Microseconds as milliseconds.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// `n` per second of `seconds` (0 when no time passed).
pub fn rate(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
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

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum C {
        A,
        B,
    }
    impl Kind for C {
        const ALL: &'static [C] = &[C::A, C::B];
        fn key(self) -> &'static str {
            match self {
                C::A => "a",
                C::B => "b",
            }
        }
    }
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum E {
        X,
        Y,
    }
    impl Kind for E {
        const ALL: &'static [E] = &[E::X, E::Y];
        fn key(self) -> &'static str {
            match self {
                E::X => "x",
                E::Y => "y",
            }
        }
    }

    #[test]
    fn merge_adds_everything_and_fields_are_in_order() {
        let mut a = Stats::<C, E>::default();
        let mut b = Stats::<C, E>::default();
        a.cmd(C::B).record(Duration::from_micros(100));
        b.cmd(C::B).record(Duration::from_micros(300));
        b.error(E::Y);
        b.ok_sessions = 2;
        b.octets = 7;
        a.failed_sessions = 1;
        a.merge(&b);
        assert_eq!(a.cmd_ref(C::B).count(), 2);
        assert_eq!(a.cmd_ref(C::B).max_us(), 300);
        assert_eq!(a.errors(E::Y), 1);
        assert_eq!((a.ok_sessions, a.failed_sessions, a.octets), (2, 1, 7));
        assert_eq!(a.errors_line(), "errors: y=1");
        assert_eq!(Stats::<C, E>::default().errors_line(), "errors: none");
        let mut o = String::new();
        a.result_fields(&mut o);
        assert!(
            o.starts_with(
                " session_p50_ms=0.000 session_p99_ms=0.000 session_max_ms=0.000 a_p50_ms="
            ),
            "{o}"
        );
        assert!(o.contains(" b_max_ms=0.300 err_x=0 err_y=1"), "{o}");
        let mut t = String::new();
        a.latency_table(&mut t, "round");
        assert_eq!(t.lines().count(), 4);
        assert!(t.lines().nth(3).unwrap().starts_with("round "), "{t}");
    }
}
