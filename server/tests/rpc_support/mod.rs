//! Shared helpers of `tests/rpc.rs`, `tests/integration.rs` and `tests/soak.rs`: upstream's test
//! worker schemas, a server/client harness, waits and a deterministic RNG. The proxy is in
//! `tests/fault_proxy`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use amrpc_client::{Client, ClientOpts};
use amrpc_core::states;
use amrpc_core::{EXCEPTION, Machine, Opts, Schema, State, schema, struct_merge};
use amrpc_server::{Server, ServerOpts, Worker};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub(crate) mod raw;

/// Every wait in the tests is bounded by this unless a test says otherwise.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// Every test body as a whole is bounded by this (mutations awaited directly included).
pub(crate) const TEST_LIMIT: Duration = Duration::from_secs(45);

/// Await `f` for at most `d`, panicking with `what` on timeout.
pub(crate) async fn within<F: std::future::Future>(d: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(d, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {d:?}: {what}"),
    }
}

/// Poll `cond` every 5 ms until it holds, for at most `d`.
pub(crate) async fn eventually(d: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    within(d, what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

// ----- worker schemas (spec §6.3, upstream internal/testing) -----

/// Names in order, without duplicates (upstream `am.SAdd`).
pub(crate) fn sadd(first: &[&str], second: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in first.iter().chain(second) {
        if !out.iter().any(|x| x == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// Upstream's "Rels" states: A Auto Req C; B Multi Add C; C After D; D Add C, B.
pub(crate) fn rels_schema() -> Schema {
    schema([
        ("A", State::new().auto().require(&["C"])),
        ("B", State::new().multi().add(&["C"])),
        ("C", State::new().after(&["D"])),
        ("D", State::new().add(&["C", "B"])),
    ])
}

/// Build and verify a worker: `own` merged over the worker schema, states in `names` order.
pub(crate) fn worker_with(id: &str, own: &Schema, names: &[String], handler_timeout: Option<Duration>) -> Machine {
    let m = Machine::new(
        struct_merge(&[&states::worker_schema(), own]),
        Opts {
            id: Some(id.to_string()),
            handler_timeout,
            ..Default::default()
        },
    )
    .expect("valid worker schema");
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    m.verify_states(&names).expect("verify_states");
    m
}

/// Upstream's test worker order: `Exception, A, B, C, D`, then the worker states.
pub(crate) fn abcd_names() -> Vec<String> {
    sadd(&[EXCEPTION, "A", "B", "C", "D"], &states::WORKER_STATES)
}

/// `utils.NewRelsRpcWorker`: names `Exception, A, B, C, D` + worker states (13 states).
pub(crate) fn rels_worker(id: &str) -> Machine {
    worker_with(id, &rels_schema(), &abcd_names(), None)
}

/// `utils.NewNoRelsRpcWorker`: A–D without relations.
pub(crate) fn norels_worker(id: &str) -> Machine {
    let own = schema([
        ("A", State::new()),
        ("B", State::new()),
        ("C", State::new()),
        ("D", State::new()),
    ]);
    worker_with(id, &own, &abcd_names(), None)
}

// ----- harness -----

/// A running server with one worker named `w`.
pub(crate) struct Harness {
    pub(crate) srv: Server,
    pub(crate) worker: Worker,
    pub(crate) addr: SocketAddr,
    pub(crate) serve: JoinHandle<()>,
    /// The server's own runtime, when it has one (see [`Harness::start_isolated`]).
    rt: Option<tokio::runtime::Runtime>,
}

impl Harness {
    /// Serve `machine` as `/ws/w` on 127.0.0.1:0, in the test's runtime.
    pub(crate) async fn start(machine: Machine, opts: ServerOpts) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_on(listener, machine, opts)
    }

    /// Serve `machine` on an existing listener, in the test's runtime.
    pub(crate) fn start_on(listener: TcpListener, machine: Machine, opts: ServerOpts) -> Harness {
        let addr = listener.local_addr().expect("local addr");
        let srv = Server::new(opts);
        let worker = srv.add_worker("w", machine).expect("add_worker");
        let s = srv.clone();
        let serve = tokio::spawn(async move {
            if let Err(e) = s.serve(listener).await {
                panic!("serve: {e}");
            }
        });
        Harness {
            srv,
            worker,
            addr,
            serve,
            rt: None,
        }
    }

    /// Serve `machine` on 127.0.0.1:0 in a runtime of its own (2 workers), as a separate server
    /// process would: worker handlers that block (sleep) stall only the server's runtime, not the
    /// test's clients, timers and proxy.
    pub(crate) fn start_isolated(machine: Machine, opts: ServerOpts) -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local addr");
        let srv = Server::new(opts);
        let worker = srv.add_worker("w", machine).expect("add_worker");
        let s = srv.clone();
        let serve = rt.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("tokio listener");
            if let Err(e) = s.serve(listener).await {
                panic!("serve: {e}");
            }
        });
        Harness {
            srv,
            worker,
            addr,
            serve,
            rt: Some(rt),
        }
    }

    /// Spawn a task on the server's runtime.
    pub(crate) fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        match &self.rt {
            Some(rt) => drop(rt.spawn(f)),
            None => drop(tokio::spawn(f)),
        }
    }

    /// The worker's URL on the server itself.
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws/w", self.addr)
    }

    /// The served machine.
    pub(crate) fn w(&self) -> &Machine {
        self.worker.machine()
    }

    /// Connect a client to `url`.
    pub(crate) async fn client(url: &str, opts: ClientOpts) -> Client {
        within(WAIT, "client connect", Client::connect(url, opts))
            .await
            .expect("client connects")
    }

    /// Shut down and wait for the serve loop.
    pub(crate) async fn stop(mut self) {
        self.srv.shutdown();
        let _ = tokio::time::timeout(WAIT, &mut self.serve).await;
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.srv.shutdown();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Client options with an id.
pub(crate) fn copts(id: &str) -> ClientOpts {
    ClientOpts {
        client_id: id.to_string(),
        ..Default::default()
    }
}

/// Tick of a state on a machine (0 if unknown).
pub(crate) fn tick(m: &Machine, s: &str) -> u64 {
    if m.has1(s) { m.tick(s) } else { 0 }
}

/// Resident set size of this process in bytes (`VmRSS` of /proc/self/status).
pub(crate) fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

/// xorshift64*: deterministic pseudo-random numbers for the tests.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
