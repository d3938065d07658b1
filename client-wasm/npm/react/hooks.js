// React bindings for amrpc: connect to a worker for the life of a component, and read its
// mirrored clock with `useSyncExternalStore` (every hook unsubscribes on unmount or when its
// inputs change). `createHooks(connect)` binds them to one build of the package (browser or Node).
import {
  createContext,
  createElement,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
} from "react";

const WorkerContext = createContext(null);

const noop = () => {};

export function createHooks(connect) {
  /** Connect while mounted; reconnects are the client's own. Closed on unmount / url change. */
  function useWorker(url, options) {
    // options are read when the url changes (an inline object must not reconnect every render)
    const opts = useRef(options);
    opts.current = options;
    const [state, setState] = useState({ machine: null, status: "connecting", error: null });
    useEffect(() => {
      if (!url) {
        setState({ machine: null, status: "closed", error: null });
        return undefined;
      }
      let live = true;
      let machine = null;
      const onStatus = (status) => {
        if (live) setState((s) => ({ ...s, status }));
      };
      setState({ machine: null, status: "connecting", error: null });
      connect(url, opts.current).then(
        (m) => {
          if (!live) {
            m.close();
            return;
          }
          machine = m;
          m.on("status", onStatus);
          setState({ machine: m, status: m.status, error: null });
        },
        (error) => {
          if (live) setState({ machine: null, status: "closed", error });
        },
      );
      return () => {
        live = false;
        if (machine) {
          machine.off("status", onStatus);
          machine.close();
        }
      };
    }, [url]);
    return state;
  }

  return { useWorker };
}

/** Provide a connected worker (`useWorker`'s result) to the hooks below. */
export function WorkerProvider({ worker, children }) {
  return createElement(WorkerContext.Provider, { value: worker }, children);
}

function pick(machine) {
  const ctx = useContext(WorkerContext);
  return machine !== undefined ? machine : ctx ? ctx.machine : null;
}

/** A store over one event of a machine: subscribe/unsubscribe follow the machine. */
function useEvent(machine, event, read) {
  const subscribe = useMemo(
    () =>
      machine
        ? (cb) => {
            machine.on(event, cb);
            return () => machine.off(event, cb);
          }
        : () => noop,
    [machine, event],
  );
  return useSyncExternalStore(subscribe, read, read);
}

/** The provider's machine (or `machine`), for mutations: null before connecting. */
export function useMachine(machine) {
  return pick(machine);
}

/** Whether `state` is active on the worker (false before connecting). */
export function useIs(state, machine) {
  const m = pick(machine);
  return useEvent(m, "clock", () => (m ? m.is(state) : false));
}

/** `state`'s tick (0 before connecting). */
export function useTick(state, machine) {
  const m = pick(machine);
  return useEvent(m, "clock", () => (m ? m.tick(state) : 0));
}

/** The whole mirrored clock, a new object on each change (`{}` before connecting). */
export function useClock(machine) {
  const m = pick(machine);
  const cache = useRef({ m: null, version: -1, clock: {} });
  const version = useRef(0);
  const subscribe = useMemo(
    () =>
      m
        ? (cb) => {
            const on = () => {
              version.current += 1;
              cb();
            };
            m.on("clock", on);
            return () => m.off("clock", on);
          }
        : () => noop,
    [m],
  );
  const read = () => {
    const c = cache.current;
    if (c.m !== m || c.version !== version.current) {
      cache.current = { m, version: version.current, clock: m ? m.clock() : {} };
    }
    return cache.current.clock;
  };
  return useSyncExternalStore(subscribe, read, read);
}

/**
 * The worker's latest transitions, oldest first (at most `limit`), and how many were dropped.
 * The machine must be connected with `stream: true`.
 */
export function useTransitions(limit = 200, machine) {
  const m = pick(machine);
  const [state, setState] = useState({ transitions: [], dropped: 0 });
  useEffect(() => {
    setState({ transitions: [], dropped: 0 });
    if (!m) return undefined;
    const onTransition = (t) =>
      setState((s) => {
        const next = s.transitions.length >= limit ? s.transitions.slice(1 - limit) : s.transitions.slice();
        next.push(t);
        return { transitions: next, dropped: s.dropped };
      });
    const onDropped = (d) => setState((s) => ({ transitions: s.transitions, dropped: s.dropped + d.n }));
    m.on("transition", onTransition);
    m.on("dropped", onDropped);
    return () => {
      m.off("transition", onTransition);
      m.off("dropped", onDropped);
    };
  }, [m, limit]);
  return state;
}
