// The example app (web/example: Vite + React + amrpc/react) in headless Chromium: its production
// build served by `vite preview`, proxying /ws to an `amrpc serve` of its own. A canceled download
// says why; a download runs to the end, its progress bar driven by the worker's Progress ticks.
// Run it with scripts/web/page.sh (it builds the app).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { freePort, killAll, start } from './procs.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ARTIFACTS = process.env.AMRPC_TEST_ARTIFACTS ?? path.join(ROOT, 'target/test-artifacts');
const BIN = process.env.AMRPC_BIN ?? path.join(ROOT, 'target/release/amrpc');
const APP = path.join(ROOT, 'web/example');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
let browser;

after(async () => {
  killAll();
  await browser?.close();
});

test('the example app drives the download worker through amrpc/react', async () => {
  const [srvPort, appPort] = [await freePort(), await freePort()];
  await start(BIN, ['serve', '--addr', `127.0.0.1:${srvPort}`], {}, /amrpc serving on/);
  await start(
    path.join(APP, 'node_modules/.bin/vite'),
    ['preview', '--host', '127.0.0.1', '--port', String(appPort), '--strictPort'],
    { cwd: APP, env: { ...process.env, AMRPC_SERVER: `http://127.0.0.1:${srvPort}` } },
    new RegExp(`127\\.0\\.0\\.1:${appPort}`),
  );
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'], headless: true });
  const page = await browser.newPage({ viewport: { width: 700, height: 800 } });
  page.setDefaultTimeout(10_000);
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`http://127.0.0.1:${appPort}/`);
  await page.locator('.status[data-status="ready"]').waitFor();
  // offline, a download is canceled, and the page says why
  await page.click('text=go offline');
  await page.locator('text=go online').waitFor();
  await page.click('text=reset');
  await page.click('button:has-text("download")');
  await page.locator('.message', { hasText: 'canceled — Downloading requires Online' }).waitFor();
  // online, it runs to the end
  await page.click('text=go online');
  await page.locator('text=go offline').waitFor();
  await page.click('button:has-text("download")');
  await page.locator('.phase[data-phase="Downloading"]').waitFor();
  await page.locator('progress:not([data-pct="0"])').waitFor();
  await page.screenshot({ path: path.join(ARTIFACTS, 'example-downloading.png') });
  await page.locator('progress[data-pct="100"]').waitFor({ timeout: 20_000 });
  await page.locator('.phase[data-phase="Verified"]').waitFor({ timeout: 20_000 });
  assert.ok((await page.locator('.changes li').count()) > 0, 'recent changes from the stream');
  await page.screenshot({ path: path.join(ARTIFACTS, 'example-done.png') });
  assert.deepEqual(problems, []);
});
