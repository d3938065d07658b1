// Kick: the worker's handler makes the server close every session of the worker; clients
// reconnect (with backoff) and resync from the next Welcome.
import { test } from "node:test";
import assert from "node:assert/strict";
import { client, reset, rejection, within, until } from "./helpers.mjs";

function statuses(m) {
  const seen = [];
  m.on("status", (s) => seen.push(s));
  return seen;
}

test("after a Kick the client reconnects, resyncs, and a mutation made during the outage resolves", async () => {
  const a = await client({ retryDelayMs: 50 });
  const b = await client({ retryDelayMs: 50 });
  await reset(a);
  const seen = statuses(a);
  const errors = [];
  a.on("error", (e) => errors.push(e));
  const disconnected = new Promise((resolve) => a.on("status", (s) => s === "disconnected" && resolve()));
  // a wait from before the outage survives it
  const bSeesB = b.when("B");

  const kick = a.add1("Kick");
  await within(disconnected, 5000, "a disconnects after Kick");
  assert.notEqual(a.status, "ready");
  const duringOutage = a.add1("D"); // queued while disconnected, sent after the next Welcome
  const tD = a.tick("D");

  assert.equal(await within(kick, 10_000, "the Kick call"), "executed");
  assert.equal(await within(duringOutage, 10_000, "the mutation made during the outage"), "executed");
  assert.equal(a.status, "ready");
  assert.ok(a.tick("D") > tD, "the reply's clock is applied");
  assert.ok(seen.includes("disconnected") && seen.at(-1) === "ready", seen.join(" "));
  assert.ok(errors.every((e) => e instanceof Error && typeof e.code === "string"));

  // b reconnected too, and its old wait still works
  await a.add1("B");
  await within(bSeesB, 10_000, "b's wait from before the outage");

  // a fresh client sees the same clock as the reconnected ones
  const c = await client();
  await until(
    () => JSON.stringify(c.clock()) === JSON.stringify(a.clock()) && JSON.stringify(b.clock()) === JSON.stringify(a.clock()),
    5000,
    "a, b and a fresh client agree on the clock",
  );
  assert.equal(c.tick("D"), a.tick("D"));
  assert.ok(c.is("B"));
});

test("with reconnect: false a Kick closes the client: later calls reject with Closed", async () => {
  const a = await client({ reconnect: false });
  const closed = new Promise((resolve) => a.on("status", (s) => s === "closed" && resolve()));
  await within(a.add1("Kick"), 5000, "Kick");
  await within(closed, 5000, "closed status");
  assert.equal(a.status, "closed");
  assert.equal((await rejection(a.add1("A"), 2000, "add after close")).code, "Closed");
});
