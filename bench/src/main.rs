//! `amrpc-bench`: upstream's aRPC-vs-gRPC "subscribe → get → process" benchmark (spec `arpc.md`
//! §7) in one run: amrpc over WebSocket, the same scenario over tonic gRPC, the local machine and
//! a plain loop; bytes, messages and round trips through a metering TCP proxy; allocations;
//! fan-out to many clients; idle-session memory; the wasm client in headless Chromium; SVG plots;
//! and the load run (`load`: 10,000 concurrent clients, see `load.rs`).
//!
//! `--quick` checks correctness only (0 worker errors, message and call counts), never timings.
//! See docs/BENCHMARKS.md for the commands and the figures.

mod arpc;
mod connect;
mod echo;
mod fanout;
mod grpc;
mod instr;
mod js;
mod load;
mod local;
mod machine_load;
mod nats;
mod proxy;
mod report;
mod scenario;
mod stats;
mod svg;

use machine_load::{MachineInfo, SectionLoad, SectionTimer, loadavg, machine_info};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use amrpc_core::wire::{self, ClientMsg, ServerMsg};
use clap::{Args, Parser, Subcommand};

use crate::proxy::Snap;
use crate::scenario::{RunResult, Threads, run_once};
use crate::stats::{Summary, percentile};

#[derive(Parser, Debug)]
#[command(
    name = "amrpc-bench",
    version,
    about = "amrpc benchmark suite (upstream's subscribe-get-process and more)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Everything: ops, fan-out + idle memory, browser (the default).
    All,
    /// The op variants only (amrpc, gRPC, local machine, plain loop).
    Ops,
    /// Fan-out and idle-session memory only.
    Fanout,
    /// The browser figure only (the npm package in headless Chromium beside a raw WebSocket echo
    /// in the same page).
    Browser,
    /// The Node figure only (the npm package in Node beside a raw `ws` echo in the same process).
    Node,
    /// Connection setup only: connect → handshake → close cycles per second, beside a raw
    /// WebSocket connect + echo + close on the same server process (the floor).
    Connect,
    /// The load run: --clients N (default 10 000) concurrent clients on one server (raises the
    /// soft fd limit itself); handshakes, RSS per session, fan-out, a burst and convergence, a
    /// probe client's round trips. Not part of `all` (minutes, thousands of sockets): see
    /// scripts/load.sh. `--quick` runs it with 300 clients.
    Load,
    /// A fixed workload for instruction counting (no runtime, no timings): `-n` ops on `path`;
    /// see scripts/callgrind.sh.
    Instr {
        /// `machine` (the local worker) or `sessions` (client → server → client in memory).
        #[arg(value_enum)]
        path: instr::Path,
    },
    /// The JS runs' server alone (the bench worker on `/ws/bench`, the echo on `/echo`, no rate
    /// limit) until killed, for profiling a JS client by hand (e.g. `node --cpu-prof`).
    JsServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18080")]
        addr: std::net::SocketAddr,
    },
    /// Live heap of an idle session's parts (the server session, the session machine).
    SessionMemory,
    /// The NATS hop (issue 14): op latency and NATS traffic on the worker's own server vs an
    /// edge, fan-out to --clients (default 1 000) on one server vs over 3 edges, NATS messages
    /// per worker change. Needs `nats-server`. Not part of `all`.
    Nats,
    /// (internal) the server process of the fan-out, memory and load runs.
    #[command(hide = true)]
    ChildServer {
        /// Runtime worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// The server's session limit.
        #[arg(long, default_value_t = fanout::DEFAULT_MAX_SESSIONS)]
        max_sessions: usize,
    },
}

#[derive(Args, Debug, Clone)]
struct Opts {
    /// Correctness only, small and fast (for CI): N=200, 1 run, 1 and 10 clients, no browser, no
    /// plots, and the load run with 300 clients; fails on wrong counts, worker errors, or a
    /// client that did not handshake or converge, never on timings.
    #[arg(long, global = true)]
    quick: bool,
    /// Ops per network run (upstream's N). Local variants run a multiple of it per run.
    #[arg(global = true, short = 'n', long, default_value_t = 10_000)]
    ops: usize,
    /// Timed runs per variant (interleaved round-robin).
    #[arg(global = true, long, default_value_t = 7)]
    runs: usize,
    /// Fan-out client counts (default 1,10,100,1000); for `load`, the largest is N (default
    /// 10 000; 300 with --quick).
    #[arg(global = true, long, value_delimiter = ',')]
    clients: Vec<usize>,
    /// Worker mutations timed per fan-out client count.
    #[arg(global = true, long, default_value_t = 200)]
    mutations: usize,
    /// Pause between fan-out mutations, ms (more than the 16 ms push interval).
    #[arg(global = true, long, default_value_t = 40)]
    gap_ms: u64,
    /// Runtime worker threads of the fan-out server process.
    #[arg(global = true, long, default_value_t = 2)]
    server_threads: usize,
    /// Load run: worker mutations per burst, back to back.
    #[arg(global = true, long, default_value_t = 1000)]
    burst: usize,
    /// Load run: bursts, one after the other (each waits for every mirror to converge).
    #[arg(global = true, long, default_value_t = 5)]
    bursts: usize,
    /// Load run: handshakes in flight at once.
    #[arg(global = true, long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Connection-setup run: cycles per kind and round (3 rounds; 100 and 1 round with --quick).
    #[arg(global = true, long, default_value_t = 2000)]
    connect_cycles: usize,
    /// Connection-setup run: cycles in flight at once.
    #[arg(global = true, long, default_value_t = 32)]
    connect_in_flight: usize,
    /// Load run: the probe client's round-trip period, ms.
    #[arg(global = true, long, default_value_t = 50)]
    probe_ms: u64,
    /// Route the fan-out clients through the metering proxy, to count the pushes per mutation
    /// (adds a hop to the measured latency).
    #[arg(long, global = true)]
    fanout_proxy: bool,
    /// The wasm package (wasm-pack --target web output).
    #[arg(global = true, long, default_value = "target/npm/web")]
    pkg: PathBuf,
    /// The Chromium binary.
    #[arg(global = true, long, default_value = "chromium")]
    chromium: String,
    /// Ops per round in the browser and Node runs (200 with --quick).
    #[arg(global = true, long, default_value_t = 10_000)]
    browser_ops: usize,
    /// Rounds of the browser and Node runs, amrpc and the echo alternating (1 with --quick).
    #[arg(global = true, long, default_value_t = 3)]
    js_rounds: usize,
    /// Skip the browser figure in `all`.
    #[arg(long, global = true)]
    no_browser: bool,
    /// The Node binary.
    #[arg(global = true, long, default_value = "node")]
    node: String,
    /// A project with `amrpc` and `ws` installed (scripts/web/node.sh makes this one).
    #[arg(global = true, long, default_value = "target/node-tests")]
    node_dir: PathBuf,
    /// Skip the Node figure in `all`.
    #[arg(long, global = true)]
    no_node: bool,
    /// Only the op variants whose "name, runtime" label contains one of these (e.g. "amrpc WS
    /// (direct), 2 threads"); for profiling.
    #[arg(global = true, long, value_delimiter = ';')]
    only: Vec<String>,
    /// Where to write the results as JSON.
    #[arg(global = true, long, default_value = "target/bench/results.json")]
    json: PathBuf,
    /// Where to write the SVG plots (not in --quick).
    #[arg(global = true, long, default_value = "docs/bench")]
    svg_dir: PathBuf,
    /// Before each section, wait until the 1-minute load average is below this (bounded by
    /// --load-wait); the load is recorded either way.
    #[arg(long, global = true)]
    max_load: Option<f64>,
    /// Longest wait for --max-load, seconds.
    #[arg(global = true, long, default_value_t = 900)]
    load_wait: u64,
}

/// The first byte of amrpc's messages: postcard's variant index, read by the proxy.
pub(crate) struct Tags {
    /// `ClientMsg::Hello`.
    pub(crate) hello: u8,
    /// `ClientMsg::Add`.
    pub(crate) add: u8,
    /// `ServerMsg::Welcome` (cannot be built cheaply: the variant before `Executed`).
    pub(crate) welcome: u8,
    /// `ServerMsg::Executed`.
    pub(crate) executed: u8,
    /// `ServerMsg::Update`: a push.
    pub(crate) update: u8,
}

/// The message tags, computed by encoding sample messages.
pub(crate) fn tags() -> &'static Tags {
    static T: OnceLock<Tags> = OnceLock::new();
    T.get_or_init(|| {
        let first = |v: Vec<u8>| v[0];
        let executed = first(
            ServerMsg::Executed(wire::Reply { req: 0, update: None })
                .encode()
                .expect("encode"),
        );
        Tags {
            hello: first(ClientMsg::Hello(wire::Hello::default()).encode().expect("encode")),
            add: first(ClientMsg::Add(wire::MutationReq::default()).encode().expect("encode")),
            welcome: executed - 1,
            executed,
            update: first(
                ServerMsg::Update(wire::ClockUpdate {
                    seq: 0,
                    checksum: 0,
                    ticks: wire::Ticks::Full(Vec::new()),
                })
                .encode()
                .expect("encode"),
            ),
        }
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
enum Kind {
    Plain,
    PlainSpawn,
    Machine,
    MachineSpawn,
    Amrpc,
    Grpc,
    Echo,
}

#[derive(Clone, Debug)]
struct Variant {
    name: &'static str,
    kind: Kind,
    threads: Threads,
    proxied: bool,
    /// Ops per run = N × scale (fast local variants need more ops to time).
    scale: usize,
}

fn variants() -> Vec<Variant> {
    let v = |name, kind, threads, proxied, scale| Variant {
        name,
        kind,
        threads,
        proxied,
        scale,
    };
    vec![
        v("amrpc WS (proxy)", Kind::Amrpc, Threads::One, true, 1),
        v("amrpc WS (proxy)", Kind::Amrpc, Threads::Two, true, 1),
        v("tonic gRPC (proxy)", Kind::Grpc, Threads::One, true, 1),
        v("tonic gRPC (proxy)", Kind::Grpc, Threads::Two, true, 1),
        v("amrpc WS (direct)", Kind::Amrpc, Threads::One, false, 1),
        v("amrpc WS (direct)", Kind::Amrpc, Threads::Two, false, 1),
        v("tonic gRPC (direct)", Kind::Grpc, Threads::One, false, 1),
        v("tonic gRPC (direct)", Kind::Grpc, Threads::Two, false, 1),
        v("raw WS echo (the floor)", Kind::Echo, Threads::One, false, 1),
        v("raw WS echo (the floor)", Kind::Echo, Threads::Two, false, 1),
        v("machine, task per op", Kind::MachineSpawn, Threads::One, false, 10),
        v("machine, sync loop", Kind::Machine, Threads::None, false, 10),
        v("plain, task per op", Kind::PlainSpawn, Threads::One, false, 10),
        v("plain, task per op", Kind::PlainSpawn, Threads::Two, false, 10),
        v("plain, sync loop", Kind::Plain, Threads::None, false, 100),
    ]
}

const SEED: u64 = 7;

fn run_variant(v: &Variant, n: usize, count_allocs: bool) -> Result<RunResult, String> {
    let r = match v.kind {
        Kind::Amrpc => run_once::<arpc::Arpc>(v.threads, SEED, v.proxied, n, count_allocs),
        Kind::Grpc => run_once::<grpc::Grpc>(v.threads, SEED, v.proxied, n, count_allocs),
        Kind::Echo => run_once::<echo::Echo>(v.threads, SEED, false, n, count_allocs),
        Kind::Machine => run_once::<local::MachineSync>(v.threads, SEED, false, n, count_allocs),
        Kind::MachineSpawn => run_once::<local::MachineSpawn>(v.threads, SEED, false, n, count_allocs),
        Kind::Plain => run_once::<local::PlainSync>(v.threads, SEED, false, n, count_allocs),
        Kind::PlainSpawn => run_once::<local::PlainSpawn>(v.threads, SEED, false, n, count_allocs),
    };
    r.map_err(|e| format!("{} ({}): {e}", v.name, v.threads.label()))
}

/// Wire figures of a proxied variant.
#[derive(Clone, Debug, serde::Serialize)]
struct WireStats {
    /// Ops in the timed section.
    n: usize,
    /// Counters over the timed section.
    timed: Snap,
    /// Counters over the whole connection (handshake included), before closing.
    total: Snap,
    /// Calls as upstream counts them.
    calls: Option<u64>,
    /// Timed bytes (both directions, TCP payload) per op.
    bytes_per_op: f64,
    /// Total bytes per op, handshake included (upstream's TrafficMeter figure).
    bytes_per_op_total: f64,
    /// Timed message payload bytes per op (postcard / HTTP/2 frame payloads).
    app_bytes_per_op: f64,
    /// Timed frame headers per op (WebSocket / HTTP/2 framing).
    framing_per_op: f64,
    /// Client → server messages per op.
    c2s_per_op: f64,
    /// Server → client messages per op.
    s2c_per_op: f64,
    /// Server pushes (amrpc `Update`) per op.
    pushes_per_op: f64,
    /// Round trips (server messages following a client message) per op.
    turns_per_op: f64,
    /// Bytes outside the timed section: the HTTP upgrade / HTTP/2 setup, Hello/Welcome or
    /// Subscribe.
    setup_bytes: u64,
}

impl WireStats {
    fn new(n: usize, timed: Snap, total: Snap, calls: Option<u64>, kind: Kind) -> WireStats {
        let per = |v: u64| v as f64 / n as f64;
        let pushes = match kind {
            Kind::Amrpc => timed.s2c.kinds[tags().update as usize],
            _ => 0,
        };
        WireStats {
            n,
            timed,
            total,
            calls,
            bytes_per_op: per(timed.bytes()),
            bytes_per_op_total: per(total.bytes()),
            app_bytes_per_op: per(timed.c2s.payload + timed.s2c.payload),
            framing_per_op: per(timed.c2s.framing() + timed.s2c.framing()),
            c2s_per_op: per(timed.c2s.messages),
            s2c_per_op: per(timed.s2c.messages),
            pushes_per_op: per(pushes),
            turns_per_op: per(timed.turns),
            setup_bytes: total.bytes() - timed.bytes(),
        }
    }
}

/// One variant's figures.
#[derive(Clone, Debug, serde::Serialize)]
struct OpResult {
    variant: &'static str,
    kind: Kind,
    runtime: &'static str,
    proxied: bool,
    ops_per_run: usize,
    /// ns/op over the timed runs.
    ns_per_op: Summary,
    samples_ns_per_op: Vec<f64>,
    /// Allocations per op over one extra run on one thread (not for 2-thread runtimes).
    allocs_per_op: Option<f64>,
    alloc_bytes_per_op: Option<f64>,
    wire: Option<WireStats>,
    /// 1-minute load average before and after this variant's runs.
    load: (f64, f64),
}

/// A correctness check (quick mode fails on any failed check).
#[derive(Clone, Debug, serde::Serialize)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn check(&mut self, name: impl Into<String>, ok: bool, detail: impl Into<String>) {
        let c = Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        };
        eprintln!(
            "check {}: {} ({})",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        );
        self.0.push(c);
    }
    fn eq(&mut self, name: impl Into<String>, got: u64, want: u64) {
        self.check(name, got == want, format!("got {got}, want {want}"));
    }
}

/// Load averages (1, 5, 15 min).
/// Percentiles of one kind of fan-out mutation.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
struct LatencySummary {
    /// Mutations timed.
    mutations: usize,
    /// To the last client: p50, p99, max (ms).
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// To the median client: p50, p99 (ms).
    median_client_p50_ms: f64,
    median_client_p99_ms: f64,
    /// Pushes per mutation per client (with --fanout-proxy).
    pushes_per_client: Option<f64>,
}

impl LatencySummary {
    fn of(l: &fanout::Latencies, clients: usize, proxied: bool) -> LatencySummary {
        LatencySummary {
            pushes_per_client: proxied.then(|| l.pushes as f64 / (l.to_last.len().max(1) * clients) as f64),
            mutations: l.to_last.len(),
            p50_ms: percentile(&l.to_last, 50.0),
            p99_ms: percentile(&l.to_last, 99.0),
            max_ms: l.to_last.last().copied().unwrap_or(0.0),
            median_client_p50_ms: percentile(&l.to_median, 50.0),
            median_client_p99_ms: percentile(&l.to_median, 99.0),
        }
    }
}

/// A fan-out client count's figures.
#[derive(Clone, Debug, serde::Serialize)]
struct FanoutSummary {
    clients: usize,
    /// Worker ops (5-transition cascade, clients wait for `Event` +2).
    op: LatencySummary,
    /// Single-transition mutations.
    toggle: LatencySummary,
    bytes_per_session: f64,
    rss_before_kb: u64,
    rss_idle_kb: u64,
    load: (f64, f64),
}

#[derive(Debug, serde::Serialize)]
struct Results {
    quick: bool,
    n: usize,
    runs: usize,
    machine: MachineInfo,
    ops: Vec<OpResult>,
    fanout: Vec<FanoutSummary>,
    /// Heap held by idle sessions (current-thread server, the most clients).
    heap: Option<fanout::HeapResult>,
    browser: Option<js::JsResult>,
    browser_skipped: Option<String>,
    node: Option<js::JsResult>,
    node_skipped: Option<String>,
    /// The load run (`load`, or `--quick`).
    load: Option<load::LoadResult>,
    connect: Option<connect::ConnectResult>,
    /// The load each section ran under.
    sections: Vec<SectionLoad>,
    checks: Vec<Check>,
}

fn main() {
    let cli = Cli::parse();
    // the commands that are not the suite's sections
    let early: Option<(&str, Result<(), String>)> = match &cli.cmd {
        Some(Cmd::ChildServer { threads, max_sessions }) => {
            Some(("child server", fanout::child_server(*threads, *max_sessions)))
        }
        Some(Cmd::JsServer { addr }) => Some(("js-server", js::serve_until_killed(*addr))),
        Some(Cmd::SessionMemory) => Some(("session-memory", instr::session_memory())),
        Some(Cmd::Instr { path }) => Some(("instr", instr::run(*path, cli.opts.ops))),
        Some(Cmd::Nats) => {
            let o = &cli.opts;
            let clients = o.clients.iter().max().copied();
            Some((
                "nats",
                nats::command(o.quick, clients, o.ops, o.runs, o.mutations, &o.json),
            ))
        }
        _ => None,
    };
    if let Some((what, r)) = early {
        if let Err(e) = r {
            eprintln!("{what}: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut opts = cli.opts.clone();
    let load_clients = match opts.clients.iter().max() {
        Some(&k) => k,
        None if opts.quick => 300,
        None => 10_000,
    };
    if opts.clients.is_empty() {
        opts.clients = vec![1, 10, 100, 1000];
    }
    if opts.quick {
        opts.ops = opts.ops.min(200);
        opts.runs = 1;
        opts.clients = vec![1, 10];
        opts.mutations = opts.mutations.min(20);
        opts.no_browser = true;
        opts.no_node = true;
        opts.browser_ops = opts.browser_ops.min(200);
        opts.js_rounds = 1;
    }
    let (do_ops, do_fanout, do_browser, do_load) = match cli.cmd {
        None | Some(Cmd::All) => (true, true, !opts.no_browser, opts.quick),
        Some(Cmd::Ops) => (true, false, false, false),
        Some(Cmd::Fanout) => (false, true, false, false),
        Some(Cmd::Browser) => (false, false, true, false),
        Some(Cmd::Load) => (false, false, false, true),
        Some(Cmd::Connect | Cmd::Node) => (false, false, false, false),
        Some(_) => unreachable!("handled above"),
    };
    let do_connect = matches!(cli.cmd, None | Some(Cmd::All | Cmd::Connect));
    let do_node = match cli.cmd {
        None | Some(Cmd::All) => !opts.no_node,
        Some(Cmd::Node) => true,
        _ => false,
    };
    // asked for by name, a JS figure that cannot run is a failure, not a skip
    let js_required = matches!(cli.cmd, Some(Cmd::Browser | Cmd::Node));
    let mut checks = Checks::default();
    let mut results = Results {
        quick: opts.quick,
        n: opts.ops,
        runs: opts.runs,
        machine: machine_info(),
        ops: Vec::new(),
        fanout: Vec::new(),
        heap: None,
        browser: None,
        browser_skipped: None,
        node: None,
        node_skipped: None,
        load: None,
        connect: None,
        sections: Vec::new(),
        checks: Vec::new(),
    };
    let t0 = Instant::now();
    let outcome = (|| -> Result<(), String> {
        if do_ops {
            let t = SectionTimer::start(&opts, "ops");
            results.ops = ops_section(&opts, &mut checks)?;
            results.sections.push(t.end());
        }
        if do_fanout {
            results.fanout = fanout_section(&opts, &mut checks, &mut results.sections)?;
            if let Some(&k) = opts.clients.iter().max() {
                let t = SectionTimer::start(&opts, "idle heap");
                let rt = Threads::Two.runtime().map_err(|e| e.to_string())?;
                let h = rt.block_on(fanout::heap_probe(k))?;
                eprintln!(
                    "idle heap: {k} sessions: {:.0} B heap and {:.1} allocations per session ({:.0} B RSS)",
                    h.heap_bytes_per_session, h.allocs_per_session, h.rss_bytes_per_session
                );
                checks.check(
                    format!("idle heap: {k} sessions counted"),
                    h.heap_bytes_per_session > 0.0,
                    format!("{:.0} B per session", h.heap_bytes_per_session),
                );
                results.heap = Some(h);
                results.sections.push(t.end());
            }
        }
        if do_browser {
            let (r, skipped) = js_section(&opts, &mut checks, &mut results.sections, JsKind::Browser, js_required)?;
            results.browser = r;
            results.browser_skipped = skipped;
        }
        if do_node {
            let (r, skipped) = js_section(&opts, &mut checks, &mut results.sections, JsKind::Node, js_required)?;
            results.node = r;
            results.node_skipped = skipped;
        }
        if do_connect {
            let t = SectionTimer::start(&opts, "connect");
            results.connect = Some(connect_section(&opts, &mut checks)?);
            results.sections.push(t.end());
        }
        if do_load {
            let t = SectionTimer::start(&opts, &format!("load {load_clients}"));
            results.load = Some(load_section(&opts, load_clients, &mut checks)?);
            results.sections.push(t.end());
        }
        Ok(())
    })();
    results.checks = checks.0.clone();
    report::print_report(&results);
    if let Some(dir) = opts.json.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match serde_json::to_string_pretty(&results) {
        Ok(j) => {
            if let Err(e) = std::fs::write(&opts.json, j) {
                eprintln!("writing {}: {e}", opts.json.display());
            }
        }
        Err(e) => eprintln!("json: {e}"),
    }
    if !opts.quick {
        if let Err(e) = report::write_plots(&opts, &results) {
            eprintln!("plots: {e}");
        }
    }
    let failed: Vec<&Check> = checks.0.iter().filter(|c| !c.ok).collect();
    eprintln!(
        "\n{} checks, {} failed, {:.1} s",
        checks.0.len(),
        failed.len(),
        t0.elapsed().as_secs_f64()
    );
    if let Err(e) = outcome {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum JsKind {
    Browser,
    Node,
}

/// The browser or Node figure beside its echo floor (`js/`); a run that cannot start is skipped
/// unless `required`.
fn js_section(
    opts: &Opts,
    checks: &mut Checks,
    sections: &mut Vec<SectionLoad>,
    kind: JsKind,
    required: bool,
) -> Result<(Option<js::JsResult>, Option<String>), String> {
    let label = if kind == JsKind::Browser { "browser" } else { "node" };
    let t = SectionTimer::start(opts, label);
    let load0 = t.load;
    let rt = Threads::Two.runtime().map_err(|e| e.to_string())?;
    let (n, rounds, limit) = (opts.browser_ops, opts.js_rounds.max(1), Duration::from_secs(600));
    let got = rt.block_on(async {
        match kind {
            JsKind::Browser => js::browser::run(&opts.pkg, &opts.chromium, n, rounds, limit).await,
            JsKind::Node => js::node::run(&opts.node, &opts.node_dir, n, rounds, limit).await,
        }
    });
    sections.push(t.end());
    match got {
        Ok(b) => {
            checks.eq(format!("{label}: worker errors"), b.errors as u64, 0);
            // each CallOp counts one success (Start's op, the first, does not): the warm-up's and
            // every round's
            checks.eq(
                format!("{label}: ops run"),
                b.successes as u64,
                (n.min(js::WARM_UP) + n * rounds) as u64,
            );
            eprintln!(
                "{label}: {:.1} µs per op, echo {:.1} µs: {:.2}× the floor; {:.0} remote mutations/s (load {:.2} → {:.2})",
                b.amrpc_us_per_op,
                b.echo_us_per_op,
                b.ratio_to_floor,
                b.per_sec,
                load0[0],
                loadavg()[0]
            );
            Ok((Some(b), None))
        }
        Err(e) if required => Err(format!("{label}: {e}")),
        Err(e) => {
            eprintln!("{label}: skipped: {e}");
            Ok((None, Some(e)))
        }
    }
}

fn ops_section(opts: &Opts, checks: &mut Checks) -> Result<Vec<OpResult>, String> {
    let vs: Vec<Variant> = variants()
        .into_iter()
        .filter(|v| {
            let label = format!("{}, {}", v.name, v.threads.label());
            opts.only.is_empty() || opts.only.iter().any(|o| label.contains(o.as_str()))
        })
        .collect();
    let n = opts.ops;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); vs.len()];
    let mut firsts: Vec<Option<RunResult>> = vec![None; vs.len()];
    let mut loads: Vec<(f64, f64)> = vec![(f64::NAN, f64::NAN); vs.len()];
    // one untimed warm-up round, then the timed rounds, variants interleaved
    for round in 0..=opts.runs {
        for (i, v) in vs.iter().enumerate() {
            let l0 = loadavg()[0];
            let r = run_variant(v, n * v.scale, false)?;
            if round == 0 {
                continue;
            }
            checks.check(
                format!("{} ({}) run {round}: 0 errors, ≥ 1 success", v.name, v.threads.label()),
                r.finish.errors == 0 && r.finish.successes >= 1,
                format!("{} errors, {} successes", r.finish.errors, r.finish.successes),
            );
            samples[i].push(r.ns_per_op());
            if loads[i].0.is_nan() {
                loads[i].0 = l0;
            }
            loads[i].1 = loadavg()[0];
            if firsts[i].is_none() {
                firsts[i] = Some(r);
            } else if let (Some(a), Some(b)) = (firsts[i].as_ref().and_then(|f| f.timed.wire), r.timed.wire) {
                // the same seed gives the same ops: the wire counts must repeat exactly
                checks.check(
                    format!(
                        "{} ({}) run {round}: same wire counts as run 1",
                        v.name,
                        v.threads.label()
                    ),
                    a.c2s.messages == b.c2s.messages && a.s2c.messages == b.s2c.messages && a.turns == b.turns,
                    format!(
                        "{}/{}/{} vs {}/{}/{}",
                        a.c2s.messages, a.s2c.messages, a.turns, b.c2s.messages, b.s2c.messages, b.turns
                    ),
                );
            }
        }
        eprintln!("ops: round {round}/{} done", opts.runs);
    }
    let mut out = Vec::new();
    for (i, v) in vs.iter().enumerate() {
        let first = firsts[i].take().ok_or("no run")?;
        let ops = n * v.scale;
        let (allocs_per_op, alloc_bytes_per_op) = if v.threads == Threads::Two {
            (None, None)
        } else {
            let r = run_variant(v, ops, true)?;
            let (c, b) = r.allocs.unwrap_or((0, 0));
            (Some(c as f64 / ops as f64), Some(b as f64 / ops as f64))
        };
        let wire = match (first.timed.wire, first.finish.total) {
            (Some(t), Some(total)) => Some(WireStats::new(ops, t, total, first.finish.calls, v.kind)),
            _ => None,
        };
        if let Some(w) = &wire {
            wire_checks(checks, v, w, ops as u64);
        }
        out.push(OpResult {
            variant: v.name,
            kind: v.kind,
            runtime: v.threads.label(),
            proxied: v.proxied,
            ops_per_run: ops,
            ns_per_op: Summary::of(&samples[i]),
            samples_ns_per_op: samples[i].clone(),
            allocs_per_op,
            alloc_bytes_per_op,
            wire,
            load: loads[i],
        });
    }
    Ok(out)
}

fn wire_checks(checks: &mut Checks, v: &Variant, w: &WireStats, n: u64) {
    let label = format!("{} ({})", v.name, v.threads.label());
    let t = tags();
    match v.kind {
        Kind::Amrpc => {
            // timed: add1(Start) + N × add1(CallOp), each one request and one reply
            checks.eq(
                format!("{label}: client messages (Start + N ops)"),
                w.timed.c2s.messages,
                n + 1,
            );
            checks.eq(
                format!("{label}: client Add messages"),
                w.timed.c2s.kinds[t.add as usize],
                n + 1,
            );
            checks.eq(format!("{label}: server messages"), w.timed.s2c.messages, n + 1);
            checks.eq(
                format!("{label}: Executed replies"),
                w.timed.s2c.kinds[t.executed as usize],
                n + 1,
            );
            checks.eq(
                format!("{label}: pushes"),
                w.timed.s2c.kinds[t.update as usize] + w.total.s2c.kinds[t.update as usize],
                0,
            );
            checks.eq(format!("{label}: round trips"), w.timed.turns, n + 1);
            checks.eq(
                format!("{label}: control frames"),
                w.total.c2s.control + w.total.s2c.control,
                0,
            );
            checks.eq(
                format!("{label}: one Hello and one Welcome"),
                w.total.c2s.kinds[t.hello as usize] + w.total.s2c.kinds[t.welcome as usize],
                2,
            );
            // upstream: Hello + Handshake + Start + N = N+3; here Hello and Handshake are one
            checks.eq(
                format!("{label}: calls (upstream's count)"),
                w.calls.unwrap_or(0),
                n + 2,
            );
        }
        Kind::Grpc => {
            // Subscribe + Start + 2 × (N+1) unary + (N+2) stream sends
            checks.eq(
                format!("{label}: calls (upstream's count)"),
                w.calls.unwrap_or(0),
                3 * n + 6,
            );
        }
        _ => {}
    }
}

/// The load run and its checks: correctness only (every client handshook and converged, the
/// probe and the late client got through, no session lost, 0 worker errors), never timings.
fn connect_section(opts: &Opts, checks: &mut Checks) -> Result<connect::ConnectResult, String> {
    let rt = Threads::Two.runtime().map_err(|e| e.to_string())?;
    let p = connect::ConnectParams {
        cycles: if opts.quick {
            opts.connect_cycles.min(100)
        } else {
            opts.connect_cycles
        },
        concurrency: opts.connect_in_flight,
        rounds: if opts.quick { 1 } else { 3 },
    };
    let r = rt.block_on(connect::run(&p));
    rt.shutdown_timeout(Duration::from_secs(5));
    let r = r?;
    for k in &r.kinds {
        checks.check(
            format!("connect: every {} cycle succeeded", k.kind),
            k.failures == 0 && k.cycle.n == p.cycles * p.rounds,
            format!("{} ok, {} failed {:?}", k.cycle.n, k.failures, k.first_failure),
        );
    }
    checks.eq(
        "connect: server sessions after the run".to_string(),
        r.sessions_left as u64,
        0,
    );
    Ok(r)
}

fn load_section(opts: &Opts, clients: usize, checks: &mut Checks) -> Result<load::LoadResult, String> {
    let rt = Threads::Two.runtime().map_err(|e| e.to_string())?;
    let p = load::LoadParams {
        clients,
        concurrency: opts.connect_concurrency,
        burst: opts.burst,
        bursts: opts.bursts,
        mutations: opts.mutations,
        gap: Duration::from_millis(opts.gap_ms),
        probe_every: Duration::from_millis(opts.probe_ms),
        server_threads: opts.server_threads,
    };
    let r = rt.block_on(load::run(&p));
    rt.shutdown_timeout(Duration::from_secs(5));
    let r = r?;
    let k = format!("load {clients}");
    let h = &r.handshakes;
    checks.check(
        format!("{k}: every client handshook"),
        h.ok == clients && h.failed == 0,
        format!(
            "{} ok, {} failed {:?} {:?}",
            h.ok, h.failed, h.failures_by_code, h.first_failures
        ),
    );
    checks.eq(
        format!("{k}: server sessions after the handshakes"),
        h.server_sessions,
        clients as u64,
    );
    checks.check(
        format!("{k}: every client saw every fan-out mutation"),
        r.fanout_op.mutations == opts.mutations && r.fanout_toggle.mutations == opts.mutations,
        format!(
            "{} ops and {} toggles of {}",
            r.fanout_op.mutations, r.fanout_toggle.mutations, opts.mutations
        ),
    );
    let b = &r.burst;
    let all = (b.rounds * b.mutations) as u64;
    checks.check(
        format!("{k}: burst mutations executed"),
        b.failed == 0,
        format!(
            "{} of {all}; first failure {:?}",
            all - b.failed as u64,
            b.first_failure
        ),
    );
    checks.eq(
        format!("{k}: mirrors converged after every burst"),
        b.converged as u64,
        h.ok as u64,
    );
    checks.eq(
        format!("{k}: mirrors show exactly the worker's final clock"),
        b.exact_final_clock as u64,
        h.ok as u64,
    );
    let pr = &r.probe;
    checks.check(
        format!("{k}: the probe client connected and its round trips succeeded"),
        pr.connected && pr.round_trips >= 1 && pr.failures == 0,
        format!(
            "connected {}, {} round trips ({} during the bursts), {} failed {:?}",
            pr.connected, pr.round_trips, pr.during_burst, pr.failures, pr.first_failure
        ),
    );
    checks.check(
        format!("{k}: a client connecting as the bursts started got through"),
        pr.late_connected,
        format!("{:.2} ms", pr.late_connect_ms),
    );
    checks.eq(
        format!("{k}: sessions at the end (none dropped)"),
        r.sessions_end,
        h.ok as u64,
    );
    checks.eq(format!("{k}: worker errors"), r.errors as u64, 0);
    Ok(r)
}

fn fanout_section(
    opts: &Opts,
    checks: &mut Checks,
    sections: &mut Vec<SectionLoad>,
) -> Result<Vec<FanoutSummary>, String> {
    let rt = Threads::Two.runtime().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for &k in &opts.clients {
        let t = SectionTimer::start(opts, &format!("fan-out {k}"));
        let l0 = t.load[0];
        let r = rt.block_on(fanout::run(
            k,
            opts.mutations,
            Duration::from_millis(opts.gap_ms),
            opts.server_threads,
            opts.fanout_proxy,
        ))?;
        let l1 = loadavg()[0];
        checks.eq(format!("fan-out {k}: worker errors"), r.errors as u64, 0);
        checks.check(
            format!("fan-out {k}: every client saw every mutation"),
            r.op.to_last.len() == opts.mutations && r.toggle.to_last.len() == opts.mutations,
            format!(
                "{} ops and {} toggles of {}",
                r.op.to_last.len(),
                r.toggle.to_last.len(),
                opts.mutations
            ),
        );
        let s = FanoutSummary {
            clients: k,
            op: LatencySummary::of(&r.op, k, opts.fanout_proxy),
            toggle: LatencySummary::of(&r.toggle, k, opts.fanout_proxy),
            bytes_per_session: r.bytes_per_session,
            rss_before_kb: r.rss_before_kb,
            rss_idle_kb: r.rss_idle_kb,
            load: (l0, l1),
        };
        eprintln!(
            "fan-out {k}: op to last p50 {:.2} ms p99 {:.2} ms; toggle p50 {:.2} ms p99 {:.2} ms; {:.0} B/session (load {:.2} → {:.2})",
            s.op.p50_ms, s.op.p99_ms, s.toggle.p50_ms, s.toggle.p99_ms, s.bytes_per_session, l0, l1
        );
        if let (Some(a), Some(b)) = (s.op.pushes_per_client, s.toggle.pushes_per_client) {
            eprintln!("fan-out {k}: pushes per client: {a:.3} per op, {b:.3} per toggle");
        }
        out.push(s);
        sections.push(t.end());
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(out)
}
