//! One error taxonomy for every layer and language: [`ErrorCode`] is the single list of stable
//! codes. The wire carries them (the first 16, by variant index), the Rust errors report them
//! ([`crate::Error::code`]), the JS errors carry [`ErrorCode::as_str`] as their `code`, and the
//! TypeScript union ([`TS_ERROR_CODE`]) is generated from the same list, so the three cannot drift.

use alloc::string::String;

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $name:ident = $n:literal, )*) => {
        /// Stable error codes. The discriminants (variant order) of the first 16 are part of the
        /// protocol; codes after them are raised locally (by a client, a mirror or a binding) and
        /// never need to cross the wire, though a peer may send them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[repr(u8)]
        pub enum ErrorCode {
            $( $(#[$doc])* $name = $n, )*
        }

        impl ErrorCode {
            /// Every code, in order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];

            /// The stable name: what JS errors carry as `code` and TypeScript's `ErrorCode` lists.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => stringify!($name),)*
                }
            }

            /// The code of a stable name.
            pub fn from_name(name: &str) -> Option<ErrorCode> {
                match name {
                    $(stringify!($name) => Some(ErrorCode::$name),)*
                    _ => None,
                }
            }
        }

        /// The TypeScript declaration of every code, generated from [`ErrorCode`].
        pub const TS_ERROR_CODE: &str = concat!(
            "/** Stable error codes (the `code` of every amrpc error). */\nexport type ErrorCode =",
            $(" \"", stringify!($name), "\" |",)*
            " never;\n"
        );
    };
}

error_codes! {
    /// Protocol versions differ.
    VersionMismatch = 0,
    /// The worker's schema hash differs from the client's.
    SchemaMismatch = 1,
    /// The client id is not allowed.
    AccessDenied = 2,
    /// Missing or invalid token.
    Unauthorized = 3,
    /// The client may not mutate one of these states.
    Forbidden = 4,
    /// Invalid parameters (unknown state index, bad args).
    InvalidParams = 5,
    /// A frame could not be decoded.
    Malformed = 6,
    /// A frame or payload is over the limit.
    TooLarge = 7,
    /// A message arrived in the wrong phase (e.g. a mutation before `Hello`).
    NotReady = 8,
    /// The server is shutting down.
    ShuttingDown = 9,
    /// Too many sessions, or the client cannot keep up.
    Overloaded = 10,
    /// The worker failed.
    Internal = 11,
    /// The session, client or machine is closed (also: a disposed machine).
    Closed = 12,
    /// Not a failure of a request: the worker's last error changed (its `Err()`), sent with
    /// `req: None` when the worker's `Exception` ticks. Clients keep it as the mirror's `err()`.
    WorkerError = 13,
    /// No worker of that name on this server (sent on an accepted upgrade, since browsers cannot
    /// see an HTTP 404 on a WebSocket).
    UnknownWorker = 14,
    /// A session has registered as many remote waits (`whenArgs`, `whenQueue`) as the server
    /// allows; cancel one first (protocol version 2).
    TooManyWaits = 15,
    /// A state name is not in the schema.
    StateUnknown = 16,
    /// States are missing (e.g. handlers naming unknown states, a served machine without the
    /// worker states).
    StateMissing = 17,
    /// A relation is invalid (a Require cycle, a relation to an unknown state).
    Relation = 18,
    /// Arguments of an API call are invalid.
    InvalidArgs = 19,
    /// A handler ran longer than the handler timeout.
    HandlerTimeout = 20,
    /// A transition was canceled.
    Canceled = 21,
    /// A transition was queued.
    Queued = 22,
    /// A call or a wait ran out of time (a call: after all its resends).
    Timeout = 23,
    /// The client has no mirror yet (no handshake has completed).
    NotConnected = 24,
    /// Too many calls are in flight (the server's replay window per client).
    TooManyInFlight = 25,
    /// Every connection attempt failed.
    ConnRetryFailed = 26,
    /// The caller aborted (an `AbortSignal`, a canceled context).
    Aborted = 27,
    /// The server URL is malformed (retrying cannot help).
    InvalidUrl = 28,
    /// No WebSocket implementation is available (retrying cannot help).
    NoWebSocket = 29,
    /// A remote mirror lost its connection.
    Disconnected = 30,
    /// Any other failure: a handler panic, an error added with `add_err`.
    Other = 31,
    /// The session sent more mutations per second than the server allows; this one did not
    /// run (protocol version 4).
    RateLimited = 32,
    /// The server restarted without the state this call needed to be answered once: the call
    /// may or may not have run, and is not resent (it could run twice). Read the mirror, which
    /// has resynced, to decide.
    MayNotHaveRun = 33,
}

impl ErrorCode {
    /// The codes a server sends: the first 16, and since protocol version 4 `Timeout` (no
    /// `Hello` in time, an unanswered ping), `TooManyInFlight`, `RateLimited` and
    /// `MayNotHaveRun`. The others are raised locally; a server maps them to
    /// [`ErrorCode::Internal`] before they reach the wire.
    pub const fn is_wire(self) -> bool {
        (self as u8) <= ErrorCode::TooManyWaits as u8
            || matches!(
                self,
                ErrorCode::Timeout | ErrorCode::TooManyInFlight | ErrorCode::RateLimited | ErrorCode::MayNotHaveRun
            )
    }

    /// Codes after which reconnecting cannot help: a client stops instead of retrying.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            ErrorCode::AccessDenied
                | ErrorCode::Unauthorized
                | ErrorCode::VersionMismatch
                | ErrorCode::SchemaMismatch
                | ErrorCode::UnknownWorker
                | ErrorCode::InvalidUrl
                | ErrorCode::NoWebSocket
        )
    }
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// This error's stable code.
    pub fn code(&self) -> ErrorCode {
        use Error as E;
        match self {
            E::StateUnknown(_) => ErrorCode::StateUnknown,
            E::StateMissing(_) => ErrorCode::StateMissing,
            E::Relation(_) => ErrorCode::Relation,
            E::InvalidArgs(_) => ErrorCode::InvalidArgs,
            E::HandlerTimeout(_) => ErrorCode::HandlerTimeout,
            E::Canceled => ErrorCode::Canceled,
            E::Queued => ErrorCode::Queued,
            E::Timeout => ErrorCode::Timeout,
            E::Disposed => ErrorCode::Closed,
            E::NotConnected => ErrorCode::NotConnected,
            E::TooManyInFlight { .. } => ErrorCode::TooManyInFlight,
            E::ConnRetryFailed { .. } => ErrorCode::ConnRetryFailed,
            E::Aborted => ErrorCode::Aborted,
            E::Rpc { code, .. } => *code,
            E::Other(_) => ErrorCode::Other,
        }
    }
}

/// Errors of the machine's fallible API. Messages follow upstream's `"<base>: <detail>"` form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A state name is not in the schema.
    #[error("state unknown: {0}")]
    StateUnknown(String),
    /// States are missing (e.g. handlers referring to unknown states).
    #[error("missing states: {0}")]
    StateMissing(String),
    /// A relation is invalid, e.g. a Require cycle or a relation to an unknown state.
    #[error("relation error: {0}")]
    Relation(String),
    /// Arguments are invalid.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    /// A handler ran longer than the handler timeout.
    #[error("handler timeout: {0}")]
    HandlerTimeout(String),
    /// A transition was canceled.
    #[error("transition canceled")]
    Canceled,
    /// A transition was queued.
    #[error("transition queued")]
    Queued,
    /// A wait timed out.
    #[error("timeout")]
    Timeout,
    /// The machine is disposed.
    #[error("machine disposed")]
    Disposed,
    /// A client has no mirror yet: no handshake has completed.
    #[error("not connected yet")]
    NotConnected,
    /// Too many calls are in flight (each must fit the server's replay window).
    #[error("{limit} calls already in flight")]
    TooManyInFlight {
        /// The limit.
        limit: usize,
    },
    /// A client gave up connecting.
    #[error("gave up after {attempts} connection attempts: {last}")]
    ConnRetryFailed {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The caller aborted (a canceled context, an `AbortSignal`).
    #[error("aborted")]
    Aborted,
    /// A remote peer answered with a protocol error, or a client failed with a code of its own.
    #[error("remote error {code}: {message}")]
    Rpc {
        /// Stable code.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
    /// A handler panicked (with `std`), or an error added by the user with `add_err`.
    #[error("{0}")]
    Other(String),
}
