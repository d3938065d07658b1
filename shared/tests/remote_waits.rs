//! Remote waits in the sans-IO sessions (protocol version 2): the server's per-session limit and
//! refusals, release on `Unwait` and on the session's end, the waker, and the client's side.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Wake, Waker};

use amrpc_core::session::{
    ClientConfig, ClientOutput, ClientSession, ReplayCache, ServerConfig, ServerOutput, ServerSession,
};
use amrpc_core::wire::{ClientMsg, DEFAULT_MAX_FRAME, ErrorCode, ServerMsg, WaitArgs};
use amrpc_core::{Args, Machine, MutationType, Opts, Outcome, State, schema};

fn worker() -> Machine {
    let w = Machine::new(
        schema([("A", State::new().multi()), ("B", State::new())]),
        Opts::default(),
    )
    .unwrap();
    w.verify_states(&["A", "B", "Exception"]).unwrap();
    w
}

fn msgs(out: Vec<ServerOutput>) -> Vec<ServerMsg> {
    out.into_iter()
        .filter_map(|o| match o {
            ServerOutput::Send(b) => Some(ServerMsg::decode(&b, DEFAULT_MAX_FRAME).unwrap()),
            _ => None,
        })
        .collect()
}

fn open(w: &Machine, max_waits: usize) -> ServerSession {
    let cfg = ServerConfig {
        max_waits,
        ..Default::default()
    };
    let mut srv = ServerSession::new(w, cfg, Arc::new(ReplayCache::new(4)));
    let hello = ClientSession::new(ClientConfig::default()).hello();
    let out = msgs(srv.handle_frame(&hello, 0, w));
    assert!(matches!(&out[..], [ServerMsg::Welcome(wl)] if wl.max_waits == max_waits as u32));
    srv
}

fn when_args(req: u32, state: u16) -> Vec<u8> {
    ClientMsg::WhenArgs(WaitArgs {
        req,
        state,
        args: Args::new().with("k", 1),
    })
    .encode()
    .unwrap()
}

fn error_code(m: &[ServerMsg]) -> Option<(Option<u32>, ErrorCode)> {
    match m {
        [ServerMsg::Error(e)] => Some((e.req, e.code)),
        _ => None,
    }
}

#[test]
fn the_server_bounds_and_checks_waits() {
    let w = worker();
    let mut srv = open(&w, 2);
    assert!(msgs(srv.handle_frame(&when_args(1, 0), 1, &w)).is_empty());
    assert_eq!(
        error_code(&msgs(srv.handle_frame(&when_args(1, 0), 1, &w))),
        Some((Some(1), ErrorCode::InvalidParams)),
        "an id in use"
    );
    assert_eq!(
        error_code(&msgs(srv.handle_frame(&when_args(0, 0), 1, &w))),
        Some((None, ErrorCode::InvalidParams)),
        "the reserved id 0"
    );
    assert_eq!(
        error_code(&msgs(srv.handle_frame(&when_args(2, 9), 1, &w))),
        Some((Some(2), ErrorCode::InvalidParams)),
        "a state index out of range"
    );
    let wq = ClientMsg::WhenQueue { req: 3, tick: 50 }.encode().unwrap();
    assert!(msgs(srv.handle_frame(&wq, 1, &w)).is_empty());
    assert_eq!(srv.waits(), 2);
    assert_eq!(w.wait_bindings(), 2);
    assert_eq!(
        error_code(&msgs(srv.handle_frame(&when_args(4, 1), 1, &w))),
        Some((Some(4), ErrorCode::TooManyWaits)),
        "past the limit"
    );
    let unwait = ClientMsg::Unwait { req: 1 }.encode().unwrap();
    assert!(msgs(srv.handle_frame(&unwait, 2, &w)).is_empty());
    assert_eq!(w.wait_bindings(), 1, "Unwait unbinds on the worker");
    assert!(msgs(srv.handle_frame(&when_args(4, 1), 2, &w)).is_empty(), "room again");
    assert!(srv.is_open(), "refusals keep the session");
    // the session's end releases the rest
    srv.shutdown(ErrorCode::ShuttingDown, "bye");
    assert_eq!(w.wait_bindings(), 0);
    let mut srv = open(&w, 2);
    srv.handle_frame(&when_args(1, 0), 1, &w);
    assert_eq!(w.wait_bindings(), 1);
    drop(srv);
    assert_eq!(w.wait_bindings(), 0, "dropping a session unbinds its waits");
    w.dispose();
}

struct Count(AtomicUsize);
impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A wait met by someone else's mutation wakes the session's waker; the next `poll` signals it
/// with the clock change, and the client resolves it with that change applied.
#[test]
fn the_waker_fires_and_poll_signals() {
    let w = worker();
    let wakes = Arc::new(Count(AtomicUsize::new(0)));
    let mut srv = ServerSession::new(&w, ServerConfig::default(), Arc::new(ReplayCache::new(4)));
    srv.set_waker(Waker::from(wakes.clone()));
    let mut cli = ClientSession::new(ClientConfig::default());
    let welcome = srv.handle_frame(&cli.hello(), 0, &w);
    for o in welcome {
        if let ServerOutput::Send(b) = o {
            cli.handle_frame(&b);
        }
    }
    let (req, frame) = cli.wait_args(0, Args::new().with("k", 1)).unwrap();
    assert!(srv.handle_frame(&frame, 1, &w).is_empty());
    w.add1("A", Some(Args::new().with("k", 2)));
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "not met");
    w.add1("A", Some(Args::new().with("k", 1).with("more", true)));
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "met: woken once");
    let out: Vec<ClientOutput> = srv
        .poll(2, &w)
        .into_iter()
        .flat_map(|o| match o {
            ServerOutput::Send(b) => cli.handle_frame(&b),
            _ => Vec::new(),
        })
        .collect();
    assert!(
        out.contains(&ClientOutput::Reply {
            req,
            result: Ok(Outcome::Executed),
            why: None,
        }),
        "{out:?}"
    );
    assert_eq!(cli.mirror().unwrap().tick("A"), 3, "the signal carried the clock");
    assert_eq!(cli.waits(), 0);
    w.dispose();
}

/// The client never reuses a registered wait's id, fails its waits on a disconnect, refuses
/// past the server's limit without a round trip, and a wait needs an open session.
#[test]
fn the_client_side() {
    let w = worker();
    let mut srv = ServerSession::new(
        &w,
        ServerConfig {
            max_waits: 2,
            ..Default::default()
        },
        Arc::new(ReplayCache::new(4)),
    );
    let mut cli = ClientSession::new(ClientConfig::default());
    assert!(cli.wait_queue(1).is_err(), "no session yet");
    for o in srv.handle_frame(&cli.hello(), 0, &w) {
        if let ServerOutput::Send(b) = o {
            cli.handle_frame(&b);
        }
    }
    let (a, _) = cli.wait_queue(10).unwrap();
    let (b, _) = cli.wait_args(1, Args::new()).unwrap();
    let e = cli.wait_queue(11).unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooManyWaits);
    let (m, _) = cli.mutate(MutationType::Add, &["B"], None, 0).unwrap();
    assert!(m != a && m != b, "ids in use are skipped");
    let mut lost = cli.disconnected();
    lost.sort_unstable();
    assert_eq!(lost, vec![a, b]);
    assert_eq!(cli.waits(), 0);
    assert!(cli.wait_queue(1).is_err(), "not while disconnected");
    w.dispose();
}
