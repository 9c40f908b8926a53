//! The work the clients of one run share: how many sessions (or rounds) are
//! left to claim, and which mailbox a client may use.
//!
//! Owns claiming units of work until a count is reached, a deadline passes
//! or too many failed (a failed unit is given back, so the run still reaches
//! its count of successes), and handing out mailboxes in rotation, one client
//! per mailbox at a time unless shared.
//!
//! Diagnostics: none; `Work::fail` returns how many failed before, for the
//! caller to print the first few.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// The mailboxes, handed out in rotation.
pub struct Mailboxes {
    /// (busy flags, next index to try)
    state: Mutex<(Vec<bool>, usize)>,
    freed: Condvar,
    exclusive: bool,
    count: u64,
    rotation: AtomicU64,
}

impl Mailboxes {
    pub fn new(n: u32, exclusive: bool) -> Self {
        Mailboxes {
            state: Mutex::new((vec![false; n as usize], 0)),
            freed: Condvar::new(),
            exclusive,
            count: u64::from(n.max(1)),
            rotation: AtomicU64::new(0),
        }
    }

    /// The next mailbox in rotation; when exclusive, the next one that no
    /// other client holds, waiting for one to be released if need be.
    pub fn acquire(&self) -> usize {
        if !self.exclusive {
            return (self.rotation.fetch_add(1, Ordering::Relaxed) % self.count) as usize;
        }
        // A poisoned lock means another client panicked; its flags are
        // still consistent (set and cleared in one statement), keep going.
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let (busy, next) = &mut *st;
            let n = busy.len();
            if let Some(i) = (0..n).map(|k| (*next + k) % n).find(|&i| !busy[i]) {
                busy[i] = true;
                *next = (i + 1) % n;
                return i;
            }
            st = self.freed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub fn release(&self, i: usize) {
        if self.exclusive {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.0[i] = false;
            drop(st);
            self.freed.notify_one();
        }
    }
}

/// Units of work (sessions, rounds) claimed by the clients.
pub struct Work {
    /// Units claimed and not (yet) failed.
    claimed: AtomicU64,
    failed: AtomicU64,
    target: Option<u64>,
    deadline: Option<Instant>,
    max_failures: u64,
}

impl Work {
    /// `target` successes (None: until `deadline`), stopping early after
    /// `max_failures` failures.
    pub fn new(target: Option<u64>, deadline: Option<Instant>, max_failures: u64) -> Self {
        Work {
            claimed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            target,
            deadline,
            max_failures,
        }
    }

    /// Claims one more unit, or false when the work is done: enough
    /// claimed, the time is up, or too many failed.
    pub fn claim(&self) -> bool {
        if self.failed.load(Ordering::Relaxed) >= self.max_failures {
            return false;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        let Some(target) = self.target else {
            self.claimed.fetch_add(1, Ordering::Relaxed);
            return true;
        };
        let mut c = self.claimed.load(Ordering::Relaxed);
        loop {
            if c >= target {
                return false;
            }
            match self
                .claimed
                .compare_exchange_weak(c, c + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
    }

    /// Records a failed unit and gives its claim back for another try;
    /// returns the number of failures before this one.
    pub fn fail(&self) -> u64 {
        let n = self.failed.fetch_add(1, Ordering::Relaxed);
        self.claimed.fetch_sub(1, Ordering::Relaxed);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_stop_at_the_target_and_failures_give_claims_back() {
        let w = Work::new(Some(3), None, 2);
        assert!(w.claim() && w.claim() && w.claim());
        assert!(!w.claim());
        assert_eq!(w.fail(), 0);
        assert!(w.claim());
        assert_eq!(w.fail(), 1);
        // Two failures: the work stops.
        assert!(!w.claim());
    }

    #[test]
    fn exclusive_mailboxes_rotate_and_are_held() {
        let m = Mailboxes::new(3, true);
        let (a, b) = (m.acquire(), m.acquire());
        assert_eq!((a, b), (0, 1));
        m.release(a);
        assert_eq!(m.acquire(), 2);
        assert_eq!(m.acquire(), 0);
        let s = Mailboxes::new(2, false);
        assert_eq!((s.acquire(), s.acquire(), s.acquire()), (0, 1, 0));
    }
}
