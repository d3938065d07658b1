//! Property tests: random schemas (2–8 states `A`..`H` with random flags and relations), an optional
//! random handler set (negotiation handlers declining from a fixed per-case deny set, final
//! handlers queueing `add1`/`remove1` of another state) and random mutation sequences. Invariants
//! are checked by a [`Tracer`] at every transition and by the test after every top-level call.
//!
//! Properties (spec/machine.md §2, §3.2, §4; the letters match docs/upstream-tests/misc.md):
//! * (a) a state is active iff its tick is odd — after each call (`is1` vs `tick`, `active_states`)
//!   and per transition (the odd ticks of `time_after` of an accepted transition are its targets);
//! * (b) ticks never decrease: `time_after >= time_before` per transition, no tick changes between
//!   transitions, and per call; an accepted transition ticks exactly as §2 says;
//! * (c) a transition canceled before its final phase changes no tick (see [`Checker::end`] for
//!   the exact condition), and a call whose first transition was canceled that way changes nothing;
//! * (d) after every accepted transition every active state's Require is active, and active states
//!   remove each other only in the upstream case described at [`resolve_reference`] (Q2).
//!
//! Also checked: `Machine::new` fails exactly for Require cycles; the call result follows §3.2
//! item 6; relation acceptance follows §4.5; the target set equals a reference model of §4.2.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amrpc_core::compat::{S, parse_struct, s_add};
use amrpc_core::{EXCEPTION, Error, Handlers, Machine, MutationType, Opts, Outcome, Schema, State, Tracer, Transition};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const NAMES: [&str; 8] = ["A", "B", "C", "D", "E", "F", "G", "H"];
/// Final handlers stop mutating after this many calls per top-level call, so that handler
/// ping-pong (`AState` adds B, `BState` adds A, with A and B removing each other) terminates.
const FINAL_BUDGET: usize = 6;

// ---------------------------------------------------------------------------------------------
// generated cases

#[derive(Clone, Debug)]
struct Def {
    auto: bool,
    multi: bool,
    require: Vec<usize>,
    add: Vec<usize>,
    remove: Vec<usize>,
    after: Vec<usize>,
}

#[derive(Clone, Debug)]
struct Final {
    /// `XState` or `XEnd`.
    handler: String,
    add: bool,
    target: &'static str,
}

#[derive(Clone, Debug)]
struct HandlerSpec {
    /// Negotiation handlers that return false.
    deny: Vec<String>,
    finals: Vec<Final>,
}

#[derive(Clone, Debug)]
struct Op {
    ty: MutationType,
    states: Vec<&'static str>,
}

#[derive(Clone)]
struct Case {
    defs: Vec<Def>,
    handlers: Option<HandlerSpec>,
    ops: Vec<Op>,
}

fn rel_names(l: &[usize]) -> S {
    l.iter().map(|i| NAMES[*i].to_string()).collect()
}

impl Case {
    fn schema(&self) -> Schema {
        self.defs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let st = State {
                    auto: d.auto,
                    multi: d.multi,
                    require: rel_names(&d.require),
                    add: rel_names(&d.add),
                    remove: rel_names(&d.remove),
                    after: rel_names(&d.after),
                    ..State::default()
                };
                (NAMES[i].to_string(), st)
            })
            .collect()
    }

    fn has_require_cycle(&self) -> bool {
        // 0 = new, 1 = on the current path, 2 = done
        fn visit(defs: &[Def], s: usize, mark: &mut [u8]) -> bool {
            match mark[s] {
                1 => return true,
                2 => return false,
                _ => {}
            }
            mark[s] = 1;
            if defs[s].require.iter().any(|r| visit(defs, *r, mark)) {
                return true;
            }
            mark[s] = 2;
            false
        }
        let mut mark = vec![0u8; self.defs.len()];
        (0..self.defs.len()).any(|s| visit(&self.defs, s, &mut mark))
    }
}

/// Compact form, so that a shrunk counterexample reads like a schema.
impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "schema:")?;
        for (i, d) in self.defs.iter().enumerate() {
            write!(f, "  {}{{", NAMES[i])?;
            if d.auto {
                write!(f, " auto")?;
            }
            if d.multi {
                write!(f, " multi")?;
            }
            for (k, l) in [
                ("require", &d.require),
                ("add", &d.add),
                ("remove", &d.remove),
                ("after", &d.after),
            ] {
                if !l.is_empty() {
                    write!(f, " {k}[{}]", rel_names(l).join(" "))?;
                }
            }
            writeln!(f, " }}")?;
        }
        if let Some(h) = &self.handlers {
            writeln!(f, "handlers: deny [{}]", h.deny.join(" "))?;
            for fin in &h.finals {
                let op = if fin.add { "add1" } else { "remove1" };
                writeln!(f, "  {}: {op}({})", fin.handler, fin.target)?;
            }
        }
        write!(f, "ops:")?;
        for op in &self.ops {
            write!(f, " {}({})", op.ty, op.states.join(" "))?;
        }
        Ok(())
    }
}

/// Every negotiation handler name for the first `n` states.
fn negotiation_names(n: usize) -> Vec<String> {
    let mut v = Vec::new();
    for x in &NAMES[..n] {
        v.push(format!("{x}Enter"));
        v.push(format!("{x}Exit"));
        v.push(format!("Any{x}"));
        v.push(format!("{x}Any"));
        for y in &NAMES[..n] {
            v.push(format!("{x}{y}")); // `XX` is the self handler
        }
    }
    v.push("AnyAny".to_string());
    v
}

fn def_strategy(n: usize) -> impl Strategy<Value = Def> {
    let rel = move |max: usize| proptest::collection::vec(0..n, 0..=max);
    (
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.25),
        rel(2),
        rel(3),
        rel(3),
        rel(2),
    )
        .prop_map(|(auto, multi, require, add, remove, after)| Def {
            auto,
            multi,
            require,
            add,
            remove,
            after,
        })
}

fn handlers_strategy(n: usize) -> impl Strategy<Value = HandlerSpec> {
    let names = negotiation_names(n);
    let deny = proptest::collection::btree_set(0..names.len(), 0..=3);
    let finals = proptest::collection::vec((0..n, any::<bool>(), any::<bool>(), 0..n), 0..=4);
    (deny, finals).prop_map(move |(deny, finals)| HandlerSpec {
        deny: deny.into_iter().map(|i| names[i].clone()).collect(),
        finals: finals
            .into_iter()
            .map(|(s, end, add, other)| {
                // always another state
                let other = if other == s { (other + 1) % n } else { other };
                let suffix = if end { "End" } else { "State" };
                Final {
                    handler: format!("{}{suffix}", NAMES[s]),
                    add,
                    target: NAMES[other],
                }
            })
            .collect(),
    })
}

fn ops_strategy(n: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = (0..3usize, proptest::collection::vec(0..n, 1..=3)).prop_map(|(ty, states)| Op {
        ty: [MutationType::Add, MutationType::Remove, MutationType::Set][ty],
        states: states.into_iter().map(|i| NAMES[i]).collect(),
    });
    proptest::collection::vec(op, 1..=25)
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (2usize..=8)
        .prop_flat_map(|n| {
            (
                proptest::collection::vec(def_strategy(n), n),
                // most cases get an acyclic Require graph (a state only requires earlier states);
                // the rest keep raw lists, self-references included, and often have cycles
                prop::bool::weighted(0.75),
                prop::option::weighted(0.6, handlers_strategy(n)),
                ops_strategy(n),
            )
        })
        .prop_map(|(mut defs, acyclic, handlers, ops)| {
            if acyclic {
                for (i, d) in defs.iter_mut().enumerate() {
                    d.require.retain(|r| *r < i);
                }
            }
            Case { defs, handlers, ops }
        })
}

// ---------------------------------------------------------------------------------------------
// reference model of relation resolution (spec §4.1 item 3, §4.2)

fn uniq(l: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(l.len());
    for s in l {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn def<'a>(s: &'a Schema, name: &str) -> &'a State {
    s.get(name).expect("a state of the schema")
}

/// Membership-only model of `GetTargetStates`. Returns `(R, T)`: `R` is the first-level set that
/// survives the Remove filter, `T` the target set.
///
/// Why active states can still exclude each other (vectors README §5 Q2): `toRemove` is collected
/// from `R` only, and the second Add level (`parseAdd(R)`) brings states whose own Remove lists
/// are never consulted. Consequences used by the checks:
/// * no two states of `R` are related by Remove (the first of them met by the filter would have
///   been dropped by the other, which survives);
/// * a state of `R` never coexists in `T` with a state it removes (that state is in `toRemove`);
/// * so if active `X` removes active `Y`, `X` is a second-level implied state (`X ∉ R`), and a pair
///   removing *each other* consists of two second-level implied states. Minimal example, legitimate
///   upstream behaviour (see `q2_second_level_implied_states_remove_each_other`):
///   `A{Add B}`, `B{Add C D}`, `C{Remove D}`, `D{Remove C}`: `Add(A)` activates A B C D.
fn resolve_reference(
    s: &Schema,
    ty: MutationType,
    called: &[String],
    before: &BTreeSet<String>,
    active_order: &[String],
) -> (BTreeSet<String>, BTreeSet<String>) {
    let states_to_set: Vec<String> = match ty {
        MutationType::Remove => active_order.iter().filter(|a| !called.contains(a)).cloned().collect(),
        MutationType::Add => called.iter().chain(active_order).cloned().collect(),
        _ => called.to_vec(),
    };
    // one Add level: active non-Multi states don't re-apply their Add
    let parse_add = |l: &[String]| -> Vec<String> {
        let mut out = l.to_vec();
        for x in uniq(l.to_vec()) {
            let d = def(s, &x);
            if before.contains(&x) && !d.multi {
                continue;
            }
            out.extend(d.add.iter().cloned());
        }
        out
    };
    let parse_require = |mut l: Vec<String>| -> Vec<String> {
        loop {
            let snapshot = l.clone();
            l.retain(|x| def(s, x).require.iter().all(|r| snapshot.contains(r)));
            if l.len() == snapshot.len() {
                return l;
            }
        }
    };
    let c = parse_require(uniq(parse_add(&uniq(states_to_set))));
    let mut blocked: Vec<&String> = Vec::new();
    let mut r: Vec<String> = Vec::new();
    for x in c.iter().rev() {
        let blockers = c
            .iter()
            .filter(|b| def(s, b).remove.contains(x) && !blocked.contains(b))
            .count();
        if blockers == 0 {
            r.push(x.clone());
        } else {
            blocked.push(x);
        }
    }
    let to_remove: Vec<&String> = r.iter().flat_map(|x| def(s, x).remove.iter()).collect();
    let mut r2 = uniq(parse_add(&r).into_iter().filter(|x| !to_remove.contains(&x)).collect());
    r2.reverse();
    let t = parse_require(r2);
    (r.into_iter().collect(), t.into_iter().collect())
}

// ---------------------------------------------------------------------------------------------
// the tracer

/// One transition seen by the tracer during the current top-level call.
#[derive(Clone, Debug)]
struct Rec {
    id: u64,
    ty: MutationType,
    auto: bool,
    called: Vec<String>,
    /// False when `transition_end` never came (a declining `AnyAny`, upstream quirk §4.7).
    ended: bool,
    accepted: bool,
    target: Vec<String>,
    time_after: Vec<u64>,
}

#[derive(Default)]
struct TraceState {
    /// The machine's active list, in its order (= the last accepted transition's target order).
    active_order: Vec<String>,
    /// The clock after the last traced transition.
    last_time: Vec<u64>,
    records: Vec<Rec>,
    violations: Vec<String>,
}

struct Checker {
    /// State order of `time_before()`/`time_after()`.
    order: Vec<String>,
    /// The normalised schema.
    schema: Schema,
    /// Handlers may decline (non-empty deny set).
    may_decline: bool,
    st: Mutex<TraceState>,
}

impl Checker {
    fn new(m: &Machine, may_decline: bool) -> Self {
        let order = m.state_names();
        Checker {
            st: Mutex::new(TraceState {
                last_time: vec![0; order.len()],
                ..TraceState::default()
            }),
            order,
            schema: m.get_struct(),
            may_decline,
        }
    }

    fn begin_call(&self) {
        self.st.lock().unwrap().records.clear();
    }

    /// Records of the call and all violations so far.
    fn end_call(&self) -> (Vec<Rec>, Vec<String>) {
        let st = self.st.lock().unwrap();
        (st.records.clone(), st.violations.clone())
    }

    fn active_order(&self) -> Vec<String> {
        self.st.lock().unwrap().active_order.clone()
    }

    fn multi(&self, s: &str) -> bool {
        def(&self.schema, s).multi
    }

    fn end(&self, t: &Transition) {
        let mut st = self.st.lock().unwrap();
        let mut v: Vec<String> = Vec::new();
        let tag = format!(
            "transition {} {}({})",
            t.id(),
            t.mutation_type(),
            t.called_states().join(" ")
        );
        let before = t.time_before();
        let Some(after) = t.time_after() else {
            st.violations.push(format!("{tag}: no time_after in transition_end"));
            return;
        };
        let target: Vec<String> = t.target_states().iter().map(|s| s.to_string()).collect();
        let called: Vec<String> = t.called_states().iter().map(|s| s.to_string()).collect();
        let states_before: BTreeSet<String> = t.states_before().iter().map(|s| s.to_string()).collect();

        // (b) per transition
        if before.iter().zip(&after).any(|(b, a)| a < b) {
            v.push(format!("{tag}: a tick decreased: {before:?} -> {after:?}"));
        }
        // the resolver's target set equals the reference model's
        let (first_level, ref_target) = resolve_reference(
            &self.schema,
            t.mutation_type(),
            &called,
            &states_before,
            &st.active_order,
        );
        let target_set: BTreeSet<String> = target.iter().cloned().collect();
        if target_set != ref_target {
            v.push(format!("{tag}: target {target_set:?}, reference model {ref_target:?}"));
        }
        // §4.5: acceptance by relations
        let relations_ok = match (t.mutation_type(), t.is_auto()) {
            (MutationType::Remove, _) => true,
            (_, true) => called.iter().any(|c| target_set.contains(c)),
            (_, false) => called.iter().all(|c| target_set.contains(c)),
        };
        if !relations_ok && t.accepted() {
            v.push(format!(
                "{tag}: accepted although relations reject it (target {target:?})"
            ));
        }
        if relations_ok && !t.accepted() && !self.may_decline {
            v.push(format!(
                "{tag}: canceled with no relation rejection and no declining handler"
            ));
        }

        if !t.accepted() {
            // (c) `accepted()` is false exactly when the transition was canceled: by relations
            // (setupAccepted), by a negotiation handler returning false / timing out / panicking —
            // all before `set_active_states` — or by a *final* handler timing out or panicking,
            // after the clock was applied (then `emit_events` also sets `accepted = false`). A
            // declining `AnyAny` returns before `transition_end`, so it never gets here. This test
            // disables handler timeouts and its handlers never panic, so every non-accepted
            // transition seen here was canceled before the final phase and must not tick.
            if after != before {
                v.push(format!("{tag}: canceled but ticked: {before:?} -> {after:?}"));
            }
        } else {
            // (a)/(b): the clock rule of §2, exactly
            for (i, name) in self.order.iter().enumerate() {
                let was = before[i] % 2 == 1;
                let is = target_set.contains(name);
                let expected = before[i]
                    + match (was, is) {
                        (false, true) | (true, false) => 1,
                        (true, true) if self.multi(name) && called.contains(name) => 2,
                        _ => 0,
                    };
                if after[i] != expected {
                    v.push(format!(
                        "{tag}: {name} ticked {} -> {}, expected {expected}",
                        before[i], after[i]
                    ));
                }
            }
            // (a): active (odd) == target
            let odd: BTreeSet<String> = self
                .order
                .iter()
                .zip(&after)
                .filter(|(_, t)| *t % 2 == 1)
                .map(|(n, _)| n.clone())
                .collect();
            if odd != target_set {
                v.push(format!("{tag}: odd ticks {odd:?} != target {target_set:?}"));
            }
            // (d) Require
            for x in &target_set {
                for r in &def(&self.schema, x).require {
                    if !target_set.contains(r) {
                        v.push(format!("{tag}: {x} active without its requirement {r}"));
                    }
                }
            }
            // (d) Remove: see `resolve_reference` for why this is the exact restriction
            for x in &target_set {
                for y in &def(&self.schema, x).remove {
                    if !target_set.contains(y) {
                        continue;
                    }
                    // x removes y and both are active: x must be a second-level implied state
                    if first_level.contains(x) {
                        v.push(format!(
                            "{tag}: {x} (first level) active together with {y}, which it removes"
                        ));
                    }
                    // mutual: both must be second-level implied states
                    if def(&self.schema, y).remove.contains(x) && (first_level.contains(x) || first_level.contains(y)) {
                        v.push(format!("{tag}: {x} and {y} remove each other and are both active"));
                    }
                }
            }
            st.active_order = target.clone();
        }

        let rec = st.records.iter_mut().rev().find(|r| r.id == t.id());
        match rec {
            Some(r) => {
                r.ended = true;
                r.accepted = t.accepted();
                r.target = target;
                r.time_after = after.clone();
            }
            None => v.push(format!("{tag}: transition_end without transition_init")),
        }
        st.last_time = after;
        st.violations.extend(v);
    }
}

impl Tracer for Checker {
    fn transition_init(&self, t: &Transition) {
        let mut st = self.st.lock().unwrap();
        let before = t.time_before();
        // (b) between transitions: nothing ticks outside a transition
        if before != st.last_time {
            let msg = format!(
                "transition {}: clock {:?} != last known {:?}",
                t.id(),
                before,
                st.last_time
            );
            st.violations.push(msg);
        }
        st.records.push(Rec {
            id: t.id(),
            ty: t.mutation_type(),
            auto: t.is_auto(),
            called: t.called_states().iter().map(|s| s.to_string()).collect(),
            ended: false,
            accepted: false,
            target: Vec::new(),
            time_after: Vec::new(),
        });
    }

    fn transition_end(&self, t: &Transition) {
        self.end(t);
    }
}

// ---------------------------------------------------------------------------------------------
// the property

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let n = case.defs.len();
    let opts = Opts {
        // no handler timeouts (a slow debug build must not cancel transitions) and handler panics
        // unwind into the test instead of becoming Exception
        handler_timeout: Some(Duration::ZERO),
        dont_panic_to_exception: true,
        ..Opts::default()
    };
    let cyclic = case.has_require_cycle();
    let m = match Machine::new(case.schema(), opts) {
        Ok(m) => m,
        Err(e) => {
            prop_assert!(cyclic, "Machine::new failed without a Require cycle: {e}");
            prop_assert!(matches!(e, Error::Relation(_)), "unexpected error {e:?}");
            prop_assert!(e.to_string().contains("Require cycle"), "unexpected error {e}");
            return Err(TestCaseError::reject("Require cycle"));
        }
    };
    prop_assert!(!cyclic, "Machine::new accepted a Require cycle");

    // handlers
    let fired = Arc::new(AtomicUsize::new(0));
    let mut may_decline = false;
    if let Some(spec) = &case.handlers {
        may_decline = !spec.deny.is_empty();
        let mut h = Handlers::new("props");
        for name in negotiation_names(n) {
            let decline = spec.deny.contains(&name);
            h = h.on(name, move |_e| !decline);
        }
        for fin in &spec.finals {
            let fired = fired.clone();
            let (add, target) = (fin.add, fin.target);
            h = h.on_final(fin.handler.clone(), move |e| {
                if fired.fetch_add(1, Ordering::Relaxed) < FINAL_BUDGET {
                    // queued: runs after this transition, in the same drain
                    if add {
                        e.machine().add1(target, None);
                    } else {
                        e.machine().remove1(target, None);
                    }
                }
            });
        }
        m.bind_handlers(h).map_err(|e| fail(format!("bind_handlers: {e}")))?;
    }

    let checker = Arc::new(Checker::new(&m, may_decline));
    m.bind_tracer(checker.clone());
    let names = m.state_names();
    let schema = m.get_struct();

    for (i, op) in case.ops.iter().enumerate() {
        let tag = format!("op #{i} {}({})", op.ty, op.states.join(" "));
        fired.store(0, Ordering::Relaxed);
        checker.begin_call();
        let time_before = m.time(None);
        let out = match op.ty {
            MutationType::Add => m.add(&op.states, None),
            MutationType::Remove => m.remove(&op.states, None),
            _ => m.set(&op.states, None),
        };
        let time_after = m.time(None);
        let (records, violations) = checker.end_call();
        prop_assert!(violations.is_empty(), "{tag}: {}", violations.join("\n"));

        // the caller drains the queue itself
        prop_assert!(!out.is_queued(), "{}", tag);
        let first = records.first().ok_or_else(|| fail(format!("{tag}: no transition")))?;
        let called: Vec<String> = uniq(op.states.iter().map(|s| s.to_string()).collect());
        prop_assert!(
            first.ty == op.ty && !first.auto && first.called == called,
            "{}: first {:?}",
            tag,
            first
        );

        // §3.2 item 6: the result is the first transition's. An accepted transition can still
        // return Canceled: a Remove whose called state is re-implied by an active Multi state
        // (vectors README §5 Q1/Q9) ticks, even re-enters, and reports Canceled. Such calls are not
        // "canceled" for (c); only a first transition that was not accepted is.
        let expected = if !first.ended || !first.accepted {
            Outcome::Canceled
        } else {
            let active_after = |s: &String| {
                let i = names.iter().position(|n| n == s).unwrap();
                first.time_after[i] % 2 == 1
            };
            let ok = match op.ty {
                MutationType::Remove => !first.called.iter().any(active_after),
                _ => first.target.iter().all(active_after),
            };
            if ok { Outcome::Executed } else { Outcome::Canceled }
        };
        prop_assert_eq!(out, expected, "{}: first transition {:?}", tag, first);

        // (c) per call: a first transition canceled before its final phase ends the call unchanged
        // (nothing was queued: negotiation handlers don't mutate and the queue was empty)
        if !first.ended || !first.accepted {
            prop_assert_eq!(records.len(), 1, "{}", tag);
            prop_assert_eq!(&time_after, &time_before, "{}: canceled call ticked", tag);
        }

        // (b) per call
        prop_assert!(
            time_before.iter().zip(&time_after).all(|(b, a)| a >= b),
            "{}: a tick decreased: {:?} -> {:?}",
            tag,
            time_before,
            time_after
        );

        // (a) per call
        let mut odd = BTreeSet::new();
        for s in &names {
            let tick = m.tick(s);
            prop_assert_eq!(m.is1(s), tick % 2 == 1, "{}: {} tick {}", tag, s, tick);
            if tick % 2 == 1 {
                odd.insert(s.clone());
            }
        }
        let active = m.active_states();
        prop_assert_eq!(active.iter().cloned().collect::<BTreeSet<_>>(), odd, "{}", tag);
        prop_assert_eq!(&active, &checker.active_order(), "{}: active order", tag);
        // (d) per call: Require holds in the final state
        for x in &active {
            for r in &def(&schema, x).require {
                prop_assert!(active.contains(r), "{}: {} active without {}", tag, x, r);
            }
        }
        // no handler timed out or panicked
        prop_assert_eq!(m.tick(EXCEPTION), 0, "{}", tag);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn machine_invariants_hold_for_random_schemas_and_mutations(case in case_strategy()) {
        run_case(&case)?;
    }

    /// `parse_struct` postconditions (§1.1) and idempotence, on schemas with self-references.
    #[test]
    fn parse_struct_normalises(case in case_strategy()) {
        let s = case.schema();
        let p = parse_struct(&s);
        prop_assert_eq!(parse_struct(&p), p.clone());
        for (name, st) in &p {
            let orig = &s[name];
            prop_assert!(!st.remove.contains(name) && !st.after.contains(name));
            prop_assert!(st.remove.iter().all(|r| !st.add.contains(r)));
            // only the normalised relations change, order kept
            let kept: S = orig.remove.iter().filter(|r| *r != name && !orig.add.contains(r)).cloned().collect();
            prop_assert_eq!(&st.remove, &kept);
            prop_assert_eq!(&st.require, &orig.require);
            prop_assert_eq!(&st.add, &orig.add);
        }
    }

    /// `s_add` (§1.6): de-duplicated concatenation keeping first occurrences.
    #[test]
    fn s_add_is_ordered_union(a in proptest::collection::vec(0usize..8, 0..6), b in proptest::collection::vec(0usize..8, 0..6)) {
        let (a, b) = (rel_names(&a), rel_names(&b));
        let out = s_add(&[&a, &b]);
        let expected = uniq(a.iter().chain(&b).cloned().collect());
        prop_assert_eq!(out, expected);
    }
}

/// The minimal case behind restriction (d): two second-level implied states that remove each
/// other both become active (spec §4.2 pseudo-code; vectors README §5 Q2 shows the one-directional
/// form). Upstream v0.8.0 resolves `Add(A)` to A B C D in the same way.
#[test]
fn q2_second_level_implied_states_remove_each_other() {
    let m = Machine::new(
        amrpc_core::schema([
            ("A", State::new().add(&["B"])),
            ("B", State::new().add(&["C", "D"])),
            ("C", State::new().remove(&["D"])),
            ("D", State::new().remove(&["C"])),
        ]),
        Opts::default(),
    )
    .unwrap();
    assert_eq!(m.add1("A", None), Outcome::Executed);
    assert!(m.is(&["A", "B", "C", "D"]));
    // the reference model agrees and places C and D outside the first level
    let before = BTreeSet::new();
    let (first, target) = resolve_reference(&m.get_struct(), MutationType::Add, &["A".into()], &before, &[]);
    assert_eq!(first, ["A", "B"].iter().map(|s| s.to_string()).collect());
    assert_eq!(target, ["A", "B", "C", "D"].iter().map(|s| s.to_string()).collect());
}

/// The minimal case proptest shrinks to without restriction (d): the called state C is dropped
/// for its missing requirement at the first level, then both C and A come back as second-level
/// implications of B (spec §4.2: `parseAdd(R)` with `R = [B]`, `toRemove = []`), so C and A, which
/// remove each other, end up active together. The transition is accepted (C is in the target).
#[test]
fn q2_called_state_returns_at_second_level_next_to_a_state_it_removes() {
    let m = Machine::new(
        amrpc_core::schema([
            ("A", State::new().remove(&["C"])),
            ("B", State::new().add(&["C", "A"])),
            ("C", State::new().require(&["A"]).add(&["B"]).remove(&["A"])),
        ]),
        Opts::default(),
    )
    .unwrap();
    assert_eq!(m.add1("C", None), Outcome::Executed);
    assert!(m.is(&["A", "B", "C"]));
    let (first, target) = resolve_reference(&m.get_struct(), MutationType::Add, &["C".into()], &BTreeSet::new(), &[]);
    assert_eq!(first, ["B"].iter().map(|s| s.to_string()).collect());
    assert_eq!(target, ["A", "B", "C"].iter().map(|s| s.to_string()).collect());
}
