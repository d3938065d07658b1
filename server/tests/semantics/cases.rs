//! The machine-semantics cases, written once against `&dyn Api`. Each is upstream's
//! `pkg/rpc/rpc_machine_test.go` (v0.8.0) test of the same name (spec/arpc.md §6.2,
//! spec/machine.md §12.1 [RPC]/[RPC*]); assertions read the API right after a mutation returns.

use amrpc_core::compat::is_time_after;
use amrpc_core::{Api, Handlers, Outcome, State, schema};

use crate::fixture::{Backend, Fixture, assert_inspect, assert_states, assert_time, ok, within};

const ABCD: &[&str] = &["A", "B", "C", "D"];

/// `TestSingleStateActive`: `Add1(A)` → {A}.
pub(crate) async fn single_state_active(b: Backend) {
    let env = Fixture::no_rels("single_state_active").start(b).await;
    let w = env.api();
    ok(w.add1("A", None)).await;
    assert_states(w, &["A"]);
    env.finish().await;
}

/// `TestMultipleStatesActive`: `Add(A)`, `Add(B)` → {A,B}.
pub(crate) async fn multiple_states_active(b: Backend) {
    let env = Fixture::no_rels("multiple_states_active").start(b).await;
    let w = env.api();
    ok(w.add(&["A"], None)).await;
    ok(w.add(&["B"], None)).await;
    assert_states(w, &["A", "B"]);
    env.finish().await;
}

/// `TestExposeAllStateNames`: init A → `StateNames` ⊇ {A,B,C,D}. Also: the exact worker order.
pub(crate) async fn expose_all_state_names(b: Backend) {
    let fx = Fixture::no_rels("expose_all_state_names").init(&["A"]);
    let order = fx.names();
    let env = fx.start(b).await;
    let w = env.api();
    let names = w.state_names();
    for s in ABCD {
        assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
    }
    assert_eq!(names, order, "state order");
    assert_eq!(names, env.worker().state_names(), "same order as the worker");
    assert!(w.has(ABCD));
    env.finish().await;
}

/// `TestStateSet`: init A; `Set(B)` → {B}.
pub(crate) async fn state_set(b: Backend) {
    let env = Fixture::no_rels("state_set").init(&["A"]).start(b).await;
    let w = env.api();
    ok(w.set(&["B"], None)).await;
    assert_states(w, &["B"]);
    env.finish().await;
}

/// `TestStateAdd`: init A; `Add(B)` → {A,B}.
pub(crate) async fn state_add(b: Backend) {
    let env = Fixture::no_rels("state_add").init(&["A"]).start(b).await;
    let w = env.api();
    ok(w.add(&["B"], None)).await;
    assert_states(w, &["A", "B"]);
    env.finish().await;
}

/// `TestStateRemove`: init B,C; `Remove(C)` → {B}.
pub(crate) async fn state_remove(b: Backend) {
    let env = Fixture::no_rels("state_remove").init(&["B", "C"]).start(b).await;
    let w = env.api();
    ok(w.remove(&["C"], None)).await;
    assert_states(w, &["B"]);
    env.finish().await;
}

/// `TestRemoveRelation`: init D; C Remove D; `Add(C)` → {C}.
pub(crate) async fn remove_relation(b: Backend) {
    let env = Fixture::no_rels("remove_relation")
        .init(&["D"])
        .rel("C", State::new().remove(&["D"]))
        .start(b)
        .await;
    let w = env.api();
    // C deactivates D
    ok(w.add(&["C"], None)).await;
    assert_states(w, &["C"]);
    env.finish().await;
}

/// `TestRemoveRelationSimultaneous`: init D; C Remove D; `Set(C,D)` → `Canceled`, still {D}.
pub(crate) async fn remove_relation_simultaneous(b: Backend) {
    let env = Fixture::no_rels("remove_relation_simultaneous")
        .init(&["D"])
        .rel("C", State::new().remove(&["D"]))
        .start(b)
        .await;
    let w = env.api();
    let r = ok(w.set(&["C", "D"], None)).await;
    assert_eq!(r, Outcome::Canceled);
    assert_states(w, &["D"]);
    env.finish().await;
}

/// `TestRemoveRelationCrossBlocking`: init D; C Remove D, D Remove C; four subtests.
pub(crate) async fn remove_relation_cross_blocking(b: Backend) {
    for sub in 0..4 {
        let env = Fixture::no_rels(&format!("remove_relation_cross_blocking_{sub}"))
            .init(&["D"])
            // C and D are cross blocking each other via Remove
            .rel("C", State::new().remove(&["D"]))
            .rel("D", State::new().remove(&["C"]))
            .start(b)
            .await;
        let w = env.api();
        // (D:1)[A:0 B:0 C:0]
        match sub {
            // using Set should de-activate the old one
            0 => {
                ok(w.set(&["C"], None)).await;
                assert_states(w, &["C"]);
            }
            // using Set should work both ways
            1 => {
                ok(w.set(&["C"], None)).await;
                assert_states(w, &["C"]);
                ok(w.set(&["D"], None)).await;
                assert_states(w, &["D"]);
            }
            // using Add should de-activate the old one
            2 => {
                ok(w.add(&["C"], None)).await;
                assert_states(w, &["C"]);
            }
            // using Add should work both ways
            _ => {
                ok(w.add(&["C"], None)).await;
                assert_states(w, &["C"]);
                ok(w.add(&["D"], None)).await;
                assert_states(w, &["D"]);
            }
        }
        env.finish().await;
    }
}

/// `TestAddRelation`: A Remove D, C Add D; `Set(C)` → {C,D}; `Set(A,C)` → {A,C}.
pub(crate) async fn add_relation(b: Backend) {
    let env = Fixture::no_rels("add_relation")
        .rel("A", State::new().remove(&["D"]))
        .rel("C", State::new().add(&["D"]))
        .start(b)
        .await;
    let w = env.api();
    ok(w.set(&["C"], None)).await;
    assert_states(w, &["C", "D"]); // state should be activated
    ok(w.set(&["A", "C"], None)).await;
    assert_states(w, &["A", "C"]); // state should be skipped if blocked at the same time
    env.finish().await;
}

/// `TestRequireRelation` (RPC form): A Require D; `Set(C,D)` → {C,D}.
pub(crate) async fn require_relation(b: Backend) {
    let env = Fixture::no_rels("require_relation")
        .rel("A", State::new().require(&["D"]))
        .start(b)
        .await;
    let w = env.api();
    ok(w.set(&["C", "D"], None)).await;
    assert_states(w, &["C", "D"]);
    env.finish().await;
}

/// `TestRequireRelationWhenRequiredIsntActive`: init A; C Require D; `Set(C,A)` → {A}.
/// Also (not asserted upstream, spec §12.1 #23): the result is `Canceled`.
pub(crate) async fn require_relation_when_required_isnt_active(b: Backend) {
    let env = Fixture::no_rels("require_relation_when_required_isnt_active")
        .init(&["A"])
        .rel("C", State::new().require(&["D"]))
        .start(b)
        .await;
    let w = env.api();
    let r = ok(w.set(&["C", "A"], None)).await;
    assert_states(w, &["A"]); // target state shouldnt be activated
    assert_eq!(r, Outcome::Canceled);
    env.finish().await;
}

/// `TestAutoStates`: B Auto Require A; `Add(A)` → `Executed`, {A,B}.
pub(crate) async fn auto_states(b: Backend) {
    let env = Fixture::no_rels("auto_states")
        .rel("B", State::new().auto().require(&["A"]))
        .start(b)
        .await;
    let w = env.api();
    let r = ok(w.add(&["A"], None)).await;
    assert_eq!(r, Outcome::Executed, "transition should be executed");
    assert_states(w, &["A", "B"]); // dependant auto state should be set
    env.finish().await;
}

/// `TestSwitch`: init A; C Require D; `Switch(A,B)` == A; `Switch(C,B)` == "".
pub(crate) async fn switch(b: Backend) {
    let env = Fixture::no_rels("switch")
        .init(&["A"])
        .rel("C", State::new().require(&["D"]))
        .start(b)
        .await;
    let w = env.api();
    assert_eq!(w.switch(&[&["A", "B"]]), Some("A"));
    assert_eq!(w.switch(&[&["C", "B"]]), None);
    env.finish().await;
}

/// `TestRegressionRemoveCrossBlockedByImplied`: A Remove B, B Remove A, Z Add B; `Set(Z)` → {Z,B}.
pub(crate) async fn regression_remove_cross_blocked_by_implied(b: Backend) {
    let own = schema([
        ("A", State::new().remove(&["B"])),
        ("B", State::new().remove(&["A"])),
        ("Z", State::new().add(&["B"])),
    ]);
    let env = Fixture::custom("regression_remove_cross_blocked_by_implied", own)
        .start(b)
        .await;
    let w = env.api();
    ok(w.set(&["Z"], None)).await;
    assert_states(w, &["Z", "B"]);
    env.finish().await;
}

/// `TestRegressionImpliedBlockByBeingRemoved`: Wet Require Water; Dry Remove Wet; Water Add Wet,
/// Remove Dry; `Set(Dry)`, `Set(Water)` → {Water,Wet}.
pub(crate) async fn regression_implied_block_by_being_removed(b: Backend) {
    let own = schema([
        ("Wet", State::new().require(&["Water"])),
        ("Dry", State::new().remove(&["Wet"])),
        ("Water", State::new().add(&["Wet"]).remove(&["Dry"])),
    ]);
    let env = Fixture::custom("regression_implied_block_by_being_removed", own)
        .start(b)
        .await;
    let w = env.api();
    ok(w.set(&["Dry"], None)).await;
    ok(w.set(&["Water"], None)).await;
    assert_states(w, &["Water", "Wet"]);
    env.finish().await;
}

/// `TestWhen2`: two concurrent `When(A,B)`; `Add(A,B)` → both resolve.
pub(crate) async fn when2(b: Backend) {
    let env = Fixture::no_rels("when2").start(b).await;
    let w = env.api();
    let (ready1, pass1) = waiter(w.when(&["A", "B"], None));
    let (ready2, pass2) = waiter(w.when(&["A", "B"], None));
    within("ready1", ready1).await.expect("ready1");
    within("ready2", ready2).await.expect("ready2");
    ok(w.add(&["A", "B"], None)).await;
    within("pass1", pass1).await.expect("pass1").expect("when 1");
    within("pass2", pass2).await.expect("pass2").expect("when 2");
    env.finish().await;
}

/// A waiting task (upstream: a goroutine); `ready` fires once it waits, then the join handle
/// carries the wait's result.
fn waiter(
    wait: amrpc_core::Wait,
) -> (
    tokio::sync::oneshot::Receiver<()>,
    tokio::task::JoinHandle<Result<(), amrpc_core::WaitError>>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let h = tokio::spawn(async move {
        assert!(!wait.is_ready(), "the wait should not be ready yet");
        let _ = tx.send(());
        wait.await
    });
    (rx, h)
}

/// `TestWhenActive`: init A; `When(A)` resolves at once; {A}.
pub(crate) async fn when_active(b: Backend) {
    let env = Fixture::no_rels("when_active").init(&["A"]).start(b).await;
    let w = env.api();
    let wait = w.when(&["A"], None);
    assert!(wait.is_ready(), "When(A) should be closed already");
    within("When(A)", wait).await.expect("When(A)");
    assert_states(w, &["A"]);
    env.finish().await;
}

/// `TestWhenNot2`: init A,B; two concurrent `WhenNot(A,B)`; `Remove(A,B)` → both resolve.
pub(crate) async fn when_not2(b: Backend) {
    let env = Fixture::no_rels("when_not2").init(&["A", "B"]).start(b).await;
    let w = env.api();
    let (ready1, pass1) = waiter(w.when_not(&["A", "B"], None));
    let (ready2, pass2) = waiter(w.when_not(&["A", "B"], None));
    within("ready1", ready1).await.expect("ready1");
    within("ready2", ready2).await.expect("ready2");
    ok(w.remove(&["A", "B"], None)).await;
    within("pass1", pass1).await.expect("pass1").expect("when_not 1");
    within("pass2", pass2).await.expect("pass2").expect("when_not 2");
    env.finish().await;
}

/// `TestWhenNotActive`: init A; `WhenNot(B)` resolves at once; {A}.
pub(crate) async fn when_not_active(b: Backend) {
    let env = Fixture::no_rels("when_not_active").init(&["A"]).start(b).await;
    let w = env.api();
    let wait = w.when_not(&["B"], None);
    assert!(wait.is_ready(), "WhenNot(B) should be closed already");
    within("WhenNot(B)", wait).await.expect("WhenNot(B)");
    assert_states(w, &["A"]);
    env.finish().await;
}

/// `TestPartialAuto` (RPC form): init A; C Auto Require B, D Auto Require B; `Add(A)` → {A}.
pub(crate) async fn partial_auto(b: Backend) {
    let env = Fixture::no_rels("partial_auto")
        .init(&["A"])
        .rel("C", State::new().auto().require(&["B"]))
        .rel("D", State::new().auto().require(&["B"]))
        .start(b)
        .await;
    let w = env.api();
    ok(w.add(&["A"], None)).await;
    assert_states(w, &["A"]);
    env.finish().await;
}

/// The clock sequence shared by `TestTime` and `TestClock` (B is Multi; A starts at 0 or 1).
async fn clock_steps(w: &dyn Api) {
    // ()[]
    ok(w.add(&["A", "B"], None)).await;
    assert_states(w, &["A", "B"]);
    assert_time(w, ABCD, &[1, 1, 0, 0]);

    ok(w.add(&["A", "B"], None)).await;
    assert_states(w, &["A", "B"]);
    assert_time(w, ABCD, &[1, 3, 0, 0]);

    ok(w.add(&["A", "B", "C"], None)).await;
    assert_states(w, &["A", "B", "C"]);
    assert_time(w, ABCD, &[1, 5, 1, 0]);

    ok(w.set(&["D"], None)).await;
    assert_states(w, &["D"]);
    assert_time(w, ABCD, &[2, 6, 2, 1]);

    ok(w.add(&["D", "C"], None)).await;
    assert_states(w, &["D", "C"]);
    assert_time(w, ABCD, &[2, 6, 3, 1]);

    ok(w.remove(&["B", "C"], None)).await;
    assert_states(w, &["D"]);
    assert_time(w, ABCD, &[2, 6, 4, 1]);

    ok(w.add(&["A", "B"], None)).await;
    assert_states(w, &["D", "A", "B"]);
    assert_time(w, ABCD, &[3, 7, 4, 1]);
}

/// `TestTime` (RPC form): init A; B Multi; the clock sequence, then `Add(C)` and `IsTimeAfter`.
pub(crate) async fn time(b: Backend) {
    let env = Fixture::no_rels("time")
        .init(&["A"])
        .rel("B", State::new().multi())
        .start(b)
        .await;
    let w = env.api();
    clock_steps(w).await;

    let before = w.time(Some(ABCD));
    ok(w.add(&["C"], None)).await;
    let now = w.time(Some(ABCD));
    assert_states(w, &["A", "B", "D", "C"]);
    assert_time(w, ABCD, &[3, 7, 5, 1]);
    assert!(is_time_after(&now, &before));
    assert!(!is_time_after(&before, &now));
    env.finish().await;
}

/// `TestClock` (RPC form): B Multi; the clock sequence; `Clock(nil)` ⊇ {A:3 B:7 C:4 D:1
/// Exception:0}; `Clock(A,B)` == {A:3 B:7}; `Tick(A)` == 3.
pub(crate) async fn clock(b: Backend) {
    let env = Fixture::no_rels("clock").rel("B", State::new().multi()).start(b).await;
    let w = env.api();
    clock_steps(w).await;

    let all = w.clock(None);
    for (k, v) in [("A", 3), ("B", 7), ("C", 4), ("D", 1), ("Exception", 0)] {
        assert_eq!(all.get(k), Some(&v), "Clock(nil)[{k}] in {all:?}");
    }
    let ab = w.clock(Some(&["A", "B"]));
    assert_eq!(ab, [("A".to_string(), 3), ("B".to_string(), 7)].into_iter().collect());
    assert_eq!(w.tick("A"), 3);
    env.finish().await;
}

/// `TestWhenTime` (RPC form): init A,B; `WhenTime(A,B; 5,2)`; `Remove(A,B)`, `Add(A,B)` → open;
/// `Remove1(A)`, `Add1(A)` → closed (both checked without waiting). Also, from the local form:
/// `WhenTime(A,B; 7,2)` and `(9,2)` close on the next two `Remove1(A)`/`Add1(A)` pairs.
pub(crate) async fn when_time(b: Backend) {
    let env = Fixture::no_rels("when_time").init(&["A", "B"]).start(b).await;
    let w = env.api();
    // (A:1 B:1)
    let ch1 = w.when_time(&["A", "B"], &[5, 2], None);
    let ch2 = w.when_time(&["A", "B"], &[7, 2], None);
    let ch3 = w.when_time(&["A", "B"], &[9, 2], None);

    // tick some, but not enough
    ok(w.remove(&["A", "B"], None)).await;
    ok(w.add(&["A", "B"], None)).await;
    // (A:3 B:3) not yet
    assert!(!ch1.is_ready(), "when shouldnt be resolved");

    ok(w.remove1("A", None)).await;
    ok(w.add1("A", None)).await;
    // (A:5 B:3) OK
    assert!(ch1.is_ready(), "when should be resolved");
    assert_eq!(ch1.try_result(), Some(Ok(())));
    assert!(!ch2.is_ready() && !ch3.is_ready());

    ok(w.remove1("A", None)).await;
    ok(w.add1("A", None)).await;
    assert!(ch2.is_ready() && !ch3.is_ready(), "A:7 closes only (7,2)");
    ok(w.remove1("A", None)).await;
    ok(w.add1("A", None)).await;
    assert!(ch3.is_ready(), "A:9 closes (9,2)");
    within("WhenTime", async {
        ch2.await.expect("ch2");
        ch3.await.expect("ch3");
    })
    .await;
    env.finish().await;
}

/// The set-up of `TestIs`, `TestNot` and `TestAny` (RPC form): init A,B; B Auto Require A.
fn is_not_any(name: &str) -> Fixture {
    Fixture::no_rels(name)
        .init(&["A", "B"])
        .rel("B", State::new().auto().require(&["A"]))
}

/// `TestIs`: `Is(A,B)` true; `Is(A,B,C)` false.
pub(crate) async fn is(b: Backend) {
    let env = is_not_any("is").start(b).await;
    let w = env.api();
    assert!(w.is(&["A", "B"]), "A B should be active");
    assert!(!w.is(&["A", "B", "C"]), "A B C shouldnt be active");
    env.finish().await;
}

/// `TestNot`: `Not(A,B)` false; `Not(A,B,C)` false; `Not1(D)` true.
pub(crate) async fn not(b: Backend) {
    let env = is_not_any("not").start(b).await;
    let w = env.api();
    assert_eq!(w.not(&["A", "B"]), Ok(false), "A B should be active");
    assert_eq!(w.not(&["A", "B", "C"]), Ok(false), "A B C is partially active");
    assert_eq!(w.not1("D"), Ok(true), "D is inactive");
    env.finish().await;
}

/// `TestAny`: `Any({A,B},{C})` true; `Any({A,B,C},{A})` true.
pub(crate) async fn any(b: Backend) {
    let env = is_not_any("any").start(b).await;
    let w = env.api();
    assert!(w.any(&[&["A", "B"], &["C"]]), "A B should be active");
    assert!(w.any(&[&["A", "B", "C"], &["A"]]), "A B C is partially active");
    env.finish().await;
}

const INSPECT_1: &str = "
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

const INSPECT_2: &str = "
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

    ErrProviding:
      State:   false 0
      Require: Exception

    ErrSendPayload:
      State:   false 0
      Require: Exception

    SendPayload:
      State:   false 0
      Multi:   true

    ErrNetwork:
      State:   false 0
      Require: Exception

    ErrHandlerTimeout:
      State:   false 0
      Require: Exception

    Start:
      State:   false 0

    Ready:
      State:   false 0
      Require: Start

    Healthcheck:
      State:   false 0
    ";

/// `TestInspect` (RPC form): Rels worker, init A,C. `Inspect(A B C D Exception)` equals the
/// worker's (the Rust core's) inspect and upstream's text; after `Remove(C)`, `Add(B)`, `Add(D)`,
/// `Inspect(nil)` equals the worker's and upstream's 13-state text.
pub(crate) async fn inspect(b: Backend) {
    let env = Fixture::rels("inspect").init(&["A", "C"]).start(b).await;
    let w = env.api();
    // (A:1 C:1)[B:0 D:0 Exception:0]
    let names: &[&str] = &["A", "B", "C", "D", "Exception"];
    assert_eq!(w.inspect(Some(names)), env.worker().inspect(Some(names)));
    assert_inspect(w, INSPECT_1, Some(names));
    // (A:1 C:1)[B:0 D:0 Exception:0]
    ok(w.remove(&["C"], None)).await;
    // ()[A:2 B:0 C:2 D:0 Exception:0]
    ok(w.add(&["B"], None)).await;
    // (A:3 B:1 C:3)[D:0 Exception:0]
    ok(w.add(&["D"], None)).await;
    // (A:3 B:1 C:3 D:1)[Exception:0]
    assert_eq!(w.inspect(None), env.worker().inspect(None));
    assert_inspect(w, INSPECT_2, None);
    env.finish().await;
}

/// `TestString` (RPC form): init A,B; `String()` and `StringAll()` with the worker states.
pub(crate) async fn string(b: Backend) {
    let env = Fixture::no_rels("string").init(&["A", "B"]).start(b).await;
    let w = env.api();
    assert_eq!(w.string(), "(A:1 B:1)");
    assert_eq!(
        w.string_all(),
        "(A:1 B:1) [Exception:0 C:0 D:0 ErrProviding:0 ErrSendPayload:0 SendPayload:0 ErrNetwork:0 \
         ErrHandlerTimeout:0 Start:0 Ready:0 Healthcheck:0]"
    );
    env.finish().await;
}

/// `TestNestedMutation` (RPC form): the worker's `AState` adds B three times and removes it twice
/// (all queued); `Add1(A)` → {A}.
pub(crate) async fn nested_mutation(b: Backend) {
    let h = Handlers::new("TestNestedMutationHandlers").state("A", |e| {
        let m = e.machine();
        m.add1("B", None);
        m.add1("B", None);
        m.add1("B", None);
        m.remove1("B", None);
        m.remove1("B", None);
    });
    let env = Fixture::no_rels("nested_mutation").handlers(h).start(b).await;
    let w = env.api();
    ok(w.add1("A", None)).await;
    assert_states(w, &["A"]);
    env.finish().await;
}

/// `TestIsClock`: `Clock(A)` and `Clock(nil)` taken before `Add(A,B)` no longer match.
pub(crate) async fn is_clock(b: Backend) {
    let env = Fixture::no_rels("is_clock").start(b).await;
    let w = env.api();
    let c_a = w.clock(Some(&["A"]));
    let c_all = w.clock(None);
    ok(w.add(&["A", "B"], None)).await;
    assert!(!w.is_clock(&c_all));
    assert!(!w.is_clock(&c_a));
    env.finish().await;
}

/// `TestIsTime`: `Time(A)` and `Time(nil)` taken before `Add(A,B)` no longer match.
pub(crate) async fn is_time(b: Backend) {
    let env = Fixture::no_rels("is_time").start(b).await;
    let w = env.api();
    let t_a = w.time(Some(&["A"]));
    let t_all = w.time(None);
    ok(w.add(&["A", "B"], None)).await;
    assert!(!w.is_time(&t_a, Some(&["A"])));
    assert!(!w.is_time(&t_all, None));
    env.finish().await;
}
