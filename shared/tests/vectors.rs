//! Replays every recorded run of upstream asyncmachine-go v0.8.0 in
//! `fixtures/machine-vectors.jsonl` (format: `../shared/vectors/README.md`) and compares every field.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amrpc_core::{Handlers, Machine, MutationType, Opts, Outcome, Schema, State, Tracer, Transition};
use serde::Deserialize;

#[derive(Deserialize)]
struct Rel {
    auto: bool,
    multi: bool,
    require: Vec<String>,
    add: Vec<String>,
    remove: Vec<String>,
    after: Vec<String>,
}

#[derive(Deserialize)]
struct Op {
    op: String,
    state: String,
}

#[derive(Deserialize)]
struct HandlerMutation {
    handler: String,
    ops: Vec<Op>,
}

#[derive(Deserialize)]
struct StepV {
    op: String,
    states: Vec<String>,
    result: String,
    active: Vec<String>,
    active_order: Vec<String>,
    clock: BTreeMap<String, u64>,
    calls: Vec<String>,
    transitions: Vec<String>,
    #[serde(default)]
    handler_results: Vec<String>,
}

#[derive(Deserialize)]
struct Case {
    case: u64,
    states: Vec<String>,
    state_names: Vec<String>,
    schema: BTreeMap<String, Rel>,
    deny: Vec<String>,
    handler_mutation: Option<HandlerMutation>,
    require_topology: Vec<String>,
    status: String,
    status_step: Option<i64>,
    steps: Vec<StepV>,
}

#[derive(Default)]
struct Rec {
    calls: Vec<String>,
    transitions: Vec<String>,
    handler_results: Vec<String>,
}

struct TransitionLog(Arc<Mutex<Rec>>);

impl Tracer for TransitionLog {
    fn transition_init(&self, t: &Transition) {
        let mut r = self.0.lock().unwrap();
        let n = r.calls.len();
        let ty = match t.mutation_type() {
            MutationType::Add => "add",
            MutationType::Remove => "remove",
            MutationType::Set => "set",
            MutationType::Eval => "eval",
        };
        let auto = if t.is_auto() { ":auto" } else { "" };
        r.transitions
            .push(format!("{ty}{auto} {} @{n}", t.called_states().join(" ")));
    }
}

fn all_handler_names(states: &[String]) -> Vec<String> {
    let mut out = vec!["AnyAny".to_string()];
    for x in states {
        for suffix in ["Enter", "Exit", "Any", "State", "End"] {
            out.push(format!("{x}{suffix}"));
        }
        out.push(format!("Any{x}"));
        for y in states {
            out.push(format!("{x}{y}"));
        }
    }
    out
}

fn first_diff<T: PartialEq + std::fmt::Debug>(field: &str, want: &T, got: &T) -> Option<String> {
    (want != got).then(|| format!("{field}: want {want:?}, got {got:?}"))
}

fn replay(case: &Case) -> Result<(), String> {
    let schema: Schema = case
        .schema
        .iter()
        .map(|(k, r)| {
            let s = State {
                auto: r.auto,
                multi: r.multi,
                require: r.require.clone(),
                add: r.add.clone(),
                remove: r.remove.clone(),
                after: r.after.clone(),
                tags: vec![],
                args_ts: None,
            };
            (k.clone(), s)
        })
        .collect();
    let opts = Opts {
        handler_timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    let m = Machine::new(schema, opts);
    if case.status == "panic" && case.status_step == Some(-1) {
        return match m {
            Err(_) => Ok(()),
            Ok(_) => Err("New() must fail (Require cycle), but the machine was created".into()),
        };
    }
    if case.status != "ok" {
        return Err(format!("unsupported status {}", case.status));
    }
    let m = m.map_err(|e| format!("New() failed: {e}"))?;
    if let Some(d) = first_diff("state_names", &case.state_names, &m.state_names()) {
        return Err(d);
    }
    if let Some(d) = first_diff("require_topology", &case.require_topology, &m.require_topology()) {
        return Err(d);
    }
    let rec = Arc::new(Mutex::new(Rec::default()));
    m.bind_tracer(Arc::new(TransitionLog(rec.clone())));
    let mut h = Handlers::new("VectorHandlers");
    for name in all_handler_names(&case.states) {
        let rec = rec.clone();
        let deny = case.deny.contains(&name);
        let is_final = name.ends_with("State") || name.ends_with("End");
        let hm_ops: Vec<(String, String)> = match &case.handler_mutation {
            Some(hm) if hm.handler == name => hm.ops.iter().map(|o| (o.op.clone(), o.state.clone())).collect(),
            _ => vec![],
        };
        let n2 = name.clone();
        h = h.on(name, move |e| {
            rec.lock().unwrap().calls.push(n2.clone());
            for (op, state) in &hm_ops {
                let r = match op.as_str() {
                    "add" => e.machine().add1(state, None),
                    _ => e.machine().remove1(state, None),
                };
                rec.lock().unwrap().handler_results.push(r.to_string());
            }
            is_final || !deny
        });
    }
    m.bind_handlers(h).map_err(|e| format!("bind: {e}"))?;
    for (i, st) in case.steps.iter().enumerate() {
        *rec.lock().unwrap() = Rec::default();
        let states: Vec<&str> = st.states.iter().map(|s| s.as_str()).collect();
        let res: Outcome = match st.op.as_str() {
            "add" => m.add(&states, None),
            "remove" => m.remove(&states, None),
            _ => m.set(&states, None),
        };
        let r = rec.lock().unwrap();
        let active: Vec<String> = m.state_names().into_iter().filter(|s| m.is1(s)).collect();
        let clock: BTreeMap<String, u64> = m.clock(None).into_iter().collect();
        let diff = first_diff("result", &st.result, &res.to_string())
            .or_else(|| first_diff("active", &st.active, &active))
            .or_else(|| first_diff("active_order", &st.active_order, &m.active_states()))
            .or_else(|| first_diff("clock", &st.clock, &clock))
            .or_else(|| first_diff("calls", &st.calls, &r.calls))
            .or_else(|| first_diff("transitions", &st.transitions, &r.transitions))
            .or_else(|| first_diff("handler_results", &st.handler_results, &r.handler_results));
        if let Some(d) = diff {
            return Err(format!("step {i} ({} {:?}): {d}", st.op, st.states));
        }
    }
    m.dispose();
    Ok(())
}

#[test]
fn upstream_vectors_replay() {
    let text = include_str!("fixtures/machine-vectors.jsonl");
    let mut failures = Vec::new();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Case = serde_json::from_str(line).expect("valid vector line");
        n += 1;
        if let Err(e) = replay(&case) {
            failures.push(format!("case {}: {e}", case.case));
        }
    }
    assert_eq!(n, 500, "fixture should hold 500 cases");
    assert!(
        failures.is_empty(),
        "{} of {n} cases mismatch; first ones:\n{}",
        failures.len(),
        failures.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}
