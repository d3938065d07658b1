//! Raw WebSocket clients for the robustness tests: a tungstenite socket that did the handshake
//! and nothing else, a TCP socket after a hand-made upgrade (to send frames tungstenite would
//! never produce), and readers that run until the server ends the connection (bounded).

use amrpc_core::wire::{ClientMsg, ErrorCode, Hello, PROTOCOL_VERSION, ServerMsg};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::{WAIT, within};

/// A tungstenite client socket.
pub(crate) type RawWs = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

pub(crate) fn hello(id: &str) -> Vec<u8> {
    ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        client_id: id.into(),
        instance: 42,
        ..Default::default()
    })
    .encode()
    .unwrap()
}

/// A raw connection that did the handshake (Hello, Welcome).
pub(crate) async fn raw_open(url: &str, id: &str) -> RawWs {
    let (mut ws, _) = within(WAIT, "raw connect", tokio_tungstenite::connect_async(url))
        .await
        .unwrap();
    ws.send(Message::Binary(hello(id).into())).await.unwrap();
    match within(WAIT, "Welcome", ws.next()).await {
        Some(Ok(Message::Binary(b))) => {
            assert!(matches!(ServerMsg::decode(&b, 1 << 20), Ok(ServerMsg::Welcome(_))));
        }
        other => panic!("expected Welcome, got {other:?}"),
    }
    ws
}

/// Read until the server ends the connection: the messages, and the close frame if any.
pub(crate) async fn read_to_end(ws: &mut RawWs) -> (Vec<ServerMsg>, Option<CloseFrame>) {
    let mut msgs = Vec::new();
    let mut close = None;
    within(WAIT, "the server closes the connection", async {
        for _ in 0..10_000 {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => msgs.push(ServerMsg::decode(&b, 1 << 24).expect("server frame")),
                Some(Ok(Message::Close(f))) => close = f,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
        panic!("too many messages");
    })
    .await;
    (msgs, close)
}

pub(crate) fn bye_code(msgs: &[ServerMsg]) -> Option<ErrorCode> {
    msgs.iter().find_map(|m| match m {
        ServerMsg::Bye(e) => Some(e.code),
        _ => None,
    })
}

/// A raw TCP WebSocket handshake, to send frames tungstenite would not produce.
pub(crate) async fn raw_tcp_upgrade(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws/w HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    within(WAIT, "101 Switching Protocols", async {
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
            s.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
    })
    .await;
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}

/// Read raw bytes until EOF or reset (bounded).
pub(crate) async fn tcp_until_closed(s: &mut TcpStream) -> usize {
    let mut n = 0;
    let mut buf = [0u8; 4096];
    within(WAIT, "the server closes the TCP connection", async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => n += k,
            }
        }
    })
    .await;
    n
}
