//! In-process variants, no network: the benchmark worker machine alone, and a plain-Rust loop with
//! no machine (upstream's `BenchmarkClientLocal`). Each comes as a synchronous loop and with a
//! task spawned per `CallOp`, as upstream's local variant spawns a goroutine per op.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use amrpc_core::demo::{self, BenchWorker, CALL_OP, EVENT, START, VALUES};
use amrpc_core::{Machine, Outcome};

use crate::scenario::{Finish, Scenario, Timed};

/// The worker machine driven by direct calls, as `shared/benches/machine.rs` `worker_op`: the
/// wait is already met after each `add1`, which drains the nested mutations.
pub(crate) struct MachineSync {
    m: Machine,
    worker: Arc<BenchWorker>,
}

impl Scenario for MachineSync {
    async fn setup(seed: u64, _proxied: bool) -> Result<Self, String> {
        let (m, worker) = demo::bench_worker(seed).map_err(|e| e.to_string())?;
        Ok(MachineSync { m, worker })
    }

    async fn timed(&mut self, n: usize) -> Result<Timed, String> {
        let m = &self.m;
        let mut ticks = m.tick(EVENT);
        let t0 = Instant::now();
        if m.add1(START, None) != Outcome::Executed {
            return Err("add1(Start) not executed".into());
        }
        for i in 0..n {
            let wait = m.when_ticks_eq(EVENT, ticks + 2, None);
            if wait.try_result() != Some(Ok(())) {
                return Err(format!("op {i}: Event did not tick"));
            }
            drop(wait);
            ticks += 2;
            let op = demo::op_of(m.switch(&[&VALUES])).ok_or_else(|| format!("op {i}: no value"))?;
            let r = m.add1(CALL_OP, Some(demo::op_args(op)));
            if r != Outcome::Executed {
                return Err(format!("op {i}: add1(CallOp): {r:?}, {:?}", m.err()));
            }
        }
        Ok(Timed {
            elapsed: t0.elapsed(),
            ops: n,
            wire: None,
        })
    }

    async fn finish(self) -> Result<Finish, String> {
        let f = Finish {
            errors: self.worker.errors(),
            successes: self.worker.successes(),
            ..Default::default()
        };
        self.worker.unsubscribe();
        self.m.dispose();
        Ok(f)
    }
}

/// The worker machine with a task spawned per `CallOp` (like upstream's goroutine per op); the
/// loop really waits: it awaits the machine's `when_ticks_eq(Event, +2)`.
///
/// Current-thread runtime only: on more threads the loop wakes on `Event` +2 while the drain
/// still runs on another thread (`ValueN` comes after), so it could read the old value and its
/// `add1` would return `Queued`. The remote variants don't have this race: a reply carries the
/// whole cascade.
pub(crate) struct MachineSpawn {
    m: Machine,
    worker: Arc<BenchWorker>,
    failed: Arc<AtomicUsize>,
}

impl Scenario for MachineSpawn {
    async fn setup(seed: u64, _proxied: bool) -> Result<Self, String> {
        let (m, worker) = demo::bench_worker(seed).map_err(|e| e.to_string())?;
        Ok(MachineSpawn {
            m,
            worker,
            failed: Arc::new(AtomicUsize::new(0)),
        })
    }

    async fn timed(&mut self, n: usize) -> Result<Timed, String> {
        let m = &self.m;
        let mut ticks = m.tick(EVENT);
        let t0 = Instant::now();
        let m2 = m.clone();
        let failed = self.failed.clone();
        tokio::spawn(async move {
            if m2.add1(START, None) != Outcome::Executed {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        });
        let mut i = 0;
        loop {
            m.when_ticks_eq(EVENT, ticks + 2, None)
                .await
                .map_err(|e| format!("op {i}: {e:?}"))?;
            ticks += 2;
            i += 1;
            if i > n {
                break;
            }
            let op = demo::op_of(m.switch(&[&VALUES])).ok_or_else(|| format!("op {i}: no value"))?;
            let (m2, failed) = (m.clone(), self.failed.clone());
            tokio::spawn(async move {
                if m2.add1(CALL_OP, Some(demo::op_args(op))) != Outcome::Executed {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        if self.failed.load(Ordering::Relaxed) > 0 {
            return Err(format!(
                "{} mutations not executed",
                self.failed.load(Ordering::Relaxed)
            ));
        }
        Ok(Timed {
            elapsed: t0.elapsed(),
            ops: n,
            wire: None,
        })
    }

    async fn finish(self) -> Result<Finish, String> {
        let f = Finish {
            errors: self.worker.errors() + self.failed.load(Ordering::Relaxed),
            successes: self.worker.successes(),
            ..Default::default()
        };
        self.worker.unsubscribe();
        self.m.dispose();
        Ok(f)
    }
}

/// No machine: the plain worker called directly (its listener only counts events).
pub(crate) struct PlainSync {
    worker: Arc<BenchWorker>,
}

impl Scenario for PlainSync {
    async fn setup(seed: u64, _proxied: bool) -> Result<Self, String> {
        Ok(PlainSync {
            worker: BenchWorker::new(seed),
        })
    }

    async fn timed(&mut self, n: usize) -> Result<Timed, String> {
        let w = &self.worker;
        let t0 = Instant::now();
        w.start();
        let first = w.events();
        for (i, seen) in (first..first + n).enumerate() {
            // subscribe: the event arrived; get: the value; process: the op
            let e = w.events();
            if e != seen {
                return Err(format!("op {i}: missed event ({e} != {seen})"));
            }
            let v = w.value();
            w.call_op(v);
        }
        Ok(Timed {
            elapsed: t0.elapsed(),
            ops: n,
            wire: None,
        })
    }

    async fn finish(self) -> Result<Finish, String> {
        Ok(Finish {
            errors: self.worker.errors(),
            successes: self.worker.successes(),
            ..Default::default()
        })
    }
}

/// No machine, a task spawned per `CallOp` (upstream's `go worker.CallOp(op)`), joined before
/// the next op.
pub(crate) struct PlainSpawn {
    worker: Arc<BenchWorker>,
}

impl Scenario for PlainSpawn {
    async fn setup(seed: u64, _proxied: bool) -> Result<Self, String> {
        Ok(PlainSpawn {
            worker: BenchWorker::new(seed),
        })
    }

    async fn timed(&mut self, n: usize) -> Result<Timed, String> {
        let w = &self.worker;
        let t0 = Instant::now();
        w.start();
        for i in 0..n {
            let v = w.value();
            let w2 = w.clone();
            tokio::spawn(async move { w2.call_op(v) })
                .await
                .map_err(|e| format!("op {i}: {e}"))?;
        }
        Ok(Timed {
            elapsed: t0.elapsed(),
            ops: n,
            wire: None,
        })
    }

    async fn finish(self) -> Result<Finish, String> {
        Ok(Finish {
            errors: self.worker.errors(),
            successes: self.worker.successes(),
            ..Default::default()
        })
    }
}
