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

use crate::BridgeError;
use crate::msg::{self, Reply, Request};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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
