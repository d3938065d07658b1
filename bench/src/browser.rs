//! The browser figure: the wasm client (`client-wasm`, built by wasm-pack into `target/npm/web`)
//! in headless Chromium runs upstream's client loop against a local server with
//! `demo::bench_worker`: `whenTicksEq(Event, +2)`, `switch(Values)`, `add1("CallOp", {Op})`
//! per op, each op one remote mutation. The page posts its timing back to `/result`.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amrpc_core::demo;
use amrpc_server::{Server, ServerOpts};
use axum::extract::State;
use axum::routing::{get, post};
use tokio::sync::oneshot;

/// The page: loads the wasm package from `/pkg`, runs `n` ops (`?n=`), posts the result.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>amrpc browser bench</title></head>
<body><pre id="out">running…</pre>
<script type="module">
const report = (o) => fetch('/result', { method: 'POST', body: JSON.stringify(o) });
try {
  const n = Number(new URLSearchParams(location.search).get('n') || 10000);
  const { default: init, connect } = await import('/pkg/amrpc.js');
  await init();
  const m = await connect(`ws://${location.host}/ws/bench`, { clientId: 'browser-bench', reconnect: false });
  const VALUES = ['Value1', 'Value2', 'Value3'];
  let ticks = m.tick('Event');
  const t0 = performance.now();
  let r = await m.add1('Start');
  if (r !== 'executed') throw new Error('add1(Start): ' + r);
  let i = 0;
  for (;;) {
    await m.whenTicksEq('Event', ticks + 2);
    ticks += 2;
    if (++i > n) break;
    const op = VALUES.indexOf(m.switch(VALUES)) + 1;
    if (op < 1) throw new Error('op ' + i + ': no value active');
    r = await m.add1('CallOp', { Op: op });
    if (r !== 'executed') throw new Error('op ' + i + ': add1(CallOp): ' + r);
  }
  const ms = performance.now() - t0;
  m.close();
  document.getElementById('out').textContent = `${n} ops in ${ms} ms`;
  await report({ ops: n, ms, userAgent: navigator.userAgent });
} catch (e) {
  await report({ error: String((e && e.stack) || e) });
}
</script></body></html>
"#;

/// The browser figure.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct BrowserResult {
    /// Ops (remote mutations) done.
    pub(crate) ops: u64,
    /// Milliseconds, from just before `add1(Start)` to the last op (performance.now()).
    pub(crate) ms: f64,
    /// Remote mutations per second.
    pub(crate) per_sec: f64,
    /// Worker errors / successes at the end.
    pub(crate) errors: usize,
    /// Worker successes.
    pub(crate) successes: usize,
    /// The browser's user agent.
    pub(crate) user_agent: String,
}

type ResultTx = Arc<Mutex<Option<oneshot::Sender<serde_json::Value>>>>;

async fn result(State(tx): State<ResultTx>, body: String) -> &'static str {
    let v = serde_json::from_str(&body).unwrap_or_else(|_| serde_json::json!({ "error": body }));
    if let Some(tx) = tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = tx.send(v);
    }
    "ok"
}

/// Serve the worker, the package and the page, open the page in headless Chromium, wait for its
/// result (at most `limit`).
pub(crate) async fn run(pkg: &Path, chromium: &str, n: usize, limit: Duration) -> Result<BrowserResult, String> {
    if !pkg.join("amrpc.js").is_file() || !pkg.join("amrpc_bg.wasm").is_file() {
        return Err(format!(
            "no wasm package in {} (build it: . scripts/web/tools.sh && amrpc_ensure_wasm_tools && amrpc_ensure_pkg web)",
            pkg.display()
        ));
    }
    let (m, worker) = demo::bench_worker(13).map_err(|e| e.to_string())?;
    let srv = Server::new(ServerOpts {
        // a benchmark client sends as fast as it can: no per-session rate limit
        mutation_rate: 0,
        ..Default::default()
    });
    srv.add_worker("bench", m.clone()).map_err(|e| e.to_string())?;
    let (tx, rx) = oneshot::channel();
    let tx: ResultTx = Arc::new(Mutex::new(Some(tx)));
    let router = srv
        .router()
        .route("/bench.html", get(|| async { axum::response::Html(PAGE) }))
        .route("/result", post(result).with_state(tx))
        .nest_service("/pkg", tower_http::services::ServeDir::new(pkg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let s2 = srv.clone();
    tokio::spawn(async move { s2.serve_router(listener, router).await });
    let profile = std::env::temp_dir().join(format!("amrpc-bench-chromium-{}", std::process::id()));
    let mut browser = tokio::process::Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://{addr}/bench.html?n={n}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{chromium}: {e}"))?;
    let got = tokio::time::timeout(limit, rx).await;
    let _ = browser.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), browser.wait()).await;
    let _ = std::fs::remove_dir_all(&profile);
    srv.shutdown();
    let (errors, successes) = (worker.errors(), worker.successes());
    worker.unsubscribe();
    m.dispose();
    let v = match got {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => return Err("the result channel closed".into()),
        Err(_) => return Err(format!("no result from the page within {limit:?}")),
    };
    if let Some(e) = v.get("error") {
        return Err(format!("the page failed: {}", e.as_str().unwrap_or(&e.to_string())));
    }
    let ops = v.get("ops").and_then(|x| x.as_u64()).ok_or("no ops in the result")?;
    let ms = v.get("ms").and_then(|x| x.as_f64()).ok_or("no ms in the result")?;
    Ok(BrowserResult {
        ops,
        ms,
        per_sec: ops as f64 / (ms / 1e3),
        errors,
        successes,
        user_agent: v.get("userAgent").and_then(|x| x.as_str()).unwrap_or("").to_string(),
    })
}
