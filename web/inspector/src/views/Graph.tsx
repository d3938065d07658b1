// The relation graph: one node per state, one edge per relation (Require, Add, Remove, After in
// distinct styles), laid out by dagre; active states highlighted; hovering or focusing a state
// tells what adding it would require, add and remove.
import { useMemo, useState } from "react";
import { Graph as DagreGraph, layout } from "@dagrejs/dagre";
import type { Clock, Schema } from "amrpc";
import { isActive } from "../model";

export const RELATIONS = ["require", "add", "remove", "after"] as const;
export type RelationName = (typeof RELATIONS)[number];

export interface EdgeInfo {
  from: string;
  to: string;
  rel: RelationName;
}

/** Every relation of the schema as an edge (states outside the schema left out). */
export function edgesOf(schema: Schema, names: string[]): EdgeInfo[] {
  const known = new Set(names);
  const out: EdgeInfo[] = [];
  for (const from of names) {
    const def = schema[from] ?? {};
    for (const rel of RELATIONS) {
      for (const to of def[rel] ?? []) {
        if (known.has(to)) out.push({ from, to, rel });
      }
    }
  }
  return out;
}

interface Laid {
  width: number;
  height: number;
  nodes: { name: string; x: number; y: number; w: number; h: number }[];
  edges: (EdgeInfo & { d: string })[];
}

function lay(schema: Schema, names: string[]): Laid {
  const g = new DagreGraph({ multigraph: true });
  g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 60, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of names) g.setNode(n, { width: Math.max(70, n.length * 7.4 + 24), height: 30 });
  const edges = edgesOf(schema, names);
  edges.forEach((e, i) => g.setEdge(e.from, e.to, {}, `${e.rel}:${i}`));
  layout(g);
  const gl = g.graph() as { width?: number; height?: number };
  return {
    width: gl.width ?? 400,
    height: gl.height ?? 200,
    nodes: names.map((name) => {
      const n = g.node(name) as { x: number; y: number; width: number; height: number };
      return { name, x: n.x, y: n.y, w: n.width, h: n.height };
    }),
    edges: edges.map((e, i) => {
      const pts = ((g.edge(e.from, e.to, `${e.rel}:${i}`) as { points?: { x: number; y: number }[] }).points ?? []);
      const d = pts.map((p, j) => `${j === 0 ? "M" : "L"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
      return { ...e, d };
    }),
  };
}

/** What adding `state` implies, in words. */
export function implications(schema: Schema, state: string): string {
  const d = schema[state] ?? {};
  const parts: string[] = [];
  if (d.require?.length) parts.push(`requires ${d.require.join(", ")}`);
  if (d.add?.length) parts.push(`adds ${d.add.join(", ")}`);
  if (d.remove?.length) parts.push(`removes ${d.remove.join(", ")}`);
  if (d.after?.length) parts.push(`runs after ${d.after.join(", ")}`);
  const flags = [d.auto ? "auto" : "", d.multi ? "multi" : ""].filter(Boolean).join(", ");
  return `Adding ${state} ${parts.length ? parts.join("; ") : "has no relations"}${flags ? ` (${flags})` : ""}.`;
}

export function GraphView({ schema, names, clock }: { schema: Schema; names: string[]; clock: Clock }) {
  const laid = useMemo(() => lay(schema, names), [schema, names]);
  const [hover, setHover] = useState<string | null>(null);
  return (
    <section className="graph" aria-label="Relation graph">
      <p className="graph-help" aria-live="polite">
        {hover ? implications(schema, hover) : "Hover or focus a state to see what adding it implies."}
      </p>
      <div className="legend" aria-hidden="true">
        {RELATIONS.map((r) => (
          <span key={r} className={`legend-item rel-${r}`}>
            <svg width="28" height="10">
              <line x1="0" y1="5" x2="28" y2="5" />
            </svg>
            {r}
          </span>
        ))}
      </div>
      <div className="graph-scroll">
        <svg
          className="graph-svg"
          viewBox={`0 0 ${laid.width} ${laid.height}`}
          width={laid.width}
          height={laid.height}
          role="img"
          aria-label={`${names.length} states, ${laid.edges.length} relations`}
        >
          <defs>
            {RELATIONS.map((r) => (
              <marker key={r} id={`arrow-${r}`} viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                <path d="M0,0 L10,5 L0,10 z" className={`arrow rel-${r}`} />
              </marker>
            ))}
          </defs>
          {laid.edges.map((e, i) => (
            <path
              key={i}
              d={e.d}
              className={`edge rel-${e.rel}${hover && (e.from === hover || e.to === hover) ? " lit" : ""}`}
              data-edge={`${e.from}>${e.to}:${e.rel}`}
              markerEnd={`url(#arrow-${e.rel})`}
            >
              <title>{`${e.from} ${e.rel} ${e.to}`}</title>
            </path>
          ))}
          {laid.nodes.map((n) => {
            const active = isActive(clock[n.name]);
            return (
              <g
                key={n.name}
                className={`node${active ? " active" : ""}`}
                data-node={n.name}
                data-active={active}
                transform={`translate(${n.x - n.w / 2},${n.y - n.h / 2})`}
                tabIndex={0}
                onMouseEnter={() => setHover(n.name)}
                onMouseLeave={() => setHover(null)}
                onFocus={() => setHover(n.name)}
                onBlur={() => setHover(null)}
              >
                <rect width={n.w} height={n.h} rx="6" />
                <text x={n.w / 2} y={n.h / 2 + 4} textAnchor="middle">
                  {n.name} <tspan className="tick">{clock[n.name] ?? 0}</tspan>
                </text>
              </g>
            );
          })}
        </svg>
      </div>
    </section>
  );
}
