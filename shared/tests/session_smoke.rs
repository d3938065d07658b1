//! A first back-to-back run of the sans-IO sessions (the full suite is `sessions.rs`).
use std::sync::Arc;

use amrpc_core::session::{
    ClientConfig, ClientOutput, ClientSession, ReplayCache, ServerConfig, ServerOutput, ServerSession,
};
use amrpc_core::{Args, Handlers, Machine, MutationType, Opts, Outcome, State, schema};

#[test]
fn handshake_and_mutation_with_nested_effects() {
    let worker = Machine::new(
        schema([("A", State::new()), ("B", State::new()), ("C", State::new().multi())]),
        Opts::default(),
    )
    .unwrap();
    worker.verify_states(&["A", "B", "C", "Exception"]).unwrap();
    worker
        .bind_handlers(Handlers::new("w").state("A", |e| {
            e.machine().add1("B", None);
            e.machine().add1("C", None);
        }))
        .unwrap();
    let mut srv = ServerSession::new(&worker, ServerConfig::default(), Arc::new(ReplayCache::new(64)));
    let mut cli = ClientSession::new(ClientConfig::default());
    let hello = cli.hello();
    let out = srv.handle_frame(&hello, 0, &worker);
    let mut ready = false;
    for o in out {
        if let ServerOutput::Send(b) = o {
            for c in cli.handle_frame(&b) {
                ready |= c == ClientOutput::Ready;
            }
        }
    }
    assert!(ready);
    let (req, f) = cli
        .mutate(MutationType::Add, &["A"], Some(Args::new().with("x", 1)), 0)
        .unwrap();
    let out = srv.handle_frame(&f, 1, &worker);
    let mut got = None;
    for o in out {
        if let ServerOutput::Send(b) = o {
            for c in cli.handle_frame(&b) {
                if let ClientOutput::Reply { req: r, result, .. } = c {
                    assert_eq!(r, req);
                    got = Some(result);
                }
            }
        }
    }
    assert_eq!(got, Some(Ok(Outcome::Executed)));
    let m = cli.mirror().unwrap();
    assert!(m.is(&["A", "B", "C"]), "{}", m.string_all());
    assert_eq!(m.time(None), worker.time(None));
}
