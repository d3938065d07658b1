// The Node figure (run by `amrpc-bench node`): the npm package and the `ws` package as installed
// in a project (`AMRPC_NODE_DIR`, by default target/node-tests, which scripts/web/node.sh
// installs from the packed tarball), against the bench's server at `AMRPC_BENCH_BASE`.
// Prints one JSON line: the loop's result, or `{ "error": … }`.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { run } from './loop.mjs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};

try {
  const dir = path.resolve(env('AMRPC_NODE_DIR'));
  const require = createRequire(path.join(dir, 'package.json'));
  const amrpc = await import(pathToFileURL(require.resolve('amrpc')).href);
  const ws = require('ws');
  const out = await run({
    connect: amrpc.connect,
    // the WebSocket the package itself uses on this Node (the global one on Node >= 22)
    WebSocketImpl: typeof globalThis.WebSocket === 'function' ? globalThis.WebSocket : ws.WebSocket,
    base: env('AMRPC_BENCH_BASE'),
    n: Number(env('AMRPC_BENCH_N')),
    rounds: Number(env('AMRPC_BENCH_ROUNDS')),
    now: () => performance.now(),
    cpuMs: () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e3;
    },
  });
  out.runtime = `node ${process.version}`;
  console.log(JSON.stringify(out));
} catch (e) {
  console.log(JSON.stringify({ error: String((e && e.stack) || e) }));
  process.exitCode = 1;
}
