//! The worker's side: publish a machine on NATS. One task sends each clock change once on the
//! worker's clock subject (whatever the number of edges and clients) and keeps its record in
//! the bucket current; another answers mutation requests with the worker's own replay cache,
//! so a call resent through any edge (or the worker's own WebSocket server) runs at most once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use amrpc_core::session::{CallId, Mutated, Replay, ReplayCache, SessionSchema, WorkerPort};
use amrpc_core::wire::clock;
use amrpc_core::{ErrorCode, Machine, Tracer};
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use tokio::sync::{Mutex, Notify, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::msg::{self, ClockMsg, MutateReq, RECORD_FORMAT, Record, Reply, Request, WaitReq};
use crate::subjects::{self, HOSTS_GROUP, Subjects};
use crate::{BridgeError, random_id};

/// How a worker is published.
#[derive(Clone, Debug)]
pub struct HostOpts {
    /// Subject prefix ([`subjects::PREFIX`]).
    pub prefix: String,
    /// Key-value bucket of worker records ([`subjects::BUCKET`]).
    pub bucket: String,
    /// Mutation requests handled at once; more wait for a slot.
    pub max_concurrent: usize,
    /// How long a resend waits for the original still running (from another edge) to finish.
    pub in_flight_wait: Duration,
    /// Remote waits evaluated at once; more are refused (`TooManyWaits`).
    pub max_waits: usize,
    /// The longest a remote wait is kept; past it, it fails with `Timeout`.
    pub max_wait: Duration,
}

impl Default for HostOpts {
    fn default() -> HostOpts {
        HostOpts {
            prefix: subjects::PREFIX.to_string(),
            bucket: subjects::BUCKET.to_string(),
            max_concurrent: 256,
            in_flight_wait: Duration::from_secs(30),
            max_waits: 10_000,
            max_wait: Duration::from_secs(3600),
        }
    }
}

/// The bucket of worker records, created when missing (one value per key: the latest record).
/// Its stream is made here with the key-value layout (`KV_<bucket>` on `$KV.<bucket>.>`)
/// instead of through `create_key_value`, whose account query does not parse the answer of the
/// 2.9 servers Debian ships.
pub async fn records_bucket(js: &jetstream::Context, name: &str) -> Result<kv::Store, BridgeError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(BridgeError::nats)?;
    js.get_key_value(name).await.map_err(BridgeError::nats)
}

/// Signals the publisher after each queue drain (a cascade goes out as one change).
struct Changed(watch::Sender<u64>);

impl Tracer for Changed {
    fn queue_end(&self, _m: &Machine) {
        self.0.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// What was last published.
struct Published {
    seq: u64,
    last: Vec<u64>,
    err: Option<String>,
}

struct Inner {
    client: async_nats::Client,
    name: String,
    subjects: Subjects,
    machine: Machine,
    replay: Arc<ReplayCache>,
    schema: Arc<SessionSchema>,
    incarnation: u64,
    opts: HostOpts,
    published: Mutex<Published>,
    /// The latest record's contents, for the bucket writer.
    record: watch::Sender<Record>,
    /// Woken when a mutation finishes (resends of it wait for its outcome).
    finished: Notify,
}

/// A machine published on NATS; dropping it (or [`WorkerHost::stop`]) stops publishing.
pub struct WorkerHost {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for WorkerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHost")
            .field("name", &self.inner.name)
            .field("incarnation", &self.inner.incarnation)
            .finish_non_exhaustive()
    }
}

impl WorkerHost {
    /// Publish `machine` as worker `name`, answering mutations with `replay` (share the
    /// WebSocket server's, `Worker::replay_cache`, so both paths keep one at-most-once
    /// record). Returns once its record is in the bucket, so edges can find it.
    pub async fn start(
        client: async_nats::Client,
        name: &str,
        machine: Machine,
        replay: Arc<ReplayCache>,
        opts: HostOpts,
    ) -> Result<WorkerHost, BridgeError> {
        let subjects = Subjects::new(&opts.prefix, name)?;
        let js = jetstream::new(client.clone());
        let store = records_bucket(&js, &opts.bucket).await?;
        let schema = WorkerPort::session_schema(&machine);
        let (changes, mut changed) = watch::channel(0u64);
        machine.bind_tracer(Arc::new(Changed(changes)));
        let time = machine.time(None);
        let err = machine.err().map(|e| e.to_string());
        let incarnation = random_id();
        let record = Record {
            format: RECORD_FORMAT,
            worker_id: machine.id().to_string(),
            incarnation,
            replay_id: replay.id(),
            seq: 0,
            names: schema.names.clone(),
            schema: schema.wire.clone(),
            schema_hash: schema.hash,
            time: time.clone(),
            err: err.clone(),
        };
        store
            .put(name, msg::encode(&record)?.into())
            .await
            .map_err(BridgeError::nats)?;
        let requests = client
            .queue_subscribe(subjects.rpc.clone(), HOSTS_GROUP.to_string())
            .await
            .map_err(BridgeError::nats)?;
        let inner = Arc::new(Inner {
            client,
            name: name.to_string(),
            subjects,
            machine,
            replay,
            schema,
            incarnation,
            published: Mutex::new(Published {
                seq: 0,
                last: time,
                err,
            }),
            record: watch::channel(record).0,
            finished: Notify::new(),
            opts,
        });
        let mut tasks = Vec::new();
        // clock changes: one message per drained queue (coalesced while one is being sent)
        let i = inner.clone();
        tasks.push(tokio::spawn(async move {
            while changed.changed().await.is_ok() {
                i.flush().await;
            }
        }));
        // the bucket: the latest record, rewritten after changes (coalesced)
        let i = inner.clone();
        let mut records = inner.record.subscribe();
        tasks.push(tokio::spawn(async move {
            let mut store = store;
            while records.changed().await.is_ok() {
                let rec = records.borrow_and_update().clone();
                let bytes: bytes::Bytes = match msg::encode(&rec) {
                    Ok(b) => b.into(),
                    Err(e) => {
                        tracing::error!(error = %e, "encoding a record failed");
                        continue;
                    }
                };
                if let Err(e) = store.put(&i.name, bytes.clone()).await {
                    // the server may have lost the bucket (a restart without storage): make it again
                    tracing::warn!(worker = %i.name, error = %e, "writing the record failed; retrying");
                    match records_bucket(&jetstream::new(i.client.clone()), &i.opts.bucket).await {
                        Ok(s) => store = s,
                        Err(e) => tracing::warn!(error = %e, "the bucket is unavailable"),
                    }
                    // a later change rewrites it; until then, retry this one once more
                    let _ = store.put(&i.name, bytes).await;
                }
            }
        }));
        // requests in the order they arrive: a wait is registered before a later mutation
        // runs; each mutation and each wait then goes on in its own task
        let i = inner.clone();
        tasks.push(tokio::spawn(async move {
            let mutations = Arc::new(Semaphore::new(i.opts.max_concurrent.max(1)));
            let waits = Arc::new(Semaphore::new(i.opts.max_waits.max(1)));
            // remote waits by reply subject: canceling the context unbinds at once; a finished
            // wait cancels its own, and finished ones are swept out as the map grows
            let mut pending: HashMap<String, amrpc_core::Ctx> = HashMap::new();
            let mut sweep_at = 64;
            let mut requests = requests;
            while let Some(m) = requests.next().await {
                if pending.len() >= sweep_at {
                    pending.retain(|_, c| !c.is_canceled());
                    sweep_at = (pending.len() * 2).max(64);
                }
                let request = msg::decode::<Request>("request", &m.payload);
                let Some(reply_to) = m.reply.clone() else {
                    // only Unwait comes without a reply subject
                    match request {
                        Ok(Request::Unwait { reply }) => {
                            if let Some(ctx) = pending.remove(&reply) {
                                ctx.cancel();
                            }
                        }
                        _ => tracing::debug!(worker = %i.name, "request without a reply subject dropped"),
                    }
                    continue;
                };
                match request {
                    Err(e) => i.spawn_reply(reply_to, failed(e.code(), e.to_string())),
                    Ok(Request::Unwait { .. }) => {}
                    Ok(Request::Sync) => {
                        let i = i.clone();
                        tokio::spawn(async move {
                            let reply = Reply::Met {
                                incarnation: i.incarnation,
                                seq: i.flush().await,
                            };
                            i.reply(reply_to, &reply).await;
                        });
                    }
                    Ok(Request::Mutate(req)) => {
                        let Ok(slot) = mutations.clone().acquire_owned().await else {
                            break;
                        };
                        let i = i.clone();
                        tokio::spawn(async move {
                            let reply = i.run(req).await;
                            drop(slot);
                            i.reply(reply_to, &reply).await;
                        });
                    }
                    Ok(Request::Wait(req)) => {
                        let Ok(slot) = waits.clone().try_acquire_owned() else {
                            let message = format!("the host keeps at most {} remote waits", i.opts.max_waits);
                            i.spawn_reply(reply_to, failed(ErrorCode::TooManyWaits, message));
                            continue;
                        };
                        // bound now, before any later request runs
                        let ctx = amrpc_core::Ctx::new();
                        match i.wait(req, &ctx) {
                            Err(refused) => i.spawn_reply(reply_to, refused),
                            Ok(wait) => {
                                pending.insert(reply_to.to_string(), ctx.clone());
                                let i = i.clone();
                                tokio::spawn(async move {
                                    let reply = i.met(wait).await;
                                    ctx.cancel();
                                    drop(slot);
                                    // a canceled wait's waiter is gone: no answer
                                    if let Some(reply) = reply {
                                        i.reply(reply_to, &reply).await;
                                    }
                                });
                            }
                        }
                    }
                }
            }
        }));
        Ok(WorkerHost { inner, tasks })
    }

    /// The host's incarnation (a random id per start).
    pub fn incarnation(&self) -> u64 {
        self.inner.incarnation
    }

    /// Publish each payload of `payloads` on the worker's payload subject (one message per
    /// payload, whatever the number of edges), until the stream ends or the host stops.
    pub fn forward_payloads<S>(&mut self, payloads: S)
    where
        S: futures_util::Stream<Item = msg::PayloadMsg> + Send + 'static,
    {
        let i = self.inner.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut payloads = std::pin::pin!(payloads);
            while let Some(p) = payloads.next().await {
                if let Err(e) = i.publish(i.subjects.payload.clone(), &p).await {
                    tracing::warn!(worker = %i.name, payload = %p.name, error = %e, "a payload was not published");
                }
            }
        }));
    }

    /// Publish the machine's clock now if it changed since the last message (changes go out
    /// by themselves after each queue drain); returns the sequence that includes it.
    pub async fn flush(&self) -> u64 {
        self.inner.flush().await
    }

    /// The clock sequence last published.
    pub async fn seq(&self) -> u64 {
        self.inner.published.lock().await.seq
    }

    /// Stop publishing (the record stays in the bucket; a new host of the worker replaces it).
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for WorkerHost {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    /// Publish the change since the last message, if any; returns the sequence that includes
    /// the machine's clock as of this call. A message that could not be sent is a gap to
    /// edges, which the record written next bridges.
    async fn flush(&self) -> u64 {
        let mut p = self.published.lock().await;
        let time = self.machine.time(None);
        let err = self.machine.err().map(|e| e.to_string());
        let next = p.seq + 1;
        let Some(update) = clock::update_from(&mut p.last, &time, None, next as u8) else {
            return p.seq;
        };
        p.seq = next;
        let err_changed = err != p.err;
        if err_changed {
            p.err.clone_from(&err);
        }
        let m = ClockMsg {
            incarnation: self.incarnation,
            seq: next,
            update,
            err: if err_changed { err } else { None },
        };
        let sent = self.publish(self.subjects.clock.clone(), &m).await;
        self.record.send_modify(|r| {
            r.seq = next;
            r.time.clone_from(&p.last);
            r.err.clone_from(&p.err);
        });
        if let Err(e) = sent {
            tracing::warn!(worker = %self.name, seq = next, error = %e, "a clock change was not published");
        }
        next
    }

    /// Encode `msg` and publish it on `subject`.
    async fn publish<S: async_nats::subject::ToSubject, T: serde::Serialize>(
        &self,
        subject: S,
        msg: &T,
    ) -> Result<(), BridgeError> {
        let bytes = msg::encode(msg)?;
        self.client
            .publish(subject, bytes.into())
            .await
            .map_err(BridgeError::nats)
    }

    /// Send `reply` to a reply subject.
    async fn reply(&self, to: async_nats::Subject, reply: &Reply) {
        if let Err(e) = self.publish(to, reply).await {
            tracing::warn!(worker = %self.name, error = %e, "sending a reply failed");
        }
    }

    /// [`Inner::reply`] from the request loop, without holding it up.
    fn spawn_reply(self: &Arc<Self>, to: async_nats::Subject, reply: Reply) {
        let i = self.clone();
        tokio::spawn(async move { i.reply(to, &reply).await });
    }

    /// Check a remote wait and bind it on the machine, under `ctx` (canceled by `Unwait`).
    fn wait(&self, req: WaitReq, ctx: &amrpc_core::Ctx) -> Result<amrpc_core::Wait, Reply> {
        match req {
            WaitReq::Queue { tick } => Ok(self.machine.when_queue(tick, Some(ctx))),
            WaitReq::Args {
                schema_hash,
                state,
                args,
            } => {
                if schema_hash != self.schema.hash {
                    return Err(failed(
                        ErrorCode::SchemaMismatch,
                        "the edge mirrors another schema".into(),
                    ));
                }
                if usize::from(state) >= self.schema.names.len() {
                    return Err(failed(
                        ErrorCode::InvalidParams,
                        format!("state index {state} out of range"),
                    ));
                }
                self.machine
                    .when_args_index(usize::from(state), args, Some(ctx))
                    .map_err(|e| failed(ErrorCode::InvalidParams, e.to_string()))
            }
        }
    }

    /// Until a bound wait completes (or `max_wait`); `None` when it was canceled.
    async fn met(&self, wait: amrpc_core::Wait) -> Option<Reply> {
        Some(match tokio::time::timeout(self.opts.max_wait, wait).await {
            Ok(Ok(())) => Reply::Met {
                incarnation: self.incarnation,
                seq: self.flush().await,
            },
            Ok(Err(amrpc_core::WaitError::Canceled)) => return None,
            Ok(Err(e)) => failed(e.code(), e.to_string()),
            Err(_) => failed(ErrorCode::Timeout, format!("remote wait over {:?}", self.opts.max_wait)),
        })
    }

    /// Check and run one request, at most once per `(key, req)`.
    async fn run(&self, r: MutateReq) -> Reply {
        if r.schema_hash != self.schema.hash {
            return failed(
                ErrorCode::SchemaMismatch,
                format!(
                    "the edge mirrors schema {:016x}, the worker has {:016x}",
                    r.schema_hash, self.schema.hash
                ),
            );
        }
        if r.incarnation != 0 && r.incarnation != self.incarnation {
            return failed(
                ErrorCode::Disconnected,
                "the worker restarted since this edge mirrored it: reconnect".into(),
            );
        }
        let count = self.schema.names.len();
        if let Some(bad) = r.states.iter().find(|i| usize::from(**i) >= count) {
            return failed(
                ErrorCode::InvalidParams,
                format!("state index {bad} out of range ({count} states)"),
            );
        }
        let call = CallId { key: r.key, req: r.req };
        if r.key == 0 {
            return match self.mutate(call, r).await {
                Ok((outcome, why)) => self.done(outcome, why).await,
                Err(f) => f,
            };
        }
        // one host serves a worker: its sessions never supersede each other here
        match self.replay.begin(r.key, u64::MAX, r.req) {
            Replay::New => {
                let ran = self.mutate(call, r).await;
                match &ran {
                    Ok((outcome, _)) => self.replay.finish(call.key, call.req, *outcome),
                    Err(_) => self.replay.abandon(call.key, call.req),
                }
                self.finished.notify_waiters();
                match ran {
                    Ok((outcome, why)) => self.done(outcome, why).await,
                    Err(f) => f,
                }
            }
            Replay::Done(outcome) => self.done(outcome, None).await,
            Replay::InFlight => {
                // the original is running (sent through another edge): answer with its outcome
                let wait = async {
                    loop {
                        let woken = self.finished.notified();
                        if let Some(o) = self.replay.outcome(call.key, call.req) {
                            return Some(o);
                        }
                        if !matches!(self.replay.begin(call.key, u64::MAX, call.req), Replay::InFlight) {
                            // abandoned meanwhile: this one is now marked in flight; forget it
                            // again and let the client retry
                            self.replay.abandon(call.key, call.req);
                            return None;
                        }
                        woken.await;
                    }
                };
                match tokio::time::timeout(self.opts.in_flight_wait, wait).await {
                    Ok(Some(o)) => self.done(o, None).await,
                    Ok(None) => failed(ErrorCode::MayNotHaveRun, "the original call failed; retry".into()),
                    Err(_) => failed(ErrorCode::Timeout, "the original call is still running".into()),
                }
            }
            Replay::Superseded => failed(ErrorCode::Closed, "superseded".into()),
        }
    }

    /// Run a checked mutation off the runtime's threads (handlers may block); `Err` is the
    /// reply of one that did not run.
    async fn mutate(
        &self,
        call: CallId,
        r: MutateReq,
    ) -> Result<(amrpc_core::Outcome, Option<amrpc_core::wire::WhyMsg>), Reply> {
        let machine = self.machine.clone();
        let ran =
            tokio::task::spawn_blocking(move || WorkerPort::mutate(&machine, call, r.ty, &r.states, r.args, 0)).await;
        match ran {
            Ok(Mutated::Done(outcome, why)) => Ok((outcome, why)),
            Ok(Mutated::Failed(code, message)) => Err(failed(code, message)),
            Ok(Mutated::Forwarded) => Err(failed(ErrorCode::Internal, "a local machine forwarded a call".into())),
            Err(e) => Err(failed(ErrorCode::Internal, format!("the mutation's task failed: {e}"))),
        }
    }

    /// A `Done` reply naming the clock sequence that includes the mutation.
    async fn done(&self, outcome: amrpc_core::Outcome, why: Option<amrpc_core::wire::WhyMsg>) -> Reply {
        Reply::Done {
            outcome,
            why,
            incarnation: self.incarnation,
            seq: self.flush().await,
        }
    }
}

fn failed(code: ErrorCode, message: String) -> Reply {
    Reply::Failed { code, message }
}
