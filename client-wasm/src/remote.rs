//! `connect()` and `RemoteMachine`: the browser/Node shell around `amrpc_core`'s
//! `ClientSession` — a WebSocket, timers, reconnects; all protocol logic is in the core.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use amrpc_core::session::{ClientConfig, ClientOutput, ClientSession};
use amrpc_core::{MutationType, Outcome};
use futures_channel::oneshot;
use gloo_timers::callback::{Interval, Timeout};
use js_sys::{Function, Object, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::interop::{self, js_error};
use crate::shared::machine_api;

#[derive(Clone)]
struct Options {
    client_id: String,
    token: Option<String>,
    schema_hash: Option<u64>,
    push_interval_ms: Option<u32>,
    states: Option<Vec<String>>,
    conn_retries: u32,
    retry_delay_ms: f64,
    retry_backoff_ms: f64,
    call_timeout_ms: f64,
    call_retries: u32,
    reconnect: bool,
}

impl Options {
    fn parse(o: &JsValue) -> Result<Options, JsValue> {
        let get = |k: &str| -> JsValue {
            if o.is_object() {
                Reflect::get(o, &k.into()).unwrap_or(JsValue::UNDEFINED)
            } else {
                JsValue::UNDEFINED
            }
        };
        let num = |k: &str, d: f64| get(k).as_f64().unwrap_or(d);
        let schema_hash = match get("schemaHash") {
            v if v.is_undefined() || v.is_null() => None,
            v if v.is_bigint() => {
                Some(u64::try_from(v).map_err(|_| js_error("InvalidArgs", "schemaHash out of range"))?)
            }
            v => v
                .as_string()
                .map(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16))
                .transpose()
                .map_err(|_| js_error("InvalidArgs", "schemaHash must be a bigint or a hex string"))?,
        };
        Ok(Options {
            client_id: get("clientId").as_string().unwrap_or_else(|| "rc-browser".into()),
            token: get("token").as_string(),
            schema_hash,
            push_interval_ms: get("pushIntervalMs").as_f64().map(|v| v as u32),
            states: interop::opt_states(&get("states"))?,
            conn_retries: num("connRetries", 15.0) as u32,
            retry_delay_ms: num("retryDelayMs", 100.0),
            retry_backoff_ms: num("retryBackoffMs", 3000.0),
            call_timeout_ms: num("callTimeoutMs", 3000.0),
            call_retries: num("callRetries", 15.0) as u32,
            reconnect: get("reconnect").as_bool().unwrap_or(true),
        })
    }
}

struct Waiter {
    tx: oneshot::Sender<Result<Outcome, JsValue>>,
}

struct Socket {
    ws: WebSocket,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_open: Closure<dyn FnMut(JsValue)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onopen(None);
        let _ = self.ws.close();
    }
}

struct Conn {
    url: String,
    opts: Options,
    session: ClientSession,
    socket: Option<Socket>,
    waiters: HashMap<u32, Waiter>,
    listeners: Vec<(String, Function)>,
    ready: Option<oneshot::Sender<Result<amrpc_core::Machine, JsValue>>>,
    closed: bool,
    attempts: u32,
    delay_ms: f64,
    reconnect_timer: Option<Timeout>,
    ticker: Option<Interval>,
    last_time: Vec<u64>,
    window_hooks: Vec<WindowHook>,
}

type Shared = Rc<RefCell<Conn>>;

/// A listener on `window`/`document`, removed when the connection is dropped.
type WindowHook = (web_sys::EventTarget, &'static str, Closure<dyn FnMut(web_sys::Event)>);

/// What to tell JS after the borrow of the connection ends.
enum Emit {
    Event(&'static str, JsValue),
}

fn status(s: &str) -> Emit {
    Emit::Event("status", s.into())
}

impl Conn {
    fn send(&self, frame: &[u8]) {
        if let Some(s) = &self.socket {
            if s.ws.ready_state() == WebSocket::OPEN {
                let _ = s.ws.send_with_u8_array(frame);
            }
        }
    }

    fn fail_all(&mut self, err: &JsValue) {
        for (req, w) in self.waiters.drain() {
            self.session.forget(req);
            let _ = w.tx.send(Err(err.clone()));
        }
    }
}

fn emit(shared: &Shared, events: Vec<Emit>) {
    if events.is_empty() {
        return;
    }
    let listeners: Vec<(String, Function)> = shared.borrow().listeners.clone();
    for Emit::Event(name, v) in events {
        for (ev, f) in &listeners {
            if ev == name {
                if let Err(e) = f.call1(&JsValue::NULL, &v) {
                    web_sys::console::error_2(&format!("amrpc {name} listener threw:").into(), &e);
                }
            }
        }
    }
}

thread_local! {
    /// A JS function that does nothing (not tied to a dropped Rust closure, unlike per-socket ones).
    static NOOP_HANDLER: JsValue = Closure::<dyn FnMut(JsValue)>::new(|_| {}).into_js_value();
}

fn open(shared: &Shared) {
    let url = shared.borrow().url.clone();
    let ws = match WebSocket::new(&url) {
        Ok(ws) => ws,
        Err(e) => {
            web_sys::console::warn_2(&"amrpc: cannot open".into(), &e);
            schedule_reconnect(shared);
            return;
        }
    };
    ws.set_binary_type(BinaryType::Arraybuffer);
    // A failed connection also fires `error` (then `close`, which is handled). Browsers ignore an
    // unhandled `error`, but Node's `ws` package throws it as an uncaught exception, also for a
    // socket closed while connecting; so every socket gets a no-op handler that stays after drop.
    NOOP_HANDLER.with(|f| ws.set_onerror(Some(f.unchecked_ref())));
    let weak: Weak<RefCell<Conn>> = Rc::downgrade(shared);
    let w1 = weak.clone();
    let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        if let Some(s) = w1.upgrade() {
            let hello = s.borrow_mut().session.hello();
            s.borrow().send(&hello);
            emit(&s, vec![status("open")]);
        }
    });
    let w2 = weak.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        if let Some(s) = w2.upgrade() {
            if let Ok(buf) = e.data().dyn_into::<js_sys::ArrayBuffer>() {
                on_frame(&s, &Uint8Array::new(&buf).to_vec());
            }
        }
    });
    let w3 = weak;
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |_e: CloseEvent| {
        if let Some(s) = w3.upgrade() {
            on_closed(&s);
        }
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    shared.borrow_mut().socket = Some(Socket {
        ws,
        _on_message: on_message,
        _on_close: on_close,
        _on_open: on_open,
    });
    emit(shared, vec![status("connecting")]);
}

fn on_frame(shared: &Shared, bytes: &[u8]) {
    let mut events = Vec::new();
    let mut stop: Option<JsValue> = None;
    {
        let mut c = shared.borrow_mut();
        let outputs = c.session.handle_frame(bytes);
        for o in outputs {
            match o {
                ClientOutput::Send(f) => c.send(&f),
                ClientOutput::Ready => {
                    c.attempts = 0;
                    c.delay_ms = c.opts.retry_delay_ms;
                    if let Some(tx) = c.ready.take() {
                        if let Some(m) = c.session.mirror() {
                            let _ = tx.send(Ok(m.clone()));
                        }
                    }
                    // calls made before a cut or while disconnected: (re)send, at most once
                    for f in c.session.resend_pending(js_sys::Date::now() as u64) {
                        c.send(&f);
                    }
                    events.push(status("ready"));
                }
                ClientOutput::Reply { req, result } => {
                    if let Some(w) = c.waiters.remove(&req) {
                        let r = result.map_err(|e| js_error(&format!("{:?}", e.code), &e.message));
                        let _ = w.tx.send(r);
                    }
                }
                ClientOutput::Synced => {}
                ClientOutput::Payload(p) => {
                    let o = Object::new();
                    let _ = Reflect::set(&o, &"name".into(), &p.name.into());
                    let _ = Reflect::set(&o, &"source".into(), &p.source.into());
                    let _ = Reflect::set(&o, &"token".into(), &js_sys::BigInt::from(p.token).into());
                    let _ = Reflect::set(&o, &"data".into(), &Uint8Array::from(p.data.as_slice()).into());
                    events.push(Emit::Event("payload", o.into()));
                }
                ClientOutput::Error(e) => {
                    events.push(Emit::Event("error", js_error(&format!("{:?}", e.code), &e.message)));
                }
                ClientOutput::Closed(e) => {
                    let err = js_error(&format!("{:?}", e.code), &e.message);
                    let fatal = amrpc_core::session::final_code(e.code);
                    if fatal {
                        stop = Some(err);
                    } else {
                        // We reconnect after a non-fatal bye (e.g. ShuttingDown when the server drops
                        // the worker's sessions), but the core marks the session closed until the next
                        // `hello()`, so calls made during the outage would fail with `Disposed`. Re-arm
                        // it now (the frame is discarded; the next connection sends its own Hello).
                        let _ = c.session.hello();
                        events.push(Emit::Event("error", err));
                    }
                }
            }
        }
        if let Some(m) = c.session.mirror().cloned() {
            let t = m.time(None);
            if t != c.last_time {
                c.last_time = t;
                events.push(Emit::Event("clock", interop::clock(&m.clock(None))));
            }
        }
    }
    emit(shared, events);
    if let Some(err) = stop {
        shutdown(shared, err);
    }
}

/// Stop for good: reject everything pending, close the socket.
fn shutdown(shared: &Shared, err: JsValue) {
    let events = {
        let mut c = shared.borrow_mut();
        c.closed = true;
        c.fail_all(&err);
        if let Some(tx) = c.ready.take() {
            let _ = tx.send(Err(err.clone()));
        }
        c.socket = None;
        c.reconnect_timer = None;
        c.ticker = None;
        c.window_hooks.clear();
        vec![status("closed")]
    };
    emit(shared, events);
}

fn on_closed(shared: &Shared) {
    {
        let mut c = shared.borrow_mut();
        if c.closed {
            return;
        }
        c.session.disconnected();
        c.socket = None;
        if !c.opts.reconnect && c.ready.is_none() {
            drop(c);
            shutdown(shared, js_error("Closed", "the connection closed"));
            return;
        }
    }
    emit(shared, vec![status("disconnected")]);
    schedule_reconnect(shared);
}

fn schedule_reconnect(shared: &Shared) {
    let mut c = shared.borrow_mut();
    if c.closed || c.reconnect_timer.is_some() {
        return;
    }
    c.attempts += 1;
    if c.attempts > c.opts.conn_retries {
        drop(c);
        let attempts = shared.borrow().attempts - 1;
        shutdown(
            shared,
            js_error(
                "ConnRetryFailed",
                &format!("gave up after {attempts} connection attempts"),
            ),
        );
        return;
    }
    // backoff with jitter: delay × [0.5, 1.5), doubling up to the cap
    let delay = c.delay_ms * (0.5 + js_sys::Math::random());
    c.delay_ms = (c.delay_ms * 2.0).min(c.opts.retry_backoff_ms.max(c.opts.retry_delay_ms));
    let weak = Rc::downgrade(shared);
    c.reconnect_timer = Some(Timeout::new(delay as u32, move || {
        if let Some(s) = weak.upgrade() {
            s.borrow_mut().reconnect_timer = None;
            open(&s);
        }
    }));
}

/// The browser came back online or the page became visible: reconnect now, not at the next
/// backoff step.
fn reconnect_now(shared: &Shared) {
    let waiting = {
        let c = shared.borrow();
        !c.closed && c.socket.is_none()
    };
    if waiting {
        shared.borrow_mut().reconnect_timer = None;
        open(shared);
    }
}

fn check_timeouts(shared: &Shared) {
    let mut c = shared.borrow_mut();
    let (timeout, retries) = (c.opts.call_timeout_ms as u64, c.opts.call_retries);
    let t = c.session.call_timeouts(js_sys::Date::now() as u64, timeout, retries);
    for f in &t.resend {
        c.send(f);
    }
    for req in t.expired {
        if let Some(w) = c.waiters.remove(&req) {
            let _ = w.tx.send(Err(js_error("Timeout", "no reply after all retries")));
        }
    }
}

fn hook_window(shared: &Shared) {
    let Some(window) = web_sys::window() else { return };
    let mut hooks = Vec::new();
    let weak = Rc::downgrade(shared);
    let online = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        if let Some(s) = weak.upgrade() {
            reconnect_now(&s);
        }
    });
    let target: web_sys::EventTarget = window.clone().into();
    let _ = target.add_event_listener_with_callback("online", online.as_ref().unchecked_ref());
    hooks.push((target, "online", online));
    if let Some(doc) = window.document() {
        let weak = Rc::downgrade(shared);
        let d2 = doc.clone();
        let visible = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            if d2.visibility_state() == web_sys::VisibilityState::Visible {
                if let Some(s) = weak.upgrade() {
                    reconnect_now(&s);
                }
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

/// Connect to a worker (`ws://host:port/ws/<worker>`) and resolve once its clock is mirrored.
/// Connection failures are retried with backoff and jitter; refusals (access, token, version,
/// schema) reject with an `Error` whose `code` says why.
#[wasm_bindgen(unchecked_return_type = "Promise<RemoteMachine>")]
pub fn connect(
    url: &str,
    #[wasm_bindgen(unchecked_param_type = "ConnectOptions | undefined")] options: JsValue,
) -> js_sys::Promise {
    let opts = match Options::parse(&options) {
        Ok(o) => o,
        Err(e) => return js_sys::Promise::reject(&e),
    };
    let instance =
        (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64 ^ (js_sys::Date::now() as u64).rotate_left(32);
    let session = ClientSession::new(ClientConfig {
        client_id: opts.client_id.clone(),
        instance,
        token: opts.token.clone(),
        schema_hash: opts.schema_hash,
        push_interval_ms: opts.push_interval_ms,
        states: opts.states.clone(),
        ..Default::default()
    });
    let (tx, rx) = oneshot::channel();
    let shared: Shared = Rc::new(RefCell::new(Conn {
        url: url.to_string(),
        delay_ms: opts.retry_delay_ms,
        opts,
        session,
        socket: None,
        waiters: HashMap::new(),
        listeners: Vec::new(),
        ready: Some(tx),
        closed: false,
        attempts: 0,
        reconnect_timer: None,
        ticker: None,
        last_time: Vec::new(),
        window_hooks: Vec::new(),
    }));
    let weak = Rc::downgrade(&shared);
    shared.borrow_mut().ticker = Some(Interval::new(100, move || {
        if let Some(s) = weak.upgrade() {
            check_timeouts(&s);
        }
    }));
    hook_window(&shared);
    open(&shared);
    wasm_bindgen_futures::future_to_promise(async move {
        match rx.await {
            Ok(Ok(mirror)) => Ok(JsValue::from(RemoteMachine { conn: shared, mirror })),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(js_error("Closed", "closed before connecting")),
        }
    })
}

/// A remote worker mirrored locally: reads and waits answer from the mirrored clock at once;
/// `add`/`remove`/`set` go to the worker and resolve after its reply (whose clock change is
/// already applied, so `is()` right after reflects it).
#[wasm_bindgen]
pub struct RemoteMachine {
    conn: Shared,
    mirror: amrpc_core::Machine,
}

impl RemoteMachine {
    fn core(&self) -> &amrpc_core::Machine {
        &self.mirror
    }

    fn call(&self, ty: MutationType, states: JsValue, args: JsValue) -> js_sys::Promise {
        let names = match interop::states(&states) {
            Ok(n) => n,
            Err(e) => return js_sys::Promise::reject(&e),
        };
        let args = match interop::args(&args) {
            Ok(a) => a,
            Err(e) => return js_sys::Promise::reject(&e),
        };
        if self.conn.borrow().closed {
            return js_sys::Promise::reject(&js_error("Closed", "the client is closed"));
        }
        if let Some(s) = names.iter().find(|s| !self.mirror.has1(s)) {
            return js_sys::Promise::reject(&js_error("StateUnknown", &format!("state unknown: {s}")));
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut c = self.conn.borrow_mut();
            match c.session.mutate(ty, &interop::strs(&names), args) {
                Ok((req, frame)) => {
                    c.waiters.insert(req, Waiter { tx });
                    c.session.sent(req, js_sys::Date::now() as u64);
                    if c.session.is_ready() {
                        c.send(&frame);
                    }
                }
                Err(e) => return js_sys::Promise::reject(&interop::core_error(&e)),
            }
        }
        wasm_bindgen_futures::future_to_promise(async move {
            match rx.await {
                Ok(Ok(o)) => Ok(interop::outcome(o)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(js_error("Closed", "the client is closed")),
            }
        })
    }
}

#[wasm_bindgen]
impl RemoteMachine {
    /// The mirror's id (`<clientId>-<workerId>`).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.mirror.id().to_string()
    }

    /// Activate states on the worker.
    #[wasm_bindgen(unchecked_return_type = "Promise<Outcome>")]
    pub fn add(
        &self,
        #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> js_sys::Promise {
        self.call(MutationType::Add, states, args)
    }

    /// Activate one state on the worker.
    #[wasm_bindgen(unchecked_return_type = "Promise<Outcome>")]
    pub fn add1(
        &self,
        state: &str,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> js_sys::Promise {
        self.call(MutationType::Add, state.into(), args)
    }

    /// Deactivate states on the worker.
    #[wasm_bindgen(unchecked_return_type = "Promise<Outcome>")]
    pub fn remove(
        &self,
        #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> js_sys::Promise {
        self.call(MutationType::Remove, states, args)
    }

    /// Deactivate one state on the worker.
    #[wasm_bindgen(unchecked_return_type = "Promise<Outcome>")]
    pub fn remove1(
        &self,
        state: &str,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> js_sys::Promise {
        self.call(MutationType::Remove, state.into(), args)
    }

    /// Make exactly these states (and implied ones) active on the worker.
    #[wasm_bindgen(unchecked_return_type = "Promise<Outcome>")]
    pub fn set(
        &self,
        #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> js_sys::Promise {
        self.call(MutationType::Set, states, args)
    }

    /// Add `Exception` on the worker with an `err` arg.
    #[wasm_bindgen(js_name = addErr, unchecked_return_type = "Promise<Outcome>")]
    pub fn add_err(
        &self,
        message: &str,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> js_sys::Promise {
        let args = match interop::args(&args) {
            Ok(a) => a.unwrap_or_default().with("err", message),
            Err(e) => return js_sys::Promise::reject(&e),
        };
        let mut states = vec![amrpc_core::EXCEPTION.to_string()];
        if self.mirror.has1("ErrOnClient") {
            states.push("ErrOnClient".into());
        }
        let arr: js_sys::Array = states.into_iter().map(JsValue::from).collect();
        self.call(MutationType::Add, arr.into(), interop::args_to_js(&args))
    }

    /// The worker's last error message, as its server reported it.
    #[wasm_bindgen(unchecked_return_type = "string | undefined")]
    pub fn err(&self) -> JsValue {
        self.conn
            .borrow()
            .session
            .worker_err()
            .map_or(JsValue::UNDEFINED, JsValue::from)
    }

    /// Listen: `"clock"` (ticks by name, after every change), `"payload"` (`{name, source,
    /// token, data}`), `"status"` (`"connecting" | "open" | "ready" | "disconnected" |
    /// "closed"`), `"error"` (an `Error` with a `code`).
    pub fn on(&self, #[wasm_bindgen(unchecked_param_type = "RemoteEvent")] event: &str, callback: Function) {
        self.conn.borrow_mut().listeners.push((event.to_string(), callback));
    }

    /// Stop listening.
    pub fn off(&self, #[wasm_bindgen(unchecked_param_type = "RemoteEvent")] event: &str, callback: &Function) {
        self.conn
            .borrow_mut()
            .listeners
            .retain(|(e, f)| !(e == event && f == callback));
    }

    /// Connection status: `"connecting" | "ready" | "disconnected" | "closed"`.
    #[wasm_bindgen(
        getter,
        unchecked_return_type = "\"connecting\" | \"ready\" | \"disconnected\" | \"closed\""
    )]
    pub fn status(&self) -> String {
        let c = self.conn.borrow();
        if c.closed {
            "closed"
        } else if c.session.is_ready() {
            "ready"
        } else if c.socket.is_some() {
            "connecting"
        } else {
            "disconnected"
        }
        .into()
    }

    /// Say bye and close; pending calls reject with `Closed`, waits too.
    pub fn close(&self) {
        {
            let mut c = self.conn.borrow_mut();
            if c.closed {
                return;
            }
            let bye = c.session.bye();
            c.send(&bye);
        }
        shutdown(&self.conn, js_error("Closed", "the client was closed"));
        self.mirror.dispose();
    }
}

machine_api!(RemoteMachine, RemoteMachine);
