// The locked server: only client id `allowed-client` with token `secret`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "amrpc";
import { client, rejection, within, URL_LOCKED } from "./helpers.mjs";

// refusals are final: they must reject at once, not after connRetries attempts
const fast = { connRetries: 50, retryDelayMs: 100 };

test("a client id outside the allow-list is refused with AccessDenied", async () => {
  const err = await rejection(connect(URL_LOCKED(), { ...fast, clientId: "intruder", token: "secret" }), 3000, "connect");
  assert.ok(err instanceof Error);
  assert.equal(err.code, "AccessDenied");
  assert.ok(err.message.length > 0);
});

test("a wrong or missing token is refused with Unauthorized", async () => {
  const wrong = await rejection(connect(URL_LOCKED(), { ...fast, clientId: "allowed-client", token: "nope" }), 3000, "wrong token");
  assert.equal(wrong.code, "Unauthorized");
  const missing = await rejection(connect(URL_LOCKED(), { ...fast, clientId: "allowed-client" }), 3000, "no token");
  assert.equal(missing.code, "Unauthorized");
});

test("the allowed client with its token gets in and can mutate", async () => {
  const m = await client({ clientId: "allowed-client", token: "secret" }, URL_LOCKED());
  assert.equal(m.status, "ready");
  assert.equal(m.id, "allowed-client-test");
  assert.equal(await within(m.add1("A"), 5000, "add on the locked worker"), "executed");
  assert.ok(m.is("A"));
  await within(m.remove1("A"), 5000, "remove");
});

test("a schema hash that does not match is refused with SchemaMismatch", async () => {
  const err = await rejection(connect(URL_LOCKED(), { ...fast, clientId: "allowed-client", token: "secret", schemaHash: "1" }), 3000, "schema");
  assert.equal(err.code, "SchemaMismatch");
});
