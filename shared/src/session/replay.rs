//! At-most-once mutations: a bounded cache of request outcomes keyed by (client instance, request
//! id), shared by every session of a worker so a retry on a new connection finds the original.

use alloc::collections::{BTreeMap, VecDeque};

use crate::sync::Mutex;
use crate::types::Outcome;

/// What the cache knows about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// First time: run it (the cache now marks it in flight).
    New,
    /// Still running elsewhere (another session took it): wait for the outcome.
    InFlight,
    /// Already ran: answer with this outcome, don't run again.
    Done(Outcome),
}

#[derive(Clone, Copy)]
enum Entry {
    InFlight,
    Done(Outcome),
}

struct Inner {
    map: BTreeMap<(u64, u32), Entry>,
    order: VecDeque<(u64, u32)>,
}

/// The replay cache. Holds at most `capacity` finished requests (oldest dropped first).
pub struct ReplayCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl core::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl ReplayCache {
    /// A cache for up to `capacity` finished requests (at least 1).
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            inner: Mutex::new(Inner {
                map: BTreeMap::new(),
                order: VecDeque::new(),
            }),
            capacity: capacity.max(1),
        }
    }

    /// Look a request up; a new one is marked in flight.
    pub fn begin(&self, instance: u64, req: u32) -> Replay {
        let mut g = self.inner.lock();
        match g.map.get(&(instance, req)) {
            Some(Entry::InFlight) => Replay::InFlight,
            Some(Entry::Done(o)) => Replay::Done(*o),
            None => {
                g.map.insert((instance, req), Entry::InFlight);
                Replay::New
            }
        }
    }

    /// Record a request's outcome.
    pub fn finish(&self, instance: u64, req: u32, outcome: Outcome) {
        let mut g = self.inner.lock();
        g.map.insert((instance, req), Entry::Done(outcome));
        g.order.push_back((instance, req));
        while g.order.len() > self.capacity {
            if let Some(k) = g.order.pop_front() {
                g.map.remove(&k);
            }
        }
    }

    /// Forget an in-flight request that failed without running (so a retry may run it).
    pub fn abandon(&self, instance: u64, req: u32) {
        let mut g = self.inner.lock();
        if matches!(g.map.get(&(instance, req)), Some(Entry::InFlight)) {
            g.map.remove(&(instance, req));
        }
    }

    /// The outcome, if the request finished.
    pub fn outcome(&self, instance: u64, req: u32) -> Option<Outcome> {
        match self.inner.lock().map.get(&(instance, req)) {
            Some(Entry::Done(o)) => Some(*o),
            _ => None,
        }
    }

    /// Entries held (finished and in flight).
    pub fn len(&self) -> usize {
        self.inner.lock().map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
