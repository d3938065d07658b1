//! Property (issue 3, "What it must show" 2): for any sequence of worker transitions and any
//! pattern of dropped, duplicated and delayed `Update` frames, the client's mirrored clock equals
//! the worker's once the gap is detected and resynced. Mutation replies, `Welcome` and `Synced`
//! are never dropped, and keep their order among themselves (one ordered connection); only
//! `Update` frames are lost, repeated or overtaken.
//!
//! Time is a number, the "shell" reacts at once: after every step it hands the tracer's change
//! notifications to the server session and polls when `next_deadline()` has come.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use amrpc_core::session::ServerOutput;
use amrpc_core::session::{ClientConfig, ClientOutput, ClientSession, ReplayCache, ServerConfig, ServerSession};
use amrpc_core::wire::ServerMsg;
use amrpc_core::{Machine, MutationType, Opts, Outcome, Schema, State, Tracer, Transition, schema};
use proptest::prelude::*;

/// The states mutations pick from (`Exception` is the ninth, never mutated).
const NAMES: [&str; 8] = ["A", "B", "C", "D", "E", "F", "G", "H"];

/// Eight states with a Multi state, an Auto state and every relation kind.
fn schema8() -> Schema {
    schema([
        ("A", State::new()),
        ("B", State::new().multi()),
        ("C", State::new().require(&["A"])),
        ("D", State::new().add(&["E"])),
        ("E", State::new().remove(&["F"])),
        ("F", State::new().remove(&["E"]).after(&["A"])),
        ("G", State::new().auto().require(&["C"])),
        ("H", State::new().remove(&["A"]).after(&["D"])),
    ])
}

#[derive(Default)]
struct Changes(AtomicU64);

impl Tracer for Changes {
    fn transition_end(&self, _t: &Transition) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// A mutation made directly on the worker (reaches the client by push).
    Worker(MutationType, Vec<usize>),
    /// A mutation sent by the client (queued up to the server).
    Client(MutationType, Vec<usize>),
    /// Time passes.
    Advance(u64),
    /// Deliver the client's queued frames to the server.
    FlushUp,
    /// Deliver the server's queued frames (and delayed ones whose turn came) to the client.
    FlushDown,
}

/// What the network does to one `Update` frame.
#[derive(Clone, Copy, Debug)]
enum Fate {
    Deliver,
    Drop,
    /// Twice in a row.
    Duplicate,
    /// Now, and once more later.
    DuplicateLater(u8),
    /// Held back for this many `FlushDown`s (overtaken by later frames).
    Delay(u8),
}

#[derive(Clone, Debug)]
struct Case {
    push_ms: u32,
    ops: Vec<Op>,
    fates: Vec<Fate>,
}

struct Sim {
    worker: Machine,
    changes: Arc<Changes>,
    seen: u64,
    srv: ServerSession,
    cli: ClientSession,
    now: u64,
    up: VecDeque<Vec<u8>>,
    down: VecDeque<Vec<u8>>,
    delayed: Vec<(u8, Vec<u8>)>,
    fates: Vec<Fate>,
    next_fate: usize,
    /// The mirror clock last seen (ticks never decrease).
    last_time: Vec<u64>,
    /// Requests sent and not answered yet.
    waiting: Vec<u32>,
    updates: usize,
    dropped: usize,
}

impl Sim {
    fn new(case: &Case) -> Sim {
        let worker = Machine::new(schema8(), Opts::default()).unwrap();
        let mut names = NAMES.to_vec();
        names.push("Exception");
        worker.verify_states(&names).unwrap();
        let changes = Arc::new(Changes::default());
        worker.bind_tracer(changes.clone());
        let srv = ServerSession::new(&worker, ServerConfig::default(), Arc::new(ReplayCache::new(256)));
        let cli = ClientSession::new(ClientConfig {
            instance: 1,
            push_interval_ms: Some(case.push_ms),
            ..Default::default()
        });
        Sim {
            worker,
            changes,
            seen: 0,
            srv,
            cli,
            now: 1_000,
            up: VecDeque::new(),
            down: VecDeque::new(),
            delayed: Vec::new(),
            fates: case.fates.clone(),
            next_fate: 0,
            last_time: Vec::new(),
            waiting: Vec::new(),
            updates: 0,
            dropped: 0,
        }
    }

    /// Route server outputs: `Update`s meet their fate, everything else is queued in order.
    fn route(&mut self, outs: Vec<ServerOutput>, lossy: bool) -> Result<(), TestCaseError> {
        for o in outs {
            match o {
                ServerOutput::Send(b) => {
                    let msg = ServerMsg::decode(&b, usize::MAX).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let is_update = matches!(msg, ServerMsg::Update(_));
                    prop_assert!(
                        !matches!(msg, ServerMsg::Bye(_) | ServerMsg::Error(_)),
                        "server error: {msg:?}"
                    );
                    if !is_update || !lossy {
                        self.down.push_back(b);
                        continue;
                    }
                    self.updates += 1;
                    let fate = self.fates[self.next_fate % self.fates.len()];
                    self.next_fate += 1;
                    match fate {
                        Fate::Deliver => self.down.push_back(b),
                        Fate::Drop => self.dropped += 1,
                        Fate::Duplicate => {
                            self.down.push_back(b.clone());
                            self.down.push_back(b);
                        }
                        Fate::DuplicateLater(k) => {
                            self.down.push_back(b.clone());
                            self.delayed.push((k, b));
                        }
                        Fate::Delay(k) => self.delayed.push((k, b)),
                    }
                }
                ServerOutput::HandshakeDone { .. } => {}
                other => prop_assert!(false, "unexpected server output {other:?}"),
            }
        }
        Ok(())
    }

    /// The shell's reaction: tracer notifications, then a poll if a push is due.
    fn shell(&mut self, lossy: bool) -> Result<(), TestCaseError> {
        let n = self.changes.0.load(Ordering::SeqCst);
        if n != self.seen {
            self.seen = n;
            self.srv.worker_changed();
        }
        if self.srv.next_deadline().is_some_and(|d| d <= self.now) {
            let outs = self.srv.poll(self.now, &self.worker);
            self.route(outs, lossy)?;
        }
        Ok(())
    }

    fn flush_up(&mut self) -> Result<(), TestCaseError> {
        while let Some(f) = self.up.pop_front() {
            let outs = self.srv.handle_frame(&f, self.now, &self.worker);
            // replies and Synced are never lost (they are not Updates)
            self.route(outs, true)?;
        }
        Ok(())
    }

    fn client_in(&mut self, f: &[u8]) -> Result<(), TestCaseError> {
        let outs = self.cli.handle_frame(f);
        let mut changed = false;
        for o in outs {
            match o {
                ClientOutput::Send(b) => self.up.push_back(b),
                ClientOutput::Changed => {
                    prop_assert!(!changed, "one Changed per frame");
                    changed = true;
                }
                ClientOutput::Reply { req, result, .. } => {
                    prop_assert!(
                        matches!(result, Ok(Outcome::Executed | Outcome::Canceled)),
                        "{result:?}"
                    );
                    let pos = self.waiting.iter().position(|r| *r == req);
                    prop_assert!(pos.is_some(), "reply to {req} twice or unasked");
                    self.waiting.retain(|r| *r != req);
                }
                ClientOutput::Synced | ClientOutput::Ready => {}
                other => prop_assert!(false, "unexpected client output {other:?}"),
            }
        }
        let m = self.cli.mirror().expect("mirror");
        let t = m.time(None);
        if !self.last_time.is_empty() {
            for (i, (now, before)) in t.iter().zip(&self.last_time).enumerate() {
                prop_assert!(now >= before, "mirror tick {i} went back from {before} to {now}");
            }
            // `Changed` exactly when the mirror's clock moved
            prop_assert_eq!(changed, t != self.last_time);
        }
        self.last_time = t;
        Ok(())
    }

    fn flush_down(&mut self) -> Result<(), TestCaseError> {
        for d in &mut self.delayed {
            d.0 = d.0.saturating_sub(1);
        }
        let (due, keep): (Vec<_>, Vec<_>) = self.delayed.drain(..).partition(|d| d.0 == 0);
        self.delayed = keep;
        self.down.extend(due.into_iter().map(|d| d.1));
        while let Some(f) = self.down.pop_front() {
            self.client_in(&f)?;
        }
        Ok(())
    }

    /// Deliver everything in flight, delayed frames included, until nothing moves.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for d in &mut self.delayed {
            d.0 = 1;
        }
        while !self.up.is_empty() || !self.down.is_empty() || !self.delayed.is_empty() {
            self.flush_up()?;
            self.flush_down()?;
        }
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Worker(ty, idx) => {
                let states: Vec<&str> = idx.iter().map(|i| NAMES[*i]).collect();
                match ty {
                    MutationType::Add => self.worker.add(&states, None),
                    MutationType::Remove => self.worker.remove(&states, None),
                    _ => self.worker.set(&states, None),
                };
            }
            Op::Client(ty, idx) => {
                let states: Vec<&str> = idx.iter().map(|i| NAMES[*i]).collect();
                let (req, f) = self
                    .cli
                    .mutate(*ty, &states, None, self.now)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                self.waiting.push(req);
                self.up.push_back(f);
            }
            Op::Advance(ms) => self.now += ms,
            Op::FlushUp => self.flush_up()?,
            Op::FlushDown => self.flush_down()?,
        }
        self.shell(true)
    }
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let mut s = Sim::new(case);
    let hello = s.cli.hello();
    s.up.push_back(hello);
    s.drain()?;
    prop_assert!(s.cli.is_ready());
    prop_assert_eq!(s.cli.mirror().unwrap().time(None), s.worker.time(None));

    for op in &case.ops {
        s.step(op)?;
    }
    // everything in flight arrives (delayed frames too); nothing new is pushed meanwhile
    s.drain()?;
    // one more worker change (nothing removes or blocks the Multi state B, so it always ticks),
    // and its push, delivered
    prop_assert_eq!(s.worker.add1("B", None), Outcome::Executed);
    s.now += u64::from(case.push_ms);
    s.shell(false)?;
    prop_assert!(!s.down.is_empty(), "the final change was pushed");
    // its push reveals any gap; the Sync and its Synced go through
    s.drain()?;

    let mirror = s.cli.mirror().unwrap();
    prop_assert_eq!(
        mirror.time(None),
        s.worker.time(None),
        "updates {}, dropped {}, resyncs {}",
        s.updates,
        s.dropped,
        s.cli.resyncs()
    );
    for name in s.worker.state_names() {
        let tick = mirror.tick(&name);
        prop_assert_eq!(mirror.is1(&name), tick % 2 == 1, "{} at tick {}", name, tick);
        prop_assert_eq!(mirror.is1(&name), s.worker.is1(&name), "{}", name);
    }
    prop_assert!(s.waiting.is_empty(), "unanswered requests {:?}", s.waiting);
    prop_assert!(s.cli.pending().is_empty());
    prop_assert!(s.cli.held().is_empty());
    if s.dropped > 0 {
        prop_assert!(s.cli.resyncs() > 0, "{} updates dropped and no resync", s.dropped);
    }
    Ok(())
}

fn states() -> impl Strategy<Value = Vec<usize>> {
    proptest::sample::subsequence((0..NAMES.len()).collect::<Vec<_>>(), 1..=3)
}

fn mutation_type() -> impl Strategy<Value = MutationType> {
    prop_oneof![
        3 => Just(MutationType::Add),
        2 => Just(MutationType::Remove),
        1 => Just(MutationType::Set),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (mutation_type(), states()).prop_map(|(t, s)| Op::Worker(t, s)),
        2 => (mutation_type(), states()).prop_map(|(t, s)| Op::Client(t, s)),
        5 => (0u64..120).prop_map(Op::Advance),
        2 => Just(Op::FlushUp),
        3 => Just(Op::FlushDown),
    ]
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        4 => Just(Fate::Deliver),
        3 => Just(Fate::Drop),
        1 => Just(Fate::Duplicate),
        1 => (1u8..4).prop_map(Fate::DuplicateLater),
        2 => (1u8..4).prop_map(Fate::Delay),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(1u32), Just(10), Just(50)],
        proptest::collection::vec(op(), 10..100),
        proptest::collection::vec(fate(), 1..24),
    )
        .prop_map(|(push_ms, ops, fates)| Case { push_ms, ops, fates })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mirror_converges_after_lost_duplicated_and_reordered_updates(c in case()) {
        run(&c)?;
    }
}

/// A fixed case that drops every update, so the property's resync path surely runs.
#[test]
fn every_update_dropped_still_converges() {
    let ops = vec![
        Op::Worker(MutationType::Add, vec![0]),
        Op::Advance(200),
        Op::FlushDown,
        Op::Client(MutationType::Add, vec![2]),
        Op::Worker(MutationType::Add, vec![1]),
        Op::Advance(200),
        Op::FlushUp,
        Op::FlushDown,
        Op::Worker(MutationType::Set, vec![3, 5]),
        Op::Advance(200),
        Op::FlushDown,
    ];
    let case = Case {
        push_ms: 100,
        ops,
        fates: vec![Fate::Drop],
    };
    run(&case).unwrap();
}
