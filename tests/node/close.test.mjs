import { test } from "node:test";
import assert from "node:assert/strict";
import { client, closeAll, reset, rejection, within } from "./helpers.mjs";

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
