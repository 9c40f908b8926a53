//! One pool of threads for blocking work (fsync, file I/O, a blocking IPC
//! round trip), shared by every daemon's event loop.
//!
//! Owns the threads and the hand-off: the loop submits a job tagged with a
//! key (a connection's token, a queue id), the job runs on a pool thread,
//! its result comes back on a channel and the loop's mio `Waker` is poked.
//! Background jobs (topping up reserved queue files) run without a result.
//! A `Ticket` lets a thread outside the pool (a service's own, running
//! many look-ups at once) deliver a result the same way. Does not own what
//! a job does: the daemon's closure does.
//!
//! Hand-off cost: jobs wait in one queue under a mutex; idle threads sleep
//! on a condition variable and a submit wakes exactly one of them, and only
//! when one is idle (a busy pool takes the job when a thread comes back,
//! with no system call). One context switch per job on each side: the
//! thread that runs it, and the loop woken for its result.
//!
//! Diagnostics: none; a job that panics takes its thread down, which the
//! pool notices (`alive()` drops) and the daemon logs before exiting.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};

use mio::Waker;

/// Work to run on a pool thread.
pub type Job<R> = Box<dyn FnOnce() -> R + Send + 'static>;

enum Work<K, R> {
    WithResult(K, Job<R>),
    Background(Job<()>),
}

/// The queue the threads take work from.
struct Queue<K, R> {
    state: Mutex<State<K, R>>,
    ready: Condvar,
}

struct State<K, R> {
    work: VecDeque<Work<K, R>>,
    /// Threads waiting on `ready` (a submit wakes one only when this is > 0).
    idle: usize,
    /// The pool is gone: threads finish what is queued and end.
    closed: bool,
}

impl<K, R> Queue<K, R> {
    fn push(&self, w: Work<K, R>) -> Result<(), PoolGone> {
        let Ok(mut st) = self.state.lock() else {
            return Err(PoolGone);
        };
        if st.closed {
            return Err(PoolGone);
        }
        st.work.push_back(w);
        let wake = st.idle > 0;
        drop(st);
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// The next job, waiting for one; None when the pool is closed and empty.
    fn take(&self) -> Option<Work<K, R>> {
        let mut st = self.state.lock().ok()?;
        loop {
            if let Some(w) = st.work.pop_front() {
                return Some(w);
            }
            if st.closed {
                return None;
            }
            st.idle += 1;
            st = self.ready.wait(st).ok()?;
            st.idle -= 1;
        }
    }

    fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closed = true;
        }
        self.ready.notify_all();
    }
}

/// A fixed set of threads running jobs; results are delivered to the loop.
pub struct Pool<K: Send + 'static, R: Send + 'static> {
    queue: Arc<Queue<K, R>>,
    done: Receiver<(K, R)>,
    /// For tickets: results delivered from outside the pool.
    done_tx: Sender<(K, R)>,
    waker: Arc<Waker>,
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
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                work: VecDeque::new(),
                idle: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let (done_tx, done) = mpsc::channel();
        let alive = Arc::new(AtomicUsize::new(0));
        let threads = threads.max(1);
        for i in 0..threads {
            let (queue, done_tx, waker) = (Arc::clone(&queue), done_tx.clone(), Arc::clone(&waker));
            alive.fetch_add(1, Ordering::SeqCst);
            let guard = AliveGuard(Arc::clone(&alive));
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    let _guard = guard;
                    while let Some(work) = queue.take() {
                        match work {
                            Work::WithResult(key, job) => {
                                let r = job();
                                if done_tx.send((key, r)).is_err() {
                                    return; // the loop is gone
                                }
                                let _ = waker.wake();
                            }
                            Work::Background(job) => job(),
                        }
                    }
                })?;
        }
        Ok(Pool {
            queue,
            done,
            done_tx,
            waker,
            alive,
            threads,
        })
    }

    /// A result for `key` that another thread will deliver (`Ticket::finish`);
    /// `fallback` is delivered instead if the ticket is dropped unused.
    pub fn ticket(&self, key: K, fallback: R) -> Ticket<K, R> {
        Ticket {
            slot: Some((key, fallback)),
            tx: self.done_tx.clone(),
            waker: Arc::clone(&self.waker),
        }
    }

    /// Run `job`; its result comes back from `finished` under `key`.
    pub fn submit(&self, key: K, job: Job<R>) -> Result<(), PoolGone> {
        self.queue.push(Work::WithResult(key, job))
    }

    /// A handle that submits background jobs from elsewhere (a service).
    pub fn spawner(&self) -> Spawner<K, R> {
        Spawner(Arc::clone(&self.queue))
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

impl<K: Send + 'static, R: Send + 'static> Drop for Pool<K, R> {
    /// The threads finish the jobs already queued, then end.
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// Submits background jobs to a pool.
pub struct Spawner<K, R>(Arc<Queue<K, R>>);

impl<K, R> Spawner<K, R> {
    /// Run `job`; its result comes back to the loop under `key` (a key no
    /// connection has reaches `Service::orphan`).
    pub fn submit(&self, key: K, job: Job<R>) -> Result<(), PoolGone> {
        self.0.push(Work::WithResult(key, job))
    }

    /// Run `job` when a thread is free; nothing comes back.
    pub fn background(&self, job: Job<()>) -> Result<(), PoolGone> {
        self.0.push(Work::Background(job))
    }
}

/// A result owed to the loop by a thread outside the pool: it comes back
/// from `Pool::finished` under its key, like a job's, and wakes the loop.
/// Exactly one result is delivered: the one given to `finish`, or the
/// fallback when the ticket is dropped without it (its holder failed or
/// went away), so the connection waiting for it never waits for ever.
pub struct Ticket<K, R> {
    slot: Option<(K, R)>,
    tx: Sender<(K, R)>,
    waker: Arc<Waker>,
}

impl<K, R> Ticket<K, R> {
    /// Deliver `r`.
    pub fn finish(mut self, r: R) {
        if let Some((key, _)) = self.slot.take() {
            self.deliver(key, r);
        }
    }

    fn deliver(&self, key: K, r: R) {
        // The loop gone: nobody to tell.
        if self.tx.send((key, r)).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

impl<K, R> Drop for Ticket<K, R> {
    fn drop(&mut self) {
        if let Some((key, fallback)) = self.slot.take() {
            self.deliver(key, fallback);
        }
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

    /// Voluntary context switches of this process's threads named `prefix-N`.
    fn switches(prefix: &str) -> u64 {
        let mut n = 0;
        for t in std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .flatten()
        {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if !comm.trim_end().starts_with(prefix) {
                continue;
            }
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            n += status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        n
    }

    /// One job at a time, as a quiet daemon submits them: each wakes one
    /// thread once (a shared receiver behind a mutex woke every thread in
    /// turn, about two switches per thread per job).
    #[test]
    fn a_job_wakes_one_thread() {
        let poll = mio::Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
        let pool: Pool<u32, u32> = Pool::new("onewake", 4, waker).expect("pool");
        let wait = |k: u32| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Some((key, _)) = pool.finished() {
                    assert_eq!(key, k);
                    return;
                }
                std::thread::yield_now();
            }
            panic!("job {k} did not finish");
        };
        // Let every thread reach its wait first.
        pool.submit(0, Box::new(|| 0)).expect("submit");
        wait(0);
        std::thread::sleep(Duration::from_millis(50));
        let before = switches("onewake-");
        for k in 1..=200u32 {
            pool.submit(k, Box::new(move || k)).expect("submit");
            wait(k);
        }
        let n = switches("onewake-") - before;
        assert!(
            n <= 300,
            "{n} context switches of pool threads for 200 jobs"
        );
    }

    #[test]
    fn tickets_deliver_their_result_or_their_fallback() {
        let poll = mio::Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
        let pool: Pool<u32, &str> = Pool::new("ticket", 1, waker).expect("pool");
        let (finished, dropped) = (pool.ticket(1, "fallback"), pool.ticket(2, "fallback"));
        let t = std::thread::spawn(move || {
            finished.finish("result");
            drop(dropped);
        });
        t.join().expect("thread");
        let mut got = Vec::new();
        while let Some(x) = pool.finished() {
            got.push(x);
        }
        got.sort_unstable();
        assert_eq!(got, [(1, "result"), (2, "fallback")]);
    }

    #[test]
    fn queued_jobs_run_after_the_pool_is_dropped_and_later_ones_are_refused() {
        let poll = mio::Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
        let pool: Pool<u32, u32> = Pool::new("t", 1, waker).expect("pool");
        let spawner = pool.spawner();
        let (tx, rx) = mpsc::channel();
        for i in 0..5 {
            let tx = tx.clone();
            spawner
                .background(Box::new(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    let _ = tx.send(i);
                }))
                .expect("background");
        }
        drop(pool);
        let got: Vec<i32> = (0..5)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("ran"))
            .collect();
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert!(spawner.background(Box::new(|| {})).is_err());
    }
}
