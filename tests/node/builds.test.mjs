// The package's other builds load and work too: `amrpc/web` (init() with the wasm bytes) and
// `amrpc/bundler` (ES module importing the .wasm, as bundlers do; Node runs it with
// --experimental-wasm-modules).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const pkg = JSON.parse(readFileSync(fileURLToPath(new URL("../package.json", import.meta.resolve("amrpc"))), "utf8"));

test("package.json: name, version, exports per environment", () => {
  assert.equal(pkg.name, "amrpc");
  assert.match(pkg.version, /^\d+\.\d+\.\d+/);
  assert.equal(pkg.license, "MIT");
  const root = pkg.exports["."];
  assert.equal(Object.keys(root)[0], "node", "node must win over import/browser");
  // the Node entry wraps the CommonJS build and finds a WebSocket (node/index.js)
  assert.equal(root.node.default, "./node/index.js");
  assert.equal(root.browser.default, "./bundler/amrpc.js");
  assert.equal(root.import.default, "./bundler/amrpc.js");
  assert.equal(pkg.exports["./web"].default, "./web/amrpc.js");
  for (const c of [root.node, root.browser, root.import, pkg.exports["./web"]]) assert.match(c.types, /(amrpc|index)\.d\.ts$/);
  assert.deepEqual(Object.keys(pkg.dependencies), ["ws"], "Node < 22 gets its WebSocket from ws");
});

test("amrpc/web: init() with the wasm bytes, then the same API", async () => {
  const web = await import("amrpc/web");
  const wasm = readFileSync(fileURLToPath(new URL("amrpc_bg.wasm", import.meta.resolve("amrpc/web"))));
  await web.default({ module_or_path: wasm });
  const m = new web.Machine({ A: {}, B: { require: ["A"] } });
  assert.equal(m.add("B"), "canceled");
  assert.equal(m.add(["A", "B"]), "executed");
  assert.equal(typeof web.connect, "function");
});

test("amrpc/bundler: the ES module build imports its .wasm", () => {
  const src = `import { Machine, connect } from "amrpc/bundler";
    const m = new Machine({ A: {} });
    process.stdout.write(m.add("A") + " " + m.toString() + " " + typeof connect);`;
  const out = execFileSync(process.execPath, ["--experimental-wasm-modules", "--no-warnings", "--input-type=module", "-e", src], {
    cwd: fileURLToPath(new URL(".", import.meta.url)),
    encoding: "utf8",
    timeout: 20_000,
  });
  assert.equal(out, "executed (A:1) function");
});
