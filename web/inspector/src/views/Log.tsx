// The transition log: source, result (with why), called states, args, relation steps and
// handler calls of every transition; filters and search; selecting an entry time-travels.
import { memo, useCallback, useMemo, useRef, useState } from "react";
import type { Step } from "amrpc";
import { argsText, changed, sourceText, type Entry } from "../model";

export interface Filters {
  hideCanceled: boolean;
  hideAuto: boolean;
  hideNoop: boolean;
  state: string;
  source: string;
  search: string;
}

export const noFilters: Filters = { hideCanceled: false, hideAuto: false, hideNoop: false, state: "", source: "", search: "" };

function stepText(s: Step): string {
  const rel = s.relation ? ` ${s.relation}` : "";
  const h = s.handler ? ` ${s.handler}` : "";
  const from = s.from ?? "";
  const to = s.to ? ` → ${s.to}` : "";
  return `${s.type}${rel}${h} ${from}${to}`.trim();
}

/** Indexes of the entries the filters keep. */
export function filtered(entries: Entry[], f: Filters): number[] {
  const q = f.search.trim().toLowerCase();
  const out: number[] = [];
  entries.forEach((e, i) => {
    if (e.kind === "dropped") {
      out.push(i);
      return;
    }
    const t = e.t;
    if (f.hideCanceled && !t.accepted) return;
    if (f.hideAuto && t.source.kind === "auto") return;
    if (f.hideNoop && t.accepted && !changed(entries, i)) return;
    if (f.state && !t.called.includes(f.state) && !t.steps.some((s) => s.from === f.state || s.to === f.state)) return;
    if (f.source && sourceText(t) !== f.source) return;
    if (q) {
      const hay = `${t.type} ${t.called.join(" ")} ${sourceText(t)} ${argsText(t.args)} ${t.why?.text ?? ""} ${t.steps
        .map(stepText)
        .join(" ")}`.toLowerCase();
      if (!hay.includes(q)) return;
    }
    out.push(i);
  });
  return out;
}

export function LogView({
  entries,
  names,
  filters,
  setFilters,
  selected,
  select,
  trimmed,
}: {
  entries: Entry[];
  names: string[];
  filters: Filters;
  setFilters: (f: Filters) => void;
  selected: number | null;
  select: (index: number | null) => void;
  trimmed: number;
}) {
  const [open, setOpen] = useState<Set<number>>(new Set());
  const shown = useMemo(() => filtered(entries, filters), [entries, filters]);
  const sources = useMemo(() => {
    const s = new Set<string>();
    for (const e of entries) if (e.kind === "transition") s.add(sourceText(e.t));
    return [...s].sort();
  }, [entries]);
  const toggle = useCallback((id: number) => {
    setOpen((o) => {
      const n = new Set(o);
      if (n.has(id)) n.delete(id);
      else n.add(id);
      return n;
    });
  }, []);
  const set = (patch: Partial<Filters>) => setFilters({ ...filters, ...patch });
  // newest first; 100 rows rendered, more on request (the filters and search reach them all)
  const [limit, setLimit] = useState(PAGE);
  const rows = shown.slice(-limit).reverse();
  // rows select by entry id: indexes move when old entries fall off the front
  const ref = useRef(entries);
  ref.current = entries;
  const selectId = useCallback(
    (id: number | null) => select(id === null ? null : ref.current.findIndex((e) => e.id === id)),
    [select],
  );
  return (
    <section className="log-view" aria-label="Transition log">
      <div className="filters" role="group" aria-label="Filters">
        <input
          className="search"
          type="search"
          placeholder="search (/)"
          aria-label="search the log"
          value={filters.search}
          onChange={(e) => set({ search: e.target.value })}
        />
        <label>
          <input type="checkbox" checked={filters.hideCanceled} onChange={(e) => set({ hideCanceled: e.target.checked })} /> hide
          canceled
        </label>
        <label>
          <input type="checkbox" checked={filters.hideAuto} onChange={(e) => set({ hideAuto: e.target.checked })} /> hide auto
        </label>
        <label>
          <input type="checkbox" checked={filters.hideNoop} onChange={(e) => set({ hideNoop: e.target.checked })} /> hide no-op
        </label>
        <select aria-label="filter by state" value={filters.state} onChange={(e) => set({ state: e.target.value })}>
          <option value="">any state</option>
          {names.map((n) => (
            <option key={n}>{n}</option>
          ))}
        </select>
        <select aria-label="filter by source" value={filters.source} onChange={(e) => set({ source: e.target.value })}>
          <option value="">any source</option>
          {sources.map((n) => (
            <option key={n}>{n}</option>
          ))}
        </select>
        <span className="count" aria-live="polite">
          {shown.length} of {entries.length}
          {trimmed ? ` (${trimmed} older dropped)` : ""}
        </span>
      </div>
      {rows.length === 0 && <p className="empty">No transitions yet: change a state, here or from any client.</p>}
      <ol className="log" reversed>
        {rows.map((i) => (
          <Row key={entries[i].id} e={entries[i]} selected={selected === i} open={open.has(entries[i].id)} select={selectId} toggle={toggle} />
        ))}
      </ol>
      {shown.length > rows.length && (
        <button type="button" className="older" onClick={() => setLimit(limit + PAGE * 2)}>
          show older ({shown.length - rows.length} more)
        </button>
      )}
    </section>
  );
}

const PAGE = 100;

// one formatter for every row (toLocaleTimeString builds one per call)
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3 });
const clockTime = (ms: number) => timeFormat.format(ms);

/** One log line; memoized: a new transition renders one row, not the whole list. */
const Row = memo(function Row({
  e,
  selected,
  open,
  select,
  toggle,
}: {
  e: Entry;
  selected: boolean;
  open: boolean;
  select: (id: number | null) => void;
  toggle: (id: number) => void;
}) {
  if (e.kind === "dropped") {
    return (
      <li className="entry dropped" data-dropped={e.n}>
        {e.n} transitions dropped (this page fell behind the worker)
      </li>
    );
  }
  const t = e.t;
  const cls = `entry${t.accepted ? "" : " canceled"}${selected ? " selected" : ""}`;
  const args = argsText(t.args);
  return (
    <li className={cls} data-seq={t.seq} data-accepted={t.accepted}>
      <div className="entry-head">
        <button
          type="button"
          className="travel"
          onClick={() => select(selected ? null : e.id)}
          aria-pressed={selected}
          title="show the machine as it was after this transition"
        >
          #{t.seq}
        </button>
        <time dateTime={new Date(t.time).toISOString()}>{clockTime(t.time)}</time>
        <span className="src" data-source={sourceText(t)}>
          {sourceText(t)}
        </span>
        <span className="what">
          {t.type} {t.called.join(" ")}
        </span>
        <span className={`outcome ${t.accepted ? "ok" : "no"}`}>{t.accepted ? "executed" : "canceled"}</span>
        {t.why && <span className="why">{t.why.text}</span>}
        {args && (
          <code className="args" title={t.argsCut ? "args cut to their keys (too large)" : undefined}>
            {args}
            {t.argsCut ? " (cut)" : ""}
          </code>
        )}
        <button type="button" className="more" aria-expanded={open} onClick={() => toggle(e.id)}>
          {t.steps.length} steps
        </button>
      </div>
      {open && (
        <ol className="steps">
          {t.steps.map((s, j) => (
            <li key={j} className={`step step-${s.type}${s.relation ? ` rel-${s.relation}` : ""}`}>
              {stepText(s)}
            </li>
          ))}
        </ol>
      )}
    </li>
  );
});
