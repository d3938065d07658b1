//! The client side of one connection, sans IO: fed server frames, emits frames and events, and
//! keeps the mirror — a local [`Machine`] with the worker's schema whose clock follows the
//! worker's, so getters, waits and state contexts behave exactly as on a local machine.

use alloc::collections::BTreeSet;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use litemap::LiteMap;

use crate::error::ErrorCode;
use crate::machine::{CompiledSchema, Machine, Opts};
use crate::session::replay::REQ_ID_WRAP;
use crate::types::{Args, Error, MutationType, Outcome};
use crate::why::Why;
use crate::wire::{
    self, ClientMsg, ClockUpdate, ErrorMsg, Hello, MutationReq, Payload, Reply, ServerMsg, Ticks, WaitArgs, Welcome,
    clock,
};

/// Most requests a client keeps in flight: the server's replay window per client
/// ([`crate::session::PER_INSTANCE`]), so every resent request still finds its outcome.
pub const MAX_PENDING: usize = crate::session::PER_INSTANCE;

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Client id (servers may allow-list it).
    pub client_id: String,
    /// Random per client instance (makes retries idempotent across reconnects).
    pub instance: u64,
    /// Auth token.
    pub token: Option<String>,
    /// The schema hash this client expects (`None`: accept any worker).
    pub schema_hash: Option<u64>,
    /// Wished push interval (ms; `None`: the server's default; 0: no pushes).
    pub push_interval_ms: Option<u32>,
    /// States to receive (`None`: all).
    pub states: Option<Vec<String>>,
    /// Shallow clocks ([`Hello::shallow`]): the mirror learns which states are active, not how
    /// often they ticked.
    pub shallow: bool,
    /// Ask for the states' args types: the mirror's schema then carries them
    /// ([`crate::State::args_ts`]), for generating typings.
    pub types: bool,
    /// Largest server frame accepted.
    pub max_frame: usize,
    /// Largest reassembled payload accepted.
    pub max_payload: usize,
    /// Most states a worker may have (a hostile `Welcome` cannot make the client build a huge
    /// mirror).
    pub max_states: usize,
    /// Subscribe to the worker's transition stream ([`ClientOutput::Transition`]). After a
    /// reconnect it resumes where it stopped (same worker log), with
    /// [`ClientOutput::Dropped`] for what the server no longer holds.
    pub stream: bool,
    /// Upstream's `PushAllTicks`: a clock update per worker transition, no coalescing.
    pub all_ticks: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            client_id: String::from("client"),
            instance: 0,
            token: None,
            schema_hash: None,
            push_interval_ms: None,
            states: None,
            shallow: false,
            types: false,
            max_frame: wire::DEFAULT_MAX_FRAME,
            max_payload: 16 << 20,
            max_states: 4096,
            stream: false,
            all_ticks: false,
        }
    }
}

/// What the session tells its shell, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientOutput {
    /// Send this frame.
    Send(Vec<u8>),
    /// The handshake is done and the mirror holds the worker's clock.
    Ready,
    /// A mutation finished, or a remote wait was signaled (`Ok(Executed)`) or refused; its
    /// clock change is already applied to the mirror.
    Reply {
        /// Request id.
        req: u32,
        /// Outcome, or the server's error ([`Error::Rpc`]).
        result: Result<Outcome, Error>,
        /// Why a `Canceled` mutation was canceled, when the worker said.
        why: Option<Why>,
    },
    /// A resync finished (the mirror holds the full clock again).
    Synced,
    /// The mirror's clock changed (once per frame, after its replies).
    Changed,
    /// A payload from the worker (reassembled if it came in chunks).
    Payload(Payload),
    /// An error not tied to a request (a worker error: [`ErrorCode::WorkerError`]).
    Error(Error),
    /// One transition of the worker (with [`ClientConfig::stream`]); states by index in
    /// [`ClientSession::names`]' order.
    Transition(alloc::boxed::Box<wire::TransitionMsg>),
    /// This many transitions were not sent (the session fell behind); `next` is the `seq` of
    /// the next one.
    Dropped {
        /// How many.
        n: u64,
        /// The next `seq`.
        next: u64,
    },
    /// The server said a recoverable goodbye (shutdown, overload, kick): close the socket and
    /// reconnect; pending requests stay and are resent after the next handshake.
    Disconnected(Error),
    /// The session is over for good: a final refusal ([`ErrorCode::is_final`]) or a fatal
    /// protocol error. Close the socket; do not reconnect.
    Closed(Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    AwaitWelcome,
    Open,
    Closed,
}

/// A request waiting for its reply: its frame (resent as is: same request id) and when it last
/// went out.
struct Pending {
    frame: Vec<u8>,
    sent_at: u64,
    tries: u32,
    /// It went out on a connection (the server may have run it).
    sent: bool,
}

/// What [`ClientSession::call_timeouts`] decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallTimeouts {
    /// Frames to send again (their originals got no reply in time; each runs at most once).
    pub resend: Vec<Vec<u8>>,
    /// Requests that ran out of retries; they are forgotten (a late reply is ignored).
    pub expired: Vec<u32>,
}

/// Client side of a session (survives reconnects: call [`ClientSession::hello`] on each new
/// connection; pending requests can be resent and run at most once).
pub struct ClientSession {
    cfg: ClientConfig,
    phase: Phase,
    mirror: Option<Machine>,
    names: Vec<String>,
    /// Where the transition stream resumes after a reconnect.
    stream_from: wire::StreamFrom,
    schema_hash: u64,
    time: Vec<u64>,
    last_seq: u8,
    epoch: u64,
    resync: Option<u32>,
    held: Vec<(u32, Result<Outcome, Error>, Option<Why>)>,
    next_req: u32,
    pending: LiteMap<u32, Pending>,
    chunks: LiteMap<u64, Assembly>,
    chunk_seq: u64,
    resyncs: u64,
    worker_err: Option<String>,
    /// The mirror's clock moved during the current frame.
    changed: bool,
    /// Remote waits registered on the worker (their request ids), until signaled or refused.
    waits: LiteMap<u32, ()>,
    /// Shallow clocks only: added to the server's ticks so the mirror stays monotonic across
    /// reconnects (a new session numbers shallow ticks from 0 again).
    offset: Vec<u64>,
    /// Most waits the server accepts (from `Welcome`).
    max_waits: u32,
    /// The worker's replay cache (`Welcome::replay_id`) since the first handshake.
    replay_id: Option<u64>,
}

impl core::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientSession")
            .field("phase", &self.phase)
            .field("last_seq", &self.last_seq)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// The wire indexes of `states` on `mirror` (one lookup each in its index; `StateUnknown`):
/// the one place a client turns names into indexes.
pub fn state_indexes(mirror: &Machine, states: &[&str]) -> Result<Vec<u16>, Error> {
    states
        .iter()
        .map(|s| {
            mirror
                .index(s)
                .map(|i| i as u16)
                .ok_or_else(|| Error::StateUnknown((*s).into()))
        })
        .collect()
}

/// The request id of a no-sync mutation: never a real request's (those are 1..REQ_ID_WRAP).
pub const NOTIFY_REQ: u32 = 0;

fn encode_mutation(ty: MutationType, req: u32, idx: Vec<u16>, args: Option<Args>) -> Result<Vec<u8>, Error> {
    let m = MutationReq {
        req,
        states: idx,
        args: args.unwrap_or_default(),
    };
    let msg = match ty {
        MutationType::Add => ClientMsg::Add(m),
        MutationType::Remove => ClientMsg::Remove(m),
        MutationType::Set => ClientMsg::Set(m),
        MutationType::Eval => return Err(Error::InvalidArgs("eval cannot be sent".into())),
    };
    msg.encode().map_err(|e| Error::InvalidArgs(e.0))
}

fn remote(code: ErrorCode, message: impl Into<String>) -> Error {
    Error::Rpc {
        code,
        message: message.into(),
    }
}

mod chunks;

use chunks::Assembly;

impl ClientSession {
    /// A session that has not connected yet.
    pub fn new(cfg: ClientConfig) -> ClientSession {
        ClientSession {
            cfg,
            phase: Phase::AwaitWelcome,
            mirror: None,
            names: Vec::new(),
            stream_from: wire::StreamFrom::default(),
            schema_hash: 0,
            time: Vec::new(),
            last_seq: 0,
            epoch: 0,
            resync: None,
            held: Vec::new(),
            next_req: 1,
            pending: LiteMap::new(),
            chunks: LiteMap::new(),
            chunk_seq: 0,
            resyncs: 0,
            worker_err: None,
            changed: false,
            waits: LiteMap::new(),
            offset: Vec::new(),
            max_waits: 0,
            replay_id: None,
        }
    }

    /// The `Hello` frame to send first on a (new) connection.
    pub fn hello(&mut self) -> Vec<u8> {
        self.phase = Phase::AwaitWelcome;
        self.resync = None;
        self.chunks.clear();
        let h = Hello {
            version: wire::PROTOCOL_VERSION,
            client_id: self.cfg.client_id.clone(),
            instance: self.cfg.instance,
            token: self.cfg.token.clone(),
            schema_hash: self
                .cfg
                .schema_hash
                .or((self.mirror.is_some()).then_some(self.schema_hash)),
            push_interval_ms: self.cfg.push_interval_ms,
            states: self.cfg.states.clone(),
            shallow: self.cfg.shallow,
            types: self.cfg.types,
            stream: self.cfg.stream.then_some(self.stream_from),
            all_ticks: self.cfg.all_ticks,
        };
        ClientMsg::Hello(h).encode().unwrap_or_default()
    }

    /// The mirror, once the first handshake is done.
    pub fn mirror(&self) -> Option<&Machine> {
        self.mirror.as_ref()
    }

    /// True between `Welcome` and the end of the connection.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Open
    }

    /// The worker's ordered state names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The server's session epoch of the current connection.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// How many resyncs (gaps or checksum mismatches) happened so far.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// True while a request waits for its reply.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Requests sent and not answered yet.
    pub fn pending(&self) -> Vec<u32> {
        self.pending.keys().copied().collect()
    }

    /// The frame of a pending request, to resend after a reconnect (the server runs it at most
    /// once and answers a retry with the original outcome).
    pub fn resend(&self, req: u32) -> Option<Vec<u8>> {
        self.pending.get(&req).map(|p| p.frame.clone())
    }

    /// Every pending request's frame, to send after a (re)connect's handshake; marks them sent
    /// at `now_ms`. The server's replay cache runs each at most once.
    pub fn resend_pending(&mut self, now_ms: u64) -> Vec<Vec<u8>> {
        self.pending
            .iter_mut()
            .map(|(_, p)| {
                p.sent_at = now_ms;
                p.sent = true;
                p.frame.clone()
            })
            .collect()
    }

    /// Call timeouts, shared by every shell: a request without a reply for `timeout_ms` is resent
    /// (same id), up to `retries` times; then it expires and is forgotten. Nothing while the
    /// session is not open (requests wait for the next handshake instead).
    pub fn call_timeouts(&mut self, now_ms: u64, timeout_ms: u64, retries: u32) -> CallTimeouts {
        let mut out = CallTimeouts::default();
        if self.phase != Phase::Open {
            return out;
        }
        for (req, p) in self.pending.iter_mut() {
            if now_ms.saturating_sub(p.sent_at) < timeout_ms {
                continue;
            }
            if p.tries < retries {
                p.tries += 1;
                p.sent_at = now_ms;
                out.resend.push(p.frame.clone());
            } else {
                out.expired.push(*req);
            }
        }
        for req in &out.expired {
            self.pending.remove(req);
        }
        out
    }

    /// When [`ClientSession::call_timeouts`] has something to do next (ms), if anything.
    pub fn next_call_deadline(&self, timeout_ms: u64) -> Option<u64> {
        if self.phase != Phase::Open {
            return None;
        }
        self.pending
            .values()
            .map(|p| p.sent_at.saturating_add(timeout_ms))
            .min()
    }

    /// Give up on a request (timeout): its reply, if it comes, is ignored.
    pub fn forget(&mut self, req: u32) {
        self.pending.remove(&req);
    }

    /// The connection is gone: local waits and the mirror stay; pending requests stay for
    /// resending. Remote waits are gone with the server's session: their ids are returned (an
    /// event may happen while disconnected, so they fail rather than re-register).
    pub fn disconnected(&mut self) -> Vec<u32> {
        self.lose_link();
        core::mem::take(&mut self.waits)
            .into_iter()
            .map(|(req, ())| req)
            .collect()
    }

    fn lose_link(&mut self) {
        if self.phase != Phase::Closed {
            self.phase = Phase::AwaitWelcome;
        }
        // replies held for a resync stay held: the next Welcome's full clock releases them
        self.resync = None;
    }

    /// Register a remote `WhenArgs` (state by index): its request id and frame. Signaled with a
    /// [`ClientOutput::Reply`] of `Ok(Executed)`; refused with the server's error (e.g.
    /// `TooManyWaits`). Needs an open session (`NotConnected`).
    pub fn wait_args(&mut self, state: u16, args: Args) -> Result<(u32, Vec<u8>), Error> {
        self.check_wait()?;
        self.check_indexes(&[state])?;
        let req = self.take_req();
        let frame = ClientMsg::WhenArgs(WaitArgs { req, state, args })
            .encode()
            .map_err(|e| Error::InvalidArgs(e.0))?;
        self.waits.insert(req, ());
        Ok((req, frame))
    }

    /// Register a remote `WhenQueue` of the worker's queue tick `tick` (from
    /// [`Outcome::Queued`]).
    pub fn wait_queue(&mut self, tick: u64) -> Result<(u32, Vec<u8>), Error> {
        self.check_wait()?;
        let req = self.take_req();
        let frame = (ClientMsg::WhenQueue { req, tick })
            .encode()
            .map_err(|e| Error::InvalidArgs(e.0))?;
        self.waits.insert(req, ());
        Ok((req, frame))
    }

    fn check_wait(&self) -> Result<(), Error> {
        match self.phase {
            Phase::Closed => Err(Error::Disposed),
            Phase::AwaitWelcome => Err(Error::NotConnected),
            Phase::Open if self.waits.len() >= self.max_waits as usize => Err(remote(
                ErrorCode::TooManyWaits,
                alloc::format!(
                    "{} waits registered, the server's limit is {}",
                    self.waits.len(),
                    self.max_waits
                ),
            )),
            Phase::Open => Ok(()),
        }
    }

    /// Drop a registered wait: the `Unwait` frame to send (`None` if it is not registered).
    pub fn unwait(&mut self, req: u32) -> Option<Vec<u8>> {
        if self.waits.remove(&req).is_none() || self.phase != Phase::Open {
            return None;
        }
        (ClientMsg::Unwait { req }).encode().ok()
    }

    /// Remote waits registered now.
    pub fn waits(&self) -> usize {
        self.waits.len()
    }

    /// Encode a mutation by state names, sent at `now_ms`; returns its request id and frame
    /// (send it now if [`ClientSession::is_ready`], else it goes out with
    /// [`ClientSession::resend_pending`] after the next handshake). Each name is looked up once,
    /// in the mirror's index (`StateUnknown`); the session must have a mirror (`NotConnected`)
    /// and not be closed (`Disposed`).
    pub fn mutate(
        &mut self,
        ty: MutationType,
        states: &[&str],
        args: Option<Args>,
        now_ms: u64,
    ) -> Result<(u32, Vec<u8>), Error> {
        let idx = state_indexes(self.check_can_send()?, states)?;
        self.mutate_indexes(ty, idx, args, now_ms)
    }

    fn check_can_send(&self) -> Result<&Machine, Error> {
        if self.phase == Phase::Closed {
            return Err(Error::Disposed);
        }
        let Some(mirror) = self.mirror.as_ref() else {
            return Err(Error::NotConnected);
        };
        if self.pending.len() >= MAX_PENDING {
            return Err(Error::TooManyInFlight { limit: MAX_PENDING });
        }
        Ok(mirror)
    }

    /// A no-sync mutation (upstream `AddNS`): request id 0, which the server runs without a reply
    /// and without an entry in its replay cache. It is never resent (so it runs at most once: on
    /// a lost connection it may not run at all); its clock change arrives with the next push,
    /// reply or [`ClientSession::sync`]. Needs an open session (`NotConnected` otherwise).
    pub fn notify_indexes(&mut self, ty: MutationType, idx: Vec<u16>, args: Option<Args>) -> Result<Vec<u8>, Error> {
        if self.phase == Phase::Closed {
            return Err(Error::Disposed);
        }
        if self.phase != Phase::Open {
            return Err(Error::NotConnected);
        }
        self.check_indexes(&idx)?;
        encode_mutation(ty, NOTIFY_REQ, idx, args)
    }

    /// The state indexes of `states` in the worker's order (one lookup each, in the mirror's
    /// index).
    pub fn indexes(&self, states: &[&str]) -> Result<Vec<u16>, Error> {
        state_indexes(self.mirror.as_ref().ok_or(Error::NotConnected)?, states)
    }

    fn check_indexes(&self, idx: &[u16]) -> Result<(), Error> {
        match idx.iter().find(|i| usize::from(**i) >= self.names.len()) {
            Some(bad) => Err(Error::StateUnknown(alloc::format!("index {bad}"))),
            None => Ok(()),
        }
    }

    /// Ask for the worker's full clock now (upstream `Sync`): the `Sync` frame, answered with
    /// `Synced` after every frame sent before it has run (frames of one connection are handled
    /// in order), so the mirror then reflects every earlier no-sync mutation. `None` when a
    /// resync is already outstanding (its `Synced` does the same) or the session is not open.
    pub fn sync(&mut self) -> Option<Vec<u8>> {
        if self.phase != Phase::Open || self.resync.is_some() {
            return None;
        }
        let req = self.take_req();
        self.resync = Some(req);
        (ClientMsg::Sync { req }).encode().ok()
    }

    /// True while a resync or an explicit sync is outstanding.
    pub fn syncing(&self) -> bool {
        self.resync.is_some()
    }

    /// [`ClientSession::mutate`] with states by index in the worker's state order (a relay
    /// forwards indexes as they arrived).
    pub fn mutate_indexes(
        &mut self,
        ty: MutationType,
        idx: Vec<u16>,
        args: Option<Args>,
        now_ms: u64,
    ) -> Result<(u32, Vec<u8>), Error> {
        self.check_can_send()?;
        self.check_indexes(&idx)?;
        let req = self.take_req();
        let bytes = encode_mutation(ty, req, idx, args)?;
        self.pending.insert(
            req,
            Pending {
                frame: bytes.clone(),
                sent_at: now_ms,
                tries: 0,
                sent: self.phase == Phase::Open,
            },
        );
        Ok((req, bytes))
    }

    /// The next request id: 1..REQ_ID_WRAP, wrapping (2-byte varints), skipping pending ids.
    fn take_req(&mut self) -> u32 {
        loop {
            let req = self.next_req;
            self.next_req = if req + 1 >= REQ_ID_WRAP { 1 } else { req + 1 };
            if !self.pending.contains_key(&req) && !self.waits.contains_key(&req) {
                return req;
            }
        }
    }

    /// The `Bye` frame; the session is closed afterwards.
    pub fn bye(&mut self) -> Vec<u8> {
        self.phase = Phase::Closed;
        ClientMsg::Bye.encode().unwrap_or_default()
    }

    fn close(&mut self, err: Error) -> Vec<ClientOutput> {
        self.phase = Phase::Closed;
        alloc::vec![ClientOutput::Closed(err)]
    }

    fn request_sync(&mut self, out: &mut Vec<ClientOutput>) {
        if self.resync.is_some() {
            return;
        }
        self.resyncs += 1;
        let req = self.take_req();
        self.resync = Some(req);
        if let Ok(b) = (ClientMsg::Sync { req }).encode() {
            out.push(ClientOutput::Send(b));
        }
    }

    /// Apply a sequenced diff; on a gap, a duplicate or a checksum mismatch, ask for a resync.
    /// Returns false when the update was not applied.
    fn apply_update(&mut self, u: &ClockUpdate, out: &mut Vec<ClientOutput>) -> Result<bool, Error> {
        if self.resync.is_some() {
            return Ok(false); // the Synced reply will carry everything
        }
        let expected = self.last_seq.wrapping_add(1);
        let ahead = u.seq.wrapping_sub(expected);
        if ahead >= 128 {
            return Ok(false); // an old or duplicated update: already applied
        }
        if ahead != 0 {
            self.request_sync(out);
            return Ok(false);
        }
        match clock::apply(&mut self.time, &u.ticks, u.checksum) {
            Ok(()) => {
                self.last_seq = u.seq;
                if !matches!(&u.ticks, Ticks::Diff(d) if d.is_empty()) {
                    self.changed = true;
                }
                self.push_time()?;
                Ok(true)
            }
            Err(wire::ClockError::Checksum { .. }) => {
                self.request_sync(out);
                Ok(false)
            }
            Err(e) => Err(remote(ErrorCode::Malformed, e.to_string())),
        }
    }

    fn push_time(&mut self) -> Result<(), Error> {
        let Some(m) = &self.mirror else { return Ok(()) };
        m.apply_time(&self.mirrored_time())
            .map_err(|e| remote(ErrorCode::Malformed, alloc::format!("clock went backwards: {e}")))
    }

    /// The mirror takes a restarted worker's clock, lower ticks included.
    fn reset_time(&mut self) -> Result<(), Error> {
        let Some(m) = &self.mirror else { return Ok(()) };
        m.reset_time(&self.mirrored_time())
            .map_err(|e| remote(ErrorCode::Malformed, e.to_string()))
    }

    /// The mirror's ticks: the server's, plus the shallow re-base offset (if any).
    fn mirrored_time(&self) -> Vec<u64> {
        if self.offset.is_empty() {
            return self.time.clone();
        }
        self.time.iter().zip(&self.offset).map(|(t, o)| t + o).collect()
    }

    /// Shallow clocks: a new session numbers ticks from 0, so re-base the mirror on `t` —
    /// each state keeps its mirrored tick if the activation is the same, else moves by one.
    fn rebase_shallow(&mut self, t: &[u64]) {
        self.offset = self
            .mirrored_time()
            .iter()
            .zip(t)
            .map(|(m, n)| {
                let target = if m % 2 == n % 2 { *m } else { m + 1 };
                target.saturating_sub(*n)
            })
            .collect();
    }

    /// A full clock (`Welcome`, `Synced`). `restarted`: the worker restarted without its replay
    /// memory (another `Welcome::replay_id`), so its clock may be lower than the mirror's.
    fn apply_full(&mut self, u: &ClockUpdate, restarted: bool) -> Result<(), Error> {
        let Ticks::Full(t) = &u.ticks else {
            return Err(remote(ErrorCode::Malformed, "expected a full clock"));
        };
        if t.len() != self.names.len() {
            return Err(remote(ErrorCode::Malformed, "full clock of the wrong length"));
        }
        if clock::checksum(t) != u.checksum {
            return Err(remote(ErrorCode::Malformed, "full clock fails its checksum"));
        }
        let mut backwards = false;
        if self.cfg.shallow {
            self.rebase_shallow(t);
        } else if t.iter().zip(&self.time).any(|(new, old)| new < old) {
            if !restarted {
                return Err(remote(ErrorCode::Malformed, "worker clock went backwards"));
            }
            backwards = true;
        }
        if *t != self.time {
            self.changed = true;
            self.time.clone_from(t);
        }
        self.last_seq = u.seq;
        if backwards { self.reset_time() } else { self.push_time() }
    }

    fn welcome(&mut self, w: Welcome) -> Vec<ClientOutput> {
        if w.version != wire::PROTOCOL_VERSION {
            return self.close(remote(
                ErrorCode::VersionMismatch,
                alloc::format!("client speaks version {}, server {}", wire::PROTOCOL_VERSION, w.version),
            ));
        }
        if w.names.len() > self.cfg.max_states {
            return self.close(remote(
                ErrorCode::TooLarge,
                alloc::format!(
                    "worker has {} states, the limit is {}",
                    w.names.len(),
                    self.cfg.max_states
                ),
            ));
        }
        let hash = wire::schema_hash(&w.names, &w.schema);
        if hash != w.schema_hash {
            return self.close(remote(
                ErrorCode::Malformed,
                "Welcome's schema hash does not match its schema",
            ));
        }
        if let Some(expected) = self.cfg.schema_hash {
            if expected != hash {
                return self.close(remote(
                    ErrorCode::SchemaMismatch,
                    alloc::format!("expected schema {expected:016x}, worker has {hash:016x}"),
                ));
            }
        }
        if self.mirror.is_some() && hash != self.schema_hash {
            return self.close(remote(
                ErrorCode::SchemaMismatch,
                "the worker's schema changed since the last connection",
            ));
        }
        if self.mirror.is_none() {
            let mut schema = match wire::schema_from_wire(&w.names, &w.schema) {
                Ok(s) => s,
                Err(e) => return self.close(remote(ErrorCode::Malformed, e.to_string())),
            };
            for (i, ts) in w.args_types.iter().flatten() {
                if let Some(st) = w.names.get(usize::from(*i)).and_then(|n| schema.get_mut(n)) {
                    st.args_ts = Some(ts.clone());
                }
            }
            // upstream: the mirror's id is `<client>-<worker>`, its parent the client
            let opts = Opts {
                id: Some(alloc::format!("{}-{}", self.cfg.client_id, w.worker_id)),
                parent_id: Some(self.cfg.client_id.clone()),
                ..Default::default()
            };
            // mirrors of one worker in this process share one compiled schema
            let names: Vec<&str> = w.names.iter().map(|s| s.as_str()).collect();
            let m = match CompiledSchema::shared(schema, Some(&names)) {
                Ok(c) => Machine::with_schema(&c, opts),
                Err(e) => return self.close(remote(ErrorCode::Malformed, e.to_string())),
            };
            self.time = alloc::vec![0; w.names.len()];
            self.names = w.names;
            self.schema_hash = hash;
            self.mirror = Some(m);
        }
        if w.shallow != self.cfg.shallow {
            return self.close(remote(
                ErrorCode::Malformed,
                "the server ignored the shallow-clock option",
            ));
        }
        self.epoch = w.epoch;
        // another replay cache: the server restarted without the memory that makes a resend
        // safe; calls that went out may have run, so they fail instead of running twice
        let restarted = self.replay_id.is_some_and(|r| r != w.replay_id);
        let forgotten: Vec<u32> = match self.replay_id.replace(w.replay_id) {
            Some(before) if before != w.replay_id => {
                let sent: Vec<u32> = self.pending.iter().filter(|(_, p)| p.sent).map(|(r, _)| *r).collect();
                for r in &sent {
                    self.pending.remove(r);
                }
                sent
            }
            _ => Vec::new(),
        };
        let log = w.log_id.unwrap_or(0);
        if log != self.stream_from.log {
            // another log (a restarted worker): the server sends from its oldest record
            self.stream_from = wire::StreamFrom { log, seq: 0 };
        }
        self.max_waits = w.max_waits;
        if w.worker_err.is_some() {
            self.worker_err = w.worker_err;
        }
        if let Err(e) = self.apply_full(&w.update, restarted) {
            return self.close(e);
        }
        self.phase = Phase::Open;
        let mut out = alloc::vec![ClientOutput::Ready];
        for (req, result, why) in core::mem::take(&mut self.held) {
            out.push(ClientOutput::Reply { req, result, why });
        }
        for req in forgotten {
            out.push(ClientOutput::Reply {
                req,
                result: Err(remote(
                    ErrorCode::MayNotHaveRun,
                    "the server restarted without its replay memory; the call may have run (not resent)",
                )),
                why: None,
            });
        }
        out
    }

    /// Handle one server frame.
    pub fn handle_frame(&mut self, bytes: &[u8]) -> Vec<ClientOutput> {
        if self.phase == Phase::Closed {
            return Vec::new();
        }
        self.changed = false;
        let mut out = self.handle_msg(bytes);
        if core::mem::take(&mut self.changed) && self.phase != Phase::Closed {
            out.push(ClientOutput::Changed);
        }
        out
    }

    fn handle_msg(&mut self, bytes: &[u8]) -> Vec<ClientOutput> {
        let msg = match ServerMsg::decode(bytes, self.cfg.max_frame) {
            Ok(m) => m,
            Err(e) => {
                // a newer server's Welcome may not decode at all: report the version, not garbage
                if let Some(v) = wire::peek_version(bytes).filter(|v| *v != wire::PROTOCOL_VERSION) {
                    return self.close(remote(
                        ErrorCode::VersionMismatch,
                        alloc::format!("client speaks version {}, server {v}", wire::PROTOCOL_VERSION),
                    ));
                }
                return self.close(remote(ErrorCode::Malformed, e.to_string()));
            }
        };
        let mut out = Vec::new();
        match msg {
            ServerMsg::Welcome(w) => {
                if self.phase != Phase::AwaitWelcome {
                    return self.close(remote(ErrorCode::NotReady, "unexpected Welcome"));
                }
                return self.welcome(w);
            }
            ServerMsg::Bye(e) => {
                if e.code.is_final() {
                    return self.close(remote(e.code, e.message));
                }
                // a recoverable goodbye (shutdown, overload, kick): reconnect and carry on; the
                // shell's `disconnected` collects the lost waits
                self.lose_link();
                return alloc::vec![ClientOutput::Disconnected(remote(e.code, e.message))];
            }
            _ if self.phase != Phase::Open => {
                return self.close(remote(ErrorCode::NotReady, "message before Welcome"));
            }
            ServerMsg::Executed(r) => self.reply(Outcome::Executed, r, None, &mut out),
            ServerMsg::Canceled { reply, why } => self.reply(Outcome::Canceled, reply, why, &mut out),
            ServerMsg::Queued { reply, queue_tick } => self.reply(Outcome::Queued(queue_tick), reply, None, &mut out),
            ServerMsg::Signaled(r) => self.signaled(r, &mut out),
            ServerMsg::Update(u) => {
                if let Err(e) = self.apply_update(&u, &mut out) {
                    return self.close(e);
                }
            }
            ServerMsg::Synced { req, update } => {
                if self.resync != Some(req) {
                    return out; // a stale sync (an older resync): ignore
                }
                self.resync = None;
                if let Err(e) = self.apply_full(&update, false) {
                    return self.close(e);
                }
                out.push(ClientOutput::Synced);
                for (req, result, why) in core::mem::take(&mut self.held) {
                    out.push(ClientOutput::Reply { req, result, why });
                }
            }
            ServerMsg::Payload(p) => out.push(ClientOutput::Payload(p)),
            ServerMsg::Chunk(c) => match self.chunk(c) {
                Ok(Some(p)) => out.push(ClientOutput::Payload(p)),
                Ok(None) => {}
                Err(e) => out.push(ClientOutput::Error(e)),
            },
            ServerMsg::Error(e) => self.error(e, &mut out),
            ServerMsg::Transition(t) => {
                if self.cfg.stream {
                    self.stream_from.seq = t.seq + 1;
                    out.push(ClientOutput::Transition(t));
                }
            }
            ServerMsg::Dropped { n, next } => {
                if self.cfg.stream {
                    self.stream_from.seq = next;
                    out.push(ClientOutput::Dropped { n, next });
                }
            }
        }
        out
    }

    /// A mutation's reply: its update, then (if still pending) its resolution.
    fn reply(&mut self, outcome: Outcome, r: Reply, why: Option<wire::WhyMsg>, out: &mut Vec<ClientOutput>) {
        // a duplicate reply, or one we gave up on, still has its update applied
        if self.apply_reply_update(&r, out) && self.pending.remove(&r.req).is_some() {
            let why = why.map(|w| w.to_why(&self.names));
            self.resolve(r.req, Ok(outcome), why, out);
        }
    }

    /// A remote wait's signal: as a reply, for a registered wait (not one canceled meanwhile).
    fn signaled(&mut self, r: Reply, out: &mut Vec<ClientOutput>) {
        if self.apply_reply_update(&r, out) && self.waits.remove(&r.req).is_some() {
            self.resolve(r.req, Ok(Outcome::Executed), None, out);
        }
    }

    /// Apply a reply's or signal's update; false when that closed the session.
    fn apply_reply_update(&mut self, r: &Reply, out: &mut Vec<ClientOutput>) -> bool {
        if let Some(u) = &r.update {
            if let Err(e) = self.apply_update(u, out) {
                out.extend(self.close(e));
                return false;
            }
        }
        true
    }

    /// Report a result, or hold it until a pending resync's full clock is in (read-your-writes).
    fn resolve(&mut self, req: u32, result: Result<Outcome, Error>, why: Option<Why>, out: &mut Vec<ClientOutput>) {
        if self.resync.is_some() {
            self.held.push((req, result, why));
        } else {
            out.push(ClientOutput::Reply { req, result, why });
        }
    }

    fn error(&mut self, e: ErrorMsg, out: &mut Vec<ClientOutput>) {
        let err = remote(e.code, e.message);
        match e.req {
            Some(req) if self.resync == Some(req) => {
                self.resync = None;
                out.push(ClientOutput::Error(err));
            }
            Some(req) if self.waits.remove(&req).is_some() => out.push(ClientOutput::Reply {
                req,
                result: Err(err),
                why: None,
            }),
            Some(req) => {
                if self.pending.remove(&req).is_some() {
                    out.push(ClientOutput::Reply {
                        req,
                        result: Err(err),
                        why: None,
                    });
                }
            }
            None => {
                if e.code == ErrorCode::WorkerError {
                    self.worker_err = Some(err_message(&err));
                }
                out.push(ClientOutput::Error(err));
            }
        }
    }

    /// The worker's last error (its `err()`), as the server last reported it.
    pub fn worker_err(&self) -> Option<&str> {
        self.worker_err.as_deref()
    }

    /// Ids of requests currently held back until a resync completes (for tests and metrics).
    pub fn held(&self) -> BTreeSet<u32> {
        self.held.iter().map(|(r, ..)| *r).collect()
    }
}

/// The message of a remote error (without the code prefix).
fn err_message(e: &Error) -> String {
    match e {
        Error::Rpc { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
