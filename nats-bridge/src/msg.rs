//! The bridge's messages, in the WebSocket protocol's codec (postcard, `amrpc_core::wire`): the
//! clock travels as the same `ClockUpdate` (packed diff or full clock, sequence, checksum).

use amrpc_core::wire::{self, ClockUpdate, DecodeError, WhyMsg, WireState};
use amrpc_core::{Args, ErrorCode, MutationType, Outcome};
use serde::{Deserialize, Serialize};

use crate::BridgeError;

/// The format of [`Record`]s this build writes and reads.
pub const RECORD_FORMAT: u16 = 1;

/// Largest bridge message accepted (the WebSocket protocol's default frame limit).
pub const MAX_MESSAGE: usize = wire::DEFAULT_MAX_FRAME;

/// One change of a worker's clock, on its clock subject: one message per change, whatever the
/// number of edges and clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockMsg {
    /// The worker host's run ([`Record::incarnation`]); sequences restart with it.
    pub incarnation: u64,
    /// Sequence of this change within the incarnation (1, 2, …); `update.seq` is its low byte.
    pub seq: u64,
    /// The change against the clock of `seq - 1`, with the checksum of the clock after it.
    pub update: ClockUpdate,
    /// The worker's error text, when it changed with this update.
    pub err: Option<String>,
}

/// A payload the worker sent to its clients, on its payload subject (edges send it on to
/// their sessions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadMsg {
    /// Payload kind.
    pub name: String,
    /// Sender id.
    pub source: String,
    /// Opaque data.
    pub data: Vec<u8>,
    /// The one client id it is for (`None`: every client).
    pub destination: Option<String>,
}

/// A worker as its host publishes it in the bucket (key: the worker's name): what an edge
/// needs to mirror it without asking the host, at clock sequence `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// [`RECORD_FORMAT`].
    pub format: u16,
    /// The worker machine's id.
    pub worker_id: String,
    /// A random id per start of the worker host: another one means the worker restarted.
    pub incarnation: u64,
    /// The worker's replay cache id (`Welcome::replay_id` on every edge).
    pub replay_id: u64,
    /// The clock sequence `time` is at.
    pub seq: u64,
    /// State names in the worker's order.
    pub names: Vec<String>,
    /// The schema in wire form, in that order.
    pub schema: Vec<WireState>,
    /// `wire::schema_hash` of names and schema.
    pub schema_hash: u64,
    /// Every tick, in state order.
    pub time: Vec<u64>,
    /// The worker's last error text.
    pub err: Option<String>,
}

/// A request an edge sends to the worker's host, on the worker's request subject. One subject
/// for all kinds, so the host sees them in the order the edge sent them (a remote wait sent
/// before a mutation is registered before the mutation runs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Run a mutation; answered with [`Reply::Done`] or [`Reply::Failed`].
    Mutate(MutateReq),
    /// Evaluate a remote wait; answered with [`Reply::Met`] or [`Reply::Failed`] when it
    /// completes.
    Wait(WaitReq),
    /// A barrier: answered with [`Reply::Met`] (the clock sequence then) once every earlier
    /// request of this edge has been taken in (mutations started, waits bound).
    Sync,
    /// Drop the remote wait whose reply subject is `reply` (its waiter went away). No answer.
    Unwait {
        /// The wait's reply subject.
        reply: String,
    },
}

/// A mutation an edge forwards to the worker's host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MutateReq {
    /// The schema the edge mirrors; another one is refused (`SchemaMismatch`).
    pub schema_hash: u64,
    /// The host incarnation the edge's sessions announced the replay memory of; another one is
    /// refused (`Disconnected`: the worker restarted, and a resend could run twice). 0: any.
    pub incarnation: u64,
    /// The client's replay key and request id: at most once per pair, whichever edge sends it.
    /// Key 0: a no-sync mutation (never resent, not remembered).
    pub key: u64,
    /// Request id.
    pub req: u32,
    /// Add, remove or set.
    pub ty: MutationType,
    /// States by index in the worker's order.
    pub states: Vec<u16>,
    /// Arguments.
    pub args: Args,
}

/// A remote wait, evaluated on the worker's host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WaitReq {
    /// `WhenArgs`: `state` (by index) activated with args that include `args`.
    Args {
        /// The schema the edge mirrors.
        schema_hash: u64,
        /// State index.
        state: u16,
        /// Arguments to match.
        args: Args,
    },
    /// `WhenQueue`: the worker's queue tick reached `tick`.
    Queue {
        /// The queue tick.
        tick: u64,
    },
}

/// The host's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// A mutation ran (or had run: a resend answered from the replay cache); the clock change
    /// it made is in clock message `seq` of `incarnation` or an earlier one.
    Done {
        /// The outcome.
        outcome: Outcome,
        /// Why it was canceled, when known.
        why: Option<WhyMsg>,
        /// The host's incarnation.
        incarnation: u64,
        /// The clock sequence that includes the mutation's effects.
        seq: u64,
    },
    /// A remote wait completed (or a `Sync` was reached); the clock then is in clock message
    /// `seq` of `incarnation`.
    Met {
        /// The host's incarnation.
        incarnation: u64,
        /// The clock sequence at completion.
        seq: u64,
    },
    /// It did not run, or failed; `code` says which.
    Failed {
        /// A stable code.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
}

/// Encode a bridge message.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, BridgeError> {
    wire::encode_msg(msg).map_err(|e| BridgeError::Encode(e.0))
}

/// Decode a bridge message of at most [`MAX_MESSAGE`] bytes; `what` names it in the error.
pub fn decode<'a, T: Deserialize<'a>>(what: &'static str, bytes: &'a [u8]) -> Result<T, BridgeError> {
    wire::decode_msg(bytes, MAX_MESSAGE).map_err(|e: DecodeError| BridgeError::Malformed {
        what,
        detail: e.to_string(),
    })
}

impl Record {
    /// Decode a bucket value and [`Record::check`] it.
    pub fn decode(value: &[u8]) -> Result<Record, BridgeError> {
        let rec: Record = decode("record", value)?;
        rec.check()?;
        Ok(rec)
    }

    /// Checks a decoded record before anything is built from it: its format, matching lengths
    /// and the schema hash.
    pub fn check(&self) -> Result<(), BridgeError> {
        let bad = |detail: String| BridgeError::Malformed { what: "record", detail };
        if self.format != RECORD_FORMAT {
            return Err(bad(format!("format {}, this build reads {RECORD_FORMAT}", self.format)));
        }
        if self.names.len() != self.schema.len() || self.names.len() != self.time.len() {
            return Err(bad(format!(
                "{} names, {} schema entries, {} ticks",
                self.names.len(),
                self.schema.len(),
                self.time.len()
            )));
        }
        if self.names.len() > usize::from(u16::MAX) {
            return Err(bad(format!("{} states", self.names.len())));
        }
        if wire::schema_hash(&self.names, &self.schema) != self.schema_hash {
            return Err(bad("the schema hash does not match the schema".into()));
        }
        Ok(())
    }
}
