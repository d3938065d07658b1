//! Read-only queries: activity, ticks, clocks, positions and relations.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::resolver;
use crate::schema::EXCEPTION;
use crate::types::{Error, LogLevel, Relation};

use super::{Clock, Machine, Time};

impl Machine {
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
        let ids = self.parse_ids(&c, states)?;
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
}
