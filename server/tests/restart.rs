//! Restarts of the server process mid-traffic (issue 12, must-show 2). The `amrpc serve-journal`
//! binary serves a worker whose `Inc` handler appends each call's id to a journal file before
//! the reply leaves, so every execution is on record even when the process is killed. Four
//! clients keep calls in flight while the server is
//! - killed (SIGKILL, no snapshot) and started again: the worker starts over with a new replay
//!   memory; calls the clients had sent fail with `MayNotHaveRun`, never run twice;
//! - stopped (SIGTERM) with `--state-dir` and started again: the clock and the replay memory
//!   come back, so calls in flight are resent and each still runs once (no `MayNotHaveRun`).
//!
//! In both: no id is in the journal twice, every call a client saw succeed is in it, and every
//! mirror converges to the restarted worker's clock.
mod rpc_support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use amrpc_client::{Client, ClientOpts};
use amrpc_core::{Api, Args, Error, ErrorCode, Outcome, Value};
use rpc_support::within;
use tokio::sync::Mutex;

const CLIENTS: usize = 4;
const IN_FLIGHT: usize = 4;
const LIMIT: Duration = Duration::from_secs(90);

struct Proc {
    child: Child,
}

impl Proc {
    fn start(addr: &str, journal: &Path, state_dir: Option<&Path>) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_amrpc"));
        cmd.args(["serve-journal", "--addr", addr, "--journal"]).arg(journal);
        if let Some(d) = state_dir {
            cmd.arg("--state-dir").arg(d);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn amrpc");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.starts_with("amrpc serving on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20)).expect("the server starts");
        Proc { child }
    }

    /// SIGTERM (a planned stop: snapshots are written) and wait for the exit.
    fn stop(mut self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "a clean exit after SIGTERM: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: a crash.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn journal_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("amrpc-restart-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[derive(Default, Debug)]
struct Results {
    ok: Vec<String>,
    may_not: Vec<String>,
    other: Vec<(String, String)>,
}

/// Four clients calling `Inc` with unique ids until `stop`, a few calls in flight each.
async fn traffic(
    url: &str,
    stop: Arc<AtomicBool>,
) -> (Vec<Client>, Vec<tokio::task::JoinHandle<()>>, Arc<Mutex<Results>>) {
    let results = Arc::new(Mutex::new(Results::default()));
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    for k in 0..CLIENTS {
        let c = Client::connect(
            url,
            ClientOpts {
                client_id: format!("restart-{k}"),
                call_timeout: Duration::from_millis(500),
                conn_retry_delay: Duration::from_millis(50),
                conn_retry_backoff: Duration::from_millis(300),
                conn_retries: 200,
                ..Default::default()
            },
        )
        .await
        .expect("connects");
        for lane in 0..IN_FLIGHT {
            let (m, stop, results) = (c.mirror().clone(), stop.clone(), results.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let id = format!("c{k}-l{lane}-{n}");
                    let args = Args::new().with("id", Value::Str(id.clone()));
                    let r = m.add1("Inc", Some(args)).await;
                    let mut res = results.lock().await;
                    match r {
                        // queued behind another client's call: it runs when the queue drains
                        Ok(Outcome::Executed | Outcome::Queued(_)) => res.ok.push(id),
                        Err(Error::Rpc {
                            code: ErrorCode::MayNotHaveRun,
                            ..
                        }) => res.may_not.push(id),
                        other => res.other.push((id, format!("{other:?}"))),
                    }
                }
            }));
        }
        clients.push(c);
    }
    (clients, tasks, results)
}

async fn restart_case(tag: &str, planned: bool) {
    let dir = tmp_dir(tag);
    let journal = dir.join("journal.txt");
    let state = planned.then(|| dir.join("state"));
    let addr = free_addr();
    let url = format!("ws://{addr}/ws/journal");
    let server = Proc::start(&addr, &journal, state.as_deref());
    let stop = Arc::new(AtomicBool::new(false));
    let (clients, tasks, results) = traffic(&url, stop.clone()).await;

    // mid-traffic: once some calls ran, take the server down and start it again
    within(Duration::from_secs(20), "traffic before the restart", async {
        while journal_ids(&journal).len() < 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let ran_before = journal_ids(&journal).len();
    let t0 = Instant::now();
    if planned {
        server.stop();
        assert!(
            state.as_ref().unwrap().join("journal.json").exists(),
            "snapshot written"
        );
    } else {
        server.kill();
    }
    let server = Proc::start(&addr, &journal, state.as_deref());
    let before_more = journal_ids(&journal).len();
    let resumed = tokio::time::timeout(Duration::from_secs(30), async {
        while journal_ids(&journal).len() < before_more + 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if resumed.is_err() {
        let res = results.lock().await;
        panic!(
            "{tag}: no traffic after the restart; results so far: {} ok, {} MayNotHaveRun, other: {:?}",
            res.ok.len(),
            res.may_not.len(),
            &res.other[..res.other.len().min(5)]
        );
    }
    let resumed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        within(Duration::from_secs(30), "a client's last call ends", t)
            .await
            .unwrap();
    }

    // the record: no id twice; every success ran
    let ids = journal_ids(&journal);
    let mut seen = HashMap::new();
    for id in &ids {
        *seen.entry(id.as_str()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{tag}: ran twice: {twice:?}");
    let ran: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let res = results.lock().await;
    let missing: Vec<_> = res.ok.iter().filter(|id| !ran.contains(id.as_str())).collect();
    assert!(
        missing.is_empty(),
        "{tag}: reported executed but never ran: {missing:?}"
    );
    let may_not_ran = res.may_not.iter().filter(|id| ran.contains(id.as_str())).count();
    assert!(
        res.other.is_empty(),
        "{tag}: other results: {:?}",
        &res.other[..res.other.len().min(5)]
    );
    if planned {
        assert!(
            res.may_not.is_empty(),
            "{tag}: with the replay memory kept, every call is answered once"
        );
    }

    // every mirror converges to the restarted worker's clock
    let observer = Client::connect(&url, ClientOpts::default()).await.expect("observer");
    let now = observer.mirror().time(None);
    for c in &clients {
        c.mirror().sync().await.unwrap();
        assert_eq!(c.mirror().time(None), now, "{tag}: a mirror converged");
    }
    let inc = observer.mirror().tick("Inc");
    if planned {
        // the clock came back: every run of the whole test is in it (Multi: 2 per run, -1)
        assert_eq!(inc, 2 * ids.len() as u64 - 1, "{tag}: the clock survived the restart");
    } else {
        assert!(inc < 2 * ids.len() as u64 - 1, "{tag}: a fresh clock after the crash");
    }
    eprintln!(
        "{tag}: {} runs ({ran_before} before the restart), {} ok, {} MayNotHaveRun ({may_not_ran} of them had run), \
         back to traffic {resumed:?} after the restart began",
        ids.len(),
        res.ok.len(),
        res.may_not.len()
    );
    drop(res);
    observer.close().await;
    for c in clients {
        c.close().await;
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_without_a_snapshot_never_runs_a_call_twice() {
    within(LIMIT, "crash", restart_case("crash", false)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_restart_with_a_snapshot_keeps_the_clock_and_answers_once() {
    within(LIMIT, "planned", restart_case("planned", true)).await
}
