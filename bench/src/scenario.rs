//! What every op variant shares: the setup / timed / finish split (so allocations can be counted
//! over the timed section only), the runtimes, and the outcome of one run.

use std::future::Future;
use std::time::Duration;

use crate::proxy::Snap;

/// How long any setup, timed section or teardown may take before the run fails.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound of one timed section (10 000 network ops take well under a second when healthy).
pub(crate) const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The runtime a variant runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) enum Threads {
    /// No runtime: a plain loop on the calling thread.
    None,
    /// A tokio current-thread runtime: server, client and proxy share one thread.
    One,
    /// A tokio multi-thread runtime with 2 workers (this machine's core count).
    Two,
}

impl Threads {
    /// Label for tables.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Threads::None => "no runtime",
            Threads::One => "1 thread",
            Threads::Two => "2 threads",
        }
    }

    /// A runtime of this kind (`None` gets a current-thread one, for the block_on calls).
    pub(crate) fn runtime(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Threads::None | Threads::One => tokio::runtime::Builder::new_current_thread().enable_all().build(),
            Threads::Two => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build(),
        }
    }
}

/// What a finished run reports besides its time.
#[derive(Clone, Debug, Default)]
pub(crate) struct Finish {
    /// Worker errors (must be 0).
    pub(crate) errors: usize,
    /// Worker successes (must be ≥ 1).
    pub(crate) successes: usize,
    /// Proxy counters over the whole connection (handshake included), when proxied.
    pub(crate) total: Option<Snap>,
    /// Calls as upstream counts them (client calls and notifies plus server pushes / stream sends),
    /// from the variant's own counters.
    pub(crate) calls: Option<u64>,
}

/// One timed section.
#[derive(Clone, Debug)]
pub(crate) struct Timed {
    /// From just before `Start` to the end of the last op.
    pub(crate) elapsed: Duration,
    /// Ops done.
    pub(crate) ops: usize,
    /// Proxy counters over the timed section, when proxied.
    pub(crate) wire: Option<Snap>,
}

/// An op variant, split so that setup and teardown stay out of the timed section.
pub(crate) trait Scenario: Sized {
    /// Build everything up to just before `Start` (server, proxy, client, handshake).
    fn setup(seed: u64, proxied: bool) -> impl Future<Output = Result<Self, String>>;
    /// Run `n` ops (timed).
    fn timed(&mut self, n: usize) -> impl Future<Output = Result<Timed, String>>;
    /// Tear down and check the worker.
    fn finish(self) -> impl Future<Output = Result<Finish, String>>;
}

/// One run's result.
#[derive(Clone, Debug)]
pub(crate) struct RunResult {
    /// The timed section.
    pub(crate) timed: Timed,
    /// Checks and totals.
    pub(crate) finish: Finish,
    /// Allocations over the timed section (count, bytes), when counted.
    pub(crate) allocs: Option<(u64, u64)>,
}

impl RunResult {
    /// Nanoseconds per op.
    pub(crate) fn ns_per_op(&self) -> f64 {
        self.timed.elapsed.as_nanos() as f64 / self.timed.ops.max(1) as f64
    }
}

async fn bounded<T>(what: &str, d: Duration, f: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    match tokio::time::timeout(d, f).await {
        Ok(r) => r,
        Err(_) => Err(format!("{what} timed out after {d:?}")),
    }
}

/// Run a scenario once on a fresh runtime; with `count_allocs` (current-thread runtimes only)
/// the timed section runs inside `allocation_counter::measure`.
pub(crate) fn run_once<S: Scenario>(
    threads: Threads,
    seed: u64,
    proxied: bool,
    n: usize,
    count_allocs: bool,
) -> Result<RunResult, String> {
    assert!(
        !count_allocs || threads != Threads::Two,
        "allocation counters are per thread: count on one thread"
    );
    let rt = threads.runtime().map_err(|e| e.to_string())?;
    let mut s = rt.block_on(bounded("setup", SETUP_TIMEOUT, S::setup(seed, proxied)))?;
    let mut timed = None;
    let allocs = if count_allocs {
        let info = allocation_counter::measure(|| {
            timed = Some(rt.block_on(bounded("timed section", RUN_TIMEOUT, s.timed(n))));
        });
        Some((info.count_total, info.bytes_total))
    } else {
        timed = Some(rt.block_on(bounded("timed section", RUN_TIMEOUT, s.timed(n))));
        None
    };
    let timed = timed.expect("ran")?;
    let finish = rt.block_on(bounded("teardown", SETUP_TIMEOUT, s.finish()))?;
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(RunResult { timed, finish, allocs })
}
