// The inspector (web/inspector, served at /) in headless Chromium against the test server that
// scripts/web/setup.sh starts: two inspectors mirror each other; a REPL client's mutations show in
// the log with their source, result, why and relation steps; the graph has one node per state and
// one edge per relation; time travel shows an earlier clock in the states and the graph; an
// exported recording reopens with the same log; the page recovers across a server restart; the
// phone-width layout never scrolls sideways. Screenshots of every view: target/test-artifacts/.
// Run it with scripts/web/page.sh.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { freePort, killAll, spawnTracked, start } from './procs.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BASE = process.env.AMRPC_TEST_HTTP;
const ARTIFACTS = process.env.AMRPC_TEST_ARTIFACTS ?? path.join(ROOT, 'target/test-artifacts');
const BIN = process.env.AMRPC_BIN ?? path.join(ROOT, 'target/release/amrpc');
const PKG = process.env.PKG_DIR ? path.join(process.env.PKG_DIR, 'web') : path.join(ROOT, 'target/npm/web');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const WAIT_MS = 10_000;
const VIEWS = ['states', 'graph', 'log', 'timeline', 'payloads'];

let browser;
const opened = [];

before(async () => {
  assert.ok(BASE, 'AMRPC_TEST_HTTP is not set: run scripts/web/page.sh');
  await mkdir(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30_000 });
});

after(async () => {
  killAll();
  await browser?.close();
});

const wsBase = () => BASE.replace(/^http/, 'ws').replace(/\/$/, '');

/** An inspector on `worker`, connected. Page errors fail the test that opened it. */
async function inspector(label, { worker = 'test', base = BASE, viewport = { width: 1200, height: 860 }, wait = true } = {}) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`${label}: uncaught ${e.message}`));
  page.on('console', (m) => {
    // a server restart makes the browser log its failed attempts (WebSocket, /api/workers)
    const expected = label === 'restart' && /WebSocket|net::ERR_CONNECTION/.test(m.text());
    if (m.type() === 'error' && !expected) problems.push(`${label}: console.error ${m.text()}`);
  });
  const p = { label, page, context, problems };
  opened.push(p);
  await page.goto(`${base.replace(/\/$/, '')}/?worker=${worker}`);
  if (wait) await page.locator('#status[data-status="ready"]').waitFor();
  return p;
}

function noProblems(...ps) {
  for (const p of ps) assert.deepEqual(p.problems, [], `${p.label} had page errors`);
}

const tab = (page, name) => page.click(`[data-tab="${name}"]`);
const row = (page, state) => page.locator(`tr[data-state="${state}"]`);
async function shown(page, state) {
  return row(page, state).evaluate((r) => ({ tick: Number(r.dataset.tick), active: r.dataset.active === 'true' }));
}

/** Run `amrpc repl` with these lines on stdin; its output (bounded). */
function repl(url, lines, id) {
  return new Promise((resolve, reject) => {
    const c = spawnTracked(BIN, ['repl', url, '--id', id]);
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`repl did not finish: ${out}`));
    }, 15_000);
    c.on('exit', () => {
      clearTimeout(timer);
      resolve(out);
    });
    c.stdin.end(lines.join('\n') + '\nquit\n');
  });
}

/** `amrpc serve` on `port` (its own process, for the restart test). */
const serve = (port) =>
  start(BIN, ['serve', '--addr', `127.0.0.1:${port}`, '--web', path.join(ROOT, 'web'), '--pkg', PKG], {}, /amrpc serving on/, WAIT_MS);

test('two inspectors mirror each other', async () => {
  const a = await inspector('a');
  const b = await inspector('b');
  for (const state of ['B', 'D']) {
    const before = await shown(a.page, state);
    const verb = before.active ? 'remove' : 'add';
    await a.page.click(`tr[data-state="${state}"] button[aria-label="${verb} ${state}"]`);
    await a.page.locator(`tr[data-state="${state}"][data-tick="${before.tick + 1}"]`).waitFor();
    const now = await shown(a.page, state);
    await b.page.locator(`tr[data-state="${state}"][data-tick="${now.tick}"]`).waitFor();
    assert.deepEqual(await shown(b.page, state), now, `${state} in the other inspector`);
  }
  // and both logged the transitions
  await tab(b.page, 'log');
  await b.page.locator('.entry .src[data-source="inspector"]').first().waitFor();
  await a.page.screenshot({ path: path.join(ARTIFACTS, 'inspector-states.png'), fullPage: true });
  noProblems(a, b);
});

test("a REPL client's mutations show with source, why and relation steps", async () => {
  const p = await inspector('log');
  await tab(p.page, 'log');
  const out = await repl(`${wsBase()}/ws/test`, ['remove A C', 'add C', 'add A C'], 'repl-tester');
  assert.match(out, /canceled: C requires A/, out);
  const canceled = p.page.locator('.entry[data-accepted="false"]', { has: p.page.locator('.src[data-source="repl-tester"]') });
  await canceled.first().waitFor();
  assert.match(await canceled.first().locator('.what').textContent(), /add C/);
  assert.equal(await canceled.first().locator('.why').textContent(), 'C requires A', 'the relation that canceled it');
  const ok = p.page.locator('.entry[data-accepted="true"]', {
    has: p.page.locator('.src[data-source="repl-tester"]'),
    hasText: 'add A C',
  });
  await ok.first().waitFor();
  await ok.first().locator('.more').click();
  const steps = await ok.first().locator('.steps li').allTextContents();
  assert.ok(steps.includes('rel require C → A'), `relation steps: ${steps.join(' | ')}`);
  assert.ok(steps.some((s) => s.startsWith('requested')), `requested steps: ${steps.join(' | ')}`);
  // the filters
  await p.page.check('text=hide canceled');
  assert.equal(await p.page.locator('.entry[data-accepted="false"]').count(), 0);
  await p.page.uncheck('text=hide canceled');
  await p.page.selectOption('select[aria-label="filter by source"]', 'repl-tester');
  const sources = await p.page.locator('.entry .src').allTextContents();
  assert.ok(sources.length >= 3 && sources.every((s) => s === 'repl-tester'), sources.join(','));
  await p.page.fill('.search', 'requires');
  assert.ok((await p.page.locator('.entry').count()) >= 1);
  await p.page.screenshot({ path: path.join(ARTIFACTS, 'inspector-log.png'), fullPage: true });
  noProblems(p);
});

test('the graph has one node per state and one edge per relation of the demo workers', async () => {
  for (const worker of ['test', 'downloads', 'bench', 'typed']) {
    const p = await inspector(`graph-${worker}`, { worker });
    await tab(p.page, 'graph');
    await p.page.locator('.graph-svg').waitFor();
    // the schema as a separate client of the same worker sees it
    const want = await p.page.evaluate(async (url) => {
      const amrpc = await import('/pkg/amrpc.js');
      await amrpc.default();
      const m = await amrpc.connect(url);
      const schema = m.schema();
      const names = m.stateNames();
      m.close();
      const edges = [];
      for (const from of names) {
        for (const rel of ['require', 'add', 'remove', 'after']) {
          for (const to of schema[from]?.[rel] ?? []) if (names.includes(to)) edges.push(`${from}>${to}:${rel}`);
        }
      }
      return { names, edges };
    }, `${wsBase()}/ws/${worker}`);
    const nodes = await p.page.locator('[data-node]').evaluateAll((els) => els.map((e) => e.dataset.node));
    const edges = await p.page.locator('[data-edge]').evaluateAll((els) => els.map((e) => e.dataset.edge));
    assert.deepEqual([...nodes].sort(), [...want.names].sort(), `${worker}: one node per state`);
    assert.deepEqual([...edges].sort(), [...want.edges].sort(), `${worker}: one edge per relation`);
    assert.ok(want.edges.length > 0, `${worker} has relations`);
    // styles per relation kind
    for (const rel of new Set(want.edges.map((e) => e.split(':')[1]))) {
      assert.ok((await p.page.locator(`path.edge.rel-${rel}`).count()) > 0, `${rel} edges styled`);
    }
    if (worker === 'downloads') {
      await p.page.hover('[data-node="Downloading"]');
      await p.page.locator('.graph-help', { hasText: /Adding Downloading requires Online; removes Queued/ }).waitFor();
      await p.page.screenshot({ path: path.join(ARTIFACTS, 'inspector-graph.png'), fullPage: true });
    }
    noProblems(p);
    await p.context.close();
  }
});

test('time travel shows the clock after an earlier transition in the states and the graph', async () => {
  const p = await inspector('travel');
  const mark = `tt-${Date.now()}`;
  // make A inactive, then add it (with a mark) and remove it again
  if ((await shown(p.page, 'A')).active) {
    await p.page.click('button[aria-label="remove A"]');
    await row(p.page, 'A').and(p.page.locator('[data-active="false"]')).waitFor();
  }
  await p.page.fill('.args-input', JSON.stringify({ mark }));
  await p.page.click('button[aria-label="add A"]');
  await p.page.locator('output[data-result="executed"]').waitFor();
  const added = await shown(p.page, 'A');
  assert.ok(added.active);
  await p.page.fill('.args-input', '');
  await p.page.click('button[aria-label="remove A"]');
  await p.page.locator(`tr[data-state="A"][data-tick="${added.tick + 1}"]`).waitFor();
  // travel to the marked transition
  await tab(p.page, 'log');
  const entry = p.page.locator('.entry', { hasText: mark });
  await entry.waitFor();
  await entry.locator('.travel').click();
  const seq = await entry.getAttribute('data-seq');
  assert.equal(await p.page.locator('.travel-text').getAttribute('data-travel'), seq);
  await tab(p.page, 'states');
  assert.deepEqual(await shown(p.page, 'A'), added, 'the states show the clock after it');
  await tab(p.page, 'graph');
  const node = p.page.locator('[data-node="A"]');
  assert.equal(await node.getAttribute('data-active'), 'true');
  assert.match(await node.textContent(), new RegExp(`A ${added.tick}`));
  await p.page.screenshot({ path: path.join(ARTIFACTS, 'inspector-time-travel.png'), fullPage: true });
  // one key back to live
  await p.page.keyboard.press('Escape');
  assert.equal(await p.page.locator('.travel-text').getAttribute('data-travel'), 'live');
  assert.equal(await node.getAttribute('data-active'), 'false');
  await tab(p.page, 'timeline');
  await p.page.locator('[data-timeline="A"]').waitFor();
  assert.ok(Number(await p.page.locator('[data-timeline="A"]').getAttribute('data-changes')) >= 1);
  await p.page.screenshot({ path: path.join(ARTIFACTS, 'inspector-timeline.png'), fullPage: true });
  noProblems(p);
});

test('an exported recording opens again with the same log', async () => {
  const p = await inspector('export');
  for (let i = 0; i < 3; i++) {
    const d = await shown(p.page, 'D');
    await p.page.click('button[aria-label="add D"]');
    await p.page.locator(`tr[data-state="D"][data-tick="${d.tick + (d.active ? 2 : 1)}"]`).waitFor();
  }
  await tab(p.page, 'log');
  const read = () =>
    p.page.locator('.entry[data-seq]').evaluateAll((els) =>
      els.map((e) => [e.dataset.seq, e.querySelector('.what').textContent, e.querySelector('.outcome').textContent, e.querySelector('.src').textContent].join(' ')),
    );
  // the log follows at most twice a second: read it once it settled
  let before = await read();
  for (let i = 0; i < 50; i++) {
    await p.page.waitForTimeout(600);
    const again = await read();
    if (again.length >= 3 && JSON.stringify(again) === JSON.stringify(before)) break;
    before = again;
  }
  assert.ok(before.length >= 3, `log: ${before.join(' | ')}`);
  const [download] = await Promise.all([p.page.waitForEvent('download'), p.page.click('button.export')]);
  const file = path.join(ARTIFACTS, 'inspector-recording.json');
  await download.saveAs(file);
  // a fresh page, offline: open the file
  await p.page.goto(`${BASE}/?worker=test`);
  await p.page.locator('#status[data-status="ready"]').waitFor();
  await p.page.setInputFiles('input[type="file"]', file);
  await p.page.locator('#status[data-status="recording"]').waitFor();
  await tab(p.page, 'log');
  await p.page.waitForFunction((n) => document.querySelectorAll('.entry[data-seq]').length === n, before.length);
  assert.deepEqual(await read(), before, 'the same log');
  // the states show the recording's last clock, read-only
  await tab(p.page, 'states');
  assert.equal(await p.page.locator('button[aria-label="add D"]').isDisabled(), true);
  // a bad file is a clear error, not a crash
  const bad = path.join(ARTIFACTS, 'inspector-not-a-recording.json');
  await import('node:fs/promises').then((fs) => fs.writeFile(bad, '{"hello": 1}'));
  await p.page.setInputFiles('input[type="file"]', bad);
  assert.match(await p.page.locator('.file-error').textContent(), /not an amrpc inspector recording/);
  noProblems(p);
});

test('the page recovers across a server restart', async () => {
  const port = await freePort();
  let srv = await serve(port);
  const p = await inspector('restart', { worker: 'downloads', base: `http://127.0.0.1:${port}` });
  srv.kill('SIGKILL');
  await p.page.locator('#status[data-status="disconnected"]').waitFor();
  // the countdown to the next attempt, or the attempt itself
  await p.page.locator('.status-text', { hasText: /reconnecting/ }).waitFor();
  await p.page.screenshot({ path: path.join(ARTIFACTS, 'inspector-reconnecting.png') });
  srv = await serve(port);
  await p.page.locator('#status[data-status="ready"]').waitFor({ timeout: 30_000 });
  // it works again: a mutation from the page goes through
  const before = await shown(p.page, 'Online');
  await p.page.click(`button[aria-label="${before.active ? 'remove' : 'add'} Online"]`);
  await p.page.locator('output[data-result="executed"]').waitFor();
  await tab(p.page, 'log');
  await p.page.locator('.entry .src[data-source="inspector"]').first().waitFor();
  srv.kill('SIGKILL');
  noProblems(p);
});

test('payloads the worker sends show in the payload log', async () => {
  const p = await inspector('payloads');
  // the test worker's Ping handler sends a "pong" payload (with the data arg) to every client
  await p.page.fill('.args-input', JSON.stringify({ data: 'hello inspector' }));
  await p.page.click('button[aria-label="add Ping"]');
  await p.page.locator('output[data-result="executed"]').waitFor();
  await tab(p.page, 'payloads');
  const rowPong = p.page.locator('tr[data-payload="pong"]').first();
  await rowPong.waitFor();
  assert.match(await rowPong.textContent(), /hello inspector/);
  await p.page.screenshot({ path: path.join(ARTIFACTS, 'inspector-payloads.png'), fullPage: true });
  noProblems(p);
});

test('phone width: every view fits 390 px without scrolling sideways; dark theme', async () => {
  const p = await inspector('phone', { worker: 'downloads', viewport: { width: 390, height: 844 } });
  for (const view of VIEWS) {
    await tab(p.page, view);
    await p.page.waitForTimeout(50);
    const { scroll, width } = await p.page.evaluate(() => ({
      scroll: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
      width: window.innerWidth,
    }));
    assert.ok(scroll <= width, `${view}: page is ${scroll} px wide at ${width} px`);
    await p.page.screenshot({ path: path.join(ARTIFACTS, `inspector-phone-${view}.png`), fullPage: true });
  }
  // keyboard: 1 = states, t = theme
  await p.page.keyboard.press('1');
  assert.equal(await p.page.locator('[data-tab="states"]').getAttribute('aria-selected'), 'true');
  await p.page.keyboard.press('t');
  const theme = await p.page.evaluate(() => document.documentElement.dataset.theme);
  assert.ok(theme === 'dark' || theme === 'light');
  await p.page.screenshot({ path: path.join(ARTIFACTS, `inspector-phone-${theme}.png`), fullPage: true });
  const d = await inspector('dark', { worker: 'downloads' });
  await d.page.evaluate(() => {
    localStorage.setItem('amrpc-theme', 'dark');
  });
  await d.page.reload();
  await d.page.locator('#status[data-status="ready"]').waitFor();
  await tab(d.page, 'graph');
  assert.equal(await d.page.evaluate(() => document.documentElement.dataset.theme), 'dark');
  await d.page.screenshot({ path: path.join(ARTIFACTS, 'inspector-dark-graph.png'), fullPage: true });
  noProblems(p, d);
});
