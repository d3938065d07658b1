//! Measures what the push interval costs and buys, to choose the default for browsers:
//! a worker that changes every 2 ms for 2 s, one client per interval; counts pushes, bytes and
//! how stale the mirror gets (the age of the oldest change not yet seen, sampled every 1 ms).
//!
//! `cargo run --release -p amrpc-server --example push_interval`

use std::time::{Duration, Instant};

use amrpc_core::session::{ClientConfig, ClientOutput, ClientSession};
use amrpc_server::{Server, ServerOpts, demo};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("| push interval | pushes/s | bytes/s (payload) | mean staleness | max staleness |");
    println!("|---|---|---|---|---|");
    for ms in [1u32, 16, 50, 250] {
        let srv = Server::new(ServerOpts::default());
        let w = srv.add_worker("w", demo::abcd_worker().unwrap()).unwrap();
        let addr = srv.spawn("127.0.0.1:0").await.unwrap();
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/w"))
            .await
            .unwrap();
        let (mut tx, mut rx) = ws.split();
        let mut s = ClientSession::new(ClientConfig {
            push_interval_ms: Some(ms),
            ..Default::default()
        });
        tx.send(Message::Binary(s.hello().into())).await.unwrap();
        // handshake
        while let Some(Ok(Message::Binary(b))) = rx.next().await {
            if s.handle_frame(&b).contains(&ClientOutput::Ready) {
                break;
            }
        }
        let m = w.machine().clone();
        let run = Duration::from_secs(2);
        let start = Instant::now();
        let changer = tokio::spawn(async move {
            let mut i = 0u64;
            while start.elapsed() < run {
                if i % 2 == 0 {
                    m.add1("A", None)
                } else {
                    m.remove1("A", None)
                };
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        let (mut pushes, mut bytes) = (0u64, 0u64);
        let mirror = s.mirror().unwrap().clone();
        let worker = w.machine().clone();
        let (mut stale_sum, mut stale_max, mut samples) = (0f64, 0f64, 0u64);
        let mut behind_since: Option<Instant> = None;
        let mut sample = tokio::time::interval(Duration::from_millis(1));
        while start.elapsed() < run {
            tokio::select! {
                m = rx.next() => match m {
                    Some(Ok(Message::Binary(b))) => {
                        pushes += 1;
                        bytes += b.len() as u64;
                        for o in s.handle_frame(&b) {
                            if let ClientOutput::Send(f) = o {
                                tx.send(Message::Binary(f.into())).await.unwrap();
                            }
                        }
                    }
                    _ => break,
                },
                _ = sample.tick() => {
                    let behind = mirror.tick("A") < worker.tick("A");
                    match (behind, behind_since) {
                        (true, None) => behind_since = Some(Instant::now()),
                        (false, Some(_)) => behind_since = None,
                        _ => {}
                    }
                    let age = behind_since.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0);
                    stale_sum += age;
                    stale_max = f64::max(stale_max, age);
                    samples += 1;
                }
            }
        }
        changer.await.unwrap();
        let secs = run.as_secs_f64();
        println!(
            "| {ms} ms | {:.0} | {:.0} | {:.1} ms | {:.1} ms |",
            pushes as f64 / secs,
            bytes as f64 / secs,
            stale_sum / samples.max(1) as f64,
            stale_max
        );
        srv.shutdown();
    }
}
