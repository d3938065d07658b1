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
use alloc::vec::Vec;

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
    /// Instances by when they were last used (`Instance::used` → instance id).
    lru: BTreeMap<u64, u64>,
    clock: u64,
    /// Sessions numbered so far (over all instances).
    sessions: u64,
}

/// The replay cache: at most `max_instances` client instances, [`PER_INSTANCE`] outcomes each.
/// Its id goes to clients in `Welcome::replay_id`: a client that sees another id after a
/// reconnect knows this memory is gone (a restart without a snapshot) and does not resend.
pub struct ReplayCache {
    inner: Mutex<Inner>,
    max_instances: usize,
    id: u64,
}

/// One instance's finished outcomes, oldest first.
type Done = Vec<(u32, Outcome)>;

/// A replay cache's finished outcomes, to restore after a planned restart (in-flight entries
/// are left out: nothing runs across a restart).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplaySnapshot {
    /// The cache's id ([`ReplayCache::id`]).
    pub id: u64,
    /// Per client instance (least recently used first): its outcomes, oldest first.
    pub instances: Vec<(u64, Done)>,
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
        Self::with_id(max_instances, 0)
    }

    /// [`ReplayCache::new`] with an id (a shell picks one per worker start; 0: unnamed, which
    /// clients cannot tell apart across restarts).
    pub fn with_id(max_instances: usize, id: u64) -> ReplayCache {
        ReplayCache {
            inner: Mutex::new(Inner {
                instances: BTreeMap::new(),
                lru: BTreeMap::new(),
                clock: 0,
                sessions: 0,
            }),
            max_instances: max_instances.max(1),
            id,
        }
    }

    /// The id clients see in `Welcome::replay_id`.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The finished outcomes, for [`ReplayCache::restore`] after a restart.
    pub fn snapshot(&self) -> ReplaySnapshot {
        let g = self.inner.lock();
        // (last used, instance, outcomes oldest first)
        let mut instances: Vec<(u64, u64, Done)> = g
            .instances
            .iter()
            .map(|(k, i)| {
                let done = i
                    .order
                    .iter()
                    .filter_map(|r| match i.map.get(r) {
                        Some(Entry::Done(o)) => Some((*r, *o)),
                        _ => None,
                    })
                    .collect();
                (i.used, *k, done)
            })
            .collect();
        instances.sort_by_key(|(used, ..)| *used);
        ReplaySnapshot {
            id: self.id,
            instances: instances.into_iter().map(|(_, k, d)| (k, d)).collect(),
        }
    }

    /// A cache holding a snapshot's outcomes under its id: retries of calls that ran before
    /// the restart get their outcome, not a second run.
    pub fn restore(max_instances: usize, snap: &ReplaySnapshot) -> ReplayCache {
        let cache = Self::with_id(max_instances, snap.id);
        for (instance, done) in &snap.instances {
            for (req, outcome) in done {
                cache.finish(*instance, *req, *outcome);
            }
        }
        cache
    }

    /// Instance `id`, made the most recently used (created, evicting the least recently used
    /// one when full). O(log n): the recency order is kept in `lru`, not found by a scan (a
    /// scan over 4 096 instances per new client was 9 % of a server's connection setup).
    fn instance(g: &mut Inner, max: usize, id: u64) -> &mut Instance {
        match g.instances.get(&id).map(|i| i.used) {
            // already the most recent: the order stands (the common case, one busy client)
            Some(used) if used == g.clock => {}
            Some(used) => {
                g.lru.remove(&used);
                g.clock += 1;
                g.lru.insert(g.clock, id);
            }
            None => {
                if g.instances.len() >= max {
                    if let Some((_, oldest)) = g.lru.pop_first() {
                        g.instances.remove(&oldest);
                    }
                }
                g.clock += 1;
                g.lru.insert(g.clock, id);
            }
        }
        let now = g.clock;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The instances a cache still holds (those with an outcome of request 1).
    fn held(c: &ReplayCache, ids: core::ops::Range<u64>) -> Vec<u64> {
        ids.filter(|i| c.outcome(*i, 1).is_some()).collect()
    }

    #[test]
    fn the_least_recently_used_instance_goes_first() {
        let c = ReplayCache::new(3);
        for i in 1..=3 {
            c.finish(i, 1, Outcome::Executed);
        }
        // 1 used again (its begin), twice in a row (the fast path), then 4 comes: 2 goes
        assert_eq!(c.begin(1, 0, 2), Replay::New);
        assert_eq!(c.begin(1, 0, 3), Replay::New);
        c.finish(4, 1, Outcome::Executed);
        assert_eq!(held(&c, 1..6), [1, 3, 4]);
        // claims count as use: 3, then 5 comes: 1 goes
        c.claim(3);
        c.finish(5, 1, Outcome::Executed);
        assert_eq!(held(&c, 1..6), [3, 4, 5]);
    }

    #[test]
    fn eviction_matches_a_scan_over_last_use() {
        // the model: evict the instance with the smallest last use, as a scan would
        let c = ReplayCache::new(8);
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for t in 1..5_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = x % 20;
            if !model.contains_key(&id) && model.len() >= 8 {
                let oldest = model.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k);
                if let Some(o) = oldest {
                    model.remove(&o);
                }
            }
            model.insert(id, t);
            c.finish(id, 1, Outcome::Executed);
            let want: Vec<u64> = model.keys().copied().collect();
            assert_eq!(held(&c, 0..20), want, "step {t}");
        }
    }
}
