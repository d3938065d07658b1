//! Sans-IO protocol sessions: bytes in, frames and events out; no sockets, no timers, no
//! runtime. The server, the native client and the browser client are thin shells around these.

mod client;
mod replay;
mod server;

pub use client::{CallTimeouts, ClientConfig, ClientOutput, ClientSession, MAX_PENDING, RemoteError, final_code};
pub use replay::{PER_INSTANCE, REQ_ID_WRAP, Replay, ReplayCache};
pub use server::{Authorize, MutateCmd, ServerConfig, ServerOutput, ServerSession, replay_key};
