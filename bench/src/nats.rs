//! Issue 14, must show 4: what the NATS hop costs, in one run. A `nats-server` of its own
//! (`amrpc_nats::testing`), the worker's host and three edge servers in this process (each edge
//! with its own NATS connection and its own WebSocket server on loopback), native clients:
//!
//! - **op**: one client's sequential mutations (`A` on, off, …) on the worker's own server and
//!   on an edge, alternating rounds; µs per op, and the NATS messages and bytes per op (the edge's
//!   and the host's connections, both ways; the client's WebSocket frames are the same protocol
//!   either way);
//! - **fan-out**: a change made on the worker (`B` toggled) until each of K clients' mirrors shows
//!   it, K on the worker's own server vs K spread over the three edges; p50/p99 over clients ×
//!   mutations;
//! - **NATS messages per worker change** on the clock subject, counted by a subscriber of its own
//!   during the edges' fan-out (must be 1, whatever K), and the host's messages per change.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amrpc_client::{Client, ClientOpts, Mirror};
use amrpc_core::{Api, Machine};
use amrpc_nats::testing::NatsServer;
use amrpc_nats::{EdgeMirror, HostOpts, NatsLink};
use amrpc_server::{Server, ServerOpts};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::stats::{Summary, percentile};

const WORKER: &str = "abcd";

/// Sizes of the run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NatsArgs {
    /// Fan-out clients per topology.
    pub(crate) clients: usize,
    /// Ops per round.
    pub(crate) ops: usize,
    /// Rounds of each kind.
    pub(crate) rounds: usize,
    /// Worker changes per fan-out.
    pub(crate) mutations: usize,
}

/// NATS traffic of one connection, summed.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub(crate) struct Traffic {
    messages: u64,
    bytes: u64,
}

fn traffic(c: &async_nats::Client) -> Traffic {
    let s = c.statistics();
    Traffic {
        messages: s.in_messages.load(Ordering::Relaxed) + s.out_messages.load(Ordering::Relaxed),
        bytes: s.in_bytes.load(Ordering::Relaxed) + s.out_bytes.load(Ordering::Relaxed),
    }
}

fn since(a: Traffic, b: Traffic) -> Traffic {
    Traffic {
        messages: b.messages - a.messages,
        bytes: b.bytes - a.bytes,
    }
}

/// Fan-out latencies of one topology, ms.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct FanoutFigures {
    clients: usize,
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// The run's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct NatsResult {
    /// µs per op on the worker's own server, per round.
    op_own_us: Summary,
    /// µs per op through an edge, per round.
    op_edge_us: Summary,
    /// Edge / own, median of the per-round ratios.
    op_ratio: f64,
    /// NATS messages and bytes per op through an edge (edge + host connections, both ways).
    op_nats_messages: f64,
    op_nats_bytes: f64,
    fanout_own: FanoutFigures,
    fanout_edges: FanoutFigures,
    /// Messages on the worker's clock subject per worker change (edges' fan-out).
    clock_messages_per_change: f64,
    /// The host connection's messages per worker change (clock + record, both ways).
    host_messages_per_change: f64,
}

async fn client(url: &str, id: String) -> Result<Client, String> {
    let opts = ClientOpts {
        client_id: id,
        conn_retries: 5,
        ..Default::default()
    };
    Client::connect(url, opts)
        .await
        .map_err(|e| format!("connect {url}: {e}"))
}

/// µs per op of `n` sequential mutations (A on, off, …) through `m`.
async fn op_round(m: &Mirror, n: usize) -> Result<f64, String> {
    let t0 = Instant::now();
    for i in 0..n {
        let r = if i % 2 == 0 {
            m.add1("A", None)
        } else {
            m.remove1("A", None)
        };
        r.await.map_err(|e| format!("op: {e}"))?;
    }
    Ok(t0.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// `mutations` toggles of `B` on the worker, each timed until every mirror shows it.
async fn fanout(m: &Machine, mirrors: &[Mirror], mutations: usize) -> Result<FanoutFigures, String> {
    let mut lat = Vec::with_capacity(mirrors.len() * mutations);
    for _ in 0..mutations {
        let target = m.tick("B") + 1;
        // bound before the change, so none can miss it
        let mut waits: FuturesUnordered<_> = mirrors
            .iter()
            .map(|mi| async move {
                let r = Api::when_time(mi, &["B"], &[target], None).await;
                (r, Instant::now())
            })
            .collect();
        let t0 = Instant::now();
        if m.is1("B") {
            m.remove1("B", None);
        } else {
            m.add1("B", None);
        }
        while let Some((r, at)) = tokio::time::timeout(Duration::from_secs(30), waits.next())
            .await
            .map_err(|_| "a mirror did not see the change within 30 s".to_string())?
        {
            r.map_err(|e| format!("fan-out wait: {e:?}"))?;
            lat.push(at.duration_since(t0).as_secs_f64() * 1e3);
        }
    }
    lat.sort_by(f64::total_cmp);
    Ok(FanoutFigures {
        clients: mirrors.len(),
        samples: lat.len(),
        p50_ms: percentile(&lat, 50.0),
        p99_ms: percentile(&lat, 99.0),
        max_ms: lat.last().copied().unwrap_or(0.0),
    })
}

/// One edge: its own NATS connection, mirror and WebSocket server.
async fn edge(nats: &NatsServer) -> Result<(String, NatsLink, Server), String> {
    let link = amrpc_nats::connect(&nats.url(), "bench-edge")
        .await
        .map_err(|e| e.to_string())?;
    let mirror = EdgeMirror::connect(link.client.clone(), WORKER, Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let srv = Server::new(ServerOpts {
        mutation_rate: 0,
        max_sessions: 20_000,
        ..Default::default()
    });
    amrpc_server::nats::serve_mirror(&srv, WORKER, mirror).map_err(|e| e.to_string())?;
    let addr = srv.spawn("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    Ok((format!("ws://{addr}/ws/{WORKER}"), link, srv))
}

async fn run_async(a: NatsArgs) -> Result<NatsResult, String> {
    let nats = NatsServer::start().await.map_err(|e| e.to_string())?;
    let m = amrpc_server::demo::abcd_worker().map_err(|e| e.to_string())?;
    let own = Server::new(ServerOpts {
        mutation_rate: 0,
        max_sessions: 20_000,
        ..Default::default()
    });
    own.add_worker(WORKER, m.clone()).map_err(|e| e.to_string())?;
    let own_addr = own.spawn("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let own_url = format!("ws://{own_addr}/ws/{WORKER}");
    let host_link = amrpc_nats::connect(&nats.url(), "bench-host")
        .await
        .map_err(|e| e.to_string())?;
    let _hosts = amrpc_server::nats::publish_workers(&own, &host_link, &HostOpts::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut edges = Vec::new();
    for _ in 0..3 {
        edges.push(edge(&nats).await?);
    }

    // op: the same client kind on the worker's server and on edge 0, alternating rounds
    let on_own = client(&own_url, "bench-op-own".into()).await?;
    let on_edge = client(&edges[0].0, "bench-op-edge".into()).await?;
    op_round(on_own.mirror(), a.ops.min(200)).await?;
    op_round(on_edge.mirror(), a.ops.min(200)).await?;
    let (mut own_us, mut edge_us, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut per_op = Traffic::default();
    for _ in 0..a.rounds {
        let o = op_round(on_own.mirror(), a.ops).await?;
        let before = (traffic(&edges[0].1.client), traffic(&host_link.client));
        let e = op_round(on_edge.mirror(), a.ops).await?;
        let after = (traffic(&edges[0].1.client), traffic(&host_link.client));
        let (te, th) = (since(before.0, after.0), since(before.1, after.1));
        per_op.messages += te.messages + th.messages;
        per_op.bytes += te.bytes + th.bytes;
        own_us.push(o);
        edge_us.push(e);
        ratios.push(e / o);
    }
    on_own.close().await;
    on_edge.close().await;
    let total_ops = (a.ops * a.rounds) as f64;

    // fan-out: K clients on the worker's server, then K over the three edges
    let own_clients: Vec<Client> =
        futures_util::future::try_join_all((0..a.clients).map(|i| client(&own_url, format!("bench-fan-own-{i}"))))
            .await?;
    let mirrors: Vec<Mirror> = own_clients.iter().map(|c| c.mirror().clone()).collect();
    let fanout_own = fanout(&m, &mirrors, a.mutations).await?;
    for c in &own_clients {
        c.close().await;
    }
    drop(own_clients);
    let edge_clients: Vec<Client> = futures_util::future::try_join_all(
        (0..a.clients).map(|i| client(&edges[i % 3].0, format!("bench-fan-edge-{i}"))),
    )
    .await?;
    let mirrors: Vec<Mirror> = edge_clients.iter().map(|c| c.mirror().clone()).collect();
    // an independent subscriber counts the clock subject's messages
    let counter = nats.client().await.map_err(|e| e.to_string())?;
    let mut sub = counter
        .subscribe(format!("{}.{WORKER}.clock", amrpc_nats::subjects::PREFIX))
        .await
        .map_err(|e| e.to_string())?;
    counter.flush().await.map_err(|e| e.to_string())?;
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    let count = tokio::spawn(async move {
        while sub.next().await.is_some() {
            s2.fetch_add(1, Ordering::Relaxed);
        }
    });
    let host_before = traffic(&host_link.client);
    let fanout_edges = fanout(&m, &mirrors, a.mutations).await?;
    // every change was seen by every mirror, so its message went out; let the counter read it
    counter.flush().await.map_err(|e| e.to_string())?;
    let want = a.mutations as u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let host_traffic = since(host_before, traffic(&host_link.client));
    count.abort();
    for c in &edge_clients {
        c.close().await;
    }
    Ok(NatsResult {
        op_own_us: Summary::of(&own_us),
        op_edge_us: Summary::of(&edge_us),
        op_ratio: Summary::of(&ratios).median,
        op_nats_messages: per_op.messages as f64 / total_ops,
        op_nats_bytes: per_op.bytes as f64 / total_ops,
        fanout_own,
        fanout_edges,
        clock_messages_per_change: seen.load(Ordering::Relaxed) as f64 / a.mutations as f64,
        host_messages_per_change: host_traffic.messages as f64 / a.mutations as f64,
    })
}

/// Run it on a 2-thread runtime (the other runs' server configuration).
pub(crate) fn run(a: NatsArgs) -> Result<NatsResult, String> {
    crate::fanout::raise_fd_limit((a.clients as u64) * 4 + 256)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run_async(a))
}

/// The report, as Markdown.
pub(crate) fn report(a: &NatsArgs, r: &NatsResult) -> String {
    let s = |x: &Summary| format!("{:.1} (min {:.1}, max {:.1})", x.median, x.min, x.max);
    format!(
        "NATS hop (`amrpc-bench nats`: {ops} ops × {rounds} rounds, {clients} clients, {mutations} changes)\n\n\
         | | worker's own server | through an edge (NATS) |\n|---|---|---|\n\
         | op, µs (median of rounds) | {own} | {edge} |\n\
         | edge / own | | {ratio:.2}× |\n\
         | NATS per op (edge + host, both ways) | — | {msgs:.2} messages, {bytes:.0} B |\n\
         | fan-out to {clients}, p50 / p99 / max ms | {fo50:.1} / {fo99:.1} / {fomax:.1} | {fe50:.1} / {fe99:.1} / {femax:.1} |\n\n\
         Clock-subject messages per worker change (with {clients} clients on 3 edges): {cpc:.2}; \
         the host connection's messages per change: {hpc:.2}.\n",
        ops = a.ops,
        rounds = a.rounds,
        clients = a.clients,
        mutations = a.mutations,
        own = s(&r.op_own_us),
        edge = s(&r.op_edge_us),
        ratio = r.op_ratio,
        msgs = r.op_nats_messages,
        bytes = r.op_nats_bytes,
        fo50 = r.fanout_own.p50_ms,
        fo99 = r.fanout_own.p99_ms,
        fomax = r.fanout_own.max_ms,
        fe50 = r.fanout_edges.p50_ms,
        fe99 = r.fanout_edges.p99_ms,
        femax = r.fanout_edges.max_ms,
        cpc = r.clock_messages_per_change,
        hpc = r.host_messages_per_change,
    )
}

/// `amrpc-bench nats`: the report on stdout, the figures in `json`; fails unless the clock
/// subject carried exactly one message per worker change.
pub(crate) fn command(
    quick: bool,
    clients: Option<usize>,
    ops: usize,
    runs: usize,
    mutations: usize,
    json: &std::path::Path,
) -> Result<(), String> {
    let a = NatsArgs {
        clients: clients.unwrap_or(if quick { 60 } else { 1000 }),
        ops: if quick { ops.min(200) } else { ops },
        rounds: if quick { 1 } else { runs },
        mutations: if quick { mutations.min(5) } else { mutations },
    };
    let r = run(a)?;
    println!("{}", report(&a, &r));
    if r.clock_messages_per_change != 1.0 {
        return Err(format!(
            "{} clock messages per change, not 1",
            r.clock_messages_per_change
        ));
    }
    if let Some(dir) = json.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let j = serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?;
    std::fs::write(json, j).map_err(|e| format!("writing {}: {e}", json.display()))
}
