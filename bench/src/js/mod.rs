//! The JS client figures (issue 13, item 1): the npm package in headless Chromium
//! ([`browser`]) and in Node ([`node`]), each beside its floor in the same run — a raw WebSocket
//! echo of the op's request size through the same runtime's WebSocket, against the same server
//! process (`/echo` beside `/ws/bench`). Both run one loop, `bench/js/loop.mjs`: upstream's
//! client loop (`whenTicksEq(Event, +2)`, `switch(Values)`, `add1("CallOp", {Op})` per op) and
//! the echo alternate for a few rounds.
//!
//! Correctness is checked (every op executed, 0 worker errors, every echo right); timings are
//! recorded, never asserted.

use std::path::PathBuf;

use amrpc_core::Machine;
use amrpc_core::demo::{self, BenchWorker};
use amrpc_server::{Server, ServerOpts};

use crate::stats::Summary;

fn median(v: &[f64]) -> f64 {
    Summary::of(v).median
}

pub(crate) mod browser;
pub(crate) mod node;

/// Untimed ops (and echoes) before the first round (`WARM_UP` in loop.mjs).
pub(crate) const WARM_UP: usize = 1000;

/// The folder of the JS side (`loop.mjs`, `node.mjs`).
pub(crate) fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// What one JS run did: amrpc ops and echo round trips, alternating rounds.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct JsResult {
    /// `chromium <user agent>` or `node v…`.
    pub(crate) runtime: String,
    /// Ops (and echoes) per round.
    pub(crate) n: u64,
    /// The echo message's size (the op's request payload).
    pub(crate) request_bytes: u64,
    /// amrpc: ms per round.
    pub(crate) amrpc_ms: Vec<f64>,
    /// The floor: ms per round.
    pub(crate) echo_ms: Vec<f64>,
    /// µs per op, the median round.
    pub(crate) amrpc_us_per_op: f64,
    /// µs per echo round trip, the median round.
    pub(crate) echo_us_per_op: f64,
    /// amrpc's time per op over the echo's (median of the per-round ratios).
    pub(crate) ratio_to_floor: f64,
    /// The JS process's CPU time per op, µs, over all rounds (Node only).
    pub(crate) amrpc_cpu_us_per_op: Option<f64>,
    /// The JS process's CPU time per echo, µs, over all rounds (Node only).
    pub(crate) echo_cpu_us_per_op: Option<f64>,
    /// Remote mutations per second, the median round.
    pub(crate) per_sec: f64,
    /// Worker errors at the end (must be 0).
    pub(crate) errors: usize,
    /// Worker successes (ops after the first).
    pub(crate) successes: usize,
}

impl JsResult {
    /// From the loop's JSON (`run()` in loop.mjs).
    fn from_json(v: &serde_json::Value, runtime: String, worker: &BenchWorker) -> Result<JsResult, String> {
        if let Some(e) = v.get("error") {
            return Err(format!("the JS side failed: {}", e.as_str().unwrap_or(&e.to_string())));
        }
        let nums = |k: &str| -> Result<Vec<f64>, String> {
            v.get(k)
                .and_then(|x| x.as_array())
                .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect::<Vec<_>>())
                .filter(|a| !a.is_empty())
                .ok_or_else(|| format!("no {k} in the result"))
        };
        let n = v
            .get("n")
            .and_then(|x| x.as_u64())
            .filter(|&n| n > 0)
            .ok_or("no n in the result")?;
        let (amrpc_ms, echo_ms) = (nums("amrpcMs")?, nums("echoMs")?);
        if amrpc_ms.len() != echo_ms.len() {
            return Err("amrpc and echo rounds differ".into());
        }
        let per_op = |ms: f64| ms * 1e3 / n as f64;
        let cpu = |k: &str| {
            nums(k)
                .ok()
                .map(|v| v.iter().sum::<f64>() * 1e3 / (n as f64 * v.len() as f64))
        };
        let ratios: Vec<f64> = amrpc_ms.iter().zip(&echo_ms).map(|(a, e)| a / e).collect();
        let amrpc_us_per_op = per_op(median(&amrpc_ms));
        Ok(JsResult {
            runtime,
            n,
            request_bytes: v.get("requestBytes").and_then(|x| x.as_u64()).unwrap_or(0),
            amrpc_us_per_op,
            echo_us_per_op: per_op(median(&echo_ms)),
            ratio_to_floor: median(&ratios),
            amrpc_cpu_us_per_op: cpu("amrpcCpuMs"),
            echo_cpu_us_per_op: cpu("echoCpuMs"),
            per_sec: 1e6 / amrpc_us_per_op,
            amrpc_ms,
            echo_ms,
            errors: worker.errors(),
            successes: worker.successes(),
        })
    }
}

/// The bench worker served with `/echo`, on this runtime, on a free loopback port.
pub(crate) struct JsServer {
    pub(crate) srv: Server,
    pub(crate) addr: std::net::SocketAddr,
    m: Machine,
    pub(crate) worker: std::sync::Arc<BenchWorker>,
}

impl JsServer {
    /// Serve `/ws/bench`, `/echo` and whatever `extra` adds to the router.
    pub(crate) async fn start(extra: impl FnOnce(axum::Router) -> axum::Router) -> Result<JsServer, String> {
        Self::start_on("127.0.0.1:0".parse().map_err(|_| "address")?, extra).await
    }

    async fn start_on(
        addr: std::net::SocketAddr,
        extra: impl FnOnce(axum::Router) -> axum::Router,
    ) -> Result<JsServer, String> {
        let (m, worker) = demo::bench_worker(13).map_err(|e| e.to_string())?;
        let srv = Server::new(ServerOpts {
            // a benchmark client sends as fast as it can: no per-session rate limit
            mutation_rate: 0,
            ..Default::default()
        });
        srv.add_worker("bench", m.clone()).map_err(|e| e.to_string())?;
        let router = extra(srv.router().route("/echo", axum::routing::get(crate::connect::echo)));
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let s2 = srv.clone();
        tokio::spawn(async move { s2.serve_router(listener, router).await });
        Ok(JsServer { srv, addr, m, worker })
    }

    /// Stop serving and break the worker's cycle.
    pub(crate) fn stop(&self) {
        self.srv.shutdown();
        self.worker.unsubscribe();
        self.m.dispose();
    }
}

/// `amrpc-bench js-server`: serve until the process is killed.
pub(crate) fn serve_until_killed(addr: std::net::SocketAddr) -> Result<(), String> {
    let rt = crate::Threads::Two.runtime().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let s = JsServer::start_on(addr, |r| r).await?;
        eprintln!("ws://{}/ws/bench and ws://{}/echo", s.addr, s.addr);
        std::future::pending::<()>().await;
        Ok(())
    })
}
