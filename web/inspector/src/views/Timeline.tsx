// Tick timelines: one step plot per state of its tick over the recorded transitions (x: the
// transition's time), active spans shaded; the selected transition marked.
import { useMemo } from "react";
import type { Entry } from "../model";

const W = 560;
const H = 34;

export function TimelineView({ entries, names, selected }: { entries: Entry[]; names: string[]; selected: number | null }) {
  const series = useMemo(() => {
    const ts = entries.flatMap((e, i) => (e.kind === "transition" ? [{ i, time: e.t.time, clock: e.t.clock }] : []));
    if (ts.length === 0) return null;
    const t0 = ts[0].time;
    const t1 = Math.max(ts[ts.length - 1].time, t0 + 1);
    const x = (t: number) => ((t - t0) / (t1 - t0)) * (W - 8) + 4;
    return {
      t0,
      t1,
      x,
      selX: selected === null ? null : (() => {
        const e = entries[selected];
        return e && e.kind === "transition" ? x(e.t.time) : null;
      })(),
      rows: names.map((name) => {
        const ticks = ts.map((p) => p.clock[name] ?? 0);
        const min = Math.min(...ticks);
        const max = Math.max(...ticks, min + 1);
        const y = (v: number) => H - 4 - ((v - min) / (max - min)) * (H - 8);
        let d = "";
        let spans = "";
        ts.forEach((p, k) => {
          const px = x(p.time).toFixed(1);
          const py = y(ticks[k]).toFixed(1);
          d += k === 0 ? `M${px},${py}` : ` H${px} V${py}`;
          if (ticks[k] % 2 === 1) {
            const next = k + 1 < ts.length ? x(ts[k + 1].time) : W - 4;
            spans += `M${px},2 H${next.toFixed(1)} V${H - 2} H${px} Z `;
          }
        });
        return { name, d: `${d} H${W - 4}`, spans, last: ticks[ticks.length - 1], changes: new Set(ticks).size - 1 };
      }),
    };
  }, [entries, names, selected]);
  if (!series) return <p className="empty">No transitions recorded yet.</p>;
  return (
    <section className="timeline" aria-label="Tick timelines">
      <p className="axis">
        {new Date(series.t0).toLocaleTimeString()} – {new Date(series.t1).toLocaleTimeString()}
      </p>
      <ul className="tl-rows">
        {series.rows.map((r) => (
          <li key={r.name} data-timeline={r.name} data-changes={r.changes}>
            <span className="tl-name">{r.name}</span>
            <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" className="tl-plot" role="img" aria-label={`${r.name}: tick ${r.last}, ${r.changes} changes`}>
              <path d={r.spans} className="tl-active" />
              <path d={r.d} className="tl-line" />
              {series.selX !== null && <line x1={series.selX} x2={series.selX} y1="0" y2={H} className="tl-sel" />}
            </svg>
            <span className="tl-last">{r.last}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}
