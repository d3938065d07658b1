//! The load run (issue 12): N concurrent WebSocket clients (10,000 on this 2-core machine) on one
//! server, clients and server in separate processes (the fan-out child server, `fanout.rs`, with
//! `max_sessions` above N).
//!
//! In order:
//!
//! 1. the soft fd limit is raised (`rlimit`), the child server starts and one warm-up session
//!    gives the RSS baseline;
//! 2. N native clients connect, at most `concurrency` handshakes at a time; every failure is
//!    recorded with its error code;
//! 3. idle: the child's RSS again, so RSS per session;
//! 4. fan-out samples, as `amrpc-bench fanout` takes them (worker mutation → the last of the N
//!    mirrors sees it, spaced by more than the push interval);
//! 5. a probe: a new client, on its own thread and runtime (so that its figures are the server's
//!    and not the parent's 10,000 client tasks'), connects while the N are connected and then
//!    toggles `Ready` on the worker over the wire every `probe_every`, each a full round trip (a
//!    real change: the server pushes it to all N);
//! 6. meanwhile R bursts, one after the other: M worker mutations (ops and toggles, alternating)
//!    written to the child in one write, back to back; after each, every mirror must reach the
//!    worker's clock as it was right after it (the convergence time is recorded) before the next
//!    starts. One more new client connects as the first burst starts. R > 1 gives convergence
//!    more than one sample and the probe more round trips under load;
//! 7. the probe stops; every mirror must then show exactly the worker's final clock (all
//!    states), and the server must still hold the N sessions.
//!
//! Timings are recorded, never asserted. Every wait is bounded. Loopback only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use amrpc_client::Client;
use amrpc_core::states::READY;
use amrpc_core::{Api, Outcome};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{oneshot, watch};

use crate::LatencySummary;
use crate::arpc::client_opts;
use crate::fanout::{self, ChildServer, parse_mutation, realtime_ns};
use crate::stats::percentile;

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct LoadParams {
    /// Concurrent clients (N).
    pub(crate) clients: usize,
    /// Handshakes in flight at once.
    pub(crate) concurrency: usize,
    /// Worker mutations per burst (M).
    pub(crate) burst: usize,
    /// Bursts (R).
    pub(crate) bursts: usize,
    /// Fan-out samples of each kind (op, toggle).
    pub(crate) mutations: usize,
    /// Pause between fan-out samples (more than the push interval).
    pub(crate) gap: Duration,
    /// The probe's period.
    pub(crate) probe_every: Duration,
    /// Runtime threads of the child server.
    pub(crate) server_threads: usize,
}

impl LoadParams {
    /// The child's session limit: N plus room for the warm-up and the probe client and a
    /// reconnect or two, never below the server's default.
    fn max_sessions(&self) -> usize {
        (self.clients + self.clients / 5 + 64).max(fanout::DEFAULT_MAX_SESSIONS)
    }
}

/// p50 / p99 / max of some samples, ms.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub(crate) struct Pcts {
    pub(crate) n: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl Pcts {
    /// Of `sorted` (ascending).
    fn of(sorted: &[f64]) -> Pcts {
        Pcts {
            n: sorted.len(),
            p50_ms: percentile(sorted, 50.0),
            p99_ms: percentile(sorted, 99.0),
            max_ms: sorted.last().copied().unwrap_or(0.0),
        }
    }
}

/// How the N handshakes went.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Handshakes {
    /// Clients that completed the handshake.
    pub(crate) ok: usize,
    /// Clients that did not.
    pub(crate) failed: usize,
    /// Failures by error code.
    pub(crate) failures_by_code: BTreeMap<String, usize>,
    /// The first few failures, "client i: code: message".
    pub(crate) first_failures: Vec<String>,
    /// From the first dial to the last handshake, s.
    pub(crate) secs: f64,
    /// Per client: dial → `Welcome`.
    pub(crate) connect: Pcts,
    /// Sessions the server counted afterwards.
    pub(crate) server_sessions: u64,
}

/// The bursts and the convergence after each.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Burst {
    /// Bursts.
    pub(crate) rounds: usize,
    /// Worker mutations per burst, sent back to back.
    pub(crate) mutations: usize,
    /// Of all, not `Executed` (or an unreadable answer).
    pub(crate) failed: usize,
    /// The first such answer.
    pub(crate) first_failure: Option<String>,
    /// Per burst: the worker's time from its first mutation to the start of its last.
    pub(crate) worker: Pcts,
    /// Clients whose mirror reached the worker's clock after every burst (the fewest of any
    /// burst).
    pub(crate) converged: usize,
    /// Per burst: its last mutation → the last client converged.
    pub(crate) converge: Pcts,
    /// Per burst: its first mutation → the last client converged.
    pub(crate) converge_from_first: Pcts,
    /// Per burst: its last mutation → the median client converged.
    pub(crate) median_client: Pcts,
    /// Clients showing exactly the worker's final clock (every state) once the probe stopped.
    pub(crate) exact_final_clock: usize,
    /// States in that clock.
    pub(crate) clock_states: usize,
}

/// The new client's figures.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Probe {
    /// Connected (handshake done).
    pub(crate) connected: bool,
    /// Dial → `Welcome`, ms.
    pub(crate) connect_ms: f64,
    /// Round trips that returned `Executed`, or `Queued` and then ran (`when_queue`).
    pub(crate) round_trips: usize,
    /// Of them, `Queued` first (the worker was busy with a burst).
    pub(crate) queued: usize,
    /// Round trips that failed or did not return `Executed`.
    pub(crate) failures: usize,
    /// The first failure.
    pub(crate) first_failure: Option<String>,
    /// `add1(Ready)` / `remove1(Ready)` → the reply (→ the mutation ran, when `Queued`), over
    /// the successful round trips.
    pub(crate) rtt: Pcts,
    /// Round trips made while the bursts were being sent or were converging.
    pub(crate) during_burst: usize,
    /// A second new client, connecting as the first burst starts: connected, and its dial →
    /// `Welcome`, ms.
    pub(crate) late_connected: bool,
    pub(crate) late_connect_ms: f64,
}

/// The figures of one load run.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct LoadResult {
    pub(crate) clients: usize,
    pub(crate) concurrency: usize,
    pub(crate) server_threads: usize,
    pub(crate) max_sessions: usize,
    /// The soft fd limit after raising it (this process; the child inherits it).
    pub(crate) fd_limit: u64,
    pub(crate) handshakes: Handshakes,
    /// Server RSS after the warm-up session, kB.
    pub(crate) rss_before_kb: u64,
    /// Server RSS with the N sessions open and idle, kB.
    pub(crate) rss_idle_kb: u64,
    /// (idle − before) / N, bytes.
    pub(crate) bytes_per_session: f64,
    /// Server RSS and peak RSS (`VmHWM`) at the end, sessions still open, kB.
    pub(crate) rss_end_kb: u64,
    pub(crate) hwm_end_kb: u64,
    /// This (client) process's RSS with the N clients, kB.
    pub(crate) client_rss_kb: u64,
    /// Fan-out, worker op → the last of the N mirrors.
    pub(crate) fanout_op: LatencySummary,
    /// Fan-out, single-transition toggle → the last of the N mirrors.
    pub(crate) fanout_toggle: LatencySummary,
    pub(crate) burst: Burst,
    pub(crate) probe: Probe,
    /// Sessions the server held at the end (the probe gone): N if none was dropped.
    pub(crate) sessions_end: u64,
    /// Worker errors and successes at the end.
    pub(crate) errors: usize,
    pub(crate) successes: usize,
    /// The whole run, s.
    pub(crate) secs: f64,
}

/// Longest a client may take to handshake (dial timeouts and retries included).
const CONNECT_LIMIT: Duration = Duration::from_secs(120);
/// Longest wait for every mirror to converge.
const CONVERGE_LIMIT: Duration = Duration::from_secs(120);

/// Run it (on the caller's runtime: the clients' tasks live there).
pub(crate) async fn run(p: &LoadParams) -> Result<LoadResult, String> {
    let t_run = Instant::now();
    let n = p.clients;
    if n == 0 {
        return Err("load: --clients must be at least 1".into());
    }
    // this process holds N client sockets; the child inherits the limit for its N sessions
    let fd_limit = fanout::raise_fd_limit(n as u64 + 256)?;
    let max_sessions = p.max_sessions();
    let mut srv = ChildServer::start(p.server_threads, max_sessions).await?;
    let url = format!("ws://{}/ws/bench", srv.addr);
    let rss_before_kb = srv.warm_up(&url).await?;

    eprintln!("load: connecting {n} clients, {} at a time", p.concurrency);
    let conn = fanout::connect_bounded(&url, n, "load", p.concurrency, CONNECT_LIMIT).await;
    let mut handshakes = Handshakes {
        ok: conn.clients.len(),
        failed: conn.failures.len(),
        secs: conn.secs,
        connect: Pcts::of(&conn.connect_ms),
        ..Default::default()
    };
    for (i, code, msg) in &conn.failures {
        *handshakes.failures_by_code.entry(code.clone()).or_default() += 1;
        if handshakes.first_failures.len() < 5 {
            handshakes.first_failures.push(format!("client {i}: {code}: {msg}"));
        }
    }
    let clients = conn.clients;
    if clients.is_empty() {
        return Err(format!("load: no client connected: {:?}", handshakes.first_failures));
    }
    // the server counts a session from the upgrade on: all of them are in by now
    let _ = srv.sessions_eq(clients.len()).await;
    handshakes.server_sessions = srv.ask("sessions").await?.first().copied().unwrap_or(0);
    eprintln!(
        "load: {} of {n} connected in {:.2} s ({} failed); the server has {} sessions",
        handshakes.ok, handshakes.secs, handshakes.failed, handshakes.server_sessions
    );

    // idle: let the handshakes' transient buffers go before reading RSS
    tokio::time::sleep(Duration::from_millis(500 + n as u64 / 10)).await;
    let rss_idle_kb = srv.rss().await?.0;
    let bytes_per_session = (rss_idle_kb as f64 - rss_before_kb as f64) * 1024.0 / clients.len() as f64;
    let client_rss_kb = fanout::rss_kb().0;
    eprintln!(
        "load: server RSS {rss_before_kb} → {rss_idle_kb} kB = {:.1} KiB per session; client process {client_rss_kb} kB",
        bytes_per_session / 1024.0
    );

    eprintln!("load: fan-out, {} ops and {} toggles", p.mutations, p.mutations);
    let (op, toggle) = fanout::sample(&mut srv, &clients, p.mutations, p.gap, || 0).await?;
    let fanout_op = LatencySummary::of(&op, clients.len(), false);
    let fanout_toggle = LatencySummary::of(&toggle, clients.len(), false);
    eprintln!(
        "load: fan-out to {}: op p50 {:.2} / p99 {:.2} / max {:.2} ms; toggle p50 {:.2} / p99 {:.2} / max {:.2} ms",
        clients.len(),
        fanout_op.p50_ms,
        fanout_op.p99_ms,
        fanout_op.max_ms,
        fanout_toggle.p50_ms,
        fanout_toggle.p99_ms,
        fanout_toggle.max_ms
    );

    let mut probe = ProbeHandle::spawn(url.clone(), p.probe_every);
    if let Err(e) = probe.connected().await {
        eprintln!("load: the probe did not connect: {e}");
    }
    // a few round trips under the idle N sessions first
    tokio::time::sleep(p.probe_every * 4).await;
    probe.set(Phase::Burst);
    let burst_res = run_bursts(&mut srv, &clients, p.bursts.max(1), p.burst).await;
    let probe = probe.stop().await;
    let mut burst = burst_res?;
    eprintln!(
        "load: probe: connected in {:.2} ms, {} round trips ({} during the bursts, {} queued), {} failed, RTT p50 {:.2} / p99 {:.2} / max {:.2} ms; a client connecting as the bursts started took {:.2} ms",
        probe.connect_ms,
        probe.round_trips,
        probe.during_burst,
        probe.queued,
        probe.failures,
        probe.rtt.p50_ms,
        probe.rtt.p99_ms,
        probe.rtt.max_ms,
        probe.late_connect_ms
    );

    // the probe is gone: the worker's clock is final; every mirror must show it exactly
    let (names, ticks) = srv.time().await?;
    burst.clock_states = names.len();
    let reached = converge_all(&clients, &names, &ticks).await;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    burst.exact_final_clock = clients
        .iter()
        .filter(|c| c.mirror().state_names() == names && c.mirror().time(Some(&refs)) == ticks)
        .count();
    eprintln!(
        "load: {} of {} mirrors reached, {} show exactly the worker's final clock ({} states)",
        reached.len(),
        clients.len(),
        burst.exact_final_clock,
        names.len()
    );

    let _ = srv.sessions_eq(clients.len()).await;
    let sessions_end = srv.ask("sessions").await?.first().copied().unwrap_or(0);
    let (rss_end_kb, hwm_end_kb) = srv.rss().await?;
    eprintln!("load: closing {} clients", clients.len());
    let _ = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(clients.iter().map(|c| c.close())),
    )
    .await;
    drop(clients);
    let (errors, successes) = srv.quit().await?;
    Ok(LoadResult {
        clients: n,
        concurrency: p.concurrency,
        server_threads: p.server_threads,
        max_sessions,
        fd_limit,
        handshakes,
        rss_before_kb,
        rss_idle_kb,
        bytes_per_session,
        rss_end_kb,
        hwm_end_kb,
        client_rss_kb,
        fanout_op,
        fanout_toggle,
        burst,
        probe,
        sessions_end,
        errors,
        successes,
        secs: t_run.elapsed().as_secs_f64(),
    })
}

/// `rounds` bursts of `m` worker mutations, each in one write and followed by every client's
/// wait for the worker's clock as it was after it.
async fn run_bursts(srv: &mut ChildServer, clients: &[Client], rounds: usize, m: usize) -> Result<Burst, String> {
    let cmds: Vec<&str> = (0..m).map(|j| if j % 2 == 0 { "op" } else { "toggle" }).collect();
    eprintln!("load: {rounds} bursts of {m} worker mutations");
    let mut b = Burst {
        rounds,
        mutations: m,
        converged: clients.len(),
        ..Default::default()
    };
    let (mut worker, mut converge, mut from_first, mut median) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let answers = srv.burst(&cmds).await?;
        let stamps: Vec<u64> = cmds
            .iter()
            .zip(&answers)
            .filter_map(|(c, a)| parse_mutation(c, a).map(|(t0, _)| t0))
            .collect();
        b.failed += cmds.len() - stamps.len();
        if b.first_failure.is_none() {
            b.first_failure = cmds
                .iter()
                .zip(&answers)
                .find(|(c, a)| parse_mutation(c, a).is_none())
                .map(|(_, a)| format!("burst {r}: {a}"));
        }
        let (Some(&first), Some(&last)) = (stamps.first(), stamps.last()) else {
            return Err(format!("burst {r}: no mutation ran: {:?}", answers.first()));
        };
        // the clock right after the burst (the probe may have moved `Ready` since: waits are ≥)
        let (names, ticks) = srv.time().await?;
        let mut seen = converge_all(clients, &names, &ticks).await;
        seen.sort_unstable();
        b.converged = b.converged.min(seen.len());
        let ms = |t: u64, from: u64| t.saturating_sub(from) as f64 / 1e6;
        worker.push(ms(last, first));
        if let (Some(&l), Some(&md)) = (seen.last(), seen.get(seen.len() / 2)) {
            converge.push(ms(l, last));
            from_first.push(ms(l, first));
            median.push(ms(md, last));
        }
        eprintln!(
            "load: burst {r}: {:.2} ms on the worker; {} of {} mirrors converged, the last {:.2} ms after its last mutation",
            ms(last, first),
            seen.len(),
            clients.len(),
            converge.last().copied().unwrap_or(f64::NAN)
        );
    }
    for v in [&mut worker, &mut converge, &mut from_first, &mut median] {
        v.sort_by(f64::total_cmp);
    }
    b.worker = Pcts::of(&worker);
    b.converge = Pcts::of(&converge);
    b.converge_from_first = Pcts::of(&from_first);
    b.median_client = Pcts::of(&median);
    Ok(b)
}

/// Wait (bounded by [`CONVERGE_LIMIT`]) until every mirror's ticks of `names` are at least
/// `ticks`; the realtime stamps of those that got there.
async fn converge_all(clients: &[Client], names: &[String], ticks: &[u64]) -> Vec<u64> {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut waits: FuturesUnordered<_> = clients
        .iter()
        .map(|c| {
            let w = c.mirror().when_time(&refs, ticks, None);
            async move { w.await.map(|_| realtime_ns()) }
        })
        .collect();
    let deadline = tokio::time::Instant::now() + CONVERGE_LIMIT;
    let mut seen = Vec::with_capacity(clients.len());
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, waits.next()).await {
        if let Ok(t) = r {
            seen.push(t);
        }
    }
    seen
}

/// Where the run is, for the probe thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before the burst.
    Idle,
    /// The burst is being sent, or converging.
    Burst,
    /// Done: stop.
    Stop,
}

/// The probe clients on their own thread: see the module docs.
struct ProbeHandle {
    phase: watch::Sender<Phase>,
    connected: Option<oneshot::Receiver<Result<(), String>>>,
    done: oneshot::Receiver<Probe>,
    thread: std::thread::JoinHandle<()>,
}

/// Longest the probe's connect, one round trip, or its close may take.
const PROBE_LIMIT: Duration = Duration::from_secs(60);
/// The probe stops on its own after this long (the run stops it much earlier).
const PROBE_MAX_RUN: Duration = Duration::from_secs(600);

impl ProbeHandle {
    fn spawn(url: String, every: Duration) -> ProbeHandle {
        let (phase, rx) = watch::channel(Phase::Idle);
        let (conn_tx, conn_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            let probe = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(async {
                    let (mut p, late) = tokio::join!(probe_loop(&url, every, rx.clone(), conn_tx), late_join(&url, rx));
                    (p.late_connected, p.late_connect_ms) = late;
                    p
                }),
                Err(e) => {
                    let _ = conn_tx.send(Err(e.to_string()));
                    Probe::default()
                }
            };
            let _ = done_tx.send(probe);
        });
        ProbeHandle {
            phase,
            connected: Some(conn_rx),
            done: done_rx,
            thread,
        }
    }

    /// Until the probe connected (its connect is bounded), or why it did not.
    async fn connected(&mut self) -> Result<(), String> {
        let rx = self.connected.take().ok_or("already asked")?;
        match tokio::time::timeout(PROBE_LIMIT * 2, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the probe thread ended".into()),
            Err(_) => Err("the probe did not report".into()),
        }
    }

    fn set(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    /// Stop it and take its figures.
    async fn stop(self) -> Probe {
        self.set(Phase::Stop);
        let probe = match tokio::time::timeout(PROBE_LIMIT * 3, self.done).await {
            Ok(Ok(p)) => p,
            _ => Probe {
                first_failure: Some("the probe thread did not finish".into()),
                ..Default::default()
            },
        };
        if self.thread.is_finished() {
            let _ = self.thread.join();
        }
        probe
    }
}

/// The probe: connect, then a round trip every `every` until the phase is `Stop` (or
/// [`PROBE_MAX_RUN`]).
async fn probe_loop(
    url: &str,
    every: Duration,
    phase: watch::Receiver<Phase>,
    connected: oneshot::Sender<Result<(), String>>,
) -> Probe {
    let mut p = Probe::default();
    let t = Instant::now();
    let client = match tokio::time::timeout(PROBE_LIMIT, Client::connect(url, client_opts("probe"))).await {
        Ok(Ok(c)) => c,
        r => {
            let msg = match r {
                Ok(Err(e)) => format!("connect: {:?}: {e}", e.code()),
                _ => format!("connect: no handshake within {PROBE_LIMIT:?}"),
            };
            p.first_failure = Some(msg.clone());
            let _ = connected.send(Err(msg));
            return p;
        }
    };
    p.connected = true;
    p.connect_ms = t.elapsed().as_secs_f64() * 1e3;
    let _ = connected.send(Ok(()));
    let mut rtts = Vec::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let t_run = Instant::now();
    while *phase.borrow() != Phase::Stop && t_run.elapsed() < PROBE_MAX_RUN {
        tick.tick().await;
        let during = *phase.borrow() == Phase::Burst;
        let m = client.mirror();
        let t = Instant::now();
        let call = if m.is1(READY) {
            m.remove1(READY, None)
        } else {
            m.add1(READY, None)
        };
        let r = tokio::time::timeout(PROBE_LIMIT, async {
            match call.await {
                // the worker was draining its queue (the burst runs on it): the mutation runs
                // after the drain; the round trip ends when it has run
                Ok(Outcome::Queued(q)) => {
                    p.queued += 1;
                    m.when_queue(q, None)
                        .await
                        .map(|_| Outcome::Executed)
                        .map_err(|e| format!("when_queue: {e:?}"))
                }
                Ok(o) => Ok(o),
                Err(e) => Err(format!("{:?}: {e}", e.code())),
            }
        })
        .await;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let i = rtts.len() + p.failures;
        let failure = match r {
            Ok(Ok(Outcome::Executed)) => None,
            Ok(Ok(o)) => Some(format!("round trip {i}: {o:?}")),
            Ok(Err(e)) => Some(format!("round trip {i}: {e}")),
            Err(_) => Some(format!("round trip {i}: no reply within {PROBE_LIMIT:?}")),
        };
        match failure {
            None => {
                rtts.push(ms);
                p.during_burst += usize::from(during);
            }
            Some(f) => {
                p.failures += 1;
                p.first_failure.get_or_insert(f);
            }
        }
    }
    let _ = tokio::time::timeout(PROBE_LIMIT, client.close()).await;
    rtts.sort_by(f64::total_cmp);
    p.round_trips = rtts.len();
    p.rtt = Pcts::of(&rtts);
    p
}

/// Another new client, connecting as the first burst starts: (connected, dial → `Welcome` ms).
async fn late_join(url: &str, mut phase: watch::Receiver<Phase>) -> (bool, f64) {
    let started = tokio::time::timeout(PROBE_MAX_RUN, phase.wait_for(|p| *p != Phase::Idle)).await;
    if !matches!(started, Ok(Ok(p)) if *p == Phase::Burst) {
        return (false, 0.0);
    }
    let t = Instant::now();
    match tokio::time::timeout(PROBE_LIMIT, Client::connect(url, client_opts("late"))).await {
        Ok(Ok(c)) => {
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let _ = tokio::time::timeout(PROBE_LIMIT, c.close()).await;
            (true, ms)
        }
        _ => (false, 0.0),
    }
}
