//! The verification cache (Dovecot's auth_cache for successful logins).
//!
//! Owns remembering that a user logged in with a password, for
//! auth_cache_ttl, so the next login with the same password skips the hash
//! computation (a POP3 client that logs in every minute costs one Argon2
//! run an hour, not sixty). Only successes are remembered; the whole cache
//! is dropped when the users file changes (a new password, a removed user),
//! and an entry past its time is gone.
//!
//! Security: the password itself is never stored: the key is the user and
//! SHA-256(salt || password), the salt 32 random bytes made once per
//! process. The cache is bounded (MAX_ENTRIES; when full, expired entries
//! go, and if none have, all).
//!
//! Diagnostics: none.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The most entries kept.
pub const MAX_ENTRIES: usize = 100_000;

/// A salted digest of a password.
pub type PasswordDigest = [u8; 32];

/// Remembered successful verifications.
#[derive(Debug)]
pub struct VerifyCache {
    ttl: Duration,
    salt: [u8; 32],
    entries: HashMap<(String, PasswordDigest), Instant>,
    generation: u64,
}

impl VerifyCache {
    /// `ttl`: auth_cache_ttl; zero turns the cache off.
    pub fn new(ttl: Duration) -> Result<VerifyCache, getrandom::Error> {
        let mut salt = [0u8; 32];
        getrandom::getrandom(&mut salt)?;
        Ok(VerifyCache {
            ttl,
            salt,
            entries: HashMap::new(),
            generation: 0,
        })
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The salted digest of `password`.
    pub fn digest(&self, password: &str) -> PasswordDigest {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Drop everything if the users file changed since the entries were made.
    fn follow(&mut self, generation: u64) {
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
        }
    }

    /// Did `user` log in with this password within the time-to-live, and
    /// has the users file not changed since (`generation`)?
    pub fn hit(&mut self, generation: u64, user: &str, d: &PasswordDigest, now: Instant) -> bool {
        self.follow(generation);
        let key = (user.to_string(), *d);
        match self.entries.get(&key) {
            Some(expires) if *expires > now => true,
            Some(_) => {
                self.entries.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Remember a successful verification made at `generation`.
    pub fn remember(&mut self, generation: u64, user: &str, d: &PasswordDigest, now: Instant) {
        if !self.enabled() {
            return;
        }
        self.follow(generation);
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, e| *e > now);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries.insert((user.to_string(), *d), now + self.ttl);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_miss_expire_invalidate() {
        let mut c = VerifyCache::new(Duration::from_secs(3600)).unwrap();
        let t = Instant::now();
        let d = c.digest("pw");
        assert_ne!(d, c.digest("pw2"));
        assert!(!c.hit(1, "a@x", &d, t), "empty");
        c.remember(1, "a@x", &d, t);
        assert!(c.hit(1, "a@x", &d, t));
        assert!(!c.hit(1, "a@x", &c.digest("other"), t), "another password");
        assert!(!c.hit(1, "b@x", &d, t), "another user");
        assert!(
            !c.hit(1, "a@x", &d, t + Duration::from_secs(3600)),
            "expired"
        );
        assert!(c.is_empty(), "the expired entry went");
        c.remember(1, "a@x", &d, t);
        assert!(!c.hit(2, "a@x", &d, t), "the users file changed");
        assert!(c.is_empty());
        // The salt is per process (per cache): digests differ between caches.
        let other = VerifyCache::new(Duration::from_secs(1)).unwrap();
        assert_ne!(other.digest("pw"), d);
        // Off.
        let mut off = VerifyCache::new(Duration::ZERO).unwrap();
        off.remember(1, "a@x", &d, t);
        assert!(!off.hit(1, "a@x", &d, t));
    }

    #[test]
    fn bounded() {
        let mut c = VerifyCache::new(Duration::from_secs(10)).unwrap();
        let t = Instant::now();
        let d = c.digest("pw");
        for i in 0..MAX_ENTRIES {
            c.remember(1, &format!("u{i}"), &d, t);
        }
        assert_eq!(c.len(), MAX_ENTRIES);
        c.remember(1, "new", &d, t);
        assert!(c.len() <= MAX_ENTRIES);
        assert!(c.hit(1, "new", &d, t));
    }
}
