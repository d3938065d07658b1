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

pub use edge::{EdgeMirror, EdgeOpts};
pub use error::BridgeError;
pub use host::{HostOpts, WorkerHost};

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
