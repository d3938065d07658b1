//! The server and the native client over a real WebSocket on 127.0.0.1.
use amrpc_client::{Client, ClientOpts};
use amrpc_core::states;
use amrpc_core::{Api, Machine, Opts, Outcome, State, schema, struct_merge};
use amrpc_server::{Server, ServerOpts};

mod relay_support;

fn worker() -> Machine {
    let own = schema([("A", State::new()), ("B", State::new().require(&["A"]))]);
    let m = Machine::new(struct_merge(&[&states::worker_schema(), &own]), Opts::default()).unwrap();
    let mut names: Vec<&str> = states::WORKER_STATES.to_vec();
    names.extend(["A", "B"]);
    m.verify_states(&names).unwrap();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_mutate_and_push() {
    let srv = Server::new(ServerOpts::default());
    let w = srv.add_worker("w", worker()).unwrap();
    let addr = srv.spawn("127.0.0.1:0").await.unwrap();
    let c = Client::connect(&format!("ws://{addr}/ws/w"), ClientOpts::default())
        .await
        .unwrap();
    let m = c.mirror();
    assert_eq!(m.add1("B", None).await, Ok(Outcome::Canceled));
    assert_eq!(m.add(&["A", "B"], None).await, Ok(Outcome::Executed));
    assert!(m.is(&["A", "B"]), "read your writes: {}", m.string());
    // a change made on the worker reaches the mirror by a push
    let wait = m.when_not1("A", None);
    w.machine().remove1("A", None);
    tokio::time::timeout(std::time::Duration::from_secs(2), wait)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.time(None), w.machine().time(None));
    c.close().await;
    srv.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_last_error_reaches_clients() {
    let srv = Server::new(ServerOpts::default());
    let w = srv.add_worker("w", worker()).unwrap();
    w.machine().add_err("before connecting", None);
    let addr = srv.spawn("127.0.0.1:0").await.unwrap();
    let c = Client::connect(&format!("ws://{addr}/ws/w"), ClientOpts::default())
        .await
        .unwrap();
    let m = c.mirror();
    assert!(m.err().unwrap().to_string().contains("before connecting"));
    let tick = m.tick("Exception");
    w.machine().add_err("boom", None);
    tokio::time::timeout(
        std::time::Duration::from_secs(2),
        m.when_ticks_eq("Exception", tick + 2, None),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(m.err().unwrap().to_string().contains("boom"), "{:?}", m.err());
    c.close().await;
    srv.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_served_by_another_server_relays_both_ways() {
    // root server with the worker, and a relay: its own server serving the root worker's mirror
    let r = relay_support::relayed(worker()).await;
    let w = r.worker.clone();
    // a leaf client of the relay
    let leaf = Client::connect(&r.leaf_url(), ClientOpts::default()).await.unwrap();
    let m = leaf.mirror();
    // a leaf mutation runs on the root worker, and its reply already shows it
    assert_eq!(m.add1("A", None).await, Ok(Outcome::Executed));
    assert!(w.machine().is1("A") && m.is1("A"));
    // a root change flows down through the relay
    let wait = m.when1("B", None);
    w.machine().add1("B", None);
    tokio::time::timeout(std::time::Duration::from_secs(2), wait)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.time(None), w.machine().time(None));
    // a leaf's remote wait is registered through the relay on the root worker; the mutation
    // after it takes the same path (leaf session, then the relay's upstream connection), so it
    // reaches the root after the wait
    assert_eq!(m.remove1("B", None).await, Ok(Outcome::Executed));
    let args = amrpc_core::Args::new().with("id", "x");
    let when_args = m.when_args("B", args.clone(), None);
    assert_eq!(m.add1("B", Some(args)).await, Ok(Outcome::Executed));
    tokio::time::timeout(std::time::Duration::from_secs(2), when_args)
        .await
        .expect("signaled through the relay")
        .unwrap();
    assert!(m.is1("B"));
    assert_eq!(
        w.machine().wait_bindings(),
        0,
        "the met wait left no binding on the root"
    );
    leaf.close().await;
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_states_are_observable() {
    let srv = Server::new(ServerOpts::default());
    let w = srv.add_worker("w", worker()).unwrap();
    let addr = srv.spawn("127.0.0.1:0").await.unwrap();
    let c = Client::connect(
        &format!("ws://{addr}/ws/w"),
        ClientOpts {
            client_id: "rc-obs".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let sessions = w.sessions();
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s.client_id.as_deref(), Some("rc-obs"));
    assert!(
        s.states
            .is(&["Start", "RpcReady", "ClientConnected", "HandshakeDone", "Ready"]),
        "{}",
        s.states.string()
    );
    // the client's own states, as upstream's
    assert!(
        c.states().is(&["Start", "Connected", "HandshakeDone", "Ready"]),
        "{}",
        c.states().string()
    );
    c.close().await;
    tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while !w.sessions().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    srv.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_worker_is_a_typed_error_at_once() {
    let srv = Server::new(ServerOpts::default());
    srv.add_worker("w", worker()).unwrap();
    let addr = srv.spawn("127.0.0.1:0").await.unwrap();
    let started = std::time::Instant::now();
    let err = Client::connect(&format!("ws://{addr}/ws/nope"), ClientOpts::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            amrpc_core::Error::Rpc {
                code: amrpc_core::wire::ErrorCode::UnknownWorker,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "no retries for a final refusal"
    );
    srv.shutdown();
}
