//! Behaviour of the Rust port beyond the upstream suite: typed errors, futures and contexts,
//! concurrency, the `schema!` macro.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use amrpc_core::{Ctx, Error, Handlers, Machine, Opts, Outcome, State, WaitError, schema};

fn abcd() -> Machine {
    Machine::new(
        schema([
            ("A", State::new()),
            ("B", State::new()),
            ("C", State::new()),
            ("D", State::new()),
        ]),
        Opts::default(),
    )
    .unwrap()
}

#[test]
fn canceled_ctx_unbinds_waits_at_once() {
    let m = abcd();
    let ctx = Ctx::new();
    let w1 = m.when1("A", Some(&ctx));
    let w2 = m.when_time(&["B"], &[3], Some(&ctx));
    let w3 = m.when_args("C", Default::default(), Some(&ctx));
    assert_eq!(m.wait_bindings(), 3);
    ctx.cancel();
    // no poll, no drop: the bindings are gone with the cancel, as upstream's ctx watchers do
    assert_eq!(m.wait_bindings(), 0);
    for w in [w1, w2, w3] {
        assert_eq!(w.try_result(), Some(Err(WaitError::Canceled)));
    }
}

#[test]
fn dropped_wait_unbinds() {
    let m = abcd();
    let w = m.when(&["A", "B"], None);
    assert_eq!(m.wait_bindings(), 1);
    drop(w);
    assert_eq!(m.wait_bindings(), 0);
}

#[test]
fn dispose_ends_pending_waits() {
    let m = abcd();
    let w = m.when1("A", None);
    let ctx = m.new_state_ctx("A");
    assert!(ctx.is_canceled(), "inactive state: canceled at once");
    m.add1("B", None);
    let b_ctx = m.new_state_ctx("B");
    m.dispose();
    assert_eq!(futures::executor::block_on(w), Err(WaitError::Disposed));
    assert!(b_ctx.is_canceled());
    assert_eq!(m.add1("A", None), Outcome::Canceled);
    assert!(m.when1("A", None).is_ready());
}

#[test]
fn typed_errors_instead_of_panics() {
    let m = abcd();
    assert_eq!(m.try_add(&["Zzz"], None), Err(Error::StateUnknown("Zzz".into())));
    assert_eq!(m.try_not(&["Zzz"]), Err(Error::StateUnknown("Zzz".into())));
    assert!(matches!(m.try_when_not(&["Zzz"], None), Err(Error::StateUnknown(_))));
    assert!(matches!(m.try_new_state_ctx("Zzz"), Err(Error::StateUnknown(_))));
    // relations to missing states and Require cycles are schema errors
    let bad = schema([("A", State::new().require(&["Nope"]))]);
    assert!(matches!(Machine::new(bad, Opts::default()), Err(Error::Relation(_))));
    let cycle = schema([("A", State::new().require(&["B"])), ("B", State::new().require(&["A"]))]);
    assert!(matches!(Machine::new(cycle, Opts::default()), Err(Error::Relation(_))));
    // handlers naming missing states are rejected, nothing is bound
    let h = Handlers::new("bad").enter("Zzz", |_| true);
    assert!(matches!(m.bind_handlers(h), Err(Error::StateMissing(_))));
    assert_eq!(m.handler_sets(), 0);
    // the machine is untouched by all of the above
    assert_eq!(m.string_all(), "() [A:0 B:0 C:0 D:0 Exception:0]");
}

#[test]
fn concurrent_mutations_from_threads_all_run() {
    let m = Machine::new(schema([("Counter", State::new().multi())]), Opts::default()).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let r2 = runs.clone();
    m.bind_handlers(Handlers::new("count").state("Counter", move |_| {
        r2.fetch_add(1, Ordering::Relaxed);
    }))
    .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                // 4 × 200 calls can never fill the queue past its limit (1000), where a call
                // would be Canceled by design
                for _ in 0..200 {
                    let r = m.add1("Counter", None);
                    assert_ne!(r, Outcome::Canceled);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // every call ran exactly once (queued ones by another caller's drain), none left behind
    assert_eq!(m.queue_len(), 0);
    assert_eq!(runs.load(Ordering::Relaxed), 800);
    assert_eq!(m.tick("Counter"), 1 + 2 * 799);
}

#[test]
fn waits_complete_from_another_thread() {
    let m = abcd();
    let w = m.when(&["A", "B"], None);
    assert!(!w.is_ready());
    let m2 = m.clone();
    let t = std::thread::spawn(move || {
        m2.add1("A", None);
        m2.add1("B", None);
    });
    futures::executor::block_on(w).unwrap();
    t.join().unwrap();
    assert!(m.is(&["A", "B"]));
}

amrpc_core::schema! {
    /// A typed schema.
    pub mod door {
        Open: { remove: [Closed] },
        Closed: { remove: [Open] },
        Locked: { require: [Closed] },
        Knock: { multi: true },
    }
}

#[test]
fn schema_macro_gives_typed_names() {
    let m = Machine::new(door::schema(), Opts::default()).unwrap();
    assert_eq!(door::NAMES, &["Open", "Closed", "Locked", "Knock"]);
    assert_eq!(m.add1(door::Locked, None), Outcome::Canceled);
    m.add(&[door::Closed, door::Locked], None);
    assert_eq!(m.add1(door::Open, None), Outcome::Executed);
    assert!(m.is1(door::Open) && m.not(&[door::Closed, door::Locked]));
    m.add1(door::Knock, None);
    m.add1(door::Knock, None);
    assert_eq!(m.tick(door::Knock), 3);
}

#[test]
fn api_trait_object_drives_a_machine() {
    use amrpc_core::Api;
    let m = abcd();
    let api: &dyn Api = &m;
    let r = futures::executor::block_on(api.add(&["A", "B"], None));
    assert_eq!(r, Ok(Outcome::Executed));
    assert!(api.is(&["A", "B"]) && api.any1(&["C", "A"]));
    assert_eq!(api.not(&["C", "D"]), Ok(true));
    assert!(matches!(api.not(&["Zzz"]), Err(Error::StateUnknown(_))));
    assert_eq!(api.switch(&[&["C", "B", "A"]]), Some("B"));
    assert_eq!(api.tick("A"), 1);
    let w = api.when_not1("A", None);
    assert!(!w.is_ready());
    assert_eq!(
        futures::executor::block_on(api.remove1("A", None)),
        Ok(Outcome::Executed)
    );
    assert!(w.is_ready());
    assert!(matches!(
        futures::executor::block_on(api.add1("Zzz", None)),
        Err(Error::StateUnknown(_))
    ));
    assert_eq!(api.string(), "(B:1)");
    assert_eq!(api.index("Exception"), Some(4));
}
