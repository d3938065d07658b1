//! Workers: served machines (local, or a relay's mirror) with what their sessions share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use amrpc_core::session::{ReplayCache, ReplaySnapshot, StreamTracer, TransitionLog};
use amrpc_core::states as names;
use amrpc_core::{Handlers, Machine, Tracer, Transition, Value};
use tokio::sync::{broadcast, watch};

use super::ServerError;
use super::upstream::Upstream;

/// A payload sent by a worker through its `SendPayload` state (or, on an edge, by the worker
/// it mirrors), to its sessions' clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerPayload {
    /// Payload kind (the `name` arg).
    pub name: String,
    /// Sender id (the `source` arg, else the worker's id).
    pub source: String,
    /// Opaque data.
    pub data: Vec<u8>,
    /// The one client id it is for (`None`: every client).
    pub destination: Option<String>,
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
    pub(super) machine: Machine,
    pub(super) relay: Option<Arc<dyn Upstream>>,
    pub(super) changes: watch::Sender<u64>,
    pub(super) payloads: broadcast::Sender<Arc<WorkerPayload>>,
    pub(super) replay: Arc<ReplayCache>,
    pub(super) sessions: Arc<AtomicUsize>,
    pub(super) kick: watch::Sender<u64>,
    pub(super) live: Arc<std::sync::Mutex<Vec<SessionInfo>>>,
    pub(super) log: Option<Arc<TransitionLog>>,
}

/// The snapshot format this build writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// A worker's state for a planned restart (JSON in a file, see `amrpc serve --state-dir`):
/// its clock and its replay memory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSnapshot {
    /// [`SNAPSHOT_FORMAT`].
    pub format: u32,
    /// The machine's id.
    pub worker_id: String,
    /// Its states, in order.
    pub state_names: Vec<String>,
    /// Their ticks.
    pub time: Vec<u64>,
    /// The outcomes of calls that ran, by client instance, under the cache's id.
    pub replay: ReplaySnapshot,
    /// When it was taken (ms since the Unix epoch).
    pub taken_at_ms: u64,
}

/// A nonzero id distinct per call and per process start (replay caches, logs).
fn fresh_id() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = N.fetch_add(1, Ordering::Relaxed);
    (nanos ^ (u64::from(std::process::id()) << 40) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).max(1)
}

/// Wall-clock ms since the Unix epoch (a transition's timestamp).
pub(super) fn unix_ms() -> u64 {
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
        Self::restored(machine, replay_instances, log_capacity, None)
    }

    /// [`Worker::new`] from a [`WorkerSnapshot`] (a planned restart): the machine takes the
    /// snapshot's clock (no handlers run) and the replay memory comes back under its id, so
    /// clients resend what they had in flight and each call still runs at most once. The
    /// snapshot must be of the same states in the same order ([`ServerError::Snapshot`]).
    pub fn restored(
        machine: Machine,
        replay_instances: usize,
        log_capacity: usize,
        snapshot: Option<&WorkerSnapshot>,
    ) -> Result<Worker, ServerError> {
        if !machine.states_verified() {
            return Err(ServerError::NotVerified(machine.id().to_string()));
        }
        check_worker_states(&machine)?;
        let replay = match snapshot {
            Some(snap) => {
                let names = machine.state_names();
                if snap.format != SNAPSHOT_FORMAT || snap.state_names != names || snap.time.len() != names.len() {
                    return Err(ServerError::Snapshot(format!(
                        "worker {}: the snapshot (format {}, {} states) is not of this machine ({} states)",
                        machine.id(),
                        snap.format,
                        snap.state_names.len(),
                        names.len()
                    )));
                }
                machine.import_clock(&amrpc_core::Serialized {
                    id: machine.id().to_string(),
                    time: snap.time.clone(),
                    state_names: snap.state_names.clone(),
                })?;
                ReplayCache::restore(replay_instances, &snap.replay)
            }
            None => ReplayCache::with_id(replay_instances, fresh_id()),
        };
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
            let p = WorkerPayload {
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
            replay: Arc::new(replay),
            sessions: Arc::new(AtomicUsize::new(0)),
            kick: watch::channel(0).0,
            live: Arc::new(std::sync::Mutex::new(Vec::new())),
            log,
        })
    }

    /// Serve a mirror of a remote worker: clients here see its clock (pushed on as the mirror
    /// updates) and their mutations go on to the remote worker. Payloads stop at the first hop,
    /// as upstream.
    pub fn relay(upstream: Arc<dyn Upstream>, replay_instances: usize) -> Result<Worker, ServerError> {
        let machine = upstream.machine().clone();
        check_worker_states(&machine)?;
        let (changes, _) = watch::channel(0u64);
        // a relay over WebSocket sends none on (payloads stop at the first hop, as upstream); an
        // edge sends on what the worker published (`send_payload`)
        let (payloads, _) = broadcast::channel(64);
        machine.bind_tracer(Arc::new(ChangeTracer {
            tx: changes.clone(),
            per_transition: true,
        }));
        let replay_id = upstream.replay_id().unwrap_or_else(fresh_id);
        Ok(Worker {
            machine,
            relay: Some(upstream),
            changes,
            payloads,
            replay: Arc::new(ReplayCache::with_id(replay_instances, replay_id)),
            sessions: Arc::new(AtomicUsize::new(0)),
            kick: watch::channel(0).0,
            live: Arc::new(std::sync::Mutex::new(Vec::new())),
            log: None,
        })
    }

    /// The worker's state for a planned restart ([`Worker::restored`]): take it after its
    /// sessions closed (e.g. after [`crate::Server::shutdown`]), so nothing runs after it.
    /// A relay has none of its own ([`ServerError::Snapshot`]).
    pub fn snapshot(&self) -> Result<WorkerSnapshot, ServerError> {
        if self.relay.is_some() {
            return Err(ServerError::Snapshot("a relay's state is its remote worker's".into()));
        }
        let e = self.machine.export()?;
        Ok(WorkerSnapshot {
            format: SNAPSHOT_FORMAT,
            worker_id: e.id,
            state_names: e.state_names,
            time: e.time,
            replay: self.replay.snapshot(),
            taken_at_ms: unix_ms(),
        })
    }

    /// True when this worker is a mirror of one that runs elsewhere (a relay or an edge).
    pub fn is_relay(&self) -> bool {
        self.relay.is_some()
    }

    /// The served machine (for a relay: the mirror's machine).
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// The replay memory shared by this worker's sessions (and by anything else that runs
    /// clients' calls on it, such as a NATS worker host): one at-most-once record per worker.
    pub fn replay_cache(&self) -> &Arc<ReplayCache> {
        &self.replay
    }

    /// The payloads this worker sends to its clients.
    pub fn payloads(&self) -> broadcast::Receiver<Arc<WorkerPayload>> {
        self.payloads.subscribe()
    }

    /// Send a payload to this worker's sessions (e.g. one its remote worker published); false
    /// when no session listens.
    pub fn send_payload(&self, p: WorkerPayload) -> bool {
        self.payloads.send(Arc::new(p)).is_ok()
    }

    /// Signals once per change of the served machine (a local worker: per queue drain).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
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
