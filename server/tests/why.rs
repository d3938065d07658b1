//! Why a mutation was canceled, end to end: in the native mirror's reply, through a relay, and
//! printed by the `amrpc repl` binary.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use amrpc_client::{Client, ClientOpts};
use amrpc_core::{Api, Handlers, Machine, MutationType, Opts, Outcome, State, Why, schema, states, struct_merge};
use amrpc_server::{Server, ServerOpts};

mod relay_support;

fn worker() -> Machine {
    let own = schema([
        ("Online", State::new()),
        ("Downloading", State::new().require(&["Online"])),
        ("Paused", State::new().remove(&["Downloading"])),
        ("Locked", State::new()),
    ]);
    let m = Machine::new(struct_merge(&[&states::worker_schema(), &own]), Opts::default()).unwrap();
    let mut names: Vec<&str> = states::WORKER_STATES.to_vec();
    names.extend(["Online", "Downloading", "Paused", "Locked"]);
    m.verify_states(&names).unwrap();
    m.bind_handlers(Handlers::new("guard").enter("Locked", |_| false))
        .unwrap();
    m
}

async fn check_reasons(m: &amrpc_client::Mirror) {
    let r = m.mutate_why(MutationType::Add, &["Downloading"], None).await.unwrap();
    assert_eq!(
        r,
        (
            Outcome::Canceled,
            Some(Why::Requires {
                state: "Downloading".into(),
                missing: "Online".into()
            })
        )
    );
    let (o, w) = m.mutate_why(MutationType::Add, &["Locked"], None).await.unwrap();
    assert_eq!(o, Outcome::Canceled);
    assert_eq!(w.unwrap().to_string(), "LockedEnter returned false");
    assert_eq!(
        m.mutate_why(MutationType::Add, &["Online", "Paused"], None)
            .await
            .unwrap(),
        (Outcome::Executed, None)
    );
    let (o, w) = m.mutate_why(MutationType::Add, &["Downloading"], None).await.unwrap();
    assert_eq!(o, Outcome::Canceled);
    assert_eq!(w.unwrap().to_string(), "Downloading removed by Paused");
    // the plain calls are unchanged
    assert_eq!(m.add1("Downloading", None).await, Ok(Outcome::Canceled));
    assert_eq!(m.remove1("Paused", None).await, Ok(Outcome::Executed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_mirror_gets_the_reason_in_the_reply() {
    let srv = Server::new(ServerOpts::default());
    srv.add_worker("w", worker()).unwrap();
    let addr = srv.spawn("127.0.0.1:0").await.unwrap();
    let c = Client::connect(&format!("ws://{addr}/ws/w"), ClientOpts::default())
        .await
        .unwrap();
    check_reasons(c.mirror()).await;
    c.close().await;
    srv.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_passes_the_reason_on() {
    let r = relay_support::relayed(worker()).await;
    let leaf = Client::connect(&r.leaf_url(), ClientOpts::default()).await.unwrap();
    check_reasons(leaf.mirror()).await;
    leaf.close().await;
    r.shutdown().await;
}

/// Kills the child on drop (a failed assertion must not leave a server running).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_repl_prints_why_a_mutation_was_canceled() {
    let bin = env!("CARGO_BIN_EXE_amrpc");
    let mut srv = Child(
        Command::new(bin)
            .arg("serve-test")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(srv.0.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("serve-test printed its URLs").unwrap();
        if let Some(u) = line.strip_prefix("AMRPC_TEST_URL=") {
            break u.to_string();
        }
    };
    let mut repl = Child(
        Command::new(bin)
            .args(["repl", &format!("{url}/ws/downloads")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // the downloads worker changes by itself: take it offline first (Downloading goes with it)
    repl.0
        .stdin
        .take()
        .unwrap()
        .write_all(b"remove Online\nadd Downloading\nquit\n")
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = repl.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(out), &mut s);
        let _ = tx.send(s);
    });
    let text = rx.recv_timeout(Duration::from_secs(30)).expect("the repl quit");
    assert!(
        text.contains("canceled: Downloading requires Online"),
        "repl output:\n{text}"
    );
}
