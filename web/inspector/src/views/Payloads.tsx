// Payloads the worker sent to this page (upstream's SendPayload), newest first.
import type { PayloadEntry } from "../model";

export function PayloadsView({ payloads }: { payloads: PayloadEntry[] }) {
  if (payloads.length === 0) return <p className="empty">No payloads yet (a worker sends them with its SendPayload state).</p>;
  return (
    <section aria-label="Payloads">
      <table className="payloads">
        <thead>
          <tr>
            <th scope="col">time</th>
            <th scope="col">name</th>
            <th scope="col">source</th>
            <th scope="col">bytes</th>
            <th scope="col">data</th>
          </tr>
        </thead>
        <tbody>
          {payloads
            .slice()
            .reverse()
            .map((p) => (
              <tr key={p.id} data-payload={p.name}>
                <td>{new Date(p.time).toLocaleTimeString()}</td>
                <td>{p.name}</td>
                <td>{p.source}</td>
                <td>{p.size}</td>
                <td>
                  <code>{p.preview}</code>
                </td>
              </tr>
            ))}
        </tbody>
      </table>
    </section>
  );
}
