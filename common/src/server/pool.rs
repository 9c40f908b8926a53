//! One pool of threads for blocking work (fsync, file I/O, a blocking IPC
//! round trip), shared by every daemon's event loop.
//!
//! Owns the threads and the hand-off: the loop submits a job tagged with a
//! key (a connection's token, a queue id), the job runs on a pool thread,
//! its result comes back on a channel and the loop's mio `Waker` is poked.
//! Background jobs (topping up reserved queue files) run without a result.
//! Does not own what a job does: the daemon's closure does.
//!
//! Diagnostics: none; a job that panics takes its thread down, which the
//! pool notices (`alive()` drops) and the daemon logs before exiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};

use mio::Waker;

/// Work to run on a pool thread.
pub type Job<R> = Box<dyn FnOnce() -> R + Send + 'static>;

enum Work<K, R> {
    WithResult(K, Job<R>),
    Background(Job<()>),
}

/// A fixed set of threads running jobs; results are delivered to the loop.
pub struct Pool<K: Send + 'static, R: Send + 'static> {
    jobs: Sender<Work<K, R>>,
    done: Receiver<(K, R)>,
    alive: Arc<AtomicUsize>,
    threads: usize,
}

/// Counts a pool thread as alive until it ends (normally or by a panic).
struct AliveGuard(Arc<AtomicUsize>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<K: Send + 'static, R: Send + 'static> Pool<K, R> {
    /// Start `threads` threads named `name-N`; each finished job wakes `waker`.
    pub fn new(name: &str, threads: usize, waker: Arc<Waker>) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Work<K, R>>();
        let (done_tx, done) = mpsc::channel();
        let rx = Arc::new(Mutex::new(rx));
        let alive = Arc::new(AtomicUsize::new(0));
        let threads = threads.max(1);
        for i in 0..threads {
            let (rx, done_tx, waker) = (Arc::clone(&rx), done_tx.clone(), Arc::clone(&waker));
            alive.fetch_add(1, Ordering::SeqCst);
            let guard = AliveGuard(Arc::clone(&alive));
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    let _guard = guard;
                    loop {
                        let work = {
                            let Ok(rx) = rx.lock() else { return };
                            match rx.recv() {
                                Ok(w) => w,
                                Err(_) => return, // the loop is gone
                            }
                        };
                        match work {
                            Work::WithResult(key, job) => {
                                let r = job();
                                if done_tx.send((key, r)).is_err() {
                                    return;
                                }
                                let _ = waker.wake();
                            }
                            Work::Background(job) => job(),
                        }
                    }
                })?;
        }
        Ok(Pool {
            jobs,
            done,
            alive,
            threads,
        })
    }

    /// Run `job`; its result comes back from `finished` under `key`.
    pub fn submit(&self, key: K, job: Job<R>) -> Result<(), PoolGone> {
        self.jobs
            .send(Work::WithResult(key, job))
            .map_err(|_| PoolGone)
    }

    /// A handle that submits background jobs from elsewhere (a service).
    pub fn spawner(&self) -> Spawner<K, R> {
        Spawner(self.jobs.clone())
    }

    /// The next finished job, if any.
    pub fn finished(&self) -> Option<(K, R)> {
        match self.done.try_recv() {
            Ok(x) => Some(x),
            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => None,
        }
    }

    /// Are all threads still running? (A job that panicked ended its thread.)
    pub fn healthy(&self) -> bool {
        self.alive.load(Ordering::SeqCst) == self.threads
    }
}

/// Submits background jobs to a pool.
pub struct Spawner<K, R>(Sender<Work<K, R>>);

impl<K, R> Spawner<K, R> {
    /// Run `job`; its result comes back to the loop under `key` (a key no
    /// connection has reaches `Service::orphan`).
    pub fn submit(&self, key: K, job: Job<R>) -> Result<(), PoolGone> {
        self.0
            .send(Work::WithResult(key, job))
            .map_err(|_| PoolGone)
    }

    /// Run `job` when a thread is free; nothing comes back.
    pub fn background(&self, job: Job<()>) -> Result<(), PoolGone> {
        self.0.send(Work::Background(job)).map_err(|_| PoolGone)
    }
}

/// Every pool thread has ended.
#[derive(Debug, thiserror::Error)]
#[error("the worker pool's threads are gone")]
pub struct PoolGone;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn results_come_back_with_their_keys() {
        let poll = mio::Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
        let pool: Pool<u32, u32> = Pool::new("t", 3, waker).expect("pool");
        for k in 0..20u32 {
            pool.submit(k, Box::new(move || k * 2)).expect("submit");
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 20 && Instant::now() < deadline {
            match pool.finished() {
                Some(x) => got.push(x),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        got.sort_unstable();
        assert_eq!(got, (0..20).map(|k| (k, k * 2)).collect::<Vec<_>>());
        assert!(pool.healthy());
    }
}
