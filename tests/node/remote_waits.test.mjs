// Remote waits (protocol 2): whenArgs and whenQueue are evaluated on the worker and signalled to
// this client; bounded per session, released on abort and on disconnect. Queue ticks come from
// mutate()'s result.
import { test } from "node:test";
import assert from "node:assert/strict";
import { client, rejection, within, stillPending, until } from "./helpers.mjs";

function queueUrl(name) {
  return process.env.AMRPC_TEST_URL.replace(/\/$/, "") + `/ws/${name}`;
}

test("whenArgs resolves when the worker's handler runs with matching args, after the clock", async () => {
  const m = await client();
  await within(m.add1("D", { id: "b" }), 5000, "an earlier D");
  const w = m.whenArgs("D", { id: "b" });
  await within(m.sync(), 5000, "sync");
  assert.ok(await stillPending(w, 0), "never satisfied by an earlier transition");
  await within(m.add1("D", { id: "a" }), 5000, "other args");
  await within(m.sync(), 5000, "sync");
  assert.ok(await stillPending(w, 0), "other args do not match");
  const before = m.tick("D");
  await within(m.add1("D", { id: "b", n: 2 }), 5000, "matching args");
  await within(w, 5000, "whenArgs");
  assert.ok(m.is(["D"]));
  assert.ok(m.tick("D") > before, "the mirror shows the transition when the wait resolves");
});

test("whenArgs: an aborted signal rejects with Aborted (also one aborted before); an unknown state rejects", async () => {
  const m = await client();
  const ctrl = new AbortController();
  const w = m.whenArgs("D", { id: "never" }, ctrl.signal);
  ctrl.abort();
  const e = await rejection(w, 5000, "aborted wait");
  assert.equal(e.code, "Aborted");
  const pre = new AbortController();
  pre.abort();
  assert.equal((await rejection(m.whenArgs("D", {}, pre.signal), 1000, "pre-aborted")).code, "Aborted");
  assert.equal((await rejection(m.whenArgs("Nope", {}), 1000, "unknown state")).code, "StateUnknown");
});

test("the per-session limit: past 64 waits TooManyWaits; an abort makes room", async () => {
  const m = await client();
  const ctrls = [];
  const waits = [];
  for (let i = 0; i < 64; i++) {
    const c = new AbortController();
    ctrls.push(c);
    waits.push(m.whenArgs("D", { slot: i }, c.signal).catch((e) => e.code));
  }
  assert.equal((await rejection(m.whenQueue(1e9), 5000, "the 65th wait")).code, "TooManyWaits");
  ctrls[0].abort();
  assert.equal(await waits[0], "Aborted");
  const room = m.whenArgs("D", { slot: "new" });
  await within(m.add1("D", { slot: "new" }), 5000, "meet the new wait");
  await within(room, 5000, "a wait after an abort");
  for (const c of ctrls) c.abort();
  assert.deepEqual(new Set(await Promise.all(waits)), new Set(["Aborted"]));
});

test("a dropped connection rejects remote waits with Disconnected; new ones work after", async () => {
  const m = await client();
  const w = m.whenArgs("D", { id: "lost" });
  const q = m.whenQueue(1e9);
  // Kick: the server closes every session of the worker; the client reconnects by itself
  m.add1("Kick").catch(() => {});
  assert.equal((await rejection(w, 5000, "whenArgs on disconnect")).code, "Disconnected");
  assert.equal((await rejection(q, 5000, "whenQueue on disconnect")).code, "Disconnected");
  await until(() => m.status === "ready", 10_000, "reconnected");
  const again = m.whenArgs("D", { id: "again" });
  await within(m.add1("D", { id: "again" }), 5000, "after the reconnect");
  await within(again, 5000, "a wait after the reconnect");
});

test("whenQueue: a mutation queued behind a running handler resolves right after it ran", async () => {
  const holder = await client({}, queueUrl("queue"));
  const m = await client({}, queueUrl("queue"));
  const ctl = await client({}, queueUrl("queue-ctl"));
  const held = holder.add1("Hold");
  // probe until a mutation lands behind Hold's handler (each probe is a round trip)
  let r;
  for (let i = 0; i < 500; i++) {
    r = await within(m.mutate("add", "Job", { probe: i }), 5000, "probe");
    if (r.outcome === "queued") break;
  }
  assert.equal(r.outcome, "queued", "Hold's handler holds the queue");
  assert.equal(typeof r.queueTick, "number");
  const ticks = m.tick("Job");
  const w = m.whenQueue(r.queueTick);
  await within(m.sync(), 5000, "sync");
  assert.ok(await stillPending(w, 0), "the queued Job has not run");
  assert.equal(m.tick("Job"), ticks);
  await within(ctl.add1("Release"), 5000, "release");
  await within(w, 5000, "whenQueue");
  assert.ok(m.tick("Job") > ticks, "the mirror shows Job when its wait resolves");
  assert.equal(await within(held, 5000, "Hold's own call"), "executed");
  await within(m.whenQueue(r.queueTick), 5000, "a processed tick resolves at once");
  assert.deepEqual(await within(m.mutate("add", "Done"), 5000, "an idle queue"), { outcome: "executed" });
  assert.equal((await rejection(m.mutate("toggle", "Done"), 1000, "bad type")).code, "InvalidArgs");
});
