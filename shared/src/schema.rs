//! Schemas: state definitions, upstream's normalisation and merge helpers, and the compiled
//! (index-based) form the machine runs on.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::types::Error;

/// The built-in error state.
pub const EXCEPTION: &str = "Exception";
/// Placeholder in handler names (`AnyFoo`, `FooAny`); never a state.
pub const ANY: &str = "Any";
/// The global negotiation handler's name.
pub const HANDLER_GLOBAL: &str = "AnyAny";

/// A list of state names (upstream `S`).
pub type S = Vec<String>;

/// One state's definition.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Activated automatically after any non-auto transition that changed the clock.
    #[serde(default)]
    pub auto: bool,
    /// Re-entered (tick +2) when called while active.
    #[serde(default)]
    pub multi: bool,
    /// States that must be in the same target set.
    #[serde(default)]
    pub require: S,
    /// States implied when this one is activated (two levels deep).
    #[serde(default)]
    pub add: S,
    /// States that cannot be active together with this one.
    #[serde(default)]
    pub remove: S,
    /// Handler ordering: this state's handlers run after these states'.
    #[serde(default)]
    pub after: S,
    /// Free-form tags, stored and never interpreted.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The TypeScript type of the state's args, when declared (`schema!` with `args: T` and the
    /// `ts` feature, or set by hand). Not a relation: the machine never reads it, the schema
    /// hash ignores it; clients that ask for it get it in `Welcome` (`amrpc types`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_ts: Option<String>,
}

impl State {
    /// A state with no relations.
    pub fn new() -> Self {
        Self::default()
    }
    /// Builder: set `auto`.
    pub fn auto(mut self) -> Self {
        self.auto = true;
        self
    }
    /// Builder: set `multi`.
    pub fn multi(mut self) -> Self {
        self.multi = true;
        self
    }
    /// Builder: append to `require`.
    pub fn require(mut self, states: &[&str]) -> Self {
        self.require.extend(states.iter().map(|s| String::from(*s)));
        self
    }
    /// Builder: append to `add`.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, states: &[&str]) -> Self {
        self.add.extend(states.iter().map(|s| String::from(*s)));
        self
    }
    /// Builder: append to `remove`.
    pub fn remove(mut self, states: &[&str]) -> Self {
        self.remove.extend(states.iter().map(|s| String::from(*s)));
        self
    }
    /// Builder: append to `after`.
    pub fn after(mut self, states: &[&str]) -> Self {
        self.after.extend(states.iter().map(|s| String::from(*s)));
        self
    }
    /// Builder: append to `tags`.
    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.tags.extend(tags.iter().map(|s| String::from(*s)));
        self
    }
    /// Builder: the TypeScript type of the args (see [`State::args_ts`]).
    pub fn args_ts(mut self, ts: &str) -> Self {
        self.args_ts = Some(String::from(ts));
        self
    }
}

/// A schema: state name → definition (upstream `Struct`). Keys iterate alphabetically, which is
/// also the initial state order.
pub type Schema = BTreeMap<String, State>;

/// Build a schema from `(name, state)` pairs.
pub fn schema<'a>(states: impl IntoIterator<Item = (&'a str, State)>) -> Schema {
    states.into_iter().map(|(k, v)| (String::from(k), v)).collect()
}

/// Upstream's `parseStruct` normalisation: drop self from Remove, drop from Remove what is in Add,
/// drop self from After.
pub fn parse_struct(schema: &Schema) -> Schema {
    let mut out = schema.clone();
    for (name, st) in out.iter_mut() {
        let add = st.add.clone();
        st.remove.retain(|r| r != name && !add.contains(r));
        st.after.retain(|a| a != name);
    }
    out
}

/// `SAdd`: concatenate lists, de-duplicated, first occurrences kept.
pub fn s_add(lists: &[&[String]]) -> S {
    let mut out: S = Vec::new();
    for l in lists {
        for s in l.iter() {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
    }
    out
}

/// `StateAdd`: `source` with each non-empty relation of `overlay` appended (de-duplicated).
pub fn state_add(source: &State, overlay: &State) -> State {
    let mut s = source.clone();
    let merge = |a: &S, b: &S| if b.is_empty() { a.clone() } else { s_add(&[a, b]) };
    s.require = merge(&source.require, &overlay.require);
    s.add = merge(&source.add, &overlay.add);
    s.remove = merge(&source.remove, &overlay.remove);
    s.after = merge(&source.after, &overlay.after);
    s.tags = merge(&source.tags, &overlay.tags);
    s
}

/// `StateSet`: `source` with `auto`/`multi` set and each non-empty relation of `overlay` replacing it.
pub fn state_set(source: &State, auto: bool, multi: bool, overlay: &State) -> State {
    let mut s = source.clone();
    s.auto = auto;
    s.multi = multi;
    let pick = |a: &S, b: &S| if b.is_empty() { a.clone() } else { b.clone() };
    s.require = pick(&source.require, &overlay.require);
    s.add = pick(&source.add, &overlay.add);
    s.remove = pick(&source.remove, &overlay.remove);
    s.after = pick(&source.after, &overlay.after);
    s.tags = pick(&source.tags, &overlay.tags);
    s
}

/// `StructMerge`: later schemas override whole state definitions.
pub fn struct_merge(schemas: &[&Schema]) -> Schema {
    let mut out = Schema::new();
    for s in schemas {
        for (k, v) in s.iter() {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// `DiffStates`: items of `a` not in `b`, order of `a` kept.
pub fn diff_states(a: &[String], b: &[String]) -> S {
    a.iter().filter(|s| !b.contains(s)).cloned().collect()
}

/// `StatesEqual`: mutual containment.
pub fn states_equal(a: &[String], b: &[String]) -> bool {
    a.iter().all(|s| b.contains(s)) && b.iter().all(|s| a.contains(s))
}

/// Internal state id: position in [`Compiled::names`] (stable across reorders).
pub(crate) type Id = usize;

/// A short list of state ids, kept inline (no allocation) for typical schemas.
pub(crate) type Ids = smallvec::SmallVec<[Id; 4]>;

/// A state definition with relations as ids.
#[derive(Clone, Debug, Default)]
pub(crate) struct CState {
    pub(crate) auto: bool,
    pub(crate) multi: bool,
    pub(crate) require: Vec<Id>,
    pub(crate) add: Vec<Id>,
    pub(crate) remove: Vec<Id>,
    pub(crate) after: Vec<Id>,
    /// False for names that were dropped from the schema (their ticks are kept).
    pub(crate) present: bool,
}

/// The compiled schema: ids, relations by id, the ordered state list and the Require topology.
#[derive(Clone, Debug, Default)]
pub(crate) struct Compiled {
    pub(crate) names: Vec<String>,
    pub(crate) index: hashbrown::HashMap<String, Id>,
    pub(crate) defs: Vec<CState>,
    /// `StateNames()` as ids.
    pub(crate) order: Vec<Id>,
    /// Position of each id in `order` (-1 when not listed).
    pub(crate) order_pos: Vec<i64>,
    /// Position of each id in the Require topology (-1 when not in it).
    pub(crate) topo_pos: Vec<i64>,
    pub(crate) topology: Vec<Id>,
    /// The normalised schema, as given back by `get_struct`.
    pub(crate) schema: Schema,
    /// Relation bitmasks by id, when there are at most 64 names (fast set tests in the resolver).
    pub(crate) masks: Option<Vec<Masks>>,
    /// Auto states in state order (candidates of the auto mutation).
    pub(crate) auto: Vec<Id>,
    /// Forms other layers derive from this schema (the wire form a server's sessions send),
    /// made once and dropped with it; a changed schema is a new `Compiled` without them.
    pub(crate) derived: Derived,
}

/// Values derived from a [`Compiled`], one per type. Cloning a `Compiled` (to change it) starts
/// empty: what was derived described the old one.
pub(crate) struct Derived(crate::sync::Mutex<Vec<alloc::sync::Arc<dyn core::any::Any + Send + Sync>>>);

impl Derived {
    /// The `T` derived so far, or `make`'s, kept for next time.
    pub(crate) fn get_or_make<T: core::any::Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> alloc::sync::Arc<T> {
        let mut held = self.0.lock();
        if let Some(v) = held.iter().find_map(|v| v.clone().downcast::<T>().ok()) {
            return v;
        }
        let v = alloc::sync::Arc::new(make());
        held.push(v.clone());
        v
    }
}

impl Default for Derived {
    fn default() -> Derived {
        Derived(crate::sync::Mutex::new(Vec::new()))
    }
}

impl Clone for Derived {
    fn clone(&self) -> Derived {
        Derived::default()
    }
}

impl core::fmt::Debug for Derived {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Derived({})", self.0.lock().len())
    }
}

/// One state's relations as bitmasks over ids.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Masks {
    pub(crate) require: u64,
    pub(crate) remove: u64,
}

/// `1 << id` (ids < 64 only).
#[inline]
pub(crate) fn bit(id: Id) -> u64 {
    1u64 << id
}

impl Compiled {
    /// Compile a normalised schema. `prev_names` keeps ids of earlier names (so ticks survive a
    /// schema change); `order` is the state order (names must be in the schema).
    pub(crate) fn build(
        schema: Schema,
        prev_names: &[String],
        order: &[String],
        machine_id: &str,
    ) -> Result<Compiled, Error> {
        let mut c = Compiled::default();
        for n in prev_names {
            c.index.insert(n.clone(), c.names.len());
            c.names.push(n.clone());
        }
        for n in schema.keys() {
            if !c.index.contains_key(n) {
                c.index.insert(n.clone(), c.names.len());
                c.names.push(n.clone());
            }
        }
        c.defs = alloc::vec![CState::default(); c.names.len()];
        let mut missing = Vec::new();
        for (name, st) in schema.iter() {
            let id = c.index[name];
            let mut ids = |l: &S| -> Vec<Id> {
                let mut out = Vec::with_capacity(l.len());
                for r in l {
                    match schema.contains_key(r) {
                        true => out.push(c.index[r]),
                        false => missing.push(format!("{name} -> {r}")),
                    }
                }
                out
            };
            let def = CState {
                auto: st.auto,
                multi: st.multi,
                require: ids(&st.require),
                add: ids(&st.add),
                remove: ids(&st.remove),
                after: ids(&st.after),
                present: true,
            };
            c.defs[id] = def;
        }
        if !missing.is_empty() {
            return Err(Error::Relation(format!(
                "relations to states not in the schema: {} for {machine_id}",
                missing.join(", ")
            )));
        }
        c.order = order.iter().map(|n| c.index[n]).collect();
        c.schema = schema;
        if c.names.len() <= 64 {
            let fold = |l: &[Id]| l.iter().fold(0u64, |m, i| m | bit(*i));
            c.masks = Some(
                c.defs
                    .iter()
                    .map(|d| Masks {
                        require: fold(&d.require),
                        remove: fold(&d.remove),
                    })
                    .collect(),
            );
        }
        c.reindex_order();
        c.build_topology(machine_id)?;
        Ok(c)
    }

    pub(crate) fn reindex_order(&mut self) {
        self.auto = self.order.iter().copied().filter(|i| self.defs[*i].auto).collect();
        self.order_pos = alloc::vec![-1; self.names.len()];
        for (i, id) in self.order.iter().enumerate() {
            if self.order_pos[*id] < 0 {
                self.order_pos[*id] = i as i64;
            }
        }
    }

    /// Post-order DFS over Require edges, rooted at every state with a Require in state order.
    fn build_topology(&mut self, machine_id: &str) -> Result<(), Error> {
        // 0 = unvisited, 1 = on stack, 2 = done
        let mut mark = alloc::vec![0u8; self.names.len()];
        let mut topo = Vec::new();
        // Roots: state order first, then any schema state not listed in the order.
        let mut roots: Vec<Id> = self.order.clone();
        let mut listed = alloc::vec![false; self.names.len()];
        for id in &roots {
            listed[*id] = true;
        }
        for (id, d) in self.defs.iter().enumerate() {
            if d.present && !listed[id] {
                roots.push(id);
            }
        }
        for &root in &roots {
            if self.defs[root].require.is_empty() || mark[root] != 0 {
                continue;
            }
            // iterative DFS: (node, next child index)
            let mut stack: Vec<(Id, usize)> = alloc::vec![(root, 0)];
            mark[root] = 1;
            while let Some(&mut (node, ref mut i)) = stack.last_mut() {
                let reqs = &self.defs[node].require;
                if *i < reqs.len() {
                    let next = reqs[*i];
                    *i += 1;
                    match mark[next] {
                        0 => {
                            mark[next] = 1;
                            stack.push((next, 0));
                        }
                        1 => {
                            return Err(Error::Relation(format!(
                                "state {} has a Require cycle for {machine_id}",
                                self.names[next]
                            )));
                        }
                        _ => {}
                    }
                } else {
                    mark[node] = 2;
                    topo.push(node);
                    stack.pop();
                }
            }
        }
        self.topo_pos = alloc::vec![-1; self.names.len()];
        for (i, id) in topo.iter().enumerate() {
            self.topo_pos[*id] = i as i64;
        }
        self.topology = topo;
        Ok(())
    }

    #[inline]
    pub(crate) fn id(&self, name: &str) -> Option<Id> {
        // small schemas: a length-filtered scan beats hashing the name
        if self.names.len() <= 24 {
            let b = name.as_bytes();
            let (Some(first), Some(last)) = (b.first(), b.last()) else {
                return None;
            };
            for (id, n) in self.names.iter().enumerate() {
                let nb = n.as_bytes();
                if nb.len() == b.len() && nb[0] == *first && nb[nb.len() - 1] == *last && nb == b {
                    return self.defs[id].present.then_some(id);
                }
            }
            return None;
        }
        match self.index.get(name) {
            Some(&id) if self.defs[id].present => Some(id),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn name(&self, id: Id) -> &str {
        &self.names[id]
    }

    pub(crate) fn join(&self, ids: &[Id]) -> String {
        let mut s = String::new();
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(&self.names[*id]);
        }
        s
    }
}

/// Declare a schema with typed state names: a module with one `&str` constant per state (so a
/// misspelt name is a compile error), `NAMES` in declaration order, and `schema()`.
///
/// ```
/// amrpc_core::schema! {
///     /// States of a door.
///     pub mod door {
///         Open: { remove: [Closed] },
///         Closed: { remove: [Open] },
///         Locked: { require: [Closed] },
///     }
/// }
/// let m = amrpc_core::Machine::new(door::schema(), Default::default()).unwrap();
/// m.add1(door::Closed, None);
/// assert!(m.is1(door::Closed));
/// ```
///
/// Keys inside `{}` are `auto`, `multi` (flags, `auto: true`), `require`, `add`, `remove`,
/// `after` (lists of states: names of the same module, or paths to another schema module's
/// constants such as `super::base::Ready`), and `args: T` (a serde type in scope where the macro
/// is used: the state's typed args, see [`crate::TypedState`]). `Exception` is always available as
/// `<module>::Exception`. To extend a schema, merge with [`crate::struct_merge`].
#[macro_export]
macro_rules! schema {
    (
        $(#[$meta:meta])*
        $vis:vis mod $module:ident {
            $( $(#[$smeta:meta])* $state:ident : { $($key:ident : $val:tt),* $(,)? } ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[allow(non_upper_case_globals, dead_code)]
        $vis mod $module {
            $( $(#[$smeta])* #[doc = concat!("State `", stringify!($state), "`.")] pub const $state: &str = stringify!($state); )*
            /// The built-in error state.
            pub const Exception: &str = $crate::EXCEPTION;
            /// State names in declaration order (without `Exception` unless declared).
            pub const NAMES: &[&str] = &[$(stringify!($state)),*];
            /// The schema (relations as declared).
            pub fn schema() -> $crate::Schema {
                let mut s = $crate::Schema::new();
                $(
                    #[allow(unused_mut)]
                    let mut st = $crate::State::default();
                    $( $crate::schema!(@rel st $key $val); )*
                    s.insert(::core::convert::Into::into($state), st);
                )*
                s
            }
            /// Marker types of the states with declared args (`args: T`), for typed mutations
            /// and handlers ([`TypedState`]($crate::TypedState)).
            pub mod typed {
                #[allow(unused_imports)]
                use super::super::*;
                $( $crate::schema!(@typed $state; $($key : $val),*); )*
            }
        }
    };
    (@typed $s:ident; args : $t:tt $(, $k:ident : $v:tt)*) => {
        #[doc = concat!("State `", stringify!($s), "` with its args type.")]
        pub struct $s;
        impl $crate::TypedState for $s {
            const NAME: &'static str = stringify!($s);
            type Args = $t;
        }
    };
    (@typed $s:ident; $k0:ident : $v0:tt $(, $k:ident : $v:tt)*) => {
        $crate::schema!(@typed $s; $($k : $v),*);
    };
    (@typed $s:ident;) => {};
    (@rel $st:ident args $v:tt) => { $st.args_ts = $crate::__args_ts!(super::$v); };
    (@rel $st:ident auto $v:tt) => { $st.auto = $v; };
    (@rel $st:ident multi $v:tt) => { $st.multi = $v; };
    (@rel $st:ident require [$($s:path),* $(,)?]) => { $st.require = { let mut v = $crate::__alloc::vec::Vec::new(); $( v.push($crate::__alloc::string::String::from($s)); )* v }; };
    (@rel $st:ident add [$($s:path),* $(,)?]) => { $st.add = { let mut v = $crate::__alloc::vec::Vec::new(); $( v.push($crate::__alloc::string::String::from($s)); )* v }; };
    (@rel $st:ident remove [$($s:path),* $(,)?]) => { $st.remove = { let mut v = $crate::__alloc::vec::Vec::new(); $( v.push($crate::__alloc::string::String::from($s)); )* v }; };
    (@rel $st:ident after [$($s:path),* $(,)?]) => { $st.after = { let mut v = $crate::__alloc::vec::Vec::new(); $( v.push($crate::__alloc::string::String::from($s)); )* v }; };
}
