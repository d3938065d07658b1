//! A real `nats-server` with JetStream per test (Debian's package; `scripts/test.sh` installs
//! it): on a free loopback port with its own storage directory, stopped when dropped. And the
//! pieces of a NATS topology: a worker host and edge servers.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use amrpc_core::Machine;
use amrpc_nats::{EdgeMirror, EdgeOpts, HostOpts, WorkerHost};
use amrpc_server::{Server, ServerOpts, Worker};

/// One `nats-server -js` process.
pub(crate) struct Nats {
    child: Child,
    pub(crate) port: u16,
    dir: std::path::PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Nats {
    /// Start one and wait (bounded) until it accepts connections.
    pub(crate) async fn start() -> Nats {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("amrpc-nats-{}-{port}", std::process::id()));
        Self::start_on(port, dir).await
    }

    async fn start_on(port: u16, dir: std::path::PathBuf) -> Nats {
        std::fs::create_dir_all(&dir).expect("storage dir");
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (apt-get install nats-server; scripts/test.sh does)");
        // owned from here: a panic below stops it (Drop)
        let nats = Nats { child, port, dir };
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return nats;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("nats-server did not listen on {port} within 5 s");
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A client of this server that reconnects forever.
    pub(crate) async fn client(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(self.url())
            .await
            .expect("nats connect")
    }

    /// Stop and start again on the same port and storage (JetStream keeps its buckets).
    pub(crate) async fn restart(mut self) -> Nats {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (port, dir) = (self.port, self.dir.clone());
        std::mem::forget(self);
        Self::start_on(port, dir).await
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
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
