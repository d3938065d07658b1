//! `Machine::mutate_indexes` goes index → id without resolving names, and behaves like the
//! name-based calls. Needs the `test-hooks` feature (it counts name lookups): on in
//! `cargo test --workspace` (amrpc-server's tests enable it), or
//! `cargo test -p amrpc-core --features test-hooks --test mutate_indexes`.
#![cfg(feature = "test-hooks")]

use amrpc_core::{Error, Handlers, Machine, MutationType, Opts, Outcome, State, schema};

const NAMES: [&str; 8] = ["A", "B", "C", "D", "E", "M", "R", "Exception"];

/// Relations of every kind: A adds B, C requires D, E removes A, M is Multi; `RState` removes D
/// from inside a handler (the in-handler Remove shortcut); by index when `by_index`.
fn machine(by_index: bool) -> Machine {
    let s = schema([
        ("A", State::new().add(&["B"])),
        ("B", State::new()),
        ("C", State::new().require(&["D"])),
        ("D", State::new()),
        ("E", State::new().remove(&["A"])),
        ("M", State::new().multi()),
        ("R", State::new()),
    ]);
    let h = Handlers::new("test").state("R", move |e| {
        let m = e.machine();
        let r = if by_index {
            m.mutate_indexes(MutationType::Remove, &[3], None).unwrap()
        } else {
            m.try_remove(&["D"], None).unwrap()
        };
        assert_ne!(r, Outcome::Canceled);
    });
    let m = Machine::new(s, Opts::default()).unwrap();
    m.verify_states(&NAMES).unwrap();
    m.bind_handlers(h).unwrap();
    m
}

/// Positions in `NAMES` (the verified state order), computed without asking the machine.
fn idx(names: &[&str]) -> Vec<usize> {
    names
        .iter()
        .map(|n| NAMES.iter().position(|x| x == n).unwrap())
        .collect()
}

#[test]
fn same_outcomes_and_clock_without_name_lookups() {
    let by_name = machine(false);
    let by_index = machine(true);
    use MutationType::{Add, Remove, Set};
    use Outcome::{Canceled, Executed};
    let steps: &[(MutationType, &[&str], Outcome)] = &[
        (Add, &["C"], Canceled), // requires D
        (Add, &["C", "D"], Executed),
        (Add, &["A"], Executed),      // implies B
        (Add, &["E"], Executed),      // removes A
        (Add, &["M", "M"], Executed), // duplicate entries
        (Add, &["M"], Executed),      // Multi: ticks by 2
        (Add, &["R"], Executed),      // RState removes D, which takes C
        (Remove, &["B", "E"], Executed),
        (Remove, &["A"], Executed), // not active
        (Set, &["A", "D"], Executed),
        (Set, &["C"], Canceled), // requires D
    ];
    for (ty, states, want) in steps {
        let before = by_name.name_lookups();
        let a = match ty {
            Add => by_name.try_add(states, None),
            Remove => by_name.try_remove(states, None),
            _ => by_name.try_set(states, None),
        };
        assert!(by_name.name_lookups() > before, "{ty:?} {states:?}: no name lookup");
        let b = by_index.mutate_indexes(*ty, &idx(states), None);
        assert_eq!(a, Ok(*want), "{ty:?} {states:?}");
        assert_eq!(a, b, "{ty:?} {states:?}");
        assert_eq!(by_name.time(None), by_index.time(None), "{ty:?} {states:?}");
        assert_eq!(by_name.string(), by_index.string(), "{ty:?} {states:?}");
    }
    assert_eq!(by_index.string(), "(A:3 B:3 D:3)");
    assert_eq!(by_index.tick("M"), 4);
    assert_eq!(by_index.name_lookups(), 0);
}

#[test]
fn add_looks_names_up() {
    let m = machine(false);
    assert_eq!(m.name_lookups(), 0);
    assert_eq!(m.add(&["A"], None), Outcome::Executed);
    assert!(m.name_lookups() >= 1);
}

#[test]
fn out_of_range_index_is_state_unknown() {
    let m = machine(true);
    let n = NAMES.len();
    assert_eq!(
        m.mutate_indexes(MutationType::Add, &[0, n], None),
        Err(Error::StateUnknown(format!("index {n}")))
    );
    assert_eq!(m.string(), "()");
    assert_eq!(
        m.mutate_indexes(MutationType::Add, &[n - 1], None),
        Ok(Outcome::Executed)
    );
    assert!(m.is_err());
    assert_eq!(m.name_lookups(), 0);
}

/// Kept through the `mutate` / `mutate_ids` split: from a handler, with nothing queued, a Remove
/// of states none of which is active is a no-op even when a name is unknown; elsewhere that name
/// is an error.
#[test]
fn remove_of_unknown_state_from_handler_is_a_noop() {
    let s = schema([("A", State::new()), ("B", State::new())]);
    let m = Machine::new(s, Opts::default()).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen2 = seen.clone();
    let h = Handlers::new("test").state("A", move |e| {
        *seen2.lock().unwrap() = Some(e.machine().try_remove(&["B", "Zzz"], None));
    });
    m.bind_handlers(h).unwrap();
    assert_eq!(m.add1("A", None), Outcome::Executed);
    assert_eq!(*seen.lock().unwrap(), Some(Ok(Outcome::Executed)));
    assert_eq!(
        m.try_remove(&["B", "Zzz"], None),
        Err(Error::StateUnknown("Zzz".into()))
    );
}
