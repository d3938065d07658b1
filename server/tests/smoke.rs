//! The server and the native client over a real WebSocket on 127.0.0.1.
use amrpc_core::{Api, Machine, Opts, Outcome, State, schema, struct_merge};
use amrpc_server::{Client, ClientOpts, Server, ServerOpts, states};

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
