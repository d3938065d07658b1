//! # amrpc-client
//!
//! The native amrpc client: [`Client::connect`] mirrors a worker served by an amrpc server, and
//! its [`Mirror`] implements [`amrpc_core::Api`] — getters and waits answer from the mirrored
//! clock, mutations go to the worker. A thin tokio-tungstenite shell (socket, timer, task)
//! around the core's sans-IO [`amrpc_core::session::Connection`], which owns every rule.
//!
//! ```no_run
//! # async fn demo() -> Result<(), amrpc_core::Error> {
//! use amrpc_client::{Client, ClientOpts};
//! use amrpc_core::Api;
//! let client = Client::connect("ws://127.0.0.1:8080/ws/downloads", ClientOpts::default()).await?;
//! client.mirror().add1("Start", None).await?;
//! assert!(client.mirror().is1("Start"));
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod mirror;
mod opts;
mod shell;
mod tls;

pub use amrpc_core;
pub use mirror::Mirror;
pub use opts::ClientOpts;
pub use shell::{Client, StreamEvent};
