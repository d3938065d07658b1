//! A tour of the machine: typed schema, relations, handlers, waits and the clock.
//! Run: `cargo run -p amrpc-core --example demo`

use amrpc_core::{Args, Handlers, LogLevel, Machine, Opts, Outcome};

amrpc_core::schema! {
    /// A download: it needs a connection, and exactly one of its phases is active.
    pub mod ss {
        Connected: {},
        Downloading: { require: [Connected], remove: [Paused, Done] },
        Paused: { remove: [Downloading, Done] },
        Done: { remove: [Downloading, Paused] },
        Progress: { multi: true, require: [Downloading] },
        Retry: { auto: true, require: [Connected, Paused] },
    }
}

fn main() {
    let m = Machine::new(ss::schema(), Opts::default()).expect("valid schema");
    let mut names: Vec<&str> = ss::NAMES.to_vec();
    names.push(ss::Exception);
    m.verify_states(&names).expect("all states listed");
    m.set_logger_simple(|line| println!("  log: {line}"), LogLevel::Changes);

    let h = Handlers::new("demo")
        .enter(ss::Downloading, |e| {
            // negotiation: refuse without a URL
            e.args().get("url").is_some()
        })
        .state(ss::Progress, |e| {
            let pct = e.args().get("pct").and_then(|v| v.as_int()).unwrap_or(0);
            if pct >= 100 {
                e.machine().add1(ss::Done, None); // queued, runs after this transition
            }
        });
    m.bind_handlers(h).expect("handlers name known states");

    println!("{}", m.string_all());
    println!("Downloading without a connection: {}", m.add1(ss::Downloading, None));
    m.add1(ss::Connected, None);
    println!("Downloading without a url: {}", m.add1(ss::Downloading, None));
    let args = Args::new().with("url", "https://example.invalid/file");
    assert_eq!(m.add1(ss::Downloading, Some(args)), Outcome::Executed);

    let done = m.when1(ss::Done, None);
    for pct in [10, 60, 100] {
        m.add1(ss::Progress, Some(Args::new().with("pct", pct)));
        println!("progress {pct}%: {}", m.string());
    }
    assert!(done.is_ready(), "Done was reached inside the last call's queue drain");
    println!("{}", m.string_all());
    println!("Progress ticks: {} (Multi: +2 per re-entry)", m.tick(ss::Progress));
    print!("{}", m.inspect(Some(&[ss::Downloading, ss::Retry])));
    m.dispose();
}
