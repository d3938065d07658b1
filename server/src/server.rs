//! The server: workers by name, one WebSocket session per connection (axum), each a thin shell
//! around an `amrpc_core::session::ServerSession`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use amrpc_client::Mirror;
use amrpc_core::session::{
    Mutated, ReplayCache, ServerConfig, ServerOutput, ServerSession, StreamTracer, TransitionLog, WorkerPort,
};
use amrpc_core::states as names;
use amrpc_core::wire::{ErrorMsg, ServerMsg};
use amrpc_core::{ErrorCode, Handlers, Machine, MutationType, Opts, Outcome, Schema, Time, Tracer, Transition, Value};
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast, mpsc, watch};

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
    /// Most concurrent sessions; more connections get HTTP 503. Default: 4096.
    pub max_sessions: usize,
    /// A client that does not read for this long is closed (`Overloaded`). Default: 10 s.
    pub send_timeout: Duration,
    /// Bytes buffered for a slow client before sends wait. Default: 256 KiB.
    pub max_write_buffer: usize,
    /// Allowed client ids (upstream `AllowId`). Default: any.
    pub allow_ids: Option<Vec<String>>,
    /// Token check. Default: none.
    pub auth: Option<AuthHook>,
    /// Allowed browser `Origin`s; requests without an `Origin` header (non-browsers) pass.
    /// Default: any.
    pub allowed_origins: Option<Vec<String>>,
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
            allowed_origins: None,
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
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ServerError {
    /// This error's stable code (the one list, [`ErrorCode`]).
    pub fn code(&self) -> ErrorCode {
        match self {
            ServerError::NotVerified(_) | ServerError::MissingStates { .. } => ErrorCode::StateMissing,
            ServerError::Duplicate(_) => ErrorCode::InvalidArgs,
            ServerError::Machine(e) => e.code(),
            ServerError::Io(_) => ErrorCode::Internal,
        }
    }
}

/// A payload sent by a worker through its `SendPayload` state.
#[derive(Clone, Debug)]
struct PayloadOut {
    name: String,
    source: String,
    data: Vec<u8>,
    destination: Option<String>,
}

/// Tells sessions the worker changed. A local worker signals once per queue drain (a cascade of
/// nested mutations is pushed whole, not half now and half an interval later); a mirror (relay)
/// signals on every applied update, which has no drain.
struct ChangeTracer {
    tx: watch::Sender<u64>,
    per_transition: bool,
}

impl ChangeTracer {
    fn signal(&self) {
        self.tx.send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl Tracer for ChangeTracer {
    fn transition_end(&self, _t: &Transition) {
        if self.per_transition {
            self.signal();
        }
    }
    fn queue_end(&self, _m: &Machine) {
        if !self.per_transition {
            self.signal();
        }
    }
}

/// A served machine needs the worker states (spec §1.5).
fn check_worker_states(machine: &Machine) -> Result<(), ServerError> {
    let missing: Vec<String> = names::WORKER_STATES
        .iter()
        .filter(|s| !machine.has1(s))
        .map(|s| s.to_string())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ServerError::MissingStates {
        worker: machine.id().to_string(),
        missing,
    })
}

/// A machine served to clients: a local machine, or a mirror of a remote worker (a relay: the
/// seed's "remote workers can also have servers attached"). Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    machine: Machine,
    relay: Option<Mirror>,
    changes: watch::Sender<u64>,
    payloads: broadcast::Sender<Arc<PayloadOut>>,
    replay: Arc<ReplayCache>,
    sessions: Arc<AtomicUsize>,
    kick: watch::Sender<u64>,
    live: Arc<std::sync::Mutex<Vec<SessionInfo>>>,
    log: Option<Arc<TransitionLog>>,
}

/// Wall-clock ms since the Unix epoch (a transition's timestamp).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A worker as `GET /api/workers` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerInfo {
    /// The name it is served under (`/ws/{name}`).
    pub name: String,
    /// The machine's id.
    pub id: String,
    /// Sessions open on it.
    pub sessions: usize,
    /// Its schema hash (as in `Welcome`), 16 hex digits.
    pub schema_hash: String,
    /// Number of states.
    pub states: usize,
    /// A mirror of a remote worker.
    pub relay: bool,
    /// It offers the transition stream.
    pub stream: bool,
    /// Sessions reading its transition stream.
    pub inspectors: usize,
}

async fn workers_handler(State(server): State<Server>) -> axum::Json<Vec<WorkerInfo>> {
    axum::Json(server.workers_info())
}

/// A session open on a worker: its client and its state machine (upstream's server states).
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// The session's epoch (unique per server).
    pub epoch: u64,
    /// The client's id, once the handshake is done.
    pub client_id: Option<String>,
    /// `Start`, `RpcReady`, `ClientConnected`, `Handshaking` → `HandshakeDone`, `Ready` (auto).
    pub states: Machine,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("machine", &self.machine)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Serve `machine`: it needs verified states and the worker states (spec §1.5). Tracers
    /// (pushes, and the transition stream's log of `log_capacity` records, 0: none) and a
    /// `SendPayloadState` handler (payloads) are bound to it.
    pub fn new(machine: Machine, replay_instances: usize, log_capacity: usize) -> Result<Worker, ServerError> {
        if !machine.states_verified() {
            return Err(ServerError::NotVerified(machine.id().to_string()));
        }
        check_worker_states(&machine)?;
        let (changes, _) = watch::channel(0u64);
        let (payloads, _) = broadcast::channel(64);
        // bound before the change tracer: a record is in the log when sessions are woken
        let log = (log_capacity > 0).then(|| {
            // distinct per worker and per process start (a restarted worker has a new log)
            static LOGS: AtomicU64 = AtomicU64::new(0);
            let id = (unix_ms() << 16) | (LOGS.fetch_add(1, Ordering::Relaxed) & 0xffff);
            let log = Arc::new(TransitionLog::new(id, log_capacity, unix_ms));
            machine.bind_tracer(Arc::new(StreamTracer(log.clone())));
            log
        });
        machine.bind_tracer(Arc::new(ChangeTracer {
            tx: changes.clone(),
            per_transition: false,
        }));
        let tx = payloads.clone();
        machine.bind_handlers(Handlers::new("amrpc-payloads").state(names::SEND_PAYLOAD, move |e| {
            let m = e.machine();
            m.remove1(names::SEND_PAYLOAD, None);
            let args = e.args();
            let name = args.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let data = match args.get("data") {
                Some(Value::Bytes(b)) => b.clone(),
                Some(Value::Str(s)) => s.as_bytes().to_vec(),
                _ => Vec::new(),
            };
            if name.is_empty() {
                m.add_err_state(names::ERR_SEND_PAYLOAD, "SendPayload needs a name arg", None);
                return;
            }
            let p = PayloadOut {
                name,
                source: args
                    .get("source")
                    .and_then(Value::as_str)
                    .unwrap_or(&m.id())
                    .to_string(),
                data,
                destination: args.get("destination").and_then(Value::as_str).map(str::to_string),
            };
            if tx.send(Arc::new(p)).is_err() {
                tracing::debug!("payload with no connected client dropped");
            }
        }))?;
        Ok(Worker {
            machine,
            relay: None,
            changes,
            payloads,
            replay: Arc::new(ReplayCache::new(replay_instances)),
            sessions: Arc::new(AtomicUsize::new(0)),
            kick: watch::channel(0).0,
            live: Arc::new(std::sync::Mutex::new(Vec::new())),
            log,
        })
    }

    /// Serve a mirror of a remote worker: clients here see its clock (pushed on as the mirror
    /// updates) and their mutations go on to the remote worker. Payloads stop at the first hop,
    /// as upstream.
    pub fn relay(mirror: Mirror, replay_instances: usize) -> Result<Worker, ServerError> {
        let machine = mirror.machine().clone();
        check_worker_states(&machine)?;
        let (changes, _) = watch::channel(0u64);
        let (payloads, _) = broadcast::channel(1);
        machine.bind_tracer(Arc::new(ChangeTracer {
            tx: changes.clone(),
            per_transition: true,
        }));
        Ok(Worker {
            machine,
            relay: Some(mirror),
            changes,
            payloads,
            replay: Arc::new(ReplayCache::new(replay_instances)),
            sessions: Arc::new(AtomicUsize::new(0)),
            kick: watch::channel(0).0,
            live: Arc::new(std::sync::Mutex::new(Vec::new())),
            log: None,
        })
    }

    /// The served machine (for a relay: the mirror's machine).
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// The worker's transition log (none for a relay, or with `transition_log: 0`).
    pub fn transition_log(&self) -> Option<&Arc<TransitionLog>> {
        self.log.as_ref()
    }

    /// Sessions currently open on this worker.
    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// The sessions open right now, with their state machines.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Close every session of this worker (a `Bye` with `ShuttingDown`); clients reconnect.
    pub fn kick(&self) {
        self.kick.send_modify(|v| *v = v.wrapping_add(1));
    }
}

struct Inner {
    workers: RwLock<BTreeMap<String, Worker>>,
    opts: ServerOpts,
    permits: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
    epoch: AtomicU64,
    start: Instant,
}

/// A registry of named workers with its WebSocket router. Cheap to clone.
#[derive(Clone)]
pub struct Server(Arc<Inner>);

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("opts", &self.0.opts)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// An empty server.
    pub fn new(opts: ServerOpts) -> Server {
        let (shutdown, _) = watch::channel(false);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Server(Arc::new(Inner {
            workers: RwLock::new(BTreeMap::new()),
            permits: Arc::new(Semaphore::new(opts.max_sessions)),
            opts,
            shutdown,
            epoch: AtomicU64::new(seed << 16),
            start: Instant::now(),
        }))
    }

    /// Serve `machine` as `/ws/{name}`.
    pub fn add_worker(&self, name: &str, machine: Machine) -> Result<Worker, ServerError> {
        let mut w = self.0.workers.write().unwrap_or_else(|e| e.into_inner());
        if w.contains_key(name) {
            return Err(ServerError::Duplicate(name.to_string()));
        }
        let worker = Worker::new(machine, self.0.opts.replay_instances, self.0.opts.transition_log)?;
        w.insert(name.to_string(), worker.clone());
        Ok(worker)
    }

    /// Serve a mirror of a remote worker as `/ws/{name}` (see [`Worker::relay`]).
    pub fn add_relay(&self, name: &str, mirror: Mirror) -> Result<Worker, ServerError> {
        let mut w = self.0.workers.write().unwrap_or_else(|e| e.into_inner());
        if w.contains_key(name) {
            return Err(ServerError::Duplicate(name.to_string()));
        }
        let worker = Worker::relay(mirror, self.0.opts.replay_instances)?;
        w.insert(name.to_string(), worker.clone());
        Ok(worker)
    }

    /// A registered worker.
    pub fn worker(&self, name: &str) -> Option<Worker> {
        self.0
            .workers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Worker names.
    pub fn worker_names(&self) -> Vec<String> {
        self.0
            .workers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Sessions open right now, over all workers.
    pub fn session_count(&self) -> usize {
        self.0.opts.max_sessions - self.0.permits.available_permits()
    }

    /// The router: `GET /ws/{worker}` upgrades to a session; `GET /api/workers` lists the
    /// workers as JSON ([`WorkerInfo`], for tools such as the inspector's worker picker). Mount
    /// it in your own app, or use [`Server::serve`].
    pub fn router(&self) -> Router {
        Router::new()
            .route("/ws/{worker}", get(ws_handler))
            .route("/api/workers", get(workers_handler))
            .with_state(self.clone())
    }

    /// Every worker with its session count and schema hash, by name.
    pub fn workers_info(&self) -> Vec<WorkerInfo> {
        let workers: Vec<(String, Worker)> = self
            .0
            .workers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, w)| (n.clone(), w.clone()))
            .collect();
        workers
            .into_iter()
            .map(|(name, w)| {
                let hash = amrpc_core::wire::machine_schema_hash(&w.machine);
                WorkerInfo {
                    name,
                    id: w.machine.id().to_string(),
                    sessions: w.session_count(),
                    schema_hash: format!("{hash:016x}"),
                    states: w.machine.state_names().len(),
                    relay: w.relay.is_some(),
                    stream: w.log.is_some(),
                    inspectors: w.log.as_ref().map_or(0, |l| l.subscribers()),
                }
            })
            .collect()
    }

    /// Close every session (each gets a `Bye` with `ShuttingDown`) and stop `serve`.
    pub fn shutdown(&self) {
        self.0.shutdown.send_replace(true);
    }

    /// Serve `router` (e.g. [`Server::router`] plus your own routes) on `listener` until
    /// [`Server::shutdown`].
    pub async fn serve_router(&self, listener: TcpListener, router: Router) -> std::io::Result<()> {
        let mut stop = self.0.shutdown.subscribe();
        use axum::serve::ListenerExt;
        // no Nagle: replies are small frames a client waits for
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY");
            }
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    }

    /// Serve [`Server::router`] on `listener` until [`Server::shutdown`].
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        self.serve_router(listener, self.router()).await
    }

    /// Bind `addr` (port 0 picks one) and serve in a background task; returns the address.
    pub async fn spawn(&self, addr: &str) -> Result<SocketAddr, ServerError> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let srv = self.clone();
        tokio::spawn(async move {
            if let Err(e) = srv.serve(listener).await {
                tracing::error!(error = %e, "server stopped");
            }
        });
        Ok(local)
    }
}

fn reject(status: StatusCode, msg: &str) -> Response {
    tracing::info!(%status, msg, "websocket upgrade rejected");
    (status, msg.to_string()).into_response()
}

async fn ws_handler(
    State(srv): State<Server>,
    Path(worker): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let opts = &srv.0.opts;
    if let (Some(allowed), Some(origin)) = (&opts.allowed_origins, headers.get(header::ORIGIN)) {
        let origin = origin.to_str().unwrap_or("");
        if !allowed.iter().any(|o| o == origin) {
            return reject(StatusCode::FORBIDDEN, "origin not allowed");
        }
    }
    let Some(worker) = srv.worker(&worker) else {
        // a browser cannot read an HTTP status on a failed WebSocket: accept and say why
        let msg = format!("no worker named {worker:?} on this server");
        return ws.on_upgrade(move |mut socket| async move {
            let bye = ServerMsg::Bye(ErrorMsg {
                req: None,
                code: ErrorCode::UnknownWorker,
                message: msg,
            });
            if let Ok(b) = bye.encode() {
                let _ = socket.send(Message::Binary(b.into())).await;
            }
            let _ = socket.close().await;
        });
    };
    let Ok(permit) = srv.0.permits.clone().try_acquire_owned() else {
        return reject(StatusCode::SERVICE_UNAVAILABLE, "too many sessions");
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
    mirror: &'a Mirror,
    done: &'a Forwarded,
}

impl WorkerPort for RelayPort<'_> {
    fn id(&self) -> String {
        WorkerPort::id(self.mirror.machine())
    }
    fn state_names(&self) -> Vec<String> {
        self.mirror.machine().state_names()
    }
    fn schema(&self) -> Schema {
        self.mirror.machine().get_struct()
    }
    fn time(&self) -> Time {
        self.mirror.machine().time(None)
    }
    fn err(&self) -> Option<String> {
        amrpc_core::Api::err(self.mirror).map(|e| e.to_string())
    }
    fn mutate(&self, req: u32, ty: MutationType, states: &[u16], args: amrpc_core::Args, _source: u64) -> Mutated {
        let call = self.mirror.mutate_indexes(ty, states.to_vec(), Some(args));
        let done = self.done.clone();
        tokio::spawn(async move {
            let _ = done.send((req, call.await));
        });
        Mutated::Forwarded
    }
    fn when_args(&self, state: u16, args: amrpc_core::Args) -> Result<amrpc_core::Wait, (ErrorCode, String)> {
        let names = self.mirror.machine().state_names();
        let name = names
            .get(usize::from(state))
            .ok_or_else(|| (ErrorCode::InvalidParams, format!("state index {state} out of range")))?;
        Ok(amrpc_core::Api::when_args(self.mirror, name, args, None))
    }
    fn when_queue(&self, tick: u64) -> amrpc_core::Wait {
        amrpc_core::Api::when_queue(self.mirror, tick, None)
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

/// One session's machine: upstream's server states, observable per connection.
fn session_machine(id: &str) -> Machine {
    let m = Machine::new(
        names::server_schema(),
        Opts {
            id: Some(id.to_string()),
            ..Default::default()
        },
    )
    .expect("the server schema is valid");
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
        ..Default::default()
    };
    let machine = worker.machine.clone();
    // relays run mutations remotely; their outcomes come back here
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let relay = worker.relay.as_ref().map(|mirror| RelayPort { mirror, done: &done_tx });
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
    'session: loop {
        let deadline = sess.next_deadline();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until((start + Duration::from_millis(d)).into()).await,
                None => std::future::pending().await,
            }
        };
        let outputs = tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if relay.is_some() {
                        sess.handle_frame(&b, now_ms(), port)
                    } else {
                        // a local worker's handlers run here and may block: keep the runtime's
                        // other tasks moving
                        run_blocking(|| sess.handle_frame(&b, now_ms(), port))
                    }
                }
                Some(Ok(Message::Text(_))) => sess.shutdown(ErrorCode::Malformed, "text frames are not part of the protocol"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
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
            () = sleep => sess.poll(now_ms(), port),
            // a remote wait completed (on the worker's thread): signal it
            () = waits.0.notified() => sess.poll(now_ms(), port),
            Some((req, res)) = done_rx.recv() => match res {
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
