//! Fixtures shared by the ported upstream tests (upstream `machine_test.go` helpers and
//! `utils_test.go`, spec/machine.md §11).
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use amrpc_core::{Handlers, LogLevel, Machine, Opts, Schema, State};

/// Schema `A B C D`, all without relations (plus the automatic `Exception`).
pub fn no_rels_schema() -> Schema {
    amrpc_core::schema([
        ("A", State::new()),
        ("B", State::new()),
        ("C", State::new()),
        ("D", State::new()),
    ])
}

/// Upstream `NewNoRels`: `A B C D` without relations, then `Set(initial)` if given.
pub fn new_no_rels(initial: Option<&[&str]>) -> Machine {
    let m = Machine::new(no_rels_schema(), Opts::default()).unwrap();
    if let Some(i) = initial {
        m.set(i, None);
    }
    m
}

/// Upstream `NewRels` schema: `A{Auto, Require C}`, `B{Multi, Add C}`, `C{After D}`, `D{Add C B}`.
pub fn rels_schema() -> Schema {
    amrpc_core::schema([
        ("A", State::new().auto().require(&["C"])),
        ("B", State::new().multi().add(&["C"])),
        ("C", State::new().after(&["D"])),
        ("D", State::new().add(&["C", "B"])),
    ])
}

/// Upstream `NewRels`, then `Set(initial)` if given.
pub fn new_rels(initial: Option<&[&str]>) -> Machine {
    let m = Machine::new(rels_schema(), Opts::default()).unwrap();
    if let Some(i) = initial {
        m.set(i, None);
    }
    m
}

/// Upstream `NewCustomStates`.
pub fn new_custom(schema: Schema) -> Machine {
    Machine::new(schema, Opts::default()).unwrap()
}

/// Replace relations after creation (upstream tests edit the schema map directly): apply `f` to
/// the schema and set it back with the current state order.
pub fn edit_schema(m: &Machine, f: impl FnOnce(&mut Schema)) {
    let mut s = m.get_struct();
    f(&mut s);
    let names = m.state_names();
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    m.set_struct(s, &names).unwrap();
}

/// Upstream `History`: records exactly these handler names (final-style, never cancels).
pub const HISTORY_NAMES: &[&str] = &[
    "AD", "AC", "AExit", "AA", "AAny", "AState", "AB", "BEnter", "BState", "BB", "AnyB", "BExit", "BD", "BAny", "BC",
    "AnyC", "CEnter", "CState", "AnyD", "DEnter", "DState",
];

/// What `History` recorded.
#[derive(Default, Debug)]
pub struct History {
    pub order: Vec<String>,
    pub counter: BTreeMap<String, usize>,
}

/// Upstream `trackTransitions`: bind a fresh `History` handler set.
pub fn track_transitions(m: &Machine) -> Arc<Mutex<History>> {
    let h = Arc::new(Mutex::new(History::default()));
    let mut set = Handlers::new("History");
    for name in HISTORY_NAMES {
        let h = h.clone();
        let n = name.to_string();
        set = set.on(*name, move |_e| {
            let mut h = h.lock().unwrap();
            h.order.push(n.clone());
            *h.counter.entry(n.clone()).or_default() += 1;
            true
        });
    }
    m.bind_handlers(set).unwrap();
    h
}

/// Upstream `assertStates`: multiset equality with the active list.
#[track_caller]
pub fn assert_states(m: &Machine, expected: &[&str]) {
    let mut got = m.active_states();
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "active states (as a set)");
}

/// Upstream `assertTime`.
#[track_caller]
pub fn assert_time(m: &Machine, states: &[&str], time: &[u64]) {
    assert_eq!(m.time(Some(states)), time, "time of {states:?}");
}

/// Upstream `assertNoException`.
#[track_caller]
pub fn assert_no_exception(m: &Machine) {
    assert!(!m.is1("Exception"), "Exception is active");
}

/// Upstream `assertEventCounts`: every recorded count equals `n`.
#[track_caller]
pub fn assert_event_counts(h: &Arc<Mutex<History>>, n: usize) {
    let h = h.lock().unwrap();
    for (k, v) in &h.counter {
        assert_eq!(*v, n, "count of {k}");
    }
}

/// Upstream `assertEventCountsMin`: every recorded count is ≤ `n` (arguments swapped upstream).
#[track_caller]
pub fn assert_event_counts_min(h: &Arc<Mutex<History>>, n: usize) {
    let h = h.lock().unwrap();
    for (k, v) in &h.counter {
        assert!(*v <= n, "count of {k} is {v}, more than {n}");
    }
}

/// Upstream `assertOrder`: consecutive names appear in this order (by first occurrence).
#[track_caller]
pub fn assert_order(h: &Arc<Mutex<History>>, names: &[&str]) {
    let h = h.lock().unwrap();
    let pos = |n: &str| h.order.iter().position(|x| x == n);
    for w in names.windows(2) {
        let (a, b) = (pos(w[0]), pos(w[1]));
        assert!(a.is_some(), "{} not called; order {:?}", w[0], h.order);
        assert!(b.is_some(), "{} not called; order {:?}", w[1], h.order);
        assert!(a < b, "{} should come before {}; order {:?}", w[0], w[1], h.order);
    }
}

/// Upstream `captureLog`: level Everything, every line appended with a newline.
pub fn capture_log(m: &Machine) -> Arc<Mutex<String>> {
    let s = Arc::new(Mutex::new(String::new()));
    let s2 = s.clone();
    m.set_logger_simple(
        move |line| {
            let mut s = s2.lock().unwrap();
            s.push_str(line);
            s.push('\n');
        },
        LogLevel::Everything,
    );
    s
}

/// Upstream `assertString`: dedented, trimmed `text` equals the trimmed `Inspect(states)`.
#[track_caller]
pub fn assert_string(m: &Machine, text: &str, states: Option<&[&str]>) {
    let want = dedent(text);
    assert_eq!(m.inspect(states).trim_matches('\n'), want.trim_matches('\n'));
}

/// Remove the common leading whitespace of non-empty lines.
pub fn dedent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| {
            if l.len() >= indent {
                &l[indent..]
            } else {
                l.trim_start()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Upstream tests end with `Dispose()` + `<-WhenDisposed()`.
pub fn dispose(m: &Machine) {
    m.dispose();
    futures::executor::block_on(m.when_disposed()).unwrap();
}
