// wss:// from Node: the open test server behind TLS (scripts/web/setup.sh makes a fresh
// certificate and trusts it through NODE_EXTRA_CA_CERTS). A plain ws:// client on the TLS port
// fails cleanly: a typed rejection within its retries, not a hang.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "amrpc";
import { client, rejection, within } from "./helpers.mjs";

function tlsBase() {
  const v = process.env.AMRPC_TEST_URL_TLS;
  if (!v) throw new Error("AMRPC_TEST_URL_TLS is not set: run scripts/web/node.sh");
  return v.replace(/\/$/, "");
}

test("a Node client mirrors a worker over wss://", async () => {
  const url = `${tlsBase()}/ws/test`;
  assert.match(url, /^wss:\/\//);
  const m = await client({}, url);
  assert.equal(m.status, "ready");
  assert.equal(await within(m.add1("A"), 5000, "add over TLS"), "executed");
  assert.ok(m.is("A"));
  assert.equal(await within(m.remove1("A"), 5000, "remove over TLS"), "executed");
  assert.ok(m.not("A"));
});

test("a plain ws:// client on the TLS port is refused cleanly", async () => {
  const plain = `${tlsBase().replace(/^wss:/, "ws:")}/ws/test`;
  const err = await rejection(
    connect(plain, { clientId: "plain", connRetries: 2, retryDelayMs: 50 }),
    10_000,
    "plain ws to the TLS port",
  );
  assert.ok(err instanceof Error);
  assert.equal(err.code, "ConnRetryFailed", err.message);
});
