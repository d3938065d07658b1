//! The Node figure: `bench/js/node.mjs` runs `bench/js/loop.mjs` with the npm package and `ws`
//! as installed in a project (`--node-dir`, by default `target/node-tests`, which
//! scripts/web/node.sh installs from the packed tarball), against this process's server.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::{JsResult, JsServer, js_dir};

/// Run the Node script against a fresh server; at most `limit`.
pub(crate) async fn run(node: &str, dir: &Path, n: usize, rounds: usize, limit: Duration) -> Result<JsResult, String> {
    for m in ["amrpc", "ws"] {
        if !dir.join("node_modules").join(m).join("package.json").is_file() {
            return Err(format!(
                "no {m} in {}/node_modules (scripts/web/node.sh installs the packed package there)",
                dir.display()
            ));
        }
    }
    let server = JsServer::start(|r| r).await?;
    let child = tokio::process::Command::new(node)
        .arg(js_dir().join("node.mjs"))
        .env("AMRPC_NODE_DIR", dir)
        .env("AMRPC_BENCH_BASE", format!("ws://{}", server.addr))
        .env("AMRPC_BENCH_N", n.to_string())
        .env("AMRPC_BENCH_ROUNDS", rounds.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{node}: {e}"))?;
    let out = tokio::time::timeout(limit, child.wait_with_output()).await;
    server.stop();
    let out = match out {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(format!("{node}: {e}")),
        Err(_) => return Err(format!("no result from node within {limit:?}")),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("node exited with {} and printed no result: {text:?}", out.status))?;
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("node's result: {e}"))?;
    let runtime = v.get("runtime").and_then(|x| x.as_str()).unwrap_or("node").to_string();
    JsResult::from_json(&v, runtime, &server.worker)
}
