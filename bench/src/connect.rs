//! Connection setup (issue 13): how many connect → handshake → close cycles per second one
//! server takes, beside the floor of its stack in the same run.
//!
//! The server is the fan-out child process (`fanout.rs`: the benchmark worker, 2 runtime
//! threads). `concurrency` loops in this process (2 runtime threads) each repeat a cycle until
//! `cycles` have been done in all, one kind at a time, the kinds alternating for `rounds`:
//!
//! * `amrpc`: `Client::connect` (TCP connect, HTTP upgrade, `Hello`, `Welcome`, the mirror
//!   built) then `close` (`Bye`, the WebSocket close);
//! * `echo` (the floor): a raw tokio-tungstenite client on the same server process, same axum
//!   and tokio stack (`/echo`): TCP connect, HTTP upgrade, one binary message of `Hello`'s size
//!   each way, the close.
//!
//! Every cycle must succeed (a failed check exits 1); timings are recorded, never asserted.

use std::time::{Duration, Instant};

use amrpc_client::Client;
use axum::extract::ws::{Message as AxMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::arpc::client_opts;
use crate::fanout::ChildServer;
use crate::load::Pcts;
use crate::machine_load::process_cpu_secs;
use crate::stats::percentile;

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct ConnectParams {
    /// Cycles per kind and round.
    pub(crate) cycles: usize,
    /// Cycles in flight at once.
    pub(crate) concurrency: usize,
    /// Rounds (each kind once per round, alternating).
    pub(crate) rounds: usize,
}

/// One kind's figures over its rounds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct KindResult {
    /// `amrpc` or `echo`.
    pub(crate) kind: String,
    /// Cycles per second, one per round.
    pub(crate) per_sec: Vec<f64>,
    /// The median of `per_sec`.
    pub(crate) per_sec_median: f64,
    /// One cycle's duration over all rounds.
    pub(crate) cycle: Pcts,
    /// The server process's CPU time per cycle, µs (user + system, over all rounds).
    pub(crate) server_cpu_us: f64,
    /// This (the clients') process's CPU time per cycle, µs.
    pub(crate) client_cpu_us: f64,
    /// Cycles per second the server could take on this machine's 2 cores if the clients ran
    /// elsewhere: 2 s of CPU per second over `server_cpu_us`.
    pub(crate) server_capacity_per_sec: f64,
    /// Failed cycles (must be 0).
    pub(crate) failures: usize,
    /// The first failure's text.
    pub(crate) first_failure: Option<String>,
}

/// The run's figures.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct ConnectResult {
    pub(crate) cycles: usize,
    pub(crate) concurrency: usize,
    pub(crate) rounds: usize,
    pub(crate) kinds: Vec<KindResult>,
    /// amrpc's rate over the echo's (median of the per-round ratios).
    pub(crate) ratio_to_floor: f64,
    /// Sessions the server still held after the last round (must be 0).
    pub(crate) sessions_left: usize,
}

/// `/echo` on the child server: every binary message back, until the client closes.
pub(crate) async fn echo(ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(4 << 10)
        .on_upgrade(|mut socket: WebSocket| async move {
            while let Some(Ok(m)) = socket.next().await {
                let sent = match m {
                    AxMessage::Binary(b) => socket.send(AxMessage::Binary(b)).await,
                    AxMessage::Close(_) => break,
                    _ => Ok(()),
                };
                if sent.is_err() {
                    break;
                }
            }
        })
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Amrpc,
    Echo,
}

/// One cycle; its duration in ms.
async fn cycle(kind: Kind, addr: &str, i: usize) -> Result<f64, String> {
    let t = Instant::now();
    match kind {
        Kind::Amrpc => {
            let url = format!("ws://{addr}/ws/bench");
            let c = Client::connect(&url, client_opts(&format!("connect-{i}")))
                .await
                .map_err(|e| e.to_string())?;
            c.close().await;
        }
        Kind::Echo => {
            let url = format!("ws://{addr}/echo");
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| e.to_string())?;
            ws.send(Message::Binary(vec![0u8; 24].into()))
                .await
                .map_err(|e| e.to_string())?;
            match ws.next().await {
                Some(Ok(Message::Binary(b))) if b.len() == 24 => {}
                other => return Err(format!("echo: {other:?}")),
            }
            ws.close(None).await.map_err(|e| e.to_string())?;
            // the server's close reply
            while let Some(Ok(_)) = ws.next().await {}
        }
    }
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// `n` cycles, `concurrency` at a time: (cycles per second, durations, failures).
async fn round(kind: Kind, addr: &str, n: usize, concurrency: usize) -> (f64, Vec<f64>, Vec<String>) {
    let t0 = Instant::now();
    let mut runs = futures_util::stream::iter(0..n)
        .map(|i| async move { tokio::time::timeout(Duration::from_secs(30), cycle(kind, addr, i)).await })
        .buffer_unordered(concurrency.max(1));
    let (mut ms, mut failed) = (Vec::with_capacity(n), Vec::new());
    while let Some(r) = runs.next().await {
        match r {
            Ok(Ok(d)) => ms.push(d),
            Ok(Err(e)) => failed.push(e),
            Err(_) => failed.push("no cycle within 30 s".into()),
        }
    }
    (ms.len() as f64 / t0.elapsed().as_secs_f64(), ms, failed)
}

/// The run (see the module docs).
pub(crate) async fn run(p: &ConnectParams) -> Result<ConnectResult, String> {
    let mut srv = ChildServer::start(2, crate::fanout::DEFAULT_MAX_SESSIONS).await?;
    let addr = srv.addr.clone();
    let kinds = [Kind::Amrpc, Kind::Echo];
    let mut acc: Vec<(Vec<f64>, Vec<f64>, Vec<String>)> = vec![Default::default(); 2];
    // CPU seconds (server, clients) spent in each kind's rounds
    let mut cpu = [(0.0f64, 0.0f64); 2];
    let pid = srv.pid();
    // a short warm-up of each kind (first connections, allocator growth)
    for k in kinds {
        round(k, &addr, p.concurrency, p.concurrency).await;
    }
    for r in 0..p.rounds {
        for (j, k) in kinds.iter().enumerate() {
            let (s0, c0) = (process_cpu_secs(pid), process_cpu_secs(None));
            let (rate, ms, failed) = round(*k, &addr, p.cycles, p.concurrency).await;
            cpu[j].0 += process_cpu_secs(pid) - s0;
            cpu[j].1 += process_cpu_secs(None) - c0;
            acc[j].0.push(rate);
            acc[j].1.extend(ms);
            acc[j].2.extend(failed);
        }
        eprintln!("connect: round {}/{} done", r + 1, p.rounds);
    }
    // every session closed: the server's count goes back to 0 (bounded wait)
    let t0 = Instant::now();
    let sessions_left = loop {
        let n = srv.ask("sessions").await?.first().copied().unwrap_or(u64::MAX) as usize;
        if n == 0 || t0.elapsed() > Duration::from_secs(10) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (errors, _) = srv.quit().await?;
    if errors != 0 {
        return Err(format!("the worker counted {errors} errors"));
    }
    let mut out = ConnectResult {
        cycles: p.cycles,
        concurrency: p.concurrency,
        rounds: p.rounds,
        sessions_left,
        ..Default::default()
    };
    for (j, k) in kinds.iter().enumerate() {
        let (rates, mut ms, failed) = std::mem::take(&mut acc[j]);
        ms.sort_by(f64::total_cmp);
        let mut sorted = rates.clone();
        sorted.sort_by(f64::total_cmp);
        let n = (p.cycles * p.rounds) as f64;
        let server_cpu_us = cpu[j].0 / n * 1e6;
        out.kinds.push(KindResult {
            kind: if *k == Kind::Amrpc { "amrpc" } else { "echo" }.into(),
            server_cpu_us,
            client_cpu_us: cpu[j].1 / n * 1e6,
            server_capacity_per_sec: 2e6 / server_cpu_us,
            per_sec_median: percentile(&sorted, 50.0),
            per_sec: rates,
            cycle: Pcts {
                n: ms.len(),
                p50_ms: percentile(&ms, 50.0),
                p99_ms: percentile(&ms, 99.0),
                max_ms: ms.last().copied().unwrap_or(f64::NAN),
            },
            failures: failed.len(),
            first_failure: failed.into_iter().next(),
        });
    }
    let mut ratios: Vec<f64> = (out.kinds[0].per_sec.iter())
        .zip(&out.kinds[1].per_sec)
        .map(|(a, e)| a / e)
        .collect();
    ratios.sort_by(f64::total_cmp);
    out.ratio_to_floor = percentile(&ratios, 50.0);
    Ok(out)
}
