//! A root server with one worker `w`, and a relay: another server serving the root worker's
//! mirror as its own `w` (shared by the tests that go through a relay).
#![allow(dead_code)] // each test crate uses part of it

use std::net::SocketAddr;

use amrpc_client::{Client, ClientOpts};
use amrpc_core::Machine;
use amrpc_server::{Server, ServerOpts, Worker};

pub(crate) struct Relayed {
    pub(crate) root: Server,
    /// The worker on the root server.
    pub(crate) worker: Worker,
    /// The relay's connection to the root.
    pub(crate) upstream: Client,
    pub(crate) relay: Server,
    /// The relay's `w` (the mirror, served).
    pub(crate) relay_worker: Worker,
    pub(crate) relay_addr: SocketAddr,
}

/// Serve `machine` on a root server and relay it through a second one (both on loopback).
pub(crate) async fn relayed(machine: Machine) -> Relayed {
    let root = Server::new(ServerOpts::default());
    let worker = root.add_worker("w", machine).unwrap();
    let root_addr = root.spawn("127.0.0.1:0").await.unwrap();
    let upstream = Client::connect(&format!("ws://{root_addr}/ws/w"), ClientOpts::default())
        .await
        .unwrap();
    let relay = Server::new(ServerOpts::default());
    let relay_worker = relay.add_relay("w", upstream.mirror().clone()).unwrap();
    let relay_addr = relay.spawn("127.0.0.1:0").await.unwrap();
    Relayed {
        root,
        worker,
        upstream,
        relay,
        relay_worker,
        relay_addr,
    }
}

impl Relayed {
    /// The relay's `w` URL (for leaf clients).
    pub(crate) fn leaf_url(&self) -> String {
        format!("ws://{}/ws/w", self.relay_addr)
    }

    /// Close the upstream connection and stop both servers.
    pub(crate) async fn shutdown(self) {
        self.upstream.close().await;
        self.relay.shutdown();
        self.root.shutdown();
    }
}
