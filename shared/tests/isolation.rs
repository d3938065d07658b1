//! Handler isolation ([`ThreadRunner`]): a handler that hangs past the handler timeout cancels
//! its transition at the timeout (`Exception` with `HandlerTimeout`) and the machine goes on
//! with other mutations while it still hangs. The late handler's return value is dropped; what
//! it mutates is applied as any mutation is. With every runner thread held by late handlers a
//! call waits at most the timeout and is canceled without running.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use amrpc_core::{Error, Handlers, Machine, Opts, Outcome, State, ThreadRunner, schema};

const TIMEOUT: Duration = Duration::from_millis(50);

struct Hang {
    /// The handler waits on this (at most 10× the timeout), so the test decides when it ends.
    release: Mutex<Option<mpsc::Receiver<()>>>,
    entered: AtomicUsize,
    finished: AtomicBool,
}

fn machine(threads: usize) -> (Machine, Arc<Hang>, mpsc::Sender<()>, Arc<ThreadRunner>) {
    let runner = Arc::new(ThreadRunner::new("test-handlers", threads));
    let m = Machine::new(
        schema([("Hang", State::new()), ("Other", State::new()), ("Late", State::new())]),
        Opts {
            handler_timeout: Some(TIMEOUT),
            handler_runner: Some(runner.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let hang = Arc::new(Hang {
        release: Mutex::new(Some(rx)),
        entered: AtomicUsize::new(0),
        finished: AtomicBool::new(false),
    });
    let h = hang.clone();
    m.bind_handlers(Handlers::new("hang").enter("Hang", move |e| {
        h.entered.fetch_add(1, Ordering::SeqCst);
        if let Some(rx) = h.release.lock().unwrap().take() {
            let _ = rx.recv_timeout(TIMEOUT * 10);
        }
        // after the timeout: a mutation of its own, and a "yes" that is ignored
        e.machine().add1("Late", None);
        h.finished.store(true, Ordering::SeqCst);
        true
    }))
    .unwrap();
    (m, hang, tx, runner)
}

#[test]
fn a_hung_handler_is_left_behind_at_the_timeout() {
    let (m, hang, release, runner) = machine(4);
    let t0 = std::time::Instant::now();
    let (outcome, why) = m.mutate_why(amrpc_core::MutationType::Add, &["Hang"], None).unwrap();
    eprintln!("the hung call returned after {:?} (timeout {TIMEOUT:?})", t0.elapsed());
    assert_eq!(outcome, Outcome::Canceled);
    assert!(
        !hang.finished.load(Ordering::SeqCst),
        "returned while the handler still hangs"
    );
    assert_eq!(why.map(|w| w.to_string()), Some("HangEnter timed out".to_string()));
    assert!(m.is1("Exception"), "Exception shows the timeout");
    assert!(
        matches!(m.err(), Some(Error::HandlerTimeout(h)) if h == "HangEnter"),
        "{:?}",
        m.err()
    );
    assert!(m.not1("Hang"));
    assert_eq!(runner.late(), 1);
    // the machine goes on meanwhile
    for _ in 0..20 {
        assert_eq!(m.toggle1("Other"), Outcome::Executed);
    }
    assert!(!hang.finished.load(Ordering::SeqCst), "still hanging");
    // let it end: its mutation applies, its "true" changes nothing
    release.send(()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(m.is1("Late") && runner.late() == 0) {
        assert!(std::time::Instant::now() < deadline, "the late handler did not finish");
        std::thread::yield_now();
    }
    assert!(m.not1("Hang"), "the canceled transition stays canceled");
    assert_eq!(hang.entered.load(Ordering::SeqCst), 1);
}

#[test]
fn with_every_thread_held_a_call_is_canceled_without_running() {
    let (m, hang, release, runner) = machine(1);
    assert_eq!(m.add1("Hang", None), Outcome::Canceled);
    assert_eq!(runner.late(), 1);
    // the only thread is held: the next call waits at most the timeout, then gives up unrun
    m.remove1("Exception", None);
    assert_eq!(m.add1("Hang", None), Outcome::Canceled);
    assert_eq!(hang.entered.load(Ordering::SeqCst), 1, "the second call never ran");
    assert!(m.is1("Exception"));
    release.send(()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while runner.late() > 0 {
        assert!(std::time::Instant::now() < deadline, "the late handler did not finish");
        std::thread::yield_now();
    }
    // the thread is free again: a handler in time runs and is accepted
    m.remove1("Exception", None);
    assert_eq!(
        m.add1("Hang", None),
        Outcome::Executed,
        "no release pending: it returns at once"
    );
    assert_eq!(runner.threads(), 1);
}

#[test]
fn isolated_handlers_keep_the_semantics_in_time() {
    // negotiation results, panics and args reach the machine as if inline
    let runner = Arc::new(ThreadRunner::default());
    let m = Machine::new(
        schema([("A", State::new()), ("B", State::new()), ("P", State::new())]),
        Opts {
            handler_runner: Some(runner),
            // a panic captures a backtrace, slow in a debug build: not a timeout here
            handler_timeout: Some(Duration::from_secs(20)),
            ..Default::default()
        },
    )
    .unwrap();
    m.bind_handlers(
        Handlers::new("h")
            .enter("A", |e| {
                matches!(e.args().get("ok"), Some(amrpc_core::Value::Bool(true)))
            })
            .state("B", |e| {
                e.machine()
                    .add1("A", Some([("ok", amrpc_core::Value::Bool(true))].into_iter().collect()));
            })
            .state("P", |_| panic!("boom")),
    )
    .unwrap();
    assert_eq!(m.add1("A", None), Outcome::Canceled, "declined");
    assert_eq!(m.add1("B", None), Outcome::Executed);
    assert!(m.is(&["A", "B"]), "the handler's own mutation ran after it");
    assert_eq!(m.add1("P", None), Outcome::Canceled);
    assert!(m.is1("Exception"), "a panic on the runner thread is an Exception");
    let err = m.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("boom"), "{err}");
}
