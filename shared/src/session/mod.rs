//! Sans-IO protocol sessions: bytes in, frames and events out; no sockets, no timers, no
//! runtime. The server, the native client and the browser client are thin shells around these.

mod client;
mod replay;
mod server;

pub use client::{ClientConfig, ClientOutput, ClientSession, RemoteError};
pub use replay::{Replay, ReplayCache};
pub use server::{Authorize, MutateCmd, ServerConfig, ServerOutput, ServerSession};
