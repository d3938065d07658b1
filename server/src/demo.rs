//! Demo workers for `amrpc serve`: upstream's benchmark worker, and a download manager whose
//! states move by themselves, so a page shows live pushes.

use std::time::Duration;

use amrpc_core::{Args, Error, Handlers, Machine, Opts, State, Value, schema, struct_merge};

use crate::states;

amrpc_core::schema! {
    /// A download manager: phases exclude each other, progress re-enters while downloading.
    pub mod dl {
        Online: {},
        Queued: { remove: [Downloading, Paused, Done, Failed] },
        Downloading: { require: [Online], remove: [Queued, Paused, Done, Failed] },
        Paused: { remove: [Queued, Downloading, Done, Failed] },
        Done: { remove: [Queued, Downloading, Paused, Failed] },
        Failed: { remove: [Queued, Downloading, Paused, Done] },
        Progress: { multi: true, require: [Downloading] },
        Verifying: { auto: true, require: [Done] },
        Verified: { require: [Done] },
    }
}

/// The download manager's state order (worker states first, as upstream lists them).
pub fn download_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = dl::NAMES.to_vec();
    names.extend(states::WORKER_STATES);
    names
}

/// A served download manager. While `Downloading`, a background task adds `Progress` every
/// `step` until 100 %, then `Done`; `Verifying` (auto) then leads to `Verified`. Needs a tokio
/// runtime.
pub fn download_worker(step: Duration) -> Result<Machine, Error> {
    let m = Machine::new(
        struct_merge(&[&states::worker_schema(), &dl::schema()]),
        Opts {
            id: Some("downloads".into()),
            ..Default::default()
        },
    )?;
    m.verify_states(&download_names())?;
    m.bind_handlers(
        Handlers::new("downloads")
            .state(dl::Downloading, move |e| {
                let m = e.machine().clone();
                let ctx = m.new_state_ctx(dl::Downloading);
                tokio::spawn(async move {
                    let mut pct: i64 = 0;
                    while pct < 100 {
                        tokio::select! {
                            () = tokio::time::sleep(step) => {}
                            () = ctx.canceled() => return,
                        }
                        pct += 10;
                        m.add1(dl::Progress, Some(Args::new().with("pct", Value::Int(pct))));
                    }
                    m.add1(dl::Done, None);
                });
            })
            .state(dl::Verifying, move |e| {
                let m = e.machine().clone();
                tokio::spawn(async move {
                    tokio::time::sleep(step).await;
                    m.remove1(dl::Verifying, None);
                    m.add1(dl::Verified, None);
                });
            }),
    )?;
    m.add1(dl::Online, None);
    m.add1(dl::Queued, None);
    Ok(m)
}

/// A small schema for examples and tests: `A`–`D` plus the worker states.
pub fn abcd_worker() -> Result<Machine, Error> {
    let own = schema([
        ("A", State::new()),
        ("B", State::new()),
        ("C", State::new()),
        ("D", State::new()),
    ]);
    let m = Machine::new(struct_merge(&[&states::worker_schema(), &own]), Opts::default())?;
    let mut names = vec!["A", "B", "C", "D"];
    names.extend(states::WORKER_STATES);
    m.verify_states(&names)?;
    Ok(m)
}
