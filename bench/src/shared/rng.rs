//! A small deterministic pseudo-random generator (SplitMix64), std only.
//!
//! Owns the random choices of the POP3 and IMAP generators: which messages a
//! session retrieves, and the sizes and words of the generated test Maildirs. Seeded
//! from `--seed`, so a run (and a generated mailbox set) can be repeated
//! exactly. Not for anything that needs unpredictability.
//!
//! Diagnostics: none; pure functions.

/// SplitMix64 (Steele, Lea, Flood 2014): one u64 of state, good enough
/// statistics for picking messages and sizes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A generator for stream `n` of the same seed (one per client thread or
    /// per mailbox), independent of the others.
    pub fn stream(seed: u64, n: u64) -> Self {
        let mut r = Rng::new(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_streams_differ() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        let mut s1 = Rng::stream(7, 1);
        let mut s2 = Rng::stream(7, 2);
        assert_ne!(s1.next_u64(), s2.next_u64());
    }

    #[test]
    fn bounds_hold_and_every_value_occurs() {
        let mut r = Rng::new(1);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let v = r.below(10);
            seen[v as usize] += 1;
        }
        // Roughly uniform: each value near 1000.
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        for _ in 0..1000 {
            let v = r.between(1024, 12288);
            assert!((1024..=12288).contains(&v));
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.between(5, 5), 5);
        assert_eq!(r.between(6, 5), 6);
    }
}
