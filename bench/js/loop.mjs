// The JS client figure and its floor, one loop for the browser page and the Node script.
//
// amrpc: upstream's client loop through the npm package — `whenTicksEq(Event, +2)`,
// `switch(Values)`, `add1("CallOp", {Op})` per op, each op one remote mutation (an 11-byte
// request, a reply of about the same size).
// echo (the floor): a raw WebSocket on the same server process (`/echo`), one binary message of
// the request's size sent and awaited per op, through the same WebSocket implementation.
//
// The two alternate for `rounds` rounds in one process, so both see the same machine load.

/// Bytes of the amrpc op's request payload (docs/BENCHMARKS.md, "bytes per op").
export const REQUEST_BYTES = 11;

/// Untimed ops (and echoes) before the first round: the JIT's warm-up.
export const WARM_UP = 1000;

const VALUES = ['Value1', 'Value2', 'Value3'];

// `n` ops; `state.ticks` is the Event tick the next op waits from (Start is active)
async function amrpcRound(m, state, n, now) {
  const t0 = now();
  for (let i = 0; i < n; i++) {
    await m.whenTicksEq('Event', state.ticks + 2);
    state.ticks += 2;
    const op = VALUES.indexOf(m.switch(VALUES)) + 1;
    if (op < 1) throw new Error('op ' + i + ': no value active');
    const r = await m.add1('CallOp', { Op: op });
    if (r !== 'executed') throw new Error('op ' + i + ': add1(CallOp): ' + r);
  }
  return now() - t0;
}

function openEcho(WebSocketImpl, url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocketImpl(url);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error('echo: cannot open ' + url));
  });
}

async function echoRound(ws, n, now) {
  const msg = new Uint8Array(REQUEST_BYTES);
  let pending = null;
  ws.onmessage = (e) => {
    const p = pending;
    pending = null;
    if (p) p(e.data);
  };
  const t0 = now();
  for (let i = 0; i < n; i++) {
    msg[0] = i & 0xff;
    const got = new Promise((resolve) => (pending = resolve));
    ws.send(msg);
    const data = await got;
    if (data.byteLength !== REQUEST_BYTES || new Uint8Array(data)[0] !== (i & 0xff)) {
      throw new Error('echo ' + i + ': wrong reply');
    }
  }
  return now() - t0;
}

/// Runs both, alternating; returns `{ n, rounds, amrpcMs: [...], echoMs: [...] }`, and with
/// `cpuMs` (this process's CPU time so far, ms; Node has it) `amrpcCpuMs` and `echoCpuMs`.
export async function run({ connect, WebSocketImpl, base, n, rounds, now, cpuMs }) {
  const m = await connect(`${base}/ws/bench`, { clientId: 'js-bench', reconnect: false });
  const ws = await openEcho(WebSocketImpl, `${base}/echo`);
  const amrpcMs = [];
  const echoMs = [];
  const amrpcCpuMs = [];
  const echoCpuMs = [];
  const timed = async (f, wall, cpu) => {
    const c0 = cpuMs ? cpuMs() : 0;
    wall.push(await f());
    if (cpuMs) cpu.push(cpuMs() - c0);
  };
  try {
    const state = { ticks: m.tick('Event') };
    const r = await m.add1('Start');
    if (r !== 'executed') throw new Error('add1(Start): ' + r);
    // an untimed warm-up of each
    await amrpcRound(m, state, Math.min(WARM_UP, n), now);
    await echoRound(ws, Math.min(WARM_UP, n), now);
    for (let k = 0; k < rounds; k++) {
      await timed(() => amrpcRound(m, state, n, now), amrpcMs, amrpcCpuMs);
      await timed(() => echoRound(ws, n, now), echoMs, echoCpuMs);
    }
  } finally {
    m.close();
    ws.close();
  }
  const out = { n, rounds, requestBytes: REQUEST_BYTES, amrpcMs, echoMs };
  if (cpuMs) Object.assign(out, { amrpcCpuMs, echoCpuMs });
  return out;
}
