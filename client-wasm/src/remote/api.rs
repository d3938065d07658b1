//! `RemoteMachine`: the JS face of a connection — mutations through the core's driver, reads and
//! waits on the mirror.

use amrpc_core::{Error, ErrorCode, MutationType, Outcome, Why};
use js_sys::Function;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use super::{Done, Shared, drive};
use crate::interop::{self, js_error};
use crate::machine::JsMachine;
use crate::shared::machine_api;

/// A remote worker mirrored locally: reads and waits answer from the mirrored clock at once;
/// `add`/`remove`/`set` go to the worker and resolve after its reply (whose clock change is
/// already applied, so `is()` right after reflects it).
#[wasm_bindgen]
pub struct RemoteMachine {
    conn: Shared,
    mirror: amrpc_core::Machine,
}

impl RemoteMachine {
    pub(super) fn new(conn: Shared, mirror: amrpc_core::Machine) -> RemoteMachine {
        RemoteMachine { conn, mirror }
    }

    fn core(&self) -> &amrpc_core::Machine {
        &self.mirror
    }

    fn call(&self, ty: MutationType, states: JsValue, args: JsValue) -> js_sys::Promise {
        self.call_with(ty, states, args, |o, _| interop::outcome(o))
    }

    /// A mutation whose outcome `ok` turns into the promise's value.
    fn call_with(
        &self,
        ty: MutationType,
        states: JsValue,
        args: JsValue,
        ok: fn(Outcome, Option<Why>) -> JsValue,
    ) -> js_sys::Promise {
        match interop::states(&states) {
            Ok(names) => self.call_names(ty, &interop::strs(&names), args, ok),
            Err(e) => js_sys::Promise::reject(&e),
        }
    }

    /// A mutation of these states (the one-state methods get a Rust string already).
    fn call_names(
        &self,
        ty: MutationType,
        names: &[&str],
        args: JsValue,
        ok: fn(Outcome, Option<Why>) -> JsValue,
    ) -> js_sys::Promise {
        let args = match interop::args(&args) {
            Ok(a) => a,
            Err(e) => return js_sys::Promise::reject(&e),
        };
        let (done, promise) = Done::new(ok);
        drive(&self.conn, |d, now| d.call(now, ty, names, args, done));
        promise
    }
}

impl RemoteMachine {
    /// A remote wait: `register` sends it under a fresh key; an abort of `signal` cancels it.
    fn remote_wait(
        &self,
        signal: Option<web_sys::AbortSignal>,
        register: impl FnOnce(&mut amrpc_core::session::Connection<super::Done>, u64, super::Done),
    ) -> js_sys::Promise {
        if signal.as_ref().is_some_and(web_sys::AbortSignal::aborted) {
            return js_sys::Promise::reject(&interop::error(&Error::Aborted));
        }
        let key = {
            let mut c = self.conn.borrow_mut();
            c.next_wait += 1;
            c.next_wait
        };
        let (done, promise) = Done::new(|_, _| JsValue::UNDEFINED);
        drive(&self.conn, |d, _| register(d, key, done));
        if let Some(signal) = signal {
            let weak = std::rc::Rc::downgrade(&self.conn);
            let cb = Closure::once_into_js(move || {
                if let Some(s) = weak.upgrade() {
                    drive(&s, |d, _| d.unwait(key));
                }
            });
            let _ = signal.add_event_listener_with_callback("abort", cb.unchecked_ref());
        }
        promise
    }

    fn notify(&self, ty: MutationType, states: &JsValue, args: &JsValue) -> Result<(), JsValue> {
        let names = interop::states(states)?;
        let args = interop::args(args)?;
        let mut r = Ok(());
        drive(&self.conn, |d, _| r = d.notify(ty, &interop::strs(&names), args));
        r.map_err(|e| interop::error(&e))
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
        self.call_names(MutationType::Add, &[state], args, |o, _| interop::outcome(o))
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
        self.call_names(MutationType::Remove, &[state], args, |o, _| interop::outcome(o))
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

    /// A no-sync add (upstream `AddNS`): sent at once, no reply, never resent (run at most
    /// once; not at all if the connection drops first). Its change reaches the mirror with the
    /// next push or reply, or `sync()`. Throws `StateUnknown`, `NotConnected` or `Closed`.
    #[wasm_bindgen(js_name = addNS)]
    pub fn add_ns(
        &self,
        #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> Result<(), JsValue> {
        self.notify(MutationType::Add, &states, &args)
    }

    /// `addNS` of one state (upstream `Add1NS`).
    #[wasm_bindgen(js_name = add1NS)]
    pub fn add1_ns(
        &self,
        state: &str,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> Result<(), JsValue> {
        self.notify(MutationType::Add, &state.into(), &args)
    }

    /// A no-sync remove (see `addNS`).
    #[wasm_bindgen(js_name = removeNS)]
    pub fn remove_ns(
        &self,
        #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> Result<(), JsValue> {
        self.notify(MutationType::Remove, &states, &args)
    }

    /// A mutation by type (`"add"`, `"remove"`, `"set"`), resolving to `{outcome, queueTick?,
    /// why?}`: a queued mutation's `queueTick` can be awaited with `whenQueue`; a canceled one's
    /// `why` names the relation or handler that canceled it.
    #[wasm_bindgen(unchecked_return_type = "Promise<MutationResult>")]
    pub fn mutate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MutationType")] ty: &str,
        #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> js_sys::Promise {
        let ty = match ty {
            "add" => MutationType::Add,
            "remove" => MutationType::Remove,
            "set" => MutationType::Set,
            other => {
                let msg = format!("unknown mutation type {other:?} (add, remove, set)");
                return js_sys::Promise::reject(&js_error(ErrorCode::InvalidArgs, &msg));
            }
        };
        self.call_with(ty, states, args, interop::mutation_result)
    }

    /// Evaluated on the worker: resolves once `state`'s final handler ran there with args that
    /// hold all of `args` (the mirror then shows that clock). Rejects with `Aborted` when
    /// `signal` aborts (the worker drops the wait), `Disconnected` when the connection drops,
    /// `TooManyWaits` past the server's per-session limit, `StateUnknown`.
    #[wasm_bindgen(js_name = whenArgs, unchecked_return_type = "Promise<void>")]
    pub fn when_args(
        &self,
        state: &str,
        #[wasm_bindgen(unchecked_param_type = "Args")] args: JsValue,
        signal: Option<web_sys::AbortSignal>,
    ) -> js_sys::Promise {
        let args = match interop::args(&args) {
            Ok(a) => a.unwrap_or_default(),
            Err(e) => return js_sys::Promise::reject(&e),
        };
        let state = state.to_string();
        self.remote_wait(signal, move |d, key, tx| d.when_args(key, &state, args, tx))
    }

    /// Evaluated on the worker: resolves once its mutation with queue tick `tick` (from
    /// `mutate()`'s `queueTick`) has been processed; rejects as `whenArgs`.
    #[wasm_bindgen(js_name = whenQueue, unchecked_return_type = "Promise<void>")]
    pub fn when_queue(&self, tick: f64, signal: Option<web_sys::AbortSignal>) -> js_sys::Promise {
        if !(tick.is_finite() && tick >= 0.0) {
            return js_sys::Promise::reject(&js_error(ErrorCode::InvalidArgs, "queue tick must be a number ≥ 0"));
        }
        let tick = tick as u64;
        self.remote_wait(signal, move |d, key, tx| d.when_queue(key, tick, tx))
    }

    /// Fetch the worker's full clock (upstream `Sync`): resolves once the mirror holds it, after
    /// every mutation sent before (no-sync ones included) has run on the worker.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn sync(&self) -> js_sys::Promise {
        let (done, promise) = Done::new(|_, _| JsValue::UNDEFINED);
        drive(&self.conn, |d, _| d.sync(done));
        promise
    }

    /// Add `Exception` on the worker with an `err` arg.
    #[wasm_bindgen(js_name = addErr, unchecked_return_type = "Promise<Outcome>")]
    pub fn add_err(
        &self,
        message: &str,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> js_sys::Promise {
        let args = match interop::args(&args) {
            Ok(a) => a,
            Err(e) => return js_sys::Promise::reject(&e),
        };
        let (done, promise) = Done::new(|o, _| interop::outcome(o));
        drive(&self.conn, |d, now| {
            d.call_err(now, amrpc_core::EXCEPTION, message, args, done)
        });
        promise
    }

    /// The worker's last error message, as its server reported it.
    #[wasm_bindgen(unchecked_return_type = "string | undefined")]
    pub fn err(&self) -> JsValue {
        self.conn
            .borrow()
            .driver
            .worker_err()
            .map_or(JsValue::UNDEFINED, JsValue::from)
    }

    /// The client's own states, as on the native client (`Connecting`, `Connected`,
    /// `HandshakeDone`, `Ready`, `RetryingConn`, `RetryingCall`, `ConnRetryFailed` …): a local
    /// `Machine` to read and wait on (mutating it only changes this view).
    #[wasm_bindgen(getter, js_name = clientStates)]
    pub fn client_states(&self) -> JsMachine {
        JsMachine::wrap(self.conn.borrow().driver.states().clone())
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

    /// Connection status.
    #[wasm_bindgen(
        getter,
        unchecked_return_type = "\"connecting\" | \"open\" | \"ready\" | \"disconnected\" | \"closed\""
    )]
    pub fn status(&self) -> String {
        self.conn.borrow().driver.status().as_str().into()
    }

    /// When the next reconnect attempt is due (ms since the Unix epoch, like `Date.now()`), while
    /// one is scheduled; `undefined` otherwise. For a reconnect countdown.
    #[wasm_bindgen(getter, js_name = retryAt)]
    pub fn retry_at(&self) -> Option<f64> {
        self.conn.borrow().driver.retry_at().map(|t| t as f64)
    }

    /// Say bye and close; pending calls reject with `Closed`, waits too.
    pub fn close(&self) {
        drive(&self.conn, |d, _| d.close());
        self.mirror.dispose();
    }
}

machine_api!(RemoteMachine, RemoteMachine);
