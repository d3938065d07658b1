//! # amrpc-wasm
//!
//! amrpc for JavaScript: `connect()` mirrors a server-side state machine over WebSocket
//! (reads and waits answer locally, mutations go to the worker), and `Machine` runs one
//! locally. A thin shell around `amrpc-core`: the protocol and the machine live there.

#![warn(missing_docs)]

mod interop;
mod machine;
mod remote;
mod shared;
mod socket;
mod waits;

pub use interop::error_codes;
pub use machine::JsMachine;
pub use remote::{RemoteMachine, connect};
pub use socket::use_web_socket;

use wasm_bindgen::prelude::*;

/// The `ErrorCode` union, generated from the core's one list of codes.
#[wasm_bindgen(typescript_custom_section)]
const TS_ERROR_CODE: &str = amrpc_core::TS_ERROR_CODE;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
/** A mutation's result. */
export type Outcome = "executed" | "canceled" | "queued";
/** A mutation's result with its queue tick (`mutate()`): a queued mutation can be awaited with
 * `whenQueue(queueTick)`. */
export interface MutationResult {
  outcome: Outcome;
  /** The worker's queue tick of a queued mutation. */
  queueTick?: number;
  /** Why a canceled mutation was canceled (absent when the worker could not say, e.g. a
   * retried call answered from the replay cache). */
  why?: Why;
}
/** Why a mutation was canceled: `text` reads like "Downloading requires Online". */
export type Why =
  | { kind: "requires"; text: string; state: string; missing: string }
  | { kind: "removed"; text: string; state: string; by: string }
  | { kind: "handler" | "timeout" | "panic"; text: string; handler: string }
  | { kind: "rejected"; text: string; state: string }
  | { kind: "disposed" | "queueFull"; text: string };
/** A mutation type for `mutate()`. */
export type MutationType = "add" | "remove" | "set";
/** One state name or several. */
export type StateNames = string | string[];
/** An argument value: what crosses the wire. Integers above 2^53 arrive as bigint. */
export type ArgValue = null | boolean | number | bigint | string | Uint8Array | ArgValue[] | { [key: string]: ArgValue };
/** Mutation arguments. */
export type Args = { [key: string]: ArgValue };
/** One state's definition. */
export interface StateDef {
  /** Activated automatically after other transitions, when its relations allow. */
  auto?: boolean;
  /** Re-entered (tick +2) when added while active. */
  multi?: boolean;
  /** States that must be active with this one. */
  require?: string[];
  /** States activated with this one. */
  add?: string[];
  /** States deactivated by this one. */
  remove?: string[];
  /** Handler order: after these states' handlers. */
  after?: string[];
  /** Free-form tags. */
  tags?: string[];
}
/** A schema: state name → definition. */
export type Schema = { [state: string]: StateDef };
/** Options of `new Machine()`. */
export interface MachineOptions {
  /** Machine id (random by default). */
  id?: string;
  /** The state order (`stateNames()`); must list every state. */
  names?: string[];
  /** Handler timeout in ms (default 100). */
  handlerTimeoutMs?: number;
}
/** What a handler receives. */
export interface HandlerEvent {
  /** The handler's name, e.g. "FooEnter". */
  name: string;
  /** The mutation's args. */
  args: Args;
  /** The machine (call any method; mutations are queued and return "queued"). */
  machine: Machine;
}
/** Options of `connect()`. */
export interface ConnectOptions {
  /** Client id, checked by servers with an allow-list (default "rc-browser"). */
  clientId?: string;
  /** Auth token (sent in Hello; you may also put `?token=` in the URL). */
  token?: string;
  /** Refuse a worker whose schema hash differs (bigint or hex string). */
  schemaHash?: bigint | string;
  /** Wished push interval in ms (0: no pushes; default: the server's, 16 ms). */
  pushIntervalMs?: number;
  /** Receive only these states. */
  states?: string[];
  /** Shallow clocks: receive only which states are active, not their ticks (fewer bytes; the
   * mirror's ticks then count the activations it saw). */
  shallow?: boolean;
  /** A dial that takes longer fails (and is retried), in ms (default 3000). */
  connTimeoutMs?: number;
  /** Failed connection attempts in a row before giving up (default 15). */
  connRetries?: number;
  /** First reconnect delay in ms, doubled up to `retryBackoffMs`, with jitter (default 100). */
  retryDelayMs?: number;
  /** Reconnect delay cap in ms (default 3000). */
  retryBackoffMs?: number;
  /** A call without a reply for this long is resent; it still runs at most once (default 3000). */
  callTimeoutMs?: number;
  /** Resends before a call rejects with `Timeout` (default 15). */
  callRetries?: number;
  /** Reconnect after a drop (default true). */
  reconnect?: boolean;
  /** Subscribe to the worker's transitions: a "transition" event per transition, "dropped" when
   * the server skipped some (this client fell behind); resumes after a reconnect. */
  stream?: boolean;
  /** Upstream's PushAllTicks: a clock update per worker transition, no coalescing. */
  allTicks?: boolean;
}
/** One side of a step: a state name, or "Any". */
export interface Step {
  type: "rel" | "handler" | "set" | "remove" | "removenotactive" | "requested" | "cancel";
  from?: string;
  to?: string;
  relation?: "require" | "add" | "remove" | "after";
  handler?: string;
}
/** Who caused a transition. */
export type TransitionSource =
  | { kind: "worker" }
  | { kind: "auto" }
  | { kind: "session"; epoch: bigint; client: string };
/** One transition of the worker (the "transition" event with `stream: true`). */
export interface Transition {
  /** Position in the worker's log (consecutive from 1; starts again when the worker restarts). */
  seq: number;
  /** When it ended (ms since the Unix epoch, the worker's clock). */
  time: number;
  type: "add" | "remove" | "set";
  called: string[];
  args: Args;
  /** The args were too large and are cut to their keys. */
  argsCut: boolean;
  source: TransitionSource;
  accepted: boolean;
  why?: Why;
  /** Every state's tick after it. */
  clock: { [state: string]: number };
  steps: Step[];
}
/** The "dropped" event: `n` transitions were not sent; `next` is the next `seq`. */
export interface Dropped { n: number; next: number }
/** A WebSocket implementation (the browser's, or e.g. the `ws` package's `WebSocket`). */
export type WebSocketConstructor = new (url: string) => object;
/** Events of a RemoteMachine. */
export type RemoteEvent = "clock" | "payload" | "status" | "error" | "transition" | "dropped";
/** An error from amrpc: `code` is one of the stable `ErrorCode`s. */
export interface AmrpcError extends Error { code: ErrorCode }
"#;
