//! The client's connection lifecycle, sans IO, in the style of quinn-proto's `Connection`: the
//! shell reports what its socket did (`opened`, `frame`, `socket_closed`, `dial_failed`), feeds
//! calls in and the time (`now_ms`) on every input and at [`Connection::next_deadline`], and
//! performs what comes out of [`Connection::poll_output`]: dial, send, close the socket, resolve
//! a call, emit an event. Backoff with jitter (from a seed), give-up rules, call timeouts and
//! resends, the client's observable states (upstream's client schema) and the per-call
//! completions all live here once, for the native and the browser client alike.
//!
//! `T` is the shell's completion for one call (a oneshot sender, a promise's resolver): the
//! driver keeps it with the request and hands it back with the result, so shells keep no maps.

use alloc::collections::VecDeque;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use litemap::LiteMap;

use crate::error::ErrorCode;
use crate::machine::{CompiledSchema, Machine, Opts};
use crate::session::client::{ClientConfig, ClientOutput, ClientSession};
use crate::states as ss;
use crate::types::{Args, Error, MutationType, Outcome};
use crate::why::Why;
use crate::wire::Payload;

/// Connection settings. Defaults follow upstream v0.8.0 where it has one.
#[derive(Clone, Debug)]
pub struct ConnConfig {
    /// The protocol session's settings (client id, token, schema hash, limits …).
    pub session: ClientConfig,
    /// A dial (socket open + nothing else) that takes longer fails. Default: 3 s.
    pub conn_timeout_ms: u64,
    /// Failed connection attempts in a row before giving up. Default: 15.
    pub conn_retries: u32,
    /// First delay between attempts; doubles up to `retry_backoff_ms`, each delay jittered to
    /// [½, 1½) of itself. Default: 100 ms.
    pub retry_delay_ms: u64,
    /// Cap of the reconnect delay. Default: 3 s.
    pub retry_backoff_ms: u64,
    /// A call without a reply for this long is resent (same request id: it runs at most once).
    /// Default: 3 s.
    pub call_timeout_ms: u64,
    /// Resends before a call fails with `Timeout`. Default: 15.
    pub call_retries: u32,
    /// Reconnect after an established connection drops. Default: true.
    pub reconnect: bool,
    /// Seed of the backoff jitter (pass a random value; tests pass a fixed one).
    pub seed: u64,
    /// How many endpoints (server URLs of the same worker, e.g. its edge servers) the shell can
    /// dial. After a failed attempt or a lost connection the next one is dialed, round robin
    /// ([`Connection::endpoint`]), so a client fails over between them; calls in flight are
    /// resent there when the new server announces the same replay id. Default: 1.
    pub endpoints: u16,
}

impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            session: ClientConfig::default(),
            conn_timeout_ms: 3_000,
            conn_retries: 15,
            retry_delay_ms: 100,
            retry_backoff_ms: 3_000,
            call_timeout_ms: 3_000,
            call_retries: 15,
            reconnect: true,
            seed: 0,
            endpoints: 1,
        }
    }
}

/// The connection's status, as JS `status` events report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Dialing.
    Connecting,
    /// The socket is open; the handshake runs.
    Open,
    /// The handshake is done: the mirror follows the worker.
    Ready,
    /// No connection; a reconnect is scheduled.
    Disconnected,
    /// Over for good.
    Closed,
}

impl Status {
    /// The status's name in JS.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Open => "open",
            Status::Ready => "ready",
            Status::Disconnected => "disconnected",
            Status::Closed => "closed",
        }
    }
}

/// What the shell does next, in order.
#[derive(Debug)]
pub enum ConnOutput<T> {
    /// Open a socket to endpoint [`Connection::endpoint`] (report `opened`, `dial_failed` or
    /// `socket_closed`).
    Dial,
    /// Send this frame on the open socket.
    Send(Vec<u8>),
    /// Drop the socket (frames emitted before this were meant to go out first).
    CloseSocket,
    /// The status changed.
    Status(Status),
    /// A handshake completed (the first one makes [`Connection::mirror`] available).
    Ready,
    /// A call finished: resolve its completion (with why, for a canceled mutation).
    Done(T, Result<Outcome, Error>, Option<Why>),
    /// The mirror's clock changed (once per frame).
    Changed,
    /// A payload from the worker.
    Payload(Payload),
    /// One transition of the worker (with [`ClientConfig::stream`]).
    Transition(alloc::boxed::Box<crate::wire::TransitionMsg>),
    /// Transitions the server did not send (this client fell behind); `next` is the next `seq`.
    Dropped {
        /// How many.
        n: u64,
        /// The next `seq`.
        next: u64,
    },
    /// An error not tied to a call (a worker error, a server error, a recoverable goodbye).
    Error(Error),
    /// The connection is over for good; every call was resolved with this error.
    Closed(Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Idle,
    Dialing { deadline: u64 },
    Open,
    Waiting { until: u64 },
    Closed,
}

/// The client side of one logical connection across reconnects. See the module docs.
pub struct Connection<T> {
    cfg: ConnConfig,
    session: ClientSession,
    states: Machine,
    link: Link,
    attempts: u32,
    /// The endpoint dialed next (or now), below `cfg.endpoints`.
    endpoint: u16,
    delay_ms: u64,
    /// When the current socket opened (the `Welcome` deadline counts from it).
    opened_at: u64,
    /// When the server was last heard from on the current socket (any frame), or when a call
    /// started waiting after a quiet spell: the start of the silence that presumes a link dead.
    heard_at: u64,
    rng: u64,
    calls: LiteMap<u32, T>,
    /// Remote waits: request id → the shell's key for it (completions are in `calls`).
    waits: LiteMap<u32, u64>,
    /// Explicit syncs waiting for the full clock.
    syncs: Vec<T>,
    out: VecDeque<ConnOutput<T>>,
    last_status: Option<Status>,
}

impl<T> core::fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("link", &self.link)
            .field("attempts", &self.attempts)
            .field("calls", &self.calls.len())
            .finish_non_exhaustive()
    }
}

/// splitmix64: a tiny, well-distributed generator for jitter (not for secrets).
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<T> Connection<T> {
    /// A connection that has not dialed yet; call [`Connection::start`].
    pub fn new(cfg: ConnConfig) -> Connection<T> {
        // every connection of the process shares one compiled client schema
        let schema = CompiledSchema::shared(ss::client_schema(), None).expect("the client schema is valid");
        let states = Machine::with_schema(
            &schema,
            Opts {
                id: Some(cfg.session.client_id.clone()),
                ..Default::default()
            },
        );
        states.add1(ss::START, None);
        Connection {
            session: ClientSession::new(cfg.session.clone()),
            delay_ms: cfg.retry_delay_ms,
            rng: cfg.seed,
            cfg,
            states,
            link: Link::Idle,
            attempts: 0,
            endpoint: 0,
            opened_at: 0,
            heard_at: 0,
            calls: LiteMap::new(),
            waits: LiteMap::new(),
            syncs: Vec::new(),
            out: VecDeque::new(),
            last_status: None,
        }
    }

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<ConnOutput<T>> {
        self.out.pop_front()
    }

    /// When to call [`Connection::tick`] next (ms), if anything is scheduled.
    pub fn next_deadline(&self) -> Option<u64> {
        match self.link {
            Link::Dialing { deadline } => Some(deadline),
            Link::Waiting { until } => Some(until),
            Link::Open if !self.session.is_ready() => Some(self.welcome_deadline()),
            Link::Open => self.session.next_call_deadline(self.cfg.call_timeout_ms),
            Link::Idle | Link::Closed => None,
        }
    }

    /// A socket that opened gets its `Welcome` within the dial timeout, or is dropped (a lost
    /// `Hello` or `Welcome` would otherwise wait forever).
    fn welcome_deadline(&self) -> u64 {
        self.opened_at.saturating_add(self.cfg.conn_timeout_ms.max(1))
    }

    /// The mirror, once a handshake has completed.
    pub fn mirror(&self) -> Option<&Machine> {
        self.session.mirror()
    }

    /// The client's own states (upstream's client schema: `Connecting`, `Connected`,
    /// `HandshakeDone`, `Ready`, `RetryingConn`, `RetryingCall`, `ConnRetryFailed` …).
    pub fn states(&self) -> &Machine {
        &self.states
    }

    /// The protocol session (sequence, resyncs, held replies …).
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// The worker's last error, as its server reported it.
    pub fn worker_err(&self) -> Option<&str> {
        self.session.worker_err()
    }

    /// When the next reconnect attempt is due (the shell's ms clock), while one is scheduled:
    /// what a page shows as the reconnect countdown.
    pub fn retry_at(&self) -> Option<u64> {
        match self.link {
            Link::Waiting { until } => Some(until),
            _ => None,
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        match self.link {
            Link::Closed => Status::Closed,
            Link::Open if self.session.is_ready() => Status::Ready,
            Link::Open => Status::Open,
            Link::Dialing { .. } | Link::Idle => Status::Connecting,
            Link::Waiting { .. } => Status::Disconnected,
        }
    }

    /// True once closed for good.
    pub fn is_closed(&self) -> bool {
        self.link == Link::Closed
    }

    /// Calls (and syncs) waiting for their result.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.len() + self.syncs.len()
    }

    /// The endpoint to dial on [`ConnOutput::Dial`] (an index below [`ConnConfig::endpoints`]).
    pub fn endpoint(&self) -> u16 {
        self.endpoint
    }

    /// Start: dial for the first time.
    pub fn start(&mut self, now_ms: u64) {
        if self.link == Link::Idle {
            self.dial(now_ms);
        }
    }

    fn dial(&mut self, now_ms: u64) {
        self.states.add1(ss::CONNECTING, None);
        self.link = Link::Dialing {
            deadline: now_ms.saturating_add(self.cfg.conn_timeout_ms),
        };
        self.out.push_back(ConnOutput::Dial);
        self.set_status(Status::Connecting);
    }

    /// The socket asked for by [`ConnOutput::Dial`] is open: the handshake starts.
    pub fn opened(&mut self, now_ms: u64) {
        if !matches!(self.link, Link::Dialing { .. }) {
            return;
        }
        self.link = Link::Open;
        self.opened_at = now_ms;
        self.heard_at = now_ms;
        self.states.add1(ss::CONNECTED, None);
        let hello = self.session.hello();
        self.out.push_back(ConnOutput::Send(hello));
        self.set_status(Status::Open);
    }

    /// The dial failed. A failure with a final code (a malformed URL, no WebSocket
    /// implementation) closes at once; any other is retried with backoff.
    pub fn dial_failed(&mut self, now_ms: u64, message: &str, code: Option<ErrorCode>) {
        if !matches!(self.link, Link::Dialing { .. }) {
            return;
        }
        if let Some(code) = code.filter(|c| c.is_final()) {
            self.out.push_back(ConnOutput::CloseSocket);
            self.give_up(Error::Rpc {
                code,
                message: message.to_string(),
            });
            return;
        }
        self.out.push_back(ConnOutput::CloseSocket);
        self.lost(now_ms, message);
    }

    /// The socket closed (or failed) by itself.
    pub fn socket_closed(&mut self, now_ms: u64) {
        match self.link {
            Link::Dialing { .. } => self.lost(now_ms, "the connection closed while connecting"),
            Link::Open => self.lost(now_ms, "connection lost"),
            _ => {}
        }
    }

    /// The browser came back online or the page became visible: if a reconnect is scheduled,
    /// dial now instead of at the end of the backoff.
    pub fn wake(&mut self, now_ms: u64) {
        if matches!(self.link, Link::Waiting { .. }) {
            self.dial(now_ms);
        }
    }

    /// A connection was lost or an attempt failed: back off and retry, or give up.
    fn lost(&mut self, now_ms: u64, why: &str) {
        for req in self.session.disconnected() {
            self.waits.remove(&req);
            if let Some(done) = self.calls.remove(&req) {
                let e = Error::Rpc {
                    code: ErrorCode::Disconnected,
                    message: alloc::format!("{why}: the remote wait is gone with the session"),
                };
                self.out.push_back(ConnOutput::Done(done, Err(e), None));
            }
        }
        self.states.add1(ss::DISCONNECTED, None);
        let handshaken = self.session.mirror().is_some();
        if !self.cfg.reconnect && handshaken {
            self.give_up(Error::Rpc {
                code: ErrorCode::Closed,
                message: alloc::format!("{why} (reconnect is off)"),
            });
            return;
        }
        // a connection that drops before (or right after) its handshake counts as a failed
        // attempt; attempts reset when a handshake completes
        self.attempts += 1;
        if self.attempts > self.cfg.conn_retries {
            self.states.add1(ss::CONN_RETRY_FAILED, None);
            let e = Error::ConnRetryFailed {
                attempts: self.attempts,
                last: why.to_string(),
            };
            self.give_up(e);
            return;
        }
        self.states.add1(ss::RETRYING_CONN, None);
        // fail over: the next attempt goes to the next endpoint
        self.endpoint = (self.endpoint + 1) % self.cfg.endpoints.max(1);
        let d = self.delay_ms.max(1);
        let jittered = d / 2 + next_random(&mut self.rng) % d;
        self.delay_ms = (d * 2).min(self.cfg.retry_backoff_ms.max(self.cfg.retry_delay_ms));
        self.link = Link::Waiting {
            until: now_ms.saturating_add(jittered),
        };
        self.set_status(Status::Disconnected);
    }

    fn set_status(&mut self, s: Status) {
        if self.last_status != Some(s) {
            self.last_status = Some(s);
            self.out.push_back(ConnOutput::Status(s));
        }
    }

    /// The time passed: dial timeouts, scheduled reconnects, call timeouts and resends.
    pub fn tick(&mut self, now_ms: u64) {
        match self.link {
            Link::Dialing { deadline } if now_ms >= deadline => {
                self.out.push_back(ConnOutput::CloseSocket);
                self.lost(now_ms, "dial timed out");
            }
            Link::Waiting { until } if now_ms >= until => self.dial(now_ms),
            Link::Open if !self.session.is_ready() && now_ms >= self.welcome_deadline() => {
                self.out.push_back(ConnOutput::CloseSocket);
                self.lost(now_ms, "no Welcome within the dial timeout");
            }
            Link::Open if !self.session.is_ready() => {}
            Link::Open => {
                let t = self
                    .session
                    .call_timeouts(now_ms, self.cfg.call_timeout_ms, self.cfg.call_retries);
                if !t.resend.is_empty() {
                    self.states.add1(ss::RETRYING_CALL, None);
                    self.out.extend(t.resend.into_iter().map(ConnOutput::Send));
                }
                let expired = !t.expired.is_empty();
                for req in t.expired {
                    if let Some(done) = self.calls.remove(&req) {
                        self.states.add1(ss::CALL_RETRY_FAILED, None);
                        self.out.push_back(ConnOutput::Done(done, Err(Error::Timeout), None));
                    }
                }
                // A call ran out of resends and the server said nothing at all meanwhile: the
                // connection is presumed dead (half-open: our frames go nowhere, nothing comes
                // back), so replace it; later calls go out on the new one. A live but slow
                // server keeps the connection, as upstream's retries expect (a reply, a push or
                // any frame resets the silence).
                let silent = now_ms.saturating_sub(self.heard_at);
                let waited = self
                    .cfg
                    .call_timeout_ms
                    .saturating_mul(u64::from(self.cfg.call_retries) + 1);
                if expired && silent >= waited {
                    self.out.push_back(ConnOutput::CloseSocket);
                    self.lost(now_ms, "no answer from the server: the connection is presumed dead");
                }
            }
            _ => {}
        }
    }

    /// A frame from the server.
    pub fn frame(&mut self, now_ms: u64, bytes: &[u8]) {
        if self.link != Link::Open {
            return;
        }
        self.heard_at = self.heard_at.max(now_ms);
        for o in self.session.handle_frame(bytes) {
            match o {
                ClientOutput::Send(f) => self.out.push_back(ConnOutput::Send(f)),
                ClientOutput::Ready => {
                    self.attempts = 0;
                    self.delay_ms = self.cfg.retry_delay_ms;
                    self.states.add1(ss::HANDSHAKE_DONE, None);
                    self.states.remove1(ss::RETRYING_CONN, None);
                    self.out.push_back(ConnOutput::Ready);
                    self.set_status(Status::Ready);
                    // calls sent before a cut or made while disconnected: (re)send; the
                    // server's replay cache runs each at most once
                    let frames = self.session.resend_pending(now_ms);
                    self.out.extend(frames.into_iter().map(ConnOutput::Send));
                    // a Welcome carries the full clock: what a sync cut short by the outage asked for
                    self.finish_syncs();
                }
                ClientOutput::Reply { req, result, why } => {
                    // a reply ends a retry episode (checked first: a remove is a transition)
                    if self.states.is1(ss::RETRYING_CALL) {
                        self.states.remove1(ss::RETRYING_CALL, None);
                    }
                    self.waits.remove(&req);
                    if let Some(done) = self.calls.remove(&req) {
                        self.out.push_back(ConnOutput::Done(done, result, why));
                    }
                }
                ClientOutput::Synced => self.finish_syncs(),
                ClientOutput::Transition(t) => self.out.push_back(ConnOutput::Transition(t)),
                ClientOutput::Dropped { n, next } => self.out.push_back(ConnOutput::Dropped { n, next }),
                ClientOutput::Changed => self.out.push_back(ConnOutput::Changed),
                ClientOutput::Payload(p) => {
                    let args = Args::new()
                        .with("name", p.name.as_str())
                        .with("source", p.source.as_str());
                    self.states.add1(ss::WORKER_PAYLOAD, Some(args));
                    self.out.push_back(ConnOutput::Payload(p));
                }
                ClientOutput::Error(e) => {
                    if e.code() != ErrorCode::WorkerError {
                        self.states.add_err_state(ss::ERR_RPC, e.clone(), None);
                    }
                    self.out.push_back(ConnOutput::Error(e));
                }
                ClientOutput::Disconnected(e) => {
                    self.out.push_back(ConnOutput::Error(e.clone()));
                    self.out.push_back(ConnOutput::CloseSocket);
                    self.lost(now_ms, &e.to_string());
                }
                ClientOutput::Closed(e) => {
                    self.states.add1(ss::CONN_RETRY_FAILED, None);
                    self.out.push_back(ConnOutput::CloseSocket);
                    self.give_up(e);
                }
            }
        }
    }

    /// A call by state names. Its result comes back as [`ConnOutput::Done`] with `done` —
    /// at once for a call that cannot be made (unknown state, closed, too many in flight).
    pub fn call(&mut self, now_ms: u64, ty: MutationType, states: &[&str], args: Option<Args>, done: T) {
        self.start_waiting(now_ms);
        let r = self
            .check_open()
            .and_then(|()| self.session.mutate(ty, states, args, now_ms));
        self.queue_call(r, done);
    }

    /// [`Connection::call`] with states by index in the worker's state order.
    pub fn call_indexes(&mut self, now_ms: u64, ty: MutationType, states: Vec<u16>, args: Option<Args>, done: T) {
        self.start_waiting(now_ms);
        let r = self
            .check_open()
            .and_then(|()| self.session.mutate_indexes(ty, states, args, now_ms));
        self.queue_call(r, done);
    }

    /// A first call after a quiet spell: the server's silence counts from now (an idle link is
    /// not a dead one).
    fn start_waiting(&mut self, now_ms: u64) {
        if !self.session.has_pending() {
            self.heard_at = self.heard_at.max(now_ms);
        }
    }

    /// A no-sync mutation by state names (upstream `AddNS`): sent now, no reply, never resent;
    /// its change reaches the mirror with the next push, reply or [`Connection::sync`]. Fails at
    /// once when not connected (`NotConnected`) or for an unknown state.
    pub fn notify(&mut self, ty: MutationType, states: &[&str], args: Option<Args>) -> Result<(), Error> {
        self.check_open()?;
        let idx = self.session.indexes(states)?;
        self.notify_indexes(ty, idx, args)
    }

    /// [`Connection::notify`] with states by index.
    pub fn notify_indexes(&mut self, ty: MutationType, states: Vec<u16>, args: Option<Args>) -> Result<(), Error> {
        self.check_open()?;
        if self.link != Link::Open {
            return Err(Error::NotConnected);
        }
        let frame = self.session.notify_indexes(ty, states, args)?;
        self.out.push_back(ConnOutput::Send(frame));
        Ok(())
    }

    /// Fetch the worker's full clock (upstream `Sync`); `done` completes with `Ok(Executed)` once
    /// the mirror holds it — after every frame sent before, no-sync mutations included, has run.
    pub fn sync(&mut self, done: T) {
        if let Err(e) = self.check_open() {
            self.out.push_back(ConnOutput::Done(done, Err(e), None));
            return;
        }
        if self.link != Link::Open || !self.session.is_ready() {
            self.out
                .push_back(ConnOutput::Done(done, Err(Error::NotConnected), None));
            return;
        }
        if let Some(frame) = self.session.sync() {
            self.out.push_back(ConnOutput::Send(frame));
        }
        // else a resync is outstanding: its Synced carries the same full clock
        self.syncs.push(done);
    }

    /// A remote `WhenArgs` (upstream's `WhenArgs` on the worker, which it lacks remotely):
    /// `done` completes with `Ok(Executed)` once `state`'s final handler ran on the worker with
    /// args ⊇ `args` — the mirror then already shows that clock — or with an error: the server's
    /// limit (`TooManyWaits`), `Disconnected` when the connection drops (the session's waits
    /// are gone with it), `Aborted` after [`Connection::unwait`]. `key` is the shell's handle for
    /// canceling it.
    pub fn when_args(&mut self, key: u64, state: &str, args: Args, done: T) {
        let r = self
            .check_wait_link()
            .and_then(|()| self.session.indexes(&[state]))
            .and_then(|idx| self.session.wait_args(idx[0], args));
        self.queue_wait(key, r, done);
    }

    /// [`Connection::when_args`] with the state by index.
    pub fn when_args_index(&mut self, key: u64, state: u16, args: Args, done: T) {
        let r = self
            .check_wait_link()
            .and_then(|()| self.session.wait_args(state, args));
        self.queue_wait(key, r, done);
    }

    /// A remote `WhenQueue`: `done` completes once the worker processed the mutation with queue
    /// tick `tick` (from [`Outcome::Queued`]); errors as [`Connection::when_args`].
    pub fn when_queue(&mut self, key: u64, tick: u64, done: T) {
        let r = self.check_wait_link().and_then(|()| self.session.wait_queue(tick));
        self.queue_wait(key, r, done);
    }

    /// Cancel the remote wait `key`: the worker drops it, `done` completes with `Aborted`.
    pub fn unwait(&mut self, key: u64) {
        let Some(req) = self.waits.iter().find(|(_, k)| **k == key).map(|(r, _)| *r) else {
            return;
        };
        self.waits.remove(&req);
        if let Some(frame) = self.session.unwait(req) {
            self.out.push_back(ConnOutput::Send(frame));
        }
        if let Some(done) = self.calls.remove(&req) {
            self.out.push_back(ConnOutput::Done(done, Err(Error::Aborted), None));
        }
    }

    /// Remote waits registered now.
    pub fn waits(&self) -> usize {
        self.waits.len()
    }

    /// A remote wait needs a live session: it cannot be queued for later, since what it waits
    /// for may happen meanwhile.
    fn check_wait_link(&self) -> Result<(), Error> {
        self.check_open()?;
        if self.link == Link::Open && self.session.is_ready() {
            return Ok(());
        }
        if self.session.mirror().is_some() {
            Err(Error::Rpc {
                code: ErrorCode::Disconnected,
                message: "not connected: a remote wait needs a live session".into(),
            })
        } else {
            Err(Error::NotConnected)
        }
    }

    fn queue_wait(&mut self, key: u64, r: Result<(u32, Vec<u8>), Error>, done: T) {
        match r {
            Ok((req, frame)) => {
                self.calls.insert(req, done);
                self.waits.insert(req, key);
                self.out.push_back(ConnOutput::Send(frame));
            }
            Err(e) => self.out.push_back(ConnOutput::Done(done, Err(e), None)),
        }
    }

    fn finish_syncs(&mut self) {
        for done in core::mem::take(&mut self.syncs) {
            self.out.push_back(ConnOutput::Done(done, Ok(Outcome::Executed), None));
        }
    }

    /// Upstream's `AddErrState` on a mirror: add `state` with `Exception` (and `ErrOnClient`
    /// when the worker has it, so the worker can tell a client's error from its own) with the
    /// error's message as the `err` arg.
    pub fn call_err(&mut self, now_ms: u64, state: &str, message: &str, args: Option<Args>, done: T) {
        let args = args.unwrap_or_default().with("err", message);
        let mut states = alloc::vec![state, crate::schema::EXCEPTION];
        if self.mirror().is_some_and(|m| m.has1(ss::ERR_ON_CLIENT)) {
            states.push(ss::ERR_ON_CLIENT);
        }
        states.dedup();
        self.call(now_ms, MutationType::Add, &states, Some(args), done);
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.link == Link::Closed {
            Err(Error::Disposed)
        } else {
            Ok(())
        }
    }

    fn queue_call(&mut self, r: Result<(u32, Vec<u8>), Error>, done: T) {
        match r {
            Ok((req, frame)) => {
                self.calls.insert(req, done);
                if self.link == Link::Open && self.session.is_ready() {
                    self.out.push_back(ConnOutput::Send(frame));
                }
            }
            Err(e) => self.out.push_back(ConnOutput::Done(done, Err(e), None)),
        }
    }

    /// Say bye (if connected) and close for good; pending calls end with `Disposed`.
    pub fn close(&mut self) {
        if self.link == Link::Closed {
            return;
        }
        let bye = self.session.bye();
        if self.link == Link::Open {
            self.out.push_back(ConnOutput::Send(bye));
        }
        self.out.push_back(ConnOutput::CloseSocket);
        self.states.remove1(ss::START, None);
        self.give_up(Error::Disposed);
    }

    fn give_up(&mut self, err: Error) {
        self.link = Link::Closed;
        self.waits.clear();
        let _ = self.session.bye();
        for (_, done) in core::mem::take(&mut self.calls) {
            self.out.push_back(ConnOutput::Done(done, Err(err.clone()), None));
        }
        for done in core::mem::take(&mut self.syncs) {
            self.out.push_back(ConnOutput::Done(done, Err(err.clone()), None));
        }
        self.set_status(Status::Closed);
        self.out.push_back(ConnOutput::Closed(err));
    }
}

/// Default client ids: upstream's native `rc-client`, and the browser's own.
pub const NATIVE_CLIENT_ID: &str = "rc-client";
/// See [`NATIVE_CLIENT_ID`].
pub const BROWSER_CLIENT_ID: &str = "rc-browser";

// Shells move the driver into a task: keep it `Send` when the completions are.
const _: () = {
    const fn send<X: Send>() {}
    send::<Connection<String>>();
};
