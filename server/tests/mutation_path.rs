//! The mutation path is straight: a client turns names into state indexes once (on its mirror),
//! the wire carries indexes, and the worker is mutated by index — no name lookup on the worker,
//! directly or through a relay, which forwards the indexes it received. Counted with the core's
//! `test-hooks` feature (`Machine::name_lookups`).

mod rpc_support;

use amrpc_client::{Client, ClientOpts};
use amrpc_core::{Api, Outcome};
use amrpc_server::{Server, ServerOpts};
use rpc_support::{Harness, TEST_LIMIT, WAIT, rels_worker, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_mutation_reaches_the_worker_without_a_name_lookup() {
    within(TEST_LIMIT, "mutation path", async {
        let h = Harness::start(rels_worker("w-path"), ServerOpts::default()).await;
        let c = Harness::client(&h.url(), ClientOpts::default()).await;
        let w = h.w().clone();
        let before = w.name_lookups();
        // a cascade on the worker: D adds C and B; A (auto) requires C
        assert_eq!(c.mirror().add(&["D"], None).await, Ok(Outcome::Executed));
        assert_eq!(c.mirror().remove(&["B"], None).await, Ok(Outcome::Executed));
        assert_eq!(c.mirror().set(&["C", "D"], None).await, Ok(Outcome::Executed));
        assert!(w.is(&["C", "D"]) && c.mirror().is(&["C", "D"]));
        assert_eq!(w.name_lookups(), before, "the worker never looked a name up");
        // the same mutation by name, locally, does look names up (the counter works)
        w.add1("A", None);
        assert!(w.name_lookups() > before);

        // through a relay: the relay's clients send indexes, the relay forwards them
        let relay_srv = Server::new(ServerOpts::default());
        relay_srv
            .add_relay("r", c.mirror().clone())
            .expect("serve the mirror on");
        let addr = relay_srv.spawn("127.0.0.1:0").await.expect("relay listens");
        let rc = within(
            WAIT,
            "relay client",
            Client::connect(&format!("ws://{addr}/ws/r"), ClientOpts::default()),
        )
        .await
        .expect("connects to the relay");
        let before_w = w.name_lookups();
        let before_m = c.mirror().machine().name_lookups();
        assert_eq!(rc.mirror().remove(&["D"], None).await, Ok(Outcome::Executed));
        assert!(w.not1("D"));
        within(WAIT, "relay mirror", rc.mirror().when_not1("D", None))
            .await
            .expect("the relay's client sees it");
        assert_eq!(w.name_lookups(), before_w, "no lookup on the upstream worker");
        assert_eq!(
            c.mirror().machine().name_lookups(),
            before_m,
            "no lookup on the relay's mirror either"
        );
        relay_srv.shutdown();
        h.stop().await;
    })
    .await
}

/// Args of `Fetching` (typed through the mirror).
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fetch {
    url: String,
    retries: u8,
}

amrpc_core::schema! {
    /// A worker with typed args.
    pub mod fetcher {
        Fetching: { args: Fetch },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_args_cross_the_wire() {
    use amrpc_core::{ApiTyped, Handlers, Machine, states, struct_merge};
    use std::sync::{Arc, Mutex};
    within(TEST_LIMIT, "typed args", async {
        let w = Machine::new(
            struct_merge(&[&states::worker_schema(), &fetcher::schema()]),
            Default::default(),
        )
        .unwrap();
        let mut names: Vec<&str> = states::WORKER_STATES.to_vec();
        names.push(fetcher::Fetching);
        w.verify_states(&names).unwrap();
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        w.bind_handlers(Handlers::new("typed").enter(fetcher::Fetching, move |e| {
            let a = e.typed_args::<fetcher::typed::Fetching>();
            let ok = a.is_ok();
            *s.lock().unwrap() = Some(a);
            ok
        }))
        .unwrap();
        let h = Harness::start(w, ServerOpts::default()).await;
        let c = Harness::client(&h.url(), ClientOpts::default()).await;
        let f = Fetch {
            url: "https://example.invalid/a".into(),
            retries: 3,
        };
        let r = c.mirror().add1_typed::<fetcher::typed::Fetching>(&f).await;
        assert_eq!(r, Ok(Outcome::Executed));
        assert_eq!(seen.lock().unwrap().take(), Some(Ok(f)));
        assert!(c.mirror().is1(fetcher::Fetching));
        h.stop().await;
    })
    .await
}
