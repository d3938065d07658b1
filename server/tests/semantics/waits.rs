//! Remote waits (issue 10, items 3 and 4): `when_args` and `when_queue`, written once against
//! `&dyn Api` and run on the worker itself and through a mirror, where both are evaluated on the
//! worker. The per-session limit and the disconnect exist only remotely (`remote_*` cases).

use std::sync::mpsc;
use std::thread;

use amrpc_core::{Args, Ctx, ErrorCode, Handlers, Outcome, State, WaitError, schema};
use amrpc_server::ServerOpts;

use crate::fixture::{Backend, Fixture, eventually, ok, within};

fn jobs(name: &str) -> Fixture {
    let own = schema([
        ("Job", State::new().multi()),
        ("Other", State::new()),
        ("Slow", State::new()),
        ("B", State::new()),
    ]);
    Fixture::custom(name, own)
}

/// `when_args` completes only when the state's final handler runs with args ⊇ the wanted ones,
/// never in advance; when it does, the mirror already shows that transition.
pub(crate) async fn when_args_matches_a_subset(b: Backend) {
    let env = jobs("when_args_matches_a_subset")
        .handlers(Handlers::new("h").state("Job", |_| {}))
        .start(b)
        .await;
    let w = env.api();
    ok(w.add1("Job", Some(Args::new().with("id", "b")))).await;
    let wait = w.when_args("Job", Args::new().with("id", "b"), None);
    env.round_trip().await;
    assert!(!wait.is_ready(), "{b:?}: never satisfied by an earlier transition");
    ok(w.add1("Job", Some(Args::new().with("id", "a")))).await;
    env.round_trip().await;
    assert!(!wait.is_ready(), "{b:?}: other args do not match");
    ok(w.add1("Job", Some(Args::new().with("id", "b").with("n", 2)))).await;
    within("when_args", wait).await.expect("met by a superset of the args");
    assert_eq!(w.tick("Job"), 5, "{b:?}: three activations of a Multi state");
    assert_eq!(w.tick("Job"), env.worker().tick("Job"));
    assert_eq!(env.worker().wait_bindings(), 0, "{b:?}: a met wait leaves no binding");
    env.finish().await;
}

/// Canceling the ctx alone, or dropping the wait, unbinds it on the worker.
pub(crate) async fn when_args_cancel_unbinds(b: Backend) {
    let env = jobs("when_args_cancel_unbinds").start(b).await;
    let w = env.api();
    let ctx = Ctx::new();
    let wait = w.when_args("Job", Args::new().with("id", "x"), Some(&ctx));
    let dropped = w.when_args("Job", Args::new().with("id", "y"), None);
    env.round_trip().await;
    assert_eq!(env.worker().wait_bindings(), 2, "{b:?}: both registered on the worker");
    ctx.cancel();
    drop(dropped);
    env.round_trip().await;
    assert_eq!(env.worker().wait_bindings(), 0, "{b:?}: unbound on the worker");
    assert_eq!(within("canceled", wait).await, Err(WaitError::Canceled));
    ok(w.add1("Job", Some(Args::new().with("id", "x")))).await;
    env.finish().await;
}

/// `when_queue`: a mutation queued behind a handler that is still running (here on another
/// thread, blocked on the test's barrier) returns `Queued(tick)`; the wait on that tick stays
/// pending while the handler blocks and completes right after the mutation ran — with the
/// mirror already showing it.
pub(crate) async fn when_queue_resolves_when_it_ran(b: Backend) {
    let (started_tx, started) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let h = Handlers::new("slow").state("Slow", move |_| {
        let _ = started_tx.send(());
        let _ = release_rx.lock().unwrap().recv();
    });
    let env = jobs("when_queue_resolves_when_it_ran")
        .no_handler_timeout()
        .handlers(h)
        .start(b)
        .await;
    let w = env.api();
    let worker = env.worker().clone();
    let drainer = thread::spawn(move || worker.add1("Slow", None));
    tokio::task::spawn_blocking(move || started.recv())
        .await
        .unwrap()
        .expect("Slow's handler runs");
    let Outcome::Queued(tick) = ok(w.add1("B", None)).await else {
        panic!("{b:?}: B is queued behind Slow's handler")
    };
    let wait = w.when_queue(tick, None);
    env.round_trip().await;
    assert!(!wait.is_ready(), "{b:?}: B has not run");
    assert!(!w.is1("B"));
    release.send(()).unwrap();
    within("when_queue", wait).await.expect("B ran");
    assert!(w.is1("B"), "{b:?}: the mirror shows B when its wait completes");
    assert_eq!(drainer.join().unwrap(), Outcome::Executed);
    // a processed tick completes at once (remotely: one round trip)
    within("processed tick", w.when_queue(tick, None))
        .await
        .expect("already processed");
    env.finish().await;
}

/// The per-session limit: past `max_waits` a new wait fails with `TooManyWaits`; releasing one
/// makes room.
pub(crate) async fn remote_wait_limit(b: Backend) {
    assert_ne!(b, Backend::Local);
    let env = jobs("remote_wait_limit")
        .server_opts(ServerOpts {
            max_waits: 2,
            ..Default::default()
        })
        .start(b)
        .await;
    let w = env.api();
    let first = w.when_args("Job", Args::new().with("n", 1), None);
    let _second = w.when_queue(1_000, None);
    let third = w.when_args("Job", Args::new().with("n", 3), None);
    match within("third", third).await {
        Err(WaitError::Remote { code, .. }) => assert_eq!(code, ErrorCode::TooManyWaits),
        other => panic!("expected TooManyWaits, got {other:?}"),
    }
    drop(first);
    let fourth = w.when_args("Job", Args::new().with("n", 4), None);
    ok(w.add1("Job", Some(Args::new().with("n", 4)))).await;
    within("fourth", fourth).await.expect("room after a release");
    env.round_trip().await;
    assert_eq!(env.worker().wait_bindings(), 1, "only the when_queue is left");
    env.finish().await;
}

/// A dropped connection fails the session's waits with `Disconnected` (what they wait for may
/// happen before a reconnect) and the worker drops their bindings with the session.
pub(crate) async fn remote_wait_disconnect(b: Backend) {
    assert_ne!(b, Backend::Local);
    let env = jobs("remote_wait_disconnect").start(b).await;
    let w = env.api();
    let wait = w.when_args("Job", Args::new(), None);
    let queue = w.when_queue(1_000, None);
    env.round_trip().await;
    assert_eq!(env.worker().wait_bindings(), 2);
    let (client, served) = env.remote().expect("remote");
    served.kick();
    assert!(matches!(
        within("disconnect", wait).await,
        Err(WaitError::Disconnected(_))
    ));
    assert!(matches!(
        within("disconnect", queue).await,
        Err(WaitError::Disconnected(_))
    ));
    eventually("bindings released", || env.worker().wait_bindings() == 0).await;
    // after the reconnect, new waits work again
    eventually("reconnected", || {
        client.states().is1(amrpc_core::states::READY) && served.session_count() == 1
    })
    .await;
    let again = w.when_args("Job", Args::new(), None);
    ok(w.add1("Job", None)).await;
    within("after reconnect", again).await.expect("met");
    env.finish().await;
}
