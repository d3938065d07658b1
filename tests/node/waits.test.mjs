import { test, before, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { client, reset, rejection, within, stillPending, until } from "./helpers.mjs";

// `a` mutates, `b` waits: b's waits resolve on the server's pushes, not on its own replies.
let a, b;
before(async () => {
  a = await client();
  b = await client();
});
beforeEach(async () => {
  await reset(a);
  await within(b.whenNot(["A", "B", "C"]), 5000, "b sees the reset");
});

test("when / whenNot resolve on pushes caused by another client", async () => {
  const w = b.when(["A", "B"]);
  assert.ok(await stillPending(w), "not active yet");
  await a.add1("A");
  assert.ok(await stillPending(w), "B still missing");
  await a.add1("B");
  await within(w, 5000, "b.when(A, B)");
  assert.ok(b.is(["A", "B"]));

  const gone = b.whenNot("B");
  await a.remove1("B");
  await within(gone, 5000, "b.whenNot(B)");
  assert.ok(b.not("B"));
});

test("when resolves at once for active states", async () => {
  await a.add1("A");
  await within(b.when("A"), 5000, "b sees A");
  await within(b.when("A"), 100, "already active");
  await within(a.when("A"), 100, "own write");
});

test("whenTicks / whenTicksEq / whenTime follow another client's ticks", async () => {
  const t = b.tick("D");
  const twice = b.whenTicks("D", 2);
  const eq = b.whenTicksEq("D", t + 1);
  const time = b.whenTime(["D"], [t + 2]);
  await a.add1("D"); // +1 (or +2 when D was active)
  await within(eq, 5000, "whenTicksEq");
  if (a.tick("D") < t + 2) await a.add1("D");
  await within(twice, 5000, "whenTicks +2");
  await within(time, 5000, "whenTime");
  assert.ok(b.tick("D") >= t + 2);
});

test("whenErr resolves when the worker's Exception activates", async () => {
  const w = b.whenErr();
  try {
    await a.addErr("whenErr test");
    await within(w, 5000, "b.whenErr");
    assert.ok(b.isErr());
  } finally {
    await a.remove1("Exception");
  }
});

test("an AbortSignal cancels a wait: it rejects with code Aborted", async () => {
  const ac = new AbortController();
  const w = b.when("C", ac.signal);
  assert.ok(await stillPending(w));
  ac.abort();
  const err = await rejection(w, 2000, "aborted wait");
  assert.ok(err instanceof Error);
  assert.equal(err.code, "Aborted");

  const pre = await rejection(b.when("C", AbortSignal.abort()), 2000, "already aborted signal");
  assert.equal(pre.code, "Aborted");

  const timed = await rejection(b.whenTicks("D", 100, AbortSignal.timeout(50)), 2000, "AbortSignal.timeout");
  assert.equal(timed.code, "Aborted");

  // an aborted wait does not resolve later, and other waits are unaffected
  const other = b.when("A");
  await a.add(["A", "C"]);
  await within(other, 5000, "the other wait");
});

test("unknown states in waits reject with StateUnknown", async () => {
  assert.equal((await rejection(b.whenNot("Nope"), 2000, "whenNot unknown")).code, "StateUnknown");
  assert.equal((await rejection(b.whenTime(["Nope"], [1]), 2000, "whenTime unknown")).code, "StateUnknown");
});

test("stateSignal aborts when the state deactivates, on another client's remove", async () => {
  assert.ok(b.stateSignal("A").aborted, "inactive state: already aborted");
  await a.add1("A");
  await within(b.when("A"), 5000, "b sees A");
  const signal = b.stateSignal("A");
  assert.ok(signal instanceof AbortSignal);
  assert.equal(signal.aborted, false);
  const aborted = new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
  // the signal stops work that belongs to the state, e.g. a wait
  const work = b.when("C", signal);
  await a.remove1("A");
  await within(aborted, 5000, "abort event");
  assert.ok(signal.aborted);
  assert.equal((await rejection(work, 2000, "work bound to A")).code, "Aborted");
  assert.throws(() => b.stateSignal("Nope"), (e) => e.code === "StateUnknown");
});

test("a re-activation gets a fresh signal", async () => {
  await a.add1("A");
  await until(() => b.is("A"), 5000, "b sees A");
  const s1 = b.stateSignal("A");
  await a.remove1("A");
  await until(() => s1.aborted, 5000, "s1 aborted");
  await a.add1("A");
  await until(() => b.is("A"), 5000, "b sees A again");
  assert.equal(b.stateSignal("A").aborted, false);
});
