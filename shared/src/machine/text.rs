//! Text forms of the machine, and export / import / clock replacement.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::schema::{Id, Ids, State};
use crate::transition::{Mutation, Transition};
use crate::types::{Args, Error, LogLevel, MutationType};

use super::{Clock, Machine, Serialized};

impl Machine {
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
        self.apply_time_from(time, false)
    }

    /// [`Machine::apply_time`] for a mirror whose worker restarted without its clock: ticks
    /// may go down (the worker's new incarnation counts from where it restarted). Tracers and
    /// waits see it as `apply_time` does.
    pub fn reset_time(&self, time: &[u64]) -> Result<(), Error> {
        self.apply_time_from(time, true)
    }

    fn apply_time_from(&self, time: &[u64], backwards: bool) -> Result<(), Error> {
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
                if time[pos] < core.clock[*id] && !backwards {
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
                    queue_tick: 0,
                    source: 0,
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
                cause: None,
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
}
