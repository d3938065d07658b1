// Every state: active flag, tick, Auto/Multi flags, relation badges; add / remove / set from the
// page with an args editor (live only), and the last mutation's result with why it was canceled.
import { useState } from "react";
import type { Args, Clock, MutationResult, MutationType, Schema } from "amrpc";
import { isActive } from "../model";
import { RELATIONS } from "./Graph";

export type Mutate = (type: MutationType, states: string[], args: Args | undefined) => Promise<MutationResult>;

export function StatesView({
  names,
  schema,
  clock,
  mutate,
  error,
}: {
  names: string[];
  schema: Schema;
  clock: Clock;
  /** null: not live (time travel, a recording, disconnected) */
  mutate: Mutate | null;
  error: string | undefined;
}) {
  const [argsText, setArgsText] = useState("");
  const [result, setResult] = useState<{ text: string; kind: string } | null>(null);
  let args: Args | undefined;
  let argsError = "";
  if (argsText.trim()) {
    try {
      const v: unknown = JSON.parse(argsText);
      if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("args must be a JSON object");
      args = v as Args;
    } catch (e) {
      argsError = (e as Error).message;
    }
  }
  const run = async (type: MutationType, state: string) => {
    if (!mutate || argsError) return;
    try {
      const r = await mutate(type, [state], args);
      const why = r.why ? `: ${r.why.text}` : "";
      setResult({ kind: r.outcome, text: `${type} ${state} → ${r.outcome}${why}` });
    } catch (e) {
      const err = e as { code?: string; message?: string };
      setResult({ kind: "error", text: `${type} ${state} → ${err.code ?? "error"}: ${err.message ?? String(e)}` });
    }
  };
  return (
    <section className="states-view" aria-label="States">
      <div className="mutate-bar">
        <label>
          args (JSON){" "}
          <input
            className={`args-input${argsError ? " bad" : ""}`}
            value={argsText}
            placeholder='{"url": "https://…"}'
            onChange={(e) => setArgsText(e.target.value)}
            aria-invalid={argsError ? true : undefined}
            disabled={!mutate}
            spellCheck={false}
          />
        </label>
        {argsError && <span className="bad-text">{argsError}</span>}
        <output className={`result result-${result?.kind ?? "none"}`} aria-live="polite" data-result={result?.kind}>
          {result?.text ?? (mutate ? "add, remove or set a state" : "read-only: not live")}
        </output>
      </div>
      {error && (
        <p className="worker-error" role="alert">
          worker error: {error}
        </p>
      )}
      <table className="states">
        <thead>
          <tr>
            <th scope="col">state</th>
            <th scope="col">tick</th>
            <th scope="col">relations</th>
            <th scope="col">
              <span className="sr-only">actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {names.map((name) => {
            const tick = clock[name] ?? 0;
            const active = isActive(tick);
            const def = schema[name] ?? {};
            return (
              <tr key={name} className={active ? "active" : ""} data-state={name} data-active={active} data-tick={tick}>
                <th scope="row">
                  <span className="dot" aria-hidden="true" />
                  <span className="name">{name}</span>
                  <span className="sr-only">{active ? " active" : " inactive"}</span>
                  {def.auto && <span className="flag">auto</span>}
                  {def.multi && <span className="flag">multi</span>}
                </th>
                <td className="tick">{tick}</td>
                <td className="rels">
                  {RELATIONS.filter((r) => def[r]?.length).map((r) => (
                    <span key={r} className={`badge rel-${r}`} title={`${r}: ${def[r]!.join(", ")}`}>
                      {r} {def[r]!.join(", ")}
                    </span>
                  ))}
                </td>
                <td className="actions">
                  <button type="button" disabled={!mutate} onClick={() => run("add", name)} aria-label={`add ${name}`}>
                    add
                  </button>
                  <button type="button" disabled={!mutate} onClick={() => run("remove", name)} aria-label={`remove ${name}`}>
                    remove
                  </button>
                  <button type="button" disabled={!mutate} onClick={() => run("set", name)} aria-label={`set ${name}`}>
                    set
                  </button>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}
