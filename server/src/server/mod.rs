//! The server: workers by name, one WebSocket session per connection (axum), each a thin shell
//! around an `amrpc_core::session::ServerSession`.

mod opts;
mod session;
mod tls;
mod upstream;
mod worker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use amrpc_client::Mirror;
use amrpc_core::Machine;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use opts::{AuthHook, ServerError, ServerOpts};
pub use tls::TlsConfig;
pub use upstream::Upstream;
pub use worker::{SNAPSHOT_FORMAT, SessionInfo, Worker, WorkerInfo, WorkerPayload, WorkerSnapshot};

/// `dir/<name>.json`; a worker name that is not a plain file name is refused.
fn snapshot_path(dir: &std::path::Path, name: &str) -> Result<std::path::PathBuf, ServerError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || name.starts_with('.')
    {
        return Err(ServerError::Snapshot(format!(
            "worker name {name:?} is not a file name"
        )));
    }
    Ok(dir.join(format!("{name}.json")))
}

/// Read `dir/<name>.json` and move it aside (`.json.restored`): a snapshot restores once, so a
/// later crash cannot bring back a replay memory that no longer matches what ran. `None`: no
/// snapshot. A file that does not parse is an error (and stays in place).
pub fn take_snapshot(dir: &std::path::Path, name: &str) -> Result<Option<WorkerSnapshot>, ServerError> {
    let path = snapshot_path(dir, name)?;
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let snap: WorkerSnapshot =
        serde_json::from_slice(&bytes).map_err(|e| ServerError::Snapshot(format!("{}: {e}", path.display())))?;
    std::fs::rename(&path, path.with_extension("json.restored"))?;
    Ok(Some(snap))
}

struct Inner {
    workers: RwLock<BTreeMap<String, Worker>>,
    opts: ServerOpts,
    permits: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
    epoch: AtomicU64,
    start: Instant,
}

/// A registry of named workers with its WebSocket router. Cheap to clone.
#[derive(Clone)]
pub struct Server(Arc<Inner>);

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("opts", &self.0.opts)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// An empty server.
    pub fn new(opts: ServerOpts) -> Server {
        let (shutdown, _) = watch::channel(false);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Server(Arc::new(Inner {
            workers: RwLock::new(BTreeMap::new()),
            permits: Arc::new(Semaphore::new(opts.max_sessions)),
            opts,
            shutdown,
            epoch: AtomicU64::new(seed << 16),
            start: Instant::now(),
        }))
    }

    /// Serve `machine` as `/ws/{name}`.
    pub fn add_worker(&self, name: &str, machine: Machine) -> Result<Worker, ServerError> {
        let mut w = self.0.workers.write().unwrap_or_else(|e| e.into_inner());
        if w.contains_key(name) {
            return Err(ServerError::Duplicate(name.to_string()));
        }
        let worker = Worker::new(machine, self.0.opts.replay_instances, self.0.opts.transition_log)?;
        w.insert(name.to_string(), worker.clone());
        Ok(worker)
    }

    /// [`Server::add_worker`] from a snapshot, if any ([`Worker::restored`]).
    pub fn add_worker_restored(
        &self,
        name: &str,
        machine: Machine,
        snapshot: Option<&WorkerSnapshot>,
    ) -> Result<Worker, ServerError> {
        let mut w = self.0.workers.write().unwrap_or_else(|e| e.into_inner());
        if w.contains_key(name) {
            return Err(ServerError::Duplicate(name.to_string()));
        }
        let o = &self.0.opts;
        let worker = Worker::restored(machine, o.replay_instances, o.transition_log, snapshot)?;
        w.insert(name.to_string(), worker.clone());
        Ok(worker)
    }

    /// Write every local worker's snapshot to `dir/<name>.json` (each written whole, then
    /// renamed into place). Call it after [`Server::shutdown`] and [`Server::sessions_closed`].
    pub fn save_snapshots(&self, dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, ServerError> {
        std::fs::create_dir_all(dir)?;
        let mut written = Vec::new();
        for name in self.worker_names() {
            let Some(w) = self.worker(&name) else { continue };
            if w.relay.is_some() {
                continue;
            }
            let snap = w.snapshot()?;
            let json = serde_json::to_vec_pretty(&snap).map_err(|e| ServerError::Snapshot(e.to_string()))?;
            let path = snapshot_path(dir, &name)?;
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, json)?;
            std::fs::rename(&tmp, &path)?;
            written.push(path);
        }
        Ok(written)
    }

    /// Wait until every session has ended (after [`Server::shutdown`]); false if `limit` passed
    /// first.
    pub async fn sessions_closed(&self, limit: std::time::Duration) -> bool {
        // every session holds a permit: all of them back means none is left
        let all = u32::try_from(self.0.opts.max_sessions).unwrap_or(u32::MAX);
        matches!(
            tokio::time::timeout(limit, self.0.permits.acquire_many(all)).await,
            Ok(Ok(_))
        )
    }

    /// Serve a mirror of a remote worker as `/ws/{name}` (see [`Worker::relay`]).
    pub fn add_relay(&self, name: &str, mirror: Mirror) -> Result<Worker, ServerError> {
        self.add_upstream(name, Arc::new(mirror))
    }

    /// Serve any [`Upstream`] (a mirror of a worker that runs elsewhere) as `/ws/{name}`.
    pub fn add_upstream(&self, name: &str, upstream: Arc<dyn Upstream>) -> Result<Worker, ServerError> {
        let mut w = self.0.workers.write().unwrap_or_else(|e| e.into_inner());
        if w.contains_key(name) {
            return Err(ServerError::Duplicate(name.to_string()));
        }
        let worker = Worker::relay(upstream, self.0.opts.replay_instances)?;
        w.insert(name.to_string(), worker.clone());
        Ok(worker)
    }

    /// Serve `upstream` as `/ws/{name}` in place of what was served there, in one step (a client
    /// reconnecting meanwhile never finds the name missing); the old worker's sessions are
    /// closed (`Bye` with `ShuttingDown`), so its clients reconnect to the new one.
    pub fn replace_upstream(&self, name: &str, upstream: Arc<dyn Upstream>) -> Result<Worker, ServerError> {
        let worker = Worker::relay(upstream, self.0.opts.replay_instances)?;
        let old = self
            .0
            .workers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), worker.clone());
        if let Some(old) = old {
            old.kick();
        }
        Ok(worker)
    }

    /// Stop serving `name`: its sessions are closed (`Bye` with `ShuttingDown`, so clients
    /// reconnect and find whatever is served under the name next). `None`: no such worker.
    pub fn remove_worker(&self, name: &str) -> Option<Worker> {
        let removed = self.0.workers.write().unwrap_or_else(|e| e.into_inner()).remove(name);
        if let Some(w) = &removed {
            w.kick();
        }
        removed
    }

    /// A registered worker.
    pub fn worker(&self, name: &str) -> Option<Worker> {
        self.0
            .workers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Worker names.
    pub fn worker_names(&self) -> Vec<String> {
        self.0
            .workers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Sessions open right now, over all workers.
    pub fn session_count(&self) -> usize {
        self.0.opts.max_sessions - self.0.permits.available_permits()
    }

    /// The router: `GET /ws/{worker}` upgrades to a session; `GET /api/workers` lists the
    /// workers as JSON ([`WorkerInfo`], for tools such as the inspector's worker picker). Mount
    /// it in your own app, or use [`Server::serve`].
    pub fn router(&self) -> Router {
        Router::new()
            .route("/ws/{worker}", get(session::ws_handler))
            .route("/api/workers", get(workers_handler))
            .with_state(self.clone())
    }

    /// Every worker with its session count and schema hash, by name.
    pub fn workers_info(&self) -> Vec<WorkerInfo> {
        let workers: Vec<(String, Worker)> = self
            .0
            .workers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, w)| (n.clone(), w.clone()))
            .collect();
        workers
            .into_iter()
            .map(|(name, w)| {
                let hash = amrpc_core::wire::machine_schema_hash(&w.machine);
                WorkerInfo {
                    name,
                    id: w.machine.id().to_string(),
                    sessions: w.session_count(),
                    schema_hash: format!("{hash:016x}"),
                    states: w.machine.state_names().len(),
                    relay: w.relay.is_some(),
                    stream: w.log.is_some(),
                    inspectors: w.log.as_ref().map_or(0, |l| l.subscribers()),
                }
            })
            .collect()
    }

    /// Close every session (each gets a `Bye` with `ShuttingDown`) and stop `serve`.
    pub fn shutdown(&self) {
        self.0.shutdown.send_replace(true);
    }

    /// Serve `router` (e.g. [`Server::router`] plus your own routes) on `listener` until
    /// [`Server::shutdown`].
    pub async fn serve_router(&self, listener: TcpListener, router: Router) -> std::io::Result<()> {
        let mut stop = self.0.shutdown.subscribe();
        use axum::serve::ListenerExt;
        // no Nagle: replies are small frames a client waits for
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY");
            }
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    }

    /// [`Server::serve_router`] over TLS (`wss://`, `https://`): a plain-text client on this
    /// port fails its handshake and is dropped; the others are not held up.
    pub async fn serve_router_tls(
        &self,
        listener: TcpListener,
        router: Router,
        tls: &TlsConfig,
    ) -> std::io::Result<()> {
        let mut stop = self.0.shutdown.subscribe();
        let listener = tls::TlsListener::new(listener, tls)?;
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    }

    /// Serve [`Server::router`] on `listener` until [`Server::shutdown`].
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        self.serve_router(listener, self.router()).await
    }

    /// Bind `addr` (port 0 picks one) and serve in a background task; returns the address.
    pub async fn spawn(&self, addr: &str) -> Result<SocketAddr, ServerError> {
        self.spawn_with(addr, None).await
    }

    /// [`Server::spawn`] over TLS.
    pub async fn spawn_tls(&self, addr: &str, tls: TlsConfig) -> Result<SocketAddr, ServerError> {
        self.spawn_with(addr, Some(tls)).await
    }

    async fn spawn_with(&self, addr: &str, tls: Option<TlsConfig>) -> Result<SocketAddr, ServerError> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let srv = self.clone();
        tokio::spawn(async move {
            let r = match tls {
                Some(tls) => srv.serve_router_tls(listener, srv.router(), &tls).await,
                None => srv.serve(listener).await,
            };
            if let Err(e) = r {
                tracing::error!(error = %e, "server stopped");
            }
        });
        Ok(local)
    }
}

async fn workers_handler(State(server): State<Server>) -> axum::Json<Vec<WorkerInfo>> {
    axum::Json(server.workers_info())
}
