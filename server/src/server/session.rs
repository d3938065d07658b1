//! One WebSocket session: the upgrade's checks, then a task that drives a `ServerSession`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use amrpc_core::session::{CallId, Mutated, ServerConfig, ServerOutput, ServerSession, SessionSchema, WorkerPort};
use amrpc_core::states as names;
use amrpc_core::wire::{ErrorMsg, ServerMsg};
use amrpc_core::{CompiledSchema, ErrorCode, Machine, MutationType, Opts, Outcome, Schema, Time};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc};

use super::{Server, SessionInfo, Upstream, Worker};

fn reject(status: StatusCode, msg: &str) -> Response {
    tracing::info!(%status, msg, "websocket upgrade rejected");
    (status, msg.to_string()).into_response()
}

pub(super) async fn ws_handler(
    State(srv): State<Server>,
    Path(worker): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let opts = &srv.0.opts;
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if !origin_allowed(origin.to_str().unwrap_or(""), host, &opts.allowed_origins) {
            return reject(StatusCode::FORBIDDEN, "origin not allowed");
        }
    }
    let Some(worker) = srv.worker(&worker) else {
        let msg = format!("no worker named {worker:?} on this server");
        return refuse(ws, ErrorCode::UnknownWorker, msg);
    };
    let Ok(permit) = srv.0.permits.clone().try_acquire_owned() else {
        tracing::info!(max = opts.max_sessions, "session refused: too many sessions");
        let msg = format!("too many sessions (the limit is {})", opts.max_sessions);
        return refuse(ws, ErrorCode::Overloaded, msg);
    };
    let url_token = query.get("token").cloned();
    ws.max_message_size(opts.max_message_size)
        .max_frame_size(opts.max_message_size)
        // small reads (a frame is bytes, not KiB): a 4 KiB read buffer instead of 128 KiB per session
        .read_buffer_size(4 << 10)
        // tungstenite wants the write buffer below its maximum
        .write_buffer_size((opts.max_write_buffer / 2).min(128 << 10))
        .max_write_buffer_size(opts.max_write_buffer.max(2))
        .on_upgrade(move |socket| async move {
            worker.sessions.fetch_add(1, Ordering::Relaxed);
            run_session(srv, worker.clone(), socket, url_token).await;
            worker.sessions.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        })
}

/// Accept the upgrade only to say why there is no session (a browser cannot read an HTTP status
/// on a failed WebSocket): a `Bye` with `code`, then a close, bounded in time.
fn refuse(ws: WebSocketUpgrade, code: ErrorCode, message: String) -> Response {
    ws.on_upgrade(move |mut socket| async move {
        let reason: String = message.chars().take(100).collect();
        let bye = ServerMsg::Bye(ErrorMsg {
            req: None,
            code,
            message,
        });
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            if let Ok(b) = bye.encode() {
                let _ = socket.send(Message::Binary(b.into())).await;
            }
            let close = CloseFrame {
                code: 1008,
                reason: reason.into(),
            };
            let _ = socket.send(Message::Close(Some(close))).await;
            let _ = socket.close().await;
        })
        .await;
    })
}

/// A browser's `Origin` may open a session: the server's own (its host and port are the
/// request's `Host`, as with a page `amrpc serve` served itself, or one a dev proxy forwards),
/// or one on the allow-list (`"*"`: any). `null` (sandboxed frames, files) is foreign.
pub(crate) fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    if allowed.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let authority = origin.split_once("://").map(|(_, a)| a.trim_end_matches('/'));
    match (authority, host) {
        (Some(a), Some(h)) => !a.is_empty() && a.eq_ignore_ascii_case(h),
        _ => false,
    }
}

/// Whether a client frame may run the worker's handlers: a mutation (`Add`, `Remove`, `Set`:
/// variants 1–3, postcard's first byte). Only those go through `block_in_place`, which hands the
/// runtime's other tasks to a fresh thread each time; 10 000 clients saying `Hello` or `Bye` at
/// once made hundreds (the load run, docs/BENCHMARKS.md).
fn runs_handlers(frame: &[u8]) -> bool {
    matches!(frame.first(), Some(1..=3))
}

/// Run blocking work (a worker's handlers) without stalling the runtime: on a multi-threaded
/// runtime other tasks move to other threads meanwhile; on a current-thread runtime it runs inline.
fn run_blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Outcomes of forwarded mutations, by request id.
type Forwarded = mpsc::UnboundedSender<(u32, Result<(Outcome, Option<amrpc_core::Why>), amrpc_core::Error>)>;

/// A relay's worker: reads from the mirror, mutations forwarded upstream by index.
struct RelayPort<'a> {
    upstream: &'a dyn Upstream,
    done: &'a Forwarded,
}

impl WorkerPort for RelayPort<'_> {
    fn id(&self) -> String {
        WorkerPort::id(self.upstream.machine())
    }
    fn state_names(&self) -> Vec<String> {
        self.upstream.machine().state_names()
    }
    fn schema(&self) -> Schema {
        self.upstream.machine().get_struct()
    }
    fn session_schema(&self) -> Arc<SessionSchema> {
        self.upstream.machine().session_schema()
    }
    fn time(&self) -> Time {
        self.upstream.machine().time(None)
    }
    fn err(&self) -> Option<String> {
        self.upstream.err().map(|e| e.to_string())
    }
    fn mutate(&self, call: CallId, ty: MutationType, states: &[u16], args: amrpc_core::Args, _source: u64) -> Mutated {
        let forwarded = self.upstream.mutate(call, ty, states.to_vec(), args);
        let done = self.done.clone();
        tokio::spawn(async move {
            let _ = done.send((call.req, forwarded.await));
        });
        Mutated::Forwarded
    }
    fn when_args(&self, state: u16, args: amrpc_core::Args) -> Result<amrpc_core::Wait, (ErrorCode, String)> {
        let names = self.upstream.machine().state_names();
        let name = names
            .get(usize::from(state))
            .ok_or_else(|| (ErrorCode::InvalidParams, format!("state index {state} out of range")))?;
        Ok(self.upstream.when_args(name, args))
    }
    fn when_queue(&self, tick: u64) -> amrpc_core::Wait {
        self.upstream.when_queue(tick)
    }
}

/// Wakes a session's task when one of its remote waits completes.
struct WaitWaker(tokio::sync::Notify);

impl std::task::Wake for WaitWaker {
    fn wake(self: Arc<Self>) {
        self.0.notify_one();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.notify_one();
    }
}

/// One session's machine: upstream's server states, observable per connection. Every session
/// machine shares one compiled schema (most of what a machine would allocate).
fn session_machine(id: &str) -> Machine {
    static SCHEMA: std::sync::OnceLock<CompiledSchema> = std::sync::OnceLock::new();
    let schema =
        SCHEMA.get_or_init(|| CompiledSchema::new(names::server_schema(), None).expect("the server schema is valid"));
    let m = Machine::with_schema(
        schema,
        Opts {
            id: Some(id.to_string()),
            ..Default::default()
        },
    );
    m.add1(names::START, None);
    m.add1(names::RPC_READY, None);
    m.add1(names::CLIENT_CONNECTED, None);
    m.add1(names::HANDSHAKING, None);
    m
}

async fn run_session(srv: Server, worker: Worker, socket: WebSocket, url_token: Option<String>) {
    let opts = &srv.0.opts;
    let epoch = srv.0.epoch.fetch_add(1, Ordering::Relaxed);
    let auth = opts.auth.clone();
    let authorize: Option<amrpc_core::session::Authorize> = match (auth, url_token) {
        (Some(hook), Some(url)) => Some(Arc::new(move |id: &str, t: Option<&str>| {
            hook(id, t.or(Some(url.as_str())))
        })),
        (Some(hook), None) => Some(Arc::new(move |id: &str, t: Option<&str>| hook(id, t))),
        (None, _) => None,
    };
    let cfg = ServerConfig {
        max_frame: opts.max_message_size,
        push_interval_ms: opts.push_interval.as_millis() as u32,
        allow_ids: opts.allow_ids.clone(),
        authorize,
        mutable_states: opts.mutable_states.clone(),
        chunk_size: opts.chunk_size,
        epoch,
        max_waits: opts.max_waits,
        opened_at_ms: srv.0.start.elapsed().as_millis() as u64,
        hello_timeout_ms: opts.hello_timeout.as_millis() as u64,
        ping_interval_ms: opts.ping_interval.as_millis() as u64,
        ping_timeout_ms: opts.ping_timeout.as_millis() as u64,
        max_in_flight: opts.max_in_flight,
        mutation_rate: opts.mutation_rate,
        mutation_burst: opts.mutation_burst,
        ..Default::default()
    };
    let machine = worker.machine.clone();
    // relays run mutations remotely; their outcomes come back here
    // (only relays: a channel allocates a block of slots up front, ~2 KiB per session)
    let (done_tx, mut done_rx) = match worker.relay {
        Some(_) => {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let relay = (worker.relay.as_ref())
        .zip(done_tx.as_ref())
        .map(|(upstream, done)| RelayPort {
            upstream: upstream.as_ref(),
            done,
        });
    let port: &dyn WorkerPort = match &relay {
        Some(r) => r,
        None => &machine,
    };
    let mut sess = ServerSession::new(port, cfg, worker.replay.clone());
    if let Some(log) = &worker.log {
        sess.set_transition_log(log.clone());
    }
    let waits = Arc::new(WaitWaker(tokio::sync::Notify::new()));
    sess.set_waker(std::task::Waker::from(waits.clone()));
    let states = session_machine(&format!("session-{epoch:x}"));
    worker.live.lock().unwrap_or_else(|e| e.into_inner()).push(SessionInfo {
        epoch,
        client_id: None,
        states: states.clone(),
    });
    let mut changes = worker.changes.subscribe();
    let mut payloads = worker.payloads.subscribe();
    let mut stop = srv.0.shutdown.subscribe();
    let mut kick = worker.kick.subscribe();
    let (mut tx, mut rx) = socket.split();
    let start = srv.0.start;
    let now_ms = move || start.elapsed().as_millis() as u64;
    let send_timeout = opts.send_timeout;
    if *stop.borrow() {
        return;
    }
    // one registration with the waits' `Notify` while it stays pending
    let waited = waits.0.notified();
    tokio::pin!(waited);
    // one timer for the session's deadlines, moved only when the deadline does (a new timer per
    // wake was an insert and a remove in the runtime's timer wheel for every session on every
    // fan-out)
    let sleep = tokio::time::sleep_until(start.into());
    tokio::pin!(sleep);
    let mut armed: Option<u64> = None;
    'session: loop {
        let deadline = sess.next_deadline();
        if deadline != armed {
            if let Some(d) = deadline {
                sleep.as_mut().reset((start + Duration::from_millis(d)).into());
            }
            armed = deadline;
        }
        let outputs = tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if relay.is_none() && runs_handlers(&b) {
                        // a local worker's handlers run here and may block: keep the runtime's
                        // other tasks moving
                        run_blocking(|| sess.handle_frame(&b, now_ms(), port))
                    } else {
                        sess.handle_frame(&b, now_ms(), port)
                    }
                }
                Some(Ok(Message::Text(_))) => sess.shutdown(ErrorCode::Malformed, "text frames are not part of the protocol"),
                // tungstenite answers pings itself; either says the peer is alive
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                    sess.heard(now_ms());
                    continue;
                }
                // the Close reply (RFC 6455 §5.5.1) is queued by tungstenite; it goes out
                // with the flush at the end
                Some(Ok(Message::Close(_))) | None => break 'session,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "session read error");
                    sess.shutdown(read_error_code(&e), &e.to_string())
                }
            },
            r = changes.changed() => {
                if r.is_err() {
                    break 'session;
                }
                sess.worker_changed();
                sess.poll(now_ms(), port)
            }
            () = &mut sleep, if armed.is_some() => {
                // fired: armed again by the next deadline
                armed = None;
                sess.poll(now_ms(), port)
            }
            // a remote wait completed (on the worker's thread): signal it
            () = &mut waited => {
                waited.set(waits.0.notified());
                sess.poll(now_ms(), port)
            }
            Some((req, res)) = async {
                match done_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match res {
                Ok((outcome, why)) => {
                    let why = why.map(|w| amrpc_core::wire::WhyMsg::from_why(&w, &port.state_names()));
                    sess.mutation_done(req, outcome, why, now_ms(), port)
                }
                Err(e) => {
                    let code = match &e {
                        amrpc_core::Error::Rpc { .. } => e.code(),
                        _ => ErrorCode::Internal,
                    };
                    sess.mutation_failed(req, code, e.to_string())
                }
            },
            p = payloads.recv() => match p {
                Ok(p) => {
                    let mine = p.destination.as_deref().is_none_or(|d| Some(d) == sess.client_id());
                    if mine { sess.payload(&p.name, &p.source, &p.data) } else { Vec::new() }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "slow session lost payloads");
                    machine.add_err_state(names::ERR_SEND_PAYLOAD, format!("{n} payloads lost for a slow client"), None);
                    Vec::new()
                }
                Err(broadcast::error::RecvError::Closed) => Vec::new(),
            },
            _ = stop.wait_for(|s| *s) => sess.shutdown(ErrorCode::ShuttingDown, "server shutting down"),
            _ = kick.changed() => sess.shutdown(ErrorCode::ShuttingDown, "the server closed the worker's sessions"),
        };
        for o in outputs {
            match o {
                ServerOutput::Ping => {
                    if tokio::time::timeout(send_timeout, tx.send(Message::Ping(Default::default())))
                        .await
                        .is_err()
                    {
                        break 'session;
                    }
                }
                ServerOutput::Send(bytes) => {
                    match tokio::time::timeout(send_timeout, tx.send(Message::Binary(bytes.into()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "session write failed");
                            break 'session;
                        }
                        Err(_) => {
                            tracing::warn!("client does not read: closing the session");
                            let frame = CloseFrame {
                                code: 1008,
                                reason: "client too slow".into(),
                            };
                            let _ =
                                tokio::time::timeout(Duration::from_millis(100), tx.send(Message::Close(Some(frame))))
                                    .await;
                            break 'session;
                        }
                    }
                }
                // emitted before its Welcome frame: the session's states are up to date by the
                // time the client can observe them
                ServerOutput::HandshakeDone { client_id } => {
                    tracing::info!(client = %client_id, worker = %machine.id(), "session open");
                    states.add1(names::HANDSHAKE_DONE, None);
                    if let Some(i) = lock(&worker.live).iter_mut().find(|i| i.epoch == epoch) {
                        i.client_id = Some(client_id);
                    }
                }
                ServerOutput::Close { code, reason } => {
                    tracing::info!(?code, %reason, "session closed");
                    let frame = CloseFrame {
                        code: if code == ErrorCode::Closed { 1000 } else { 1008 },
                        reason: reason.chars().take(100).collect::<String>().into(),
                    };
                    let _ =
                        tokio::time::timeout(Duration::from_millis(100), tx.send(Message::Close(Some(frame)))).await;
                    break 'session;
                }
            }
        }
    }
    // flush a Close reply to the client's Close, or close our side; bounded for a dead peer
    let _ = tokio::time::timeout(Duration::from_millis(500), tx.close()).await;
    states.remove1(names::CLIENT_CONNECTED, None);
    worker
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|i| i.epoch != epoch);
    states.dispose();
}

/// A read error's code, by kind (not by message text).
fn read_error_code(e: &axum::Error) -> ErrorCode {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
    let inner = std::error::Error::source(e).and_then(|s| s.downcast_ref::<WsError>());
    match inner {
        Some(WsError::Capacity(CapacityError::MessageTooLong { .. })) => ErrorCode::TooLarge,
        Some(WsError::Capacity(_)) => ErrorCode::TooLarge,
        _ => ErrorCode::Malformed,
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};

    #[test]
    fn only_mutations_are_run_as_blocking() {
        use amrpc_core::wire::{ClientMsg, Hello, MutationReq};
        let m = || MutationReq {
            req: 1,
            states: vec![0],
            args: Default::default(),
        };
        for msg in [ClientMsg::Add(m()), ClientMsg::Remove(m()), ClientMsg::Set(m())] {
            assert!(runs_handlers(&msg.encode().unwrap()), "{msg:?}");
        }
        for msg in [
            ClientMsg::Hello(Hello::default()),
            ClientMsg::Sync { req: 1 },
            ClientMsg::Bye,
        ] {
            assert!(!runs_handlers(&msg.encode().unwrap()), "{msg:?}");
        }
    }

    #[test]
    fn read_errors_are_classified_by_kind() {
        let too_long = axum::Error::new(WsError::Capacity(CapacityError::MessageTooLong {
            size: 10,
            max_size: 5,
        }));
        assert_eq!(read_error_code(&too_long), ErrorCode::TooLarge);
        let bad = axum::Error::new(WsError::Protocol(ProtocolError::NonZeroReservedBits));
        assert_eq!(read_error_code(&bad), ErrorCode::Malformed);
    }
}
