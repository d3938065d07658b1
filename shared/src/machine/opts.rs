//! Options, constants and the plain data types of the machine API.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::time::Duration;

use crate::tracer::Tracer;
use crate::types::{Args, LogLevel, MutationType};
use crate::wait::Ctx;

use super::Machine;

/// Ticks of states in an order (upstream `Time`).
pub type Time = Vec<u64>;
/// Ticks by state name (upstream `Clock`).
pub type Clock = BTreeMap<String, u64>;
/// A log sink: receives the level and the formatted, id-prefixed line.
pub type Logger = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;
/// Picks which args to print in `[add]`/`[state]` log lines (see [`crate::compat::new_args_mapper`]).
pub type ArgsMapper = Arc<dyn Fn(&Args) -> BTreeMap<String, String> + Send + Sync>;

/// Default handler timeout (upstream: 100 ms).
pub const HANDLER_TIMEOUT: Duration = Duration::from_millis(100);
/// Default queue limit (upstream: 1000).
pub const QUEUE_LIMIT: usize = 1000;

/// Machine options (upstream `Opts`). `Default` gives upstream's defaults.
#[derive(Clone, Default)]
pub struct Opts {
    /// Machine id; 32 random hex chars when `None`.
    pub id: Option<String>,
    /// Parent machine id (overridden by `parent`).
    pub parent_id: Option<String>,
    /// Parent machine: its id becomes `parent_id`, its inheritable tracers see this machine.
    pub parent: Option<Machine>,
    /// Parent context: when canceled, the machine is disposed (if handlers are bound).
    pub ctx: Option<Ctx>,
    /// Handler timeout (default 100 ms). Measured after the handler returns, see the crate docs.
    /// `Some(Duration::ZERO)` disables it.
    pub handler_timeout: Option<Duration>,
    /// Don't capture a backtrace in `add_err`.
    pub dont_log_stack_trace: bool,
    /// Let handler panics unwind instead of turning them into `Exception`.
    pub dont_panic_to_exception: bool,
    /// Don't prefix log lines with the machine id.
    pub dont_log_id: bool,
    /// Initial log level.
    pub log_level: LogLevel,
    /// Tracers bound from the start (they also get `machine_init`).
    pub tracers: Vec<Arc<dyn Tracer>>,
    /// Args mapper for log lines.
    pub log_args: Option<ArgsMapper>,
    /// Queue limit (default 1000).
    pub queue_limit: Option<usize>,
    /// Monotonic clock in nanoseconds, for handler timeouts. Default: `std::time::Instant` (with
    /// `std`, off wasm); without a clock, timeouts are off.
    pub now: Option<fn() -> u64>,
    /// Run handlers away from the transition (opt-in isolation, e.g. [`crate::ThreadRunner`]):
    /// the machine waits for a handler at most its handler timeout, then cancels the
    /// transition (`Exception` with [`crate::Error::HandlerTimeout`]) and moves on, while the
    /// late handler finishes on its own (see [`HandlerRunner`]). Default: none — handlers run
    /// inline, the fastest, and a timeout is only noticed when the handler returns.
    pub handler_runner: Option<Arc<dyn HandlerRunner>>,
}

/// Runs a machine's handler calls somewhere else (another thread), so a hung handler can be
/// left behind at the timeout. The machine hands over one call at a time and waits.
///
/// A late handler (one that outlived `timeout`) keeps running; when it returns, its result is
/// dropped — the transition was already canceled — and what it mutated meanwhile is queued
/// like any other mutation. Its [`crate::Event::machine`] stays usable.
pub trait HandlerRunner: Send + Sync {
    /// Run `job` elsewhere and wait for it at most `timeout`: true if it finished in time.
    fn run(&self, job: alloc::boxed::Box<dyn FnOnce() + Send>, timeout: Duration) -> bool;
}

impl core::fmt::Debug for Opts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Opts")
            .field("id", &self.id)
            .field("handler_timeout", &self.handler_timeout)
            .field("log_level", &self.log_level)
            .field("handler_runner", &self.handler_runner.is_some())
            .finish_non_exhaustive()
    }
}

/// Upstream's `OptsWithDebug`: no panic catching, a 10-minute handler timeout.
pub fn opts_with_debug(mut opts: Opts) -> Opts {
    opts.dont_panic_to_exception = true;
    opts.handler_timeout = Some(Duration::from_secs(600));
    opts
}

/// Upstream's `OptsWithTracers`.
pub fn opts_with_tracers(mut opts: Opts, tracers: Vec<Arc<dyn Tracer>>) -> Opts {
    if !tracers.is_empty() {
        opts.tracers = tracers;
    }
    opts
}

/// Upstream's `IsTimeAfter`: every `t1[i] >= t2[i]` and at least one is greater.
pub fn is_time_after(t1: &[u64], t2: &[u64]) -> bool {
    let mut after = false;
    for (a, b) in t1.iter().zip(t2) {
        if a < b {
            return false;
        }
        if a > b {
            after = true;
        }
    }
    after
}

/// Exported machine (upstream `Serialized`; JSON keys `id`, `time`, `state_names`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Serialized {
    /// Machine id.
    pub id: String,
    /// Ticks in `state_names` order.
    pub time: Time,
    /// State order.
    pub state_names: Vec<String>,
}

/// What an `Exception` caused by a handler panic carries in its `panic` arg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExceptionArgsPanic {
    /// Called states of the panicked transition.
    pub called_states: Vec<String>,
    /// Active states before it.
    pub states_before: Vec<String>,
    /// Its mutation type.
    pub mutation_type: MutationType,
    /// The handler that panicked.
    pub handler: String,
}
