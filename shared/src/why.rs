//! Why a mutation was canceled: the relation or handler that said no.
//!
//! A transition records its cause on the cold path only (when it is canceled), by state id; the
//! public [`Why`] names the states, and the wire form ([`crate::wire::WhyMsg`]) carries state
//! indexes like the rest of the protocol.

use alloc::string::{String, ToString};
use alloc::sync::Arc;

use crate::schema::{Compiled, Id};
use crate::transition::Transition;

/// Why a mutation was canceled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// A called state requires a state that could not be active: `Downloading requires Online`.
    Requires {
        /// The called state.
        state: String,
        /// Its requirement that was missing.
        missing: String,
    },
    /// A called state was removed by another state's `Remove` relation.
    Removed {
        /// The called state.
        state: String,
        /// The state whose `Remove` relation dropped it.
        by: String,
    },
    /// A negotiation handler (`FooEnter`, `FooExit`, `FooBar`, …) returned false.
    Handler {
        /// The handler's name.
        handler: String,
    },
    /// A handler ran past the machine's handler timeout.
    Timeout {
        /// The handler's name.
        handler: String,
    },
    /// A handler panicked.
    Panic {
        /// The handler's name.
        handler: String,
    },
    /// The resolver dropped a called state for no single relation (kept for completeness:
    /// the relations above explain every rejection the resolver makes).
    Rejected {
        /// The called state.
        state: String,
    },
    /// The machine is disposed.
    Disposed,
    /// The machine's queue is at its limit.
    QueueFull,
}

impl core::fmt::Display for Why {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Why::Requires { state, missing } => write!(f, "{state} requires {missing}"),
            Why::Removed { state, by } => write!(f, "{state} removed by {by}"),
            Why::Handler { handler } => write!(f, "{handler} returned false"),
            Why::Timeout { handler } => write!(f, "{handler} timed out"),
            Why::Panic { handler } => write!(f, "{handler} panicked"),
            Why::Rejected { state } => write!(f, "{state} rejected"),
            Why::Disposed => f.write_str("machine disposed"),
            Why::QueueFull => f.write_str("queue full"),
        }
    }
}

/// The cause as the machine keeps it: state ids, the handler's interned name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    Requires(Id, Id),
    Removed(Id, Id),
    Handler(Arc<str>),
    Timeout(Arc<str>),
    Panic(Arc<str>),
    Rejected(Id),
    Disposed,
    QueueFull,
}

impl Cause {
    /// Named form.
    pub(crate) fn why(&self, c: &Compiled) -> Why {
        let n = |i: &Id| String::from(c.name(*i));
        match self {
            Cause::Requires(s, m) => Why::Requires {
                state: n(s),
                missing: n(m),
            },
            Cause::Removed(s, b) => Why::Removed { state: n(s), by: n(b) },
            Cause::Handler(h) => Why::Handler { handler: h.to_string() },
            Cause::Timeout(h) => Why::Timeout { handler: h.to_string() },
            Cause::Panic(h) => Why::Panic { handler: h.to_string() },
            Cause::Rejected(s) => Why::Rejected { state: n(s) },
            Cause::Disposed => Why::Disposed,
            Cause::QueueFull => Why::QueueFull,
        }
    }

    /// Wire form: states by position in the state order.
    pub(crate) fn msg(&self, c: &Compiled) -> crate::wire::WhyMsg {
        use crate::wire::WhyMsg;
        let p = |i: &Id| u16::try_from(c.order_pos[*i]).unwrap_or(u16::MAX);
        match self {
            Cause::Requires(s, m) => WhyMsg::Requires(p(s), p(m)),
            Cause::Removed(s, b) => WhyMsg::Removed(p(s), p(b)),
            Cause::Handler(h) => WhyMsg::Handler(h.to_string()),
            Cause::Timeout(h) => WhyMsg::Timeout(h.to_string()),
            Cause::Panic(h) => WhyMsg::Panic(h.to_string()),
            Cause::Rejected(s) => WhyMsg::Rejected(p(s)),
            Cause::Disposed => WhyMsg::Disposed,
            Cause::QueueFull => WhyMsg::QueueFull,
        }
    }
}

/// Why the resolver rejected called state `s` (it is not in `t.target`): a surviving state that
/// removes it, else a requirement missing from the target, else a called state that removes it.
/// Only run when a transition is canceled.
#[cold]
pub(crate) fn rejected(c: &Compiled, t: &Transition, s: Id) -> Cause {
    let removes = |b: Id| b != s && c.defs[b].remove.contains(&s);
    if let Some(b) = t.target.iter().copied().find(|b| removes(*b)) {
        return Cause::Removed(s, b);
    }
    if let Some(r) = c.defs[s].require.iter().copied().find(|r| !t.target.contains(r)) {
        return Cause::Requires(s, r);
    }
    if let Some(b) = t.mutation.called.iter().copied().find(|b| removes(*b)) {
        return Cause::Removed(s, b);
    }
    // removed by a candidate that lost later (an active state, or one pulled in by Add)
    match (0..c.defs.len()).find(|b| removes(*b)) {
        Some(b) => Cause::Removed(s, b),
        None => Cause::Rejected(s),
    }
}

impl Why {
    /// To the wire form, with the worker's state names in state order (what a relay sends on;
    /// an unknown name becomes `u16::MAX`).
    pub fn to_msg(&self, names: &[String]) -> crate::wire::WhyMsg {
        use crate::wire::WhyMsg;
        let p = |n: &str| {
            names
                .iter()
                .position(|x| x == n)
                .and_then(|i| u16::try_from(i).ok())
                .unwrap_or(u16::MAX)
        };
        match self {
            Why::Requires { state, missing } => WhyMsg::Requires(p(state), p(missing)),
            Why::Removed { state, by } => WhyMsg::Removed(p(state), p(by)),
            Why::Handler { handler } => WhyMsg::Handler(handler.clone()),
            Why::Timeout { handler } => WhyMsg::Timeout(handler.clone()),
            Why::Panic { handler } => WhyMsg::Panic(handler.clone()),
            Why::Rejected { state } => WhyMsg::Rejected(p(state)),
            Why::Disposed => WhyMsg::Disposed,
            Why::QueueFull => WhyMsg::QueueFull,
        }
    }

    /// From the wire form, with the worker's state names in state order (an index out of
    /// range shows as `#N`).
    pub fn from_msg(m: &crate::wire::WhyMsg, names: &[String]) -> Why {
        use crate::wire::WhyMsg;
        let n = |i: &u16| {
            names
                .get(usize::from(*i))
                .cloned()
                .unwrap_or_else(|| alloc::format!("#{i}"))
        };
        match m {
            WhyMsg::Requires(s, r) => Why::Requires {
                state: n(s),
                missing: n(r),
            },
            WhyMsg::Removed(s, b) => Why::Removed { state: n(s), by: n(b) },
            WhyMsg::Handler(h) => Why::Handler { handler: h.clone() },
            WhyMsg::Timeout(h) => Why::Timeout { handler: h.clone() },
            WhyMsg::Panic(h) => Why::Panic { handler: h.clone() },
            WhyMsg::Rejected(s) => Why::Rejected { state: n(s) },
            WhyMsg::Disposed => Why::Disposed,
            WhyMsg::QueueFull => Why::QueueFull,
        }
    }
}
