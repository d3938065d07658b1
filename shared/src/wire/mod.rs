//! Wire messages: one postcard-encoded enum per direction, one WebSocket binary message each.
//!
//! `docs/PROTOCOL.md` describes every message and field with byte examples. The encoding is
//! postcard: varint integers, length-prefixed strings and lists, enum variants as a varint index.
//! Decoding never panics and never allocates more than the input could describe: every element
//! of a list or map consumes input, and nested values stop at [`MAX_VALUE_DEPTH`].

pub mod clock;
mod stream;
mod value;

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

pub use clock::{ClockError, ClockUpdate, Diff, Ticks};
pub use stream::{SourceMsg, StepMsg, StepSide, TransitionMsg};
pub use value::MAX_VALUE_DEPTH;

pub use crate::error::ErrorCode;

use crate::schema::{Schema, State};
use crate::types::{Args, Outcome};

/// The protocol version this build speaks (in `Hello` and `Welcome`).
///
/// Version 2 added remote waits (`WhenArgs`, `WhenQueue`, `Unwait`, `Signaled`), the queue tick
/// of a `Queued` reply, shallow clocks (`Hello::shallow`), the wait limit in `Welcome` and the
/// args types on request (`Hello::types`). Version 3 added why a mutation was canceled
/// (`Canceled::why`), the transition stream (`Hello::stream`, `Transition`, `Dropped`) and
/// `Hello::all_ticks`. Version 4 added `Welcome::replay_id` and the codes of the limits and
/// restarts on the wire (`Timeout`, `TooManyInFlight`, `RateLimited`, `MayNotHaveRun`).
pub const PROTOCOL_VERSION: u16 = 4;

/// Default largest frame a decoder accepts, in bytes.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Client → server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// Open the session.
    Hello(Hello),
    /// Activate states.
    Add(MutationReq),
    /// Deactivate states.
    Remove(MutationReq),
    /// Make exactly these states active.
    Set(MutationReq),
    /// Ask for the full clock (after a gap or a checksum mismatch).
    Sync {
        /// Request id.
        req: u32,
    },
    /// Closing; no reply.
    Bye,
    /// Register a remote `WhenArgs` on the worker: answered with `Signaled` (same `req`) when
    /// the state's final handler runs with args ⊇ these, or with an `Error` (same `req`).
    WhenArgs(WaitArgs),
    /// Register a remote `WhenQueue`: `Signaled` once the worker's mutation with queue tick
    /// `tick` has been processed (at once if it already was).
    WhenQueue {
        /// Request id (the wait's identity until it is signaled or dropped).
        req: u32,
        /// A queue tick from a `Queued` reply.
        tick: u64,
    },
    /// Drop a registered wait (aborted by the caller); no reply.
    Unwait {
        /// The wait's request id.
        req: u32,
    },
}

/// A remote `WhenArgs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WaitArgs {
    /// Request id (the wait's identity until it is signaled or dropped).
    pub req: u32,
    /// State index.
    pub state: u16,
    /// The args the state's final handler must carry (a subset match).
    pub args: Args,
}

/// `Hello`: who the client is and what it wants.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the client.
    pub version: u16,
    /// Client id (access lists match it).
    pub client_id: String,
    /// Random per client instance, stable across reconnects: with request ids it makes retries
    /// idempotent (the server's replay cache is keyed by it).
    pub instance: u64,
    /// Auth token, if any (browsers may also pass it in the URL).
    pub token: Option<String>,
    /// The schema hash the client was built for; a different worker schema is refused.
    pub schema_hash: Option<u64>,
    /// Wished push interval in milliseconds (the server clamps it; 0 = no pushes).
    pub push_interval_ms: Option<u32>,
    /// Names of the states to receive (`None`: all).
    pub states: Option<Vec<String>>,
    /// Shallow clocks: receive only whether each state is active, not its ticks. Each state's
    /// tick then counts the activations and deactivations the session has seen (odd = active);
    /// changes that cancel out between two updates are not sent at all.
    pub shallow: bool,
    /// Ask for the states' args types (`Welcome::args_types`), e.g. to generate typings.
    pub types: bool,
    /// Subscribe to the worker's transitions ([`ServerMsg::Transition`]), starting as
    /// [`StreamFrom`] says; `None`: off.
    pub stream: Option<StreamFrom>,
    /// Upstream's `PushAllTicks`: a clock update per transition, no coalescing.
    pub all_ticks: bool,
}

/// Where a transition stream starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamFrom {
    /// The log the client read before (`Welcome::log_id`), or 0.
    pub log: u64,
    /// The next `seq` the client wants from that log. Another log, or 0: from the oldest
    /// transition the log holds. A `seq` the log no longer holds: `Dropped` first.
    pub seq: u64,
}

/// A mutation request: states by index in the worker's state order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MutationReq {
    /// Request id, unique per client instance (retries reuse it).
    pub req: u32,
    /// State indexes.
    pub states: Vec<u16>,
    /// Arguments.
    pub args: Args,
}

/// Server → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// The session is open.
    Welcome(Welcome),
    /// A mutation ran: `Executed`, with the clock change of the whole cascade.
    Executed(Reply),
    /// A mutation was canceled, with why when the worker knows (absent for a replayed reply).
    Canceled {
        /// Request id and clock change.
        reply: Reply,
        /// The relation or handler that canceled it.
        why: Option<WhyMsg>,
    },
    /// A mutation was queued behind another drain.
    Queued {
        /// Request id and clock change.
        reply: Reply,
        /// The mutation's queue tick on the worker (wait for it with `WhenQueue`).
        queue_tick: u64,
    },
    /// A clock push (changes made by others).
    Update(ClockUpdate),
    /// The full clock, answering `Sync`.
    Synced {
        /// Request id of the `Sync`.
        req: u32,
        /// A full clock.
        update: ClockUpdate,
    },
    /// A whole payload from the worker.
    Payload(Payload),
    /// One chunk of a large payload.
    Chunk(Chunk),
    /// An error; `req` is set when it answers a request.
    Error(ErrorMsg),
    /// The server closes the session.
    Bye(ErrorMsg),
    /// A remote wait (`WhenArgs`, `WhenQueue`) is met; `update` brings the clock up to now.
    Signaled(Reply),
    /// One transition of the worker (sessions that asked for the stream in `Hello`).
    Transition(alloc::boxed::Box<TransitionMsg>),
    /// This many transitions were not sent: the session fell behind the worker's log.
    Dropped {
        /// How many.
        n: u64,
        /// The `seq` of the next transition sent.
        next: u64,
    },
}

impl ServerMsg {
    /// The reply message for a mutation outcome (`why` goes with `Canceled` only).
    pub fn reply(outcome: Outcome, reply: Reply, why: Option<WhyMsg>) -> ServerMsg {
        match outcome {
            Outcome::Executed => ServerMsg::Executed(reply),
            Outcome::Canceled => ServerMsg::Canceled { reply, why },
            Outcome::Queued(queue_tick) => ServerMsg::Queued { reply, queue_tick },
        }
    }
}

/// Why a mutation was canceled ([`crate::Why`] with states by index in the state order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WhyMsg {
    /// State `.0` requires state `.1`, which could not be active.
    Requires(u16, u16),
    /// State `.0` was removed by state `.1`'s `Remove` relation.
    Removed(u16, u16),
    /// This negotiation handler returned false.
    Handler(String),
    /// This handler ran past the handler timeout.
    Timeout(String),
    /// This handler panicked.
    Panic(String),
    /// State `.0` was dropped by the resolver.
    Rejected(u16),
    /// The worker is disposed.
    Disposed,
    /// The worker's queue is full.
    QueueFull,
}

impl WhyMsg {
    /// The wire form of a machine's cause (states by position in the state order).
    pub(crate) fn from_cause(c: &crate::why::Cause, compiled: &crate::schema::Compiled) -> WhyMsg {
        use crate::why::Cause;
        let p = |i: &usize| u16::try_from(compiled.order_pos[*i]).unwrap_or(u16::MAX);
        match c {
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

    /// From a named [`crate::Why`], with the worker's state names in state order (what a relay
    /// sends on; an unknown name becomes `u16::MAX`).
    pub fn from_why(w: &crate::Why, names: &[String]) -> WhyMsg {
        use crate::Why;
        let p = |n: &str| {
            names
                .iter()
                .position(|x| x == n)
                .and_then(|i| u16::try_from(i).ok())
                .unwrap_or(u16::MAX)
        };
        match w {
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

    /// The named [`crate::Why`], with the worker's state names in state order (an index out of
    /// range shows as `#N`).
    pub fn to_why(&self, names: &[String]) -> crate::Why {
        use crate::Why;
        let n = |i: &u16| {
            names
                .get(usize::from(*i))
                .cloned()
                .unwrap_or_else(|| alloc::format!("#{i}"))
        };
        match self {
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

/// A mutation's reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Request id.
    pub req: u32,
    /// The clock change since the last update sent to this session (the mutation, its nested
    /// mutations and anything else). Servers always send one (an empty diff when nothing
    /// changed) so the client can check the sequence; `None` is accepted for compatibility.
    pub update: Option<ClockUpdate>,
}

/// `Welcome`: everything a client needs, including the schema, so it needs no prior knowledge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// [`PROTOCOL_VERSION`] of the server.
    pub version: u16,
    /// Worker id.
    pub worker_id: String,
    /// Session epoch: differs for every session the server opens.
    pub epoch: u64,
    /// Ordered state names; indexes into this list are the wire identity of states.
    pub names: Vec<String>,
    /// The schema, one entry per name in the same order.
    pub schema: Vec<WireState>,
    /// [`schema_hash`] of names and schema.
    pub schema_hash: u64,
    /// The states this session receives (`None`: all); others read tick 0.
    pub tracked: Option<Vec<u16>>,
    /// The push interval the server uses for this session, in milliseconds (0 = no pushes).
    pub push_interval_ms: u32,
    /// The full clock (sequence 0).
    pub update: ClockUpdate,
    /// The worker's last error (its `err()`), if any; later changes come as `Error` frames with
    /// [`ErrorCode::WorkerError`].
    pub worker_err: Option<String>,
    /// Clocks are shallow (the client asked for it in `Hello`).
    pub shallow: bool,
    /// Most remote waits this session may have registered at once (past it:
    /// [`ErrorCode::TooManyWaits`]).
    pub max_waits: u32,
    /// When `Hello::types` asked for them: `(state index, TypeScript type of its args)` for the
    /// states that declare one ([`crate::State::args_ts`]).
    pub args_types: Option<Vec<(u16, String)>>,
    /// The id of the worker's transition log (`None`: the worker has none). A client resumes
    /// its stream with it after a reconnect ([`StreamFrom`]); another id means another log (the
    /// worker restarted).
    pub log_id: Option<u64>,
    /// The id of the worker's replay cache (protocol 4; 0: unnamed). The same id after a
    /// reconnect: calls sent before it may be resent, each runs at most once. Another id: the
    /// server restarted without that memory, so calls already sent fail with
    /// [`ErrorCode::MayNotHaveRun`] instead of being resent (they could run twice).
    pub replay_id: u64,
}

/// A state definition with relations as indexes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireState {
    /// Bit 0: auto, bit 1: multi.
    pub flags: u8,
    /// Require.
    pub require: Vec<u16>,
    /// Add.
    pub add: Vec<u16>,
    /// Remove.
    pub remove: Vec<u16>,
    /// After.
    pub after: Vec<u16>,
    /// Tags.
    pub tags: Vec<String>,
}

/// A payload from the worker to a client (upstream `ArgsPayload`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// Payload kind.
    pub name: String,
    /// Sender id.
    pub source: String,
    /// Unique per payload (filled by the server).
    pub token: u64,
    /// Opaque data.
    #[serde(with = "bytes_field")]
    pub data: Vec<u8>,
}

/// One chunk of a payload larger than the chunk size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The payload's token.
    pub token: u64,
    /// Chunk number, from 0.
    pub index: u32,
    /// Number of chunks.
    pub total: u32,
    /// In chunk 0 only: name and source.
    pub head: Option<(String, String)>,
    /// Total payload length (for limits), in chunk 0 only.
    pub len: Option<u64>,
    /// This chunk's bytes.
    #[serde(with = "bytes_field")]
    pub data: Vec<u8>,
}

/// An error with a stable code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMsg {
    /// The request it answers, if any.
    pub req: Option<u32>,
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

/// Why bytes could not be decoded into a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Larger than the limit.
    #[error("frame of {len} bytes is over the {max} byte limit")]
    TooLarge {
        /// Frame length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// Valid message followed by extra bytes.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

impl DecodeError {
    /// This error's stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::TooLarge,
            DecodeError::Malformed(_) | DecodeError::Trailing(_) => ErrorCode::Malformed,
        }
    }
}

/// Why a message could not be encoded (only args holding opaque values can't).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode: {0}")]
pub struct EncodeError(pub String);

impl EncodeError {
    /// This error's stable code (what could not be encoded came in as an argument).
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidArgs
    }
}

/// The protocol version of a `Hello` or `Welcome` frame (both start with variant 0 followed by
/// the version), read without decoding the rest — so a peer of another version is told so even
/// when its message does not decode.
pub fn peek_version(bytes: &[u8]) -> Option<u16> {
    let (tag, rest) = bytes.split_first()?;
    if *tag != 0 {
        return None;
    }
    let mut v: u32 = 0;
    for (i, b) in rest.iter().take(3).enumerate() {
        v |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u16::try_from(v).ok();
        }
    }
    None
}

/// Decode any message of this codec (postcard, at most `max` bytes, no trailing bytes): the
/// frames here and the NATS bridge's messages share it.
pub fn decode_msg<'a, T: Deserialize<'a>>(bytes: &'a [u8], max: usize) -> Result<T, DecodeError> {
    decode(bytes, max)
}

/// Encode any message of this codec (see [`decode_msg`]).
pub fn encode_msg<T: Serialize>(msg: &T) -> Result<Vec<u8>, EncodeError> {
    encode(msg)
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], max: usize) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge { len: bytes.len(), max });
    }
    let (msg, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| DecodeError::Malformed(alloc::format!("{e}")))?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok(msg)
}

fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, EncodeError> {
    postcard::to_allocvec(msg).map_err(|e| EncodeError(alloc::format!("{e}")))
}

impl ClientMsg {
    /// Encode to one frame.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        encode(self)
    }
    /// Decode one frame of at most `max` bytes.
    pub fn decode(bytes: &[u8], max: usize) -> Result<ClientMsg, DecodeError> {
        decode(bytes, max)
    }
}

impl ServerMsg {
    /// Encode to one frame.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        encode(self)
    }
    /// Decode one frame of at most `max` bytes.
    pub fn decode(bytes: &[u8], max: usize) -> Result<ServerMsg, DecodeError> {
        decode(bytes, max)
    }
}

/// The schema in wire form, in `names` order. Relations to states missing from `names` are
/// dropped (they cannot be addressed).
pub fn schema_to_wire(schema: &Schema, names: &[String]) -> Vec<WireState> {
    let idx = |l: &[String]| -> Vec<u16> {
        l.iter()
            .filter_map(|n| names.iter().position(|x| x == n).map(|p| p as u16))
            .collect()
    };
    names
        .iter()
        .map(|n| match schema.get(n) {
            Some(s) => WireState {
                flags: u8::from(s.auto) | (u8::from(s.multi) << 1),
                require: idx(&s.require),
                add: idx(&s.add),
                remove: idx(&s.remove),
                after: idx(&s.after),
                tags: s.tags.clone(),
            },
            None => WireState::default(),
        })
        .collect()
}

/// The schema back from wire form. Errors on indexes outside `names`, length mismatches and
/// unknown flag bits.
pub fn schema_from_wire(names: &[String], states: &[WireState]) -> Result<Schema, crate::Error> {
    if names.len() != states.len() {
        return Err(crate::Error::InvalidArgs(alloc::format!(
            "{} names but {} state definitions",
            names.len(),
            states.len()
        )));
    }
    let name = |i: &u16| -> Result<String, crate::Error> {
        names
            .get(*i as usize)
            .cloned()
            .ok_or_else(|| crate::Error::InvalidArgs(alloc::format!("relation to state index {i}")))
    };
    let list = |l: &[u16]| -> Result<Vec<String>, crate::Error> { l.iter().map(name).collect() };
    let mut out = Schema::new();
    for (n, w) in names.iter().zip(states) {
        if w.flags & !3 != 0 {
            return Err(crate::Error::InvalidArgs(alloc::format!(
                "unknown flags {} on {n}",
                w.flags
            )));
        }
        let st = State {
            args_ts: None,
            auto: w.flags & 1 != 0,
            multi: w.flags & 2 != 0,
            require: list(&w.require)?,
            add: list(&w.add)?,
            remove: list(&w.remove)?,
            after: list(&w.after)?,
            tags: w.tags.clone(),
        };
        if out.insert(n.clone(), st).is_some() {
            return Err(crate::Error::InvalidArgs(alloc::format!("duplicate state name {n}")));
        }
    }
    Ok(out)
}

/// The schema hash a machine's sessions announce in `Welcome` (its state order and schema).
pub fn machine_schema_hash(m: &crate::Machine) -> u64 {
    let names = m.state_names();
    schema_hash(&names, &schema_to_wire(&m.get_struct(), &names))
}

/// A stable 64-bit FNV-1a hash of the ordered names and the wire schema: equal hashes mean the
/// same states in the same order with the same relations.
pub fn schema_hash(names: &[String], states: &[WireState]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for x in b {
            h ^= u64::from(*x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (n, s) in names.iter().zip(states) {
        eat(&(n.len() as u32).to_le_bytes());
        eat(n.as_bytes());
        eat(&[s.flags]);
        for l in [&s.require, &s.add, &s.remove, &s.after] {
            eat(&(l.len() as u32).to_le_bytes());
            for i in l.iter() {
                eat(&i.to_le_bytes());
            }
        }
    }
    eat(&(names.len() as u32).to_le_bytes());
    h
}

/// `Vec<u8>` as postcard bytes (one length prefix) rather than a list of numbers.
mod bytes_field {
    use alloc::vec::Vec;
    use core::fmt;
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}
