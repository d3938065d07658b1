// Compiled (never run) by types.test.mjs after `amrpc types` wrote typed-worker.d.ts from the
// test server's `typed` worker: with connect<Schema>(), a misspelt state or a wrong args shape
// is a compile error. Lines marked @ts-expect-error must NOT compile.
import { connect } from "amrpc";
import type { RemoteMachine, TypedRemoteMachine } from "amrpc";
import type { Schema, StateName } from "./typed-worker.js";

async function typed(): Promise<void> {
  const m = await connect<Schema>("ws://127.0.0.1:1/ws/typed");
  const same: TypedRemoteMachine<Schema> = m;
  void same;
  await m.add1("Fetch", { url: "https://x", retries: 2, backoff: "exponential" });
  await m.add1("Fetch", { url: "https://x", retries: 2, backoff: "fixed", label: "l" });
  await m.add(["Tag", "Plain"]);
  await m.add1("Tag", { name: "t" });
  await m.remove1("Plain");
  const r = await m.mutate("add", "Tag", { name: "t" });
  if (r.outcome === "queued" && r.queueTick !== undefined) await m.whenQueue(r.queueTick);
  await m.whenArgs("Fetch", { url: "https://x" });
  const active: boolean = m.is(["Fetch", "Tag"]) && m.not("Plain");
  const tick: number = m.tick("Tag");
  const which: "Fetch" | "Tag" | undefined = m.switch("Fetch", "Tag");
  const name: StateName = "Plain";
  void [active, tick, which, name];

  // @ts-expect-error a misspelt state
  await m.add1("Fecth", { url: "x", retries: 1, backoff: "fixed" });
  // @ts-expect-error a misspelt state in a list
  m.is(["Fetch", "Tga"]);
  // @ts-expect-error a misspelt state in a wait
  await m.when("Palin");
  // @ts-expect-error a wrong args shape: retries is a number
  await m.add1("Fetch", { url: "x", retries: "2", backoff: "fixed" });
  // @ts-expect-error a missing field
  await m.add1("Fetch", { url: "x" });
  // @ts-expect-error a value outside the enum
  await m.add1("Fetch", { url: "x", retries: 1, backoff: "linear" });
  // @ts-expect-error a field the args type does not have
  await m.add1("Tag", { name: "t", colour: "red" });
  // @ts-expect-error whenArgs checks the state and the args' fields
  await m.whenArgs("Tag", { nam: "t" });

  // without a schema, connect() keeps the loose RemoteMachine
  const loose: RemoteMachine = await connect("ws://127.0.0.1:1/ws/typed");
  await loose.add1("Anything", { any: 1 });
}
void typed;
