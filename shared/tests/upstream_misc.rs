//! Upstream `pkg/machine/misc_test.go` (asyncmachine-go v0.8.0): the 11 tests of spec/machine.md
//! §12.2, ported to the Rust API. Go's `Result` is [`Outcome`]; `StepType(0).String() == ""` maps to
//! `StepType::from_bits(0) == None`; `TestStatesFile` (reflection-based typed schemas) maps to the
//! `schema!` macro plus plain const groups.

use std::sync::Arc;

use amrpc_core::compat::{S, is_active_tick, new_args_mapper, opts_with_debug, opts_with_tracers, parse_struct, s_add};
use amrpc_core::{
    Args, ArgsMapper, LogLevel, Machine, MutationType, NoOpTracer, Opts, Outcome, Relation, Schema, State, StepType,
    Tracer, struct_merge,
};

fn names(l: &[&str]) -> S {
    l.iter().map(|s| s.to_string()).collect()
}

#[test]
fn test_with_opts() {
    // OptsWithDebug
    let opts = Opts {
        dont_panic_to_exception: false,
        handler_timeout: Some(std::time::Duration::ZERO),
        ..Opts::default()
    };
    let opts = opts_with_debug(opts);
    assert!(opts.dont_panic_to_exception);
    assert!(opts.handler_timeout.is_some_and(|d| d > std::time::Duration::ZERO));

    // OptsWithTracers
    let tracer: Arc<dyn Tracer> = Arc::new(NoOpTracer);
    let opts = opts_with_tracers(opts, vec![tracer.clone()]);
    assert_eq!(opts.tracers.len(), 1);
    assert!(Arc::ptr_eq(&opts.tracers[0], &tracer));

    // a machine from these opts and no schema: just the built-in Exception state
    let m = Machine::new(Schema::new(), opts).expect("an empty schema is valid");
    assert_eq!(m.state_names(), names(&["Exception"]));
    assert_eq!(m.tracers().len(), 1);
    let mapper: ArgsMapper = Arc::new(new_args_mapper(&["arg"], 10));
    m.set_log_args(Some(mapper));
    assert!(m.get_log_args().is_some());
}

#[test]
fn test_result_string() {
    assert_eq!(Outcome::Executed.to_string(), "executed");
    assert_eq!(Outcome::Canceled.to_string(), "canceled");
    assert_eq!(Outcome::Queued(2).to_string(), "queued");
}

#[test]
fn test_mutation_type_string() {
    assert_eq!(MutationType::Add.to_string(), "add");
    assert_eq!(MutationType::Remove.to_string(), "remove");
    assert_eq!(MutationType::Set.to_string(), "set");
    assert_eq!(MutationType::Eval.to_string(), "eval");
}

#[test]
fn test_step_type_string() {
    assert_eq!(StepType::Relation.to_string(), "rel");
    assert_eq!(StepType::Handler.to_string(), "handler");
    assert_eq!(StepType::Set.to_string(), "set");
    assert_eq!(StepType::Remove.to_string(), "remove");
    assert_eq!(StepType::RemoveNotActive.to_string(), "removenotactive");
    assert_eq!(StepType::Requested.to_string(), "requested");
    assert_eq!(StepType::Cancel.to_string(), "cancel");
    // upstream `StepType(0).String() == ""`: 0 is not a step type
    assert_eq!(StepType::from_bits(0), None);
    assert_eq!(StepType::from_bits(0).map(|s| s.to_string()).unwrap_or_default(), "");
}

#[test]
fn test_relation_string() {
    assert_eq!(Relation::After.to_string(), "after");
    assert_eq!(Relation::Add.to_string(), "add");
    assert_eq!(Relation::Require.to_string(), "require");
    assert_eq!(Relation::Remove.to_string(), "remove");
}

#[test]
fn test_log_level_string() {
    assert_eq!(LogLevel::Nothing.to_string(), "nothing");
    assert_eq!(LogLevel::from_u8(0).to_string(), "nothing");
    assert_eq!(LogLevel::Changes.to_string(), "changes");
    assert_eq!(LogLevel::Ops.to_string(), "ops");
    assert_eq!(LogLevel::Decisions.to_string(), "decisions");
    assert_eq!(LogLevel::Everything.to_string(), "everything");
}

#[test]
fn test_new_args_mapper() {
    // short
    let mapper = new_args_mapper(&["arg", "arg2"], 2);
    let res = mapper(&Args::new().with("arg", "foo"));
    assert_eq!(res["arg"], "fo");
    let res = mapper(&Args::new().with("arg", "foo").with("arg2", "bar"));
    assert_eq!(res["arg"], "fo");
    assert_eq!(res["arg2"], "ba");

    // long
    let mapper = new_args_mapper(&["arg", "arg2"], 5);
    let res = mapper(&Args::new().with("arg", "foofoofoo"));
    assert_eq!(res["arg"], "fo...");
}

#[test]
fn test_parse_struct() {
    let s = amrpc_core::schema([
        ("A", State::new().remove(&["A", "B", "C"]).add(&["C"]).after(&["A"])),
        ("B", State::new()),
        ("C", State::new()),
    ]);
    let ex = amrpc_core::schema([
        ("A", State::new().remove(&["B"]).add(&["C"])),
        ("B", State::new()),
        ("C", State::new()),
    ]);
    assert!(ex["A"].after.is_empty());
    assert_eq!(parse_struct(&s), ex);
}

#[test]
fn test_s_merge() {
    let s = names(&["A", "B", "C"]);
    let s2 = names(&["C", "D", "E"]);
    let ex = names(&["A", "B", "C", "D", "E"]);
    assert_eq!(s_add(&[&s, &s2]), ex);
    assert_eq!(s_add(&[]), S::new());
}

#[test]
fn test_is_active_tick() {
    assert!(is_active_tick(1));
    assert!(!is_active_tick(0));
    assert!(!is_active_tick(6548734));
    assert!(is_active_tick(6548735));
}

// TestStatesFile
//
// Upstream declares states as struct fields filled in by reflection, inherits a parent ("super")
// schema by embedding its struct, and inherits state groups by mixing the parent's group struct in.
// The `schema!` macro gives typed names and a schema but has no inheritance and no groups, so:
// * the parent is one `schema!` module, the child's own states another;
// * the child module re-exports the parent's names next to its own, and builds its schema with
//   `struct_merge` (upstream `StructMerge(parentStruct, childStruct)`);
// * groups are plain const arrays, the child's group module re-exporting the parent's groups.

amrpc_core::schema! {
    /// Parent ("super") states.
    pub mod super_states {
        Foo: {},
        Baz: {},
    }
}

/// Parent groups.
#[allow(non_upper_case_globals)]
pub mod super_groups {
    use super::super_states::{Baz, Foo};
    /// `FooBaz`
    pub const FooBaz: [&str; 2] = [Foo, Baz];
}

amrpc_core::schema! {
    /// The child's own states (the macro cannot embed the parent's).
    pub mod child_own_states {
        Bar: {},
    }
}

/// Child states: its own plus the inherited ones.
pub mod child_states {
    pub use super::child_own_states::{Bar, Exception};
    pub use super::super_states::{Baz, Foo};

    /// Names in upstream's `NewStates` order (own fields first, then the embedded parent's).
    pub const NAMES: &[&str] = &[Bar, Foo, Baz];

    /// Upstream `StructMerge(parentStruct, childStruct)`.
    pub fn schema() -> amrpc_core::Schema {
        amrpc_core::struct_merge(&[&super::super_states::schema(), &super::child_own_states::schema()])
    }
}

/// Child groups: its own plus the inherited ones.
#[allow(non_upper_case_globals)]
pub mod child_groups {
    use super::child_states::{Bar, Foo};
    pub use super::super_groups::FooBaz;
    /// `FooBar`
    pub const FooBar: [&str; 2] = [Foo, Bar];
}

#[test]
fn test_states_file() {
    assert_eq!(child_states::Foo, "Foo");
    assert_eq!(child_states::Bar, "Bar");
    assert_eq!(child_groups::FooBar, ["Foo", "Bar"]);
    assert_eq!(child_groups::FooBaz, ["Foo", "Baz"]);

    let merged = child_states::schema();
    assert!(merged.contains_key(child_states::Foo));
    // the same through the generic helper, as upstream builds it
    let merged2 = struct_merge(&[&super_states::schema(), &child_own_states::schema()]);
    assert_eq!(merged, merged2);
    assert_eq!(
        merged.keys().map(String::as_str).collect::<Vec<_>>(),
        ["Bar", "Baz", "Foo"]
    );
    assert_eq!(child_states::NAMES, ["Bar", "Foo", "Baz"]);

    // the typed names work as machine state names
    let m = Machine::new(merged, Opts::default()).unwrap();
    assert_eq!(m.add(&child_groups::FooBar, None), Outcome::Executed);
    assert!(m.is(&[child_states::Foo, child_states::Bar]));
    assert!(m.not1(child_states::Exception));
}
