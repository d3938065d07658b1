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
        // one point per pixel column (the last tick in it): thousands of transitions stay cheap
        const pts: { x: number; tick: number }[] = [];
        for (const p of ts) {
          const px = Math.round(x(p.time));
          const tick = p.clock[name] ?? 0;
          const last = pts[pts.length - 1];
          if (last && last.x === px) last.tick = tick;
          else pts.push({ x: px, tick });
        }
        let min = Infinity;
        let max = -Infinity;
        for (const p of pts) {
          min = Math.min(min, p.tick);
          max = Math.max(max, p.tick);
        }
        max = Math.max(max, min + 1);
        const y = (v: number) => H - 4 - ((v - min) / (max - min)) * (H - 8);
        let d = "";
        let spans = "";
        pts.forEach((p, k) => {
          const py = y(p.tick).toFixed(1);
          d += k === 0 ? `M${p.x},${py}` : ` H${p.x} V${py}`;
          if (p.tick % 2 === 1) {
            const next = k + 1 < pts.length ? pts[k + 1].x : W - 4;
            spans += `M${p.x},2 H${next} V${H - 2} H${p.x} Z `;
          }
        });
        const first = ts[0].clock[name] ?? 0;
        const lastTick = ts[ts.length - 1].clock[name] ?? 0;
        // changes: how far the tick moved over the recording (each tick is one (de)activation)
        return { name, d: `${d} H${W - 4}`, spans, last: lastTick, changes: Math.max(0, lastTick - first) };
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
