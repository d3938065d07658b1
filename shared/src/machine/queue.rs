//! Mutations and the queue: add / remove / set, eval, breakpoints, queue queries.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::schema::{Compiled, EXCEPTION, Id, Ids};
use crate::transition::{EvalFn, Mutation, MutationInfo};
use crate::types::{Args, Error, LogLevel, MutationType, Outcome, Value};
use crate::wait::{Slot, Wait, WaitError};
use crate::why::{Cause, Why};

use super::{Core, Machine};

// (wasm32 has no backtraces, `Unsupported`: not linking the capture keeps std's symbol
// demangler, ~20 KB, out of the browser build)
#[cfg(all(feature = "std", not(target_arch = "wasm32")))]
fn capture_trace() -> String {
    let bt = std::backtrace::Backtrace::capture();
    match bt.status() {
        std::backtrace::BacktraceStatus::Captured => bt.to_string(),
        _ => String::new(),
    }
}

#[cfg(any(not(feature = "std"), target_arch = "wasm32"))]
fn capture_trace() -> String {
    String::new()
}

impl Machine {
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
    #[inline]
    pub fn queue_len(&self) -> usize {
        self.0.queue_len.load(Ordering::Acquire)
    }

    /// Upstream's `QueueTick`: starts at 1 and counts the mutations that left the queue (those
    /// returned as [`Outcome::Queued`] carry the value it will have when they do).
    pub fn queue_tick(&self) -> u64 {
        self.0.ticks.lock().tick
    }

    /// True while a transition of a queue drain is running (upstream `Transition() != nil`).
    #[inline]
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
        let Ok(ids) = self.parse_ids(&c, states) else {
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
    /// Out-of-range index: `StateUnknown("index N")`.
    pub fn mutate_indexes(&self, ty: MutationType, indexes: &[usize], args: Option<Args>) -> Result<Outcome, Error> {
        self.mutate_indexes_cause(ty, indexes, args, 0).map(|(o, _)| o)
    }

    /// [`Self::mutate_indexes`] with why it was canceled (see [`Self::mutate_why`]).
    pub fn mutate_indexes_why(
        &self,
        ty: MutationType,
        indexes: &[usize],
        args: Option<Args>,
    ) -> Result<(Outcome, Option<Why>), Error> {
        let (o, cause) = self.mutate_indexes_cause(ty, indexes, args, 0)?;
        Ok((o, cause.map(|c| c.why(&self.compiled()))))
    }

    /// [`Self::mutate_indexes_why`] with the reason as the machine keeps it, queued as coming
    /// from `source` (a session's epoch, see [`crate::Mutation::source`]).
    pub(crate) fn mutate_indexes_cause(
        &self,
        ty: MutationType,
        indexes: &[usize],
        args: Option<Args>,
        source: u64,
    ) -> Result<(Outcome, Option<Cause>), Error> {
        // index → id straight from the state order: no name is looked up (or hashed) again
        let core = self.0.core.lock();
        let mut ids = Ids::new();
        for i in indexes {
            let Some(&id) = core.c.order.get(*i) else {
                drop(core);
                return Err(Error::StateUnknown(format!("index {i}")));
            };
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let multi = any_multi(&core.c, &ids);
        drop(core);
        // after the indexes: an out-of-range one is an error even on a disposed machine
        if let Some(c) = self.refusal() {
            return Ok((Outcome::Canceled, Some(c)));
        }
        self.mutate_ids(ty, ids, multi, args, source)
    }

    /// A mutation by type and names that also says why it was canceled: the relation that
    /// rejected a called state, the handler that returned false, timed out or panicked, or a
    /// disposed or full machine. `None` with `Canceled` only for a canceled ctx. `Queued`
    /// mutations run later; their reason shows in [`Transition::why`] (tracers, the stream).
    ///
    /// [`Transition::why`]: crate::Transition::why
    pub fn mutate_why(
        &self,
        ty: MutationType,
        states: &[&str],
        args: Option<Args>,
    ) -> Result<(Outcome, Option<Why>), Error> {
        let (o, cause) = self.mutate_cause(ty, states, args)?;
        Ok((o, cause.map(|c| c.why(&self.compiled()))))
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
            queue_tick: 0,
            source: 0,
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

    /// Names → ids (under the core lock, with the Multi flag), then [`Self::mutate_ids`].
    fn mutate(&self, ty: MutationType, states: &[&str], args: Option<Args>) -> Result<Outcome, Error> {
        self.mutate_cause(ty, states, args).map(|(o, _)| o)
    }

    fn mutate_cause(
        &self,
        ty: MutationType,
        states: &[&str],
        args: Option<Args>,
    ) -> Result<(Outcome, Option<Cause>), Error> {
        // before parsing: on a disposed or full machine, unknown names are no error
        if let Some(c) = self.refusal() {
            return Ok((Outcome::Canceled, Some(c)));
        }
        let core = self.0.core.lock();
        let ids = match self.parse_ids(&core.c, states) {
            Ok(ids) => ids,
            Err(e) => {
                drop(core);
                return self.mutate_unknown(ty, states, e).map(|o| (o, None));
            }
        };
        let multi = any_multi(&core.c, &ids);
        drop(core);
        self.mutate_ids(ty, ids, multi, args, 0)
    }

    /// `mutate` with an unknown name: `e`, except for a Remove that [`Self::remove_is_noop`] lets
    /// through. An unknown name is never active, so it doesn't block that no-op (the shortcut has
    /// always been checked before the names).
    #[cold]
    fn mutate_unknown(&self, ty: MutationType, states: &[&str], e: Error) -> Result<Outcome, Error> {
        let noop = ty == MutationType::Remove
            && self.remove_is_noop(|core| {
                self.count_name_lookup();
                !states.iter().any(|s| core.c.id(s).is_some_and(|id| core.is_active[id]))
            });
        if noop { Ok(Outcome::Executed) } else { Err(e) }
    }

    /// The shared tail of `mutate` and `mutate_indexes`: `ids` are de-duplicated, and `multi`
    /// (one of them is Multi) was read under the same core lock that resolved them, which keeps
    /// the hot path at one core lock per mutation. The caller checked `refusal`.
    fn mutate_ids(
        &self,
        ty: MutationType,
        ids: Ids,
        multi: bool,
        args: Option<Args>,
        source: u64,
    ) -> Result<(Outcome, Option<Cause>), Error> {
        if ty == MutationType::Remove && self.remove_is_noop(|core| !ids.iter().any(|id| core.is_active[*id])) {
            return Ok((Outcome::Executed, None));
        }
        let tick = self.queue_mutation(ty, ids, multi, args.unwrap_or_default(), source);
        Ok(match self.process_queue_why() {
            (Outcome::Queued(_), _) => (Outcome::Queued(tick), None),
            (o, c) => (o, c),
        })
    }

    /// Why a mutation is refused before it is queued: disposed, or the queue at its limit.
    #[inline]
    fn refusal(&self) -> Option<Cause> {
        if self.is_disposed() {
            Some(Cause::Disposed)
        } else if self.queue_len() >= self.0.queue_limit {
            Some(Cause::QueueFull)
        } else {
            None
        }
    }

    /// A Remove called from a handler with nothing queued after it, when `none_active` holds,
    /// can't change anything: it runs as a no-op instead of being queued behind the transition.
    fn remove_is_noop(&self, none_active: impl FnOnce(&Core) -> bool) -> bool {
        let q = self.0.queue.lock();
        if !q.is_empty() || !self.transition_running() {
            return false;
        }
        let core = self.0.core.lock();
        none_active(&core)
    }

    /// Names to de-duplicated ids, or `StateUnknown` for the first unknown name.
    pub(super) fn parse_ids(&self, c: &Compiled, states: &[&str]) -> Result<Ids, Error> {
        self.count_name_lookup();
        let mut ids = Ids::new();
        for s in states {
            let id = c.id(s).ok_or_else(|| Error::StateUnknown((*s).into()))?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Counts a name → id resolution for `name_lookups` (a no-op without `test-hooks`).
    #[inline(always)]
    fn count_name_lookup(&self) {
        #[cfg(feature = "test-hooks")]
        self.0.name_lookups.fetch_add(1, Ordering::Relaxed);
    }

    /// How many name → id resolutions ran: one per parse of a state list (mutations, `is_queued`,
    /// `parse_states`, `try_when_not`), plus the unknown-name check of an in-handler Remove. Lets
    /// tests check that [`Machine::mutate_indexes`] resolves none (`test-hooks` feature).
    #[cfg(feature = "test-hooks")]
    pub fn name_lookups(&self) -> u64 {
        self.0.name_lookups.load(Ordering::Relaxed)
    }

    /// Queue a mutation; returns its queue tick (a skipped duplicate: the queued twin's).
    fn queue_mutation(&self, ty: MutationType, ids: Ids, multi: bool, args: Args, source: u64) -> u64 {
        let mut q = self.0.queue.lock();
        let dup = if !multi && args.is_empty() {
            detect_duplicates(&q, ty, &ids)
        } else {
            None
        };
        if let Some(i) = dup {
            let tick = q[i].queue_tick;
            drop(q);
            self.log_fmt(LogLevel::Ops, || {
                format!(
                    "[queue:skipped] Duplicate detected for [{ty}] {}",
                    self.compiled().join(&ids)
                )
            });
            return tick;
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
        let queue_tick = {
            let mut t = self.0.ticks.lock();
            t.pending += 1;
            t.tick + t.pending
        };
        q.push_back(Mutation {
            ty,
            called: ids,
            args,
            auto: false,
            eval: None,
            ctx: None,
            queue_tick,
            source,
        });
        self.0.queue_len.store(q.len(), Ordering::Release);
        drop(q);
        if let Some(ids) = log_ids {
            self.log_fmt(LogLevel::Ops, || format!("[queue:{ty}] {}", self.compiled().join(&ids)));
        }
        if let Some(ids) = bp_ids {
            self.check_breakpoints(&self.compiled(), ty, &ids);
        }
        queue_tick
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
}

/// Whether a mutation of `ids` involves a Multi state (then it is never de-duplicated in the queue).
fn any_multi(c: &Compiled, ids: &[Id]) -> bool {
    ids.iter().any(|i| c.defs[*i].multi)
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

/// The index of a queued mutation that makes this one redundant (upstream's duplicate detection).
fn detect_duplicates(q: &VecDeque<Mutation>, ty: MutationType, ids: &[Id]) -> Option<usize> {
    let idx = is_queued(q, ty, ids, true, true, 0)?;
    let counter = match ty {
        MutationType::Add => MutationType::Remove,
        MutationType::Remove => MutationType::Add,
        MutationType::Set => return (idx > 0 && q.len() > 1).then_some(idx),
        MutationType::Eval => return None,
    };
    is_queued(q, counter, ids, false, false, idx + 1)
        .is_none()
        .then_some(idx)
}
