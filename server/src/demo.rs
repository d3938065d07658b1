//! Demo workers for `amrpc serve`: upstream's benchmark worker, and a download manager whose
//! states move by themselves, so a page shows live pushes.

use std::time::Duration;

use amrpc_core::{Args, Error, Handlers, Machine, Opts, State, Value, schema, struct_merge};

use amrpc_core::states;

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
        Verified: { require: [Done], remove: [Verifying] },
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
                    // Verified removes Verifying and keeps the auto state from coming back
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

/// The worker the browser and Node tests run against: `A`–`D` plus `Ping` (sends a `pong`
/// payload with the `data` arg to every client) and `Kick` (the server closes every session;
/// clients reconnect and resync).
pub fn test_worker(server: &crate::Server, name: &str) -> Result<crate::Worker, crate::ServerError> {
    let own = schema([
        ("A", State::new()),
        ("B", State::new()),
        ("C", State::new().require(&["A"])),
        ("D", State::new().multi()),
        ("Ping", State::new().multi()),
        ("Kick", State::new().multi()),
    ]);
    let m = Machine::new(
        struct_merge(&[&states::worker_schema(), &own]),
        Opts {
            id: Some(name.to_string()),
            ..Default::default()
        },
    )?;
    let mut names = vec!["A", "B", "C", "D", "Ping", "Kick"];
    names.extend(states::WORKER_STATES);
    m.verify_states(&names)?;
    let worker = server.add_worker(name, m.clone())?;
    let w2 = worker.clone();
    m.bind_handlers(
        Handlers::new("test")
            .state("Ping", |e| {
                let data = e.args().get("data").cloned().unwrap_or(Value::Str("pong".into()));
                let data = match data {
                    Value::Bytes(b) => Value::Bytes(b),
                    other => Value::Bytes(other.to_log_string().into_bytes()),
                };
                let args = Args::new().with("name", "pong").with("data", data);
                e.machine().add1(states::SEND_PAYLOAD, Some(args));
            })
            .state("Kick", move |_e| w2.kick()),
    )?;
    Ok(worker)
}

/// Two workers for queue-tick tests of the clients (`whenQueue`): on `name`, `Hold`'s handler
/// blocks its worker's queue until `Release` is added on `<name>-ctl` (or 10 s pass), so a client
/// can get a mutation `Queued` behind it and wait for its queue tick; `Job` (Multi) and `Done`
/// are free states. The handler timeout is off (`Hold` blocks on purpose).
pub fn queue_workers(server: &crate::Server, name: &str) -> Result<(), crate::ServerError> {
    let own = schema([
        ("Hold", State::new()),
        ("Job", State::new().multi()),
        ("Done", State::new()),
    ]);
    let m = Machine::new(
        struct_merge(&[&states::worker_schema(), &own]),
        Opts {
            id: Some(name.to_string()),
            handler_timeout: Some(Duration::ZERO),
            ..Default::default()
        },
    )?;
    let mut names = vec!["Hold", "Job", "Done"];
    names.extend(states::WORKER_STATES);
    m.verify_states(&names)?;
    let ctl = Machine::new(
        struct_merge(&[&states::worker_schema(), &schema([("Release", State::new().multi())])]),
        Opts {
            id: Some(format!("{name}-ctl")),
            ..Default::default()
        },
    )?;
    let mut names = vec!["Release"];
    names.extend(states::WORKER_STATES);
    ctl.verify_states(&names)?;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = std::sync::Mutex::new(rx);
    m.bind_handlers(Handlers::new("hold").state("Hold", move |e| {
        // each Release lets one Hold through (one sent early lets the next Hold pass at once)
        let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            e.machine().log("Hold: no Release within 10 s");
        }
        e.machine().remove1("Hold", None);
    }))?;
    ctl.bind_handlers(Handlers::new("release").state("Release", move |_| {
        let _ = tx.send(());
    }))?;
    server.add_worker(name, m)?;
    server.add_worker(&format!("{name}-ctl"), ctl)?;
    Ok(())
}

/// How [`typed::Fetch`] retries (an enum, to show its TypeScript union).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// The same delay every time.
    Fixed,
    /// Doubling delays.
    Exponential,
}

/// The args of [`typed::Fetch`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, ts_rs::TS)]
pub struct FetchArgs {
    /// What to fetch.
    pub url: String,
    /// Attempts after the first.
    pub retries: u8,
    /// How to retry (a nested type: inlined into the state's TypeScript type).
    pub backoff: Backoff,
    /// An optional label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub label: Option<String>,
}

/// The args of [`typed::Tag`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, ts_rs::TS)]
pub struct TagArgs {
    /// The tag.
    pub name: String,
}

amrpc_core::schema! {
    /// The `typed` test worker: states with declared args types, for `amrpc types` and the
    /// TypeScript checks of the Node tests.
    pub mod typed {
        Fetch: { args: FetchArgs },
        Tag: { multi: true, args: TagArgs },
        Plain: {},
    }
}

/// The `typed` worker: [`typed`] plus the worker states; `Fetch`'s handler checks its args
/// (`Event::typed_args`) and cancels a wrong shape.
pub fn typed_worker() -> Result<Machine, Error> {
    let m = Machine::new(
        struct_merge(&[&states::worker_schema(), &typed::schema()]),
        Opts::default(),
    )?;
    let mut names = typed::NAMES.to_vec();
    names.extend(states::WORKER_STATES);
    m.verify_states(&names)?;
    m.bind_handlers(Handlers::new("typed").enter(typed::Fetch, |e| e.typed_args::<typed::typed::Fetch>().is_ok()))?;
    Ok(m)
}

/// The restart tests' worker (`amrpc serve-journal`): `Inc` (Multi) appends its `id` arg and a
/// newline to `journal` each time it runs, before the reply leaves — a record of every
/// execution that survives the process being killed. Nothing else.
pub fn journal_worker(journal: &std::path::Path) -> Result<Machine, Error> {
    use std::io::Write;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(journal)
        .map_err(|e| Error::InvalidArgs(format!("journal {}: {e}", journal.display())))?;
    let file = std::sync::Mutex::new(file);
    let m = Machine::new(
        struct_merge(&[&states::worker_schema(), &schema([("Inc", State::new().multi())])]),
        Opts {
            id: Some("journal".into()),
            ..Default::default()
        },
    )?;
    let mut names = vec!["Inc"];
    names.extend(states::WORKER_STATES);
    m.verify_states(&names)?;
    m.bind_handlers(Handlers::new("journal").state("Inc", move |e| {
        let id = e.args().get("id").and_then(Value::as_str).unwrap_or("?").to_string();
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(err) = writeln!(f, "{id}") {
            e.machine().add_err(Error::Other(format!("journal: {err}")), None);
        }
    }))?;
    Ok(m)
}
