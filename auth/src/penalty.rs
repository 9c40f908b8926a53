//! The failure penalty per client address (Dovecot's auth penalty).
//!
//! Owns the count of consecutive failed verifications per client address
//! and the delay a requester must wait before it answers its client:
//! auth_failure_delay after the first failure, doubled with each further
//! one, at most MAX_DELAY (or auth_failure_delay when that is longer). A
//! success from the address, or FORGET without a failure, starts it over.
//!
//! Security: the table is bounded (MAX_ADDRESSES; the address whose last
//! failure is oldest is dropped). IPv6 addresses count by their /64, which
//! one client usually holds whole. Requests without a client address get
//! auth_failure_delay and are not counted.
//!
//! Diagnostics: none; service.rs logs the failures.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The longest delay (unless auth_failure_delay is longer).
pub const MAX_DELAY: Duration = Duration::from_secs(15);
/// A client without a failure for this long starts over.
pub const FORGET: Duration = Duration::from_secs(600);
/// The most client addresses remembered.
pub const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
}

/// Consecutive failures per client address.
#[derive(Debug)]
pub struct Penalty {
    base: Duration,
    table: HashMap<IpAddr, Record>,
}

impl Penalty {
    /// `base`: auth_failure_delay.
    pub fn new(base: Duration) -> Penalty {
        Penalty {
            base,
            table: HashMap::new(),
        }
    }

    /// The delay after `failures` consecutive failures (1 = the first).
    pub fn delay_for(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let doublings = (failures - 1).min(16);
        self.base
            .saturating_mul(1 << doublings)
            .min(MAX_DELAY.max(self.base))
    }

    /// Count a failure from `ip` at `now`; the delay to apply.
    pub fn failure(&mut self, ip: Option<IpAddr>, now: Instant) -> Duration {
        let Some(ip) = ip.map(key) else {
            return self.delay_for(1);
        };
        if !self.table.contains_key(&ip) && self.table.len() >= MAX_ADDRESSES {
            self.table
                .retain(|_, r| now.saturating_duration_since(r.last) < FORGET);
            if self.table.len() >= MAX_ADDRESSES {
                let oldest = self
                    .table
                    .iter()
                    .min_by_key(|(_, r)| r.last)
                    .map(|(a, _)| *a);
                if let Some(a) = oldest {
                    self.table.remove(&a);
                }
            }
        }
        let r = self.table.entry(ip).or_insert(Record {
            failures: 0,
            last: now,
        });
        if now.saturating_duration_since(r.last) >= FORGET {
            r.failures = 0;
        }
        r.failures = r.failures.saturating_add(1);
        r.last = now;
        let n = r.failures;
        self.delay_for(n)
    }

    /// A success from `ip`: its count starts over.
    pub fn success(&mut self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.table.remove(&key(ip));
        }
    }

    /// Failures counted for `ip` at `now` (0 after FORGET).
    pub fn failures(&self, ip: IpAddr, now: Instant) -> u32 {
        self.table
            .get(&key(ip))
            .filter(|r| now.saturating_duration_since(r.last) < FORGET)
            .map_or(0, |r| r.failures)
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// The table key: IPv4 as is, IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn doubles_up_to_fifteen_seconds_and_resets() {
        let mut p = Penalty::new(Duration::from_secs(2));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let got: Vec<u64> = (0..6).map(|_| p.failure(a, t0).as_secs()).collect();
        assert_eq!(got, vec![2, 4, 8, 15, 15, 15]);
        // Another address is not affected.
        assert_eq!(p.failure(ip("192.0.2.2"), t0), Duration::from_secs(2));
        // A success resets.
        p.success(a);
        assert_eq!(p.failures(a.unwrap(), t0), 0);
        assert_eq!(p.failure(a, t0), Duration::from_secs(2));
        // Ten minutes without failures reset too.
        assert_eq!(
            p.failure(a, t0 + Duration::from_secs(60)),
            Duration::from_secs(4)
        );
        let later = t0 + Duration::from_secs(60) + FORGET;
        assert_eq!(p.failures(a.unwrap(), later), 0);
        assert_eq!(p.failure(a, later), Duration::from_secs(2));
        // No address: the base delay, nothing counted.
        let n = p.len();
        assert_eq!(p.failure(None, t0), Duration::from_secs(2));
        assert_eq!(p.failure(None, t0), Duration::from_secs(2));
        assert_eq!(p.len(), n);
        // auth_failure_delay = 0: no delay at all.
        let mut z = Penalty::new(Duration::ZERO);
        assert_eq!(z.failure(a, t0), Duration::ZERO);
        assert_eq!(z.failure(a, t0), Duration::ZERO);
        // A base over 15 s is not lowered.
        let big = Penalty::new(Duration::from_secs(20));
        assert_eq!(big.delay_for(3), Duration::from_secs(20));
        assert_eq!(big.delay_for(u32::MAX), Duration::from_secs(20));
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let mut p = Penalty::new(Duration::from_secs(1));
        let t = Instant::now();
        p.failure(ip("2001:db8:1:2::1"), t);
        assert_eq!(
            p.failure(ip("2001:db8:1:2::ffff"), t),
            Duration::from_secs(2)
        );
        assert_eq!(p.failure(ip("2001:db8:1:3::1"), t), Duration::from_secs(1));
        p.failure(ip("::ffff:192.0.2.9"), t);
        assert_eq!(p.failures("192.0.2.9".parse().unwrap(), t), 1);
    }

    #[test]
    fn table_is_bounded_oldest_dropped() {
        let mut p = Penalty::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..MAX_ADDRESSES as u32 {
            let a = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            p.failure(Some(a), t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(p.len(), MAX_ADDRESSES);
        let first = IpAddr::from(0x0a00_0000u32.to_be_bytes());
        let t1 = t0 + Duration::from_secs(100);
        assert_eq!(p.failures(first, t1), 1);
        p.failure(ip("192.0.2.1"), t1);
        assert_eq!(p.len(), MAX_ADDRESSES);
        assert_eq!(p.failures(first, t1), 0, "the oldest went");
        assert_eq!(p.failures("192.0.2.1".parse().unwrap(), t1), 1);
    }
}
