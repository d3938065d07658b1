//! Typed args per state (`schema!` `args: T`): typed mutations, typed handler args, and a clear
//! `InvalidArgs` for a wrong shape. (A wrong type at a call site is a compile error: the
//! `compile_fail` doctest in `shared/src/typed.rs`.)

use std::sync::{Arc, Mutex};

use amrpc_core::{ApiTyped, Error, Handlers, Machine, Outcome, TypedState, typed_args};
use serde::{Deserialize, Serialize};

/// Downloading's args.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fetch {
    url: String,
    retries: u8,
}

/// Progressing's args.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    percent: f64,
}

amrpc_core::schema! {
    /// A download.
    pub mod dl {
        Online: {},
        Downloading: { require: [Online], args: Fetch },
        Progressing: { multi: true, args: Progress, require: [Downloading] },
    }
}

/// What the typed handler saw.
type Seen = Arc<Mutex<Vec<Result<Fetch, Error>>>>;

fn machine() -> (Machine, Seen) {
    let m = Machine::new(dl::schema(), Default::default()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    m.bind_handlers(Handlers::new("app").enter(dl::Downloading, move |e| {
        let a = e.typed_args::<dl::typed::Downloading>();
        let ok = a.is_ok();
        s.lock().unwrap().push(a);
        ok
    }))
    .unwrap();
    (m, seen)
}

#[test]
fn markers_name_their_states() {
    assert_eq!(<dl::typed::Downloading as TypedState>::NAME, dl::Downloading);
    assert_eq!(<dl::typed::Progressing as TypedState>::NAME, "Progressing");
}

#[test]
fn typed_mutations_reach_typed_handlers() {
    let (m, seen) = machine();
    m.add1(dl::Online, None);
    let f = Fetch {
        url: "https://x".into(),
        retries: 2,
    };
    assert_eq!(m.add1_typed::<dl::typed::Downloading>(&f), Ok(Outcome::Executed));
    assert_eq!(seen.lock().unwrap().as_slice(), &[Ok(f.clone())]);
    // the same through the Api trait (what mirrors implement)
    m.remove1(dl::Downloading, None);
    let r = futures::executor::block_on(ApiTyped::add1_typed::<dl::typed::Downloading>(&m, &f));
    assert_eq!(r, Ok(Outcome::Executed));
    // the Args form is plain (what goes on the wire)
    let a = typed_args::<dl::typed::Downloading>(&f).unwrap();
    assert_eq!(a.get("url").and_then(|v| v.as_str()), Some("https://x"));
}

#[test]
fn a_wrong_shape_is_a_clear_typed_error() {
    let (m, seen) = machine();
    m.add1(dl::Online, None);
    // untyped caller sends the wrong shape: the handler gets InvalidArgs naming state and field
    let bad = amrpc_core::Args::new().with("url", "https://x");
    assert_eq!(m.add1(dl::Downloading, Some(bad)), Outcome::Canceled);
    let got = seen.lock().unwrap().pop().unwrap();
    match got {
        Err(Error::InvalidArgs(msg)) => {
            assert!(msg.contains("Downloading") && msg.contains("retries"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
}
