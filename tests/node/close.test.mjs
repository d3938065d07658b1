import { test } from "node:test";
import assert from "node:assert/strict";
import { client, closeAll, reset, rejection, within, URL_OPEN } from "./helpers.mjs";

test("close() rejects pending calls and waits with code Closed", async () => {
  const m = await client();
  await reset(m);
  const statuses = [];
  m.on("status", (s) => statuses.push(s));
  const call = m.add1("D"); // sent, reply not in yet
  const wait = m.when("C");
  const ticks = m.whenTicks("D", 100);
  closeAll(m);
  for (const [p, what] of [[call, "pending call"], [wait, "pending when"], [ticks, "pending whenTicks"]]) {
    const err = await rejection(p, 2000, what);
    assert.ok(err instanceof Error, what);
    assert.equal(err.code, "Closed", what);
  }
  assert.equal(m.status, "closed");
  assert.deepEqual(statuses, ["closed"]);
});

test("after close() calls reject with Closed, and close() again is a no-op", async () => {
  const m = await client();
  closeAll(m);
  m.close();
  assert.equal((await rejection(m.add1("A"), 2000, "add after close")).code, "Closed");
  assert.equal((await rejection(m.when("C"), 2000, "when after close")).code, "Closed");
});

test("other clients are unaffected by one client's close", async () => {
  const a = await client();
  const b = await client();
  closeAll(a);
  assert.equal(await within(b.add1("A"), 5000, "b still works"), "executed");
  await reset(b);
});

test("a Node process exits by itself after close(), with a call's timer still in the future", async () => {
  const { spawn } = await import("node:child_process");
  // a long call timeout: a timer left armed after close() would hold the process that long
  const code = `
    import { connect } from "amrpc";
    const m = await connect(${JSON.stringify(URL_OPEN())}, { clientId: "exit-test", reconnect: false, callTimeoutMs: 120000 });
    await m.add1("A");
    m.close();
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on("exit", (c) => resolve(c)));
  // far below the call timeout, far above a normal exit
  const limit = new Promise((resolve) => setTimeout(() => resolve("still running"), 20000).unref());
  const got = await Promise.race([exited, limit]);
  if (got === "still running") child.kill();
  assert.equal(got, 0, `the child did not exit by itself: ${got} ${stderr}`);
});
