//! Sans-IO protocol sessions: bytes in, frames and events out; no sockets, no timers, no
//! runtime. The server, the native client and the browser client are thin shells around these:
//! [`ServerSession`] (one connection's server side, calling the worker through [`WorkerPort`]),
//! [`ClientSession`] (the protocol's client side and the mirror) and [`Connection`] (the client's
//! whole lifecycle around a `ClientSession`: dialing, backoff, call timeouts, client states).

mod client;
mod conn;
mod replay;
mod server;
mod stream;
mod worker;

pub use client::{CallTimeouts, ClientConfig, ClientOutput, ClientSession, MAX_PENDING, NOTIFY_REQ, state_indexes};
pub use conn::{BROWSER_CLIENT_ID, ConnConfig, ConnOutput, Connection, NATIVE_CLIENT_ID, Status};
pub use replay::{PER_INSTANCE, REQ_ID_WRAP, Replay, ReplayCache, ReplaySnapshot};
pub use server::{Authorize, ServerConfig, ServerOutput, ServerSession, replay_key};
pub use stream::{ARGS_CAP, Batch, LOG_CAPACITY, MAX_PER_POLL, Record, StreamTracer, TransitionLog};
pub use worker::{CallId, Mutated, SessionSchema, WorkerPort};
