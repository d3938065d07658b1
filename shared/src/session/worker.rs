//! The worker as a server session sees it: a few reads and one mutation by state index. A local
//! [`Machine`] implements it; a relay (a mirror served on) implements it by forwarding the
//! indexes upstream. Keeping it this small is what keeps the mutation path straight: the wire
//! carries indexes, and nothing between the frame and the worker's queue turns them into names.

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use smallvec::SmallVec;

use crate::error::ErrorCode;
use crate::machine::{Machine, Time};
use crate::schema::Schema;
use crate::types::{Args, MutationType, Outcome};
use crate::wait::Wait;

/// What [`WorkerPort::mutate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutated {
    /// It ran; the worker's queue has drained. With why, when it was canceled.
    Done(Outcome, Option<crate::wire::WhyMsg>),
    /// It could not run; the client gets this error and may retry.
    Failed(ErrorCode, String),
    /// It was sent on (a relay); the shell reports the result with
    /// [`crate::session::ServerSession::mutation_done`] or `mutation_failed`.
    Forwarded,
}

/// A worker's state names and schema as its sessions send them in `Welcome` and check frames
/// against: made once per schema and shared by all the worker's sessions, instead of a copy
/// in each.
#[derive(Debug, PartialEq)]
pub struct SessionSchema {
    /// State names in the worker's state order (index = wire identity).
    pub names: Vec<String>,
    /// The schema in wire form, in that order.
    pub wire: Vec<crate::wire::WireState>,
    /// Its hash (`Welcome::schema_hash`).
    pub hash: u64,
}

impl SessionSchema {
    /// The wire form of `schema` with the state order `names`.
    pub fn new(names: Vec<String>, schema: &Schema) -> SessionSchema {
        let wire = crate::wire::schema_to_wire(schema, &names);
        let hash = crate::wire::schema_hash(&names, &wire);
        SessionSchema { names, wire, hash }
    }
}

/// Who asked for a mutation: the client's replay key ([`crate::session::replay_key`] of its id
/// and instance) and its request id. A worker that answers for several front servers (an edge
/// forwarding over NATS) keeps at-most-once by this pair in its own [`crate::session::ReplayCache`],
/// so a call resent through another front server still runs once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallId {
    /// The client's replay key (0 for a no-sync mutation, which is never resent).
    pub key: u64,
    /// Its request id.
    pub req: u32,
}

/// The worker behind a [`crate::session::ServerSession`].
pub trait WorkerPort: Send + Sync {
    /// The worker's id (sent in `Welcome`).
    fn id(&self) -> String;
    /// State names in the worker's state order (index = wire identity).
    fn state_names(&self) -> Vec<String>;
    /// The schema (sent in `Welcome`).
    fn schema(&self) -> Schema;
    /// Every state's tick, in the state order.
    fn time(&self) -> Time;
    /// The worker's last error, as text.
    fn err(&self) -> Option<String>;
    /// Run mutation `call` with states given by index (already checked against the state
    /// count and the session's mutable states); `source` is the session's epoch (who caused
    /// it, for the transition stream).
    fn mutate(&self, call: CallId, ty: MutationType, states: &[u16], args: Args, source: u64) -> Mutated;
    /// A remote `WhenArgs` of the state at `state` (an index already checked against the state
    /// count). The session keeps the wait and drops it (unbinding it) when the client cancels
    /// it or the session ends.
    fn when_args(&self, state: u16, args: Args) -> Result<Wait, (ErrorCode, String)>;
    /// A remote `WhenQueue` of the worker's queue tick `tick`.
    fn when_queue(&self, tick: u64) -> Wait;
    /// The names and wire schema of [`state_names`](WorkerPort::state_names) and
    /// [`schema`](WorkerPort::schema). A local machine makes it once per schema; this default
    /// makes it every time.
    fn session_schema(&self) -> Arc<SessionSchema> {
        Arc::new(SessionSchema::new(self.state_names(), &self.schema()))
    }
}

impl WorkerPort for Machine {
    fn id(&self) -> String {
        Machine::id(self).to_string()
    }
    fn state_names(&self) -> Vec<String> {
        Machine::state_names(self)
    }
    fn schema(&self) -> Schema {
        self.get_struct()
    }
    fn time(&self) -> Time {
        Machine::time(self, None)
    }
    fn err(&self) -> Option<String> {
        Machine::err(self).map(|e| e.to_string())
    }
    fn mutate(&self, _call: CallId, ty: MutationType, states: &[u16], args: Args, source: u64) -> Mutated {
        let idx: SmallVec<[usize; 8]> = states.iter().map(|i| usize::from(*i)).collect();
        match self.mutate_indexes_cause(ty, &idx, Some(args), source) {
            Ok((o, cause)) => {
                let why = cause.map(|c| crate::wire::WhyMsg::from_cause(&c, &self.compiled()));
                Mutated::Done(o, why)
            }
            Err(e) => Mutated::Failed(ErrorCode::InvalidParams, e.to_string()),
        }
    }
    fn when_args(&self, state: u16, args: Args) -> Result<Wait, (ErrorCode, String)> {
        self.when_args_index(usize::from(state), args, None)
            .map_err(|e| (ErrorCode::InvalidParams, e.to_string()))
    }
    fn when_queue(&self, tick: u64) -> Wait {
        Machine::when_queue(self, tick, None)
    }
    fn session_schema(&self) -> Arc<SessionSchema> {
        let c = self.compiled();
        c.derived.get_or_make(|| {
            let names = c.order.iter().map(|i| c.names[*i].clone()).collect();
            SessionSchema::new(names, &c.schema)
        })
    }
}
