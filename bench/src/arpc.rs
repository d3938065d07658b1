//! amrpc over WebSocket on 127.0.0.1: a `Server` serving `demo::bench_worker`, the native
//! `Client`, and upstream's client loop (spec `arpc.md` §7.1): wait on the mirror for `Event`
//! +2 (local), `switch(Values)` (local), `add1(CallOp, {"Op": n})` (the only round trip), which
//! must return `Executed`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use amrpc_client::{Client, ClientOpts};
use amrpc_core::demo::{self, BenchWorker, CALL_OP, EVENT, START, VALUES};
use amrpc_core::{Api, Machine, Outcome};
use amrpc_server::{Server, ServerOpts};

use crate::proxy::{self, Proto, Proxy};
use crate::scenario::{Finish, Scenario, Timed};

/// How long to let trailing pushes arrive before the final byte count (push interval: 16 ms).
pub(crate) const SETTLE: Duration = Duration::from_millis(100);

/// A server with the benchmark worker, optionally behind the metering proxy, and a connected
/// native client.
pub(crate) struct Arpc {
    srv: Server,
    machine: Machine,
    worker: Arc<BenchWorker>,
    client: Client,
    proxy: Option<Proxy>,
}

/// Client options of the benchmark: no reconnects (a lost connection fails the run).
pub(crate) fn client_opts(id: &str) -> ClientOpts {
    ClientOpts {
        client_id: id.into(),
        reconnect: false,
        conn_retries: 3,
        ..Default::default()
    }
}

impl Scenario for Arpc {
    async fn setup(seed: u64, proxied: bool) -> Result<Self, String> {
        let (machine, worker) = demo::bench_worker(seed).map_err(|e| e.to_string())?;
        let srv = Server::new(ServerOpts {
            // a benchmark client sends as fast as it can: no per-session rate limit
            mutation_rate: 0,
            ..Default::default()
        });
        srv.add_worker("bench", machine.clone()).map_err(|e| e.to_string())?;
        let addr = srv.spawn("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let proxy = if proxied {
            Some(proxy::spawn(addr, Proto::Ws).await.map_err(|e| e.to_string())?)
        } else {
            None
        };
        let target = proxy.as_ref().map_or(addr, |p| p.addr);
        let client = Client::connect(&format!("ws://{target}/ws/bench"), client_opts("bench"))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Arpc {
            srv,
            machine,
            worker,
            client,
            proxy,
        })
    }

    async fn timed(&mut self, n: usize) -> Result<Timed, String> {
        let mirror = self.client.mirror();
        let mut ticks = mirror.tick(EVENT);
        let before = self.proxy.as_ref().map(|p| p.meter.snapshot());
        let t0 = Instant::now();
        match mirror.add1(START, None).await {
            Ok(Outcome::Executed) => {}
            other => return Err(format!("add1(Start): {other:?}")),
        }
        let mut i = 0;
        loop {
            mirror
                .when_ticks_eq(EVENT, ticks + 2, None)
                .await
                .map_err(|e| format!("op {i}: waiting for Event: {e:?}"))?;
            ticks += 2;
            i += 1;
            if i > n {
                break;
            }
            let op = demo::op_of(mirror.switch(&[&VALUES])).ok_or_else(|| format!("op {i}: no value active"))?;
            match mirror.add1(CALL_OP, Some(demo::op_args(op))).await {
                Ok(Outcome::Executed) => {}
                other => {
                    return Err(format!(
                        "op {i}: add1(CallOp): {other:?}, worker err {:?}",
                        mirror.err()
                    ));
                }
            }
        }
        let elapsed = t0.elapsed();
        let wire = match (&self.proxy, before) {
            (Some(p), Some(b)) => Some(p.meter.snapshot().minus(&b)),
            _ => None,
        };
        Ok(Timed { elapsed, ops: n, wire })
    }

    async fn finish(self) -> Result<Finish, String> {
        tokio::time::sleep(SETTLE).await;
        let total = self.proxy.as_ref().map(|p| p.meter.snapshot());
        self.client.close().await;
        self.srv.shutdown();
        let (errors, successes) = (self.worker.errors(), self.worker.successes());
        self.worker.unsubscribe();
        self.machine.dispose();
        // upstream's calls: every client call or notify, plus every server push
        let calls = total.map(|t| t.c2s.messages + t.s2c.kinds[crate::tags().update as usize]);
        Ok(Finish {
            errors,
            successes,
            total,
            calls,
        })
    }
}
