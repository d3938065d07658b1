//! Upstream `pkg/machine/machine_test.go` (asyncmachine-go v0.8.0), tests 44–85 of spec §12.1
//! (`TestWhen2` … `TestListHandlers`) plus the two `Example*` functions. Deviations are listed in
//! `docs/upstream-tests/machine_2.md`.

mod common;
use common::*;

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use amrpc_core::compat::{is_time_after, list_handlers};
use amrpc_core::{
    Args, Clock, Ctx, Handlers, LogLevel, Machine, MutationType, NoOpTracer, Opaque, Opts, Outcome, Relation, State,
    Tracer, Value, Wait, WaitError, schema,
};
use futures::executor::block_on;

/// Upper bound for anything upstream waits on without a timeout (keeps a broken port from hanging).
const LIMIT: Duration = Duration::from_secs(5);

/// An in-process arg value (channels, counters), like upstream's untyped `A` entries.
fn opaque<T: Any + Send + Sync>(v: T) -> Value {
    Value::Opaque(Opaque::new(v))
}

/// `<-ch` on a wait, bounded by [`LIMIT`].
#[track_caller]
fn await_within(w: Wait) -> Result<(), WaitError> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(block_on(w));
    });
    rx.recv_timeout(LIMIT).expect("wait did not finish in time")
}

fn sleep_ms(ms: u64) {
    thread::sleep(Duration::from_millis(ms));
}

// ----- examples -----

/// Upstream `ExampleNew`: a machine with four unrelated states, `A` active.
fn example_new() -> Machine {
    let mach = Machine::new(
        schema([
            ("A", State::new()),
            ("B", State::new()),
            ("C", State::new()),
            ("D", State::new()),
        ]),
        Opts::default(),
    )
    .expect("valid schema");
    mach.set(&["A"], None);
    // machine mach ready
    mach
}

/// Upstream `ExampleNewCommon`: the same machine through `new_common` (id, verified state order,
/// handlers bound in one call).
fn example_new_common() -> Machine {
    let handlers = Handlers::new("ExampleHandlers").with_exception_handler();
    let mach = Machine::new_common(
        "example",
        schema([
            ("A", State::new()),
            ("B", State::new()),
            ("C", State::new()),
            ("D", State::new()),
        ]),
        &["A", "B", "C", "D", "Exception"],
        Some(handlers),
        None,
        Opts::default(),
    )
    .expect("valid schema");
    mach.set(&["A"], None);
    // machine mach ready
    mach
}

#[test]
fn test_example_new() {
    let m = example_new();
    assert_states(&m, &["A"]);
    dispose(&m);
}

#[test]
fn test_example_new_common() {
    let m = example_new_common();
    assert_eq!(&*m.id(), "example");
    assert!(m.states_verified());
    assert_eq!(m.handler_sets(), 1);
    assert_states(&m, &["A"]);
    dispose(&m);
}

// ----- 44–49: When / WhenNot -----

/// Spawn `n` threads that each wait on `make(&m)` and report back when released.
fn spawn_waiters(m: &Machine, n: usize, make: fn(&Machine) -> Wait) -> Receiver<Result<(), WaitError>> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (pass_tx, pass_rx) = mpsc::channel();
    for _ in 0..n {
        let m = m.clone();
        let ready = ready_tx.clone();
        let pass = pass_tx.clone();
        thread::spawn(move || {
            let w = make(&m);
            ready.send(()).unwrap();
            let _ = pass.send(block_on(w));
        });
    }
    for _ in 0..n {
        ready_rx.recv_timeout(LIMIT).expect("waiter ready");
    }
    pass_rx
}

#[test]
fn test_when2() {
    let m = new_no_rels(None);

    let pass = spawn_waiters(&m, 2, |m| m.when(&["A", "B"], None));
    m.add(&["A", "B"], None);

    for _ in 0..2 {
        assert_eq!(pass.recv_timeout(LIMIT).expect("waiter released"), Ok(()));
    }

    dispose(&m);
}

#[test]
fn test_when_active() {
    let m = new_no_rels(Some(&["A"]));

    let w = m.when(&["A"], None);
    assert!(w.is_ready(), "already active: returned closed");
    assert_eq!(block_on(w), Ok(()));

    assert_states(&m, &["A"]);
    dispose(&m);
}

#[test]
fn test_when_dups() {
    let m = new_no_rels(None);

    // kept alive and never awaited, like upstream's unread channels
    let w1 = m.when(&["A"], None);
    let w2 = m.when(&["A", "B"], None);
    let w3 = m.when(&["A", "C"], None);

    // completing one binding while the others on A are being checked must be safe
    m.set(&["A"], None);

    assert!(w1.is_ready());
    assert!(!w2.is_ready());
    assert!(!w3.is_ready());
    dispose(&m);
}

#[test]
fn test_when_not() {
    let m = new_no_rels(Some(&["B", "C"]));
    // upstream's goroutine sleeps 10 ms before each remove so the test's WhenNot is bound
    // first; here it waits for that instead
    let (bound_tx, bound) = mpsc::channel::<()>();
    let bound = Arc::new(Mutex::new(bound));
    let h = Handlers::new("TestWhenNotHandlers").state("A", move |e| {
        let m = e.machine().clone();
        let bound = bound.clone();
        thread::spawn(move || {
            bound.lock().unwrap().recv().unwrap();
            m.remove1("B", None);
            m.remove1("C", None);
        });
    });
    m.bind_handlers(h).unwrap();

    m.add(&["A"], None);
    let w = m.when_not(&["B", "C"], None);
    assert!(!w.is_ready());
    bound_tx.send(()).unwrap();
    assert_eq!(await_within(w), Ok(()));

    assert_states(&m, &["A"]);
    assert_no_exception(&m);
    dispose(&m);
}

#[test]
fn test_when_not2() {
    let m = new_no_rels(Some(&["A", "B"]));

    let pass = spawn_waiters(&m, 2, |m| m.when_not(&["A", "B"], None));
    m.remove(&["A", "B"], None);

    for _ in 0..2 {
        assert_eq!(pass.recv_timeout(LIMIT).expect("waiter released"), Ok(()));
    }

    dispose(&m);
}

#[test]
fn test_when_not_active() {
    let m = new_no_rels(Some(&["A"]));

    let w = m.when_not(&["B"], None);
    assert!(w.is_ready(), "already inactive: returned closed");
    assert_eq!(block_on(w), Ok(()));

    assert_states(&m, &["A"]);
    dispose(&m);
}

// ----- 50–51: handler panics -----

#[test]
fn test_partial_negotiation_panic() {
    let m = new_no_rels(Some(&["A"]));
    let log = capture_log(&m);
    let h = Handlers::new("TestPartialNegotiationPanicHandlers")
        .with_exception_handler()
        .enter("B", |_| panic!("BEnter panic"));
    m.bind_handlers(h).unwrap();

    assert_eq!(m.add(&["B"], None), Outcome::Canceled);

    assert_states(&m, &["A", "Exception"]);
    let log = log.lock().unwrap();
    assert!(
        log.contains("[cancel] (B A) by recover"),
        "log contains the target states and handler:\n{log}"
    );
    drop(log);
    dispose(&m);
}

#[test]
fn test_partial_final_panic() {
    let m = new_no_rels(None);
    let log = capture_log(&m);
    let h = Handlers::new("TestPartialFinalPanicHandlers")
        .with_exception_handler()
        .state("B", |_| panic!("BState panic"));
    m.bind_handlers(h).unwrap();

    m.add(&["A", "B", "C"], None);

    assert_states(&m, &["A", "Exception"]);
    let log = log.lock().unwrap();
    assert!(
        log.contains("[error:add] A B C (BState"),
        "log contains the target states and handler:\n{log}"
    );
    // the trace logged after the error names the panicking handler (Go: its method's type path)
    assert!(
        log.contains("(BState panic)\nhandler BState"),
        "log contains the stack trace:\n{log}"
    );
    assert!(
        log.contains("[cancel] (A B C) by recover"),
        "log contains the target states and handler:\n{log}"
    );
    drop(log);
    dispose(&m);
}

// ----- 52–53: state contexts, queue inspection -----

#[test]
fn test_state_ctx() {
    let m = new_no_rels(None);
    // what the waiter saw once signalled: active states and whether the state ctx was canceled
    let (cb_tx, cb_rx) = mpsc::channel::<(Vec<String>, bool)>();
    let h = Handlers::new("TestStateCtxHandlers")
        .with_exception_handler()
        .state("A", move |e| {
            let step = e.args().get("stepCh").cloned().expect("stepCh arg");
            let state_ctx = e.machine().new_state_ctx("A");
            let m = e.machine().clone();
            let cb = cb_tx.clone();
            thread::spawn(move || {
                let step = step.downcast_ref::<Mutex<Receiver<bool>>>().expect("stepCh type");
                let _ = step.lock().unwrap().recv();
                let _ = cb.send((m.active_states(), state_ctx.is_canceled()));
            });
        });
    m.bind_handlers(h).unwrap();

    let (step_tx, step_rx) = mpsc::channel::<bool>();
    m.add(&["A"], Some(Args::new().with("stepCh", opaque(Mutex::new(step_rx)))));
    m.remove(&["A"], None);
    step_tx.send(true).unwrap();
    let (active, canceled) = cb_rx.recv_timeout(LIMIT).expect("waiter callback");

    assert!(active.is_empty(), "waiter sees no active states: {active:?}");
    assert!(canceled, "state context should be canceled");
    assert_states(&m, &[]);
    dispose(&m);
}

#[test]
fn test_queue_checkable() {
    let m = new_no_rels(None);
    let asserts_count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(None));
    let (count, seen2) = (asserts_count.clone(), seen.clone());
    let h = Handlers::new("TestQueueCheckableHandlers")
        .with_exception_handler()
        .state("A", move |e| {
            let m = e.machine();
            m.add(&["B"], None);
            m.add(&["C"], None);
            m.add(&["D"], None);
            let len = m.queue_len();
            count.fetch_add(1, Ordering::SeqCst);
            let c = m.is_queued(MutationType::Add, &["C"], false, false, 0);
            count.fetch_add(1, Ordering::SeqCst);
            let a = m.is_queued(MutationType::Add, &["A"], false, false, 0);
            count.fetch_add(1, Ordering::SeqCst);
            *seen2.lock().unwrap() = Some((len, m.queue().len(), c, a));
        });
    m.bind_handlers(h).unwrap();

    m.add(&["A"], Some(Args::new().with("t", "t")));

    let (len, queue, c, a) = seen.lock().unwrap().take().expect("AState ran");
    assert_eq!(len, 3, "queue should have 3 mutations scheduled");
    assert_eq!(queue, 3, "queue should have 3 mutations scheduled");
    assert_eq!(c, Some(1), "C should be queued");
    assert_eq!(a, None, "A should NOT be queued");
    assert_eq!(asserts_count.load(Ordering::SeqCst), 3, "asserts executed");
    assert_no_exception(&m);
    dispose(&m);
}

// ----- 54–55: auto, time -----

#[test]
fn test_partial_auto() {
    let m = new_no_rels(None);
    edit_schema(&m, |s| {
        s.insert("C".into(), State::new().auto().require(&["B"]));
        s.insert("D".into(), State::new().auto().require(&["B"]));
    });
    let log = capture_log(&m);

    m.add(&["A"], None);

    assert_states(&m, &["A"]);
    let log = log.lock().unwrap();
    assert!(
        log.contains("[cancel:reject] C D") || log.contains("[cancel:reject] D C"),
        "log rejects both auto states:\n{log}"
    );
    drop(log);
    dispose(&m);
}

/// The §2 clock sequence shared by `TestTime` and `TestClock` (B is Multi).
fn clock_sequence(m: &Machine) {
    const ABCD: &[&str] = &["A", "B", "C", "D"];

    m.add(&["A", "B"], None);
    assert_states(m, &["A", "B"]);
    assert_time(m, ABCD, &[1, 1, 0, 0]);

    m.add(&["A", "B"], None);
    assert_states(m, &["A", "B"]);
    assert_time(m, ABCD, &[1, 3, 0, 0]);

    m.add(&["A", "B", "C"], None);
    assert_states(m, &["A", "B", "C"]);
    assert_time(m, ABCD, &[1, 5, 1, 0]);

    m.set(&["D"], None);
    assert_states(m, &["D"]);
    assert_time(m, ABCD, &[2, 6, 2, 1]);

    m.add(&["D", "C"], None);
    assert_states(m, &["D", "C"]);
    assert_time(m, ABCD, &[2, 6, 3, 1]);

    m.remove(&["B", "C"], None);
    assert_states(m, &["D"]);
    assert_time(m, ABCD, &[2, 6, 4, 1]);

    m.add(&["A", "B"], None);
    assert_states(m, &["D", "A", "B"]);
    assert_time(m, ABCD, &[3, 7, 4, 1]);
}

#[test]
fn test_time() {
    let m = new_no_rels(None);
    edit_schema(&m, |s| {
        s.insert("B".into(), State::new().multi());
    });

    clock_sequence(&m);

    let order: &[&str] = &["A", "B", "C", "D"];
    let before = m.time(Some(order));
    m.add(&["C"], None);
    let now = m.time(Some(order));

    assert_states(&m, &["A", "B", "D", "C"]);
    assert_time(&m, order, &[3, 7, 5, 1]);
    assert!(is_time_after(&now, &before));
    assert!(!is_time_after(&before, &now));
    dispose(&m);
}

// ----- 56–58: waits with ctx, args, time -----

#[test]
fn test_when_ctx() {
    let m = new_no_rels(Some(&["A", "B"]));

    let ctx = Ctx::new();
    let when_time = m.when_time(&["A", "B"], &[3, 3], Some(&ctx));
    let when_args = m.when_args("B", Args::new().with("foo", "bar"), Some(&ctx));
    let when = m.when1("C", Some(&ctx));

    // one binding in each of the When, WhenTime and WhenArgs indexes
    assert_eq!(m.wait_bindings(), 3);
    assert!(!when.is_ready() && !when_args.is_ready() && !when_time.is_ready());

    // upstream cancels from a goroutine after 10 ms; here from another thread, and the test
    // wakes on the cancel itself
    let cancel = ctx.clone();
    let t = thread::spawn(move || cancel.cancel());
    block_on(ctx.canceled());
    // upstream's point: canceling the ctx alone unbinds every wait (none awaited or dropped yet)
    assert_eq!(m.wait_bindings(), 0, "the cancel unbound the waits");
    t.join().unwrap();

    // the ctx ended them, not a match
    for w in [&when, &when_args, &when_time] {
        assert_eq!(
            w.try_result(),
            Some(Err(WaitError::Canceled)),
            "when shouldnt be resolved"
        );
    }
    for w in [when, when_args, when_time] {
        assert_eq!(block_on(w), Err(WaitError::Canceled));
    }
    assert_eq!(m.wait_bindings(), 0);
    dispose(&m);
}

#[test]
fn test_when_args() {
    let m = new_rels(None);

    let w = m.when_args("B", Args::new().with("foo", "bar"), None);

    // incorrect args
    m.add1("B", Some(Args::new().with("foo", "foo")));
    assert!(!w.is_ready(), "when shouldnt be resolved");

    // correct args (B is Multi, so it re-enters)
    m.add1("B", Some(Args::new().with("foo", "bar")));
    assert!(w.is_ready(), "when should be resolved");
    assert_eq!(w.try_result(), Some(Ok(())));

    dispose(&m);
}

#[test]
fn test_when_time() {
    let m = new_no_rels(Some(&["A", "B"]));

    // (A:1 B:1)
    let w1 = m.when_time(&["A", "B"], &[5, 2], None);
    let _w2 = m.when_time(&["A", "B"], &[7, 2], None);
    let w3 = m.when_time(&["A", "B"], &[9, 2], None);

    // tick some, but not enough
    m.remove(&["A", "B"], None);
    m.add(&["A", "B"], None);
    // (A:3 B:3) not yet
    assert!(!w1.is_ready(), "when shouldnt be resolved");

    m.remove1("A", None);
    m.add1("A", None);
    // (A:5 B:3) OK
    assert!(w1.is_ready(), "when should be resolved");

    m.remove1("A", None);
    m.add1("A", None);
    m.remove1("A", None);
    m.add1("A", None);

    assert_eq!(await_within(w3), Ok(()));
    dispose(&m);
}

// ----- 59–63: construction, tracers, skipped upstream -----

#[test]
fn test_new_common() {
    let s = schema([("A", State::new()), ("Exception", State::new())]);
    let names: Vec<String> = s.keys().cloned().collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let h = Handlers::new("TestNewCommonHandlers")
        .with_exception_handler()
        .state("A", |_| {});
    let opts = Opts {
        ctx: Some(Ctx::new()),
        ..Default::default()
    };

    let m = Machine::new_common("foo", s, &names, Some(h), None, opts);

    let m = m.expect("no error");
    assert_eq!(m.handler_sets(), 1);
    dispose(&m);
}

#[test]
fn test_tracers() {
    let tracer: Arc<dyn Tracer> = Arc::new(NoOpTracer);
    let m = Machine::new(
        schema([("A", State::new())]),
        Opts {
            tracers: vec![tracer],
            ..Default::default()
        },
    )
    .unwrap();
    let _ = m.bind_handlers(
        Handlers::new("TestTracersHandlers")
            .with_exception_handler()
            .state("A", |_| {}),
    );

    assert_eq!(m.tracers().len(), 1);
    assert!(!m.tracers()[0].inheritable());
    assert_eq!(m.add1("A", None), Outcome::Executed);

    dispose(&m);
}

/// Skipped upstream (`t.Skip()`); asserts the documented limit (spec §3.2 item 1): a mutation
/// made while the queue holds `QueueLimit` items is `Canceled` and not queued.
#[test]
fn test_queue_limit() {
    let m = Machine::new(
        no_rels_schema(),
        Opts {
            queue_limit: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    let results = Arc::new(Mutex::new(Vec::new()));
    let r = results.clone();
    let h = Handlers::new("TestQueueLimitHandlers").state("A", move |e| {
        let m = e.machine();
        let mut r = r.lock().unwrap();
        for s in ["B", "C", "D"] {
            r.push((m.add1(s, None), m.queue_len()));
        }
    });
    m.bind_handlers(h).unwrap();

    assert_eq!(m.add1("A", None), Outcome::Executed);

    assert_eq!(
        *results.lock().unwrap(),
        [(Outcome::Queued(3), 1), (Outcome::Queued(4), 2), (Outcome::Canceled, 2)]
    );
    assert_states(&m, &["A", "B", "C"]);
    dispose(&m);
}

/// Skipped upstream (`t.Skip()`); asserts the documented submachine wiring (spec §8.4, §9):
/// `Opts::parent` sets the parent id and offers the child to the parent's inheritable tracers.
#[test]
fn test_submachines() {
    #[derive(Default)]
    struct Inheritable {
        seen: Mutex<Vec<(String, String)>>,
    }
    impl Tracer for Inheritable {
        fn new_submachine(&self, parent: &Machine, m: &Machine) {
            self.seen
                .lock()
                .unwrap()
                .push((parent.id().to_string(), m.id().to_string()));
        }
        fn inheritable(&self) -> bool {
            true
        }
    }
    #[derive(Default)]
    struct NotInheritable {
        calls: AtomicUsize,
    }
    impl Tracer for NotInheritable {
        fn new_submachine(&self, _parent: &Machine, _m: &Machine) {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
    }

    let parent = new_no_rels(None);
    let inheritable = Arc::new(Inheritable::default());
    let not_inheritable = Arc::new(NotInheritable::default());
    parent.bind_tracer(inheritable.clone());
    parent.bind_tracer(not_inheritable.clone());

    let child = Machine::new(
        no_rels_schema(),
        Opts {
            parent: Some(parent.clone()),
            ..Default::default()
        },
    )
    .unwrap();

    assert_eq!(child.parent_id(), Some(&*parent.id()));
    assert_eq!(
        *inheritable.seen.lock().unwrap(),
        [(parent.id().to_string(), child.id().to_string())]
    );
    assert_eq!(not_inheritable.calls.load(Ordering::SeqCst), 0);
    assert!(child.tracers().is_empty(), "tracers are not copied to the child");

    let orphan = Machine::new(
        no_rels_schema(),
        Opts {
            parent_id: Some("foo".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(orphan.parent_id(), Some("foo"));

    dispose(&child);
    dispose(&orphan);
    dispose(&parent);
}

/// Skipped upstream (`t.Skip()`); asserts the documented Eval semantics (spec §3.6): the function
/// runs on the queue (from a handler: after the current transition), empty source and disposed
/// machines are refused.
#[test]
fn test_eval() {
    let m = new_no_rels(None);

    // outside a drain it runs right away
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let w = m.eval("test", move || r.store(true, Ordering::SeqCst));
    assert!(w.is_ready());
    assert_eq!(block_on(w), Ok(()));
    assert!(ran.load(Ordering::SeqCst));

    // from a handler it is queued and runs once the handler's transition ended
    let order = Arc::new(Mutex::new(Vec::new()));
    let pending: Arc<Mutex<Option<Wait>>> = Arc::new(Mutex::new(None));
    let (o, p) = (order.clone(), pending.clone());
    let h = Handlers::new("TestEvalHandlers").state("A", move |e| {
        o.lock().unwrap().push("AState:start");
        let o2 = o.clone();
        let w = e.machine().eval("AState", move || o2.lock().unwrap().push("eval"));
        *p.lock().unwrap() = Some(w);
        o.lock().unwrap().push("AState:end");
    });
    m.bind_handlers(h).unwrap();
    assert_eq!(m.add1("A", None), Outcome::Executed);
    let w = pending.lock().unwrap().take().expect("AState ran");
    assert_eq!(w.try_result(), Some(Ok(())));
    assert_eq!(*order.lock().unwrap(), ["AState:start", "AState:end", "eval"]);

    // empty source (upstream panics)
    assert!(matches!(block_on(m.eval("", || {})), Err(WaitError::InvalidArgs(_))));

    dispose(&m);
    assert_eq!(block_on(m.eval("late", || {})), Err(WaitError::Disposed));
}

// ----- 64–69: schema changes and getters -----

#[test]
fn test_set_states() {
    let m = new_no_rels(Some(&["A", "C"]));

    let mut s = m.get_struct();
    s.insert("A".into(), State::new().multi());
    s.insert("B".into(), State::new().remove(&["C"]));
    s.insert("D".into(), State::new().add(&["E"]));
    s.insert("E".into(), State::new());
    m.set_struct(s, &["A", "B", "C", "D", "E"]).expect("set_struct");

    m.set(&["A", "B", "D"], None);

    assert_states(&m, &["A", "B", "D", "E"]);
    dispose(&m);
}

#[test]
fn test_is() {
    let m = new_no_rels(Some(&["A", "B"]));

    assert!(m.is(&["A", "B"]), "A B should be active");
    assert!(!m.is(&["A", "B", "C"]), "A B C shouldnt be active");

    dispose(&m);
}

#[test]
fn test_not() {
    let m = new_no_rels(Some(&["A", "B"]));

    assert!(!m.not(&["A", "B"]), "A B should be active");
    assert!(!m.not(&["A", "B", "C"]), "A B C is partially active");
    assert!(m.not1("D"), "D is inactive");

    dispose(&m);
}

#[test]
fn test_any() {
    let m = new_no_rels(Some(&["A", "B"]));

    assert!(m.any(&[&["A", "B"], &["C"]]), "A B should be active");
    assert!(m.any(&[&["A", "B", "C"], &["A"]]), "A B C is partially active");

    dispose(&m);
}

#[test]
fn test_clock() {
    let m = new_no_rels(None);
    let _ = m.verify_states(&["A", "B", "C", "D", "Exception"]);
    edit_schema(&m, |s| {
        s.insert("B".into(), State::new().multi());
    });

    clock_sequence(&m);

    let clock = |pairs: &[(&str, u64)]| -> Clock { pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect() };
    assert_eq!(
        m.clock(None),
        clock(&[("A", 3), ("B", 7), ("C", 4), ("D", 1), ("Exception", 0)])
    );
    assert_eq!(m.clock(Some(&["A", "B"])), clock(&[("A", 3), ("B", 7)]));
    assert_eq!(m.tick("A"), 3);

    dispose(&m);
}

#[test]
fn test_inspect() {
    let m = new_rels(Some(&["A", "C"]));
    // (A:1 C:1)[B:0 D:0 Exception:0]
    let names: &[&str] = &["A", "B", "C", "D", "Exception"];
    let expected = "
        A:
          State:   true 1
          Auto:    true
          Require: C

        B:
          State:   false 0
          Multi:   true
          Add:     C

        C:
          State:   true 1
          After:   D

        D:
          State:   false 0
          Add:     C B

        Exception:
          State:   false 0
          Multi:   true
        ";
    assert_string(&m, expected, Some(names));

    // (A:1 C:1)[B:0 D:0 Exception:0]
    m.remove(&["C"], None);
    // ()[A:2 B:0 C:2 D:0 Exception:0]
    m.add(&["B"], None);
    // (A:3 B:1 C:3)[D:0 Exception:0]
    m.add(&["D"], None);
    // (A:3 B:1 C:3 D:1)[Exception:0]
    let expected = "
        Exception:
          State:   false 0
          Multi:   true

        A:
          State:   true 3
          Auto:    true
          Require: C

        B:
          State:   true 1
          Multi:   true
          Add:     C

        C:
          State:   true 3
          After:   D

        D:
          State:   true 1
          Add:     C B
        ";
    m.verify_states(&["Exception", "A", "B", "C", "D"])
        .expect("verify_states");
    assert_string(&m, expected, None);

    dispose(&m);
}

// ----- 70–74 -----

#[test]
fn test_nil_ctx() {
    // no parent context (upstream: a nil ctx)
    let m = Machine::new(
        schema([("A", State::new())]),
        Opts {
            ctx: None,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(m.id().len() > 5);

    dispose(&m);
}

#[test]
fn test_when_queue_ends() {
    let m = new_no_rels(None);
    m.verify_states(&["A", "B", "C", "D", "Exception"])
        .expect("verify_states");
    let h = Handlers::new("TestWhenQueueEndsHandlers")
        .with_exception_handler()
        .state("A", |e| {
            let ready_mut = e.args().get("readyMut").and_then(|v| v.downcast_ref::<Sender<()>>());
            let ready_go = e
                .args()
                .get("readyGo")
                .and_then(|v| v.downcast_ref::<Mutex<Receiver<()>>>());
            ready_mut.expect("readyMut arg").send(()).unwrap();
            let _ = ready_go.expect("readyGo arg").lock().unwrap().recv();
            e.machine().add1("B", None);
        });
    m.bind_handlers(h).unwrap();

    let (mut_tx, mut_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (queue_ends_tx, queue_ends_rx) = mpsc::channel::<(bool, Wait)>();
    let m2 = m.clone();
    thread::spawn(move || {
        if mut_rx.recv().is_err() {
            return;
        }
        let in_transition = m2.transition_running();
        let w = m2.when_queue_ends(Some(&Ctx::new()));
        let _ = queue_ends_tx.send((in_transition, w));
        let _ = go_tx.send(());
    });
    m.add1(
        "A",
        Some(
            Args::new()
                .with("readyMut", opaque(mut_tx))
                .with("readyGo", opaque(Mutex::new(go_rx))),
        ),
    );

    let (in_transition, queue_ends) = queue_ends_rx.recv_timeout(LIMIT).expect("waiter ran");
    assert!(in_transition, "Machine should be during a transition");
    // confirm the queue wait is closed
    assert!(queue_ends.is_ready());
    assert_eq!(block_on(queue_ends), Ok(()));

    dispose(&m);
}

#[test]
fn test_get_relations_between() {
    let m = new_no_rels(None);
    edit_schema(&m, |s| {
        s.insert("A".into(), State::new().add(&["B", "C"]).after(&["B"]));
        s.insert("B".into(), State::new().remove(&["C"]).add(&["A"]));
        s.insert("C".into(), State::new().after(&["D"]));
        s.insert("D".into(), State::new().require(&["A"]));
    });

    let rels = |from: &str, to: &str| m.get_relations_between(from, to).expect("known states");

    let r = rels("A", "B");
    assert_eq!(r[0], Relation::Add);
    assert_eq!(r[1], Relation::After);
    assert_eq!(rels("B", "C")[0], Relation::Remove);
    assert_eq!(rels("C", "D")[0], Relation::After);
    assert_eq!(rels("D", "A")[0], Relation::Require);

    assert!(m.get_relations_between("Unknown1", "A").is_err());
    assert!(m.get_relations_between("A", "Unknown1").is_err());

    dispose(&m);
}

#[test]
fn test_string() {
    let m = new_no_rels(Some(&["A", "B"]));
    let _ = m.verify_states(&["A", "B", "C", "D", "Exception"]);

    assert_eq!(m.string(), "(A:1 B:1)");
    assert_eq!(m.string_all(), "(A:1 B:1) [C:0 D:0 Exception:0]");

    dispose(&m);
}

#[test]
fn test_nested_mutation() {
    let m = new_no_rels(Some(&["B"]));
    let lens = Arc::new(Mutex::new(Vec::new()));
    let l = lens.clone();
    let h = Handlers::new("TestNestedMutationHandlers")
        .with_exception_handler()
        .state("A", move |e| {
            let m = e.machine();
            let mut l = l.lock().unwrap();
            m.add1("B", None);
            m.add1("B", None);
            m.add1("B", None);
            l.push(m.queue_len());
            m.remove1("B", None);
            l.push(m.queue_len());
            m.remove1("B", None);
            l.push(m.queue_len());
        });
    m.bind_handlers(h).unwrap();

    m.add1("A", Some(Args::new().with("t", "t")));

    assert_eq!(*lens.lock().unwrap(), [1, 2, 2], "queue lengths inside AState");
    assert_states(&m, &["A"]);
    dispose(&m);
}

// ----- 75–79 -----

#[test]
fn test_verify_states() {
    let m = new_no_rels(Some(&["A", "B"]));

    assert!(m.verify_states(&["A", "A", "B", "Err"]).is_err());
    assert!(m.verify_states(&["A", "A"]).is_err());
    assert!(m.verify_states(&["A", "B"]).is_err());

    dispose(&m);
}

#[test]
fn test_has() {
    let m = new_no_rels(None);

    assert!(!m.has(&["A", "Err"]));

    assert!(m.has(&["A", "A", "B"]));
    let names = m.state_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert!(m.has(&names));
    assert!(m.has(&["A", "B"]));

    dispose(&m);
}

#[test]
fn test_logger() {
    let m = new_no_rels(None);

    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let l = lines.clone();
    m.set_logger_simple(
        move |line| l.lock().unwrap().push(line.to_string()),
        LogLevel::Everything,
    );
    assert!(m.get_logger().is_some());
    // upstream: SetLoggerSimple(nil, …) panics; a Rust closure can't be nil, so there is no case
    // coverage
    m.add1("A", None);
    assert!(!lines.lock().unwrap().is_empty());
    m.set_logger(None);
    assert!(m.get_logger().is_none());
    m.add1("A", None);

    dispose(&m);
}

#[test]
fn test_is_clock() {
    let m = new_no_rels(None);
    let c_a = m.clock(Some(&["A"]));
    let c_all = m.clock(None);

    m.add(&["A", "B"], None);

    assert!(!m.is_clock(&c_all));
    assert!(!m.is_clock(&c_a));

    dispose(&m);
}

#[test]
fn test_is_time() {
    let m = new_no_rels(None);
    let t_a = m.time(Some(&["A"]));
    let t_all = m.time(None);

    m.add(&["A", "B"], None);

    assert!(!m.is_time(&t_a, Some(&["A"])));
    assert!(!m.is_time(&t_all, None));

    dispose(&m);
}

// ----- 80–85 -----

/// Skipped upstream (`t.Skip()`); asserts the documented global handler (spec §4.7, §5.1):
/// `AnyAny` runs once per transition, also for transitions already canceled, and can cancel.
#[test]
fn test_any_any_handler() {
    let m = new_no_rels(None);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let h = Handlers::new("TestAnyAnyHandlers")
        .any_any(move |e| {
            c.fetch_add(1, Ordering::SeqCst);
            e.args().get("cancel").is_none()
        })
        .enter("D", |_| false);
    m.bind_handlers(h).unwrap();

    assert_eq!(m.add1("A", None), Outcome::Executed);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // canceled by DEnter, AnyAny still runs
    assert_eq!(m.add1("D", None), Outcome::Canceled);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // AnyAny cancels
    assert_eq!(m.add1("B", Some(Args::new().with("cancel", true))), Outcome::Canceled);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_states(&m, &["A"]);

    dispose(&m);
}

#[test]
fn test_export_import() {
    let m1 = new_no_rels(Some(&["A"]));
    let names = m1.state_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    m1.verify_states(&names).expect("verify_states");

    // change clocks
    m1.remove1("B", None);
    m1.add1("A", None);
    m1.add1("B", None);
    m1.add1("C", None);
    let m1_str = m1.string();
    assert_eq!(m1_str, "(A:1 B:1 C:1)");

    let serial = m1.export().expect("verified states export");

    let m2 = new_no_rels(None);
    m2.import(&serial).expect("import");

    assert!(m2.states_verified(), "imported states have deterministic order");
    assert_eq!(m1.id(), m2.id(), "imported machine ID should be the same");
    assert_eq!(m1_str, m2.string(), "imported machine clock should be the same");

    dispose(&m1);
    dispose(&m2);
}

#[test]
fn test_handler_timeout() {
    let m = Machine::new(
        no_rels_schema(),
        Opts {
            handler_timeout: Some(Duration::from_millis(450)),
            ..Default::default()
        },
    )
    .unwrap();
    let h = Handlers::new("TestHandlerTimeoutHandlers")
        .with_exception_handler()
        // wait longer than the timeout
        .state("A", |_| sleep_ms(500));
    m.bind_handlers(h).unwrap();

    let res = m.add1("A", None);

    assert_eq!(res, Outcome::Canceled);
    dispose(&m);
}

#[test]
fn test_bind_tracer() {
    struct TestBindTracerTracer;
    impl Tracer for TestBindTracerTracer {}

    let m = new_no_rels(None);
    let tracer: Arc<dyn Tracer> = Arc::new(TestBindTracerTracer);

    m.bind_tracer(tracer.clone());
    let removed = m.detach_tracer(&tracer);

    assert!(m.tracers().is_empty());
    assert!(removed);
    dispose(&m);
}

#[test]
fn test_unbind_handlers() {
    let m = new_no_rels(None);
    let h = Handlers::new("TestUnbindHandlersHandlers").with_exception_handler();

    let id = m.bind_handlers(h).expect("bind");
    m.detach_handlers(id).expect("detach");

    assert_eq!(m.handler_sets(), 0);
    dispose(&m);
}

#[test]
fn test_list_handlers() {
    let states: &[&str] = &["A", "B", "C"];
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let want = sorted(vec![
        "AEnter".into(),
        "AState".into(),
        "AnyB".into(),
        amrpc_core::compat::HANDLER_GLOBAL.into(),
    ]);

    // handlers by name (upstream: methods)
    let h1 = Handlers::new("TestListHandlersHandlers")
        .on("AEnter", |_| false)
        .on_final("AnyAny", |_| {})
        .on_final("AState", |_| {})
        .on_final("AnyB", |_| {})
        .on_final("Unrelated", |_| {});
    let names = list_handlers(&h1, states).expect("no missing states");
    assert_eq!(names.len(), 4);
    assert_eq!(sorted(names), want);

    // the typed builder (upstream: func fields of an anonymous struct)
    let h2 = Handlers::new("anon")
        .enter("A", |_| false)
        .state("A", |_| {})
        .any_any(|_| true)
        .any_enter("B", |_| true)
        .on_final("Unrelated", |_| {});
    let names = list_handlers(&h2, states).expect("no missing states");
    assert_eq!(names.len(), 4);
    assert_eq!(sorted(names), want);

    // handlers for states that don't exist
    let h3 = Handlers::new("anon")
        .enter("Z", |_| false)
        .state("Z", |_| {})
        .any_any(|_| true)
        .any_enter("Y", |_| true)
        .on_final("Unrelated", |_| {});
    let err = list_handlers(&h3, states).expect_err("missing states").to_string();
    assert!(err.contains("missing states: Z from handler ZEnter"), "{err}");
    assert!(err.contains("missing states: Z from handler ZState"), "{err}");
}
