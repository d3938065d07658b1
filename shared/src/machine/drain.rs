//! The queue drain and the first half of a transition: resolving the target states.

use alloc::boxed::Box;
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::handlers::Dispatch;
use crate::resolver::{self, Resolve, Scratch};
use crate::schema::{Compiled, Id, Ids};
use crate::transition::{Mutation, Step, StepState, Transition};
use crate::types::{LogLevel, MutationType, Outcome, StepType};
use crate::wait::Slot;
use crate::why::Cause;

use super::{DrainState, KEEP_DRAIN_STATE_AFTER, Machine};

impl Machine {
    pub(super) fn process_queue(&self) -> Outcome {
        self.process_queue_why().0
    }

    /// [`Self::process_queue`], with why the first transition was canceled.
    pub(super) fn process_queue_why(&self) -> (Outcome, Option<Cause>) {
        if self.is_disposed() {
            return (Outcome::Canceled, Some(Cause::Disposed));
        }
        if self.queue_len() == 0 {
            // Another caller's drain took our item in between: it ran or runs there. Upstream
            // returns Canceled here (a race, spec §3.2); Queued is what happened.
            return (Outcome::Queued(0), None);
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
            return (Outcome::Queued(0), None);
        }
        let mut first: Option<Outcome> = None;
        let mut first_cause: Option<Cause> = None;
        loop {
            let mut ds = self.take_drain_state();
            loop {
                if self.is_disposed() {
                    self.0.in_transition.store(false, Ordering::Release);
                    self.0.draining.store(false, Ordering::Release);
                    return (Outcome::Canceled, Some(Cause::Disposed));
                }
                let item = {
                    let mut q = self.0.queue.lock();
                    let it = q.pop_front();
                    self.0.queue_len.store(q.len(), Ordering::Release);
                    if it.as_ref().is_some_and(|m| m.queue_tick > 0) {
                        let mut t = self.0.ticks.lock();
                        t.pending = t.pending.saturating_sub(1);
                        t.tick += 1;
                    }
                    it
                };
                let Some(mut item) = item else { break };
                let queue_tick = item.queue_tick;
                if item.ctx.as_ref().is_some_and(|c| c.is_canceled()) {
                    first.get_or_insert(Outcome::Executed);
                    self.queue_processed(queue_tick);
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
                if first.is_none() {
                    first = Some(r);
                    first_cause = ds.t.cause.take();
                }
                self.queue_processed(queue_tick);
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
        match first {
            Some(o) => (o, first_cause),
            // Between our queue check and taking the drain, another drainer ran our item and
            // let go: it ran there. Queued, as when the drain is busy (not Canceled: it may have
            // been executed — the soak saw exactly that).
            None => (Outcome::Queued(0), None),
        }
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
        if let Some(ds) = self.0.spare.lock().1.take() {
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
                cause: None,
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
        let mut spare = self.0.spare.lock();
        // a machine that transitions now and then (a server's per-session states: a handful in
        // its life) drops the buffers instead of holding ~2 KiB for its next drain
        if spare.0 >= KEEP_DRAIN_STATE_AFTER {
            spare.1 = Some(ds);
        } else {
            spare.0 += 1;
        }
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
        t.cause = None;
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
                    let first = not_accepted[0];
                    // the resolver noted the relation that dropped it (every drop of a called
                    // state goes through one); `Rejected` only if that ever changes
                    t.cause = Some(match scratch.drops.iter().find(|(x, _)| *x == first) {
                        Some((_, cause)) => cause.clone(),
                        None => Cause::Rejected(first),
                    });
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
}
