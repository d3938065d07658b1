//! Shallow clocks (`Hello::shallow`, protocol version 2): the mirror follows the worker's
//! activation with ticks that count the activations it saw, changes that cancel out between two
//! updates are not sent, and a reconnect re-bases the mirror so it stays monotonic.

use std::sync::Arc;

use amrpc_core::session::{
    ClientConfig, ClientOutput, ClientSession, ReplayCache, ServerConfig, ServerOutput, ServerSession,
};
use amrpc_core::wire::{DEFAULT_MAX_FRAME, ServerMsg, Ticks};
use amrpc_core::{Machine, Opts, State, schema};

fn worker() -> Machine {
    let w = Machine::new(
        schema([("A", State::new()), ("M", State::new().multi())]),
        Opts::default(),
    )
    .unwrap();
    w.verify_states(&["A", "M", "Exception"]).unwrap();
    w
}

fn deliver(out: Vec<ServerOutput>, cli: &mut ClientSession) -> Vec<ServerMsg> {
    let mut msgs = Vec::new();
    for o in out {
        if let ServerOutput::Send(b) = o {
            msgs.push(ServerMsg::decode(&b, DEFAULT_MAX_FRAME).unwrap());
            let got = cli.handle_frame(&b);
            assert!(!got.iter().any(|o| matches!(o, ClientOutput::Closed(_))), "{got:?}");
        }
    }
    msgs
}

fn push(srv: &mut ServerSession, w: &Machine, cli: &mut ClientSession, now: &mut u64) -> Vec<ServerMsg> {
    srv.worker_changed();
    *now += 100;
    deliver(srv.poll(*now, w), cli)
}

#[test]
fn a_shallow_mirror_follows_activation() {
    let w = worker();
    w.add1("A", None);
    w.add1("M", None);
    w.add1("M", None); // Multi: tick 3
    let mut srv = ServerSession::new(&w, ServerConfig::default(), Arc::new(ReplayCache::new(4)));
    let mut cli = ClientSession::new(ClientConfig {
        shallow: true,
        ..Default::default()
    });
    let welcome = deliver(srv.handle_frame(&cli.hello(), 0, &w), &mut cli);
    assert!(matches!(&welcome[..], [ServerMsg::Welcome(wl)] if wl.shallow));
    let m = cli.mirror().unwrap().clone();
    assert_eq!(m.time(None), vec![1, 1, 0], "one activation each, Exception off");
    let a_off = m.when_not1("A", None);

    let mut now = 0;
    // a Multi re-entry and an off-on toggle within one interval: nothing to send
    w.add1("M", None);
    w.remove1("A", None);
    w.add1("A", None);
    assert!(
        push(&mut srv, &w, &mut cli, &mut now).is_empty(),
        "no activation changed"
    );
    assert!(!a_off.is_ready());
    // a real change: one entry of +1
    w.remove1("A", None);
    let msgs = push(&mut srv, &w, &mut cli, &mut now);
    match &msgs[..] {
        [ServerMsg::Update(u)] => assert!(matches!(&u.ticks, Ticks::Diff(d) if d.0 == vec![(0, 1)]), "{u:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(a_off.try_result(), Some(Ok(())), "waits fire on shallow changes");
    assert_eq!(m.active_states(), w.active_states());
    assert_eq!(m.time(None), vec![2, 1, 0]);

    // a reconnect: the new session numbers from 0 again; the mirror re-bases, stays monotonic
    let _ = cli.disconnected();
    w.add1("A", None);
    w.remove1("M", None);
    let mut srv2 = ServerSession::new(&w, ServerConfig::default(), Arc::new(ReplayCache::new(4)));
    let welcome = deliver(srv2.handle_frame(&cli.hello(), now, &w), &mut cli);
    assert!(matches!(&welcome[..], [ServerMsg::Welcome(wl)] if wl.update.ticks == Ticks::Full(vec![1, 0, 0])));
    assert_eq!(
        m.time(None),
        vec![3, 2, 0],
        "A on again (+1), M off (+1): never backwards"
    );
    assert_eq!(m.active_states(), w.active_states());
    // and diffs of the new session apply on top of the re-based clock
    w.add1("M", None);
    push(&mut srv2, &w, &mut cli, &mut now);
    assert_eq!(m.time(None), vec![3, 3, 0]);
    assert_eq!(cli.resyncs(), 0, "checksums hold across the re-base");
    w.dispose();
}

/// A client that asked for shallow clocks refuses a server that ignored the option (an older
/// or misbehaving peer), instead of reading real ticks as shallow ones.
#[test]
fn a_mismatched_shallow_flag_is_refused() {
    let w = worker();
    let mut srv = ServerSession::new(&w, ServerConfig::default(), Arc::new(ReplayCache::new(4)));
    let mut full = ClientSession::new(ClientConfig::default());
    let out = srv.handle_frame(&full.hello(), 0, &w);
    let Some(ServerOutput::Send(welcome)) = out.into_iter().find(|o| matches!(o, ServerOutput::Send(_))) else {
        panic!("no Welcome")
    };
    let mut shallow = ClientSession::new(ClientConfig {
        shallow: true,
        ..Default::default()
    });
    let _ = shallow.hello();
    let got = shallow.handle_frame(&welcome);
    assert!(
        matches!(&got[..], [ClientOutput::Closed(e)] if e.code() == amrpc_core::ErrorCode::Malformed),
        "{got:?}"
    );
    assert_eq!(full.handle_frame(&welcome), vec![ClientOutput::Ready]);
    w.dispose();
}
