//! A session's guards, on the shell's clock: the `Hello` deadline, pings after silence and the
//! dead-peer timeout, the in-flight and per-second mutation limits (protocol 4).

use alloc::vec::Vec;

use super::{Phase, ServerOutput, ServerSession};
use crate::error::ErrorCode;

/// A token bucket in thousandths of a token (integer arithmetic, time from the shell).
#[derive(Clone, Copy, Debug)]
pub(super) struct Bucket {
    pub(super) milli: u64,
    pub(super) at: u64,
}

impl Bucket {
    /// Take one token at `now_ms`, refilling `rate` per second up to `burst`.
    pub(super) fn take(&mut self, now_ms: u64, rate: u32, burst: u32) -> bool {
        if rate == 0 {
            return true;
        }
        let cap = u64::from(burst.max(1)) * 1000;
        let refill = now_ms.saturating_sub(self.at).saturating_mul(u64::from(rate));
        self.milli = self.milli.saturating_add(refill).min(cap);
        self.at = self.at.max(now_ms);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

impl ServerSession {
    pub(super) fn too_many_in_flight(&self, req: u32) -> ServerOutput {
        let msg = alloc::format!(
            "{} mutations in flight, the limit is {}",
            self.forwarded + self.deferred.len(),
            self.cfg.max_in_flight
        );
        Self::error(Some(req), ErrorCode::TooManyInFlight, msg)
    }

    /// The error for a mutation past the session's rate, if it is.
    pub(super) fn limited(&mut self, req: Option<u32>, now_ms: u64) -> Option<ServerOutput> {
        let (rate, burst) = (self.cfg.mutation_rate, self.cfg.mutation_burst);
        if self.bucket.take(now_ms, rate, burst) {
            return None;
        }
        let msg = alloc::format!("more than {rate} mutations per second (burst {burst}); it did not run");
        Some(Self::error(req, ErrorCode::RateLimited, msg))
    }

    /// When the next ping is due, or the unanswered one expires.
    pub(super) fn keepalive_deadline(&self) -> Option<u64> {
        if self.cfg.ping_interval_ms == 0 {
            return None;
        }
        Some(match self.ping_at {
            Some(at) => at + self.cfg.ping_timeout_ms.max(1),
            None => self.heard_at + self.cfg.ping_interval_ms,
        })
    }

    /// A silent connection's end (no `Hello` in time), a ping due, or a dead peer's end.
    pub(super) fn keepalive(&mut self, now_ms: u64) -> Option<Vec<ServerOutput>> {
        if self.phase == Phase::AwaitHello {
            let limit = self.cfg.hello_timeout_ms;
            if limit > 0 && now_ms >= self.cfg.opened_at_ms + limit {
                let msg = alloc::format!("no Hello within {limit} ms");
                return Some(self.close(None, ErrorCode::Timeout, msg));
            }
            return None;
        }
        self.keepalive_deadline().filter(|d| now_ms >= *d)?;
        if let Some(at) = self.ping_at {
            let msg = alloc::format!("no answer to a ping for {} ms", now_ms.saturating_sub(at));
            return Some(self.close(None, ErrorCode::Timeout, msg));
        }
        self.ping_at = Some(now_ms);
        Some(alloc::vec![ServerOutput::Ping])
    }
}
