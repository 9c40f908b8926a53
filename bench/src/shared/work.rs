//! The work the clients of one run share: how many sessions (or rounds) are
//! left to claim, and which mailbox a client may use.
//!
//! Owns claiming units of work until a count is reached, a deadline passes
//! or too many failed (a failed unit is given back, so the run still reaches
//! its count of successes), and handing out mailboxes in rotation, one client
//! per mailbox at a time unless shared.
//!
//! Also owns running the clients on threads and putting their results
//! together, and the rules for `--sessions`/`--seconds`/`--max-failures`.
//!
//! Diagnostics: none; `Work::fail` returns how many failed before, for the
//! caller to print the first few.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::stats::{Kind, Stats};

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

/// What one client thread measured, and when it started and ended work.
#[derive(Debug, Clone)]
pub struct ClientResult<C: Kind, E: Kind> {
    pub stats: Stats<C, E>,
    pub first_start: Option<Instant>,
    pub last_end: Option<Instant>,
}

impl<C: Kind, E: Kind> Default for ClientResult<C, E> {
    fn default() -> Self {
        ClientResult {
            stats: Stats::default(),
            first_start: None,
            last_end: None,
        }
    }
}

/// The clients' figures merged, and the seconds from the first start to
/// the last end (from `start` when no client started).
pub fn merge_clients<C: Kind, E: Kind>(
    results: &[ClientResult<C, E>],
    start: Instant,
) -> (Stats<C, E>, f64) {
    let mut total = Stats::default();
    for r in results {
        total.merge(&r.stats);
    }
    let first = results
        .iter()
        .filter_map(|r| r.first_start)
        .min()
        .unwrap_or(start);
    let last = results
        .iter()
        .filter_map(|r| r.last_end)
        .max()
        .unwrap_or_else(Instant::now);
    (total, last.saturating_duration_since(first).as_secs_f64())
}

/// Runs `f(i)` for i in 0..n, each on a thread of its own named NAME-i with
/// `stack` bytes of stack, and returns the results in order; a thread that
/// panicked gives `T::default()`.
pub fn in_threads<T: Send + Default>(
    n: usize,
    name: &str,
    stack: usize,
    f: impl Fn(usize) -> T + Sync,
) -> io::Result<Vec<T>> {
    thread::scope(|s| {
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let f = &f;
            let h = thread::Builder::new()
                .name(format!("{name}-{i}"))
                .stack_size(stack)
                .spawn_scoped(s, move || f(i))?;
            handles.push(h);
        }
        Ok(handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect())
    })
}

/// The count of successes to reach and the failures to stop after, from
/// `--sessions`, `--seconds` and `--max-failures`: 100 sessions unless
/// `--seconds` is given (then none, or both: whichever ends first);
/// failures default to the sessions, or 1000 with `--seconds` alone.
pub fn sessions_or_seconds(
    sessions: Option<u64>,
    seconds: Option<Duration>,
    max_failures: Option<u64>,
) -> Result<(Option<u64>, u64), String> {
    let sessions = match (sessions, seconds) {
        (Some(0), _) => return Err("--sessions must be at least 1".into()),
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(100),
    };
    Ok((
        sessions,
        max_failures.unwrap_or(sessions.unwrap_or(1000).max(1)),
    ))
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

    #[test]
    fn threads_and_counts() {
        let v = in_threads(3, "t", 64 * 1024, |i| i * 2).unwrap();
        assert_eq!(v, vec![0, 2, 4]);
        let secs = Some(Duration::from_secs(1));
        assert_eq!(sessions_or_seconds(None, None, None), Ok((Some(100), 100)));
        assert_eq!(sessions_or_seconds(None, secs, None), Ok((None, 1000)));
        assert_eq!(
            sessions_or_seconds(Some(7), secs, Some(2)),
            Ok((Some(7), 2))
        );
        assert!(sessions_or_seconds(Some(0), None, None).is_err());
    }
}
