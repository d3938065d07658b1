//! A session's remote waits (`WhenArgs`, `WhenQueue`): registered on the worker, polled with
//! the shell's waker, answered with `Signaled`.

use alloc::string::ToString;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::{ServerOutput, ServerSession, frame, req_of};
use crate::error::ErrorCode;
use crate::session::worker::WorkerPort;
use crate::wait::{Wait, WaitError};
use crate::wire::{Reply, ServerMsg, WaitArgs};

impl ServerSession {
    /// A new wait may be registered under `req`: it is a real request id, not in use, and the
    /// session is under its limit.
    pub(super) fn check_wait(&self, req: u32) -> Result<(), ServerOutput> {
        if req_of(req).is_none() || self.waits.iter().any(|(r, _)| *r == req) {
            let msg = alloc::format!("wait request id {req} is reserved or in use");
            return Err(Self::error(req_of(req), ErrorCode::InvalidParams, msg));
        }
        if self.waits.len() >= self.cfg.max_waits {
            let msg = alloc::format!(
                "{} waits registered, the limit is {}",
                self.waits.len(),
                self.cfg.max_waits
            );
            return Err(Self::error(Some(req), ErrorCode::TooManyWaits, msg));
        }
        Ok(())
    }

    pub(super) fn when_args(&mut self, w: WaitArgs, now_ms: u64, worker: &dyn WorkerPort) -> Vec<ServerOutput> {
        if let Err(e) = self.check_wait(w.req) {
            return alloc::vec![e];
        }
        let n = self.schema.names.len();
        if usize::from(w.state) >= n {
            let msg = alloc::format!("state index {} out of range ({n} states)", w.state);
            return alloc::vec![Self::error(Some(w.req), ErrorCode::InvalidParams, msg)];
        }
        match worker.when_args(w.state, w.args) {
            Ok(wait) => self.add_wait(w.req, wait, now_ms, worker),
            Err((code, message)) => alloc::vec![Self::error(Some(w.req), code, message)],
        }
    }

    pub(super) fn add_wait(&mut self, req: u32, wait: Wait, now_ms: u64, worker: &dyn WorkerPort) -> Vec<ServerOutput> {
        self.waits.push((req, wait));
        self.check_waits(now_ms, worker)
    }

    /// Poll every wait with the shell's waker; answer the finished ones.
    pub(super) fn check_waits(&mut self, now_ms: u64, worker: &dyn WorkerPort) -> Vec<ServerOutput> {
        let mut finished: Vec<(u32, Result<(), WaitError>)> = Vec::new();
        let mut cx = Context::from_waker(&self.waker);
        self.waits.retain_mut(|(req, w)| match Pin::new(w).poll(&mut cx) {
            Poll::Ready(r) => {
                finished.push((*req, r));
                false
            }
            Poll::Pending => true,
        });
        let mut out = Vec::new();
        for (req, r) in finished {
            match r {
                Ok(()) => {
                    let (err, update) = self.sequenced_update(now_ms, worker);
                    out.extend(err);
                    out.push(frame(&ServerMsg::Signaled(Reply {
                        req,
                        update: Some(update),
                    })));
                }
                Err(e) => out.push(Self::error(Some(req), e.code(), e.to_string())),
            }
        }
        out
    }
}
