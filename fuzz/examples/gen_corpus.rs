//! Writes the seed corpus: `corpus/<target>/seed-*`, a handful of valid (and a few nearly valid)
//! inputs per target. Run from `fuzz/`: `cargo run --example gen_corpus`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use amrpc_core::session::{ClientConfig, ClientSession, ReplayCache, ServerConfig, ServerOutput, ServerSession};
use amrpc_core::wire::clock::{self, ClockUpdate, Diff, Ticks};
use amrpc_core::wire::{
    Chunk, ClientMsg, ErrorCode, ErrorMsg, Hello, MutationReq, PROTOCOL_VERSION, Payload, Reply, ServerMsg, SourceMsg,
    StepMsg, StepSide, StreamFrom, TransitionMsg, WaitArgs, WhyMsg,
};
use amrpc_core::{Args, Machine, Opts, State, Value, schema};
use amrpc_fuzz::clock_case_bytes;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    fs::create_dir_all(&dir).expect("corpus dir");
    fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    println!("corpus/{target}/seed-{name}: {} bytes", bytes.len());
}

fn client(name: &str, m: ClientMsg) {
    write("decode_client", name, &m.encode().expect("encodes"));
}

fn server(name: &str, m: ServerMsg) {
    write("decode_server", name, &m.encode().expect("encodes"));
}

fn update(seq: u8, before: &[u64], after: &[u64]) -> ClockUpdate {
    let mut last = before.to_vec();
    clock::update_from(&mut last, after, None, seq).expect("a change")
}

fn main() {
    // --- client frames
    client(
        "hello",
        ClientMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            client_id: "browser".into(),
            instance: 42,
            token: Some("t0k3n".into()),
            schema_hash: Some(0x0123_4567_89ab_cdef),
            push_interval_ms: Some(16),
            states: Some(vec!["A".into(), "B".into()]),
            shallow: true,
            types: true,
            stream: Some(StreamFrom { log: 7, seq: 3 }),
            all_ticks: true,
        }),
    );
    write(
        "decode_client",
        "hello-default",
        &ClientSession::new(ClientConfig::default()).hello(),
    );
    let op = |req| MutationReq {
        req,
        states: vec![0],
        args: Args::new().with("op", 1),
    };
    client("add-op", ClientMsg::Add(op(1)));
    let nested = Value::Map(BTreeMap::from([
        (
            "list".to_string(),
            Value::List(vec![Value::Null, Value::Bool(true), Value::Float(-1.5)]),
        ),
        ("bytes".to_string(), Value::Bytes(vec![0, 1, 0xff])),
    ]));
    client(
        "add-args",
        ClientMsg::Add(MutationReq {
            req: 70_000,
            states: vec![1, 2, 300],
            args: Args::new().with("n", -7).with("s", "é").with("m", nested),
        }),
    );
    client("remove", ClientMsg::Remove(op(2)));
    client(
        "set",
        ClientMsg::Set(MutationReq {
            req: 3,
            states: vec![],
            args: Args::new(),
        }),
    );
    client("sync", ClientMsg::Sync { req: 9 });
    client("bye", ClientMsg::Bye);
    client(
        "when-args",
        ClientMsg::WhenArgs(WaitArgs {
            req: 10,
            state: 1,
            args: Args::new().with("id", "job-7"),
        }),
    );
    client("when-queue", ClientMsg::WhenQueue { req: 11, tick: 42 });
    client("unwait", ClientMsg::Unwait { req: 10 });

    // --- server frames: a real Welcome, then one of each other variant
    let worker = Machine::new(
        schema([
            ("A", State::new().auto()),
            ("B", State::new().multi().require(&["A"])),
            ("C", State::new().add(&["A"]).remove(&["D"]).after(&["A"])),
            ("D", State::new()),
        ]),
        Opts::default(),
    )
    .expect("schema");
    worker
        .verify_states(&["A", "B", "C", "D", "Exception"])
        .expect("states");
    worker.add(&["A", "B"], None);
    let mut srv = ServerSession::new(&worker, ServerConfig::default(), Arc::new(ReplayCache::new(8)));
    let hello = ClientSession::new(ClientConfig::default()).hello();
    let welcome = srv
        .handle_frame(&hello, 0, &worker)
        .into_iter()
        .find_map(|o| match o {
            ServerOutput::Send(b) => Some(b),
            _ => None,
        })
        .expect("a Welcome");
    write("decode_server", "welcome", &welcome);

    let t0 = [1, 3, 0, 0, 0];
    let t1 = [1, 5, 1, 0, 0];
    server(
        "executed",
        ServerMsg::Executed(Reply {
            req: 1,
            update: Some(update(1, &t0, &t1)),
        }),
    );
    server(
        "canceled",
        ServerMsg::Canceled {
            reply: Reply { req: 2, update: None },
            why: Some(WhyMsg::Requires(1, 0)),
        },
    );
    server(
        "canceled-handler",
        ServerMsg::Canceled {
            reply: Reply {
                req: 4,
                update: Some(update(3, &t0, &t1)),
            },
            why: Some(WhyMsg::Handler("AEnter".into())),
        },
    );
    server(
        "transition",
        ServerMsg::Transition(Box::new(TransitionMsg {
            seq: 1,
            time_ms: 1_700_000_000_000,
            ty: amrpc_core::MutationType::Add,
            called: vec![1],
            args: Args::new().with("n", 1),
            args_cut: false,
            source: SourceMsg::Session {
                epoch: 7,
                client: "cli".into(),
            },
            accepted: false,
            why: Some(WhyMsg::Requires(1, 0)),
            ticks: t0.to_vec(),
            steps: vec![StepMsg {
                ty: amrpc_core::StepType::Relation,
                from: StepSide::State(1),
                to: StepSide::State(0),
                relation: Some(amrpc_core::Relation::Require),
                handler: None,
            }],
        })),
    );
    server("dropped", ServerMsg::Dropped { n: 936, next: 937 });
    server(
        "queued",
        ServerMsg::Queued {
            reply: Reply {
                req: 3,
                update: Some(update(2, &t1, &[2, 5, 1, 0, 1])),
            },
            queue_tick: 17,
        },
    );
    server(
        "signaled",
        ServerMsg::Signaled(Reply {
            req: 10,
            update: Some(update(3, &[2, 5, 1, 0, 1], &[2, 7, 1, 0, 1])),
        }),
    );
    server(
        "update-diff",
        ServerMsg::Update(ClockUpdate {
            seq: 3,
            checksum: 7,
            ticks: Ticks::Diff(Diff(vec![(0, 1), (2, 3), (40, 1000), (u16::MAX, u64::MAX)])),
        }),
    );
    server(
        "update-full",
        ServerMsg::Update(update(4, &[0; 5], &[9, 300, 1, 70_000, 2])),
    );
    let full = [1, 5, 1, 0, 1];
    server(
        "synced",
        ServerMsg::Synced {
            req: 9,
            update: ClockUpdate {
                seq: 5,
                checksum: clock::checksum(&full),
                ticks: Ticks::Full(full.to_vec()),
            },
        },
    );
    server(
        "payload",
        ServerMsg::Payload(Payload {
            name: "blob".into(),
            source: "worker".into(),
            token: 1,
            data: b"hello".to_vec(),
        }),
    );
    server(
        "chunk-head",
        ServerMsg::Chunk(Chunk {
            token: 2,
            index: 0,
            total: 2,
            head: Some(("blob".into(), "worker".into())),
            len: Some(10),
            data: b"01234".to_vec(),
        }),
    );
    server(
        "chunk-tail",
        ServerMsg::Chunk(Chunk {
            token: 2,
            index: 1,
            total: 2,
            head: None,
            len: None,
            data: b"56789".to_vec(),
        }),
    );
    server(
        "error",
        ServerMsg::Error(ErrorMsg {
            req: Some(4),
            code: ErrorCode::Forbidden,
            message: "no".into(),
        }),
    );
    server(
        "bye",
        ServerMsg::Bye(ErrorMsg {
            req: None,
            code: ErrorCode::ShuttingDown,
            message: "bye".into(),
        }),
    );

    // --- apply_clock: clock + update (see src/lib.rs for the layout)
    let before = [0, 1, 2, 3, 4, 5];
    let after = [1, 1, 4, 3, 4, 1000];
    write(
        "apply_clock",
        "diff-ok",
        &clock_case_bytes(&before, &update(1, &before, &after), false),
    );
    let mut bad = update(1, &before, &after);
    bad.checksum = bad.checksum.wrapping_add(1);
    write(
        "apply_clock",
        "diff-bad-checksum",
        &clock_case_bytes(&before, &bad, false),
    );
    let big = [0, 0, 0, 0, 0, 0];
    let full_after = [u64::MAX, 1 << 40, 7, 0, 0, 3];
    write(
        "apply_clock",
        "full-ok",
        &clock_case_bytes(&big, &update(2, &big, &full_after), false),
    );
    let short = ClockUpdate {
        seq: 3,
        checksum: 0,
        ticks: Ticks::Full(vec![1, 2]),
    };
    write(
        "apply_clock",
        "full-wrong-length",
        &clock_case_bytes(&before, &short, true),
    );
    let out_of_range = ClockUpdate {
        seq: 4,
        checksum: 0,
        ticks: Ticks::Diff(Diff(vec![(1, 1), (6, 1)])),
    };
    write(
        "apply_clock",
        "diff-out-of-range",
        &clock_case_bytes(&before, &out_of_range, true),
    );
    let overflow = ClockUpdate {
        seq: 5,
        checksum: 0,
        ticks: Ticks::Diff(Diff(vec![(0, 3)])),
    };
    write(
        "apply_clock",
        "diff-overflow",
        &clock_case_bytes(&[u64::MAX - 1], &overflow, true),
    );
    // the raw form: no valid update after the clock; Diff pairs with a repeated index
    // (clock [5, 9], fix the checksum, Diff mode, pairs (0, 3) (0, 4) (1, 1), checksum byte)
    let raw = [2, 5, 9, 1, 0, 0, 0, 3, 0, 0, 4, 1, 0, 1, 0];
    write("apply_clock", "raw-diff", &raw);

    // session: Hello, mutations of A and B, a sync, time passing (pings, pushes), a garbage frame
    write("session", "handshake-and-calls", &[0, 1, 1, 2, 3, 4, 10, 1]);
    write("session", "silent-then-late-hello", &[4, 100, 0, 1]);
    write("session", "garbage-after-hello", &[0, 5, 0x40, 1, 2, 3, 4, 1]);
    write("session", "burst-past-the-rate", &[0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 2, 1]);
}
