//! Handlers: named closures bound to a machine, dispatched with upstream's name rules
//! (`FooEnter`, `FooExit`, `FooState`, `FooEnd`, `FooBar`, `AnyFoo`, `FooAny`, `AnyAny`).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::machine::Machine;
use crate::schema::{ANY, Compiled, HANDLER_GLOBAL, Id};
use crate::transition::{Mutation, Transition};
use crate::types::{Args, Error};

/// A handler closure. Negotiation handlers cancel the transition by returning `false`; the return
/// value of final handlers (names ending in `State` or `End`) is ignored.
pub type HandlerFn = Arc<dyn Fn(&Event<'_>) -> bool + Send + Sync>;

/// What a handler receives (upstream `Event`).
pub struct Event<'a> {
    pub(crate) name: &'a str,
    pub(crate) machine: &'a Machine,
    pub(crate) args: &'a Args,
    pub(crate) transition: &'a Transition,
}

impl<'a> Event<'a> {
    /// The handler's name, e.g. `"BEnter"`.
    pub fn name(&self) -> &'a str {
        self.name
    }
    /// The machine; any API is callable, mutations are queued.
    pub fn machine(&self) -> &'a Machine {
        self.machine
    }
    /// The mutation's args (empty for `FooAny` handlers and auto mutations).
    pub fn args(&self) -> &'a Args {
        self.args
    }
    /// The running transition.
    pub fn transition(&self) -> &'a Transition {
        self.transition
    }
    /// The running transition's mutation.
    pub fn mutation(&self) -> &'a Mutation {
        &self.transition.mutation
    }
}

/// A set of handlers bound together (upstream: one handler struct). Build it with the typed
/// helpers or with raw names:
///
/// ```
/// use amrpc_core::{Handlers, Machine, Schema, State};
/// let m = Machine::new(amrpc_core::schema([("A", State::new()), ("B", State::new())]), Default::default()).unwrap();
/// let h = Handlers::new("mine")
///     .enter("A", |_e| true)             // AEnter: may cancel
///     .state("A", |e| { e.machine().add1("B", None); }) // AState: final
///     .on("AnyAny", |_e| true);           // any upstream name
/// m.bind_handlers(h).unwrap();
/// m.add1("A", None);
/// assert!(m.is(&["A", "B"]));
/// ```
#[derive(Clone, Default)]
pub struct Handlers {
    pub(crate) name: String,
    pub(crate) entries: Vec<(String, HandlerFn)>,
}

impl core::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Handlers")
            .field("name", &self.name)
            .field("handlers", &self.names())
            .finish()
    }
}

/// The id of a bound [`Handlers`] set, for `detach_handlers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HandlersId(pub(crate) u64);

impl Handlers {
    /// An empty set; `name` shows in logs and tracer hooks.
    pub fn new(name: impl Into<String>) -> Self {
        Handlers {
            name: name.into(),
            entries: Vec::new(),
        }
    }

    /// Bind a handler by its upstream name (`"FooEnter"`, `"FooBar"`, `"AnyAny"` …). A later entry
    /// with the same name replaces the earlier one.
    pub fn on(mut self, name: impl Into<String>, f: impl Fn(&Event<'_>) -> bool + Send + Sync + 'static) -> Self {
        let name = name.into();
        let f: HandlerFn = Arc::new(f);
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(e) => e.1 = f,
            None => self.entries.push((name, f)),
        }
        self
    }

    /// Bind a final-style handler (no return value) by name.
    pub fn on_final(self, name: impl Into<String>, f: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.on(name, move |e| {
            f(e);
            true
        })
    }

    /// `FooEnter`: negotiation, `state` is about to be activated.
    pub fn enter(self, state: &str, f: impl Fn(&Event<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.on(format!("{state}Enter"), f)
    }
    /// `FooExit`: negotiation, `state` is about to be deactivated.
    pub fn exit(self, state: &str, f: impl Fn(&Event<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.on(format!("{state}Exit"), f)
    }
    /// `FooState`: final, `state` was activated (or re-entered).
    pub fn state(self, state: &str, f: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.on_final(format!("{state}State"), f)
    }
    /// `FooEnd`: final, `state` was deactivated.
    pub fn end(self, state: &str, f: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.on_final(format!("{state}End"), f)
    }
    /// `FooFoo`: negotiation, an active `state` is called again by Add or Set.
    pub fn self_handler(self, state: &str, f: impl Fn(&Event<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.on(format!("{state}{state}"), f)
    }
    /// `FooBar`: negotiation, `from` exits while `to` is a target state.
    pub fn transition(self, from: &str, to: &str, f: impl Fn(&Event<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.on(format!("{from}{to}"), f)
    }
    /// `AnyFoo`: negotiation, just before `FooEnter`.
    pub fn any_enter(self, state: &str, f: impl Fn(&Event<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.on(format!("{ANY}{state}"), f)
    }
    /// `FooAny`: negotiation, after all `FooBar` of an exiting `state` (receives empty args).
    pub fn exit_any(self, state: &str, f: impl Fn(&Event<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.on(format!("{state}{ANY}"), f)
    }
    /// `AnyAny`: negotiation, once per transition, canceled transitions included.
    pub fn any_any(self, f: impl Fn(&Event<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.on(HANDLER_GLOBAL, f)
    }

    /// Add upstream's `ExceptionHandler`: an `ExceptionState` that logs the error.
    pub fn with_exception_handler(self) -> Self {
        self.on_final("ExceptionState", crate::machine::exception_state)
    }

    /// Handler names in bind order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

const SUFFIXES: [&str; 5] = ["Enter", "Exit", "State", "End", "Any"];

/// Upstream's `IsHandler`: which state(s) a handler name refers to (`("", "")` for none).
pub fn is_handler<'a>(states: &[&str], method: &'a str) -> (&'a str, &'a str) {
    if method == HANDLER_GLOBAL {
        return ("", "");
    }
    for suffix in SUFFIXES {
        if method.len() != suffix.len() {
            if let Some(p) = method.strip_suffix(suffix) {
                return (p, "");
            }
        }
    }
    if method.len() != ANY.len() {
        if let Some(rest) = method.strip_prefix(ANY) {
            return (rest, "");
        }
    }
    for s in states {
        if let Some(rest) = method.strip_prefix(s) {
            if states.contains(&rest) {
                return (&method[..s.len()], rest);
            }
        }
    }
    ("", "")
}

/// Upstream's `ListHandlers`: the handler names of `h` that refer to a state (plus `AnyAny`),
/// sorted like Go's reflection lists methods; an error lists each reference to a missing state.
pub fn list_handlers(h: &Handlers, states: &[&str]) -> Result<Vec<String>, Error> {
    let mut names: Vec<&str> = h.entries.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let mut out = Vec::new();
    let mut errs: Vec<String> = Vec::new();
    for m in names {
        let (s1, s2) = is_handler(states, m);
        if !s1.is_empty() && !states.contains(&s1) {
            errs.push(format!("missing states: {s1} from handler {m}"));
        }
        if !s2.is_empty() && !states.contains(&s2) {
            errs.push(format!("missing states: {s2} from handler {m}"));
        }
        if !s1.is_empty() || m == HANDLER_GLOBAL {
            out.push(String::from(m));
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        // Error::StateMissing prefixes "missing states: " itself.
        let joined: Vec<String> = errs
            .iter()
            .map(|e| String::from(e.trim_start_matches("missing states: ")))
            .collect();
        Err(Error::StateMissing(joined.join("\nmissing states: ")))
    }
}

/// Handlers for one event name, across bound sets (in bind order).
#[derive(Clone)]
pub(crate) struct Ev {
    pub(crate) name: Arc<str>,
    /// Index in `Dispatch::ev_names` (never 0).
    pub(crate) no: usize,
    /// Return value ignored (name ends in `State` or `End`).
    pub(crate) is_final_name: bool,
    pub(crate) fns: Vec<(usize, HandlerFn)>,
}

/// Per-schema dispatch tables, rebuilt when handlers or the schema change.
#[derive(Default)]
pub(crate) struct Dispatch {
    pub(crate) sets: Vec<(HandlersId, Handlers)>,
    pub(crate) for_schema: Option<Arc<Compiled>>,
    pub(crate) enter: Vec<Option<Ev>>,
    pub(crate) exit: Vec<Option<Ev>>,
    pub(crate) state: Vec<Option<Ev>>,
    pub(crate) end: Vec<Option<Ev>>,
    pub(crate) any_to: Vec<Option<Ev>>,
    pub(crate) from_any: Vec<Option<Ev>>,
    pub(crate) pair: hashbrown::HashMap<(Id, Id), Ev>,
    /// Whether any `FooBar` handler exists for a source state (skips lookups).
    pub(crate) pair_from: Vec<bool>,
    pub(crate) any_any: Option<Ev>,
    /// Handler-set names by index, for logs and tracers.
    pub(crate) set_names: Vec<Arc<str>>,
    /// Handler names by `Ev::no` (index 0 unused).
    pub(crate) ev_names: Vec<Arc<str>>,
}

impl Dispatch {
    pub(crate) fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    pub(crate) fn rebuild(&mut self, c: &Arc<Compiled>) {
        let mut by_name: litemap::LiteMap<&str, Vec<(usize, HandlerFn)>> = litemap::LiteMap::new();
        for (i, (_, h)) in self.sets.iter().enumerate() {
            for (n, f) in &h.entries {
                by_name.entry(n.as_str()).or_default().push((i, f.clone()));
            }
        }
        let n = c.names.len();
        let none = || alloc::vec![None; n];
        let (mut enter, mut exit, mut state, mut end, mut any_to, mut from_any) =
            (none(), none(), none(), none(), none(), none());
        let mut pair = hashbrown::HashMap::new();
        let mut ev_names: Vec<Arc<str>> = alloc::vec![Arc::from("")];
        ev_names.extend(by_name.keys().map(|k| Arc::from(*k)));
        let mk = |name: &str, fns: &Vec<(usize, HandlerFn)>| {
            let no = ev_names.iter().position(|n| &**n == name).unwrap_or(0);
            Ev {
                name: ev_names[no].clone(),
                no,
                is_final_name: name.ends_with("State") || name.ends_with("End"),
                fns: fns.clone(),
            }
        };
        for (name, fns) in &by_name {
            let name = *name;
            for (suffix, table) in [
                ("Enter", &mut enter),
                ("Exit", &mut exit),
                ("State", &mut state),
                ("End", &mut end),
                (ANY, &mut from_any),
            ] {
                if let Some(p) = name.strip_suffix(suffix) {
                    if let Some(id) = c.id(p) {
                        table[id] = Some(mk(name, fns));
                    }
                }
            }
            if let Some(p) = name.strip_prefix(ANY) {
                if let Some(id) = c.id(p) {
                    any_to[id] = Some(mk(name, fns));
                }
            }
            // every split into two state names
            for i in 1..name.len() {
                if !name.is_char_boundary(i) {
                    continue;
                }
                if let (Some(a), Some(b)) = (c.id(&name[..i]), c.id(&name[i..])) {
                    pair.insert((a, b), mk(name, fns));
                }
            }
        }
        self.any_any = by_name.get(HANDLER_GLOBAL).map(|f| mk(HANDLER_GLOBAL, f));
        self.enter = enter;
        self.exit = exit;
        self.state = state;
        self.end = end;
        self.any_to = any_to;
        self.from_any = from_any;
        let mut pair_from = alloc::vec![false; n];
        for (a, _) in pair.keys() {
            pair_from[*a] = true;
        }
        self.pair_from = pair_from;
        self.pair = pair;
        self.set_names = self.sets.iter().map(|(_, h)| Arc::from(h.name.as_str())).collect();
        self.ev_names = ev_names;
        self.for_schema = Some(c.clone());
    }
}
