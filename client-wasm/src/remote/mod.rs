//! `connect()` and `RemoteMachine`: the browser/Node shell around the core's sans-IO
//! [`Connection`] — a WebSocket, one timer, the page's online/visibility events; every rule
//! (backoff, give-up, call timeouts, client states) is in the core.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use amrpc_core::session::{BROWSER_CLIENT_ID, ClientConfig, ConnConfig, ConnOutput, Connection};
use amrpc_core::{Error, ErrorCode, Outcome};
use futures_channel::oneshot;
use gloo_timers::callback::Timeout;
use js_sys::{Function, Object, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::interop::{self, js_error};
use crate::socket::{self, Socket};

mod api;
pub use api::RemoteMachine;

fn options(o: &JsValue) -> Result<ConnConfig, JsValue> {
    let get = |k: &str| -> JsValue {
        if o.is_object() {
            Reflect::get(o, &k.into()).unwrap_or(JsValue::UNDEFINED)
        } else {
            JsValue::UNDEFINED
        }
    };
    let d = ConnConfig::default();
    let num = |k: &str, d: u64| get(k).as_f64().map_or(d, |v| v.max(0.0) as u64);
    let schema_hash = match get("schemaHash") {
        v if v.is_undefined() || v.is_null() => None,
        v if v.is_bigint() => {
            Some(u64::try_from(v).map_err(|_| js_error(ErrorCode::InvalidArgs, "schemaHash out of range"))?)
        }
        v => v
            .as_string()
            .map(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16))
            .transpose()
            .map_err(|_| js_error(ErrorCode::InvalidArgs, "schemaHash must be a bigint or a hex string"))?,
    };
    let random = || (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64;
    Ok(ConnConfig {
        session: ClientConfig {
            client_id: get("clientId").as_string().unwrap_or_else(|| BROWSER_CLIENT_ID.into()),
            instance: random() ^ (js_sys::Date::now() as u64).rotate_left(32),
            token: get("token").as_string(),
            schema_hash,
            push_interval_ms: get("pushIntervalMs").as_f64().map(|v| v as u32),
            states: interop::opt_states(&get("states"))?,
            shallow: get("shallow").as_bool().unwrap_or(false),
            stream: get("stream").as_bool().unwrap_or(false),
            all_ticks: get("allTicks").as_bool().unwrap_or(false),
            ..Default::default()
        },
        conn_timeout_ms: num("connTimeoutMs", d.conn_timeout_ms),
        conn_retries: num("connRetries", d.conn_retries.into()) as u32,
        retry_delay_ms: num("retryDelayMs", d.retry_delay_ms),
        retry_backoff_ms: num("retryBackoffMs", d.retry_backoff_ms),
        call_timeout_ms: num("callTimeoutMs", d.call_timeout_ms),
        call_retries: num("callRetries", d.call_retries.into()) as u32,
        reconnect: get("reconnect").as_bool().unwrap_or(d.reconnect),
        seed: random(),
        endpoints: 1,
    })
}

/// A pending call's or remote wait's promise, settled straight from the driver's `Done` output
/// (no future, no executor task, no channel: one call into JS). Dropped unsettled — the
/// connection went away with it — it rejects with `Closed`.
pub(crate) struct Done {
    settle: Option<(Function, Function)>,
    ok: fn(Outcome, Option<amrpc_core::Why>) -> JsValue,
}

impl Done {
    /// A pending promise and its settler; `ok` makes the resolved value.
    pub(crate) fn new(ok: fn(Outcome, Option<amrpc_core::Why>) -> JsValue) -> (Done, js_sys::Promise) {
        let mut settle = None;
        let promise = js_sys::Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
        (Done { settle, ok }, promise)
    }

    fn finish(mut self, result: Result<(Outcome, Option<amrpc_core::Why>), Error>) {
        if let Some((resolve, reject)) = self.settle.take() {
            let _ = match result {
                Ok((o, why)) => resolve.call1(&JsValue::NULL, &(self.ok)(o, why)),
                Err(e) => reject.call1(&JsValue::NULL, &interop::error(&e)),
            };
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some((_, reject)) = self.settle.take() {
            let _ = reject.call1(&JsValue::NULL, &js_error(ErrorCode::Closed, "the client is closed"));
        }
    }
}

pub(crate) struct Conn {
    /// The worker's server URLs (one, or its edge servers): attempts go round them.
    urls: Vec<String>,
    pub(crate) driver: Connection<Done>,
    socket: Option<Socket>,
    pub(crate) listeners: Vec<(String, Function)>,
    ready: Option<oneshot::Sender<Result<amrpc_core::Machine, Error>>>,
    timer: Option<Timeout>,
    /// The deadline `timer` is armed for (at or before the driver's next one).
    timer_at: Option<u64>,
    window_hooks: Vec<WindowHook>,
    /// Keys of remote waits (to cancel them).
    pub(crate) next_wait: u64,
}

pub(crate) type Shared = Rc<RefCell<Conn>>;

/// A listener on `window`/`document`, removed when the connection is dropped.
type WindowHook = (web_sys::EventTarget, &'static str, Closure<dyn FnMut(web_sys::Event)>);

fn now() -> u64 {
    js_sys::Date::now() as u64
}

/// Feed one input to the driver (`f`), perform its outputs, re-arm the timer, then call the JS
/// listeners — after the borrow ends, so a listener may call back into the machine.
pub(crate) fn drive(shared: &Shared, f: impl FnOnce(&mut Connection<Done>, u64)) {
    f(&mut shared.borrow_mut().driver, now());
    perform(shared);
}

fn perform(shared: &Shared) {
    let mut events: Vec<(&'static str, JsValue)> = Vec::new();
    {
        let mut c = shared.borrow_mut();
        // an event's JS value is built only when someone listens to it
        let listens = |c: &Conn, name: &str| c.listeners.iter().any(|(e, _)| e == name);
        while let Some(o) = c.driver.poll_output() {
            match o {
                ConnOutput::Dial => {
                    match socket::open(&c.urls[usize::from(c.driver.endpoint())], socket_events(shared)) {
                        Ok(s) => c.socket = Some(s),
                        Err(e) => c.driver.dial_failed(now(), &e.message, Some(e.code)),
                    }
                }
                ConnOutput::Send(frame) => {
                    if let Some(s) = &c.socket {
                        s.send(&frame);
                    }
                }
                ConnOutput::CloseSocket => c.socket = None,
                ConnOutput::Status(s) => {
                    if listens(&c, "status") {
                        events.push(("status", s.as_str().into()));
                    }
                }
                ConnOutput::Ready => {
                    if let (Some(tx), Some(m)) = (c.ready.take(), c.driver.mirror()) {
                        let _ = tx.send(Ok(m.clone()));
                    }
                }
                ConnOutput::Done(done, result, why) => done.finish(result.map(|o| (o, why))),
                ConnOutput::Transition(t) => {
                    if let Some(m) = c.driver.mirror().filter(|_| listens(&c, "transition")) {
                        events.push(("transition", interop::transition_js(&t, &m.state_names())));
                    }
                }
                ConnOutput::Dropped { n, next } => {
                    if listens(&c, "dropped") {
                        let o = Object::new();
                        let _ = Reflect::set(&o, &"n".into(), &JsValue::from_f64(n as f64));
                        let _ = Reflect::set(&o, &"next".into(), &JsValue::from_f64(next as f64));
                        events.push(("dropped", o.into()));
                    }
                }
                ConnOutput::Changed => {
                    if let Some(m) = c.driver.mirror().filter(|_| listens(&c, "clock")) {
                        events.push(("clock", interop::clock(&m.clock(None))));
                    }
                }
                ConnOutput::Payload(p) => {
                    if listens(&c, "payload") {
                        let o = Object::new();
                        let _ = Reflect::set(&o, &"name".into(), &p.name.into());
                        let _ = Reflect::set(&o, &"source".into(), &p.source.into());
                        let _ = Reflect::set(&o, &"token".into(), &js_sys::BigInt::from(p.token).into());
                        let _ = Reflect::set(&o, &"data".into(), &Uint8Array::from(p.data.as_slice()).into());
                        events.push(("payload", o.into()));
                    }
                }
                ConnOutput::Error(e) => {
                    if listens(&c, "error") {
                        events.push(("error", interop::error(&e)));
                    }
                }
                ConnOutput::Closed(e) => {
                    if let Some(tx) = c.ready.take() {
                        let _ = tx.send(Err(e));
                    }
                    c.window_hooks.clear();
                    // nothing is due any more: a timer left armed would keep Node's event loop
                    // (and the process) alive until it fired
                    c.timer = None;
                    c.timer_at = None;
                }
            }
        }
        arm_timer(&mut c, shared);
    }
    emit(shared, events);
}

/// One timer, armed for the driver's next deadline. A deadline that moves later (a call's
/// timeout pushed on by every call) keeps the armed timer: it fires early, the driver finds
/// nothing due, and the timer is armed again — instead of a clearTimeout and a setTimeout per
/// call.
fn arm_timer(c: &mut Conn, shared: &Shared) {
    let deadline = c.driver.next_deadline();
    let keep = match (deadline, c.timer_at) {
        // an armed timer just fires to no effect
        (None, _) => true,
        (Some(d), Some(armed)) => c.timer.is_some() && armed <= d,
        (Some(_), None) => false,
    };
    if keep {
        return;
    }
    c.timer_at = deadline;
    let weak = Rc::downgrade(shared);
    c.timer = deadline.map(|at| {
        let ms = at.saturating_sub(now()).min(u64::from(u32::MAX)) as u32;
        Timeout::new(ms, move || {
            if let Some(s) = weak.upgrade() {
                {
                    let mut c = s.borrow_mut();
                    c.timer = None;
                    c.timer_at = None;
                }
                drive(&s, |d, now| d.tick(now));
            }
        })
    });
}

fn emit(shared: &Shared, events: Vec<(&'static str, JsValue)>) {
    if events.is_empty() {
        return;
    }
    let listeners: Vec<(String, Function)> = shared.borrow().listeners.clone();
    for (name, v) in events {
        for (ev, f) in listeners.iter().filter(|(ev, _)| ev == name) {
            if let Err(e) = f.call1(&JsValue::NULL, &v) {
                web_sys::console::error_2(&format!("amrpc {ev} listener threw:").into(), &e);
            }
        }
    }
}

/// What the socket reports, fed to the driver.
pub(crate) enum SocketEvent {
    Open,
    Frame(Vec<u8>),
    Closed,
}

fn socket_events(shared: &Shared) -> Rc<dyn Fn(SocketEvent)> {
    let weak = Rc::downgrade(shared);
    Rc::new(move |ev| {
        let Some(s) = weak.upgrade() else { return };
        match ev {
            SocketEvent::Open => drive(&s, |d, now| d.opened(now)),
            SocketEvent::Frame(b) => drive(&s, |d, now| d.frame(now, &b)),
            SocketEvent::Closed => drive(&s, |d, now| d.socket_closed(now)),
        }
    })
}

/// Reconnect now, not at the next backoff step, when the browser comes back online or the
/// page becomes visible.
fn hook_window(shared: &Shared) {
    let Some(window) = web_sys::window() else { return };
    let mut hooks: Vec<WindowHook> = Vec::new();
    let wake = |weak: Weak<RefCell<Conn>>| {
        move || {
            if let Some(s) = weak.upgrade() {
                drive(&s, |d, now| d.wake(now));
            }
        }
    };
    let on_online = wake(Rc::downgrade(shared));
    let online = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| on_online());
    let target: web_sys::EventTarget = window.clone().into();
    let _ = target.add_event_listener_with_callback("online", online.as_ref().unchecked_ref());
    hooks.push((target, "online", online));
    if let Some(doc) = window.document() {
        let on_visible = wake(Rc::downgrade(shared));
        let d2 = doc.clone();
        let visible = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            if d2.visibility_state() == web_sys::VisibilityState::Visible {
                on_visible();
            }
        });
        let target: web_sys::EventTarget = doc.into();
        let _ = target.add_event_listener_with_callback("visibilitychange", visible.as_ref().unchecked_ref());
        hooks.push((target, "visibilitychange", visible));
    }
    shared.borrow_mut().window_hooks = hooks;
}

impl Drop for Conn {
    fn drop(&mut self) {
        for (t, name, cb) in self.window_hooks.drain(..) {
            let _ = t.remove_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
        }
    }
}

/// The URL argument of `connect`: one URL or a non-empty list of them.
fn urls(url: &JsValue) -> Result<Vec<String>, JsValue> {
    let bad = || {
        js_error(
            ErrorCode::InvalidUrl,
            "connect() takes a URL or a non-empty array of URLs",
        )
    };
    if let Some(u) = url.as_string() {
        return Ok(vec![u]);
    }
    if !js_sys::Array::is_array(url) {
        return Err(bad());
    }
    let list: Vec<String> = js_sys::Array::from(url)
        .iter()
        .map(|u| u.as_string().ok_or_else(bad))
        .collect::<Result<_, _>>()?;
    if list.is_empty() || list.len() > usize::from(u16::MAX) {
        return Err(bad());
    }
    Ok(list)
}

/// Connect to a worker (`ws://host:port/ws/<worker>`, or a list of URLs of its edge servers,
/// tried in turn and failed over between) and resolve once its clock is mirrored.
/// Connection failures are retried with backoff and jitter; refusals (access, token, version,
/// schema), a malformed URL and a missing WebSocket implementation reject at once with an
/// `Error` whose `code` says why.
#[wasm_bindgen(unchecked_return_type = "Promise<RemoteMachine>")]
pub fn connect(
    #[wasm_bindgen(unchecked_param_type = "string | string[]")] url: JsValue,
    #[wasm_bindgen(unchecked_param_type = "ConnectOptions | undefined")] options: JsValue,
) -> js_sys::Promise {
    let (urls, mut cfg) = match self::urls(&url).and_then(|u| Ok((u, self::options(&options)?))) {
        Ok(o) => o,
        Err(e) => return js_sys::Promise::reject(&e),
    };
    cfg.endpoints = urls.len() as u16;
    let (tx, rx) = oneshot::channel();
    let shared: Shared = Rc::new(RefCell::new(Conn {
        urls,
        driver: Connection::new(cfg),
        socket: None,
        listeners: Vec::new(),
        ready: Some(tx),
        timer: None,
        timer_at: None,
        window_hooks: Vec::new(),
        next_wait: 1,
    }));
    hook_window(&shared);
    drive(&shared, |d, now| d.start(now));
    wasm_bindgen_futures::future_to_promise(async move {
        match rx.await {
            Ok(Ok(mirror)) => Ok(JsValue::from(RemoteMachine::new(shared, mirror))),
            Ok(Err(e)) => Err(interop::error(&e)),
            Err(_) => Err(js_error(ErrorCode::Closed, "closed before connecting")),
        }
    })
}
