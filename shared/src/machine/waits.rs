//! Waits (`when*`), state contexts, and resolving them after a transition.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::schema::{EXCEPTION, Id, Ids};
use crate::types::{Args, Error, LogLevel};
use crate::wait::{Ctx, CtxValue, Slot, Wait, WaitError, WaitRegistry};

use super::{Inner, Machine, WhenArgsBinding, WhenBinding, WhenTimeBinding};

impl Machine {
    /// Resolve When / WhenNot, then WhenTime, then state contexts, after a transition (ticks
    /// before it in `time_before`; odd = was active).
    /// `coalesced`: the update may merge several transitions (a mirror applying a pushed clock).
    /// Then a non-Multi state that ticked while staying active or inactive passed through the
    /// other state in between: `WhenNot` and state contexts treat such a state as deactivated.
    pub(super) fn process_bindings(&self, time_before: &[u64], coalesced: bool) {
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

    pub(super) fn process_when_args(&self, state: Id, args: &Args) {
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

    /// The mutation with queue tick `tick` (0: none) finished: complete `when_queue` waits up to it.
    pub(super) fn queue_processed(&self, tick: u64) {
        if tick == 0 {
            return;
        }
        let mut done = Vec::new();
        {
            let mut core = self.0.core.lock();
            let upto = {
                let mut t = self.0.ticks.lock();
                t.done = t.done.max(tick);
                t.done
            };
            if self.0.n_when_queue.load(Ordering::Acquire) == 0 {
                return;
            }
            core.when_queue.retain(|(_, t, slot)| {
                let met = *t <= upto;
                if met {
                    done.push(slot.clone());
                }
                !met
            });
            self.0.n_when_queue.store(core.when_queue.len(), Ordering::Release);
        }
        for s in done {
            self.log_fmt(LogLevel::Ops, || format!("[whenQueue:match] {tick}"));
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
        self.parse_ids(&c, states)?;
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
        self.when_args_id(s, args, ctx)
    }

    /// [`Machine::when_args`] with the state by index in the state order (a server session's
    /// remote wait); `StateUnknown` for an index out of range.
    pub fn when_args_index(&self, index: usize, args: Args, ctx: Option<&Ctx>) -> Result<Wait, Error> {
        if self.is_disposed() {
            return Ok(Wait::ready(Err(WaitError::Disposed)));
        }
        let c = self.compiled();
        let s = *c
            .order
            .get(index)
            .ok_or_else(|| Error::StateUnknown(format!("index {index}")))?;
        Ok(self.when_args_id(s, args, ctx))
    }

    fn when_args_id(&self, s: Id, args: Args, ctx: Option<&Ctx>) -> Wait {
        let id = self.binding_id();
        let slot = Arc::new(Slot::default());
        self.log_fmt(LogLevel::Ops, || {
            let keys: Vec<&String> = args.0.keys().collect();
            format!("[whenArgs:new] {} ({keys:?})", self.compiled().name(s))
        });
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

    /// Completes once the mutation with queue tick `tick` (from [`Outcome::Queued`]) has been
    /// processed — its transition and handlers finished, whether it was accepted or canceled —
    /// or at once if it already was (upstream `WhenQueue`). Upstream checks only after accepted
    /// transitions and completes at once while that mutation is still running; here the wait
    /// always ends right after that mutation's transition.
    ///
    /// [`Outcome::Queued`]: crate::Outcome::Queued
    pub fn when_queue(&self, tick: u64, ctx: Option<&Ctx>) -> Wait {
        if self.is_disposed() {
            return Wait::ready(Err(WaitError::Disposed));
        }
        let mut core = self.0.core.lock();
        if self.0.ticks.lock().done >= tick {
            return Wait::ready(Ok(()));
        }
        let slot = Arc::new(Slot::default());
        let id = self.binding_id();
        core.when_queue.push((id, tick, slot.clone()));
        self.0.n_when_queue.store(core.when_queue.len(), Ordering::Release);
        drop(core);
        self.log_fmt(LogLevel::Ops, || format!("[whenQueue:new] {tick}"));
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
        core.when.len()
            + core.when_time.len()
            + core.when_queue.len()
            + core.when_args.iter().filter(|b| b.state != usize::MAX).count()
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
}
