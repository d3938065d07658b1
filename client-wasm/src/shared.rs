//! The getters and waits every JS machine has (local or remote), written once.

/// Emit a `#[wasm_bindgen] impl` block of local getters and waits for a type with a `core()`
/// accessor returning `&amrpc_core::Machine`; `$js` is its JS class name (its `js_name`).
macro_rules! machine_api {
    ($ty:ident, $js:ident) => {
        #[wasm_bindgen(js_class = $js)]
        impl $ty {
            /// True when every state is active (`is("A")` or `is(["A", "B"])`).
            pub fn is(
                &self,
                #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
            ) -> Result<bool, JsValue> {
                let s = interop::states(&states)?;
                Ok(self.core().is(&interop::strs(&s)))
            }

            /// True when no state is active; unknown names throw `StateUnknown`.
            pub fn not(
                &self,
                #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
            ) -> Result<bool, JsValue> {
                let s = interop::states(&states)?;
                self.core()
                    .try_not(&interop::strs(&s))
                    .map_err(|e| interop::error(&e))
            }

            /// True when some group is fully active: `any(["A", "B"], "C")`.
            #[wasm_bindgen(variadic)]
            pub fn any(
                &self,
                #[wasm_bindgen(unchecked_param_type = "StateNames[]")] groups: &js_sys::Array,
            ) -> Result<bool, JsValue> {
                let g = interop::groups(groups)?;
                Ok(g.iter().any(|g| self.core().is(&interop::strs(g))))
            }

            /// True when every name is a state of the machine.
            pub fn has(
                &self,
                #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
            ) -> Result<bool, JsValue> {
                let s = interop::states(&states)?;
                Ok(self.core().has(&interop::strs(&s)))
            }

            /// True when `Exception` is active.
            #[wasm_bindgen(js_name = isErr)]
            pub fn is_err(&self) -> bool {
                self.core().is_err()
            }

            /// A state's tick (odd: active); 0 for unknown names.
            pub fn tick(&self, state: &str) -> f64 {
                self.core().tick(state) as f64
            }

            /// Ticks by name, for `states` or all.
            #[wasm_bindgen(unchecked_return_type = "Record<string, number>")]
            pub fn clock(
                &self,
                #[wasm_bindgen(unchecked_param_type = "StateNames | undefined")] states: JsValue,
            ) -> Result<JsValue, JsValue> {
                let s = interop::opt_states(&states)?;
                let names = s.as_deref().map(interop::strs);
                Ok(interop::clock(&self.core().clock(names.as_deref())))
            }

            /// Ticks in order, for `states` or all (the state order).
            #[wasm_bindgen(unchecked_return_type = "number[]")]
            pub fn time(
                &self,
                #[wasm_bindgen(unchecked_param_type = "StateNames | undefined")] states: JsValue,
            ) -> Result<JsValue, JsValue> {
                let s = interop::opt_states(&states)?;
                let names = s.as_deref().map(interop::strs);
                Ok(self
                    .core()
                    .time(names.as_deref())
                    .iter()
                    .map(|t| JsValue::from(*t as f64))
                    .collect::<js_sys::Array>()
                    .into())
            }

            /// Active states, in the order of the last transition's targets.
            #[wasm_bindgen(js_name = activeStates, unchecked_return_type = "string[]")]
            pub fn active_states(&self) -> JsValue {
                self.core()
                    .active_states()
                    .into_iter()
                    .map(JsValue::from)
                    .collect::<js_sys::Array>()
                    .into()
            }

            /// All state names, in order (indexes are the wire identity of states).
            #[wasm_bindgen(js_name = stateNames, unchecked_return_type = "string[]")]
            pub fn state_names(&self) -> JsValue {
                self.core()
                    .state_names()
                    .into_iter()
                    .map(JsValue::from)
                    .collect::<js_sys::Array>()
                    .into()
            }

            /// The schema: every state's relations and flags (for a mirror, the worker's, as its
            /// `Welcome` described it), in the state order.
            #[wasm_bindgen(unchecked_return_type = "Schema")]
            pub fn schema(&self) -> JsValue {
                let m = self.core();
                crate::interop::schema_js(&m.get_struct(), &m.state_names())
            }

            /// A state's position in the state order, or -1.
            pub fn index(&self, state: &str) -> i32 {
                self.core().index(state).map_or(-1, |i| i as i32)
            }

            /// The first active state of the groups (in order), or `undefined`.
            #[wasm_bindgen(variadic, unchecked_return_type = "string | undefined")]
            pub fn switch(
                &self,
                #[wasm_bindgen(unchecked_param_type = "StateNames[]")] groups: &js_sys::Array,
            ) -> Result<JsValue, JsValue> {
                // answers with the caller's own JS string (none made per call); every name is
                // checked, as `groups` would
                let mut found: Option<JsValue> = None;
                for group in groups.iter() {
                    interop::each_state(&group, |name, s| {
                        if found.is_none() && self.core().is1(&s) {
                            found = Some(name.clone());
                        }
                    })?;
                }
                if let Some(name) = found {
                    return Ok(name);
                }
                Ok(JsValue::UNDEFINED)
            }

            /// States with their relations and ticks (upstream's Inspect text).
            pub fn inspect(
                &self,
                #[wasm_bindgen(unchecked_param_type = "StateNames | undefined")] states: JsValue,
            ) -> Result<String, JsValue> {
                let s = interop::opt_states(&states)?;
                let names = s.as_deref().map(interop::strs);
                Ok(self.core().inspect(names.as_deref()))
            }

            /// `(A:1 B:3)`: active states with ticks.
            #[wasm_bindgen(js_name = toString)]
            pub fn to_js_string(&self) -> String {
                self.core().string()
            }

            /// `(A:1) [B:0 C:2]`: active, then inactive states with ticks.
            #[wasm_bindgen(js_name = stringAll)]
            pub fn string_all(&self) -> String {
                self.core().string_all()
            }

            /// Resolves when all `states` are active (now, or after a change). Rejects with
            /// `Aborted` when `signal` aborts.
            #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
            pub fn when(
                &self,
                #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
                signal: Option<web_sys::AbortSignal>,
            ) -> js_sys::Promise {
                match interop::states(&states) {
                    Ok(s) => {
                        let ctx = crate::waits::ctx_for(signal);
                        crate::waits::promise(self.core().when(&interop::strs(&s), ctx.as_ref()))
                    }
                    Err(e) => js_sys::Promise::reject(&e),
                }
            }

            /// Resolves when none of `states` is active.
            #[wasm_bindgen(js_name = whenNot, unchecked_return_type = "Promise<void>")]
            pub fn when_not(
                &self,
                #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
                signal: Option<web_sys::AbortSignal>,
            ) -> js_sys::Promise {
                match interop::states(&states) {
                    Ok(s) => {
                        let ctx = crate::waits::ctx_for(signal);
                        match self.core().try_when_not(&interop::strs(&s), ctx.as_ref()) {
                            Ok(w) => crate::waits::promise(w),
                            Err(e) => js_sys::Promise::reject(&interop::error(&e)),
                        }
                    }
                    Err(e) => js_sys::Promise::reject(&e),
                }
            }

            /// Resolves when every `states[i]` has a tick ≥ `times[i]`.
            #[wasm_bindgen(js_name = whenTime, unchecked_return_type = "Promise<void>")]
            pub fn when_time(
                &self,
                #[wasm_bindgen(unchecked_param_type = "StateNames")] states: JsValue,
                times: Vec<f64>,
                signal: Option<web_sys::AbortSignal>,
            ) -> js_sys::Promise {
                match interop::states(&states) {
                    Ok(s) => {
                        let times: Vec<u64> = times.iter().map(|t| *t as u64).collect();
                        self.when_times(&interop::strs(&s), &times, signal)
                    }
                    Err(e) => js_sys::Promise::reject(&e),
                }
            }

            /// Resolves when `state`'s tick grew by `ticks` from now.
            #[wasm_bindgen(js_name = whenTicks, unchecked_return_type = "Promise<void>")]
            pub fn when_ticks(&self, state: &str, ticks: f64, signal: Option<web_sys::AbortSignal>) -> js_sys::Promise {
                let now = self.core().tick(state);
                self.when_times(&[state], &[now.saturating_add(ticks.max(0.0) as u64)], signal)
            }

            /// Resolves when `state`'s tick is ≥ `tick`.
            #[wasm_bindgen(js_name = whenTicksEq, unchecked_return_type = "Promise<void>")]
            pub fn when_ticks_eq(
                &self,
                state: &str,
                tick: f64,
                signal: Option<web_sys::AbortSignal>,
            ) -> js_sys::Promise {
                self.when_times(&[state], &[tick as u64], signal)
            }

            /// Resolves when `Exception` is active.
            #[wasm_bindgen(js_name = whenErr, unchecked_return_type = "Promise<void>")]
            pub fn when_err(&self, signal: Option<web_sys::AbortSignal>) -> js_sys::Promise {
                self.when(amrpc_core::EXCEPTION.into(), signal)
            }

            /// An `AbortSignal` aborted when `state` deactivates (already aborted if inactive):
            /// hand it to `fetch` and friends to stop work that belongs to the state.
            #[wasm_bindgen(js_name = stateSignal)]
            pub fn state_signal(&self, state: &str) -> Result<web_sys::AbortSignal, JsValue> {
                let ctx = self
                    .core()
                    .try_new_state_ctx(state)
                    .map_err(|e| interop::error(&e))?;
                crate::waits::signal_for(&ctx)
            }
        }

        impl $ty {
            /// `whenTime` from Rust strings (`whenTicks*` pass theirs on: no JS string made and
            /// read back).
            fn when_times(
                &self,
                states: &[&str],
                times: &[u64],
                signal: Option<web_sys::AbortSignal>,
            ) -> js_sys::Promise {
                if !self.core().has(states) {
                    return js_sys::Promise::reject(&interop::js_error(
                        amrpc_core::ErrorCode::StateUnknown,
                        &format!("unknown state in {states:?}"),
                    ));
                }
                let ctx = crate::waits::ctx_for(signal);
                crate::waits::promise(self.core().when_time(states, times, ctx.as_ref()))
            }
        }
    };
}

pub(crate) use machine_api;
