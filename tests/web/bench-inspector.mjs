// Benchmark (not a test): does the inspector keep up with a worker changing 1,000 times a second?
// A load page (its own browser context) sends `addNS(D)` to the test worker at RATE per second for
// SECONDS; an inspector page on the same worker, showing its states view (or VIEW), records long
// tasks (PerformanceObserver 'longtask'), animation frames (requestAnimationFrame) and how many
// transitions it received. Prints one JSON line. Run by scripts/bench-inspector.sh (it starts the
// test server); figures go in docs/BENCHMARKS.md.
import { chromium } from 'playwright-core';

const BASE = process.env.AMRPC_TEST_HTTP;
const RATE = Number(process.env.RATE ?? 1000);
const SECONDS = Number(process.env.SECONDS ?? 10);
const VIEW = process.env.VIEW ?? 'states';
if (!BASE) throw new Error('AMRPC_TEST_HTTP is not set: run scripts/bench-inspector.sh');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic'],
  headless: true,
});
try {
  const ictx = await browser.newContext({ viewport: { width: 1200, height: 860 } });
  const insp = await ictx.newPage();
  await insp.addInitScript(() => {
    const perf = { longTasks: 0, longTaskMs: 0, maxLongTaskMs: 0, frames: 0, maxFrameGapMs: 0, counting: false };
    window.__perf = perf;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if (!perf.counting) continue;
        perf.longTasks += 1;
        perf.longTaskMs += e.duration;
        perf.maxLongTaskMs = Math.max(perf.maxLongTaskMs, e.duration);
      }
    }).observe({ type: 'longtask', buffered: false });
    let last = 0;
    const frame = (t) => {
      if (perf.counting) {
        perf.frames += 1;
        if (last) perf.maxFrameGapMs = Math.max(perf.maxFrameGapMs, t - last);
        last = t;
      } else last = 0;
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  });
  await insp.goto(`${BASE}/?worker=test&view=${VIEW}`);
  await insp.locator('#status[data-status="ready"]').waitFor({ timeout: 15_000 });

  const load = await (await browser.newContext()).newPage();
  await load.goto(`${BASE}/classic/`); // any page of the server: the load imports /pkg itself
  await load.evaluate(async (url) => {
    const amrpc = await import('/pkg/amrpc.js');
    await amrpc.default();
    window.__m = await amrpc.connect(url, { clientId: 'load' });
  }, `${BASE.replace(/^http/, 'ws')}/ws/test`);
  const before = await insp.locator('nav.tabs').getAttribute('data-received').then(Number);
  await insp.evaluate(() => {
    window.__perf.counting = true;
    window.__perf.t0 = performance.now();
  });
  const sent = await load.evaluate(
    async ({ rate, seconds }) => {
      const m = window.__m;
      const total = rate * seconds;
      const t0 = performance.now();
      let sent = 0;
      while (sent < total) {
        const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000));
        for (; sent < due; sent++) m.addNS('D');
        await new Promise((r) => setTimeout(r, 2));
      }
      await m.sync();
      return { sent, ms: performance.now() - t0, tick: m.tick('D') };
    },
    { rate: RATE, seconds: SECONDS },
  );
  // the inspector caught up when it received every transition (and, on the states view, shows
  // the load's final tick of D)
  const caughtUp = Date.now();
  await insp.waitForFunction(
    (want) => Number(document.querySelector('nav.tabs')?.dataset.received) >= want,
    before + sent.sent,
    { timeout: 30_000, polling: 20 },
  );
  if (VIEW === 'states') await insp.locator(`tr[data-state="D"][data-tick="${sent.tick}"]`).waitFor({ timeout: 30_000 });
  const lagMs = Date.now() - caughtUp;
  const perf = await insp.evaluate(() => {
    const p = window.__perf;
    p.counting = false;
    return { ...p, ms: performance.now() - p.t0 };
  });
  const received = (await insp.locator('nav.tabs').getAttribute('data-received').then(Number)) - before;
  const dropped = await insp.locator('nav.tabs').getAttribute('data-dropped').then(Number);
  console.log(
    JSON.stringify({
      view: VIEW,
      rate: RATE,
      seconds: SECONDS,
      sent: sent.sent,
      sendMs: Math.round(sent.ms),
      received,
      dropped,
      catchUpMs: lagMs,
      longTasks: perf.longTasks,
      longTaskMs: Math.round(perf.longTaskMs),
      maxLongTaskMs: Math.round(perf.maxLongTaskMs),
      framesPerSecond: +((perf.frames * 1000) / perf.ms).toFixed(1),
      maxFrameGapMs: Math.round(perf.maxFrameGapMs),
    }),
  );
} finally {
  await browser.close();
}
