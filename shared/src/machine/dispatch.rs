//! The second half of a transition: handler calls, new ticks, panic recovery; handler binding.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::handlers::{Dispatch, Ev, Event, HandlerFn, Handlers, HandlersId};
use crate::schema::{EXCEPTION, Id, Ids};
use crate::transition::{Mutation, Step, StepData, StepState, Transition};
use crate::types::{Args, Error, LogLevel, MutationType, Outcome, StepType, Value};

use super::{ExceptionArgsPanic, HandlerRunner, Machine};
use crate::why::Cause;

enum Called {
    Ok(bool),
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    Panic(String, String),
}

#[cfg(feature = "std")]
#[inline]
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
            Called::Panic(msg, panic_trace(e.name))
        }
    }
}

/// The panicking handler's name and stack: upstream always logs it; panics are rare, so pay
/// for it.
#[cfg(all(feature = "std", not(target_arch = "wasm32")))]
fn panic_trace(handler: &str) -> String {
    let bt = std::backtrace::Backtrace::force_capture();
    match bt.status() {
        std::backtrace::BacktraceStatus::Captured => format!("handler {handler}\n{bt}"),
        _ => format!("handler {handler}"),
    }
}

/// wasm32 has no backtraces (`Unsupported`): the name alone, and std's symbol demangler
/// (~20 KB) stays out of the browser build.
#[cfg(all(feature = "std", target_arch = "wasm32"))]
fn panic_trace(handler: &str) -> String {
    format!("handler {handler}")
}

#[cfg(not(feature = "std"))]
#[inline]
fn call_handler(f: &HandlerFn, e: &Event<'_>, _catch: bool) -> Called {
    Called::Ok(f(e))
}

impl Machine {
    /// One handler call on the machine's [`HandlerRunner`]: the handler gets its own copies
    /// (the machine is shared) and the transition waits at most the handler timeout.
    fn call_isolated(
        &self,
        runner: &dyn HandlerRunner,
        f: &HandlerFn,
        name: &str,
        args: &Args,
        t: &Transition,
    ) -> Option<Called> {
        let out: Arc<crate::sync::Mutex<Option<Called>>> = Arc::new(crate::sync::Mutex::new(None));
        let (f, m, name, args, tr, slot) = (
            f.clone(),
            self.clone(),
            String::from(name),
            args.clone(),
            t.detached(),
            out.clone(),
        );
        let catch = self.0.panic_to_exception;
        let job = alloc::boxed::Box::new(move || {
            let e = Event {
                name: &name,
                machine: &m,
                args: &args,
                transition: &tr,
            };
            let r = call_handler(&f, &e, catch);
            *slot.lock() = Some(r);
        });
        if !runner.run(job, core::time::Duration::from_nanos(self.0.handler_timeout_ns)) {
            return None;
        }
        let r = out.lock().take();
        // finished without a result: it unwound (panics not caught, `dont_panic_to_exception`)
        Some(r.unwrap_or_else(|| Called::Panic(String::from("handler panicked"), format!("handler {}", self.id()))))
    }

    pub(super) fn emit_events(&self, t: &mut Transition, d: &Dispatch, tracing: bool) -> Outcome {
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
                queue_tick: 0,
                source: 0,
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
            t.cause.get_or_insert(Cause::Disposed);
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
            // None: an isolated handler outlived the timeout and was left behind
            let res = match &self.0.runner {
                Some(runner) if self.0.handler_timeout_ns > 0 => self.call_isolated(runner.as_ref(), f, name, args, t),
                _ => {
                    let e = Event {
                        name,
                        machine: self,
                        args,
                        transition: t,
                    };
                    Some(call_handler(f, &e, self.0.panic_to_exception))
                }
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
                Some(Called::Panic(msg, trace)) => {
                    self.recover(t, &step, &msg, &trace);
                    t.cause.get_or_insert_with(|| Cause::Panic(ev.name.clone()));
                    panicked = true;
                    outcome = Outcome::Canceled;
                    // upstream's processHandlers: a panic in a final handler (`FooState`,
                    // `FooEnd`) does not stop the event's other handler sets (say, metrics and
                    // business logic); in a negotiation handler it cancels at once
                    if !ev.is_final_name {
                        break;
                    }
                }
                // returned in time
                Some(Called::Ok(ret)) if elapsed <= self.0.handler_timeout_ns => {
                    self.log_fmt(LogLevel::Everything, || format!("[handler:end] {name}"));
                    if !ev.is_final_name && !ret {
                        t.cause.get_or_insert_with(|| Cause::Handler(ev.name.clone()));
                        outcome = Outcome::Canceled;
                        break;
                    }
                }
                // returned late, or left behind on its runner
                _ => {
                    let targets = t.c.join(&t.target);
                    self.log_fmt(LogLevel::Ops, || format!("[cancel] ({targets}) by timeout"));
                    self.add_err(Error::HandlerTimeout(String::from(name)), None);
                    t.cause.get_or_insert_with(|| Cause::Timeout(ev.name.clone()));
                    if t.steps.capacity() > 0 {
                        t.steps.push(step);
                    }
                    return Outcome::Canceled;
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
            if !is_final {
                return Outcome::Canceled;
            }
            if panicked {
                // every set ran: upstream matches WhenArgs before reporting the cancel
                if let Some(s) = enter_state {
                    self.process_when_args(s, args);
                }
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
            queue_tick: 0,
            source: 0,
        });
        self.0.queue_len.store(q.len(), Ordering::Release);
    }

    // ----- handlers, tracers -----

    /// Bind a handler set (upstream `BindHandlers`). Names are checked against the schema with
    /// [`crate::compat::list_handlers`]: a handler naming a missing state is an error and nothing is bound.
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
}
