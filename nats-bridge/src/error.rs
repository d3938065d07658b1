//! The bridge's errors, each with a stable [`ErrorCode`] from the one list.

use amrpc_core::{Error, ErrorCode};

/// What can go wrong between a worker host, NATS and an edge.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A worker name or subject prefix that is not a single NATS token.
    #[error("not a worker name or subject prefix: {0:?}")]
    BadName(String),
    /// No record of the worker in the bucket (no host publishes it).
    #[error("unknown worker: {0}")]
    UnknownWorker(String),
    /// A message that does not decode or does not hold together.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The edge mirrors another schema than the worker has.
    #[error("schema mismatch: {0}")]
    SchemaMismatch(String),
    /// A message could not be encoded.
    #[error("encode: {0}")]
    Encode(String),
    /// NATS or JetStream failed (connection, timeout, no responders …).
    #[error("nats: {0}")]
    Nats(String),
    /// No answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl BridgeError {
    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            BridgeError::BadName(_) => ErrorCode::InvalidArgs,
            BridgeError::UnknownWorker(_) => ErrorCode::UnknownWorker,
            BridgeError::Malformed { .. } => ErrorCode::Malformed,
            BridgeError::SchemaMismatch(_) => ErrorCode::SchemaMismatch,
            BridgeError::Encode(_) => ErrorCode::Internal,
            BridgeError::Nats(_) => ErrorCode::Disconnected,
            BridgeError::Timeout(_) => ErrorCode::Timeout,
        }
    }

    /// As the API's [`Error`] (`Rpc` with this error's code).
    pub fn into_error(self) -> Error {
        self.into()
    }

    /// A NATS or JetStream failure.
    pub fn nats(e: impl std::fmt::Display) -> BridgeError {
        BridgeError::Nats(e.to_string())
    }
}

impl From<BridgeError> for Error {
    fn from(e: BridgeError) -> Error {
        Error::Rpc {
            code: e.code(),
            message: e.to_string(),
        }
    }
}
