//! Server settings and setup errors.

use std::sync::Arc;
use std::time::Duration;

use amrpc_core::ErrorCode;

/// Decides whether a client may open a session: `(client_id, token) -> allowed`. The token comes
/// from `Hello`, or from the URL's `?token=` (browsers cannot set headers on a WebSocket).
pub type AuthHook = Arc<dyn Fn(&str, Option<&str>) -> bool + Send + Sync>;

/// Server settings. Every default is documented on its field.
#[derive(Clone)]
pub struct ServerOpts {
    /// Push interval when the client states no wish. Default: 16 ms (one frame at 60 Hz: a page
    /// repaints at most that often, so faster pushes only cost bandwidth; see docs/BENCHMARKS.md).
    pub push_interval: Duration,
    /// Largest incoming WebSocket message. Default: 1 MiB.
    pub max_message_size: usize,
    /// Most concurrent sessions; more connections get `Bye Overloaded` (clients retry with
    /// backoff). Default: 4096.
    pub max_sessions: usize,
    /// A client that does not read for this long is closed (`Overloaded`). Default: 10 s.
    pub send_timeout: Duration,
    /// Bytes buffered for a slow client before sends wait. Default: 256 KiB.
    pub max_write_buffer: usize,
    /// Allowed client ids (upstream `AllowId`). Default: any.
    pub allow_ids: Option<Vec<String>>,
    /// Token check. Default: none.
    pub auth: Option<AuthHook>,
    /// Browser `Origin`s allowed besides the server's own (an `Origin` whose host and port
    /// equal the request's `Host`): exact origins such as `"https://app.example"`, or `"*"`
    /// for any. Requests without an `Origin` header (non-browsers) pass. Default: none — a page
    /// from another site cannot drive the server from a user's browser (cross-site WebSocket
    /// hijacking).
    pub allowed_origins: Vec<String>,
    /// A connection that sends no `Hello` for this long is closed (`Timeout`). Default: 10 s.
    pub hello_timeout: Duration,
    /// A session the server heard nothing from for this long gets a WebSocket ping; zero: no
    /// pings. Default: 15 s.
    pub ping_interval: Duration,
    /// A ping unanswered this long closes the session (`Timeout`): a dead peer or half-open
    /// connection frees its slot. Default: 15 s.
    pub ping_timeout: Duration,
    /// Mutations one session may have in flight (a relay's forwarded ones, retries waiting for
    /// their original); more fail with `TooManyInFlight` without running. Default: 256.
    pub max_in_flight: usize,
    /// Mutations per second per session (a token bucket of `mutation_burst`); past it one
    /// fails with `RateLimited` without running. 0: no limit. Default: 1 000.
    pub mutation_rate: u32,
    /// Mutations a session may send at once after a quiet spell. Default: 2 000.
    pub mutation_burst: u32,
    /// States clients may mutate. Default: all.
    pub mutable_states: Option<Vec<String>>,
    /// Payloads larger than this go in chunks. Default: 64 KiB.
    pub chunk_size: usize,
    /// Client instances the at-most-once replay cache remembers per worker. Default: 4096.
    pub replay_instances: usize,
    /// Most remote waits (`when_args`, `when_queue`) one session may hold; more are refused
    /// with `TooManyWaits`. Each is a binding the worker checks per transition. Default: 64.
    pub max_waits: usize,
    /// Transitions a worker's log keeps for the transition stream (`Hello::stream`); a session
    /// further behind gets a `Dropped` marker. Transitions are recorded only while a session
    /// reads the stream. 0: no stream (such a `Hello` gets `Forbidden`). Relays have none.
    /// Default: 1024.
    pub transition_log: usize,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            push_interval: Duration::from_millis(16),
            max_message_size: 1 << 20,
            max_sessions: 4096,
            send_timeout: Duration::from_secs(10),
            max_write_buffer: 256 << 10,
            allow_ids: None,
            auth: None,
            allowed_origins: Vec::new(),
            hello_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(15),
            max_in_flight: 256,
            mutation_rate: 1_000,
            mutation_burst: 2_000,
            mutable_states: None,
            chunk_size: 64 << 10,
            replay_instances: 4096,
            max_waits: 64,
            transition_log: amrpc_core::session::LOG_CAPACITY,
        }
    }
}

impl std::fmt::Debug for ServerOpts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOpts")
            .field("push_interval", &self.push_interval)
            .field("max_message_size", &self.max_message_size)
            .field("max_sessions", &self.max_sessions)
            .field("allow_ids", &self.allow_ids)
            .field("allowed_origins", &self.allowed_origins)
            .field("mutation_rate", &self.mutation_rate)
            .finish_non_exhaustive()
    }
}

/// Why a worker or server could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The machine's states are not verified: their order is the wire identity of states.
    #[error("worker {0}: states are not verified (call verify_states)")]
    NotVerified(String),
    /// The machine lacks worker states.
    #[error("worker {worker}: missing worker states {missing:?} (merge states::worker_schema())")]
    MissingStates {
        /// Worker id.
        worker: String,
        /// Missing names.
        missing: Vec<String>,
    },
    /// A worker of that name exists.
    #[error("a worker named {0} is already registered")]
    Duplicate(String),
    /// Binding handlers failed.
    #[error(transparent)]
    Machine(#[from] amrpc_core::Error),
    /// TLS settings are unusable (a certificate or key that does not parse or match).
    #[error("tls: {0}")]
    Tls(String),
    /// A snapshot does not fit (another machine, another format) or cannot be read.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ServerError {
    /// This error's stable code (the one list, [`ErrorCode`]).
    pub fn code(&self) -> ErrorCode {
        match self {
            ServerError::NotVerified(_) | ServerError::MissingStates { .. } => ErrorCode::StateMissing,
            ServerError::Duplicate(_) | ServerError::Snapshot(_) | ServerError::Tls(_) => ErrorCode::InvalidArgs,
            ServerError::Machine(e) => e.code(),
            ServerError::Io(_) => ErrorCode::Internal,
        }
    }
}
