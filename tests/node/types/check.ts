// Compiled (never run) by types.test.mjs with `tsc --noEmit`: the package's .d.ts must give real
// types. Lines marked @ts-expect-error must NOT compile.
import { connect, Machine, RemoteMachine } from "amrpc";
import type { Args, AmrpcError, Clock, ConnectOptions, ErrorCode, Outcome, Payload, Schema, Status, HandlerEvent } from "amrpc";
import init, { Machine as WebMachine } from "amrpc/web";
import { Machine as BundlerMachine } from "amrpc/bundler";

async function remote(): Promise<void> {
  const opts: ConnectOptions = { clientId: "x", token: "t", connRetries: 3, schemaHash: 1n };
  const m: RemoteMachine = await connect("ws://127.0.0.1:1/ws/test", opts);
  await connect("ws://127.0.0.1:1/ws/test"); // options are optional
  const o1: Outcome = await m.add("A");
  const nothing: void = m.addNS(["A", "B"], { n: 1 });
  m.add1NS("A");
  m.removeNS("A");
  const synced: void = await m.sync();
  void [nothing, synced];
  const o2: Outcome = await m.add(["A", "B"], { n: 1, s: "x", bytes: new Uint8Array(1), list: [1, null], map: { k: 2n } });
  const o3: Outcome = await m.remove1("A");
  const o4: Outcome = await m.set("B", undefined);
  void [o1, o2, o3, o4];
  // @ts-expect-error states are names
  m.add(5);
  // @ts-expect-error args are plain values, not functions
  m.add("A", { f: () => 1 });
  // @ts-expect-error an outcome is not a boolean
  const wrong: boolean = await m.add("A");
  void wrong;

  const active: boolean = m.is("A") && m.not(["B"]) && m.any("A", ["B", "C"]);
  const tick: number = m.tick("A");
  const clock: Record<string, number> = m.clock();
  const names: string[] = m.stateNames();
  const which: string | undefined = m.switch("A", "B");
  const status: "connecting" | "open" | "ready" | "disconnected" | "closed" = m.status;
  void [active, tick, clock, names, which, status, m.time(), m.inspect(), m.activeStates()];

  const ac = new AbortController();
  await m.when("A", ac.signal);
  await m.whenNot(["A"]);
  await m.whenTicks("D", 2, AbortSignal.timeout(10));
  await m.whenTime(["A", "B"], [1, 2]);
  const signal: AbortSignal = m.stateSignal("A");
  void signal;

  m.on("payload", (p) => {
    const data: Uint8Array = p.data;
    const name: string = p.name;
    const token: bigint = p.token;
    void [data, name, token];
  });
  m.on("clock", (c) => {
    const a: number = c.A;
    void a;
  });
  m.on("status", (s) => {
    const st: Status = s;
    // @ts-expect-error not a status
    if (s === "bogus") void st;
  });
  const onErr = (e: AmrpcError) => {
    const code: ErrorCode = e.code;
    // @ts-expect-error not a code of the list
    if (e.code === "NoSuchCode") void code;
    if (e.code === "AccessDenied" || e.code === "InvalidUrl") void code;
  };
  m.on("error", onErr);
  m.off("error", onErr);
  m.on("transition", (t) => {
    const seq: number = t.seq;
    const called: string[] = t.called;
    const tick: number = t.clock.A;
    if (t.source.kind === "session") {
      const client: string = t.source.client;
      void client;
    }
    if (t.why && t.why.kind === "requires") {
      const missing: string = t.why.missing;
      void missing;
    }
    const handler: string | undefined = t.steps[0]?.handler;
    // @ts-expect-error not a step type
    if (t.steps[0]?.type === "bogus") void seq;
    void [seq, called, tick, handler];
  });
  m.on("dropped", (d) => {
    const n: number = d.n;
    void n;
  });
  const r = await m.mutate("add", "A");
  if (r.why) {
    const text: string = r.why.text;
    void text;
  }
  // @ts-expect-error no such event
  m.on("nope", () => {});
  // @ts-expect-error a payload is not a string
  m.on("payload", (p: string) => void p);
  const p: Payload | undefined = undefined;
  const c: Clock = {};
  void [p, c];
  m.close();
}

function local(): void {
  const schema: Schema = { Foo: { require: ["Bar"] }, Bar: { multi: true, tags: ["t"] } };
  const m = new Machine(schema);
  const m2 = new Machine(schema, { id: "x", handlerTimeoutMs: 50 });
  const o: Outcome = m.add("Foo");
  m.handle("FooEnter", (e: HandlerEvent) => {
    const args: Args = e.args;
    const other: Machine = e.machine;
    void [args, other];
    return false;
  });
  m.handle("FooState", () => {});
  // @ts-expect-error a handler returns boolean or nothing
  m.handle("FooState", () => 5);
  // @ts-expect-error schema entries are StateDefs
  new Machine({ Foo: { require: "Bar" } });
  const err: string | undefined = m.err();
  void [o, m2, err];
  m.dispose();
}

async function web(): Promise<void> {
  await init({ module_or_path: new URL("https://example.invalid/amrpc_bg.wasm") });
  const m = new WebMachine({ A: {} });
  const b = new BundlerMachine({ A: {} });
  void [m.add("A"), b.add("A")];
}

void [remote, local, web];
