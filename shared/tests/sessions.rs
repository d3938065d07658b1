//! In-memory tests of a `ClientSession` and a `ServerSession` wired back to back (issue 3, "What it
//! must show" 5; spec/arpc.md §2.3–§2.8, §8.3–§8.5).
//!
//! The harness ([`Link`]) moves frames between the two sessions through two queues, runs the
//! server's mutations on a local worker (the session calls it by state index), and lets a test take frames out
//! of the queues to drop, duplicate, reorder or corrupt them. Time is a number the test sets; there
//! are no timers and no sleeps.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use amrpc_core::session::{
    Authorize, ClientConfig, ClientOutput, ClientSession, ReplayCache, ServerConfig, ServerOutput, ServerSession,
};
use amrpc_core::wire::{self, ClientMsg, ClockUpdate, Diff, ErrorCode, ErrorMsg, Reply, ServerMsg, Ticks, clock};
use amrpc_core::{Error, Handlers, Machine, MutationType, Opts, Outcome, State, Tracer, Transition, schema};

#[path = "common/held.rs"]
mod held;
use held::Held;

// ----- harness -----

/// Counts the worker's transitions, standing in for the shell's tracer that calls
/// `ServerSession::worker_changed` on every `transition_end`.
#[derive(Default)]
struct Changes(AtomicU64);

impl Tracer for Changes {
    fn transition_end(&self, _t: &Transition) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// One connection: a client session and a server session, with the frames in flight between
/// them. `down` is server → client, `up` is client → server.
struct Link {
    worker: Machine,
    changes: Arc<Changes>,
    seen: u64,
    srv: ServerSession,
    cli: ClientSession,
    now: u64,
    down: VecDeque<Vec<u8>>,
    up: VecDeque<Vec<u8>>,
    /// Server outputs other than `Send`, in order.
    srv_events: Vec<ServerOutput>,
    /// `ClientOutput::Changed` seen so far.
    changed: usize,
}

impl Link {
    fn new(worker: &Machine, scfg: ServerConfig, ccfg: ClientConfig, replay: Arc<ReplayCache>) -> Link {
        // these tests jump through time: keepalive and the rate limit have tests of their own
        // (session_limits.rs)
        let scfg = ServerConfig {
            ping_interval_ms: 0,
            hello_timeout_ms: 0,
            mutation_rate: 0,
            ..scfg
        };
        let changes = Arc::new(Changes::default());
        worker.bind_tracer(changes.clone());
        let seen = changes.0.load(Ordering::SeqCst);
        Link {
            srv: ServerSession::new(worker, scfg, replay),
            cli: ClientSession::new(ccfg),
            worker: worker.clone(),
            changes,
            seen,
            now: 0,
            down: VecDeque::new(),
            up: VecDeque::new(),
            srv_events: Vec::new(),
            changed: 0,
        }
    }

    /// A link with default configs and a fresh replay cache.
    fn simple(worker: &Machine, ccfg: ClientConfig) -> Link {
        Link::new(worker, ServerConfig::default(), ccfg, Arc::new(ReplayCache::new(64)))
    }

    /// The tracer's notifications reach the session (after whatever it was doing, as a shell's
    /// channel would deliver them).
    fn notice(&mut self) {
        let n = self.changes.0.load(Ordering::SeqCst);
        if n != self.seen {
            self.seen = n;
            self.srv.worker_changed();
        }
    }

    fn route_server(&mut self, outs: &[ServerOutput]) {
        for o in outs {
            match o {
                ServerOutput::Send(b) => self.down.push_back(b.clone()),
                other => self.srv_events.push(other.clone()),
            }
        }
    }

    /// Feed one client frame to the server, run its mutations on the worker, queue its frames.
    fn server_in(&mut self, frame: &[u8]) -> Vec<ServerOutput> {
        let outs = self.srv.handle_frame(frame, self.now, &self.worker);
        self.notice();
        self.route_server(&outs);
        outs
    }

    /// Feed one server frame to the client; its frames go up.
    fn client_in(&mut self, frame: &[u8]) -> Vec<ClientOutput> {
        let mut outs = self.cli.handle_frame(frame);
        // `Changed` (the mirror's clock moved) is checked by its own test; keep it out of the
        // sequences the other tests compare
        let before = outs.len();
        outs.retain(|o| *o != ClientOutput::Changed);
        self.changed += before - outs.len();
        for o in &outs {
            if let ClientOutput::Send(b) = o {
                self.up.push_back(b.clone());
            }
        }
        outs
    }

    /// Deliver every queued client frame to the server.
    fn deliver_up(&mut self) -> Vec<ServerOutput> {
        let mut all = Vec::new();
        while let Some(f) = self.up.pop_front() {
            all.extend(self.server_in(&f));
        }
        all
    }

    /// Deliver every queued server frame to the client.
    fn deliver_down(&mut self) -> Vec<ClientOutput> {
        let mut all = Vec::new();
        while let Some(f) = self.down.pop_front() {
            all.extend(self.client_in(&f));
        }
        all
    }

    /// Deliver in both directions until nothing is in flight; the client's outputs other than
    /// `Send`, in order.
    fn pump(&mut self) -> Vec<ClientOutput> {
        let mut out = Vec::new();
        while !self.up.is_empty() || !self.down.is_empty() {
            self.deliver_up();
            out.extend(
                self.deliver_down()
                    .into_iter()
                    .filter(|o| !matches!(o, ClientOutput::Send(_))),
            );
        }
        out
    }

    /// Handshake over this link.
    fn connect(&mut self) -> Vec<ClientOutput> {
        let h = self.cli.hello();
        self.up.push_back(h);
        self.pump()
    }

    /// A client mutation, delivered both ways.
    fn mutate(&mut self, ty: MutationType, states: &[&str]) -> (u32, Vec<ClientOutput>) {
        let (req, f) = self.cli.mutate(ty, states, None, self.now).unwrap();
        self.up.push_back(f);
        (req, self.pump())
    }

    /// A change made directly on the worker (not through this session).
    fn change(&mut self, f: impl FnOnce(&Machine)) {
        f(&self.worker);
        self.notice();
    }

    /// Time is `at`: poll the server; returns the frames it queued.
    fn poll(&mut self, at: u64) -> Vec<Vec<u8>> {
        self.now = at;
        self.notice();
        let outs = self.srv.poll(at, &self.worker);
        self.route_server(&outs);
        outs.into_iter()
            .filter_map(|o| match o {
                ServerOutput::Send(b) => Some(b),
                _ => None,
            })
            .collect()
    }

    /// Take every queued server frame (to drop, reorder, corrupt them).
    fn take_down(&mut self) -> Vec<Vec<u8>> {
        self.down.drain(..).collect()
    }

    fn mirror(&self) -> &Machine {
        self.cli.mirror().expect("mirror after the handshake")
    }

    fn in_sync(&self) -> bool {
        self.mirror().time(None) == self.worker.time(None)
    }
}

/// The only element of `v`.
fn one<T: std::fmt::Debug>(v: Vec<T>) -> T {
    assert_eq!(v.len(), 1, "expected exactly one: {v:?}");
    v.into_iter().next().unwrap()
}

fn smsg(b: &[u8]) -> ServerMsg {
    ServerMsg::decode(b, usize::MAX).expect("a valid server frame")
}

fn cmsg(b: &[u8]) -> ClientMsg {
    ClientMsg::decode(b, usize::MAX).expect("a valid client frame")
}

fn enc(m: &ServerMsg) -> Vec<u8> {
    m.encode().unwrap()
}

/// Decoded `Send` frames among server outputs.
fn sent(outs: &[ServerOutput]) -> Vec<ServerMsg> {
    outs.iter()
        .filter_map(|o| match o {
            ServerOutput::Send(b) => Some(smsg(b)),
            _ => None,
        })
        .collect()
}

fn decode_all(frames: &[Vec<u8>]) -> Vec<ServerMsg> {
    frames.iter().map(|b| smsg(b)).collect()
}

fn update_of(b: &[u8]) -> ClockUpdate {
    match smsg(b) {
        ServerMsg::Update(u) => u,
        other => panic!("expected an Update, got {other:?}"),
    }
}

fn no_sends(outs: &[ClientOutput]) -> Vec<ClientOutput> {
    outs.iter()
        .filter(|o| !matches!(o, ClientOutput::Send(_)))
        .cloned()
        .collect()
}

fn client_sends(outs: &[ClientOutput]) -> Vec<ClientMsg> {
    outs.iter()
        .filter_map(|o| match o {
            ClientOutput::Send(b) => Some(cmsg(b)),
            _ => None,
        })
        .collect()
}

/// The code of a recoverable goodbye (the client reconnects), if `outs` is exactly one.
fn bye_code(outs: &[ClientOutput]) -> Option<ErrorCode> {
    match outs {
        [ClientOutput::Disconnected(e)] => Some(e.code()),
        _ => None,
    }
}

fn closed_code(outs: &[ClientOutput]) -> Option<ErrorCode> {
    match outs {
        [ClientOutput::Closed(e)] => Some(e.code()),
        _ => None,
    }
}

/// Asserts `outs` is exactly a `Bye` with `code` followed by `Close` with `code`, and returns the
/// `Bye` frame.
fn assert_bye_close(outs: &[ServerOutput], code: ErrorCode) -> Vec<u8> {
    assert_eq!(outs.len(), 2, "{outs:?}");
    let ServerOutput::Send(b) = &outs[0] else {
        panic!("expected the Bye frame first: {outs:?}")
    };
    match smsg(b) {
        ServerMsg::Bye(ErrorMsg { req: None, code: c, .. }) => assert_eq!(c, code),
        other => panic!("expected Bye({code:?}), got {other:?}"),
    }
    assert!(
        matches!(&outs[1], ServerOutput::Close { code: c, .. } if *c == code),
        "{outs:?}"
    );
    b.clone()
}

/// A worker with states in the given order (then `Exception`) and verified states.
fn worker(s: amrpc_core::Schema, order: &[&str]) -> Machine {
    let m = Machine::new(s, Opts::default()).unwrap();
    let mut names = order.to_vec();
    names.push("Exception");
    m.verify_states(&names).unwrap();
    m
}

/// `A B C D M`: plain states and a Multi state.
fn plain_worker() -> Machine {
    worker(
        schema([
            ("A", State::new()),
            ("B", State::new()),
            ("C", State::new()),
            ("D", State::new()),
            ("M", State::new().multi()),
        ]),
        &["A", "B", "C", "D", "M"],
    )
}

fn with_push(ms: u32) -> ClientConfig {
    ClientConfig {
        push_interval_ms: Some(ms),
        ..Default::default()
    }
}

// ----- 1. handshake -----

/// A schema with every relation kind, tags, Auto and Multi.
fn relations_worker() -> Machine {
    let m = worker(
        schema([
            ("Start", State::new().add(&["Ready"]).after(&["Ready"])),
            ("Ready", State::new().require(&["Start"]).tags(&["ui"])),
            ("Busy", State::new().remove(&["Idle"])),
            ("Idle", State::new().remove(&["Busy"])),
            ("Counter", State::new().multi()),
            ("Healthy", State::new().auto().require(&["Ready"])),
        ]),
        &["Start", "Ready", "Busy", "Idle", "Counter", "Healthy"],
    );
    m.add1("Start", None);
    m.add1("Idle", None);
    m.add1("Counter", None);
    m.add1("Counter", None);
    m.add1("Busy", None);
    m
}

#[test]
fn handshake_welcome_carries_schema_and_mirror_equals_worker() {
    let w = relations_worker();
    assert!(
        w.is(&["Start", "Ready", "Busy", "Counter", "Healthy"]),
        "{}",
        w.string_all()
    );
    assert!(w.not1("Idle"));
    let scfg = ServerConfig {
        epoch: 7,
        ..Default::default()
    };
    let mut l = Link::new(
        &w,
        scfg,
        ClientConfig {
            client_id: "alice".into(),
            ..Default::default()
        },
        Arc::new(ReplayCache::new(8)),
    );
    l.now = 5;
    let hello = l.cli.hello();
    match cmsg(&hello) {
        ClientMsg::Hello(h) => {
            assert_eq!(h.version, wire::PROTOCOL_VERSION);
            assert_eq!(h.client_id, "alice");
            assert_eq!(h.schema_hash, None);
        }
        other => panic!("expected Hello, got {other:?}"),
    }
    let outs = l.srv.handle_frame(&hello, l.now, &w);
    assert_eq!(outs.len(), 2, "{outs:?}");
    // the handshake is reported before its Welcome, so a shell records it in one pass
    assert_eq!(
        outs[0],
        ServerOutput::HandshakeDone {
            client_id: "alice".into()
        }
    );
    let ServerOutput::Send(wf) = &outs[1] else {
        panic!("{outs:?}")
    };
    let ServerMsg::Welcome(wel) = smsg(wf) else {
        panic!("expected Welcome")
    };
    let names = w.state_names();
    let idx = |n: &str| names.iter().position(|x| x == n).unwrap() as u16;
    assert_eq!(wel.version, wire::PROTOCOL_VERSION);
    assert_eq!(wel.worker_id, &*w.id());
    assert_eq!(wel.epoch, 7);
    assert_eq!(wel.names, names);
    assert_eq!(wel.tracked, None);
    assert_eq!(wel.push_interval_ms, 16);
    assert_eq!(wel.schema.len(), names.len());
    // every relation kind, by index
    let st = |n: &str| &wel.schema[idx(n) as usize];
    assert_eq!(st("Start").add, vec![idx("Ready")]);
    assert_eq!(st("Start").after, vec![idx("Ready")]);
    assert_eq!(st("Ready").require, vec![idx("Start")]);
    assert_eq!(st("Ready").tags, vec!["ui".to_string()]);
    assert_eq!(st("Busy").remove, vec![idx("Idle")]);
    assert_eq!(st("Idle").remove, vec![idx("Busy")]);
    assert_eq!(st("Counter").flags, 2, "multi");
    assert_eq!(st("Healthy").flags, 1, "auto");
    assert_eq!(st("Healthy").require, vec![idx("Ready")]);
    assert_eq!(st("Exception").flags, 2, "Exception is multi");
    assert_eq!(wel.schema_hash, wire::schema_hash(&wel.names, &wel.schema));
    assert_eq!(wel.schema_hash, l.srv.schema_hash());
    assert_eq!(wire::schema_from_wire(&wel.names, &wel.schema).unwrap(), w.get_struct());
    let t = w.time(None);
    assert_eq!(
        wel.update,
        ClockUpdate {
            seq: 0,
            checksum: clock::checksum(&t),
            ticks: Ticks::Full(t.clone())
        }
    );

    let c = l.client_in(wf);
    assert_eq!(c, vec![ClientOutput::Ready]);
    assert!(l.cli.is_ready());
    assert_eq!(l.cli.epoch(), 7);
    assert_eq!(l.cli.names(), names.as_slice());
    let m = l.mirror();
    // upstream's naming: the mirror is `<client>-<worker>`, a child of the client
    assert_eq!(&*m.id(), format!("alice-{}", w.id()));
    assert_eq!(m.parent_id(), Some("alice"));
    assert_eq!(m.state_names(), names);
    assert_eq!(m.get_struct(), w.get_struct());
    assert_eq!(m.time(None), t);
    // (as sets: a worker lists active states in activation order, a mirror in state order)
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(sorted(m.active_states()), sorted(w.active_states()));
    assert_eq!(m.inspect(None), w.inspect(None));
    assert_eq!(m.string_all(), w.string_all());
    assert!(l.srv.is_open());
    assert_eq!(l.srv.client_id(), Some("alice"));
    assert_eq!(l.cli.resyncs(), 0);
}

#[test]
fn handshake_partial_subscription_tracks_only_the_chosen_states() {
    let w = relations_worker();
    let mut l = Link::simple(
        &w,
        ClientConfig {
            states: Some(vec!["Counter".into(), "Busy".into()]),
            push_interval_ms: Some(10),
            ..Default::default()
        },
    );
    let hello = l.cli.hello();
    let outs = l.server_in(&hello);
    let ServerMsg::Welcome(wel) = one(sent(&outs)) else {
        panic!()
    };
    let (busy, counter) = (w.index("Busy").unwrap(), w.index("Counter").unwrap());
    assert_eq!(wel.tracked, Some(vec![busy as u16, counter as u16]));
    let Ticks::Full(t) = &wel.update.ticks else { panic!() };
    let mut expected = vec![0; t.len()];
    expected[busy] = w.tick("Busy");
    expected[counter] = w.tick("Counter");
    assert_eq!(t, &expected);
    assert_eq!(l.pump(), vec![ClientOutput::Ready]);
    assert_eq!(l.mirror().time(None), expected);
    // a change to an untracked state is not pushed; a tracked one is
    l.change(|w| {
        w.remove1("Start", None);
    });
    assert_eq!(l.poll(100), Vec::<Vec<u8>>::new());
    l.change(|w| {
        w.add1("Counter", None);
    });
    let f = l.poll(200);
    assert_eq!(f.len(), 1);
    assert_eq!(update_of(&f[0]).ticks, Ticks::Diff(Diff(vec![(counter as u16, 2)])));
    l.deliver_down();
    assert_eq!(l.mirror().tick("Counter"), w.tick("Counter"));
    assert_eq!(l.mirror().tick("Start"), 0);
}

// ----- 2. nested mutations in one reply -----

#[test]
fn mutation_reply_covers_the_whole_cascade() {
    let w = worker(
        schema([
            ("A", State::new()),
            ("B", State::new()),
            ("C", State::new()),
            ("D", State::new().auto().require(&["C"])),
            ("M", State::new().multi()),
        ]),
        &["A", "B", "C", "D", "M"],
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    w.bind_handlers(
        Handlers::new("w")
            .state("A", move |e| {
                r.fetch_add(1, Ordering::SeqCst);
                e.machine().add1("B", None);
            })
            .state("B", |e| {
                e.machine().add1("C", None);
                e.machine().add1("M", None);
            }),
    )
    .unwrap();
    let mut l = Link::simple(&w, with_push(50));
    assert_eq!(l.connect(), vec![ClientOutput::Ready]);
    let before = w.time(None);
    let when = l.mirror().when(&["A", "B", "C", "D", "M"], None);
    let when_m = l.mirror().when_ticks("M", 1, None);
    assert!(!when.is_ready() && !when_m.is_ready());

    l.now = 10;
    let (req, f) = l.cli.mutate(MutationType::Add, &["A"], None, 0).unwrap();
    let outs = l.server_in(&f);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(w.is(&["A", "B", "C", "D", "M"]), "{}", w.string_all());
    let after = w.time(None);
    assert_eq!(after, vec![1, 1, 1, 1, 1, 0]);
    // exactly one frame: the reply, with the whole cascade as one diff
    assert_eq!(outs.len(), 1, "{outs:?}");
    let ServerMsg::Executed(Reply {
        req: rr,
        update: Some(u),
    }) = one(sent(&outs))
    else {
        panic!("{outs:?}")
    };
    assert_eq!(rr, req);
    assert_eq!(u.seq, 1);
    assert_eq!(u.checksum, clock::checksum(&after));
    assert_eq!(u.ticks, Ticks::Diff(Diff(vec![(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)])));
    let mut t = before.clone();
    clock::apply(&mut t, &u.ticks, u.checksum).unwrap();
    assert_eq!(t, after);

    let c = l.deliver_down();
    assert_eq!(
        c,
        vec![ClientOutput::Reply {
            req,
            result: Ok(Outcome::Executed),
            why: None,
        }]
    );
    // right after the Reply: the mirror shows the cascade and the waits are resolved
    assert_eq!(l.mirror().time(None), after);
    assert!(l.mirror().is(&["A", "B", "C", "D", "M"]));
    assert_eq!(when.try_result(), Some(Ok(())));
    assert_eq!(when_m.try_result(), Some(Ok(())));
    assert!(l.cli.pending().is_empty());
    // and nothing is left to push
    assert!(l.poll(1_000).is_empty());
    assert_eq!(l.srv.next_deadline(), None);

    // the same for a removal: the reply brings the mirror to the worker's clock at once
    let (req2, c) = l.mutate(MutationType::Remove, &["A", "B"]);
    assert_eq!(
        c,
        vec![ClientOutput::Reply {
            req: req2,
            result: Ok(Outcome::Executed),
            why: None,
        }]
    );
    assert!(l.in_sync());
    assert!(l.mirror().not(&["A", "B"]));
}

// ----- 3. push coalescing -----

#[test]
fn pushes_coalesce_within_the_interval_and_the_trailing_push_is_delivered() {
    let w = plain_worker();
    let mut l = Link::simple(&w, with_push(100));
    l.now = 1_000;
    assert_eq!(l.connect(), vec![ClientOutput::Ready]);
    assert_eq!(l.srv.push_interval_ms(), 100);
    assert_eq!(l.srv.next_deadline(), None, "nothing changed");
    let (a, b, m) = (0u16, 1u16, 4u16);

    // the first change after a quiet interval is pushed at once
    l.now = 1_200;
    l.change(|w| {
        w.add1("A", None);
    });
    assert_eq!(l.srv.next_deadline(), Some(1_100));
    let f = l.poll(1_200);
    assert_eq!(f.len(), 1);
    let u = update_of(&f[0]);
    assert_eq!((u.seq, &u.ticks), (1, &Ticks::Diff(Diff(vec![(a, 1)]))));
    assert_eq!(l.deliver_down(), vec![]);
    assert!(l.in_sync());
    assert_eq!(l.srv.next_deadline(), None);

    // later changes within the interval wait for its end
    l.now = 1_230;
    l.change(|w| {
        w.add1("B", None);
    });
    assert_eq!(l.srv.next_deadline(), Some(1_300));
    assert!(l.poll(1_230).is_empty());
    l.now = 1_260;
    l.change(|w| {
        w.add1("M", None);
        w.add1("M", None);
        w.remove1("A", None);
    });
    assert!(l.poll(1_260).is_empty());
    assert!(l.poll(1_299).is_empty());
    assert_eq!(l.srv.next_deadline(), Some(1_300));
    assert!(!l.in_sync(), "the mirror has not seen the later changes yet");
    // exactly one trailing push with all of them
    let f = l.poll(1_300);
    assert_eq!(f.len(), 1);
    let u = update_of(&f[0]);
    assert_eq!(u.seq, 2);
    assert_eq!(u.ticks, Ticks::Diff(Diff(vec![(a, 1), (b, 1), (m, 3)])));
    assert_eq!(l.deliver_down(), vec![]);
    assert!(l.in_sync(), "nothing is lost");
    assert_eq!(l.srv.next_deadline(), None);
    assert!(l.poll(1_300).is_empty());
    assert!(l.poll(5_000).is_empty());

    // a mutation reply that carries a pending change suppresses its push
    l.now = 5_010;
    l.change(|w| {
        w.add1("C", None);
    });
    // (the session last pushed at 1300: due now; the shell has not polled yet)
    l.now = 5_011;
    let (req, c) = l.mutate(MutationType::Add, &["D"]);
    assert_eq!(
        c,
        vec![ClientOutput::Reply {
            req,
            result: Ok(Outcome::Executed),
            why: None,
        }]
    );
    assert!(l.in_sync(), "the reply carried C too");
    assert!(l.mirror().is(&["C", "D"]));
    // the tracer noticed the mutation's own transition: a deadline may be armed, but polling at
    // or after it sends nothing
    if let Some(d) = l.srv.next_deadline() {
        assert!(d >= 5_011 + 100, "the reply reset the interval: {d}");
        assert!(l.poll(d).is_empty());
    }
    assert!(l.poll(5_011).is_empty());
    assert!(l.poll(10_000).is_empty());
    assert_eq!(l.srv.next_deadline(), None);

    // a change during the interval started by a reply waits for the interval's end
    l.now = 10_010;
    l.mutate(MutationType::Remove, &["D"]);
    l.now = 10_020;
    l.change(|w| {
        w.remove1("C", None);
    });
    assert_eq!(l.srv.next_deadline(), Some(10_110));
    assert!(l.poll(10_050).is_empty());
    let f = l.poll(10_110);
    assert_eq!(f.len(), 1);
    l.deliver_down();
    assert!(l.in_sync());
}

#[test]
fn push_interval_zero_disables_pushes() {
    let w = plain_worker();
    let mut l = Link::simple(&w, with_push(0));
    assert_eq!(l.connect(), vec![ClientOutput::Ready]);
    assert_eq!(l.srv.push_interval_ms(), 0);
    for (i, s) in ["A", "B", "M", "M"].iter().enumerate() {
        l.now = 100 * i as u64;
        l.change(|w| {
            w.add1(s, None);
        });
        assert_eq!(l.srv.next_deadline(), None);
        assert!(l.poll(l.now).is_empty());
    }
    assert!(l.poll(1_000_000).is_empty());
    assert_eq!(l.mirror().time(None), vec![0; 6], "no pushes at all");
    // a reply still carries everything
    let (_, c) = l.mutate(MutationType::Add, &["C"]);
    assert_eq!(c.len(), 1);
    assert!(l.in_sync());
}

#[test]
fn push_interval_wish_is_clamped_and_defaulted() {
    let w = plain_worker();
    let scfg = ServerConfig {
        push_interval_ms: 25,
        min_push_interval_ms: 10,
        max_push_interval_ms: 1_000,
        ..Default::default()
    };
    for (wish, got) in [
        (None, 25),
        (Some(0), 0),
        (Some(1), 10),
        (Some(500), 500),
        (Some(60_000), 1_000),
    ] {
        let ccfg = ClientConfig {
            push_interval_ms: wish,
            ..Default::default()
        };
        let mut l = Link::new(&w, scfg.clone(), ccfg, Arc::new(ReplayCache::new(4)));
        let h = l.cli.hello();
        let outs = l.server_in(&h);
        let ServerMsg::Welcome(wel) = one(sent(&outs)) else {
            panic!()
        };
        assert_eq!(wel.push_interval_ms, got, "wish {wish:?}");
        assert_eq!(l.srv.push_interval_ms(), got);
    }
}

// ----- 4. gaps and resyncs -----

/// A connected link with push interval 1 ms, at time 10.
fn gap_link() -> Link {
    let mut l = Link::simple(&plain_worker(), with_push(1));
    l.now = 10;
    assert_eq!(l.connect(), vec![ClientOutput::Ready]);
    l
}

/// One worker change and its push (not delivered): the frame.
fn change_and_push(l: &mut Link, state: &str) -> Vec<u8> {
    l.change(|w| {
        w.toggle1(state);
    });
    let at = l.now + 1;
    let mut f = l.poll(at);
    assert_eq!(f.len(), 1);
    l.take_down();
    f.remove(0)
}

/// Serve the client's queued `Sync`, deliver the `Synced`; the client's outputs.
fn serve_sync(l: &mut Link) -> Vec<ClientOutput> {
    let ups: Vec<ClientMsg> = l.up.iter().map(|b| cmsg(b)).collect();
    assert!(matches!(ups.as_slice(), [ClientMsg::Sync { .. }]), "{ups:?}");
    let outs = l.deliver_up();
    assert!(matches!(sent(&outs).as_slice(), [ServerMsg::Synced { .. }]), "{outs:?}");
    l.deliver_down()
}

#[test]
fn a_lost_update_is_detected_at_the_next_one_and_resynced() {
    let mut l = gap_link();
    let _lost = change_and_push(&mut l, "A");
    let u2 = change_and_push(&mut l, "B");
    assert_eq!(update_of(&u2).seq, 2);
    let before = l.mirror().time(None);
    let c = l.client_in(&u2);
    let ClientMsg::Sync { req: sync_req } = one(client_sends(&c)) else {
        panic!("{c:?}")
    };
    assert_eq!(no_sends(&c), vec![]);
    assert_eq!(l.mirror().time(None), before, "the out-of-order diff is not applied");
    assert_eq!(l.cli.resyncs(), 1);
    // the server answers with the full clock
    let outs = l.deliver_up();
    let ServerMsg::Synced { req, update } = one(sent(&outs)) else {
        panic!("{outs:?}")
    };
    assert_eq!(req, sync_req);
    assert_eq!(update.seq, 3);
    assert_eq!(update.ticks, Ticks::Full(l.worker.time(None)));
    assert_eq!(l.deliver_down(), vec![ClientOutput::Synced]);
    assert!(l.in_sync());
    assert!(l.mirror().is(&["A", "B"]));
    // and the next update applies normally
    let u4 = change_and_push(&mut l, "C");
    assert_eq!(update_of(&u4).seq, 4);
    assert_eq!(l.client_in(&u4), vec![]);
    assert!(l.in_sync());
    assert_eq!(l.cli.resyncs(), 1);
}

#[test]
fn duplicate_updates_are_ignored() {
    let mut l = gap_link();
    let u1 = change_and_push(&mut l, "M");
    assert_eq!(l.client_in(&u1), vec![]);
    let t1 = l.mirror().time(None);
    assert_eq!(t1, l.worker.time(None));
    // the same frame again: no double-applied delta, no resync
    assert_eq!(l.client_in(&u1), vec![]);
    assert_eq!(l.mirror().time(None), t1);
    assert_eq!(l.cli.resyncs(), 0);
    let u2 = change_and_push(&mut l, "M");
    assert_eq!(l.client_in(&u2), vec![]);
    assert_eq!(l.client_in(&u1), vec![]);
    assert_eq!(l.client_in(&u2), vec![]);
    assert!(l.in_sync());
    assert_eq!(l.mirror().tick("M"), 2);
    assert_eq!(l.cli.resyncs(), 0);
}

#[test]
fn reordered_updates_resync_and_late_ones_are_ignored() {
    let mut l = gap_link();
    let u1 = change_and_push(&mut l, "A");
    let u2 = change_and_push(&mut l, "B");
    // u2 overtakes u1
    let c = l.client_in(&u2);
    assert!(matches!(client_sends(&c).as_slice(), [ClientMsg::Sync { .. }]), "{c:?}");
    // u1 arrives while the resync is outstanding: nothing more is asked, nothing applied
    let before = l.mirror().time(None);
    assert_eq!(l.client_in(&u1), vec![]);
    assert_eq!(l.mirror().time(None), before);
    assert_eq!(serve_sync(&mut l), vec![ClientOutput::Synced]);
    assert!(l.in_sync());
    // both arrive again late, after the Synced: old, ignored
    assert_eq!(l.client_in(&u1), vec![]);
    assert_eq!(l.client_in(&u2), vec![]);
    assert!(l.in_sync());
    assert_eq!(l.cli.resyncs(), 1);
    // a reordering where the late one arrives after a good one
    let u4 = change_and_push(&mut l, "C");
    let u5 = change_and_push(&mut l, "D");
    assert_eq!(l.client_in(&u4), vec![]);
    assert_eq!(l.client_in(&u5), vec![]);
    assert_eq!(l.client_in(&u4), vec![]);
    assert!(l.in_sync());
    assert_eq!(l.cli.resyncs(), 1);
}

#[test]
fn a_checksum_mismatch_triggers_a_resync() {
    let mut l = gap_link();
    let good = change_and_push(&mut l, "B");
    let ServerMsg::Update(mut u) = smsg(&good) else {
        panic!()
    };
    let Ticks::Diff(d) = &mut u.ticks else { panic!("{u:?}") };
    assert_eq!(d.0, vec![(1, 1)]);
    d.0[0].1 = 3; // B +3 instead of +1: still a valid, one-byte diff
    let bad = enc(&ServerMsg::Update(u));
    assert_eq!(bad.len(), good.len());
    assert_eq!(
        bad.iter().zip(&good).filter(|(x, y)| x != y).count(),
        1,
        "one byte differs"
    );
    let before = l.mirror().time(None);
    let c = l.client_in(&bad);
    assert!(matches!(client_sends(&c).as_slice(), [ClientMsg::Sync { .. }]), "{c:?}");
    assert_eq!(
        l.mirror().time(None),
        before,
        "a diff failing its checksum is not applied"
    );
    assert_eq!(l.cli.resyncs(), 1);
    assert_eq!(serve_sync(&mut l), vec![ClientOutput::Synced]);
    assert!(l.in_sync());
    assert_eq!(l.mirror().tick("B"), 1);

    // the same on the reply path: a reply whose update fails its checksum
    let (req, f) = l.cli.mutate(MutationType::Add, &["C"], None, 0).unwrap();
    let outs = l.server_in(&f);
    l.take_down();
    let ServerMsg::Executed(mut r) = one(sent(&outs)) else {
        panic!()
    };
    r.update.as_mut().unwrap().checksum ^= 0x55;
    let c = l.client_in(&enc(&ServerMsg::Executed(r)));
    assert!(matches!(client_sends(&c).as_slice(), [ClientMsg::Sync { .. }]), "{c:?}");
    assert_eq!(no_sends(&c), vec![], "the reply is held until the Synced");
    assert_eq!(l.cli.held().into_iter().collect::<Vec<_>>(), vec![req]);
    assert_eq!(
        serve_sync(&mut l),
        vec![
            ClientOutput::Synced,
            ClientOutput::Reply {
                req,
                result: Ok(Outcome::Executed),
                why: None,
            }
        ]
    );
    assert!(l.in_sync());
    assert_eq!(l.cli.resyncs(), 2);
}

#[test]
fn a_gap_on_the_reply_path_resyncs_before_the_reply_is_released() {
    let mut l = gap_link();
    let _lost = change_and_push(&mut l, "A");
    let (req, f) = l.cli.mutate(MutationType::Add, &["B"], None, 0).unwrap();
    let outs = l.server_in(&f);
    l.take_down();
    let ServerMsg::Executed(r) = one(sent(&outs)) else {
        panic!()
    };
    assert_eq!(r.update.as_ref().unwrap().seq, 2);
    let c = l.client_in(&enc(&ServerMsg::Executed(r)));
    assert!(matches!(client_sends(&c).as_slice(), [ClientMsg::Sync { .. }]), "{c:?}");
    assert_eq!(no_sends(&c), vec![]);
    assert!(l.mirror().not1("B"), "not applied out of order");
    let c = serve_sync(&mut l);
    assert_eq!(
        c,
        vec![
            ClientOutput::Synced,
            ClientOutput::Reply {
                req,
                result: Ok(Outcome::Executed),
                why: None,
            }
        ]
    );
    assert!(l.in_sync());
    assert!(l.mirror().is(&["A", "B"]));
}

#[test]
fn a_reply_during_an_outstanding_resync_is_released_after_the_synced() {
    let mut l = gap_link();
    let _lost = change_and_push(&mut l, "A");
    let u2 = change_and_push(&mut l, "B");
    // the client's mutation is already on its way when the gap shows
    let (req, f) = l.cli.mutate(MutationType::Add, &["C"], None, 0).unwrap();
    let outs = l.server_in(&f);
    let reply = l.take_down();
    assert!(matches!(sent(&outs).as_slice(), [ServerMsg::Executed(_)]));
    let c = l.client_in(&u2);
    assert!(matches!(client_sends(&c).as_slice(), [ClientMsg::Sync { .. }]));
    let when_c = l.mirror().when1("C", None);
    // the reply arrives before the Synced: held
    assert_eq!(l.client_in(&reply[0]), vec![]);
    assert_eq!(l.cli.held().into_iter().collect::<Vec<_>>(), vec![req]);
    assert!(l.cli.pending().is_empty());
    assert!(!when_c.is_ready());
    assert!(l.mirror().not1("C"));
    // the Synced releases it, with the mirror already showing the write
    let c = serve_sync(&mut l);
    assert_eq!(
        c,
        vec![
            ClientOutput::Synced,
            ClientOutput::Reply {
                req,
                result: Ok(Outcome::Executed),
                why: None,
            }
        ]
    );
    assert!(l.in_sync());
    assert!(l.mirror().is(&["A", "B", "C"]));
    assert_eq!(when_c.try_result(), Some(Ok(())));
    assert!(l.cli.held().is_empty());
    assert_eq!(l.cli.resyncs(), 1);
}

#[test]
fn a_resync_resolves_mirror_waits_like_any_update() {
    let mut l = gap_link();
    let m_twice = l.mirror().when_ticks("M", 2, None);
    let a_on = l.mirror().when1("A", None);
    let _lost = change_and_push(&mut l, "M");
    let _lost = change_and_push(&mut l, "A");
    let u3 = change_and_push(&mut l, "M");
    l.client_in(&u3);
    assert!(!m_twice.is_ready() && !a_on.is_ready());
    assert_eq!(serve_sync(&mut l), vec![ClientOutput::Synced]);
    // the full clock goes through the same path as diffs: time and state waits resolve
    assert_eq!(m_twice.try_result(), Some(Ok(())));
    assert_eq!(a_on.try_result(), Some(Ok(())));
    assert!(l.in_sync());
}

#[test]
fn a_coalesced_off_and_on_ends_the_mirrored_activation() {
    let mut l = gap_link();
    let u = change_and_push(&mut l, "A");
    assert_eq!(l.client_in(&u), vec![]);
    assert!(l.in_sync() && l.mirror().is1("A"));
    // a state context and a WhenNot for this activation of A
    let ctx = l.mirror().new_state_ctx("A");
    let not_a = l.mirror().when_not1("A", None);
    assert!(!ctx.is_canceled() && !not_a.is_ready());
    // off and on again within one push interval: one diff with A +2
    l.change(|w| {
        w.remove1("A", None);
        w.add1("A", None);
    });
    let at = l.now + 1;
    let f = l.poll(at);
    l.take_down();
    assert_eq!(update_of(&f[0]).ticks, Ticks::Diff(Diff(vec![(0, 2)])));
    assert_eq!(l.client_in(&f[0]), vec![]);
    assert!(l.in_sync() && l.mirror().is1("A"));
    assert!(ctx.is_canceled(), "the activation the context was made for has ended");
    assert_eq!(not_a.try_result(), Some(Ok(())), "A was off in between");
}

#[test]
fn replies_held_for_a_resync_are_released_by_the_next_welcome() {
    let replay = Arc::new(ReplayCache::new(8));
    let w = plain_worker();
    let mut l = Link::new(&w, ServerConfig::default(), with_push(1), replay.clone());
    l.now = 10;
    assert_eq!(l.connect(), vec![ClientOutput::Ready]);
    let _lost = change_and_push(&mut l, "A");
    let (req, f) = l.cli.mutate(MutationType::Add, &["B"], None, 0).unwrap();
    l.server_in(&f);
    let c = l.deliver_down();
    assert!(matches!(client_sends(&c).as_slice(), [ClientMsg::Sync { .. }]), "{c:?}");
    assert_eq!(l.cli.held().into_iter().collect::<Vec<_>>(), vec![req]);
    // the connection drops with the Sync unanswered
    l.up.clear();
    l.cli.disconnected();
    l.srv = ServerSession::new(&w, ServerConfig::default(), replay);
    let c = l.connect();
    assert_eq!(
        c,
        vec![
            ClientOutput::Ready,
            ClientOutput::Reply {
                req,
                result: Ok(Outcome::Executed),
                why: None,
            }
        ]
    );
    assert!(l.in_sync());
    assert!(l.mirror().is(&["A", "B"]));
    assert!(l.cli.held().is_empty() && l.cli.pending().is_empty());
}

// ----- 5. at most once -----

/// A worker whose Multi state `M` counts its activations and whose `Gate` cancels its first
/// attempt (so a re-run would give a different outcome).
fn counting_worker() -> (Machine, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let w = worker(
        schema([("M", State::new().multi()), ("Gate", State::new()), ("A", State::new())]),
        &["M", "Gate", "A"],
    );
    let m_runs = Arc::new(AtomicUsize::new(0));
    let gate_tries = Arc::new(AtomicUsize::new(0));
    let (mr, gt) = (m_runs.clone(), gate_tries.clone());
    w.bind_handlers(
        Handlers::new("count")
            .state("M", move |_| {
                mr.fetch_add(1, Ordering::SeqCst);
            })
            .enter("Gate", move |_| gt.fetch_add(1, Ordering::SeqCst) > 0),
    )
    .unwrap();
    (w, m_runs, gate_tries)
}

#[test]
fn a_retried_mutation_runs_once_and_gets_the_original_outcome() {
    let (w, m_runs, gate_tries) = counting_worker();
    let replay = Arc::new(ReplayCache::new(64));
    let ccfg = ClientConfig {
        instance: 0xfeed,
        push_interval_ms: Some(0),
        ..Default::default()
    };
    let mut l = Link::new(
        &w,
        ServerConfig {
            epoch: 1,
            ..Default::default()
        },
        ccfg,
        replay.clone(),
    );
    assert_eq!(l.connect(), vec![ClientOutput::Ready]);

    // both requests run, both replies are lost with the connection
    let (req_m, f_m) = l.cli.mutate(MutationType::Add, &["M"], None, 0).unwrap();
    let (req_g, f_g) = l.cli.mutate(MutationType::Add, &["Gate"], None, 0).unwrap();
    l.server_in(&f_m);
    l.server_in(&f_g);
    let lost = decode_all(&l.take_down());
    assert!(
        matches!(
            lost.as_slice(),
            [ServerMsg::Executed(Reply { req: a, .. }), ServerMsg::Canceled { reply: Reply { req: b, .. }, .. }]
                if (*a, *b) == (req_m, req_g)
        ),
        "{lost:?}"
    );
    assert_eq!((m_runs.load(Ordering::SeqCst), w.tick("M")), (1, 1));
    assert_eq!(gate_tries.load(Ordering::SeqCst), 1);
    assert!(w.not1("Gate"), "the first attempt was canceled");
    assert_eq!(
        replay.outcome(amrpc_core::session::replay_key("client", 0xfeed), req_m),
        Some(Outcome::Executed)
    );
    assert_eq!(
        replay.outcome(amrpc_core::session::replay_key("client", 0xfeed), req_g),
        Some(Outcome::Canceled)
    );
    l.cli.disconnected();
    assert_eq!(l.cli.pending(), vec![req_m, req_g]);
    assert!(!l.cli.is_ready());

    // reconnect: a new server session, the same replay cache
    l.srv = ServerSession::new(
        &w,
        ServerConfig {
            epoch: 2,
            ..Default::default()
        },
        replay.clone(),
    );
    assert_eq!(l.connect(), vec![ClientOutput::Ready]);
    assert_eq!(l.cli.epoch(), 2);
    assert!(l.in_sync(), "the Welcome carried the lost replies' effects");
    assert_eq!(l.cli.resend(req_m), Some(f_m.clone()));
    let outs = l.server_in(&l.cli.resend(req_m).unwrap());
    assert_eq!(m_runs.load(Ordering::SeqCst), 1, "a retry is not run again");
    assert!(
        matches!(
            sent(&outs).as_slice(),
            [ServerMsg::Executed(Reply { req, update: Some(u) })]
                if *req == req_m && u.ticks == amrpc_core::wire::Ticks::Diff(Default::default())
        ),
        "{outs:?}"
    );
    let outs = l.srv.handle_frame(&l.cli.resend(req_g).unwrap(), l.now, &w);
    assert_eq!(
        gate_tries.load(Ordering::SeqCst),
        1,
        "a retry is not run again: {outs:?}"
    );
    l.route_server(&outs);
    assert!(
        matches!(
            sent(&outs).as_slice(),
            [ServerMsg::Canceled { reply: Reply { req, update: Some(u) }, .. }]
                if *req == req_g && u.ticks == amrpc_core::wire::Ticks::Diff(Default::default())
        ),
        "{outs:?}"
    );
    assert_eq!(
        l.deliver_down(),
        vec![
            ClientOutput::Reply {
                req: req_m,
                result: Ok(Outcome::Executed),
                why: None,
            },
            ClientOutput::Reply {
                req: req_g,
                result: Ok(Outcome::Canceled),
                why: None,
            }
        ]
    );
    assert_eq!((m_runs.load(Ordering::SeqCst), w.tick("M")), (1, 1), "ran exactly once");
    assert_eq!(
        gate_tries.load(Ordering::SeqCst),
        1,
        "the canceled one was not retried either"
    );
    assert!(l.cli.pending().is_empty());
    assert_eq!(l.cli.resend(req_m), None);

    // a new request on the new connection runs normally (and Gate now lets it in)
    let (_, c) = l.mutate(MutationType::Add, &["Gate"]);
    assert!(matches!(
        c.as_slice(),
        [ClientOutput::Reply {
            result: Ok(Outcome::Executed),
            ..
        }]
    ));
    assert!(l.mirror().is1("Gate"));
}

#[test]
fn a_duplicate_request_on_the_same_connection_runs_once() {
    let (w, m_runs, _) = counting_worker();
    let mut l = Link::simple(
        &w,
        ClientConfig {
            instance: 9,
            ..Default::default()
        },
    );
    assert_eq!(l.connect(), vec![ClientOutput::Ready]);
    let (req, f) = l.cli.mutate(MutationType::Add, &["M"], None, 0).unwrap();
    let first = l.server_in(&f);
    let second = l.srv.handle_frame(&f, l.now, &w);
    assert_eq!(m_runs.load(Ordering::SeqCst), 1, "{second:?}");
    l.route_server(&second);
    assert!(matches!(
        sent(&first).as_slice(),
        [ServerMsg::Executed(Reply { update: Some(_), .. })]
    ));
    // the duplicate is answered with a sequenced empty diff (every reply carries the sequence)
    assert!(
        matches!(
            sent(&second).as_slice(),
            [ServerMsg::Executed(Reply { req: r, update: Some(amrpc_core::wire::ClockUpdate { ticks: amrpc_core::wire::Ticks::Diff(d), .. }) })]
                if *r == req && d.is_empty()
        ),
        "{:?}",
        sent(&second)
    );
    assert_eq!(m_runs.load(Ordering::SeqCst), 1);
    assert_eq!(w.tick("M"), 1);
    // the client takes the first reply and ignores the duplicate
    assert_eq!(
        l.deliver_down(),
        vec![ClientOutput::Reply {
            req,
            result: Ok(Outcome::Executed),
            why: None,
        }]
    );
    assert!(l.in_sync());
}

#[test]
fn a_retry_while_the_original_still_runs_gets_its_outcome_when_done() {
    let (w, m_runs, _) = counting_worker();
    let replay = Arc::new(ReplayCache::new(64));
    let ccfg = ClientConfig {
        instance: 5,
        ..Default::default()
    };
    let mut l = Link::new(&w, ServerConfig::default(), ccfg, replay.clone());
    assert_eq!(l.connect(), vec![ClientOutput::Ready]);
    let (req, f) = l.cli.mutate(MutationType::Add, &["M"], None, 0).unwrap();
    // the old session took the request; its shell has not run it yet
    let mut old = std::mem::replace(
        &mut l.srv,
        ServerSession::new(&w, ServerConfig::default(), replay.clone()),
    );
    let held = Held::new(&w);
    let cmds = old.handle_frame(&f, 0, &held);
    assert_eq!(cmds, vec![]);
    assert_eq!(held.reqs(), vec![req]);
    l.cli.disconnected();
    assert_eq!(l.connect(), vec![ClientOutput::Ready]);
    // the retry on the new session waits for the original
    let outs = l.server_in(&l.cli.resend(req).unwrap());
    assert_eq!(outs, vec![]);
    assert_eq!(m_runs.load(Ordering::SeqCst), 0);
    // the original runs (its reply goes nowhere)
    let (r, ty, idx, args) = held.take();
    let outcome = w.mutate_indexes(ty, &idx, Some(args)).unwrap();
    let _lost = old.mutation_done(r, outcome, None, 1, &w);
    assert_eq!(m_runs.load(Ordering::SeqCst), 1);
    let f = l.poll(2);
    assert!(matches!(
        decode_all(&f).as_slice(),
        [ServerMsg::Executed(Reply { update: Some(_), .. })]
    ));
    assert_eq!(
        l.deliver_down(),
        vec![ClientOutput::Reply {
            req,
            result: Ok(Outcome::Executed),
            why: None,
        }]
    );
    assert_eq!(m_runs.load(Ordering::SeqCst), 1);
    assert!(l.in_sync());
}

// ----- 6. version and schema mismatch -----

#[test]
fn version_mismatch_is_a_typed_error_on_both_sides() {
    let w = plain_worker();
    let mut l = Link::simple(&w, ClientConfig::default());
    let hello = l.cli.hello();
    let ClientMsg::Hello(mut h) = cmsg(&hello) else {
        panic!()
    };
    h.version = wire::PROTOCOL_VERSION + 1;
    let outs = l.server_in(&ClientMsg::Hello(h).encode().unwrap());
    assert_bye_close(&outs, ErrorCode::VersionMismatch);
    assert!(!l.srv.is_open());
    let c = l.deliver_down();
    assert_eq!(closed_code(&c), Some(ErrorCode::VersionMismatch), "{c:?}");
    assert!(l.cli.mirror().is_none());
    assert_eq!(l.cli.mutate(MutationType::Add, &["A"], None, 0), Err(Error::Disposed));
    // the closed server session ignores everything
    assert_eq!(l.srv.handle_frame(&hello, 0, &w), vec![]);

    // client side: a Welcome of another version
    let mut good = Link::simple(&w, ClientConfig::default());
    let h = good.cli.hello();
    let outs = good.srv.handle_frame(&h, 0, &w);
    let ServerMsg::Welcome(mut wel) = one(sent(&outs)) else {
        panic!()
    };
    wel.version = wire::PROTOCOL_VERSION + 1;
    let mut cli = ClientSession::new(ClientConfig::default());
    let _ = cli.hello();
    let c = cli.handle_frame(&enc(&ServerMsg::Welcome(wel)));
    assert_eq!(closed_code(&c), Some(ErrorCode::VersionMismatch), "{c:?}");
    assert!(cli.mirror().is_none());
    assert!(!cli.is_ready());
}

#[test]
fn schema_mismatch_is_a_typed_error_on_both_sides() {
    let w = plain_worker();
    let real = ServerSession::new(&w, ServerConfig::default(), Arc::new(ReplayCache::new(1))).schema_hash();
    let wrong = ClientConfig {
        schema_hash: Some(real ^ 1),
        ..Default::default()
    };
    // server side
    let mut l = Link::simple(&w, wrong.clone());
    let hello = l.cli.hello();
    let outs = l.server_in(&hello);
    assert_bye_close(&outs, ErrorCode::SchemaMismatch);
    let c = l.deliver_down();
    assert_eq!(closed_code(&c), Some(ErrorCode::SchemaMismatch), "{c:?}");

    // the right hash passes
    let mut ok = Link::simple(
        &w,
        ClientConfig {
            schema_hash: Some(real),
            ..Default::default()
        },
    );
    assert_eq!(ok.connect(), vec![ClientOutput::Ready]);

    // client side: the server did not check (no hash in the Hello), the client does
    let mut l = Link::simple(&w, wrong);
    let ClientMsg::Hello(mut h) = cmsg(&l.cli.hello()) else {
        panic!()
    };
    assert_eq!(h.schema_hash, Some(real ^ 1));
    h.schema_hash = None;
    let outs = l.server_in(&ClientMsg::Hello(h).encode().unwrap());
    assert!(matches!(sent(&outs).as_slice(), [ServerMsg::Welcome(_)]));
    let c = l.deliver_down();
    assert_eq!(closed_code(&c), Some(ErrorCode::SchemaMismatch), "{c:?}");
    assert!(l.cli.mirror().is_none());

    // a Welcome whose hash does not match its own schema is malformed
    let mut l = Link::simple(&w, ClientConfig::default());
    let h = l.cli.hello();
    let outs = l.srv.handle_frame(&h, 0, &w);
    let ServerMsg::Welcome(mut wel) = one(sent(&outs)) else {
        panic!()
    };
    wel.schema[0].flags ^= 2;
    let c = l.client_in(&enc(&ServerMsg::Welcome(wel)));
    assert_eq!(closed_code(&c), Some(ErrorCode::Malformed), "{c:?}");
}

#[test]
fn reconnecting_to_a_worker_with_another_schema_is_refused() {
    let w1 = plain_worker();
    let mut l = Link::simple(&w1, ClientConfig::default());
    assert_eq!(l.connect(), vec![ClientOutput::Ready]);
    let known = l.srv.schema_hash();
    l.cli.disconnected();
    // same names, one more relation
    let w2 = worker(
        schema([
            ("A", State::new().add(&["B"])),
            ("B", State::new()),
            ("C", State::new()),
            ("D", State::new()),
            ("M", State::new().multi()),
        ]),
        &["A", "B", "C", "D", "M"],
    );
    l.worker = w2.clone();
    l.srv = ServerSession::new(&w2, ServerConfig::default(), Arc::new(ReplayCache::new(4)));
    assert_ne!(l.srv.schema_hash(), known);
    let hello = l.cli.hello();
    let ClientMsg::Hello(h) = cmsg(&hello) else { panic!() };
    assert_eq!(h.schema_hash, Some(known), "a reconnect asks for the schema it mirrors");
    let outs = l.server_in(&hello);
    assert_bye_close(&outs, ErrorCode::SchemaMismatch);
    let c = l.deliver_down();
    assert_eq!(closed_code(&c), Some(ErrorCode::SchemaMismatch), "{c:?}");

    // and if the server did not check, the client does
    let mut cli = ClientSession::new(ClientConfig::default());
    let mut s1 = ServerSession::new(&w1, ServerConfig::default(), Arc::new(ReplayCache::new(4)));
    let outs = s1.handle_frame(&cli.hello(), 0, &w1);
    for f in sent(&outs) {
        assert_eq!(cli.handle_frame(&enc(&f)), vec![ClientOutput::Ready]);
    }
    cli.disconnected();
    let ClientMsg::Hello(mut h) = cmsg(&cli.hello()) else {
        panic!()
    };
    h.schema_hash = None;
    let mut s2 = ServerSession::new(&w2, ServerConfig::default(), Arc::new(ReplayCache::new(4)));
    let outs = s2.handle_frame(&ClientMsg::Hello(h).encode().unwrap(), 0, &w2);
    let wel = one(sent(&outs));
    let c = cli.handle_frame(&enc(&wel));
    assert_eq!(closed_code(&c), Some(ErrorCode::SchemaMismatch), "{c:?}");
}

// ----- 7. access -----

#[test]
fn allow_ids_admit_only_listed_clients() {
    let w = plain_worker();
    let scfg = ServerConfig {
        allow_ids: Some(vec!["alice".into()]),
        ..Default::default()
    };
    let mut bob = Link::new(
        &w,
        scfg.clone(),
        ClientConfig {
            client_id: "bob".into(),
            ..Default::default()
        },
        Arc::new(ReplayCache::new(4)),
    );
    let h = bob.cli.hello();
    let outs = bob.server_in(&h);
    assert_bye_close(&outs, ErrorCode::AccessDenied);
    assert_eq!(closed_code(&bob.deliver_down()), Some(ErrorCode::AccessDenied));
    let mut alice = Link::new(
        &w,
        scfg,
        ClientConfig {
            client_id: "alice".into(),
            ..Default::default()
        },
        Arc::new(ReplayCache::new(4)),
    );
    assert_eq!(alice.connect(), vec![ClientOutput::Ready]);
    assert_eq!(
        alice.srv_events,
        vec![ServerOutput::HandshakeDone {
            client_id: "alice".into()
        }]
    );
}

#[test]
fn authorize_checks_the_token() {
    let w = plain_worker();
    let auth: Authorize = Arc::new(|id: &str, tok: Option<&str>| id == "alice" && tok == Some("s3cret"));
    let scfg = ServerConfig {
        authorize: Some(auth),
        ..Default::default()
    };
    for (id, tok, ok) in [
        ("alice", None, false),
        ("alice", Some("wrong"), false),
        ("bob", Some("s3cret"), false),
        ("alice", Some("s3cret"), true),
    ] {
        let ccfg = ClientConfig {
            client_id: id.into(),
            token: tok.map(String::from),
            ..Default::default()
        };
        let mut l = Link::new(&w, scfg.clone(), ccfg, Arc::new(ReplayCache::new(4)));
        let h = l.cli.hello();
        let outs = l.server_in(&h);
        if ok {
            assert!(matches!(sent(&outs).as_slice(), [ServerMsg::Welcome(_)]), "{outs:?}");
            assert_eq!(l.deliver_down(), vec![ClientOutput::Ready]);
        } else {
            assert_bye_close(&outs, ErrorCode::Unauthorized);
            assert_eq!(
                closed_code(&l.deliver_down()),
                Some(ErrorCode::Unauthorized),
                "{id} {tok:?}"
            );
        }
    }
}

#[test]
fn mutable_states_forbid_per_request_and_leave_the_worker_untouched() {
    let w = plain_worker();
    let scfg = ServerConfig {
        mutable_states: Some(vec!["A".into(), "M".into()]),
        ..Default::default()
    };
    let mut l = Link::new(&w, scfg, with_push(0), Arc::new(ReplayCache::new(4)));
    assert_eq!(l.connect(), vec![ClientOutput::Ready]);
    let before = w.time(None);
    let (req, f) = l.cli.mutate(MutationType::Add, &["A", "B"], None, 0).unwrap();
    let outs = l.server_in(&f);
    assert_eq!(w.time(None), before, "not run");
    assert!(
        matches!(sent(&outs).as_slice(), [ServerMsg::Error(ErrorMsg { req: Some(r), code: ErrorCode::Forbidden, .. })] if *r == req),
        "{outs:?}"
    );
    let c = l.deliver_down();
    assert!(
        matches!(c.as_slice(), [ClientOutput::Reply { req: r, result: Err(Error::Rpc { code: ErrorCode::Forbidden, .. }), why: None }] if *r == req),
        "{c:?}"
    );
    assert_eq!(w.time(None), before, "the worker is untouched");
    assert!(l.cli.pending().is_empty());
    for ty in [MutationType::Remove, MutationType::Set] {
        let (_, c) = l.mutate(ty, &["C"]);
        assert!(
            matches!(
                c.as_slice(),
                [ClientOutput::Reply {
                    result: Err(Error::Rpc {
                        code: ErrorCode::Forbidden,
                        ..
                    }),
                    ..
                }]
            ),
            "{c:?}"
        );
    }
    assert_eq!(w.time(None), before);
    // the session stays open; allowed states work
    assert!(l.srv.is_open() && l.cli.is_ready());
    let (_, c) = l.mutate(MutationType::Add, &["A", "M"]);
    assert!(matches!(
        c.as_slice(),
        [ClientOutput::Reply {
            result: Ok(Outcome::Executed),
            ..
        }]
    ));
    assert!(w.is(&["A", "M"]));
    assert!(l.in_sync());
}

#[test]
fn bad_requests_get_typed_errors_and_keep_the_session() {
    let w = plain_worker();
    let mut l = Link::simple(&w, with_push(0));
    // a mutation before Hello closes with NotReady
    let mut early = Link::simple(&w, ClientConfig::default());
    let f = ClientMsg::Add(wire::MutationReq {
        req: 1,
        ..Default::default()
    })
    .encode()
    .unwrap();
    assert_bye_close(&early.server_in(&f), ErrorCode::NotReady);

    assert_eq!(l.connect(), vec![ClientOutput::Ready]);
    // an unknown state index: InvalidParams for that request only
    let f = ClientMsg::Add(wire::MutationReq {
        req: 77,
        states: vec![99],
        ..Default::default()
    })
    .encode()
    .unwrap();
    let outs = l.server_in(&f);
    assert!(
        matches!(
            sent(&outs).as_slice(),
            [ServerMsg::Error(ErrorMsg {
                req: Some(77),
                code: ErrorCode::InvalidParams,
                ..
            })]
        ),
        "{outs:?}"
    );
    assert!(l.srv.is_open());
    // the client refuses unknown names itself
    assert_eq!(
        l.cli.mutate(MutationType::Add, &["Nope"], None, 0),
        Err(Error::StateUnknown("Nope".into()))
    );
    // a second Hello closes
    let h = l.cli.hello();
    assert_bye_close(&l.server_in(&h), ErrorCode::NotReady);
}

#[test]
fn malformed_and_oversize_frames_close_only_that_session() {
    let w = plain_worker();
    let replay = Arc::new(ReplayCache::new(16));
    let small = ServerConfig {
        max_frame: 48,
        ..Default::default()
    };
    let mut victim = Link::new(&w, ServerConfig::default(), with_push(1), replay.clone());
    let mut big = Link::new(&w, small, with_push(1), replay.clone());
    let mut other = Link::new(
        &w,
        ServerConfig::default(),
        ClientConfig {
            instance: 2,
            push_interval_ms: Some(1),
            ..Default::default()
        },
        replay,
    );
    for l in [&mut victim, &mut big, &mut other] {
        assert_eq!(l.connect(), vec![ClientOutput::Ready]);
    }
    // garbage, a truncated frame, trailing bytes: Malformed
    let good = victim.cli.mutate(MutationType::Add, &["A"], None, 0).unwrap().1;
    let mut trailing = good.clone();
    trailing.push(0);
    for bad in [
        vec![0xff, 0xff, 0xff],
        good[..good.len() - 1].to_vec(),
        trailing,
        vec![],
    ] {
        let mut l = Link::new(
            &w,
            ServerConfig::default(),
            ClientConfig::default(),
            Arc::new(ReplayCache::new(1)),
        );
        assert_eq!(l.connect(), vec![ClientOutput::Ready]);
        let outs = l.server_in(&bad);
        assert_bye_close(&outs, ErrorCode::Malformed);
    }
    let outs = victim.server_in(&[0xff, 0xff, 0xff]);
    assert_bye_close(&outs, ErrorCode::Malformed);
    assert_eq!(bye_code(&victim.deliver_down()), Some(ErrorCode::Malformed));
    assert!(!victim.srv.is_open());
    assert_eq!(
        victim.srv.handle_frame(&good, 0, &w),
        vec![],
        "a closed session ignores frames"
    );

    // over the limit: TooLarge, before decoding
    let (_, f) = big
        .cli
        .mutate(
            MutationType::Add,
            &["A"],
            Some(amrpc_core::Args::new().with("blob", "x".repeat(100))),
            0,
        )
        .unwrap();
    assert!(f.len() > 48);
    let outs = big.server_in(&f);
    assert_bye_close(&outs, ErrorCode::TooLarge);
    assert_eq!(bye_code(&big.deliver_down()), Some(ErrorCode::TooLarge));
    assert!(w.not1("A"), "the oversize mutation did not run");

    // the other session on the same worker keeps working: mutations and pushes
    let (req, c) = other.mutate(MutationType::Add, &["B"]);
    assert_eq!(
        c,
        vec![ClientOutput::Reply {
            req,
            result: Ok(Outcome::Executed),
            why: None,
        }]
    );
    other.change(|w| {
        w.add1("C", None);
    });
    let f = other.poll(100);
    assert_eq!(f.len(), 1);
    other.deliver_down();
    assert!(other.in_sync());
    assert!(other.mirror().is(&["B", "C"]));
    // the closed ones push nothing
    assert!(victim.poll(200).is_empty() && big.poll(200).is_empty());
    assert_eq!(victim.srv.next_deadline(), None);
}

// ----- 8. payloads -----

fn payload_link(chunk_size: usize, max_payload: usize) -> Link {
    let scfg = ServerConfig {
        chunk_size,
        epoch: 3,
        ..Default::default()
    };
    let ccfg = ClientConfig {
        max_payload,
        ..Default::default()
    };
    let mut l = Link::new(&plain_worker(), scfg, ccfg, Arc::new(ReplayCache::new(1)));
    assert_eq!(l.connect(), vec![ClientOutput::Ready]);
    l
}

fn frames(outs: Vec<ServerOutput>) -> Vec<Vec<u8>> {
    outs.into_iter()
        .map(|o| match o {
            ServerOutput::Send(b) => b,
            other => panic!("expected frames only, got {other:?}"),
        })
        .collect()
}

#[test]
fn a_small_payload_is_one_frame() {
    let mut l = payload_link(64, 1 << 20);
    // nothing before the handshake
    let mut fresh = ServerSession::new(&l.worker, ServerConfig::default(), Arc::new(ReplayCache::new(1)));
    assert_eq!(fresh.payload("n", "s", b"x"), vec![]);

    let data = b"hello, payload".to_vec();
    let f = frames(l.srv.payload("greeting", "worker-1", &data));
    assert_eq!(f.len(), 1);
    let ServerMsg::Payload(p) = smsg(&f[0]) else { panic!() };
    assert_eq!(
        (p.name.as_str(), p.source.as_str(), &p.data),
        ("greeting", "worker-1", &data)
    );
    assert_eq!(l.client_in(&f[0]), vec![ClientOutput::Payload(p.clone())]);
    // exactly chunk_size is still one frame; tokens differ
    let f2 = frames(l.srv.payload("g", "w", &[7; 64]));
    assert_eq!(f2.len(), 1);
    let ServerMsg::Payload(p2) = smsg(&f2[0]) else { panic!() };
    assert_ne!(p2.token, p.token);
    // an empty payload
    let f3 = frames(l.srv.payload("empty", "w", &[]));
    assert!(matches!(smsg(&f3[0]), ServerMsg::Payload(ref p) if p.data.is_empty()));
}

#[test]
fn a_large_payload_arrives_in_chunks_and_is_reassembled_exactly() {
    let mut l = payload_link(16, 1 << 20);
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let f = frames(l.srv.payload("blob", "src", &data));
    assert_eq!(f.len(), 1000usize.div_ceil(16));
    let mut token = None;
    for (i, b) in f.iter().enumerate() {
        let ServerMsg::Chunk(c) = smsg(b) else {
            panic!("frame {i} is not a chunk")
        };
        assert_eq!(c.index, i as u32);
        assert_eq!(c.total, f.len() as u32);
        assert_eq!(c.head.is_some(), i == 0);
        assert_eq!(c.len, (i == 0).then_some(1000));
        assert!(c.data.len() <= 16);
        assert_eq!(*token.get_or_insert(c.token), c.token);
    }
    // a push in between does not disturb the reassembly
    for (i, b) in f.iter().enumerate() {
        let c = l.client_in(b);
        if i + 1 < f.len() {
            assert_eq!(c, vec![], "chunk {i}");
        } else {
            let ClientOutput::Payload(p) = one(c) else { panic!() };
            assert_eq!(p.name, "blob");
            assert_eq!(p.source, "src");
            assert_eq!(Some(p.token), token);
            assert_eq!(p.data, data);
        }
        if i == 3 {
            l.change(|w| {
                w.add1("A", None);
            });
            let u = l.poll(1_000);
            assert_eq!(l.client_in(&u[0]), vec![]);
            l.take_down();
        }
    }
    assert!(l.in_sync());
    // two payloads interleaved are both reassembled
    let a = frames(l.srv.payload("a", "s", &[1; 40]));
    let b = frames(l.srv.payload("b", "s", &[2; 40]));
    let mut got = Vec::new();
    for (x, y) in a.iter().zip(&b) {
        got.extend(l.client_in(x));
        got.extend(l.client_in(y));
    }
    let names: Vec<(String, Vec<u8>)> = got
        .into_iter()
        .map(|o| match o {
            ClientOutput::Payload(p) => (p.name, p.data),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, vec![("a".into(), vec![1; 40]), ("b".into(), vec![2; 40])]);
}

fn is_err(outs: &[ClientOutput], code: ErrorCode) -> bool {
    matches!(outs, [ClientOutput::Error(e)] if e.code() == code)
}

#[test]
fn bad_chunks_give_typed_errors() {
    let mut l = payload_link(10, 100);
    let f = frames(l.srv.payload("p", "s", &[5; 35]));
    assert_eq!(f.len(), 4);
    // out of order: 0 then 2
    assert_eq!(l.client_in(&f[0]), vec![]);
    let c = l.client_in(&f[2]);
    assert!(is_err(&c, ErrorCode::Malformed), "{c:?}");
    // the assembly is dropped: the rest is of an unknown payload
    assert!(is_err(&l.client_in(&f[1]), ErrorCode::Malformed));
    assert!(is_err(&l.client_in(&f[3]), ErrorCode::Malformed));
    // a chunk without its start
    let g = frames(l.srv.payload("q", "s", &[6; 25]));
    assert!(is_err(&l.client_in(&g[1]), ErrorCode::Malformed));
    // the session survives and a later payload gets through
    assert!(l.cli.is_ready());
    let h = frames(l.srv.payload("r", "s", &[7; 25]));
    let mut out = Vec::new();
    for b in &h {
        out.extend(l.client_in(b));
    }
    assert!(matches!(out.as_slice(), [ClientOutput::Payload(p)] if p.data == vec![7; 25]));

    // larger than the client's limit: TooLarge at the first chunk
    let big = frames(l.srv.payload("big", "s", &[0; 101]));
    assert!(is_err(&l.client_in(&big[0]), ErrorCode::TooLarge));
    assert!(is_err(&l.client_in(&big[1]), ErrorCode::Malformed));

    // forged chunks: more bytes than announced, index out of range, no head, fewer bytes
    let chunk = |index, total, head: bool, len: Option<u64>, data: Vec<u8>| {
        enc(&ServerMsg::Chunk(wire::Chunk {
            token: 99,
            index,
            total,
            head: head.then(|| ("x".into(), "y".into())),
            len,
            data,
        }))
    };
    assert!(is_err(
        &l.client_in(&chunk(0, 2, true, Some(4), vec![1; 8])),
        ErrorCode::Malformed
    ));
    assert!(is_err(
        &l.client_in(&chunk(2, 2, false, None, vec![1])),
        ErrorCode::Malformed
    ));
    assert!(is_err(
        &l.client_in(&chunk(0, 0, true, Some(1), vec![1])),
        ErrorCode::Malformed
    ));
    assert!(is_err(
        &l.client_in(&chunk(0, 1, false, Some(1), vec![1])),
        ErrorCode::Malformed
    ));
    assert!(is_err(
        &l.client_in(&chunk(0, 1, true, Some(5), vec![1, 2])),
        ErrorCode::Malformed
    ));
    // the total may not change midway
    assert_eq!(l.client_in(&chunk(0, 2, true, Some(4), vec![1, 2])), vec![]);
    assert!(is_err(
        &l.client_in(&chunk(1, 3, false, None, vec![3, 4])),
        ErrorCode::Malformed
    ));
    assert!(l.cli.is_ready());
    assert!(l.in_sync());
}

// ----- suspected core bugs (see the report) -----

#[test]
fn a_reply_without_changes_still_detects_an_earlier_gap() {
    let mut l = gap_link();
    // the worker activates A; that push is lost
    let _lost = change_and_push(&mut l, "A");
    assert!(l.mirror().not1("A"));
    // the client adds A: a no-op on the worker (A is already active), so nothing changed since
    // the last update sent to this session
    let (req, f) = l.cli.mutate(MutationType::Add, &["A"], None, 0).unwrap();
    l.server_in(&f);
    let c = l.deliver_down();
    // read-your-writes: by the time the reply is out, the mirror shows A — through a resync,
    // since the client has to learn about the lost update somehow
    let replied = c
        .iter()
        .any(|o| matches!(o, ClientOutput::Reply { req: r, .. } if *r == req));
    if replied {
        assert!(
            l.mirror().is1("A"),
            "Reply for Add(A) released while the mirror shows A inactive"
        );
    } else {
        assert!(matches!(client_sends(&c).as_slice(), [ClientMsg::Sync { .. }]), "{c:?}");
        assert_eq!(
            serve_sync(&mut l),
            vec![
                ClientOutput::Synced,
                ClientOutput::Reply {
                    req,
                    result: Ok(Outcome::Executed),
                    why: None,
                }
            ]
        );
    }
    assert!(l.in_sync());
    assert!(l.mirror().is1("A"));
}

#[test]
fn requests_of_different_clients_are_never_conflated() {
    let w = plain_worker();
    let replay = Arc::new(ReplayCache::new(64));
    let cfg = |id: &str| ClientConfig {
        client_id: id.into(),
        ..Default::default()
    };
    let mut alice = Link::new(&w, ServerConfig::default(), cfg("alice"), replay.clone());
    let mut bob = Link::new(&w, ServerConfig::default(), cfg("bob"), replay);
    assert_eq!(alice.connect(), vec![ClientOutput::Ready]);
    assert_eq!(bob.connect(), vec![ClientOutput::Ready]);
    let (ra, c) = alice.mutate(MutationType::Add, &["A"]);
    assert!(matches!(
        c.as_slice(),
        [ClientOutput::Reply {
            result: Ok(Outcome::Executed),
            ..
        }]
    ));
    let (rb, f) = bob.cli.mutate(MutationType::Add, &["B"], None, 0).unwrap();
    assert_eq!(ra, rb, "both clients number their requests from 1");
    bob.up.push_back(f);
    let c = bob.pump();
    assert_eq!(
        c,
        vec![ClientOutput::Reply {
            req: rb,
            result: Ok(Outcome::Executed),
            why: None,
        }]
    );
    assert!(
        w.is1("B"),
        "bob's first request never ran: it was answered with alice's outcome"
    );
    assert!(bob.in_sync() && bob.mirror().is1("B"));
}
