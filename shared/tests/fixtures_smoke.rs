//! The test fixtures themselves behave (guards the helpers the ported suites rely on).
mod common;
use common::*;

#[test]
fn fixtures_no_rels_and_history() {
    let m = new_no_rels(Some(&["A"]));
    let h = track_transitions(&m);
    m.set(&["B"], None);
    assert_states(&m, &["B"]);
    assert_order(&h, &["AExit", "AB", "AAny", "AnyB", "BEnter", "BState"]);
    let log = capture_log(&m);
    m.add1("C", None);
    assert!(log.lock().unwrap().contains("[state] +C"), "{}", log.lock().unwrap());
    dispose(&m);
}
