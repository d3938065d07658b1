//! What the fuzz targets check, shared with the corpus generator (`examples/gen_corpus.rs`).
//!
//! * [`check_client`] / [`check_server`]: decoding never panics; an `Ok` message re-encodes, the
//!   re-encoding decodes and encodes to the same bytes (byte comparison, so NaN floats are fine);
//!   an error under the limit is never `TooLarge`, and the same bytes with a limit one byte
//!   smaller are `TooLarge`.
//! * [`check_clock`]: `clock::apply` on an arbitrary clock and update; on `Err` the clock is
//!   unchanged and the error is the one a reference model predicts; on `Ok` the clock is the
//!   model's, it has the update's checksum, and a diff never lowered a tick (with the
//!   `strict-full` feature, a full clock must not lower one either).
//!
//! `apply_clock` inputs ([`parse_clock_case`], written by [`clock_case_bytes`]):
//!
//! ```text
//! byte 0       clock length n = byte % 48
//! n ticks      each: b < 0xf0 → b; 0xf0..=0xfe → u64::MAX - (b - 0xf0); 0xff → 8 bytes LE
//! 1 byte       bit 0 set: use the checksum a successful apply would give (reaches the Ok path)
//! rest         a ClockUpdate in postcard (the body of a ServerMsg::Update frame, decoded with
//!              the real decoder); if it does not decode, read raw: first byte even → a Diff of
//!              (u16 LE index, tick) pairs as they come (indexes may repeat or go down, deltas
//!              may be 0 — `Diff`'s field is public, so `apply` must cope), odd → a Full clock
//!              of ticks; the checksum is the last byte
//! ```

use amrpc_core::wire::clock::{self, ClockError, ClockUpdate, Diff, Ticks};
use amrpc_core::wire::{ClientMsg, DEFAULT_MAX_FRAME, DecodeError, ServerMsg};

fn check_err(e: &DecodeError, data: &[u8]) {
    match e {
        DecodeError::TooLarge { .. } => panic!("TooLarge for {} bytes under the limit", data.len()),
        DecodeError::Trailing(n) => assert!(*n > 0 && *n < data.len(), "Trailing({n}) of {}", data.len()),
        DecodeError::Malformed(s) => assert!(!s.is_empty()),
    }
}

fn check_limit<T: core::fmt::Debug>(data: &[u8], decode: impl Fn(&[u8], usize) -> Result<T, DecodeError>) {
    if let Some(max) = data.len().checked_sub(1) {
        match decode(data, max) {
            Err(DecodeError::TooLarge { len, max: m }) => assert_eq!((len, m), (data.len(), max)),
            other => panic!("{} bytes over a limit of {max}: {other:?}", data.len()),
        }
    }
}

/// The `decode_client` target.
pub fn check_client(data: &[u8]) {
    if data.len() > DEFAULT_MAX_FRAME {
        return;
    }
    match ClientMsg::decode(data, DEFAULT_MAX_FRAME) {
        Ok(m) => {
            let bytes = m.encode().expect("a decoded client message re-encodes");
            let again = ClientMsg::decode(&bytes, usize::MAX).expect("the re-encoding decodes");
            assert_eq!(again.encode().expect("re-encodes"), bytes, "re-encoding is stable");
        }
        Err(e) => check_err(&e, data),
    }
    check_limit(data, ClientMsg::decode);
}

/// The `decode_server` target.
pub fn check_server(data: &[u8]) {
    if data.len() > DEFAULT_MAX_FRAME {
        return;
    }
    match ServerMsg::decode(data, DEFAULT_MAX_FRAME) {
        Ok(m) => {
            let bytes = m.encode().expect("a decoded server message re-encodes");
            let again = ServerMsg::decode(&bytes, usize::MAX).expect("the re-encoding decodes");
            assert_eq!(again.encode().expect("re-encodes"), bytes, "re-encoding is stable");
        }
        Err(e) => check_err(&e, data),
    }
    check_limit(data, ServerMsg::decode);
}

/// One `apply_clock` case.
#[derive(Clone, Debug)]
pub struct ClockCase {
    /// The receiver's clock.
    pub time: Vec<u64>,
    /// The update.
    pub ticks: Ticks,
    /// The expected checksum passed to `apply`.
    pub checksum: u8,
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn tick(&mut self) -> u64 {
        match self.u8() {
            b @ 0..=0xef => u64::from(b),
            b @ 0xf0..=0xfe => u64::MAX - u64::from(b - 0xf0),
            0xff => {
                let mut le = [0u8; 8];
                for x in &mut le {
                    *x = self.u8();
                }
                u64::from_le_bytes(le)
            }
        }
    }
}

fn write_tick(out: &mut Vec<u8>, t: u64) {
    if t < 0xf0 {
        out.push(t as u8);
    } else if t >= u64::MAX - 14 {
        out.push(0xf0 + (u64::MAX - t) as u8);
    } else {
        out.push(0xff);
        out.extend(t.to_le_bytes());
    }
}

/// The clock after a successful apply (ignoring the checksum), or `None` if `apply` must fail.
pub fn model_apply(time: &[u64], ticks: &Ticks) -> Option<Vec<u64>> {
    match ticks {
        // ticks only grow: a full clock that lowers one is refused
        Ticks::Full(t) => (t.len() == time.len() && t.iter().zip(time).all(|(n, o)| n >= o)).then(|| t.clone()),
        Ticks::Diff(d) => {
            let mut next = time.to_vec();
            for (i, delta) in &d.0 {
                let slot = next.get_mut(*i as usize)?;
                *slot = slot.checked_add(*delta)?;
            }
            Some(next)
        }
    }
}

/// Reads an `apply_clock` input (any bytes are a case).
pub fn parse_clock_case(data: &[u8]) -> ClockCase {
    let mut r = Reader(data);
    let n = usize::from(r.u8() % 48);
    let time: Vec<u64> = (0..n).map(|_| r.tick()).collect();
    let fix = r.u8() & 1 == 1;
    let rest = r.0;
    let mut frame = Vec::with_capacity(rest.len() + 1);
    frame.push(4); // ServerMsg::Update
    frame.extend_from_slice(rest);
    let (ticks, mut checksum) = match ServerMsg::decode(&frame, DEFAULT_MAX_FRAME) {
        Ok(ServerMsg::Update(u)) => (u.ticks, u.checksum),
        _ => {
            let checksum = rest.last().copied().unwrap_or(0);
            let body = &rest[..rest.len().saturating_sub(1)];
            let mut r = Reader(body);
            let full = r.u8() & 1 == 1;
            let mut items = Vec::new();
            if full {
                while !r.0.is_empty() && items.len() < 64 {
                    items.push((0, r.tick()));
                }
                (Ticks::Full(items.into_iter().map(|(_, t)| t).collect()), checksum)
            } else {
                while r.0.len() >= 2 && items.len() < 64 {
                    let i = u16::from_le_bytes([r.u8(), r.u8()]);
                    items.push((i, r.tick()));
                }
                (Ticks::Diff(Diff(items)), checksum)
            }
        }
    };
    if fix && let Some(next) = model_apply(&time, &ticks) {
        checksum = clock::checksum(&next);
    }
    ClockCase { time, ticks, checksum }
}

/// An `apply_clock` input for `time` and `update` (encoded with the real encoder).
pub fn clock_case_bytes(time: &[u64], update: &ClockUpdate, fix_checksum: bool) -> Vec<u8> {
    assert!(time.len() < 48);
    let mut out = vec![time.len() as u8];
    for t in time {
        write_tick(&mut out, *t);
    }
    out.push(u8::from(fix_checksum));
    let frame = ServerMsg::Update(update.clone()).encode().expect("updates encode");
    out.extend_from_slice(&frame[1..]);
    out
}

/// The `apply_clock` target.
pub fn check_clock(case: &ClockCase) {
    let mut t = case.time.clone();
    let result = clock::apply(&mut t, &case.ticks, case.checksum);
    let model = model_apply(&case.time, &case.ticks);
    match result {
        Ok(()) => {
            assert_eq!(Some(&t), model.as_ref(), "apply and the model disagree");
            assert_eq!(clock::checksum(&t), case.checksum);
            let lowered = t.iter().zip(&case.time).any(|(after, before)| after < before);
            assert!(!lowered, "an update lowered a tick: {:?} -> {t:?}", case.time);
        }
        Err(e) => {
            assert_eq!(t, case.time, "the clock changed although apply failed with {e:?}");
            match model {
                Some(next) => assert_eq!(
                    e,
                    ClockError::Checksum {
                        got: clock::checksum(&next),
                        expected: case.checksum
                    }
                ),
                None => assert!(!matches!(e, ClockError::Checksum { .. }), "{e:?}"),
            }
        }
    }
}

/// The `session` target: a server session and a client session joined back to back, driven by
/// arbitrary input. Each step takes one byte: `0..=3` — the client's next frame is a valid
/// `Hello` / a mutation by the client session / a `Sync`; `4` — time moves by the next byte
/// (× 64 ms) and the server polls (pushes, deadlines, pings); anything else — a frame of that
/// many bytes (up to 250) taken from the input as is. Neither session may panic; every frame the
/// server sends decodes; after it says `Close` it sends nothing more; the client's mirror, when
/// it has one, never holds ticks the worker does not have.
pub fn check_session(data: &[u8]) {
    use amrpc_core::session::{ClientConfig, ClientSession, ReplayCache, ServerConfig, ServerOutput, ServerSession};
    use amrpc_core::{Machine, MutationType, Opts, State, schema};
    use std::sync::Arc;

    let w = Machine::new(
        schema([("A", State::new().multi()), ("B", State::new().require(&["A"]))]),
        Opts::default(),
    )
    .expect("schema");
    w.verify_states(&["A", "B", "Exception"]).expect("states");
    let cfg = ServerConfig {
        max_frame: 4096,
        hello_timeout_ms: 5_000,
        ping_interval_ms: 2_000,
        ping_timeout_ms: 2_000,
        mutation_rate: 50,
        mutation_burst: 8,
        ..Default::default()
    };
    let mut srv = ServerSession::new(&w, cfg, Arc::new(ReplayCache::with_id(4, 7)));
    let mut cli = ClientSession::new(ClientConfig::default());
    let mut now = 0u64;
    let mut closed = false;
    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        i += 1;
        let frame: Option<Vec<u8>> = match op {
            0 => Some(cli.hello()),
            1 | 2 => cli.mutate(MutationType::Add, &[if op == 1 { "A" } else { "B" }], None, now).ok().map(|(_, f)| f),
            3 => cli.sync(),
            4 => {
                now += 64 * u64::from(*data.get(i).unwrap_or(&1));
                i += 1;
                let out = srv.poll(now, &w);
                deliver(&out, &mut cli, &mut closed);
                None
            }
            n => {
                let n = usize::from(n).min(data.len() - i);
                let f = data[i..i + n].to_vec();
                i += n;
                Some(f)
            }
        };
        if let Some(f) = frame {
            let out = srv.handle_frame(&f, now, &w);
            if closed {
                assert!(out.is_empty(), "output after Close: {out:?}");
            }
            deliver(&out, &mut cli, &mut closed);
        }
    }
    if let Some(m) = cli.mirror() {
        let (mirror, worker) = (m.time(None), w.time(None));
        assert!(mirror.iter().zip(&worker).all(|(a, b)| a <= b), "mirror {mirror:?} ahead of {worker:?}");
    }

    fn deliver(out: &[ServerOutput], cli: &mut ClientSession, closed: &mut bool) {
        for o in out {
            assert!(!*closed, "output after Close: {o:?}");
            match o {
                ServerOutput::Send(b) => {
                    ServerMsg::decode(b, DEFAULT_MAX_FRAME).expect("the server sends frames that decode");
                    let _ = cli.handle_frame(b);
                }
                ServerOutput::Close { .. } => *closed = true,
                ServerOutput::Ping | ServerOutput::HandshakeDone { .. } => {}
            }
        }
    }
}
