import { test, before, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { client, reset, within } from "./helpers.mjs";

let a, b;
before(async () => {
  a = await client();
  b = await client();
});
beforeEach(async () => {
  await reset(a);
  await within(b.whenNot(["A", "B", "C"]), 5000, "b sees the reset");
});

/** The next `event` of `m` matching `pred`, as a Promise (bounded by the caller). */
function next(m, event, pred = () => true) {
  return new Promise((resolve) => {
    const cb = (v) => {
      if (!pred(v)) return;
      m.off(event, cb);
      resolve(v);
    };
    m.on(event, cb);
  });
}

test("payloads: Ping makes the worker send `pong` with the data bytes to every client", async () => {
  const data = new Uint8Array([0, 1, 2, 250, 255]);
  const atA = next(a, "payload", (p) => p.name === "pong");
  const atB = next(b, "payload", (p) => p.name === "pong");
  assert.equal(await within(a.add1("Ping", { data }), 5000, "add Ping"), "executed");
  for (const [who, p] of [["a", await within(atA, 5000, "payload at a")], ["b", await within(atB, 5000, "payload at b")]]) {
    assert.equal(p.name, "pong", who);
    assert.ok(p.data instanceof Uint8Array, who);
    assert.deepEqual([...p.data], [...data], who);
    assert.equal(typeof p.source, "string", who);
    assert.equal(typeof p.token, "bigint", who);
  }
});

test("payloads: Ping without data sends `pong`", async () => {
  const got = next(b, "payload", (p) => p.name === "pong");
  await a.add1("Ping");
  const p = await within(got, 5000, "payload");
  assert.match(new TextDecoder().decode(p.data), /pong/);
});

test("clock events follow the mirror; off() stops them", async () => {
  const seen = [];
  const cb = (clock) => seen.push(clock);
  b.on("clock", cb);
  const withA = next(b, "clock", (c) => c.A % 2 === 1);
  await a.add1("A");
  const clock = await within(withA, 5000, "clock event with A active");
  assert.equal(typeof clock.A, "number");
  assert.deepEqual(Object.keys(clock).sort(), b.stateNames().sort());
  assert.equal(clock.A, b.tick("A"));
  assert.ok(seen.length >= 1);

  b.off("clock", cb);
  const count = seen.length;
  const withB = next(b, "clock", (c) => c.B % 2 === 1);
  await a.add1("B");
  await within(withB, 5000, "clock event with B active");
  // no sleep needed: listeners of one event are called synchronously, in one pass, before
  // `withB` (one of them) can resume this test
  assert.equal(seen.length, count, "an off()'d listener is not called");
});

test("several listeners of one event each get it", async () => {
  let n1 = 0;
  let n2 = 0;
  const l1 = () => n1++;
  const l2 = () => n2++;
  b.on("clock", l1);
  b.on("clock", l2);
  const done = next(b, "clock", (c) => c.C % 2 === 1);
  await a.add(["A", "C"]);
  await within(done, 5000, "clock with C");
  b.off("clock", l1);
  b.off("clock", l2);
  assert.ok(n1 >= 1 && n1 === n2, `${n1} vs ${n2}`);
});
