//! The byte examples of `docs/PROTOCOL.md`, produced by the real encoders and sessions. Each
//! example's hex string is asserted here and must appear verbatim in the doc, so neither can
//! drift from the code. After a deliberate wire change, update both (run with `--nocapture` to
//! print the new bytes).

use std::sync::Arc;

use amrpc_core::demo::{self, CALL_OP, START};
use amrpc_core::session::{
    ClientConfig, ClientOutput, ClientSession, ReplayCache, ServerConfig, ServerOutput, ServerSession,
};
use amrpc_core::wire::{
    ClientMsg, ClockUpdate, DEFAULT_MAX_FRAME, Diff, ErrorCode, Hello, MutationReq, ServerMsg, StreamFrom, Ticks, clock,
};
use amrpc_core::{Args, Machine, MutationType, Opts, Outcome, State, Value, schema};

/// The document the examples must appear in.
const DOC: &str = include_str!("../../docs/PROTOCOL.md");

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
}

/// `bytes` must be `expected` (space-separated lowercase hex) and the doc must show it.
fn check(name: &str, bytes: &[u8], expected: &str) {
    println!("{name:<22} {}", hex(bytes));
    assert_eq!(hex(bytes), expected, "{name}: the encoding changed");
    assert!(
        DOC.contains(expected),
        "docs/PROTOCOL.md does not show the {name} example: {expected}"
    );
}

/// A server frame: decodes back to itself.
fn server_frame(b: &[u8]) -> ServerMsg {
    let m = ServerMsg::decode(b, DEFAULT_MAX_FRAME).expect("server frame decodes");
    assert_eq!(m.encode().unwrap(), b, "re-encodes identically");
    m
}

/// A client frame: decodes back to itself.
fn client_frame(b: &[u8]) -> ClientMsg {
    let m = ClientMsg::decode(b, DEFAULT_MAX_FRAME).expect("client frame decodes");
    assert_eq!(m.encode().unwrap(), b, "re-encodes identically");
    m
}

fn sends(out: Vec<ServerOutput>) -> Vec<Vec<u8>> {
    out.into_iter()
        .filter_map(|o| match o {
            ServerOutput::Send(b) => Some(b),
            _ => None,
        })
        .collect()
}

/// The doc's tiny worker: `Start` (Remove `Exception`) and the automatic `Exception` (Multi).
fn tiny_worker() -> Machine {
    let opts = Opts {
        id: Some("w".into()),
        ..Default::default()
    };
    let w = Machine::new(schema([("Start", State::new().remove(&["Exception"]))]), opts).unwrap();
    w.verify_states(&["Start", "Exception"]).unwrap();
    w
}

/// One session with the tiny worker, message by message, as in the doc's walk-through.
#[test]
fn session_walk_through() {
    let w = tiny_worker();
    let cfg = ServerConfig {
        epoch: 7,
        chunk_size: 4,
        ..Default::default()
    };
    let mut srv = ServerSession::new(&w, cfg, Arc::new(ReplayCache::new(8)));
    let mut cli = ClientSession::new(ClientConfig {
        client_id: "cli".into(),
        instance: 300,
        ..Default::default()
    });

    // Hello → Welcome
    let hello = cli.hello();
    check("Hello", &hello, "00 04 03 63 6c 69 ac 02 00 00 00 00 00 00 00 00");
    assert!(matches!(client_frame(&hello), ClientMsg::Hello(_)));
    let f = sends(srv.handle_frame(&hello, 0, &w));
    assert_eq!(f.len(), 1);
    check(
        "Welcome",
        &f[0],
        "00 04 01 77 07 02 05 53 74 61 72 74 09 45 78 63 65 70 74 69 6f 6e 02 00 00 00 01 01 00 00 02 00 00 00 00 00 \
         96 f9 b7 ff 99 94 d1 cc a1 01 00 10 00 00 01 02 00 00 00 00 40 00 00 00",
    );
    let ServerMsg::Welcome(welcome) = server_frame(&f[0]) else {
        panic!("not a Welcome")
    };
    assert_eq!(welcome.schema_hash, srv.schema_hash());
    println!("schema hash {:#018x}", welcome.schema_hash);
    assert_eq!(cli.handle_frame(&f[0]), vec![ClientOutput::Ready]);

    // Add(Start, {"n": Int(-3)}) → Executed with a one-entry diff
    let (req, add) = cli
        .mutate(
            MutationType::Add,
            &["Start"],
            Some(Args::new().with("n", Value::Int(-3))),
            0,
        )
        .unwrap();
    check("Add", &add, "01 01 01 00 01 01 6e 02 05");
    client_frame(&add);
    let out = srv.handle_frame(&add, 1, &w);
    let f = sends(out);
    check("Executed", &f[0], "01 01 01 01 01 00 01 00");
    assert_eq!(
        server_frame(&f[0]),
        ServerMsg::Executed(amrpc_core::wire::Reply {
            req,
            update: Some(ClockUpdate {
                seq: 1,
                checksum: 1,
                ticks: Ticks::Diff(Diff(vec![(0, 1)])),
            }),
        })
    );
    assert_eq!(
        cli.handle_frame(&f[0]),
        vec![
            ClientOutput::Reply {
                req,
                result: Ok(Outcome::Executed),
                why: None,
            },
            ClientOutput::Changed
        ]
    );

    // the worker changes on its own five times within one interval: one coalesced push
    for _ in 0..2 {
        w.remove1("Start", None);
        srv.worker_changed();
        assert!(sends(srv.poll(5, &w)).is_empty(), "too soon: coalesced");
        w.add1("Start", None);
        srv.worker_changed();
    }
    w.remove1("Start", None);
    srv.worker_changed();
    assert_eq!(
        srv.next_deadline(),
        Some(1 + 16),
        "the trailing push is due one interval after the reply"
    );
    let f = sends(srv.poll(17, &w));
    check("Update", &f[0], "04 02 06 00 02 03 05");
    assert_eq!(cli.handle_frame(&f[0]), vec![ClientOutput::Changed]);
    assert_eq!(cli.mirror().unwrap().time(None), vec![6, 0]);

    // Sync → Synced (the full clock)
    let sync = ClientMsg::Sync { req: 2 }.encode().unwrap();
    check("Sync", &sync, "04 02");
    let f = sends(srv.handle_frame(&sync, 20, &w));
    check("Synced", &f[0], "05 02 03 06 01 02 06 00");
    server_frame(&f[0]);

    // a state index out of range → Error answering request 3 (the session stays open)
    let bad = ClientMsg::Add(MutationReq {
        req: 3,
        states: vec![5],
        args: Args::new(),
    })
    .encode()
    .unwrap();
    check("Add (bad index)", &bad, "01 03 01 05 00");
    let f = sends(srv.handle_frame(&bad, 21, &w));
    check(
        "Error",
        &f[0],
        "08 01 03 05 25 73 74 61 74 65 20 69 6e 64 65 78 20 35 20 6f 75 74 20 6f 66 20 72 61 6e 67 65 20 28 32 \
         20 73 74 61 74 65 73 29",
    );
    server_frame(&f[0]);
    assert!(srv.is_open());

    // a 5-byte payload with a 4-byte chunk size: two chunks; a 2-byte one: one Payload
    let f = sends(srv.payload("log", "w", b"hello"));
    assert_eq!(f.len(), 2);
    check(
        "Chunk 0",
        &f[0],
        "07 81 80 80 80 70 00 02 01 03 6c 6f 67 01 77 01 05 04 68 65 6c 6c",
    );
    check("Chunk 1", &f[1], "07 81 80 80 80 70 01 02 00 00 01 6f");
    assert!(cli.handle_frame(&f[0]).is_empty());
    let ClientOutput::Payload(p) = &cli.handle_frame(&f[1])[0] else {
        panic!("not reassembled")
    };
    assert_eq!(
        (p.name.as_str(), p.source.as_str(), &p.data[..]),
        ("log", "w", &b"hello"[..])
    );
    let f = sends(srv.payload("log", "w", b"hi"));
    check("Payload", &f[0], "06 03 6c 6f 67 01 77 82 80 80 80 70 02 68 69");
    server_frame(&f[0]);

    // the server shuts down: Bye with a code, then the shell closes
    let f = sends(srv.shutdown(ErrorCode::ShuttingDown, "bye"));
    check("Bye (server)", &f[0], "09 00 09 03 62 79 65");
    assert!(
        matches!(&cli.handle_frame(&f[0])[0], ClientOutput::Disconnected(e) if e.code() == ErrorCode::ShuttingDown)
    );
    check("Bye (client)", &cli.bye(), "05");
    w.dispose();
}

/// A reply with no clock change still carries a sequenced, empty diff.
#[test]
fn no_change_reply() {
    let w = tiny_worker();
    let mut srv = ServerSession::new(&w, ServerConfig::default(), Arc::new(ReplayCache::new(8)));
    let mut cli = ClientSession::new(ClientConfig::default());
    let f = sends(srv.handle_frame(&cli.hello(), 0, &w));
    assert_eq!(cli.handle_frame(&f[0]), vec![ClientOutput::Ready]);
    // Exception is not active: removing it changes nothing
    let (req, rm) = cli.mutate(MutationType::Remove, &["Exception"], None, 0).unwrap();
    check("Remove (no change)", &rm, "02 01 01 01 00");
    let out = srv.handle_frame(&rm, 1, &w);
    let f = sends(out);
    let ServerMsg::Executed(r) = server_frame(&f[0]) else {
        panic!("not Executed")
    };
    assert_eq!(
        r.update.as_ref().map(|u| (u.seq, u.ticks.clone())),
        Some((1, Ticks::Diff(Diff::default())))
    );
    check("Executed (no change)", &f[0], "01 01 01 01 00 00 00");
    assert_eq!(
        cli.handle_frame(&f[0]),
        vec![ClientOutput::Reply {
            req,
            result: Ok(Outcome::Executed),
            why: None,
        }]
    );
    w.dispose();
}

/// A `Hello` using every option.
#[test]
fn hello_with_options() {
    let w = tiny_worker();
    let hash = ServerSession::new(&w, ServerConfig::default(), Arc::new(ReplayCache::new(1))).schema_hash();
    let h = ClientMsg::Hello(Hello {
        version: amrpc_core::wire::PROTOCOL_VERSION,
        client_id: "cli".into(),
        instance: 300,
        token: Some("t0k".into()),
        schema_hash: Some(hash),
        push_interval_ms: Some(50),
        states: Some(vec!["Start".into()]),
        shallow: true,
        types: true,
        stream: Some(StreamFrom { log: 5, seq: 9 }),
        all_ticks: true,
    })
    .encode()
    .unwrap();
    check(
        "Hello (options)",
        &h,
        "00 04 03 63 6c 69 ac 02 01 03 74 30 6b 01 96 f9 b7 ff 99 94 d1 cc a1 01 01 32 01 01 05 53 74 61 72 74 01 01 01 05 09 01",
    );
    client_frame(&h);
}

/// Upstream's benchmark op (the bench worker, seed 7): the first op after `add1(Start)`.
#[test]
fn benchmark_op() {
    let (w, bw) = demo::bench_worker(7).unwrap();
    let mut srv = ServerSession::new(&w, ServerConfig::default(), Arc::new(ReplayCache::new(8)));
    let mut cli = ClientSession::new(ClientConfig::default());
    let f = sends(srv.handle_frame(&cli.hello(), 0, &w));
    cli.handle_frame(&f[0]);
    let mirror = cli.mirror().unwrap().clone();
    let mut call = |states: &[&str], args: Option<Args>| {
        let (_, req) = cli.mutate(MutationType::Add, states, args, 0).unwrap();
        let out = srv.handle_frame(&req, 1, &w);
        let rep = sends(out).remove(0);
        cli.handle_frame(&rep);
        (req, rep)
    };
    let (start, start_rep) = call(&[START], None);
    check("Add (Start)", &start, "01 01 01 0b 00");
    check("Executed (Start)", &start_rep, "01 01 01 01 1e 00 03 01 08 2c");
    let op = demo::op_of(mirror.switch(&[&demo::VALUES])).unwrap();
    assert_eq!(op, 2);
    let (req, rep) = call(&[CALL_OP], Some(demo::op_args(op)));
    check("Add (CallOp)", &req, "01 02 01 04 01 02 4f 70 02 04");
    // the new value is 2 again: Event +2 and CallOp +2 only
    check("Executed (CallOp)", &rep, "01 02 01 02 32 00 02 01 11");
    assert!(req.len() + rep.len() <= 24);
    let op = demo::op_of(mirror.switch(&[&demo::VALUES])).unwrap();
    assert_eq!(op, 2);
    let (req, rep) = call(&[CALL_OP], Some(demo::op_args(op)));
    check("Add (CallOp 2)", &req, "01 03 01 04 01 02 4f 70 02 04");
    // the value moves from 2 to 1: Value1 +1 and Value2 +1 as well
    check("Executed (CallOp 2)", &rep, "01 03 01 03 4e 00 04 01 04 08 11");
    assert!(req.len() + rep.len() <= 24);
    assert_eq!(bw.successes(), 2);
    bw.unsubscribe();
    w.dispose();
}

/// Every `Value` form inside `Args`, and the packed diff's escape and 2-byte words.
#[test]
fn values_and_diff_words() {
    let args = Args::new()
        .with("b", Value::Bool(true))
        .with("f", Value::Float(0.5))
        .with("l", Value::List(vec![Value::Null, Value::Str("x".into())]))
        .with("m", Value::Map([("k".to_string(), Value::Bytes(vec![1, 2]))].into()));
    let m = ClientMsg::Set(MutationReq {
        req: 1,
        states: vec![],
        args,
    })
    .encode()
    .unwrap();
    check(
        "Set (args)",
        &m,
        "03 01 00 04 01 62 01 01 01 66 03 00 00 00 00 00 00 e0 3f 01 6c 06 02 00 04 01 78 01 6d 07 01 01 6b 05 02 01 02",
    );
    client_frame(&m);

    // Δ1 at index 2 (1 byte), Δ300 at index 40 (escape: 2-byte word, then the delta)
    let before = vec![0u64; 41];
    let mut after = before.clone();
    after[2] = 1;
    after[40] = 300;
    let mut last_sent = before;
    let u = clock::update_from(&mut last_sent, &after, None, 9).unwrap();
    assert_eq!(u.ticks, Ticks::Diff(Diff(vec![(2, 1), (40, 300)])));
    let f = ServerMsg::Update(u).encode().unwrap();
    check("Update (escape)", &f, "04 09 f1 00 03 08 a3 01 ac 02");
    server_frame(&f);
    assert_eq!(clock::checksum(&after), 0xf1);
}

/// Version 2: a remote `WhenArgs` met by the client's own mutation (its `Signaled` follows the
/// reply), `Unwait`, `WhenQueue` and a `Queued` reply with its queue tick.
#[test]
fn remote_waits() {
    let w = tiny_worker();
    let mut srv = ServerSession::new(&w, ServerConfig::default(), Arc::new(ReplayCache::new(8)));
    let mut cli = ClientSession::new(ClientConfig::default());
    let f = sends(srv.handle_frame(&cli.hello(), 0, &w));
    assert_eq!(cli.handle_frame(&f[0]), vec![ClientOutput::Ready]);

    let (wait, frame) = cli.wait_args(0, Args::new().with("n", 1)).unwrap();
    check("WhenArgs", &frame, "06 01 00 01 01 6e 02 02");
    client_frame(&frame);
    assert!(
        sends(srv.handle_frame(&frame, 1, &w)).is_empty(),
        "pending: no reply yet"
    );
    assert_eq!(srv.waits(), 1);

    let (req, add) = cli
        .mutate(MutationType::Add, &["Start"], Some(Args::new().with("n", 1)), 2)
        .unwrap();
    let f = sends(srv.handle_frame(&add, 2, &w));
    assert_eq!(f.len(), 2, "the reply, then the signal");
    check("Signaled", &f[1], "0a 01 01 02 01 00 00");
    server_frame(&f[1]);
    assert_eq!(srv.waits(), 0);
    let mut out = cli.handle_frame(&f[0]);
    out.extend(cli.handle_frame(&f[1]));
    assert_eq!(
        out,
        vec![
            ClientOutput::Reply {
                req,
                result: Ok(Outcome::Executed),
                why: None,
            },
            ClientOutput::Changed,
            ClientOutput::Reply {
                req: wait,
                result: Ok(Outcome::Executed),
                why: None,
            },
        ]
    );

    let (q, frame) = cli.wait_queue(9).unwrap();
    check("WhenQueue", &frame, "07 03 09");
    client_frame(&frame);
    assert!(sends(srv.handle_frame(&frame, 3, &w)).is_empty());
    let unwait = cli.unwait(q).unwrap();
    check("Unwait", &unwait, "08 03");
    assert!(sends(srv.handle_frame(&unwait, 4, &w)).is_empty());
    assert_eq!(srv.waits(), 0, "dropped on the worker too");
    assert_eq!(w.wait_bindings(), 0);

    let queued = ServerMsg::Queued {
        reply: amrpc_core::wire::Reply {
            req: 4,
            update: Some(ClockUpdate {
                seq: 3,
                checksum: 1,
                ticks: Ticks::Diff(Diff::default()),
            }),
        },
        queue_tick: 9,
    }
    .encode()
    .unwrap();
    check("Queued", &queued, "03 04 01 03 01 00 00 09");
    server_frame(&queued);
    w.dispose();
}

/// Version 3: why a mutation was canceled, and the transition stream.
#[test]
fn why_and_the_stream() {
    use amrpc_core::wire::{Reply, SourceMsg, StepMsg, StepSide, TransitionMsg, WhyMsg};
    use amrpc_core::{Relation, StepType};
    let canceled = ServerMsg::Canceled {
        reply: Reply {
            req: 5,
            update: Some(ClockUpdate {
                seq: 4,
                checksum: 1,
                ticks: Ticks::Diff(Diff::default()),
            }),
        },
        why: Some(WhyMsg::Requires(3, 0)),
    }
    .encode()
    .unwrap();
    check("Canceled (why)", &canceled, "02 05 01 04 01 00 00 01 00 03 00");
    let t = ServerMsg::Transition(Box::new(TransitionMsg {
        seq: 1,
        time_ms: 1_700_000_000_000,
        ty: MutationType::Add,
        called: vec![3],
        args: Args::new(),
        args_cut: false,
        source: SourceMsg::Session {
            epoch: 7,
            client: "cli".into(),
        },
        accepted: false,
        why: Some(WhyMsg::Requires(3, 0)),
        ticks: vec![0, 1, 0, 0],
        steps: vec![StepMsg {
            ty: StepType::Relation,
            from: StepSide::State(3),
            to: StepSide::State(0),
            relation: Some(Relation::Require),
            handler: None,
        }],
    }))
    .encode()
    .unwrap();
    check(
        "Transition",
        &t,
        "0b 01 80 d0 95 ff bc 31 00 01 03 00 00 02 07 03 63 6c 69 00 01 00 03 00 04 00 01 00 00 01 00 02 03 02 00 01 02 00",
    );
    let d = ServerMsg::Dropped { n: 936, next: 937 }.encode().unwrap();
    check("Dropped", &d, "0c a8 07 a9 07");
    for f in [&canceled, &t, &d] {
        server_frame(f);
    }
}
