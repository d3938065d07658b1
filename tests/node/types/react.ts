// amrpc/react's declarations: hooks return what they say; wrong uses do not compile.
import { createElement as h } from "react";
import type { ReactElement } from "react";
import { createHooks, useClock, useIs, useMachine, useTick, useTransitions, useWorker, WorkerProvider } from "amrpc/react";
import { connect } from "amrpc";

export function App(): ReactElement {
  const w = useWorker("ws://127.0.0.1:1/ws/test", { stream: true });
  const ready: boolean = w.status === "ready";
  const code: string | undefined = w.error?.code;
  const on: boolean = useIs("A", w.machine);
  const tick: number = useTick("A");
  const mm = useMachine();
  void mm?.add1("A");
  const a: number = useClock().A;
  const { transitions, dropped } = useTransitions(100);
  const seq: number | undefined = transitions[0]?.seq;
  const n: number = dropped;
  // @ts-expect-error a state name is a string
  useIs(1);
  // @ts-expect-error the url is a string or null
  useWorker(42);
  void [ready, code, on, tick, a, seq, n];
  return h(WorkerProvider, { worker: w }, h("p", null, String(on)));
}

export const bound = createHooks(connect).useWorker;
