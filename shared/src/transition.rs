//! Transitions and mutations as handlers and tracers see them.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::Clock;
use crate::schema::{Compiled, Id, Ids};
use crate::types::{Args, MutationType, Relation, StepType};
use crate::wait::{Ctx, Slot};

/// One side of a step: nothing, the `Any` placeholder, or a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepState {
    None,
    Any,
    Id(Id),
}

/// What a step carries besides its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepData {
    /// Nothing.
    None,
    /// The handler that ran.
    Handler(Arc<str>),
    /// The relation evaluated.
    Relation(Relation),
}

/// A debug step of a transition (upstream `Step`).
#[derive(Clone, Debug)]
pub struct Step {
    pub(crate) from: StepState,
    pub(crate) to: StepState,
    /// Step kind.
    pub ty: StepType,
    /// Handler name or relation.
    pub data: StepData,
    /// A final handler (`FooState`, `FooEnd`).
    pub is_final: bool,
    /// A self handler (`FooFoo`).
    pub is_self: bool,
    /// An enter-side final handler (`FooState`).
    pub is_enter: bool,
}

impl Step {
    pub(crate) fn new(from: StepState, to: StepState, ty: StepType, rel: Option<Relation>) -> Step {
        Step {
            from,
            to,
            ty,
            data: rel.map_or(StepData::None, StepData::Relation),
            is_final: false,
            is_self: false,
            is_enter: false,
        }
    }
}

pub(crate) type EvalFn = Box<dyn FnOnce() + Send>;

/// A queued mutation. State names are resolved through the transition or the machine.
pub struct Mutation {
    pub(crate) ty: MutationType,
    pub(crate) called: Ids,
    pub(crate) args: Args,
    pub(crate) auto: bool,
    pub(crate) eval: Option<(String, EvalFn, Arc<Slot>)>,
    pub(crate) ctx: Option<Ctx>,
    /// Upstream's queue tick: the queue's tick once this mutation leaves the queue (0: none —
    /// evals, auto states and prepended exceptions get none).
    pub(crate) queue_tick: u64,
    /// Who queued it: a session's epoch, 0 for the worker itself (its code and handlers).
    pub(crate) source: u64,
}

impl Mutation {
    /// A placeholder (no states, no args).
    pub(crate) fn empty() -> Mutation {
        Mutation {
            ty: MutationType::Add,
            called: Ids::new(),
            args: Args::new(),
            auto: false,
            eval: None,
            ctx: None,
            queue_tick: 0,
            source: 0,
        }
    }

    /// Add, Remove, Set or Eval.
    pub fn mutation_type(&self) -> MutationType {
        self.ty
    }
    /// The mutation's arguments (empty when none were passed).
    pub fn args(&self) -> &Args {
        &self.args
    }
    /// True for the machine-generated auto-state mutation.
    pub fn is_auto(&self) -> bool {
        self.auto
    }
    /// Who queued it: the epoch of the server session whose client sent it, 0 for the worker
    /// itself (its code, its handlers, auto states).
    pub fn source(&self) -> u64 {
        self.source
    }
}

/// A queued mutation by name (upstream `Queue()` items).
#[derive(Clone, Debug, PartialEq)]
pub struct MutationInfo {
    /// Add, Remove, Set or Eval.
    pub ty: MutationType,
    /// Called states, de-duplicated, in call order.
    pub states: Vec<String>,
    /// Arguments.
    pub args: Args,
    /// The auto-state mutation.
    pub auto: bool,
}

/// A transition: the resolved effect of one mutation (upstream `Transition`).
pub struct Transition {
    pub(crate) id: u64,
    pub(crate) c: Arc<Compiled>,
    pub(crate) mutation: Mutation,
    pub(crate) time_before: Vec<u64>,
    pub(crate) time_after: Option<Vec<u64>>,
    pub(crate) target: Vec<Id>,
    pub(crate) enters: Vec<Id>,
    pub(crate) exits: Vec<Id>,
    pub(crate) accepted: bool,
    pub(crate) steps: Vec<Step>,
    pub(crate) log_entries: Vec<String>,
    pub(crate) pre_log_entries: Vec<String>,
    pub(crate) queue_len: usize,
    pub(crate) completed: bool,
    /// End time of the last handler call (handler-timeout bookkeeping), 0 before the first.
    pub(crate) clock_mark: u64,
    /// Why it was canceled (set on the cold path only).
    pub(crate) cause: Option<crate::why::Cause>,
}

impl core::fmt::Debug for Transition {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Transition")
            .field("id", &self.id)
            .field("type", &self.mutation.ty)
            .field("called", &self.called_states())
            .field("target", &self.target_states())
            .field("accepted", &self.accepted)
            .finish()
    }
}

impl Transition {
    /// A copy for a handler that runs elsewhere ([`crate::machine::HandlerRunner`]): all a
    /// handler can read; the queue keeps the mutation's eval.
    pub(crate) fn detached(&self) -> Transition {
        Transition {
            id: self.id,
            c: self.c.clone(),
            mutation: Mutation {
                ty: self.mutation.ty,
                called: self.mutation.called.clone(),
                args: self.mutation.args.clone(),
                auto: self.mutation.auto,
                eval: None,
                ctx: self.mutation.ctx.clone(),
                queue_tick: self.mutation.queue_tick,
                source: self.mutation.source,
            },
            time_before: self.time_before.clone(),
            time_after: self.time_after.clone(),
            target: self.target.clone(),
            enters: self.enters.clone(),
            exits: self.exits.clone(),
            accepted: self.accepted,
            steps: self.steps.clone(),
            log_entries: Vec::new(),
            pre_log_entries: Vec::new(),
            queue_len: self.queue_len,
            completed: self.completed,
            clock_mark: self.clock_mark,
            cause: self.cause.clone(),
        }
    }

    /// Active before the transition (odd tick).
    #[inline]
    pub(crate) fn was_active(&self, id: Id) -> bool {
        self.time_before[id] % 2 == 1
    }

    fn names(&self, ids: &[Id]) -> Vec<&str> {
        ids.iter().map(|i| self.c.name(*i)).collect()
    }
    /// A per-machine unique id.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The mutation behind this transition.
    pub fn mutation(&self) -> &Mutation {
        &self.mutation
    }
    /// Mutation type.
    pub fn mutation_type(&self) -> MutationType {
        self.mutation.ty
    }
    /// The mutation's args.
    pub fn args(&self) -> &Args {
        &self.mutation.args
    }
    /// True for the auto-state transition.
    pub fn is_auto(&self) -> bool {
        self.mutation.auto
    }
    /// Called states, in call order.
    pub fn called_states(&self) -> Vec<&str> {
        self.names(&self.mutation.called)
    }
    /// True if `state` was called by the mutation (upstream `StateWasCalled`).
    pub fn state_was_called(&self, state: &str) -> bool {
        self.c.id(state).is_some_and(|id| self.mutation.called.contains(&id))
    }
    /// Resolved target states, in resolution order.
    pub fn target_states(&self) -> Vec<&str> {
        self.names(&self.target)
    }
    /// States to be entered, in handler order.
    pub fn enters(&self) -> Vec<&str> {
        self.names(&self.enters)
    }
    /// States to be exited, in handler order.
    pub fn exits(&self) -> Vec<&str> {
        self.names(&self.exits)
    }
    /// Active states before the transition, in state order.
    pub fn states_before(&self) -> Vec<&str> {
        self.c
            .order
            .iter()
            .filter(|i| self.was_active(**i))
            .map(|i| self.c.name(*i))
            .collect()
    }
    /// Target state positions in the state order (upstream `TargetIndexes`).
    pub fn target_indexes(&self) -> Vec<i64> {
        self.target.iter().map(|i| self.c.order_pos[*i]).collect()
    }
    /// Whether the transition was (still is) accepted.
    pub fn accepted(&self) -> bool {
        self.accepted
    }
    /// Why it was canceled: the relation or handler that said no (`None` while accepted, and
    /// for an auto transition the resolver dropped).
    pub fn why(&self) -> Option<crate::why::Why> {
        self.cause.as_ref().map(|c| c.why(&self.c))
    }
    /// [`Self::why`] as the machine keeps it, with the schema it refers to.
    pub(crate) fn cause(&self) -> Option<(&crate::why::Cause, &Compiled)> {
        self.cause.as_ref().map(|c| (c, &*self.c))
    }
    /// Ticks before, in state order.
    pub fn time_before(&self) -> Vec<u64> {
        self.c.order.iter().map(|i| self.time_before[*i]).collect()
    }
    /// Ticks after, in state order (`None` until the transition finished).
    pub fn time_after(&self) -> Option<Vec<u64>> {
        self.time_after
            .as_ref()
            .map(|t| self.c.order.iter().map(|i| t[*i]).collect())
    }
    /// Ticks before, by name.
    pub fn clock_before(&self) -> Clock {
        self.c
            .order
            .iter()
            .map(|i| (self.c.names[*i].clone(), self.time_before[*i]))
            .collect()
    }
    /// Ticks after, by name (empty until finished).
    pub fn clock_after(&self) -> Clock {
        match &self.time_after {
            Some(t) => self.c.order.iter().map(|i| (self.c.names[*i].clone(), t[*i])).collect(),
            None => Clock::new(),
        }
    }
    /// Debug steps so far. Recorded only while handlers or tracers are bound (nobody else can
    /// observe them).
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
    /// Log lines emitted while the transition ran (collected only when tracers are bound).
    pub fn log_entries(&self) -> &[String] {
        &self.log_entries
    }
    /// Log lines emitted before it, outside any transition (collected only with tracers).
    pub fn pre_log_entries(&self) -> &[String] {
        &self.pre_log_entries
    }
    /// Queue length when the transition ended.
    pub fn queue_len(&self) -> usize {
        self.queue_len
    }
    /// True once the final phase and bookkeeping are done.
    pub fn is_completed(&self) -> bool {
        self.completed
    }
    /// Changed ticks as sparse `[state index, delta]` pairs (upstream `NewClockMsg`), once finished.
    pub fn clock_delta(&self) -> Vec<(usize, u64)> {
        let Some(after) = &self.time_after else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (pos, id) in self.c.order.iter().enumerate() {
            let d = after[*id].wrapping_sub(self.time_before[*id]);
            if d != 0 {
                out.push((pos, d));
            }
        }
        out
    }

    fn side(&self, s: StepState) -> &str {
        match s {
            StepState::None => "",
            StepState::Any => crate::schema::ANY,
            StepState::Id(i) => self.c.name(i),
        }
    }

    /// Name of a step's source state ("" when none, "Any" for the placeholder).
    pub fn step_from<'a>(&'a self, step: &Step) -> &'a str {
        self.side(step.from)
    }

    /// Name of a step's destination state.
    pub fn step_to<'a>(&'a self, step: &Step) -> &'a str {
        self.side(step.to)
    }
}

impl core::fmt::Display for Transition {
    /// Upstream's `Transition.String()`: one line per step (relation steps print the relation's
    /// name where upstream would panic).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, st) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let to = self.side(st.to);
            if !to.is_empty() {
                write!(f, "{to} -> ")?;
            }
            write!(f, "{}{}", self.side(st.from), st.ty.as_str())?;
            match &st.data {
                StepData::None => {}
                StepData::Handler(h) => write!(f, "   ({h})")?,
                StepData::Relation(r) => write!(f, "   ({r})")?,
            }
        }
        Ok(())
    }
}
