// Open the page in headless Debian Chromium (playwright-core, never a downloaded browser), wait
// for <body data-state> to leave "loading", and screenshot the viewport element.
//
//   node shot.mjs URL OUT.png [TIMEOUT_MS=45000]
//
// Prints one JSON line: {state, status, seconds, log}; exits 1 unless the state is "rendered"
// or "blank". Requests to anything but loopback are aborted, so the check never leaves the machine.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [url, out, timeoutArg] = process.argv.slice(2);
if (!url || !out) {
  console.error('usage: node shot.mjs URL OUT.png [TIMEOUT_MS]');
  process.exit(2);
}
const timeout = Number(timeoutArg || 45000);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'dicomnode-chromium-'));
const started = Date.now();
const log = [];

const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 640, height: 600 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let result;
try {
  await context.route('**/*', (route) => {
    const target = new URL(route.request().url());
    if (['127.0.0.1', 'localhost'].includes(target.hostname) || ['data:', 'blob:'].includes(target.protocol)) {
      return route.continue();
    }
    log.push(`blocked ${target.href}`);
    return route.abort();
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => log.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => { if (r.status() >= 400) log.push(`http ${r.status()}: ${r.url()}`); });
  await page.goto(url, { waitUntil: 'load', timeout });
  await page.waitForFunction(() => document.body.dataset.state !== 'loading', null, { timeout })
    .catch(() => log.push(`still loading after ${timeout} ms`));
  await page.waitForTimeout(300); // let the compositor present the last frame
  await page.locator('#viewport').screenshot({ path: out });
  result = await page.evaluate(() => ({
    state: document.body.dataset.state,
    status: document.getElementById('status').textContent,
  }));
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify({ ...result, seconds: (Date.now() - started) / 1000, log }));
process.exit(['rendered', 'blank'].includes(result.state) ? 0 : 1);
