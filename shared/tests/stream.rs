//! The transition stream through the sans-IO sessions: order and completeness against the
//! worker's own tracer, the drop marker for a stalled reader with bounded memory, nothing for
//! sessions that did not ask, resuming after a reconnect, and `all_ticks`.

use std::sync::{Arc, Mutex};

use amrpc_core::session::{
    ClientConfig, ClientOutput, ClientSession, ReplayCache, ServerConfig, ServerOutput, ServerSession, StreamTracer,
    TransitionLog,
};
use amrpc_core::wire::{ServerMsg, SourceMsg, StepSide, TransitionMsg, WhyMsg};
use amrpc_core::{Args, Handlers, Machine, MutationType, Opts, State, StepType, Tracer, Transition, Value, schema};

fn now_ms() -> u64 {
    1_700_000_000_000
}

/// What the worker's own tracer saw of each transition.
/// Type, called states, accepted, ticks after, number of steps.
type Traced = (MutationType, Vec<String>, bool, Vec<u64>, usize);

#[derive(Default)]
struct Seen(Mutex<Vec<Traced>>);

impl Tracer for Seen {
    fn transition_end(&self, t: &Transition) {
        self.0.lock().unwrap().push((
            t.mutation_type(),
            t.called_states().iter().map(|s| s.to_string()).collect(),
            t.accepted(),
            t.time_after().unwrap_or_default(),
            t.steps().len(),
        ));
    }
}

struct World {
    worker: Machine,
    log: Arc<TransitionLog>,
    seen: Arc<Seen>,
}

fn world(capacity: usize) -> World {
    let worker = Machine::new(
        schema([
            ("Online", State::new()),
            ("Downloading", State::new().require(&["Online"])),
            ("Progress", State::new().multi().require(&["Downloading"])),
            ("Locked", State::new()),
        ]),
        Opts::default(),
    )
    .unwrap();
    worker
        .verify_states(&["Online", "Downloading", "Progress", "Locked", "Exception"])
        .unwrap();
    let log = Arc::new(TransitionLog::new(42, capacity, now_ms));
    worker.bind_tracer(Arc::new(StreamTracer(log.clone())));
    let seen = Arc::new(Seen::default());
    worker.bind_tracer(seen.clone());
    worker
        .bind_handlers(
            Handlers::new("w")
                .state("Downloading", |e| {
                    e.machine().add1("Progress", None);
                })
                .enter("Locked", |_| false),
        )
        .unwrap();
    World { worker, log, seen }
}

struct Peer {
    srv: ServerSession,
    cli: ClientSession,
    transitions: Vec<TransitionMsg>,
    dropped: Vec<(u64, u64)>,
    updates: usize,
}

impl Peer {
    fn new(w: &World, epoch: u64, id: &str, stream: bool, all_ticks: bool) -> Peer {
        let mut srv = ServerSession::new(
            &w.worker,
            ServerConfig {
                epoch,
                ..ServerConfig::default()
            },
            Arc::new(ReplayCache::new(8)),
        );
        srv.set_transition_log(w.log.clone());
        let cli = ClientSession::new(ClientConfig {
            client_id: id.into(),
            instance: epoch,
            stream,
            all_ticks,
            ..ClientConfig::default()
        });
        let mut p = Peer {
            srv,
            cli,
            transitions: Vec::new(),
            dropped: Vec::new(),
            updates: 0,
        };
        p.connect(w);
        p
    }

    fn connect(&mut self, w: &World) {
        let hello = self.cli.hello();
        let out = self.srv.handle_frame(&hello, 0, &w.worker);
        self.deliver(out);
        assert!(self.cli.mirror().is_some(), "handshake");
    }

    fn deliver(&mut self, out: Vec<ServerOutput>) {
        for o in out {
            if let ServerOutput::Send(b) = o {
                if matches!(ServerMsg::decode(&b, 1 << 20), Ok(ServerMsg::Update(_))) {
                    self.updates += 1;
                }
                for c in self.cli.handle_frame(&b) {
                    match c {
                        ClientOutput::Transition(t) => self.transitions.push(*t),
                        ClientOutput::Dropped { n, next } => self.dropped.push((n, next)),
                        _ => {}
                    }
                }
            }
        }
    }

    fn mutate(&mut self, w: &World, ty: MutationType, states: &[&str], args: Option<Args>) {
        let (_, f) = self.cli.mutate(ty, states, args, 0).unwrap();
        let out = self.srv.handle_frame(&f, 1, &w.worker);
        self.deliver(out);
    }

    /// Poll until nothing more comes (each poll sends at most a batch).
    fn drain(&mut self, w: &World, now: u64) {
        self.srv.worker_changed();
        for _ in 0..10_000 {
            let out = self.srv.poll(now, &w.worker);
            let more = self.srv.next_deadline().is_some_and(|d| d <= now);
            let empty = out.is_empty();
            self.deliver(out);
            if empty && !more {
                return;
            }
        }
        panic!("the stream never ran dry");
    }
}

#[test]
fn every_transition_arrives_in_order_as_the_worker_saw_it() {
    let w = world(1024);
    let mut inspector = Peer::new(&w, 7, "inspector", true, false);
    let mut other = Peer::new(&w, 8, "app", false, false);
    assert_eq!(w.log.subscribers(), 1);
    other.mutate(&w, MutationType::Add, &["Downloading"], None); // canceled: requires Online
    other.mutate(
        &w,
        MutationType::Add,
        &["Online", "Downloading"],
        Some(Args::new().with("url", "x")),
    );
    other.mutate(&w, MutationType::Add, &["Locked"], None); // canceled by LockedEnter
    w.worker.add1("Progress", None); // the worker's own
    other.mutate(&w, MutationType::Remove, &["Online"], None);
    inspector.drain(&w, 100);
    other.drain(&w, 100);

    let seen = w.seen.0.lock().unwrap().clone();
    let got = &inspector.transitions;
    assert_eq!(got.len(), seen.len(), "one record per transition the worker traced");
    let names = w.worker.state_names();
    for (i, (t, s)) in got.iter().zip(&seen).enumerate() {
        assert_eq!(t.seq, i as u64 + 1, "consecutive from 1");
        assert_eq!(t.time_ms, now_ms());
        assert_eq!(t.ty, s.0);
        let called: Vec<String> = t.called.iter().map(|i| names[usize::from(*i)].clone()).collect();
        assert_eq!(called, s.1);
        assert_eq!(t.accepted, s.2);
        assert_eq!(t.ticks, s.3, "the clock after it");
        assert_eq!(t.steps.len(), s.4);
    }
    // who caused what
    let src: Vec<&SourceMsg> = got.iter().map(|t| &t.source).collect();
    let app = SourceMsg::Session {
        epoch: 8,
        client: "app".into(),
    };
    assert_eq!(src[0], &app);
    assert_eq!(src[1], &app);
    assert_eq!(src[2], &SourceMsg::Worker, "Progress, added by Downloading's handler");
    assert_eq!(src[3], &app);
    assert_eq!(src[4], &SourceMsg::Worker);
    // why, and the relation steps that show it
    let idx = |n: &str| names.iter().position(|x| x == n).unwrap() as u16;
    assert_eq!(got[0].why, Some(WhyMsg::Requires(idx("Downloading"), idx("Online"))));
    assert!(got[0].steps.iter().any(|s| s.ty == StepType::Relation
        && s.from == StepSide::State(idx("Downloading"))
        && s.to == StepSide::State(idx("Online"))));
    assert_eq!(got[3].why, Some(WhyMsg::Handler("LockedEnter".into())));
    assert!(got[3].steps.iter().any(|s| s.handler.as_deref() == Some("LockedEnter")));
    assert_eq!(got[1].args.get("url"), Some(&Value::Str("x".into())));
    assert!(!got[1].args_cut);
    // the other session asked for nothing and got nothing
    assert!(other.transitions.is_empty() && other.dropped.is_empty());
}

#[test]
fn nothing_is_recorded_while_nobody_reads() {
    let w = world(1024);
    let mut app = Peer::new(&w, 8, "app", false, false);
    for _ in 0..50 {
        app.mutate(&w, MutationType::Add, &["Online"], None);
        app.mutate(&w, MutationType::Remove, &["Online"], None);
    }
    assert_eq!(w.log.subscribers(), 0);
    assert_eq!(w.log.next_seq(), 1, "no record was made");
    // a reader joining later starts from then on
    let mut inspector = Peer::new(&w, 9, "inspector", true, false);
    app.mutate(&w, MutationType::Add, &["Online"], None);
    inspector.drain(&w, 10);
    assert_eq!(inspector.transitions.len(), 1);
    assert!(inspector.dropped.is_empty(), "a first subscription has no drop marker");
    // the last reader leaving empties the log
    drop(inspector);
    assert_eq!(w.log.subscribers(), 0);
    assert!(w.log.read(0, 10).records.is_empty());
}

#[test]
fn a_stalled_reader_gets_a_drop_marker_and_memory_stays_bounded() {
    let w = world(64);
    let mut inspector = Peer::new(&w, 7, "inspector", true, false);
    let mut app = Peer::new(&w, 8, "app", false, false);
    // the inspector does not read while 1 000 transitions happen
    for i in 0..500 {
        app.mutate(&w, MutationType::Add, &["Online"], Some(Args::new().with("i", i)));
        app.mutate(&w, MutationType::Remove, &["Online"], None);
        assert!(
            w.log.read(0, usize::MAX).records.len() <= 64,
            "the ring holds at most its capacity"
        );
    }
    inspector.drain(&w, 1_000);
    assert_eq!(inspector.dropped, vec![(1_000 - 64, 1_000 - 64 + 1)]);
    assert_eq!(inspector.transitions.len(), 64);
    let seqs: Vec<u64> = inspector.transitions.iter().map(|t| t.seq).collect();
    assert_eq!(seqs, (1_000 - 64 + 1..=1_000).collect::<Vec<_>>());
    // and it keeps up afterwards, without markers
    app.mutate(&w, MutationType::Add, &["Online"], None);
    inspector.drain(&w, 1_001);
    assert_eq!(inspector.transitions.last().unwrap().seq, 1_001);
    assert_eq!(inspector.dropped.len(), 1);
}

#[test]
fn big_args_are_cut_to_their_keys() {
    let w = world(16);
    let mut inspector = Peer::new(&w, 7, "inspector", true, false);
    let mut app = Peer::new(&w, 8, "app", false, false);
    let big = "x".repeat(4096);
    app.mutate(
        &w,
        MutationType::Add,
        &["Online"],
        Some(Args::new().with("blob", big.as_str()).with("n", 1)),
    );
    inspector.drain(&w, 1);
    let t = &inspector.transitions[0];
    assert!(t.args_cut);
    assert_eq!(t.args.get("blob"), Some(&Value::Null));
    assert_eq!(t.args.get("n"), Some(&Value::Null));
}

#[test]
fn a_reconnect_resumes_the_stream_where_it_stopped() {
    let w = world(1024);
    let mut inspector = Peer::new(&w, 7, "inspector", true, false);
    let mut app = Peer::new(&w, 8, "app", false, false);
    app.mutate(&w, MutationType::Add, &["Online"], None);
    inspector.drain(&w, 1);
    assert_eq!(inspector.transitions.len(), 1);
    // the connection drops; meanwhile two transitions
    inspector.cli.disconnected();
    inspector.srv = ServerSession::new(
        &w.worker,
        ServerConfig {
            epoch: 9,
            ..ServerConfig::default()
        },
        Arc::new(ReplayCache::new(8)),
    );
    inspector.srv.set_transition_log(w.log.clone());
    // (the old session is gone: nobody reads, so these two are not recorded — but they
    // would be if another reader kept the log going)
    let _keeper = Peer::new(&w, 10, "keeper", true, false);
    app.mutate(&w, MutationType::Remove, &["Online"], None);
    app.mutate(&w, MutationType::Add, &["Online"], None);
    inspector.connect(&w);
    inspector.drain(&w, 2);
    let seqs: Vec<u64> = inspector.transitions.iter().map(|t| t.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3], "resumed at 2, nothing twice");
    assert!(inspector.dropped.is_empty());
}

#[test]
fn a_restarted_worker_log_starts_over() {
    let w = world(1024);
    let mut inspector = Peer::new(&w, 7, "inspector", true, false);
    let mut app = Peer::new(&w, 8, "app", false, false);
    app.mutate(&w, MutationType::Add, &["Online"], None);
    inspector.drain(&w, 1);
    // "restart": the same worker served with a new log
    let w2 = World {
        worker: w.worker.clone(),
        log: Arc::new(TransitionLog::new(43, 1024, now_ms)),
        seen: w.seen.clone(),
    };
    w2.worker.bind_tracer(Arc::new(StreamTracer(w2.log.clone())));
    inspector.cli.disconnected();
    inspector.srv = ServerSession::new(&w2.worker, ServerConfig::default(), Arc::new(ReplayCache::new(8)));
    inspector.srv.set_transition_log(w2.log.clone());
    inspector.connect(&w2);
    w2.worker.remove1("Online", None);
    inspector.drain(&w2, 2);
    let seqs: Vec<u64> = inspector.transitions.iter().map(|t| t.seq).collect();
    assert_eq!(seqs, vec![1, 1], "the new log's first record is not skipped");
}

#[test]
fn all_ticks_sends_a_clock_update_per_transition() {
    let w = world(1024);
    let mut all = Peer::new(&w, 7, "all", false, true);
    let mut coalesced = Peer::new(&w, 9, "coalesced", false, false);
    // ten worker-side transitions between two polls
    for _ in 0..5 {
        w.worker.add1("Online", None);
        w.worker.remove1("Online", None);
    }
    all.drain(&w, 1_000);
    coalesced.drain(&w, 1_000);
    assert_eq!(all.updates, 10, "one update per transition");
    assert!(
        coalesced.updates <= 1,
        "coalesced into one push (or none: no net change)"
    );
    assert_eq!(all.cli.mirror().unwrap().time(None), w.worker.time(None));
    assert!(
        all.transitions.is_empty(),
        "all_ticks alone sends no transition records"
    );
}

#[test]
fn without_a_log_the_stream_is_refused_and_the_session_goes_on() {
    let w = world(16);
    let mut srv = ServerSession::new(&w.worker, ServerConfig::default(), Arc::new(ReplayCache::new(8)));
    let mut cli = ClientSession::new(ClientConfig {
        stream: true,
        ..ClientConfig::default()
    });
    let out = srv.handle_frame(&cli.hello(), 0, &w.worker);
    let mut errors = Vec::new();
    for o in out {
        if let ServerOutput::Send(b) = o {
            for c in cli.handle_frame(&b) {
                if let ClientOutput::Error(e) = c {
                    errors.push(e.code());
                }
            }
        }
    }
    assert_eq!(errors, vec![amrpc_core::ErrorCode::Forbidden]);
    assert!(srv.is_open() && cli.mirror().is_some());
}
