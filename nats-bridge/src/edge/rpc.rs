//! An edge's requests to the worker's host: published in the order they are made (one task
//! sends them all on the worker's request subject), answered on one inbox subscription per
//! mirror (`<inbox>.<n>`), so a remote wait made before a mutation is bound on the worker
//! before the mutation runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amrpc_core::{Error, ErrorCode, WaitRegistry};
use tokio::sync::{mpsc, oneshot};

use super::lock;
use crate::BridgeError;
use crate::msg::{self, Reply, Request};

/// One request to publish: its reply subject (none for `Unwait`) and its bytes.
pub(super) type Outbound = (Option<String>, bytes::Bytes);

/// Requests in flight, by number.
pub(super) struct Rpc {
    out: mpsc::UnboundedSender<Outbound>,
    inbox: String,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<async_nats::Message>>>,
}

impl Rpc {
    /// `inbox`: the prefix of this mirror's reply subjects; `out`: the sending task's queue.
    pub(super) fn new(inbox: String, out: mpsc::UnboundedSender<Outbound>) -> Rpc {
        Rpc {
            out,
            inbox,
            next: AtomicU64::new(1),
            waiting: Mutex::default(),
        }
    }

    /// The subject of all replies (`<inbox>.*`).
    pub(super) fn replies(&self) -> String {
        format!("{}.*", self.inbox)
    }

    fn reply_subject(&self, n: u64) -> String {
        format!("{}.{n}", self.inbox)
    }

    /// Queue `req` now (in call order) and return its number and answer.
    pub(super) fn ask(&self, req: &Request) -> Result<(u64, oneshot::Receiver<async_nats::Message>), Error> {
        let bytes = msg::encode(req)?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(n, tx);
        if self.out.send((Some(self.reply_subject(n)), bytes.into())).is_err() {
            lock(&self.waiting).remove(&n);
            return Err(Error::Disposed);
        }
        Ok((n, rx))
    }

    /// Queue `req`, which has no answer.
    fn tell(&self, req: &Request) {
        if let Ok(bytes) = msg::encode(req) {
            let _ = self.out.send((None, bytes.into()));
        }
    }

    /// An answer from the inbox subscription.
    pub(super) fn deliver(&self, m: async_nats::Message) {
        let n = m.subject.rsplit('.').next().and_then(|n| n.parse::<u64>().ok());
        match n.and_then(|n| lock(&self.waiting).remove(&n)) {
            Some(tx) => {
                let _ = tx.send(m);
            }
            // late (its waiter timed out or went away) or forged: dropped
            None => tracing::debug!(subject = %m.subject, "reply to no request dropped"),
        }
    }

    /// Await request `n`'s answer for at most `limit`; no responders is `Disconnected`, no
    /// answer `MayNotHaveRun` (it may have run on the worker).
    pub(super) async fn answer(
        &self,
        worker: &str,
        n: u64,
        rx: oneshot::Receiver<async_nats::Message>,
        limit: Duration,
    ) -> Result<Reply, Error> {
        let m = match tokio::time::timeout(limit, rx).await {
            Ok(Ok(m)) => m,
            Ok(Err(_)) => return Err(Error::Disposed),
            Err(_) => {
                lock(&self.waiting).remove(&n);
                return Err(Error::Rpc {
                    code: ErrorCode::MayNotHaveRun,
                    message: format!("no answer from the host of {worker} within {limit:?}"),
                });
            }
        };
        if m.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return Err(Error::Rpc {
                code: ErrorCode::Disconnected,
                message: format!("no host serves worker {worker}"),
            });
        }
        msg::decode::<Reply>("reply", &m.payload).map_err(BridgeError::into_error)
    }
}

/// Remote waits in flight by request number: dropping a wait stops its task and tells the
/// host to drop its binding.
pub(super) struct RemoteWaits {
    pub(super) rpc: Arc<Rpc>,
    pub(super) tasks: Mutex<HashMap<u64, tokio::task::AbortHandle>>,
}

impl RemoteWaits {
    pub(super) fn insert(&self, n: u64, task: tokio::task::AbortHandle) {
        lock(&self.tasks).insert(n, task);
    }

    /// A wait's task finished by itself.
    pub(super) fn done(&self, n: u64) {
        lock(&self.tasks).remove(&n);
    }
}

impl WaitRegistry for RemoteWaits {
    fn unbind(&self, id: u64) {
        if let Some(t) = lock(&self.tasks).remove(&id) {
            t.abort();
            lock(&self.rpc.waiting).remove(&id);
            self.rpc.tell(&Request::Unwait {
                reply: self.rpc.reply_subject(id),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(subject: &str, payload: &[u8]) -> async_nats::Message {
        async_nats::Message {
            subject: subject.into(),
            reply: None,
            payload: bytes::Bytes::copy_from_slice(payload),
            headers: None,
            status: None,
            description: None,
            length: payload.len(),
        }
    }

    fn rpc() -> (Rpc, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Rpc::new("_INBOX.edge".into(), tx), rx)
    }

    #[tokio::test]
    async fn requests_go_out_in_order_with_numbered_reply_subjects() {
        let (rpc, mut out) = rpc();
        let (a, _) = rpc.ask(&Request::Sync).unwrap();
        let (b, _) = rpc.ask(&Request::Sync).unwrap();
        assert!(a < b);
        assert_eq!(out.recv().await.unwrap().0, Some(format!("_INBOX.edge.{a}")));
        assert_eq!(out.recv().await.unwrap().0, Some(format!("_INBOX.edge.{b}")));
    }

    #[tokio::test]
    async fn a_forged_reply_is_a_typed_error_and_a_stray_one_is_dropped() {
        let (rpc, _out) = rpc();
        let (n, rx) = rpc.ask(&Request::Sync).unwrap();
        // a reply to no request, and one that is not a number: dropped, the request still waits
        rpc.deliver(message(&format!("_INBOX.edge.{}", n + 100), b"x"));
        rpc.deliver(message("_INBOX.edge.nope", b"x"));
        assert_eq!(lock(&rpc.waiting).len(), 1);
        // garbage as the answer of a waiting request: Malformed, never a result
        rpc.deliver(message(&format!("_INBOX.edge.{n}"), b"\xff\xff garbage"));
        let err = rpc.answer("w", n, rx, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Malformed);
    }

    #[tokio::test]
    async fn no_answer_in_time_may_not_have_run() {
        let (rpc, _out) = rpc();
        let (n, rx) = rpc.ask(&Request::Sync).unwrap();
        let err = rpc.answer("w", n, rx, Duration::from_millis(10)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::MayNotHaveRun);
        assert!(lock(&rpc.waiting).is_empty(), "forgotten");
    }
}
