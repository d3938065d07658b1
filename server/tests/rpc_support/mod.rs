//! Shared helpers of `tests/rpc.rs` and `tests/integration.rs`: upstream's test worker schemas, a
//! server/client harness, and a byte-counting TCP proxy that parses WebSocket frames and can cut
//! connections on command.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use amrpc_client::{Client, ClientOpts};
use amrpc_core::states;
use amrpc_core::{EXCEPTION, Machine, Opts, Schema, State, schema, struct_merge};
use amrpc_server::{Server, ServerOpts, Worker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(crate) mod raw;

/// Every wait in the tests is bounded by this unless a test says otherwise.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// Every test body as a whole is bounded by this (mutations awaited directly included).
pub(crate) const TEST_LIMIT: Duration = Duration::from_secs(45);

/// Await `f` for at most `d`, panicking with `what` on timeout.
pub(crate) async fn within<F: std::future::Future>(d: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(d, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {d:?}: {what}"),
    }
}

/// Poll `cond` every 5 ms until it holds, for at most `d`.
pub(crate) async fn eventually(d: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    within(d, what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

// ----- worker schemas (spec §6.3, upstream internal/testing) -----

/// Names in order, without duplicates (upstream `am.SAdd`).
pub(crate) fn sadd(first: &[&str], second: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in first.iter().chain(second) {
        if !out.iter().any(|x| x == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// Upstream's "Rels" states: A Auto Req C; B Multi Add C; C After D; D Add C, B.
pub(crate) fn rels_schema() -> Schema {
    schema([
        ("A", State::new().auto().require(&["C"])),
        ("B", State::new().multi().add(&["C"])),
        ("C", State::new().after(&["D"])),
        ("D", State::new().add(&["C", "B"])),
    ])
}

/// Build and verify a worker: `own` merged over the worker schema, states in `names` order.
pub(crate) fn worker_with(id: &str, own: &Schema, names: &[String], handler_timeout: Option<Duration>) -> Machine {
    let m = Machine::new(
        struct_merge(&[&states::worker_schema(), own]),
        Opts {
            id: Some(id.to_string()),
            handler_timeout,
            ..Default::default()
        },
    )
    .expect("valid worker schema");
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    m.verify_states(&names).expect("verify_states");
    m
}

/// Upstream's test worker order: `Exception, A, B, C, D`, then the worker states.
pub(crate) fn abcd_names() -> Vec<String> {
    sadd(&[EXCEPTION, "A", "B", "C", "D"], &states::WORKER_STATES)
}

/// `utils.NewRelsRpcWorker`: names `Exception, A, B, C, D` + worker states (13 states).
pub(crate) fn rels_worker(id: &str) -> Machine {
    worker_with(id, &rels_schema(), &abcd_names(), None)
}

/// `utils.NewNoRelsRpcWorker`: A–D without relations.
pub(crate) fn norels_worker(id: &str) -> Machine {
    let own = schema([
        ("A", State::new()),
        ("B", State::new()),
        ("C", State::new()),
        ("D", State::new()),
    ]);
    worker_with(id, &own, &abcd_names(), None)
}

// ----- harness -----

/// A running server with one worker named `w`.
pub(crate) struct Harness {
    pub(crate) srv: Server,
    pub(crate) worker: Worker,
    pub(crate) addr: SocketAddr,
    pub(crate) serve: JoinHandle<()>,
    /// The server's own runtime, when it has one (see [`Harness::start_isolated`]).
    rt: Option<tokio::runtime::Runtime>,
}

impl Harness {
    /// Serve `machine` as `/ws/w` on 127.0.0.1:0, in the test's runtime.
    pub(crate) async fn start(machine: Machine, opts: ServerOpts) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_on(listener, machine, opts)
    }

    /// Serve `machine` on an existing listener, in the test's runtime.
    pub(crate) fn start_on(listener: TcpListener, machine: Machine, opts: ServerOpts) -> Harness {
        let addr = listener.local_addr().expect("local addr");
        let srv = Server::new(opts);
        let worker = srv.add_worker("w", machine).expect("add_worker");
        let s = srv.clone();
        let serve = tokio::spawn(async move {
            if let Err(e) = s.serve(listener).await {
                panic!("serve: {e}");
            }
        });
        Harness {
            srv,
            worker,
            addr,
            serve,
            rt: None,
        }
    }

    /// Serve `machine` on 127.0.0.1:0 in a runtime of its own (2 workers), as a separate server
    /// process would: worker handlers that block (sleep) stall only the server's runtime, not the
    /// test's clients, timers and proxy.
    pub(crate) fn start_isolated(machine: Machine, opts: ServerOpts) -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local addr");
        let srv = Server::new(opts);
        let worker = srv.add_worker("w", machine).expect("add_worker");
        let s = srv.clone();
        let serve = rt.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("tokio listener");
            if let Err(e) = s.serve(listener).await {
                panic!("serve: {e}");
            }
        });
        Harness {
            srv,
            worker,
            addr,
            serve,
            rt: Some(rt),
        }
    }

    /// Spawn a task on the server's runtime.
    pub(crate) fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        match &self.rt {
            Some(rt) => drop(rt.spawn(f)),
            None => drop(tokio::spawn(f)),
        }
    }

    /// The worker's URL on the server itself.
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws/w", self.addr)
    }

    /// The served machine.
    pub(crate) fn w(&self) -> &Machine {
        self.worker.machine()
    }

    /// Connect a client to `url`.
    pub(crate) async fn client(url: &str, opts: ClientOpts) -> Client {
        within(WAIT, "client connect", Client::connect(url, opts))
            .await
            .expect("client connects")
    }

    /// Shut down and wait for the serve loop.
    pub(crate) async fn stop(mut self) {
        self.srv.shutdown();
        let _ = tokio::time::timeout(WAIT, &mut self.serve).await;
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.srv.shutdown();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Client options with an id.
pub(crate) fn copts(id: &str) -> ClientOpts {
    ClientOpts {
        client_id: id.to_string(),
        ..Default::default()
    }
}

/// Tick of a state on a machine (0 if unknown).
pub(crate) fn tick(m: &Machine, s: &str) -> u64 {
    if m.has1(s) { m.tick(s) } else { 0 }
}

/// Resident set size of this process in bytes (`VmRSS` of /proc/self/status).
pub(crate) fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

/// xorshift64*: deterministic pseudo-random numbers for the tests.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// ----- the proxy -----

/// Direction of a frame through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Client → server.
    Up,
    /// Server → client.
    Down,
}

/// One WebSocket frame seen by the proxy.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub(crate) conn: u64,
    pub(crate) dir: Dir,
    pub(crate) opcode: u8,
    /// Payload length.
    pub(crate) len: usize,
    /// The first (unmasked) payload bytes, at most 64.
    pub(crate) head: Vec<u8>,
    /// When the proxy saw the frame complete.
    pub(crate) at: std::time::Instant,
}

impl Frame {
    /// The postcard variant index of the message (first payload byte) of a binary frame.
    pub(crate) fn tag(&self) -> Option<u8> {
        (self.opcode == 2).then(|| self.head.first().copied()).flatten()
    }
}

/// Variant indexes of `ServerMsg` (first byte of a server frame).
pub(crate) mod srv_tag {
    pub(crate) const WELCOME: u8 = 0;
    pub(crate) const EXECUTED: u8 = 1;
    pub(crate) const CANCELED: u8 = 2;
    pub(crate) const QUEUED: u8 = 3;
    pub(crate) const UPDATE: u8 = 4;
    pub(crate) const SYNCED: u8 = 5;
    pub(crate) const PAYLOAD: u8 = 6;
    pub(crate) const ERROR: u8 = 8;
    pub(crate) const BYE: u8 = 9;
}

/// Variant indexes of `ClientMsg`.
pub(crate) mod cli_tag {
    pub(crate) const HELLO: u8 = 0;
    pub(crate) const ADD: u8 = 1;
    pub(crate) const REMOVE: u8 = 2;
    pub(crate) const SET: u8 = 3;
    pub(crate) const SYNC: u8 = 4;
    pub(crate) const BYE: u8 = 5;
}

/// Byte counts of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bytes {
    /// Everything on the TCP stream.
    pub(crate) total: u64,
    /// The HTTP upgrade request or response.
    pub(crate) http: u64,
    /// WebSocket frame headers (incl. mask keys).
    pub(crate) ws_headers: u64,
    /// Message payloads (our postcard messages, close frames).
    pub(crate) payload: u64,
}

#[derive(Default)]
struct Log {
    frames: Vec<Frame>,
    up: Bytes,
    down: Bytes,
}

struct Shared {
    log: Mutex<Log>,
    conns: AtomicU64,
    refuse: std::sync::atomic::AtomicBool,
    /// Fault injection: the tag of the next client message to swallow (see [`Proxy::drop_next_up`]).
    drop_up: Mutex<Option<u8>>,
}

/// Incremental WebSocket stream parser of one direction.
struct Parser {
    conn: u64,
    dir: Dir,
    http_done: bool,
    pending: Vec<u8>,
}

impl Parser {
    /// Count and log `data`; returns the bytes to forward: the HTTP part and every complete frame
    /// (a frame is held back until it is complete, and a frame picked by `drop_up` is swallowed).
    fn feed(&mut self, data: &[u8], shared: &Shared) -> Vec<u8> {
        let mut fwd = Vec::with_capacity(data.len());
        let mut drop_up = shared.drop_up.lock().unwrap_or_else(|e| e.into_inner());
        let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
        let log = &mut *log;
        let bytes = match self.dir {
            Dir::Up => &mut log.up,
            Dir::Down => &mut log.down,
        };
        bytes.total += data.len() as u64;
        self.pending.extend_from_slice(data);
        loop {
            if !self.http_done {
                match self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    Some(p) => {
                        bytes.http += (p + 4) as u64;
                        fwd.extend(self.pending.drain(..p + 4));
                        self.http_done = true;
                        continue;
                    }
                    None => return fwd,
                }
            }
            let p = &self.pending;
            if p.len() < 2 {
                return fwd;
            }
            let opcode = p[0] & 0x0f;
            let masked = p[1] & 0x80 != 0;
            let (len, mut hl) = match p[1] & 0x7f {
                126 if p.len() >= 4 => (u16::from_be_bytes([p[2], p[3]]) as usize, 4),
                127 if p.len() >= 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&p[2..10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                126 | 127 => return fwd,
                n => (n as usize, 2),
            };
            let mask = if masked {
                if p.len() < hl + 4 {
                    return fwd;
                }
                let m = [p[hl], p[hl + 1], p[hl + 2], p[hl + 3]];
                hl += 4;
                Some(m)
            } else {
                None
            };
            if p.len() < hl + len {
                return fwd;
            }
            let head: Vec<u8> = p[hl..hl + len.min(64)]
                .iter()
                .enumerate()
                .map(|(i, b)| mask.map_or(*b, |m| b ^ m[i % 4]))
                .collect();
            let first = head.first().copied();
            bytes.ws_headers += hl as u64;
            bytes.payload += len as u64;
            if log.frames.len() < 1_000_000 {
                log.frames.push(Frame {
                    conn: self.conn,
                    dir: self.dir,
                    opcode,
                    len,
                    head,
                    at: std::time::Instant::now(),
                });
            }
            let swallow = self.dir == Dir::Up && opcode == 2 && drop_up.is_some() && *drop_up == first;
            if swallow {
                *drop_up = None;
                self.pending.drain(..hl + len);
            } else {
                fwd.extend(self.pending.drain(..hl + len));
            }
        }
    }
}

/// One side of a proxied connection: everything read from it is counted and parsed (the client
/// side's reads go up, the server side's come down) before it is forwarded, so a frame is logged
/// before the other end can see it.
struct Tap {
    inner: TcpStream,
    parser: Parser,
    shared: Arc<Shared>,
    /// Parsed bytes not yet handed on.
    out: Vec<u8>,
}

impl AsyncRead for Tap {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = buf.remaining().min(this.out.len());
                buf.put_slice(&this.out[..n]);
                this.out.drain(..n);
                return Poll::Ready(Ok(()));
            }
            let mut tmp = [0u8; 16 << 10];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())), // EOF
                Poll::Ready(Ok(())) => {
                    let fwd = this.parser.feed(rb.filled(), &this.shared);
                    this.out.extend(fwd);
                }
                other => return other,
            }
        }
    }
}

impl AsyncWrite for Tap {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A TCP proxy on 127.0.0.1:0 in front of `target`: counts bytes both ways, logs WebSocket
/// frames, cuts every open connection on [`Proxy::cut`] (new ones are still accepted), and
/// turns new connections away while [`Proxy::refuse`] is on.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    shared: Arc<Shared>,
    cut: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub(crate) async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            log: Mutex::new(Log::default()),
            conns: AtomicU64::new(0),
            refuse: std::sync::atomic::AtomicBool::new(false),
            drop_up: Mutex::new(None),
        });
        let (cut, _) = watch::channel(0u64);
        let (sh, cut_tx) = (shared.clone(), cut.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if sh.refuse.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let conn = sh.conns.fetch_add(1, Ordering::SeqCst) + 1;
                let mut cut_rx = cut_tx.subscribe();
                let sh = sh.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let tap = |inner, dir| Tap {
                        inner,
                        parser: Parser {
                            conn,
                            dir,
                            http_done: false,
                            pending: Vec::new(),
                        },
                        shared: sh.clone(),
                        out: Vec::new(),
                    };
                    let (mut up, mut down) = (tap(client, Dir::Up), tap(server, Dir::Down));
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut up, &mut down) => {}
                        _ = cut_rx.changed() => {}
                    }
                    // dropping both streams closes them
                });
            }
        });
        Proxy {
            addr,
            shared,
            cut,
            task,
        }
    }

    /// The worker URL through the proxy.
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws/w", self.addr)
    }

    /// Cut every connection open now.
    pub(crate) fn cut(&self) {
        self.cut.send_modify(|v| *v += 1);
    }

    /// Fault injection: swallow the next client message whose tag (its first byte, e.g.
    /// [`cli_tag::ADD`]) is `tag` — the server never sees it, as if the network lost it.
    pub(crate) fn drop_next_up(&self, tag: u8) {
        *self.shared.drop_up.lock().unwrap_or_else(|e| e.into_inner()) = Some(tag);
    }

    /// While set, new connections are closed as soon as they are accepted.
    pub(crate) fn refuse(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    /// Connections accepted (and forwarded) so far.
    pub(crate) fn conns(&self) -> u64 {
        self.shared.conns.load(Ordering::SeqCst)
    }

    /// Bytes client → server and server → client so far.
    pub(crate) fn bytes(&self) -> (Bytes, Bytes) {
        let l = self.shared.log.lock().unwrap_or_else(|e| e.into_inner());
        (l.up, l.down)
    }

    /// Total bytes both ways.
    pub(crate) fn total(&self) -> u64 {
        let (u, d) = self.bytes();
        u.total + d.total
    }

    /// Every frame seen so far.
    pub(crate) fn frames(&self) -> Vec<Frame> {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner()).frames.clone()
    }

    /// Binary frames in `dir` whose message tag is `tag`.
    pub(crate) fn count(&self, dir: Dir, tag: u8) -> usize {
        self.frames()
            .iter()
            .filter(|f| f.dir == dir && f.tag() == Some(tag))
            .count()
    }

    /// Binary frames in `dir`.
    pub(crate) fn binary(&self, dir: Dir) -> usize {
        self.frames().iter().filter(|f| f.dir == dir && f.opcode == 2).count()
    }

    /// Frame counts by (direction, opcode, message tag).
    pub(crate) fn histogram(&self) -> std::collections::BTreeMap<(char, u8, Option<u8>), usize> {
        let mut h = std::collections::BTreeMap::new();
        for f in self.frames() {
            let d = if f.dir == Dir::Up { 'U' } else { 'D' };
            *h.entry((d, f.opcode, f.tag())).or_insert(0) += 1;
        }
        h
    }

    /// A one-line summary for test output.
    pub(crate) fn summary(&self) -> String {
        let (u, d) = self.bytes();
        format!(
            "total {} B (up {} = http {} + ws hdr {} + msgs {}; down {} = http {} + ws hdr {} + msgs {}); \
             frames up {} down {}; by (dir, opcode, tag): {:?}",
            u.total + d.total,
            u.total,
            u.http,
            u.ws_headers,
            u.payload,
            d.total,
            d.http,
            d.ws_headers,
            d.payload,
            self.binary(Dir::Up),
            self.binary(Dir::Down),
            self.histogram()
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
