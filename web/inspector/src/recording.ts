// Records a live worker's stream: transitions, drop markers and payloads, at most MAX_ENTRIES
// (the oldest go). Events are buffered and applied once per animation frame, so a worker doing
// thousands of transitions per second costs one render per frame, not one per transition.
import { useEffect, useRef, useState } from "react";
import type { Dropped, Payload, RemoteMachine, Transition } from "amrpc";
import type { Entry, PayloadEntry } from "./model";

export const MAX_ENTRIES = 5000;
const MAX_PAYLOADS = 500;

export interface Recorded {
  entries: Entry[];
  payloads: PayloadEntry[];
  /** Entries that fell off the front (MAX_ENTRIES). */
  trimmed: number;
}

const empty: Recorded = { entries: [], payloads: [], trimmed: 0 };

function preview(data: Uint8Array): string {
  const head = data.subarray(0, 80);
  const text = new TextDecoder("utf-8", { fatal: false }).decode(head);
  return /^[\x20-\x7e\s]*$/.test(text) ? text : Array.from(head.subarray(0, 24), (b) => b.toString(16).padStart(2, "0")).join(" ");
}

export function useRecording(machine: RemoteMachine | null): [Recorded, () => void] {
  const [rec, setRec] = useState<Recorded>(empty);
  const pending = useRef<{ entries: Entry[]; payloads: PayloadEntry[] }>({ entries: [], payloads: [] });
  const nextId = useRef(1);
  useEffect(() => {
    // another worker (or none): a new recording
    setRec(empty);
    pending.current = { entries: [], payloads: [] };
    if (!machine) return undefined;
    let frame = 0;
    const flush = () => {
      frame = 0;
      const p = pending.current;
      pending.current = { entries: [], payloads: [] };
      if (p.entries.length === 0 && p.payloads.length === 0) return;
      setRec((r) => {
        let entries = r.entries.concat(p.entries);
        let trimmed = r.trimmed;
        if (entries.length > MAX_ENTRIES) {
          trimmed += entries.length - MAX_ENTRIES;
          entries = entries.slice(entries.length - MAX_ENTRIES);
        }
        let payloads = r.payloads.concat(p.payloads);
        if (payloads.length > MAX_PAYLOADS) payloads = payloads.slice(payloads.length - MAX_PAYLOADS);
        return { entries, payloads, trimmed };
      });
    };
    const schedule = () => {
      if (!frame) frame = requestAnimationFrame(flush);
    };
    const onTransition = (t: Transition) => {
      pending.current.entries.push({ kind: "transition", id: nextId.current++, t });
      schedule();
    };
    const onDropped = (d: Dropped) => {
      pending.current.entries.push({ kind: "dropped", id: nextId.current++, n: d.n, time: Date.now() });
      schedule();
    };
    const onPayload = (p: Payload) => {
      pending.current.payloads.push({
        id: nextId.current++,
        time: Date.now(),
        name: p.name,
        source: p.source,
        size: p.data.length,
        preview: preview(p.data),
      });
      schedule();
    };
    machine.on("transition", onTransition);
    machine.on("dropped", onDropped);
    machine.on("payload", onPayload);
    return () => {
      machine.off("transition", onTransition);
      machine.off("dropped", onDropped);
      machine.off("payload", onPayload);
      if (frame) cancelAnimationFrame(frame);
    };
  }, [machine]);
  const clear = () => setRec(empty);
  return [rec, clear];
}
