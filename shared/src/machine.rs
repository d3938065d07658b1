//! The machine: schema, clock, queue, transitions, handlers, waits and getters.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use core::time::Duration;

use crate::handlers::{Dispatch, Ev, Event, HandlerFn, Handlers, HandlersId};
use crate::resolver::{self, Resolve, Scratch};
use crate::schema::{Compiled, EXCEPTION, Id, Ids, Schema, State, parse_struct};
use crate::sync::{Mutex, RwLock};
use crate::tracer::Tracer;
use crate::transition::{EvalFn, Mutation, MutationInfo, Step, StepData, StepState, Transition};
use crate::types::{Args, Error, LogLevel, MutationType, Outcome, Relation, StepType, Value};
use crate::wait::{Ctx, CtxValue, Slot, Wait, WaitError, WaitRegistry};

/// Ticks of states in an order (upstream `Time`).
pub type Time = Vec<u64>;
/// Ticks by state name (upstream `Clock`).
pub type Clock = BTreeMap<String, u64>;
/// A log sink: receives the level and the formatted, id-prefixed line.
pub type Logger = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;
/// Picks which args to print in `[add]`/`[state]` log lines (see [`crate::new_args_mapper`]).
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
}

impl core::fmt::Debug for Opts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Opts")
            .field("id", &self.id)
            .field("handler_timeout", &self.handler_timeout)
            .field("log_level", &self.log_level)
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

struct WhenBinding {
    id: u64,
    states: Vec<Id>,
    negation: bool,
    slot: Arc<Slot>,
}

struct WhenTimeBinding {
    id: u64,
    states: Ids,
    times: Vec<u64>,
    slot: Arc<Slot>,
}

struct WhenArgsBinding {
    id: u64,
    state: Id,
    args: Args,
    slot: Arc<Slot>,
}

struct Core {
    c: Arc<Compiled>,
    clock: Vec<u64>,
    active: Vec<Id>,
    is_active: Vec<bool>,
    verified: bool,
    err: Option<Error>,
    when: Vec<WhenBinding>,
    when_time: Vec<WhenTimeBinding>,
    when_args: Vec<WhenArgsBinding>,
    state_ctx: Vec<(Id, Ctx)>,
    queue_end: Vec<(u64, Arc<Slot>)>,
}

impl Core {
    fn n_bindings(&self) -> usize {
        self.when.len() + self.when_time.len() + self.state_ctx.len()
    }

    fn set_compiled(&mut self, c: Compiled) {
        let n = c.names.len();
        self.clock.resize(n, 0);
        self.is_active.resize(n, false);
        self.c = Arc::new(c);
    }
}

/// Buffers a drain reuses from transition to transition (and from drain to drain).
struct DrainState {
    t: Transition,
    scratch: Scratch,
    active: Vec<Id>,
    states_to_set: Vec<Id>,
    called: Ids,
    logs: Vec<(LogLevel, String)>,
    /// The dispatch tables this drain uses, with the generation they were read at.
    dispatch: Option<(usize, Arc<Dispatch>)>,
}

pub(crate) struct Inner {
    spare: Mutex<Option<Box<DrainState>>>,
    /// Bumped on every change of `dispatch`, so a drain can keep its snapshot.
    dispatch_gen: AtomicUsize,
    /// When + WhenTime bindings and state contexts, readable without the core lock.
    n_bindings: AtomicUsize,
    /// WhenArgs bindings, readable without the core lock.
    n_when_args: AtomicUsize,
    /// Whether any breakpoint is set (skips a lock per mutation).
    has_breakpoints: AtomicBool,
    id: RwLock<Arc<str>>,
    parent_id: Option<String>,
    ctx: Ctx,
    core: Mutex<Core>,
    queue: Mutex<VecDeque<Mutation>>,
    queue_len: AtomicUsize,
    draining: AtomicBool,
    in_transition: AtomicBool,
    disposed: AtomicBool,
    dispatch: RwLock<Arc<Dispatch>>,
    tracers: RwLock<Vec<Arc<dyn Tracer>>>,
    has_tracers: AtomicBool,
    logger: RwLock<Option<Logger>>,
    log_level: AtomicU8,
    log_id: AtomicBool,
    log_args: RwLock<Option<ArgsMapper>>,
    /// `Ev::no` of the running handler (0: none), for `log`'s `[extern:Name]` prefix.
    current_handler: AtomicUsize,
    log_buf: Mutex<Vec<String>>,
    handler_timeout_ns: u64,
    now: Option<fn() -> u64>,
    log_stack_trace: bool,
    panic_to_exception: bool,
    queue_limit: usize,
    disposal_handlers: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
    disposed_slot: Arc<Slot>,
    next_id: AtomicUsize,
    breakpoints: Mutex<Vec<(Vec<Id>, Vec<Id>)>>,
}

impl WaitRegistry for Inner {
    fn unbind(&self, id: u64) {
        let mut core = self.core.lock();
        core.when.retain(|b| b.id != id);
        core.when_time.retain(|b| b.id != id);
        core.when_args.retain(|b| b.id != id);
        core.queue_end.retain(|(i, _)| *i != id);
        self.n_bindings.store(core.n_bindings(), Ordering::Release);
        self.n_when_args.store(core.when_args.len(), Ordering::Release);
    }
}

/// A state machine (upstream `Machine`). Cheap to clone (a handle); `Send + Sync`.
///
/// Mutations run synchronously: the caller that finds the queue idle drains it, running every
/// queued transition and its handlers on its own thread, and returns the first transition's
/// result. Calls made meanwhile (from handlers or other threads) are queued and return
/// [`Outcome::Queued`].
#[derive(Clone)]
pub struct Machine(pub(crate) Arc<Inner>);

impl core::fmt::Debug for Machine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Machine({} {})", self.id(), self.string())
    }
}

fn random_u64(seed: u64) -> u64 {
    use core::hash::BuildHasher;
    static COUNTER: AtomicUsize = AtomicUsize::new(0x7f4a_7c15);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    let h = hashbrown::DefaultHashBuilder::default();
    h.hash_one((c, seed))
}

fn random_id() -> String {
    format!("{:016x}{:016x}", random_u64(1), random_u64(2))
}

#[cfg(all(feature = "std", not(target_arch = "wasm32")))]
fn default_now() -> Option<fn() -> u64> {
    fn now() -> u64 {
        static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        BASE.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
    }
    Some(now)
}

#[cfg(not(all(feature = "std", not(target_arch = "wasm32"))))]
fn default_now() -> Option<fn() -> u64> {
    None
}

enum Called {
    Ok(bool),
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    Panic(String, String),
}

#[cfg(feature = "std")]
fn call_handler(f: &HandlerFn, e: &Event<'_>, catch: bool) -> Called {
    if !catch {
        return Called::Ok(f(e));
    }
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(e))) {
        Ok(r) => Called::Ok(r),
        Err(p) => {
            let msg = if let Some(s) = p.downcast_ref::<&str>() {
                String::from(*s)
            } else if let Some(s) = p.downcast_ref::<String>() {
                s.clone()
            } else {
                String::from("panic")
            };
            // upstream always logs the panicking handler's stack; panics are rare, so pay for it
            let bt = std::backtrace::Backtrace::force_capture();
            let trace = match bt.status() {
                std::backtrace::BacktraceStatus::Captured => format!("handler {}\n{bt}", e.name),
                _ => format!("handler {}", e.name),
            };
            Called::Panic(msg, trace)
        }
    }
}

#[cfg(not(feature = "std"))]
fn call_handler(f: &HandlerFn, e: &Event<'_>, _catch: bool) -> Called {
    Called::Ok(f(e))
}

#[cfg(feature = "std")]
fn capture_trace() -> String {
    let bt = std::backtrace::Backtrace::capture();
    match bt.status() {
        std::backtrace::BacktraceStatus::Captured => bt.to_string(),
        _ => String::new(),
    }
}

#[cfg(not(feature = "std"))]
fn capture_trace() -> String {
    String::new()
}

/// Upstream's `ExceptionHandler.ExceptionState`: log the error at Changes level.
pub(crate) fn exception_state(e: &Event<'_>) {
    let m = e.machine();
    let args = e.args();
    let err = args.get("err").map(|v| v.to_log_string());
    let trace = args.get("err.trace").and_then(|v| v.as_str()).unwrap_or("");
    let panic = args.get("panic").and_then(|v| v.downcast_ref::<ExceptionArgsPanic>());
    let with_trace = m.0.log_stack_trace && !trace.is_empty();
    match (err, panic) {
        (None, None) => m.log_lvl(LogLevel::Changes, "[error] missing error in ExceptionState"),
        (err, None) => {
            let mut s = format!("[error] {}", err.unwrap_or_default());
            if with_trace {
                s.push('\n');
                s.push_str(trace);
            }
            m.log_lvl(LogLevel::Changes, &s);
        }
        (err, Some(p)) => {
            let mut s = format!(
                "[error:{}] {} ({})",
                p.mutation_type,
                p.called_states.join(" "),
                err.unwrap_or_default()
            );
            if with_trace {
                s.push('\n');
                s.push_str(trace);
            }
            m.log_lvl(LogLevel::Changes, &s);
        }
    }
}

impl Machine {
    /// A new machine for `schema` (normalised like upstream; `Exception` added when missing).
    /// Errors: relations to states not in the schema, Require cycles.
    pub fn new(schema: Schema, opts: Opts) -> Result<Machine, Error> {
        let mut schema = schema;
        if !schema.contains_key(EXCEPTION) {
            schema.insert(String::from(EXCEPTION), State::new().multi());
        }
        let schema = parse_struct(&schema);
        let id = opts.id.clone().unwrap_or_else(random_id);
        let order: Vec<String> = schema.keys().cloned().collect();
        let c = Compiled::build(schema, &[], &order, &id)?;
        let n = c.names.len();
        let parent_id = match &opts.parent {
            Some(p) => Some(p.id().to_string()),
            None => opts.parent_id.clone(),
        };
        let ctx = match &opts.ctx {
            Some(p) => p.child(),
            None => Ctx::new(),
        };
        let timeout = opts.handler_timeout.unwrap_or(HANDLER_TIMEOUT);
        let now = opts.now.or_else(default_now);
        let has_tracers = !opts.tracers.is_empty();
        let inner = Inner {
            spare: Mutex::new(None),
            dispatch_gen: AtomicUsize::new(0),
            n_bindings: AtomicUsize::new(0),
            n_when_args: AtomicUsize::new(0),
            has_breakpoints: AtomicBool::new(false),
            id: RwLock::new(Arc::from(id.as_str())),
            parent_id,
            ctx,
            core: Mutex::new(Core {
                c: Arc::new(c),
                clock: alloc::vec![0; n],
                active: Vec::new(),
                is_active: alloc::vec![false; n],
                verified: false,
                err: None,
                when: Vec::new(),
                when_time: Vec::new(),
                when_args: Vec::new(),
                state_ctx: Vec::new(),
                queue_end: Vec::new(),
            }),
            queue: Mutex::new(VecDeque::new()),
            queue_len: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            in_transition: AtomicBool::new(false),
            disposed: AtomicBool::new(false),
            dispatch: RwLock::new(Arc::new(Dispatch::default())),
            tracers: RwLock::new(opts.tracers.clone()),
            has_tracers: AtomicBool::new(has_tracers),
            logger: RwLock::new(None),
            log_level: AtomicU8::new(opts.log_level as u8),
            log_id: AtomicBool::new(!opts.dont_log_id),
            log_args: RwLock::new(opts.log_args.clone()),
            current_handler: AtomicUsize::new(0),
            log_buf: Mutex::new(Vec::new()),
            handler_timeout_ns: timeout.as_nanos() as u64,
            now,
            log_stack_trace: !opts.dont_log_stack_trace,
            panic_to_exception: !opts.dont_panic_to_exception,
            queue_limit: opts.queue_limit.unwrap_or(QUEUE_LIMIT),
            disposal_handlers: Mutex::new(Vec::new()),
            disposed_slot: Arc::new(Slot::default()),
            next_id: AtomicUsize::new(1),
            breakpoints: Mutex::new(Vec::new()),
        };
        let m = Machine(Arc::new(inner));
        // parent ctx: dispose when it ends, if handlers are bound (as upstream)
        if let Some(parent_ctx) = &opts.ctx {
            let weak = Arc::downgrade(&m.0);
            parent_ctx.on_cancel(move || {
                if let Some(inner) = weak.upgrade() {
                    let m = Machine(inner);
                    if !m.0.dispatch.read().is_empty() {
                        m.dispose();
                    }
                }
            });
        }
        for t in &opts.tracers {
            if let Some(ctx) = t.machine_init(&m) {
                // a tracer's ctx replaces the machine ctx: cancel ours with it
                let weak = Arc::downgrade(&m.0);
                ctx.on_cancel(move || {
                    if let Some(inner) = weak.upgrade() {
                        inner.ctx.cancel();
                    }
                });
            }
        }
        if let Some(parent) = &opts.parent {
            for t in parent.tracers() {
                if t.inheritable() {
                    t.new_submachine(parent, &m);
                }
            }
        }
        Ok(m)
    }

    /// Upstream's `NewCommon`: `new`, then `verify_states(names)`, then bind `handlers`.
    pub fn new_common(
        id: &str,
        schema: Schema,
        names: &[&str],
        handlers: Option<Handlers>,
        parent: Option<Machine>,
        opts: Opts,
    ) -> Result<Machine, Error> {
        let mut opts = opts;
        opts.id = Some(String::from(id));
        if parent.is_some() {
            opts.parent = parent;
        }
        if opts.log_args.is_none() {
            opts.log_args = Some(Arc::new(crate::types::new_args_mapper(
                &["name", "id", "port", "addr"],
                0,
            )));
        }
        let m = Machine::new(schema, opts)?;
        m.verify_states(names)?;
        if let Some(h) = handlers {
            m.bind_handlers(h)?;
        }
        Ok(m)
    }

    // ----- identity, lifecycle -----

    /// The machine id (replaced by `import`, as upstream).
    pub fn id(&self) -> Arc<str> {
        self.0.id.read().clone()
    }

    /// The parent's id, if any.
    pub fn parent_id(&self) -> Option<&str> {
        self.0.parent_id.as_deref()
    }

    /// The machine context, canceled on disposal.
    pub fn ctx(&self) -> Ctx {
        self.0.ctx.clone()
    }

    /// True after `dispose`.
    pub fn is_disposed(&self) -> bool {
        self.0.disposed.load(Ordering::Acquire)
    }

    /// Dispose: cancel the context and state contexts, notify tracers, run disposal handlers, end
    /// pending waits with `WaitError::Disposed` (upstream leaves them hanging), complete
    /// `when_disposed`. Idempotent. Synchronous (there is no runtime to defer to).
    pub fn dispose(&self) {
        if self.0.disposed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.0.ctx.cancel();
        {
            let tracers = core::mem::take(&mut *self.0.tracers.write());
            self.0.has_tracers.store(false, Ordering::Release);
            for t in &tracers {
                t.machine_dispose(&self.id());
            }
        }
        let (slots, ctxs) = {
            let mut core = self.0.core.lock();
            if core.err.is_none() {
                core.err = Some(Error::Other(String::from("context canceled")));
            }
            let mut slots: Vec<Arc<Slot>> = Vec::new();
            slots.extend(core.when.drain(..).map(|b| b.slot));
            slots.extend(core.when_time.drain(..).map(|b| b.slot));
            slots.extend(core.when_args.drain(..).map(|b| b.slot));
            self.0.n_when_args.store(0, Ordering::Release);
            let qe: Vec<Arc<Slot>> = core.queue_end.drain(..).map(|(_, s)| s).collect();
            let ctxs: Vec<Ctx> = core.state_ctx.drain(..).map(|(_, c)| c).collect();
            self.0.n_bindings.store(0, Ordering::Release);
            (slots, (qe, ctxs))
        };
        for c in ctxs.1 {
            c.cancel();
        }
        for s in slots {
            s.complete(Err(WaitError::Disposed));
        }
        for s in ctxs.0 {
            s.complete(Ok(()));
        }
        {
            let mut q = self.0.queue.lock();
            for item in q.drain(..) {
                if let Some((_, _, slot)) = item.eval {
                    slot.complete(Err(WaitError::Disposed));
                }
            }
            self.0.queue_len.store(0, Ordering::Release);
        }
        *self.0.dispatch.write() = Arc::new(Dispatch::default());
        self.0.dispatch_gen.fetch_add(1, Ordering::AcqRel);
        let handlers = core::mem::take(&mut *self.0.disposal_handlers.lock());
        for h in handlers {
            h();
        }
        self.0.disposed_slot.complete(Ok(()));
    }

    /// Same as `dispose` (upstream's `DisposeForce` skips locks; ours is already synchronous).
    pub fn dispose_force(&self) {
        self.dispose();
    }

    /// Completes when disposal finished.
    pub fn when_disposed(&self) -> Wait {
        if self.0.disposed_slot.is_done() {
            return Wait::ready(Ok(()));
        }
        Wait::pending(self.0.disposed_slot.clone(), None, None)
    }

    /// Run `f` during disposal, in registration order.
    pub fn register_disposal_handler(&self, f: impl FnOnce() + Send + 'static) {
        self.0.disposal_handlers.lock().push(Box::new(f));
    }

    // ----- schema -----

    fn compiled(&self) -> Arc<Compiled> {
        self.0.core.lock().c.clone()
    }

    /// The normalised schema (upstream `GetStruct`).
    pub fn get_struct(&self) -> Schema {
        self.compiled().schema.clone()
    }

    /// The ordered state names (upstream `StateNames`).
    pub fn state_names(&self) -> Vec<String> {
        let c = self.compiled();
        c.order.iter().map(|i| c.names[*i].clone()).collect()
    }

    /// True after a successful `verify_states` or `import`.
    pub fn states_verified(&self) -> bool {
        self.0.core.lock().verified
    }

    /// Upstream's `VerifyStates`: every name must be in the schema, duplicates are rejected, and
    /// the list may not be shorter than the current state list; it then becomes the state order.
    /// `Exception` is appended when the schema has it and the list does not (upstream allows
    /// omitting it, see `docs/upstream-tests.md`).
    pub fn verify_states(&self, names: &[&str]) -> Result<(), Error> {
        if self.is_disposed() {
            return Ok(());
        }
        {
            let mut core = self.0.core.lock();
            let order = check_names(&core.c, names, &self.id())?;
            let mut c = (*core.c).clone();
            c.order = order;
            c.reindex_order();
            core.c = Arc::new(c);
            core.verified = true;
        }
        self.with_tracers(|t| t.verify_states(self));
        Ok(())
    }

    /// Upstream's `SetStruct`: replace the schema (normalised) and the state order. Clocks are
    /// kept; new states start at tick 0. A schema with relations to missing states or a Require
    /// cycle is rejected and nothing changes. If only the names fail verification, the schema is
    /// still applied with the previous order (as upstream) and the error returned.
    pub fn set_struct(&self, schema: Schema, names: &[&str]) -> Result<(), Error> {
        if self.is_disposed() {
            return Ok(());
        }
        let schema = parse_struct(&schema);
        let old;
        let res;
        {
            let mut core = self.0.core.lock();
            old = core.c.schema.clone();
            let prev_names = core.c.names.clone();
            // verify against the new schema
            let probe = Compiled::build(schema.clone(), &prev_names, &[], &self.id())?;
            let verified = check_names(&probe, names, &self.id()).and_then(|_| {
                if names.len() < core.c.order.len() {
                    Err(verify_len_err(&core.c, names))
                } else {
                    Ok(())
                }
            });
            let order: Vec<String> = match &verified {
                Ok(()) => with_exception(&probe, names),
                Err(_) => core
                    .c
                    .order
                    .iter()
                    .map(|i| core.c.names[*i].clone())
                    .filter(|n| schema.contains_key(n))
                    .collect(),
            };
            let c = Compiled::build(schema, &prev_names, &order, &self.id())?;
            core.set_compiled(c);
            if verified.is_ok() {
                core.verified = true;
            }
            // active states that left the schema are dropped
            let keep: Vec<Id> = core
                .active
                .iter()
                .copied()
                .filter(|i| core.c.defs[*i].present)
                .collect();
            core.active = keep;
            let mut flags = alloc::vec![false; core.c.names.len()];
            for i in &core.active {
                flags[*i] = true;
            }
            core.is_active = flags;
            res = verified;
        }
        if res.is_ok() {
            self.with_tracers(|t| t.struct_change(self, &old));
        }
        res
    }

    /// Position of `state` in the state order.
    pub fn index(&self, state: &str) -> Option<usize> {
        if self.is_disposed() {
            return None;
        }
        let c = self.compiled();
        c.id(state).and_then(|id| usize::try_from(c.order_pos[id]).ok())
    }

    /// Upstream's `MustParseStates` as a fallible call: de-duplicated names, or `StateUnknown`.
    pub fn parse_states(&self, states: &[&str]) -> Result<Vec<String>, Error> {
        let c = self.compiled();
        let ids = parse_ids(&c, states)?;
        Ok(ids.iter().map(|i| c.names[*i].clone()).collect())
    }

    /// Relation kinds `state` has, in the order Add, Require, Remove, After.
    pub fn get_relations_of(&self, state: &str) -> Result<Vec<Relation>, Error> {
        let c = self.compiled();
        let st = c.schema.get(state).ok_or_else(|| Error::StateUnknown(state.into()))?;
        let mut out = Vec::new();
        for (l, r) in [
            (&st.add, Relation::Add),
            (&st.require, Relation::Require),
            (&st.remove, Relation::Remove),
            (&st.after, Relation::After),
        ] {
            if !l.is_empty() {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Relation kinds from `from` that list `to`, in the order Add, Require, Remove, After.
    pub fn get_relations_between(&self, from: &str, to: &str) -> Result<Vec<Relation>, Error> {
        let c = self.compiled();
        let st = c.schema.get(from).ok_or_else(|| Error::StateUnknown(from.into()))?;
        if !c.schema.contains_key(to) {
            return Err(Error::StateUnknown(to.into()));
        }
        let mut out = Vec::new();
        for (l, r) in [
            (&st.add, Relation::Add),
            (&st.require, Relation::Require),
            (&st.remove, Relation::Remove),
            (&st.after, Relation::After),
        ] {
            if l.iter().any(|s| s == to) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The resolver's ordering (`SortStates`): Require topology, then After.
    pub fn sort_states(&self, states: &[&str]) -> Result<Vec<String>, Error> {
        let c = self.compiled();
        let mut ids = Vec::with_capacity(states.len());
        for s in states {
            ids.push(c.id(s).ok_or_else(|| Error::StateUnknown((*s).into()))?);
        }
        let mut steps = Vec::new();
        resolver::sort_states(&c, &mut ids, &mut steps, false);
        Ok(ids.iter().map(|i| c.names[*i].clone()).collect())
    }

    /// The Require topology (requirements first).
    pub fn require_topology(&self) -> Vec<String> {
        let c = self.compiled();
        c.topology.iter().map(|i| c.names[*i].clone()).collect()
    }

    // ----- getters -----

    /// All `states` are known and active. `is(&[])` is true.
    pub fn is(&self, states: &[&str]) -> bool {
        if self.is_disposed() {
            return false;
        }
        let core = self.0.core.lock();
        for s in states {
            match core.c.id(s).filter(|id| core.c.order_pos[*id] >= 0) {
                Some(id) if core.is_active[id] => {}
                Some(_) => return false,
                None => {
                    drop(core);
                    self.log_fmt(LogLevel::Decisions, || format!("[is] state {s} not found"));
                    return false;
                }
            }
        }
        true
    }

    /// `state` is known and active.
    pub fn is1(&self, state: &str) -> bool {
        self.is(&[state])
    }

    /// None of `states` is active. Panics on an unknown state (as upstream); see [`Machine::try_not`].
    pub fn not(&self, states: &[&str]) -> bool {
        self.try_not(states).unwrap_or_else(|e| panic!("{e}"))
    }

    /// None of `states` is active, or `StateUnknown`.
    pub fn try_not(&self, states: &[&str]) -> Result<bool, Error> {
        if self.is_disposed() {
            return Ok(false);
        }
        let core = self.0.core.lock();
        let mut none = true;
        for s in states {
            let id = core.c.id(s).ok_or_else(|| Error::StateUnknown((*s).into()))?;
            if core.is_active[id] {
                none = false;
            }
        }
        Ok(none)
    }

    /// `state` is not active. Panics on an unknown state.
    pub fn not1(&self, state: &str) -> bool {
        self.not(&[state])
    }

    /// Some group satisfies `is`. No groups: false.
    pub fn any(&self, groups: &[&[&str]]) -> bool {
        groups.iter().any(|g| self.is(g))
    }

    /// Some state is active. No states: false.
    pub fn any1(&self, states: &[&str]) -> bool {
        states.iter().any(|s| self.is1(s))
    }

    /// All names are in the schema (duplicates fine). `has(&[])` is true.
    pub fn has(&self, states: &[&str]) -> bool {
        if self.is_disposed() {
            return false;
        }
        let c = self.compiled();
        states.iter().all(|s| c.id(s).is_some())
    }

    /// `state` is in the schema.
    pub fn has1(&self, state: &str) -> bool {
        self.has(&[state])
    }

    /// `Exception` is active.
    pub fn is_err(&self) -> bool {
        self.is1(EXCEPTION)
    }

    /// The last error (never cleared).
    pub fn err(&self) -> Option<Error> {
        self.0.core.lock().err.clone()
    }

    /// The first active state of the groups (groups in order, states in order).
    pub fn switch<'a>(&self, groups: &[&[&'a str]]) -> Option<&'a str> {
        if self.is_disposed() {
            return None;
        }
        let core = self.0.core.lock();
        for g in groups {
            for s in g.iter() {
                if let Some(id) = core.c.id(s) {
                    if core.is_active[id] {
                        return Some(s);
                    }
                }
            }
        }
        None
    }

    /// How many listed entries are active (duplicates counted).
    pub fn count_active(&self, states: &[&str]) -> usize {
        let core = self.0.core.lock();
        states
            .iter()
            .filter(|s| core.c.id(s).is_some_and(|id| core.is_active[id]))
            .count()
    }

    /// Active states in the last transition's target order.
    pub fn active_states(&self) -> Vec<String> {
        if self.is_disposed() {
            return Vec::new();
        }
        let core = self.0.core.lock();
        core.active.iter().map(|i| core.c.names[*i].clone()).collect()
    }

    /// One state's tick (0 when unknown).
    pub fn tick(&self, state: &str) -> u64 {
        let core = self.0.core.lock();
        core.c.id(state).map_or(0, |id| core.clock[id])
    }

    /// Ticks of `states` in order (`None`: all, in state order). Unknown names read 0.
    pub fn time(&self, states: Option<&[&str]>) -> Time {
        let core = self.0.core.lock();
        match states {
            None => core.c.order.iter().map(|i| core.clock[*i]).collect(),
            Some(s) => s.iter().map(|s| core.c.id(s).map_or(0, |id| core.clock[id])).collect(),
        }
    }

    /// Sum of ticks (`None`: all).
    pub fn time_sum(&self, states: Option<&[&str]>) -> u64 {
        self.time(states).iter().sum()
    }

    /// Ticks by name (`None`: all).
    pub fn clock(&self, states: Option<&[&str]>) -> Clock {
        let core = self.0.core.lock();
        match states {
            None => core
                .c
                .order
                .iter()
                .map(|i| (core.c.names[*i].clone(), core.clock[*i]))
                .collect(),
            Some(s) => s
                .iter()
                .map(|s| (String::from(*s), core.c.id(s).map_or(0, |id| core.clock[id])))
                .collect(),
        }
    }

    /// True iff nothing changed: each current tick equals `time[i]` (for `states`, or the state order).
    pub fn is_time(&self, time: &[u64], states: Option<&[&str]>) -> bool {
        let now = self.time(states);
        time.iter().enumerate().all(|(i, t)| now.get(i) == Some(t))
    }

    /// True iff every entry equals the current tick.
    pub fn is_clock(&self, clock: &Clock) -> bool {
        let core = self.0.core.lock();
        clock
            .iter()
            .all(|(k, v)| core.c.id(k).map_or(0, |id| core.clock[id]) == *v)
    }

    /// `(A:1 B:3)`: active states with ticks, in state order.
    pub fn string(&self) -> String {
        if self.is_disposed() {
            return String::new();
        }
        let core = self.0.core.lock();
        let mut s = String::from("(");
        let mut first = true;
        for i in &core.c.order {
            if core.is_active[*i] {
                if !first {
                    s.push(' ');
                }
                first = false;
                s.push_str(&format!("{}:{}", core.c.names[*i], core.clock[*i]));
            }
        }
        s.push(')');
        s
    }

    /// `(A:1) [B:0 C:2]`: active, then inactive, in state order.
    pub fn string_all(&self) -> String {
        if self.is_disposed() {
            return String::new();
        }
        let core = self.0.core.lock();
        let (mut a, mut n) = (Vec::new(), Vec::new());
        for i in &core.c.order {
            let e = format!("{}:{}", core.c.names[*i], core.clock[*i]);
            if core.is_active[*i] {
                a.push(e);
            } else {
                n.push(e);
            }
        }
        format!("({}) [{}]", a.join(" "), n.join(" "))
    }

    /// Upstream's `Inspect` text for `states` (`None`: all, in state order).
    pub fn inspect(&self, states: Option<&[&str]>) -> String {
        if self.is_disposed() {
            return String::new();
        }
        let core = self.0.core.lock();
        let names: Vec<&str> = match states {
            None => core.c.order.iter().map(|i| core.c.name(*i)).collect(),
            Some(s) => s.to_vec(),
        };
        let empty = State::new();
        let mut out = String::new();
        for name in names {
            let id = core.c.id(name);
            let st = core.c.schema.get(name).unwrap_or(&empty);
            let (active, tick) = id.map_or((false, 0), |i| (core.is_active[i], core.clock[i]));
            out.push_str(&format!("{name}:\n"));
            out.push_str(&format!("  State:   {active} {tick}\n"));
            if st.auto {
                out.push_str("  Auto:    true\n");
            }
            if st.multi {
                out.push_str("  Multi:   true\n");
            }
            for (label, l) in [
                ("Add:     ", &st.add),
                ("Require: ", &st.require),
                ("Remove:  ", &st.remove),
                ("After:   ", &st.after),
            ] {
                if !l.is_empty() {
                    out.push_str(&format!("  {label}{}\n", l.join(" ")));
                }
            }
            out.push('\n');
        }
        out
    }

    /// Export id, ticks and state order. Needs verified states.
    pub fn export(&self) -> Result<Serialized, Error> {
        let core = self.0.core.lock();
        if !core.verified {
            return Err(Error::Other(String::from("can't export - call VerifyStates first")));
        }
        Ok(Serialized {
            id: String::from(&*self.id()),
            time: core.c.order.iter().map(|i| core.clock[*i]).collect(),
            state_names: core.c.order.iter().map(|i| core.c.names[*i].clone()).collect(),
        })
    }

    /// Import id, ticks and state order (active iff odd); no handlers run. Not meant for a
    /// machine that already ran transitions or has tracers (as upstream).
    pub fn import(&self, data: &Serialized) -> Result<(), Error> {
        self.import_clock(data)?;
        *self.0.id.write() = Arc::from(data.id.as_str());
        let t: u64 = data.time.iter().sum();
        self.log_fmt(LogLevel::Changes, || format!("[import] imported to {t} ticks"));
        Ok(())
    }

    /// `import` without taking over the id: ticks and state order only.
    pub fn import_clock(&self, data: &Serialized) -> Result<(), Error> {
        if data.time.len() != data.state_names.len() {
            return Err(Error::InvalidArgs(String::from(
                "time and state_names differ in length",
            )));
        }
        let mut core = self.0.core.lock();
        let mut ids = Vec::with_capacity(data.state_names.len());
        for n in &data.state_names {
            ids.push(core.c.id(n).ok_or_else(|| Error::StateUnknown(n.clone()))?);
        }
        let mut c = (*core.c).clone();
        c.order = ids.clone();
        c.reindex_order();
        core.c = Arc::new(c);
        let mut active = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            core.clock[*id] = data.time[i];
            core.is_active[*id] = data.time[i] % 2 == 1;
            if data.time[i] % 2 == 1 {
                active.push(*id);
            }
        }
        core.active = active;
        core.verified = true;
        Ok(())
    }

    /// Replace ticks (tests and mirrors): states in `clock` get the tick, active iff odd.
    /// Waits and state contexts are resolved as after a transition.
    pub fn mock_clock(&self, clock: &Clock) -> Result<(), Error> {
        let time_before = {
            let mut core = self.0.core.lock();
            let time_before = core.clock.clone();
            for (k, v) in clock {
                let id = core.c.id(k).ok_or_else(|| Error::StateUnknown(k.clone()))?;
                core.clock[id] = *v;
                let act = v % 2 == 1;
                if act != core.is_active[id] {
                    core.is_active[id] = act;
                    if act {
                        core.active.push(id);
                    } else {
                        core.active.retain(|x| *x != id);
                    }
                }
            }
            time_before
        };
        self.process_bindings(&time_before, false);
        Ok(())
    }

    /// Replace the whole clock (in state order), as a mirror does with a clock from its worker:
    /// ticks and active states change without running handlers; tracers see one synthetic `Set`
    /// transition; waits and state contexts resolve as after a transition, allowing for several
    /// merged transitions (a non-Multi state that ticked by 2 without changing was off or on in
    /// between). Ticks must not decrease.
    pub fn apply_time(&self, time: &[u64]) -> Result<(), Error> {
        let (c, time_before) = {
            let mut core = self.0.core.lock();
            let core = &mut *core;
            if time.len() != core.c.order.len() {
                return Err(Error::InvalidArgs(format!(
                    "clock of {} ticks for {} states",
                    time.len(),
                    core.c.order.len()
                )));
            }
            for (pos, id) in core.c.order.iter().enumerate() {
                if time[pos] < core.clock[*id] {
                    return Err(Error::InvalidArgs(format!(
                        "tick of {} would go back from {} to {}",
                        core.c.names[*id], core.clock[*id], time[pos]
                    )));
                }
            }
            let time_before = core.clock.clone();
            for (pos, id) in core.c.order.iter().enumerate() {
                core.clock[*id] = time[pos];
                core.is_active[*id] = time[pos] % 2 == 1;
            }
            let c = core.c.clone();
            let active: Vec<Id> = c.order.iter().copied().filter(|i| core.is_active[*i]).collect();
            core.active = active;
            (c, time_before)
        };
        if self.0.has_tracers.load(Ordering::Acquire) {
            let clock_after = self.0.core.lock().clock.clone();
            let target: Vec<Id> = c.order.iter().copied().filter(|i| clock_after[*i] % 2 == 1).collect();
            let mut t = Transition {
                id: self.0.next_id.fetch_add(1, Ordering::Relaxed) as u64,
                c: c.clone(),
                mutation: Mutation {
                    ty: MutationType::Set,
                    called: Ids::new(),
                    args: Args::new(),
                    auto: false,
                    eval: None,
                    ctx: None,
                },
                time_before: time_before.clone(),
                time_after: None,
                target: target.clone(),
                enters: Vec::new(),
                exits: Vec::new(),
                accepted: true,
                steps: Vec::new(),
                log_entries: Vec::new(),
                pre_log_entries: core::mem::take(&mut *self.0.log_buf.lock()),
                queue_len: self.queue_len(),
                completed: false,
                clock_mark: 0,
            };
            t.enters = target.iter().copied().filter(|i| time_before[*i] % 2 == 0).collect();
            t.exits = c
                .order
                .iter()
                .copied()
                .filter(|i| time_before[*i] % 2 == 1 && clock_after[*i] % 2 == 0)
                .collect();
            self.with_tracers(|tr| tr.transition_init(&t));
            self.with_tracers(|tr| tr.transition_start(&t));
            t.time_after = Some(clock_after);
            t.completed = true;
            self.with_tracers(|tr| tr.transition_end(&t));
        }
        self.process_bindings(&time_before, true);
        Ok(())
    }

    // ----- queue -----

    /// Pending mutations (copy).
    pub fn queue(&self) -> Vec<MutationInfo> {
        let c = self.compiled();
        self.0
            .queue
            .lock()
            .iter()
            .map(|m| MutationInfo {
                ty: m.ty,
                states: m.called.iter().map(|i| c.names[*i].clone()).collect(),
                args: m.args.clone(),
                auto: m.auto,
            })
            .collect()
    }

    /// Number of pending mutations.
    pub fn queue_len(&self) -> usize {
        self.0.queue_len.load(Ordering::Acquire)
    }

    /// True while a transition of a queue drain is running (upstream `Transition() != nil`).
    pub fn transition_running(&self) -> bool {
        self.0.in_transition.load(Ordering::Acquire)
    }

    /// Upstream's `IsQueued`: index of the first matching queued mutation at or after `start`.
    pub fn is_queued(
        &self,
        ty: MutationType,
        states: &[&str],
        without_args_only: bool,
        states_strict_equal: bool,
        start: usize,
    ) -> Option<usize> {
        let c = self.compiled();
        let Ok(ids) = parse_ids(&c, states) else {
            return None;
        };
        let q = self.0.queue.lock();
        is_queued(&q, ty, &ids, without_args_only, states_strict_equal, start)
    }

    /// An Add of `states` is queued.
    pub fn will_be(&self, states: &[&str]) -> bool {
        self.is_queued(MutationType::Add, states, false, false, 0).is_some()
    }
    /// An Add of `state` is queued.
    pub fn will_be1(&self, state: &str) -> bool {
        self.will_be(&[state])
    }
    /// A Remove of `states` is queued.
    pub fn will_be_removed(&self, states: &[&str]) -> bool {
        self.is_queued(MutationType::Remove, states, false, false, 0).is_some()
    }
    /// A Remove of `state` is queued.
    pub fn will_be_removed1(&self, state: &str) -> bool {
        self.will_be_removed(&[state])
    }

    /// Log (with a stack trace) when a mutation exactly matches: Add of `added`, or Remove of
    /// `removed` (upstream `AddBreakpoint`).
    pub fn add_breakpoint(&self, added: &[&str], removed: &[&str]) {
        let c = self.compiled();
        let a = added.iter().filter_map(|s| c.id(s)).collect();
        let r = removed.iter().filter_map(|s| c.id(s)).collect();
        self.0.breakpoints.lock().push((a, r));
        self.0.has_breakpoints.store(true, Ordering::Release);
    }

    // ----- mutations -----

    /// Activate states. Panics on an unknown state (as upstream); see [`Machine::try_add`].
    pub fn add(&self, states: &[&str], args: Option<Args>) -> Outcome {
        self.try_add(states, args).unwrap_or_else(|e| panic!("{e}"))
    }
    /// Activate one state. Panics on an unknown state.
    pub fn add1(&self, state: &str, args: Option<Args>) -> Outcome {
        self.add(&[state], args)
    }
    /// Deactivate states. Panics on an unknown state.
    pub fn remove(&self, states: &[&str], args: Option<Args>) -> Outcome {
        self.try_remove(states, args).unwrap_or_else(|e| panic!("{e}"))
    }
    /// Deactivate one state. Panics on an unknown state.
    pub fn remove1(&self, state: &str, args: Option<Args>) -> Outcome {
        self.remove(&[state], args)
    }
    /// Make exactly `states` (and implied ones) active. Panics on an unknown state.
    pub fn set(&self, states: &[&str], args: Option<Args>) -> Outcome {
        self.try_set(states, args).unwrap_or_else(|e| panic!("{e}"))
    }
    /// `remove1` if active, else `add1`.
    pub fn toggle1(&self, state: &str) -> Outcome {
        if self.is_disposed() {
            return Outcome::Canceled;
        }
        if self.is1(state) {
            self.remove1(state, None)
        } else {
            self.add1(state, None)
        }
    }

    /// Fallible `add`: `StateUnknown` instead of a panic.
    pub fn try_add(&self, states: &[&str], args: Option<Args>) -> Result<Outcome, Error> {
        self.mutate(MutationType::Add, states, args)
    }
    /// Fallible `remove`.
    pub fn try_remove(&self, states: &[&str], args: Option<Args>) -> Result<Outcome, Error> {
        self.mutate(MutationType::Remove, states, args)
    }
    /// Fallible `set`.
    pub fn try_set(&self, states: &[&str], args: Option<Args>) -> Result<Outcome, Error> {
        self.mutate(MutationType::Set, states, args)
    }

    /// A mutation by type, states by index in the state order (for wire sessions).
    pub fn mutate_indexes(&self, ty: MutationType, indexes: &[usize], args: Option<Args>) -> Result<Outcome, Error> {
        let c = self.compiled();
        let mut names = Vec::with_capacity(indexes.len());
        for i in indexes {
            let id = *c
                .order
                .get(*i)
                .ok_or_else(|| Error::StateUnknown(format!("index {i}")))?;
            names.push(c.names[id].as_str());
        }
        self.mutate(ty, &names, args)
    }

    /// Store `err` and add `Exception` (upstream `AddErr`).
    pub fn add_err(&self, err: impl Into<Error>, args: Option<Args>) -> Outcome {
        self.add_err_state(EXCEPTION, err, args)
    }

    /// Store `err` and add `state` with `Exception`; args get `err` and `err.trace`.
    /// Panics on an unknown state.
    pub fn add_err_state(&self, state: &str, err: impl Into<Error>, args: Option<Args>) -> Outcome {
        if self.is_disposed() {
            return Outcome::Canceled;
        }
        let err = err.into();
        let msg = err.to_string();
        self.0.core.lock().err = Some(err);
        let trace = if self.0.log_stack_trace {
            capture_trace()
        } else {
            String::new()
        };
        let mut args = args.unwrap_or_default();
        args.insert("err", Value::Str(msg));
        if !trace.is_empty() {
            args.insert("err.trace", Value::Str(trace));
        }
        self.add(&[state, EXCEPTION], Some(args))
    }

    /// Run `f` on the queue (upstream `Eval`). The returned wait completes when `f` ran; drop it
    /// before that and `f` is skipped. Called from a handler it cannot run before the handler
    /// returns, so don't await it there. Disposed: `Err(Disposed)`; empty `source`: `InvalidArgs`.
    pub fn eval(&self, source: &str, f: impl FnOnce() + Send + 'static) -> Wait {
        if self.is_disposed() {
            return Wait::ready(Err(WaitError::Disposed));
        }
        if source.is_empty() {
            return Wait::ready(Err(WaitError::InvalidArgs(String::from("eval: empty source"))));
        }
        let slot = Arc::new(Slot::default());
        let f: EvalFn = Box::new(f);
        let item = Mutation {
            ty: MutationType::Eval,
            called: Ids::new(),
            args: Args::new(),
            auto: false,
            eval: Some((String::from(source), f, slot.clone())),
            ctx: None,
        };
        {
            let mut q = self.0.queue.lock();
            q.push_front(item);
            self.0.queue_len.store(q.len(), Ordering::Release);
        }
        let wait = Wait::pending(slot, None, None);
        self.process_queue();
        wait
    }

    fn mutate(&self, ty: MutationType, states: &[&str], args: Option<Args>) -> Result<Outcome, Error> {
        if self.is_disposed() || self.queue_len() >= self.0.queue_limit {
            return Ok(Outcome::Canceled);
        }
        if ty == MutationType::Remove {
            let q = self.0.queue.lock();
            if q.is_empty() && self.transition_running() {
                let core = self.0.core.lock();
                let any_active = states.iter().any(|s| core.c.id(s).is_some_and(|id| core.is_active[id]));
                if !any_active {
                    return Ok(Outcome::Executed);
                }
            }
        }
        let (ids, multi) = {
            let core = self.0.core.lock();
            let ids = parse_ids(&core.c, states)?;
            let multi = ids.iter().any(|i| core.c.defs[*i].multi);
            (ids, multi)
        };
        self.queue_mutation(ty, ids, multi, args.unwrap_or_default());
        Ok(self.process_queue())
    }

    fn queue_mutation(&self, ty: MutationType, ids: Ids, multi: bool, args: Args) {
        let mut q = self.0.queue.lock();
        if !multi && args.is_empty() && detect_duplicates(&q, ty, &ids) {
            drop(q);
            self.log_fmt(LogLevel::Ops, || {
                format!(
                    "[queue:skipped] Duplicate detected for [{ty}] {}",
                    self.compiled().join(&ids)
                )
            });
            return;
        }
        let log_ids = if self.log_level() >= LogLevel::Ops {
            Some(ids.clone())
        } else {
            None
        };
        let bp_ids = if !self.0.has_breakpoints.load(Ordering::Relaxed) {
            None
        } else {
            Some(ids.clone())
        };
        q.push_back(Mutation {
            ty,
            called: ids,
            args,
            auto: false,
            eval: None,
            ctx: None,
        });
        self.0.queue_len.store(q.len(), Ordering::Release);
        drop(q);
        if let Some(ids) = log_ids {
            self.log_fmt(LogLevel::Ops, || format!("[queue:{ty}] {}", self.compiled().join(&ids)));
        }
        if let Some(ids) = bp_ids {
            self.check_breakpoints(&self.compiled(), ty, &ids);
        }
    }

    fn check_breakpoints(&self, c: &Compiled, ty: MutationType, ids: &[Id]) {
        let bps = self.0.breakpoints.lock().clone();
        if bps.is_empty() {
            return;
        }
        let same = |a: &[Id], b: &[Id]| a.len() == b.len() && a.iter().all(|x| b.contains(x));
        for (added, removed) in bps.iter() {
            let hit = match ty {
                MutationType::Add => removed.is_empty() && same(added, ids),
                MutationType::Remove => added.is_empty() && same(removed, ids),
                _ => false,
            };
            if hit {
                let trace = capture_trace();
                self.log_fmt(LogLevel::Changes, || {
                    format!("[breakpoint] Match for ({})\n{trace}", c.join(ids))
                });
            }
        }
    }

    fn process_queue(&self) -> Outcome {
        if self.is_disposed() {
            return Outcome::Canceled;
        }
        if self.queue_len() == 0 {
            // Another caller's drain took our item in between: it ran or runs there. Upstream
            // returns Canceled here (a race, spec §3.2); Queued is what happened.
            return Outcome::Queued;
        }
        if self
            .0
            .draining
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            self.log_fmt(LogLevel::Ops, || {
                let n = self.queue_len();
                format!(
                    "[postpone] queue running ({n} {})",
                    if n == 1 { "item" } else { "items" }
                )
            });
            return Outcome::Queued;
        }
        let mut first: Option<Outcome> = None;
        loop {
            let mut ds = self.take_drain_state();
            loop {
                if self.is_disposed() {
                    self.0.in_transition.store(false, Ordering::Release);
                    self.0.draining.store(false, Ordering::Release);
                    return Outcome::Canceled;
                }
                let item = {
                    let mut q = self.0.queue.lock();
                    let it = q.pop_front();
                    self.0.queue_len.store(q.len(), Ordering::Release);
                    it
                };
                let Some(mut item) = item else { break };
                if item.ctx.as_ref().is_some_and(|c| c.is_canceled()) {
                    first.get_or_insert(Outcome::Executed);
                    continue;
                }
                if let Some((_, f, slot)) = item.eval.take() {
                    // only the queue holds the slot: the caller dropped its wait, skip
                    if Arc::strong_count(&slot) > 1 {
                        f();
                        slot.complete(Ok(()));
                    }
                    continue;
                }
                let r = self.run_transition(&mut ds, item);
                first.get_or_insert(r);
            }
            self.0.in_transition.store(false, Ordering::Release);
            self.put_drain_state(ds);
            self.0.draining.store(false, Ordering::Release);
            self.with_tracers(|t| t.queue_end(self));
            let slots: Vec<Arc<Slot>> = self.0.core.lock().queue_end.drain(..).map(|(_, s)| s).collect();
            for s in slots {
                s.complete(Ok(()));
            }
            // a mutation queued by another thread after our last pop, before the release
            if self.queue_len() > 0
                && !self.is_disposed()
                && self
                    .0
                    .draining
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                continue;
            }
            break;
        }
        first.unwrap_or(Outcome::Canceled)
    }

    fn dispatch_for(&self, c: &Arc<Compiled>) -> Arc<Dispatch> {
        let d = self.0.dispatch.read().clone();
        if d.is_empty() || d.for_schema.as_ref().is_some_and(|x| Arc::ptr_eq(x, c)) {
            return d;
        }
        let mut w = self.0.dispatch.write();
        if !w.for_schema.as_ref().is_some_and(|x| Arc::ptr_eq(x, c)) {
            let mut nd = Dispatch {
                sets: w.sets.clone(),
                ..Default::default()
            };
            nd.rebuild(c);
            *w = Arc::new(nd);
            self.0.dispatch_gen.fetch_add(1, Ordering::AcqRel);
        }
        w.clone()
    }

    fn take_drain_state(&self) -> Box<DrainState> {
        if let Some(ds) = self.0.spare.lock().take() {
            return ds;
        }
        let c = self.compiled();
        Box::new(DrainState {
            t: Transition {
                id: 0,
                c,
                mutation: Mutation::empty(),
                time_before: Vec::new(),
                time_after: None,
                target: Vec::new(),
                enters: Vec::new(),
                exits: Vec::new(),
                accepted: true,
                steps: Vec::new(),
                log_entries: Vec::new(),
                pre_log_entries: Vec::new(),
                queue_len: 0,
                completed: false,
                clock_mark: 0,
            },
            scratch: Scratch::default(),
            active: Vec::new(),
            states_to_set: Vec::new(),
            called: Ids::new(),
            logs: Vec::new(),
            dispatch: None,
        })
    }

    fn put_drain_state(&self, mut ds: Box<DrainState>) {
        // don't keep the last mutation's args (user data) alive
        ds.t.mutation = Mutation::empty();
        ds.t.time_after = None;
        *self.0.spare.lock() = Some(ds);
    }

    fn run_transition(&self, ds: &mut DrainState, item: Mutation) -> Outcome {
        let DrainState {
            t,
            scratch,
            active,
            states_to_set,
            called,
            logs,
            dispatch,
        } = ds;
        {
            let core = self.0.core.lock();
            if !Arc::ptr_eq(&t.c, &core.c) {
                t.c = core.c.clone();
            }
            t.time_before.clone_from(&core.clock);
            active.clone_from(&core.active);
        }
        let c = t.c.clone();
        let generation = self.0.dispatch_gen.load(Ordering::Acquire);
        let d = match dispatch {
            Some((g, d))
                if *g == generation && (d.is_empty() || d.for_schema.as_ref().is_some_and(|x| Arc::ptr_eq(x, &c))) =>
            {
                d.clone()
            }
            _ => {
                let d = self.dispatch_for(&c);
                *dispatch = Some((generation, d.clone()));
                d
            }
        };
        let lvl = self.log_level();
        let tracing = self.0.has_tracers.load(Ordering::Acquire);
        let record = tracing || !d.is_empty();
        t.id = self.0.next_id.fetch_add(1, Ordering::Relaxed) as u64;
        t.mutation = item;
        t.time_after = None;
        t.target.clear();
        t.enters.clear();
        t.exits.clear();
        t.accepted = true;
        t.steps.clear();
        t.log_entries.clear();
        t.pre_log_entries.clear();
        t.queue_len = 0;
        t.completed = false;
        t.clock_mark = 0;
        self.0.in_transition.store(true, Ordering::Release);
        if tracing {
            t.pre_log_entries = core::mem::take(&mut *self.0.log_buf.lock());
            self.with_tracers(|tr| tr.transition_init(t));
        }
        let ty = t.mutation.ty;
        called.clone_from(&t.mutation.called);
        if record {
            for s in called.iter() {
                t.steps
                    .push(Step::new(StepState::None, StepState::Id(*s), StepType::Requested, None));
            }
        }
        if lvl > LogLevel::Nothing {
            let la = self.log_args_suffix(&t.mutation.args);
            if t.mutation.auto {
                self.log_fmt(LogLevel::Decisions, || format!("[{ty}:auto] {}{la}", c.join(called)));
            } else {
                self.log_fmt(LogLevel::Ops, || format!("[{ty}] {}{la}", c.join(called)));
            }
        }
        let steps = &mut t.steps;
        let mut push = |s: Id, ty: StepType| {
            if record {
                steps.push(Step::new(StepState::None, StepState::Id(s), ty, None));
            }
        };
        states_to_set.clear();
        match ty {
            MutationType::Remove => {
                for s in called.iter() {
                    push(*s, StepType::Remove);
                }
                states_to_set.extend(active.iter().copied().filter(|s| !called.contains(s)));
            }
            MutationType::Add => {
                states_to_set.extend_from_slice(called);
                states_to_set.extend_from_slice(active);
                for s in called.iter().filter(|s| !active.contains(s)) {
                    push(*s, StepType::Set);
                }
            }
            _ => {
                for s in called.iter().filter(|s| !active.contains(s)) {
                    push(*s, StepType::Set);
                }
                for s in active.iter().filter(|s| !called.contains(s)) {
                    push(*s, StepType::Remove);
                }
                states_to_set.extend_from_slice(called);
            }
        }
        logs.clear();
        {
            let mut r = Resolve {
                c: &c,
                time_before: &t.time_before,
                called,
                is_auto: t.mutation.auto,
                steps: &mut t.steps,
                record,
                logs,
                log_level: lvl,
                scratch,
            };
            r.target_states(states_to_set, &mut t.target);
        }
        for (l, s) in logs.drain(..) {
            self.log_raw(l, &s);
        }
        if lvl >= LogLevel::Ops {
            let implied: Vec<Id> = t
                .target
                .iter()
                .copied()
                .filter(|s| !states_to_set.contains(s))
                .collect();
            if !implied.is_empty() {
                self.log_fmt(LogLevel::Ops, || format!("[implied] {}", c.join(&implied)));
            }
        }
        // setupAccepted
        if ty != MutationType::Remove {
            let n_rejected = called.iter().filter(|s| !t.target.contains(s)).count();
            let partial_auto = t.mutation.auto && n_rejected < called.len();
            if !partial_auto && (t.mutation.auto || n_rejected > 0) {
                t.accepted = false;
                if n_rejected > 0 {
                    let not_accepted: Vec<Id> = called.iter().copied().filter(|s| !t.target.contains(s)).collect();
                    self.log_fmt(LogLevel::Ops, || format!("[cancel:reject] {}", c.join(&not_accepted)));
                    if record {
                        for s in &not_accepted {
                            t.steps
                                .push(Step::new(StepState::None, StepState::Id(*s), StepType::Cancel, None));
                        }
                    }
                }
            }
        }
        if t.accepted {
            t.exits.extend(active.iter().copied().filter(|s| !t.target.contains(s)));
            resolver::sort_states(&c, &mut t.exits, &mut t.steps, record);
            let tb = &t.time_before;
            t.enters.extend(
                t.target
                    .iter()
                    .copied()
                    .filter(|s| tb[*s] % 2 == 0 || (c.defs[*s].multi && called.contains(s))),
            );
        }
        self.emit_events(t, &d, tracing)
    }

    fn emit_events(&self, t: &mut Transition, d: &Dispatch, tracing: bool) -> Outcome {
        let mut result = if t.accepted {
            Outcome::Executed
        } else {
            Outcome::Canceled
        };
        if tracing {
            self.with_tracers(|tr| tr.transition_start(t));
        }
        let ty = t.mutation.ty;
        let args = core::mem::take(&mut t.mutation.args);
        let empty = Args::new();
        let has_handlers = !d.is_empty();
        if has_handlers {
            // self handlers
            if result != Outcome::Canceled && ty != MutationType::Remove {
                for i in 0..t.mutation.called.len() {
                    let s = t.mutation.called[i];
                    if !t.was_active(s) {
                        continue;
                    }
                    let mut step = Step::new(StepState::Id(s), StepState::None, StepType::Handler, None);
                    step.is_self = true;
                    let ev = if d.pair_from.get(s).copied().unwrap_or(false) {
                        d.pair.get(&(s, s))
                    } else {
                        None
                    };
                    result = self.handle(t, d, ev, step, &args);
                    if result == Outcome::Canceled {
                        break;
                    }
                }
            }
            // exits: FooExit, FooBar for every target, FooAny
            if result != Outcome::Canceled {
                'exits: for i in 0..t.exits.len() {
                    let from = t.exits[i];
                    let step = Step::new(StepState::Id(from), StepState::None, StepType::Handler, None);
                    if self.handle(t, d, d.exit.get(from).and_then(Option::as_ref), step, &args) == Outcome::Canceled {
                        result = Outcome::Canceled;
                        break 'exits;
                    }
                    for j in 0..t.target.len() {
                        let to = t.target[j];
                        if !d.pair_from.get(from).copied().unwrap_or(false) {
                            break;
                        }
                        let step = Step::new(StepState::Id(from), StepState::Id(to), StepType::Handler, None);
                        if self.handle(t, d, d.pair.get(&(from, to)), step, &args) == Outcome::Canceled {
                            result = Outcome::Canceled;
                            break 'exits;
                        }
                    }
                    let step = Step::new(StepState::Id(from), StepState::Any, StepType::Handler, None);
                    let ev = d.from_any.get(from).and_then(Option::as_ref);
                    if self.handle(t, d, ev, step, &empty) == Outcome::Canceled {
                        result = Outcome::Canceled;
                        break 'exits;
                    }
                }
            }
            // enters: AnyFoo, FooEnter
            if result != Outcome::Canceled {
                'enters: for i in 0..t.enters.len() {
                    let to = t.enters[i];
                    let step = Step::new(StepState::Any, StepState::Id(to), StepType::Handler, None);
                    if self.handle(t, d, d.any_to.get(to).and_then(Option::as_ref), step, &args) == Outcome::Canceled {
                        result = Outcome::Canceled;
                        break 'enters;
                    }
                    let step = Step::new(StepState::None, StepState::Id(to), StepType::Handler, None);
                    if self.handle(t, d, d.enter.get(to).and_then(Option::as_ref), step, &args) == Outcome::Canceled {
                        result = Outcome::Canceled;
                        break 'enters;
                    }
                }
            }
            // AnyAny, always; its cancel ends the transition without bookkeeping (upstream)
            let step = Step::new(StepState::Any, StepState::Any, StepType::Handler, None);
            if self.handle(t, d, d.any_any.as_ref(), step, &args) == Outcome::Canceled {
                t.mutation.args = args;
                return Outcome::Canceled;
            }
        }
        let mut changed = false;
        if result != Outcome::Canceled {
            self.set_active_states(t, &t.target, &args);
            // final handlers: FooEnd for exits, then FooState for enters
            let (n_exits, n_enters) = (t.exits.len(), t.enters.len());
            for i in 0..n_exits + n_enters {
                let is_enter = i >= n_exits;
                let s = if is_enter { t.enters[i - n_exits] } else { t.exits[i] };
                let table = if is_enter { &d.state } else { &d.end };
                let ev = table.get(s).and_then(Option::as_ref);
                if ev.is_none() && !is_enter {
                    continue;
                }
                let mut step = Step::new(StepState::Id(s), StepState::None, StepType::Handler, None);
                step.is_final = true;
                step.is_enter = is_enter;
                if self.handle(t, d, ev, step, &args) == Outcome::Canceled {
                    result = Outcome::Canceled;
                    break;
                }
            }
            changed = true;
        }
        // one lock for: did the clock change, the auto mutation, the call's result
        let (out, auto, blocked) = {
            let core = self.0.core.lock();
            if changed {
                changed = core.clock != t.time_before;
            }
            if tracing {
                t.time_after = Some(core.clock.clone());
            }
            let out = if result == Outcome::Canceled {
                Outcome::Canceled
            } else if ty == MutationType::Remove {
                if t.mutation.called.iter().all(|s| !core.is_active[*s]) {
                    Outcome::Executed
                } else {
                    Outcome::Canceled
                }
            } else if t.target.iter().all(|s| core.is_active[*s]) {
                Outcome::Executed
            } else {
                Outcome::Canceled
            };
            let mut auto = Ids::new();
            let mut blocked: Vec<(Id, Id)> = Vec::new();
            if result != Outcome::Canceled && changed && !t.mutation.auto {
                let c = &t.c;
                for &s in &c.auto {
                    if core.is_active[s] {
                        continue;
                    }
                    match core.active.iter().find(|a| c.defs[**a].remove.contains(&s)) {
                        Some(b) => blocked.push((s, *b)),
                        None => auto.push(s),
                    }
                }
            }
            (out, auto, blocked)
        };
        if result == Outcome::Canceled {
            t.accepted = false;
        }
        for (s, b) in blocked {
            self.log_fmt(LogLevel::Everything, || {
                format!("[auto:rel:remove] {} by {}", t.c.name(s), t.c.name(b))
            });
        }
        if !auto.is_empty() {
            self.log_fmt(LogLevel::Ops, || format!("[auto] {}", t.c.join(&auto)));
            let mut q = self.0.queue.lock();
            q.push_front(Mutation {
                ty: MutationType::Add,
                called: auto,
                args: Args::new(),
                auto: true,
                eval: None,
                ctx: None,
            });
            self.0.queue_len.store(q.len(), Ordering::Release);
        }
        t.mutation.args = args;
        t.queue_len = self.queue_len();
        t.completed = true;
        if tracing {
            t.log_entries = core::mem::take(&mut *self.0.log_buf.lock());
            self.with_tracers(|tr| tr.transition_end(t));
        }
        if changed {
            self.process_bindings(&t.time_before, false);
        }
        out
    }

    /// Ticks and the active list (upstream `setActiveStates`).
    fn set_active_states(&self, t: &Transition, target: &[Id], args: &Args) {
        let c = &t.c;
        let called = &t.mutation.called;
        let lvl = self.log_level();
        let mut added = Ids::new();
        let mut removed = Ids::new();
        let mut unchanged = Ids::new();
        {
            let mut core = self.0.core.lock();
            let core = &mut *core;
            // previous = the flags still set in is_active
            for &s in target {
                if !core.is_active[s] {
                    core.clock[s] += 1;
                    added.push(s);
                } else if lvl > LogLevel::Decisions {
                    unchanged.push(s);
                }
            }
            for &s in target {
                if core.is_active[s] && called.contains(&s) && c.defs[s].multi {
                    core.clock[s] += 2;
                    added.push(s);
                }
            }
            for &s in &core.active {
                if !target.contains(&s) {
                    core.clock[s] += 1;
                    core.is_active[s] = false;
                    removed.push(s);
                }
            }
            for &s in target {
                core.is_active[s] = true;
            }
            core.active.clear();
            core.active.extend_from_slice(target);
        }
        if lvl > LogLevel::Nothing {
            let mut msg = String::new();
            for s in &added {
                msg.push_str(" +");
                msg.push_str(c.name(*s));
            }
            for s in &removed {
                msg.push_str(" -");
                msg.push_str(c.name(*s));
            }
            if !unchanged.is_empty() {
                msg.push(' ');
                msg.push_str(&c.join(&unchanged));
            }
            if !msg.is_empty() {
                let auto = if t.mutation.auto { ":auto" } else { "" };
                let la = self.log_args_suffix(args);
                self.log_fmt(LogLevel::Changes, || format!("[state{auto}]{msg}{la}"));
            }
        }
    }

    /// Call the handlers of one event; returns `Canceled` when a negotiation handler declined,
    /// a handler timed out or panicked.
    fn handle(&self, t: &mut Transition, d: &Dispatch, ev: Option<&Ev>, mut step: Step, args: &Args) -> Outcome {
        if self.is_disposed() {
            return Outcome::Canceled;
        }
        let Some(ev) = ev else {
            if step.is_final && step.is_enter {
                if let StepState::Id(s) = step.from {
                    self.process_when_args(s, args);
                }
            }
            return Outcome::Executed;
        };
        let name: &str = &ev.name;
        step.data = StepData::Handler(ev.name.clone());
        let lvl = self.log_level();
        let mut outcome = Outcome::Executed;
        let mut panicked = false;
        let now = if self.0.handler_timeout_ns > 0 {
            self.0.now
        } else {
            None
        };
        for (set_idx, f) in &ev.fns {
            let set_name: &str = d.set_names.get(*set_idx).map_or("", |s| s);
            if lvl >= LogLevel::Ops {
                if lvl >= LogLevel::Everything {
                    let emitter = crate::types::truncate_str(set_name, 15).replace(' ', "_");
                    self.log_fmt(LogLevel::Everything, || format!("[handle:{emitter:_<15}] {name}"));
                }
                self.log_fmt(LogLevel::Ops, || format!("[handler:{set_idx}] {name}"));
            }
            self.0.current_handler.store(ev.no, Ordering::Relaxed);
            let tracing = self.0.has_tracers.load(Ordering::Acquire);
            if tracing {
                self.with_tracers(|tr| tr.handler_start(t, set_name, name));
            }
            // The previous handler's end time serves as this one's start (saves a clock read per
            // call); tracers may be slow, so with tracers each call reads the clock itself.
            let t0 = match now {
                Some(f) if tracing || t.clock_mark == 0 => f(),
                Some(_) => t.clock_mark,
                None => 0,
            };
            let res = {
                let e = Event {
                    name,
                    machine: self,
                    args,
                    transition: t,
                };
                call_handler(f, &e, self.0.panic_to_exception)
            };
            let elapsed = match now {
                Some(f) => {
                    let end = f();
                    t.clock_mark = end;
                    end.saturating_sub(t0)
                }
                None => 0,
            };
            self.0.current_handler.store(0, Ordering::Relaxed);
            if tracing {
                self.with_tracers(|tr| tr.handler_end(t, set_name, name));
            }
            match res {
                Called::Panic(msg, trace) => {
                    self.recover(t, &step, &msg, &trace);
                    panicked = true;
                    outcome = Outcome::Canceled;
                    break;
                }
                Called::Ok(ret) => {
                    if elapsed > self.0.handler_timeout_ns {
                        let targets = t.c.join(&t.target);
                        self.log_fmt(LogLevel::Ops, || format!("[cancel] ({targets}) by timeout"));
                        self.add_err(Error::HandlerTimeout(String::from(name)), None);
                        if t.steps.capacity() > 0 {
                            t.steps.push(step);
                        }
                        return Outcome::Canceled;
                    }
                    self.log_fmt(LogLevel::Everything, || format!("[handler:end] {name}"));
                    if !ev.is_final_name && !ret {
                        outcome = Outcome::Canceled;
                        break;
                    }
                }
            }
        }
        let is_final = step.is_final;
        let is_self = step.is_self;
        let enter_state = match (step.is_final && step.is_enter, step.from) {
            (true, StepState::Id(s)) => Some(s),
            _ => None,
        };
        t.steps.push(step);
        if outcome == Outcome::Canceled {
            if !is_final {
                let targets = t.c.join(&t.target);
                let sf = if is_self { ":self" } else { "" };
                self.log_fmt(LogLevel::Ops, || format!("[cancel{sf}] ({targets}) by {name}"));
            }
            if panicked || !is_final {
                return Outcome::Canceled;
            }
        }
        if let Some(s) = enter_state {
            self.process_when_args(s, args);
        }
        outcome
    }

    /// Handler panic → `Exception` (upstream `recoverToErr`).
    fn recover(&self, t: &mut Transition, step: &Step, msg: &str, trace: &str) {
        if self.is_disposed() {
            return;
        }
        let c = t.c.clone();
        let exc = c.id(EXCEPTION);
        if exc.is_some_and(|e| t.mutation.called.contains(&e)) {
            return;
        }
        self.log_lvl(LogLevel::Ops, "[recover] handling panic...");
        self.0.core.lock().err = Some(Error::Other(String::from(msg)));
        if step.is_final {
            let finals: Ids = t.exits.iter().chain(t.enters.iter()).copied().collect();
            let mut active = Ids::from_slice(&self.0.core.lock().active);
            let mut found = false;
            for s in finals {
                if step.from == StepState::Id(s) {
                    found = true;
                }
                if !found {
                    continue;
                }
                // per state: enters whose final handler didn't finish are removed, exits re-added
                if t.enters.contains(&s) {
                    active.retain(|x| *x != s);
                } else if !active.contains(&s) {
                    active.push(s);
                }
            }
            self.log_fmt(LogLevel::Ops, || {
                format!("[recover] partial final states as ({})", c.join(&active))
            });
            self.set_active_states(t, &active, &Args::new());
            t.completed = true;
        }
        self.log_fmt(LogLevel::Ops, || format!("[cancel] ({}) by recover", c.join(&t.target)));
        let Some(exc) = exc else { return };
        let handler = match &step.data {
            StepData::Handler(h) => String::from(&**h),
            _ => String::new(),
        };
        let panic = ExceptionArgsPanic {
            called_states: t.called_states().iter().map(|s| String::from(*s)).collect(),
            states_before: t.states_before().iter().map(|s| String::from(*s)).collect(),
            mutation_type: t.mutation.ty,
            handler,
        };
        let mut args = Args::new();
        args.insert("err", Value::Str(String::from(msg)));
        args.insert("err.trace", Value::Str(String::from(trace)));
        args.insert("panic", Value::Opaque(crate::types::Opaque::new(panic)));
        let mut q = self.0.queue.lock();
        q.push_front(Mutation {
            ty: MutationType::Add,
            called: smallvec::smallvec![exc],
            args,
            auto: false,
            eval: None,
            ctx: None,
        });
        self.0.queue_len.store(q.len(), Ordering::Release);
    }

    /// Resolve When / WhenNot, then WhenTime, then state contexts, after a transition (ticks
    /// before it in `time_before`; odd = was active).
    /// `coalesced`: the update may merge several transitions (a mirror applying a pushed clock).
    /// Then a non-Multi state that ticked while staying active or inactive passed through the
    /// other state in between: `WhenNot` and state contexts treat such a state as deactivated.
    fn process_bindings(&self, time_before: &[u64], coalesced: bool) {
        if self.0.n_bindings.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut done: Vec<Arc<Slot>> = Vec::new();
        let mut cancel: Vec<Ctx> = Vec::new();
        let mut logs: Vec<String> = Vec::new();
        let logging = self.log_level() >= LogLevel::Ops;
        {
            let mut core = self.0.core.lock();
            let core = &mut *core;
            if core.when.is_empty() && core.when_time.is_empty() && core.state_ctx.is_empty() {
                return;
            }
            let was = |s: Id| time_before.get(s).is_some_and(|t| t % 2 == 1);
            let is_active = &core.is_active;
            let clock = &core.clock;
            let c = &core.c;
            // a non-Multi state whose tick moved by 2+ without a parity change was off (or on) in between
            let flipped =
                |s: Id| coalesced && !c.defs[s].multi && time_before.get(s).is_some_and(|t| clock[s] >= t + 2);
            let changed = |s: &Id| was(*s) != is_active[*s] || flipped(*s);
            core.when.retain(|b| {
                if !b.states.iter().any(changed) {
                    return true;
                }
                let met = if b.negation {
                    b.states.iter().all(|s| !is_active[*s] || flipped(*s))
                } else {
                    b.states.iter().all(|s| is_active[*s])
                };
                if met {
                    if logging {
                        let kind = if b.negation { "whenNot" } else { "when" };
                        logs.push(format!("[{kind}:match] {}", c.join(&b.states)));
                    }
                    done.push(b.slot.clone());
                }
                !met
            });
            let ticked = |s: &Id| time_before.get(*s).copied().unwrap_or(0) != clock[*s];
            core.when_time.retain(|b| {
                if !b.states.iter().any(ticked) {
                    return true;
                }
                let met = b.states.iter().zip(&b.times).all(|(s, t)| clock[*s] >= *t);
                if met {
                    if logging {
                        logs.push(format!("[whenTime:match] {} {:?}", c.join(&b.states), b.times));
                    }
                    done.push(b.slot.clone());
                }
                !met
            });
            core.state_ctx.retain(|(s, ctx)| {
                let deactivated = (was(*s) && !is_active[*s]) || (is_active[*s] && flipped(*s));
                if deactivated {
                    if logging {
                        logs.push(format!("[ctx:match] {}", c.name(*s)));
                    }
                    cancel.push(ctx.clone());
                }
                !deactivated
            });
            self.0.n_bindings.store(core.n_bindings(), Ordering::Release);
        }
        for l in logs {
            self.log_raw(LogLevel::Ops, &l);
        }
        for s in done {
            s.complete(Ok(()));
        }
        for c in cancel {
            c.cancel();
        }
    }

    fn process_when_args(&self, state: Id, args: &Args) {
        if self.0.n_when_args.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut done = Vec::new();
        {
            let mut core = self.0.core.lock();
            core.when_args.retain(|b| {
                let m = b.state == state && args.contains_all(&b.args);
                if m {
                    done.push(b.slot.clone());
                }
                !m
            });
            self.0.n_when_args.store(core.when_args.len(), Ordering::Release);
        }
        for s in done {
            self.log_fmt(LogLevel::Ops, || {
                format!("[whenArgs:match] {}", self.compiled().name(state))
            });
            s.complete(Ok(()));
        }
    }

    // ----- waiting -----

    fn binding_id(&self) -> u64 {
        self.0.next_id.fetch_add(1, Ordering::Relaxed) as u64
    }

    fn registry(&self, id: u64) -> Option<(Weak<dyn WaitRegistry>, u64)> {
        let w: Weak<Inner> = Arc::downgrade(&self.0);
        let w: Weak<dyn WaitRegistry> = w;
        Some((w, id))
    }

    /// Completes when all `states` are active (now or after a transition). Unknown states never
    /// activate. Canceled with `ctx`; dropping the wait removes its binding.
    pub fn when(&self, states: &[&str], ctx: Option<&Ctx>) -> Wait {
        self.when_impl(states, ctx, false)
    }

    /// `when` for one state.
    pub fn when1(&self, state: &str, ctx: Option<&Ctx>) -> Wait {
        self.when(&[state], ctx)
    }

    /// Completes when none of `states` is active. Panics on an unknown state (as upstream); see
    /// [`Machine::try_when_not`].
    pub fn when_not(&self, states: &[&str], ctx: Option<&Ctx>) -> Wait {
        self.try_when_not(states, ctx).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Fallible `when_not`.
    pub fn try_when_not(&self, states: &[&str], ctx: Option<&Ctx>) -> Result<Wait, Error> {
        let c = self.compiled();
        parse_ids(&c, states)?;
        Ok(self.when_impl(states, ctx, true))
    }

    /// `when_not` for one state.
    pub fn when_not1(&self, state: &str, ctx: Option<&Ctx>) -> Wait {
        self.when_not(&[state], ctx)
    }

    /// `when1(Exception)`.
    pub fn when_err(&self, ctx: Option<&Ctx>) -> Wait {
        self.when1(EXCEPTION, ctx)
    }

    fn when_impl(&self, states: &[&str], ctx: Option<&Ctx>, negation: bool) -> Wait {
        if self.is_disposed() {
            return Wait::ready(Err(WaitError::Disposed));
        }
        if ctx.is_some_and(|c| c.is_canceled()) {
            return Wait::ready(Err(WaitError::Canceled));
        }
        let mut core = self.0.core.lock();
        let mut ids = Vec::with_capacity(states.len());
        for s in states {
            match core.c.id(s) {
                Some(id) if !ids.contains(&id) => ids.push(id),
                Some(_) => {}
                // an unknown state is never active: When never fires, WhenNot is met by it
                None if !negation => {
                    drop(core);
                    return self.pending_forever(ctx);
                }
                None => {}
            }
        }
        let met = if negation {
            ids.iter().all(|s| !core.is_active[*s])
        } else {
            ids.iter().all(|s| core.is_active[*s])
        };
        if met {
            return Wait::ready(Ok(()));
        }
        let id = self.binding_id();
        let slot = Arc::new(Slot::default());
        core.when.push(WhenBinding {
            id,
            states: ids,
            negation,
            slot: slot.clone(),
        });
        self.0.n_bindings.store(core.n_bindings(), Ordering::Release);
        drop(core);
        self.log_fmt(LogLevel::Ops, || {
            format!(
                "[{}:new] {}",
                if negation { "whenNot" } else { "when" },
                states.join(" ")
            )
        });
        Wait::pending(slot, ctx.cloned(), self.registry(id))
    }

    fn pending_forever(&self, ctx: Option<&Ctx>) -> Wait {
        // never completed by the machine; ends with ctx or disposal
        let id = self.binding_id();
        let slot = Arc::new(Slot::default());
        self.0.core.lock().when_args.push(WhenArgsBinding {
            id,
            state: usize::MAX,
            args: Args::new(),
            slot: slot.clone(),
        });
        Wait::pending(slot, ctx.cloned(), self.registry(id))
    }

    /// Completes when every `states[i]` has a tick ≥ `times[i]`. Different lengths: an
    /// `InvalidArgs` wait and an `add_err`, as upstream. Panics on an unknown state.
    pub fn when_time(&self, states: &[&str], times: &[u64], ctx: Option<&Ctx>) -> Wait {
        if self.is_disposed() {
            return Wait::ready(Err(WaitError::Disposed));
        }
        if states.len() != times.len() {
            let msg = format!(
                "whenTime: states and times must have the same length ({})",
                states.join(" ")
            );
            self.add_err(Error::Other(msg.clone()), None);
            return Wait::ready(Err(WaitError::InvalidArgs(msg)));
        }
        let mut core = self.0.core.lock();
        let mut ids = Ids::new();
        for st in states {
            match core.c.id(st) {
                Some(id) => ids.push(id),
                None => {
                    drop(core);
                    panic!("{}", Error::StateUnknown((*st).into()));
                }
            }
        }
        if ids.iter().zip(times).all(|(s, t)| core.clock[*s] >= *t) {
            return Wait::ready(Ok(()));
        }
        let id = self.binding_id();
        let slot = Arc::new(Slot::default());
        core.when_time.push(WhenTimeBinding {
            id,
            states: ids,
            times: times.to_vec(),
            slot: slot.clone(),
        });
        self.0.n_bindings.store(core.n_bindings(), Ordering::Release);
        drop(core);
        self.log_fmt(LogLevel::Ops, || {
            let t: Vec<String> = times.iter().map(|t| t.to_string()).collect();
            format!("[whenTime:new] {} {}", states.join(","), t.join(","))
        });
        Wait::pending(slot, ctx.cloned(), self.registry(id))
    }

    /// Completes when `state`'s tick grows by `ticks` from now.
    pub fn when_ticks(&self, state: &str, ticks: u64, ctx: Option<&Ctx>) -> Wait {
        let t = self.tick(state) + ticks;
        self.when_time(&[state], &[t], ctx)
    }

    /// Completes when `state`'s tick is ≥ `tick` (despite the name, as upstream).
    pub fn when_ticks_eq(&self, state: &str, tick: u64, ctx: Option<&Ctx>) -> Wait {
        self.when_time(&[state], &[tick], ctx)
    }

    /// Completes when a `FooState` final event of `state` runs with args ⊇ `args`. Never
    /// pre-satisfied. Panics on an unknown state.
    pub fn when_args(&self, state: &str, args: Args, ctx: Option<&Ctx>) -> Wait {
        if self.is_disposed() {
            return Wait::ready(Err(WaitError::Disposed));
        }
        let c = self.compiled();
        let s = c
            .id(state)
            .unwrap_or_else(|| panic!("{}", Error::StateUnknown(state.into())));
        let id = self.binding_id();
        let slot = Arc::new(Slot::default());
        let keys: Vec<&String> = args.0.keys().collect();
        self.log_fmt(LogLevel::Ops, || format!("[whenArgs:new] {state} ({keys:?})"));
        {
            let mut core = self.0.core.lock();
            core.when_args.push(WhenArgsBinding {
                id,
                state: s,
                args,
                slot: slot.clone(),
            });
            self.0.n_when_args.store(core.when_args.len(), Ordering::Release);
        }
        Wait::pending(slot, ctx.cloned(), self.registry(id))
    }

    /// Completes when the current queue drain ends (now, if none is running).
    pub fn when_queue_ends(&self, ctx: Option<&Ctx>) -> Wait {
        if self.is_disposed() {
            return Wait::ready(Err(WaitError::Disposed));
        }
        let mut core = self.0.core.lock();
        if !self.0.draining.load(Ordering::Acquire) {
            return Wait::ready(Ok(()));
        }
        let slot = Arc::new(Slot::default());
        let id = self.binding_id();
        core.queue_end.push((id, slot.clone()));
        drop(core);
        Wait::pending(slot, ctx.cloned(), self.registry(id))
    }

    /// Number of live wait bindings (When, WhenNot, WhenTime, WhenArgs), for tests and metrics.
    pub fn wait_bindings(&self) -> usize {
        let core = self.0.core.lock();
        core.when.len() + core.when_time.len() + core.when_args.iter().filter(|b| b.state != usize::MAX).count()
    }

    /// A context canceled by the first transition that deactivates `state` (or by disposal);
    /// already canceled if `state` is inactive. Panics on an unknown state; see
    /// [`Machine::try_new_state_ctx`].
    pub fn new_state_ctx(&self, state: &str) -> Ctx {
        self.try_new_state_ctx(state).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Fallible `new_state_ctx`.
    pub fn try_new_state_ctx(&self, state: &str) -> Result<Ctx, Error> {
        if self.is_disposed() {
            return Ok(Ctx::new());
        }
        let mut core = self.0.core.lock();
        let id = core.c.id(state).ok_or_else(|| Error::StateUnknown(state.into()))?;
        if let Some((_, c)) = core.state_ctx.iter().find(|(s, _)| *s == id) {
            return Ok(c.clone());
        }
        let value = CtxValue {
            id: String::from(&*self.id()),
            state: String::from(state),
            tick: core.clock[id],
        };
        if !core.is_active[id] {
            return Ok(Ctx::canceled_ctx(Some(value)));
        }
        let ctx = self.0.ctx.child_with(Some(value));
        core.state_ctx.push((id, ctx.clone()));
        self.0.n_bindings.store(core.n_bindings(), Ordering::Release);
        drop(core);
        self.log_fmt(LogLevel::Ops, || format!("[ctx:new] {state}"));
        Ok(ctx)
    }

    // ----- handlers, tracers -----

    /// Bind a handler set (upstream `BindHandlers`). Names are checked against the schema with
    /// [`crate::list_handlers`]: a handler naming a missing state is an error and nothing is bound.
    pub fn bind_handlers(&self, h: Handlers) -> Result<HandlersId, Error> {
        if self.is_disposed() {
            return Ok(HandlersId(0));
        }
        let c = self.compiled();
        let names: Vec<&str> = c.order.iter().map(|i| c.name(*i)).collect();
        let mut all: Vec<&str> = c
            .names
            .iter()
            .filter(|n| c.id(n).is_some())
            .map(|s| s.as_str())
            .collect();
        all.extend(names);
        crate::handlers::list_handlers(&h, &all)?;
        let id = HandlersId(self.0.next_id.fetch_add(1, Ordering::Relaxed) as u64);
        self.log_fmt(LogLevel::Ops, || format!("[handlers] bind {}", h.name));
        let mut w = self.0.dispatch.write();
        let mut nd = Dispatch {
            sets: w.sets.clone(),
            ..Default::default()
        };
        nd.sets.push((id, h));
        nd.rebuild(&c);
        *w = Arc::new(nd);
        self.0.dispatch_gen.fetch_add(1, Ordering::AcqRel);
        Ok(id)
    }

    /// Detach a bound handler set; error if it is not bound.
    pub fn detach_handlers(&self, id: HandlersId) -> Result<(), Error> {
        let c = self.compiled();
        let mut w = self.0.dispatch.write();
        if !w.sets.iter().any(|(i, _)| *i == id) {
            return Err(Error::Other(String::from("handlers not bound")));
        }
        let mut nd = Dispatch {
            sets: w.sets.iter().filter(|(i, _)| *i != id).cloned().collect(),
            ..Default::default()
        };
        nd.rebuild(&c);
        *w = Arc::new(nd);
        self.0.dispatch_gen.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Number of bound handler sets.
    pub fn handler_sets(&self) -> usize {
        self.0.dispatch.read().sets.len()
    }

    /// Bind a tracer.
    pub fn bind_tracer(&self, t: Arc<dyn Tracer>) {
        self.0.tracers.write().push(t);
        self.0.has_tracers.store(true, Ordering::Release);
    }

    /// Detach a tracer (by identity); false if it was not bound.
    pub fn detach_tracer(&self, t: &Arc<dyn Tracer>) -> bool {
        let mut w = self.0.tracers.write();
        let before = w.len();
        w.retain(|x| !Arc::ptr_eq(x, t));
        let found = w.len() != before;
        self.0.has_tracers.store(!w.is_empty(), Ordering::Release);
        found
    }

    /// Bound tracers (copy).
    pub fn tracers(&self) -> Vec<Arc<dyn Tracer>> {
        self.0.tracers.read().clone()
    }

    fn with_tracers(&self, f: impl Fn(&Arc<dyn Tracer>)) {
        if !self.0.has_tracers.load(Ordering::Acquire) {
            return;
        }
        let ts = self.0.tracers.read();
        for t in ts.iter() {
            if self.is_disposed() {
                break;
            }
            f(t);
        }
    }

    // ----- logging -----

    /// Current log level.
    pub fn log_level(&self) -> LogLevel {
        LogLevel::from_u8(self.0.log_level.load(Ordering::Relaxed))
    }
    /// Upstream `GetLogLevel`.
    pub fn get_log_level(&self) -> LogLevel {
        self.log_level()
    }
    /// Set the log level.
    pub fn set_log_level(&self, lvl: LogLevel) {
        self.0.log_level.store(lvl as u8, Ordering::Relaxed);
    }
    /// Set (or remove) the logger. Without one, lines go to stdout (with `std`).
    pub fn set_logger(&self, logger: Option<Logger>) {
        *self.0.logger.write() = logger;
    }
    /// The logger, if set.
    pub fn get_logger(&self) -> Option<Logger> {
        self.0.logger.read().clone()
    }
    /// Set a line-printing logger and the level together.
    pub fn set_logger_simple(&self, f: impl Fn(&str) + Send + Sync + 'static, lvl: LogLevel) {
        self.set_logger(Some(Arc::new(move |_l, s: &str| f(s))));
        self.set_log_level(lvl);
    }
    /// Set a logger that drops everything, and the level (tracers still collect lines).
    pub fn set_logger_empty(&self, lvl: LogLevel) {
        self.set_logger(Some(Arc::new(|_, _| {})));
        self.set_log_level(lvl);
    }
    /// Prefix lines with the machine id.
    pub fn set_log_id(&self, v: bool) {
        self.0.log_id.store(v, Ordering::Relaxed);
    }
    /// Whether lines are prefixed with the id.
    pub fn get_log_id(&self) -> bool {
        self.0.log_id.load(Ordering::Relaxed)
    }
    /// Set the args mapper for log lines.
    pub fn set_log_args(&self, mapper: Option<ArgsMapper>) {
        *self.0.log_args.write() = mapper;
    }
    /// The args mapper.
    pub fn get_log_args(&self) -> Option<ArgsMapper> {
        self.0.log_args.read().clone()
    }

    /// A user log line at Changes level: `[extern] msg`, or `[extern:AEnter] msg` inside a handler.
    pub fn log(&self, msg: &str) {
        if self.log_level() < LogLevel::Changes {
            return;
        }
        let msg = msg.replace('\n', " ");
        let no = self.0.current_handler.load(Ordering::Relaxed);
        let h = if no == 0 {
            None
        } else {
            self.0.dispatch.read().ev_names.get(no).cloned()
        };
        let line = match h {
            Some(h) => format!("[extern:{}] {msg}", crate::types::truncate_str(&h[..], 15)),
            None => format!("[extern] {msg}"),
        };
        self.log_raw(LogLevel::Changes, &line);
    }

    /// An internal-style line at `lvl`.
    pub fn log_lvl(&self, lvl: LogLevel, msg: &str) {
        self.log_raw(lvl, msg);
    }

    fn log_fmt(&self, lvl: LogLevel, f: impl FnOnce() -> String) {
        let cur = self.log_level();
        if cur == LogLevel::Nothing || lvl > cur {
            return;
        }
        self.log_raw(lvl, &f());
    }

    fn log_raw(&self, lvl: LogLevel, msg: &str) {
        let cur = self.log_level();
        if cur == LogLevel::Nothing || lvl > cur {
            return;
        }
        let line = if self.get_log_id() {
            let id: String = self.id().chars().take(5).collect();
            format!("[{id}] {msg}")
        } else {
            String::from(msg)
        };
        if self.0.has_tracers.load(Ordering::Relaxed) {
            self.0.log_buf.lock().push(line.clone());
        }
        let logger = self.0.logger.read().clone();
        if let Some(l) = logger {
            l(lvl, &line);
        } else {
            #[cfg(feature = "std")]
            std::println!("{line}");
        }
    }

    fn log_args_suffix(&self, args: &Args) -> String {
        if args.is_empty() {
            return String::new();
        }
        let Some(m) = self.0.log_args.read().clone() else {
            return String::new();
        };
        let pairs = m(args);
        if pairs.is_empty() {
            return String::new();
        }
        let p: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(" ({})", p.join(" "))
    }
}

fn parse_ids(c: &Compiled, states: &[&str]) -> Result<Ids, Error> {
    let mut ids = Ids::new();
    for s in states {
        let id = c.id(s).ok_or_else(|| Error::StateUnknown((*s).into()))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn verify_len_err(c: &Compiled, names: &[&str]) -> Error {
    let missing: Vec<&str> = c
        .order
        .iter()
        .map(|i| c.name(*i))
        .filter(|n| !names.contains(n))
        .collect();
    Error::Other(format!(
        "error: trying to verify more states than registered: {}",
        missing.join(" ")
    ))
}

/// `names` as the state order, with `Exception` appended when the schema has it.
fn with_exception(c: &Compiled, names: &[&str]) -> Vec<String> {
    let mut order: Vec<String> = names.iter().map(|s| String::from(*s)).collect();
    if c.id(EXCEPTION).is_some() && !names.contains(&EXCEPTION) {
        order.push(String::from(EXCEPTION));
    }
    order
}

/// Upstream's verification rules plus duplicate rejection; returns the new order as ids.
fn check_names(c: &Compiled, names: &[&str], machine_id: &str) -> Result<Vec<Id>, Error> {
    let unknown: Vec<&str> = names.iter().copied().filter(|n| c.id(n).is_none()).collect();
    if !unknown.is_empty() {
        let e: Vec<String> = unknown
            .iter()
            .map(|n| format!("state {n} is not defined for {machine_id}"))
            .collect();
        return Err(Error::StateUnknown(e.join("\n")));
    }
    if c.order.len() > names.len() {
        return Err(verify_len_err(c, names));
    }
    let mut seen = alloc::collections::BTreeSet::new();
    for n in names {
        if !seen.insert(*n) {
            return Err(Error::InvalidArgs(format!("duplicate state {n} in the state list")));
        }
    }
    Ok(with_exception(c, names).iter().map(|n| c.index[n]).collect())
}

fn is_queued(
    q: &VecDeque<Mutation>,
    ty: MutationType,
    ids: &[Id],
    without_args_only: bool,
    strict: bool,
    start: usize,
) -> Option<usize> {
    for (i, m) in q.iter().enumerate().skip(start) {
        if m.ty != ty || (without_args_only && !m.args.is_empty()) {
            continue;
        }
        let len_ok = if strict {
            m.called.len() == ids.len()
        } else {
            m.called.len() >= ids.len()
        };
        if len_ok && ids.iter().all(|s| m.called.contains(s)) {
            return Some(i);
        }
    }
    None
}

fn detect_duplicates(q: &VecDeque<Mutation>, ty: MutationType, ids: &[Id]) -> bool {
    let Some(idx) = is_queued(q, ty, ids, true, true, 0) else {
        return false;
    };
    let counter = match ty {
        MutationType::Add => MutationType::Remove,
        MutationType::Remove => MutationType::Add,
        MutationType::Set => return idx > 0 && q.len() > 1,
        MutationType::Eval => return false,
    };
    is_queued(q, counter, ids, false, false, idx + 1).is_none()
}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Error::Other(String::from(s))
    }
}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error::Other(s)
    }
}
