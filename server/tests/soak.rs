//! Fault-injection soak (issue 12, "What it must show" item 1): a fault-injecting proxy
//! (`fault_proxy`) between 10 native clients and a worker cuts, delays, half-opens, stalls and
//! refuses connections, one fault per cycle from a seeded schedule, while every client keeps
//! several mutations in flight. Each mutation adds the worker's *Multi* state `Inc` with a call
//! id unique over the run; the worker's handler counts its runs per id. The soak proves:
//!
//! * no mutation ran more than once (every id's count is at most 1);
//! * every call a client saw succeed ran (`Executed`, `Queued`: count 1); a `Canceled` one (the
//!   worker's queue was full) did not (count 0);
//! * calls that failed are counted apart: how many ran anyway and how many did not (either is
//!   allowed — a `Timeout` does not say whether the worker got the request — but never twice);
//! * after the last fault every client resumes and every mirror converges to the worker's clock.
//!
//! After each cycle the test waits (bounded) until every client has had a call succeed since the
//! heal, so a client that never recovers fails its cycle. `AMRPC_SOAK_CYCLES` sets the number of
//! cycles (default 60, the CI run); `scripts/soak.sh` runs the full 1,000. `AMRPC_SOAK_SEED` picks
//! another fault schedule. Figures (cycles, faults, mutations, retries, reconnects, time) are
//! printed. Loopback only; every loop and wait is bounded; the only sleeps are the faults'
//! durations.

mod fault_proxy;
mod rpc_support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amrpc_client::{Client, ClientOpts};
use amrpc_core::session::PER_INSTANCE;
use amrpc_core::states as names;
use amrpc_core::{Api, Args, EXCEPTION, Error, Handlers, Machine, Outcome, State, Value, schema};
use amrpc_server::ServerOpts;
use fault_proxy::{Dir, Fault, Proxy, ProxyOpts};
use rpc_support::*;
use tokio::task::JoinSet;

const CLIENTS: usize = 10;
/// Calls each client keeps in flight.
const IN_FLIGHT: usize = 4;
/// Cycles when `AMRPC_SOAK_CYCLES` is not set (the CI run).
const CI_CYCLES: u64 = 60;
const DEFAULT_SEED: u64 = 0x50a4_2024;
/// Call ids: client index × this + the client's sequence number.
const ID_STRIDE: i64 = 1 << 32;
/// A call whose id is a multiple of this runs a handler that takes [`SLOW_HANDLER`]: a cut
/// sometimes lands while one runs, and the retry on the new connection finds it in flight.
const SLOW_EVERY: i64 = 512;
const SLOW_HANDLER: Duration = Duration::from_millis(30);
/// How long a cycle may take to see every client succeed again after the heal.
const RESUME: Duration = Duration::from_secs(20);
const CALL_TIMEOUT: Duration = Duration::from_millis(300);
/// The worker's handler timeout: far beyond any handler here (see [`soak_worker`]).
const HANDLER_TIMEOUT: Duration = Duration::from_secs(10);

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

/// Handler runs by call id.
type Runs = Arc<Mutex<HashMap<i64, u32>>>;

/// The worker: `Inc` (*Multi*), whose handler counts its runs by the `id` arg.
fn soak_worker() -> (Machine, Runs) {
    let own = schema([("Inc", State::new().multi())]);
    let names = sadd(&[EXCEPTION, "Inc"], &names::WORKER_STATES);
    // a handler timeout cancels a transition whose handler ran; on a loaded 2-core machine the
    // default 100 ms can be overrun by a descheduled thread, and then a `Canceled` reply would not
    // mean "did not run"
    let w = worker_with("w-soak", &own, &names, Some(HANDLER_TIMEOUT));
    let runs: Runs = Arc::default();
    let r = runs.clone();
    w.bind_handlers(Handlers::new("soak").state("Inc", move |e| {
        let id = e.args().get("id").and_then(Value::as_int).unwrap_or(-1);
        *r.lock().unwrap().entry(id).or_insert(0) += 1;
        if id % SLOW_EVERY == 0 {
            std::thread::sleep(SLOW_HANDLER);
        }
    }))
    .unwrap();
    (w, runs)
}

/// Client `k`'s options: a short call timeout and a fast reconnect. Every third client gives up
/// on a call after one resend, so long faults also produce failed calls.
fn soak_opts(k: usize) -> ClientOpts {
    ClientOpts {
        call_timeout: CALL_TIMEOUT,
        call_retries: if k % 3 == 2 { 1 } else { 30 },
        conn_timeout: Duration::from_secs(1),
        conn_retries: 100,
        conn_retry_delay: Duration::from_millis(10),
        conn_retry_backoff: Duration::from_millis(200),
        ..copts(&format!("soak-{k}"))
    }
}

/// One call's result, as its client saw it.
type Seen = (i64, Result<Outcome, Error>);

/// Client `k`'s loop: keep [`IN_FLIGHT`] calls going (each its own task) until `stop`, then let
/// the outstanding ones finish. Bounded by `max_calls`.
async fn run_client(k: usize, c: Client, stop: Arc<AtomicBool>, ok: Arc<AtomicU64>, max_calls: i64) -> Vec<Seen> {
    let mut calls = JoinSet::new();
    let mut seen = Vec::new();
    let mut seq = 0i64;
    loop {
        while calls.len() < IN_FLIGHT && !stop.load(Ordering::SeqCst) && seq < max_calls {
            let id = k as i64 * ID_STRIDE + seq;
            seq += 1;
            let m = c.mirror().clone();
            calls.spawn(async move { (id, m.add1("Inc", Some(Args::new().with("id", id))).await) });
        }
        let Some(done) = calls.join_next().await else {
            return seen;
        };
        let (id, r) = done.expect("a call task");
        if r.is_ok() {
            ok.fetch_add(1, Ordering::SeqCst);
        }
        seen.push((id, r));
    }
}

/// The kinds of fault a cycle picks from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Cut now; clients reconnect at once.
    Cut,
    /// Cut, then refuse new connections for a while.
    CutRefuse,
    /// Cut, then refuse the next few connections.
    CutRefuseNext,
    /// Latency each way (sometimes beyond the call timeout).
    Delay,
    /// Nothing forwarded, sockets open; the heal cuts.
    HalfOpen,
    /// The proxy stops reading from the clients.
    StallUp,
    /// The proxy stops reading from the server.
    StallDown,
}

const KINDS: [Kind; 7] = [
    Kind::Cut,
    Kind::CutRefuse,
    Kind::CutRefuseNext,
    Kind::Delay,
    Kind::HalfOpen,
    Kind::StallUp,
    Kind::StallDown,
];

/// Milliseconds in `lo..hi`.
fn ms(rng: &mut Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(lo + rng.below(hi - lo))
}

/// Run one fault: inject it (into every open connection, or a random part of them), hold it for
/// its duration, heal. Returns the kind.
async fn fault_cycle(p: &Proxy, rng: &mut Rng) -> Kind {
    let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    // the same number of draws every cycle, however many connections are open: the schedule
    // (kinds, durations, all or part) depends on the seed alone
    let (all, mask) = (rng.below(2) == 0, rng.next());
    let open = p.open_conns();
    let part: Vec<u64> = open.iter().copied().filter(|c| (mask >> (c % 64)) & 1 == 1).collect();
    let conns = if all || part.is_empty() {
        None
    } else {
        Some(part.as_slice())
    };
    // the fault's duration: a deliberate sleep
    let hold = |d: Duration| tokio::time::sleep(d);
    match kind {
        Kind::Cut => {
            p.inject(Fault::Cut, conns);
        }
        Kind::CutRefuse => {
            p.refuse(true);
            p.inject(Fault::Cut, conns);
            hold(ms(rng, 20, 300)).await;
        }
        Kind::CutRefuseNext => {
            p.refuse_next(1 + rng.below(CLIENTS as u64));
            p.inject(Fault::Cut, conns);
        }
        Kind::Delay => {
            // half the time beyond the call timeout: resends while the originals are on the way
            let d = if rng.below(2) == 0 {
                ms(rng, 1, 100)
            } else {
                ms(rng, 300, 600)
            };
            p.inject(Fault::Delay(d), conns);
            hold(ms(rng, 50, 500)).await;
        }
        Kind::HalfOpen => {
            p.inject(Fault::HalfOpen, conns);
            hold(ms(rng, 50, 800)).await;
        }
        Kind::StallUp | Kind::StallDown => {
            let dir = if kind == Kind::StallUp { Dir::Up } else { Dir::Down };
            p.inject(Fault::Stall(dir), conns);
            hold(ms(rng, 50, 800)).await;
        }
    }
    p.heal();
    kind
}

/// Activations of a (non-Multi) state of a client's own machine.
fn activations(m: &Machine, state: &str) -> u64 {
    tick(m, state).div_ceil(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_faults_exactly_once_and_convergence() {
    let cycles = env_u64("AMRPC_SOAK_CYCLES").unwrap_or(CI_CYCLES);
    let seed = env_u64("AMRPC_SOAK_SEED").unwrap_or(DEFAULT_SEED);
    // a hang guard, not a timed assertion: the run takes a fraction of this
    let limit = Duration::from_secs(120 + 3 * cycles);
    within(limit, "soak", soak(cycles, seed)).await
}

async fn soak(cycles: u64, seed: u64) {
    let (w, runs) = soak_worker();
    // the server on its own runtime, as a separate process: its blocking handlers stall only it
    let h = Harness::start_isolated(w, ServerOpts::default());
    let p = Proxy::start_with(h.addr, ProxyOpts { log_frames: false }).await;
    let url = p.url();
    let connects = (0..CLIENTS).map(|k| Client::connect(&url, soak_opts(k)));
    let clients: Vec<Client> = within(WAIT, "clients connect", futures::future::join_all(connects))
        .await
        .into_iter()
        .map(|r| r.expect("a client connects"))
        .collect();
    eventually(WAIT, "every session open", || h.worker.session_count() == CLIENTS).await;

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let oks: Vec<Arc<AtomicU64>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let max_calls = 10_000 + 5_000 * cycles as i64;
    let loops: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(k, c)| tokio::spawn(run_client(k, c.clone(), stop.clone(), oks[k].clone(), max_calls)))
        .collect();

    // the faults, one per cycle; after each, every client succeeds again
    let mut rng = Rng::new(seed);
    let mut kinds: BTreeMap<Kind, u64> = BTreeMap::new();
    let resumed = |marks: &[u64]| oks.iter().zip(marks).all(|(n, m)| n.load(Ordering::SeqCst) > *m);
    eventually(RESUME, "traffic starts", || resumed(&[0; CLIENTS])).await;
    for cycle in 0..cycles {
        let kind = fault_cycle(&p, &mut rng).await;
        *kinds.entry(kind).or_default() += 1;
        let marks: Vec<u64> = oks.iter().map(|n| n.load(Ordering::SeqCst)).collect();
        let what = format!("every client succeeds again after cycle {cycle} ({kind:?})");
        eventually(RESUME, &what, || resumed(&marks)).await;
    }
    let faulting = start.elapsed();

    // the end: no more faults, no new calls; every outstanding call finishes
    p.heal();
    stop.store(true, Ordering::SeqCst);
    let mut seen: Vec<Seen> = Vec::new();
    for l in loops {
        seen.extend(
            within(Duration::from_secs(30), "outstanding calls finish", l)
                .await
                .unwrap(),
        );
    }
    let elapsed = start.elapsed();

    // every mirror converges to the worker's clock (pushes alone, then a sync agrees)
    eventually(Duration::from_secs(10), "every mirror converges", || {
        let wt = h.w().time(None);
        clients.iter().all(|c| c.mirror().time(None) == wt)
    })
    .await;
    for c in &clients {
        within(WAIT, "sync", c.mirror().sync()).await.expect("sync");
        assert_eq!(
            c.mirror().time(None),
            h.w().time(None),
            "{} after a sync",
            c.states().id()
        );
        assert!(c.states().is1(names::READY), "{}", c.states().string_all());
    }

    // the worker's count of handler runs against what the clients saw (tallied and printed
    // first, asserted after)
    let runs = runs.lock().unwrap().clone();
    let attempted = seen.len();
    let ids: HashMap<i64, &Result<Outcome, Error>> = seen.iter().map(|(id, r)| (*id, r)).collect();
    let twice: Vec<(i64, u32)> = runs.iter().filter(|(_, n)| **n > 1).map(|(i, n)| (*i, *n)).collect();
    let unknown: Vec<i64> = runs.keys().filter(|id| !ids.contains_key(id)).copied().collect();
    let (mut executed, mut queued, mut canceled) = (0u64, 0u64, 0u64);
    let (mut ran_anyway, mut not_run) = (0u64, 0u64);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    // succeeded but never ran; canceled but ran
    let (mut lost, mut canceled_ran): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
    for (id, r) in &seen {
        let ran = runs.get(id).copied().unwrap_or(0) > 0;
        match r {
            Ok(Outcome::Executed | Outcome::Queued(_)) => {
                if matches!(r, Ok(Outcome::Executed)) {
                    executed += 1;
                } else {
                    queued += 1;
                }
                if !ran {
                    lost.push(*id);
                }
            }
            Ok(Outcome::Canceled) => {
                canceled += 1;
                if ran {
                    canceled_ran.push(*id);
                }
            }
            Err(e) => {
                *errors.entry(e.code().to_string()).or_default() += 1;
                if ran {
                    ran_anyway += 1;
                } else {
                    not_run += 1;
                }
            }
        }
    }
    let ok = executed + queued + canceled;
    let failed = ran_anyway + not_run;
    let total_runs: u64 = runs.values().map(|n| u64::from(*n)).sum();

    let stats = p.stats();
    let reconnects: u64 = clients
        .iter()
        .map(|c| activations(c.states(), names::CONNECTED).saturating_sub(1))
        .sum();
    let retry_episodes: u64 = clients
        .iter()
        .map(|c| activations(c.states(), names::RETRYING_CALL))
        .sum();
    // a handler timeout or panic adds Exception: its tick stays 0 without one
    let worker_errors = tick(h.w(), EXCEPTION);
    eprintln!(
        "soak: {cycles} cycles (seed {seed:#x}) in {faulting:.1?} ({elapsed:.1?} with the drain); faults by kind \
         {kinds:?}; proxy: {} connections forwarded, {} refused, {} connection faults; mutations: {attempted} \
         attempted ({:.0}/s), {ok} ok (executed {executed}, queued {queued}, canceled {canceled}), {failed} failed \
         ({ran_anyway} ran anyway, {not_run} did not; by code {errors:?}); clients: {reconnects} reconnects, \
         {retry_episodes} call-retry episodes; worker: {total_runs} handler runs ({} ran twice, {} canceled but \
         ran), Exception tick {worker_errors}",
        stats.conns,
        stats.refused,
        stats.faults,
        attempted as f64 / elapsed.as_secs_f64(),
        twice.len(),
        canceled_ran.len(),
    );
    assert_eq!(ids.len(), attempted, "call ids are unique");
    assert!(
        twice.is_empty(),
        "mutations that ran more than once (id, runs): {twice:?}"
    );
    assert!(unknown.is_empty(), "runs of ids no client sent: {unknown:?}");
    assert!(lost.is_empty(), "calls that succeeded but never ran: {lost:?}");
    // a Canceled reply says the mutation did not run (here: the worker's queue was full)
    assert!(
        canceled_ran.is_empty(),
        "calls reported Canceled that ran: {canceled_ran:?}"
    );
    assert_eq!(total_runs, executed + queued + ran_anyway);
    assert!(stats.faults > 0 || cycles == 0, "faults were injected");
    assert!(executed > 0, "mutations ran");

    for c in clients {
        c.close().await;
    }
    eventually(WAIT, "no sessions left", || h.worker.session_count() == 0).await;
    h.stop().await;
}

/// A half-open connection that never heals (the peer vanished without a FIN or RST): the client
/// notices by itself — a call ran out of resends while nothing at all came back — fails that
/// call with `Timeout`, drops the connection and reconnects; later calls work. (Found by the
/// soak: before, the client stayed `Ready` on the dead socket for good.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connection_is_detected() {
    within(TEST_LIMIT, "half_open_connection_is_detected", async {
        let (w, runs) = soak_worker();
        let h = Harness::start_isolated(w, ServerOpts::default());
        let p = Proxy::start_with(h.addr, ProxyOpts { log_frames: false }).await;
        let opts = ClientOpts {
            call_timeout: Duration::from_millis(200),
            call_retries: 2,
            ..soak_opts(0)
        };
        let c = Harness::client(&p.url(), opts).await;
        let inc = |id: i64| c.mirror().add1("Inc", Some(Args::new().with("id", id)));
        assert_eq!(within(WAIT, "a call", inc(1)).await, Ok(Outcome::Executed));
        p.half_open();
        let r = within(WAIT, "a call on the half-open connection", inc(2)).await;
        eprintln!("on the half-open connection: {r:?}");
        eventually(WAIT, "the client reconnects", || p.conns() >= 2).await;
        assert_eq!(
            within(WAIT, "a call after the reconnect", inc(3)).await,
            Ok(Outcome::Executed)
        );
        assert_eq!(runs.lock().unwrap().get(&3), Some(&1));
        c.close().await;
        h.stop().await;
    })
    .await
}

/// The soak's double execution, step by step (found by the soak, fixed in the replay cache).
///
/// A session busy running a long handler (`Slow`) does not read its socket; a mutation the
/// client sends meanwhile (`Inc` 0) waits there. The connection is cut; the client reconnects and
/// resends both: the new session answers `Inc` 0 (queued behind `Slow`) and then more than the
/// replay window's worth ([`PER_INSTANCE`]) of further calls, which evict its outcome from the
/// worker's replay cache. When `Slow` returns, the old session reads the stale `Inc` 0 from its
/// socket. Before the fix it found no entry and ran it again; now the old session is superseded
/// by the new one (`ReplayCache::claim`) and drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_frame_on_a_superseded_session_runs_once() {
    within(TEST_LIMIT, "stale_frame_on_a_superseded_session_runs_once", async {
        let own = schema([("Inc", State::new().multi()), ("Slow", State::new())]);
        let names = sadd(&[EXCEPTION, "Inc", "Slow"], &names::WORKER_STATES);
        let w = worker_with("w-stale", &own, &names, Some(Duration::from_secs(30)));
        let runs: Runs = Arc::default();
        let started = Arc::new(AtomicBool::new(false));
        // `Slow` runs until the test lets it go (bounded: 20 s)
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Mutex::new(released);
        let (r, s) = (runs.clone(), started.clone());
        w.bind_handlers(
            Handlers::new("stale")
                .state("Inc", move |e| {
                    let id = e.args().get("id").and_then(Value::as_int).unwrap_or(-1);
                    *r.lock().unwrap().entry(id).or_insert(0) += 1;
                })
                .state("Slow", move |_e| {
                    s.store(true, Ordering::SeqCst);
                    let _ = released.lock().unwrap().recv_timeout(Duration::from_secs(20));
                }),
        )
        .unwrap();
        let h = Harness::start_isolated(w, ServerOpts::default());
        let p = Proxy::start(h.addr).await;
        let opts = ClientOpts {
            conn_retry_delay: Duration::from_millis(10),
            ..copts("stale")
        };
        let c = Harness::client(&p.url(), opts).await;
        let inc = |id: i64| {
            let m = c.mirror().clone();
            async move { m.add1("Inc", Some(Args::new().with("id", id))).await }
        };

        let m = c.mirror().clone();
        let slow = tokio::spawn(async move { m.add1("Slow", None).await });
        eventually(WAIT, "Slow runs", || started.load(Ordering::SeqCst)).await;
        let first = tokio::spawn(inc(0));
        eventually(WAIT, "Inc 0 is in the server's socket", || {
            p.count(Dir::Up, fault_proxy::cli_tag::ADD) == 2 && p.written().0 == p.bytes().0.total
        })
        .await;
        p.cut();
        let r = within(WAIT, "Inc 0, on the new connection", first).await.unwrap();
        assert!(matches!(r, Ok(Outcome::Queued(_))), "{r:?}");
        assert_eq!(p.conns(), 2);
        // more calls than the replay window keeps, all answered while Slow still runs
        let more = PER_INSTANCE as i64 + 8;
        for batch in 0..more / 8 {
            let calls = (1..=8).map(|i| inc(batch * 8 + i));
            for r in within(WAIT, "a batch", futures::future::join_all(calls)).await {
                assert!(matches!(r, Ok(Outcome::Queued(_))), "{r:?}");
            }
        }
        release.send(()).unwrap();
        assert_eq!(within(WAIT, "Slow", slow).await.unwrap(), Ok(Outcome::Executed));
        // the old session reads what its socket still holds, then ends
        eventually(WAIT, "the old session ends", || h.worker.session_count() == 1).await;
        let wt = h.w().time(None);
        eventually(WAIT, "the mirror converges", || c.mirror().time(None) == wt).await;
        let runs = runs.lock().unwrap().clone();
        assert_eq!(runs.len() as i64, 1 + more / 8 * 8, "every Inc ran");
        assert_eq!(runs.get(&0), Some(&1), "Inc 0 ran once");
        c.close().await;
        h.stop().await;
    })
    .await
}
