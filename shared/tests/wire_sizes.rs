//! Wire sizes of upstream's benchmark op (spec `arpc.md` §7.1) over the sans-IO sessions, wired
//! back to back: the exact encoded frame lengths (postcard, before WebSocket framing), frames per
//! op and pushes. Figures: `docs/BENCHMARKS.md` "Wire sizes".
//!
//! `cargo test -p amrpc-core --test wire_sizes -- --nocapture` prints them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use amrpc_core::demo::{self, BENCH_NAMES, CALL_OP, EVENT, START, VALUES};
use amrpc_core::session::{
    ClientConfig, ClientOutput, ClientSession, REQ_ID_WRAP, ReplayCache, ServerConfig, ServerOutput, ServerSession,
};
use amrpc_core::wire::{ClientMsg, ClockUpdate, DEFAULT_MAX_FRAME, Reply, ServerMsg, Ticks};
use amrpc_core::{Machine, MutationType, Outcome, Tracer, Transition};

/// Benchmark ops measured.
const OPS: usize = 1_000;
/// Target for one op: request + reply, before WebSocket framing (issue 3, item 4).
const TARGET: usize = 24;

/// Counts the worker's transitions; the shell would call `ServerSession::worker_changed` here.
#[derive(Default)]
struct Changes(AtomicUsize);

impl Tracer for Changes {
    fn transition_end(&self, _t: &Transition) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
}

fn stats(v: &[usize]) -> (usize, usize, usize) {
    let mut s = v.to_vec();
    s.sort_unstable();
    (s[0], s[s.len() / 2], s[s.len() - 1])
}

/// Server frames sent, split by kind.
#[derive(Default, Debug)]
struct Counts {
    replies: usize,
    pushes: usize,
    other: usize,
}

/// The server's `Send` frames, counted; any other output fails the test.
fn frames(out: Vec<ServerOutput>, counts: &mut Counts) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for o in out {
        match o {
            ServerOutput::Send(b) => {
                match ServerMsg::decode(&b, DEFAULT_MAX_FRAME).expect("server frame decodes") {
                    ServerMsg::Executed(_) | ServerMsg::Canceled { .. } | ServerMsg::Queued { .. } => {
                        counts.replies += 1
                    }
                    ServerMsg::Update(_) => counts.pushes += 1,
                    _ => counts.other += 1,
                }
                v.push(b);
            }
            ServerOutput::HandshakeDone { .. } => {}
            other => panic!("unexpected server output {other:?}"),
        }
    }
    v
}

/// What one run measured.
struct Run {
    hello: Vec<u8>,
    welcome: Vec<u8>,
    start: (Vec<u8>, Vec<u8>),
    /// Per op: request and reply frames' lengths.
    req_len: Vec<usize>,
    rep_len: Vec<usize>,
    /// The last op's frames.
    last: (Vec<u8>, Vec<u8>),
    /// Diff entries per reply → replies.
    diff_sizes: BTreeMap<usize, usize>,
    counts: Counts,
    /// Largest request id seen.
    max_req: u32,
}

/// One remote call: the request frame to the server, the reply frame(s) back to the client.
/// Asserts one reply, `Executed`, and no push when a whole push interval passed afterwards.
/// Returns both frames.
fn call(s: &mut Sessions, states: &[&str], args: Option<amrpc_core::Args>) -> (u32, Vec<u8>, Vec<u8>) {
    let (req, f) = s.cli.mutate(MutationType::Add, states, args, s.now).unwrap();
    let before = s.counts.replies;
    let out = s.srv.handle_frame(&f, s.now, &s.worker);
    let replies = frames(out, &mut s.counts);
    assert_eq!(replies.len(), 1, "one reply frame per request");
    assert_eq!(s.counts.replies, before + 1);
    let mut c = s.cli.handle_frame(&replies[0]);
    // the benchmark's ops change the clock; whether one did is not this test's subject
    c.retain(|o| *o != ClientOutput::Changed);
    assert_eq!(
        c,
        vec![ClientOutput::Reply {
            req,
            result: Ok(Outcome::Executed),
            why: None,
        }],
        "the client sends nothing back (no resync)"
    );
    // The shell's tracer hook fired during the mutation: flag the worker as changed, then let a
    // whole push interval pass. The reply covered everything, so there is nothing to push.
    s.srv.worker_changed();
    s.now += u64::from(s.srv.push_interval_ms()) + 1;
    let pushed = frames(s.srv.poll(s.now, &s.worker), &mut s.counts);
    assert!(pushed.is_empty(), "a push after a reply: {pushed:?}");
    (req, f, replies.into_iter().next().unwrap())
}

struct Sessions {
    worker: Machine,
    srv: ServerSession,
    cli: ClientSession,
    counts: Counts,
    now: u64,
}

/// Upstream's benchmark (spec §7.1) over back-to-back sessions: handshake, `add1(Start)`, then
/// `ops` ops of the client loop.
fn run(ops: usize) -> Run {
    let (worker, bw) = demo::bench_worker(7).unwrap();
    let changes = Arc::new(Changes::default());
    worker.bind_tracer(changes.clone());
    let srv = ServerSession::new(&worker, quiet(), Arc::new(ReplayCache::new(1024)));
    let cli = ClientSession::new(ClientConfig::default());
    let mut s = Sessions {
        worker,
        srv,
        cli,
        counts: Counts::default(),
        now: 0,
    };

    // handshake
    let hello = s.cli.hello();
    let out = s.srv.handle_frame(&hello, s.now, &s.worker);
    let welcome = frames(out, &mut s.counts);
    assert_eq!((welcome.len(), s.counts.other), (1, 1), "one Welcome");
    assert!(matches!(
        ServerMsg::decode(&welcome[0], DEFAULT_MAX_FRAME),
        Ok(ServerMsg::Welcome(_))
    ));
    assert_eq!(s.cli.handle_frame(&welcome[0]), vec![ClientOutput::Ready]);
    assert_eq!(s.cli.names(), BENCH_NAMES);
    assert!(
        s.srv.push_interval_ms() > 0,
        "pushes are on, so 0 pushes means something"
    );

    // main: add1(Start) after the handshake
    let mirror = s.cli.mirror().unwrap().clone();
    let mut ticks = mirror.tick(EVENT);
    let (_, start_req, start_reply) = call(&mut s, &[START], None);

    let (mut req_len, mut rep_len) = (Vec::new(), Vec::new());
    let mut last = None;
    let mut diff_sizes = BTreeMap::new();
    let mut max_req = 0;
    for i in 0..ops {
        // the client loop of upstream's client_arpc_test.go: a local wait, a local read, one call
        let wait = mirror.when_ticks_eq(EVENT, ticks + 2, None);
        assert_eq!(
            wait.try_result(),
            Some(Ok(())),
            "op {i}: Event +2 not on the mirror yet"
        );
        drop(wait);
        ticks += 2;
        let op = demo::op_of(mirror.switch(&[&VALUES])).expect("a value is active on the mirror");
        let (req, f, r) = call(&mut s, &[CALL_OP], Some(demo::op_args(op)));
        max_req = max_req.max(req);
        if let Ok(ServerMsg::Executed(Reply {
            update: Some(ClockUpdate {
                ticks: Ticks::Diff(d), ..
            }),
            ..
        })) = ServerMsg::decode(&r, DEFAULT_MAX_FRAME)
        {
            *diff_sizes.entry(d.0.len()).or_default() += 1;
        }
        req_len.push(f.len());
        rep_len.push(r.len());
        last = Some((f, r));
    }
    assert_eq!(mirror.time(None), s.worker.time(None), "the mirror follows the worker");
    assert_eq!(bw.errors(), 0);
    assert_eq!(bw.successes(), ops);
    assert_eq!(s.counts.replies, ops + 1, "one reply per request (ops + Start)");
    assert_eq!(s.counts.pushes, 0, "no pushes: every change rode on a reply");
    assert_eq!(s.counts.other, 1, "the Welcome");
    assert!(
        changes.0.load(Ordering::Relaxed) >= ops * 4,
        "the worker did transition"
    );
    bw.unsubscribe();
    s.worker.dispose();
    Run {
        hello,
        welcome: welcome.into_iter().next().unwrap(),
        start: (start_req, start_reply),
        req_len,
        rep_len,
        last: last.unwrap(),
        diff_sizes,
        counts: s.counts,
        max_req,
    }
}

#[test]
fn benchmark_op_sizes() {
    let r = run(OPS);
    let total: Vec<usize> = r.req_len.iter().zip(&r.rep_len).map(|(a, b)| a + b).collect();
    let (rq, rp, tt) = (stats(&r.req_len), stats(&r.rep_len), stats(&total));
    let sum_req: usize = r.req_len.iter().sum();
    let sum_rep: usize = r.rep_len.iter().sum();
    println!("wire sizes over {OPS} benchmark ops (postcard frames, before WebSocket framing):");
    println!("  Hello                   {:>5} B", r.hello.len());
    println!("  Welcome (14 states)     {:>5} B", r.welcome.len());
    println!(
        "  add1(Start)             {:>5} B request, {} B reply",
        r.start.0.len(),
        r.start.1.len()
    );
    println!(
        "  op request   min/median/max {:>3} / {:>3} / {:>3} B",
        rq.0, rq.1, rq.2
    );
    println!(
        "  op reply     min/median/max {:>3} / {:>3} / {:>3} B",
        rp.0, rp.1, rp.2
    );
    println!(
        "  op total     min/median/max {:>3} / {:>3} / {:>3} B",
        tt.0, tt.1, tt.2
    );
    println!(
        "  all {OPS} ops: {sum_req} B requests + {sum_rep} B replies = {} B ({:.2} B/op)",
        sum_req + sum_rep,
        (sum_req + sum_rep) as f64 / OPS as f64
    );
    println!(
        "  frames: {} requests, {} replies, {} pushes; replies by diff entries: {:?}",
        OPS + 1,
        r.counts.replies,
        r.counts.pushes,
        r.diff_sizes
    );
    let (f, rep) = &r.last;
    let req_msg = ClientMsg::decode(f, DEFAULT_MAX_FRAME).unwrap();
    let rep_msg = ServerMsg::decode(rep, DEFAULT_MAX_FRAME).unwrap();
    println!("  last op request: {}  {req_msg:?}", hex(f));
    println!("  last op reply:   {}  {rep_msg:?}", hex(rep));
    println!("  Hello:   {}", hex(&r.hello));
    println!("  Welcome: {}", hex(&r.welcome));

    assert_eq!(r.hello.len(), 18, "Hello size changed: update docs/BENCHMARKS.md");
    assert_eq!(r.welcome.len(), 281, "Welcome size changed: update docs/BENCHMARKS.md");
    assert!(
        tt.2 <= TARGET,
        "an op took {} B (request + reply), target {TARGET} B",
        tt.2
    );
}

/// Request ids wrap at `REQ_ID_WRAP` (2^14) and so stay 2-byte varints: the target holds in runs
/// of any length, not only below 16 384 requests.
#[test]
fn op_size_target_holds_past_the_request_id_wrap() {
    let ops = REQ_ID_WRAP as usize + 100;
    let r = run(ops);
    assert!(r.max_req < REQ_ID_WRAP, "request id {} not wrapped", r.max_req);
    let worst = r.req_len.iter().zip(&r.rep_len).map(|(a, b)| a + b).max().unwrap();
    assert!(
        worst <= TARGET,
        "an op took {worst} B after {ops} ops, target {TARGET} B"
    );
}

/// What a push-only observer of the benchmark worker receives, in bytes: one push per
/// worker-side op (every op lets a push interval pass), and the `Welcome` of an observer that
/// joins after the ops (when ticks are large); full vs shallow clocks.
fn observe(ops: usize, shallow: bool) -> (usize, usize, usize) {
    let (worker, bw) = demo::bench_worker(7).unwrap();
    let mut srv = ServerSession::new(&worker, quiet(), Arc::new(ReplayCache::new(4)));
    let mut cli = ClientSession::new(ClientConfig {
        shallow,
        ..Default::default()
    });
    let mut counts = Counts::default();
    let welcome = frames(srv.handle_frame(&cli.hello(), 0, &worker), &mut counts);
    assert_eq!(cli.handle_frame(&welcome[0]), vec![ClientOutput::Ready]);
    let mirror = cli.mirror().unwrap().clone();
    let mut now = 0;
    let mut bytes = 0;
    worker.add1(START, None);
    for i in 0..=ops {
        if i > 0 {
            let op = demo::op_of(worker.switch(&[&VALUES])).expect("a value is active");
            worker.add1(CALL_OP, Some(demo::op_args(op)));
        }
        srv.worker_changed();
        now += u64::from(srv.push_interval_ms()) + 1;
        for f in frames(srv.poll(now, &worker), &mut counts) {
            bytes += f.len();
            cli.handle_frame(&f);
        }
        assert_eq!(
            mirror.active_states(),
            worker.active_states(),
            "op {i}: activation follows"
        );
        if !shallow {
            assert_eq!(mirror.time(None), worker.time(None));
        }
    }
    assert_eq!(cli.resyncs(), 0);
    let mut late = ServerSession::new(&worker, quiet(), Arc::new(ReplayCache::new(4)));
    let hello = ClientSession::new(ClientConfig {
        shallow,
        ..Default::default()
    })
    .hello();
    let late_welcome = frames(late.handle_frame(&hello, now, &worker), &mut Counts::default());
    bw.unsubscribe();
    worker.dispose();
    (late_welcome[0].len(), bytes, counts.pushes)
}

/// Shallow clocks (issue 10): the same observer with `Hello::shallow` receives only activation
/// changes. Figures: `docs/BENCHMARKS.md` "Shallow clocks".
#[test]
fn shallow_clock_bytes() {
    let (fw, fb, fp) = observe(OPS, false);
    let (sw, sb, sp) = observe(OPS, true);
    println!("push-only observer of {OPS} worker-side benchmark ops (postcard frames):");
    println!("  full clocks:    {fp} pushes, {fb} B pushed; a late joiner's Welcome {fw} B");
    println!("  shallow clocks: {sp} pushes, {sb} B pushed; a late joiner's Welcome {sw} B");
    println!("  shallow / full: {:.2} of the push bytes", sb as f64 / fb as f64);
    assert!(sb < fb, "shallow pushes fewer bytes");
    assert!(sp <= fp, "and never more pushes");
    assert!(sw < fw, "the Welcome clock is one byte per state");
}

/// The default server config without keepalive pings (these sizes jump through time; a ping is
/// a WebSocket control frame, not a protocol frame).
fn quiet() -> ServerConfig {
    ServerConfig {
        ping_interval_ms: 0,
        hello_timeout_ms: 0,
        mutation_rate: 0,
        ..Default::default()
    }
}
