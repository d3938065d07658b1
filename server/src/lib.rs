//! # amrpc-server
//!
//! The tokio side of amrpc: an axum WebSocket server hosting state machines ("workers"), one
//! session per connection, each a thin shell around `amrpc_core::session::ServerSession`.
//! Relays serve a remote worker's mirror from the native client (`amrpc-client`). The client
//! alone, without the server's dependencies, is the `amrpc-client` crate.

#![warn(missing_docs)]

pub mod demo;
pub mod nats;
pub mod server;

pub use amrpc_core;
pub use server::{
    AuthHook, SNAPSHOT_FORMAT, Server, ServerError, ServerOpts, SessionInfo, TlsConfig, Upstream, Worker, WorkerInfo,
    WorkerPayload, WorkerSnapshot, take_snapshot,
};
