// The package's TypeScript declarations: real types, checked by the TypeScript compiler.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = fileURLToPath(new URL(".", import.meta.url));
const pkgDir = fileURLToPath(new URL("..", import.meta.resolve("amrpc")));

test("tsc --noEmit accepts correct uses and rejects wrong ones (types/check.ts, types/typed.ts)", () => {
  // typed.ts checks connect<Schema>() against typings `amrpc types` writes from a live worker
  const bin = process.env.AMRPC_BIN;
  assert.ok(bin, "AMRPC_BIN is not set: run scripts/web/node.sh");
  const url = `${process.env.AMRPC_TEST_URL.replace(/\/$/, "")}/ws/typed`;
  execFileSync(bin, ["types", url, "--out", `${here}types/typed-worker.d.ts`], { encoding: "utf8", timeout: 30_000 });
  const generated = readFileSync(`${here}types/typed-worker.d.ts`, "utf8");
  assert.match(generated, /"Fetch": \{ url: string, retries: number, backoff: \("fixed" \| "exponential"\), label\?: string \};/);
  const require = createRequire(import.meta.url);
  const tsPkg = require.resolve("typescript/package.json");
  const tsc = join(dirname(tsPkg), require(tsPkg).bin.tsc);
  try {
    execFileSync(process.execPath, [tsc, "-p", `${here}types/tsconfig.json`], { encoding: "utf8", timeout: 60_000 });
  } catch (e) {
    assert.fail(`tsc failed:\n${e.stdout ?? ""}${e.stderr ?? ""}${e.message}`);
  }
});

test("no `any` and no bare `Function` in the public declarations", () => {
  for (const target of ["node", "bundler", "web"]) {
    const text = readFileSync(`${pkgDir}/${target}/amrpc.d.ts`, "utf8");
    // InitOutput (web) is wasm-bindgen's raw ABI, not the API
    const api = text.split(/^export interface InitOutput\b/m)[0];
    const loose = api
      .split("\n")
      .filter((l) => !/^\s*(\*|\/\*|\/\/)/.test(l))
      .filter((l) => /[:(<,]\s*any\b|=>\s*any\b|\bFunction\b|\bunknown\b/.test(l));
    assert.deepEqual(loose, [], `${target}/amrpc.d.ts`);
  }
});

test("the ErrorCode union, errorCodes() and the errors users receive agree", async () => {
  const { errorCodes, connect, Machine } = await import("amrpc");
  const { client, rejection, URL_LOCKED } = await import("./helpers.mjs");
  // the Rust list, exported as is
  const codes = errorCodes();
  assert.ok(codes.length > 20 && new Set(codes).size === codes.length, `${codes}`);
  // the TypeScript union of every build is generated from the same list
  for (const target of ["node", "bundler", "web"]) {
    const text = readFileSync(`${pkgDir}/${target}/amrpc.d.ts`, "utf8");
    const decl = text.match(/export type ErrorCode =([^;]*);/);
    assert.ok(decl, `${target}: no ErrorCode union`);
    assert.deepEqual([...decl[1].matchAll(/"(\w+)"/g)].map((x) => x[1]), codes, target);
  }
  // the errors a user meets carry codes of the list
  const errs = [];
  const local = new Machine({ A: {} });
  try {
    local.add("Nope");
  } catch (e) {
    errs.push(e);
  }
  errs.push(await rejection(connect("no-scheme:1/ws/x"), 3000, "malformed URL"));
  errs.push(await rejection(connect(URL_LOCKED(), { clientId: "intruder" }), 3000, "refused"));
  const m = await client();
  errs.push(await rejection(m.add("Nope"), 3000, "unknown state"));
  await m.remove1("A");
  const ac = new AbortController();
  const aborted = m.when("A", ac.signal);
  ac.abort();
  errs.push(await rejection(aborted, 3000, "aborted wait"));
  m.close();
  errs.push(await rejection(m.add("A"), 3000, "closed"));
  for (const e of errs) {
    assert.ok(e instanceof Error, `${e}`);
    assert.ok(codes.includes(e.code), `unknown code ${e.code}: ${e.message}`);
  }
  assert.deepEqual(
    errs.map((e) => e.code),
    ["StateUnknown", "InvalidUrl", "AccessDenied", "StateUnknown", "Aborted", "Closed"],
  );
});
