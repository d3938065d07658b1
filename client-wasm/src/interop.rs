//! Conversions between JS values and amrpc values: args, state lists, outcomes, errors.

use amrpc_core::{Args, Error, ErrorCode, Outcome, Schema, State, Value, Why};
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// Nesting limit for converting JS args (mirrors the wire limit).
const MAX_DEPTH: usize = amrpc_core::wire::MAX_VALUE_DEPTH;

/// A JS `Error` with a stable `code` property ([`ErrorCode::as_str`]: the one list, also behind
/// the TypeScript `ErrorCode` union).
pub(crate) fn js_error(code: ErrorCode, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    let _ = Reflect::set(&e, &"code".into(), &code.as_str().into());
    e.into()
}

/// Any core error as a JS `Error` with its code; a remote error keeps the server's message.
pub(crate) fn error(e: &Error) -> JsValue {
    match e {
        Error::Rpc { code, message } => js_error(*code, message),
        other => js_error(other.code(), &other.to_string()),
    }
}

/// A wait's failure as a JS `Error` with its code.
pub(crate) fn wait_error(e: &amrpc_core::WaitError) -> JsValue {
    let msg = match e {
        amrpc_core::WaitError::Canceled => "the wait was aborted".to_string(),
        amrpc_core::WaitError::Disposed => "the machine was closed".to_string(),
        other => other.to_string(),
    };
    js_error(e.code(), &msg)
}

/// Every stable error code, in order (the list [`ErrorCode::ALL`]; tests compare it with the
/// TypeScript union and the errors they receive).
#[wasm_bindgen(js_name = errorCodes, unchecked_return_type = "ErrorCode[]")]
pub fn error_codes() -> Array {
    ErrorCode::ALL.iter().map(|c| JsValue::from(c.as_str())).collect()
}

/// An outcome as JS: `"executed"`, `"canceled"` or `"queued"`.
pub(crate) fn outcome(o: Outcome) -> JsValue {
    // one JS string per outcome name, made once: a mutation's result is on every op's path
    thread_local! {
        static NAMES: core::cell::RefCell<Vec<(&'static str, JsValue)>> = const { core::cell::RefCell::new(Vec::new()) };
    }
    let name = o.as_str();
    NAMES.with(|n| {
        let mut n = n.borrow_mut();
        if let Some((_, v)) = n.iter().find(|(k, _)| *k == name) {
            return v.clone();
        }
        let v = JsValue::from_str(name);
        n.push((name, v.clone()));
        v
    })
}

/// `{outcome, queueTick?, why?}`.
pub(crate) fn mutation_result(o: Outcome, why: Option<Why>) -> JsValue {
    let r = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&r, &"outcome".into(), &outcome(o));
    if let Some(t) = o.queue_tick() {
        let _ = js_sys::Reflect::set(&r, &"queueTick".into(), &JsValue::from_f64(t as f64));
    }
    if let Some(w) = why {
        let _ = js_sys::Reflect::set(&r, &"why".into(), &why_js(&w));
    }
    r.into()
}

/// A [`Why`] as JS: `{kind, text, state?, missing?, by?, handler?}` (see `Why` in the typings).
pub(crate) fn why_js(w: &Why) -> JsValue {
    let o = js_sys::Object::new();
    let set = |k: &str, v: &str| {
        let _ = js_sys::Reflect::set(&o, &k.into(), &v.into());
    };
    let kind = match w {
        Why::Requires { state, missing } => {
            set("state", state);
            set("missing", missing);
            "requires"
        }
        Why::Removed { state, by } => {
            set("state", state);
            set("by", by);
            "removed"
        }
        Why::Handler { handler } => {
            set("handler", handler);
            "handler"
        }
        Why::Timeout { handler } => {
            set("handler", handler);
            "timeout"
        }
        Why::Panic { handler } => {
            set("handler", handler);
            "panic"
        }
        Why::Rejected { state } => {
            set("state", state);
            "rejected"
        }
        Why::Disposed => "disposed",
        Why::QueueFull => "queueFull",
    };
    set("kind", kind);
    set("text", &w.to_string());
    o.into()
}

/// `"A"` or `["A", "B"]` → state names.
pub(crate) fn states(v: &JsValue) -> Result<Vec<String>, JsValue> {
    let mut out = Vec::new();
    each_state(v, |_, s| out.push(s))?;
    Ok(out)
}

/// Each name of `"A"` or `["A", "B"]`, with the caller's JS string it came from.
pub(crate) fn each_state(v: &JsValue, mut f: impl FnMut(&JsValue, String)) -> Result<(), JsValue> {
    if let Some(s) = v.as_string() {
        f(v, s);
        return Ok(());
    }
    if Array::is_array(v) {
        let a: &Array = v.unchecked_ref();
        for x in a.iter() {
            let s = x
                .as_string()
                .ok_or_else(|| js_error(ErrorCode::InvalidArgs, "state names must be strings"))?;
            f(&x, s);
        }
        return Ok(());
    }
    Err(js_error(
        ErrorCode::InvalidArgs,
        "expected a state name or an array of state names",
    ))
}

/// Groups for `any`: each argument a name or an array of names.
pub(crate) fn groups(args: &Array) -> Result<Vec<Vec<String>>, JsValue> {
    args.iter().map(|g| states(&g)).collect()
}

/// A JS value as an amrpc [`Value`]: null/undefined, booleans, numbers (safe integers become
/// `Int`, others `Float`), bigints, strings, `Uint8Array`s, arrays and plain objects.
pub(crate) fn to_value(v: &JsValue, depth: usize) -> Result<Value, JsValue> {
    if depth > MAX_DEPTH {
        return Err(js_error(ErrorCode::InvalidArgs, "args nested too deeply"));
    }
    if v.is_null() || v.is_undefined() {
        return Ok(Value::Null);
    }
    if let Some(b) = v.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Some(n) = v.as_f64() {
        if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_991.0 {
            return Ok(Value::Int(n as i64));
        }
        return Ok(Value::Float(n));
    }
    if v.is_bigint() {
        let i =
            i64::try_from(v.clone()).map_err(|_| js_error(ErrorCode::InvalidArgs, "bigint out of the i64 range"))?;
        return Ok(Value::Int(i));
    }
    if let Some(s) = v.as_string() {
        return Ok(Value::Str(s));
    }
    if let Some(u) = v.dyn_ref::<Uint8Array>() {
        return Ok(Value::Bytes(u.to_vec()));
    }
    if Array::is_array(v) {
        let a: &Array = v.unchecked_ref();
        return a
            .iter()
            .map(|x| to_value(&x, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::List);
    }
    if v.is_object() && !v.is_function() {
        let mut m = std::collections::BTreeMap::new();
        for entry in Object::entries(v.unchecked_ref()).iter() {
            let pair: Array = entry.unchecked_into();
            let k = pair.get(0).as_string().unwrap_or_default();
            m.insert(k, to_value(&pair.get(1), depth + 1)?);
        }
        return Ok(Value::Map(m));
    }
    Err(js_error(
        ErrorCode::InvalidArgs,
        "unsupported argument type (functions and symbols can't be sent)",
    ))
}

/// An amrpc [`Value`] as JS (`Int` as number when safe, else bigint; `Bytes` as `Uint8Array`).
pub(crate) fn from_value(v: &Value) -> JsValue {
    match v {
        Value::Null => JsValue::NULL,
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => {
            if i.unsigned_abs() <= 9_007_199_254_740_991 {
                (*i as f64).into()
            } else {
                js_sys::BigInt::from(*i).into()
            }
        }
        Value::Float(f) => (*f).into(),
        Value::Str(s) => s.into(),
        Value::Bytes(b) => Uint8Array::from(b.as_slice()).into(),
        Value::List(l) => l.iter().map(from_value).collect::<Array>().into(),
        Value::Map(m) => {
            let o = Object::new();
            for (k, v) in m {
                let _ = Reflect::set(&o, &k.into(), &from_value(v));
            }
            o.into()
        }
        Value::Opaque(_) => JsValue::UNDEFINED,
    }
}

/// Optional JS args object → [`Args`].
pub(crate) fn args(v: &JsValue) -> Result<Option<Args>, JsValue> {
    if v.is_null() || v.is_undefined() {
        return Ok(None);
    }
    match to_value(v, 0)? {
        Value::Map(m) => Ok(Some(Args(m))),
        _ => Err(js_error(ErrorCode::InvalidArgs, "args must be a plain object")),
    }
}

/// [`Args`] → a plain JS object.
pub(crate) fn args_to_js(a: &Args) -> JsValue {
    from_value(&Value::Map(a.0.clone()))
}

/// A clock (name → tick) as a plain object.
pub(crate) fn clock(c: &amrpc_core::Clock) -> JsValue {
    let o = Object::new();
    for (k, v) in c {
        let _ = Reflect::set(&o, &k.into(), &(*v as f64).into());
    }
    o.into()
}

/// Optional state list (`undefined` = all).
pub(crate) fn opt_states(v: &JsValue) -> Result<Option<Vec<String>>, JsValue> {
    if v.is_null() || v.is_undefined() {
        Ok(None)
    } else {
        states(v).map(Some)
    }
}

/// `Vec<String>` → `&[&str]`.
pub(crate) fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A JS schema (`{ Foo: { auto, multi, require, add, remove, after, tags } }`) as a [`Schema`].
/// Missing fields take their defaults and unknown ones are ignored, as with the core's serde
/// form; written by hand because a serde deserializer for JS values costs ~10 KB of wasm.
pub(crate) fn schema(v: &JsValue) -> Result<Schema, JsValue> {
    let invalid = |msg: String| js_error(ErrorCode::InvalidArgs, &format!("invalid schema: {msg}"));
    if !v.is_object() || Array::is_array(v) {
        return Err(invalid("expected an object of state definitions".into()));
    }
    let mut out = Schema::new();
    for entry in Object::entries(v.unchecked_ref()).iter() {
        let pair: Array = entry.unchecked_into();
        let name = pair.get(0).as_string().unwrap_or_default();
        let def = pair.get(1);
        if !def.is_object() || Array::is_array(&def) {
            return Err(invalid(format!("state {name}: expected an object")));
        }
        let field = |k: &str| Reflect::get(&def, &k.into()).unwrap_or(JsValue::UNDEFINED);
        let flag = |k: &str| -> Result<bool, JsValue> {
            let f = field(k);
            if f.is_undefined() {
                return Ok(false);
            }
            f.as_bool()
                .ok_or_else(|| invalid(format!("state {name}: {k} must be a boolean")))
        };
        let list = |k: &str| -> Result<Vec<String>, JsValue> {
            let f = field(k);
            if f.is_undefined() {
                return Ok(Vec::new());
            }
            if !Array::is_array(&f) {
                return Err(invalid(format!("state {name}: {k} must be an array of state names")));
            }
            states(&f).map_err(|_| invalid(format!("state {name}: {k} must be an array of state names")))
        };
        let state = State {
            auto: flag("auto")?,
            multi: flag("multi")?,
            require: list("require")?,
            add: list("add")?,
            remove: list("remove")?,
            after: list("after")?,
            tags: list("tags")?,
            args_ts: None,
        };
        out.insert(name, state);
    }
    Ok(out)
}

/// A schema as JS: `{ State: { auto, multi, require, add, remove, after, tags } }`, states in
/// the machine's order (empty lists and false flags left out).
pub(crate) fn schema_js(schema: &Schema, order: &[String]) -> JsValue {
    let out = Object::new();
    for name in order {
        let Some(st) = schema.get(name) else { continue };
        let o = Object::new();
        if st.auto {
            let _ = Reflect::set(&o, &"auto".into(), &true.into());
        }
        if st.multi {
            let _ = Reflect::set(&o, &"multi".into(), &true.into());
        }
        for (k, list) in [
            ("require", &st.require),
            ("add", &st.add),
            ("remove", &st.remove),
            ("after", &st.after),
            ("tags", &st.tags),
        ] {
            if !list.is_empty() {
                let a: Array = list.iter().map(|s| JsValue::from(s.as_str())).collect();
                let _ = Reflect::set(&o, &k.into(), &a);
            }
        }
        let _ = Reflect::set(&out, &name.as_str().into(), &o);
    }
    out.into()
}

/// A streamed transition as JS, states by name (see `Transition` in the typings).
pub(crate) fn transition_js(t: &amrpc_core::wire::TransitionMsg, names: &[String]) -> JsValue {
    use amrpc_core::wire::{SourceMsg, StepSide};
    let name = |i: &u16| -> JsValue {
        names
            .get(usize::from(*i))
            .map_or_else(|| JsValue::from(format!("#{i}")), |n| JsValue::from(n.as_str()))
    };
    let side = |s: &StepSide| -> JsValue {
        match s {
            StepSide::None => JsValue::UNDEFINED,
            StepSide::Any => "Any".into(),
            StepSide::State(i) => name(i),
        }
    };
    let o = Object::new();
    let set = |o: &Object, k: &str, v: &JsValue| {
        let _ = Reflect::set(o, &k.into(), v);
    };
    set(&o, "seq", &JsValue::from_f64(t.seq as f64));
    set(&o, "time", &JsValue::from_f64(t.time_ms as f64));
    set(&o, "type", &t.ty.as_str().into());
    set(&o, "called", &t.called.iter().map(name).collect::<Array>());
    set(&o, "args", &args_to_js(&t.args));
    set(&o, "argsCut", &t.args_cut.into());
    let src = Object::new();
    match &t.source {
        SourceMsg::Worker => set(&src, "kind", &"worker".into()),
        SourceMsg::Auto => set(&src, "kind", &"auto".into()),
        SourceMsg::Session { epoch, client } => {
            set(&src, "kind", &"session".into());
            set(&src, "epoch", &js_sys::BigInt::from(*epoch).into());
            set(&src, "client", &client.as_str().into());
        }
    }
    set(&o, "source", &src.into());
    set(&o, "accepted", &t.accepted.into());
    if let Some(w) = &t.why {
        set(&o, "why", &why_js(&w.to_why(names)));
    }
    let clock = Object::new();
    for (i, tick) in t.ticks.iter().enumerate() {
        if let Some(n) = names.get(i) {
            set(&clock, n, &JsValue::from_f64(*tick as f64));
        }
    }
    set(&o, "clock", &clock.into());
    let steps: Array = t
        .steps
        .iter()
        .map(|s| {
            let so = Object::new();
            set(&so, "type", &s.ty.as_str().into());
            let from = side(&s.from);
            if !from.is_undefined() {
                set(&so, "from", &from);
            }
            let to = side(&s.to);
            if !to.is_undefined() {
                set(&so, "to", &to);
            }
            if let Some(r) = s.relation {
                set(&so, "relation", &r.as_str().into());
            }
            if let Some(h) = &s.handler {
                set(&so, "handler", &h.as_str().into());
            }
            JsValue::from(so)
        })
        .collect();
    set(&o, "steps", &steps.into());
    o.into()
}
