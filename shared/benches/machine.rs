//! In-process benchmarks of the machine (results and commands: `docs/BENCHMARKS.md`).
//!
//! * `worker_op` — upstream's aRPC-vs-gRPC "subscribe → get → process" scenario
//!   (asyncmachine-go v0.8.0 `examples/benchmark_grpc`) run on a local machine: the rpc worker
//!   schema plus `Event`, `Value1..3` and `CallOp`, a plain worker struct with a listener (all
//!   from `amrpc_core::demo`, shared with the wire tests), and the client loop "wait for
//!   `Event` +2 → `switch(Values)` → `add1(CallOp, Op)`". One op is five transitions
//!   (`+CallOp`, `-CallOp`, `+Event`, `-Event`, `+ValueN`).
//! * `worker_op_noop_handlers` — the same with an extra, no-op handler set bound and a logger
//!   installed at `LogLevel::Nothing` (upstream's server always installs one).
//! * `worker_op_plain` — the same loop as direct method calls, no machine (upstream's "local").
//! * `stream/traced`, `stream/inspector_0`, `stream/inspector_1` — `worker_op` as a served worker
//!   runs it: with a tracer bound (the server's change tracer, a no-op here), plus the transition
//!   stream's tracer and log with no subscribed inspector, and with one (which reads the log
//!   after every op, as a session does after every drain).
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
use std::sync::Arc;
use std::time::Duration;

use amrpc_core::demo::{self, BENCH_NAMES, BenchWorker, CALL_OP, EVENT, START, VALUES};
use amrpc_core::session::{LOG_CAPACITY, MAX_PER_POLL, StreamTracer, TransitionLog};
use amrpc_core::{Handlers, LogLevel, Machine, Opts, Outcome, State, schema};
use criterion::{Criterion, criterion_group, criterion_main};

/// Ops per allocation measurement.
const ALLOC_OPS: u64 = 10_000;

// The schema, the plain worker and the worker machine's handlers are upstream's
// (examples/benchmark_grpc): `amrpc_core::demo`, shared with the wire tests and the server.

/// Panics unless the run ended with 0 errors and at least one success; returns the successes.
fn assert_ok(worker: &BenchWorker, scenario: &str) -> u64 {
    assert_eq!(worker.errors(), 0, "{scenario}: worker errors");
    assert!(worker.successes() >= 1, "{scenario}: no successful op");
    worker.successes() as u64
}

/// A second handler set doing nothing: `FooEnter`/`FooExit` allow, `FooState`/`FooEnd` return.
fn noop_handlers() -> Handlers {
    let mut h = Handlers::new("noop");
    for s in BENCH_NAMES {
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
    worker: Arc<BenchWorker>,
    /// `Event`'s tick the next op waits on (minus 2).
    ticks: u64,
    /// A subscribed reader of the transition log, and the next `seq` it reads.
    reader: Option<(Arc<TransitionLog>, u64)>,
}

/// How the worker is served (the `stream/*` benchmarks).
#[derive(Clone, Copy)]
enum Served {
    /// Not at all (`worker_op`).
    No,
    /// A no-op tracer bound, like the server's change tracer.
    Traced,
    /// Also the transition stream's tracer, with no subscriber.
    Stream0,
    /// Also the stream, with one subscriber reading after every op.
    Stream1,
}

struct NoopTracer;
impl amrpc_core::Tracer for NoopTracer {}

fn now_ms() -> u64 {
    0
}

impl WorkerBench {
    /// A started worker machine; `noop` also binds [`noop_handlers`] and a logger at `Nothing`.
    fn new(seed: u64, noop: bool) -> Self {
        Self::served(seed, noop, Served::No)
    }

    fn served(seed: u64, noop: bool, served: Served) -> Self {
        let (m, worker) = demo::bench_worker(seed).expect("bench worker");
        if noop {
            m.bind_handlers(noop_handlers()).expect("bind no-op handlers");
            m.set_logger_simple(|msg| eprintln!("{msg}"), LogLevel::Nothing);
        }
        let mut reader = None;
        if !matches!(served, Served::No) {
            if matches!(served, Served::Stream0 | Served::Stream1) {
                let log = Arc::new(TransitionLog::new(1, LOG_CAPACITY, now_ms));
                m.bind_tracer(Arc::new(StreamTracer(log.clone())));
                if matches!(served, Served::Stream1) {
                    log.subscribe();
                    reader = Some((log, 0));
                }
            }
            m.bind_tracer(Arc::new(NoopTracer));
        }
        let ticks = m.tick(EVENT);
        assert_eq!(m.add1(START, None), Outcome::Executed, "add1(Start)");
        WorkerBench {
            m,
            worker,
            ticks,
            reader,
        }
    }

    /// One op: wait for the event, read the value, call the op.
    fn op(&mut self) {
        // the mutations queued by the handlers were drained before the last add1 returned
        let wait = self.m.when_ticks_eq(EVENT, self.ticks + 2, None);
        assert_eq!(wait.try_result(), Some(Ok(())), "Event didn't tick");
        drop(wait);
        self.ticks += 2;
        let op = demo::op_of(self.m.switch(&[&VALUES])).expect("a value is active");
        let res = self.m.add1(CALL_OP, Some(demo::op_args(op)));
        assert_eq!(res, Outcome::Executed, "CallOp: {:?}", self.m.err());
        if let Some((log, next)) = &mut self.reader {
            // what a subscribed session does after a drain: take the new frames
            let batch = log.read(*next, MAX_PER_POLL);
            assert_eq!(batch.dropped, 0, "the reader fell behind");
            let last = batch.records.last().expect("the op's transitions were recorded");
            *next = last.seq + 1;
            black_box(&last.frame);
        }
    }

    /// Check the counters and break the machine ↔ worker cycle.
    fn finish(self, scenario: &str) -> u64 {
        assert!(!self.m.is_err(), "{scenario}: machine error {:?}", self.m.err());
        let n = assert_ok(&self.worker, scenario);
        self.worker.unsubscribe();
        self.m.dispose();
        n
    }
}

/// Upstream's "local" variant: the same loop as direct calls. The worker has no listener
/// machine, it only counts events (upstream spawns a goroutine per op to avoid recursing; here
/// the loop polls the count).
struct PlainBench {
    worker: Arc<BenchWorker>,
    seen: usize,
}

impl PlainBench {
    fn new(seed: u64) -> Self {
        let worker = BenchWorker::new(seed);
        worker.start();
        PlainBench { worker, seen: 0 }
    }

    fn op(&mut self) {
        let n = self.worker.events();
        assert_eq!(n, self.seen + 1, "missed event");
        self.seen = n;
        let v = self.worker.value();
        self.worker.call_op(v);
    }

    fn finish(self, scenario: &str) -> u64 {
        assert_ok(&self.worker, scenario)
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

fn stream(c: &mut Criterion) {
    let cases = [
        ("stream/traced", Served::Traced),
        ("stream/inspector_0", Served::Stream0),
        ("stream/inspector_1", Served::Stream1),
    ];
    for (name, served) in cases {
        let mut counted = WorkerBench::served(7, false, served);
        count_allocs(name, || counted.op());
        counted.finish(name);
    }
    let mut g = c.benchmark_group("stream");
    for (name, served) in cases {
        let mut wb = WorkerBench::served(42, false, served);
        wb.op();
        let short = name.trim_start_matches("stream/");
        timed(|| {
            g.bench_function(short, |b| b.iter(|| wb.op()));
        });
        wb.finish(name);
    }
    g.finish();
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

/// Handler isolation's cost: add + remove of a state with an Enter and a State handler (two
/// handler calls per op), inline vs on a [`amrpc_core::ThreadRunner`] (two thread hand-offs per
/// call). docs/BENCHMARKS.md, "Handler isolation".
fn isolation(c: &mut Criterion) {
    let mut g = c.benchmark_group("isolation");
    let cases: [(&str, Option<Arc<dyn amrpc_core::HandlerRunner>>); 2] = [
        ("inline", None),
        ("thread_runner", Some(Arc::new(amrpc_core::ThreadRunner::default()))),
    ];
    for (name, runner) in cases {
        let m = Machine::new(
            schema([("A", State::new()), ("B", State::new())]),
            Opts {
                handler_runner: runner,
                ..Default::default()
            },
        )
        .unwrap();
        m.bind_handlers(Handlers::new("h").enter("A", |_e| true).state("A", |_e| {}))
            .unwrap();
        timed(|| {
            g.bench_function(name, |b| {
                b.iter(|| {
                    assert_eq!(m.add1("A", None), Outcome::Executed);
                    assert_eq!(m.remove1("A", None), Outcome::Executed);
                })
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = worker_op, worker_op_noop_handlers, stream, worker_op_plain, bench_add1_remove1, getters, isolation
}
criterion_main!(benches);
