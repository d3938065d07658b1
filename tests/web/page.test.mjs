// The web page (web/) in a real browser: playwright-core drives the Debian Chromium against the
// server that scripts/web/setup.sh starts (`amrpc serve-test --web web/`, worker `downloads`).
// Two pages (separate browser contexts) mirror the same worker; a click in one must show in the
// other. Leaves a screenshot in target/test-artifacts/page.png.
// Run it with scripts/web/page.sh (it installs everything and sets AMRPC_TEST_HTTP).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BASE = process.env.AMRPC_TEST_HTTP;
const ARTIFACTS = process.env.AMRPC_TEST_ARTIFACTS ?? path.join(ROOT, 'target/test-artifacts');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// As root, and without letting Chromium reach for the (closed) network: see shared/TOOLCHAIN.md.
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const WAIT_MS = 10_000; // bound of every single wait
const DOWNLOAD_MS = 20_000; // the demo download: 10 steps of 200 ms, then verification

/** States of the demo worker `downloads` (server/src/demo.rs) and of every served worker. */
const DOWNLOAD_STATES = ['Online', 'Queued', 'Downloading', 'Paused', 'Done', 'Failed', 'Progress', 'Verifying', 'Verified'];
const WORKER_STATES = ['ErrProviding', 'ErrSendPayload', 'SendPayload', 'Exception', 'ErrNetwork',
  'ErrHandlerTimeout', 'Start', 'Ready', 'Healthcheck'];

let browser;
const opened = [];

before(async () => {
  assert.ok(BASE, 'AMRPC_TEST_HTTP is not set: run scripts/web/page.sh');
  await mkdir(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30_000 });
});

after(async () => {
  await browser?.close();
});

/** A fresh browser context with the page, connected (status "live"). Collects page errors. */
async function openPage(label, query = '') {
  const context = await browser.newContext({ viewport: { width: 1100, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`${label}: uncaught ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`${label}: console.error ${m.text()}`); });
  page.on('requestfailed', (r) => problems.push(`${label}: request failed ${r.url()} ${r.failure()?.errorText}`));
  const p = { label, page, context, problems };
  opened.push(p);
  await page.goto(`${BASE}/classic/${query}`);
  await page.locator('#status[data-status="ready"]').waitFor();
  return p;
}

function stateButton(page, name) {
  return page.locator(`button.state[data-state="${name}"]`);
}

/** What the page shows for a state: its tick, its active flag (text and aria-pressed agree). */
async function shown(page, name) {
  return stateButton(page, name).evaluate((b) => ({
    tick: Number(b.dataset.tick),
    active: b.dataset.active === 'true',
    pressed: b.getAttribute('aria-pressed') === 'true',
    flag: b.querySelector('.state-flag').textContent,
    tickText: Number(b.querySelector('.n').textContent),
  }));
}

/** Wait (bounded) until the page shows `name` with `active` and, when given, exactly `tick`. */
async function waitShown(page, name, { active, tick, timeout = WAIT_MS }) {
  await page.waitForFunction(([n, a, t]) => {
    const b = document.querySelector(`button.state[data-state="${n}"]`);
    return !!b && b.dataset.active === String(a) && b.getAttribute('aria-pressed') === String(a)
      && (t === null || (b.dataset.tick === String(t) && b.querySelector('.n').textContent === String(t)));
  }, [name, active, tick ?? null], { timeout, polling: 50 });
}

/** Every state the page shows: name → [tick, active]. */
async function allShown(page) {
  return page.locator('button.state').evaluateAll((bs) =>
    Object.fromEntries(bs.map((b) => [b.dataset.state, [Number(b.dataset.tick), b.dataset.active === 'true']])));
}

/** Poll `check` (true, or a string saying what is wrong) until true; bounded by `timeout`. */
async function until(check, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last === true) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`not within ${timeout} ms: ${last}`);
}

async function resultText(page) {
  return (await page.locator('#result').textContent()).trim();
}

test('the page lists every state of the worker, live', async () => {
  const { page, problems } = await openPage('first');
  const names = await page.locator('button.state').evaluateAll((bs) => bs.map((b) => b.dataset.state));
  assert.deepEqual([...names].sort(), [...DOWNLOAD_STATES, ...WORKER_STATES].sort());
  // the worker's own states come first, the common worker states apart
  assert.deepEqual(await page.locator('#states button.state').evaluateAll((bs) => bs.map((b) => b.dataset.state)),
    DOWNLOAD_STATES);
  const online = await shown(page, 'Online');
  assert.equal(online.active, online.tick % 2 === 1);
  assert.equal(online.flag, online.active ? 'active' : 'inactive');
  assert.match(await page.locator('#worker-name').textContent(), /^downloads$/);
  assert.match(await page.locator('#ws-url').textContent(), /^ws:\/\/127\.0\.0\.1:\d+\/ws\/downloads$/);
  assert.deepEqual(problems, []);
});

test('a click in one page shows in the other', { timeout: 90_000 }, async (t) => {
  const a = await openPage('A');
  const b = await openPage('B');
  try {
    // both mirror the same clock
    const online0 = await shown(a.page, 'Online');
    await waitShown(b.page, 'Online', { active: online0.active, tick: online0.tick });

    // A toggles Online; B sees the new tick and flag
    await stateButton(a.page, 'Online').click();
    const online1 = { active: !online0.active, tick: online0.tick + 1 };
    await waitShown(b.page, 'Online', online1);
    await waitShown(a.page, 'Online', online1);
    assert.equal(await resultText(a.page), `${online0.active ? 'remove' : 'add'} Online → executed`);

    // and back, from B (with the keyboard: the states are real toggle buttons)
    await stateButton(b.page, 'Online').focus();
    await b.page.keyboard.press('Enter');
    const online2 = { active: online0.active, tick: online0.tick + 2 };
    await waitShown(a.page, 'Online', online2);
    await waitShown(b.page, 'Online', online2);
    assert.equal(await resultText(b.page), `${online1.active ? 'remove' : 'add'} Online → executed`);
    if (!online2.active) {
      await stateButton(a.page, 'Online').click(); // Downloading requires Online
      await waitShown(b.page, 'Online', { active: true, tick: online0.tick + 3 });
    }

    // A starts a download; it runs by itself on the server and B watches it to the end
    const progress0 = await shown(b.page, 'Progress');
    await stateButton(a.page, 'Downloading').click();
    await waitShown(b.page, 'Downloading', { active: true });
    await waitShown(b.page, 'Queued', { active: false });
    await waitShown(b.page, 'Verified', { active: true, timeout: DOWNLOAD_MS });
    await waitShown(b.page, 'Done', { active: true });
    await waitShown(b.page, 'Downloading', { active: false });
    const progress1 = await shown(b.page, 'Progress');
    assert.ok(progress1.tick >= progress0.tick + 10,
      `Progress re-entered on every step: tick ${progress0.tick} → ${progress1.tick}`);
    // A agrees with B, state by state (sampled until equal: some states may still be moving)
    await until(async () => {
      const [ta, tb] = await Promise.all([allShown(a.page), allShown(b.page)]);
      return JSON.stringify(ta) === JSON.stringify(tb) || `A ${JSON.stringify(ta)} ≠ B ${JSON.stringify(tb)}`;
    });
    assert.match(await b.page.locator('#summary').textContent(), /Verified:\d+/);

    const file = path.join(ARTIFACTS, 'page.png');
    await b.page.screenshot({ path: file, fullPage: true });
    t.diagnostic(`screenshot: ${path.relative(ROOT, file)}`);
    assert.deepEqual([...a.problems, ...b.problems], []);
  } catch (err) {
    for (const p of [a, b]) {
      const file = path.join(ARTIFACTS, `page-failure-${p.label}.png`);
      await p.page.screenshot({ path: file, fullPage: true }).catch(() => {});
      t.diagnostic(`failure screenshot: ${path.relative(ROOT, file)}; result: ${await resultText(p.page).catch(() => '?')}`);
    }
    throw err;
  }
});

test('a refused mutation shows as canceled, not as a change', async () => {
  const { page, problems } = await openPage('refusal');
  // Progress requires Downloading, which is not active after the download above
  await waitShown(page, 'Downloading', { active: false });
  await waitShown(page, 'Progress', { active: false });
  const before = await shown(page, 'Progress');
  await stateButton(page, 'Progress').click();
  await page.locator('#result[data-kind="canceled"]').waitFor();
  assert.match(await resultText(page), /^add Progress → canceled/);
  assert.deepEqual(await shown(page, 'Progress'), before);
  assert.deepEqual(problems, []);
});
