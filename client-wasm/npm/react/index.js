// amrpc/react for browsers: the `web` build, initialised on first use (bundlers such as Vite and
// webpack 5 resolve its .wasm through `new URL(…, import.meta.url)`; no wasm plugin needed). An
// app that uses the `bundler` build can bind the hooks to it with `createHooks(connect)`.
import init, { connect as webConnect } from "../web/amrpc.js";
import { createHooks } from "./hooks.js";

export { createHooks, WorkerProvider, useMachine, useIs, useTick, useClock, useTransitions } from "./hooks.js";

let ready = null;
async function connect(url, options) {
  ready = ready || init();
  await ready;
  return webConnect(url, options);
}

export const { useWorker } = createHooks(connect);
