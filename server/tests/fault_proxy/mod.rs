//! A fault-injecting TCP proxy on 127.0.0.1 for the tests (`rpc.rs`, `integration.rs`,
//! `soak.rs`): it counts bytes both ways, parses (and optionally logs) WebSocket frames, and
//! injects faults the test picks, into every open connection or into chosen ones:
//!
//! * [`Fault::Cut`]: close both directions now;
//! * [`Fault::Delay`]: latency added to every chunk, each way (chunks stay in order);
//! * [`Fault::HalfOpen`]: forward nothing either way, keep both sockets open — what a peer gone
//!   without a FIN or RST looks like (bytes sent meanwhile are lost);
//! * [`Fault::Stall`]: stop reading one direction, so the sender's buffers fill (the bytes are
//!   delivered once the stall ends).
//!
//! New connections can be turned away ([`Proxy::refuse`], [`Proxy::refuse_next`]): accepted and
//! closed at once. [`Proxy::heal`] ends every fault. Counters: connections forwarded and
//! refused, faults injected.
#![allow(dead_code)] // each test crate uses part of it

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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
    pub(crate) at: Instant,
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

/// A fault to inject into open connections ([`Proxy::inject`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Close both directions now.
    Cut,
    /// Hold every chunk this long before forwarding it, each way (until healed).
    Delay(Duration),
    /// Forward nothing either way and keep both sockets open (until healed; see
    /// [`Proxy::heal`]). What the proxy reads meanwhile is lost.
    HalfOpen,
    /// Stop reading this direction (until healed): the sender's buffers fill; what they hold is
    /// delivered after the heal.
    Stall(Dir),
}

/// What the proxy does to one connection now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Faults {
    cut: bool,
    delay: Duration,
    half_open: bool,
    stall_up: bool,
    stall_down: bool,
}

impl Faults {
    fn stalled(&self, dir: Dir) -> bool {
        match dir {
            Dir::Up => self.stall_up,
            Dir::Down => self.stall_down,
        }
    }
}

/// Proxy settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProxyOpts {
    /// Keep every frame for [`Proxy::frames`] (at most a million). Default: true.
    pub(crate) log_frames: bool,
}

impl Default for ProxyOpts {
    fn default() -> Self {
        ProxyOpts { log_frames: true }
    }
}

/// The proxy's counters ([`Proxy::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Connections accepted and forwarded.
    pub(crate) conns: u64,
    /// Connections accepted and closed at once ([`Proxy::refuse`], [`Proxy::refuse_next`]).
    pub(crate) refused: u64,
    /// Faults injected: one per connection hit by [`Proxy::inject`].
    pub(crate) faults: u64,
    /// Connections open now.
    pub(crate) open: usize,
}

#[derive(Default)]
struct Log {
    frames: Vec<Frame>,
    up: Bytes,
    down: Bytes,
}

struct Shared {
    opts: ProxyOpts,
    log: Mutex<Log>,
    conns: AtomicU64,
    /// Bytes written on, client → server and server → client.
    written_up: AtomicU64,
    written_down: AtomicU64,
    refused: AtomicU64,
    faults: AtomicU64,
    refuse: AtomicBool,
    refuse_next: AtomicU64,
    /// The delay a new connection starts with ([`Proxy::delay`]).
    delay: Mutex<Duration>,
    /// Fault injection: the tag of the next client message to swallow (see [`Proxy::drop_next_up`]).
    drop_up: Mutex<Option<u8>>,
    /// Open connections, by number, with their faults.
    open: Mutex<BTreeMap<u64, watch::Sender<Faults>>>,
}

impl Shared {
    /// Change the faults of `conns` (every open connection: `None`); returns how many it hit.
    fn modify(&self, conns: Option<&[u64]>, f: impl Fn(&mut Faults)) -> usize {
        let open = lock(&self.open);
        let mut n = 0;
        for (id, tx) in open.iter() {
            if conns.is_none_or(|c| c.contains(id)) {
                tx.send_modify(&f);
                n += 1;
            }
        }
        n
    }
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
        let mut drop_up = lock(&shared.drop_up);
        let mut log = lock(&shared.log);
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
            if shared.opts.log_frames && log.frames.len() < 1_000_000 {
                log.frames.push(Frame {
                    conn: self.conn,
                    dir: self.dir,
                    opcode,
                    len,
                    head,
                    at: Instant::now(),
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

/// Wait until this connection is cut (or its control is gone).
async fn cut(ctl: &mut watch::Receiver<Faults>) {
    let _ = ctl.wait_for(|f| f.cut).await;
}

/// End this connection: both directions.
fn cut_self(shared: &Shared, conn: u64) {
    shared.modify(Some(&[conn]), |f| f.cut = true);
}

/// One direction of a connection: a reader (everything read is counted and parsed before it is
/// forwarded, so a frame is logged before the other end can see it) and a writer, which holds each
/// chunk for the delay it was read with. A read EOF is passed on as a write shutdown; an error
/// either way cuts the connection.
async fn pump(
    dir: Dir,
    conn: u64,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: Arc<Shared>,
    ctl: watch::Receiver<Faults>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = {
        let (shared, mut ctl) = (shared.clone(), ctl.clone());
        async move {
            let mut parser = Parser {
                conn,
                dir,
                http_done: false,
                pending: Vec::new(),
            };
            let mut buf = vec![0u8; 16 << 10];
            loop {
                // a stall: stop reading (the sender's buffers fill)
                match ctl.wait_for(|f| f.cut || !f.stalled(dir)).await {
                    Ok(f) if !f.cut => {}
                    _ => return,
                }
                let n = tokio::select! {
                    r = from.read(&mut buf) => match r {
                        Ok(0) => return, // EOF: dropping `tx` tells the writer
                        Ok(n) => n,
                        Err(_) => return cut_self(&shared, conn),
                    },
                    // a fault changed: look again before reading (reads are cancel-safe)
                    r = ctl.changed() => {
                        if r.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let f = *ctl.borrow();
                if f.cut {
                    return;
                }
                if f.half_open {
                    continue; // lost
                }
                let fwd = parser.feed(&buf[..n], &shared);
                if !fwd.is_empty() && tx.send((Instant::now() + f.delay, fwd)).is_err() {
                    return;
                }
            }
        }
    };
    let writer = {
        let mut ctl = ctl.clone();
        async move {
            while let Some((at, bytes)) = rx.recv().await {
                // the injected latency (a deliberate fault, not a wait for something); no timer
                // without one (tokio rounds deadlines up to the next millisecond)
                if at > Instant::now() {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = cut(&mut ctl) => return,
                    }
                }
                let f = *ctl.borrow();
                if f.cut {
                    return;
                }
                if f.half_open {
                    continue; // lost
                }
                tokio::select! {
                    r = to.write_all(&bytes) => {
                        if r.is_err() {
                            return cut_self(&shared, conn);
                        }
                        let written = match dir {
                            Dir::Up => &shared.written_up,
                            Dir::Down => &shared.written_down,
                        };
                        written.fetch_add(bytes.len() as u64, Ordering::SeqCst);
                    }
                    () = cut(&mut ctl) => return,
                }
            }
            // the reader saw EOF: pass it on
            tokio::select! {
                _ = to.shutdown() => {}
                () = cut(&mut ctl) => {}
            }
        }
    };
    tokio::join!(reader, writer);
}

/// One proxied connection, until both directions end or it is cut (dropping the sockets closes
/// them).
async fn forward(client: TcpStream, target: SocketAddr, conn: u64, shared: Arc<Shared>, ctl: watch::Receiver<Faults>) {
    let mut c = ctl.clone();
    let server = tokio::select! {
        s = TcpStream::connect(target) => s,
        () = cut(&mut c) => return,
    };
    let Ok(server) = server else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    tokio::join!(
        pump(Dir::Up, conn, client_r, server_w, shared.clone(), ctl.clone()),
        pump(Dir::Down, conn, server_r, client_w, shared.clone(), ctl),
    );
}

/// A TCP proxy on 127.0.0.1:0 in front of `target`. See the module docs.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// A proxy that logs every frame.
    pub(crate) async fn start(target: SocketAddr) -> Proxy {
        Self::start_with(target, ProxyOpts::default()).await
    }

    /// A proxy with these settings.
    pub(crate) async fn start_with(target: SocketAddr, opts: ProxyOpts) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            opts,
            log: Mutex::new(Log::default()),
            conns: AtomicU64::new(0),
            written_up: AtomicU64::new(0),
            written_down: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            refuse: AtomicBool::new(false),
            refuse_next: AtomicU64::new(0),
            delay: Mutex::new(Duration::ZERO),
            drop_up: Mutex::new(None),
            open: Mutex::new(BTreeMap::new()),
        });
        let sh = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let take_one = |n: u64| n.checked_sub(1);
                if sh.refuse.load(Ordering::SeqCst)
                    || sh
                        .refuse_next
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take_one)
                        .is_ok()
                {
                    sh.refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let conn = sh.conns.fetch_add(1, Ordering::SeqCst) + 1;
                // registered before the next accept: a fault injected from now on reaches it
                let (tx, rx) = watch::channel(Faults {
                    delay: *lock(&sh.delay),
                    ..Faults::default()
                });
                lock(&sh.open).insert(conn, tx);
                let sh = sh.clone();
                tokio::spawn(async move {
                    forward(client, target, conn, sh.clone(), rx).await;
                    lock(&sh.open).remove(&conn);
                });
            }
        });
        Proxy { addr, shared, task }
    }

    /// The worker URL through the proxy.
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws/w", self.addr)
    }

    /// Inject `fault` into the connections numbered `conns` (1, 2, … in accept order; `None`:
    /// every open connection). Returns how many it hit.
    pub(crate) fn inject(&self, fault: Fault, conns: Option<&[u64]>) -> usize {
        let n = self.shared.modify(conns, |f| match fault {
            Fault::Cut => f.cut = true,
            Fault::Delay(d) => f.delay = d,
            Fault::HalfOpen => f.half_open = true,
            Fault::Stall(Dir::Up) => f.stall_up = true,
            Fault::Stall(Dir::Down) => f.stall_down = true,
        });
        self.shared.faults.fetch_add(n as u64, Ordering::SeqCst);
        n
    }

    /// Cut every connection open now (new ones are still accepted).
    pub(crate) fn cut(&self) {
        self.inject(Fault::Cut, None);
    }

    /// Add `d` of latency to every chunk each way, on every open connection and on new ones.
    pub(crate) fn delay(&self, d: Duration) {
        *lock(&self.shared.delay) = d;
        self.inject(Fault::Delay(d), None);
    }

    /// Every open connection forwards nothing more, either way, and stays open.
    pub(crate) fn half_open(&self) {
        self.inject(Fault::HalfOpen, None);
    }

    /// Every open connection stops reading from its client.
    pub(crate) fn stall_client_to_server(&self) {
        self.inject(Fault::Stall(Dir::Up), None);
    }

    /// Every open connection stops reading from the server.
    pub(crate) fn stall_server_to_client(&self) {
        self.inject(Fault::Stall(Dir::Down), None);
    }

    /// End every fault: no delay, stalled directions read again (delivering what the senders
    /// buffered), new connections are accepted. A half-open connection is cut: the bytes it lost
    /// cannot be replayed, and a network that comes back resets such a connection.
    pub(crate) fn heal(&self) {
        self.refuse(false);
        self.shared.refuse_next.store(0, Ordering::SeqCst);
        *lock(&self.shared.delay) = Duration::ZERO;
        self.shared.modify(None, |f| {
            *f = Faults {
                cut: f.cut || f.half_open,
                ..Faults::default()
            }
        });
    }

    /// Fault injection: swallow the next client message whose tag (its first byte, e.g.
    /// [`cli_tag::ADD`]) is `tag` — the server never sees it, as if the network lost it.
    pub(crate) fn drop_next_up(&self, tag: u8) {
        *lock(&self.shared.drop_up) = Some(tag);
    }

    /// While set, new connections are closed as soon as they are accepted.
    pub(crate) fn refuse(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    /// Close the next `n` new connections as soon as they are accepted.
    pub(crate) fn refuse_next(&self, n: u64) {
        self.shared.refuse_next.store(n, Ordering::SeqCst);
    }

    /// Connections accepted (and forwarded) so far.
    pub(crate) fn conns(&self) -> u64 {
        self.shared.conns.load(Ordering::SeqCst)
    }

    /// Numbers of the connections open now.
    pub(crate) fn open_conns(&self) -> Vec<u64> {
        lock(&self.shared.open).keys().copied().collect()
    }

    /// The counters.
    pub(crate) fn stats(&self) -> Stats {
        Stats {
            conns: self.conns(),
            refused: self.shared.refused.load(Ordering::SeqCst),
            faults: self.shared.faults.load(Ordering::SeqCst),
            open: lock(&self.shared.open).len(),
        }
    }

    /// Bytes client → server and server → client so far.
    pub(crate) fn bytes(&self) -> (Bytes, Bytes) {
        let l = lock(&self.shared.log);
        (l.up, l.down)
    }

    /// Bytes written on so far, client → server and server → client (what the other end's socket
    /// got; [`Proxy::bytes`] counts what the proxy read).
    pub(crate) fn written(&self) -> (u64, u64) {
        let sh = &self.shared;
        (
            sh.written_up.load(Ordering::SeqCst),
            sh.written_down.load(Ordering::SeqCst),
        )
    }

    /// Total bytes both ways.
    pub(crate) fn total(&self) -> u64 {
        let (u, d) = self.bytes();
        u.total + d.total
    }

    /// Every frame seen so far (none without [`ProxyOpts::log_frames`]).
    pub(crate) fn frames(&self) -> Vec<Frame> {
        lock(&self.shared.log).frames.clone()
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
    pub(crate) fn histogram(&self) -> BTreeMap<(char, u8, Option<u8>), usize> {
        let mut h = BTreeMap::new();
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
