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
//!   `/proc/self/status`; `time`: the worker's whole clock, `time <state>=<tick> …` in its state
//!   order (what a converged mirror must show); `quit`: `bye <errors> <successes>`.
//!
//! It also answers WebSocket echoes on `/echo` (the floor of the connection-setup run,
//! `connect.rs`). The same child serves the 10,000-client load run (`load.rs`, with `--max-sessions` above the
//! server's default of 4096).
//!
//! The parent opens K native clients, measures the server's RSS before and after (idle sessions),
//! then alternates the two kinds of mutation and times each from just before the worker's
//! mutation to the moment the last client's mirror sees it (`Event` +2 for an op, the new
//! `Healthcheck` tick for a toggle; a wait per client, stamped with the realtime clock, which both
//! processes share).

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Realtime clock, ns since the Unix epoch: both processes read the same clock, so a stamp
/// taken in the child compares with one taken here.
pub(crate) fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `VmRSS` and `VmHWM` of this process, in kB.
pub(crate) fn rss_kb() -> (u64, u64) {
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

/// Whether a mutation made here ran: the answer's suffix, empty or ` failed <why>`. A client's
/// mutation (the load run's probe) runs on a session's thread; a mutation made here meanwhile is
/// `Queued` and runs in that thread's drain: wait for it and for the end of that drain
/// (bounded), so that the answer's tick includes it and its cascade (an op's `Event` and
/// `ValueN` are queued by its handlers, after it) and the next command reads the state after
/// them (an op's value, a toggle's direction), as the worker's own caller would.
async fn ran(m: &amrpc_core::Machine, r: Outcome) -> String {
    match r {
        Outcome::Executed => String::new(),
        Outcome::Canceled => " failed Canceled".into(),
        Outcome::Queued(q) => {
            let settled = async {
                m.when_queue(q, None).await?;
                m.when_queue_ends(None).await
            };
            match tokio::time::timeout(Duration::from_secs(10), settled).await {
                Ok(Ok(())) => String::new(),
                Ok(Err(e)) => format!(" failed Queued({q}): {e:?}"),
                Err(_) => format!(" failed Queued({q}): not run within 10 s"),
            }
        }
    }
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
                let ok = ran(m, r).await;
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
                let ok = ran(m, r).await;
                println!("toggle {t0} {}{ok}", m.tick(HEALTHCHECK));
            }
            "sessions" => println!("sessions {}", st.srv.session_count()),
            "time" => {
                let ticks: Vec<String> = m
                    .state_names()
                    .iter()
                    .zip(m.time(None))
                    .map(|(n, t)| format!("{n}={t}"))
                    .collect();
                println!("time {}", ticks.join(" "));
            }
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
/// thread, and there everything runs on this one). At most `max_sessions` sessions.
pub(crate) fn child_server(threads: usize, max_sessions: usize) -> Result<(), String> {
    // one socket per session: the soft fd limit (often 1024) must not be what refuses clients.
    // The parent raised its own, which this process inherits, and checked it is enough for the
    // clients it will open; here, best effort (the default 4096 sessions may exceed a small hard
    // limit that the run never reaches).
    let want = max_sessions as u64 + 64;
    match rlimit::increase_nofile_limit(want) {
        Ok(got) if got < want => eprintln!("child server: fd limit {got} (< {want}): sessions past it are refused"),
        Ok(_) => {}
        Err(e) => eprintln!("child server: raising the fd limit: {e}"),
    }
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
        max_sessions,
        ..Default::default()
    });
    srv.add_worker("bench", m.clone()).map_err(|e| e.to_string())?;
    // the server's router plus `/echo`, the connection-setup floor (`connect.rs`)
    let addr = rt
        .block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let router = srv.router().route("/echo", axum::routing::get(crate::connect::echo));
            let s = srv.clone();
            tokio::spawn(async move { s.serve_router(listener, router).await });
            Ok::<_, std::io::Error>(addr)
        })
        .map_err(|e| e.to_string())?;
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

/// Raise this process's soft `RLIMIT_NOFILE` towards its hard limit (at most what the hard limit
/// allows) and fail if that leaves fewer than `need` descriptors: each client and each session
/// holds a socket, and a refused `accept`/`connect` (EMFILE) would look like a server failure.
pub(crate) fn raise_fd_limit(need: u64) -> Result<u64, String> {
    let got = rlimit::increase_nofile_limit(need.max(1024)).map_err(|e| format!("raising the fd limit: {e}"))?;
    if got < need {
        return Err(format!(
            "the fd limit is {got}, {need} are needed: raise the hard limit (ulimit -Hn, or /etc/security/limits.conf)"
        ));
    }
    Ok(got)
}

/// The server's default session limit, which the small runs keep.
pub(crate) const DEFAULT_MAX_SESSIONS: usize = 4096;

/// A running child server.
pub(crate) struct ChildServer {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    pub(crate) addr: String,
}

impl ChildServer {
    /// The child's process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Start `amrpc-bench child-server` (`threads`: see [`child_server`]).
    pub(crate) async fn start(threads: usize, max_sessions: usize) -> Result<ChildServer, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args([
                "child-server",
                "--threads",
                &threads.to_string(),
                "--max-sessions",
                &max_sessions.to_string(),
            ])
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

    pub(crate) async fn line(&mut self) -> Result<String, String> {
        match tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line()).await {
            Ok(Ok(Some(l))) => Ok(l),
            Ok(Ok(None)) => Err("the child server exited".into()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the child server did not answer in 10 s".into()),
        }
    }

    pub(crate) async fn send(&mut self, cmd: &str) -> Result<(), String> {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        self.stdin.flush().await.map_err(|e| e.to_string())
    }

    /// Send a command and parse the numbers of its answer.
    pub(crate) async fn ask(&mut self, cmd: &str) -> Result<Vec<u64>, String> {
        self.send(cmd).await?;
        let line = self.line().await?;
        let mut it = line.split_whitespace();
        if it.next() != Some(cmd) {
            return Err(format!("{cmd}: child said {line:?}"));
        }
        it.map(|v| v.parse().map_err(|_| format!("{cmd}: child said {line:?}")))
            .collect()
    }

    /// Wait (up to 10 s) until the server has `k` sessions.
    pub(crate) async fn sessions_eq(&mut self, k: usize) -> Result<(), String> {
        for _ in 0..200 {
            if self.ask("sessions").await?.first() == Some(&(k as u64)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("the server never had {k} sessions"))
    }

    /// The worker's whole clock: its state names and their ticks, in its state order.
    pub(crate) async fn time(&mut self) -> Result<(Vec<String>, Vec<u64>), String> {
        self.send("time").await?;
        let line = self.line().await?;
        let bad = || format!("time: child said {line:?}");
        let rest = line.strip_prefix("time ").ok_or_else(bad)?;
        let mut names = Vec::new();
        let mut ticks = Vec::new();
        for f in rest.split_whitespace() {
            let (n, t) = f.split_once('=').ok_or_else(bad)?;
            names.push(n.to_string());
            ticks.push(t.parse().map_err(|_| bad())?);
        }
        Ok((names, ticks))
    }

    /// Send `cmds` in one write (back to back, no gap between them) and read their answers,
    /// concurrently (a long burst's answers could fill the pipe before the last command is
    /// written).
    pub(crate) async fn burst(&mut self, cmds: &[&str]) -> Result<Vec<String>, String> {
        let text: String = cmds.iter().map(|c| format!("{c}\n")).collect();
        let stdin = &mut self.stdin;
        let stdout = &mut self.stdout;
        let write = async {
            stdin.write_all(text.as_bytes()).await.map_err(|e| e.to_string())?;
            stdin.flush().await.map_err(|e| e.to_string())
        };
        let read = async {
            let mut lines = Vec::with_capacity(cmds.len());
            while lines.len() < cmds.len() {
                match tokio::time::timeout(Duration::from_secs(10), stdout.next_line()).await {
                    Ok(Ok(Some(l))) => lines.push(l),
                    Ok(Ok(None)) => return Err("the child server exited".to_string()),
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => {
                        return Err(format!(
                            "burst: no answer in 10 s after {} of {}",
                            lines.len(),
                            cmds.len()
                        ));
                    }
                }
            }
            Ok(lines)
        };
        let (w, r) = tokio::join!(write, read);
        w?;
        r
    }

    /// `rss`: the child's `VmRSS` and `VmHWM`, kB.
    pub(crate) async fn rss(&mut self) -> Result<(u64, u64), String> {
        match self.ask("rss").await?[..] {
            [rss, hwm] => Ok((rss, hwm)),
            ref v => Err(format!("rss: child said {v:?}")),
        }
    }

    /// One warm-up session comes and goes, so lazily built server parts are in the baseline;
    /// returns the RSS after it (kB), the baseline of a per-session figure.
    pub(crate) async fn warm_up(&mut self, url: &str) -> Result<u64, String> {
        let warm = Client::connect(url, client_opts("warm-up"))
            .await
            .map_err(|e| format!("warm-up client: {e}"))?;
        self.sessions_eq(1).await?;
        warm.close().await;
        self.sessions_eq(0).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(self.rss().await?.0)
    }

    /// Say `quit`; the worker's errors and successes.
    pub(crate) async fn quit(mut self) -> Result<(usize, usize), String> {
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

/// The child's session limit for `k` clients: the server's default, or room for `k` and a
/// warm-up session or two.
pub(crate) fn max_sessions_for(k: usize) -> usize {
    (k + k / 5 + 64).max(DEFAULT_MAX_SESSIONS)
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
    let mut srv = ChildServer::start(threads, max_sessions_for(k)).await?;
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
    let rss_before_kb = srv.warm_up(&url).await?;
    let clients = connect_many(&url, k, "fan").await?;
    srv.sessions_eq(k).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_kb = srv.rss().await?.0;
    let bytes_per_session = (rss_idle_kb as f64 - rss_before_kb as f64) * 1024.0 / k as f64;
    let (op, toggle) = sample(&mut srv, &clients, mutations, gap, pushes).await?;
    futures_util::future::join_all(clients.iter().map(|c| c.close())).await;
    drop(clients);
    let (errors, successes) = srv.quit().await?;
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

/// Time `mutations` worker ops and as many toggles, alternating, each from just before the
/// worker's mutation to the moment the last of `clients` sees it, `gap` apart; sorted.
/// `pushes` reads the proxy's push counter (0 without one). Each mutation's wait is bounded
/// (10 s): a client that never sees one fails the run.
pub(crate) async fn sample(
    srv: &mut ChildServer,
    clients: &[Client],
    mutations: usize,
    gap: Duration,
    pushes: impl Fn() -> u64,
) -> Result<(Latencies, Latencies), String> {
    let k = clients.len();
    let first = clients.first().ok_or("no clients")?;
    let mut op = Latencies::default();
    let mut toggle = Latencies::default();
    let mut pushed = pushes();
    for j in 0..2 * mutations {
        let (cmd, state, delta, lat) = if j % 2 == 0 {
            ("op", EVENT, 2, &mut op)
        } else {
            ("toggle", HEALTHCHECK, 1, &mut toggle)
        };
        let target = first.mirror().tick(state) + delta;
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
        let (t0, tick) = parse_mutation(cmd, &line).ok_or_else(|| format!("{cmd} {j}: the worker said {line:?}"))?;
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
    op.sort();
    toggle.sort();
    Ok((op, toggle))
}

/// The child's answer to `op` or `toggle`: (realtime ns just before the mutation, the tick
/// after it); `None` for anything else, a failed mutation included.
pub(crate) fn parse_mutation(cmd: &str, line: &str) -> Option<(u64, u64)> {
    let mut f = line.split_whitespace();
    if f.next() != Some(cmd) {
        return None;
    }
    let t0 = f.next()?.parse().ok()?;
    let tick = f.next()?.parse().ok()?;
    f.next().is_none().then_some((t0, tick))
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
    let mut srv = ChildServer::start(0, max_sessions_for(k)).await?;
    let url = format!("ws://{}/ws/bench", srv.addr);
    let rss0 = srv.warm_up(&url).await?;
    srv.send("heap-begin").await?;
    let clients = connect_many(&url, k, "idle").await?;
    srv.sessions_eq(k).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss1 = srv.rss().await?.0;
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

/// What [`connect_bounded`] got.
pub(crate) struct Connected {
    /// The clients that completed the handshake, in completion order.
    pub(crate) clients: Vec<Client>,
    /// Per successful client: dial to `Welcome`, ms, sorted.
    pub(crate) connect_ms: Vec<f64>,
    /// The clients that did not: (index, error code, message).
    pub(crate) failures: Vec<(usize, String, String)>,
    /// From the first dial to the last handshake, s.
    pub(crate) secs: f64,
}

/// Connect `k` native clients (ids `{prefix}-{i}`), at most `concurrency` handshakes at a time,
/// recording every failure with its code instead of stopping at the first. Each connect is
/// bounded by its own dial timeout and retries (`client_opts`) and, on top, by `limit`.
pub(crate) async fn connect_bounded(
    url: &str,
    k: usize,
    prefix: &str,
    concurrency: usize,
    limit: Duration,
) -> Connected {
    let t0 = Instant::now();
    let mut conns = futures_util::stream::iter(0..k)
        .map(|i| async move {
            let t = Instant::now();
            let r = tokio::time::timeout(limit, Client::connect(url, client_opts(&format!("{prefix}-{i}")))).await;
            (i, r, t.elapsed().as_secs_f64() * 1e3)
        })
        .buffer_unordered(concurrency.max(1));
    let mut out = Connected {
        clients: Vec::with_capacity(k),
        connect_ms: Vec::with_capacity(k),
        failures: Vec::new(),
        secs: 0.0,
    };
    while let Some((i, r, ms)) = conns.next().await {
        match r {
            Ok(Ok(c)) => {
                out.clients.push(c);
                out.connect_ms.push(ms);
            }
            Ok(Err(e)) => out.failures.push((i, format!("{:?}", e.code()), e.to_string())),
            Err(_) => out
                .failures
                .push((i, "Timeout".into(), format!("no handshake within {limit:?}"))),
        }
    }
    out.secs = t0.elapsed().as_secs_f64();
    out.connect_ms.sort_by(f64::total_cmp);
    out
}

/// Connect `k` native clients, 50 at a time; any failure fails.
async fn connect_many(url: &str, k: usize, prefix: &str) -> Result<Vec<Client>, String> {
    let c = connect_bounded(url, k, prefix, 50, Duration::from_secs(60)).await;
    match c.failures.first() {
        Some((i, code, msg)) => Err(format!("client {i}: {code}: {msg}")),
        None => Ok(c.clients),
    }
}
