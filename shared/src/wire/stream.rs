//! The transition stream (protocol 3): what a worker's transitions look like to a subscribed
//! client (an inspector). Opt-in per session (`Hello::stream`), bounded per session: a session
//! that falls behind the worker's log gets `Dropped { n }` instead of the records it missed.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::WhyMsg;
use crate::types::{Args, MutationType, Relation, StepType};

/// One side of a relation step: no state, the `Any` placeholder, or a state by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepSide {
    /// No state.
    None,
    /// `Any` (in handler names such as `AnyFoo`).
    Any,
    /// A state by index in the state order.
    State(u16),
}

/// One step of a transition: a relation evaluated, a state set or removed, a handler called.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMsg {
    /// Step kind.
    pub ty: StepType,
    /// Source state.
    pub from: StepSide,
    /// Destination state.
    pub to: StepSide,
    /// The relation a `Relation` step evaluated.
    pub relation: Option<Relation>,
    /// The handler a `Handler` step called.
    pub handler: Option<String>,
}

/// Who caused a transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceMsg {
    /// The worker itself: its own code, a handler, a timer.
    Worker,
    /// The machine's auto states.
    Auto,
    /// A client's mutation.
    Session {
        /// The session's epoch (`Welcome::epoch` of that session).
        epoch: u64,
        /// The client's id (empty when the session is already gone).
        client: String,
    },
}

/// One transition of the worker, as its stream sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransitionMsg {
    /// Position in the worker's transition log: consecutive, from 1.
    pub seq: u64,
    /// When it ended, in ms since the Unix epoch (the worker's clock).
    pub time_ms: u64,
    /// Add, Remove or Set.
    pub ty: MutationType,
    /// Called states, by index.
    pub called: Vec<u16>,
    /// The mutation's args; past the server's size cap only their keys, with empty values.
    pub args: Args,
    /// True when `args` were cut to their keys.
    pub args_cut: bool,
    /// Who caused it.
    pub source: SourceMsg,
    /// Whether it was accepted (its states changed as asked).
    pub accepted: bool,
    /// Why it was canceled.
    pub why: Option<WhyMsg>,
    /// Every state's tick after it, in the state order.
    pub ticks: Vec<u64>,
    /// Its steps: relations, activations, handler calls, in order.
    pub steps: Vec<StepMsg>,
}
