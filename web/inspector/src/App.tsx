// The inspector: pick a worker, watch and drive it live, travel back through its transitions,
// export what was recorded and open it again later.
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { Clock, Schema } from "amrpc";
import { useClock, useWorker } from "amrpc/react";
import { clockAt, fromFile, toFile, type Entry, type PayloadEntry, type Recording } from "./model";
import { useRecording } from "./recording";
import { useThrottled } from "./throttle";
import { GraphView } from "./views/Graph";
import { LogView, noFilters, type Filters } from "./views/Log";
import { PayloadsView } from "./views/Payloads";
import { StatesView, type Mutate } from "./views/States";
import { TimelineView } from "./views/Timeline";

interface WorkerInfo {
  name: string;
  id: string;
  sessions: number;
  schemaHash: string;
  states: number;
  relay: boolean;
  stream: boolean;
  inspectors: number;
}

const TABS = ["states", "graph", "log", "timeline", "payloads"] as const;
type Tab = (typeof TABS)[number];

function wsUrl(worker: string): string {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  return `${proto}://${location.host}/ws/${encodeURIComponent(worker)}`;
}

/** The server's workers, polled every 2 s and whenever `refresh` changes (a new connection). */
function useWorkers(refresh: string): WorkerInfo[] | null {
  const [list, setList] = useState<WorkerInfo[] | null>(null);
  useEffect(() => {
    let live = true;
    const load = async () => {
      try {
        const r = await fetch("/api/workers", { cache: "no-store" });
        if (r.ok && live) setList((await r.json()) as WorkerInfo[]);
      } catch {
        // the server is down: keep the last list (the status pill says so)
      }
    };
    void load();
    const timer = setInterval(load, 2000);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [refresh]);
  return list;
}

function useNow(active: boolean): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return undefined;
    const t = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(t);
  }, [active]);
  return now;
}

function initialTheme(): "light" | "dark" {
  const saved = localStorage.getItem("amrpc-theme");
  if (saved === "light" || saved === "dark") return saved;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export function App() {
  const params = new URLSearchParams(location.search);
  const [worker, setWorker] = useState<string | null>(params.get("worker"));
  const [connKey, setConnKey] = useState("");
  const workers = useWorkers(connKey);
  const [file, setFile] = useState<Recording | null>(null);
  const [fileError, setFileError] = useState("");
  const [tab, setTab] = useState<Tab>((TABS as readonly string[]).includes(params.get("view") ?? "") ? (params.get("view") as Tab) : "states");
  const [selected, setSelected] = useState<number | null>(null);
  const [filters, setFilters] = useState<Filters>(noFilters);
  const [theme, setTheme] = useState<"light" | "dark">(initialTheme);
  const fileInput = useRef<HTMLInputElement>(null);

  // the default worker: the first listed (downloads, if there)
  useEffect(() => {
    if (worker || !workers?.length) return;
    setWorker((workers.find((w) => w.name === "downloads") ?? workers[0]).name);
  }, [worker, workers]);

  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem("amrpc-theme", theme);
  }, [theme]);

  const live = useWorker(file || !worker ? null : wsUrl(worker), { stream: true, clientId: "inspector" });
  const m = live.machine;
  useEffect(() => setConnKey(`${worker}:${live.status}`), [worker, live.status]);
  const [rec, clearRec] = useRecording(m);
  const liveClock = useClock(m);
  const liveNames = useMemo(() => (m ? m.stateNames() : []), [m]);
  const liveSchema = useMemo<Schema>(() => (m ? m.schema() : {}), [m]);

  const entries: Entry[] = file ? file.entries : rec.entries;
  // the log and the timelines follow a fast worker twice a second, not every frame
  const slowEntries = useThrottled(entries, 500);
  const payloads: PayloadEntry[] = file ? file.payloads : rec.payloads;
  const names = file ? file.names : liveNames;
  const schema = file ? file.schema : liveSchema;
  const now = useNow(live.status === "disconnected");

  // a selection past the end (a new worker, a cleared log) is void
  const sel = selected !== null && selected < entries.length ? selected : null;
  const travelling = sel !== null;
  const lastClock = useMemo(() => clockAt(entries, entries.length - 1) ?? {}, [entries]);
  const clock: Clock = travelling ? (clockAt(entries, sel) ?? {}) : file ? lastClock : liveClock;
  const transitionIdx = useMemo(() => entries.flatMap((e, i) => (e.kind === "transition" ? [i] : [])), [entries]);

  const mutate: Mutate | null =
    !file && !travelling && m && live.status === "ready" ? (type, states, args) => m.mutate(type, states, args) : null;

  const step = useCallback(
    (dir: -1 | 1) => {
      if (transitionIdx.length === 0) return;
      const pos = sel === null ? transitionIdx.length : transitionIdx.indexOf(sel);
      const next = Math.min(Math.max(pos + dir, 0), transitionIdx.length);
      setSelected(next >= transitionIdx.length ? null : transitionIdx[next]);
    },
    [transitionIdx, sel],
  );

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const el = e.target as HTMLElement;
      const typing = el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT";
      if (e.key === "Escape") {
        setSelected(null);
        if (typing) el.blur();
        return;
      }
      if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
      const n = Number(e.key);
      if (n >= 1 && n <= TABS.length) setTab(TABS[n - 1]);
      else if (e.key === "[" || e.key === "ArrowLeft") step(-1);
      else if (e.key === "]" || e.key === "ArrowRight") step(1);
      else if (e.key === "/") {
        e.preventDefault();
        setTab("log");
        requestAnimationFrame(() => document.querySelector<HTMLInputElement>(".search")?.focus());
      } else if (e.key === "t") setTheme((t) => (t === "dark" ? "light" : "dark"));
    };
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
  }, [step]);

  const exportFile = () => {
    const r: Recording = {
      format: "amrpc-inspector",
      version: 1,
      worker: file?.worker ?? worker ?? "",
      workerId: file?.workerId ?? m?.id ?? "",
      names,
      schema,
      entries,
      payloads,
      exportedAt: Date.now(),
    };
    const url = URL.createObjectURL(new Blob([toFile(r)], { type: "application/json" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = `amrpc-${r.worker || "worker"}-${new Date(r.exportedAt).toISOString().replace(/[:.]/g, "-")}.json`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };

  const openFile = async (f: File | undefined) => {
    if (!f) return;
    try {
      setFile(fromFile(await f.text()));
      setFileError("");
      setSelected(null);
    } catch (e) {
      setFileError(`${f.name}: ${(e as Error).message}`);
    }
  };

  const info = workers?.find((w) => w.name === worker);
  const status = file ? "recording" : live.error ? "closed" : live.status;
  const retryIn = m && live.status === "disconnected" && m.retryAt ? Math.max(0, Math.ceil((m.retryAt - now) / 1000)) : null;
  const statusText = file
    ? `recording of ${file.worker} (${new Date(file.exportedAt).toLocaleString()})`
    : live.error
      ? `${live.error.code}: ${live.error.message}`
      : status === "disconnected"
        ? `reconnecting${retryIn !== null ? ` in ${retryIn} s` : "…"}`
        : status === "connecting" && m
          ? "reconnecting…"
          : status;
  const selEntry = sel !== null ? entries[sel] : null;

  return (
    <div className="app">
      <header className="top">
        <h1>
          amrpc <span className="sub">inspector</span>
        </h1>
        <label className="picker">
          worker{" "}
          <select
            value={worker ?? ""}
            onChange={(e) => {
              setWorker(e.target.value);
              setSelected(null);
              setFile(null);
              const u = new URL(location.href);
              u.searchParams.set("worker", e.target.value);
              history.replaceState(null, "", u);
            }}
            disabled={!workers}
          >
            {!workers && <option value="">loading…</option>}
            {workers?.map((w) => (
              <option key={w.name} value={w.name}>
                {w.name} ({w.states} states)
              </option>
            ))}
          </select>
        </label>
        <p id="status" className="status" data-status={status} role="status">
          <span className="dot" aria-hidden="true" />
          <span className="status-text">{statusText}</span>
        </p>
        {info && !file && (
          <p className="clients" data-sessions={info.sessions} title={`schema ${info.schemaHash}`}>
            {info.sessions} {info.sessions === 1 ? "client" : "clients"}
            {info.inspectors > 1 ? `, ${info.inspectors} inspectors` : ""}
          </p>
        )}
        <div className="tools">
          <button type="button" onClick={exportFile} disabled={entries.length === 0} className="export">
            export
          </button>
          <button type="button" onClick={() => fileInput.current?.click()}>
            open…
          </button>
          <input ref={fileInput} type="file" accept="application/json,.json" hidden aria-label="open a recording" onChange={(e) => openFile(e.target.files?.[0])} />
          {file && (
            <button type="button" onClick={() => setFile(null)}>
              back to live
            </button>
          )}
          {!file && entries.length > 0 && (
            <button type="button" onClick={clearRec}>
              clear
            </button>
          )}
          <button type="button" onClick={() => setTheme(theme === "dark" ? "light" : "dark")} aria-label={`switch to ${theme === "dark" ? "light" : "dark"} theme`}>
            {theme === "dark" ? "☀" : "☾"}
          </button>
        </div>
      </header>
      {fileError && (
        <p className="file-error" role="alert">
          {fileError}
        </p>
      )}
      <div className={`travel-bar${travelling ? " on" : ""}`}>
        <input
          type="range"
          aria-label="time travel"
          min={0}
          max={transitionIdx.length}
          value={sel === null ? transitionIdx.length : Math.max(0, transitionIdx.indexOf(sel))}
          onChange={(e) => {
            const v = Number(e.target.value);
            setSelected(v >= transitionIdx.length ? null : transitionIdx[v]);
          }}
          disabled={transitionIdx.length === 0}
        />
        <span className="travel-text" aria-live="polite" data-travel={selEntry && selEntry.kind === "transition" ? selEntry.t.seq : "live"}>
          {selEntry && selEntry.kind === "transition"
            ? `after #${selEntry.t.seq} (${new Date(selEntry.t.time).toLocaleTimeString()}) — Esc for live`
            : file
              ? "end of recording"
              : "live"}
        </span>
        {travelling && (
          <button type="button" className="live-btn" onClick={() => setSelected(null)}>
            live
          </button>
        )}
      </div>
      <nav
        className="tabs"
        role="tablist"
        aria-label="Views"
        data-received={entries.filter((e) => e.kind === "transition").length + (file ? 0 : rec.trimmed)}
        data-dropped={entries.reduce((n, e) => n + (e.kind === "dropped" ? e.n : 0), 0)}
      >
        {TABS.map((t, i) => (
          <button key={t} type="button" role="tab" aria-selected={tab === t} data-tab={t} onClick={() => setTab(t)} title={`${t} (${i + 1})`}>
            {t}
            {t === "log" && entries.length > 0 ? ` ${entries.length}` : ""}
          </button>
        ))}
      </nav>
      <main className="panel" role="tabpanel" aria-label={tab}>
        {names.length === 0 ? (
          <p className="empty">{live.error ? "Could not connect." : "Connecting…"}</p>
        ) : tab === "states" ? (
          <StatesView names={names} schema={schema} clock={clock} mutate={mutate} error={file ? undefined : m?.err()} />
        ) : tab === "graph" ? (
          <GraphView names={names} schema={schema} clock={clock} />
        ) : tab === "log" ? (
          <LogView entries={slowEntries} names={names} filters={filters} setFilters={setFilters} selected={sel} select={setSelected} trimmed={file ? 0 : rec.trimmed} />
        ) : tab === "timeline" ? (
          <TimelineView entries={slowEntries} names={names} selected={sel} />
        ) : (
          <PayloadsView payloads={payloads} />
        )}
      </main>
      <footer className="keys">
        keys: 1–5 views · [ ] step through time · Esc live · / search · t theme
      </footer>
    </div>
  );
}
