//! Small value types shared by the machine, the wire protocol and the bindings.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::fmt;

/// The result of a mutation (upstream `Result`; renamed so it does not shadow `core::result::Result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// The transition ran and the called states are (in)active as requested.
    Executed,
    /// Rejected by relations, canceled by a negotiation handler, timed out or panicked.
    Canceled,
    /// Another call is draining the queue; the mutation will run later. It carries the
    /// mutation's queue tick (upstream returns it as the `Result`): wait for it with
    /// `when_queue(tick)`. Ticks count from 2 (the first mutation ever queued); a mutation
    /// merged into an identical queued one gets that one's tick.
    Queued(u64),
}

impl Outcome {
    /// Upstream's text form: `executed`, `canceled`, `queued`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Executed => "executed",
            Outcome::Canceled => "canceled",
            Outcome::Queued(_) => "queued",
        }
    }

    /// True for [`Outcome::Queued`].
    pub fn is_queued(self) -> bool {
        matches!(self, Outcome::Queued(_))
    }

    /// The queue tick of a queued mutation.
    pub fn queue_tick(self) -> Option<u64> {
        match self {
            Outcome::Queued(t) => Some(t),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kind of a mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MutationType {
    /// Activate states, keeping the others.
    Add,
    /// Deactivate states.
    Remove,
    /// Make exactly these states (plus implied ones) active.
    Set,
    /// A function run on the queue (`eval`), never a transition.
    Eval,
}

impl MutationType {
    /// Upstream's text form: `add`, `remove`, `set`, `eval`.
    pub fn as_str(self) -> &'static str {
        match self {
            MutationType::Add => "add",
            MutationType::Remove => "remove",
            MutationType::Set => "set",
            MutationType::Eval => "eval",
        }
    }
}

impl fmt::Display for MutationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Relation kinds, in upstream's numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Relation {
    /// `After`: ordering only.
    After,
    /// `Add`: implies the listed states.
    Add,
    /// `Require`: needs the listed states.
    Require,
    /// `Remove`: excludes the listed states.
    Remove,
}

impl Relation {
    /// Upstream's text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::After => "after",
            Relation::Add => "add",
            Relation::Require => "require",
            Relation::Remove => "remove",
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kind of a transition step (a debug trace of how the target was computed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum StepType {
    /// A relation was evaluated.
    Relation,
    /// A handler ran.
    Handler,
    /// A state is to be activated.
    Set,
    /// A state is to be deactivated.
    Remove,
    /// A state was dropped while not active.
    RemoveNotActive,
    /// A state was called by the mutation.
    Requested,
    /// The transition was canceled because of this state.
    Cancel,
}

impl StepType {
    /// Upstream's text form.
    pub fn as_str(self) -> &'static str {
        match self {
            StepType::Relation => "rel",
            StepType::Handler => "handler",
            StepType::Set => "set",
            StepType::Remove => "remove",
            StepType::RemoveNotActive => "removenotactive",
            StepType::Requested => "requested",
            StepType::Cancel => "cancel",
        }
    }

    /// Upstream's bit value (`StepRelation` = 1 … `StepCancel` = 64).
    pub fn bits(self) -> u8 {
        match self {
            StepType::Relation => 1,
            StepType::Handler => 2,
            StepType::Set => 4,
            StepType::Remove => 8,
            StepType::RemoveNotActive => 16,
            StepType::Requested => 32,
            StepType::Cancel => 64,
        }
    }

    /// From upstream's bit value; any other value (e.g. 0) is `None`, printed as "".
    pub fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            1 => StepType::Relation,
            2 => StepType::Handler,
            4 => StepType::Set,
            8 => StepType::Remove,
            16 => StepType::RemoveNotActive,
            32 => StepType::Requested,
            64 => StepType::Cancel,
            _ => return None,
        })
    }
}

impl fmt::Display for StepType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Log verbosity; a message is emitted when its level is ≤ the machine's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum LogLevel {
    /// Nothing is logged.
    #[default]
    Nothing = 0,
    /// State changes and errors.
    Changes = 1,
    /// Mutations, cancellations, handlers.
    Ops = 2,
    /// Relation decisions.
    Decisions = 3,
    /// Everything, including every handler lookup.
    Everything = 4,
}

impl LogLevel {
    /// Upstream's text form; values outside the enum read as "nothing".
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Nothing => "nothing",
            LogLevel::Changes => "changes",
            LogLevel::Ops => "ops",
            LogLevel::Decisions => "decisions",
            LogLevel::Everything => "everything",
        }
    }

    /// From an integer (e.g. the `AM_LOG` environment variable); out of range gives `Nothing`.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => LogLevel::Changes,
            2 => LogLevel::Ops,
            3 => LogLevel::Decisions,
            4 => LogLevel::Everything,
            _ => LogLevel::Nothing,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub use crate::error::Error;

/// An opaque in-process value carried in [`Args`] (channels, counters, handles); compared by identity.
#[derive(Clone)]
pub struct Opaque(pub Arc<dyn Any + Send + Sync>);

impl Opaque {
    /// Wrap any value.
    pub fn new<T: Any + Send + Sync>(v: T) -> Self {
        Opaque(Arc::new(v))
    }
    /// Borrow as `T` if it is one.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl PartialEq for Opaque {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Opaque(..)")
    }
}

/// A dynamic argument value: JS-friendly primitives plus opaque in-process values.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    /// No value.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Value>),
    /// A string-keyed map.
    Map(BTreeMap<String, Value>),
    /// An in-process value that never crosses the wire.
    Opaque(Opaque),
}

impl Value {
    /// The string inside, if this is a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The integer inside, if this is an `Int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// The opaque value as `T`, if it is one.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        match self {
            Value::Opaque(o) => o.downcast_ref::<T>(),
            _ => None,
        }
    }
    /// A short text form for logs.
    pub fn to_log_string(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(x) => x.to_string(),
            Value::Str(s) => s.clone(),
            Value::Bytes(b) => alloc::format!("{b:?}"),
            Value::List(l) => alloc::format!("{l:?}"),
            Value::Map(m) => alloc::format!("{m:?}"),
            Value::Opaque(_) => "<opaque>".into(),
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $v:ident $(as $cast:ty)?),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Self { Value::$v(x $(as $cast)?) }
        }
    )*};
}
value_from!(bool => Bool, i64 => Int, i32 => Int as i64, u32 => Int as i64, u8 => Int as i64,
    f64 => Float, String => Str, Vec<u8> => Bytes, Vec<Value> => List);

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.into())
    }
}

/// Mutation arguments: a string-keyed map shared by every handler of a transition (upstream `A`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Args(pub BTreeMap<String, Value>);

impl Args {
    /// Empty args (no allocation).
    pub const fn new() -> Self {
        Args(BTreeMap::new())
    }
    /// Builder-style insert.
    pub fn with(mut self, key: impl Into<String>, v: impl Into<Value>) -> Self {
        self.0.insert(key.into(), v.into());
        self
    }
    /// Insert a value.
    pub fn insert(&mut self, key: impl Into<String>, v: impl Into<Value>) {
        self.0.insert(key.into(), v.into());
    }
    /// Look a value up.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// True when every entry of `subset` is present here with an equal value (`WhenArgs` matching).
    pub fn contains_all(&self, subset: &Args) -> bool {
        subset.0.iter().all(|(k, v)| self.0.get(k) == Some(v))
    }
    /// Iterate entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Args {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Args(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

/// Returns a log-args mapper: the listed keys present in args, values truncated to `max_len`
/// characters (0 means 20) the way upstream's `NewArgsMapper` does.
pub fn new_args_mapper(
    names: &[&str],
    max_len: usize,
) -> impl Fn(&Args) -> BTreeMap<String, String> + Send + Sync + 'static {
    let names: Vec<String> = names.iter().map(|s| String::from(*s)).collect();
    let max = if max_len == 0 { 20 } else { max_len };
    move |args: &Args| {
        let mut out = BTreeMap::new();
        for n in &names {
            if let Some(v) = args.get(n) {
                out.insert(n.clone(), truncate_str(&v.to_log_string(), max));
            }
        }
        out
    }
}

/// Upstream's `truncateStr`: keep up to `max` chars, or `max-3` chars plus `...` when `max >= 5`.
pub fn truncate_str(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.into();
    }
    if max < 5 {
        return s.chars().take(max).collect();
    }
    let mut out: String = s.chars().take(max - 3).collect();
    out.push_str("...");
    out
}

/// Upstream's `IsActiveTick`: odd ticks are active.
pub fn is_active_tick(tick: u64) -> bool {
    tick % 2 == 1
}
