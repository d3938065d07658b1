//! Why a mutation was canceled: every cause the machine reports, from the call and from the
//! transition a tracer sees.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amrpc_core::wire::WhyMsg;
use amrpc_core::{Handlers, Machine, MutationType, Opts, Outcome, State, Tracer, Transition, Why, schema};

fn downloads() -> Machine {
    Machine::new(
        schema([
            ("Online", State::new()),
            ("Offline", State::new().remove(&["Online", "Downloading"])),
            ("Queued", State::new().remove(&["Downloading"])),
            ("Downloading", State::new().require(&["Online"]).remove(&["Queued"])),
            ("Progress", State::new().multi().require(&["Downloading"])),
        ]),
        Opts::default(),
    )
    .unwrap()
}

fn why(m: &Machine, ty: MutationType, states: &[&str]) -> (Outcome, Option<Why>) {
    m.mutate_why(ty, states, None).unwrap()
}

#[test]
fn a_missing_requirement_is_named() {
    let m = downloads();
    let (o, w) = why(&m, MutationType::Add, &["Downloading"]);
    assert_eq!(o, Outcome::Canceled);
    let w = w.expect("a reason");
    assert_eq!(
        w,
        Why::Requires {
            state: "Downloading".into(),
            missing: "Online".into()
        }
    );
    assert_eq!(w.to_string(), "Downloading requires Online");
    // a chain: Progress requires Downloading (itself possible, but not called)
    let (_, w) = why(&m, MutationType::Add, &["Progress", "Online"]);
    assert_eq!(w.unwrap().to_string(), "Progress requires Downloading");
    // the first relation that dropped it counts: here the requirement, before Queued (active,
    // and excluding Downloading) is weighed
    assert_eq!(m.add1("Queued", None), Outcome::Executed);
    let (_, w) = why(&m, MutationType::Add, &["Downloading"]);
    assert_eq!(w.unwrap().to_string(), "Downloading requires Online");
}

#[test]
fn a_remove_relation_is_named() {
    let m = downloads();
    assert_eq!(m.add1("Offline", None), Outcome::Executed);
    // Offline is active and stays: it removes Online
    let (o, w) = why(&m, MutationType::Add, &["Online"]);
    assert_eq!(o, Outcome::Canceled);
    assert_eq!(
        w,
        Some(Why::Removed {
            state: "Online".into(),
            by: "Offline".into()
        })
    );
    assert_eq!(w.unwrap().to_string(), "Online removed by Offline");
    // two called states that exclude each other: the resolver keeps Downloading (it walks the
    // candidates newest first, and Queued is dropped before it can drop Downloading)
    let m = downloads();
    m.add1("Online", None);
    let (o, w) = why(&m, MutationType::Add, &["Downloading", "Queued"]);
    assert_eq!(o, Outcome::Canceled);
    assert_eq!(w.unwrap().to_string(), "Queued removed by Downloading");
}

#[test]
fn executed_and_queued_mutations_have_no_reason() {
    let m = downloads();
    assert_eq!(why(&m, MutationType::Add, &["Online"]), (Outcome::Executed, None));
    assert_eq!(why(&m, MutationType::Remove, &["Online"]), (Outcome::Executed, None));
    assert_eq!(
        why(&m, MutationType::Set, &["Online", "Downloading"]),
        (Outcome::Executed, None)
    );
    // from a handler: queued, no reason yet
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    m.bind_handlers(Handlers::new("h").state("Queued", move |e| {
        *s.lock().unwrap() = Some(
            e.machine()
                .mutate_why(MutationType::Add, &["Downloading"], None)
                .unwrap(),
        );
    }))
    .unwrap();
    m.add1("Queued", None);
    assert!(matches!(*seen.lock().unwrap(), Some((Outcome::Queued(_), None))));
}

#[test]
fn a_negotiation_handler_that_says_no_is_named() {
    let m = downloads();
    m.bind_handlers(Handlers::new("h").enter("Online", |_| false)).unwrap();
    let (o, w) = why(&m, MutationType::Add, &["Online"]);
    assert_eq!(o, Outcome::Canceled);
    assert_eq!(
        w,
        Some(Why::Handler {
            handler: "OnlineEnter".into()
        })
    );
    assert_eq!(w.unwrap().to_string(), "OnlineEnter returned false");
}

#[test]
fn a_panicking_handler_is_named() {
    let m = downloads();
    m.bind_handlers(Handlers::new("h").enter("Online", |_| panic!("no network")))
        .unwrap();
    let (o, w) = why(&m, MutationType::Add, &["Online"]);
    assert_eq!(o, Outcome::Canceled);
    assert_eq!(w.unwrap().to_string(), "OnlineEnter panicked");
}

static FAKE_NS: AtomicU64 = AtomicU64::new(0);

/// Every read moves the clock on by one second: every handler runs "too long".
fn slow_clock() -> u64 {
    FAKE_NS.fetch_add(1_000_000_000, Ordering::SeqCst)
}

#[test]
fn a_handler_past_the_timeout_is_named() {
    let opts = Opts {
        handler_timeout: Some(Duration::from_millis(100)),
        now: Some(slow_clock),
        ..Opts::default()
    };
    let m = Machine::new(schema([("A", State::new())]), opts).unwrap();
    m.bind_handlers(Handlers::new("h").enter("A", |_| true)).unwrap();
    let (o, w) = why(&m, MutationType::Add, &["A"]);
    assert_eq!(o, Outcome::Canceled);
    assert_eq!(
        w,
        Some(Why::Timeout {
            handler: "AEnter".into()
        })
    );
}

#[test]
fn refused_mutations_say_why() {
    let m = Machine::new(
        schema([("A", State::new())]),
        Opts {
            queue_limit: Some(0),
            ..Opts::default()
        },
    )
    .unwrap();
    assert_eq!(
        why(&m, MutationType::Add, &["A"]),
        (Outcome::Canceled, Some(Why::QueueFull))
    );
    let m = downloads();
    m.dispose();
    assert_eq!(
        why(&m, MutationType::Add, &["Online"]),
        (Outcome::Canceled, Some(Why::Disposed))
    );
    assert_eq!(
        m.mutate_indexes_why(MutationType::Add, &[0], None).unwrap(),
        (Outcome::Canceled, Some(Why::Disposed))
    );
}

#[test]
fn by_index_and_unknown_states() {
    let m = downloads();
    let i = m.index("Downloading").unwrap();
    let (o, w) = m.mutate_indexes_why(MutationType::Add, &[i], None).unwrap();
    assert_eq!(o, Outcome::Canceled);
    assert_eq!(w.unwrap().to_string(), "Downloading requires Online");
    assert!(m.mutate_why(MutationType::Add, &["Nope"], None).is_err());
    assert!(m.mutate_indexes_why(MutationType::Add, &[99], None).is_err());
}

#[derive(Default)]
struct Whys(Mutex<Vec<(bool, Option<String>)>>);

impl Tracer for Whys {
    fn transition_end(&self, t: &Transition) {
        self.0
            .lock()
            .unwrap()
            .push((t.accepted(), t.why().map(|w| w.to_string())));
    }
}

#[test]
fn a_tracer_sees_the_reason_of_queued_mutations() {
    let m = downloads();
    let tr = Arc::new(Whys::default());
    m.bind_tracer(tr.clone());
    m.bind_handlers(Handlers::new("h").state("Queued", |e| {
        e.machine().add1("Progress", None);
    }))
    .unwrap();
    m.add1("Queued", None);
    let got = tr.0.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![(true, None), (false, Some("Progress requires Downloading".to_string()))]
    );
}

#[test]
fn the_wire_form_round_trips() {
    let names: Vec<String> = downloads().state_names();
    for w in [
        Why::Requires {
            state: "Downloading".into(),
            missing: "Online".into(),
        },
        Why::Removed {
            state: "Online".into(),
            by: "Offline".into(),
        },
        Why::Handler {
            handler: "AEnter".into(),
        },
        Why::Timeout {
            handler: "AEnter".into(),
        },
        Why::Panic {
            handler: "AState".into(),
        },
        Why::Rejected { state: "Queued".into() },
        Why::Disposed,
        Why::QueueFull,
    ] {
        assert_eq!(WhyMsg::from_why(&w, &names).to_why(&names), w);
    }
    // an index the client doesn't know shows as such
    let m = WhyMsg::Requires(0, 77);
    assert_eq!(m.to_why(&names).to_string(), format!("{} requires #77", names[0]));
}
