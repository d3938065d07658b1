//! Integration tests of the server and the native client (issue 4, "What it must show" item 3):
//! convergence of 50 mirrors, a connection cut in the middle of a mutation, access rejections,
//! oversize and malformed frames, and a slow client that stops reading. Everything runs on
//! 127.0.0.1; every loop and wait is bounded.

mod fault_proxy;
mod rpc_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amrpc_client::{Client, ClientOpts};
use amrpc_core::states as names;
use amrpc_core::wire::{ClientMsg, ErrorCode};
use amrpc_core::{Api, Args, Error, Handlers, Machine, Outcome, State, Value, schema};
use amrpc_server::{AuthHook, ServerOpts};
use fault_proxy::*;
use futures::SinkExt;
use rpc_support::raw::*;
use rpc_support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::sync::RwLock;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// The RSS test needs the process to itself: it takes this for writing, every other test for
/// reading.
static EXCLUSIVE: RwLock<()> = RwLock::const_new(());

// ----- a. 50 clients converge -----

/// Rels A–D plus E–H: E Multi, F and G exclude each other, H requires E.
fn mixed_worker(id: &str) -> Machine {
    let mut own = rels_schema();
    for (n, s) in [
        ("E", State::new().multi()),
        ("F", State::new().remove(&["G"])),
        ("G", State::new().remove(&["F"])),
        ("H", State::new().require(&["E"])),
    ] {
        own.insert(n.to_string(), s);
    }
    let mut names = abcd_names();
    names.extend(["E", "F", "G", "H"].map(String::from));
    worker_with(id, &own, &names, None)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

const USER_STATES: [&str; 8] = ["A", "B", "C", "D", "E", "F", "G", "H"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_converge_after_10k_mixed_mutations() {
    within(TEST_LIMIT, "fifty_clients_converge_after_10k_mixed_mutations", async {
        let _g = EXCLUSIVE.read().await;
        const CLIENTS: usize = 50;
        const MUTATORS: usize = 5;
        const MUTATIONS: usize = 10_000;
        const IN_FLIGHT: usize = 1;
        // 2 000 mutations per client as fast as they go: past the default rate limit, which
        // has its own test (rate_limit_refuses_typed_and_loses_nothing)
        let unlimited = ServerOpts {
            mutation_rate: 0,
            ..Default::default()
        };
        let h = Harness::start(mixed_worker("w-converge"), unlimited).await;
        let url = h.url();
        let connects = (0..CLIENTS).map(|i| Client::connect(&url, copts(&format!("c{i}"))));
        let clients: Vec<Client> = within(WAIT * 2, "50 clients connect", futures::future::join_all(connects))
            .await
            .into_iter()
            .map(|r| r.expect("client connects"))
            .collect();
        assert_eq!(h.worker.session_count(), CLIENTS);

        let start = Instant::now();
        let mut tasks = Vec::new();
        for (k, c) in clients.iter().take(MUTATORS).enumerate() {
            let m = c.mirror().clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng::new(k as u64 + 1);
                let mut outcomes = [0usize; 3];
                for _ in 0..MUTATIONS / MUTATORS / IN_FLIGHT {
                    let mut calls = Vec::with_capacity(IN_FLIGHT);
                    for _ in 0..IN_FLIGHT {
                        let n = 1 + rng.below(3) as usize;
                        let states: Vec<&str> = (0..n).map(|_| USER_STATES[rng.below(8) as usize]).collect();
                        let m = &m;
                        let op = rng.below(3);
                        calls.push(async move {
                            match op {
                                0 => m.add(&states, None).await,
                                1 => m.remove(&states, None).await,
                                _ => m.set(&states, None).await,
                            }
                        });
                    }
                    for r in futures::future::join_all(calls).await {
                        match r.expect("mutation succeeds") {
                            Outcome::Executed => outcomes[0] += 1,
                            Outcome::Canceled => outcomes[1] += 1,
                            Outcome::Queued(_) => outcomes[2] += 1,
                        }
                    }
                }
                outcomes
            }));
        }
        let mut total = [0usize; 3];
        for t in tasks {
            let o = within(Duration::from_secs(40), "mutators finish", t).await.unwrap();
            for i in 0..3 {
                total[i] += o[i];
            }
        }
        let mutating = start.elapsed();
        assert_eq!(total.iter().sum::<usize>(), MUTATIONS);

        // after the last reply: every mirror reaches the worker's clock within a bounded wait
        let worker_time = h.w().time(None);
        let settle = Instant::now();
        eventually(WAIT, "every mirror converges", || {
            clients.iter().all(|c| c.mirror().time(None) == worker_time)
        })
        .await;
        let converged = settle.elapsed();
        eprintln!(
            "converge: {MUTATIONS} mutations (executed/canceled/queued {total:?}) from {MUTATORS} clients in \
         {mutating:?}; {CLIENTS} mirrors equal to the worker {converged:?} after the last reply"
        );
        assert_eq!(h.w().time(None), worker_time, "the worker is quiet");
        assert!(
            worker_time.iter().sum::<u64>() > 1000,
            "the clock moved: {worker_time:?}"
        );
        for c in &clients {
            assert_eq!(sorted(c.mirror().active_states()), sorted(h.w().active_states()));
            assert!(c.states().is1(names::READY));
            assert_eq!(tick(c.states(), names::CONNECTED), 1, "no reconnects");
        }
        for c in clients {
            c.close().await;
        }
        eventually(WAIT, "no sessions left", || h.worker.session_count() == 0).await;
        h.stop().await;
    })
    .await
}

/// Concurrent calls on one connection (what the convergence test would do with several calls in
/// flight per client): with Nagle's algorithm on, each reply written behind an unacknowledged one
/// waits for the peer's delayed ACK (~40 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_calls_are_not_delayed() {
    within(TEST_LIMIT, "pipelined_calls_are_not_delayed", async {
        let _g = EXCLUSIVE.read().await;
        let h = Harness::start(rels_worker("w-pipelined"), ServerOpts::default()).await;
        let c = Harness::client(&h.url(), copts("pipelined")).await;
        let m = c.mirror();
        let t = Instant::now();
        for _ in 0..100 {
            let calls: Vec<_> = (0..4).map(|_| m.add1("B", None)).collect();
            for r in within(WAIT, "4 calls", futures::future::join_all(calls)).await {
                r.unwrap();
            }
        }
        let took = t.elapsed();
        eprintln!("400 calls, 4 in flight: {took:?}");
        // sequential calls take ~60 ms for 400 here; with TCP_NODELAY on the server, ~30 ms
        assert!(
            took < Duration::from_secs(1),
            "400 calls with 4 in flight took {took:?}"
        );
        c.close().await;
        h.stop().await;
    })
    .await
}

// ----- b. a connection cut in the middle of a mutation -----

/// Rels + `Slow`, whose `SlowState` counts its runs, raises `started`, sleeps 300 ms, then
/// raises `done`.
fn slow_worker(id: &str) -> (Machine, Arc<AtomicUsize>, Arc<AtomicBool>, Arc<AtomicBool>) {
    let mut own = rels_schema();
    own.insert("Slow".into(), State::new());
    let mut names = abcd_names();
    names.push("Slow".into());
    let w = worker_with(id, &own, &names, Some(Duration::from_secs(5)));
    let runs = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let (r, s, d) = (runs.clone(), started.clone(), done.clone());
    w.bind_handlers(Handlers::new("slow").state("Slow", move |_e| {
        r.fetch_add(1, Ordering::SeqCst);
        s.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        d.store(true, Ordering::SeqCst);
    }))
    .unwrap();
    (w, runs, started, done)
}

/// Cut the proxied connection while `Slow` runs; the client reconnects, resyncs and resends.
/// With `reconnect_after_done`, the proxy turns the client away until the handler has finished
/// (the retry then finds the outcome in the replay cache); otherwise the retry reaches the server
/// while the original still runs (and waits for it). Returns how long the call took.
async fn cut_mid_mutation(id: &str, reconnect_after_done: bool, push_interval_ms: Option<u32>) -> Duration {
    let (w, runs, started, done) = slow_worker(&format!("w-{id}"));
    // the server gets its own runtime, as a separate process would; its session runs the blocking
    // handler with block_in_place, so the server keeps reading the cut connection meanwhile
    let h = Harness::start_isolated(w, ServerOpts::default());
    let p = Proxy::start(h.addr).await;
    let opts = ClientOpts {
        conn_retry_delay: Duration::from_millis(20),
        push_interval_ms,
        ..copts(id)
    };
    let c = Harness::client(&p.url(), opts).await;
    let before = h.w().time(None);

    let m = c.mirror().clone();
    let t0 = Instant::now();
    let call = tokio::spawn(async move { m.add1("Slow", Some(Args::new().with("n", 1i64))).await });
    eventually(WAIT, "the handler starts", || started.load(Ordering::SeqCst)).await;
    p.refuse(reconnect_after_done);
    p.cut();
    if reconnect_after_done {
        eventually(WAIT, "the handler returns", || done.load(Ordering::SeqCst)).await;
        // the old session records the outcome (replay cache) when the mutation returns, before it
        // reads the cut socket and ends: its end is the barrier
        eventually(WAIT, "the old session ends", || h.worker.session_count() == 0).await;
        p.refuse(false);
    }
    let r = within(WAIT, "the call returns", call).await.unwrap();
    let took = t0.elapsed();
    let resent = p
        .frames()
        .iter()
        .find(|f| f.conn == 2 && f.tag() == Some(cli_tag::ADD))
        .map(|f| f.at - t0);
    eprintln!("{id}: resent at {resent:?}, returned at {took:?}");

    assert_eq!(r, Ok(Outcome::Executed), "the original outcome");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the mutation ran exactly once");
    assert!(h.w().is1("Slow"));
    assert!(c.mirror().is1("Slow"), "read your writes after the resync");
    assert_eq!(h.w().tick("Slow"), before[h.w().index("Slow").unwrap()] + 1);
    assert_eq!(p.conns(), 2, "one reconnect through the proxy");
    if !reconnect_after_done {
        assert!(
            resent.is_some_and(|t| t < Duration::from_millis(250)),
            "resent while running: {resent:?}"
        );
    } else {
        assert!(
            resent.is_some_and(|t| t >= Duration::from_millis(300)),
            "resent after the handler: {resent:?}"
        );
    }
    assert!(
        tick(c.states(), names::DISCONNECTED) >= 1,
        "{}",
        c.states().string_all()
    );
    assert!(c.states().is1(names::READY));
    // the same request went out on both connections, byte for byte (same request id)
    let adds: Vec<Frame> = p
        .frames()
        .into_iter()
        .filter(|f| f.dir == Dir::Up && f.tag() == Some(cli_tag::ADD))
        .collect();
    assert!(
        adds.iter().any(|f| f.conn == 1) && adds.iter().any(|f| f.conn == 2),
        "{adds:?}"
    );
    assert!(adds.iter().all(|f| f.head == adds[0].head), "{adds:?}");
    let wt = h.w().time(None);
    eventually(WAIT, "the mirror equals the worker", || c.mirror().time(None) == wt).await;
    // the session keeps working
    assert_eq!(c.mirror().add(&["A", "C"], None).await, Ok(Outcome::Executed));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    c.close().await;
    eventually(WAIT, "no sessions left", || h.worker.session_count() == 0).await;
    h.stop().await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_mid_mutation_reconnect_while_running() {
    within(TEST_LIMIT, "cut_mid_mutation_reconnect_while_running", async {
        let _g = EXCLUSIVE.read().await;
        // the retry finds the original still running (a deferred reply)
        let took = cut_mid_mutation("cut-running", false, None).await;
        eprintln!("cut mid-mutation, reconnect while running: the call took {took:?}");
        assert!(took < Duration::from_secs(2), "took {took:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_mid_mutation_reconnect_after_done() {
    within(TEST_LIMIT, "cut_mid_mutation_reconnect_after_done", async {
        let _g = EXCLUSIVE.read().await;
        // the retry finds the finished outcome in the replay cache
        let took = cut_mid_mutation("cut-done", true, None).await;
        eprintln!("cut mid-mutation, reconnect after the handler: the call took {took:?}");
        assert!(took < Duration::from_secs(2), "took {took:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_mid_mutation_reconnect_while_running_pushes_off() {
    within(
        TEST_LIMIT,
        "cut_mid_mutation_reconnect_while_running_pushes_off",
        async {
            let _g = EXCLUSIVE.read().await;
            // as above with pushes off (push interval 0): the deferred reply must not wait for a push
            let took = cut_mid_mutation("cut-running-nopush", false, Some(0)).await;
            eprintln!("cut mid-mutation, pushes off: the call took {took:?}");
            assert!(took < Duration::from_secs(2), "took {took:?} (the call timeout is 3 s)");
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_handler_does_not_stall_other_sessions() {
    within(TEST_LIMIT, "blocking_handler_does_not_stall_other_sessions", async {
        let _g = EXCLUSIVE.read().await;
        let (w, _runs, started, done) = slow_worker("w-stall");
        // the server alone on its 2-worker runtime; one worker thread runs the 300 ms handler
        let h = Harness::start_isolated(w, ServerOpts::default());
        let a = Harness::client(&h.url(), copts("a")).await;
        let b = Harness::client(&h.url(), copts("b")).await;
        let m = a.mirror().clone();
        let call = tokio::spawn(async move { m.add1("Slow", None).await });
        eventually(WAIT, "the handler starts", || started.load(Ordering::SeqCst)).await;

        // another session's call, and a new connection, while the handler runs
        let t = Instant::now();
        let r = within(WAIT, "b's call", b.mirror().add(&["A", "C"], None)).await;
        let b_call = t.elapsed();
        let t = Instant::now();
        let (ws, _) = within(WAIT, "a new connection", tokio_tungstenite::connect_async(h.url()))
            .await
            .unwrap();
        let upgrade = t.elapsed();
        let handler_was_running = !done.load(Ordering::SeqCst);
        eprintln!("while a handler blocks: another session's call {b_call:?} ({r:?}), a WS upgrade {upgrade:?}");
        drop(ws);
        within(WAIT, "a's call", call).await.unwrap().unwrap();
        assert!(r.is_ok());
        assert!(
            handler_was_running && b_call < Duration::from_millis(100),
            "b's call took {b_call:?}"
        );
        assert!(upgrade < Duration::from_millis(100), "the upgrade took {upgrade:?}");
        a.close().await;
        b.close().await;
        h.stop().await;
    })
    .await
}

// ----- c. access rejections -----

fn rejected(r: Result<Client, amrpc_core::Error>, code: ErrorCode, what: &str) {
    match r {
        Err(amrpc_core::Error::Rpc { code: c, message }) => {
            assert_eq!(c, code, "{what}: {message}");
        }
        Err(e) => panic!("{what}: expected Rejected({code:?}), got {e}"),
        Ok(_) => panic!("{what}: expected Rejected({code:?}), connected"),
    }
}

async fn try_connect(url: &str, opts: ClientOpts) -> Result<Client, amrpc_core::Error> {
    let opts = ClientOpts {
        conn_retries: 2,
        conn_retry_delay: Duration::from_millis(20),
        ..opts
    };
    within(WAIT, url, Client::connect(url, opts)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_client_id() {
    within(TEST_LIMIT, "rejected_client_id", async {
        let _g = EXCLUSIVE.read().await;
        let opts = ServerOpts {
            allow_ids: Some(vec!["rc-allowed".into()]),
            ..Default::default()
        };
        let h = Harness::start(rels_worker("w-allow"), opts).await;
        let before = h.w().time(None);
        rejected(
            try_connect(&h.url(), copts("intruder")).await,
            ErrorCode::AccessDenied,
            "id",
        );
        rejected(
            try_connect(&h.url(), copts("")).await,
            ErrorCode::AccessDenied,
            "empty id",
        );
        assert_eq!(h.w().time(None), before, "the worker is untouched");
        eventually(WAIT, "rejected sessions closed", || h.worker.session_count() == 0).await;
        // the allowed id gets in
        let c = try_connect(&h.url(), copts("rc-allowed")).await.expect("allowed id");
        c.close().await;
        h.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_token_in_hello_and_url() {
    within(TEST_LIMIT, "rejected_token_in_hello_and_url", async {
        let _g = EXCLUSIVE.read().await;
        let auth: AuthHook = Arc::new(|_id: &str, token: Option<&str>| token == Some("secret"));
        let opts = ServerOpts {
            auth: Some(auth),
            ..Default::default()
        };
        let h = Harness::start(rels_worker("w-auth"), opts).await;
        let before = h.w().time(None);
        let with_token = |t: &str| ClientOpts {
            token: Some(t.into()),
            ..copts("tok")
        };
        rejected(
            try_connect(&h.url(), copts("tok")).await,
            ErrorCode::Unauthorized,
            "no token",
        );
        rejected(
            try_connect(&h.url(), with_token("wrong")).await,
            ErrorCode::Unauthorized,
            "Hello token",
        );
        let bad_url = format!("{}?token=wrong", h.url());
        rejected(
            try_connect(&bad_url, copts("tok")).await,
            ErrorCode::Unauthorized,
            "URL token",
        );
        assert_eq!(h.w().time(None), before, "the worker is untouched");
        eventually(WAIT, "rejected sessions closed", || h.worker.session_count() == 0).await;
        // the right token gets in, either way
        let c = try_connect(&h.url(), with_token("secret")).await.expect("Hello token");
        c.close().await;
        let good_url = format!("{}?token=secret", h.url());
        let c = try_connect(&good_url, copts("tok")).await.expect("URL token");
        assert_eq!(c.mirror().add(&["A", "C"], None).await, Ok(Outcome::Executed));
        c.close().await;
        h.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_origin() {
    within(TEST_LIMIT, "rejected_origin", async {
        let _g = EXCLUSIVE.read().await;
        // by default only the server's own origin; with a list, those too
        for list in [vec![], vec!["https://app.example".to_string()]] {
            let opts = ServerOpts {
                allowed_origins: list.clone(),
                ..Default::default()
            };
            let h = Harness::start(rels_worker("w-origin"), opts).await;
            let before = h.w().time(None);
            let with_origin = |o: &str| {
                let mut req = h.url().into_client_request().unwrap();
                req.headers_mut().insert("Origin", o.parse().unwrap());
                req
            };
            let own = format!("http://{}", h.addr);
            for evil in [
                "https://evil.example",
                "null",
                "http://127.0.0.1.evil.example",
                &own.replace("http://", "http://x"),
            ] {
                match within(WAIT, "evil origin", tokio_tungstenite::connect_async(with_origin(evil))).await {
                    Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403, "{evil}"),
                    Err(e) => panic!("{evil}: expected an HTTP 403, got {e}"),
                    Ok(_) => panic!("{evil}: expected an HTTP 403, got a WebSocket"),
                }
            }
            assert_eq!(h.w().time(None), before, "the worker is untouched");
            assert_eq!(h.worker.session_count(), 0);
            // the server's own origin, a listed one, and no Origin at all (not a browser) get in
            let mut good = vec![own.clone()];
            good.extend(list.iter().cloned());
            for o in &good {
                let (mut ws, _) = within(WAIT, "good origin", tokio_tungstenite::connect_async(with_origin(o)))
                    .await
                    .unwrap_or_else(|e| panic!("{o}: {e}"));
                ws.close(None).await.unwrap();
            }
            let c = try_connect(&h.url(), copts("native")).await.expect("no Origin header");
            c.close().await;
            h.stop().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_state_mutation() {
    within(TEST_LIMIT, "rejected_state_mutation", async {
        let _g = EXCLUSIVE.read().await;
        let opts = ServerOpts {
            mutable_states: Some(vec!["A".into(), "C".into()]),
            ..Default::default()
        };
        let h = Harness::start(rels_worker("w-mutable"), opts).await;
        let c = try_connect(&h.url(), copts("limited")).await.expect("connects");
        let before = h.w().time(None);
        for (what, r) in [
            ("add B", c.mirror().add1("B", None).await),
            ("add A, B", c.mirror().add(&["A", "B"], None).await),
            ("remove D", c.mirror().remove1("D", None).await),
            ("set D", c.mirror().set(&["D"], None).await),
        ] {
            match r {
                Err(Error::Rpc {
                    code: ErrorCode::Forbidden,
                    ..
                }) => {}
                other => panic!("{what}: expected Forbidden, got {other:?}"),
            }
        }
        assert_eq!(h.w().time(None), before, "the worker is untouched");
        assert_eq!(c.mirror().time(None), before);
        // allowed states still work on the same session
        assert_eq!(c.mirror().add(&["A", "C"], None).await, Ok(Outcome::Executed));
        assert!(h.w().is(&["A", "C"]));
        assert_eq!(tick(c.states(), names::CONNECTED), 1, "the session stayed open");
        c.close().await;
        h.stop().await;
    })
    .await
}

// ----- d. oversize and malformed frames -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_malformed_frames_close_only_their_session() {
    within(
        TEST_LIMIT,
        "oversize_and_malformed_frames_close_only_their_session",
        async {
            let _g = EXCLUSIVE.read().await;
            const MAX: usize = 4096;
            let opts = ServerOpts {
                max_message_size: MAX,
                ..Default::default()
            };
            let h = Harness::start(rels_worker("w-frames"), opts).await;
            let good = Harness::client(&h.url(), copts("good")).await;
            let url = h.url();
            let mut rng = Rng::new(7);
            let mut step = 0u64;

            // after each offender: only its session is gone, the good client works
            async fn check(h: &Harness, good: &Client, step: &mut u64, what: &str) {
                eventually(WAIT, what, || h.worker.session_count() == 1).await;
                let s = if *step % 2 == 0 { "B" } else { "D" };
                *step += 1;
                assert!(
                    good.mirror().add1(s, None).await.is_ok(),
                    "{what}: the good client works"
                );
                assert_eq!(good.mirror().time(None), h.w().time(None), "{what}");
                assert_eq!(
                    tick(good.states(), names::CONNECTED),
                    1,
                    "{what}: the good client never reconnected"
                );
                assert_eq!(tick(good.states(), names::DISCONNECTED), 0, "{what}");
            }

            // 1. a binary message over max_message_size (after a valid Hello)
            let mut ws = raw_open(&url, "big").await;
            eventually(WAIT, "the raw session opens", || h.worker.session_count() == 2).await;
            ws.send(Message::Binary(vec![1u8; MAX * 2].into())).await.unwrap();
            let (msgs, close) = read_to_end(&mut ws).await;
            eprintln!("oversize: {msgs:?} {close:?}");
            assert!(matches!(bye_code(&msgs), Some(ErrorCode::TooLarge) | None), "{msgs:?}");
            check(&h, &good, &mut step, "oversize").await;

            // 2. a message just at the limit is not "too large" (it is malformed here)
            let mut ws = raw_open(&url, "at-limit").await;
            let mut at_limit = rng.bytes(MAX);
            at_limit[0] = 0x7f;
            ws.send(Message::Binary(at_limit.into())).await.unwrap();
            let (msgs, _) = read_to_end(&mut ws).await;
            assert_eq!(bye_code(&msgs), Some(ErrorCode::Malformed), "{msgs:?}");
            check(&h, &good, &mut step, "at the limit").await;

            // 3. random bytes, before and after the handshake
            for round in 0..6 {
                let len = 1 + rng.below(200) as usize;
                let mut junk = rng.bytes(len);
                junk[0] = 0x40 | (junk[0] & 0x3f); // no valid message tag
                let mut ws = if round % 2 == 0 {
                    raw_open(&url, "junk").await
                } else {
                    let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
                    ws
                };
                ws.send(Message::Binary(junk.into())).await.unwrap();
                let (msgs, close) = read_to_end(&mut ws).await;
                assert_eq!(bye_code(&msgs), Some(ErrorCode::Malformed), "{msgs:?}");
                assert_eq!(close.map(|c| u16::from(c.code)), Some(1008));
                check(&h, &good, &mut step, "random bytes").await;
            }

            // 4. a valid message out of order (a mutation before Hello), and Hello twice
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
            let add = ClientMsg::Add(amrpc_core::wire::MutationReq {
                req: 1,
                states: vec![1],
                args: Args::new(),
            });
            ws.send(Message::Binary(add.encode().unwrap().into())).await.unwrap();
            assert_eq!(bye_code(&read_to_end(&mut ws).await.0), Some(ErrorCode::NotReady));
            let mut ws = raw_open(&url, "twice").await;
            ws.send(Message::Binary(hello("twice").into())).await.unwrap();
            assert_eq!(bye_code(&read_to_end(&mut ws).await.0), Some(ErrorCode::NotReady));
            check(&h, &good, &mut step, "out of order").await;

            // 5. a valid message with trailing bytes, and an out-of-range state index
            let mut ws = raw_open(&url, "trailing").await;
            let mut b = add.encode().unwrap();
            b.push(0);
            ws.send(Message::Binary(b.into())).await.unwrap();
            assert_eq!(bye_code(&read_to_end(&mut ws).await.0), Some(ErrorCode::Malformed));
            check(&h, &good, &mut step, "trailing bytes").await;

            // 6. a text frame
            let mut ws = raw_open(&url, "text").await;
            ws.send(Message::Text("hello".into())).await.unwrap();
            let (msgs, close) = read_to_end(&mut ws).await;
            assert_eq!(bye_code(&msgs), Some(ErrorCode::Malformed), "{msgs:?}");
            assert_eq!(close.map(|c| u16::from(c.code)), Some(1008));
            check(&h, &good, &mut step, "text frame").await;

            // 7. WebSocket-level garbage: an unmasked client frame, reserved bits, a bad opcode
            let frame = |first: u8, masked: bool| {
                let payload = hello("raw");
                let mut f = vec![first, payload.len() as u8 | if masked { 0x80 } else { 0 }];
                if masked {
                    f.extend([0, 0, 0, 0]); // a zero mask key: the payload stays as is
                }
                f.extend(payload);
                f
            };
            for (what, bytes) in [
                ("unmasked frame", frame(0x82, false)),
                ("reserved bits", frame(0xf2, true)),
                ("reserved opcode", frame(0x83, true)),
                ("not a frame at all", rng.bytes(64)),
            ] {
                let mut s = raw_tcp_upgrade(h.addr).await;
                eventually(WAIT, what, || h.worker.session_count() == 2).await;
                s.write_all(&bytes).await.unwrap();
                tcp_until_closed(&mut s).await;
                check(&h, &good, &mut step, what).await;
            }

            // 8. a valid frame after all that, on a fresh raw connection, still works
            let mut ws = raw_open(&url, "fine").await;
            ws.send(Message::Binary(ClientMsg::Bye.encode().unwrap().into()))
                .await
                .unwrap();
            let (msgs, _) = read_to_end(&mut ws).await;
            assert!(bye_code(&msgs).is_none(), "a clean bye: {msgs:?}");
            check(&h, &good, &mut step, "clean bye").await;

            good.close().await;
            h.stop().await;
        },
    )
    .await
}

// ----- e. a slow client that stops reading -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_closed_and_memory_stays_bounded() {
    within(TEST_LIMIT, "slow_client_is_closed_and_memory_stays_bounded", async {
        let _g = EXCLUSIVE.write().await;
        const SEND_TIMEOUT: Duration = Duration::from_millis(500);
        const PAYLOAD: usize = 16 << 10;
        let mut own = schema([]);
        let mut names = abcd_names();
        for i in 0..64 {
            own.insert(format!("S{i}"), State::new().multi());
            names.push(format!("S{i}"));
        }
        own.extend(rels_schema());
        let w = worker_with("w-slow", &own, &names, None);
        let opts = ServerOpts {
            // small, but above tungstenite's 128 KiB write buffer: see small_max_write_buffer below
            max_write_buffer: 160 << 10,
            send_timeout: SEND_TIMEOUT,
            // the healthy client's mutations run flat out
            mutation_rate: 0,
            ..Default::default()
        };
        let h = Harness::start(w, opts).await;
        let healthy = Harness::client(&h.url(), copts("healthy")).await;

        // the worker changes constantly: 64 Multi states ticked, and payloads for the slow client
        let w = h.w().clone();
        let payload = Value::Bytes(vec![0xab; PAYLOAD]);
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let (w, stop, payload) = (w.clone(), stop.clone(), payload.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(3);
                let mut sent = 0u64;
                let until = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    for _ in 0..16 {
                        w.add1(&format!("S{}", rng.below(64)), None);
                    }
                    let args = Args::new()
                        .with("name", "blob")
                        .with("data", payload.clone())
                        .with("destination", "slow");
                    w.add1(names::SEND_PAYLOAD, Some(args));
                    sent += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
                sent
            })
        };
        // warm up: the healthy client follows, allocator arenas settle
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_before = rss_bytes();

        // the slow client: a small receive buffer, a valid Hello, then it never reads again
        let sock = TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let stream = sock.connect(h.addr).await.unwrap();
        let (mut slow, _) = within(WAIT, "slow handshake", tokio_tungstenite::client_async(h.url(), stream))
            .await
            .unwrap();
        slow.send(Message::Binary(hello("slow").into())).await.unwrap();
        let opened = Instant::now();
        eventually(WAIT, "the slow session opens", || h.worker.session_count() == 2).await;

        // the server closes it: its socket backs up, one send waits SEND_TIMEOUT, then the close
        let rss_peak = Arc::new(Mutex::new(rss_before));
        let peak = rss_peak.clone();
        eventually(Duration::from_secs(15), "the slow session is closed", || {
            let r = rss_bytes();
            let mut p = peak.lock().unwrap();
            *p = (*p).max(r);
            h.worker.session_count() == 1
        })
        .await;
        let closed_after = opened.elapsed();
        stop.store(true, Ordering::SeqCst);
        let sent = churn.join().unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rss_after = rss_bytes();
        let peak = *rss_peak.lock().unwrap();
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        eprintln!(
            "slow client: closed {closed_after:?} after its Hello ({sent} payloads of {PAYLOAD} B sent); RSS before \
         {:.1} MiB, peak {:.1} MiB, after {:.1} MiB (growth {:+.2} MiB)",
            mib(rss_before),
            mib(peak),
            mib(rss_after),
            mib(rss_after) - mib(rss_before)
        );
        assert!(
            closed_after < Duration::from_secs(10),
            "closed after {closed_after:?} (send timeout {SEND_TIMEOUT:?})"
        );
        assert!(
            peak.saturating_sub(rss_before) < 8 << 20,
            "RSS peak grew {:.1} MiB",
            mib(peak - rss_before)
        );
        assert!(
            rss_after.saturating_sub(rss_before) < 4 << 20,
            "RSS grew {:.1} MiB",
            mib(rss_after - rss_before)
        );

        // the healthy client was never disturbed and still converges
        let wt = h.w().time(None);
        eventually(WAIT, "the healthy client converges", || {
            healthy.mirror().time(None) == wt
        })
        .await;
        assert_eq!(tick(healthy.states(), names::CONNECTED), 1);
        drop(slow);
        healthy.close().await;
        h.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_max_write_buffer() {
    within(TEST_LIMIT, "small_max_write_buffer", async {
        let _g = EXCLUSIVE.read().await;
        // 64 KiB: below tungstenite's default write_buffer_size (128 KiB); tungstenite asserts
        // max_write_buffer_size > write_buffer_size when the upgraded socket is built
        let opts = ServerOpts {
            max_write_buffer: 64 << 10,
            ..Default::default()
        };
        let h = Harness::start(rels_worker("w-small-buffer"), opts).await;
        // no reconnects: every session task panics, and the client would redial in a hot loop (bug 4)
        let opts = ClientOpts {
            reconnect: false,
            ..copts("small-buffer")
        };
        let c = try_connect(&h.url(), opts).await.expect("connects");
        assert_eq!(c.mirror().add(&["A", "C"], None).await, Ok(Outcome::Executed));
        c.close().await;
        h.stop().await;
    })
    .await
}

/// A server that completes the WebSocket upgrade and drops the connection at once (a crashing or
/// overloaded server, a proxy): the client must back off and, with `conn_retries` 3, give up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_back_off_when_the_server_drops_connections() {
    within(TEST_LIMIT, "reconnects_back_off", async {
        let _g = EXCLUSIVE.read().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        let server = tokio::spawn(async move {
            for _ in 0..1_000_000 {
                let Ok((s, _)) = listener.accept().await else { return };
                n.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(ws) = tokio_tungstenite::accept_async(s).await {
                        drop(ws);
                    }
                });
            }
        });
        let opts = ClientOpts {
            conn_retries: 3,
            conn_retry_delay: Duration::from_millis(50),
            ..copts("hot")
        };
        let url = format!("ws://{addr}/ws/w");
        let r = tokio::time::timeout(Duration::from_secs(3), Client::connect(&url, opts)).await;
        server.abort();
        let n = accepted.load(Ordering::SeqCst);
        eprintln!("dropping server: {n} connections in {:?}", Duration::from_secs(3));
        assert!(n <= 20, "{n} connections: no backoff");
        assert!(
            matches!(r, Ok(Err(_))),
            "connect gives up: {:?}",
            r.map(|r| r.map(|_| ()))
        );
    })
    .await
}
