//! Issue 14, must show 2: one worker host (this process), three edge servers (`amrpc serve
//! --nats URL --edge`, each its own process on loopback) and clients spread over them, every
//! client given all three edges to fail over between. A burst of mutations from clients on
//! every edge converges; an edge killed mid-burst loses nothing and runs nothing twice (each
//! call's handler run is counted on the worker); a restarted NATS server is recovered from by
//! itself (clients see `Disconnected`, then converge).
//!
//! `AMRPC_NATS_CLIENTS` (default 300) and `AMRPC_NATS_OPS` (mutations per client, default 4)
//! size it.

mod nats_support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amrpc_client::{Client, ClientOpts};
use amrpc_core::states as names;
use amrpc_core::{Api, Args, Handlers, Machine, Opts, Outcome, State, Value, schema, struct_merge};
use futures::future::join_all;
use nats_support::{Nats, host};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const WAIT: Duration = Duration::from_secs(60);

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {WAIT:?}"))
}

/// Runs of `Inc` by `(client, n)`.
type Runs = Arc<Mutex<HashMap<(i64, i64), usize>>>;

/// `Inc` (Multi) counts each run by its `client` and `n` args.
fn worker() -> (Machine, Runs) {
    let own = schema([("Inc", State::new().multi()), ("Idle", State::new())]);
    let m = Machine::new(
        struct_merge(&[&names::worker_schema(), &own]),
        Opts {
            id: Some("cluster".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let mut order = vec!["Inc", "Idle"];
    order.extend(names::WORKER_STATES);
    m.verify_states(&order).unwrap();
    let runs: Runs = Arc::default();
    let r = runs.clone();
    m.bind_handlers(Handlers::new("count").state("Inc", move |e| {
        let get = |k: &str| match e.args().get(k) {
            Some(Value::Int(v)) => *v,
            _ => -1,
        };
        *r.lock().unwrap().entry((get("client"), get("n"))).or_default() += 1;
    }))
    .unwrap();
    (m, runs)
}

/// An edge server process; killed when dropped.
struct EdgeProc {
    child: Child,
    addr: String,
}

impl Drop for EdgeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn edge_proc(nats: &Nats) -> EdgeProc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_amrpc"))
        .args(["serve", "--addr", "127.0.0.1:0", "--nats", &nats.url(), "--edge"])
        .args(["--web", "/nonexistent", "--pkg", "/nonexistent"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the amrpc binary");
    let stdout = tokio::process::ChildStdout::from_std(child.stdout.take().unwrap()).unwrap();
    let mut proc = EdgeProc {
        child,
        addr: String::new(),
    };
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = within("edge start", lines.next_line()).await.unwrap() {
        if let Some(a) = line.strip_prefix("amrpc serving on http://") {
            proc.addr = a.trim().to_string();
            break;
        }
    }
    assert!(!proc.addr.is_empty(), "the edge printed its address");
    // keep reading its stdout so it never blocks on a full pipe
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    proc
}

impl EdgeProc {
    fn url(&self) -> String {
        format!("ws://{}/ws/cluster", self.addr)
    }

    /// Until the edge serves the worker (it finds it in the bucket after starting).
    async fn serving(&self) {
        within("the edge serves the worker", async {
            loop {
                let mut s = tokio::net::TcpStream::connect(&self.addr).await.unwrap();
                s.write_all(b"GET /api/workers HTTP/1.0\r\nHost: x\r\n\r\n")
                    .await
                    .unwrap();
                let mut body = String::new();
                s.read_to_string(&mut body).await.unwrap();
                if body.contains("\"cluster\"") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }
}

fn inc(client: usize, n: usize) -> Args {
    Args::new().with("client", client as i64).with("n", n as i64)
}

/// A call that ran, or was queued behind another one on the worker (concurrent calls are).
fn ran(o: &Result<Outcome, amrpc_core::Error>, what: &str) {
    assert!(matches!(o, Ok(Outcome::Executed | Outcome::Queued(_))), "{what}: {o:?}");
}

/// Until `n` distinct calls ran (queued ones run when the worker's queue drains).
async fn all_ran(runs: &Runs, n: usize) {
    within("every call ran", async {
        while runs.lock().unwrap().len() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Every client's mirror shows the worker's clock.
async fn converged(clients: &[Client], m: &Machine) {
    let want = m.time(None);
    let states = m.state_names();
    let states: Vec<&str> = states.iter().map(String::as_str).collect();
    for (i, c) in clients.iter().enumerate() {
        within(
            &format!("client {i} converges"),
            Api::when_time(c.mirror(), &states, &want, None),
        )
        .await
        .unwrap();
        assert_eq!(c.mirror().time(None), want, "client {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_edges_a_killed_edge_and_a_restarted_nats() {
    let n_clients = env_or("AMRPC_NATS_CLIENTS", 300);
    let ops = env_or("AMRPC_NATS_OPS", 4);
    let nats = Nats::start().await;
    let (m, runs) = worker();
    let _host = host(&nats, "cluster", m.clone()).await;
    let mut edges = Vec::new();
    for _ in 0..3 {
        edges.push(edge_proc(&nats).await);
    }
    for e in &edges {
        e.serving().await;
    }
    let urls: Vec<String> = edges.iter().map(EdgeProc::url).collect();
    // client i starts on edge i % 3 and fails over to the next ones
    let clients: Vec<Client> = join_all((0..n_clients).map(|i| {
        let order: Vec<String> = (0..3).map(|k| urls[(i + k) % 3].clone()).collect();
        async move {
            let order: Vec<&str> = order.iter().map(String::as_str).collect();
            let opts = ClientOpts {
                client_id: format!("c{i}"),
                conn_retries: 50,
                ..Default::default()
            };
            within("connect", Client::connect_any(&order, opts))
                .await
                .expect("connect")
        }
    }))
    .await;

    // a burst from clients on every edge; edge 0 is killed in the middle of it
    let burst = join_all(clients.iter().enumerate().map(|(i, c)| async move {
        let mut out = Vec::new();
        for n in 0..ops {
            out.push(c.mirror().add1("Inc", Some(inc(i, n))).await);
        }
        out
    }));
    let kill = async {
        // after about a third of the calls ran
        let third = (n_clients * ops / 3).max(1);
        within("a third of the burst", async {
            while runs.lock().unwrap().len() < third {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let mut dead = edges.remove(0);
        dead.child.kill().unwrap();
        dead.child.wait().unwrap();
        runs.lock().unwrap().len()
    };
    let started = std::time::Instant::now();
    let (results, ran_at_kill) = within("the burst", async { tokio::join!(burst, kill) }).await;
    let burst_time = started.elapsed();
    assert!(
        ran_at_kill < n_clients * ops,
        "the edge died mid-burst ({ran_at_kill} calls had run)"
    );
    // the killed edge's clients moved to the others
    for (i, c) in clients.iter().enumerate().step_by(3) {
        assert!(
            c.states().tick(names::DISCONNECTED) > 0,
            "client {i} was on the killed edge"
        );
    }
    for (i, r) in results.iter().enumerate() {
        for (n, o) in r.iter().enumerate() {
            ran(o, &format!("client {i} call {n}"));
        }
    }
    all_ran(&runs, n_clients * ops).await;
    {
        let runs = runs.lock().unwrap();
        assert_eq!(runs.len(), n_clients * ops, "every call ran");
        let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
        assert!(twice.is_empty(), "calls that ran more than once: {twice:?}");
    }
    converged(&clients, &m).await;
    let moved = clients
        .iter()
        .filter(|c| c.states().tick(names::DISCONNECTED) > 0)
        .count();
    eprintln!(
        "{n_clients} clients × {ops} calls in {burst_time:?}; edge 0 killed after {ran_at_kill} had run; \
         {moved} clients failed over; every call ran once; every mirror converged"
    );

    // restart NATS: the edges close their sessions (clients see Disconnected), everything
    // reconnects by itself, and a second burst converges
    let disconnected: Vec<u64> = clients.iter().map(|c| c.states().tick(names::DISCONNECTED)).collect();
    let nats = nats.restart().await;
    within("every client saw Disconnected", async {
        for (c, before) in clients.iter().zip(&disconnected) {
            while c.states().tick(names::DISCONNECTED) == *before {
                c.states().when_ticks(names::DISCONNECTED, 1, None).await.ok();
            }
        }
    })
    .await;
    let second = join_all(
        clients
            .iter()
            .enumerate()
            .map(|(i, c)| async move { c.mirror().add1("Inc", Some(inc(i, ops))).await }),
    );
    let second = within("the second burst", second).await;
    for (i, o) in second.iter().enumerate() {
        ran(o, &format!("client {i}, second burst"));
    }
    all_ran(&runs, n_clients * (ops + 1)).await;
    assert_eq!(runs.lock().unwrap().len(), n_clients * (ops + 1));
    assert!(runs.lock().unwrap().values().all(|n| *n == 1));
    converged(&clients, &m).await;
    eprintln!(
        "NATS restarted: every client saw Disconnected; a second burst of {n_clients} calls ran once each; converged"
    );
    drop(nats);
}
