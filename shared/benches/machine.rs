//! In-process benchmarks of the machine (results and commands: `docs/BENCHMARKS.md`).
//!
//! * `worker_op` — upstream's aRPC-vs-gRPC "subscribe → get → process" scenario
//!   (asyncmachine-go v0.8.0 `examples/benchmark_grpc`) run on a local machine: the rpc worker
//!   schema plus `Event`, `Value1..3` and `CallOp`, a plain worker struct with a listener, and the
//!   client loop "wait for `Event` +2 → `switch(Values)` → `add1(CallOp, Op)`". One op is five
//!   transitions (`+CallOp`, `-CallOp`, `+Event`, `-Event`, `+ValueN`).
//! * `worker_op_noop_handlers` — the same with an extra, no-op handler set bound and a logger
//!   installed at `LogLevel::Nothing` (upstream's server always installs one).
//! * `worker_op_plain` — the same loop as direct method calls, no machine (upstream's "local").
//! * `add1_remove1` — one `add1` + `remove1` pair on a 3-state schema without handlers.
//! * `getters/*` — `is1`, `tick` and `switch` on the worker machine.
//!
//! Allocations per op are counted outside criterion's timing, over `ALLOC_OPS` ops, with the
//! counting global allocator of the `allocation-counter` dev-dependency (the workspace forbids
//! `unsafe_code`, so the allocator can't live here), and printed to stderr as `alloc …` lines.
//! Its counters are thread-local and non-atomic, and counting is switched off (`opt_out`) while
//! criterion times; what remains is one thread-local check per (de)allocation (≈ 3 % of
//! `worker_op` at 150 allocations/op). A reallocation counts as one allocation of the new size,
//! like Go's `allocs/op` and `B/op`. Every op checks its result (waits met, `Executed`), and every scenario ends with 0
//! worker errors and at least one success, so `cargo bench … -- --test` is a correctness check.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use amrpc_core::{Args, Handlers, LogLevel, Machine, Opts, Outcome, Schema, State, Value, schema, struct_merge};
use criterion::{Criterion, criterion_group, criterion_main};

/// Ops per allocation measurement.
const ALLOC_OPS: u64 = 10_000;

// ----- schema (upstream examples/benchmark_grpc/states + pkg/rpc/states + pkg/states) -----

const EXCEPTION: &str = "Exception";
const START: &str = "Start";
const EVENT: &str = "Event";
const CALL_OP: &str = "CallOp";
/// Group `Values`: mutually exclusive.
const VALUES: [&str; 3] = ["Value1", "Value2", "Value3"];
/// The worker's state order (`ss.Names()` upstream).
const NAMES: [&str; 14] = [
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

/// Basic states (`pkg/states/ss_basic.go`).
fn basic_schema() -> Schema {
    schema([
        (EXCEPTION, State::new().multi()),
        ("ErrNetwork", State::new().require(&[EXCEPTION])),
        ("ErrHandlerTimeout", State::new().require(&[EXCEPTION])),
        (START, State::new()),
        ("Ready", State::new().require(&[START])),
        ("Healthcheck", State::new()),
    ])
}

/// The rpc worker states (`pkg/rpc/states/ss_rpc_worker.go`): Basic plus these.
fn rpc_worker_schema() -> Schema {
    let own = schema([
        ("ErrProviding", State::new().require(&[EXCEPTION])),
        ("ErrSendPayload", State::new().require(&[EXCEPTION])),
        ("SendPayload", State::new().multi()),
    ]);
    struct_merge(&[&basic_schema(), &own])
}

/// The benchmark's worker machine: the rpc worker merged with the ops, events and values.
fn bench_worker_schema() -> Schema {
    let own = schema([
        (CALL_OP, State::new().multi().require(&[START])),
        (EVENT, State::new().multi().require(&[START])),
        (VALUES[0], State::new().remove(&VALUES)),
        (VALUES[1], State::new().remove(&VALUES)),
        (VALUES[2], State::new().remove(&VALUES)),
    ]);
    struct_merge(&[&rpc_worker_schema(), &own])
}

// ----- the plain worker (upstream examples/benchmark_grpc/worker.go) -----

/// xorshift64: cheap, deterministic random values.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// 1, 2 or 3.
    fn one_to_three(&mut self) -> i64 {
        (self.next() % 3) as i64 + 1
    }
}

type Listener = Box<dyn Fn() + Send + Sync>;

struct WorkerData {
    /// 0 before the first op, then 1..=3.
    value: i64,
    errors: u64,
    successes: u64,
    rng: XorShift,
}

/// A worker with a value, error and success counters and one listener, notified synchronously
/// after every op.
struct Worker {
    data: Mutex<WorkerData>,
    listener: Mutex<Option<Listener>>,
}

impl Worker {
    fn new(seed: u64) -> Arc<Self> {
        Arc::new(Worker {
            data: Mutex::new(WorkerData {
                value: 0,
                errors: 0,
                successes: 0,
                rng: XorShift::new(seed),
            }),
            listener: Mutex::new(None),
        })
    }

    fn data(&self) -> MutexGuard<'_, WorkerData> {
        self.data.lock().expect("worker lock")
    }

    fn subscribe(&self, l: Listener) {
        *self.listener.lock().expect("listener lock") = Some(l);
    }

    fn unsubscribe(&self) {
        *self.listener.lock().expect("listener lock") = None;
    }

    /// `Start()`: an op with a random value.
    fn start(&self) {
        let op = self.data().rng.one_to_three();
        self.call_op(op);
    }

    fn value(&self) -> i64 {
        self.data().value
    }

    /// `CallOp(op)`: check `op` against the value (unless it is still 0), pick a new random value,
    /// notify the listener.
    fn call_op(&self, op: i64) {
        {
            let mut d = self.data();
            if d.value != 0 {
                if (1..=3).contains(&op) {
                    if d.value != op {
                        d.errors += 1;
                    }
                    d.successes += 1;
                } else {
                    d.errors += 1;
                }
            }
            d.value = d.rng.one_to_three();
        }
        // The listener only queues a mutation (we are inside a handler), so holding the lock
        // while it runs cannot deadlock.
        if let Some(l) = &*self.listener.lock().expect("listener lock") {
            l();
        }
    }

    /// Panics unless the run ended with 0 errors and at least one success; returns the successes.
    fn assert_ok(&self, scenario: &str) -> u64 {
        let d = self.data();
        assert_eq!(d.errors, 0, "{scenario}: worker errors");
        assert!(d.successes >= 1, "{scenario}: no successful op");
        d.successes
    }
}

// ----- the machine-backed worker (upstream server_arpc.go + client_arpc_test.go loop) -----

fn op_of(value: Option<&str>) -> i64 {
    match value {
        Some("Value1") => 1,
        Some("Value2") => 2,
        Some("Value3") => 3,
        other => panic!("unknown value: {other:?}"),
    }
}

/// The worker machine's handlers.
fn worker_handlers(worker: &Arc<Worker>) -> Handlers {
    let (w_start, w_call, w_event) = (worker.clone(), worker.clone(), worker.clone());
    Handlers::new("worker")
        .state(START, move |_e| w_start.start())
        .enter(CALL_OP, |e| matches!(e.args().get("Op"), Some(Value::Int(_))))
        .state(CALL_OP, move |e| {
            e.machine().remove1(CALL_OP, None);
            let op = e.args().get("Op").and_then(Value::as_int).unwrap_or(0);
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

/// A second handler set doing nothing: `FooEnter`/`FooExit` allow, `FooState`/`FooEnd` return.
fn noop_handlers() -> Handlers {
    let mut h = Handlers::new("noop");
    for s in NAMES {
        h = h
            .enter(s, |_e| true)
            .exit(s, |_e| true)
            .state(s, |_e| {})
            .end(s, |_e| {});
    }
    h
}

struct WorkerBench {
    m: Machine,
    worker: Arc<Worker>,
    /// `Event`'s tick the next op waits on (minus 2).
    ticks: u64,
}

impl WorkerBench {
    /// A started worker machine; `noop` also binds [`noop_handlers`] and a logger at `Nothing`.
    fn new(seed: u64, noop: bool) -> Self {
        let opts = Opts {
            id: Some("worker".into()),
            ..Default::default()
        };
        let m = Machine::new(bench_worker_schema(), opts).expect("worker schema");
        m.verify_states(&NAMES).expect("verify_states");
        let worker = Worker::new(seed);
        m.bind_handlers(worker_handlers(&worker)).expect("bind worker handlers");
        if noop {
            m.bind_handlers(noop_handlers()).expect("bind no-op handlers");
            m.set_logger_simple(|msg| eprintln!("{msg}"), LogLevel::Nothing);
        }
        let lm = m.clone();
        worker.subscribe(Box::new(move || {
            lm.add1(EVENT, None);
        }));
        let ticks = m.tick(EVENT);
        assert_eq!(m.add1(START, None), Outcome::Executed, "add1(Start)");
        WorkerBench { m, worker, ticks }
    }

    /// One op: wait for the event, read the value, call the op.
    fn op(&mut self) {
        // the mutations queued by the handlers were drained before the last add1 returned
        let wait = self.m.when_ticks_eq(EVENT, self.ticks + 2, None);
        assert_eq!(wait.try_result(), Some(Ok(())), "Event didn't tick");
        drop(wait);
        self.ticks += 2;
        let op = op_of(self.m.switch(&[&VALUES]));
        let res = self.m.add1(CALL_OP, Some(Args::new().with("Op", Value::Int(op))));
        assert_eq!(res, Outcome::Executed, "CallOp: {:?}", self.m.err());
    }

    /// Check the counters and break the machine ↔ worker cycle.
    fn finish(self, scenario: &str) -> u64 {
        assert!(!self.m.is_err(), "{scenario}: machine error {:?}", self.m.err());
        let n = self.worker.assert_ok(scenario);
        self.worker.unsubscribe();
        self.m.dispose();
        n
    }
}

/// Upstream's "local" variant: the same loop as direct calls. The listener only flags the event
/// (upstream spawns a goroutine per op to avoid recursing; here the loop polls the flag).
struct PlainBench {
    worker: Arc<Worker>,
    events: Arc<Mutex<u64>>,
    seen: u64,
}

impl PlainBench {
    fn new(seed: u64) -> Self {
        let worker = Worker::new(seed);
        let events = Arc::new(Mutex::new(0u64));
        let ev = events.clone();
        worker.subscribe(Box::new(move || *ev.lock().expect("events lock") += 1));
        worker.start();
        PlainBench {
            worker,
            events,
            seen: 0,
        }
    }

    fn op(&mut self) {
        let n = *self.events.lock().expect("events lock");
        assert_eq!(n, self.seen + 1, "missed event");
        self.seen = n;
        let v = self.worker.value();
        self.worker.call_op(v);
    }

    fn finish(self, scenario: &str) -> u64 {
        let n = self.worker.assert_ok(scenario);
        self.worker.unsubscribe();
        n
    }
}

// ----- add1 + remove1 -----

fn small_machine() -> Machine {
    let s = schema([("A", State::new()), ("B", State::new()), ("C", State::new())]);
    Machine::new(s, Opts::default()).expect("small schema")
}

fn add1_remove1(m: &Machine) {
    assert_eq!(m.add1("A", None), Outcome::Executed);
    assert_eq!(m.remove1("A", None), Outcome::Executed);
}

// ----- allocation counting -----

/// Run `op` `ALLOC_OPS` times (after a short warm-up) and print allocations and bytes per op.
fn count_allocs(name: &str, mut op: impl FnMut()) {
    for _ in 0..100 {
        op();
    }
    let s = allocation_counter::measure(|| {
        for _ in 0..ALLOC_OPS {
            op();
        }
    });
    let n = ALLOC_OPS as f64;
    eprintln!(
        "alloc {name}: {:.2} allocs/op, {:.1} B/op, over {ALLOC_OPS} ops",
        s.count_total as f64 / n,
        s.bytes_total as f64 / n,
    );
}

/// Criterion's timing, with allocation counting off.
fn timed(f: impl FnOnce()) {
    allocation_counter::opt_out(f);
}

// ----- benchmarks -----

fn bench_worker(c: &mut Criterion, name: &str, noop: bool) {
    let mut counted = WorkerBench::new(7, noop);
    count_allocs(name, || counted.op());
    let n = counted.finish(name);
    assert!(n >= ALLOC_OPS, "{name}: {n} successes");

    let mut wb = WorkerBench::new(42, noop);
    wb.op(); // at least one success when a filter skips the benchmark
    timed(|| {
        c.bench_function(name, |b| b.iter(|| wb.op()));
    });
    wb.finish(name);
}

fn worker_op(c: &mut Criterion) {
    bench_worker(c, "worker_op", false);
}

fn worker_op_noop_handlers(c: &mut Criterion) {
    bench_worker(c, "worker_op_noop_handlers", true);
}

fn worker_op_plain(c: &mut Criterion) {
    let name = "worker_op_plain";
    let mut counted = PlainBench::new(7);
    count_allocs(name, || counted.op());
    counted.finish(name);

    let mut pb = PlainBench::new(42);
    pb.op();
    timed(|| {
        c.bench_function(name, |b| b.iter(|| pb.op()));
    });
    pb.finish(name);
}

fn bench_add1_remove1(c: &mut Criterion) {
    let name = "add1_remove1";
    let m = small_machine();
    count_allocs(name, || add1_remove1(&m));
    timed(|| {
        c.bench_function(name, |b| b.iter(|| add1_remove1(&m)));
    });
    assert!(!m.is1("A") && m.tick("A") % 2 == 0, "A left active");
}

fn getters(c: &mut Criterion) {
    let mut wb = WorkerBench::new(3, false);
    wb.op();
    let m = wb.m.clone();
    count_allocs("getters/is1", || {
        black_box(m.is1(black_box(START)));
    });
    count_allocs("getters/tick", || {
        black_box(m.tick(black_box(EVENT)));
    });
    count_allocs("getters/switch", || {
        black_box(m.switch(black_box(&[&VALUES])));
    });
    timed(|| {
        let mut g = c.benchmark_group("getters");
        g.bench_function("is1", |b| b.iter(|| assert!(m.is1(black_box(START)))));
        g.bench_function("tick", |b| b.iter(|| black_box(m.tick(black_box(EVENT)))));
        g.bench_function("switch", |b| {
            b.iter(|| assert!(m.switch(black_box(&[&VALUES])).is_some()))
        });
        g.finish();
    });
    drop(m);
    wb.finish("getters");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = worker_op, worker_op_noop_handlers, worker_op_plain, bench_add1_remove1, getters
}
criterion_main!(benches);
