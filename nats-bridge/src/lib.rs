//! # amrpc-nats
//!
//! amrpc past one machine: a worker's host publishes it on NATS ([`WorkerHost`]), and edge
//! servers on any host mirror it ([`EdgeMirror`]) and serve it to their clients. Clock changes
//! go out once per change on a subject per worker (the WebSocket protocol's `ClockUpdate`s,
//! sequenced and checksummed), the full clock and schema live in a JetStream key-value bucket
//! for late joiners and resyncs, and mutations travel by request/reply, answered with the
//! worker's own replay cache so a call runs at most once whichever edge sent it.
//! Subjects and buckets: [`subjects`]; messages: [`msg`]; the edge's clock logic, sans IO:
//! [`feed`].

#![warn(missing_docs)]

mod edge;
mod error;
pub mod feed;
mod host;
pub mod msg;
pub mod subjects;
#[cfg(feature = "testing")]
pub mod testing;

pub use edge::{EdgeMirror, EdgeOpts, rewatch};
pub use error::BridgeError;
pub use host::{HostOpts, WorkerHost, records_bucket};

/// A NATS connection for hosts and edges: it retries the first connect and reconnects forever,
/// and `connected` follows its state (edges tell their clients when NATS is gone).
#[derive(Clone, Debug)]
pub struct NatsLink {
    /// The client.
    pub client: async_nats::Client,
    /// True while connected.
    pub connected: tokio::sync::watch::Receiver<bool>,
}

/// Connect to `url` (e.g. `nats://127.0.0.1:4222`) as a [`NatsLink`]; `name` names the
/// connection on the NATS server.
pub async fn connect(url: &str, name: &str) -> Result<NatsLink, BridgeError> {
    let (tx, connected) = tokio::sync::watch::channel(false);
    let tx = std::sync::Arc::new(tx);
    let events = tx.clone();
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(move |e| {
            let events = events.clone();
            async move {
                match e {
                    async_nats::Event::Connected => {
                        events.send_replace(true);
                    }
                    async_nats::Event::Disconnected | async_nats::Event::Closed => {
                        events.send_replace(false);
                    }
                    other => tracing::debug!(event = %other, "nats"),
                }
            }
        })
        .connect(url)
        .await
        .map_err(BridgeError::nats)?;
    if client.connection_state() == async_nats::connection::State::Connected {
        tx.send_replace(true);
    }
    Ok(NatsLink { client, connected })
}

/// A random nonzero id (incarnations, an edge's own client key): std's per-process random
/// hasher keys, mixed with the time.
pub(crate) fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish().max(1)
}
