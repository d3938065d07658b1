//! A real `nats-server` with JetStream per test (`amrpc_nats::testing`), and the pieces of a
//! NATS topology: a worker host and edge servers.

#![allow(dead_code)]

use amrpc_core::Machine;
use amrpc_nats::testing::NatsServer;
use amrpc_nats::{EdgeMirror, EdgeOpts, HostOpts, WorkerHost};
use amrpc_server::{Server, ServerOpts, Worker};

/// The test's own `nats-server` (see `amrpc_nats::testing`).
pub(crate) struct Nats(NatsServer);

impl Nats {
    pub(crate) async fn start() -> Nats {
        Nats(NatsServer::start().await.expect("nats-server"))
    }

    pub(crate) fn url(&self) -> String {
        self.0.url()
    }

    pub(crate) async fn client(&self) -> async_nats::Client {
        self.0.client().await.expect("nats connect")
    }

    /// Stop and start again on the same port and storage (JetStream keeps its buckets).
    pub(crate) async fn restart(self) -> Nats {
        Nats(self.0.restart().await.expect("nats-server restart"))
    }
}

/// A worker host: `machine` served on its own WebSocket server and published on NATS with
/// that server's replay cache.
pub(crate) struct Host {
    pub(crate) server: Server,
    pub(crate) worker: Worker,
    pub(crate) host: WorkerHost,
    pub(crate) addr: std::net::SocketAddr,
}

pub(crate) async fn host(nats: &Nats, name: &str, machine: Machine) -> Host {
    let server = Server::new(ServerOpts::default());
    let worker = server.add_worker(name, machine).expect("add_worker");
    let addr = server.spawn("127.0.0.1:0").await.expect("spawn");
    let link = amrpc_nats::connect(&nats.url(), "test-host").await.expect("nats");
    let host = amrpc_server::nats::publish_workers(&server, &link, &HostOpts::default())
        .await
        .expect("publish the worker")
        .pop()
        .expect("one worker host");
    Host {
        server,
        worker,
        host,
        addr,
    }
}

/// An edge server: worker `name` mirrored from NATS and served on its own WebSocket server.
pub(crate) struct Edge {
    pub(crate) server: Server,
    pub(crate) mirror: EdgeMirror,
    pub(crate) addr: std::net::SocketAddr,
}

pub(crate) async fn edge(nats: &Nats, name: &str) -> Edge {
    let mirror = EdgeMirror::connect(nats.client().await, name, EdgeOpts::default())
        .await
        .expect("mirror the worker");
    let server = Server::new(ServerOpts::default());
    amrpc_server::nats::serve_mirror(&server, name, mirror.clone()).expect("serve the mirror");
    let addr = server.spawn("127.0.0.1:0").await.expect("spawn");
    Edge { server, mirror, addr }
}

impl Edge {
    pub(crate) fn url(&self, name: &str) -> String {
        format!("ws://{}/ws/{name}", self.addr)
    }
}
