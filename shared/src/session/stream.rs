//! The worker's transition log: what the transition stream sends.
//!
//! One [`TransitionLog`] per worker, fed by a [`StreamTracer`] bound to the worker's machine and
//! read by every subscribed [`crate::session::ServerSession`] through its own cursor. The log is
//! a ring of encoded frames: a transition is encoded once, whatever the number of readers; a
//! reader that falls behind the ring's start gets a `Dropped` marker; memory is bounded by the
//! ring's capacity; the worker never waits for a reader. While no session subscribes, the tracer
//! returns after one atomic load.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::sync::Mutex;
use crate::tracer::Tracer;
use crate::transition::{StepData, StepState, Transition};
use crate::types::{Args, Value};
use crate::wire::{ServerMsg, SourceMsg, StepMsg, StepSide, TransitionMsg, WhyMsg};

/// Records a log keeps by default.
pub const LOG_CAPACITY: usize = 1024;
/// Encoded args above this many bytes are cut to their keys.
pub const ARGS_CAP: usize = 1024;
/// Most records one poll of a session sends (the rest follow on the next poll).
pub const MAX_PER_POLL: usize = 64;

/// One transition in the log.
#[derive(Debug)]
pub struct Record {
    /// Its position (consecutive, from 1).
    pub seq: u64,
    /// The `ServerMsg::Transition` frame, encoded once.
    pub frame: Vec<u8>,
    /// Every state's tick after it (for sessions with `all_ticks`).
    pub ticks: Vec<u64>,
}

struct Ring {
    records: VecDeque<Arc<Record>>,
    /// The `seq` the next record gets.
    next: u64,
    /// Client ids of the open sessions by epoch (to name a transition's source).
    clients: BTreeMap<u64, String>,
}

/// A worker's recent transitions, shared by its sessions. See the module docs.
pub struct TransitionLog {
    id: u64,
    ring: Mutex<Ring>,
    capacity: usize,
    args_cap: usize,
    subscribers: AtomicUsize,
    now_ms: fn() -> u64,
}

impl core::fmt::Debug for TransitionLog {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TransitionLog")
            .field("capacity", &self.capacity)
            .field("subscribers", &self.subscribers())
            .finish_non_exhaustive()
    }
}

/// What a reader gets from [`TransitionLog::read`].
#[derive(Debug, Default)]
pub struct Batch {
    /// Transitions the reader missed (gone from the ring), before `records`.
    pub dropped: u64,
    /// The next records, in order.
    pub records: Vec<Arc<Record>>,
    /// More are waiting (the batch was cut at its limit).
    pub more: bool,
}

impl TransitionLog {
    /// A log of at most `capacity` records (at least 1); `id` tells it from other logs (of a
    /// restarted worker: pick it at random, or from the time); `now_ms` is the wall clock (ms
    /// since the Unix epoch) stamped on each record.
    pub fn new(id: u64, capacity: usize, now_ms: fn() -> u64) -> TransitionLog {
        TransitionLog {
            id: id.max(1),
            ring: Mutex::new(Ring {
                records: VecDeque::new(),
                next: 1,
                clients: BTreeMap::new(),
            }),
            capacity: capacity.max(1),
            args_cap: ARGS_CAP,
            subscribers: AtomicUsize::new(0),
            now_ms,
        }
    }

    /// The log's id (`Welcome::log_id`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sessions reading the log right now (transitions are recorded only while there are any).
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Acquire)
    }

    /// Start reading: records are kept from now on. Pair with [`Self::unsubscribe`].
    pub fn subscribe(&self) {
        self.subscribers.fetch_add(1, Ordering::AcqRel);
    }

    /// Stop reading. The last reader leaving empties the ring (nobody could read it).
    pub fn unsubscribe(&self) {
        if self.subscribers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.ring.lock().records.clear();
        }
    }

    /// Name a session's client, so transitions it causes show its id.
    pub fn name_session(&self, epoch: u64, client_id: &str) {
        self.ring.lock().clients.insert(epoch, String::from(client_id));
    }

    /// Forget a session's name (it closed).
    pub fn forget_session(&self, epoch: u64) {
        self.ring.lock().clients.remove(&epoch);
    }

    /// The `seq` the next transition will get.
    pub fn next_seq(&self) -> u64 {
        self.ring.lock().next
    }

    /// The `seq` of the oldest record held (the next one's when empty).
    pub fn oldest_seq(&self) -> u64 {
        let ring = self.ring.lock();
        ring.records.front().map_or(ring.next, |r| r.seq)
    }

    /// Records from `from` on (at most `max`): `from == 0` means the oldest held, without a
    /// drop marker. A `from` older than the ring's start counts the missing ones as dropped.
    pub fn read(&self, from: u64, max: usize) -> Batch {
        let ring = self.ring.lock();
        let start = ring.records.front().map_or(ring.next, |r| r.seq);
        let (dropped, first) = if from == 0 || from >= start {
            (0, from.max(start))
        } else {
            (start - from, start)
        };
        let skip = usize::try_from(first - start).unwrap_or(usize::MAX);
        let records: Vec<Arc<Record>> = ring.records.iter().skip(skip).take(max).cloned().collect();
        let more = ring.records.len() > skip.saturating_add(records.len());
        Batch { dropped, records, more }
    }

    /// Append a finished transition (the tracer calls this).
    fn record(&self, t: &Transition) {
        let c = &t.c;
        let pos = |id: usize| u16::try_from(c.order_pos[id]).unwrap_or(u16::MAX);
        let side = |s: StepState| match s {
            StepState::None => StepSide::None,
            StepState::Any => StepSide::Any,
            StepState::Id(i) => StepSide::State(pos(i)),
        };
        let steps = t
            .steps
            .iter()
            .map(|s| StepMsg {
                ty: s.ty,
                from: side(s.from),
                to: side(s.to),
                relation: match &s.data {
                    StepData::Relation(r) => Some(*r),
                    _ => None,
                },
                handler: match &s.data {
                    StepData::Handler(h) => Some(String::from(&**h)),
                    _ => None,
                },
            })
            .collect();
        let (args, args_cut) = self.capped(t.args());
        let ticks: Vec<u64> = match &t.time_after {
            Some(after) => c.order.iter().map(|i| after[*i]).collect(),
            None => c.order.iter().map(|i| t.time_before[*i]).collect(),
        };
        let mut ring = self.ring.lock();
        let source = match t.mutation.source {
            _ if t.mutation.auto => SourceMsg::Auto,
            0 => SourceMsg::Worker,
            epoch => SourceMsg::Session {
                epoch,
                client: ring.clients.get(&epoch).cloned().unwrap_or_default(),
            },
        };
        let seq = ring.next;
        let msg = TransitionMsg {
            seq,
            time_ms: (self.now_ms)(),
            ty: t.mutation.ty,
            called: t.mutation.called.iter().map(|i| pos(*i)).collect(),
            args,
            args_cut,
            source,
            accepted: t.accepted,
            why: t.cause().map(|(c, compiled)| WhyMsg::from_cause(c, compiled)),
            ticks: ticks.clone(),
            steps,
        };
        let frame = match ServerMsg::Transition(alloc::boxed::Box::new(msg)).encode() {
            Ok(f) => f,
            // opaque args were cut already; nothing else can fail to encode
            Err(_) => return,
        };
        ring.next += 1;
        if ring.records.len() >= self.capacity {
            ring.records.pop_front();
        }
        ring.records.push_back(Arc::new(Record { seq, frame, ticks }));
    }

    /// `args` as sent: opaque values (not encodable) dropped, and past the cap only the keys.
    fn capped(&self, args: &Args) -> (Args, bool) {
        let mut out = Args::new();
        let mut cut = false;
        for (k, v) in args.iter() {
            if matches!(v, Value::Opaque(_)) {
                cut = true;
                continue;
            }
            out.insert(k.clone(), v.clone());
        }
        let size = postcard::to_allocvec(&out).map_or(usize::MAX, |b| b.len());
        if size > self.args_cap {
            for v in out.0.values_mut() {
                *v = Value::Null;
            }
            cut = true;
        }
        (out, cut)
    }
}

/// Feeds a [`TransitionLog`] from the worker's machine (bind it with `Machine::bind_tracer`).
#[derive(Debug)]
pub struct StreamTracer(pub Arc<TransitionLog>);

impl Tracer for StreamTracer {
    fn transition_end(&self, t: &Transition) {
        if self.0.subscribers() == 0 {
            return;
        }
        self.0.record(t);
    }
}
