//! A byte-counting TCP proxy, like upstream's `TrafficMeter` (asyncmachine-go `pkg/rpc`): the
//! client dials the proxy, which dials the server and copies both directions. It sums the TCP
//! payload bytes of both directions (application bytes plus codec and transport framing, not
//! IP/TCP headers), and it also parses the stream it copies, without buffering or allocating per
//! message:
//!
//! - [`Proto::Ws`]: the HTTP upgrade, then WebSocket frame headers (RFC 6455 §5.2). Each data
//!   message is classified by its first payload byte, which is the postcard variant index of
//!   amrpc's `ClientMsg` / `ServerMsg` (client frames are unmasked for that one byte).
//! - [`Proto::H2`]: the HTTP/2 client preface, then the 9-byte frame headers (RFC 9113 §4.1),
//!   classified by frame type.
//!
//! A *turn* is counted each time a server→client message follows a client→server one: in a
//! request/reply protocol with no pushes, turns equal round trips.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Which protocol the proxy parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    /// HTTP/1.1 upgrade, then WebSocket frames.
    Ws,
    /// HTTP/2 (gRPC).
    H2,
}

/// Message kinds counted per direction: WebSocket message tags 0..15 or HTTP/2 frame types 0..15.
pub(crate) const KINDS: usize = 16;

#[derive(Default)]
struct Dir {
    /// All bytes copied.
    bytes: AtomicU64,
    /// The HTTP/1.1 upgrade request or response, or the HTTP/2 client preface.
    preamble: AtomicU64,
    /// Frames (WebSocket: all opcodes; HTTP/2: all types).
    frames: AtomicU64,
    /// Payload bytes of those frames (bytes - preamble - payload = frame headers).
    payload: AtomicU64,
    /// WebSocket: data messages (opcode 1 or 2); HTTP/2: HEADERS and DATA frames.
    messages: AtomicU64,
    /// WebSocket: control frames (close, ping, pong) and continuations.
    control: AtomicU64,
    /// WebSocket: data messages by first payload byte; HTTP/2: frames by type.
    kinds: [AtomicU64; KINDS],
}

impl Dir {
    fn snapshot(&self) -> DirSnap {
        DirSnap {
            bytes: self.bytes.load(Ordering::Acquire),
            preamble: self.preamble.load(Ordering::Acquire),
            frames: self.frames.load(Ordering::Acquire),
            payload: self.payload.load(Ordering::Acquire),
            messages: self.messages.load(Ordering::Acquire),
            control: self.control.load(Ordering::Acquire),
            kinds: std::array::from_fn(|i| self.kinds[i].load(Ordering::Acquire)),
        }
    }
}

/// Counters of one direction at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct DirSnap {
    /// All bytes copied (TCP payload).
    pub(crate) bytes: u64,
    /// HTTP upgrade or HTTP/2 preface bytes.
    pub(crate) preamble: u64,
    /// Frames of any kind.
    pub(crate) frames: u64,
    /// Frame payload bytes.
    pub(crate) payload: u64,
    /// Data messages (WebSocket) or HEADERS + DATA frames (HTTP/2).
    pub(crate) messages: u64,
    /// WebSocket control frames and continuations.
    pub(crate) control: u64,
    /// Messages by kind (see [`KINDS`]).
    pub(crate) kinds: [u64; KINDS],
}

impl DirSnap {
    fn minus(&self, o: &DirSnap) -> DirSnap {
        DirSnap {
            bytes: self.bytes - o.bytes,
            preamble: self.preamble - o.preamble,
            frames: self.frames - o.frames,
            payload: self.payload - o.payload,
            messages: self.messages - o.messages,
            control: self.control - o.control,
            kinds: std::array::from_fn(|i| self.kinds[i] - o.kinds[i]),
        }
    }

    /// Frame header bytes (WebSocket or HTTP/2 framing).
    pub(crate) fn framing(&self) -> u64 {
        self.bytes - self.preamble - self.payload
    }
}

/// Both directions and the turn count at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Snap {
    /// Client → server.
    pub(crate) c2s: DirSnap,
    /// Server → client.
    pub(crate) s2c: DirSnap,
    /// Server messages that followed a client message (round trips when nothing is pushed).
    pub(crate) turns: u64,
    /// Connections proxied.
    pub(crate) conns: u64,
}

impl Snap {
    /// The counts between `earlier` and `self`.
    pub(crate) fn minus(&self, earlier: &Snap) -> Snap {
        Snap {
            c2s: self.c2s.minus(&earlier.c2s),
            s2c: self.s2c.minus(&earlier.s2c),
            turns: self.turns - earlier.turns,
            conns: self.conns - earlier.conns,
        }
    }

    /// Bytes in both directions.
    pub(crate) fn bytes(&self) -> u64 {
        self.c2s.bytes + self.s2c.bytes
    }
}

/// The shared counters of a proxy.
#[derive(Default)]
pub(crate) struct Meter {
    c2s: Dir,
    s2c: Dir,
    turns: AtomicU64,
    /// 0: nothing yet, 1: the last message went client → server, 2: server → client.
    last: AtomicU8,
    conns: AtomicU64,
}

impl Meter {
    /// The counters now.
    pub(crate) fn snapshot(&self) -> Snap {
        Snap {
            c2s: self.c2s.snapshot(),
            s2c: self.s2c.snapshot(),
            turns: self.turns.load(Ordering::Acquire),
            conns: self.conns.load(Ordering::Acquire),
        }
    }

    fn message(&self, to_server: bool) {
        if to_server {
            self.last.store(1, Ordering::Release);
        } else if self.last.swap(2, Ordering::AcqRel) == 1 {
            self.turns.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// An incremental parser of one direction of a proxied connection.
struct Parser {
    proto: Proto,
    to_server: bool,
    /// Still in the HTTP upgrade (WebSocket) or the client preface (HTTP/2).
    preamble: bool,
    /// HTTP/1.1: how many bytes of "\r\n\r\n" were matched; HTTP/2: preface bytes left.
    preamble_state: usize,
    hdr: [u8; 14],
    hdr_len: usize,
    payload_left: u64,
    /// WebSocket: classify the message by its next payload byte.
    want_tag: bool,
    mask0: u8,
}

const H2_PREFACE_LEN: usize = 24;

impl Parser {
    fn new(proto: Proto, to_server: bool) -> Parser {
        Parser {
            proto,
            to_server,
            preamble: proto == Proto::Ws || to_server,
            preamble_state: if proto == Proto::H2 { H2_PREFACE_LEN } else { 0 },
            hdr: [0; 14],
            hdr_len: 0,
            payload_left: 0,
            want_tag: false,
            mask0: 0,
        }
    }

    /// The header length once its first bytes are known (0: not known yet).
    fn header_len(&self) -> usize {
        match self.proto {
            Proto::H2 => 9,
            Proto::Ws => {
                if self.hdr_len < 2 {
                    return 0;
                }
                let ext = match self.hdr[1] & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                let mask = if self.hdr[1] & 0x80 != 0 { 4 } else { 0 };
                2 + ext + mask
            }
        }
    }

    fn feed(&mut self, data: &[u8], dir: &Dir, meter: &Meter) {
        dir.bytes.fetch_add(data.len() as u64, Ordering::AcqRel);
        let mut i = 0;
        while i < data.len() {
            if self.preamble {
                match self.proto {
                    Proto::Ws => {
                        const END: &[u8; 4] = b"\r\n\r\n";
                        let b = data[i];
                        self.preamble_state = if b == END[self.preamble_state] {
                            self.preamble_state + 1
                        } else if b == b'\r' {
                            1
                        } else {
                            0
                        };
                        i += 1;
                        dir.preamble.fetch_add(1, Ordering::AcqRel);
                        if self.preamble_state == 4 {
                            self.preamble = false;
                        }
                    }
                    Proto::H2 => {
                        let n = self.preamble_state.min(data.len() - i);
                        i += n;
                        self.preamble_state -= n;
                        dir.preamble.fetch_add(n as u64, Ordering::AcqRel);
                        if self.preamble_state == 0 {
                            self.preamble = false;
                        }
                    }
                }
                continue;
            }
            if self.payload_left > 0 {
                if self.want_tag {
                    let tag = (data[i] ^ self.mask0) as usize;
                    dir.kinds[tag.min(KINDS - 1)].fetch_add(1, Ordering::AcqRel);
                    self.want_tag = false;
                }
                let n = self.payload_left.min((data.len() - i) as u64);
                i += n as usize;
                self.payload_left -= n;
                continue;
            }
            self.hdr[self.hdr_len] = data[i];
            self.hdr_len += 1;
            i += 1;
            let need = self.header_len();
            if need == 0 || self.hdr_len < need {
                continue;
            }
            self.frame(dir, meter);
            self.hdr_len = 0;
        }
    }

    /// A whole frame header was read.
    fn frame(&mut self, dir: &Dir, meter: &Meter) {
        dir.frames.fetch_add(1, Ordering::AcqRel);
        let h = &self.hdr;
        match self.proto {
            Proto::H2 => {
                let len = u64::from(h[0]) << 16 | u64::from(h[1]) << 8 | u64::from(h[2]);
                let ty = h[3] as usize;
                dir.kinds[ty.min(KINDS - 1)].fetch_add(1, Ordering::AcqRel);
                dir.payload.fetch_add(len, Ordering::AcqRel);
                self.payload_left = len;
                // DATA (0) and HEADERS (1) carry the calls; SETTINGS, PING, WINDOW_UPDATE … don't
                if ty <= 1 {
                    dir.messages.fetch_add(1, Ordering::AcqRel);
                    meter.message(self.to_server);
                }
            }
            Proto::Ws => {
                let opcode = h[0] & 0x0f;
                let masked = h[1] & 0x80 != 0;
                let (len, at) = match h[1] & 0x7f {
                    126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
                    127 => (u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]), 10),
                    l => (u64::from(l), 2),
                };
                self.mask0 = if masked { h[at] } else { 0 };
                dir.payload.fetch_add(len, Ordering::AcqRel);
                self.payload_left = len;
                if opcode == 1 || opcode == 2 {
                    dir.messages.fetch_add(1, Ordering::AcqRel);
                    meter.message(self.to_server);
                    if len > 0 {
                        self.want_tag = true;
                    }
                } else {
                    dir.control.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
    }
}

/// A running proxy; dropping it stops accepting (open connections run until either side closes).
pub(crate) struct Proxy {
    /// Where clients connect.
    pub(crate) addr: SocketAddr,
    /// The counters.
    pub(crate) meter: Arc<Meter>,
    accept: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Listen on 127.0.0.1 (a free port) and forward every connection to `target`.
pub(crate) async fn spawn(target: SocketAddr, proto: Proto) -> std::io::Result<Proxy> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let meter = Arc::new(Meter::default());
    let m = meter.clone();
    let accept = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let m = m.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                m.conns.fetch_add(1, Ordering::AcqRel);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = tokio::spawn(pump(cr, sw, Parser::new(proto, true), m.clone()));
                pump(sr, cw, Parser::new(proto, false), m).await;
                let _ = up.await;
            });
        }
    });
    Ok(Proxy { addr, meter, accept })
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut parser: Parser,
    meter: Arc<Meter>,
) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let dir = if parser.to_server { &meter.c2s } else { &meter.s2c };
        parser.feed(&buf[..n], dir, &meter);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_frames_split_anywhere_are_counted() {
        let mut stream = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        // a masked binary frame, 3 payload bytes, first byte 0x01 after unmasking
        stream.extend([0x82, 0x83, 0xaa, 0, 0, 0, 0x01 ^ 0xaa, 9, 9]);
        // a 200-byte masked frame (16-bit length), first byte 0x05
        stream.extend([0x82, 0x80 | 126, 0, 200, 0x10, 1, 2, 3]);
        let mut payload = vec![0u8; 200];
        payload[0] = 0x05 ^ 0x10;
        stream.extend(payload);
        // a ping
        stream.extend([0x89, 0x80, 1, 2, 3, 4]);
        for split in 1..stream.len() {
            let meter = Meter::default();
            let mut p = Parser::new(Proto::Ws, true);
            p.feed(&stream[..split], &meter.c2s, &meter);
            p.feed(&stream[split..], &meter.c2s, &meter);
            let s = meter.snapshot().c2s;
            assert_eq!(s.bytes, stream.len() as u64);
            assert_eq!(s.preamble, 27);
            assert_eq!((s.frames, s.messages, s.control), (3, 2, 1));
            assert_eq!(s.payload, 203);
            assert_eq!((s.kinds[1], s.kinds[5]), (1, 1), "split at {split}");
            assert_eq!(s.framing(), 6 + 8 + 6);
        }
    }

    #[test]
    fn http2_frames_and_turns() {
        let meter = Meter::default();
        let mut up = Parser::new(Proto::H2, true);
        let mut down = Parser::new(Proto::H2, false);
        let mut c2s = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        c2s.extend([0, 0, 2, 1, 4, 0, 0, 0, 1, 7, 7]); // HEADERS, 2 bytes
        c2s.extend([0, 0, 1, 0, 1, 0, 0, 0, 1, 7]); // DATA, 1 byte
        up.feed(&c2s, &meter.c2s, &meter);
        down.feed(&[0, 0, 0, 8, 0, 0, 0, 0, 0], &meter.s2c, &meter); // WINDOW_UPDATE: not a message
        assert_eq!(meter.snapshot().turns, 0);
        down.feed(&[0, 0, 1, 1, 4, 0, 0, 0, 1, 7], &meter.s2c, &meter);
        down.feed(&[0, 0, 1, 0, 0, 0, 0, 0, 1, 7], &meter.s2c, &meter);
        let s = meter.snapshot();
        assert_eq!(s.turns, 1);
        assert_eq!((s.c2s.preamble, s.c2s.messages, s.c2s.payload), (24, 2, 3));
        assert_eq!((s.s2c.frames, s.s2c.messages, s.s2c.kinds[8]), (3, 2, 1));
    }
}
