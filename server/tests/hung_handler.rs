//! A hung handler cannot stall a worker (with handler isolation, `Opts::handler_runner`): a
//! handler that sleeps 10× the handler timeout makes its caller's mutation return canceled at
//! the timeout, `Exception` shows the timeout on every mirror, and another client's mutations
//! on the same worker complete while it still sleeps. Without isolation (the default, for
//! speed) the same handler holds its caller for the whole sleep: that is measured here too,
//! for docs/RELIABILITY.md.
mod rpc_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use amrpc_core::{
    Api, Error, Handlers, Machine, MutationType, Opts, Outcome, State, ThreadRunner, Why, schema, states, struct_merge,
};
use amrpc_server::ServerOpts;
use rpc_support::{Harness, TEST_LIMIT, copts, eventually, within};

const TIMEOUT: Duration = Duration::from_millis(100);

fn worker(isolated: bool, finished: Arc<AtomicBool>) -> Machine {
    let own = schema([("Hang", State::new()), ("Other", State::new().multi())]);
    let m = Machine::new(
        struct_merge(&[&states::worker_schema(), &own]),
        Opts {
            id: Some("w-hang".into()),
            handler_timeout: Some(TIMEOUT),
            handler_runner: isolated.then(|| Arc::new(ThreadRunner::default()) as _),
            ..Default::default()
        },
    )
    .unwrap();
    let mut names = vec!["Exception", "Hang", "Other"];
    names.extend(states::WORKER_STATES.iter().filter(|s| **s != "Exception"));
    m.verify_states(&names).unwrap();
    m.bind_handlers(Handlers::new("hang").enter("Hang", move |_| {
        std::thread::sleep(TIMEOUT * 10);
        finished.store(true, Ordering::SeqCst);
        true
    }))
    .unwrap();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_handler_returns_at_the_timeout_and_the_worker_keeps_serving() {
    within(TEST_LIMIT, "hung handler", async {
        let finished = Arc::new(AtomicBool::new(false));
        let h = Harness::start(worker(true, finished.clone()), ServerOpts::default()).await;
        let a = Harness::client(&h.url(), copts("hung-caller")).await;
        let b = Harness::client(&h.url(), copts("bystander")).await;

        let t0 = Instant::now();
        let (outcome, why) = a.mirror().mutate_why(MutationType::Add, &["Hang"], None).await.unwrap();
        let took = t0.elapsed();
        assert!(
            !finished.load(Ordering::SeqCst),
            "the reply came while the handler still slept"
        );
        assert_eq!(outcome, Outcome::Canceled);
        assert_eq!(
            why,
            Some(Why::Timeout {
                handler: "HangEnter".into()
            })
        );
        // Exception shows the timeout, on the worker and on the mirrors
        assert!(h.w().is1("Exception"));
        assert!(matches!(h.w().err(), Some(Error::HandlerTimeout(n)) if n == "HangEnter"));

        // meanwhile another client's mutations on the same worker complete
        let t1 = Instant::now();
        let mut done = 0;
        while done < 20 && !finished.load(Ordering::SeqCst) {
            assert_eq!(b.mirror().add1("Other", None).await, Ok(Outcome::Executed));
            done += 1;
        }
        let during = t1.elapsed();
        assert!(!finished.load(Ordering::SeqCst), "all 20 done while the handler slept");
        b.mirror().sync().await.unwrap();
        assert!(b.mirror().is1("Exception"), "the bystander's mirror shows Exception");
        eprintln!(
            "isolated: the hung call returned after {took:?} (timeout {TIMEOUT:?}, handler sleeps {:?}); \
             another client ran 20 mutations in {during:?} meanwhile",
            TIMEOUT * 10
        );
        // the late handler finishes on its own; its transition stays canceled
        eventually(Duration::from_secs(10), "the late handler ends", || {
            finished.load(Ordering::SeqCst)
        })
        .await;
        assert!(h.w().not1("Hang"));
        a.close().await;
        b.close().await;
        h.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_isolation_the_caller_waits_for_the_whole_handler() {
    within(TEST_LIMIT, "inline hung handler", async {
        let finished = Arc::new(AtomicBool::new(false));
        let h = Harness::start(worker(false, finished.clone()), ServerOpts::default()).await;
        let a = Harness::client(&h.url(), copts("inline-caller")).await;
        let t0 = Instant::now();
        let (outcome, why) = a.mirror().mutate_why(MutationType::Add, &["Hang"], None).await.unwrap();
        let took = t0.elapsed();
        // noticed only when the handler returned: canceled, but after the whole sleep
        assert!(
            finished.load(Ordering::SeqCst),
            "inline: the reply waits for the handler"
        );
        assert_eq!(
            (outcome, why),
            (
                Outcome::Canceled,
                Some(Why::Timeout {
                    handler: "HangEnter".into()
                })
            )
        );
        eprintln!(
            "inline: the hung call returned after {took:?} (the handler slept {:?})",
            TIMEOUT * 10
        );
        a.close().await;
        h.stop().await;
    })
    .await
}
