//! Waits as Promises, contexts as AbortSignals.

use amrpc_core::{Ctx, Wait};
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// A core context canceled when `signal` aborts (already canceled if it has).
pub(crate) fn ctx_for(signal: Option<web_sys::AbortSignal>) -> Option<Ctx> {
    let signal = signal?;
    let ctx = Ctx::new();
    if signal.aborted() {
        ctx.cancel();
        return Some(ctx);
    }
    let c2 = ctx.clone();
    let cb = Closure::once_into_js(move || c2.cancel());
    let _ = signal.add_event_listener_with_callback("abort", cb.unchecked_ref());
    Some(ctx)
}

/// A wait as a Promise: resolves on the condition, rejects with `Aborted` or `Closed`.
pub(crate) fn promise(w: Wait) -> js_sys::Promise {
    // already met (the common case right after a mutation's reply): no future, no task
    match w.try_result() {
        Some(Ok(())) => return js_sys::Promise::resolve(&JsValue::UNDEFINED),
        Some(Err(e)) => return js_sys::Promise::reject(&crate::interop::wait_error(&e)),
        None => {}
    }
    wasm_bindgen_futures::future_to_promise(async move {
        match w.await {
            Ok(()) => Ok(JsValue::UNDEFINED),
            Err(e) => Err(crate::interop::wait_error(&e)),
        }
    })
}

/// An AbortSignal aborted when `ctx` is canceled.
pub(crate) fn signal_for(ctx: &Ctx) -> Result<web_sys::AbortSignal, JsValue> {
    let ctrl = web_sys::AbortController::new()?;
    let signal = ctrl.signal();
    let ctrl = SendWrapper::new(ctrl);
    ctx.on_cancel(move || ctrl.abort());
    Ok(signal)
}
