//! Upstream's benchmark worker (asyncmachine-go v0.8.0 `examples/benchmark_grpc`, spec `arpc.md`
//! §7.1), shared by the in-process bench, the wire-size tests and the server.
//!
//! The worker machine is the rpc worker schema ([`rpc_worker_schema`]) merged with `Event` and
//! `CallOp` (both *Multi*, Require `Start`) and `Value1..3` (each Removes the group), verified in
//! upstream's order [`BENCH_NAMES`]. A plain [`BenchWorker`] holds a value, error and success
//! counters and one listener. One benchmark op, as a client does it:
//!
//! 1. wait until `Event` ticked +2 (added by the listener, then removed by `EventState`);
//! 2. read the value: `switch(Values)` ([`op_of`]);
//! 3. `add1(CallOp, {"Op": Int(n)})` ([`op_args`]) and expect `Executed`.
//!
//! ```
//! use amrpc_core::Outcome;
//! use amrpc_core::demo::{self, CALL_OP, EVENT, START, VALUES};
//!
//! let (m, worker) = demo::bench_worker(7).unwrap();
//! let mut ticks = m.tick(EVENT);
//! assert_eq!(m.add1(START, None), Outcome::Executed);
//! for _ in 0..10 {
//!     assert_eq!(m.tick(EVENT), ticks + 2); // the nested mutations drained with the add1
//!     ticks += 2;
//!     let op = demo::op_of(m.switch(&[&VALUES])).unwrap();
//!     assert_eq!(m.add1(CALL_OP, Some(demo::op_args(op))), Outcome::Executed);
//! }
//! assert_eq!((worker.errors(), worker.successes()), (0, 10));
//! worker.unsubscribe();
//! m.dispose(); // drops the handlers, which hold the worker
//! ```

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use crate::handlers::Handlers;
use crate::machine::{Machine, Opts};
use crate::schema::{Schema, State, schema, struct_merge};
use crate::types::{Args, Error, Outcome, Value};

pub use crate::schema::EXCEPTION;
pub use crate::states::START;
/// `Event` (*Multi*, Require `Start`): the worker's listener fired.
pub const EVENT: &str = "Event";
/// `CallOp` (*Multi*, Require `Start`): call the worker's op; needs the `"Op"` arg ([`OP_ARG`]).
pub const CALL_OP: &str = "CallOp";
/// The group `Values`: mutually exclusive, the worker's current value.
pub const VALUES: [&str; 3] = ["Value1", "Value2", "Value3"];
/// The arg of `CallOp`: an `Int` 1–3.
pub const OP_ARG: &str = "Op";

/// The benchmark worker's state order (upstream `ss.Names()`); indexes into it are the wire
/// identity of its states.
pub const BENCH_NAMES: [&str; 14] = [
    "Event",
    "Value1",
    "Value2",
    "Value3",
    "CallOp",
    "ErrProviding",
    "ErrSendPayload",
    "SendPayload",
    "Exception",
    "ErrNetwork",
    "ErrHandlerTimeout",
    "Start",
    "Ready",
    "Healthcheck",
];

pub use crate::states::{basic_schema, worker_schema as rpc_worker_schema};

/// The benchmark's worker schema: [`rpc_worker_schema`] merged with the op, the event and the
/// values (14 states, see [`BENCH_NAMES`]).
pub fn bench_worker_schema() -> Schema {
    let own = schema([
        (CALL_OP, State::new().multi().require(&[START])),
        (EVENT, State::new().multi().require(&[START])),
        (VALUES[0], State::new().remove(&VALUES)),
        (VALUES[1], State::new().remove(&VALUES)),
        (VALUES[2], State::new().remove(&VALUES)),
    ]);
    struct_merge(&[&rpc_worker_schema(), &own])
}

/// The op for an active value state: `Value1` → 1, `Value2` → 2, `Value3` → 3, else `None`.
pub fn op_of(value: Option<&str>) -> Option<i64> {
    match value {
        Some("Value1") => Some(1),
        Some("Value2") => Some(2),
        Some("Value3") => Some(3),
        _ => None,
    }
}

/// `CallOp`'s args: `{"Op": Int(op)}`.
pub fn op_args(op: i64) -> Args {
    Args::new().with(OP_ARG, Value::Int(op))
}

/// xorshift32 step (never returns 0 for a non-zero input).
fn xorshift32(mut x: u32) -> u32 {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

/// Upstream's plain benchmark worker (`examples/benchmark_grpc/worker.go`): a value in 1–3 (0
/// before the first op), error and success counters, a deterministic RNG and one listener, a
/// machine handle to which it adds `Event` after every op.
///
/// Lock-free (atomics only) so it works without `std`. Ops are meant to be serialised, as the
/// machine's queue serialises the handlers that call them; concurrent ops don't corrupt
/// anything, but may count a correct op as an error.
pub struct BenchWorker {
    value: AtomicU32,
    errors: AtomicUsize,
    successes: AtomicUsize,
    events: AtomicUsize,
    rng: AtomicU32,
    listener: Option<Machine>,
    subscribed: AtomicBool,
}

impl core::fmt::Debug for BenchWorker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BenchWorker")
            .field("value", &self.value())
            .field("errors", &self.errors())
            .field("successes", &self.successes())
            .field("events", &self.events())
            .field("subscribed", &self.subscribed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl BenchWorker {
    /// A worker whose listener only counts events ([`BenchWorker::events`]); upstream's "local"
    /// variant drives it by direct calls. `seed` makes the values deterministic.
    pub fn new(seed: u64) -> Arc<BenchWorker> {
        Arc::new(Self::build(seed, None))
    }

    /// A worker that adds `Event` to `listener` after every op (and counts events).
    pub fn with_listener(seed: u64, listener: Machine) -> Arc<BenchWorker> {
        Arc::new(Self::build(seed, Some(listener)))
    }

    fn build(seed: u64, listener: Option<Machine>) -> BenchWorker {
        let folded = (seed ^ (seed >> 32)) as u32;
        BenchWorker {
            value: AtomicU32::new(0),
            errors: AtomicUsize::new(0),
            successes: AtomicUsize::new(0),
            events: AtomicUsize::new(0),
            rng: AtomicU32::new(folded.max(1)),
            subscribed: AtomicBool::new(listener.is_some()),
            listener,
        }
    }

    /// 1, 2 or 3, at random.
    fn one_to_three(&self) -> u32 {
        let x = xorshift32(self.rng.load(Ordering::Relaxed));
        self.rng.store(x, Ordering::Relaxed);
        x % 3 + 1
    }

    /// `Start()`: an op with a random value.
    pub fn start(&self) {
        let op = self.one_to_three();
        self.call_op(i64::from(op));
    }

    /// `CallOp(op)`: unless the value is still 0, count an error when `op` differs from it (or is
    /// not 1–3) and a success when it is 1–3; then pick a new random value and notify the
    /// listener.
    pub fn call_op(&self, op: i64) {
        let value = self.value.load(Ordering::Acquire);
        if value != 0 {
            if (1..=3).contains(&op) {
                if i64::from(value) != op {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                }
                self.successes.fetch_add(1, Ordering::Relaxed);
            } else {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let next = self.one_to_three();
        self.value.store(next, Ordering::Release);
        self.events.fetch_add(1, Ordering::AcqRel);
        if let Some(m) = &self.listener {
            if self.subscribed.load(Ordering::Acquire) {
                // inside a handler this only queues; the drain runs it before the caller returns
                m.add1(EVENT, None);
            }
        }
    }

    /// The current value: 0 before the first op, then 1–3.
    pub fn value(&self) -> i64 {
        i64::from(self.value.load(Ordering::Acquire))
    }

    /// Ops whose `op` did not match the value.
    pub fn errors(&self) -> usize {
        self.errors.load(Ordering::Relaxed)
    }

    /// Ops with an `op` in 1–3 (made after the first one).
    pub fn successes(&self) -> usize {
        self.successes.load(Ordering::Relaxed)
    }

    /// How many times the listener was notified (every op, subscribed or not).
    pub fn events(&self) -> usize {
        self.events.load(Ordering::Acquire)
    }

    /// Stop notifying the listener machine (events are still counted).
    pub fn unsubscribe(&self) {
        self.subscribed.store(false, Ordering::Release);
    }
}

/// The worker machine's handlers (upstream `server_arpc.go`):
///
/// - `StartState` → `worker.start()`;
/// - `CallOpEnter` accepts only an `Int` `"Op"` arg;
/// - `CallOpState` → `remove1(CallOp)`, then `worker.call_op(op)` (whose listener adds `Event`);
/// - `EventState` → `remove1(Event)`, then `add1(ValueN)` for the worker's value.
///
/// The handlers hold `worker`: dispose the machine to break the cycle.
pub fn bench_worker_handlers(worker: &Arc<BenchWorker>) -> Handlers {
    let (w_start, w_call, w_event) = (worker.clone(), worker.clone(), worker.clone());
    Handlers::new("worker")
        .state(START, move |_e| w_start.start())
        .enter(CALL_OP, |e| matches!(e.args().get(OP_ARG), Some(Value::Int(_))))
        .state(CALL_OP, move |e| {
            e.machine().remove1(CALL_OP, None);
            let op = e.args().get(OP_ARG).and_then(Value::as_int).unwrap_or(0);
            w_call.call_op(op);
        })
        .state(EVENT, move |e| {
            let m = e.machine();
            m.remove1(EVENT, None);
            match w_event.value() {
                1 => m.add1(VALUES[0], None),
                2 => m.add1(VALUES[1], None),
                3 => m.add1(VALUES[2], None),
                _ => Outcome::Canceled,
            };
        })
}

/// The benchmark's worker machine (id `"worker"`), states verified in [`BENCH_NAMES`] order,
/// with [`bench_worker_handlers`] bound and the worker's listener set to the machine. Not
/// started: `add1(Start)` runs the first op.
///
/// The machine's handlers hold the worker and the worker holds the machine: call
/// [`BenchWorker::unsubscribe`] and [`Machine::dispose`] when done.
pub fn bench_worker(seed: u64) -> Result<(Machine, Arc<BenchWorker>), Error> {
    let opts = Opts {
        id: Some("worker".into()),
        ..Default::default()
    };
    let m = Machine::new(bench_worker_schema(), opts)?;
    m.verify_states(&BENCH_NAMES)?;
    let worker = BenchWorker::with_listener(seed, m.clone());
    m.bind_handlers(bench_worker_handlers(&worker))?;
    Ok((m, worker))
}
