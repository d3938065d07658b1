//! Issue 14: workers and edge servers over NATS (JetStream) with a real `nats-server` per
//! test. A worker host publishes a machine; edge servers mirror it from NATS and serve it over
//! WebSocket; mutations from any edge run on the worker, at most once per client call.

mod nats_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use amrpc_client::{Client, ClientOpts};
use amrpc_core::session::CallId;
use amrpc_core::states as names;
use amrpc_core::{Api, ErrorCode, Handlers, Machine, MutationType, Outcome};
use amrpc_nats::msg::{self, MutateReq, Reply, Request};
use amrpc_nats::subjects::Subjects;
use amrpc_nats::{BridgeError, EdgeMirror, EdgeOpts};
use nats_support::{Nats, edge, host};

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {WAIT:?}"))
}

/// `A`–`D` with a counter of `A`'s final-handler runs.
fn counted_worker() -> (Machine, Arc<AtomicUsize>) {
    let m = amrpc_server::demo::abcd_worker().expect("worker");
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    m.bind_handlers(Handlers::new("count").state("A", move |_| {
        r.fetch_add(1, Ordering::SeqCst);
    }))
    .expect("handlers");
    (m, runs)
}

async fn client(url: &str) -> Client {
    let c = within("connect", Client::connect(url, ClientOpts::default()))
        .await
        .expect("connect");
    within("Ready", c.states().when1(names::READY, None))
        .await
        .expect("Ready");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_serves_a_worker_it_does_not_host() {
    let nats = Nats::start().await;
    let (m, runs) = counted_worker();
    let h = host(&nats, "abcd", m.clone()).await;
    let e = edge(&nats, "abcd").await;
    let c = client(&e.url("abcd")).await;
    let mirror = c.mirror();
    assert_eq!(
        mirror.time(None),
        m.time(None),
        "the handshake shows the worker's clock"
    );
    assert_eq!(within("add", mirror.add1("A", None)).await.unwrap(), Outcome::Executed);
    // read-your-writes through two hops: the reply already carries the change
    assert!(mirror.is1("A"));
    assert!(m.is1("A"));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // a change made on the worker reaches the edge's client
    m.add1("B", None);
    within("B on the edge", mirror.when1("B", None)).await.unwrap();
    // and a client of the worker's own server sees the edge client's change
    let local = client(&format!("ws://{}/ws/abcd", h.addr)).await;
    assert!(local.mirror().is(&["A", "B"]));
    assert_eq!(
        within("remove", mirror.remove1("A", None)).await.unwrap(),
        Outcome::Executed
    );
    within("A off locally", local.mirror().when_not1("A", None))
        .await
        .unwrap();
    assert_eq!(mirror.time(None), m.time(None));
    // remote waits are evaluated on the worker
    // (the wait and then the mutation, through the same edge: bound on the worker in that order)
    let w = mirror.when_args("C", amrpc_core::Args::new().with("n", 3i64), None);
    let added = mirror.add1("C", Some(amrpc_core::Args::new().with("n", 3i64)));
    assert_eq!(within("add C", added).await.unwrap(), Outcome::Executed);
    within("remote WhenArgs", w).await.expect("met on the worker");
    assert!(mirror.is1("C"));
    assert_eq!(e.server.worker("abcd").unwrap().session_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_worker_is_a_typed_error() {
    let nats = Nats::start().await;
    let err = EdgeMirror::connect(nats.client().await, "nope", EdgeOpts::default())
        .await
        .expect_err("no host published it");
    assert!(matches!(err, BridgeError::UnknownWorker(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::UnknownWorker);
    let bad = EdgeMirror::connect(nats.client().await, "a.b", EdgeOpts::default())
        .await
        .expect_err("not a token");
    assert!(matches!(bad, BridgeError::BadName(_)), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_resent_through_another_edge_runs_once() {
    let nats = Nats::start().await;
    let (m, runs) = counted_worker();
    let _h = host(&nats, "abcd", m.clone()).await;
    let e1 = edge(&nats, "abcd").await;
    let e2 = edge(&nats, "abcd").await;
    let a = u16::try_from(m.index("A").unwrap()).unwrap();
    let call = CallId { key: 42, req: 7 };
    let first = within(
        "first",
        e1.mirror
            .mutate_call(call, MutationType::Add, vec![a], Default::default()),
    )
    .await
    .unwrap();
    assert_eq!(first.0, Outcome::Executed);
    m.remove1("A", None);
    // the same call through the other edge: answered from the worker's replay cache
    let again = within(
        "resend",
        e2.mirror
            .mutate_call(call, MutationType::Add, vec![a], Default::default()),
    )
    .await
    .unwrap();
    assert_eq!(again.0, Outcome::Executed);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler ran once");
    assert!(!m.is1("A"), "the resend did not run again");
    // both edges announce the worker's replay id, so clients may resend across them
    assert_eq!(e1.mirror.replay_id(), e2.mirror.replay_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_over_nats_is_typed_and_never_reaches_handlers() {
    let nats = Nats::start().await;
    let (m, runs) = counted_worker();
    let _h = host(&nats, "abcd", m.clone()).await;
    let e = edge(&nats, "abcd").await;
    let nc = nats.client().await;
    let s = Subjects::new("amrpc", "abcd").unwrap();
    let ask = |bytes: Vec<u8>| {
        let nc = nc.clone();
        let subject = s.rpc.clone();
        async move {
            let r = within("request", nc.request(subject, bytes.into()))
                .await
                .expect("a reply");
            msg::decode::<Reply>("reply", &r.payload).expect("a well-formed reply")
        }
    };
    // garbage on the mutate subject
    match ask(b"\xff\xff\xff garbage".to_vec()).await {
        Reply::Failed { code, .. } => assert_eq!(code, ErrorCode::Malformed),
        r => panic!("{r:?}"),
    }
    let a = u16::try_from(m.index("A").unwrap()).unwrap();
    let req = |hash: u64, states: Vec<u16>| {
        Request::Mutate(MutateReq {
            schema_hash: hash,
            incarnation: 0,
            key: 1,
            req: 1,
            ty: MutationType::Add,
            states,
            args: Default::default(),
        })
    };
    let hash = amrpc_core::wire::machine_schema_hash(&m);
    // a schema mismatch
    match ask(msg::encode(&req(hash ^ 1, vec![a])).unwrap()).await {
        Reply::Failed { code, .. } => assert_eq!(code, ErrorCode::SchemaMismatch),
        r => panic!("{r:?}"),
    }
    // a mutation for another incarnation of the worker (its replay memory is not this one's)
    let mut stale = req(hash, vec![a]);
    if let Request::Mutate(r) = &mut stale {
        r.incarnation = 12345;
    }
    match ask(msg::encode(&stale).unwrap()).await {
        Reply::Failed { code, .. } => assert_eq!(code, ErrorCode::Disconnected),
        r => panic!("{r:?}"),
    }
    // an index out of range
    match ask(msg::encode(&req(hash, vec![999])).unwrap()).await {
        Reply::Failed { code, .. } => assert_eq!(code, ErrorCode::InvalidParams),
        r => panic!("{r:?}"),
    }
    // a wait of another schema, and of a state out of range
    let wait = |hash: u64, state: u16| {
        Request::Wait(msg::WaitReq::Args {
            schema_hash: hash,
            state,
            args: Default::default(),
        })
    };
    match ask(msg::encode(&wait(hash ^ 1, a)).unwrap()).await {
        Reply::Failed { code, .. } => assert_eq!(code, ErrorCode::SchemaMismatch),
        r => panic!("{r:?}"),
    }
    match ask(msg::encode(&wait(hash, 999)).unwrap()).await {
        Reply::Failed { code, .. } => assert_eq!(code, ErrorCode::InvalidParams),
        r => panic!("{r:?}"),
    }
    // (forged and stray replies to an edge's inbox: the unit tests of `edge/rpc.rs`)
    // garbage and a forged clock on the clock subject
    nc.publish(s.clock.clone(), b"not a clock".as_slice().into())
        .await
        .unwrap();
    let forged = msg::ClockMsg {
        incarnation: 1,
        seq: 1,
        update: amrpc_core::wire::ClockUpdate {
            seq: 1,
            checksum: 0,
            ticks: amrpc_core::wire::clock::Ticks::Full(vec![99; m.state_names().len()]),
        },
        err: None,
    };
    nc.publish(s.clock.clone(), msg::encode(&forged).unwrap().into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no handler ran");
    assert!(!m.is1("A"));
    // the edge still follows the worker
    m.add1("B", None);
    within("edge follows", e.mirror.machine().when1("B", None))
        .await
        .unwrap();
    assert_eq!(e.mirror.machine().time(None), m.time(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_reach_the_clients_of_every_edge() {
    let nats = Nats::start().await;
    let (m, _) = counted_worker();
    let _h = host(&nats, "abcd", m.clone()).await;
    let e1 = edge(&nats, "abcd").await;
    let e2 = edge(&nats, "abcd").await;
    let c1 = client(&e1.url("abcd")).await;
    let c2 = client(&e2.url("abcd")).await;
    let (mut p1, mut p2) = (c1.payloads(), c2.payloads());
    let args = amrpc_core::Args::new()
        .with("name", "hello")
        .with("data", amrpc_core::Value::Bytes(b"hi there".to_vec()));
    m.add1(names::SEND_PAYLOAD, Some(args));
    for p in [&mut p1, &mut p2] {
        let got = within("payload", p.recv()).await.expect("a payload");
        assert_eq!(
            (got.name.as_str(), got.data.as_slice()),
            ("hello", b"hi there".as_slice())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_restarts_elsewhere_is_found_again_by_name() {
    let nats = Nats::start().await;
    let (m1, _) = counted_worker();
    let h1 = host(&nats, "abcd", m1.clone()).await;
    // an edge that serves whatever the bucket names
    let server = amrpc_server::Server::new(amrpc_server::ServerOpts::default());
    let link = amrpc_nats::connect(&nats.url(), "edge").await.unwrap();
    let _edge = amrpc_server::nats::serve_edge(server.clone(), link, Default::default())
        .await
        .unwrap();
    let addr = server.spawn("127.0.0.1:0").await.unwrap();
    within("served", async {
        while server.worker("abcd").is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let c = client(&format!("ws://{addr}/ws/abcd")).await;
    assert_eq!(
        within("add A", c.mirror().add1("A", None)).await.unwrap(),
        Outcome::Executed
    );
    let replay_before = server.worker("abcd").unwrap().replay_cache().id();
    // the host goes away; a new one (a fresh machine: its clock starts over) takes the name
    drop(h1);
    let (m2, runs2) = counted_worker();
    let _h2 = host(&nats, "abcd", m2.clone()).await;
    // the client is moved to the new mirror and shows the new worker's clock (A is off there)
    within("the new worker's clock", c.mirror().when_not1("A", None))
        .await
        .unwrap();
    within("Ready again", c.states().when1(names::READY, None))
        .await
        .unwrap();
    let served = server.worker("abcd").unwrap();
    assert_ne!(
        served.replay_cache().id(),
        replay_before,
        "the new worker's replay memory"
    );
    assert_eq!(
        within("add B", c.mirror().add1("B", None)).await.unwrap(),
        Outcome::Executed
    );
    assert!(m2.is1("B") && !m1.is1("B"), "the call went to the new worker");
    assert_eq!(runs2.load(Ordering::SeqCst), 0);
    assert_eq!(c.mirror().time(None), m2.time(None));
}
