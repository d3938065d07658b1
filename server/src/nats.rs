//! A server on NATS (`amrpc serve --nats`): a worker host publishes its workers
//! ([`publish_workers`]); an edge serves every worker the others publish
//! ([`serve_edge`]), found by name in the records bucket. See `docs/NATS.md`.

use std::collections::HashMap;
use std::sync::Arc;

use amrpc_nats::msg::{PayloadMsg, Record};
use amrpc_nats::{BridgeError, EdgeMirror, EdgeOpts, HostOpts, NatsLink, WorkerHost, records_bucket};
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::{Server, Worker, WorkerPayload};

/// Publish every local worker of `server` (relays are not republished) with its own replay
/// cache, so its WebSocket clients and every edge's clients share one at-most-once record.
pub async fn publish_workers(
    server: &Server,
    link: &NatsLink,
    opts: &HostOpts,
) -> Result<Vec<WorkerHost>, BridgeError> {
    let mut hosts = Vec::new();
    for name in server.worker_names() {
        let Some(w) = server.worker(&name) else { continue };
        if w.is_relay() {
            continue;
        }
        let mut h = WorkerHost::start(
            link.client.clone(),
            &name,
            w.machine().clone(),
            w.replay_cache().clone(),
            opts.clone(),
        )
        .await?;
        h.forward_payloads(payload_stream(w.payloads()));
        tracing::info!(worker = %name, incarnation = h.incarnation(), "published on NATS");
        hosts.push(h);
    }
    Ok(hosts)
}

/// A worker's payloads as a stream of bridge messages (a lagging forwarder skips what it lost).
fn payload_stream(
    rx: tokio::sync::broadcast::Receiver<Arc<WorkerPayload>>,
) -> impl futures_util::Stream<Item = PayloadMsg> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(p) => {
                    let m = PayloadMsg {
                        name: p.name.clone(),
                        source: p.source.clone(),
                        data: p.data.clone(),
                        destination: p.destination.clone(),
                    };
                    return Some((m, rx));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "payloads not published: the forwarder lagged");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// Serve `mirror` as worker `name` of `server`, its payloads sent on to its sessions.
pub fn serve_mirror(server: &Server, name: &str, mirror: EdgeMirror) -> Result<Worker, crate::ServerError> {
    let worker = server.add_upstream(name, Arc::new(mirror.clone()))?;
    forward_payloads(&worker, &mirror);
    Ok(worker)
}

/// [`serve_mirror`] in place of what `server` served as `name` ([`Server::replace_upstream`]).
pub fn replace_mirror(server: &Server, name: &str, mirror: EdgeMirror) -> Result<Worker, crate::ServerError> {
    let worker = server.replace_upstream(name, Arc::new(mirror.clone()))?;
    forward_payloads(&worker, &mirror);
    Ok(worker)
}

/// The mirror's payloads to the worker's sessions, until the mirror is gone.
fn forward_payloads(worker: &Worker, mirror: &EdgeMirror) {
    let w = worker.clone();
    let mut payloads = mirror.payloads();
    tokio::spawn(async move {
        loop {
            match payloads.recv().await {
                Ok(p) => {
                    w.send_payload(WorkerPayload {
                        name: p.name,
                        source: p.source,
                        data: p.data,
                        destination: p.destination,
                    });
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "payloads lost on the edge");
                }
                // the mirror is gone
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// An edge's bookkeeping; dropping it stops following the bucket (served workers stay).
#[derive(Debug)]
pub struct Edge {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Edge {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Serve on `server` every worker published in the bucket, now and later: one [`EdgeMirror`]
/// per worker, made when its record first appears, and made again when the worker restarts,
/// moves to another host or comes back with another schema (its sessions are closed; clients
/// reconnect to the new one). While NATS is unreachable the edge's sessions are closed once, so
/// clients see `Disconnected` (and may fail over) instead of a mirror that silently stopped.
pub async fn serve_edge(server: Server, link: NatsLink, opts: EdgeOpts) -> Result<Edge, BridgeError> {
    let js = jetstream::new(link.client.clone());
    let store = records_bucket(&js, &opts.bucket).await?;
    let mut records = store.watch_with_history(">").await.map_err(BridgeError::nats)?;
    let srv = server.clone();
    let client = link.client.clone();
    let follow = tokio::spawn(async move {
        let mut mirrors: HashMap<String, EdgeMirror> = HashMap::new();
        loop {
            let Some(entry) = records.next().await else {
                // the watch ended (its consumer is gone): watch again, from the latest records
                tracing::warn!("the workers bucket watch ended; watching again");
                match amrpc_nats::rewatch(&store, ">").await {
                    Some(w) => records = w,
                    None => return,
                }
                continue;
            };
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "watching the workers bucket failed");
                    continue;
                }
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let name = entry.key.clone();
            let rec = match Record::decode(&entry.value) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(worker = %name, error = %e, "record skipped");
                    continue;
                }
            };
            let same = |m: &EdgeMirror| m.schema_hash() == rec.schema_hash && m.first_incarnation() == rec.incarnation;
            if mirrors.get(&name).is_some_and(same) {
                continue; // served; the mirror follows the record itself
            }
            // the worker restarted or moved (another incarnation, another replay memory) or has
            // another schema: a new mirror, served under the worker's new replay id; the old
            // one's sessions are closed, so clients reconnect and learn that id in `Welcome`
            // (their calls in flight then fail with MayNotHaveRun instead of running twice)
            let replace = mirrors.contains_key(&name);
            match EdgeMirror::connect(client.clone(), &name, opts.clone()).await {
                Ok(m) => match if replace {
                    tracing::info!(worker = %name, incarnation = rec.incarnation, "the worker restarted: mirroring it again");
                    replace_mirror(&srv, &name, m.clone())
                } else {
                    serve_mirror(&srv, &name, m.clone())
                } {
                    Ok(_) => {
                        tracing::info!(worker = %name, "serving from NATS");
                        mirrors.insert(name, m);
                    }
                    Err(e) => tracing::warn!(worker = %name, error = %e, "not served"),
                },
                Err(e) => tracing::warn!(worker = %name, error = %e, "mirroring failed"),
            }
        }
    });
    // NATS gone: close the sessions once, so clients know
    let mut connected = link.connected.clone();
    let srv = server.clone();
    let watch_link = tokio::spawn(async move {
        loop {
            if connected.wait_for(|c| !*c).await.is_err() {
                return;
            }
            tracing::warn!("NATS is unreachable: closing this edge's sessions");
            for name in srv.worker_names() {
                if let Some(w) = srv.worker(&name).filter(|w| w.is_relay()) {
                    w.kick();
                }
            }
            if connected.wait_for(|c| *c).await.is_err() {
                return;
            }
            tracing::info!("NATS is back");
        }
    });
    Ok(Edge {
        tasks: vec![follow, watch_link],
    })
}
