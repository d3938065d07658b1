// The classic page over https:// in Chromium, talking wss:// to the same server (the open test
// server behind TLS, scripts/web/setup.sh). Chromium trusts only this run's fresh certificate, by
// its key's pin (--ignore-certificate-errors-spki-list), not by ignoring certificate errors.
// Run it with scripts/web/page.sh.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const BASE = process.env.AMRPC_TEST_HTTPS;
const SPKI = process.env.AMRPC_TEST_SPKI;
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const WAIT_MS = 10_000;
let browser;

after(async () => {
  await browser?.close();
});

test('the page connects over wss:// and drives the worker', async () => {
  assert.ok(BASE && SPKI, 'AMRPC_TEST_HTTPS / AMRPC_TEST_SPKI are not set: run scripts/web/page.sh');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      `--ignore-certificate-errors-spki-list=${SPKI}`],
  });
  const page = await browser.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`uncaught ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console.error ${m.text()}`); });
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.goto(`${BASE}/classic/`);
  assert.equal(await page.evaluate(() => location.protocol), 'https:');
  await page.locator('#status[data-status="ready"]').waitFor();
  assert.ok(sockets.length > 0 && sockets.every((u) => u.startsWith('wss://')), sockets.join(', '));
  // a click goes over wss to the worker and back
  const button = page.locator('button.state[data-state="Online"]');
  const before = await button.evaluate((b) => b.dataset.active);
  await button.click();
  await page.waitForFunction(([was]) => {
    const b = document.querySelector('button.state[data-state="Online"]');
    return b && b.dataset.active !== was;
  }, [before], { timeout: WAIT_MS, polling: 50 });
  assert.deepEqual(problems, []);
});
