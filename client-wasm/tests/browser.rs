//! Browser tests: `amrpc-wasm` in headless Chromium against a real `amrpc serve-test` server.
//!
//! Run with `scripts/web/browser.sh`: it starts the server and exports `AMRPC_TEST_URL` (open
//! server), `AMRPC_TEST_URL_LOCKED` (client id `allowed-client`, token `secret`, Origin
//! `http://allowed.test`) and, if the server offers it, `AMRPC_TEST_URL_AUTH` (the same id and
//! token checks without the Origin list), which are read here at compile time (rustc records them,
//! so cargo rebuilds this test when they change). Built without them, every server test fails
//! loudly.
//!
//! Tests run one at a time (wasm-bindgen-test's concurrency is 1) and share the server's `test`
//! worker, so each one starts from the states it needs and closes its connections. Every wait is
//! bounded by [`within`].
#![cfg(target_arch = "wasm32")]

use amrpc_wasm::{JsMachine, RemoteMachine, connect};
use gloo_timers::callback::Timeout;
use js_sys::{Array, Function, JSON, Promise, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::convert::TryFromJsValue;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::AbortController;

wasm_bindgen_test_configure!(run_in_browser);

/// The open server (`ws://127.0.0.1:PORT`), baked in at compile time.
const URL: Option<&str> = option_env!("AMRPC_TEST_URL");
/// The locked server: only client id `allowed-client` with token `secret`.
const URL_LOCKED: Option<&str> = option_env!("AMRPC_TEST_URL_LOCKED");

/// Like the locked server but without its Origin allow-list (a page cannot choose its Origin).
const URL_AUTH: Option<&str> = option_env!("AMRPC_TEST_URL_AUTH");

/// Default bound for one awaited step, in ms.
const STEP_MS: u32 = 5_000;

/// The `test` worker's URL on the open server. Built without a server, every test fails loudly
/// (a test that checked nothing must not pass).
fn test_url() -> String {
    match URL {
        Some(u) => format!("{u}/ws/test"),
        None => panic!("AMRPC_TEST_URL was not set at build time: run scripts/web/browser.sh"),
    }
}

/// The `test` worker's URL on a server that checks client ids and tokens but no Origin, from
/// serve-test (`AMRPC_TEST_URL_AUTH`; fails loudly without it).
fn auth_url() -> String {
    match URL_AUTH.filter(|u| !u.is_empty()) {
        Some(u) => format!("{u}/ws/test"),
        None => panic!("AMRPC_TEST_URL_AUTH was not set at build time: run scripts/web/browser.sh"),
    }
}

/// The `test` worker's URL on the locked server (fails loudly when not built with one).
fn locked_url() -> String {
    match URL_LOCKED {
        Some(u) => format!("{u}/ws/test"),
        None => panic!("AMRPC_TEST_URL_LOCKED was not set at build time: run scripts/web/browser.sh"),
    }
}

/// A JS value from JSON text (options, schemas, args).
fn js(json: &str) -> JsValue {
    JSON::parse(json).unwrap_or_else(|e| panic!("bad JSON in test {json}: {e:?}"))
}

/// `["A", "B"]` as a JS array.
fn names(list: &[&str]) -> JsValue {
    list.iter().map(|s| JsValue::from(*s)).collect::<Array>().into()
}

/// Awaits `p`, but gives up after `ms` with an `Error` whose code is `TestTimeout`.
async fn within(ms: u32, what: &str, p: &Promise) -> Result<JsValue, JsValue> {
    let mut reject: Option<Function> = None;
    let timer = Promise::new(&mut |_, rej| reject = Some(rej));
    let reject = reject.expect("the Promise executor runs synchronously");
    let msg = format!("timed out after {ms} ms: {what}");
    let _guard = Timeout::new(ms, move || {
        let e = js_sys::Error::new(&msg);
        let _ = Reflect::set(&e, &"code".into(), &"TestTimeout".into());
        let _ = reject.call1(&JsValue::NULL, &e);
    });
    JsFuture::from(Promise::race(&Array::of2(p, &timer))).await
}

/// An error's `code` property (or its text when there is none).
fn code_of(e: &JsValue) -> String {
    Reflect::get(e, &"code".into())
        .ok()
        .and_then(|c| c.as_string())
        .unwrap_or_else(|| format!("<no code: {e:?}>"))
}

/// Awaits `p`, which must resolve within [`STEP_MS`].
async fn ok(what: &str, p: Promise) -> JsValue {
    match within(STEP_MS, what, &p).await {
        Ok(v) => v,
        Err(e) => panic!("{what}: rejected with code {}: {e:?}", code_of(&e)),
    }
}

/// Awaits `p`, which must reject within [`STEP_MS`]; returns the error's code.
async fn rejects(what: &str, p: Promise) -> String {
    match within(STEP_MS, what, &p).await {
        Ok(v) => panic!("{what}: expected a rejection, resolved with {v:?}"),
        Err(e) => {
            let code = code_of(&e);
            assert_ne!(
                code, "TestTimeout",
                "{what}: neither resolved nor rejected in {STEP_MS} ms"
            );
            code
        }
    }
}

/// Awaits a mutation and returns its outcome (`"executed"`, `"canceled"`, `"queued"`).
async fn outcome(what: &str, p: Promise) -> String {
    ok(what, p)
        .await
        .as_string()
        .unwrap_or_else(|| panic!("{what}: outcome is not a string"))
}

/// Connects with `options` (JSON) and returns the mirror.
async fn open(url: &str, options: &str) -> RemoteMachine {
    let v = ok(&format!("connect({url}, {options})"), connect(url.into(), js(options))).await;
    RemoteMachine::try_from_js_value(v).expect("connect resolves with a RemoteMachine")
}

/// A promise resolved with the first value passed to the returned listener for which the JS
/// expression `cond` (over `v`) is true.
fn next_event(cond: &str) -> (Promise, Function) {
    let mut resolve: Option<Function> = None;
    let p = Promise::new(&mut |res, _| resolve = Some(res));
    let f = Function::new_with_args("resolve, v", &format!("if ({cond}) resolve(v);"));
    (
        p,
        f.bind1(&JsValue::NULL, &resolve.expect("executor ran"))
            .unchecked_into(),
    )
}

/// A listener that appends every value it gets to the returned array.
fn recorder() -> (Array, Function) {
    let log = Array::new();
    let f = Function::new_with_args("log, v", "log.push(v);")
        .bind1(&JsValue::NULL, &log)
        .unchecked_into();
    (log, f)
}

/// The mirror's ticks in state order.
fn time(m: &RemoteMachine) -> Vec<f64> {
    let t: Array = m.time(JsValue::UNDEFINED).expect("time()").unchecked_into();
    t.iter().map(|v| v.as_f64().expect("a tick")).collect()
}

fn is(m: &RemoteMachine, state: &str) -> bool {
    m.is(state.into()).expect("is()")
}

/// Makes the multi state `state` active (first add: tick +1), so that every further add
/// re-enters it (tick +2); returns its tick.
async fn activate(m: &RemoteMachine, state: &str) -> f64 {
    if m.tick(state) % 2.0 == 0.0 {
        assert_eq!(
            outcome(&format!("activate {state}"), m.add1(state, JsValue::UNDEFINED)).await,
            "executed"
        );
    }
    assert_eq!(m.tick(state) % 2.0, 1.0, "{state} active: {}", m.string_all());
    m.tick(state)
}

// --- handshake, mutations --------------------------------------------------------------------

#[wasm_bindgen_test]
async fn handshake_mirrors_the_worker() {
    let url = test_url();
    let m = open(&url, r#"{"clientId": "wasm-handshake"}"#).await;
    assert_eq!(m.status(), "ready");
    assert_eq!(m.id(), "wasm-handshake-test", "mirror id is <clientId>-<workerId>");
    // the client's own states, the same schema as the native client's (the core's)
    let cs = m.client_states();
    let cs_names: Vec<String> = Array::from(&cs.state_names())
        .iter()
        .filter_map(|v| v.as_string())
        .collect();
    assert_eq!(
        cs_names,
        amrpc_core::Machine::new(amrpc_core::states::client_schema(), Default::default())
            .unwrap()
            .state_names()
    );
    for s in ["Start", "Connected", "HandshakeDone", "Ready"] {
        assert!(cs.is(s.into()).unwrap(), "{s} in {}", cs.string_all());
    }
    assert!(!cs.is("RetryingConn".into()).unwrap());

    let state_names: Vec<String> = Array::from(&m.state_names())
        .iter()
        .filter_map(|v| v.as_string())
        .collect();
    assert_eq!(
        state_names[..6],
        ["A", "B", "C", "D", "Ping", "Kick"],
        "the worker's state order"
    );
    for s in ["Exception", "Start", "Ready", "SendPayload"] {
        assert!(state_names.iter().any(|n| n == s), "worker state {s} mirrored");
    }
    assert!(m.has(names(&["A", "Kick", "Exception"])).unwrap());
    assert!(!m.has("Nope".into()).unwrap());
    assert_eq!(m.index("B"), 1);

    // the clock: one tick per state, the same numbers by name and in order
    let clock = m.clock(JsValue::UNDEFINED).unwrap();
    let t = time(&m);
    assert_eq!(t.len(), state_names.len());
    for (i, n) in state_names.iter().enumerate() {
        let tick = Reflect::get(&clock, &n.into())
            .unwrap()
            .as_f64()
            .expect("clock has every state");
        assert_eq!(tick, t[i], "clock[{n}] == time()[{i}]");
        assert_eq!(tick, m.tick(n), "tick({n})");
    }
    let only = m.clock(names(&["A", "B"])).unwrap();
    assert_eq!(
        js_sys::Object::keys::<JsValue>(only.unchecked_ref()).length(),
        2,
        "clock(states) is filtered"
    );
    assert!(
        m.to_js_string().starts_with('('),
        "toString() is upstream's (A:1 ...) form"
    );

    m.close();
    assert_eq!(m.status(), "closed");
}

#[wasm_bindgen_test]
async fn mutations_resolve_with_outcomes_and_read_your_writes() {
    let url = test_url();
    let m = open(&url, r#"{"clientId": "wasm-mutations"}"#).await;
    outcome("reset", m.remove(names(&["A", "B", "C"]), JsValue::UNDEFINED)).await;
    assert!(m.not(names(&["A", "B", "C"])).unwrap());

    let before = m.tick("A");
    assert_eq!(outcome("add1 A", m.add1("A", JsValue::UNDEFINED)).await, "executed");
    // read-your-writes: the reply's clock is applied before the promise resolves
    assert!(is(&m, "A"), "A active right after the await");
    assert_eq!(m.tick("A"), before + 1.0);
    assert_eq!(m.tick("A") % 2.0, 1.0, "active states have odd ticks");

    // C requires A
    assert_eq!(
        outcome("add C", m.add("C".into(), JsValue::UNDEFINED)).await,
        "executed"
    );
    assert!(m.is(names(&["A", "C"])).unwrap());
    assert!(m.any(&Array::of2(&names(&["B", "D"]), &"C".into())).unwrap());
    assert_eq!(
        m.switch(&Array::of3(&"B".into(), &"C".into(), &"A".into())).unwrap(),
        "C"
    );

    // set: exactly these
    assert_eq!(
        outcome("set B", m.set(names(&["B"]), JsValue::UNDEFINED)).await,
        "executed"
    );
    assert!(
        is(&m, "B") && !is(&m, "A") && !is(&m, "C"),
        "after set(B): {}",
        m.to_js_string()
    );

    // a relation refuses: C without A is canceled, and nothing changes
    let t = time(&m);
    assert_eq!(
        outcome("add1 C without A", m.add1("C", JsValue::UNDEFINED)).await,
        "canceled"
    );
    assert!(!is(&m, "C"));
    assert_eq!(time(&m)[..4], t[..4], "a canceled mutation changes no tick");

    // multi states tick by 2 per add once active, args as plain objects
    let d = activate(&m, "D").await;
    let args = js(r#"{"n": 1, "s": "x", "list": [1, 2], "map": {"k": null}}"#);
    assert_eq!(outcome("add1 D", m.add1("D", args)).await, "executed");
    assert_eq!(m.tick("D"), d + 2.0);

    assert_eq!(
        outcome("remove1 B", m.remove1("B", JsValue::UNDEFINED)).await,
        "executed"
    );
    assert!(!is(&m, "B"));

    // unknown states reject with StateUnknown (for every mutation kind) and throw in reads
    assert_eq!(
        rejects("add1 Nope", m.add1("Nope", JsValue::UNDEFINED)).await,
        "StateUnknown"
    );
    assert_eq!(
        rejects("remove [A, Nope]", m.remove(names(&["A", "Nope"]), JsValue::UNDEFINED)).await,
        "StateUnknown"
    );
    assert_eq!(
        rejects("set Nope", m.set("Nope".into(), JsValue::UNDEFINED)).await,
        "StateUnknown"
    );
    assert_eq!(code_of(&m.not("Nope".into()).unwrap_err()), "StateUnknown");
    // bad arguments are typed too
    assert_eq!(
        rejects("add 42", m.add(42.into(), JsValue::UNDEFINED)).await,
        "InvalidArgs"
    );
    assert_eq!(
        rejects("args not an object", m.add1("A", "x".into())).await,
        "InvalidArgs"
    );
    m.close();
}

// --- waits -----------------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn waits_resolve_on_pushes_from_another_client() {
    let url = test_url();
    let m1 = open(&url, r#"{"clientId": "wasm-waiter"}"#).await;
    let m2 = open(&url, r#"{"clientId": "wasm-mutator"}"#).await;
    outcome("reset", m2.remove(names(&["A", "B", "C"]), JsValue::UNDEFINED)).await;
    ok("m1 sees the reset", m1.when_not(names(&["A", "B", "C"]), None)).await;

    // when: pending until the other client's change is pushed
    let w = m1.when(names(&["A", "B"]), None);
    assert_eq!(outcome("m2 add A", m2.add1("A", JsValue::UNDEFINED)).await, "executed");
    // barrier instead of a sleep: m1's own reply carries every change up to its mutation
    ok("m1 sees A", m1.when("A".into(), None)).await;
    assert_eq!(
        outcome("m1 add A (no change)", m1.add1("A", JsValue::UNDEFINED)).await,
        "executed"
    );
    assert!(!is(&m1, "B"), "B still inactive");
    assert_eq!(outcome("m2 add B", m2.add1("B", JsValue::UNDEFINED)).await, "executed");
    ok("m1.when([A, B]) after m2 added them", w).await;
    assert!(m1.is(names(&["A", "B"])).unwrap(), "the mirror shows the pushed change");

    // an already-true condition resolves at once
    ok("when(A) while A is active", m1.when("A".into(), None)).await;

    // whenNot
    let w = m1.when_not("B".into(), None);
    outcome("m2 remove B", m2.remove1("B", JsValue::UNDEFINED)).await;
    ok("m1.whenNot(B)", w).await;
    assert!(!is(&m1, "B"));

    // whenTicks / whenTicksEq / whenTime on a multi state (active: +2 per add)
    let d = activate(&m2, "D").await;
    ok("m1 sees D active", m1.when_ticks_eq("D", d, None)).await;
    let w_ticks = m1.when_ticks("D", 4.0, None);
    let w_eq = m1.when_ticks_eq("D", d + 2.0, None);
    let w_time = m1.when_time(names(&["A", "D"]), vec![m1.tick("A"), d + 4.0], None);
    outcome("m2 add D", m2.add1("D", JsValue::UNDEFINED)).await;
    ok("m1.whenTicksEq(D, +2)", w_eq).await;
    outcome("m2 add D again", m2.add1("D", JsValue::UNDEFINED)).await;
    ok("m1.whenTicks(D, 4)", w_ticks).await;
    ok("m1.whenTime([A, D], [.., +4])", w_time).await;
    assert!(m1.tick("D") >= d + 4.0);
    assert_eq!(
        rejects(
            "whenTime on an unknown state",
            m1.when_time("Nope".into(), vec![1.0], None)
        )
        .await,
        "StateUnknown"
    );

    // whenErr: another client's addErr
    let w = m1.when_err(None);
    outcome("m2 addErr", m2.add_err("boom from m2", JsValue::UNDEFINED)).await;
    ok("m1.whenErr()", w).await;
    assert!(m1.is_err());
    outcome("m2 remove Exception", m2.remove1("Exception", JsValue::UNDEFINED)).await;
    ok("m1 sees Exception removed", m1.when_not("Exception".into(), None)).await;

    m1.close();
    m2.close();
}

#[wasm_bindgen_test]
async fn abort_signals_cancel_waits_and_state_signals_abort() {
    let url = test_url();
    let m = open(&url, r#"{"clientId": "wasm-abort"}"#).await;
    let m2 = open(&url, r#"{"clientId": "wasm-abort-2"}"#).await;
    outcome("reset", m.remove(names(&["A", "B", "C"]), JsValue::UNDEFINED)).await;

    // aborting a pending wait rejects it with Aborted
    let ctrl = AbortController::new().unwrap();
    let w = m.when("B".into(), Some(ctrl.signal()));
    ctrl.abort();
    assert_eq!(rejects("when(B) aborted", w).await, "Aborted");
    // every wait kind takes a signal
    let ctrl = AbortController::new().unwrap();
    let waits = [
        m.when(names(&["A", "B"]), Some(ctrl.signal())),
        m.when_ticks("D", 100.0, Some(ctrl.signal())),
        m.when_ticks_eq("D", 1e9, Some(ctrl.signal())),
        m.when_time("D".into(), vec![1e9], Some(ctrl.signal())),
        m.when_err(Some(ctrl.signal())),
    ];
    ctrl.abort();
    for (i, w) in waits.into_iter().enumerate() {
        assert_eq!(rejects(&format!("wait #{i} aborted"), w).await, "Aborted");
    }
    // an already-aborted signal rejects at once
    let ctrl = AbortController::new().unwrap();
    ctrl.abort();
    assert_eq!(
        rejects(
            "when(B) with an aborted signal",
            m.when("B".into(), Some(ctrl.signal()))
        )
        .await,
        "Aborted"
    );

    // stateSignal: aborted when the state deactivates, even by another client
    outcome("add A", m.add1("A", JsValue::UNDEFINED)).await;
    let sig = m.state_signal("A").expect("stateSignal(A)");
    assert!(!sig.aborted(), "A is active: the signal is live");
    let (aborted, on_abort) = next_event("true");
    sig.add_event_listener_with_callback("abort", &on_abort).unwrap();
    outcome("m2 remove A", m2.remove1("A", JsValue::UNDEFINED)).await;
    ok("stateSignal(A) aborts when m2 removes A", aborted).await;
    assert!(sig.aborted());
    // a signal for an inactive state is aborted already; unknown states throw
    assert!(m.state_signal("B").unwrap().aborted());
    assert_eq!(code_of(&m.state_signal("Nope").unwrap_err()), "StateUnknown");

    // close() rejects pending waits with Closed, and later calls too
    let w = m.when("B".into(), None);
    m.close();
    assert_eq!(rejects("when(B) after close()", w).await, "Closed");
    assert_eq!(
        rejects("add after close()", m.add1("B", JsValue::UNDEFINED)).await,
        "Closed"
    );
    m2.close();
}

// --- remote waits (protocol 2) ---------------------------------------------------------------

/// A worker of the open server other than `test` (the queue workers).
fn worker_url(name: &str) -> String {
    match URL {
        Some(u) => format!("{u}/ws/{name}"),
        None => panic!("AMRPC_TEST_URL was not set at build time: run scripts/web/browser.sh"),
    }
}

/// True when `p` has not settled yet (an already settled promise wins the race against a 0 ms
/// timer: its reaction runs as a microtask, before any timer).
async fn pending(p: &Promise) -> bool {
    matches!(within(0, "pending", p).await, Err(e) if code_of(&e) == "TestTimeout")
}

#[wasm_bindgen_test]
async fn remote_when_args_is_evaluated_on_the_worker() {
    let m = open(&test_url(), r#"{"clientId": "wasm-when-args"}"#).await;
    outcome("an earlier D", m.add1("D", js(r#"{"id": "b"}"#))).await;
    let w = m.when_args("D", js(r#"{"id": "b"}"#), None);
    ok("sync", m.sync()).await;
    assert!(pending(&w).await, "never satisfied by an earlier transition");
    outcome("other args", m.add1("D", js(r#"{"id": "a"}"#))).await;
    ok("sync", m.sync()).await;
    assert!(pending(&w).await, "other args do not match");
    let before = m.tick("D");
    outcome("matching args", m.add1("D", js(r#"{"id": "b", "n": 2}"#))).await;
    ok("whenArgs", w).await;
    assert!(
        m.tick("D") > before,
        "the mirror shows the transition when the wait resolves"
    );

    let ctrl = AbortController::new().unwrap();
    let w = m.when_args("D", js(r#"{"id": "never"}"#), Some(ctrl.signal()));
    ctrl.abort();
    assert_eq!(rejects("an aborted whenArgs", w).await, "Aborted");
    assert_eq!(
        rejects("an unknown state", m.when_args("Nope", js("{}"), None)).await,
        "StateUnknown"
    );
    m.close();
}

#[wasm_bindgen_test]
async fn remote_when_queue_resolves_right_after_the_queued_mutation() {
    let holder = open(&worker_url("queue"), r#"{"clientId": "wasm-holder"}"#).await;
    let m = open(&worker_url("queue"), r#"{"clientId": "wasm-queue"}"#).await;
    let ctl = open(&worker_url("queue-ctl"), r#"{"clientId": "wasm-ctl"}"#).await;
    let held = holder.add1("Hold", JsValue::UNDEFINED);
    // probe until a mutation lands behind Hold's handler (each probe is one round trip)
    let mut result = JsValue::UNDEFINED;
    for i in 0..500 {
        result = ok(
            "probe",
            m.mutate("add", "Job".into(), js(&format!(r#"{{"probe": {i}}}"#))),
        )
        .await;
        if Reflect::get(&result, &"outcome".into()).unwrap() == "queued" {
            break;
        }
    }
    assert_eq!(Reflect::get(&result, &"outcome".into()).unwrap(), "queued");
    let tick = Reflect::get(&result, &"queueTick".into())
        .unwrap()
        .as_f64()
        .expect("a queue tick");
    let ticks = m.tick("Job");
    let w = m.when_queue(tick, None);
    ok("sync", m.sync()).await;
    assert!(pending(&w).await, "the queued Job has not run");
    assert_eq!(m.tick("Job"), ticks);
    outcome("release", ctl.add1("Release", JsValue::UNDEFINED)).await;
    ok("whenQueue", w).await;
    assert!(m.tick("Job") > ticks, "the mirror shows Job when its wait resolves");
    assert_eq!(outcome("Hold's own call", held).await, "executed");
    ok("a processed tick", m.when_queue(tick, None)).await;
    for c in [holder, m, ctl] {
        c.close();
    }
}

// --- payloads --------------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn payload_events_reach_every_client() {
    let url = test_url();
    let m = open(&url, r#"{"clientId": "wasm-payload"}"#).await;
    let m2 = open(&url, r#"{"clientId": "wasm-payload-2"}"#).await;
    let (got, listener) = next_event("v.name === 'pong'");
    m.on("payload", listener.clone());
    let (got2, listener2) = next_event("v.name === 'pong'");
    m2.on("payload", listener2);
    let (all, rec) = recorder();
    m.on("payload", rec.clone());

    let args = js("{}");
    Reflect::set(&args, &"data".into(), &Uint8Array::from(&[1u8, 2, 3, 250][..])).unwrap();
    assert_eq!(outcome("add Ping", m.add1("Ping", args)).await, "executed");
    let p = ok("payload event on the sender", got).await;
    assert_eq!(Reflect::get(&p, &"name".into()).unwrap(), "pong");
    let data: Uint8Array = Reflect::get(&p, &"data".into())
        .unwrap()
        .dyn_into()
        .expect("data is a Uint8Array");
    assert_eq!(data.to_vec(), [1, 2, 3, 250]);
    assert!(
        Reflect::get(&p, &"source".into()).unwrap().is_string(),
        "source: the worker id"
    );
    let p2 = ok("payload event on the other client", got2).await;
    let data2: Uint8Array = Reflect::get(&p2, &"data".into()).unwrap().dyn_into().unwrap();
    assert_eq!(data2.to_vec(), [1, 2, 3, 250]);
    assert_eq!(all.length(), 1, "one Ping, one payload");

    // off(): the recorder hears nothing more; non-bytes data arrives as its text
    m.off("payload", &rec);
    let (got, listener) = next_event("v.name === 'pong'");
    m.on("payload", listener);
    outcome("add Ping (string)", m.add1("Ping", js(r#"{"data": "hi"}"#))).await;
    let p = ok("second payload", got).await;
    let data: Uint8Array = Reflect::get(&p, &"data".into()).unwrap().dyn_into().unwrap();
    assert!(!data.to_vec().is_empty());
    assert_eq!(all.length(), 1, "a removed listener is not called");

    // clock events follow changes
    let (clock_ev, on_clock) = next_event("typeof v.D === 'number'");
    m.on("clock", on_clock);
    outcome("m2 add D", m2.add1("D", JsValue::UNDEFINED)).await;
    let c = ok("clock event after m2's change", clock_ev).await;
    assert!(Reflect::get(&c, &"D".into()).unwrap().as_f64().unwrap() >= 2.0);
    m.close();
    m2.close();
}

// --- reconnect -------------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn reconnects_and_resyncs_after_the_server_drops_the_connection() {
    let url = test_url();
    // a long-ish first retry delay leaves room to send a mutation during the outage
    let m = open(
        &url,
        r#"{"clientId": "wasm-kick", "retryDelayMs": 400, "retryBackoffMs": 800}"#,
    )
    .await;
    let (statuses, rec) = recorder();
    m.on("status", rec);
    let (down, on_down) = next_event("v === 'disconnected'");
    m.on("status", on_down);
    outcome("reset", m.remove(names(&["A", "B", "C"]), JsValue::UNDEFINED)).await;
    let d_before = activate(&m, "D").await;

    // the server closes every session of the worker
    let kick = m.add1("Kick", JsValue::UNDEFINED);
    ok("status disconnected after Kick", down).await;
    assert_eq!(m.status(), "disconnected");
    // reads still answer from the mirror; a mutation now is sent after the reconnect
    assert!(m.has("D".into()).unwrap());
    let (up, on_up) = next_event("v === 'ready'");
    m.on("status", on_up);
    let during = m.add1("D", JsValue::UNDEFINED);
    ok("status ready again", up).await;
    assert_eq!(m.status(), "ready");
    assert_eq!(outcome("add D sent during the outage", during).await, "executed");
    assert_eq!(m.tick("D"), d_before + 2.0, "the outage's mutation ran exactly once");
    let kick = within(STEP_MS, "the Kick mutation settles", &kick).await;
    console_log!("Kick settled with {kick:?}");

    let seen: Vec<String> = statuses.iter().filter_map(|v| v.as_string()).collect();
    let i_down = seen
        .iter()
        .position(|s| s == "disconnected")
        .expect("disconnected reported");
    assert!(
        seen[i_down..].iter().any(|s| s == "ready"),
        "ready after disconnected: {seen:?}"
    );

    // later mutations work
    assert_eq!(
        outcome("add B after reconnect", m.add1("B", JsValue::UNDEFINED)).await,
        "executed"
    );
    assert!(is(&m, "B"));

    // the mirror equals the server's clock, as a fresh connection sees it
    let fresh = open(&url, r#"{"clientId": "wasm-kick-check"}"#).await;
    assert!(is(&fresh, "B"));
    assert_eq!(fresh.tick("D"), d_before + 2.0);
    let server_time = time(&fresh);
    ok(
        "the mirror catches up with the server's clock",
        m.when_time(fresh.state_names(), server_time.clone(), None),
    )
    .await;
    assert_eq!(time(&m), server_time, "resynced mirror == a fresh connection's clock");
    m.close();
    fresh.close();
}

#[wasm_bindgen_test]
async fn gives_up_with_a_typed_error_when_nothing_listens() {
    // port 9 (discard) on loopback: refused; 2 attempts, short delays
    let p = connect(
        "ws://127.0.0.1:9/ws/test".into(),
        js(r#"{"connRetries": 2, "retryDelayMs": 20}"#),
    );
    assert_eq!(rejects("connect to a closed port", p).await, "ConnRetryFailed");
}

#[wasm_bindgen_test]
async fn a_list_of_urls_fails_over_to_one_that_answers() {
    // the first refuses (port 9 on loopback), the second is the test server
    let urls = js_sys::Array::of2(&"ws://127.0.0.1:9/ws/test".into(), &test_url().into());
    let p = connect(
        urls.into(),
        js(r#"{"clientId": "wasm-failover", "connRetries": 4, "retryDelayMs": 20}"#),
    );
    let v = ok("connect to a list", p).await;
    let m = RemoteMachine::try_from_js_value(v).expect("connect resolves with a RemoteMachine");
    m.close();
    // an empty list is a typed error
    let empty = connect(js_sys::Array::new().into(), JsValue::UNDEFINED);
    assert_eq!(rejects("connect([])", empty).await, "InvalidUrl");
}

// --- access control --------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn schema_mismatch_rejects_with_a_typed_error() {
    let url = test_url();
    let p = connect(
        url.as_str().into(),
        js(r#"{"clientId": "wasm-schema", "schemaHash": "1", "connRetries": 2}"#),
    );
    assert_eq!(rejects("connect with a wrong schema hash", p).await, "SchemaMismatch");
}

/// `connect()` options with a client id, a token and few, quick retries.
fn creds(id: &str, token: Option<&str>) -> JsValue {
    let o = js(r#"{"connRetries": 2, "retryDelayMs": 50}"#);
    Reflect::set(&o, &"clientId".into(), &id.into()).unwrap();
    if let Some(t) = token {
        Reflect::set(&o, &"token".into(), &t.into()).unwrap();
    }
    o
}

#[wasm_bindgen_test]
async fn locked_server_checks_client_id_and_token() {
    // a browser page cannot choose its Origin, so this needs a server that checks ids and tokens
    // but not the Origin (serve-test's AMRPC_TEST_URL_AUTH)
    let locked = auth_url();
    let wrong_id = rejects(
        "locked: wrong client id",
        connect(locked.as_str().into(), creds("intruder", Some("secret"))),
    )
    .await;
    assert_eq!(wrong_id, "AccessDenied", "{}", origin_hint(&wrong_id));
    let wrong_token = rejects(
        "locked: wrong token",
        connect(locked.as_str().into(), creds("allowed-client", Some("nope"))),
    )
    .await;
    assert_eq!(wrong_token, "Unauthorized", "{}", origin_hint(&wrong_token));
    let no_token = rejects(
        "locked: no token",
        connect(locked.as_str().into(), creds("allowed-client", None)),
    )
    .await;
    assert_eq!(no_token, "Unauthorized");

    let m = open(&locked, r#"{"clientId": "allowed-client", "token": "secret"}"#).await;
    assert_eq!(m.status(), "ready");
    assert_eq!(
        outcome("locked: add A", m.add1("A", JsValue::UNDEFINED)).await,
        "executed"
    );
    assert!(is(&m, "A"));
    m.close();
}

#[wasm_bindgen_test]
async fn locked_server_refuses_a_foreign_origin() {
    // AMRPC_TEST_URL_LOCKED is the server with the Origin allow-list
    let locked = locked_url();
    // the server answers the upgrade with HTTP 403, which a page cannot see: the client retries,
    // then gives up with a typed error
    let p = connect(locked.as_str().into(), creds("allowed-client", Some("secret")));
    assert_eq!(rejects("locked: this page's Origin", p).await, "ConnRetryFailed");
}

/// This page's Origin (`http://127.0.0.1:PORT`).
fn page_origin() -> String {
    Reflect::get(&js_sys::global(), &"location".into())
        .and_then(|l| Reflect::get(&l, &"origin".into()))
        .ok()
        .and_then(|o| o.as_string())
        .unwrap_or_default()
}

/// Why a locked-server test may see `ConnRetryFailed` instead of a refusal frame.
fn origin_hint(code: &str) -> String {
    if code != "ConnRetryFailed" {
        return String::new();
    }
    format!(
        "the locked server never answered the handshake: it refuses this page's Origin ({}) with HTTP 403 \
         before reading Hello, so the client id and token are never checked; serve-test must offer a server \
         that checks ids and tokens without an Origin list (AMRPC_TEST_URL_AUTH) or allow this origin",
        page_origin()
    )
}

// --- the local Machine -----------------------------------------------------------------------

fn machine(schema: &str) -> JsMachine {
    JsMachine::new(js(schema), JsValue::UNDEFINED).unwrap_or_else(|e| panic!("new Machine({schema}): {e:?}"))
}

#[wasm_bindgen_test]
fn local_machine_relations() {
    let m = machine(
        r#"{"A": {}, "B": {"require": ["A"]}, "C": {"add": ["A"]}, "D": {"remove": ["A"]},
            "E": {"multi": true}, "F": {"auto": true, "require": ["B"]}}"#,
    );
    assert_eq!(m.add1("B", JsValue::UNDEFINED).unwrap(), "canceled", "B requires A");
    assert_eq!(m.add1("C", JsValue::UNDEFINED).unwrap(), "executed");
    assert!(m.is(names(&["A", "C"])).unwrap(), "C adds A: {}", m.to_js_string());
    assert_eq!(m.add1("B", JsValue::UNDEFINED).unwrap(), "executed");
    assert!(
        m.is("F".into()).unwrap(),
        "F is auto once B is active: {}",
        m.to_js_string()
    );
    assert_eq!(m.add1("D", JsValue::UNDEFINED).unwrap(), "executed");
    assert!(!m.is("A".into()).unwrap(), "D removes A: {}", m.to_js_string());
    let e = m.tick("E");
    m.add1("E", JsValue::UNDEFINED).unwrap();
    m.add1("E", JsValue::UNDEFINED).unwrap();
    assert_eq!(
        m.tick("E"),
        e + 3.0,
        "multi: the first add activates, the second re-enters"
    );
    assert_eq!(m.set(names(&["A"]), JsValue::UNDEFINED).unwrap(), "executed");
    assert_eq!(Array::from(&m.active_states()).to_vec(), [JsValue::from("A")]);
    assert_eq!(
        code_of(&m.add1("Nope", JsValue::UNDEFINED).unwrap_err()),
        "StateUnknown"
    );
    assert_eq!(
        code_of(
            &JsMachine::new(js(r#"{"A": {"require": 1}}"#), JsValue::UNDEFINED)
                .err()
                .unwrap()
        ),
        "InvalidArgs"
    );
    assert!(m.inspect(JsValue::UNDEFINED).unwrap().contains('A'));
}

#[wasm_bindgen_test]
async fn local_machine_handlers_are_js_functions() {
    let m = machine(r#"{"A": {}, "B": {}, "C": {}}"#);
    // a final handler sees the args as a plain object and can queue mutations via e.machine
    let (calls, rec) = recorder();
    let a_state = Function::new_with_args(
        "rec, e",
        "rec({name: e.name, n: e.args.n}); return e.machine.add1('C');",
    )
    .bind1(&JsValue::NULL, &rec)
    .unchecked_into();
    m.handle("AState", a_state).unwrap();
    assert_eq!(m.add1("A", js(r#"{"n": 7}"#)).unwrap(), "executed");
    assert_eq!(calls.length(), 1);
    let call = calls.get(0);
    assert_eq!(Reflect::get(&call, &"name".into()).unwrap(), "AState");
    assert_eq!(Reflect::get(&call, &"n".into()).unwrap(), 7);
    assert!(
        m.is("C".into()).unwrap(),
        "the handler's queued add ran: {}",
        m.to_js_string()
    );

    // a negotiation handler returning false cancels
    let veto = Function::new_with_args("e", "return e.args.allow === true;");
    m.handle("BEnter", veto).unwrap();
    assert_eq!(m.add1("B", JsValue::UNDEFINED).unwrap(), "canceled");
    assert!(!m.is("B".into()).unwrap());
    assert_eq!(m.add1("B", js(r#"{"allow": true}"#)).unwrap(), "executed");
    assert!(m.is("B".into()).unwrap());

    // a throwing handler cancels and raises Exception
    m.handle("CExit", Function::new_with_args("e", "throw new Error('nope');"))
        .unwrap();
    assert_eq!(m.remove1("C", JsValue::UNDEFINED).unwrap(), "canceled");
    assert!(m.is("C".into()).unwrap());
    assert!(m.is_err(), "a throwing handler flags Exception");

    // handlers for missing states are refused
    assert_eq!(
        code_of(&m.handle("NopeState", Function::new_no_args("")).unwrap_err()),
        "StateMissing"
    );

    // waits and dispose
    let w = m.when("Exception".into(), None);
    ok("local when(Exception)", w).await;
    let w = m.when_not("A".into(), None);
    m.remove1("A", JsValue::UNDEFINED).unwrap();
    ok("local whenNot(A)", w).await;
    let w = m.when("A".into(), None);
    m.dispose();
    assert_eq!(rejects("local wait after dispose", w).await, "Closed");
}
