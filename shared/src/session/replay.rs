//! At-most-once mutations: a bounded cache of request outcomes keyed by (client instance, request
//! id), shared by every session of a worker so a retry on a new connection finds the original.
//!
//! Each client instance keeps its last [`PER_INSTANCE`] outcomes; instances are evicted least
//! recently used first. Clients wrap request ids at [`REQ_ID_WRAP`] (so ids stay 2-byte varints),
//! far beyond the per-instance window, so a recycled id never meets a stale entry.
//!
//! Each session of an instance [`ReplayCache::claim`]s it at its handshake; an older session of
//! the same instance is then superseded ([`Replay::Superseded`]): the client has moved on to the
//! newer connection and resends there whatever it still waits for, so anything still reaching the
//! old one (read late from its socket) is stale — and may be older than the window, whose entries
//! the newer connection's calls push out.

use alloc::collections::{BTreeMap, VecDeque};

use crate::sync::Mutex;
use crate::types::Outcome;

/// Outcomes kept per client instance.
pub const PER_INSTANCE: usize = 256;
/// Request ids run from 1 to `REQ_ID_WRAP - 1`, then wrap.
pub const REQ_ID_WRAP: u32 = 1 << 14;

/// What the cache knows about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// First time: run it (the cache now marks it in flight).
    New,
    /// Still running elsewhere (another session took it): wait for the outcome.
    InFlight,
    /// Already ran: answer with this outcome, don't run again.
    Done(Outcome),
    /// A newer session of this client instance has claimed it: don't run, don't answer.
    Superseded,
}

#[derive(Clone, Copy)]
enum Entry {
    InFlight,
    Done(Outcome),
}

#[derive(Default)]
struct Instance {
    map: BTreeMap<u32, Entry>,
    order: VecDeque<u32>,
    used: u64,
    /// The number of the newest session that claimed this instance (0: none yet).
    session: u64,
}

struct Inner {
    instances: BTreeMap<u64, Instance>,
    clock: u64,
    /// Sessions numbered so far (over all instances).
    sessions: u64,
}

/// The replay cache: at most `max_instances` client instances, [`PER_INSTANCE`] outcomes each.
pub struct ReplayCache {
    inner: Mutex<Inner>,
    max_instances: usize,
}

impl core::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("len", &self.len())
            .field("max_instances", &self.max_instances)
            .finish()
    }
}

impl ReplayCache {
    /// A cache for up to `max_instances` client instances (at least 1).
    pub fn new(max_instances: usize) -> ReplayCache {
        ReplayCache {
            inner: Mutex::new(Inner {
                instances: BTreeMap::new(),
                clock: 0,
                sessions: 0,
            }),
            max_instances: max_instances.max(1),
        }
    }

    fn instance(g: &mut Inner, max: usize, id: u64) -> &mut Instance {
        g.clock += 1;
        let now = g.clock;
        if !g.instances.contains_key(&id) && g.instances.len() >= max {
            if let Some(oldest) = g.instances.iter().min_by_key(|(_, i)| i.used).map(|(k, _)| *k) {
                g.instances.remove(&oldest);
            }
        }
        let inst = g.instances.entry(id).or_default();
        inst.used = now;
        inst
    }

    /// A session of `instance` completed its handshake: returns its number, for
    /// [`ReplayCache::begin`]. Every older session of the instance is superseded from now on.
    pub fn claim(&self, instance: u64) -> u64 {
        let mut g = self.inner.lock();
        g.sessions += 1;
        let n = g.sessions;
        Self::instance(&mut g, self.max_instances, instance).session = n;
        n
    }

    /// Look a request of session `session` (its [`ReplayCache::claim`]) up; a new one is marked
    /// in flight.
    pub fn begin(&self, instance: u64, session: u64, req: u32) -> Replay {
        let mut g = self.inner.lock();
        let inst = Self::instance(&mut g, self.max_instances, instance);
        if session < inst.session {
            return Replay::Superseded;
        }
        match inst.map.get(&req) {
            Some(Entry::InFlight) => Replay::InFlight,
            Some(Entry::Done(o)) => Replay::Done(*o),
            None => {
                inst.map.insert(req, Entry::InFlight);
                Replay::New
            }
        }
    }

    /// Record a request's outcome.
    pub fn finish(&self, instance: u64, req: u32, outcome: Outcome) {
        let mut g = self.inner.lock();
        let inst = Self::instance(&mut g, self.max_instances, instance);
        inst.map.insert(req, Entry::Done(outcome));
        inst.order.push_back(req);
        while inst.order.len() > PER_INSTANCE {
            if let Some(old) = inst.order.pop_front() {
                if matches!(inst.map.get(&old), Some(Entry::Done(_))) {
                    inst.map.remove(&old);
                }
            }
        }
    }

    /// Forget an in-flight request that failed without running (so a retry may run it).
    pub fn abandon(&self, instance: u64, req: u32) {
        let mut g = self.inner.lock();
        if let Some(inst) = g.instances.get_mut(&instance) {
            if matches!(inst.map.get(&req), Some(Entry::InFlight)) {
                inst.map.remove(&req);
            }
        }
    }

    /// The outcome, if the request finished.
    pub fn outcome(&self, instance: u64, req: u32) -> Option<Outcome> {
        match self.inner.lock().instances.get(&instance).and_then(|i| i.map.get(&req)) {
            Some(Entry::Done(o)) => Some(*o),
            _ => None,
        }
    }

    /// Entries held (finished and in flight), over all instances.
    pub fn len(&self) -> usize {
        self.inner.lock().instances.values().map(|i| i.map.len()).sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
