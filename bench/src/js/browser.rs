//! The browser figure: the wasm package (`client-wasm`, built by wasm-pack into `target/npm/web`)
//! in headless Chromium runs `bench/js/loop.mjs` (the amrpc ops and the raw WebSocket echo, in the
//! same page, against the same server process). The page posts the loop's result to `/result`.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use tokio::sync::oneshot;

use super::{JsResult, JsServer, js_dir};

/// The page: loads the package from `/pkg` and the loop from `/js`, posts the result.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>amrpc browser bench</title></head>
<body><pre id="out">running…</pre>
<script type="module">
const report = (o) => fetch('/result', { method: 'POST', body: JSON.stringify(o) });
try {
  const q = new URLSearchParams(location.search);
  const { default: init, connect } = await import('/pkg/amrpc.js');
  const { run } = await import('/js/loop.mjs');
  await init();
  const out = await run({
    connect,
    WebSocketImpl: WebSocket,
    base: `ws://${location.host}`,
    n: Number(q.get('n')),
    rounds: Number(q.get('rounds')),
    now: () => performance.now(),
  });
  out.userAgent = navigator.userAgent;
  document.getElementById('out').textContent = JSON.stringify(out);
  await report(out);
} catch (e) {
  await report({ error: String((e && e.stack) || e) });
}
</script></body></html>
"#;

type ResultTx = Arc<Mutex<Option<oneshot::Sender<serde_json::Value>>>>;

async fn result(State(tx): State<ResultTx>, body: String) -> &'static str {
    let v = serde_json::from_str(&body).unwrap_or_else(|_| serde_json::json!({ "error": body }));
    if let Some(tx) = tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = tx.send(v);
    }
    "ok"
}

/// Serve the worker, the echo, the package and the page, open the page in headless Chromium,
/// wait for its result (at most `limit`).
pub(crate) async fn run(
    pkg: &Path,
    chromium: &str,
    n: usize,
    rounds: usize,
    limit: Duration,
) -> Result<JsResult, String> {
    if !pkg.join("amrpc.js").is_file() || !pkg.join("amrpc_bg.wasm").is_file() {
        return Err(format!(
            "no wasm package in {} (build it: . scripts/web/tools.sh && amrpc_ensure_wasm_tools && amrpc_ensure_pkg web)",
            pkg.display()
        ));
    }
    let (tx, rx) = oneshot::channel();
    let tx: ResultTx = Arc::new(Mutex::new(Some(tx)));
    let server = JsServer::start(|r| {
        r.route("/bench.html", get(|| async { axum::response::Html(PAGE) }))
            .route("/result", post(result).with_state(tx))
            .nest_service("/pkg", tower_http::services::ServeDir::new(pkg))
            .nest_service("/js", tower_http::services::ServeDir::new(js_dir()))
    })
    .await?;
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
        .arg(format!("http://{}/bench.html?n={n}&rounds={rounds}", server.addr))
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
    server.stop();
    let v = match got {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => return Err("the result channel closed".into()),
        Err(_) => return Err(format!("no result from the page within {limit:?}")),
    };
    let ua = v.get("userAgent").and_then(|x| x.as_str()).unwrap_or("").to_string();
    JsResult::from_json(&v, format!("chromium: {ua}"), &server.worker)
}
