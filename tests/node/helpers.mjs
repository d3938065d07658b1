// Shared helpers of the Node tests: the server URLs, bounded waits and client cleanup.
// The package under test is `amrpc` from node_modules (installed from the packed tarball by
// scripts/web/node.sh), never the source folder.
import { after } from "node:test";
import { connect } from "amrpc";

// Node 20 has no global WebSocket: the package's Node entry finds the `ws` package by itself
// (no `globalThis.WebSocket` here, so every test also checks that).

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run scripts/web/node.sh (it starts the test servers)`);
  return v.replace(/\/$/, "");
}

/** The open test server's `test` worker. */
export const URL_OPEN = () => `${env("AMRPC_TEST_URL")}/ws/test`;
/** The locked server's `test` worker (client id `allowed-client`, token `secret`). */
export const URL_LOCKED = () => `${env("AMRPC_TEST_URL_LOCKED")}/ws/test`;

/** Rejects with a timeout error when `p` does not settle within `ms`. */
export function within(p, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** True when `p` is still pending after `ms`. */
export async function stillPending(p, ms = 100) {
  const pending = Symbol("pending");
  const r = await Promise.race([p.then(() => "resolved", () => "rejected"), sleep(ms).then(() => pending)]);
  return r === pending;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` until it is true (bounded). */
export async function until(cond, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    if (cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await sleep(10);
  }
}

/** The rejection of `p` (fails when it resolves or stays pending past `ms`). */
export async function rejection(p, ms, what) {
  try {
    await within(p, ms, what);
  } catch (e) {
    return e;
  }
  throw new Error(`expected a rejection: ${what}`);
}

const open = new Set();
after(() => {
  for (const m of open) m.close();
  open.clear();
});

let seq = 0;
/** `connect()` to the open test worker (bounded; closed after the file's tests). */
export async function client(opts = {}, url = URL_OPEN()) {
  const m = await within(
    connect(url, { clientId: `node-${process.pid}-${++seq}`, ...opts }),
    10_000,
    `connect ${url}`,
  );
  open.add(m);
  return m;
}

/** Close clients now (they are also closed after the file). */
export function closeAll(...ms) {
  for (const m of ms) {
    m.close();
    open.delete(m);
  }
}

/** Reset the worker's user states (A–D) so each test starts from the same place. */
export async function reset(m) {
  await within(m.remove(["A", "B", "C"]), 5000, "reset");
}
