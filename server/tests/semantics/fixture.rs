//! The fixture of the semantics suite: one worker machine built the way upstream's
//! `internal/testing/utils` builds RPC workers, reached directly (`Backend::Local`), through a
//! WebSocket mirror (`Backend::Remote`), or through a mirror of an edge server that follows the
//! worker over NATS (`Backend::Edge`).

use std::future::Future;
use std::time::Duration;

use amrpc_client::{Client, ClientOpts};
use amrpc_core::states;
use amrpc_core::states as names;
use amrpc_core::{Api, BoxFuture, EXCEPTION, Error, Handlers, Machine, Opts, Outcome, Schema, State, struct_merge};
use amrpc_server::{Server, ServerOpts};

/// Bound of every single wait in the suite.
pub(crate) const WAIT: Duration = Duration::from_secs(2);
/// Bound of one whole test (set-up, body, tear-down).
pub(crate) const TEST: Duration = Duration::from_secs(15);

/// Which implementation of `Api` a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// The worker machine itself.
    Local,
    /// A `Mirror` of the worker, over a real WebSocket on 127.0.0.1.
    Remote,
    /// A `Mirror` over WebSocket of an edge server, which mirrors the worker published on a
    /// `nats-server` of the test's own (`amrpc-nats`).
    Edge,
}

/// How to build the worker: own states merged with `states::worker_schema()`, the state order
/// `[own names… + worker states]` (upstream `SAdd(names, WorkerStates.Names())`), an optional
/// initial `Set`, relation overrides applied with `set_struct` after it (upstream's
/// `rels := m.GetStruct(); rels["C"] = …; m.SetStruct(rels, names)`), and optional handlers.
pub(crate) struct Fixture {
    name: String,
    own: Schema,
    own_names: Vec<String>,
    initial: Option<Vec<String>>,
    rels: Vec<(String, State)>,
    handlers: Option<Handlers>,
    handler_timeout: Option<Duration>,
    server_opts: ServerOpts,
}

impl Fixture {
    /// States `A`…`D` without relations (upstream `NewNoRelsRpcWorker`); names `[Exception A B C D
    /// ErrProviding ErrSendPayload SendPayload ErrNetwork ErrHandlerTimeout Start Ready Healthcheck]`.
    pub(crate) fn no_rels(name: &str) -> Fixture {
        let own = amrpc_core::schema(["A", "B", "C", "D"].map(|s| (s, State::new())));
        Fixture::with(name, own, &[EXCEPTION, "A", "B", "C", "D"])
    }

    /// The "Rels" schema of upstream's `internal/testing/states` (`NewRelsRpcWorker`):
    /// A Auto Require C; B Multi Add C; C After D; D Add C B.
    pub(crate) fn rels(name: &str) -> Fixture {
        let own = amrpc_core::schema([
            ("A", State::new().auto().require(&["C"])),
            ("B", State::new().multi().add(&["C"])),
            ("C", State::new().after(&["D"])),
            ("D", State::new().add(&["C", "B"])),
        ]);
        Fixture::with(name, own, &[EXCEPTION, "A", "B", "C", "D"])
    }

    /// Custom own states (upstream `NewCustomRpcWorker`); their names come first, in schema order.
    pub(crate) fn custom(name: &str, own: Schema) -> Fixture {
        let names: Vec<String> = own.keys().cloned().collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Fixture::with(name, own.clone(), &names)
    }

    fn with(name: &str, own: Schema, own_names: &[&str]) -> Fixture {
        Fixture {
            name: name.to_string(),
            own,
            own_names: own_names.iter().map(|s| s.to_string()).collect(),
            initial: None,
            rels: Vec::new(),
            handlers: None,
            handler_timeout: None,
            server_opts: ServerOpts::default(),
        }
    }

    /// No handler timeout: for handlers that block on a test's barrier.
    pub(crate) fn no_handler_timeout(mut self) -> Fixture {
        self.handler_timeout = Some(Duration::ZERO);
        self
    }

    /// Server options of the remote backend.
    pub(crate) fn server_opts(mut self, opts: ServerOpts) -> Fixture {
        self.server_opts = opts;
        self
    }

    /// "init X": the worker is `Set(X)` before the connection.
    pub(crate) fn init(mut self, states: &[&str]) -> Fixture {
        self.initial = Some(states.iter().map(|s| s.to_string()).collect());
        self
    }

    /// "rels": replace `state`'s definition on the worker (after `init`, before the connection).
    pub(crate) fn rel(mut self, state: &str, def: State) -> Fixture {
        self.rels.push((state.to_string(), def));
        self
    }

    /// Handlers bound to the worker before the connection.
    pub(crate) fn handlers(mut self, h: Handlers) -> Fixture {
        self.handlers = Some(h);
        self
    }

    /// The worker's state order.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names = self.own_names.clone();
        for s in states::WORKER_STATES {
            if !names.iter().any(|n| n == s) {
                names.push(s.to_string());
            }
        }
        names
    }

    fn machine(&mut self) -> Machine {
        let schema = struct_merge(&[&states::worker_schema(), &self.own]);
        let m = Machine::new(
            schema,
            Opts {
                id: Some(format!("t-{}", self.name)),
                handler_timeout: self.handler_timeout,
                ..Default::default()
            },
        )
        .expect("worker schema");
        let names = self.names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        m.verify_states(&names).expect("verify_states");
        if let Some(init) = &self.initial {
            let init: Vec<&str> = init.iter().map(String::as_str).collect();
            m.try_set(&init, None).expect("initial set");
        }
        if !self.rels.is_empty() {
            let mut s = m.get_struct();
            for (state, def) in self.rels.drain(..) {
                s.insert(state, def);
            }
            m.set_struct(s, &names).expect("set_struct");
        }
        if let Some(h) = self.handlers.take() {
            m.bind_handlers(h).expect("bind_handlers");
        }
        m
    }

    /// Build the worker and connect to it through `backend`.
    pub(crate) async fn start(mut self, backend: Backend) -> Env {
        let worker = self.machine();
        match backend {
            Backend::Local => Env {
                backend,
                api: Box::new(worker.clone()),
                worker,
                remote: None,
            },
            Backend::Remote | Backend::Edge => {
                let server = Server::new(self.server_opts.clone());
                let (served, nats) = match backend {
                    Backend::Edge => {
                        let nats = crate::nats_support::Nats::start().await;
                        // the worker's own server (not listening): its replay cache is the host's
                        let own = Server::new(ServerOpts::default());
                        let local = own.add_worker(&self.name, worker.clone()).expect("add_worker");
                        let host = amrpc_nats::WorkerHost::start(
                            nats.client().await,
                            &self.name,
                            worker.clone(),
                            local.replay_cache().clone(),
                            Default::default(),
                        )
                        .await
                        .expect("publish");
                        let mirror =
                            amrpc_nats::EdgeMirror::connect(nats.client().await, &self.name, Default::default())
                                .await
                                .expect("edge mirror");
                        let served = server
                            .add_upstream(&self.name, std::sync::Arc::new(mirror.clone()))
                            .expect("add_upstream");
                        (
                            served,
                            Some(Nats {
                                _nats: nats,
                                _host: host,
                                mirror,
                            }),
                        )
                    }
                    _ => (server.add_worker(&self.name, worker.clone()).expect("add_worker"), None),
                };
                let addr = server.spawn("127.0.0.1:0").await.expect("server spawn");
                let url = format!("ws://{addr}/ws/{}", self.name);
                let client = tokio::time::timeout(WAIT, Client::connect(&url, ClientOpts::default()))
                    .await
                    .expect("connect timed out")
                    .expect("connect");
                // upstream's NewTest waits for the client's Ready
                tokio::time::timeout(WAIT, client.states().when1(names::READY, None))
                    .await
                    .expect("client Ready timed out")
                    .expect("client Ready");
                assert_eq!(served.session_count(), 1, "one session on the worker");
                let mirror = client.mirror();
                assert!(!mirror.ctx().ptr_eq(&worker.ctx()), "the mirror is a separate machine");
                assert_eq!(mirror.time(None), worker.time(None), "the handshake synced the clock");
                Env {
                    backend,
                    api: Box::new(client.mirror().clone()),
                    worker,
                    remote: Some(Remote {
                        server,
                        client,
                        served,
                        nats,
                    }),
                }
            }
        }
    }
}

struct Remote {
    server: Server,
    client: Client,
    served: amrpc_server::Worker,
    /// The edge backend's NATS side.
    nats: Option<Nats>,
}

/// The edge backend's `nats-server`, worker host and edge mirror.
struct Nats {
    _nats: crate::nats_support::Nats,
    _host: amrpc_nats::WorkerHost,
    mirror: amrpc_nats::EdgeMirror,
}

/// A started fixture.
pub(crate) struct Env {
    backend: Backend,
    api: Box<dyn Api>,
    worker: Machine,
    remote: Option<Remote>,
}

impl Env {
    /// The machine under test: the worker (local) or its mirror (remote).
    pub(crate) fn api(&self) -> &dyn Api {
        &*self.api
    }

    /// The worker machine (for the local backend, the same machine as `api`).
    pub(crate) fn worker(&self) -> &Machine {
        &self.worker
    }

    /// The remote backend's client and served worker.
    pub(crate) fn remote(&self) -> Option<(&Client, &amrpc_server::Worker)> {
        self.remote.as_ref().map(|r| (&r.client, &r.served))
    }

    /// A barrier: on the remote backend one round trip (`sync`), after which every frame the
    /// server sent before has been applied — so a wait that would have been signaled by then
    /// is ready. Local waits complete synchronously: nothing to do.
    /// On the edge backend: the client syncs with the edge (which has then forwarded all its
    /// earlier requests), the edge with the worker's host (which has then taken them in, and
    /// the edge shows the worker's clock), and the client with the edge again.
    pub(crate) async fn round_trip(&self) {
        if let Some(r) = &self.remote {
            within("sync", r.client.mirror().sync()).await.expect("sync");
            if let Some(n) = &r.nats {
                within("edge sync", n.mirror.sync()).await.expect("edge sync");
                within("sync again", r.client.mirror().sync()).await.expect("sync");
            }
        }
    }

    /// Upstream's `disposeTest(c, s, true)`: `Exception` never ticked on the worker nor on the
    /// client; then dispose, close the client and stop the server. Also checks that the mirror
    /// ended on the worker's clock (read-your-writes: every change here came through `api`) and
    /// shows the worker's schema (`inspect`).
    pub(crate) async fn finish(self) {
        let ctx = format!("{:?}", self.backend);
        if self.backend == Backend::Edge {
            self.round_trip().await;
        }
        assert_eq!(
            self.worker.tick(EXCEPTION),
            0,
            "{ctx}: Exception ticked on the worker: {}",
            self.worker.string_all()
        );
        if let Some(r) = &self.remote {
            assert_eq!(
                r.client.states().tick(EXCEPTION),
                0,
                "{ctx}: Exception ticked on the client: {}",
                r.client.states().string_all()
            );
            assert_eq!(
                self.api.time(None),
                self.worker.time(None),
                "{ctx}: mirror and worker clocks differ"
            );
            // the mirror also carries the worker's schema (relations changed before connecting)
            assert_eq!(
                self.api.inspect(None),
                self.worker.inspect(None),
                "{ctx}: mirror and worker schemas differ"
            );
        }
        self.api.dispose();
        within(&ctx, self.api.when_disposed()).await.expect("when_disposed");
        if let Some(r) = self.remote {
            r.client.close().await;
            r.server.shutdown();
            self.worker.dispose();
        }
    }
}

/// Poll `cond` until it holds, for at most [`WAIT`] (for effects no event reports, such as a
/// closed session dropping its worker bindings).
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Await `fut` for at most [`WAIT`].
pub(crate) async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {WAIT:?}"),
    }
}

/// A mutation that must not fail at the API level; returns its outcome.
pub(crate) async fn ok(f: BoxFuture<'_, Result<Outcome, Error>>) -> Outcome {
    match within("mutation", f).await {
        Ok(o) => o,
        Err(e) => panic!("mutation failed: {e}"),
    }
}

/// Upstream `assertStates`: the active states, as a set.
#[track_caller]
pub(crate) fn assert_states(w: &dyn Api, expected: &[&str]) {
    let mut got = w.active_states();
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "active states of {}", w.string_all());
}

/// Upstream `assertTime`.
#[track_caller]
pub(crate) fn assert_time(w: &dyn Api, states: &[&str], time: &[u64]) {
    assert_eq!(w.time(Some(states)), time, "time of {states:?} in {}", w.string_all());
}

/// Upstream `assertString`: the dedented expectation equals `inspect(states)`, both trimmed.
#[track_caller]
pub(crate) fn assert_inspect(w: &dyn Api, expected: &str, states: Option<&[&str]>) {
    let want = dedent(expected);
    assert_eq!(w.inspect(states).trim_matches('\n'), want.trim_matches('\n'));
}

fn dedent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| if l.trim().is_empty() { "" } else { &l[indent..] })
        .collect::<Vec<_>>()
        .join("\n")
}
