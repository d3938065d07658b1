//! Fan-out and idle-session memory. The server runs in a child process (this binary's hidden
//! `child-server` command) so that its RSS is its own: a `Server` with `demo::bench_worker` on
//! 127.0.0.1, driven by lines on stdin:
//!
//! - `op`: one worker op done on the worker machine itself (`add1(CallOp)` for the current
//!   value, with its cascade: `CallOp` ±1, `Event` ±1, `ValueN`); replies
//!   `op <realtime ns just before add1> <Event tick after>`;
//! - `toggle`: one single-transition mutation, `Healthcheck` on or off (a state with no relations
//!   and no handlers); replies `toggle <realtime ns just before the mutation> <its tick after>`;
//! - `sessions`: `sessions <open sessions>`; `rss`: `rss <VmRSS kB> <VmHWM kB>` from
//!   `/proc/self/status`; `quit`: `bye <errors> <successes>`.
//!
//! The parent opens K native clients, measures the server's RSS before and after (idle sessions),
//! then alternates the two kinds of mutation and times each from just before the worker's
//! mutation to the moment the last client's mirror sees it (`Event` +2 for an op, the new
//! `Healthcheck` tick for a toggle; a wait per client, stamped with the realtime clock, which both
//! processes share).

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amrpc_client::Client;
use amrpc_core::demo::{self, CALL_OP, EVENT, START, VALUES};
use amrpc_core::states::HEALTHCHECK;
use amrpc_core::{Api, Outcome};
use amrpc_server::{Server, ServerOpts};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::arpc::client_opts;
use crate::proxy::{self, Proto};

fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `VmRSS` and `VmHWM` of this process, in kB.
fn rss_kb() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// What the child server serves.
struct ChildState {
    srv: Server,
    m: amrpc_core::Machine,
}

/// Why [`serve_commands`] returned.
enum Stop {
    Quit,
    Marker,
}

/// Answer commands until `quit` or the line `marker`.
async fn serve_commands(
    st: &ChildState,
    lines: &mut tokio::io::Lines<BufReader<tokio::io::Stdin>>,
    marker: &str,
) -> Stop {
    let m = &st.m;
    while let Ok(Some(line)) = lines.next_line().await {
        match line.trim() {
            "op" => {
                let op = demo::op_of(m.switch(&[&VALUES])).unwrap_or(0);
                let t0 = realtime_ns();
                let r = m.add1(CALL_OP, Some(demo::op_args(op)));
                let ok = if r == Outcome::Executed { "" } else { " failed" };
                println!("op {t0} {}{ok}", m.tick(EVENT));
            }
            "toggle" => {
                // one transition: Healthcheck (no relations, no handlers) on or off
                let t0 = realtime_ns();
                let r = if m.is1(HEALTHCHECK) {
                    m.remove1(HEALTHCHECK, None)
                } else {
                    m.add1(HEALTHCHECK, None)
                };
                let ok = if r == Outcome::Executed { "" } else { " failed" };
                println!("toggle {t0} {}{ok}", m.tick(HEALTHCHECK));
            }
            "sessions" => println!("sessions {}", st.srv.session_count()),
            "rss" => {
                let (rss, hwm) = rss_kb();
                println!("rss {rss} {hwm}");
            }
            "quit" => return Stop::Quit,
            l if l == marker => return Stop::Marker,
            other => println!("error unknown command {other:?}"),
        }
    }
    Stop::Quit
}

/// The child server (see the module docs) on a runtime with `threads` workers, or with
/// `threads == 0` on a current-thread runtime, where `heap-begin` … `heap-end` answers
/// `heap <live bytes> <live allocations>` allocated in between (the allocation counters are per
/// thread, and there everything runs on this one).
pub(crate) fn child_server(threads: usize) -> Result<(), String> {
    let rt = if threads == 0 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .map_err(|e| e.to_string())?;
    let (m, worker) = demo::bench_worker(11).map_err(|e| e.to_string())?;
    let srv = Server::new(ServerOpts {
        // a benchmark client sends as fast as it can: no per-session rate limit
        mutation_rate: 0,
        ..Default::default()
    });
    srv.add_worker("bench", m.clone()).map_err(|e| e.to_string())?;
    let addr = rt.block_on(srv.spawn("127.0.0.1:0")).map_err(|e| e.to_string())?;
    if m.add1(START, None) != Outcome::Executed {
        return Err("add1(Start) not executed".to_string());
    }
    println!("addr {addr}");
    let st = ChildState { srv, m };
    let mut lines = rt.block_on(async { BufReader::new(tokio::io::stdin()).lines() });
    loop {
        if let Stop::Quit = rt.block_on(serve_commands(&st, &mut lines, "heap-begin")) {
            break;
        }
        let mut stop = Stop::Quit;
        let info = allocation_counter::measure(|| stop = rt.block_on(serve_commands(&st, &mut lines, "heap-end")));
        println!("heap {} {}", info.bytes_current, info.count_current);
        if let Stop::Quit = stop {
            break;
        }
    }
    st.srv.shutdown();
    println!("bye {} {}", worker.errors(), worker.successes());
    worker.unsubscribe();
    st.m.dispose();
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// A running child server.
struct ChildServer {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    addr: String,
}

impl ChildServer {
    async fn start(threads: usize) -> Result<ChildServer, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["child-server", "--threads", &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("child server: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let mut c = ChildServer {
            child,
            stdin,
            stdout,
            addr: String::new(),
        };
        let line = c.line().await?;
        c.addr = line
            .strip_prefix("addr ")
            .ok_or(format!("child said {line:?}"))?
            .to_string();
        Ok(c)
    }

    async fn line(&mut self) -> Result<String, String> {
        match tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line()).await {
            Ok(Ok(Some(l))) => Ok(l),
            Ok(Ok(None)) => Err("the child server exited".into()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the child server did not answer in 10 s".into()),
        }
    }

    async fn send(&mut self, cmd: &str) -> Result<(), String> {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        self.stdin.flush().await.map_err(|e| e.to_string())
    }

    /// Send a command and parse the numbers of its answer.
    async fn ask(&mut self, cmd: &str) -> Result<Vec<u64>, String> {
        self.send(cmd).await?;
        let line = self.line().await?;
        let mut it = line.split_whitespace();
        if it.next() != Some(cmd) {
            return Err(format!("{cmd}: child said {line:?}"));
        }
        it.map(|v| v.parse().map_err(|_| format!("{cmd}: child said {line:?}")))
            .collect()
    }

    async fn sessions_eq(&mut self, k: usize) -> Result<(), String> {
        for _ in 0..200 {
            if self.ask("sessions").await?.first() == Some(&(k as u64)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("the server never had {k} sessions"))
    }

    async fn quit(mut self) -> Result<(usize, usize), String> {
        self.send("quit").await?;
        let line = self.line().await?;
        let v: Vec<usize> = line
            .strip_prefix("bye ")
            .ok_or(format!("quit: child said {line:?}"))?
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        match v[..] {
            [e, s] => Ok((e, s)),
            _ => Err(format!("quit: child said {line:?}")),
        }
    }
}

/// Latencies of one kind of mutation, ms, sorted.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Latencies {
    /// Per mutation: the worker's mutation → the last client's mirror saw it.
    pub(crate) to_last: Vec<f64>,
    /// Per mutation: → the median client saw it.
    pub(crate) to_median: Vec<f64>,
    /// Server pushes (`Update` messages, all clients) these mutations caused, when proxied.
    pub(crate) pushes: u64,
}

impl Latencies {
    fn sort(&mut self) {
        self.to_last.sort_by(f64::total_cmp);
        self.to_median.sort_by(f64::total_cmp);
    }
}

/// The figures of one client count.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct FanoutResult {
    /// Clients.
    pub(crate) clients: usize,
    /// Server RSS before the sessions (after one warm-up session came and went), kB.
    pub(crate) rss_before_kb: u64,
    /// Server RSS with the sessions open and idle, kB.
    pub(crate) rss_idle_kb: u64,
    /// (after − before) / clients, bytes.
    pub(crate) bytes_per_session: f64,
    /// Worker ops (`add1(CallOp)` and its 5-transition cascade).
    pub(crate) op: Latencies,
    /// Single-transition mutations (`Healthcheck` on / off).
    pub(crate) toggle: Latencies,
    /// Worker errors / successes at the end.
    pub(crate) errors: usize,
    /// Worker successes at the end.
    pub(crate) successes: usize,
}

/// Open `k` clients on a fresh child server, measure idle memory, then time `mutations` worker
/// ops and as many toggles, alternating, spaced by `gap` (longer than the push interval, so each
/// is the first change after a quiet period and may be pushed at once).
pub(crate) async fn run(
    k: usize,
    mutations: usize,
    gap: Duration,
    threads: usize,
    proxied: bool,
) -> Result<FanoutResult, String> {
    let mut srv = ChildServer::start(threads).await?;
    let proxy = if proxied {
        let addr = srv.addr.parse().map_err(|e| format!("{}: {e}", srv.addr))?;
        Some(proxy::spawn(addr, Proto::Ws).await.map_err(|e| e.to_string())?)
    } else {
        None
    };
    let url = format!(
        "ws://{}/ws/bench",
        proxy.as_ref().map_or(srv.addr.clone(), |p| p.addr.to_string())
    );
    let pushes = || {
        proxy
            .as_ref()
            .map_or(0, |p| p.meter.snapshot().s2c.kinds[crate::tags().update as usize])
    };
    // warm-up: one session comes and goes, so lazily built server parts are in the baseline
    let warm = Client::connect(&url, client_opts("warm-up"))
        .await
        .map_err(|e| format!("warm-up client: {e}"))?;
    srv.sessions_eq(1).await?;
    warm.close().await;
    srv.sessions_eq(0).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before_kb = srv.ask("rss").await?[0];
    let clients = connect_many(&url, k, "fan").await?;
    srv.sessions_eq(k).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_kb = srv.ask("rss").await?[0];
    let bytes_per_session = (rss_idle_kb as f64 - rss_before_kb as f64) * 1024.0 / k as f64;

    let mut op = Latencies::default();
    let mut toggle = Latencies::default();
    let mut pushed = pushes();
    for j in 0..2 * mutations {
        let (cmd, state, delta, lat) = if j % 2 == 0 {
            ("op", EVENT, 2, &mut op)
        } else {
            ("toggle", HEALTHCHECK, 1, &mut toggle)
        };
        let target = clients[0].mirror().tick(state) + delta;
        let mut waits: FuturesUnordered<_> = clients
            .iter()
            .map(|c| {
                let w = c.mirror().when_ticks_eq(state, target, None);
                async move {
                    let r = w.await;
                    (r, realtime_ns())
                }
            })
            .collect();
        srv.send(cmd).await?;
        let collect = async {
            let mut seen = Vec::with_capacity(k);
            while let Some((r, t)) = waits.next().await {
                r.map_err(|e| format!("{cmd} {j}: a client's wait failed: {e:?}"))?;
                seen.push(t);
            }
            Ok::<_, String>(seen)
        };
        let (line, seen) = tokio::join!(srv.line(), async {
            tokio::time::timeout(Duration::from_secs(10), collect)
                .await
                .map_err(|_| format!("{cmd} {j}: not every client saw it within 10 s"))?
        });
        let line = line?;
        let mut seen = seen?;
        let mut f = line.split_whitespace();
        let t0: Option<u64> = f.nth(1).and_then(|v| v.parse().ok());
        let tick: Option<u64> = f.next().and_then(|v| v.parse().ok());
        let (Some(t0), Some(tick), None) = (t0, tick, f.next()) else {
            return Err(format!("{cmd} {j}: the worker said {line:?}"));
        };
        if tick != target {
            return Err(format!("{cmd} {j}: the worker's tick is {tick}, want {target}"));
        }
        seen.sort_unstable();
        let ms = |t: u64| t.saturating_sub(t0) as f64 / 1e6;
        lat.to_last.push(ms(seen[seen.len() - 1]));
        lat.to_median.push(ms(seen[seen.len() / 2]));
        tokio::time::sleep(gap).await;
        // pushes that carried this mutation, trailing ones included (the gap is longer than the
        // push interval)
        let now = pushes();
        lat.pushes += now - pushed;
        pushed = now;
    }
    futures_util::future::join_all(clients.iter().map(|c| c.close())).await;
    drop(clients);
    let (errors, successes) = srv.quit().await?;
    op.sort();
    toggle.sort();
    Ok(FanoutResult {
        clients: k,
        rss_before_kb,
        rss_idle_kb,
        bytes_per_session,
        op,
        toggle,
        errors,
        successes,
    })
}

/// Heap and RSS of `k` idle sessions on a current-thread server (see [`child_server`]).
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct HeapResult {
    /// Sessions.
    pub(crate) clients: usize,
    /// Live heap bytes allocated while the sessions opened, per session.
    pub(crate) heap_bytes_per_session: f64,
    /// Live allocations per session.
    pub(crate) allocs_per_session: f64,
    /// RSS growth per session (same run), bytes.
    pub(crate) rss_bytes_per_session: f64,
}

/// Open `k` clients against a current-thread child server and count the heap its sessions hold.
pub(crate) async fn heap_probe(k: usize) -> Result<HeapResult, String> {
    let mut srv = ChildServer::start(0).await?;
    let url = format!("ws://{}/ws/bench", srv.addr);
    let warm = Client::connect(&url, client_opts("warm-up"))
        .await
        .map_err(|e| format!("warm-up client: {e}"))?;
    srv.sessions_eq(1).await?;
    warm.close().await;
    srv.sessions_eq(0).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss0 = srv.ask("rss").await?[0];
    srv.send("heap-begin").await?;
    let clients = connect_many(&url, k, "idle").await?;
    srv.sessions_eq(k).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss1 = srv.ask("rss").await?[0];
    srv.send("heap-end").await?;
    let line = srv.line().await?;
    let v: Vec<i64> = line
        .strip_prefix("heap ")
        .ok_or(format!("heap-end: child said {line:?}"))?
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let [bytes, count] = v[..] else {
        return Err(format!("heap-end: child said {line:?}"));
    };
    futures_util::future::join_all(clients.iter().map(|c| c.close())).await;
    drop(clients);
    srv.quit().await?;
    Ok(HeapResult {
        clients: k,
        heap_bytes_per_session: bytes as f64 / k as f64,
        allocs_per_session: count as f64 / k as f64,
        rss_bytes_per_session: (rss1 as f64 - rss0 as f64) * 1024.0 / k as f64,
    })
}

/// Connect `k` native clients, 50 at a time.
async fn connect_many(url: &str, k: usize, prefix: &str) -> Result<Vec<Client>, String> {
    let mut clients = Vec::with_capacity(k);
    while clients.len() < k {
        let batch = (k - clients.len()).min(50);
        let base = clients.len();
        let conns = futures_util::future::join_all(
            (0..batch).map(|i| Client::connect(url, client_opts(&format!("{prefix}-{}", base + i)))),
        )
        .await;
        for c in conns {
            clients.push(c.map_err(|e| format!("client {}: {e}", clients.len()))?);
        }
    }
    Ok(clients)
}
