// Tighten the wasm-bindgen .d.ts of the npm package `amrpc` (run by scripts/web/pack.sh on each
// target's amrpc.d.ts; the generated files in target/npm/<target> are left alone).
//
// wasm-bindgen writes `JsValue` parameters that may be omitted as `x: T | undefined` (a required
// parameter: `m.add("A")` would not compile) and `js_sys::Function` as `Function`. This adds the
// types the bindings describe only in prose (payloads, statuses, the event map), makes trailing
// `T | undefined` parameters optional and types `on`/`off` per event. Each rewrite only applies
// while the generated text still has the loose form, so fixes in the bindings make it a no-op.
//
// Usage: node types.mjs FILE.d.ts...   (rewrites in place; prints what it did and what is left)
import { readFileSync, writeFileSync } from "node:fs";

const EXTRA = `
/** Connection status, as the \`"status"\` event reports it. */
export type Status = "connecting" | "open" | "ready" | "disconnected" | "closed";
/** Ticks by state name (odd: active). */
export type Clock = Record<string, number>;
/** A payload the worker sent to this client (\`"payload"\` event). */
export interface Payload {
  /** The payload's kind, e.g. "pong". */
  name: string;
  /** The sender's id. */
  source: string;
  /** Unique per payload (set by the server). */
  token: bigint;
  /** The payload's bytes. */
  data: Uint8Array;
}
/** What each event of a RemoteMachine passes to its listeners. */
export interface RemoteEventMap {
  /** The mirrored clock after every change. */
  clock: Clock;
  /** A payload from the worker. */
  payload: Payload;
  /** The connection status. */
  status: Status;
  /** A non-fatal error (e.g. the server closed the session; the client reconnects). */
  error: AmrpcError;
  /** One transition of the worker (with \`stream: true\`). */
  transition: Transition;
  /** Transitions the server skipped because this client fell behind. */
  dropped: Dropped;
}
`;

const TYPED = `
/** A worker's typings, for \`connect<Schema>()\`: \`amrpc types ws://…/ws/NAME\` writes one as
 * \`Schema\` (its state names as a union, each state's args type). */
export interface SchemaTypes {
  names: string;
  args: { [state: string]: object };
}
/** One state name of \`S\` or several. */
export type StateNamesOf<S extends SchemaTypes> = S["names"] | S["names"][];
/** The args of the states \`K\` of \`S\`. */
export type ArgsOf<S extends SchemaTypes, K extends S["names"]> = S["args"][K];
/** A RemoteMachine whose state names and args the compiler checks (\`connect<Schema>()\`): a
 * misspelt state or a wrong args shape is a type error. Otherwise the same object. */
export type TypedRemoteMachine<S extends SchemaTypes> = Omit<
  RemoteMachine,
  | "add" | "add1" | "remove" | "remove1" | "set" | "mutate" | "addNS" | "add1NS" | "removeNS"
  | "is" | "not" | "has" | "any" | "when" | "whenNot" | "whenArgs" | "whenTime" | "whenTicks"
  | "whenTicksEq" | "tick" | "stateSignal" | "switch" | "clock" | "time" | "inspect"
> & {
  add<K extends S["names"]>(states: K | K[], args?: ArgsOf<S, K>): Promise<Outcome>;
  add1<K extends S["names"]>(state: K, args?: ArgsOf<S, K>): Promise<Outcome>;
  remove<K extends S["names"]>(states: K | K[], args?: ArgsOf<S, K>): Promise<Outcome>;
  remove1<K extends S["names"]>(state: K, args?: ArgsOf<S, K>): Promise<Outcome>;
  set<K extends S["names"]>(states: K | K[], args?: ArgsOf<S, K>): Promise<Outcome>;
  mutate<K extends S["names"]>(type: MutationType, states: K | K[], args?: ArgsOf<S, K>): Promise<MutationResult>;
  addNS<K extends S["names"]>(states: K | K[], args?: ArgsOf<S, K>): void;
  add1NS<K extends S["names"]>(state: K, args?: ArgsOf<S, K>): void;
  removeNS<K extends S["names"]>(states: K | K[], args?: ArgsOf<S, K>): void;
  /** Resolves when \`state\`'s handler runs on the worker with args that hold all of \`args\`. */
  whenArgs<K extends S["names"]>(state: K, args: Partial<ArgsOf<S, K>>, signal?: AbortSignal | null): Promise<void>;
  is(states: StateNamesOf<S>): boolean;
  not(states: StateNamesOf<S>): boolean;
  has(states: StateNamesOf<S>): boolean;
  any(...groups: StateNamesOf<S>[]): boolean;
  when(states: StateNamesOf<S>, signal?: AbortSignal | null): Promise<void>;
  whenNot(states: StateNamesOf<S>, signal?: AbortSignal | null): Promise<void>;
  whenTime(states: StateNamesOf<S>, times: Float64Array | number[], signal?: AbortSignal | null): Promise<void>;
  whenTicks(state: S["names"], ticks: number, signal?: AbortSignal | null): Promise<void>;
  whenTicksEq(state: S["names"], tick: number, signal?: AbortSignal | null): Promise<void>;
  tick(state: S["names"]): number;
  stateSignal(state: S["names"]): AbortSignal;
  switch<K extends S["names"]>(...groups: (K | K[])[]): K | undefined;
  clock(states?: StateNamesOf<S>): Record<S["names"], number>;
  time(states?: StateNamesOf<S>): number[];
  inspect(states?: StateNamesOf<S>): string;
};
`;

let failed = false;
for (const file of process.argv.slice(2)) {
  let text = readFileSync(file, "utf8");
  const done = [];

  if (!/export (interface|type) RemoteEventMap\b/.test(text)) {
    const anchor = /^export interface AmrpcError[^\n]*\n/m;
    if (anchor.test(text)) {
      text = text.replace(anchor, (m) => m + EXTRA);
      done.push("added Status, Clock, Payload, RemoteEventMap");
    } else {
      console.error(`${file}: no AmrpcError declaration to anchor the event types on`);
      failed = true;
    }
  }

  // wasm-bindgen declares `[Symbol.dispose]()`: without this reference a project whose `lib` is
  // older than esnext fails to compile the declarations (TS2550)
  if (text.includes("Symbol.dispose") && !text.includes('<reference lib="esnext.disposable"')) {
    text = text.replace(/^(\/\* tslint:disable \*\/\n\/\* eslint-disable \*\/\n)?/, (m) => `${m}/// <reference lib="esnext.disposable" />\n`);
    done.push("referenced lib esnext.disposable (Symbol.dispose)");
  }

  // on(event: RemoteEvent, callback: Function) → typed per event
  text = text.replace(
    /\b(on|off)\(event: RemoteEvent, callback: Function\): void;/g,
    (_m, name) => {
      done.push(`typed ${name}() per event`);
      return `${name}<E extends RemoteEvent>(event: E, callback: (value: RemoteEventMap[E]) => void): void;`;
    },
  );

  // trailing `x: T | undefined` parameters → `x?: T` (repeat: several may trail)
  let n = 0;
  for (;;) {
    const before = text;
    text = text.replace(
      /(\(|, )(\w+): ([^,():]+?) \| undefined((?:, \w+\?: [^,()]+?)*)\)/g,
      (_m, lead, name, type, rest) => {
        n++;
        return `${lead}${name}?: ${type}${rest})`;
      },
    );
    if (text === before) break;
  }
  if (n) done.push(`${n} parameter(s) made optional`);

  // connect<Schema>(): the typed overload, after the untyped one (so `connect(url)` keeps
  // returning a RemoteMachine)
  const untyped = "export function connect(url: string | string[], options?: ConnectOptions): Promise<RemoteMachine>;\n";
  if (!text.includes("TypedRemoteMachine<S>>")) {
    if (text.includes(untyped)) {
      text = text.replace(
        untyped,
        untyped +
          "/** Connect with a worker's typings (`amrpc types` writes them): names and args are checked. */\n" +
          "export function connect<S extends SchemaTypes>(url: string | string[], options?: ConnectOptions): Promise<TypedRemoteMachine<S>>;\n",
      );
      text = text.replace(/^export interface AmrpcError[^\n]*\n/m, (m) => m + TYPED);
      done.push("added SchemaTypes, TypedRemoteMachine and connect<S>()");
    } else {
      console.error(`${file}: no connect() declaration for the typed overload`);
      failed = true;
    }
  }

  writeFileSync(file, text);

  // what is still loose in the public part (InitOutput is wasm-bindgen's raw ABI: skipped)
  const publicPart = text.split(/^export interface InitOutput\b/m)[0];
  const loose = publicPart
    .split("\n")
    .filter((l) => !l.trim().startsWith("*") && !l.trim().startsWith("/"))
    .filter((l) => /:\s*any\b|=>\s*any\b|<any>|\bFunction\b|: [^,()]+ \| undefined[,)]/.test(l))
    .map((l) => l.trim());
  console.log(`${file}: ${done.length ? done.join("; ") : "nothing to change"}`);
  for (const l of loose) console.log(`  still loose: ${l}`);
}
process.exit(failed ? 1 : 0);
