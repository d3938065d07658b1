//! The edge's side: a mirror of a worker that runs on another host, fed from NATS. One clock
//! subscription and one bucket watch per worker per edge, whatever the number of clients
//! served from it; mutations go to the worker's host by request/reply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amrpc_core::session::{CallId, replay_key};
use amrpc_core::wire;
use amrpc_core::{
    CompiledSchema, Error, ErrorCode, Machine, MutationType, Opts, Outcome, Slot, Wait, WaitError, WaitRegistry, Why,
};
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::feed::{Feed, Step};
use crate::msg::{self, ClockMsg, MutateReply, MutateReq, Record, WaitReply, WaitReq};
use crate::subjects::{self, Subjects};
use crate::{BridgeError, random_id};

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
    opts: EdgeOpts,
    feed: Mutex<Feed>,
    /// `(incarnation, seq)` the mirror shows.
    position: watch::Sender<(u64, u64)>,
    /// Set when the worker came back with another schema: this mirror can no longer follow it.
    broken: Mutex<Option<String>>,
    /// For calls made on this mirror directly (not forwarded for a client).
    own_key: u64,
    next_req: AtomicU32,
    waits: Arc<RemoteWaits>,
}

/// Remote waits in flight, by key: dropping a wait aborts its request.
#[derive(Default)]
struct RemoteWaits {
    next: AtomicU64,
    tasks: Mutex<HashMap<u64, tokio::task::AbortHandle>>,
}

impl WaitRegistry for RemoteWaits {
    fn unbind(&self, id: u64) {
        if let Some(t) = lock(&self.tasks).remove(&id) {
            t.abort();
        }
    }
}

/// A worker's mirror on an edge. Cheap to clone; the feed stops when the last clone is dropped.
#[derive(Clone)]
pub struct EdgeMirror {
    inner: Arc<Inner>,
    _feed: Arc<FeedTask>,
}

struct FeedTask(JoinHandle<()>);

impl Drop for FeedTask {
    fn drop(&mut self) {
        self.0.abort();
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decode and check a bucket entry.
fn read_record(value: &[u8]) -> Result<Record, BridgeError> {
    let rec: Record = msg::decode("record", value)?;
    rec.check()?;
    Ok(rec)
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
        let rec = read_record(&entry.value)?;
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
        let feed = Feed::new(&rec);
        let inner = Arc::new(Inner {
            client,
            name: name.to_string(),
            subjects,
            machine,
            names: rec.names.clone(),
            schema_hash: rec.schema_hash,
            opts,
            position: watch::channel(feed.position()).0,
            feed: Mutex::new(feed),
            broken: Mutex::new(None),
            own_key: replay_key("amrpc-edge", random_id()),
            next_req: AtomicU32::new(1),
            waits: Arc::default(),
        });
        let task = tokio::spawn(follow(inner.clone(), clock, records));
        Ok(EdgeMirror {
            inner,
            _feed: Arc::new(FeedTask(task)),
        })
    }

    /// The mirrored machine (reads and waits answer here).
    pub fn machine(&self) -> &Machine {
        &self.inner.machine
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
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

    /// Why this mirror stopped following its worker (it came back with another schema).
    pub fn broken(&self) -> Option<String> {
        lock(&self.inner.broken).clone()
    }

    /// Forward mutation `call` to the worker's host; resolves once this mirror shows its
    /// effects (or after `call_timeout`).
    pub fn mutate_call(
        &self,
        call: CallId,
        ty: MutationType,
        states: Vec<u16>,
        args: amrpc_core::Args,
    ) -> impl std::future::Future<Output = Result<(Outcome, Option<Why>), Error>> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let timeout = inner.opts.call_timeout;
            match tokio::time::timeout(timeout, inner.forward(call, ty, states, args)).await {
                Ok(r) => r,
                Err(_) => Err(BridgeError::Timeout(format!("mutation on {} after {timeout:?}", inner.name)).into()),
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
        let bytes = match msg::encode(&req) {
            Ok(b) => b,
            Err(e) => return Wait::ready(Err(WaitError::from_error(e.into()))),
        };
        let slot = Arc::new(Slot::default());
        let key = self.inner.waits.next.fetch_add(1, Ordering::Relaxed);
        let inner = self.inner.clone();
        let done = slot.clone();
        let task = tokio::spawn(async move {
            let request = async_nats::Request::new()
                .payload(bytes.into())
                .timeout(Some(inner.opts.max_wait));
            let r = match inner.client.send_request(inner.subjects.wait.clone(), request).await {
                Err(e) => Err(WaitError::Disconnected(format!("remote wait on {}: {e}", inner.name))),
                Ok(m) => match msg::decode::<WaitReply>("wait reply", &m.payload) {
                    Err(e) => Err(WaitError::Remote {
                        code: e.code(),
                        message: e.to_string(),
                    }),
                    Ok(WaitReply::Failed { code, message }) => Err(WaitError::Remote { code, message }),
                    Ok(WaitReply::Done { incarnation, seq }) => {
                        inner.caught_up(incarnation, seq).await;
                        Ok(())
                    }
                },
            };
            lock(&inner.waits.tasks).remove(&key);
            done.complete(r);
        });
        lock(&self.inner.waits.tasks).insert(key, task.abort_handle());
        if task.is_finished() {
            lock(&self.inner.waits.tasks).remove(&key);
        }
        let registry = Arc::downgrade(&self.inner.waits) as std::sync::Weak<dyn WaitRegistry>;
        Wait::pending(slot, None, Some((registry, key)))
    }
}

impl Inner {
    /// Until the mirror shows clock `seq` of `incarnation` (or another incarnation).
    async fn caught_up(&self, incarnation: u64, seq: u64) {
        let mut pos = self.position.subscribe();
        let _ = pos.wait_for(|(inc, s)| *inc != incarnation || *s >= seq).await;
    }

    async fn forward(
        &self,
        call: CallId,
        ty: MutationType,
        states: Vec<u16>,
        args: amrpc_core::Args,
    ) -> Result<(Outcome, Option<Why>), Error> {
        if let Some(why) = lock(&self.broken).clone() {
            return Err(BridgeError::SchemaMismatch(why).into());
        }
        let req = MutateReq {
            schema_hash: self.schema_hash,
            key: call.key,
            req: call.req,
            ty,
            states,
            args,
        };
        let bytes = msg::encode(&req)?;
        let request = async_nats::Request::new()
            .payload(bytes.into())
            .timeout(Some(self.opts.call_timeout));
        let answer = self
            .client
            .send_request(self.subjects.mutate.clone(), request)
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => Error::Rpc {
                    code: ErrorCode::Disconnected,
                    message: format!("no host serves worker {}", self.name),
                },
                async_nats::RequestErrorKind::TimedOut => Error::Rpc {
                    code: ErrorCode::MayNotHaveRun,
                    message: format!("no answer from the host of {}", self.name),
                },
                _ => BridgeError::nats(e).into(),
            })?;
        match msg::decode::<MutateReply>("mutation reply", &answer.payload)? {
            MutateReply::Done {
                outcome,
                why,
                incarnation,
                seq,
            } => {
                // read-your-writes: the reply waits for the clock that includes it
                self.caught_up(incarnation, seq).await;
                Ok((outcome, why.map(|w| w.to_why(&self.names))))
            }
            MutateReply::Failed { code, message } => Err(Error::Rpc { code, message }),
        }
    }

    fn step(&self, step: Step) {
        let applied = match &step {
            Step::Idle => Ok(()),
            Step::Apply(time) => self.machine.apply_time(time),
            Step::Reset(time) => self.machine.reset_time(time),
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
async fn follow(inner: Arc<Inner>, mut clock: async_nats::Subscriber, mut records: kv::Watch) {
    loop {
        tokio::select! {
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
                    None => break,
                };
                if entry.operation != kv::Operation::Put {
                    tracing::info!(worker = %inner.name, "the worker's record was removed");
                    continue;
                }
                let step = read_record(&entry.value).and_then(|rec| lock(&inner.feed).on_record(&rec));
                match step {
                    Ok(step) => inner.step(step),
                    Err(e @ BridgeError::SchemaMismatch(_)) => {
                        tracing::error!(worker = %inner.name, error = %e, "the mirror stops following its worker");
                        *lock(&inner.broken) = Some(e.to_string());
                    }
                    Err(e) => tracing::warn!(worker = %inner.name, error = %e, "record skipped"),
                }
            }
        }
    }
}
