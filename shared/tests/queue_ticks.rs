//! Queue ticks (upstream v0.19's `QueueTick`, `Result` as a queue tick, `WhenQueue`) on a local
//! machine: numbering, duplicates, and `when_queue` completing right after the mutation it names.

use std::sync::{Arc, Mutex};

use amrpc_core::{Handlers, Machine, Opts, Outcome, State, WaitError, schema};

fn machine() -> Machine {
    let m = Machine::new(
        schema([
            ("A", State::new()),
            ("B", State::new()),
            ("C", State::new().multi()),
            ("D", State::new().remove(&["B"])),
        ]),
        Opts::default(),
    )
    .unwrap();
    m.verify_states(&["A", "B", "C", "D", "Exception"]).unwrap();
    m
}

/// Upstream's numbering: the queue tick starts at 1; a mutation queued behind a running one gets
/// `tick + pending` (the first one ever queued: 2 + …), and the tick grows as each leaves the queue.
#[test]
fn numbering_follows_upstream() {
    let m = machine();
    assert_eq!(m.queue_tick(), 1);
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    m.bind_handlers(Handlers::new("h").state("A", move |e| {
        let m = e.machine();
        let b = m.add1("B", None);
        let c = m.add1("C", None);
        g.lock().unwrap().push((b, c, m.queue_tick()));
    }))
    .unwrap();
    // A itself takes tick 2 and leaves the queue (tick 1 → 2) before its handler runs
    assert_eq!(m.add1("A", None), Outcome::Executed);
    assert_eq!(*got.lock().unwrap(), [(Outcome::Queued(3), Outcome::Queued(4), 2)]);
    assert_eq!(m.queue_tick(), 4);
    // nothing queued: a mutation runs at once and still moves the tick
    assert_eq!(m.add1("D", None), Outcome::Executed);
    assert_eq!(m.queue_tick(), 5);
    assert!(m.when_queue(5, None).is_ready(), "processed");
    assert!(!m.when_queue(6, None).is_ready(), "not yet queued");
    m.dispose();
}

/// A duplicate merged into a queued twin (upstream's detection) gets the twin's tick.
#[test]
fn a_duplicate_gets_its_twins_tick() {
    let m = machine();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    m.bind_handlers(Handlers::new("h").state("A", move |e| {
        let m = e.machine();
        let first = m.add1("B", None);
        let twin = m.add1("B", None);
        g.lock().unwrap().push((first, twin, m.queue_len()));
    }))
    .unwrap();
    m.add1("A", None);
    assert_eq!(*got.lock().unwrap(), [(Outcome::Queued(3), Outcome::Queued(3), 1)]);
    m.dispose();
}

/// `when_queue(t)` completes right after the mutation with tick `t` ran, handlers included, and
/// not before: checked from inside the handlers of the mutations around it.
#[test]
fn when_queue_completes_right_after_its_mutation() {
    let m = machine();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let waits = Arc::new(Mutex::new(Vec::new()));
    let (l, w) = (log.clone(), waits.clone());
    let (l2, w2) = (log.clone(), waits.clone());
    let l3 = log.clone();
    m.bind_handlers(
        Handlers::new("h")
            .state("A", move |e| {
                let m = e.machine();
                let Outcome::Queued(tick) = m.add1("B", None) else {
                    panic!("B runs after A's handler")
                };
                // D removes B: queued behind it
                let Outcome::Queued(after) = m.add1("D", None) else {
                    panic!("queued")
                };
                assert_eq!(after, tick + 1);
                let wait = m.when_queue(tick, None);
                assert!(!wait.is_ready(), "B has not run yet");
                w.lock().unwrap().push((tick, wait));
                l.lock().unwrap().push("A".into());
            })
            .state("B", move |_| {
                let ready = w2.lock().unwrap().iter().any(|(_, w)| w.is_ready());
                l2.lock().unwrap().push(format!("B ready={ready}"));
            })
            .state("D", move |_| {
                l3.lock().unwrap().push("D".into());
            }),
    )
    .unwrap();
    m.add1("A", None);
    assert_eq!(*log.lock().unwrap(), ["A", "B ready=false", "D"]);
    let (_, wait) = waits.lock().unwrap().pop().unwrap();
    assert_eq!(wait.try_result(), Some(Ok(())));
    m.dispose();
}

/// A canceled mutation was processed too: its wait completes (upstream only checks after
/// accepted transitions; an explicit deviation, see `Machine::when_queue`).
#[test]
fn a_canceled_mutation_completes_its_wait() {
    let m = Machine::new(
        schema([
            ("A", State::new()),
            ("B", State::new().require(&["C"])),
            ("C", State::new()),
        ]),
        Opts::default(),
    )
    .unwrap();
    m.verify_states(&["A", "B", "C", "Exception"]).unwrap();
    let waits = Arc::new(Mutex::new(Vec::new()));
    let w = waits.clone();
    m.bind_handlers(Handlers::new("h").state("A", move |e| {
        let Outcome::Queued(t) = e.machine().add1("B", None) else {
            panic!()
        };
        w.lock().unwrap().push(e.machine().when_queue(t, None));
    }))
    .unwrap();
    m.add1("A", None);
    assert!(!m.is1("B"), "B was canceled (it requires C)");
    assert_eq!(waits.lock().unwrap()[0].try_result(), Some(Ok(())));
    m.dispose();
}

/// Canceling the ctx or dropping the wait unbinds it; disposal ends the rest.
#[test]
fn when_queue_unbinds_and_ends_on_dispose() {
    let m = machine();
    let ctx = amrpc_core::Ctx::new();
    let w = m.when_queue(100, Some(&ctx));
    assert_eq!(m.wait_bindings(), 1);
    ctx.cancel();
    assert_eq!(m.wait_bindings(), 0, "canceling the ctx alone unbinds");
    assert_eq!(w.try_result(), Some(Err(WaitError::Canceled)));
    drop(m.when_queue(100, None));
    assert_eq!(m.wait_bindings(), 0, "dropping unbinds");
    let w = m.when_queue(100, None);
    m.dispose();
    assert_eq!(w.try_result(), Some(Err(WaitError::Disposed)));
}

/// Upstream head's `TestWhenQueue` (machine_test.go, v0.19): `AState` adds B, C and D (all
/// queued behind A's transition); a thread waits on D's queue tick and then sees all four
/// active.
#[test]
fn test_when_queue() {
    let m = Machine::new(schema(["A", "B", "C", "D"].map(|s| (s, State::new()))), Opts::default()).unwrap();
    m.verify_states(&["A", "B", "C", "D", "Exception"]).unwrap();
    let (done_tx, done) = std::sync::mpsc::channel();
    let done_tx = Mutex::new(Some(done_tx));
    m.bind_handlers(Handlers::new("h").state("A", move |e| {
        let m = e.machine();
        m.add1("B", None);
        m.add1("C", None);
        let Outcome::Queued(res) = m.add1("D", None) else {
            panic!("D is queued behind A")
        };
        let wait = m.when_queue(res, None);
        let m = m.clone();
        let tx = done_tx.lock().unwrap().take().unwrap();
        let (waiting_tx, waiting) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            waiting_tx.send(()).unwrap();
            futures::executor::block_on(wait).unwrap();
            let mut active = m.active_states();
            active.sort();
            tx.send(active).unwrap();
        });
        waiting.recv().unwrap();
    }))
    .unwrap();
    m.add1("A", None);
    let active = done
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("WhenQueue(D)");
    assert_eq!(active, ["A", "B", "C", "D"]);
    m.dispose();
}
