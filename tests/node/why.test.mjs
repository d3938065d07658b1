// Why a mutation was canceled: mutate() resolves with the relation or handler that said no,
// without subscribing to anything.
import { test } from "node:test";
import assert from "node:assert/strict";
import { client, within } from "./helpers.mjs";

test("mutate() names the missing requirement of a canceled mutation", async () => {
  const m = await client();
  await within(m.remove("A"), 5000, "remove A");
  const r = await within(m.mutate("add", "C"), 5000, "add C");
  assert.deepEqual(r, {
    outcome: "canceled",
    why: { kind: "requires", state: "C", missing: "A", text: "C requires A" },
  });
  // the plain call still answers with the outcome alone
  assert.equal(await within(m.add1("C"), 5000, "add1 C"), "canceled");
  // executed: no reason
  assert.deepEqual(await within(m.mutate("add", ["A", "C"]), 5000, "add A C"), { outcome: "executed" });
});
