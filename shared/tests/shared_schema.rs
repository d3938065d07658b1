//! Machines sharing one compiled schema (`CompiledSchema`, `Machine::with_schema`) behave as
//! machines that compiled their own, and a served worker's sessions share one wire form of its
//! schema (`WorkerPort::session_schema`) until the schema changes.

use std::sync::Arc;

use amrpc_core::session::{ReplayCache, ServerConfig, ServerSession, WorkerPort};
use amrpc_core::{CompiledSchema, Machine, Opts, Outcome, State, schema};

fn sch() -> amrpc_core::Schema {
    schema([
        ("A", State::new().require(&["B"])),
        ("B", State::new().add(&["C"])),
        ("C", State::new().multi()),
        ("D", State::new().remove(&["C"]).auto()),
    ])
}

const ORDER: [&str; 5] = ["D", "C", "B", "A", "Exception"];

#[test]
fn a_machine_of_a_shared_schema_resolves_like_its_own() {
    let own = Machine::new(sch(), Opts::default()).unwrap();
    own.verify_states(&ORDER).unwrap();
    let shared = CompiledSchema::new(sch(), Some(&ORDER)).unwrap();
    let a = Machine::with_schema(&shared, Opts::default());
    let b = Machine::with_schema(&own.compiled_schema(), Opts::default());
    for m in [&a, &b] {
        assert!(m.states_verified());
        assert_eq!(m.state_names(), own.state_names());
        assert_eq!(m.get_struct(), own.get_struct());
    }
    let steps: [(&str, bool); 4] = [("A", false), ("B", true), ("A", true), ("D", true)];
    for (s, add) in steps {
        let r: Vec<Outcome> = [&own, &a, &b]
            .iter()
            .map(|m| if add { m.add1(s, None) } else { m.remove1(s, None) })
            .collect();
        assert!(r.iter().all(|o| *o == r[0]), "{s}: {r:?}");
        assert_eq!(a.time(None), own.time(None), "{s}");
        assert_eq!(b.time(None), own.time(None), "{s}");
    }
    // clocks are per machine
    assert_eq!(a.remove1("A", None), Outcome::Executed);
    assert_ne!(a.time(None), b.time(None));
    // changing one machine's schema leaves the others as they were
    let mut bigger = sch();
    bigger.insert("E".into(), State::new());
    bigger.insert("Exception".into(), State::new().multi());
    a.set_struct(bigger, &["D", "C", "B", "A", "Exception", "E"]).unwrap();
    assert_eq!(a.state_names().len(), 6);
    assert_eq!(b.state_names(), own.state_names());
    assert_eq!(
        Machine::with_schema(&shared, Opts::default()).state_names(),
        own.state_names()
    );
}

#[test]
fn an_unverified_schema_gives_unverified_machines() {
    let c = CompiledSchema::new(sch(), None).unwrap();
    let m = Machine::with_schema(&c, Opts::default());
    assert!(!m.states_verified());
    assert!(m.state_names().contains(&"Exception".to_string()));
    assert!(CompiledSchema::new(schema([("A", State::new().require(&["Z"]))]), None).is_err());
    assert!(CompiledSchema::new(sch(), Some(&["A", "Nope"])).is_err());
}

#[test]
fn sessions_share_the_wire_schema_until_it_changes() {
    let w = Machine::new(sch(), Opts::default()).unwrap();
    w.verify_states(&ORDER).unwrap();
    let one = WorkerPort::session_schema(&w);
    assert!(Arc::ptr_eq(&one, &WorkerPort::session_schema(&w)));
    // what a session sends is what it would make itself
    let fresh = amrpc_core::session::SessionSchema::new(w.state_names(), &w.get_struct());
    assert_eq!(*one, fresh);
    let replay = Arc::new(ReplayCache::new(4));
    let s1 = ServerSession::new(&w, ServerConfig::default(), replay.clone());
    assert_eq!(s1.names(), &one.names[..]);
    assert_eq!(s1.schema_hash(), one.hash);
    // a changed schema: a new wire form, new sessions send it, the old session keeps its own
    let mut bigger = sch();
    bigger.insert("E".into(), State::new());
    bigger.insert("Exception".into(), State::new().multi());
    w.set_struct(bigger, &["D", "C", "B", "A", "Exception", "E"]).unwrap();
    let two = WorkerPort::session_schema(&w);
    assert!(!Arc::ptr_eq(&one, &two));
    assert_eq!(two.names.len(), 6);
    let s2 = ServerSession::new(&w, ServerConfig::default(), replay);
    assert_eq!(s2.names().len(), 6);
    assert_ne!(s2.schema_hash(), s1.schema_hash());
    assert_eq!(s1.names().len(), 5);
}
