//! Why a mutation was canceled: the relation or handler that said no.
//!
//! A transition records its cause on the cold path only (when it is canceled), by state id; the
//! public [`Why`] names the states, and the wire form (`WhyMsg`, in the protocol layer) carries state
//! indexes like the rest of the protocol.

use alloc::string::{String, ToString};
use alloc::sync::Arc;

use crate::schema::{Compiled, Id};

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
    /// The resolver dropped a called state without noting a relation (not produced today:
    /// every drop of a called state records the relation behind it).
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
}
