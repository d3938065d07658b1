//! [`ThreadRunner`]: handler isolation on a small pool of threads (a [`HandlerRunner`]).

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::HandlerRunner;

/// Default most threads a [`ThreadRunner`] keeps: one runs handlers, the others hold late ones.
pub const RUNNER_THREADS: usize = 8;

type Job = Box<dyn FnOnce() + Send>;

struct Done {
    finished: Mutex<bool>,
    cv: Condvar,
}

struct Queued {
    job: Job,
    done: Arc<Done>,
}

struct Pool {
    jobs: Mutex<VecDeque<Queued>>,
    cv: Condvar,
    idle: AtomicUsize,
    threads: AtomicUsize,
    max_threads: usize,
    late: AtomicUsize,
    name: String,
}

/// Runs handler calls on its own threads (a [`HandlerRunner`] for [`crate::Opts::handler_runner`])
/// so a handler that hangs is left behind at the machine's handler timeout. One thread serves
/// every call while handlers return in time; each late handler keeps its thread until it
/// returns, and another thread takes over, up to `max_threads`. With all of them held by late
/// handlers, a call waits for one to come free, at most the timeout (then it is canceled as a
/// timeout without having run). Cost: two thread hand-offs per handler call (docs/BENCHMARKS.md).
pub struct ThreadRunner(Arc<Pool>);

impl core::fmt::Debug for ThreadRunner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ThreadRunner")
            .field("name", &self.0.name)
            .field("threads", &self.threads())
            .field("late", &self.late())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for ThreadRunner {
    /// `amrpc-handlers` threads, at most [`RUNNER_THREADS`].
    fn default() -> Self {
        ThreadRunner::new("amrpc-handlers", RUNNER_THREADS)
    }
}

impl ThreadRunner {
    /// A runner whose threads are named `name`, at most `max_threads` (at least 1). Threads
    /// start on first use.
    pub fn new(name: &str, max_threads: usize) -> ThreadRunner {
        ThreadRunner(Arc::new(Pool {
            jobs: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
            idle: AtomicUsize::new(0),
            threads: AtomicUsize::new(0),
            max_threads: max_threads.max(1),
            late: AtomicUsize::new(0),
            name: String::from(name),
        }))
    }

    /// Threads started.
    pub fn threads(&self) -> usize {
        self.0.threads.load(Ordering::Acquire)
    }

    /// Handlers left behind at a timeout and still running.
    pub fn late(&self) -> usize {
        self.0.late.load(Ordering::Acquire)
    }

    fn spawn_thread(&self) {
        let pool = self.0.clone();
        let n = pool.threads.fetch_add(1, Ordering::AcqRel);
        let spawned = std::thread::Builder::new()
            .name(alloc::format!("{}-{n}", pool.name))
            .spawn(move || pool.serve());
        if spawned.is_err() {
            self.0.threads.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Pool {
    fn serve(&self) {
        loop {
            let q = {
                let mut jobs = lock(&self.jobs);
                loop {
                    if let Some(q) = jobs.pop_front() {
                        break q;
                    }
                    self.idle.fetch_add(1, Ordering::AcqRel);
                    jobs = self.cv.wait(jobs).unwrap_or_else(|e| e.into_inner());
                    self.idle.fetch_sub(1, Ordering::AcqRel);
                }
            };
            // a handler that unwinds (panics not caught) must not take the thread with it
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(q.job));
            let mut finished = lock(&q.done.finished);
            if *finished {
                // the caller had given up on it: it was late
                self.late.fetch_sub(1, Ordering::AcqRel);
            }
            *finished = true;
            q.done.cv.notify_all();
        }
    }
}

impl HandlerRunner for ThreadRunner {
    fn run(&self, job: Job, timeout: Duration) -> bool {
        let done = Arc::new(Done {
            finished: Mutex::new(false),
            cv: Condvar::new(),
        });
        {
            let mut jobs = lock(&self.0.jobs);
            jobs.push_back(Queued {
                job,
                done: done.clone(),
            });
            if self.0.idle.load(Ordering::Acquire) == 0 && self.threads() < self.0.max_threads {
                self.spawn_thread();
            }
            self.0.cv.notify_one();
        }
        let finished = lock(&done.finished);
        let (mut finished, _) = done
            .cv
            .wait_timeout_while(finished, timeout, |f| !*f)
            .unwrap_or_else(|e| e.into_inner());
        if *finished {
            return true;
        }
        // Too late. Not started yet (every thread is held by a late handler): take it back, it
        // never runs. Started: leave it; `serve` sees `finished` already set and counts it off.
        let mut jobs = lock(&self.0.jobs);
        if let Some(i) = jobs.iter().position(|q| Arc::ptr_eq(&q.done, &done)) {
            jobs.remove(i);
            return false;
        }
        drop(jobs);
        *finished = true;
        self.0.late.fetch_add(1, Ordering::AcqRel);
        false
    }
}
