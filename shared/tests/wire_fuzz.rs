//! Deterministic fuzzing of both decoders and of the client session (issue 3, "What it must
//! show" item 3, first half; the cargo-fuzz targets are in `fuzz/`).
//!
//! A seeded xorshift generator makes valid messages of every variant, then feeds to BOTH
//! `ClientMsg::decode` and `ServerMsg::decode`, counted in [`Tally`] (≥ 100,000 inputs):
//! random byte strings of 0–300 bytes, every truncation of every valid frame, and valid frames
//! with flipped, overwritten, inserted or deleted bytes. It asserts that nothing panics, that
//! every truncation is a typed `Malformed` error, that any other input is `Ok` (then re-encoding
//! is stable) or a typed error, and that no decode allocates more than a small multiple of the
//! frame's length (measured with `allocation-counter`): no allocation is sized by an untrusted
//! length. Frames over the limit are `TooLarge` without being parsed (no allocation at all),
//! claimed lengths of 2^40 and up fail instantly, and hand-made nesting 100,000 levels deep is
//! rejected without exhausting the stack.
//!
//! The server-side frames (random, mutated, and a real `ServerSession`'s stream with drops,
//! duplicates and corruption) are then fed to handshaken `ClientSession`s: no panic, the mirror
//! stays consistent (a state is active iff its tick is odd, ticks never go back), and a clean
//! `Synced` brings the mirror to exactly the worker's clock. Random and mutated client frames
//! likewise go to `ServerSession`s (open ones, and fresh ones for hostile `Hello`s).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amrpc_core::session::{
    ClientConfig, ClientOutput, ClientSession, ReplayCache, ServerConfig, ServerOutput, ServerSession,
};
use amrpc_core::wire::clock::{self, ClockUpdate, Diff, Ticks};
use amrpc_core::wire::{
    Chunk, ClientMsg, DEFAULT_MAX_FRAME, DecodeError, ErrorCode, ErrorMsg, Hello, MAX_VALUE_DEPTH, MutationReq,
    PROTOCOL_VERSION, Payload, Reply, ServerMsg, SourceMsg, StepMsg, StepSide, StreamFrom, TransitionMsg, WaitArgs,
    Welcome, WhyMsg, WireState, schema_hash,
};
use amrpc_core::{Args, Machine, MutationType, Opts, Relation, State, StepType, Value, schema};

// ---------------------------------------------------------------------------------------------
// deterministic randomness

/// xorshift64* (Vigna): small, fast, good enough to drive a fuzzer deterministically.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Random bytes, fewer than `n` of them.
    fn bytes_below(&mut self, n: usize) -> Vec<u8> {
        let len = self.below(n);
        self.bytes(len)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// valid messages of every variant

const STRS: &[&str] = &[
    "",
    "a",
    "A",
    "B",
    "Ready",
    "Exception",
    "é",
    "日本語",
    "🦀",
    "a\u{0}b",
    "with spaces and more",
];

fn gen_string(r: &mut Rng) -> String {
    if r.chance(70) {
        (*r.pick(STRS)).to_string()
    } else {
        let n = r.below(14);
        (0..n).map(|_| char::from(b'a' + r.below(26) as u8)).collect()
    }
}

fn gen_u64(r: &mut Rng) -> u64 {
    match r.below(5) {
        0 => r.below(10) as u64,
        1 => r.below(1 << 14) as u64,
        2 => r.next(),
        3 => u64::MAX,
        _ => 1 << r.below(64),
    }
}

fn gen_value(r: &mut Rng, depth: usize) -> Value {
    let kinds = if depth >= 4 { 6 } else { 8 };
    match r.below(kinds) {
        0 => Value::Null,
        1 => Value::Bool(r.chance(50)),
        2 => Value::Int(gen_u64(r) as i64),
        3 => Value::Float(f64::from_bits(r.next())),
        4 => Value::Str(gen_string(r)),
        5 => Value::Bytes(r.bytes_below(12)),
        6 => Value::List((0..r.below(4)).map(|_| gen_value(r, depth + 1)).collect()),
        _ => Value::Map(
            (0..r.below(4))
                .map(|_| (gen_string(r), gen_value(r, depth + 1)))
                .collect(),
        ),
    }
}

fn gen_args(r: &mut Rng) -> Args {
    Args((0..r.below(4)).map(|_| (gen_string(r), gen_value(r, 1))).collect())
}

fn gen_u16s(r: &mut Rng) -> Vec<u16> {
    (0..r.below(5))
        .map(|_| match r.below(20) {
            0..=11 => r.below(8) as u16,
            12..=16 => r.below(40) as u16,
            _ => r.next() as u16,
        })
        .collect()
}

fn gen_opt<T>(r: &mut Rng, f: impl FnOnce(&mut Rng) -> T) -> Option<T> {
    if r.chance(50) { Some(f(r)) } else { None }
}

fn gen_diff(r: &mut Rng) -> Diff {
    let mut out = Vec::new();
    let mut i = r.below(4) as u64;
    for _ in 0..r.below(10) {
        if i > u64::from(u16::MAX) {
            break;
        }
        let delta = match r.below(6) {
            0..=2 => 1 + r.below(3) as u64,
            3 => u64::MAX,
            _ => gen_u64(r).max(1),
        };
        out.push((i as u16, delta));
        i += 1 + if r.chance(90) {
            r.below(6) as u64
        } else {
            r.below(20_000) as u64
        };
    }
    Diff(out)
}

fn gen_update(r: &mut Rng) -> ClockUpdate {
    let ticks = if r.chance(50) {
        Ticks::Diff(gen_diff(r))
    } else {
        Ticks::Full((0..r.below(16)).map(|_| gen_u64(r)).collect())
    };
    ClockUpdate {
        seq: r.next() as u8,
        checksum: r.next() as u8,
        ticks,
    }
}

fn gen_mutation(r: &mut Rng) -> MutationReq {
    MutationReq {
        req: r.next() as u32,
        states: gen_u16s(r),
        args: gen_args(r),
    }
}

fn gen_client(r: &mut Rng, variant: usize) -> ClientMsg {
    match variant {
        0 => ClientMsg::Hello(Hello {
            version: if r.chance(50) {
                PROTOCOL_VERSION
            } else {
                r.next() as u16
            },
            client_id: gen_string(r),
            instance: gen_u64(r),
            token: gen_opt(r, gen_string),
            schema_hash: gen_opt(r, gen_u64),
            push_interval_ms: gen_opt(r, |r| r.next() as u32),
            states: gen_opt(r, |r| (0..r.below(4)).map(|_| gen_string(r)).collect()),
            shallow: r.chance(50),
            types: r.chance(50),
            stream: gen_opt(r, |r| StreamFrom {
                log: gen_u64(r),
                seq: gen_u64(r),
            }),
            all_ticks: r.chance(50),
        }),
        1 => ClientMsg::Add(gen_mutation(r)),
        2 => ClientMsg::Remove(gen_mutation(r)),
        3 => ClientMsg::Set(gen_mutation(r)),
        4 => ClientMsg::Sync { req: r.next() as u32 },
        5 => ClientMsg::Bye,
        6 => ClientMsg::WhenArgs(WaitArgs {
            req: r.next() as u32,
            state: r.next() as u16,
            args: gen_args(r),
        }),
        7 => ClientMsg::WhenQueue {
            req: r.next() as u32,
            tick: gen_u64(r),
        },
        _ => ClientMsg::Unwait { req: r.next() as u32 },
    }
}

const CODES: [ErrorCode; 16] = [
    ErrorCode::VersionMismatch,
    ErrorCode::SchemaMismatch,
    ErrorCode::AccessDenied,
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::InvalidParams,
    ErrorCode::Malformed,
    ErrorCode::TooLarge,
    ErrorCode::NotReady,
    ErrorCode::ShuttingDown,
    ErrorCode::Overloaded,
    ErrorCode::Internal,
    ErrorCode::Closed,
    ErrorCode::WorkerError,
    ErrorCode::UnknownWorker,
    ErrorCode::TooManyWaits,
];

fn gen_error(r: &mut Rng) -> ErrorMsg {
    ErrorMsg {
        req: gen_opt(r, |r| r.next() as u32),
        code: *r.pick(&CODES),
        message: gen_string(r),
    }
}

fn gen_why(r: &mut Rng) -> WhyMsg {
    match r.below(8) {
        0 => WhyMsg::Requires(r.next() as u16, r.next() as u16),
        1 => WhyMsg::Removed(r.next() as u16, r.next() as u16),
        2 => WhyMsg::Handler(gen_string(r)),
        3 => WhyMsg::Timeout(gen_string(r)),
        4 => WhyMsg::Panic(gen_string(r)),
        5 => WhyMsg::Rejected(r.next() as u16),
        6 => WhyMsg::Disposed,
        _ => WhyMsg::QueueFull,
    }
}

fn gen_reply(r: &mut Rng) -> Reply {
    Reply {
        req: r.next() as u32,
        update: gen_opt(r, gen_update),
    }
}

fn gen_server(r: &mut Rng, variant: usize) -> ServerMsg {
    match variant {
        0 => ServerMsg::Welcome(Welcome {
            version: r.next() as u16,
            worker_id: gen_string(r),
            epoch: gen_u64(r),
            names: (0..r.below(5)).map(|_| gen_string(r)).collect(),
            schema: (0..r.below(4))
                .map(|_| WireState {
                    flags: r.next() as u8,
                    require: gen_u16s(r),
                    add: gen_u16s(r),
                    remove: gen_u16s(r),
                    after: gen_u16s(r),
                    tags: (0..r.below(3)).map(|_| gen_string(r)).collect(),
                })
                .collect(),
            schema_hash: gen_u64(r),
            tracked: gen_opt(r, gen_u16s),
            worker_err: gen_opt(r, gen_string),
            push_interval_ms: r.next() as u32,
            update: gen_update(r),
            shallow: r.chance(50),
            max_waits: r.next() as u32,
            args_types: gen_opt(r, |r| {
                (0..r.below(3)).map(|_| (r.next() as u16, gen_string(r))).collect()
            }),
            log_id: gen_opt(r, gen_u64),
            replay_id: gen_u64(r),
        }),
        1 => ServerMsg::Executed(gen_reply(r)),
        2 => ServerMsg::Canceled {
            reply: gen_reply(r),
            why: gen_opt(r, gen_why),
        },
        3 => ServerMsg::Queued {
            reply: gen_reply(r),
            queue_tick: gen_u64(r),
        },
        4 => ServerMsg::Update(gen_update(r)),
        5 => ServerMsg::Synced {
            req: r.next() as u32,
            update: gen_update(r),
        },
        6 => ServerMsg::Payload(Payload {
            name: gen_string(r),
            source: gen_string(r),
            token: gen_u64(r),
            data: r.bytes_below(40),
        }),
        7 => ServerMsg::Chunk(Chunk {
            token: gen_u64(r),
            index: r.below(4) as u32,
            total: r.below(5) as u32,
            head: gen_opt(r, |r| (gen_string(r), gen_string(r))),
            len: gen_opt(r, gen_u64),
            data: r.bytes_below(40),
        }),
        8 => ServerMsg::Error(gen_error(r)),
        9 => ServerMsg::Bye(gen_error(r)),
        10 => ServerMsg::Signaled(gen_reply(r)),
        11 => ServerMsg::Dropped {
            n: gen_u64(r),
            next: gen_u64(r),
        },
        _ => ServerMsg::Transition(Box::new(gen_transition(r))),
    }
}

fn gen_side(r: &mut Rng) -> StepSide {
    match r.below(3) {
        0 => StepSide::None,
        1 => StepSide::Any,
        _ => StepSide::State(r.next() as u16),
    }
}

fn gen_transition(r: &mut Rng) -> TransitionMsg {
    const TYPES: [StepType; 7] = [
        StepType::Relation,
        StepType::Handler,
        StepType::Set,
        StepType::Remove,
        StepType::RemoveNotActive,
        StepType::Requested,
        StepType::Cancel,
    ];
    const RELS: [Relation; 4] = [Relation::After, Relation::Add, Relation::Require, Relation::Remove];
    TransitionMsg {
        seq: gen_u64(r),
        time_ms: gen_u64(r),
        ty: [MutationType::Add, MutationType::Remove, MutationType::Set][r.below(3)],
        called: gen_u16s(r),
        args: Args::new().with("k", gen_string(r)),
        args_cut: r.chance(50),
        source: match r.below(3) {
            0 => SourceMsg::Worker,
            1 => SourceMsg::Auto,
            _ => SourceMsg::Session {
                epoch: gen_u64(r),
                client: gen_string(r),
            },
        },
        accepted: r.chance(50),
        why: gen_opt(r, gen_why),
        ticks: (0..r.below(8)).map(|_| gen_u64(r)).collect(),
        steps: (0..r.below(5))
            .map(|_| StepMsg {
                ty: TYPES[r.below(7)],
                from: gen_side(r),
                to: gen_side(r),
                relation: gen_opt(r, |r| RELS[r.below(4)]),
                handler: gen_opt(r, gen_string),
            })
            .collect(),
    }
}

/// `per_variant` encoded frames of every client and every server variant.
fn valid_frames(r: &mut Rng, per_variant: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut client = Vec::new();
    let mut server = Vec::new();
    for _ in 0..per_variant {
        for v in 0..9 {
            client.push(gen_client(r, v).encode().expect("no opaque values: encodes"));
        }
        for v in 0..13 {
            server.push(gen_server(r, v).encode().expect("server messages always encode"));
        }
    }
    (client, server)
}

/// Varints that are huge (2^35-ish, 2^40, over-long) or non-canonical (`0x80 0x00` = 0).
const LONG_VARINTS: [&[u8]; 4] = [
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0x80, 0x80, 0x80, 0x80, 0x80, 0x20],
    &[0xff; 10],
    &[0x80, 0x00],
];

/// 1–3 random edits: bit flips, overwrites with random or boundary bytes, insertions,
/// deletions, a long varint, a duplicated tail.
fn mutate(r: &mut Rng, src: &[u8]) -> Vec<u8> {
    let mut v = src.to_vec();
    for _ in 0..1 + r.below(3) {
        let pos = r.below(v.len() + 1);
        match r.below(8) {
            0 | 1 if !v.is_empty() => {
                let p = pos.min(v.len() - 1);
                v[p] ^= 1 << r.below(8);
            }
            2 if !v.is_empty() => {
                let p = pos.min(v.len() - 1);
                v[p] = r.next() as u8;
            }
            3 if !v.is_empty() => {
                let p = pos.min(v.len() - 1);
                v[p] = *r.pick(&[0, 1, 2, 3, 0x7f, 0x80, 0xfe, 0xff]);
            }
            4 => v.insert(pos, r.next() as u8),
            5 if !v.is_empty() => {
                v.remove(pos.min(v.len() - 1));
            }
            6 => {
                let long = *r.pick(&LONG_VARINTS);
                v.splice(pos..pos, long.iter().copied());
            }
            _ => {
                let from = r.below(v.len() + 1);
                let tail = v[from..].to_vec();
                v.extend(tail);
            }
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// decoding checks

#[derive(Debug, Default)]
struct Tally {
    /// Byte strings fed (each to both decoders).
    inputs: usize,
    ok: usize,
    malformed: usize,
    trailing: usize,
    too_large: usize,
    /// Largest `peak bytes allocated / (frame length + 1)` seen in one decode.
    worst_alloc_ratio: f64,
    /// Largest peak allocation in one decode.
    worst_alloc: u64,
}

/// Every decode may hold at most this many bytes per input byte (plus a constant): the
/// largest wire element (`WireState`, 128 bytes in memory) is preallocated by serde from a
/// length that postcard first checks against the bytes left.
const ALLOC_PER_BYTE: u64 = 160;
const ALLOC_CONST: u64 = 4096;

fn alloc_bound(len: usize) -> u64 {
    ALLOC_PER_BYTE * len as u64 + ALLOC_CONST
}

fn decode_measured<T>(f: impl FnOnce() -> T, len: usize, tally: &mut Tally) -> T {
    let mut out = None;
    let info = allocation_counter::measure(|| out = Some(f()));
    assert!(
        info.bytes_max <= alloc_bound(len),
        "decoding {len} bytes held {} bytes at once",
        info.bytes_max
    );
    tally.worst_alloc = tally.worst_alloc.max(info.bytes_max);
    tally.worst_alloc_ratio = tally.worst_alloc_ratio.max(info.bytes_max as f64 / (len + 1) as f64);
    out.expect("ran")
}

fn check_err(e: &DecodeError, bytes: &[u8], max: usize, tally: &mut Tally) {
    match e {
        DecodeError::Malformed(s) => {
            assert!(!s.is_empty(), "Malformed without a reason");
            tally.malformed += 1;
        }
        DecodeError::Trailing(n) => {
            assert!(*n > 0 && *n < bytes.len(), "Trailing({n}) for {} bytes", bytes.len());
            tally.trailing += 1;
        }
        DecodeError::TooLarge { len, max: m } => {
            assert_eq!((*len, *m), (bytes.len(), max));
            assert!(bytes.len() > max, "TooLarge under the limit");
            tally.too_large += 1;
        }
    }
}

/// Decode with both decoders; `Ok` results must re-encode stably. Returns the decodes.
fn feed(
    bytes: &[u8],
    max: usize,
    tally: &mut Tally,
) -> (Result<ClientMsg, DecodeError>, Result<ServerMsg, DecodeError>) {
    tally.inputs += 1;
    let c = decode_measured(|| ClientMsg::decode(bytes, max), bytes.len(), tally);
    match &c {
        Ok(m) => {
            tally.ok += 1;
            let re = m.encode().expect("a decoded client message re-encodes");
            let again = ClientMsg::decode(&re, usize::MAX).expect("its encoding decodes");
            assert_eq!(again.encode().unwrap(), re, "re-encoding is stable");
        }
        Err(e) => check_err(e, bytes, max, tally),
    }
    let s = decode_measured(|| ServerMsg::decode(bytes, max), bytes.len(), tally);
    match &s {
        Ok(m) => {
            tally.ok += 1;
            let re = m.encode().expect("a decoded server message re-encodes");
            let again = ServerMsg::decode(&re, usize::MAX).expect("its encoding decodes");
            assert_eq!(again.encode().unwrap(), re, "re-encoding is stable");
        }
        Err(e) => check_err(e, bytes, max, tally),
    }
    (c, s)
}

/// Every input source of the decoder fuzz, in a fixed order: random strings, truncations,
/// mutations. `f(bytes, kind)` sees each; kind 0 = random, 1 = truncated client frame,
/// 2 = truncated server frame, 3 = mutated.
fn for_each_input(seed: u64, mut f: impl FnMut(&[u8], usize)) {
    let mut r = Rng::new(seed);
    let (client, server) = valid_frames(&mut r, 40);
    // random byte strings, half of them starting with a valid variant index to get deeper
    for i in 0..80_000 {
        let len = r.below(301);
        let mut b = r.bytes(len);
        if i % 2 == 0 && !b.is_empty() {
            b[0] = r.below(10) as u8;
        }
        f(&b, 0);
    }
    // every truncation of every valid frame
    for frame in &client {
        for n in 0..frame.len() {
            f(&frame[..n], 1);
        }
    }
    for frame in &server {
        for n in 0..frame.len() {
            f(&frame[..n], 2);
        }
    }
    // valid frames with edits
    for _ in 0..80 {
        for frame in client.iter().chain(&server) {
            let m = mutate(&mut r, frame);
            f(&m, 3);
        }
    }
}

#[test]
fn decoders_survive_random_truncated_and_mutated_frames() {
    let start = Instant::now();
    let mut tally = Tally::default();
    let mut truncations = 0;
    let mut mutated_ok = 0;
    for_each_input(0xA5A5_0003, |bytes, kind| {
        let (c, s) = feed(bytes, DEFAULT_MAX_FRAME, &mut tally);
        match kind {
            1 => {
                truncations += 1;
                assert!(
                    matches!(c, Err(DecodeError::Malformed(_))),
                    "truncated client frame {bytes:02x?} gave {c:?}"
                );
            }
            2 => {
                truncations += 1;
                assert!(
                    matches!(s, Err(DecodeError::Malformed(_))),
                    "truncated server frame {bytes:02x?} gave {s:?}"
                );
            }
            3 => mutated_ok += usize::from(c.is_ok()) + usize::from(s.is_ok()),
            _ => {}
        }
    });
    eprintln!(
        "decoder fuzz: {tally:?}; {truncations} truncations; {mutated_ok} mutated frames decoded Ok; {:?}",
        start.elapsed()
    );
    assert!(tally.inputs >= 100_000, "only {} inputs", tally.inputs);
    assert!(truncations >= 10_000, "only {truncations} truncations");
    // the mix reaches both outcomes (a fuzzer that only ever sees errors tests little)
    assert!(tally.ok > 1000 && mutated_ok > 1000, "{tally:?}, {mutated_ok}");
    assert!(tally.malformed > 50_000 && tally.trailing > 1000, "{tally:?}");
}

#[test]
fn frames_over_the_limit_are_too_large_without_being_parsed() {
    let mut r = Rng::new(7);
    let (client, server) = valid_frames(&mut r, 10);
    for frame in client.iter().chain(&server) {
        let len = frame.len();
        for max in [0, len / 2, len - 1] {
            let want = Err(DecodeError::TooLarge { len, max });
            assert_eq!(ClientMsg::decode(frame, max).map(|_| ()), want.clone());
            assert_eq!(ServerMsg::decode(frame, max).map(|_| ()), want);
        }
        // at the limit it is parsed
        assert!(ClientMsg::decode(frame, len).is_ok() || ServerMsg::decode(frame, len).is_ok());
    }
    // garbage that would be Malformed, and a huge frame: TooLarge, with no allocation at all
    // (a parse would at least allocate the Malformed message)
    let garbage = vec![0xff; 300];
    assert!(matches!(
        ClientMsg::decode(&garbage, 1000),
        Err(DecodeError::Malformed(_))
    ));
    let huge = vec![0u8; 8 * DEFAULT_MAX_FRAME];
    for bytes in [&garbage[..], &huge[..]] {
        let max = if bytes.len() == 300 { 299 } else { DEFAULT_MAX_FRAME };
        let start = Instant::now();
        let mut too_large = 0;
        let info = allocation_counter::measure(|| {
            for _ in 0..1000 {
                too_large += usize::from(matches!(
                    ClientMsg::decode(bytes, max),
                    Err(DecodeError::TooLarge { .. })
                ));
                too_large += usize::from(matches!(
                    ServerMsg::decode(bytes, max),
                    Err(DecodeError::TooLarge { .. })
                ));
            }
        });
        assert_eq!(too_large, 2000);
        let want = DecodeError::TooLarge { len: bytes.len(), max };
        assert_eq!(ClientMsg::decode(bytes, max), Err(want.clone()));
        assert_eq!(ServerMsg::decode(bytes, max), Err(want));
        assert_eq!(info.count_total, 0, "the limit is checked before any parsing: {info:?}");
        assert!(start.elapsed() < Duration::from_millis(500), "{:?}", start.elapsed());
    }
}

/// LEB128 varint, postcard's integer and length encoding.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn huge_claimed_lengths_fail_fast_without_big_allocations() {
    let start = Instant::now();
    let mut tally = Tally::default();
    let tail: &[u8] = &[1, 2, 3];
    for claim in [1u64 << 40, u64::MAX, 1 << 32, 1 << 20, u64::from(u32::MAX), 4, 300] {
        let n = varint(claim);
        let n = &n[..];
        let hello_prefix: &[u8] = &[0, 1, 0, 0, 0, 0, 0]; // Hello v1, "", instance 0, None × 3
        let frames: Vec<(&str, Vec<u8>)> = vec![
            // client frames
            ("Hello.client_id", cat(&[&[0, 1], n, tail])),
            ("Hello.token", cat(&[&[0, 1, 0, 0, 1], n, tail])),
            ("Hello.states", cat(&[hello_prefix, &[1], n, tail])),
            ("Hello.states[0]", cat(&[hello_prefix, &[1, 1], n, tail])),
            ("Add.states", cat(&[&[1, 0], n, tail])),
            ("Remove.args", cat(&[&[2, 0, 0], n, tail])),
            ("Set.args key", cat(&[&[3, 0, 0, 1], n, tail])),
            ("Add.args List", cat(&[&[1, 0, 0, 1, 1, b'k', 6], n, tail])),
            ("Add.args Map", cat(&[&[1, 0, 0, 1, 1, b'k', 7], n, tail])),
            ("Add.args Str", cat(&[&[1, 0, 0, 1, 1, b'k', 4], n, tail])),
            ("Add.args Bytes", cat(&[&[1, 0, 0, 1, 1, b'k', 5], n, tail])),
            ("Add.args nested List", cat(&[&[1, 0, 0, 1, 1, b'k', 6, 1, 6], n, tail])),
            // server frames
            ("Welcome.worker_id", cat(&[&[0, 1], n, tail])),
            ("Welcome.names", cat(&[&[0, 1, 0, 0], n, tail])),
            ("Welcome.schema", cat(&[&[0, 1, 0, 0, 0], n, tail])),
            ("Welcome.schema[0].require", cat(&[&[0, 1, 0, 0, 0, 1, 0], n, tail])),
            (
                "Welcome.schema[0].tags",
                cat(&[&[0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0], n, tail]),
            ),
            ("Welcome.tracked", cat(&[&[0, 1, 0, 0, 0, 0, 0, 1], n, tail])),
            ("Update.Full", cat(&[&[4, 0, 0, 1], n, tail])),
            ("Update.Diff", cat(&[&[4, 0, 0, 0], n, tail])),
            ("Executed.update.Full", cat(&[&[1, 0, 1, 0, 0, 1], n, tail])),
            ("Synced.update.Full", cat(&[&[5, 0, 0, 0, 1], n, tail])),
            ("Payload.name", cat(&[&[6], n, tail])),
            ("Payload.data", cat(&[&[6, 0, 0, 0], n, tail])),
            ("Chunk.head.0", cat(&[&[7, 0, 0, 1, 1], n, tail])),
            ("Chunk.data", cat(&[&[7, 0, 0, 1, 0, 0], n, tail])),
            ("Error.message", cat(&[&[8, 0, 0], n, tail])),
            ("Bye.message", cat(&[&[9, 1, 5, 0], n, tail])),
        ];
        for (what, bytes) in frames {
            let (c, s) = feed(&bytes, DEFAULT_MAX_FRAME, &mut tally);
            // the frame is always short of what it claims: an error for the decoder it targets
            assert!(c.is_err() || s.is_err(), "{what} with length {claim}: {c:?} / {s:?}");
            let target = if what.starts_with(['H', 'A', 'R', 'S']) && !what.starts_with("Synced") {
                c.map(|_| ())
            } else {
                s.map(|_| ())
            };
            assert!(
                matches!(target, Err(DecodeError::Malformed(_))),
                "{what} with length {claim}: {target:?}"
            );
        }
    }
    // an over-long varint (11 bytes) as a length
    let long = [
        1u8, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1,
    ];
    let (c, _) = feed(&long, DEFAULT_MAX_FRAME, &mut tally);
    assert!(matches!(c, Err(DecodeError::Malformed(_))));
    eprintln!("huge lengths: {tally:?} in {:?}", start.elapsed());
    assert!(tally.worst_alloc < 64 * 1024, "{tally:?}");
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
}

/// Hand-made bytes (the encoder and `Drop` would recurse too): `Add` with `args = {"k": v}`
/// where `v` is `levels` nested one-element lists (or maps) around `Null`.
fn deep_args_frame(levels: usize, maps: bool) -> Vec<u8> {
    let mut b = vec![1, 0, 0, 1, 1, b'k']; // Add, req 0, no states, 1 arg, key "k"
    for _ in 0..levels {
        if maps {
            b.extend([7, 1, 1, b'k']); // Map of 1: key "k"
        } else {
            b.extend([6, 1]); // List of 1
        }
    }
    b.push(0); // Null
    b
}

#[test]
fn deep_nesting_is_rejected_without_exhausting_the_stack() {
    // a value's depth counts the innermost scalar: `levels` containers + 1
    for maps in [false, true] {
        let ok = deep_args_frame(MAX_VALUE_DEPTH - 1, maps);
        assert!(ClientMsg::decode(&ok, DEFAULT_MAX_FRAME).is_ok());
        for levels in [MAX_VALUE_DEPTH, MAX_VALUE_DEPTH + 1, 1000, 100_000] {
            let bytes = deep_args_frame(levels, maps);
            let start = Instant::now();
            let got = ClientMsg::decode(&bytes, DEFAULT_MAX_FRAME);
            assert!(
                matches!(got, Err(DecodeError::Malformed(_))),
                "{levels} levels: {got:?}"
            );
            assert!(start.elapsed() < Duration::from_millis(500));
            // every truncation too
            if levels == MAX_VALUE_DEPTH {
                for n in 0..bytes.len() {
                    assert!(ClientMsg::decode(&bytes[..n], DEFAULT_MAX_FRAME).is_err());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the client session under hostile server frames

fn worker() -> Machine {
    let w = Machine::new(
        schema([
            ("A", State::new()),
            ("B", State::new().multi()),
            ("C", State::new().require(&["A"])),
            ("D", State::new().add(&["B"])),
            ("E", State::new().remove(&["A"])),
        ]),
        Opts::default(),
    )
    .unwrap();
    w.verify_states(&["A", "B", "C", "D", "E", "Exception"]).unwrap();
    w
}

/// A `ServerSession` and a `ClientSession` that completed the handshake (via real frames).
struct Pair {
    srv: ServerSession,
    cli: ClientSession,
    /// The mirror's clock as last checked.
    seen: Vec<u64>,
}

fn connect(worker: &Machine, replay: &Arc<ReplayCache>, instance: u64, now: u64) -> Pair {
    let cfg = ServerConfig {
        chunk_size: 8,
        epoch: instance,
        ..ServerConfig::default()
    };
    let mut srv = ServerSession::new(worker, cfg, replay.clone());
    let mut cli = ClientSession::new(ClientConfig {
        instance,
        max_payload: 4096,
        ..ClientConfig::default()
    });
    let hello = cli.hello();
    let mut ready = false;
    for o in srv.handle_frame(&hello, now, worker) {
        if let ServerOutput::Send(b) = o {
            ready |= cli.handle_frame(&b).contains(&ClientOutput::Ready);
        }
    }
    assert!(ready, "handshake");
    let seen = cli.mirror().unwrap().time(None);
    assert_eq!(seen, worker.time(None));
    Pair { srv, cli, seen }
}

/// The mirror's invariants: one tick per name, active iff odd, ticks never go back.
fn check_mirror(cli: &ClientSession, seen: &mut Vec<u64>) {
    let Some(m) = cli.mirror() else { return };
    let names = cli.names();
    let t = m.time(None);
    assert_eq!(t.len(), names.len());
    let mut odd = BTreeSet::new();
    for (i, n) in names.iter().enumerate() {
        assert_eq!(m.is1(n), t[i] % 2 == 1, "{n} at tick {}", t[i]);
        if t[i] % 2 == 1 {
            odd.insert(n.clone());
        }
    }
    let active: BTreeSet<String> = m.active_states().into_iter().collect();
    assert_eq!(active, odd);
    if seen.len() == t.len() {
        assert!(
            t.iter().zip(seen.iter()).all(|(a, b)| a >= b),
            "mirror went back: {seen:?} -> {t:?}"
        );
    }
    *seen = t;
}

#[derive(Debug, Default)]
struct SessionStats {
    frames: usize,
    sessions: usize,
    closed: BTreeMap<String, usize>,
    synced: usize,
    synced_checked: usize,
    replies: usize,
    payloads: usize,
    chunk_errors: usize,
    resync_requests: usize,
}

fn note_close(stats: &mut SessionStats, code: ErrorCode) {
    *stats.closed.entry(format!("{code:?}")).or_default() += 1;
}

/// The random and mutated server frames of the decoder fuzz that decode as a `ServerMsg`,
/// each fed to a handshaken client session (frames that do not decode only close a session).
#[test]
fn client_session_survives_random_and_mutated_server_frames() {
    let w = worker();
    w.add(&["A", "B"], None);
    let replay = Arc::new(ReplayCache::new(64));
    let mut stats = SessionStats::default();
    let mut instance = 1;
    let mut pair = connect(&w, &replay, instance, 0);
    let mut undecodable = 0usize;
    for_each_input(0xA5A5_0003, |bytes, kind| {
        if kind == 1 {
            return; // truncated client frames
        }
        if ServerMsg::decode(bytes, DEFAULT_MAX_FRAME).is_err() {
            undecodable += 1;
            // feed one in 64: it closes the session with Malformed, nothing more to see
            if undecodable % 64 != 0 {
                return;
            }
        }
        stats.frames += 1;
        let out = pair.cli.handle_frame(bytes);
        check_mirror(&pair.cli, &mut pair.seen);
        let mut closed = false;
        for o in &out {
            match o {
                // a goodbye ends this connection whether or not its code is final
                ClientOutput::Closed(e) | ClientOutput::Disconnected(e) => {
                    closed = true;
                    note_close(&mut stats, e.code());
                }
                ClientOutput::Send(b) => {
                    assert!(
                        ClientMsg::decode(b, DEFAULT_MAX_FRAME).is_ok(),
                        "client sends valid frames"
                    );
                    stats.resync_requests += 1;
                }
                ClientOutput::Payload(p) => {
                    assert!(p.data.len() <= 4096);
                    stats.payloads += 1;
                }
                ClientOutput::Error(_) => stats.chunk_errors += 1,
                _ => {}
            }
        }
        if closed {
            assert!(!pair.cli.is_ready());
            instance += 1;
            stats.sessions += 1;
            pair = connect(&w, &replay, instance, 0);
        }
    });
    eprintln!("random/mutated server frames to sessions: {stats:?}");
    assert!(stats.frames > 3000 && stats.sessions > 100, "{stats:?}");
}

/// A real server stream (worker transitions, pushes, mutation replies, chunked payloads,
/// resyncs) delivered with drops, duplicates, corruption and injected garbage.
#[test]
fn client_session_survives_a_hostile_server_stream() {
    let start = Instant::now();
    let w = worker();
    let names = ["A", "B", "C", "D", "E"];
    let replay = Arc::new(ReplayCache::new(1024));
    let mut r = Rng::new(0x5E55_1011);
    let (_, garbage_pool) = valid_frames(&mut r, 4);
    let mut stats = SessionStats::default();
    let mut instance = 1;
    let mut now = 0u64;
    let mut pair = connect(&w, &replay, instance, now);
    // frames in flight, with a flag for injected garbage
    let mut queue: VecDeque<(Vec<u8>, bool)> = VecDeque::new();
    // whether the session accepted a hostile frame that decodes (then it may rightly diverge)
    let mut tainted = false;
    for step in 0..12_000 {
        now += 1 + r.below(30) as u64;
        // the world moves
        match r.below(10) {
            0..=3 => {
                let s = *r.pick(&names);
                if r.chance(60) {
                    w.add1(s, None);
                } else {
                    w.remove1(s, None);
                }
                pair.srv.worker_changed();
            }
            4 | 5 => {
                let s = *r.pick(&names);
                let ty = *r.pick(&[MutationType::Add, MutationType::Remove, MutationType::Set]);
                let args = Args::new().with("step", step as i64);
                if let Ok((_, f)) = pair.cli.mutate(ty, &[s], Some(args), now) {
                    let out = pair.srv.handle_frame(&f, now, &w);
                    queue.extend(sends(out).map(clean));
                }
            }
            6 => {
                let data = r.bytes_below(40);
                queue.extend(sends(pair.srv.payload("blob", "worker", &data)).map(clean));
            }
            7 => {
                // injected garbage: a random valid-but-unrelated frame, maybe mutated
                let g = r.pick(&garbage_pool).clone();
                queue.push_back((if r.chance(50) { mutate(&mut r, &g) } else { g }, true));
            }
            _ => {}
        }
        queue.extend(sends(pair.srv.poll(now, &w)).map(clean));

        // delivery with faults
        let mut closed = None;
        while let Some((mut frame, garbage)) = queue.pop_front() {
            let fault = r.below(100);
            if fault < 4 {
                continue; // dropped
            }
            if fault < 8 {
                queue.push_front((frame.clone(), garbage)); // duplicated
            }
            let mutated = (8..15).contains(&fault);
            if mutated {
                frame = mutate(&mut r, &frame);
            }
            let hostile = garbage || mutated;
            tainted |= hostile && ServerMsg::decode(&frame, DEFAULT_MAX_FRAME).is_ok();
            stats.frames += 1;
            let out = pair.cli.handle_frame(&frame);
            check_mirror(&pair.cli, &mut pair.seen);
            for o in out {
                match o {
                    ClientOutput::Send(b) => {
                        stats.resync_requests += 1;
                        let out = pair.srv.handle_frame(&b, now, &w);
                        queue.extend(sends(out).map(clean));
                    }
                    ClientOutput::Synced => {
                        stats.synced += 1;
                        if !mutated {
                            // a clean Synced: the mirror holds exactly the clock it carried
                            let Ok(ServerMsg::Synced { update, .. }) = ServerMsg::decode(&frame, DEFAULT_MAX_FRAME)
                            else {
                                panic!("Synced output without a Synced frame");
                            };
                            let Ticks::Full(t) = update.ticks else {
                                panic!("Synced without a full clock")
                            };
                            assert_eq!(pair.cli.mirror().unwrap().time(None), t);
                            stats.synced_checked += 1;
                        }
                    }
                    ClientOutput::Reply { .. } => stats.replies += 1,
                    ClientOutput::Payload(p) => {
                        stats.payloads += 1;
                        assert!(p.data.len() <= 4096);
                    }
                    ClientOutput::Error(_) => stats.chunk_errors += 1,
                    ClientOutput::Closed(e) | ClientOutput::Disconnected(e) => {
                        // a session fed only clean (if dropped or duplicated) frames never fails
                        assert!(hostile || tainted, "clean stream closed: {e:?}");
                        closed = Some(e.code());
                    }
                    ClientOutput::Ready
                    | ClientOutput::Changed
                    | ClientOutput::Transition(_)
                    | ClientOutput::Dropped { .. } => {}
                }
            }
            if closed.is_some() {
                break;
            }
        }
        if let Some(code) = closed {
            note_close(&mut stats, code);
            queue.clear();
            tainted = false;
            instance += 1;
            stats.sessions += 1;
            pair = connect(&w, &replay, instance, now);
        }
    }
    eprintln!("hostile server stream: {stats:?} in {:?}", start.elapsed());
    assert!(stats.sessions > 50, "{stats:?}");
    assert!(
        stats.synced_checked > 50 && stats.replies > 200 && stats.payloads > 50,
        "{stats:?}"
    );
}

fn clean(frame: Vec<u8>) -> (Vec<u8>, bool) {
    (frame, false)
}

fn sends(out: Vec<ServerOutput>) -> impl Iterator<Item = Vec<u8>> {
    out.into_iter().filter_map(|o| match o {
        ServerOutput::Send(b) => Some(b),
        _ => None,
    })
}

/// Welcomes with random schemas (duplicate and empty names, `Exception`, out-of-range and
/// cyclic relations, unknown flags) and a correct schema hash, so they reach `Machine::new`,
/// fed to fresh sessions; mutated real Welcomes likewise. Either `Ready` with a consistent
/// mirror or `Closed` — never a panic.
#[test]
fn hostile_welcomes_never_panic() {
    let w = worker();
    w.add(&["A", "D"], None);
    let replay = Arc::new(ReplayCache::new(8));
    let real = {
        let mut srv = ServerSession::new(&w, ServerConfig::default(), replay);
        let mut cli = ClientSession::new(ClientConfig::default());
        let out = srv.handle_frame(&cli.hello(), 0, &w);
        sends(out).next().expect("Welcome")
    };
    let mut r = Rng::new(0x003E_1C0E);
    let pool = ["A", "B", "C", "D", "", "é", "x y"];
    let (mut ready, mut closed) = (0, 0);
    for i in 0..2500 {
        let frame = if i % 2 == 0 {
            mutate(&mut r, &real)
        } else {
            // mostly distinct names with `Exception` somewhere; sometimes a duplicate or no `Exception`
            let mut names: Vec<String> = Vec::new();
            for _ in 0..r.below(7) {
                let name = (*r.pick(&pool)).to_string();
                if !names.contains(&name) || r.chance(5) {
                    names.push(name);
                }
            }
            if r.chance(90) {
                let at = r.below(names.len() + 1);
                names.insert(at, "Exception".into());
            }
            let n = names.len();
            // a third of the schemas are hostile: relations out of range, unknown flags, lengths
            let sane = r.chance(66);
            // relations to states below `limit` (sane Require: earlier states only, so no cycles)
            let rel = |r: &mut Rng, limit: usize| -> Vec<u16> {
                let limit = if sane { limit } else { n + 3 };
                if limit == 0 {
                    return vec![];
                }
                (0..r.below(3)).map(|_| r.below(limit) as u16).collect()
            };
            let schema: Vec<WireState> = (0..if sane || r.chance(80) { n } else { r.below(7) })
                .map(|i| WireState {
                    flags: if sane || r.chance(80) {
                        r.below(4) as u8
                    } else {
                        r.next() as u8
                    },
                    require: rel(&mut r, i),
                    add: rel(&mut r, n),
                    remove: rel(&mut r, n),
                    after: rel(&mut r, n),
                    tags: vec![],
                })
                .collect();
            let time: Vec<u64> = (0..if sane || r.chance(80) { n } else { r.below(7) })
                .map(|_| gen_u64(&mut r))
                .collect();
            ServerMsg::Welcome(Welcome {
                version: if r.chance(95) {
                    PROTOCOL_VERSION
                } else {
                    r.next() as u16
                },
                worker_id: gen_string(&mut r),
                epoch: r.next(),
                schema_hash: schema_hash(&names, &schema),
                names,
                schema,
                tracked: None,
                push_interval_ms: 16,
                worker_err: None,
                shallow: false,
                max_waits: r.below(100) as u32,
                args_types: None,
                log_id: None,
                replay_id: 0,
                update: ClockUpdate {
                    seq: 0,
                    checksum: clock::checksum(&time),
                    ticks: Ticks::Full(time),
                },
            })
            .encode()
            .unwrap()
        };
        let mut cli = ClientSession::new(ClientConfig::default());
        let _ = cli.hello();
        let out = cli.handle_frame(&frame);
        let mut seen = Vec::new();
        check_mirror(&cli, &mut seen);
        if out.contains(&ClientOutput::Ready) {
            ready += 1;
            assert!(cli.is_ready());
            // and a hostile follow-up on the fresh mirror
            let follow = mutate(&mut r, &frame);
            let _ = cli.handle_frame(&follow);
            check_mirror(&cli, &mut seen);
        } else {
            closed += 1;
            assert!(matches!(out.as_slice(), [ClientOutput::Closed(_)]), "{out:?}");
        }
    }
    eprintln!("hostile welcomes: {ready} ready, {closed} closed");
    assert!(ready > 100 && closed > 100, "{ready} / {closed}");
}

/// The decoder fuzz's random, truncated and mutated frames fed to `ServerSession`s: open ones
/// (mutations run on the worker) and, for frames that start like a `Hello`, fresh ones. Never
/// a panic, and every frame the server sends decodes.
#[test]
fn server_session_survives_random_and_mutated_client_frames() {
    let w = worker();
    let replay = Arc::new(ReplayCache::new(256));
    let hello = ClientSession::new(ClientConfig::default()).hello();
    let open = |epoch: u64| {
        let cfg = ServerConfig {
            epoch,
            ..ServerConfig::default()
        };
        let mut srv = ServerSession::new(&w, cfg, replay.clone());
        let out = srv.handle_frame(&hello, 0, &w);
        assert!(srv.is_open(), "{out:?}");
        srv
    };
    let check_out = |out: &[ServerOutput]| {
        for o in out {
            if let ServerOutput::Send(b) = o {
                assert!(ServerMsg::decode(b, DEFAULT_MAX_FRAME).is_ok(), "server sent {b:02x?}");
            }
        }
    };
    let mut epoch = 1;
    let mut srv = open(epoch);
    let (mut frames, mut sessions, mut mutations, mut handshakes) = (0usize, 0usize, 0usize, 0usize);
    let mut now = 0;
    let mut undecodable = 0usize;
    for_each_input(0x5E4E_0003, |bytes, kind| {
        if kind == 2 {
            return; // truncated server frames
        }
        if ClientMsg::decode(bytes, DEFAULT_MAX_FRAME).is_err() {
            undecodable += 1;
            // feed one in 64: it closes the session with Malformed, nothing more to see
            if undecodable % 64 != 0 {
                return;
            }
        }
        now += 1;
        frames += 1;
        let out = srv.handle_frame(bytes, now, &w);
        // mutations that ran: their replies
        mutations += out
            .iter()
            .filter(|o| {
                matches!(o, ServerOutput::Send(b) if matches!(
                    ServerMsg::decode(b, DEFAULT_MAX_FRAME),
                    Ok(ServerMsg::Executed(_) | ServerMsg::Canceled { .. } | ServerMsg::Queued { .. })
                ))
            })
            .count();
        check_out(&out);
        check_out(&srv.poll(now, &w));
        if !srv.is_open() {
            sessions += 1;
            epoch += 1;
            srv = open(epoch);
        }
        if bytes.first() == Some(&0) && kind == 3 {
            let mut fresh = ServerSession::new(&w, ServerConfig::default(), replay.clone());
            let out = fresh.handle_frame(bytes, now, &w);
            check_out(&out);
            handshakes += usize::from(fresh.is_open());
        }
    });
    eprintln!(
        "client frames to servers: {frames} frames, {sessions} sessions, {mutations} mutations, {handshakes} hostile Hellos accepted"
    );
    assert!(mutations > 200 && handshakes > 10, "{mutations} / {handshakes}");
}

/// A hostile `Update` carrying a full clock that lowers ticks is refused (`clock::apply`
/// returns `Backwards`): the session closes with `Malformed` and the mirror keeps its clock.
#[test]
fn a_full_update_that_lowers_ticks_closes_the_session() {
    let w = worker();
    w.add(&["A", "B", "D"], None);
    let replay = Arc::new(ReplayCache::new(8));
    let mut pair = connect(&w, &replay, 1, 0);
    let before = pair.cli.mirror().unwrap().time(None);
    assert!(before.iter().any(|t| *t > 0));
    let lower = vec![0; before.len()];
    let frame = ServerMsg::Update(ClockUpdate {
        seq: 1,
        checksum: clock::checksum(&lower),
        ticks: Ticks::Full(lower),
    })
    .encode()
    .unwrap();
    let out = pair.cli.handle_frame(&frame);
    assert!(
        matches!(out.as_slice(), [ClientOutput::Closed(e)] if e.code() == ErrorCode::Malformed),
        "{out:?}"
    );
    check_mirror(&pair.cli, &mut pair.seen);
    assert_eq!(pair.cli.mirror().unwrap().time(None), before);
}
