//! Relation resolution (upstream `DefaultRelationsResolver`), on state ids.

use alloc::string::String;
use alloc::vec::Vec;

use crate::schema::{Compiled, Id, Ids};
use crate::transition::{Step, StepState};
use crate::types::{LogLevel, Relation, StepType};

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
}

fn uniq(l: &mut Ids) {
    let mut i = 0;
    while i < l.len() {
        if l[..i].contains(&l[i]) {
            l.remove(i);
        } else {
            i += 1;
        }
    }
}

impl Resolve<'_> {
    fn log(&mut self, lvl: LogLevel, f: impl FnOnce() -> String) {
        if lvl <= self.log_level && self.log_level != LogLevel::Nothing {
            self.logs.push((lvl, f()));
        }
    }

    /// First Add level over `input`: appends each state's Add list, skipping active non-Multi ones.
    fn parse_add(&mut self, input: &[Id]) -> Ids {
        let mut out: Ids = Ids::from_slice(input);
        let mut visited: Ids = Ids::new();
        for &s in input {
            let d = &self.c.defs[s];
            if self.time_before[s] % 2 == 1 && !d.multi {
                continue;
            }
            if visited.contains(&s) || d.add.is_empty() {
                continue;
            }
            if self.record {
                for &a in &d.add {
                    self.steps.push(Step::new(
                        StepState::Id(s),
                        StepState::Id(a),
                        StepType::Relation,
                        Some(Relation::Add),
                    ));
                }
                for &a in &d.add {
                    self.steps.push(Step::new(StepState::None, StepState::Id(a), StepType::Set, None));
                }
            }
            out.extend_from_slice(&d.add);
            visited.push(s);
        }
        out
    }

    fn parse_require(&mut self, mut states: Ids) -> Ids {
        let mut missing_map: Vec<(Id, Ids)> = Vec::new();
        let mut before = usize::MAX;
        let mut kept = Ids::new();
        while before != states.len() {
            before = states.len();
            kept.clear();
            for &s in &states {
                let reqs = &self.c.defs[s].require;
                if reqs.is_empty() {
                    kept.push(s);
                    continue;
                }
                let mut missing = Ids::new();
                for &r in reqs {
                    if self.record {
                        self.steps.push(Step::new(
                            StepState::Id(s),
                            StepState::Id(r),
                            StepType::Relation,
                            Some(Relation::Require),
                        ));
                    }
                    if states.contains(&r) {
                        continue;
                    }
                    missing.push(r);
                    if self.record {
                        self.steps
                            .push(Step::new(StepState::Id(s), StepState::None, StepType::RemoveNotActive, None));
                        if self.called.contains(&s) {
                            self.steps.push(Step::new(StepState::None, StepState::Id(r), StepType::Cancel, None));
                        }
                    }
                }
                if missing.is_empty() {
                    kept.push(s);
                } else if let Some(e) = missing_map.iter_mut().find(|(x, _)| *x == s) {
                    e.1 = missing;
                } else {
                    missing_map.push((s, missing));
                }
            }
            core::mem::swap(&mut states, &mut kept);
        }
        if !missing_map.is_empty() {
            let c = self.c;
            let text = || {
                let mut parts = Vec::new();
                for (s, miss) in &missing_map {
                    let mut p = String::from(c.name(*s));
                    p.push_str("(-");
                    let names: Vec<&str> = miss.iter().map(|m| c.name(*m)).collect();
                    p.push_str(&names.join(" -"));
                    p.push(')');
                    parts.push(p);
                }
                parts.join(" ")
            };
            if self.is_auto {
                self.log(LogLevel::Decisions, || alloc::format!("[reject:auto] {}", text()));
            } else {
                self.log(LogLevel::Ops, || alloc::format!("[reject] {}", text()));
            }
        }
        states
    }

    /// `GetTargetStates`: the resolved target list for `states_to_set`.
    pub(crate) fn target_states(&mut self, states_to_set: &[Id]) -> Ids {
        let mut called = Ids::from_slice(states_to_set);
        uniq(&mut called);
        let mut called = self.parse_add(&called);
        uniq(&mut called);
        let called = self.parse_require(called);

        let mut blocked = Ids::new();
        let mut resolved = Ids::new();
        for &s in called.iter().rev() {
            let mut blocked_by = Ids::new();
            for &b in &called {
                if self.c.defs[b].remove.contains(&s) {
                    if self.record {
                        self.steps.push(Step::new(
                            StepState::Id(b),
                            StepState::Id(s),
                            StepType::Relation,
                            Some(Relation::Remove),
                        ));
                    }
                    blocked_by.push(b);
                }
            }
            blocked_by.retain(|b| !blocked.contains(b));
            if blocked_by.is_empty() {
                resolved.push(s);
                continue;
            }
            blocked.push(s);
            let active = self.time_before[s] % 2 == 1;
            let lvl = if active { LogLevel::Ops } else { LogLevel::Decisions };
            let c = self.c;
            self.log(lvl, || alloc::format!("[rel:remove] {} by {}", c.name(s), c.join(&blocked_by)));
            if self.record {
                let ty = if active { StepType::Remove } else { StepType::RemoveNotActive };
                self.steps.push(Step::new(StepState::None, StepState::Id(s), ty, None));
            }
        }

        let mut to_remove = Ids::new();
        for &s in &resolved {
            to_remove.extend_from_slice(&self.c.defs[s].remove);
        }
        let mut resolved = self.parse_add(&resolved);
        resolved.retain(|s| !to_remove.contains(s));
        uniq(&mut resolved);
        resolved.reverse();
        let mut target = self.parse_require(resolved);
        self.sort_states(&mut target);
        target
    }

    /// `SortStates`: stable by Require topology, then Go's stable adjacent-swap sort by After.
    pub(crate) fn sort_states(&mut self, states: &mut [Id]) {
        sort_states(self.c, states, self.steps, self.record);
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
                steps.push(Step::new(StepState::Id(a), StepState::Id(b), StepType::Relation, Some(Relation::After)));
            }
            false
        } else if c.defs[b].after.contains(&a) {
            if record {
                steps.push(Step::new(StepState::Id(b), StepState::Id(a), StepType::Relation, Some(Relation::After)));
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
