//! The server session's guards (protocol 4), driven by hand with explicit time: a connection
//! that never says `Hello` is closed at its deadline; an idle session is pinged and a dead one
//! closed; mutations past the rate or the in-flight limit fail with a typed error and do not
//! run; and across a restart a client resends only when the worker kept its replay memory
//! (a snapshot), else the calls it had sent fail with `MayNotHaveRun` — never run twice.
use std::sync::Arc;

use amrpc_core::session::{
    ClientConfig, ClientOutput, ClientSession, ReplayCache, ServerConfig, ServerOutput, ServerSession,
};
use amrpc_core::wire::{self, ClientMsg, ErrorCode, Hello, MutationReq, ServerMsg};
use amrpc_core::{Error, Machine, MutationType, Opts, Outcome, State, schema};

#[path = "common/held.rs"]
mod held;
use held::Held;

fn worker() -> Machine {
    let m = Machine::new(
        schema([("A", State::new().multi()), ("B", State::new())]),
        Opts::default(),
    )
    .unwrap();
    m.verify_states(&["A", "B", "Exception"]).unwrap();
    m
}

fn sent(out: &[ServerOutput]) -> Vec<ServerMsg> {
    out.iter()
        .filter_map(|o| match o {
            ServerOutput::Send(b) => Some(ServerMsg::decode(b, 1 << 20).expect("decodes")),
            _ => None,
        })
        .collect()
}

fn closed_with(out: &[ServerOutput]) -> Option<ErrorCode> {
    out.iter().find_map(|o| match o {
        ServerOutput::Close { code, .. } => Some(*code),
        _ => None,
    })
}

fn hello() -> Vec<u8> {
    ClientMsg::Hello(Hello {
        version: wire::PROTOCOL_VERSION,
        client_id: "c".into(),
        instance: 1,
        ..Default::default()
    })
    .encode()
    .unwrap()
}

fn add(req: u32) -> Vec<u8> {
    ClientMsg::Add(MutationReq {
        req,
        states: vec![0],
        args: Default::default(),
    })
    .encode()
    .unwrap()
}

#[test]
fn a_connection_without_hello_is_closed_at_its_deadline() {
    let w = worker();
    let cfg = ServerConfig {
        opened_at_ms: 1_000,
        hello_timeout_ms: 500,
        ..Default::default()
    };
    let mut s = ServerSession::new(&w, cfg, Arc::new(ReplayCache::new(4)));
    assert_eq!(s.next_deadline(), Some(1_500));
    assert!(s.poll(1_499, &w).is_empty(), "not yet");
    let out = s.poll(1_500, &w);
    assert_eq!(closed_with(&out), Some(ErrorCode::Timeout));
    match sent(&out).as_slice() {
        [ServerMsg::Bye(e)] => assert_eq!(e.code, ErrorCode::Timeout, "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.next_deadline(), None, "closed");
    // a Hello in time opens the session and the deadline is gone
    let mut s = ServerSession::new(&w, cfg_open(0), Arc::new(ReplayCache::new(4)));
    s.handle_frame(&hello(), 400, &w);
    assert!(s.is_open());
    assert!(
        s.poll(10_000, &w)
            .iter()
            .all(|o| !matches!(o, ServerOutput::Close { .. }))
    );
}

fn cfg_open(opened: u64) -> ServerConfig {
    ServerConfig {
        opened_at_ms: opened,
        hello_timeout_ms: 500,
        ping_interval_ms: 0,
        ..Default::default()
    }
}

#[test]
fn an_idle_session_is_pinged_and_a_dead_one_closed() {
    let w = worker();
    let cfg = ServerConfig {
        ping_interval_ms: 1_000,
        ping_timeout_ms: 300,
        push_interval_ms: 0,
        ..Default::default()
    };
    let mut s = ServerSession::new(&w, cfg, Arc::new(ReplayCache::new(4)));
    s.handle_frame(&hello(), 100, &w);
    assert_eq!(s.next_deadline(), Some(1_100), "a ping after 1 s of silence");
    assert_eq!(s.poll(1_100, &w), vec![ServerOutput::Ping]);
    assert_eq!(s.next_deadline(), Some(1_400), "the pong is due within 300 ms");
    // a pong in time: the next ping counts from it
    s.heard(1_200);
    assert_eq!(s.next_deadline(), Some(2_200));
    // a frame counts as hearing from the client too
    s.handle_frame(&add(1), 2_000, &w);
    assert_eq!(s.next_deadline(), Some(3_000));
    assert_eq!(s.poll(3_000, &w), vec![ServerOutput::Ping]);
    // no answer: closed with Timeout
    let out = s.poll(3_300, &w);
    assert_eq!(closed_with(&out), Some(ErrorCode::Timeout));
    assert!(!s.is_open());
}

#[test]
fn mutations_past_the_rate_fail_typed_and_do_not_run() {
    let w = worker();
    let cfg = ServerConfig {
        mutation_rate: 10,
        mutation_burst: 5,
        ping_interval_ms: 0,
        ..Default::default()
    };
    let mut s = ServerSession::new(&w, cfg, Arc::new(ReplayCache::new(4)));
    s.handle_frame(&hello(), 0, &w);
    let mut ok = 0;
    let mut limited = Vec::new();
    for req in 1..=8u32 {
        for m in sent(&s.handle_frame(&add(req), 0, &w)) {
            match m {
                ServerMsg::Executed(_) => ok += 1,
                ServerMsg::Error(e) if e.code == ErrorCode::RateLimited => limited.push(e.req),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(ok, 5, "the burst");
    assert_eq!(limited, vec![Some(6), Some(7), Some(8)]);
    // Multi: the first add ticks 1, each later one 2
    assert_eq!(w.tick("A"), 9, "only the accepted five ran");
    // 100 ms later one token is back (10/s); the refused request may be sent again and runs
    assert!(matches!(
        sent(&s.handle_frame(&add(6), 100, &w)).as_slice(),
        [ServerMsg::Executed(_)]
    ));
    assert!(matches!(
        sent(&s.handle_frame(&add(7), 100, &w)).as_slice(),
        [ServerMsg::Error(e)] if e.code == ErrorCode::RateLimited
    ));
    assert_eq!(w.tick("A"), 11);
    // a resend of a request that ran is answered from the replay cache, not charged
    assert!(matches!(
        sent(&s.handle_frame(&add(1), 100, &w)).as_slice(),
        [ServerMsg::Executed(_)]
    ));
    assert_eq!(w.tick("A"), 11);
}

#[test]
fn mutations_past_the_in_flight_limit_fail_typed_and_do_not_run() {
    let w = worker();
    let relay = Held::new(&w);
    let cfg = ServerConfig {
        max_in_flight: 3,
        ping_interval_ms: 0,
        ..Default::default()
    };
    let mut s = ServerSession::new(&relay, cfg, Arc::new(ReplayCache::new(4)));
    s.handle_frame(&hello(), 0, &relay);
    for req in 1..=3u32 {
        assert!(s.handle_frame(&add(req), 0, &relay).is_empty(), "forwarded");
    }
    match sent(&s.handle_frame(&add(4), 0, &relay)).as_slice() {
        [ServerMsg::Error(e)] => assert_eq!((e.code, e.req), (ErrorCode::TooManyInFlight, Some(4))),
        other => panic!("{other:?}"),
    }
    assert_eq!(relay.reqs(), vec![1, 2, 3], "the 4th was not forwarded");
    // one finishes: there is room again, and the refused one can be sent again
    let (req, ty, idx, args) = relay.take();
    let o = w.mutate_indexes(ty, &idx, Some(args)).unwrap();
    assert!(matches!(
        sent(&s.mutation_done(req, o, None, 1, &relay)).as_slice(),
        [ServerMsg::Executed(_)]
    ));
    assert!(s.handle_frame(&add(4), 1, &relay).is_empty(), "forwarded now");
    assert_eq!(relay.reqs(), vec![2, 3, 4]);
}

/// A client and a server session joined by hand; `restart` replaces the server session (a new
/// process) with a replay cache that is either the old one's restored snapshot or a fresh one.
struct Pair {
    w: Machine,
    cli: ClientSession,
    srv: ServerSession,
}

impl Pair {
    fn new(w: Machine, replay: ReplayCache) -> Pair {
        let srv = ServerSession::new(&w, quiet(), Arc::new(replay));
        let mut p = Pair {
            cli: ClientSession::new(ClientConfig::default()),
            w,
            srv,
        };
        p.handshake();
        p
    }
    fn handshake(&mut self) -> Vec<ClientOutput> {
        let h = self.cli.hello();
        let mut got = Vec::new();
        for b in bytes(self.srv.handle_frame(&h, 0, &self.w)) {
            got.extend(self.cli.handle_frame(&b));
        }
        got
    }
    fn deliver(&mut self, frame: &[u8]) -> Vec<ClientOutput> {
        let mut got = Vec::new();
        for b in bytes(self.srv.handle_frame(frame, 0, &self.w)) {
            got.extend(self.cli.handle_frame(&b));
        }
        got
    }
    fn restart(&mut self, replay: ReplayCache) -> Vec<ClientOutput> {
        self.cli.disconnected();
        self.srv = ServerSession::new(&self.w, quiet(), Arc::new(replay));
        self.handshake()
    }
}

fn quiet() -> ServerConfig {
    ServerConfig {
        ping_interval_ms: 0,
        hello_timeout_ms: 0,
        ..Default::default()
    }
}

fn bytes(out: Vec<ServerOutput>) -> Vec<Vec<u8>> {
    out.into_iter()
        .filter_map(|o| match o {
            ServerOutput::Send(b) => Some(b),
            _ => None,
        })
        .collect()
}

#[test]
fn after_a_restart_with_the_replay_memory_a_resend_runs_at_most_once() {
    let w = worker();
    let mut p = Pair::new(w.clone(), ReplayCache::with_id(8, 77));
    let (req, frame) = p.cli.mutate(MutationType::Add, &["A"], None, 0).unwrap();
    // the server runs it, but the reply is lost in the crash
    let replies = bytes(p.srv.handle_frame(&frame, 0, &p.w));
    assert_eq!(replies.len(), 1);
    assert_eq!(w.tick("A"), 1);
    let snap = p.srv_replay_snapshot();
    assert_eq!(snap.id, 77);
    let got = p.restart(ReplayCache::restore(8, &snap));
    assert!(matches!(got.first(), Some(ClientOutput::Ready)), "{got:?}");
    assert!(p.cli.pending().contains(&req), "kept for the resend");
    let resent = p.cli.resend_pending(1);
    assert_eq!(resent.len(), 1);
    let got = p.deliver(&resent[0]);
    assert!(
        got.iter()
            .any(|o| matches!(o, ClientOutput::Reply { req: r, result: Ok(Outcome::Executed), .. } if *r == req)),
        "{got:?}"
    );
    assert_eq!(w.tick("A"), 1, "answered from the restored memory, not run again");
}

#[test]
fn after_a_restart_without_it_sent_calls_fail_may_not_have_run_and_unsent_ones_go_out() {
    let w = worker();
    let mut p = Pair::new(w.clone(), ReplayCache::with_id(8, 77));
    let (sent_req, frame) = p.cli.mutate(MutationType::Add, &["A"], None, 0).unwrap();
    // it ran; the reply was lost
    let _ = p.srv.handle_frame(&frame, 0, &p.w);
    assert_eq!(w.tick("A"), 1);
    p.cli.disconnected();
    // a call made while disconnected never went out
    let (unsent_req, _) = p.cli.mutate(MutationType::Add, &["B"], None, 0).unwrap();
    p.srv = ServerSession::new(&p.w, quiet(), Arc::new(ReplayCache::with_id(8, 78)));
    let got = p.handshake();
    let failed: Vec<(u32, ErrorCode)> = got
        .iter()
        .filter_map(|o| match o {
            ClientOutput::Reply {
                req,
                result: Err(Error::Rpc { code, .. }),
                ..
            } => Some((*req, *code)),
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![(sent_req, ErrorCode::MayNotHaveRun)]);
    assert_eq!(p.cli.pending(), vec![unsent_req], "the unsent call is kept");
    for f in p.cli.resend_pending(1) {
        p.deliver(&f);
    }
    assert_eq!(w.tick("A"), 1, "the sent call did not run twice");
    assert_eq!(w.tick("B"), 1, "the unsent one ran once");
}

impl Pair {
    fn srv_replay_snapshot(&self) -> amrpc_core::session::ReplaySnapshot {
        self.srv.replay().snapshot()
    }
}
