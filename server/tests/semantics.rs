//! The machine-semantics suite (issue 4, "What it must show" 1): every test spec/machine.md §12.1
//! marks [RPC] or [RPC*] (upstream `pkg/rpc/rpc_machine_test.go`, v0.8.0), written once against
//! `&dyn Api` in `semantics/cases.rs` and run three times: `local_*` against the worker
//! `Machine` itself, `remote_*` against a `Mirror` of it over a real WebSocket on 127.0.0.1 (a
//! fresh `Server` per test), `edge_*` against a `Mirror` of an edge server that mirrors the
//! worker over NATS (a `nats-server` per test; issue 14). The mapping to upstream is in
//! docs/upstream-tests.md.

#[path = "semantics/cases.rs"]
mod cases;
#[path = "semantics/fixture.rs"]
mod fixture;
#[path = "nats_support/mod.rs"]
mod nats_support;
#[path = "semantics/waits.rs"]
mod waits;

use std::future::Future;

use fixture::{Backend, TEST};

/// Run one case against one backend, bounded by [`TEST`].
async fn run<F, Fut>(backend: Backend, case: F)
where
    F: FnOnce(Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    if tokio::time::timeout(TEST, case(backend)).await.is_err() {
        panic!("{backend:?}: test not done within {TEST:?}");
    }
}

/// `both!(case => local_name, remote_name, edge_name)`: the `#[tokio::test]` wrappers of a case,
/// against the worker, a WebSocket mirror of it, and a mirror served by an edge server that
/// reaches the worker over NATS (issue 14, must show 1).
macro_rules! both {
    ($case:ident => $local:ident, $remote:ident, $edge:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $local() {
            run(Backend::Local, cases::$case).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $remote() {
            run(Backend::Remote, cases::$case).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $edge() {
            run(Backend::Edge, cases::$case).await
        }
    };
    ($m:ident :: $case:ident => $local:ident, $remote:ident, $edge:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $local() {
            run(Backend::Local, $m::$case).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $remote() {
            run(Backend::Remote, $m::$case).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $edge() {
            run(Backend::Edge, $m::$case).await
        }
    };
}

both!(single_state_active => local_single_state_active, remote_single_state_active, edge_single_state_active);
both!(multiple_states_active => local_multiple_states_active, remote_multiple_states_active, edge_multiple_states_active);
both!(expose_all_state_names => local_expose_all_state_names, remote_expose_all_state_names, edge_expose_all_state_names);
both!(state_set => local_state_set, remote_state_set, edge_state_set);
both!(state_add => local_state_add, remote_state_add, edge_state_add);
both!(state_remove => local_state_remove, remote_state_remove, edge_state_remove);
both!(remove_relation => local_remove_relation, remote_remove_relation, edge_remove_relation);
both!(remove_relation_simultaneous => local_remove_relation_simultaneous, remote_remove_relation_simultaneous, edge_remove_relation_simultaneous);
both!(remove_relation_cross_blocking => local_remove_relation_cross_blocking, remote_remove_relation_cross_blocking, edge_remove_relation_cross_blocking);
both!(add_relation => local_add_relation, remote_add_relation, edge_add_relation);
both!(require_relation => local_require_relation, remote_require_relation, edge_require_relation);
both!(
    require_relation_when_required_isnt_active => local_require_relation_when_required_isnt_active,
    remote_require_relation_when_required_isnt_active, edge_require_relation_when_required_isnt_active
);
both!(auto_states => local_auto_states, remote_auto_states, edge_auto_states);
both!(switch => local_switch, remote_switch, edge_switch);
both!(
    regression_remove_cross_blocked_by_implied => local_regression_remove_cross_blocked_by_implied,
    remote_regression_remove_cross_blocked_by_implied, edge_regression_remove_cross_blocked_by_implied
);
both!(
    regression_implied_block_by_being_removed => local_regression_implied_block_by_being_removed,
    remote_regression_implied_block_by_being_removed, edge_regression_implied_block_by_being_removed
);
both!(when2 => local_when2, remote_when2, edge_when2);
both!(when_active => local_when_active, remote_when_active, edge_when_active);
both!(when_not2 => local_when_not2, remote_when_not2, edge_when_not2);
both!(when_not_active => local_when_not_active, remote_when_not_active, edge_when_not_active);
both!(partial_auto => local_partial_auto, remote_partial_auto, edge_partial_auto);
both!(time => local_time, remote_time, edge_time);
both!(clock => local_clock, remote_clock, edge_clock);
both!(when_time => local_when_time, remote_when_time, edge_when_time);
both!(is => local_is, remote_is, edge_is);
both!(not => local_not, remote_not, edge_not);
both!(any => local_any, remote_any, edge_any);
both!(inspect => local_inspect, remote_inspect, edge_inspect);
both!(string => local_string, remote_string, edge_string);
both!(nested_mutation => local_nested_mutation, remote_nested_mutation, edge_nested_mutation);
both!(is_clock => local_is_clock, remote_is_clock, edge_is_clock);
both!(is_time => local_is_time, remote_is_time, edge_is_time);

// remote waits (issue 10 items 3, 4): the same cases locally and through the mirror
both!(waits::when_args_matches_a_subset => local_when_args_matches_a_subset, remote_when_args_matches_a_subset, edge_when_args_matches_a_subset);
both!(waits::when_args_cancel_unbinds => local_when_args_cancel_unbinds, remote_when_args_cancel_unbinds, edge_when_args_cancel_unbinds);
both!(waits::when_queue_resolves_when_it_ran => local_when_queue_resolves_when_it_ran, remote_when_queue_resolves_when_it_ran, edge_when_queue_resolves_when_it_ran);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_wait_limit() {
    run(Backend::Remote, waits::remote_wait_limit).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_wait_disconnect() {
    run(Backend::Remote, waits::remote_wait_disconnect).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_wait_limit() {
    run(Backend::Edge, waits::remote_wait_limit).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_wait_disconnect() {
    run(Backend::Edge, waits::remote_wait_disconnect).await
}
