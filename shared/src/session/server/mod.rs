//! The server side of one connection, sans IO: fed client frames, worker changes and the time;
//! emits frames and mutation commands. The shell (a WebSocket task) owns the socket and timers.

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::task::Waker;

use crate::error::ErrorCode;
use crate::session::replay::{Replay, ReplayCache};
use crate::session::stream::{MAX_PER_POLL, TransitionLog};
use crate::session::worker::{CallId, Mutated, SessionSchema, WorkerPort};

mod guards;
mod waits;

use crate::types::{MutationType, Outcome};
use crate::wait::Wait;
use crate::wire::{self, Chunk, ClientMsg, ErrorMsg, Hello, MutationReq, Payload, Reply, ServerMsg, Welcome, clock};
use guards::Bucket;

/// Decides whether a client may open a session: `(client_id, token) -> allowed`.
pub type Authorize = Arc<dyn Fn(&str, Option<&str>) -> bool + Send + Sync>;

/// Per-session settings (the server's limits and access decisions).
#[derive(Clone)]
pub struct ServerConfig {
    /// Largest client frame accepted (default [`wire::DEFAULT_MAX_FRAME`]).
    pub max_frame: usize,
    /// Push interval when the client states no wish, in ms (default 16: one browser frame).
    pub push_interval_ms: u32,
    /// Smallest interval a client may ask for, in ms; 0 (no pushes) is always allowed.
    pub min_push_interval_ms: u32,
    /// Largest interval a client may ask for, in ms.
    pub max_push_interval_ms: u32,
    /// Allowed client ids (`None`: any).
    pub allow_ids: Option<Vec<String>>,
    /// Token check (`None`: no token needed).
    pub authorize: Option<Authorize>,
    /// States clients may mutate, by name (`None`: all).
    pub mutable_states: Option<Vec<String>>,
    /// Payloads larger than this are sent in chunks of this size.
    pub chunk_size: usize,
    /// This session's epoch (unique per session; the shell picks it).
    pub epoch: u64,
    /// Most remote waits (`WhenArgs`, `WhenQueue`) a session may hold at once; past it a new
    /// one is refused with [`ErrorCode::TooManyWaits`]. Each is one binding on the worker, so
    /// this bounds what one client can make the worker check per transition.
    pub max_waits: usize,
    /// The shell's time (ms) when the connection opened: the `Hello` deadline counts from it.
    pub opened_at_ms: u64,
    /// A connection that sends no `Hello` for this long is closed with [`ErrorCode::Timeout`]
    /// (a silent socket holds a session slot). 0: no limit. Default: 10 000.
    pub hello_timeout_ms: u64,
    /// After this long without hearing from the client (no frame, no pong), the session asks
    /// the shell for a WebSocket ping ([`ServerOutput::Ping`]). 0: no pings. Default: 15 000.
    pub ping_interval_ms: u64,
    /// A ping unanswered (nothing heard) for this long closes the session with
    /// [`ErrorCode::Timeout`]: the peer is gone (a half-open TCP connection). Default: 15 000.
    pub ping_timeout_ms: u64,
    /// Most mutations one session may have in flight at once (forwarded by a relay, or retries
    /// waiting for their original); past it a mutation fails with
    /// [`ErrorCode::TooManyInFlight`] without running. Default: 256.
    pub max_in_flight: usize,
    /// Mutations per second one session may send (a token bucket of `mutation_burst`); past
    /// it a mutation fails with [`ErrorCode::RateLimited`] without running. 0: no limit.
    /// Default: 1 000.
    pub mutation_rate: u32,
    /// The bucket's size: mutations a session may send at once after a quiet spell.
    /// Default: 2 000.
    pub mutation_burst: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_frame: wire::DEFAULT_MAX_FRAME,
            push_interval_ms: 16,
            min_push_interval_ms: 1,
            max_push_interval_ms: 10_000,
            allow_ids: None,
            authorize: None,
            mutable_states: None,
            chunk_size: 64 * 1024,
            epoch: 0,
            max_waits: 64,
            opened_at_ms: 0,
            hello_timeout_ms: 10_000,
            ping_interval_ms: 15_000,
            ping_timeout_ms: 15_000,
            max_in_flight: 256,
            mutation_rate: 1_000,
            mutation_burst: 2_000,
        }
    }
}

impl core::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("max_frame", &self.max_frame)
            .field("push_interval_ms", &self.push_interval_ms)
            .field("allow_ids", &self.allow_ids)
            .field("mutable_states", &self.mutable_states)
            .finish_non_exhaustive()
    }
}

/// What the session asks its shell to do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerOutput {
    /// Send this frame.
    Send(Vec<u8>),
    /// The handshake succeeded (emitted just before the `Welcome` frame, so the shell can record
    /// it before the client can observe it).
    HandshakeDone {
        /// The client's id.
        client_id: String,
    },
    /// Send a WebSocket ping (the session heard nothing for `ping_interval_ms`); report what
    /// comes back with [`ServerSession::heard`].
    Ping,
    /// Close the connection (a `Bye` frame, if any, was emitted just before).
    Close {
        /// Why.
        code: ErrorCode,
        /// Detail.
        reason: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    Open,
    Closed,
}

/// Server side of one session.
pub struct ServerSession {
    cfg: ServerConfig,
    replay: Arc<ReplayCache>,
    phase: Phase,
    /// The worker's names and wire schema (shared by its sessions).
    schema: Arc<SessionSchema>,
    worker_id: String,
    mutable: Option<Vec<bool>>,
    client_id: String,
    instance: u64,
    /// This session's claim on its instance in the replay cache (see [`ReplayCache::claim`]).
    claim: u64,
    tracked: Option<Vec<bool>>,
    last_sent: Vec<u64>,
    seq: u8,
    push_interval_ms: u32,
    last_push_at: u64,
    dirty: bool,
    /// Retried requests whose original runs in another session of the same client.
    deferred: Vec<u32>,
    last_poll_at: u64,
    next_token: u64,
    /// Index of `Exception` (its tick changing means the worker's error may have changed).
    exception_idx: Option<usize>,
    /// The last worker error sent.
    last_err: Option<String>,
    /// Remote waits by request id; dropping one unbinds it from the worker.
    waits: Vec<(u32, Wait)>,
    /// Woken when a wait completes (the shell then calls `poll`).
    waker: Waker,
    /// Shallow clocks (see [`Hello::shallow`]).
    shallow: bool,
    /// The worker's transition log, when it has one (see [`ServerSession::set_transition_log`]).
    log: Option<Arc<TransitionLog>>,
    /// This session's reading of it.
    sub: Option<Subscription>,
    /// When the client was last heard from (a frame, a pong), ms.
    heard_at: u64,
    /// When the unanswered ping went out.
    ping_at: Option<u64>,
    /// Mutations forwarded and not answered yet.
    forwarded: usize,
    /// The mutation rate's token bucket.
    bucket: Bucket,
}

/// A session's place in the worker's [`TransitionLog`]; dropping it unsubscribes and forgets
/// the session's client id.
struct Subscription {
    log: Arc<TransitionLog>,
    epoch: u64,
    /// The next `seq` to send (0: the oldest held).
    next: u64,
    /// Send the records (`Hello::stream`).
    stream: bool,
    /// Send each record's clock (`Hello::all_ticks`).
    all_ticks: bool,
    /// Reading: counted in the log's subscribers.
    reading: bool,
    /// The last read stopped at its limit: poll again at once.
    more: bool,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.reading {
            self.log.unsubscribe();
        }
        self.log.forget_session(self.epoch);
    }
}

/// How often a deferred retry (its original runs in another session) is rechecked, in ms.
const DEFERRED_RECHECK_MS: u64 = 10;

impl core::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerSession")
            .field("phase", &self.phase)
            .field("client_id", &self.client_id)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// The replay-cache key of a client: its instance, made distinct per client id (two clients
/// with the same instance never share outcomes).
pub fn replay_key(client_id: &str, instance: u64) -> u64 {
    instance ^ fnv64(client_id.as_bytes()).rotate_left(17)
}

fn fnv64(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in b {
        h ^= u64::from(*x);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The request an error answers: none for a no-sync mutation.
fn req_of(req: u32) -> Option<u32> {
    (req != crate::session::client::NOTIFY_REQ).then_some(req)
}

/// A local code (e.g. a relay's upstream connection failing with `ConnRetryFailed`) goes on the
/// wire as `Internal`, its name kept in the message.
fn wire_code(code: ErrorCode, message: String) -> (ErrorCode, String) {
    if code.is_wire() {
        (code, message)
    } else {
        (ErrorCode::Internal, alloc::format!("{code}: {message}"))
    }
}

fn frame(msg: &ServerMsg) -> ServerOutput {
    // Server messages hold no opaque values, so encoding cannot fail; stay total anyway.
    match msg.encode() {
        Ok(b) => ServerOutput::Send(b),
        Err(e) => ServerOutput::Close {
            code: ErrorCode::Internal,
            reason: e.to_string(),
        },
    }
}

impl ServerSession {
    /// A session for `worker`, which must have verified states (their order is the wire
    /// identity of states). `replay` is shared by all sessions of the worker.
    pub fn new(worker: &dyn WorkerPort, cfg: ServerConfig, replay: Arc<ReplayCache>) -> ServerSession {
        let schema = worker.session_schema();
        let names = &schema.names;
        let mutable = cfg
            .mutable_states
            .as_ref()
            .map(|m| names.iter().map(|n| m.contains(n)).collect());
        let exception = names.iter().position(|n| n == crate::EXCEPTION);
        let (cfg_opened, cfg_burst) = (cfg.opened_at_ms, cfg.mutation_burst.max(1));
        ServerSession {
            exception_idx: exception,
            last_sent: alloc::vec![0; names.len()],
            schema,
            worker_id: worker.id().to_string(),
            mutable,
            cfg,
            replay,
            phase: Phase::AwaitHello,
            client_id: String::new(),
            instance: 0,
            claim: 0,
            tracked: None,
            seq: 0,
            push_interval_ms: 0,
            last_push_at: 0,
            dirty: false,
            deferred: Vec::new(),
            last_poll_at: 0,
            next_token: 1,
            last_err: None,
            waits: Vec::new(),
            waker: Waker::noop().clone(),
            shallow: false,
            log: None,
            sub: None,
            heard_at: cfg_opened,
            ping_at: None,
            forwarded: 0,
            bucket: Bucket {
                milli: u64::from(cfg_burst) * 1000,
                at: cfg_opened,
            },
        }
    }

    /// The client was heard from at `now_ms` (the shell calls it on a WebSocket pong or ping;
    /// frames count by themselves).
    pub fn heard(&mut self, now_ms: u64) {
        self.heard_at = self.heard_at.max(now_ms);
        self.ping_at = None;
    }

    /// The worker's transition log: sessions name their client in it (so the transitions they
    /// cause show who caused them) and clients may subscribe to it (`Hello::stream`,
    /// `Hello::all_ticks`). Without one, such a `Hello` gets a `Forbidden` error and the
    /// session goes on without the stream.
    pub fn set_transition_log(&mut self, log: Arc<TransitionLog>) {
        self.log = Some(log);
    }

    /// True while this session reads the transition log.
    pub fn streaming(&self) -> bool {
        self.sub.as_ref().is_some_and(|s| s.reading)
    }

    /// The waker to wake when a remote wait completes: the shell then calls
    /// [`ServerSession::poll`], which sends its `Signaled`. Without one, waits are only checked
    /// when a frame or a poll comes anyway.
    pub fn set_waker(&mut self, waker: Waker) {
        self.waker = waker;
    }

    /// The worker's replay cache this session shares.
    pub fn replay(&self) -> &Arc<ReplayCache> {
        &self.replay
    }

    /// Remote waits this session holds.
    pub fn waits(&self) -> usize {
        self.waits.len()
    }

    /// The worker's state names (index = wire identity).
    pub fn names(&self) -> &[String] {
        &self.schema.names
    }

    /// The worker schema's hash, as sent in `Welcome`.
    pub fn schema_hash(&self) -> u64 {
        self.schema.hash
    }

    /// The client id, once the handshake is done.
    pub fn client_id(&self) -> Option<&str> {
        (self.phase == Phase::Open).then_some(self.client_id.as_str())
    }

    /// True after the handshake and before closing.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// The push interval in force (ms; 0 = no pushes).
    pub fn push_interval_ms(&self) -> u32 {
        self.push_interval_ms
    }

    fn close(&mut self, req: Option<u32>, code: ErrorCode, message: String) -> Vec<ServerOutput> {
        self.phase = Phase::Closed;
        self.waits.clear();
        self.sub = None;
        let (code, message) = wire_code(code, message);
        let bye = ServerMsg::Bye(ErrorMsg {
            req,
            code,
            message: message.clone(),
        });
        alloc::vec![frame(&bye), ServerOutput::Close { code, reason: message }]
    }

    fn error(req: Option<u32>, code: ErrorCode, message: String) -> ServerOutput {
        let (code, message) = wire_code(code, message);
        frame(&ServerMsg::Error(ErrorMsg { req, code, message }))
    }

    /// Handle one client frame at time `now_ms`. A mutation runs on `worker` right here (by
    /// state index); a worker that forwards it elsewhere answers later through
    /// [`ServerSession::mutation_done`].
    pub fn handle_frame(&mut self, bytes: &[u8], now_ms: u64, worker: &dyn WorkerPort) -> Vec<ServerOutput> {
        if self.phase == Phase::Closed {
            return Vec::new();
        }
        self.heard(now_ms);
        let msg = match ClientMsg::decode(bytes, self.cfg.max_frame) {
            Ok(m) => m,
            Err(wire::DecodeError::TooLarge { len, max }) => {
                return self.close(
                    None,
                    ErrorCode::TooLarge,
                    alloc::format!("frame of {len} bytes, limit {max}"),
                );
            }
            Err(e) => {
                // a newer client's Hello may not decode at all: report the version, not garbage
                if self.phase == Phase::AwaitHello {
                    if let Some(v) = wire::peek_version(bytes).filter(|v| *v != wire::PROTOCOL_VERSION) {
                        let msg = alloc::format!("server speaks version {}, client {v}", wire::PROTOCOL_VERSION);
                        return self.close(None, ErrorCode::VersionMismatch, msg);
                    }
                }
                return self.close(None, ErrorCode::Malformed, e.to_string());
            }
        };
        let mut out = match (self.phase, msg) {
            (Phase::AwaitHello, ClientMsg::Hello(h)) => self.hello(h, now_ms, worker),
            (Phase::AwaitHello, _) => self.close(None, ErrorCode::NotReady, "the first message must be Hello".into()),
            (Phase::Open, ClientMsg::Hello(_)) => self.close(None, ErrorCode::NotReady, "Hello sent twice".into()),
            (Phase::Open, ClientMsg::Add(m)) => self.mutation(MutationType::Add, m, now_ms, worker),
            (Phase::Open, ClientMsg::Remove(m)) => self.mutation(MutationType::Remove, m, now_ms, worker),
            (Phase::Open, ClientMsg::Set(m)) => self.mutation(MutationType::Set, m, now_ms, worker),
            (Phase::Open, ClientMsg::Sync { req }) => {
                // waits met before this Sync are signaled before its answer: a sync is a barrier
                let mut out = self.check_waits(now_ms, worker);
                let now = self.observed(worker.time());
                self.seq = self.seq.wrapping_add(1);
                let update = clock::full_update(&mut self.last_sent, &now, self.tracked.as_deref(), self.seq);
                self.last_push_at = now_ms;
                self.dirty = false;
                out.push(frame(&ServerMsg::Synced { req, update }));
                out
            }
            (Phase::Open, ClientMsg::WhenArgs(w)) => self.when_args(w, now_ms, worker),
            (Phase::Open, ClientMsg::WhenQueue { req, tick }) => match self.check_wait(req) {
                Err(e) => alloc::vec![e],
                Ok(()) => self.add_wait(req, worker.when_queue(tick), now_ms, worker),
            },
            (Phase::Open, ClientMsg::Unwait { req }) => {
                // dropping the wait unbinds it from the worker; an unknown id (already
                // signaled) needs nothing
                self.waits.retain(|(r, _)| *r != req);
                Vec::new()
            }
            (Phase::Open, ClientMsg::Bye) => {
                self.phase = Phase::Closed;
                self.waits.clear();
                alloc::vec![ServerOutput::Close {
                    code: ErrorCode::Closed,
                    reason: "client said bye".into(),
                }]
            }
            (Phase::Closed, _) => Vec::new(),
        };
        // a mutation may have met a wait: signal it right after the reply
        if self.phase == Phase::Open && !self.waits.is_empty() {
            out.extend(self.check_waits(now_ms, worker));
        }
        out
    }

    fn hello(&mut self, h: Hello, now_ms: u64, worker: &dyn WorkerPort) -> Vec<ServerOutput> {
        if h.version != wire::PROTOCOL_VERSION {
            return self.close(
                None,
                ErrorCode::VersionMismatch,
                alloc::format!("server speaks version {}, client {}", wire::PROTOCOL_VERSION, h.version),
            );
        }
        if let Some(allow) = &self.cfg.allow_ids {
            if !allow.contains(&h.client_id) {
                let msg = alloc::format!("client id {:?} is not allowed", h.client_id);
                return self.close(None, ErrorCode::AccessDenied, msg);
            }
        }
        if let Some(auth) = &self.cfg.authorize {
            if !auth(&h.client_id, h.token.as_deref()) {
                return self.close(None, ErrorCode::Unauthorized, "invalid or missing token".into());
            }
        }
        if let Some(hash) = h.schema_hash {
            if hash != self.schema.hash {
                let msg = alloc::format!(
                    "client expects schema {hash:016x}, worker {} has {:016x}",
                    self.worker_id,
                    self.schema.hash
                );
                return self.close(None, ErrorCode::SchemaMismatch, msg);
            }
        }
        let mut tracked_idx = None;
        if let Some(states) = &h.states {
            let mut flags = alloc::vec![false; self.schema.names.len()];
            let mut idx = Vec::new();
            for s in states {
                match self.schema.names.iter().position(|n| n == s) {
                    Some(i) => {
                        if !flags[i] {
                            idx.push(i as u16);
                        }
                        flags[i] = true;
                    }
                    None => return self.close(None, ErrorCode::InvalidParams, alloc::format!("unknown state {s}")),
                }
            }
            idx.sort_unstable();
            self.tracked = Some(flags);
            tracked_idx = Some(idx);
        }
        self.push_interval_ms = match h.push_interval_ms {
            None => self.cfg.push_interval_ms,
            Some(0) => 0,
            Some(ms) => ms.clamp(
                self.cfg.min_push_interval_ms.max(1),
                self.cfg.max_push_interval_ms.max(1),
            ),
        };
        self.instance = replay_key(&h.client_id, h.instance);
        self.claim = self.replay.claim(self.instance);
        self.client_id = h.client_id;
        self.shallow = h.shallow;
        let now = self.observed(worker.time());
        self.seq = 0;
        let update = clock::full_update(&mut self.last_sent, &now, self.tracked.as_deref(), 0);
        self.last_push_at = now_ms;
        self.dirty = false;
        self.phase = Phase::Open;
        let welcome = Welcome {
            version: wire::PROTOCOL_VERSION,
            worker_id: self.worker_id.clone(),
            epoch: self.cfg.epoch,
            names: self.schema.names.clone(),
            schema: self.schema.wire.clone(),
            schema_hash: self.schema.hash,
            tracked: tracked_idx,
            push_interval_ms: self.push_interval_ms,
            update,
            worker_err: worker.err(),
            shallow: self.shallow,
            max_waits: u32::try_from(self.cfg.max_waits).unwrap_or(u32::MAX),
            args_types: h.types.then(|| {
                let schema = worker.schema();
                self.schema
                    .names
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| {
                        let ts = schema.get(n)?.args_ts.clone()?;
                        Some((i as u16, ts))
                    })
                    .collect()
            }),
            log_id: self.log.as_ref().map(|l| l.id()),
            replay_id: self.replay.id(),
        };
        self.last_err.clone_from(&welcome.worker_err);
        let mut out = alloc::vec![
            ServerOutput::HandshakeDone {
                client_id: self.client_id.clone()
            },
            frame(&ServerMsg::Welcome(welcome)),
        ];
        let wants = h.stream.is_some() || h.all_ticks;
        match &self.log {
            Some(log) => {
                log.name_session(self.cfg.epoch, &self.client_id);
                if wants {
                    log.subscribe();
                }
                self.sub = Some(Subscription {
                    log: log.clone(),
                    epoch: self.cfg.epoch,
                    next: match h.stream {
                        Some(f) if f.log == log.id() && f.seq > 0 => f.seq,
                        Some(_) => log.oldest_seq(),
                        // all ticks alone: from the next transition on
                        None => log.next_seq(),
                    },
                    stream: h.stream.is_some(),
                    all_ticks: h.all_ticks,
                    reading: wants,
                    more: false,
                });
                if wants {
                    out.extend(self.read_log());
                }
            }
            None if wants => out.push(Self::error(
                None,
                ErrorCode::Forbidden,
                alloc::format!("worker {} has no transition stream", self.worker_id),
            )),
            None => {}
        }
        out
    }

    /// The next records of the transition log (a `Dropped` marker first when some are gone),
    /// and with `all_ticks` one clock update per record.
    fn read_log(&mut self) -> Vec<ServerOutput> {
        let mut out = Vec::new();
        let Some(sub) = self.sub.as_mut().filter(|s| s.reading) else {
            return out;
        };
        let batch = sub.log.read(sub.next, MAX_PER_POLL);
        sub.more = batch.more;
        let (stream, all_ticks) = (sub.stream, sub.all_ticks);
        if let Some(last) = batch.records.last() {
            sub.next = last.seq + 1;
        } else if batch.dropped > 0 {
            sub.next += batch.dropped;
        }
        if stream && batch.dropped > 0 {
            let next = batch.records.first().map_or(sub.next, |r| r.seq);
            out.push(frame(&ServerMsg::Dropped { n: batch.dropped, next }));
        }
        for r in &batch.records {
            if stream {
                out.push(ServerOutput::Send(r.frame.clone()));
            }
            if all_ticks && r.ticks.len() == self.last_sent.len() {
                // a record older than what this session already has (a reply or push got
                // further) has nothing to add
                if r.ticks.iter().zip(&self.last_sent).any(|(a, b)| a < b) && !self.shallow {
                    continue;
                }
                let ticks = self.observed(r.ticks.clone());
                let seq = self.seq.wrapping_add(1);
                if let Some(update) = clock::update_from(&mut self.last_sent, &ticks, self.tracked.as_deref(), seq) {
                    self.seq = seq;
                    out.push(frame(&ServerMsg::Update(update)));
                }
            }
        }
        out
    }

    fn mutation(
        &mut self,
        ty: MutationType,
        m: MutationReq,
        now_ms: u64,
        worker: &dyn WorkerPort,
    ) -> Vec<ServerOutput> {
        let n = self.schema.names.len();
        if let Some(bad) = m.states.iter().find(|i| **i as usize >= n) {
            let msg = alloc::format!("state index {bad} out of range ({n} states)");
            return alloc::vec![Self::error(req_of(m.req), ErrorCode::InvalidParams, msg)];
        }
        if let Some(mutable) = &self.mutable {
            if let Some(i) = m.states.iter().find(|i| !mutable[**i as usize]) {
                let msg = alloc::format!("client may not mutate {}", self.schema.names[*i as usize]);
                return alloc::vec![Self::error(req_of(m.req), ErrorCode::Forbidden, msg)];
            }
        }
        if m.req == crate::session::client::NOTIFY_REQ {
            if let Some(e) = self.limited(None, now_ms) {
                return alloc::vec![e];
            }
            // a no-sync mutation: run it, no reply, no replay entry (the client never resends
            // it); its change goes out with the next push, reply or Synced. A failure is
            // reported without a request id.
            let call = CallId { key: 0, req: m.req };
            return match worker.mutate(call, ty, &m.states, m.args, self.cfg.epoch) {
                Mutated::Done(..) | Mutated::Forwarded => {
                    self.dirty = true;
                    Vec::new()
                }
                Mutated::Failed(code, message) => alloc::vec![Self::error(None, code, message)],
            };
        }
        let busy = self.forwarded + self.deferred.len() >= self.cfg.max_in_flight;
        match self.replay.begin(self.instance, self.claim, m.req) {
            // the client reconnected: this frame is stale (it resends what it still waits for on
            // the new connection), and its outcome may be gone from the cache
            Replay::Superseded => self.close(
                None,
                ErrorCode::Closed,
                "superseded: this client has a newer connection".into(),
            ),
            Replay::New => {
                // refused before it runs: forgotten, so a later resend may run it
                let refused = if busy {
                    Some(self.too_many_in_flight(m.req))
                } else {
                    self.limited(Some(m.req), now_ms)
                };
                if let Some(e) = refused {
                    self.replay.abandon(self.instance, m.req);
                    return alloc::vec![e];
                }
                let call = CallId {
                    key: self.instance,
                    req: m.req,
                };
                match worker.mutate(call, ty, &m.states, m.args, self.cfg.epoch) {
                    Mutated::Done(outcome, why) => self.mutation_done(m.req, outcome, why, now_ms, worker),
                    Mutated::Failed(code, message) => self.mutation_failed(m.req, code, message),
                    Mutated::Forwarded => {
                        self.forwarded += 1;
                        Vec::new()
                    }
                }
            }
            Replay::Done(outcome) => self.reply(m.req, outcome, None, now_ms, worker),
            Replay::InFlight if busy => alloc::vec![self.too_many_in_flight(m.req)],
            Replay::InFlight => {
                // the original runs elsewhere (an older session of this client); answer when done
                self.last_poll_at = now_ms;
                self.deferred.push(m.req);
                Vec::new()
            }
        }
    }

    /// An `Error{code: WorkerError}` frame when the worker's `Exception` ticked since the last
    /// update and its error text changed.
    fn worker_error(&mut self, now: &[u64], worker: &dyn WorkerPort) -> Option<ServerOutput> {
        let i = self.exception_idx?;
        if now.get(i) == self.last_sent.get(i) {
            return None;
        }
        let msg = worker.err()?;
        if self.last_err.as_deref() == Some(msg.as_str()) {
            return None;
        }
        self.last_err = Some(msg.clone());
        Some(Self::error(None, ErrorCode::WorkerError, msg))
    }

    /// The clock change up to now for a reply or a signal (and a worker error frame to send
    /// before it, if the error changed). Every reply is sequenced, even without a change (an
    /// empty diff: 4 bytes), so a client that lost an earlier push notices the gap before it
    /// trusts the reply.
    fn sequenced_update(&mut self, now_ms: u64, worker: &dyn WorkerPort) -> (Option<ServerOutput>, wire::ClockUpdate) {
        let now = self.observed(worker.time());
        let err = self.worker_error(&now, worker);
        let seq = self.seq.wrapping_add(1);
        let update =
            clock::update_from(&mut self.last_sent, &now, self.tracked.as_deref(), seq).unwrap_or(wire::ClockUpdate {
                seq,
                checksum: clock::checksum(&self.last_sent),
                ticks: wire::Ticks::Diff(wire::Diff::default()),
            });
        self.seq = seq;
        // the update carries everything up to now: a pending push has nothing left to say
        self.last_push_at = now_ms;
        self.dirty = false;
        (err, update)
    }

    /// The worker's time as this session sends it: as is, or shallow (each state's tick moves
    /// by one when its activation differs from what was last sent).
    fn observed(&self, now: Vec<u64>) -> Vec<u64> {
        if !self.shallow {
            return now;
        }
        clock::shallow(&self.last_sent, &now)
    }

    fn reply(
        &mut self,
        req: u32,
        outcome: Outcome,
        why: Option<wire::WhyMsg>,
        now_ms: u64,
        worker: &dyn WorkerPort,
    ) -> Vec<ServerOutput> {
        let (err, update) = self.sequenced_update(now_ms, worker);
        let reply = frame(&ServerMsg::reply(
            outcome,
            Reply {
                req,
                update: Some(update),
            },
            why,
        ));
        match err {
            Some(e) => alloc::vec![e, reply],
            None => alloc::vec![reply],
        }
    }

    /// A forwarded mutation ([`Mutated::Forwarded`]) finished with this outcome (the worker's
    /// clock is read now, after its whole queue drained). Emits the reply with the clock change
    /// (and `why` with a `Canceled`; the replay cache keeps the outcome only).
    pub fn mutation_done(
        &mut self,
        req: u32,
        outcome: Outcome,
        why: Option<wire::WhyMsg>,
        now_ms: u64,
        worker: &dyn WorkerPort,
    ) -> Vec<ServerOutput> {
        if req_of(req).is_none() {
            // a forwarded no-sync mutation: no reply; its change goes out with the next update
            self.dirty = true;
            return Vec::new();
        }
        self.forwarded = self.forwarded.saturating_sub(1);
        self.replay.finish(self.instance, req, outcome);
        if self.phase != Phase::Open {
            return Vec::new();
        }
        self.reply(req, outcome, why, now_ms, worker)
    }

    /// A forwarded mutation could not run (e.g. the upstream worker is gone); the client gets an
    /// error and may retry.
    pub fn mutation_failed(&mut self, req: u32, code: ErrorCode, message: String) -> Vec<ServerOutput> {
        if req_of(req).is_some() {
            self.forwarded = self.forwarded.saturating_sub(1);
            self.replay.abandon(self.instance, req);
        }
        if self.phase != Phase::Open {
            return Vec::new();
        }
        alloc::vec![Self::error(req_of(req), code, message)]
    }

    /// The worker changed (call from its tracer's `transition_end`, or from a mirror's update).
    pub fn worker_changed(&mut self) {
        self.dirty = true;
    }

    /// When to call [`ServerSession::poll`] next (ms): a pending push's slot, or soon while a
    /// retried request waits for its original to finish in another session.
    pub fn next_deadline(&self) -> Option<u64> {
        match self.phase {
            Phase::Closed => return None,
            Phase::AwaitHello => {
                return (self.cfg.hello_timeout_ms > 0).then(|| self.cfg.opened_at_ms + self.cfg.hello_timeout_ms);
            }
            Phase::Open => {}
        }
        if self.sub.as_ref().is_some_and(|s| s.more) {
            return Some(self.last_poll_at);
        }
        let push =
            (self.dirty && self.push_interval_ms > 0).then(|| self.last_push_at + u64::from(self.push_interval_ms));
        let retry = (!self.deferred.is_empty()).then(|| self.last_poll_at + DEFERRED_RECHECK_MS);
        [push, retry, self.keepalive_deadline()].into_iter().flatten().min()
    }

    /// Push the worker's changes if due (at most one push per interval; the trailing change is
    /// pushed when the interval ends), and answer deferred retries whose original finished.
    /// Skip calling it while the socket is backed up: changes coalesce meanwhile.
    pub fn poll(&mut self, now_ms: u64, worker: &dyn WorkerPort) -> Vec<ServerOutput> {
        let mut out = Vec::new();
        if self.phase == Phase::Closed {
            return out;
        }
        if let Some(k) = self.keepalive(now_ms) {
            if self.phase != Phase::Open {
                return k;
            }
            out.extend(k);
        }
        if self.phase != Phase::Open {
            return out;
        }
        self.last_poll_at = now_ms;
        if !self.deferred.is_empty() {
            let ready: Vec<(u32, Outcome)> = self
                .deferred
                .iter()
                .filter_map(|req| self.replay.outcome(self.instance, *req).map(|o| (*req, o)))
                .collect();
            let replay = self.replay.clone();
            let instance = self.instance;
            self.deferred.retain(|req| replay.outcome(instance, *req).is_none());
            for (req, o) in ready {
                out.extend(self.reply(req, o, None, now_ms, worker));
            }
        }
        if !self.waits.is_empty() {
            out.extend(self.check_waits(now_ms, worker));
        }
        if self.sub.as_ref().is_some_and(|s| s.reading) {
            out.extend(self.read_log());
            if self.sub.as_ref().is_some_and(|s| s.all_ticks && !s.more) {
                // every transition went out on its own; what is left is not a transition's
                // (a relay's update): push it now, no coalescing
                self.last_push_at = 0;
            }
        }
        if self.dirty && self.push_interval_ms > 0 && now_ms >= self.last_push_at + u64::from(self.push_interval_ms) {
            self.dirty = false;
            let now = self.observed(worker.time());
            if let Some(e) = self.worker_error(&now, worker) {
                out.push(e);
            }
            let seq = self.seq.wrapping_add(1);
            if let Some(update) = clock::update_from(&mut self.last_sent, &now, self.tracked.as_deref(), seq) {
                self.seq = seq;
                self.last_push_at = now_ms;
                out.push(frame(&ServerMsg::Update(update)));
            }
        }
        out
    }

    /// Frames carrying a worker payload to this client: one `Payload`, or `Chunk`s when the data
    /// is larger than the chunk size. Empty before the handshake.
    pub fn payload(&mut self, name: &str, source: &str, data: &[u8]) -> Vec<ServerOutput> {
        if self.phase != Phase::Open {
            return Vec::new();
        }
        let token = (self.cfg.epoch << 32) ^ self.next_token;
        self.next_token += 1;
        let size = self.cfg.chunk_size.max(1);
        if data.len() <= size {
            return alloc::vec![frame(&ServerMsg::Payload(Payload {
                name: name.into(),
                source: source.into(),
                token,
                data: data.to_vec(),
            }))];
        }
        let total = data.len().div_ceil(size) as u32;
        data.chunks(size)
            .enumerate()
            .map(|(i, part)| {
                frame(&ServerMsg::Chunk(Chunk {
                    token,
                    index: i as u32,
                    total,
                    head: (i == 0).then(|| (name.into(), source.into())),
                    len: (i == 0).then_some(data.len() as u64),
                    data: part.to_vec(),
                }))
            })
            .collect()
    }

    /// Close from the server side (shutdown, overload): a `Bye` frame and a close.
    pub fn shutdown(&mut self, code: ErrorCode, reason: &str) -> Vec<ServerOutput> {
        if self.phase == Phase::Closed {
            return Vec::new();
        }
        self.close(None, code, reason.into())
    }
}
