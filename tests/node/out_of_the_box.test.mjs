// The package as a newcomer meets it: installed from the packed tarball into an empty project,
// used from a script that does nothing but import it — no `ws` import, no `globalThis.WebSocket`.
// It connects; a malformed URL fails at once with its code and one message, not after retries.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { URL_OPEN } from "./helpers.mjs";

let dir;
before(() => {
  const tarball = process.env.AMRPC_TARBALL;
  if (!tarball) throw new Error("AMRPC_TARBALL is not set: run scripts/web/node.sh (it packs the package)");
  dir = mkdtempSync(join(tmpdir(), "amrpc-empty-"));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "empty", private: true, type: "module" }));
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", tarball], {
    cwd: dir,
    stdio: ["ignore", "ignore", "inherit"],
    timeout: 240_000,
  });
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
});

/** Run `code` as a module in the empty project (a fresh Node: nothing set up). */
function run(code) {
  const file = join(dir, `script-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(file, code);
  const r = spawnSync(process.execPath, [file], { cwd: dir, encoding: "utf8", timeout: 20_000 });
  return { status: r.status, stdout: r.stdout.trim(), stderr: r.stderr.trim() };
}

test("connects with nothing but the package (ESM and CommonJS)", () => {
  const esm = run(`
    import { connect } from "amrpc";
    if ("WebSocket" in globalThis && ${Number(process.versions.node.split(".")[0]) < 22}) throw new Error("global set");
    const m = await connect(${JSON.stringify(URL_OPEN())}, { clientId: "out-of-the-box" });
    console.log(m.status, m.has("A"), typeof globalThis.WebSocket);
    m.close();
  `);
  assert.equal(esm.status, 0, esm.stderr);
  const globalType = Number(process.versions.node.split(".")[0]) >= 22 ? "function" : "undefined";
  assert.equal(esm.stdout, `ready true ${globalType}`);
  assert.equal(esm.stderr, "");

  const cjs = run(`
    import { createRequire } from "node:module";
    const { connect } = createRequire(import.meta.url)("amrpc");
    const m = await connect(${JSON.stringify(URL_OPEN())}, { clientId: "out-of-the-box-cjs" });
    console.log(m.status);
    m.close();
  `);
  assert.equal(cjs.status, 0, cjs.stderr);
  assert.equal(cjs.stdout, "ready");
});

test("a malformed URL fails at once with InvalidUrl and one message", () => {
  const r = run(`
    import { connect } from "amrpc";
    const t0 = Date.now();
    const statuses = [];
    try {
      await connect("localhost:1/ws/x", { connRetries: 50, retryDelayMs: 200 });
      console.log("connected?!");
    } catch (e) {
      console.log(JSON.stringify({ code: e.code, message: e.message, ms: Date.now() - t0 }));
    }
  `);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "", "nothing else printed");
  const lines = r.stdout.split("\n");
  assert.equal(lines.length, 1, r.stdout);
  const out = JSON.parse(lines[0]);
  assert.equal(out.code, "InvalidUrl");
  assert.match(out.message, /not a WebSocket URL/);
  // 50 retries at 200 ms would take many seconds: it did not retry
  assert.ok(out.ms < 1000, `took ${out.ms} ms`);
});
