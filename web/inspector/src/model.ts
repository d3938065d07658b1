// The inspector's data: a recording of one worker's transitions and payloads, live or loaded
// from an exported file, and what the views show at the selected point in time.
import type { Args, Clock, Schema, Transition } from "amrpc";

/** One line of the transition log. */
export type Entry =
  | { kind: "transition"; id: number; t: Transition }
  | { kind: "dropped"; id: number; n: number; time: number };

/** A payload the worker sent. */
export interface PayloadEntry {
  id: number;
  time: number;
  name: string;
  source: string;
  size: number;
  preview: string;
}

/** What an export file holds. */
export interface Recording {
  format: "amrpc-inspector";
  version: 1;
  worker: string;
  workerId: string;
  names: string[];
  schema: Schema;
  entries: Entry[];
  payloads: PayloadEntry[];
  exportedAt: number;
}

/** The clock after `entries[upTo]` (the last transition at or before it), or null. */
export function clockAt(entries: Entry[], upTo: number): Clock | null {
  for (let i = Math.min(upTo, entries.length - 1); i >= 0; i--) {
    const e = entries[i];
    if (e.kind === "transition") return e.t.clock;
  }
  return null;
}

export const isActive = (tick: number | undefined) => (tick ?? 0) % 2 === 1;

/** The source of a transition in words. */
export function sourceText(t: Transition): string {
  const s = t.source;
  if (s.kind === "session") return s.client || `session ${String(s.epoch)}`;
  return s.kind;
}

/** Did the transition change any tick (against the one before it)? */
export function changed(entries: Entry[], index: number): boolean {
  const e = entries[index];
  if (e.kind !== "transition") return true;
  const before = clockAt(entries, index - 1);
  if (!before) return true;
  return Object.keys(e.t.clock).some((k) => e.t.clock[k] !== before[k]);
}

/** Human-readable args. */
export function argsText(args: Args): string {
  const keys = Object.keys(args);
  if (keys.length === 0) return "";
  return JSON.stringify(args, replacer);
}

// ---- export / import: bigint and bytes survive JSON ----

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return { $bigint: value.toString() };
  if (value instanceof Uint8Array) return { $bytes: Array.from(value) };
  return value;
}

function reviver(_key: string, value: unknown): unknown {
  if (value && typeof value === "object") {
    const v = value as Record<string, unknown>;
    if (typeof v.$bigint === "string" && Object.keys(v).length === 1) return BigInt(v.$bigint);
    if (Array.isArray(v.$bytes) && Object.keys(v).length === 1) return Uint8Array.from(v.$bytes as number[]);
  }
  return value;
}

export function toFile(r: Recording): string {
  return JSON.stringify(r, replacer, 1);
}

/** Parse an export file; throws an Error saying what is wrong. */
export function fromFile(text: string): Recording {
  let r: unknown;
  try {
    r = JSON.parse(text, reviver);
  } catch (e) {
    throw new Error(`not JSON: ${(e as Error).message}`);
  }
  const x = r as Partial<Recording>;
  if (!x || x.format !== "amrpc-inspector") throw new Error("not an amrpc inspector recording");
  if (x.version !== 1) throw new Error(`unsupported recording version ${String(x.version)}`);
  if (!Array.isArray(x.names) || !Array.isArray(x.entries) || typeof x.schema !== "object") {
    throw new Error("a recording needs names, schema and entries");
  }
  return { payloads: [], ...x } as Recording;
}
