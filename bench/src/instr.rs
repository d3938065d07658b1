//! Fixed workloads for instruction counting (`scripts/callgrind.sh`): the same binary and input
//! always execute the same instructions, so `valgrind --tool=callgrind` gives a figure per op
//! that a noisy machine cannot move, unlike the timings. No runtime, no sockets, no clocks:
//!
//! * `machine` — upstream's op on the local worker machine (`worker_op` in
//!   `shared/benches/machine.rs`): wait for `Event` +2, `switch(Values)`, `add1(CallOp, Op)`.
//! * `sessions` — the same op by a client: the core's [`Connection`] (the driver both client
//!   shells wrap) sends `Add CallOp` as a frame, an in-memory [`ServerSession`] runs it on the
//!   worker and answers, the reply goes back into the driver and its mirror; the server session
//!   is polled after the mutation as the server's shell does when the worker's clock moves. Every
//!   frame is encoded and decoded as on the wire; only the sockets are missing.
//!
//! The script runs each twice with different op counts and divides the difference, so setup and
//! teardown cancel.

use std::sync::Arc;

use amrpc_core::demo::{self, CALL_OP, EVENT, START, VALUES};
use amrpc_core::session::{ConnConfig, ConnOutput, Connection, ReplayCache, ServerConfig, ServerOutput, ServerSession};
use amrpc_core::states as ss;
use amrpc_core::{Machine, MutationType, Outcome};

/// Which workload.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum Path {
    /// The op on the local machine.
    Machine,
    /// The op from a client through the sans-IO client and server sessions.
    Sessions,
}

/// Run `ops` ops on `path`; checks every result and the worker's counters.
pub(crate) fn run(path: Path, ops: usize) -> Result<(), String> {
    let (m, worker) = demo::bench_worker(7).map_err(|e| e.to_string())?;
    match path {
        Path::Machine => machine(&m, ops)?,
        Path::Sessions => sessions(&m, ops)?,
    }
    let (errors, successes) = (worker.errors(), worker.successes());
    worker.unsubscribe();
    m.dispose();
    if errors != 0 || successes < ops {
        return Err(format!("worker: {errors} errors, {successes} successes of {ops}"));
    }
    println!("{path:?}: {ops} ops, 0 errors");
    Ok(())
}

fn machine(m: &Machine, ops: usize) -> Result<(), String> {
    let mut ticks = m.tick(EVENT);
    if m.add1(START, None) != Outcome::Executed {
        return Err("add1(Start)".into());
    }
    for i in 0..ops {
        ticks += 2;
        if m.tick(EVENT) != ticks {
            return Err(format!("op {i}: Event did not tick +2"));
        }
        let op = demo::op_of(m.switch(&[&VALUES])).ok_or(format!("op {i}: no value"))?;
        if m.add1(CALL_OP, Some(demo::op_args(op))) != Outcome::Executed {
            return Err(format!("op {i}: add1(CallOp) not executed"));
        }
    }
    Ok(())
}

/// The client's driver and the server's session, wired back to back.
struct Pair<'a> {
    conn: Connection<usize>,
    srv: ServerSession,
    worker: &'a Machine,
    now: u64,
    done: Vec<(usize, Result<Outcome, amrpc_core::Error>)>,
}

impl Pair<'_> {
    /// Carry frames both ways until both sides are quiet.
    fn pump(&mut self) -> Result<(), String> {
        while let Some(o) = self.conn.poll_output() {
            match o {
                ConnOutput::Send(f) => {
                    let out = self.srv.handle_frame(&f, self.now, self.worker);
                    self.deliver(out)?;
                    // the shell polls when the worker's clock moved (nothing left to push: the
                    // reply carried the clock)
                    let out = self.srv.poll(self.now, self.worker);
                    self.deliver(out)?;
                }
                ConnOutput::Done(k, r, _) => self.done.push((k, r)),
                ConnOutput::Closed(e) => return Err(format!("closed: {e}")),
                ConnOutput::Dial | ConnOutput::CloseSocket => return Err("the connection was replaced".into()),
                _ => {}
            }
        }
        Ok(())
    }

    fn deliver(&mut self, out: Vec<ServerOutput>) -> Result<(), String> {
        for o in out {
            match o {
                ServerOutput::Send(b) => self.conn.frame(self.now, &b),
                ServerOutput::Close { code, reason } => return Err(format!("server closed: {code:?} {reason}")),
                ServerOutput::HandshakeDone { .. } | ServerOutput::Ping => {}
            }
        }
        Ok(())
    }

    /// One call, answered `Executed`.
    fn call(&mut self, key: usize, states: Vec<u16>, args: Option<amrpc_core::Args>) -> Result<(), String> {
        self.now += 1;
        self.conn.call_indexes(self.now, MutationType::Add, states, args, key);
        self.pump()?;
        match self.done.pop() {
            Some((k, Ok(Outcome::Executed))) if k == key => Ok(()),
            other => Err(format!("call {key}: {other:?}")),
        }
    }
}

fn sessions(m: &Machine, ops: usize) -> Result<(), String> {
    let cfg = ConnConfig {
        reconnect: false,
        ..Default::default()
    };
    let srv = ServerSession::new(
        m,
        ServerConfig {
            push_interval_ms: 0,
            ..Default::default()
        },
        Arc::new(ReplayCache::new(64)),
    );
    let mut p = Pair {
        conn: Connection::new(cfg),
        srv,
        worker: m,
        now: 1,
        done: Vec::new(),
    };
    p.conn.start(p.now);
    match p.conn.poll_output() {
        Some(ConnOutput::Dial) => {}
        other => return Err(format!("expected a dial, got {other:?}")),
    }
    p.conn.opened(p.now);
    p.pump()?;
    let mirror = p.conn.mirror().ok_or("no mirror after the handshake")?.clone();
    let idx = p.conn.session().indexes(&[START, CALL_OP]).map_err(|e| e.to_string())?;
    let (start, call_op) = (idx[0], idx[1]);
    let mut ticks = mirror.tick(EVENT);
    p.call(0, vec![start], None)?;
    for i in 0..ops {
        ticks += 2;
        if mirror.tick(EVENT) != ticks {
            return Err(format!("op {i}: the mirror's Event did not tick +2"));
        }
        let op = demo::op_of(mirror.switch(&[&VALUES])).ok_or(format!("op {i}: no value"))?;
        p.call(i + 1, vec![call_op], Some(demo::op_args(op)))?;
    }
    p.conn.close();
    Ok(())
}

/// Live heap of one idle session's core parts, bytes and allocations (`idle heap` in the suite
/// measures a whole session, sockets and tasks included): the server session after the
/// handshake (with its `Welcome` frame, which the shell sends and drops), and the per-session
/// machine of upstream's server states after its handshake transitions.
pub(crate) fn session_memory() -> Result<(), String> {
    let (m, worker) = demo::bench_worker(7).map_err(|e| e.to_string())?;
    let replay = Arc::new(ReplayCache::new(64));
    let mut keep = Vec::new();
    let info = allocation_counter::measure(|| {
        for _ in 0..100 {
            let mut srv = ServerSession::new(&m, ServerConfig::default(), replay.clone());
            let mut c = amrpc_core::session::ClientSession::new(Default::default());
            let hello = c.hello();
            let out = srv.handle_frame(&hello, 1, &m);
            keep.push((srv, out));
        }
    });
    println!(
        "server session + Welcome frame: {} B, {} allocations",
        info.bytes_current / 100,
        info.count_current / 100
    );
    let mut keep2 = Vec::new();
    // as the server makes them: one shared compiled schema, then the session's transitions
    let schema = amrpc_core::CompiledSchema::new(ss::server_schema(), None).map_err(|e| e.to_string())?;
    let info = allocation_counter::measure(|| {
        for _ in 0..100 {
            let m = Machine::with_schema(&schema, Default::default());
            for s in [
                ss::START,
                ss::RPC_READY,
                ss::CLIENT_CONNECTED,
                ss::HANDSHAKING,
                ss::HANDSHAKE_DONE,
            ] {
                m.add1(s, None);
            }
            keep2.push(m);
        }
    });
    println!(
        "session machine: {} B, {} allocations",
        info.bytes_current / 100,
        info.count_current / 100
    );
    drop((keep, keep2));
    worker.unsubscribe();
    m.dispose();
    Ok(())
}
