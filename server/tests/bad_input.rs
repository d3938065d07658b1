//! The bad inputs of docs/RELIABILITY.md's table not covered by `integration.rs`
//! (`oversize_and_malformed_frames_close_only_their_session`) and `hygiene.rs`: invalid UTF-8 in
//! a text frame, a truncated message, a truncated WebSocket frame followed by silence, a
//! fragment flood, a wrong protocol version, a schema-hash mismatch, connection churn and a
//! peer that never answers the server's Close. For each: only that connection ends (with a
//! code where the protocol allows one), a good client on the same worker is unaffected, and
//! the server's memory stays bounded.
mod rpc_support;

use std::time::{Duration, Instant};

use amrpc_client::Client;
use amrpc_core::states as names;
use amrpc_core::wire::{ClientMsg, ErrorCode, Hello, PROTOCOL_VERSION};
use amrpc_core::{Api, Outcome};
use amrpc_server::ServerOpts;
use futures::SinkExt;
use rpc_support::raw::*;
use rpc_support::*;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

const MAX: usize = 4096;

/// A masked client frame (zero mask key) with `first` as its first byte (FIN, RSV, opcode).
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend((n as u16).to_be_bytes());
        }
    }
    f.extend([0, 0, 0, 0]);
    f.extend(payload);
    f
}

/// Only the offender's session is gone, and the good client still works on its first session.
async fn unaffected(h: &Harness, good: &Client, what: &str) {
    eventually(WAIT, what, || h.worker.session_count() == 1).await;
    assert_eq!(
        good.mirror().add1("B", None).await.map(|_| ()),
        Ok(()),
        "{what}: the good client works"
    );
    assert_eq!(good.mirror().time(None), h.w().time(None), "{what}");
    assert_eq!(tick(good.states(), names::CONNECTED), 1, "{what}: never reconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_input_ends_only_its_own_session() {
    within(TEST_LIMIT * 2, "bad inputs", async {
        let opts = ServerOpts {
            max_message_size: MAX,
            hello_timeout: Duration::from_secs(1),
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let h = Harness::start(rels_worker("w-bad"), opts).await;
        let good = Harness::client(&h.url(), copts("good")).await;
        let url = h.url();
        let rss0 = rss_bytes();

        // invalid UTF-8 in a text frame: tungstenite refuses it before the session sees it
        let mut s = raw_tcp_upgrade(h.addr).await;
        s.write_all(&frame(0x81, &[0xc3, 0x28, 0xff])).await.unwrap();
        tcp_until_closed(&mut s).await;
        unaffected(&h, &good, "invalid UTF-8 text").await;

        // a truncated message: a valid Hello cut short
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
        let mut hello_bytes = hello("truncated");
        hello_bytes.truncate(hello_bytes.len() / 2);
        ws.send(Message::Binary(hello_bytes.into())).await.unwrap();
        let (msgs, close) = read_to_end(&mut ws).await;
        assert_eq!(bye_code(&msgs), Some(ErrorCode::Malformed), "{msgs:?}");
        assert_eq!(close.map(|c| u16::from(c.code)), Some(1008));
        unaffected(&h, &good, "truncated message").await;

        // a truncated WebSocket frame, then silence: the frame never completes, so nothing is
        // heard. Before Hello the Hello deadline closes it; after Hello, the unanswered ping
        for after_hello in [false, true] {
            let mut s = raw_tcp_upgrade(h.addr).await;
            if after_hello {
                s.write_all(&frame(0x82, &hello("cut-frame"))).await.unwrap();
            }
            let f = frame(0x82, &hello("cut-frame"));
            s.write_all(&f[..f.len() - 3]).await.unwrap();
            let t = Instant::now();
            tcp_until_closed(&mut s).await;
            eprintln!(
                "truncated frame + silence (after Hello: {after_hello}): closed after {:?}",
                t.elapsed()
            );
            unaffected(&h, &good, "truncated frame").await;
        }

        // a fragment flood: continuation frames without FIN past the message limit
        let mut s = raw_tcp_upgrade(h.addr).await;
        let mut flood = frame(0x02, &[0u8; 100]); // binary, no FIN
        for _ in 0..(MAX / 100 + 10) {
            flood.extend(frame(0x00, &[0u8; 100])); // continuation, no FIN
        }
        let _ = s.write_all(&flood).await; // the server may close before it has read it all
        tcp_until_closed(&mut s).await;
        unaffected(&h, &good, "fragment flood").await;

        // a wrong protocol version, and a schema hash that does not match
        for (what, hello_msg, code) in [
            (
                "wrong version",
                Hello {
                    version: PROTOCOL_VERSION + 1,
                    client_id: "future".into(),
                    ..Default::default()
                },
                ErrorCode::VersionMismatch,
            ),
            (
                "schema mismatch",
                Hello {
                    version: PROTOCOL_VERSION,
                    client_id: "other-schema".into(),
                    schema_hash: Some(1),
                    ..Default::default()
                },
                ErrorCode::SchemaMismatch,
            ),
        ] {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
            ws.send(Message::Binary(ClientMsg::Hello(hello_msg).encode().unwrap().into()))
                .await
                .unwrap();
            let (msgs, close) = read_to_end(&mut ws).await;
            assert_eq!(bye_code(&msgs), Some(code), "{what}: {msgs:?}");
            assert_eq!(close.map(|c| u16::from(c.code)), Some(1008), "{what}");
            unaffected(&h, &good, what).await;
        }

        // an unanswered Close: the server closes (oversize message), the peer keeps the TCP
        // connection open and never replies; the server drops it on its own
        let mut s = raw_tcp_upgrade(h.addr).await;
        s.write_all(&frame(0x82, &hello("no-close-reply"))).await.unwrap();
        s.write_all(&frame(0x82, &vec![1u8; MAX + 100])).await.unwrap();
        let t = Instant::now();
        tcp_until_closed(&mut s).await;
        eprintln!(
            "unanswered Close: the server dropped the connection after {:?}",
            t.elapsed()
        );
        unaffected(&h, &good, "unanswered close").await;

        // connection churn: open and drop connections (half before Hello) many times
        const CHURN: usize = 2_000;
        for i in 0..CHURN {
            if i % 2 == 0 {
                let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
                drop(ws);
            } else {
                let mut ws = raw_open(&url, "churn").await;
                let _ = ws.close(None).await;
            }
        }
        unaffected(&h, &good, "connection churn").await;
        let rss1 = rss_bytes();
        eprintln!(
            "bad inputs incl. {CHURN} churned connections: RSS {} → {} KiB",
            rss0 >> 10,
            rss1 >> 10
        );
        assert!(rss1 < rss0 + (64 << 20), "memory stays bounded: {rss0} → {rss1}");
        assert_eq!(good.mirror().add(&["A", "C"], None).await, Ok(Outcome::Executed));
        good.close().await;
        h.stop().await;
    })
    .await
}
