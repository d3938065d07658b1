// The example app (web/example: Vite + React + amrpc/react) in headless Chromium: its production
// build served by `vite preview`, proxying /ws to an `amrpc serve` of its own. A canceled download
// says why; a download runs to the end, its progress bar driven by the worker's Progress ticks.
// Run it with scripts/web/page.sh (it builds the app).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ARTIFACTS = process.env.AMRPC_TEST_ARTIFACTS ?? path.join(ROOT, 'target/test-artifacts');
const BIN = process.env.AMRPC_BIN ?? path.join(ROOT, 'target/release/amrpc');
const APP = path.join(ROOT, 'web/example');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const children = [];
let browser;

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await browser?.close();
});

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Spawn and wait for `ready` in its output (bounded). */
function start(cmd, args, opts, ready) {
  const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.push(c);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${cmd} did not start: ${out}`)), 20_000);
    const on = (d) => {
      out += d;
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve(c);
      }
    };
    c.stdout.on('data', on);
    c.stderr.on('data', on);
    c.on('exit', (code) => reject(new Error(`${cmd} exited (${code}): ${out}`)));
  });
}

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
