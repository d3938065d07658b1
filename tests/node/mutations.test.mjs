import { test, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { client, reset, rejection, within } from "./helpers.mjs";

let m;
beforeEach(async () => {
  m ??= await client();
  await reset(m);
});

test("add / remove / set resolve with outcomes, and reads see the write at once", async () => {
  const t0 = m.tick("A");
  assert.equal(await within(m.add1("A"), 5000, "add1 A"), "executed");
  assert.ok(m.is("A"), "read-your-writes after add");
  assert.equal(m.tick("A"), t0 + 1);
  assert.equal(m.tick("A") % 2, 1, "active ticks are odd");

  assert.equal(await within(m.add(["A", "C"]), 5000, "add A C"), "executed");
  assert.ok(m.is(["A", "C"]));
  assert.ok(m.any(["B"], ["A", "C"]));
  assert.equal(m.switch("B", "C", "A"), "C");

  assert.equal(await within(m.remove1("C"), 5000, "remove1 C"), "executed");
  assert.ok(m.not("C"));

  assert.equal(await within(m.set(["B"]), 5000, "set B"), "executed");
  assert.ok(m.is("B"));
  assert.ok(m.not(["A", "C"]), "set deactivates what it does not list");
  assert.deepEqual(m.activeStates().filter((s) => ["A", "B", "C", "D"].includes(s)), ["B"]);

  assert.equal(await within(m.remove(["B"]), 5000, "remove B"), "executed");
  assert.ok(m.not("B"));
  assert.equal(m.tick("B") % 2, 0, "inactive ticks are even");
});

test("a relation that forbids the change cancels it: C requires A", async () => {
  assert.ok(m.not("A"));
  assert.equal(await within(m.add1("C"), 5000, "add1 C"), "canceled");
  assert.ok(m.not("C"));
});

test("a multi state re-enters: D's tick grows by 2 when added while active", async () => {
  await within(m.add1("D"), 5000, "add D");
  const t = m.tick("D");
  assert.equal(t % 2, 1);
  assert.equal(await within(m.add1("D"), 5000, "add D again"), "executed");
  assert.equal(m.tick("D"), t + 2);
});

test("args travel as plain JS values", async () => {
  const args = { n: 42, f: 1.5, s: "x", b: true, nil: null, big: 2n ** 60n, bytes: new Uint8Array([1, 2]), list: [1, "a"], map: { k: "v" } };
  assert.equal(await within(m.add1("A", args), 5000, "add with args"), "executed");
  assert.equal(await within(m.add("B", undefined), 5000, "add with undefined args"), "executed");
});

test("unknown states and unsendable args reject with codes", async () => {
  const unknown = await rejection(m.add("Nope"), 2000, "add unknown");
  assert.ok(unknown instanceof Error);
  assert.equal(unknown.code, "StateUnknown");
  const bad = await rejection(m.add1("A", { f: () => 1 }), 2000, "function arg");
  assert.equal(bad.code, "InvalidArgs");
  const notObject = await rejection(m.add1("A", [1, 2]), 2000, "array args");
  assert.equal(notObject.code, "InvalidArgs");
  const badStates = await rejection(m.add(42), 2000, "number as states");
  assert.equal(badStates.code, "InvalidArgs");
  assert.throws(() => m.not("Nope"), (e) => e.code === "StateUnknown");
});

test("addErr activates Exception on the worker", async () => {
  try {
    assert.equal(await within(m.addErr("boom from node"), 5000, "addErr"), "executed");
    assert.ok(m.isErr());
    assert.ok(m.is("Exception"));
    // err() is the error the *worker* recorded (its own addErr); a remote addErr only adds
    // Exception with an `err` arg, so there may be none
    const err = m.err();
    assert.ok(err === undefined || typeof err === "string");
  } finally {
    await within(m.remove1("Exception"), 5000, "remove Exception");
  }
  assert.equal(m.isErr(), false);
});

test("addNS sends without waiting for a reply; sync() brings the mirror up to date", async () => {
  // pushes off: only a reply or a sync can move this mirror
  const ns = await client({ pushIntervalMs: 0 });
  await reset(ns);
  assert.equal(ns.addNS(["A"]), undefined, "returns at once, nothing to await");
  ns.add1NS("B");
  assert.ok(!ns.is("A") && !ns.is("B"), "no reply, no push yet");
  await within(ns.sync(), 5000, "sync");
  assert.ok(ns.is(["A", "B"]), "the sync carried both");
  ns.removeNS("B");
  await within(ns.sync(), 5000, "sync again");
  assert.ok(ns.is("A") && !ns.is("B"));
  assert.throws(() => ns.addNS("Nope"), (e) => e.code === "StateUnknown");
  ns.close();
  assert.throws(() => ns.addNS("A"), (e) => e.code === "Closed");
  assert.equal((await rejection(ns.sync(), 3000, "sync after close")).code, "Closed");
});
