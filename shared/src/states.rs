//! Upstream's shared state schemas that every served machine builds on: the basic states
//! (`pkg/states/ss_basic.go`) and the rpc worker states (`pkg/rpc/states/ss_rpc_worker.go`).
//! A machine must contain [`WORKER_STATES`] to be served.

use crate::schema::{EXCEPTION, Schema, State, schema, struct_merge};

/// The component should run.
pub const START: &str = "Start";
/// The component can do its work.
pub const READY: &str = "Ready";
/// Generic network error.
pub const ERR_NETWORK: &str = "ErrNetwork";
/// A handler timed out.
pub const ERR_HANDLER_TIMEOUT: &str = "ErrHandlerTimeout";
/// Periodic liveness (declared, unused upstream).
pub const HEALTHCHECK: &str = "Healthcheck";
/// Worker: the worker failed to produce a payload.
pub const ERR_PROVIDING: &str = "ErrProviding";
/// Worker: the server failed to send a payload.
pub const ERR_SEND_PAYLOAD: &str = "ErrSendPayload";
/// Worker: send args `name`, `data` (bytes) and optionally `destination` (a client id) to the
/// worker's clients.
pub const SEND_PAYLOAD: &str = "SendPayload";

/// Basic states.
pub fn basic_schema() -> Schema {
    schema([
        (EXCEPTION, State::new().multi()),
        (ERR_NETWORK, State::new().require(&[EXCEPTION])),
        (ERR_HANDLER_TIMEOUT, State::new().require(&[EXCEPTION])),
        (START, State::new()),
        (READY, State::new().require(&[START])),
        (HEALTHCHECK, State::new()),
    ])
}

/// The worker states a machine needs to be served: [`basic_schema`] plus `ErrProviding`,
/// `ErrSendPayload` and `SendPayload`.
pub fn worker_schema() -> Schema {
    let own = schema([
        (ERR_PROVIDING, State::new().require(&[EXCEPTION])),
        (ERR_SEND_PAYLOAD, State::new().require(&[EXCEPTION])),
        (SEND_PAYLOAD, State::new().multi()),
    ]);
    struct_merge(&[&basic_schema(), &own])
}

/// Worker state names in upstream's declared order.
pub const WORKER_STATES: [&str; 9] = [
    ERR_PROVIDING,
    ERR_SEND_PAYLOAD,
    SEND_PAYLOAD,
    EXCEPTION,
    ERR_NETWORK,
    ERR_HANDLER_TIMEOUT,
    START,
    READY,
    HEALTHCHECK,
];
