//! Relation resolution (upstream `DefaultRelationsResolver`), on state ids.

use alloc::string::String;
use alloc::vec::Vec;

use crate::schema::{Compiled, Id, bit};
use crate::transition::{Step, StepState};
use crate::types::{LogLevel, Relation, StepType};

/// Reusable buffers for one resolution (kept by the drainer between transitions, so resolving
/// allocates nothing in the steady state).
#[derive(Default)]
pub(crate) struct Scratch {
    a: Vec<Id>,
    b: Vec<Id>,
    tmp: Vec<Id>,
    visited: Vec<Id>,
    blocked: Vec<Id>,
    blocked_by: Vec<Id>,
    to_remove: Vec<Id>,
    missing: Vec<Id>,
    missing_map: Vec<(Id, Vec<Id>)>,
    /// Called states the resolution dropped, with the first relation that dropped each (what
    /// [`crate::Why`] reports).
    pub(crate) drops: Vec<(Id, crate::why::Cause)>,
}

/// Note why called state `s` was dropped, unless an earlier drop of it is noted already.
fn note_drop(drops: &mut Vec<(Id, crate::why::Cause)>, called: &[Id], s: Id, cause: crate::why::Cause) {
    if called.contains(&s) && !drops.iter().any(|(x, _)| *x == s) {
        drops.push((s, cause));
    }
}

/// Resolution inputs and side outputs (steps, log lines).
pub(crate) struct Resolve<'a> {
    pub(crate) c: &'a Compiled,
    /// Ticks before the transition (odd = active).
    pub(crate) time_before: &'a [u64],
    pub(crate) called: &'a [Id],
    pub(crate) is_auto: bool,
    pub(crate) steps: &'a mut Vec<Step>,
    /// Record debug steps (only observable by handlers and tracers).
    pub(crate) record: bool,
    pub(crate) logs: &'a mut Vec<(LogLevel, String)>,
    pub(crate) log_level: LogLevel,
    pub(crate) scratch: &'a mut Scratch,
}

/// De-duplicate keeping first occurrences.
fn uniq(c: &Compiled, l: &mut Vec<Id>) {
    if c.masks.is_some() {
        let mut seen = 0u64;
        l.retain(|s| {
            let new = seen & bit(*s) == 0;
            seen |= bit(*s);
            new
        });
        return;
    }
    let mut i = 1;
    while i < l.len() {
        if l[..i].contains(&l[i]) {
            l.remove(i);
        } else {
            i += 1;
        }
    }
}

/// First Add level: `out` = `input` followed by the Add lists of its states, skipping active
/// non-Multi ones; no recursion into the appended states.
#[allow(clippy::too_many_arguments)]
fn parse_add(
    c: &Compiled,
    time_before: &[u64],
    record: bool,
    steps: &mut Vec<Step>,
    visited: &mut Vec<Id>,
    input: &[Id],
    out: &mut Vec<Id>,
) {
    out.clear();
    out.extend_from_slice(input);
    visited.clear();
    for &s in input {
        let d = &c.defs[s];
        if d.add.is_empty() || (time_before[s] % 2 == 1 && !d.multi) || visited.contains(&s) {
            continue;
        }
        if record {
            for &a in &d.add {
                steps.push(Step::new(
                    StepState::Id(s),
                    StepState::Id(a),
                    StepType::Relation,
                    Some(Relation::Add),
                ));
            }
            for &a in &d.add {
                steps.push(Step::new(StepState::None, StepState::Id(a), StepType::Set, None));
            }
        }
        out.extend_from_slice(&d.add);
        visited.push(s);
    }
}

impl Resolve<'_> {
    fn log(&mut self, lvl: LogLevel, f: impl FnOnce() -> String) {
        if lvl <= self.log_level && self.log_level != LogLevel::Nothing {
            self.logs.push((lvl, f()));
        }
    }

    /// Drop states whose requirements are not in the list, until nothing changes. Works on
    /// `scratch.b` when `in_b`, else on `scratch.a`.
    fn parse_require(&mut self, in_b: bool) {
        let sc = &mut *self.scratch;
        let (states, kept) = if in_b {
            (&mut sc.b, &mut sc.tmp)
        } else {
            (&mut sc.a, &mut sc.tmp)
        };
        sc.missing_map.clear();
        let mut before = usize::MAX;
        while before != states.len() {
            before = states.len();
            kept.clear();
            let set = match &self.c.masks {
                Some(_) => states.iter().fold(0u64, |m, s| m | bit(*s)),
                None => 0,
            };
            for &s in states.iter() {
                let reqs = &self.c.defs[s].require;
                if reqs.is_empty() {
                    kept.push(s);
                    continue;
                }
                if let Some(m) = &self.c.masks {
                    if !self.record && m[s].require & !set == 0 {
                        kept.push(s);
                        continue;
                    }
                }
                sc.missing.clear();
                for &r in reqs {
                    if self.record {
                        self.steps.push(Step::new(
                            StepState::Id(s),
                            StepState::Id(r),
                            StepType::Relation,
                            Some(Relation::Require),
                        ));
                    }
                    let present = match &self.c.masks {
                        Some(_) => set & bit(r) != 0,
                        None => states.contains(&r),
                    };
                    if present {
                        continue;
                    }
                    sc.missing.push(r);
                    if self.record {
                        self.steps.push(Step::new(
                            StepState::Id(s),
                            StepState::None,
                            StepType::RemoveNotActive,
                            None,
                        ));
                        if self.called.contains(&s) {
                            self.steps
                                .push(Step::new(StepState::None, StepState::Id(r), StepType::Cancel, None));
                        }
                    }
                }
                if sc.missing.is_empty() {
                    kept.push(s);
                    continue;
                }
                note_drop(
                    &mut sc.drops,
                    self.called,
                    s,
                    crate::why::Cause::Requires(s, sc.missing[0]),
                );
                if let Some(e) = sc.missing_map.iter_mut().find(|(x, _)| *x == s) {
                    e.1.clone_from(&sc.missing);
                } else {
                    sc.missing_map.push((s, sc.missing.clone()));
                }
            }
            core::mem::swap(states, kept);
        }
        if sc.missing_map.is_empty() || self.log_level == LogLevel::Nothing {
            return;
        }
        let c = self.c;
        let mut parts = Vec::new();
        for (s, miss) in &sc.missing_map {
            let names: Vec<&str> = miss.iter().map(|m| c.name(*m)).collect();
            parts.push(alloc::format!("{}(-{})", c.name(*s), names.join(" -")));
        }
        let text = parts.join(" ");
        if self.is_auto {
            self.log(LogLevel::Decisions, || alloc::format!("[reject:auto] {text}"));
        } else {
            self.log(LogLevel::Ops, || alloc::format!("[reject] {text}"));
        }
    }

    /// `GetTargetStates`: the resolved target list for `states_to_set`, written to `out`.
    pub(crate) fn target_states(&mut self, states_to_set: &[Id], out: &mut Vec<Id>) {
        let c = self.c;
        self.scratch.drops.clear();
        {
            let sc = &mut *self.scratch;
            sc.a.clear();
            sc.a.extend_from_slice(states_to_set);
            uniq(c, &mut sc.a);
            parse_add(
                c,
                self.time_before,
                self.record,
                self.steps,
                &mut sc.visited,
                &sc.a,
                &mut sc.b,
            );
            uniq(c, &mut sc.b);
        }
        self.parse_require(true);

        // "newer wins": walk the candidates in reverse, drop those a not-yet-dropped candidate removes
        self.scratch.blocked.clear();
        self.scratch.a.clear();
        for i in (0..self.scratch.b.len()).rev() {
            let s = self.scratch.b[i];
            let sc = &mut *self.scratch;
            sc.blocked_by.clear();
            for &b in &sc.b {
                let removes = match &c.masks {
                    Some(m) => m[b].remove & bit(s) != 0,
                    None => c.defs[b].remove.contains(&s),
                };
                if removes {
                    if self.record {
                        self.steps.push(Step::new(
                            StepState::Id(b),
                            StepState::Id(s),
                            StepType::Relation,
                            Some(Relation::Remove),
                        ));
                    }
                    if !sc.blocked.contains(&b) {
                        sc.blocked_by.push(b);
                    }
                }
            }
            if sc.blocked_by.is_empty() {
                sc.a.push(s);
                continue;
            }
            sc.blocked.push(s);
            note_drop(
                &mut sc.drops,
                self.called,
                s,
                crate::why::Cause::Removed(s, sc.blocked_by[0]),
            );
            let active = self.time_before[s] % 2 == 1;
            let lvl = if active { LogLevel::Ops } else { LogLevel::Decisions };
            if self.log_level >= lvl {
                let text = alloc::format!("[rel:remove] {} by {}", c.name(s), c.join(&sc.blocked_by));
                self.log(lvl, || text);
            }
            if self.record {
                let ty = if active {
                    StepType::Remove
                } else {
                    StepType::RemoveNotActive
                };
                self.steps.push(Step::new(StepState::None, StepState::Id(s), ty, None));
            }
        }

        // second Add level, minus what the surviving candidates remove
        {
            let sc = &mut *self.scratch;
            sc.to_remove.clear();
            if c.masks.is_none() {
                for &s in &sc.a {
                    sc.to_remove.extend_from_slice(&c.defs[s].remove);
                }
            }
            parse_add(
                c,
                self.time_before,
                self.record,
                self.steps,
                &mut sc.visited,
                &sc.a,
                &mut sc.b,
            );
            match &c.masks {
                Some(m) => {
                    let rm = sc.a.iter().fold(0u64, |acc, s| acc | m[*s].remove);
                    sc.b.retain(|s| rm & bit(*s) == 0);
                }
                None => {
                    let to_remove = &sc.to_remove;
                    sc.b.retain(|s| !to_remove.contains(s));
                }
            }
            uniq(c, &mut sc.b);
            sc.b.reverse();
        }
        self.parse_require(true);
        sort_states(c, &mut self.scratch.b, self.steps, self.record);
        out.clear();
        out.extend_from_slice(&self.scratch.b);
    }
}

/// Sort by Require topology (states outside it first), then by After, exactly like upstream's two
/// `sort.SliceStable` calls. After comparisons record `rel` steps.
pub(crate) fn sort_states(c: &Compiled, states: &mut [Id], steps: &mut Vec<Step>, record: bool) {
    if states.len() < 2 {
        return;
    }
    // Stable sort by key: any stable algorithm gives the same order.
    if !c.topology.is_empty() {
        states.sort_by_key(|s| c.topo_pos[*s]);
    }
    let mut less = |a: Id, b: Id| -> bool {
        if c.defs[a].after.contains(&b) {
            if record {
                steps.push(Step::new(
                    StepState::Id(a),
                    StepState::Id(b),
                    StepType::Relation,
                    Some(Relation::After),
                ));
            }
            false
        } else if c.defs[b].after.contains(&a) {
            if record {
                steps.push(Step::new(
                    StepState::Id(b),
                    StepState::Id(a),
                    StepType::Relation,
                    Some(Relation::After),
                ));
            }
            true
        } else {
            false
        }
    };
    go_stable_sort(states, &mut less);
}

/// Go's `sort.Stable` (insertion sort in blocks of 20, then symmerge), so non-transitive `less`
/// functions (After is only checked between neighbours) give upstream's exact order.
fn go_stable_sort(data: &mut [Id], less: &mut impl FnMut(Id, Id) -> bool) {
    let n = data.len();
    let mut block = 20;
    let (mut a, mut b) = (0, block);
    while b <= n {
        insertion_sort(data, a, b, less);
        a = b;
        b += block;
    }
    insertion_sort(data, a, n, less);
    while block < n {
        a = 0;
        b = 2 * block;
        while b <= n {
            sym_merge(data, a, a + block, b, less);
            a = b;
            b += 2 * block;
        }
        let m = a + block;
        if m < n {
            sym_merge(data, a, m, n, less);
        }
        block *= 2;
    }
}

fn insertion_sort(data: &mut [Id], a: usize, b: usize, less: &mut impl FnMut(Id, Id) -> bool) {
    for i in a + 1..b {
        let mut j = i;
        while j > a && less(data[j], data[j - 1]) {
            data.swap(j, j - 1);
            j -= 1;
        }
    }
}

fn sym_merge(data: &mut [Id], a: usize, m: usize, b: usize, less: &mut impl FnMut(Id, Id) -> bool) {
    if m - a == 1 {
        let (mut i, mut j) = (m, b);
        while i < j {
            let h = (i + j) / 2;
            if less(data[h], data[a]) {
                i = h + 1;
            } else {
                j = h;
            }
        }
        for k in a..i - 1 {
            data.swap(k, k + 1);
        }
        return;
    }
    if b - m == 1 {
        let (mut i, mut j) = (a, m);
        while i < j {
            let h = (i + j) / 2;
            if !less(data[m], data[h]) {
                i = h + 1;
            } else {
                j = h;
            }
        }
        let mut k = m;
        while k > i {
            data.swap(k, k - 1);
            k -= 1;
        }
        return;
    }
    let mid = (a + b) / 2;
    let n = mid + m;
    let (mut start, mut r) = if m > mid { (n - b, mid) } else { (a, m) };
    let p = n - 1;
    while start < r {
        let c = (start + r) / 2;
        if !less(data[p - c], data[c]) {
            start = c + 1;
        } else {
            r = c;
        }
    }
    let end = n - start;
    if start < m && m < end {
        rotate(data, start, m, end);
    }
    if a < start && start < mid {
        sym_merge(data, a, start, mid, less);
    }
    if mid < end && end < b {
        sym_merge(data, mid, end, b, less);
    }
}

fn rotate(data: &mut [Id], a: usize, m: usize, b: usize) {
    data[a..b].rotate_left(m - a);
}
