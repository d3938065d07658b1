//! The client's connection driver ([`Connection`]) end to end with no sockets and no timers:
//! frames go to an in-memory [`ServerSession`] and back, the time is a number the test sets.
//! Connect, Ready, a cut, backoff with seeded jitter, the pending call resent (and run once),
//! call timeouts, give-up, final refusals and close — the rules both client shells rely on.

use std::sync::Arc;

use amrpc_core::session::{
    ClientConfig, ConnConfig, ConnOutput, Connection, ReplayCache, ServerConfig, ServerOutput, ServerSession, Status,
};
use amrpc_core::states as ss;
use amrpc_core::{Error, ErrorCode, Machine, MutationType, Opts, Outcome, State, schema};

fn worker() -> Machine {
    let m = Machine::new(
        schema([("A", State::new()), ("B", State::new().multi())]),
        Opts::default(),
    )
    .unwrap();
    m.verify_states(&["A", "B", "Exception"]).unwrap();
    m
}

fn cfg(seed: u64) -> ConnConfig {
    ConnConfig {
        session: ClientConfig {
            client_id: "driver".into(),
            instance: 77,
            ..Default::default()
        },
        conn_timeout_ms: 500,
        conn_retries: 3,
        retry_delay_ms: 100,
        retry_backoff_ms: 400,
        call_timeout_ms: 1_000,
        call_retries: 1,
        reconnect: true,
        seed,
        endpoints: 1,
    }
}

/// The driver, a server session for the current connection, and what went out.
struct Rig {
    c: Connection<&'static str>,
    w: Machine,
    replay: Arc<ReplayCache>,
    srv: Option<ServerSession>,
    /// Results of calls, in order.
    done: Vec<(&'static str, Result<Outcome, Error>)>,
    statuses: Vec<Status>,
    closed: Option<Error>,
    dials: usize,
    /// The endpoint of each dial.
    dialed: Vec<u16>,
    /// Frames sent while no server session listened (lost in a cut).
    lost: usize,
}

impl Rig {
    fn new(seed: u64) -> Rig {
        Rig {
            c: Connection::new(cfg(seed)),
            w: worker(),
            replay: Arc::new(ReplayCache::new(8)),
            srv: None,
            done: Vec::new(),
            statuses: Vec::new(),
            closed: None,
            dials: 0,
            dialed: Vec::new(),
            lost: 0,
        }
    }

    /// Perform the driver's outputs: frames go to the server session (if connected) and its
    /// frames come straight back.
    fn run(&mut self, now: u64) {
        while let Some(o) = self.c.poll_output() {
            match o {
                ConnOutput::Dial => {
                    self.dials += 1;
                    self.dialed.push(self.c.endpoint());
                }
                ConnOutput::Send(f) => match self.srv.as_mut() {
                    Some(srv) => {
                        for so in srv.handle_frame(&f, now, &self.w) {
                            if let ServerOutput::Send(b) = so {
                                self.c.frame(now, &b);
                            }
                        }
                    }
                    None => self.lost += 1,
                },
                ConnOutput::CloseSocket => self.srv = None,
                ConnOutput::Status(s) => self.statuses.push(s),
                ConnOutput::Done(t, r, _) => self.done.push((t, r)),
                ConnOutput::Closed(e) => self.closed = Some(e),
                ConnOutput::Ready
                | ConnOutput::Changed
                | ConnOutput::Payload(_)
                | ConnOutput::Error(_)
                | ConnOutput::Transition(_)
                | ConnOutput::Dropped { .. } => {}
            }
        }
    }

    /// The dial succeeds: a fresh server session (same replay cache), the handshake runs.
    fn open(&mut self, now: u64) {
        self.srv = Some(ServerSession::new(
            &self.w,
            ServerConfig {
                push_interval_ms: 0,
                ..Default::default()
            },
            self.replay.clone(),
        ));
        self.c.opened(now);
        self.run(now);
    }

    fn is(&self, state: &str) -> bool {
        self.c.states().is1(state)
    }
}

#[test]
fn connect_cut_backoff_resend_give_up() {
    let mut r = Rig::new(42);
    assert_eq!(r.c.status(), Status::Connecting);
    r.c.start(0);
    r.run(0);
    assert_eq!((r.dials, r.statuses.clone()), (1, vec![Status::Connecting]));
    assert!(r.is(ss::CONNECTING));
    assert_eq!(r.c.next_deadline(), Some(500), "the dial times out");

    // connect → Ready
    r.open(5);
    assert_eq!(r.c.status(), Status::Ready);
    assert_eq!(r.statuses, vec![Status::Connecting, Status::Open, Status::Ready]);
    assert!(
        r.is(ss::CONNECTED) && r.is(ss::HANDSHAKE_DONE) && r.is(ss::READY),
        "{}",
        r.c.states().string_all()
    );
    let mirror = r.c.mirror().expect("a mirror after the handshake").clone();
    assert_eq!(r.c.next_deadline(), None, "nothing to time out");

    // a call, answered
    r.c.call(10, MutationType::Add, &["A"], None, "a");
    r.run(10);
    assert_eq!(r.done, vec![("a", Ok(Outcome::Executed))]);
    assert!(mirror.is1("A") && r.w.is1("A"));

    // a call whose frame is lost in a cut (the server side is already gone)
    r.srv = None;
    r.c.call(20, MutationType::Add, &["B"], None, "b");
    r.run(20);
    assert_eq!(r.lost, 1);
    r.c.socket_closed(21);
    r.run(21);
    assert_eq!(r.c.status(), Status::Disconnected);
    assert!(r.is(ss::DISCONNECTED) && r.is(ss::RETRYING_CONN) && !r.is(ss::READY));
    // backoff with jitter: the first delay is 100 ms × [½, 1½)
    let at = r.c.next_deadline().expect("a reconnect is scheduled");
    assert!((21 + 50..21 + 150).contains(&at), "{at}");
    r.c.tick(at - 1);
    r.run(at - 1);
    assert_eq!(r.dials, 1, "not before the deadline");
    r.c.tick(at);
    r.run(at);
    assert_eq!(r.dials, 2);

    // reconnect: the pending call is resent with its request id and runs once
    r.open(at + 1);
    assert_eq!(r.done[1], ("b", Ok(Outcome::Executed)));
    assert_eq!(r.w.tick("B"), 1, "ran once");
    assert!(mirror.is1("B"), "the same mirror carries on");
    assert!(!r.is(ss::RETRYING_CONN) && r.is(ss::READY));

    // give up: every attempt fails; attempts reset at the last handshake, so 3 retries + 1
    r.srv = None;
    r.c.call(300, MutationType::Add, &["B"], None, "pending");
    r.c.socket_closed(300);
    r.run(300);
    let mut now = 300;
    let mut delays = Vec::new();
    while r.closed.is_none() {
        let at = r.c.next_deadline().expect("a deadline until it gives up");
        delays.push(at - now);
        now = at;
        r.c.tick(now);
        r.run(now);
        if r.closed.is_some() {
            break;
        }
        r.c.dial_failed(now, "connection refused", None);
        r.run(now);
        assert!(delays.len() < 10, "bounded");
    }
    assert_eq!(
        r.closed,
        Some(Error::ConnRetryFailed {
            attempts: 4,
            last: "connection refused".into()
        })
    );
    // jittered doubling up to the cap: [50,150), [100,300), [200,600) with a 400 cap
    assert_eq!(delays.len(), 3, "{delays:?}");
    assert!((50..150).contains(&delays[0]) && (100..300).contains(&delays[1]) && (200..600).contains(&delays[2]));
    assert!(r.is(ss::CONN_RETRY_FAILED) && !r.is(ss::START));
    assert_eq!(
        r.done.last(),
        Some(&(
            "pending",
            Err(Error::ConnRetryFailed {
                attempts: 4,
                last: "connection refused".into()
            })
        ))
    );
    assert_eq!(r.c.status(), Status::Closed);
    assert_eq!(r.c.next_deadline(), None);
    // closed for good: a call fails at once
    r.c.call(now, MutationType::Add, &["A"], None, "late");
    r.run(now);
    assert_eq!(r.done.last(), Some(&("late", Err(Error::Disposed))));
}

#[test]
fn attempts_go_round_the_endpoints_and_a_call_is_resent_on_the_next() {
    let mut r = Rig::new(7);
    r.c = Connection::new(ConnConfig {
        endpoints: 3,
        conn_retries: 10,
        ..cfg(7)
    });
    r.c.start(0);
    r.run(0);
    // endpoint 0 refuses, 1 answers
    r.c.dial_failed(1, "refused", None);
    r.run(1);
    let at = r.c.next_deadline().unwrap();
    r.c.tick(at);
    r.run(at);
    r.open(at + 1);
    assert_eq!(r.dialed, vec![0, 1]);
    assert_eq!(r.c.status(), Status::Ready);
    // endpoint 1 goes away with a call in flight: the call is resent on endpoint 2, runs once
    r.srv = None;
    r.c.call(at + 2, MutationType::Add, &["B"], None, "b");
    r.run(at + 2);
    r.c.socket_closed(at + 3);
    r.run(at + 3);
    let again = r.c.next_deadline().unwrap();
    r.c.tick(again);
    r.run(again);
    r.open(again + 1);
    assert_eq!(r.dialed, vec![0, 1, 2]);
    assert_eq!(r.done, vec![("b", Ok(Outcome::Executed))]);
    assert_eq!(r.w.tick("B"), 1, "ran once");
    // and round again: 2 → 0
    r.c.socket_closed(again + 2);
    r.run(again + 2);
    let next = r.c.next_deadline().unwrap();
    r.c.tick(next);
    r.run(next);
    assert_eq!(r.dialed, vec![0, 1, 2, 0]);
}

#[test]
fn the_jitter_follows_the_seed() {
    let delays = |seed: u64| -> Vec<u64> {
        let mut r = Rig::new(seed);
        r.c.start(0);
        r.run(0);
        let mut now = 0;
        let mut out = Vec::new();
        for _ in 0..3 {
            r.c.dial_failed(now, "refused", None);
            r.run(now);
            let at = r.c.next_deadline().unwrap();
            out.push(at - now);
            now = at;
            r.c.tick(now);
            r.run(now);
        }
        out
    };
    assert_eq!(delays(7), delays(7), "same seed, same delays");
    let spread: std::collections::BTreeSet<Vec<u64>> = (0..8).map(delays).collect();
    assert!(spread.len() > 1, "different seeds spread the reconnects: {spread:?}");
}

#[test]
fn a_call_without_a_reply_is_resent_then_times_out() {
    let mut r = Rig::new(1);
    r.c.start(0);
    r.run(0);
    r.open(1);
    // the server stops answering this call (its reply is lost) but is alive: it keeps sending
    // (here: a Sync's answer each time the client resends), so the link is not presumed dead
    let sync_answer = |r: &mut Rig, now: u64| {
        let sync = amrpc_core::wire::ClientMsg::Sync {
            req: 9_000 + now as u32,
        }
        .encode()
        .unwrap();
        let out = r.srv.as_mut().unwrap().handle_frame(&sync, now, &r.w);
        for so in out {
            if let ServerOutput::Send(b) = so {
                r.c.frame(now, &b);
            }
        }
    };
    let srv = r.srv.take();
    r.c.call(10, MutationType::Add, &["A"], None, "slow");
    r.run(10);
    r.srv = srv;
    assert_eq!(r.c.next_deadline(), Some(1_010));
    sync_answer(&mut r, 900);
    let srv = r.srv.take();
    r.c.tick(1_010);
    r.run(1_010);
    assert_eq!(r.lost, 2, "resent once (same frame)");
    assert!(r.is(ss::RETRYING_CALL));
    r.srv = srv;
    sync_answer(&mut r, 1_900);
    r.c.tick(2_010);
    r.run(2_010);
    assert_eq!(r.done, vec![("slow", Err(Error::Timeout))]);
    assert!(r.is(ss::CALL_RETRY_FAILED));
    assert_eq!(
        r.c.status(),
        Status::Ready,
        "a call timeout does not drop a connection the server still talks on"
    );
}

#[test]
fn a_silent_connection_whose_call_ran_out_of_resends_is_replaced() {
    let mut r = Rig::new(2);
    r.c.start(0);
    r.run(0);
    r.open(1);
    // half-open: nothing the client sends arrives, nothing comes back, the socket stays up
    let srv = r.srv.take();
    r.c.call(10, MutationType::Add, &["A"], None, "lost");
    r.run(10);
    r.c.tick(1_010);
    r.run(1_010);
    assert_eq!(r.lost, 2, "resent once on the silent socket");
    assert_eq!(r.c.status(), Status::Ready, "a slow server gets its resends first");
    // out of resends with nothing heard all along: the call times out, the socket is replaced
    r.c.tick(2_010);
    r.run(2_010);
    assert_eq!(r.done, vec![("lost", Err(Error::Timeout))]);
    assert_eq!(r.c.status(), Status::Disconnected, "the dead socket was dropped");
    drop(srv);
    let at = r.c.next_deadline().expect("a reconnect is scheduled");
    r.c.tick(at);
    r.run(at);
    assert_eq!(r.dials, 2);
    r.open(at + 1);
    r.c.call(at + 2, MutationType::Add, &["A"], None, "next");
    r.run(at + 2);
    assert_eq!(
        r.done[1],
        ("next", Ok(Outcome::Executed)),
        "later calls use the new connection"
    );
}

#[test]
fn a_socket_without_a_welcome_is_dropped_at_the_dial_timeout() {
    let mut r = Rig::new(3);
    r.c.start(0);
    r.run(0);
    // the socket opens but the Hello (or the Welcome) is lost
    r.c.opened(5);
    r.run(5);
    assert_eq!(r.c.next_deadline(), Some(505), "the Welcome is due within conn_timeout");
    r.c.tick(505);
    r.run(505);
    assert_eq!(r.c.status(), Status::Disconnected);
    let at = r.c.next_deadline().unwrap();
    r.c.tick(at);
    r.run(at);
    r.open(at + 1);
    assert_eq!(r.c.status(), Status::Ready, "the next attempt gets in");
}

#[test]
fn a_dial_that_hangs_times_out_and_is_retried() {
    let mut r = Rig::new(3);
    r.c.start(0);
    r.run(0);
    r.c.tick(499);
    r.run(499);
    assert_eq!(r.dials, 1);
    r.c.tick(500);
    r.run(500);
    assert_eq!(r.c.status(), Status::Disconnected);
    let at = r.c.next_deadline().unwrap();
    r.c.tick(at);
    r.run(at);
    assert_eq!(r.dials, 2);
}

#[test]
fn final_failures_close_at_once() {
    // a malformed URL (or no WebSocket implementation): no retries
    let mut r = Rig::new(5);
    r.c.call(0, MutationType::Add, &["A"], None, "early");
    r.c.start(0);
    r.run(0);
    assert_eq!(r.done, vec![("early", Err(Error::NotConnected))], "no mirror yet");
    r.c.dial_failed(1, "not a WebSocket URL", Some(ErrorCode::InvalidUrl));
    r.run(1);
    assert_eq!(r.closed.as_ref().map(Error::code), Some(ErrorCode::InvalidUrl));
    assert_eq!((r.dials, r.c.next_deadline()), (1, None));

    // a final refusal from the server (a Bye with AccessDenied): no retries either
    let mut r = Rig::new(6);
    r.c.start(0);
    r.run(0);
    r.open(1);
    let bye = r.srv.as_mut().unwrap().shutdown(ErrorCode::AccessDenied, "go away");
    for o in bye {
        if let ServerOutput::Send(b) = o {
            r.c.frame(2, &b);
        }
    }
    r.run(2);
    assert_eq!(r.closed.as_ref().map(Error::code), Some(ErrorCode::AccessDenied));
    assert_eq!((r.dials, r.c.next_deadline(), r.c.status()), (1, None, Status::Closed));

    // a recoverable goodbye (shutting down) reconnects
    let mut r = Rig::new(8);
    r.c.start(0);
    r.run(0);
    r.open(1);
    let bye = r.srv.as_mut().unwrap().shutdown(ErrorCode::ShuttingDown, "restart");
    for o in bye {
        if let ServerOutput::Send(b) = o {
            r.c.frame(2, &b);
        }
    }
    r.run(2);
    assert!(r.closed.is_none());
    assert_eq!(r.c.status(), Status::Disconnected);
    let at = r.c.next_deadline().unwrap();
    r.c.tick(at);
    r.run(at);
    r.open(at);
    assert_eq!(r.c.status(), Status::Ready);
}

#[test]
fn close_says_bye_and_fails_pending_calls() {
    let mut r = Rig::new(9);
    r.c.start(0);
    r.run(0);
    r.open(1);
    let srv = r.srv.take();
    r.c.call(5, MutationType::Add, &["A"], None, "unanswered");
    r.run(5);
    r.srv = srv;
    r.c.close();
    r.run(6);
    assert_eq!(r.done, vec![("unanswered", Err(Error::Disposed))]);
    assert_eq!(r.closed, Some(Error::Disposed));
    assert!(r.srv.is_none(), "the socket was closed");
    assert!(!r.is(ss::START));
    // unknown states fail at once, never reaching the wire
    let mut r = Rig::new(10);
    r.c.start(0);
    r.run(0);
    r.open(1);
    r.c.call(2, MutationType::Add, &["Nope"], None, "typo");
    r.run(2);
    assert_eq!(r.done, vec![("typo", Err(Error::StateUnknown("Nope".into())))]);
}

#[test]
fn no_sync_mutations_run_once_without_replies_and_sync_catches_up() {
    let mut r = Rig::new(11);
    r.c.start(0);
    r.run(0);
    assert_eq!(
        r.c.notify(MutationType::Add, &["A"], None),
        Err(Error::NotConnected),
        "no mirror yet"
    );
    r.open(1);
    let mirror = r.c.mirror().unwrap().clone();
    // pushes are off in the rig: a no-sync mutation runs on the worker, nothing comes back
    r.c.notify(MutationType::Add, &["A"], None).unwrap();
    r.c.notify(MutationType::Add, &["B"], None).unwrap();
    r.run(2);
    assert!(r.w.is(&["A", "B"]), "ran on the worker");
    assert!(mirror.not1("A"), "no reply, no push");
    assert_eq!(r.c.calls_in_flight(), 0, "nothing pending, nothing to resend");
    assert_eq!(r.replay.outcome(amrpc_core::session::replay_key("driver", 77), 0), None);
    assert_eq!(
        r.c.notify(MutationType::Add, &["Nope"], None),
        Err(Error::StateUnknown("Nope".into()))
    );
    // sync: the full clock, after both
    r.c.sync("sync");
    r.run(3);
    assert_eq!(r.done, vec![("sync", Ok(Outcome::Executed))]);
    assert!(mirror.is(&["A", "B"]));
    assert_eq!(mirror.time(None), r.w.time(None));
    // closed: no-sync mutations fail at once
    r.c.close();
    r.run(4);
    assert_eq!(r.c.notify(MutationType::Add, &["A"], None), Err(Error::Disposed));
}
