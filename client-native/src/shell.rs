//! The tokio shell: one task owns the socket, the timer and the core's [`Connection`]; it
//! performs the driver's outputs and feeds it socket events, commands and the time.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amrpc_core::session::{ClientConfig, ConnConfig, ConnOutput, Connection, NATIVE_CLIENT_ID};
use amrpc_core::wire::Payload;
use amrpc_core::{Args, Error, ErrorCode, Machine, MutationType, Outcome};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::mirror::Mirror;

/// Client settings. The defaults are the core's ([`ConnConfig::default`], upstream v0.8.0's).
#[derive(Clone, Debug)]
pub struct ClientOpts {
    /// Client id sent in `Hello`. Default: `"rc-client"`.
    pub client_id: String,
    /// Auth token sent in `Hello`. Default: none.
    pub token: Option<String>,
    /// Expected schema hash; a different worker is refused. Default: accept any.
    pub schema_hash: Option<u64>,
    /// Push interval wish in ms (0: no pushes). Default: the server's.
    pub push_interval_ms: Option<u32>,
    /// States to receive. Default: all.
    pub states: Option<Vec<String>>,
    /// Dial timeout. Default: 3 s.
    pub conn_timeout: Duration,
    /// Failed connection attempts in a row before giving up. Default: 15.
    pub conn_retries: u32,
    /// First delay between attempts; doubles up to `conn_retry_backoff`, with jitter.
    /// Default: 100 ms.
    pub conn_retry_delay: Duration,
    /// Cap of the reconnect delay. Default: 3 s.
    pub conn_retry_backoff: Duration,
    /// A call without a reply for this long is resent (same request id: it runs at most once).
    /// Default: 3 s.
    pub call_timeout: Duration,
    /// Resends before a call fails with `Timeout`. Default: 15.
    pub call_retries: u32,
    /// Reconnect after an unexpected disconnect. Default: true.
    pub reconnect: bool,
    /// Largest server frame accepted. Default: 16 MiB.
    pub max_frame: usize,
}

impl Default for ClientOpts {
    fn default() -> Self {
        let c = ConnConfig::default();
        ClientOpts {
            client_id: NATIVE_CLIENT_ID.into(),
            token: None,
            schema_hash: None,
            push_interval_ms: None,
            states: None,
            conn_timeout: Duration::from_millis(c.conn_timeout_ms),
            conn_retries: c.conn_retries,
            conn_retry_delay: Duration::from_millis(c.retry_delay_ms),
            conn_retry_backoff: Duration::from_millis(c.retry_backoff_ms),
            call_timeout: Duration::from_millis(c.call_timeout_ms),
            call_retries: c.call_retries,
            reconnect: c.reconnect,
            max_frame: 16 << 20,
        }
    }
}

impl ClientOpts {
    fn conn_config(&self) -> ConnConfig {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        ConnConfig {
            session: ClientConfig {
                client_id: self.client_id.clone(),
                instance: random_u64(),
                token: self.token.clone(),
                schema_hash: self.schema_hash,
                push_interval_ms: self.push_interval_ms,
                states: self.states.clone(),
                max_frame: self.max_frame,
                ..Default::default()
            },
            conn_timeout_ms: ms(self.conn_timeout),
            conn_retries: self.conn_retries,
            retry_delay_ms: ms(self.conn_retry_delay),
            retry_backoff_ms: ms(self.conn_retry_backoff),
            call_timeout_ms: ms(self.call_timeout),
            call_retries: self.call_retries,
            reconnect: self.reconnect,
            seed: random_u64(),
        }
    }
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// A call's completion.
pub(crate) type Reply = oneshot::Sender<Result<Outcome, Error>>;

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
    Close(oneshot::Sender<()>),
}

/// A connected client. Dropping every handle (client and mirrors) closes the connection.
#[derive(Clone)]
pub struct Client {
    states: Machine,
    mirror: Mirror,
    payloads: broadcast::Sender<Payload>,
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
        let conn = Connection::new(opts.conn_config());
        let states = conn.states().clone();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (payloads, _) = broadcast::channel(256);
        let worker_err = Arc::new(Mutex::new(None));
        let shell = Shell {
            url: url.to_string(),
            conn,
            cmd: cmd_rx,
            ready: Some(ready_tx),
            payloads: payloads.clone(),
            worker_err: worker_err.clone(),
            start: Instant::now(),
            closed: None,
        };
        tokio::spawn(shell.run());
        let machine = ready_rx.await.map_err(|_| Error::Disposed)??;
        Ok(Client {
            states,
            mirror: Mirror::new(machine, cmd_tx, worker_err),
            payloads,
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
    url: String,
    conn: Connection<Reply>,
    cmd: mpsc::UnboundedReceiver<Cmd>,
    ready: Option<oneshot::Sender<Result<Machine, Error>>>,
    payloads: broadcast::Sender<Payload>,
    worker_err: Arc<Mutex<Option<Error>>>,
    start: Instant,
    closed: Option<oneshot::Sender<()>>,
}

/// Dial errors retrying cannot fix.
fn final_dial_code(e: &tungstenite::Error) -> Option<ErrorCode> {
    matches!(e, tungstenite::Error::Url(_)).then_some(ErrorCode::InvalidUrl)
}

impl Shell {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn dial(&self) -> Dialing {
        let url = self.url.clone();
        Box::pin(async move {
            // no Nagle: a mutation is one small frame and waits for its reply
            let cfg = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4 << 10);
            tokio_tungstenite::connect_async_with_config(url, Some(cfg), true)
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
                ConnOutput::Status(s) => tracing::debug!(url = %self.url, status = s.as_str(), "client status"),
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
                ConnOutput::Done(reply, result) => {
                    let _ = reply.send(result);
                }
                ConnOutput::Changed => {}
                ConnOutput::Payload(p) => {
                    let _ = self.payloads.send(p);
                }
                ConnOutput::Error(e) if e.code() == ErrorCode::WorkerError => *lock(&self.worker_err) = Some(e),
                ConnOutput::Error(e) => tracing::warn!(code = %e.code(), error = %e, "server error"),
                ConnOutput::Closed(e) => {
                    tracing::debug!(url = %self.url, error = %e, "client closed");
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
                    self.conn.call(now, ty, &names, args, reply);
                }
                Target::Indexes(idx) => self.conn.call_indexes(now, ty, idx, args, reply),
                Target::Err(state, message) => self.conn.call_err(now, &state, &message, args, reply),
            },
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
        while self.perform(&mut ws, &mut dialing).await {
            let deadline = self.conn.next_deadline().map(|d| self.start + Duration::from_millis(d));
            let sleep = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
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
                            tracing::debug!(url = %self.url, error = %e, "connect failed");
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
                () = sleep => {
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
