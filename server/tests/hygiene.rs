//! WebSocket hygiene and per-session limits, over real sockets: a client's Close is answered
//! with a Close (RFC 6455 §5.5.1); connections that never say `Hello` are closed at the
//! deadline; a peer that stops answering pings is dropped while a live one stays; mutations
//! past the session's rate fail with `RateLimited` without running and the session goes on.
mod rpc_support;

use std::time::Duration;

use amrpc_core::wire::ServerMsg;
use amrpc_core::{Api, Error, ErrorCode, Outcome};
use amrpc_server::ServerOpts;
use futures::{SinkExt, StreamExt};
use rpc_support::raw::hello;
use rpc_support::{Harness, TEST_LIMIT, copts, eventually, rels_worker, tick, within};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(20);

/// The server's close frame code of a raw socket's next messages (skipping data frames), or
/// `None` if the TCP connection ended without one.
async fn close_code<S>(ws: &mut S) -> Option<u16>
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(f))) => return Some(f.map_or(1005, |f| f.code.into())),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_is_answered_with_a_close() {
    within(TEST_LIMIT, "a_close_is_answered_with_a_close", async {
        let h = Harness::start(rels_worker("w-close"), ServerOpts::default()).await;
        const N: usize = 300;
        let mut answered = 0;
        for i in 0..N {
            let (mut ws, _) = tokio_tungstenite::connect_async(h.url()).await.expect("connects");
            if i % 2 == 0 {
                // half of them in an open session, half before Hello
                ws.send(Message::Binary(hello(&format!("c{i}")).into())).await.unwrap();
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        assert!(matches!(ServerMsg::decode(&b, 1 << 20), Ok(ServerMsg::Welcome(_))))
                    }
                    other => panic!("expected Welcome, got {other:?}"),
                }
            }
            ws.send(Message::Close(None)).await.unwrap();
            if within(WAIT, "close reply", close_code(&mut ws)).await.is_some() {
                answered += 1;
            }
        }
        eprintln!("{answered} of {N} client closes answered with a Close frame");
        assert_eq!(answered, N);
        eventually(WAIT, "sessions gone", || h.worker.session_count() == 0).await;
        h.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_at_the_hello_deadline() {
    within(
        TEST_LIMIT,
        "silent_connections_are_closed_at_the_hello_deadline",
        async {
            let opts = ServerOpts {
                hello_timeout: Duration::from_millis(500),
                ..Default::default()
            };
            // 1 000 sockets each side in this process: past a default soft limit of 1 024
            rlimit::increase_nofile_limit(8_192).expect("raise the fd limit");
            let h = Harness::start(rels_worker("w-silent"), opts).await;
            const N: usize = 1_000;
            let mut socks = Vec::with_capacity(N);
            for _ in 0..N {
                socks.push(tokio_tungstenite::connect_async(h.url()).await.expect("connects").0);
            }
            // a client that says Hello in time is unaffected
            let c = Harness::client(&h.url(), copts("talker")).await;
            let mut codes = Vec::with_capacity(N);
            for ws in &mut socks {
                codes.push(within(WAIT, "closed by the server", close_code(ws)).await);
            }
            let closed = codes.iter().filter(|c| c.is_some()).count();
            eprintln!("{closed} of {N} silent connections closed with a Close frame at the Hello deadline");
            assert_eq!(closed, N, "{codes:?}");
            assert!(codes.iter().all(|c| *c == Some(1008)), "policy close");
            eventually(WAIT, "only the talker left", || h.worker.session_count() == 1).await;
            assert_eq!(c.mirror().add(&["A", "C"], None).await, Ok(Outcome::Executed));
            c.close().await;
            h.stop().await;
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_pings_is_dropped() {
    within(TEST_LIMIT, "a_peer_that_stops_answering_pings_is_dropped", async {
        let opts = ServerOpts {
            ping_interval: Duration::from_millis(200),
            ping_timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let h = Harness::start(rels_worker("w-ping"), opts).await;
        // a live client answers pings (its socket is read all the time)
        let live = Harness::client(&h.url(), copts("live")).await;
        let connected = tick(live.states(), amrpc_core::states::CONNECTED);
        // a dead one: handshake, then never reads again (so never answers a ping), as a
        // vanished peer behind a half-open TCP connection
        let (mut dead, _) = tokio_tungstenite::connect_async(h.url()).await.expect("connects");
        dead.send(Message::Binary(hello("dead").into())).await.unwrap();
        assert!(matches!(dead.next().await, Some(Ok(Message::Binary(_)))), "Welcome");
        eventually(WAIT, "two sessions", || h.worker.session_count() == 2).await;
        eventually(WAIT, "the dead session dropped", || h.worker.session_count() == 1).await;
        // the live one is the one left, on its first connection
        assert_eq!(
            tick(live.states(), amrpc_core::states::CONNECTED),
            connected,
            "never reconnected"
        );
        assert_eq!(live.mirror().add(&["A", "C"], None).await, Ok(Outcome::Executed));
        drop(dead);
        live.close().await;
        h.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refuses_typed_and_loses_nothing() {
    within(TEST_LIMIT, "rate_limit_refuses_typed_and_loses_nothing", async {
        let opts = ServerOpts {
            mutation_rate: 20,
            mutation_burst: 10,
            ..Default::default()
        };
        let h = Harness::start(rels_worker("w-rate"), opts).await;
        let c = Harness::client(&h.url(), copts("eager")).await;
        let before = tick(h.w(), "B");
        // 40 at once: the burst runs, the rest is refused (B is Multi: each run ticks it by 2)
        let calls: Vec<_> = (0..40).map(|_| c.mirror().add1("B", None)).collect();
        let results = futures::future::join_all(calls).await;
        let ok = results.iter().filter(|r| matches!(r, Ok(Outcome::Executed))).count();
        let limited = results
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Err(Error::Rpc {
                        code: ErrorCode::RateLimited,
                        ..
                    })
                )
            })
            .count();
        eprintln!("rate limit 20/s, burst 10: {ok} ran, {limited} refused with RateLimited");
        assert_eq!(ok + limited, 40, "{results:?}");
        assert!(ok >= 10 && limited > 0, "{ok} ran");
        let ran = (tick(h.w(), "B") - before).div_ceil(2);
        assert_eq!(ran as usize, ok, "exactly the accepted ones ran");
        // the session goes on: a refused call can be sent again once the bucket refills
        let again = within(WAIT, "a retry after the refill", async {
            loop {
                match c.mirror().add1("B", None).await {
                    Err(Error::Rpc {
                        code: ErrorCode::RateLimited,
                        ..
                    }) => tokio::time::sleep(Duration::from_millis(50)).await,
                    other => break other,
                }
            }
        })
        .await;
        assert_eq!(again, Ok(Outcome::Executed));
        assert_eq!(c.mirror().time(None), h.w().time(None), "the mirror converged");
        c.close().await;
        h.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_sessions_a_connection_is_told_overloaded() {
    within(TEST_LIMIT, "past_max_sessions_a_connection_is_told_overloaded", async {
        let opts = ServerOpts {
            max_sessions: 2,
            ..Default::default()
        };
        let h = Harness::start(rels_worker("w-full"), opts).await;
        let a = Harness::client(&h.url(), copts("a")).await;
        let b = Harness::client(&h.url(), copts("b")).await;
        let (mut third, _) = tokio_tungstenite::connect_async(h.url()).await.expect("upgraded");
        let (msgs, close) = rpc_support::raw::read_to_end(&mut third).await;
        assert_eq!(
            rpc_support::raw::bye_code(&msgs),
            Some(ErrorCode::Overloaded),
            "{msgs:?}"
        );
        assert!(close.is_some(), "closed with a Close frame");
        // the two sessions are unaffected; when one leaves, a new client gets in
        assert_eq!(a.mirror().add(&["A", "C"], None).await, Ok(Outcome::Executed));
        b.close().await;
        eventually(WAIT, "a slot is free", || h.srv.session_count() == 1).await;
        let c = Harness::client(&h.url(), copts("c")).await;
        assert_eq!(c.mirror().time(None), h.w().time(None));
        a.close().await;
        c.close().await;
        h.stop().await;
    })
    .await
}
