//! The edge's side: a mirror of a worker that runs on another host, fed from NATS. One clock
//! subscription and one bucket watch per worker per edge, whatever the number of clients
//! served from it; mutations go to the worker's host by request/reply.

mod rpc;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amrpc_core::session::{CallId, replay_key};
use amrpc_core::wire;
use amrpc_core::{CompiledSchema, Error, ErrorCode, Machine, MutationType, Opts, Outcome, Slot, Wait, WaitError, Why};
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::feed::{Feed, Step};
use crate::msg::{self, ClockMsg, MutateReq, PayloadMsg, Record, Reply, Request, WaitReq};
use crate::subjects::{self, Subjects};
use crate::{BridgeError, random_id};
use rpc::{Outbound, RemoteWaits, Rpc};

/// How an edge mirrors a worker.
#[derive(Clone, Debug)]
pub struct EdgeOpts {
    /// Subject prefix ([`subjects::PREFIX`]).
    pub prefix: String,
    /// Key-value bucket of worker records ([`subjects::BUCKET`]).
    pub bucket: String,
    /// How long a forwarded mutation may take, reply and clock included.
    pub call_timeout: Duration,
    /// The longest a remote wait is kept (the host's bound applies too).
    pub max_wait: Duration,
}

impl Default for EdgeOpts {
    fn default() -> EdgeOpts {
        EdgeOpts {
            prefix: subjects::PREFIX.to_string(),
            bucket: subjects::BUCKET.to_string(),
            call_timeout: Duration::from_secs(30),
            max_wait: Duration::from_secs(3600),
        }
    }
}

struct Inner {
    client: async_nats::Client,
    name: String,
    subjects: Subjects,
    machine: Machine,
    names: Vec<String>,
    schema_hash: u64,
    first_incarnation: u64,
    opts: EdgeOpts,
    feed: Mutex<Feed>,
    /// `(incarnation, seq)` the mirror shows.
    position: watch::Sender<(u64, u64)>,
    /// Set when the worker restarted or came back with another schema: this mirror no longer
    /// follows it (a new one must be served), and calls through it are refused with this code.
    broken: Mutex<Option<(ErrorCode, String)>>,
    /// For calls made on this mirror directly (not forwarded for a client).
    own_key: u64,
    next_req: AtomicU32,
    rpc: Arc<Rpc>,
    waits: Arc<RemoteWaits>,
    payloads: broadcast::Sender<PayloadMsg>,
}

/// A worker's mirror on an edge. Cheap to clone; the feed stops when the last clone is dropped.
#[derive(Clone)]
pub struct EdgeMirror {
    inner: Arc<Inner>,
    _feed: Arc<FeedTask>,
}

/// The mirror's tasks (following the worker, sending requests), stopped with the last clone.
struct FeedTask(Vec<JoinHandle<()>>);

impl Drop for FeedTask {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl std::fmt::Debug for EdgeMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeMirror")
            .field("worker", &self.inner.name)
            .field("position", &*self.inner.position.borrow())
            .finish_non_exhaustive()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EdgeMirror {
    /// Mirror worker `name`: subscribe to its clock, read its record, follow both.
    /// [`BridgeError::UnknownWorker`] when no host has published it.
    pub async fn connect(client: async_nats::Client, name: &str, opts: EdgeOpts) -> Result<EdgeMirror, BridgeError> {
        let subjects = Subjects::new(&opts.prefix, name)?;
        let js = jetstream::new(client.clone());
        let store = js
            .get_key_value(&opts.bucket)
            .await
            .map_err(|_| BridgeError::UnknownWorker(name.to_string()))?;
        // subscribed before the record is read: nothing after it is missed
        let clock = client
            .subscribe(subjects.clock.clone())
            .await
            .map_err(BridgeError::nats)?;
        let entry = store.entry(name).await.map_err(BridgeError::nats)?;
        let entry = match entry {
            Some(e) if e.operation == kv::Operation::Put => e,
            _ => return Err(BridgeError::UnknownWorker(name.to_string())),
        };
        let rec = Record::decode(&entry.value)?;
        let schema = wire::schema_from_wire(&rec.names, &rec.schema).map_err(|e| BridgeError::Malformed {
            what: "record",
            detail: e.to_string(),
        })?;
        let order: Vec<&str> = rec.names.iter().map(String::as_str).collect();
        let compiled = CompiledSchema::shared(schema, Some(&order)).map_err(|e| BridgeError::Malformed {
            what: "record",
            detail: e.to_string(),
        })?;
        let machine = Machine::with_schema(
            &compiled,
            Opts {
                id: Some(rec.worker_id.clone()),
                ..Default::default()
            },
        );
        machine.apply_time(&rec.time).map_err(|e| BridgeError::Malformed {
            what: "record",
            detail: e.to_string(),
        })?;
        let records = store.watch_with_history(name).await.map_err(BridgeError::nats)?;
        let (out, queued) = mpsc::unbounded_channel();
        let rpc = Arc::new(Rpc::new(client.new_inbox(), out));
        let replies = client.subscribe(rpc.replies()).await.map_err(BridgeError::nats)?;
        let payloads = client
            .subscribe(subjects.payload.clone())
            .await
            .map_err(BridgeError::nats)?;
        let feed = Feed::new(&rec);
        let inner = Arc::new(Inner {
            client,
            name: name.to_string(),
            subjects,
            machine,
            names: rec.names.clone(),
            schema_hash: rec.schema_hash,
            first_incarnation: rec.incarnation,
            opts,
            position: watch::channel(feed.position()).0,
            feed: Mutex::new(feed),
            broken: Mutex::new(None),
            own_key: replay_key("amrpc-edge", random_id()),
            next_req: AtomicU32::new(1),
            waits: Arc::new(RemoteWaits {
                rpc: rpc.clone(),
                tasks: Default::default(),
            }),
            rpc,
            payloads: broadcast::channel(64).0,
        });
        let tasks = vec![
            tokio::spawn(follow(inner.clone(), store, clock, records, replies)),
            tokio::spawn(relay_payloads(inner.clone(), payloads)),
            tokio::spawn(send(inner.client.clone(), inner.subjects.rpc.clone(), queued)),
        ];
        Ok(EdgeMirror {
            inner,
            _feed: Arc::new(FeedTask(tasks)),
        })
    }

    /// The mirrored machine (reads and waits answer here).
    pub fn machine(&self) -> &Machine {
        &self.inner.machine
    }

    /// The payloads the worker publishes (a slow receiver loses the oldest: `Lagged`).
    pub fn payloads(&self) -> broadcast::Receiver<PayloadMsg> {
        self.inner.payloads.subscribe()
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A barrier with the worker's host: once it returns, every request made here before has
    /// been taken in there (mutations started, remote waits bound) and this mirror shows the
    /// worker's clock as of then.
    pub async fn sync(&self) -> Result<(), Error> {
        let (n, rx) = self.inner.rpc.ask(&Request::Sync)?;
        match self
            .inner
            .rpc
            .answer(&self.inner.name, n, rx, self.inner.opts.call_timeout)
            .await?
        {
            Reply::Met { incarnation, seq } => {
                self.inner.caught_up(incarnation, seq).await;
                Ok(())
            }
            Reply::Failed { code, message } => Err(Error::Rpc { code, message }),
            Reply::Done { .. } => Err(BridgeError::Malformed {
                what: "reply",
                detail: "a mutation's answer to a sync".into(),
            }
            .into()),
        }
    }

    /// Until this mirror shows clock `seq` of `incarnation` (or a later incarnation's clock).
    pub async fn caught_up(&self, incarnation: u64, seq: u64) {
        self.inner.caught_up(incarnation, seq).await
    }

    /// The incarnation of the worker's host this mirror started with (a record of another one:
    /// the worker restarted or moved).
    pub fn first_incarnation(&self) -> u64 {
        self.inner.first_incarnation
    }

    /// The hash of the schema mirrored (a record of another one needs a new mirror).
    pub fn schema_hash(&self) -> u64 {
        self.inner.schema_hash
    }

    /// `(incarnation, seq)` of the clock shown.
    pub fn position(&self) -> (u64, u64) {
        *self.inner.position.borrow()
    }

    /// The worker's replay cache id (what the edge's sessions announce).
    pub fn replay_id(&self) -> u64 {
        lock(&self.inner.feed).replay_id()
    }

    /// The worker's last error text.
    pub fn worker_err(&self) -> Option<String> {
        lock(&self.inner.feed).err().map(str::to_string)
    }

    /// Why this mirror stopped following its worker: it restarted (another incarnation: its
    /// replay memory is not the one this mirror's clients were told of) or came back with
    /// another schema. Serve a new mirror then (the server's `serve_edge` does).
    pub fn broken(&self) -> Option<String> {
        lock(&self.inner.broken).as_ref().map(|(_, why)| why.clone())
    }

    /// Forward mutation `call` to the worker's host; resolves once this mirror shows its
    /// effects. The request is queued when this is called, in call order.
    pub fn mutate_call(
        &self,
        call: CallId,
        ty: MutationType,
        states: Vec<u16>,
        args: amrpc_core::Args,
    ) -> impl std::future::Future<Output = Result<(Outcome, Option<Why>), Error>> + Send + 'static {
        let inner = self.inner.clone();
        let broken = lock(&inner.broken).clone();
        let asked = match broken {
            Some((code, message)) => Err(Error::Rpc { code, message }),
            None => inner.rpc.ask(&Request::Mutate(MutateReq {
                schema_hash: inner.schema_hash,
                incarnation: inner.first_incarnation,
                key: call.key,
                req: call.req,
                ty,
                states,
                args,
            })),
        };
        async move {
            let (n, rx) = asked?;
            match inner.rpc.answer(&inner.name, n, rx, inner.opts.call_timeout).await? {
                Reply::Done {
                    outcome,
                    why,
                    incarnation,
                    seq,
                } => {
                    // read-your-writes: the reply waits for the clock that includes it
                    let caught_up = inner.caught_up(incarnation, seq);
                    if tokio::time::timeout(inner.opts.call_timeout, caught_up).await.is_err() {
                        tracing::warn!(worker = %inner.name, seq, "the mirror did not catch up with a mutation in time");
                    }
                    Ok((outcome, why.map(|w| w.to_why(&inner.names))))
                }
                Reply::Failed { code, message } => Err(Error::Rpc { code, message }),
                Reply::Met { .. } => Err(BridgeError::Malformed {
                    what: "reply",
                    detail: "a wait's answer to a mutation".into(),
                }
                .into()),
            }
        }
    }

    /// [`EdgeMirror::mutate_call`] under this mirror's own client key (a call made here, not
    /// forwarded for a client).
    pub fn mutate(
        &self,
        ty: MutationType,
        states: Vec<u16>,
        args: amrpc_core::Args,
    ) -> impl std::future::Future<Output = Result<(Outcome, Option<Why>), Error>> + Send + 'static {
        let req = self.inner.next_req.fetch_add(1, Ordering::Relaxed);
        let call = CallId {
            key: self.inner.own_key,
            req,
        };
        self.mutate_call(call, ty, states, args)
    }
}

impl EdgeMirror {
    /// `WhenArgs` of the state at `state`, evaluated on the worker's host: completes once the
    /// state activated there with args that include `args`, and this mirror shows that clock.
    pub fn when_args_index(&self, state: u16, args: amrpc_core::Args) -> Wait {
        self.remote_wait(WaitReq::Args {
            schema_hash: self.inner.schema_hash,
            state,
            args,
        })
    }

    /// `WhenQueue` of the worker's queue tick `tick`, evaluated on the worker's host.
    pub fn when_queue(&self, tick: u64) -> Wait {
        self.remote_wait(WaitReq::Queue { tick })
    }

    fn remote_wait(&self, req: WaitReq) -> Wait {
        let (n, rx) = match self.inner.rpc.ask(&Request::Wait(req)) {
            Ok(a) => a,
            Err(e) => return Wait::ready(Err(WaitError::from_error(e))),
        };
        let slot = Arc::new(Slot::default());
        let inner = self.inner.clone();
        let done = slot.clone();
        let task = tokio::spawn(async move {
            let r = match inner.rpc.answer(&inner.name, n, rx, inner.opts.max_wait).await {
                Err(e) => Err(WaitError::Disconnected(format!("remote wait on {}: {e}", inner.name))),
                Ok(Reply::Failed { code, message }) => Err(WaitError::Remote { code, message }),
                Ok(Reply::Met { incarnation, seq }) => {
                    inner.caught_up(incarnation, seq).await;
                    Ok(())
                }
                Ok(Reply::Done { .. }) => Err(WaitError::Remote {
                    code: ErrorCode::Malformed,
                    message: "a mutation's answer to a wait".into(),
                }),
            };
            inner.waits.done(n);
            done.complete(r);
        });
        self.inner.waits.insert(n, task.abort_handle());
        let registry = Arc::downgrade(&self.inner.waits) as std::sync::Weak<dyn amrpc_core::WaitRegistry>;
        Wait::pending(slot, None, Some((registry, n)))
    }
}

impl Inner {
    /// Until the mirror shows clock `seq` of `incarnation` (or another incarnation).
    async fn caught_up(&self, incarnation: u64, seq: u64) {
        let mut pos = self.position.subscribe();
        let _ = pos.wait_for(|(inc, s)| *inc != incarnation || *s >= seq).await;
    }

    fn step(&self, step: Step) {
        if lock(&self.broken).is_some() {
            return; // no longer following: a new mirror serves the worker
        }
        let applied = match &step {
            Step::Idle => Ok(()),
            Step::Apply(time) => self.machine.apply_time(time),
            Step::Reset(_) => {
                // the worker restarted: its clock may be lower and its replay memory is another
                // one; this mirror's sessions cannot follow that (their clients were told the old
                // replay id), so it stops here and a new mirror is served
                let (inc, _) = lock(&self.feed).position();
                let why = format!("worker {} restarted (incarnation {inc:x}): reconnect", self.name);
                tracing::info!(worker = %self.name, "the worker restarted: this mirror stops following it");
                *lock(&self.broken) = Some((ErrorCode::Disconnected, why));
                Ok(())
            }
        };
        if let Err(e) = applied {
            tracing::error!(worker = %self.name, error = %e, "the mirror refused a clock");
        }
        let pos = lock(&self.feed).position();
        self.position.send_if_modified(|p| {
            let moved = *p != pos;
            *p = pos;
            moved
        });
    }
}

/// Follow the worker's clock subject and its record until the mirror is dropped. Bad messages
/// are logged and skipped: they never move the mirror.
async fn follow(
    inner: Arc<Inner>,
    store: kv::Store,
    mut clock: async_nats::Subscriber,
    mut records: kv::Watch,
    mut replies: async_nats::Subscriber,
) {
    loop {
        tokio::select! {
            m = replies.next() => {
                let Some(m) = m else { break };
                inner.rpc.deliver(m);
            }
            m = clock.next() => {
                let Some(m) = m else { break };
                match msg::decode::<ClockMsg>("clock message", &m.payload) {
                    Ok(c) => {
                        let step = lock(&inner.feed).on_clock(c);
                        inner.step(step);
                    }
                    Err(e) => tracing::warn!(worker = %inner.name, error = %e, "clock message skipped"),
                }
            }
            e = records.next() => {
                let entry = match e {
                    Some(Ok(entry)) => entry,
                    Some(Err(e)) => {
                        tracing::warn!(worker = %inner.name, error = %e, "watching the record failed");
                        continue;
                    }
                    None => {
                        // the watch ended (its consumer is gone): watch again, from the latest
                        tracing::warn!(worker = %inner.name, "the record watch ended; watching again");
                        match rewatch(&store, &inner.name).await {
                            Some(w) => records = w,
                            None => break,
                        }
                        continue;
                    }
                };
                if entry.operation != kv::Operation::Put {
                    tracing::info!(worker = %inner.name, "the worker's record was removed");
                    continue;
                }
                let step = Record::decode(&entry.value).and_then(|rec| lock(&inner.feed).on_record(&rec));
                match step {
                    Ok(step) => inner.step(step),
                    Err(e @ BridgeError::SchemaMismatch(_)) => {
                        tracing::error!(worker = %inner.name, error = %e, "the mirror stops following its worker");
                        *lock(&inner.broken) = Some((ErrorCode::SchemaMismatch, e.to_string()));
                    }
                    Err(e) => tracing::warn!(worker = %inner.name, error = %e, "record skipped"),
                }
            }
        }
    }
}

/// A new watch of `key`'s record, retried with backoff (100 ms doubling to 5 s, 20 tries) while
/// JetStream is unreachable; `None`: give up (the clock subscription ended too, or the bucket is
/// gone for good).
pub async fn rewatch(store: &kv::Store, key: &str) -> Option<kv::Watch> {
    let mut delay = Duration::from_millis(100);
    for _ in 0..20 {
        match store.watch_with_history(key).await {
            Ok(w) => return Some(w),
            Err(e) => tracing::warn!(key, error = %e, "watching a record failed; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    None
}

/// Publish the mirror's requests in the order they were made.
async fn send(client: async_nats::Client, subject: String, mut queued: mpsc::UnboundedReceiver<Outbound>) {
    while let Some((reply, payload)) = queued.recv().await {
        let sent = match reply {
            Some(r) => client.publish_with_reply(subject.clone(), r, payload).await,
            None => client.publish(subject.clone(), payload).await,
        };
        if let Err(e) = sent {
            // the client is closed: its waiter times out
            tracing::warn!(subject = %subject, error = %e, "a request was not sent");
        }
    }
}

/// The worker's payloads to this mirror's receivers; bad ones are logged and skipped.
async fn relay_payloads(inner: Arc<Inner>, mut sub: async_nats::Subscriber) {
    while let Some(m) = sub.next().await {
        match msg::decode::<PayloadMsg>("payload", &m.payload) {
            Ok(p) => {
                let _ = inner.payloads.send(p);
            }
            Err(e) => tracing::warn!(worker = %inner.name, error = %e, "payload skipped"),
        }
    }
}
