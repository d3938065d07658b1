//! The transition stream over a real WebSocket: an inspector (native client with `stream`)
//! sees another client's mutation with its source, result, reason and steps.

use std::time::Duration;

use amrpc_client::{Client, ClientOpts, StreamEvent};
use amrpc_core::wire::{SourceMsg, TransitionMsg};
use amrpc_core::{Api, Machine, Opts, Outcome, State, schema, states, struct_merge};
use amrpc_server::{Server, ServerOpts};
use tokio::sync::broadcast;

mod relay_support;

fn worker() -> Machine {
    let own = schema([
        ("Online", State::new()),
        ("Downloading", State::new().require(&["Online"])),
    ]);
    let m = Machine::new(struct_merge(&[&states::worker_schema(), &own]), Opts::default()).unwrap();
    let mut names: Vec<&str> = states::WORKER_STATES.to_vec();
    names.extend(["Online", "Downloading"]);
    m.verify_states(&names).unwrap();
    m
}

async fn next_transition(rx: &mut broadcast::Receiver<StreamEvent>) -> std::sync::Arc<TransitionMsg> {
    match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        Ok(Ok(StreamEvent::Transition(t))) => t,
        Ok(Ok(StreamEvent::Dropped { n, .. })) => panic!("{n} dropped on an idle loopback"),
        Ok(Err(e)) => panic!("stream ended: {e}"),
        Err(_) => panic!("no transition within 5 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inspector_sees_another_clients_mutations() {
    let srv = Server::new(ServerOpts::default());
    let w = srv.add_worker("w", worker()).unwrap();
    let addr = srv.spawn("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{addr}/ws/w");
    let inspector = Client::connect(
        &url,
        ClientOpts {
            client_id: "inspector".into(),
            stream: true,
            ..ClientOpts::default()
        },
    )
    .await
    .unwrap();
    let mut rx = inspector.transitions();
    let app = Client::connect(
        &url,
        ClientOpts {
            client_id: "app".into(),
            ..ClientOpts::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(w.transition_log().unwrap().subscribers(), 1);
    assert_eq!(app.mirror().add1("Downloading", None).await, Ok(Outcome::Canceled));
    let names = inspector.mirror().machine().state_names();
    let t = next_transition(&mut rx).await;
    assert!(!t.accepted);
    assert!(
        matches!(&t.source, SourceMsg::Session { client, .. } if client == "app"),
        "{:?}",
        t.source
    );
    let why = t.why.as_ref().unwrap().to_why(&names);
    assert_eq!(why.to_string(), "Downloading requires Online");
    assert!(!t.steps.is_empty());
    // the worker's own change
    w.machine().add1("Online", None);
    let t = next_transition(&mut rx).await;
    assert_eq!(t.source, SourceMsg::Worker);
    assert!(t.accepted);
    let online = names.iter().position(|n| n == "Online").unwrap();
    assert_eq!(t.ticks[online], 1);
    assert_eq!(t.ticks, w.machine().time(None));
    app.close().await;
    inspector.close().await;
    srv.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_has_no_stream_and_says_so() {
    let r = relay_support::relayed(worker()).await;
    assert!(r.relay_worker.transition_log().is_none());
    let leaf = Client::connect(
        &r.leaf_url(),
        ClientOpts {
            stream: true,
            ..ClientOpts::default()
        },
    )
    .await
    .unwrap();
    // the session goes on: mutations still work
    assert_eq!(leaf.mirror().add1("Online", None).await, Ok(Outcome::Executed));
    leaf.close().await;
    r.shutdown().await;
}

/// `GET path` over a plain HTTP/1.1 connection; the response's status line and body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_endpoint_lists_sessions_and_schema_hashes() {
    let srv = Server::new(ServerOpts::default());
    srv.add_worker("a", worker()).unwrap();
    srv.add_worker("b", worker()).unwrap();
    let addr = srv.spawn("127.0.0.1:0").await.unwrap();
    let c1 = Client::connect(&format!("ws://{addr}/ws/a"), ClientOpts::default())
        .await
        .unwrap();
    let c2 = Client::connect(
        &format!("ws://{addr}/ws/a"),
        ClientOpts {
            stream: true,
            ..ClientOpts::default()
        },
    )
    .await
    .unwrap();
    let (status, body) = http_get(addr, "/api/workers").await;
    assert!(status.contains("200"), "{status}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "a");
    assert_eq!(list[0]["sessions"], 2);
    assert_eq!(list[0]["inspectors"], 1);
    assert_eq!(list[0]["stream"], true);
    assert_eq!(list[1]["sessions"], 0);
    // the hash a client sees in Welcome
    let m = c1.mirror().machine();
    let names = m.state_names();
    let hash = amrpc_core::wire::machine_schema_hash(m);
    assert_eq!(list[0]["schemaHash"], format!("{hash:016x}"));
    assert_eq!(list[0]["states"], names.len());
    c1.close().await;
    c2.close().await;
    srv.shutdown();
}
