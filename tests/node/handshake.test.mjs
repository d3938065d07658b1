import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { lstatSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { connect, RemoteMachine } from "amrpc";
import { client, rejection, URL_OPEN } from "./helpers.mjs";

test("the package under test is the installed tarball, not the source folder", () => {
  const resolved = import.meta.resolve("amrpc");
  assert.match(resolved, /\/node_modules\/amrpc\/node\/index\.js$/);
  // npm links a folder but unpacks a tarball: a real directory means the tarball
  const dir = fileURLToPath(new URL("../", resolved)).replace(/\/$/, "");
  assert.equal(lstatSync(dir).isSymbolicLink(), false, `${dir} is a link to a folder`);
  // CommonJS consumers get the same build
  const require = createRequire(import.meta.url);
  assert.match(require.resolve("amrpc"), /node_modules\/amrpc\/node\/index\.js$/);
  assert.equal(typeof require("amrpc").connect, "function");
  assert.match(import.meta.resolve("amrpc/web"), /\/node_modules\/amrpc\/web\/amrpc\.js$/);
});

test("handshake: connect resolves with a ready mirror of the worker", async () => {
  const m = await client({ clientId: "node-handshake" });
  assert.ok(m instanceof RemoteMachine);
  assert.equal(m.status, "ready");
  assert.equal(m.id, "node-handshake-test");
  const names = m.stateNames();
  for (const s of ["A", "B", "C", "D", "Ping", "Kick", "Exception"]) assert.ok(names.includes(s), s);
  assert.deepEqual(Object.keys(m.clock()).sort(), [...names].sort());
  assert.equal(m.time().length, names.length);
  assert.equal(m.index("A"), 0);
  assert.equal(m.index("Nope"), -1);
  assert.ok(m.has(["A", "Kick"]));
  assert.equal(m.has("Nope"), false);
  assert.equal(typeof m.toString(), "string");
  assert.match(m.inspect("C"), /C/);
});

// Under Node the socket is the `ws` package's: a refused connection emits an "error" event, which
// crashes the process (uncaught ECONNREFUSED) unless the client listens for it (onerror).
test("connect to nothing gives up with ConnRetryFailed after its retries", async () => {
  const url = URL_OPEN().replace(/:\d+\//, ":1/"); // port 1: refused at once
  const err = await rejection(
    connect(url, { connRetries: 2, retryDelayMs: 10, retryBackoffMs: 20 }),
    10_000,
    "connect to a closed port",
  );
  assert.ok(err instanceof Error);
  assert.equal(err.code, "ConnRetryFailed");
});

test("invalid options reject with InvalidArgs", async () => {
  const err = await rejection(connect(URL_OPEN(), { schemaHash: "not hex" }), 2000, "bad schemaHash");
  assert.equal(err.code, "InvalidArgs");
});
