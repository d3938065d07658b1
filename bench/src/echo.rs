//! The floor of the native op variants (issue 13, item 2): a raw tokio-tungstenite client and an
//! axum WebSocket echo (`/echo`, the same axum and tokio stack as the amrpc server) on the
//! variant's runtime, one binary message of the amrpc op's request size sent and awaited per op.
//! Its ns/op beside "amrpc WS (direct)" on the same runtime is the ratio item 2 asks for.

use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::scenario::{Finish, Scenario, Timed};

/// The amrpc op's request payload (docs/BENCHMARKS.md, "bytes per op").
pub(crate) const REQUEST_BYTES: usize = 11;

/// A served `/echo` and a connected client.
pub(crate) struct Echo {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    server: tokio::task::JoinHandle<()>,
    /// Round trips whose reply was the message sent.
    ok: usize,
}

impl Scenario for Echo {
    async fn setup(_seed: u64, _proxied: bool) -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let router = axum::Router::new().route("/echo", axum::routing::get(crate::connect::echo));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/echo"))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Echo { ws, server, ok: 0 })
    }

    async fn timed(&mut self, n: usize) -> Result<Timed, String> {
        let mut msg = [0u8; REQUEST_BYTES];
        let t0 = Instant::now();
        for i in 0..n {
            msg[0] = i as u8;
            self.ws
                .send(Message::Binary(msg.to_vec().into()))
                .await
                .map_err(|e| format!("echo {i}: {e}"))?;
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) if b[..] == msg[..] => self.ok += 1,
                other => return Err(format!("echo {i}: {other:?}")),
            }
        }
        Ok(Timed {
            elapsed: t0.elapsed(),
            ops: n,
            wire: None,
        })
    }

    async fn finish(mut self) -> Result<Finish, String> {
        let _ = self.ws.close(None).await;
        self.server.abort();
        Ok(Finish {
            errors: 0,
            successes: self.ok,
            total: None,
            calls: None,
        })
    }
}
