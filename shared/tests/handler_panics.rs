//! A panic in a handler, with two handler sets bound (say, metrics and business logic), as
//! upstream v0.8.0's `processHandlers` handles it: a panic in a final handler (`FooState`) is
//! recovered (partial final states, `Exception` queued) and the event's other sets still run; a
//! panic in a negotiation handler (`FooEnter`) cancels at once, so later sets never see it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use amrpc_core::{EXCEPTION, Handlers, Machine, Opts, Outcome, State, schema};

fn machine() -> Machine {
    Machine::new(schema([("A", State::new()), ("B", State::new())]), Opts::default()).unwrap()
}

#[test]
fn a_final_handler_panic_lets_the_other_sets_run() {
    let m = machine();
    let logic = Arc::new(AtomicUsize::new(0));
    m.bind_handlers(Handlers::new("metrics").state("A", |_| panic!("metrics broke")))
        .unwrap();
    let l = logic.clone();
    m.bind_handlers(Handlers::new("logic").state("A", move |_| {
        l.fetch_add(1, Ordering::SeqCst);
    }))
    .unwrap();
    assert_eq!(m.add1("A", None), Outcome::Canceled);
    assert_eq!(logic.load(Ordering::SeqCst), 1, "the second set's AState ran");
    assert!(m.is1(EXCEPTION), "{}", m.string_all());
    assert!(m.not1("A"), "A's final handlers did not all finish: A is rolled back");
    assert!(m.err().is_some_and(|e| e.to_string().contains("metrics broke")));
    // the machine goes on
    assert_eq!(m.add1("B", None), Outcome::Executed);
}

#[test]
fn a_negotiation_handler_panic_cancels_before_the_other_sets() {
    let m = machine();
    let second = Arc::new(AtomicUsize::new(0));
    m.bind_handlers(Handlers::new("first").enter("A", |_| panic!("enter broke")))
        .unwrap();
    let s = second.clone();
    m.bind_handlers(Handlers::new("second").enter("A", move |_| {
        s.fetch_add(1, Ordering::SeqCst);
        true
    }))
    .unwrap();
    assert_eq!(m.add1("A", None), Outcome::Canceled);
    assert_eq!(second.load(Ordering::SeqCst), 0, "canceled before the second set");
    assert!(m.is1(EXCEPTION) && m.not1("A"));
}

#[test]
fn a_panic_in_both_sets_is_recovered_and_every_set_runs() {
    let m = machine();
    let runs = Arc::new(AtomicUsize::new(0));
    for name in ["one", "two"] {
        let r = runs.clone();
        m.bind_handlers(Handlers::new(name).state("A", move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            panic!("{name} broke");
        }))
        .unwrap();
    }
    assert_eq!(m.add1("A", None), Outcome::Canceled);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(m.is1(EXCEPTION) && m.not1("A"));
    assert!(
        m.err().is_some_and(|e| e.to_string().contains("two broke")),
        "the last panic is the error"
    );
}
