//! Upstream's shared state schemas that every served machine builds on: the basic states
//! (`pkg/states/ss_basic.go`) and the rpc worker states (`pkg/rpc/states/ss_rpc_worker.go`).
//! A machine must contain [`WORKER_STATES`] to be served. Also upstream aRPC's server-session
//! and client schemas (spec/arpc.md §1), so servers and both clients (native and browser) expose
//! the same observable states: `RpcReady`, `ClientConnected`, `HandshakeDone`, `Ready`,
//! `RetryingCall`, `RetryingConn` …

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

/// A network timeout.
pub const ERR_NETWORK_TIMEOUT: &str = "ErrNetworkTimeout";
/// A protocol error.
pub const ERR_RPC: &str = "ErrRpc";
/// A payload could not be delivered.
pub const ERR_DELIVERY: &str = "ErrDelivery";
/// The handshake is running.
pub const HANDSHAKING: &str = "Handshaking";
/// The handshake is done.
pub const HANDSHAKE_DONE: &str = "HandshakeDone";
/// Server: the listener is being set up.
pub const RPC_STARTING: &str = "RpcStarting";
/// Server: accepting and serving.
pub const RPC_READY: &str = "RpcReady";
/// Server: a client is connected.
pub const CLIENT_CONNECTED: &str = "ClientConnected";
/// Server: an error raised by a client.
pub const ERR_ON_CLIENT: &str = "ErrOnClient";
/// Client: dialing.
pub const CONNECTING: &str = "Connecting";
/// Client: the socket is open.
pub const CONNECTED: &str = "Connected";
/// Client: closing.
pub const DISCONNECTING: &str = "Disconnecting";
/// Client: no connection.
pub const DISCONNECTED: &str = "Disconnected";
/// Client: a call is being retried.
pub const RETRYING_CALL: &str = "RetryingCall";
/// Client: a call failed after all retries.
pub const CALL_RETRY_FAILED: &str = "CallRetryFailed";
/// Client: the reconnect loop runs.
pub const RETRYING_CONN: &str = "RetryingConn";
/// Client: reconnecting gave up.
pub const CONN_RETRY_FAILED: &str = "ConnRetryFailed";
/// Client: a payload arrived.
pub const WORKER_PAYLOAD: &str = "WorkerPayload";

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

fn shared_schema() -> Schema {
    let handshake = [HANDSHAKING, HANDSHAKE_DONE];
    let own = schema([
        (
            ERR_NETWORK_TIMEOUT,
            State::new().add(&[EXCEPTION]).require(&[EXCEPTION]),
        ),
        (ERR_RPC, State::new().add(&[EXCEPTION]).require(&[EXCEPTION])),
        (ERR_DELIVERY, State::new().add(&[EXCEPTION]).require(&[EXCEPTION])),
        (HANDSHAKING, State::new().require(&[START]).remove(&handshake)),
        (HANDSHAKE_DONE, State::new().require(&[START]).remove(&handshake)),
    ]);
    struct_merge(&[&basic_schema(), &own])
}

/// One server session's states (`ss_rpc_server.go`): `Ready` is Auto once both `HandshakeDone`
/// and `RpcReady` hold.
pub fn server_schema() -> Schema {
    let rpc = [RPC_STARTING, RPC_READY];
    let own = schema([
        (ERR_ON_CLIENT, State::new().require(&[EXCEPTION])),
        (
            ERR_NETWORK,
            State::new().require(&[EXCEPTION]).remove(&[CLIENT_CONNECTED]),
        ),
        (START, State::new().add(&[RPC_STARTING])),
        (READY, State::new().auto().require(&[HANDSHAKE_DONE, RPC_READY])),
        (RPC_STARTING, State::new().require(&[START]).remove(&rpc)),
        (RPC_READY, State::new().require(&[START]).remove(&rpc)),
        (CLIENT_CONNECTED, State::new().require(&[RPC_READY])),
    ]);
    struct_merge(&[&shared_schema(), &own])
}

/// A client's states (`ss_rpc_client.go` + Connected).
pub fn client_schema() -> Schema {
    let conn = [CONNECTING, CONNECTED, DISCONNECTING, DISCONNECTED];
    let own = schema([
        (CONNECTING, State::new().require(&[START]).remove(&conn)),
        (
            CONNECTED,
            State::new()
                .require(&[START])
                .remove(&conn)
                .remove(&[RETRYING_CONN])
                .add(&[HANDSHAKING]),
        ),
        (DISCONNECTING, State::new().remove(&conn)),
        (DISCONNECTED, State::new().auto().remove(&conn)),
        (ERR_NETWORK, State::new().require(&[EXCEPTION]).remove(&[CONNECTING])),
        (START, State::new().add(&[CONNECTING]).remove(&[CONN_RETRY_FAILED])),
        (READY, State::new().auto().require(&[HANDSHAKE_DONE])),
        (
            HANDSHAKING,
            State::new()
                .require(&[START, CONNECTED])
                .remove(&[HANDSHAKING, HANDSHAKE_DONE]),
        ),
        (
            HANDSHAKE_DONE,
            State::new()
                .require(&[START, CONNECTED])
                .remove(&[HANDSHAKING, HANDSHAKE_DONE]),
        ),
        (RETRYING_CALL, State::new().require(&[START])),
        (
            CALL_RETRY_FAILED,
            State::new().remove(&[RETRYING_CALL]).add(&[ERR_NETWORK, EXCEPTION]),
        ),
        (RETRYING_CONN, State::new().require(&[START])),
        (CONN_RETRY_FAILED, State::new().remove(&[START])),
        (WORKER_PAYLOAD, State::new().multi().require(&[CONNECTED])),
    ]);
    struct_merge(&[&shared_schema(), &own])
}
