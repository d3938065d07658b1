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

test("tsc --noEmit accepts correct uses and rejects wrong ones (types/check.ts)", () => {
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
