//! Edge cases of the sessions found in review: the replay window covers every request a client
//! can have in flight; a retry whose original runs elsewhere is rechecked by deadline; a peer of
//! another protocol version is told so even when its first message does not decode. Found by the
//! soak (`server/tests/soak.rs`): a stale frame a superseded session reads late does not run.
use std::sync::Arc;

use amrpc_core::session::{
    ClientConfig, ClientOutput, ClientSession, MAX_PENDING, PER_INSTANCE, ReplayCache, ServerConfig, ServerOutput,
    ServerSession,
};
use amrpc_core::wire::{self, ClientMsg, ErrorCode, Hello, MutationReq, PROTOCOL_VERSION, ServerMsg};
use amrpc_core::{Machine, MutationType, Opts, Outcome, State, schema};

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

/// The messages among a session's outputs.
fn sent(out: &[ServerOutput]) -> Vec<ServerMsg> {
    out.iter()
        .filter_map(|o| match o {
            ServerOutput::Send(b) => ServerMsg::decode(b, 1 << 20).ok(),
            _ => None,
        })
        .collect()
}

fn hello(instance: u64) -> Vec<u8> {
    ClientMsg::Hello(Hello {
        version: wire::PROTOCOL_VERSION,
        client_id: "c".into(),
        instance,
        ..Default::default()
    })
    .encode()
    .unwrap()
}

#[test]
fn every_request_a_client_can_have_in_flight_stays_in_the_replay_window() {
    const { assert!(MAX_PENDING <= PER_INSTANCE) };
    let w = worker();
    let mut cli = ClientSession::new(ClientConfig::default());
    let mut srv = ServerSession::new(&w, ServerConfig::default(), Arc::new(ReplayCache::new(8)));
    for o in srv.handle_frame(&cli.hello(), 0, &w) {
        if let ServerOutput::Send(b) = o {
            cli.handle_frame(&b);
        }
    }
    for _ in 0..MAX_PENDING {
        cli.mutate(MutationType::Add, &["A"], None, 0).unwrap();
    }
    assert!(
        cli.mutate(MutationType::Add, &["A"], None, 0)
            == Err(amrpc_core::Error::TooManyInFlight { limit: MAX_PENDING }),
        "bounded in flight"
    );
}

#[test]
fn resending_a_full_window_runs_each_request_once() {
    let w = worker();
    let replay = Arc::new(ReplayCache::new(8));
    let mut srv = ServerSession::new(&w, ServerConfig::default(), replay.clone());
    srv.handle_frame(&hello(7), 0, &w);
    let reqs: Vec<Vec<u8>> = (1..=MAX_PENDING as u32)
        .map(|req| {
            ClientMsg::Add(MutationReq {
                req,
                states: vec![0],
                ..Default::default()
            })
            .encode()
            .unwrap()
        })
        .collect();
    for f in &reqs {
        srv.handle_frame(f, 1, &w);
    }
    let tick = w.tick("A");
    // all replies lost; a new session gets every request again
    let mut srv2 = ServerSession::new(&w, ServerConfig::default(), replay);
    srv2.handle_frame(&hello(7), 2, &w);
    for f in &reqs {
        srv2.handle_frame(f, 3, &w);
        assert_eq!(w.tick("A"), tick, "ran twice");
    }
    assert_eq!(w.tick("A"), tick);
}

/// The client reconnected; its old session, busy until now, reads a frame the client sent on the
/// old connection (and resent on the new one, where it ran and where more than the replay
/// window's worth of calls followed, evicting its outcome). The old session is superseded: it
/// drops the frame and closes instead of running it again.
#[test]
fn a_superseded_session_does_not_run_a_stale_frame() {
    let w = worker();
    let replay = Arc::new(ReplayCache::new(8));
    let add = |req: u32| {
        ClientMsg::Add(MutationReq {
            req,
            states: vec![0],
            ..Default::default()
        })
        .encode()
        .unwrap()
    };
    let mut old = ServerSession::new(&w, ServerConfig::default(), replay.clone());
    old.handle_frame(&hello(11), 0, &w);
    let mut new = ServerSession::new(&w, ServerConfig::default(), replay);
    new.handle_frame(&hello(11), 1, &w);
    for req in 1..=PER_INSTANCE as u32 + 1 {
        let frames = sent(&new.handle_frame(&add(req), 2, &w));
        assert!(
            matches!(frames.as_slice(), [ServerMsg::Executed(r)] if r.req == req),
            "{frames:?}"
        );
    }
    let tick = w.tick("A");
    let out = old.handle_frame(&add(1), 3, &w);
    assert_eq!(w.tick("A"), tick, "the stale frame ran again");
    assert!(
        matches!(sent(&out).as_slice(), [ServerMsg::Bye(e)] if e.code == ErrorCode::Closed),
        "{out:?}"
    );
    assert!(matches!(out.last(), Some(ServerOutput::Close { .. })), "{out:?}");
}

#[test]
fn a_deferred_retry_has_a_deadline() {
    let w = worker();
    let replay = Arc::new(ReplayCache::new(8));
    let cfg = || ServerConfig {
        push_interval_ms: 0,
        // no keepalive deadline: only the retry's
        ping_interval_ms: 0,
        ..Default::default()
    };
    let mut old = ServerSession::new(&w, cfg(), replay.clone());
    old.handle_frame(&hello(9), 0, &w);
    let add = ClientMsg::Add(MutationReq {
        req: 1,
        states: vec![1],
        ..Default::default()
    })
    .encode()
    .unwrap();
    // the original is taken by the old session (still running there)
    let held = Held::new(&w);
    assert_eq!(old.handle_frame(&add, 0, &held), vec![]);
    assert_eq!(held.reqs(), vec![1]);
    let mut new = ServerSession::new(&w, cfg(), replay);
    new.handle_frame(&hello(9), 0, &w);
    assert!(new.handle_frame(&add, 5, &w).is_empty(), "deferred");
    let at = new
        .next_deadline()
        .expect("a recheck is scheduled even with pushes off");
    assert!(new.poll(at, &w).is_empty(), "still running");
    // the original finishes in the old session; the retry is answered at the next recheck
    let (req, ty, idx, args) = held.take();
    let outcome = w.mutate_indexes(ty, &idx, Some(args)).unwrap();
    old.mutation_done(req, outcome, None, 6, &w);
    let at = new.next_deadline().unwrap();
    let out = new.poll(at, &w);
    let frames = sent(&out);
    assert!(
        matches!(frames.as_slice(), [ServerMsg::Executed(r)] if r.req == 1),
        "{frames:?}"
    );
    assert_eq!(new.next_deadline(), None);
    assert_eq!(w.tick("B"), 1);
    let _ = Outcome::Executed;
}

#[test]
fn a_newer_hello_that_does_not_decode_gets_version_mismatch() {
    let w = worker();
    let mut srv = ServerSession::new(&w, ServerConfig::default(), Arc::new(ReplayCache::new(8)));
    // the next version with a field this version does not know (trailing bytes)
    let mut bytes = ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION + 1,
        client_id: "c".into(),
        ..Default::default()
    })
    .encode()
    .unwrap();
    bytes.extend([1, 2, 3]);
    let out = srv.handle_frame(&bytes, 0, &w);
    assert!(
        out.iter().any(|o| matches!(
            o,
            ServerOutput::Close {
                code: ErrorCode::VersionMismatch,
                ..
            }
        )),
        "{out:?}"
    );
    // and the client side: a Welcome it cannot decode but with another version
    let mut cli = ClientSession::new(ClientConfig::default());
    let _ = cli.hello();
    let out = cli.handle_frame(&[0, PROTOCOL_VERSION as u8 + 1, 0xff, 0xff]);
    assert!(
        matches!(out.as_slice(), [ClientOutput::Closed(e)] if e.code() == ErrorCode::VersionMismatch),
        "{out:?}"
    );
}

#[test]
fn call_timeouts_resend_then_expire() {
    let w = worker();
    let mut cli = ClientSession::new(ClientConfig::default());
    let mut srv = ServerSession::new(&w, ServerConfig::default(), Arc::new(ReplayCache::new(8)));
    for o in srv.handle_frame(&cli.hello(), 0, &w) {
        if let ServerOutput::Send(b) = o {
            cli.handle_frame(&b);
        }
    }
    let (req, frame) = cli.mutate(MutationType::Add, &["B"], None, 1000).unwrap();
    assert_eq!(cli.call_timeouts(1500, 1000, 2), Default::default(), "not due yet");
    let t = cli.call_timeouts(2000, 1000, 2);
    assert_eq!(
        (t.resend, t.expired),
        (vec![frame.clone()], vec![]),
        "same frame: same request id"
    );
    assert_eq!(cli.call_timeouts(3000, 1000, 2).resend, vec![frame.clone()]);
    let t = cli.call_timeouts(4000, 1000, 2);
    assert_eq!((t.resend.len(), t.expired), (0, vec![req]));
    assert!(cli.pending().is_empty(), "an expired request is forgotten");
    // after a reconnect every pending request goes out again
    let (req2, f2) = cli.mutate(MutationType::Add, &["A"], None, 5000).unwrap();
    assert_eq!(cli.resend_pending(5000), vec![f2]);
    assert_eq!(cli.pending(), vec![req2]);
}

#[test]
fn a_refused_no_sync_mutation_is_reported_without_a_request_id() {
    let w = worker();
    let mut srv = ServerSession::new(
        &w,
        ServerConfig {
            mutable_states: Some(vec!["A".into()]),
            ..ServerConfig::default()
        },
        Arc::new(ReplayCache::new(8)),
    );
    srv.handle_frame(&hello(3), 0, &w);
    let before = w.time(None);
    let ns = |states: Vec<u16>| {
        ClientMsg::Add(MutationReq {
            req: amrpc_core::session::NOTIFY_REQ,
            states,
            ..Default::default()
        })
        .encode()
        .unwrap()
    };
    let out = srv.handle_frame(&ns(vec![1]), 1, &w);
    let frames = sent(&out);
    assert!(
        matches!(frames.as_slice(), [ServerMsg::Error(e)] if e.req.is_none() && e.code == ErrorCode::Forbidden),
        "{frames:?}"
    );
    assert_eq!(w.time(None), before, "not run");
    // an allowed one runs with no reply at all
    assert_eq!(srv.handle_frame(&ns(vec![0]), 2, &w), vec![]);
    assert!(w.is1("A"));
}
