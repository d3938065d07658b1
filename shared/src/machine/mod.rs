//! The machine: schema, clock, queue, transitions, handlers, waits and getters.
//!
//! One `Machine` type, its `impl` spread over files by concern: this file holds the shared state
//! (`Inner`, `Core`), construction, disposal and the schema; `queue.rs` takes mutations in,
//! `drain.rs` runs the queue and resolves each transition, `dispatch.rs` calls its handlers and
//! sets the new clock, `waits.rs` resolves `when*` waits after it. `getters.rs` and `text.rs` are
//! the read side, `log.rs` logging and tracers, `opts.rs` the plain option and data types.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use crate::handlers::{Dispatch, Handlers};
use crate::resolver::Scratch;
use crate::schema::{Compiled, EXCEPTION, Id, Ids, Schema, State, parse_struct};
use crate::sync::{Mutex, RwLock};
use crate::tracer::Tracer;
use crate::transition::{Mutation, Transition};
use crate::types::{Args, Error, LogLevel};
use crate::wait::{Ctx, Slot, Wait, WaitError, WaitRegistry};

mod compiled;
mod dispatch;
mod drain;
mod getters;
mod log;
mod opts;
mod queue;
mod text;
mod waits;

pub use compiled::CompiledSchema;
pub(crate) use log::exception_state;
#[cfg(feature = "std")]
mod isolate;

#[cfg(feature = "std")]
pub use isolate::{RUNNER_THREADS, ThreadRunner};
pub use opts::{
    ArgsMapper, Clock, ExceptionArgsPanic, HANDLER_TIMEOUT, HandlerRunner, Logger, Opts, QUEUE_LIMIT, Serialized, Time,
    is_time_after, opts_with_debug, opts_with_tracers,
};

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
    /// `when_queue` bindings: (binding id, queue tick, slot).
    when_queue: Vec<(u64, u64, Arc<Slot>)>,
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

/// Upstream's queue ticks.
struct QueueTicks {
    /// Starts at 1; +1 each time a mutation holding a queue tick leaves the queue.
    tick: u64,
    /// Queued mutations holding a queue tick (upstream `queueTicksPending`).
    pending: u64,
    /// The queue tick of the last such mutation whose transition (handlers included) finished:
    /// `when_queue(t)` completes once it reaches `t`.
    done: u64,
}

/// Drains after which a machine keeps its [`DrainState`] from one drain to the next.
const KEEP_DRAIN_STATE_AFTER: usize = 8;

/// Buffers a drain reuses from transition to transition (and from drain to drain, once the
/// machine has drained [`KEEP_DRAIN_STATE_AFTER`] times).
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
    /// Drains so far (counted up to [`KEEP_DRAIN_STATE_AFTER`]) and the buffers kept from the
    /// last one.
    spare: Mutex<(usize, Option<Box<DrainState>>)>,
    /// Bumped on every change of `dispatch`, so a drain can keep its snapshot.
    dispatch_gen: AtomicUsize,
    /// When + WhenTime bindings and state contexts, readable without the core lock.
    n_bindings: AtomicUsize,
    /// WhenArgs bindings, readable without the core lock.
    n_when_args: AtomicUsize,
    /// `when_queue` bindings, readable without the core lock.
    n_when_queue: AtomicUsize,
    /// Queue ticks; locked inside the queue lock, never the other way round (no 64-bit
    /// atomics: the core runs on targets without them).
    ticks: Mutex<QueueTicks>,
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
    runner: Option<Arc<dyn HandlerRunner>>,
    log_stack_trace: bool,
    panic_to_exception: bool,
    queue_limit: usize,
    disposal_handlers: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
    disposed_slot: Arc<Slot>,
    next_id: AtomicUsize,
    breakpoints: Mutex<Vec<(Vec<Id>, Vec<Id>)>>,
    /// Name → id resolutions, see `Machine::name_lookups`.
    #[cfg(feature = "test-hooks")]
    name_lookups: core::sync::atomic::AtomicU64,
}

impl WaitRegistry for Inner {
    fn unbind(&self, id: u64) {
        let mut core = self.core.lock();
        core.when.retain(|b| b.id != id);
        core.when_time.retain(|b| b.id != id);
        core.when_args.retain(|b| b.id != id);
        core.queue_end.retain(|(i, _)| *i != id);
        core.when_queue.retain(|(i, _, _)| *i != id);
        self.n_when_queue.store(core.when_queue.len(), Ordering::Release);
        self.n_bindings.store(core.n_bindings(), Ordering::Release);
        self.n_when_args.store(core.when_args.len(), Ordering::Release);
    }
}

/// A state machine (upstream `Machine`). Cheap to clone (a handle); `Send + Sync`.
///
/// Mutations run synchronously: the caller that finds the queue idle drains it, running every
/// queued transition and its handlers on its own thread, and returns the first transition's
/// result. Calls made meanwhile (from handlers or other threads) are queued and return
/// [`Outcome::Queued`](crate::Outcome::Queued).
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

impl Machine {
    /// A new machine for `schema` (normalised like upstream; `Exception` added when missing).
    /// Errors: relations to states not in the schema, Require cycles.
    pub fn new(schema: Schema, opts: Opts) -> Result<Machine, Error> {
        let id = opts.id.clone().unwrap_or_else(random_id);
        let c = compile(schema, &id)?;
        Ok(Machine::from_compiled(Arc::new(c), false, id, opts))
    }

    /// A machine for `schema`, compiled once and shared (see [`CompiledSchema`]): no compiling,
    /// and the relations are not copied. Verified, with the state order, when the machine the
    /// schema came from was.
    pub fn with_schema(schema: &CompiledSchema, opts: Opts) -> Machine {
        let id = opts.id.clone().unwrap_or_else(random_id);
        Machine::from_compiled(schema.compiled().clone(), schema.verified(), id, opts)
    }

    /// This machine's compiled schema and state order, to make more machines of it with
    /// [`Machine::with_schema`]. Cheap: a handle to what the machine already holds.
    pub fn compiled_schema(&self) -> CompiledSchema {
        let core = self.0.core.lock();
        CompiledSchema::from_parts(core.c.clone(), core.verified)
    }

    fn from_compiled(c: Arc<Compiled>, verified: bool, id: String, opts: Opts) -> Machine {
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
            spare: Mutex::new((0, None)),
            dispatch_gen: AtomicUsize::new(0),
            n_bindings: AtomicUsize::new(0),
            n_when_args: AtomicUsize::new(0),
            n_when_queue: AtomicUsize::new(0),
            ticks: Mutex::new(QueueTicks {
                tick: 1,
                pending: 0,
                done: 1,
            }),
            has_breakpoints: AtomicBool::new(false),
            id: RwLock::new(Arc::from(id.as_str())),
            parent_id,
            ctx,
            core: Mutex::new(Core {
                c,
                clock: alloc::vec![0; n],
                active: Vec::new(),
                is_active: alloc::vec![false; n],
                verified,
                err: None,
                when: Vec::new(),
                when_time: Vec::new(),
                when_args: Vec::new(),
                state_ctx: Vec::new(),
                queue_end: Vec::new(),
                when_queue: Vec::new(),
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
            runner: opts.handler_runner.clone(),
            log_stack_trace: !opts.dont_log_stack_trace,
            panic_to_exception: !opts.dont_panic_to_exception,
            queue_limit: opts.queue_limit.unwrap_or(QUEUE_LIMIT),
            disposal_handlers: Mutex::new(Vec::new()),
            disposed_slot: Arc::new(Slot::default()),
            next_id: AtomicUsize::new(1),
            breakpoints: Mutex::new(Vec::new()),
            #[cfg(feature = "test-hooks")]
            name_lookups: core::sync::atomic::AtomicU64::new(0),
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
        m
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
    #[inline]
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
            slots.extend(core.when_queue.drain(..).map(|(_, _, s)| s));
            self.0.n_when_queue.store(0, Ordering::Release);
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

    pub(crate) fn compiled(&self) -> Arc<Compiled> {
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
            core.c = Arc::new(verified(&core.c, names, &self.id())?);
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
/// `schema` compiled as a new machine holds it: `Exception` added when missing, normalised,
/// the state order by name (`machine_id` names the machine in errors).
fn compile(schema: Schema, machine_id: &str) -> Result<Compiled, Error> {
    let mut schema = schema;
    if !schema.contains_key(EXCEPTION) {
        schema.insert(String::from(EXCEPTION), State::new().multi());
    }
    let schema = parse_struct(&schema);
    let order: Vec<String> = schema.keys().cloned().collect();
    Compiled::build(schema, &[], &order, machine_id)
}

/// `verify_states(names)` on a compiled schema: the same checks, the new order.
fn verified(c: &Compiled, names: &[&str], machine_id: &str) -> Result<Compiled, Error> {
    let order = check_names(c, names, machine_id)?;
    let mut c = c.clone();
    c.order = order;
    c.reindex_order();
    Ok(c)
}

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
    let mut seen = hashbrown::HashSet::with_capacity(names.len());
    for n in names {
        if !seen.insert(*n) {
            return Err(Error::InvalidArgs(format!("duplicate state {n} in the state list")));
        }
    }
    Ok(with_exception(c, names).iter().map(|n| c.index[n]).collect())
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
