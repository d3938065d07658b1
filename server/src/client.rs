//! The native client: a tokio-tungstenite connection shell around
//! `amrpc_core::session::ClientSession`, with connection and call retries, and a [`Mirror`]
//! that implements [`Api`] — local getters and waits on the mirrored clock, remote mutations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amrpc_core::session::{ClientConfig, ClientOutput, ClientSession};
use amrpc_core::wire::{ErrorCode, Payload};
use amrpc_core::{
    Api, Args, BoxFuture, Clock, Ctx, EXCEPTION, Error, Machine, MutationType, Opts, Outcome, Schema, Serialized, Time,
    Value, Wait, WaitError,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::states::{self, names};

/// Client settings; defaults follow upstream v0.8.0 where it has one.
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
    /// Connection attempts before giving up (per outage). Default: 15.
    pub conn_retries: u32,
    /// First delay between attempts; doubles up to `conn_retry_backoff`. Default: 100 ms.
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
        ClientOpts {
            client_id: "rc-client".into(),
            token: None,
            schema_hash: None,
            push_interval_ms: None,
            states: None,
            conn_timeout: Duration::from_secs(3),
            conn_retries: 15,
            conn_retry_delay: Duration::from_millis(100),
            conn_retry_backoff: Duration::from_secs(3),
            call_timeout: Duration::from_secs(3),
            call_retries: 15,
            reconnect: true,
            max_frame: 16 << 20,
        }
    }
}

/// Why a client could not connect or stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server refused the session for good (access, token, version, schema).
    #[error("rejected by the server ({code:?}): {message}")]
    Rejected {
        /// Stable code.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
    /// Every connection attempt failed.
    #[error("gave up after {attempts} connection attempts: {last}")]
    ConnRetryFailed {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The client was closed.
    #[error("client closed")]
    Closed,
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Error {
        match e {
            ClientError::Rejected { code, message } => Error::Rpc { code, message },
            ClientError::Closed => Error::Disposed,
            other => Error::Other(other.to_string()),
        }
    }
}

enum Cmd {
    Mutate {
        ty: MutationType,
        states: Vec<String>,
        args: Option<Args>,
        reply: oneshot::Sender<Result<Outcome, Error>>,
    },
    Close(oneshot::Sender<()>),
}

struct Waiter {
    reply: oneshot::Sender<Result<Outcome, Error>>,
}

/// Milliseconds since the client's first use (the session's clock for call timeouts).
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
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

/// A remote worker mirrored locally: getters, waits and state contexts answer from the mirrored
/// clock; mutations go to the worker and return after its reply (and clock change) is applied.
#[derive(Clone)]
pub struct Mirror {
    machine: Machine,
    cmd: mpsc::UnboundedSender<Cmd>,
    /// The last error this mirror added (`add_err`).
    err: Arc<Mutex<Option<Error>>>,
    /// The worker's last error, as its server reported it.
    worker_err: Arc<Mutex<Option<Error>>>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mirror({:?})", self.machine)
    }
}

impl Client {
    /// Connect to `url` (e.g. `ws://127.0.0.1:8080/ws/demo`) and wait for the handshake.
    /// Connection failures are retried per `opts`; rejections are final.
    pub async fn connect(url: &str, opts: ClientOpts) -> Result<Client, ClientError> {
        let states = Machine::new(
            states::client_schema(),
            Opts {
                id: Some(opts.client_id.clone()),
                ..Default::default()
            },
        )
        .expect("the client schema is valid");
        states.add1(names::START, None);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (payloads, _) = broadcast::channel(256);
        let worker_err = Arc::new(Mutex::new(None));
        let task = Task {
            worker_err: worker_err.clone(),
            attempts: 0,
            delay: opts.conn_retry_delay,
            url: url.to_string(),
            session: ClientSession::new(ClientConfig {
                client_id: opts.client_id.clone(),
                instance: random_u64(),
                token: opts.token.clone(),
                schema_hash: opts.schema_hash,
                push_interval_ms: opts.push_interval_ms,
                states: opts.states.clone(),
                max_frame: opts.max_frame,
                ..Default::default()
            }),
            opts,
            states: states.clone(),
            cmd: cmd_rx,
            ready: Some(ready_tx),
            payloads: payloads.clone(),
            waiters: HashMap::new(),
        };
        tokio::spawn(task.run());
        let machine = ready_rx.await.map_err(|_| ClientError::Closed)??;
        Ok(Client {
            states,
            mirror: Mirror {
                machine,
                cmd: cmd_tx,
                err: Arc::new(Mutex::new(None)),
                worker_err,
            },
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
        if self.mirror.cmd.send(Cmd::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

use amrpc_core::session::final_code as fatal;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Task {
    url: String,
    opts: ClientOpts,
    session: ClientSession,
    states: Machine,
    cmd: mpsc::UnboundedReceiver<Cmd>,
    ready: Option<oneshot::Sender<Result<Machine, ClientError>>>,
    payloads: broadcast::Sender<Payload>,
    waiters: HashMap<u32, Waiter>,
    worker_err: Arc<Mutex<Option<Error>>>,
    attempts: u32,
    delay: Duration,
}

enum End {
    Reconnect,
    Stop,
}

impl Task {
    fn fail_all(&mut self, e: &Error) {
        for (req, w) in self.waiters.drain() {
            self.session.forget(req);
            let _ = w.reply.send(Err(e.clone()));
        }
    }

    async fn run(mut self) {
        loop {
            self.states.add1(names::CONNECTING, None);
            // no Nagle: a mutation is one small frame and waits for its reply
            let dial = tokio::time::timeout(
                self.opts.conn_timeout,
                tokio_tungstenite::connect_async_with_config(
                    &self.url,
                    Some(
                        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4 << 10),
                    ),
                    true,
                ),
            )
            .await;
            let ws = match dial {
                Ok(Ok((ws, _))) => ws,
                Ok(Err(e)) => {
                    if self.backoff(e.to_string()).await.is_some() {
                        return;
                    }
                    continue;
                }
                Err(_) => {
                    if self.backoff("dial timed out".into()).await.is_some() {
                        return;
                    }
                    continue;
                }
            };
            self.states.add1(names::CONNECTED, None);
            match self.connection(ws).await {
                End::Stop => return,
                End::Reconnect => {
                    self.session.disconnected();
                    self.states.add1(names::DISCONNECTED, None);
                    if !self.opts.reconnect {
                        self.fail_all(&Error::Disposed);
                        if let Some(r) = self.ready.take() {
                            let _ = r.send(Err(ClientError::Closed));
                        }
                        return;
                    }
                    // a connection that drops before (or soon after) its handshake counts as a
                    // failed attempt: back off, and give up after `conn_retries`
                    if self.backoff("connection lost".into()).await.is_some() {
                        return;
                    }
                }
            }
        }
    }

    /// A failed or lost connection: wait (backoff) and retry, or give up (returns `Some(())` to
    /// stop). Attempts reset when a handshake completes.
    async fn backoff(&mut self, err: String) -> Option<()> {
        self.attempts += 1;
        let attempts = self.attempts;
        tracing::debug!(url = %self.url, attempt = attempts, error = %err, "connect failed");
        self.states.add1(names::DISCONNECTED, None);
        if attempts > self.opts.conn_retries || (!self.opts.reconnect && self.ready.is_none()) {
            self.states.add1(names::CONN_RETRY_FAILED, None);
            let e = ClientError::ConnRetryFailed { attempts, last: err };
            self.fail_all(&Error::from(e.clone()));
            if let Some(r) = self.ready.take() {
                let _ = r.send(Err(e));
            }
            return Some(());
        }
        self.states.add1(names::RETRYING_CONN, None);
        // keep serving commands while waiting: new calls queue until the next connection
        let sleep = tokio::time::sleep(self.delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                c = self.cmd.recv() => match c {
                    Some(Cmd::Mutate { ty, states, args, reply }) => {
                        // not connected: the frame stays pending and goes out after the handshake
                        let _ = self.queue_call(ty, states, args, reply);
                    }
                    Some(Cmd::Close(done)) => {
                        self.fail_all(&Error::Disposed);
                        let _ = done.send(());
                        return Some(());
                    }
                    None => return Some(()),
                },
            }
        }
        self.delay = (self.delay * 2).min(self.opts.conn_retry_backoff.max(self.opts.conn_retry_delay));
        None
    }

    /// Encode a call; returns its frame when it should go out now.
    fn queue_call(
        &mut self,
        ty: MutationType,
        states: Vec<String>,
        args: Option<Args>,
        reply: oneshot::Sender<Result<Outcome, Error>>,
    ) -> Option<Vec<u8>> {
        let names: Vec<&str> = states.iter().map(String::as_str).collect();
        match self.session.mutate(ty, &names, args) {
            Ok((req, frame)) => {
                self.waiters.insert(req, Waiter { reply });
                self.session.sent(req, now_ms());
                self.session.is_ready().then_some(frame)
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                None
            }
        }
    }

    async fn connection(&mut self, ws: Ws) -> End {
        let (mut tx, mut rx) = ws.split();
        let hello = self.session.hello();
        if tx.send(Message::Binary(hello.into())).await.is_err() {
            return End::Reconnect;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut out: Vec<Vec<u8>> = Vec::new();
            tokio::select! {
                m = rx.next() => match m {
                    Some(Ok(Message::Binary(b))) => {
                        for o in self.session.handle_frame(&b) {
                            match self.output(o, &mut out) {
                                Some(End::Stop) => {
                                    let _ = tx.close().await;
                                    return End::Stop;
                                }
                                Some(End::Reconnect) => return End::Reconnect,
                                None => {}
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return End::Reconnect,
                    Some(Ok(_)) => {}
                },
                c = self.cmd.recv() => match c {
                    Some(Cmd::Mutate { ty, states, args, reply }) => {
                        if let Some(f) = self.queue_call(ty, states, args, reply) {
                            out.push(f);
                        }
                    }
                    Some(Cmd::Close(done)) => {
                        let bye = self.session.bye();
                        let _ = tx.send(Message::Binary(bye.into())).await;
                        let _ = tx.close().await;
                        self.fail_all(&Error::Disposed);
                        self.states.remove1(names::START, None);
                        let _ = done.send(());
                        return End::Stop;
                    }
                    None => {
                        let bye = self.session.bye();
                        let _ = tx.send(Message::Binary(bye.into())).await;
                        let _ = tx.close().await;
                        return End::Stop;
                    }
                },
                _ = tick.tick() => self.check_timeouts(&mut out),
            }
            for f in out {
                if tx.send(Message::Binary(f.into())).await.is_err() {
                    return End::Reconnect;
                }
            }
        }
    }

    fn check_timeouts(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.session.call_timeouts(
            now_ms(),
            self.opts.call_timeout.as_millis() as u64,
            self.opts.call_retries,
        );
        if !t.resend.is_empty() {
            self.states.add1(names::RETRYING_CALL, None);
            out.extend(t.resend);
        }
        for req in t.expired {
            if let Some(w) = self.waiters.remove(&req) {
                self.states.add1(names::CALL_RETRY_FAILED, None);
                let _ = w.reply.send(Err(Error::Timeout));
            }
        }
    }

    fn output(&mut self, o: ClientOutput, out: &mut Vec<Vec<u8>>) -> Option<End> {
        match o {
            ClientOutput::Send(b) => out.push(b),
            ClientOutput::Ready => {
                self.attempts = 0;
                self.delay = self.opts.conn_retry_delay;
                if let Some(msg) = self.session.worker_err() {
                    *self.worker_err.lock().unwrap_or_else(|p| p.into_inner()) = Some(Error::Rpc {
                        code: ErrorCode::WorkerError,
                        message: msg.to_string(),
                    });
                }
                self.states.add1(names::HANDSHAKE_DONE, None);
                self.states.remove1(names::RETRYING_CONN, None);
                if let Some(r) = self.ready.take() {
                    if let Some(m) = self.session.mirror() {
                        let _ = r.send(Ok(m.clone()));
                    }
                }
                // calls sent before the cut, or queued while disconnected: (re)send; the server's
                // replay cache runs each at most once
                out.extend(self.session.resend_pending(now_ms()));
            }
            ClientOutput::Reply { req, result } => {
                if self.waiters.is_empty() || self.states.is1(names::RETRYING_CALL) {
                    self.states.remove1(names::RETRYING_CALL, None);
                }
                if let Some(w) = self.waiters.remove(&req) {
                    let r = result.map_err(|e| Error::Rpc {
                        code: e.code,
                        message: e.message,
                    });
                    let _ = w.reply.send(r);
                }
            }
            ClientOutput::Synced => tracing::debug!("mirror resynced"),
            ClientOutput::Payload(p) => {
                let args = Args::new()
                    .with("name", p.name.as_str())
                    .with("source", p.source.as_str());
                self.states.add1(names::WORKER_PAYLOAD, Some(args));
                let _ = self.payloads.send(p);
            }
            ClientOutput::Error(e) if e.code == ErrorCode::WorkerError => {
                *self.worker_err.lock().unwrap_or_else(|p| p.into_inner()) = Some(Error::Rpc {
                    code: e.code,
                    message: e.message,
                });
            }
            ClientOutput::Error(e) => {
                tracing::warn!(code = ?e.code, message = %e.message, "server error");
                self.states.add_err_state(names::ERR_RPC, e.to_string(), None);
            }
            ClientOutput::Closed(e) => {
                if fatal(e.code) {
                    let err = ClientError::Rejected {
                        code: e.code,
                        message: e.message.clone(),
                    };
                    self.states.add1(names::CONN_RETRY_FAILED, None);
                    self.fail_all(&Error::from(err.clone()));
                    if let Some(r) = self.ready.take() {
                        let _ = r.send(Err(err));
                    }
                    return Some(End::Stop);
                }
                tracing::info!(code = ?e.code, message = %e.message, "server closed the session");
                return Some(End::Reconnect);
            }
        }
        None
    }
}

fn ready_err<'a>(e: Error) -> BoxFuture<'a, Result<Outcome, Error>> {
    Box::pin(std::future::ready(Err(e)))
}

impl Mirror {
    /// The local machine that mirrors the worker (read-only: mutate through the mirror).
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    fn call<'a>(
        &'a self,
        ty: MutationType,
        states: &[&str],
        args: Option<Args>,
    ) -> BoxFuture<'a, Result<Outcome, Error>> {
        if let Some(s) = states.iter().find(|s| !self.machine.has1(s)) {
            return ready_err(Error::StateUnknown((*s).to_string()));
        }
        let (tx, rx) = oneshot::channel();
        let cmd = Cmd::Mutate {
            ty,
            states: states.iter().map(|s| s.to_string()).collect(),
            args,
            reply: tx,
        };
        if self.cmd.send(cmd).is_err() {
            return ready_err(Error::Disposed);
        }
        Box::pin(async move { rx.await.unwrap_or(Err(Error::Disposed)) })
    }
}

impl Api for Mirror {
    fn add<'a>(&'a self, states: &[&str], args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>> {
        self.call(MutationType::Add, states, args)
    }
    fn remove<'a>(&'a self, states: &[&str], args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>> {
        self.call(MutationType::Remove, states, args)
    }
    fn set<'a>(&'a self, states: &[&str], args: Option<Args>) -> BoxFuture<'a, Result<Outcome, Error>> {
        self.call(MutationType::Set, states, args)
    }
    fn add_err_state<'a>(
        &'a self,
        state: &str,
        err: Error,
        args: Option<Args>,
    ) -> BoxFuture<'a, Result<Outcome, Error>> {
        let mut args = args.unwrap_or_default();
        args.insert("err", Value::Str(err.to_string()));
        *self.err.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
        let mut states = vec![state, EXCEPTION];
        if self.machine.has1(names::ERR_ON_CLIENT) {
            states.push(names::ERR_ON_CLIENT);
        }
        self.call(MutationType::Add, &states, Some(args))
    }
    fn when_args(&self, _state: &str, _args: Args, _ctx: Option<&Ctx>) -> Wait {
        Wait::ready(Err(WaitError::InvalidArgs(
            "when_args is not available on a mirror yet".into(),
        )))
    }
    /// The worker's last error (upstream `Err()`), or, before the worker reported one, the last
    /// error this mirror added.
    fn err(&self) -> Option<Error> {
        let w = self.worker_err.lock().unwrap_or_else(|e| e.into_inner()).clone();
        w.or_else(|| self.err.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
    fn is(&self, states: &[&str]) -> bool {
        self.machine.is(states)
    }
    fn not(&self, states: &[&str]) -> Result<bool, Error> {
        self.machine.try_not(states)
    }
    fn has(&self, states: &[&str]) -> bool {
        self.machine.has(states)
    }
    fn is_time(&self, time: &[u64], states: Option<&[&str]>) -> bool {
        self.machine.is_time(time, states)
    }
    fn is_clock(&self, clock: &Clock) -> bool {
        self.machine.is_clock(clock)
    }
    fn when(&self, states: &[&str], ctx: Option<&Ctx>) -> Wait {
        self.machine.when(states, ctx)
    }
    fn when_not(&self, states: &[&str], ctx: Option<&Ctx>) -> Wait {
        Api::when_not(&self.machine, states, ctx)
    }
    fn when_time(&self, states: &[&str], times: &[u64], ctx: Option<&Ctx>) -> Wait {
        Api::when_time(&self.machine, states, times, ctx)
    }
    fn state_names(&self) -> Vec<String> {
        self.machine.state_names()
    }
    fn active_states(&self) -> Vec<String> {
        self.machine.active_states()
    }
    fn tick(&self, state: &str) -> u64 {
        self.machine.tick(state)
    }
    fn clock(&self, states: Option<&[&str]>) -> Clock {
        self.machine.clock(states)
    }
    fn time(&self, states: Option<&[&str]>) -> Time {
        self.machine.time(states)
    }
    fn new_state_ctx(&self, state: &str) -> Result<Ctx, Error> {
        self.machine.try_new_state_ctx(state)
    }
    fn export(&self) -> Result<Serialized, Error> {
        self.machine.export()
    }
    fn get_struct(&self) -> Schema {
        self.machine.get_struct()
    }
    fn switch<'s>(&self, groups: &[&[&'s str]]) -> Option<&'s str> {
        self.machine.switch(groups)
    }
    fn index(&self, state: &str) -> Option<usize> {
        self.machine.index(state)
    }
    fn string(&self) -> String {
        self.machine.string()
    }
    fn string_all(&self) -> String {
        self.machine.string_all()
    }
    fn inspect(&self, states: Option<&[&str]>) -> String {
        self.machine.inspect(states)
    }
    fn id(&self) -> Arc<str> {
        self.machine.id()
    }
    fn parent_id(&self) -> Option<&str> {
        self.machine.parent_id()
    }
    fn ctx(&self) -> Ctx {
        self.machine.ctx()
    }
    fn log(&self, msg: &str) {
        self.machine.log(msg)
    }
    fn states_verified(&self) -> bool {
        true
    }
    fn dispose(&self) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.cmd.send(Cmd::Close(tx));
        self.machine.dispose();
    }
    fn when_disposed(&self) -> Wait {
        self.machine.when_disposed()
    }
    fn is_disposed(&self) -> bool {
        self.machine.is_disposed()
    }
}
