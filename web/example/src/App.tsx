// A download driven by a state machine on the server (amrpc's demo worker `downloads`): the
// worker owns the logic (relations, the progress timer); this page mirrors it with amrpc/react
// and asks for changes. Open it twice: both pages show the same download.
import { useState } from "react";
import type { MutationType } from "amrpc";
import { useIs, useMachine, useTick, useTransitions, useWorker, WorkerProvider } from "amrpc/react";

const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/downloads`;

export function App() {
  const worker = useWorker(url, { stream: true, clientId: "example" });
  return (
    <main>
      <h1>Download</h1>
      <p className="status" data-status={worker.status}>
        {worker.error ? `cannot connect: ${worker.error.code}` : worker.status}
      </p>
      {worker.machine && (
        <WorkerProvider worker={worker}>
          <Download />
        </WorkerProvider>
      )}
    </main>
  );
}

function phase(is: Record<string, boolean>): string {
  for (const p of ["Verified", "Verifying", "Done", "Failed", "Paused", "Downloading", "Queued"]) if (is[p]) return p;
  return "idle";
}

function Download() {
  const is = {
    Online: useIs("Online"),
    Queued: useIs("Queued"),
    Downloading: useIs("Downloading"),
    Paused: useIs("Paused"),
    Done: useIs("Done"),
    Failed: useIs("Failed"),
    Verifying: useIs("Verifying"),
    Verified: useIs("Verified"),
  };
  // Progress is a Multi state: every step re-enters it (+2), so its tick counts the steps
  const progressTick = useTick("Progress");
  const startTick = useTick("Downloading");
  const [start, setStart] = useState<{ at: number; progress: number } | null>(null);
  if (is.Downloading && (!start || start.at !== startTick)) setStart({ at: startTick, progress: progressTick });
  const steps = is.Done || is.Verifying || is.Verified ? 10 : start && is.Downloading ? Math.floor((progressTick - start.progress) / 2) : 0;
  const pct = Math.min(100, steps * 10);
  const { transitions } = useTransitions(6);
  const worker = useMachine();
  const [message, setMessage] = useState("");

  const ask = async (type: MutationType, state: string) => {
    if (!worker) return;
    const r = await worker.mutate(type, state);
    setMessage(r.outcome === "canceled" ? `${type} ${state}: canceled — ${r.why?.text ?? "refused"}` : "");
  };

  return (
    <>
      <p className="phase" data-phase={phase(is)}>
        {phase(is)} {is.Online ? "" : "(offline)"}
      </p>
      <progress max={100} value={pct} aria-label="progress" data-pct={pct} />
      <div className="buttons">
        <button onClick={() => ask("add", "Downloading")} disabled={is.Downloading}>
          download
        </button>
        <button onClick={() => ask("add", "Paused")} disabled={!is.Downloading}>
          pause
        </button>
        <button onClick={() => ask("add", "Queued")}>reset</button>
        <button onClick={() => ask(is.Online ? "remove" : "add", "Online")}>{is.Online ? "go offline" : "go online"}</button>
      </div>
      <p className="message" role="status">
        {message}
      </p>
      <h2>Recent changes</h2>
      <ul className="changes">
        {transitions
          .slice()
          .reverse()
          .map((t) => (
            <li key={`${t.seq}-${t.time}`}>
              {t.type} {t.called.join(", ")} — {t.accepted ? "done" : `canceled: ${t.why?.text ?? ""}`} (
              {t.source.kind === "session" ? t.source.client : t.source.kind})
            </li>
          ))}
      </ul>
    </>
  );
}
