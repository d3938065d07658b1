//! The WebSocket, found at run time: the global one (browsers, Node ≥ 22, Deno, Bun), or one
//! given with `useWebSocket()` (the npm package's Node entry passes the `ws` package's, as
//! Socket.IO's client does). Methods are called structurally (`ws.send(…)`), so any object with
//! the browser's WebSocket interface works.

use std::cell::RefCell;
use std::rc::Rc;

use amrpc_core::ErrorCode;
use js_sys::{Array, Function, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::remote::SocketEvent;

#[wasm_bindgen]
extern "C" {
    /// Anything with the WebSocket interface.
    pub(crate) type JsSocket;
    #[wasm_bindgen(method, structural, catch)]
    fn send(this: &JsSocket, data: &Uint8Array) -> Result<(), JsValue>;
    #[wasm_bindgen(method, structural, catch)]
    fn close(this: &JsSocket) -> Result<(), JsValue>;
    #[wasm_bindgen(method, structural, setter, js_name = binaryType)]
    fn set_binary_type(this: &JsSocket, v: &str);
    #[wasm_bindgen(method, structural, setter)]
    fn set_onopen(this: &JsSocket, f: &JsValue);
    #[wasm_bindgen(method, structural, setter)]
    fn set_onmessage(this: &JsSocket, f: &JsValue);
    #[wasm_bindgen(method, structural, setter)]
    fn set_onclose(this: &JsSocket, f: &JsValue);
    #[wasm_bindgen(method, structural, setter)]
    fn set_onerror(this: &JsSocket, f: &JsValue);

    /// A message event (the browser's or `ws`'s).
    type MessageLike;
    #[wasm_bindgen(method, structural, getter)]
    fn data(this: &MessageLike) -> JsValue;
}

thread_local! {
    static IMPL: RefCell<Option<Function>> = const { RefCell::new(None) };
    /// A JS function that does nothing (not tied to a dropped Rust closure, unlike per-socket
    /// ones): Node's `ws` throws an unhandled `error` event as an exception.
    static NOOP: JsValue = Closure::<dyn FnMut(JsValue)>::new(|_| {}).into_js_value();
}

/// Use this WebSocket constructor instead of `globalThis.WebSocket` (e.g. the `ws` package's
/// `WebSocket` on Node < 22; the package's Node entry does this by itself).
#[wasm_bindgen(js_name = useWebSocket)]
pub fn use_web_socket(
    #[wasm_bindgen(unchecked_param_type = "WebSocketConstructor")] ctor: JsValue,
) -> Result<(), JsValue> {
    let f = ctor
        .dyn_into::<Function>()
        .map_err(|_| crate::interop::js_error(ErrorCode::InvalidArgs, "useWebSocket needs a constructor"))?;
    IMPL.with(|i| *i.borrow_mut() = Some(f));
    Ok(())
}

/// Why a socket could not be made; both codes are final (retrying cannot help).
pub(crate) struct DialError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

/// An open (or opening) socket; dropping it closes it and detaches its callbacks.
pub(crate) struct Socket {
    ws: JsSocket,
    _on_open: Closure<dyn FnMut(JsValue)>,
    _on_message: Closure<dyn FnMut(JsValue)>,
    _on_close: Closure<dyn FnMut(JsValue)>,
}

impl Socket {
    /// Send a frame (copied out of wasm memory: a socket may keep the buffer until it is sent).
    /// The driver sends only on an open link; a socket that closed meanwhile throws (caught) or
    /// drops the frame, as reading `readyState` first would — without a second call per frame.
    pub(crate) fn send(&self, frame: &[u8]) {
        let _ = self.ws.send(&Uint8Array::from(frame));
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let noop = NOOP.with(Clone::clone);
        self.ws.set_onopen(&noop);
        self.ws.set_onmessage(&noop);
        self.ws.set_onclose(&noop);
        let _ = self.ws.close();
    }
}

fn constructor() -> Option<Function> {
    if let Some(f) = IMPL.with(|i| i.borrow().clone()) {
        return Some(f);
    }
    Reflect::get(&js_sys::global(), &"WebSocket".into())
        .ok()
        .and_then(|v| v.dyn_into::<Function>().ok())
}

/// A URL a WebSocket can open: `ws:` or `wss:` with a host.
fn check_url(url: &str) -> Result<(), DialError> {
    let rest = url.strip_prefix("ws://").or_else(|| url.strip_prefix("wss://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(()),
        _ => Err(DialError {
            code: ErrorCode::InvalidUrl,
            message: format!("not a WebSocket URL (ws:// or wss:// and a host): {url:?}"),
        }),
    }
}

/// Open a socket to `url`; its events go to `on`.
pub(crate) fn open(url: &str, on: Rc<dyn Fn(SocketEvent)>) -> Result<Socket, DialError> {
    check_url(url)?;
    let Some(ctor) = constructor() else {
        return Err(DialError {
            code: ErrorCode::NoWebSocket,
            message: "no WebSocket implementation: on Node < 22 install the `ws` package (a dependency of \
                      amrpc's Node entry) or call useWebSocket()"
                .into(),
        });
    };
    let ws: JsSocket = Reflect::construct(&ctor, &Array::of1(&url.into()))
        .map_err(|e| DialError {
            code: ErrorCode::InvalidUrl,
            message: e
                .dyn_ref::<js_sys::Error>()
                .map_or_else(|| format!("cannot open {url:?}"), |e| String::from(e.message())),
        })?
        .unchecked_into();
    ws.set_binary_type("arraybuffer");
    NOOP.with(|f| ws.set_onerror(f));
    let o1 = on.clone();
    let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_| o1(SocketEvent::Open));
    let o2 = on.clone();
    let on_message = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
        // a structural getter: `ws`'s events are not browser MessageEvents
        if let Ok(buf) = e
            .unchecked_into::<MessageLike>()
            .data()
            .dyn_into::<js_sys::ArrayBuffer>()
        {
            o2(SocketEvent::Frame(Uint8Array::new(&buf).to_vec()));
        }
    });
    let on_close = Closure::<dyn FnMut(JsValue)>::new(move |_| on(SocketEvent::Closed));
    ws.set_onopen(on_open.as_ref());
    ws.set_onmessage(on_message.as_ref());
    ws.set_onclose(on_close.as_ref());
    Ok(Socket {
        ws,
        _on_open: on_open,
        _on_message: on_message,
        _on_close: on_close,
    })
}
