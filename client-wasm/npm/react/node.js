// amrpc/react for Node (server rendering, tests): the Node build of the package.
import amrpc from "../node/index.js";
import { createHooks } from "./hooks.js";

export { createHooks, WorkerProvider, useMachine, useIs, useTick, useClock, useTransitions } from "./hooks.js";
export const { useWorker } = createHooks(amrpc.connect);
