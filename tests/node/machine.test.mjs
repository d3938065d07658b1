// The local Machine: the core compiled to wasm, with handlers as JS callbacks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Machine } from "amrpc";
import { rejection, within, stillPending } from "./helpers.mjs";

const schema = () => ({
  Foo: { require: ["Bar"] },
  Bar: {},
  Baz: { multi: true },
  Auto: { auto: true, require: ["Foo"] },
  Gate: {},
  Exception: { multi: true },
});

test("relations: require cancels, auto activates, set replaces", () => {
  const m = new Machine(schema(), { id: "local", names: ["Foo", "Bar", "Baz", "Auto", "Gate", "Exception"] });
  assert.equal(m.id, "local");
  assert.deepEqual(m.stateNames(), ["Foo", "Bar", "Baz", "Auto", "Gate", "Exception"]);
  assert.equal(m.add("Foo"), "canceled");
  assert.ok(m.not("Foo"));
  assert.equal(m.add(["Foo", "Bar"]), "executed");
  assert.ok(m.is(["Foo", "Bar", "Auto"]), "Auto activates after Foo");
  assert.equal(m.set("Baz"), "executed");
  assert.ok(m.is("Baz") && m.not(["Foo", "Bar"]));
  const t = m.tick("Baz");
  m.add1("Baz");
  assert.equal(m.tick("Baz"), t + 2, "multi");
  assert.deepEqual(m.time(["Baz"]), [t + 2]);
  assert.equal(m.clock(["Baz"]).Baz, t + 2);
  assert.equal(m.remove1("Baz"), "executed");
  assert.match(m.toString(), /^\(.*\)$/);
  assert.match(m.stringAll(), /Baz/);
});

test("handlers: negotiation can cancel, final handlers get args and can queue mutations", () => {
  const m = new Machine(schema());
  const calls = [];
  let allow = false;
  m.handle("GateEnter", (e) => {
    calls.push(e.name);
    return allow;
  });
  m.handle("GateState", (e) => {
    calls.push(e.name);
    assert.deepEqual(e.args, { who: "node", n: 7, bytes: new Uint8Array([9]) });
    assert.ok(e.machine instanceof Machine);
    assert.equal(e.machine.add1("Bar"), "queued", "mutations from a handler are queued");
  });
  assert.equal(m.add1("Gate", { who: "node", n: 7, bytes: new Uint8Array([9]) }), "canceled");
  assert.ok(m.not("Gate"));
  allow = true;
  assert.equal(m.add1("Gate", { who: "node", n: 7, bytes: new Uint8Array([9]) }), "executed");
  assert.ok(m.is(["Gate", "Bar"]), "the queued mutation ran");
  assert.deepEqual(calls, ["GateEnter", "GateEnter", "GateState"]);
});

test("a throwing handler cancels and flags the error", () => {
  const m = new Machine(schema());
  m.handle("GateEnter", () => {
    throw new Error("handler failure (expected by the test)");
  });
  const origError = console.error;
  console.error = () => {}; // the machine logs the throw; keep the test output clean
  try {
    assert.equal(m.add1("Gate"), "canceled");
  } finally {
    console.error = origError;
  }
  assert.ok(m.isErr());
  assert.match(m.err(), /GateEnter/);
});

test("handlers for missing states and bad schemas throw with codes", () => {
  const m = new Machine(schema());
  assert.throws(() => m.handle("NopeState", () => {}), (e) => e instanceof Error && e.code === "StateMissing");
  assert.throws(() => m.add("Nope"), (e) => e.code === "StateUnknown");
  assert.throws(() => new Machine({ A: { require: 5 } }), (e) => e.code === "InvalidArgs");
  assert.throws(() => new Machine({ A: {} }, { names: ["B"] }), (e) => typeof e.code === "string");
});

test("waits on a local machine: when, whenTicks, AbortSignal, stateSignal, dispose", async () => {
  const m = new Machine(schema());
  const w = m.when(["Foo", "Bar"]);
  assert.ok(await stillPending(w, 20));
  m.add(["Foo", "Bar"]);
  await within(w, 1000, "when Foo Bar");

  const ticks = m.whenTicks("Baz", 3);
  m.add1("Baz");
  m.add1("Baz");
  await within(ticks, 1000, "whenTicks");

  const ac = new AbortController();
  const aborted = m.when("Gate", ac.signal);
  ac.abort();
  assert.equal((await rejection(aborted, 1000, "abort")).code, "Aborted");

  const sig = m.stateSignal("Foo");
  assert.equal(sig.aborted, false);
  m.remove1("Foo");
  assert.ok(sig.aborted, "aborted synchronously when Foo deactivates");

  const pending = m.when("Gate");
  m.dispose();
  assert.equal((await rejection(pending, 1000, "dispose")).code, "Closed");
});

test("whenErr resolves on addErr", async () => {
  const m = new Machine(schema());
  const w = m.whenErr();
  assert.equal(m.addErr("local failure"), "executed");
  await within(w, 1000, "whenErr");
  assert.equal(m.err(), "local failure");
});

test("the README's local machine example behaves as the README says", async () => {
  const m = new Machine({
    Online: {},
    Downloading: { require: ["Online"] },
    Progress: { multi: true, require: ["Downloading"] },
    Done: { remove: ["Downloading"] },
  });
  const done = [];
  m.handle("DownloadingEnter", (e) => e.args.url !== undefined);
  m.handle("DoneState", (e) => {
    done.push(e.args);
    assert.equal(e.machine.add1("Online"), "queued");
  });
  assert.equal(m.add1("Downloading", { url: "/a" }), "canceled");
  assert.equal(m.add(["Online", "Downloading"]), "canceled", "DownloadingEnter wants a url");
  assert.equal(m.add(["Online", "Downloading"], { url: "/a" }), "executed");
  await within(m.when("Downloading"), 1000, "when Downloading");
  assert.equal(m.add1("Done", { ok: true }), "executed");
  assert.deepEqual(done, [{ ok: true }]);
  assert.ok(m.not("Downloading"));
  const pending = m.when("Progress");
  m.dispose();
  assert.equal((await rejection(pending, 1000, "dispose")).code, "Closed");
});
