//! The tokio shell: one task owns the socket, the timer and the core's [`Connection`]; it
//! performs the driver's outputs and feeds it socket events, commands and the time.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amrpc_core::session::{ConnOutput, Connection};
use amrpc_core::wire::{Payload, TransitionMsg};
use amrpc_core::{Args, Error, ErrorCode, Machine, MutationType, Outcome, Slot, WaitError, Why};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::mirror::Mirror;
use crate::opts::ClientOpts;

/// A call's completion.
pub(crate) type Reply = oneshot::Sender<Result<(Outcome, Option<Why>), Error>>;

/// What the driver completes: a call's reply, or a remote wait's slot.
pub(crate) enum Completion {
    Call(Reply),
    Wait(Arc<Slot>),
}

/// States of a call, by name or by index (relays forward indexes as they arrived).
pub(crate) enum Target {
    Names(Vec<String>),
    Indexes(Vec<u16>),
    /// `add_err_state`: the error state and the message.
    Err(String, String),
}

pub(crate) enum Cmd {
    Call {
        ty: MutationType,
        target: Target,
        args: Option<Args>,
        reply: Reply,
    },
    /// A no-sync mutation (states by index, checked on the mirror).
    Notify {
        ty: MutationType,
        states: Vec<u16>,
        args: Option<Args>,
    },
    /// Fetch the full clock.
    Sync(Reply),
    /// A remote `WhenArgs`, completing `slot`; `key` cancels it.
    WhenArgs {
        key: u64,
        state: u16,
        args: Args,
        slot: Arc<Slot>,
    },
    /// A remote `WhenQueue`.
    WhenQueue {
        key: u64,
        tick: u64,
        slot: Arc<Slot>,
    },
    /// Drop the remote wait `key` (its `Wait` was dropped or its ctx canceled).
    Unwait(u64),
    Close(oneshot::Sender<()>),
}

/// A connected client. Dropping every handle (client and mirrors) closes the connection.
#[derive(Clone)]
pub struct Client {
    states: Machine,
    mirror: Mirror,
    payloads: broadcast::Sender<Payload>,
    transitions: broadcast::Sender<StreamEvent>,
}

/// What the transition stream brings ([`Client::transitions`]).
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// One transition of the worker; states by index in the mirror's state order.
    Transition(Arc<TransitionMsg>),
    /// Transitions the server did not send (this client, or its receiver, fell behind).
    Dropped {
        /// How many.
        n: u64,
        /// The `seq` of the next one.
        next: u64,
    },
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("states", &self.states)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connect to `url` (e.g. `ws://127.0.0.1:8080/ws/demo`) and wait for the handshake.
    /// Connection failures are retried per `opts`; refusals and malformed URLs fail at once with
    /// their code ([`Error::code`]).
    pub async fn connect(url: &str, opts: ClientOpts) -> Result<Client, Error> {
        Self::connect_any(&[url], opts).await
    }

    /// [`Client::connect`] to any of `urls` (servers of the same worker, e.g. its edge servers):
    /// the first is dialed first, and after a failed attempt or a lost connection the next one,
    /// round robin, so the client fails over between them, resending its calls in flight (each
    /// runs at most once where the servers share the worker's replay memory).
    pub async fn connect_any(urls: &[&str], opts: ClientOpts) -> Result<Client, Error> {
        let endpoints = u16::try_from(urls.len())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::Rpc {
                code: ErrorCode::InvalidUrl,
                message: format!("connect_any takes 1 to {} URLs, not {}", u16::MAX, urls.len()),
            })?;
        // wss: the TLS settings once (the system's roots are read from disk), not per dial
        let tls = if urls.iter().any(|u| u.starts_with("wss://")) {
            Some(crate::tls::client_config(opts.ca_pem.as_deref())?)
        } else {
            None
        };
        let mut cfg = opts.conn_config();
        cfg.endpoints = endpoints;
        let conn = Connection::new(cfg);
        let states = conn.states().clone();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        // a broadcast channel allocates its slots up front: the stream's only when asked for
        // (125 KiB per client before, most of it these two; the load run, docs/BENCHMARKS.md)
        let (payloads, _) = broadcast::channel(64);
        let (transitions, _) = broadcast::channel(if opts.stream || opts.all_ticks { 1024 } else { 1 });
        let worker_err = Arc::new(Mutex::new(None));
        let shell = Shell {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            conn,
            cmd: cmd_rx,
            ready: Some(ready_tx),
            payloads: payloads.clone(),
            transitions: transitions.clone(),
            worker_err: worker_err.clone(),
            start: Instant::now(),
            closed: None,
            tls,
        };
        tokio::spawn(shell.run());
        let machine = ready_rx.await.map_err(|_| Error::Disposed)??;
        Ok(Client {
            states,
            mirror: Mirror::new(machine, cmd_tx, worker_err),
            payloads,
            transitions,
        })
    }

    /// The remote worker's mirror.
    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// The client's own states (`Connected`, `Ready`, `RetryingConn`, `RetryingCall` …).
    pub fn states(&self) -> &Machine {
        &self.states
    }

    /// Payloads sent by the worker (upstream's consumer `WorkerPayload`).
    pub fn payloads(&self) -> broadcast::Receiver<Payload> {
        self.payloads.subscribe()
    }

    /// The worker's transitions, with [`crate::ClientOpts::stream`] (nothing comes otherwise).
    /// A receiver that lags behind gets `RecvError::Lagged(n)`: like `Dropped`, what it missed.
    pub fn transitions(&self) -> broadcast::Receiver<StreamEvent> {
        self.transitions.subscribe()
    }

    /// Say bye and close; pending calls fail with `Disposed`.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.mirror.send(Cmd::Close(tx)) {
            let _ = rx.await;
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type Dialing = Pin<Box<dyn Future<Output = Result<Ws, tungstenite::Error>> + Send>>;

struct Shell {
    urls: Vec<String>,
    conn: Connection<Completion>,
    cmd: mpsc::UnboundedReceiver<Cmd>,
    ready: Option<oneshot::Sender<Result<Machine, Error>>>,
    payloads: broadcast::Sender<Payload>,
    transitions: broadcast::Sender<StreamEvent>,
    worker_err: Arc<Mutex<Option<Error>>>,
    start: Instant,
    closed: Option<oneshot::Sender<()>>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Dial errors retrying cannot fix.
fn final_dial_code(e: &tungstenite::Error) -> Option<ErrorCode> {
    matches!(e, tungstenite::Error::Url(_)).then_some(ErrorCode::InvalidUrl)
}

impl Shell {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The URL of the endpoint the driver dials (or is connected to).
    fn url(&self) -> &str {
        &self.urls[usize::from(self.conn.endpoint())]
    }

    fn dial(&self) -> Dialing {
        let url = self.url().to_string();
        let tls = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        Box::pin(async move {
            // no Nagle: a mutation is one small frame and waits for its reply
            let cfg = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4 << 10);
            tokio_tungstenite::connect_async_tls_with_config(url, Some(cfg), true, tls)
                .await
                .map(|(ws, _)| ws)
        })
    }

    /// Perform the driver's outputs; false once the connection is over.
    async fn perform(&mut self, ws: &mut Option<Ws>, dialing: &mut Option<Dialing>) -> bool {
        while let Some(o) = self.conn.poll_output() {
            match o {
                ConnOutput::Dial => *dialing = Some(self.dial()),
                ConnOutput::Send(frame) => {
                    if let Some(s) = ws.as_mut() {
                        if s.send(Message::Binary(frame.into())).await.is_err() {
                            *ws = None;
                            let now = self.now();
                            self.conn.socket_closed(now);
                        }
                    }
                }
                ConnOutput::CloseSocket => {
                    *dialing = None;
                    if let Some(mut s) = ws.take() {
                        let _ = s.close(None).await;
                    }
                }
                ConnOutput::Status(s) => tracing::debug!(url = %self.url(), status = s.as_str(), "client status"),
                ConnOutput::Ready => {
                    if let Some(msg) = self.conn.worker_err() {
                        *lock(&self.worker_err) = Some(Error::Rpc {
                            code: ErrorCode::WorkerError,
                            message: msg.to_string(),
                        });
                    }
                    if let (Some(r), Some(m)) = (self.ready.take(), self.conn.mirror()) {
                        let _ = r.send(Ok(m.clone()));
                    }
                }
                ConnOutput::Done(Completion::Call(reply), result, why) => {
                    let _ = reply.send(result.map(|o| (o, why)));
                }
                ConnOutput::Done(Completion::Wait(slot), result, _) => {
                    slot.complete(result.map(|_| ()).map_err(WaitError::from_error));
                }
                ConnOutput::Changed => {}
                ConnOutput::Payload(p) => {
                    let _ = self.payloads.send(p);
                }
                ConnOutput::Transition(t) => {
                    let _ = self.transitions.send(StreamEvent::Transition(Arc::from(t)));
                }
                ConnOutput::Dropped { n, next } => {
                    let _ = self.transitions.send(StreamEvent::Dropped { n, next });
                }
                ConnOutput::Error(e) if e.code() == ErrorCode::WorkerError => *lock(&self.worker_err) = Some(e),
                ConnOutput::Error(e) => tracing::warn!(code = %e.code(), error = %e, "server error"),
                ConnOutput::Closed(e) => {
                    tracing::debug!(url = %self.url(), error = %e, "client closed");
                    if let Some(r) = self.ready.take() {
                        let _ = r.send(Err(e));
                    }
                    if let Some(done) = self.closed.take() {
                        let _ = done.send(());
                    }
                    return false;
                }
            }
        }
        true
    }

    fn command(&mut self, c: Option<Cmd>) {
        let now = self.now();
        match c {
            Some(Cmd::Call {
                ty,
                target,
                args,
                reply,
            }) => match target {
                Target::Names(names) => {
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    self.conn.call(now, ty, &names, args, Completion::Call(reply));
                }
                Target::Indexes(idx) => self.conn.call_indexes(now, ty, idx, args, Completion::Call(reply)),
                Target::Err(state, message) => {
                    self.conn.call_err(now, &state, &message, args, Completion::Call(reply));
                }
            },
            Some(Cmd::WhenArgs { key, state, args, slot }) => {
                self.conn.when_args_index(key, state, args, Completion::Wait(slot));
            }
            Some(Cmd::WhenQueue { key, tick, slot }) => self.conn.when_queue(key, tick, Completion::Wait(slot)),
            Some(Cmd::Unwait(key)) => self.conn.unwait(key),
            Some(Cmd::Notify { ty, states, args }) => {
                if let Err(e) = self.conn.notify_indexes(ty, states, args) {
                    tracing::warn!(code = %e.code(), error = %e, "no-sync mutation not sent");
                }
            }
            Some(Cmd::Sync(reply)) => self.conn.sync(Completion::Call(reply)),
            Some(Cmd::Close(done)) => {
                self.closed = Some(done);
                self.conn.close();
            }
            // every handle is gone
            None => self.conn.close(),
        }
    }

    async fn run(mut self) {
        let mut ws: Option<Ws> = None;
        let mut dialing: Option<Dialing> = None;
        let now = self.now();
        self.conn.start(now);
        // one timer, moved only when the deadline changes (not re-registered per event)
        let timer = tokio::time::sleep_until(self.start.into());
        tokio::pin!(timer);
        let mut armed: Option<u64> = None;
        while self.perform(&mut ws, &mut dialing).await {
            let deadline = self.conn.next_deadline();
            if deadline != armed {
                armed = deadline;
                if let Some(d) = deadline {
                    timer.as_mut().reset((self.start + Duration::from_millis(d)).into());
                }
            }
            tokio::select! {
                r = async { dialing.as_mut().expect("guarded").await }, if dialing.is_some() => {
                    dialing = None;
                    let now = self.now();
                    match r {
                        Ok(s) => {
                            ws = Some(s);
                            self.conn.opened(now);
                        }
                        Err(e) => {
                            tracing::debug!(url = %self.url(), error = %e, "connect failed");
                            self.conn.dial_failed(now, &e.to_string(), final_dial_code(&e));
                        }
                    }
                }
                m = async { ws.as_mut().expect("guarded").next().await }, if ws.is_some() => {
                    let now = self.now();
                    match m {
                        Some(Ok(Message::Binary(b))) => self.conn.frame(now, &b),
                        Some(Ok(Message::Close(_)) | Err(_)) | None => {
                            ws = None;
                            self.conn.socket_closed(now);
                        }
                        Some(Ok(_)) => {}
                    }
                }
                c = self.cmd.recv() => self.command(c),
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    let now = self.now();
                    self.conn.tick(now);
                }
            }
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
