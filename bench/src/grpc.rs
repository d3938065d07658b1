//! The same scenario over gRPC with tonic, as upstream's `client_grpc_test.go` and
//! `server_grpc.go` (asyncmachine-go v0.8.0): the plain worker behind `WorkerService`
//! (`proto/worker.proto`), a `Subscribe` stream notified after every op, and per op one stream
//! message, `GetValue` and `CallOp` (3 calls). The loop runs N+1 times; `Start` comes from the
//! main task while the loop task waits on the stream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use amrpc_core::demo::BenchWorker;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::arpc::SETTLE;
use crate::proxy::{self, Proto, Proxy};
use crate::scenario::{Finish, Scenario, Timed};

/// The messages of `proto/worker.proto` as prost structs (same field numbers and types), and the
/// tonic stubs that build.rs generates for them.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub(crate) mod pb {
    /// `message Empty {}`
    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct Empty {}

    /// `message CallOpRequest { int32 op = 1; }`
    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct CallOpRequest {
        #[prost(int32, tag = "1")]
        pub op: i32,
    }

    /// `message CallOpResponse { bool success = 1; }`
    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct CallOpResponse {
        #[prost(bool, tag = "1")]
        pub success: bool,
    }

    /// `message GetValueResponse { int32 value = 1; }`
    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct GetValueResponse {
        #[prost(int32, tag = "1")]
        pub value: i32,
    }

    include!(concat!(env!("OUT_DIR"), "/proto.WorkerService.rs"));
}

use pb::worker_service_client::WorkerServiceClient;
use pb::worker_service_server::{WorkerService, WorkerServiceServer};

type Notify = mpsc::Sender<Result<pb::Empty, Status>>;

/// Upstream's `WorkerServiceServer`: a mutex around the worker, one subscriber channel (capacity
/// 10, as upstream), and a count of stream sends.
struct Svc {
    worker: Arc<BenchWorker>,
    mu: Mutex<()>,
    subscriber: OnceLock<Notify>,
    ready: watch::Sender<bool>,
    sends: Arc<AtomicU64>,
}

impl Svc {
    /// The worker's listener: one stream message per op.
    async fn notify(&self) -> Result<(), Status> {
        let tx = self
            .subscriber
            .get()
            .ok_or_else(|| Status::failed_precondition("no subscriber"))?;
        self.sends.fetch_add(1, Ordering::Relaxed);
        tx.send(Ok(pb::Empty {}))
            .await
            .map_err(|_| Status::unavailable("subscriber gone"))
    }
}

#[tonic::async_trait]
impl WorkerService for Svc {
    async fn start(&self, _req: Request<pb::Empty>) -> Result<Response<pb::Empty>, Status> {
        let mut ready = self.ready.subscribe();
        ready
            .wait_for(|r| *r)
            .await
            .map_err(|_| Status::unavailable("closing"))?;
        {
            let _g = self.mu.lock().unwrap_or_else(|e| e.into_inner());
            self.worker.start();
        }
        self.notify().await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn call_op(&self, req: Request<pb::CallOpRequest>) -> Result<Response<pb::CallOpResponse>, Status> {
        let op = req.into_inner().op;
        {
            let _g = self.mu.lock().unwrap_or_else(|e| e.into_inner());
            self.worker.call_op(i64::from(op));
        }
        self.notify().await?;
        Ok(Response::new(pb::CallOpResponse { success: true }))
    }

    type SubscribeStream = ReceiverStream<Result<pb::Empty, Status>>;

    async fn subscribe(&self, _req: Request<pb::Empty>) -> Result<Response<Self::SubscribeStream>, Status> {
        let (tx, rx) = mpsc::channel(10);
        self.subscriber
            .set(tx)
            .map_err(|_| Status::already_exists("one subscriber only"))?;
        self.ready.send_replace(true);
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_value(&self, _req: Request<pb::Empty>) -> Result<Response<pb::GetValueResponse>, Status> {
        let v = {
            let _g = self.mu.lock().unwrap_or_else(|e| e.into_inner());
            self.worker.value()
        };
        Ok(Response::new(pb::GetValueResponse { value: v as i32 }))
    }
}

/// A tonic server with the plain worker, optionally behind the metering proxy, a client channel
/// and the open `Subscribe` stream.
pub(crate) struct Grpc {
    worker: Arc<BenchWorker>,
    sends: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    client: WorkerServiceClient<Channel>,
    stream: Option<Streaming<pb::Empty>>,
    /// Client calls (Subscribe, Start, GetValue, CallOp).
    calls: u64,
    proxy: Option<Proxy>,
}

async fn serve(worker: Arc<BenchWorker>, sends: Arc<AtomicU64>) -> Result<(SocketAddr, Grpc0), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (ready, _) = watch::channel(false);
    let svc = Svc {
        worker,
        mu: Mutex::new(()),
        subscriber: OnceLock::new(),
        ready,
        sends,
    };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(WorkerServiceServer::new(svc))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async {
                let _ = stop_rx.await;
            }),
    );
    Ok((addr, Grpc0 { stop: stop_tx, server }))
}

struct Grpc0 {
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Scenario for Grpc {
    async fn setup(seed: u64, proxied: bool) -> Result<Self, String> {
        let worker = BenchWorker::new(seed);
        let sends = Arc::new(AtomicU64::new(0));
        let (addr, g0) = serve(worker.clone(), sends.clone()).await?;
        let proxy = if proxied {
            Some(proxy::spawn(addr, Proto::H2).await.map_err(|e| e.to_string())?)
        } else {
            None
        };
        let target = proxy.as_ref().map_or(addr, |p| p.addr);
        let channel = Endpoint::from_shared(format!("http://{target}"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut client = WorkerServiceClient::new(channel);
        let stream = client
            .subscribe(pb::Empty {})
            .await
            .map_err(|e| format!("Subscribe: {e}"))?
            .into_inner();
        Ok(Grpc {
            worker,
            sends,
            stop: Some(g0.stop),
            server: g0.server,
            client,
            stream: Some(stream),
            calls: 1,
            proxy,
        })
    }

    async fn timed(&mut self, n: usize) -> Result<Timed, String> {
        let mut stream = self.stream.take().ok_or("the stream was used")?;
        let mut client = self.client.clone();
        let before = self.proxy.as_ref().map(|p| p.meter.snapshot());
        // the loop waits on the stream before Start, as upstream's goroutine does
        let lp = tokio::spawn(async move {
            let mut calls = 0u64;
            for i in 0..=n {
                match stream.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(format!("op {i}: the stream ended")),
                    Err(e) => return Err(format!("op {i}: stream: {e}")),
                }
                calls += 1;
                let v = client
                    .get_value(pb::Empty {})
                    .await
                    .map_err(|e| format!("op {i}: GetValue: {e}"))?
                    .into_inner()
                    .value;
                if !(1..=3).contains(&v) {
                    return Err(format!("op {i}: unknown value {v}"));
                }
                calls += 1;
                let ok = client
                    .call_op(pb::CallOpRequest { op: v })
                    .await
                    .map_err(|e| format!("op {i}: CallOp: {e}"))?
                    .into_inner()
                    .success;
                if !ok {
                    return Err(format!("op {i}: CallOp failed"));
                }
            }
            Ok((stream, calls))
        });
        let t0 = Instant::now();
        self.calls += 1;
        self.client
            .start(pb::Empty {})
            .await
            .map_err(|e| format!("Start: {e}"))?;
        let (stream, calls) = lp.await.map_err(|e| e.to_string())??;
        let elapsed = t0.elapsed();
        self.calls += calls;
        self.stream = Some(stream);
        let wire = match (&self.proxy, before) {
            (Some(p), Some(b)) => Some(p.meter.snapshot().minus(&b)),
            _ => None,
        };
        Ok(Timed { elapsed, ops: n, wire })
    }

    async fn finish(mut self) -> Result<Finish, String> {
        tokio::time::sleep(SETTLE).await;
        let total = self.proxy.as_ref().map(|p| p.meter.snapshot());
        drop(self.stream.take());
        drop(self.client);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // the open stream keeps the graceful shutdown waiting: bound it
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
        }
        Ok(Finish {
            errors: self.worker.errors(),
            successes: self.worker.successes(),
            total,
            calls: Some(self.calls + self.sends.load(Ordering::Relaxed)),
        })
    }
}
