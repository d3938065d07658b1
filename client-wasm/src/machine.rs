//! `Machine`: a local state machine for JS, with handlers as JS callbacks.

use amrpc_core::{Handlers, MutationType, Opts};
use js_sys::{Function, Object, Reflect};
use send_wrapper::SendWrapper;
use wasm_bindgen::prelude::*;

use crate::interop;
use crate::shared::machine_api;

/// Monotonic-enough clock in nanoseconds for handler timeouts (`Instant` panics in browsers).
pub(crate) fn now_ns() -> u64 {
    (js_sys::Date::now() * 1e6) as u64
}

/// A local machine: the same semantics as the Rust core (it *is* the core, compiled to wasm).
///
/// ```js
/// const m = new Machine({ Foo: { require: ["Bar"] }, Bar: {} });
/// m.add("Foo");            // "canceled": Foo requires Bar
/// m.add(["Foo", "Bar"]);   // "executed"
/// m.handle("FooState", (e) => console.log("Foo with", e.args));
/// ```
#[wasm_bindgen(js_name = Machine)]
pub struct JsMachine {
    m: amrpc_core::Machine,
}

impl JsMachine {
    fn core(&self) -> &amrpc_core::Machine {
        &self.m
    }

    /// A JS handle on an existing core machine (a client's own states).
    pub(crate) fn wrap(m: amrpc_core::Machine) -> JsMachine {
        JsMachine { m }
    }

    fn mutate(&self, ty: MutationType, states: JsValue, args: JsValue) -> Result<JsValue, JsValue> {
        let s = interop::states(&states)?;
        let a = interop::args(&args)?;
        let names = interop::strs(&s);
        let r = match ty {
            MutationType::Remove => self.m.try_remove(&names, a),
            MutationType::Set => self.m.try_set(&names, a),
            _ => self.m.try_add(&names, a),
        };
        r.map(interop::outcome).map_err(|e| interop::error(&e))
    }
}

#[wasm_bindgen(js_class = Machine)]
impl JsMachine {
    /// A machine for `schema` (`{ State: { auto, multi, require, add, remove, after, tags } }`).
    /// Options: `id`, `names` (the state order), `handlerTimeoutMs`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "Schema")] schema: JsValue,
        #[wasm_bindgen(unchecked_param_type = "MachineOptions | undefined")] options: JsValue,
    ) -> Result<JsMachine, JsValue> {
        let schema = interop::schema(&schema)?;
        let get = |k: &str| Reflect::get(&options, &k.into()).unwrap_or(JsValue::UNDEFINED);
        let mut opts = Opts {
            now: Some(now_ns),
            ..Default::default()
        };
        if options.is_object() {
            opts.id = get("id").as_string();
            if let Some(ms) = get("handlerTimeoutMs").as_f64() {
                opts.handler_timeout = Some(core::time::Duration::from_micros((ms * 1000.0) as u64));
            }
        }
        let m = amrpc_core::Machine::new(schema, opts).map_err(|e| interop::error(&e))?;
        if options.is_object() {
            let names = get("names");
            if !names.is_undefined() {
                let n = interop::states(&names)?;
                m.verify_states(&interop::strs(&n)).map_err(|e| interop::error(&e))?;
            }
        }
        Ok(JsMachine { m })
    }

    /// The machine id.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.m.id().to_string()
    }

    /// Activate states; returns `"executed"`, `"canceled"` or `"queued"` (when called from a
    /// handler). Unknown states throw `StateUnknown`.
    #[wasm_bindgen(unchecked_return_type = "Outcome")]
    pub fn add(
        &self,
        #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> Result<JsValue, JsValue> {
        self.mutate(MutationType::Add, states, args)
    }

    /// Activate one state.
    #[wasm_bindgen(unchecked_return_type = "Outcome")]
    pub fn add1(
        &self,
        state: &str,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> Result<JsValue, JsValue> {
        self.mutate(MutationType::Add, state.into(), args)
    }

    /// Deactivate states.
    #[wasm_bindgen(unchecked_return_type = "Outcome")]
    pub fn remove(
        &self,
        #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> Result<JsValue, JsValue> {
        self.mutate(MutationType::Remove, states, args)
    }

    /// Deactivate one state.
    #[wasm_bindgen(unchecked_return_type = "Outcome")]
    pub fn remove1(
        &self,
        state: &str,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> Result<JsValue, JsValue> {
        self.mutate(MutationType::Remove, state.into(), args)
    }

    /// Make exactly these states (and implied ones) active.
    #[wasm_bindgen(unchecked_return_type = "Outcome")]
    pub fn set(
        &self,
        #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> Result<JsValue, JsValue> {
        self.mutate(MutationType::Set, states, args)
    }

    /// Store an error and activate `Exception`.
    #[wasm_bindgen(js_name = addErr, unchecked_return_type = "Outcome")]
    pub fn add_err(
        &self,
        message: &str,
        #[wasm_bindgen(unchecked_param_type = "Args | undefined")] args: JsValue,
    ) -> Result<JsValue, JsValue> {
        let a = interop::args(&args)?;
        Ok(interop::outcome(self.m.add_err(message, a)))
    }

    /// The last error's message, if any.
    #[wasm_bindgen(unchecked_return_type = "string | undefined")]
    pub fn err(&self) -> JsValue {
        self.m.err().map_or(JsValue::UNDEFINED, |e| e.to_string().into())
    }

    /// Bind one handler by its upstream name (`"FooEnter"`, `"FooState"`, `"FooBar"`,
    /// `"AnyAny"` …). It receives `{ name, args, machine }`; for negotiation handlers (names not
    /// ending in `State`/`End`) returning `false` cancels the transition. A name referring to a
    /// missing state throws `StateMissing`.
    pub fn handle(
        &self,
        name: &str,
        #[wasm_bindgen(unchecked_param_type = "(event: HandlerEvent) => boolean | void")] handler: Function,
    ) -> Result<(), JsValue> {
        let f = SendWrapper::new(handler);
        let h = Handlers::new("js").on(name, move |e| {
            let ev = Object::new();
            let _ = Reflect::set(&ev, &"name".into(), &e.name().into());
            let _ = Reflect::set(&ev, &"args".into(), &interop::args_to_js(e.args()));
            let machine = JsMachine { m: e.machine().clone() };
            let _ = Reflect::set(&ev, &"machine".into(), &JsValue::from(machine));
            match f.call1(&JsValue::NULL, &ev) {
                Ok(v) => v.as_bool() != Some(false),
                Err(err) => {
                    web_sys::console::error_2(&"amrpc handler threw:".into(), &err);
                    // a throwing handler is a failed one: cancel negotiation, flag the error
                    e.machine().add_err(format!("handler {} threw", e.name()), None);
                    false
                }
            }
        });
        self.m.bind_handlers(h).map(|_| ()).map_err(|e| interop::error(&e))
    }

    /// Dispose: pending waits reject with `Closed`.
    pub fn dispose(&self) {
        self.m.dispose();
    }
}

machine_api!(JsMachine, Machine);
