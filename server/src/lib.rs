//! # amrpc-server
//!
//! The tokio side of amrpc: an axum WebSocket server hosting state machines ("workers"), one
//! session per connection, and a native client whose mirror implements [`amrpc_core::Api`].
//! Both are thin shells around `amrpc_core::session`.

#![warn(missing_docs)]

pub mod client;
pub mod demo;
pub mod repl;
pub mod server;
pub mod states;

pub use amrpc_core;
pub use client::{Client, ClientError, ClientOpts, Mirror};
pub use server::{AuthHook, Server, ServerError, ServerOpts, SessionInfo, Worker};
