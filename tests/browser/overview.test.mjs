// Drives the national overview of a real `polity up` in Debian's headless Chromium.
// Run by .ci/run: POLITY_BIN=path/to/polity node --test tests/browser/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { chromium } from 'playwright-core';

const bin = process.env.POLITY_BIN ?? '../../target/debug/polity';
let proc, base, dataDir, log = '';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
    s.on('error', reject);
  });
}

async function waitReady(url, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { const r = await fetch(url); if (r.ok) return; } catch { /* not yet */ }
    await new Promise(r => setTimeout(r, 250));
  }
  throw new Error(`polity did not answer ${url} within ${ms} ms; output:\n${log}`);
}

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'polity-browser-'));
  const [http, mqtt, coap] = [await freePort(), await freePort(), await freePort()];
  base = `http://127.0.0.1:${http}`;
  proc = spawn(bin, ['up', '--http', `127.0.0.1:${http}`, '--mqtt-listen', `127.0.0.1:${mqtt}`,
    '--coap-listen', `127.0.0.1:${coap}`, '--data-dir', dataDir, '--devices', '300'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout.on('data', d => { log += d; });
  proc.stderr.on('data', d => { log += d; });
  await waitReady(`${base}/health`, 60_000);
  // The sign-in link is printed once the demo is running.
  const end = Date.now() + 30_000;
  while (!/Press Ctrl-C/.test(log) && Date.now() < end) await new Promise(r => setTimeout(r, 100));
});

after(() => {
  proc?.kill('SIGTERM');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test('the overview shows every city with its entity types and updates live', async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1360, height: 1000 } });
    const errors = [];
    page.on('pageerror', e => errors.push(String(e)));
    // Without a session the page sends the browser to sign in.
    await page.goto(base + '/');
    assert.match(page.url(), /\/login$/);
    // The sign-in link `polity up` printed carries an operator token in its fragment;
    // the page posts it and lands on the overview with a session cookie.
    const link = log.match(/Sign in\s+(http:\/\/\S+\/login#\S+)/);
    assert.ok(link, `polity up printed no sign-in link:\n${log}`);
    await page.goto(link[1]);
    await page.waitForURL(base + '/', { timeout: 10_000 });
    assert.match(await page.title(), /Polity/);
    const cookies = await page.context().cookies();
    const session = cookies.find(c => c.name === 'polity_token');
    assert.ok(session && session.httpOnly && session.sameSite === 'Strict', JSON.stringify(cookies));

    // Wait until every city shows five entity types with entities in each.
    await page.waitForFunction(() => {
      const cards = [...document.querySelectorAll('article.city')];
      return cards.length >= 3 && cards.every(c =>
        [...c.querySelectorAll('td[data-count]')].filter(td => parseInt(td.textContent.replace(/,/g, ''), 10) > 0).length >= 5);
    }, null, { timeout: 45_000 });

    const cities = await page.$$eval('article.city h2', hs => hs.map(h => h.textContent));
    for (const c of ['Adelaide', 'Melbourne', 'Sydney']) assert.ok(cities.includes(c), `missing ${c} in ${cities}`);
    const types = await page.$$eval('article.city[data-tenant="adelaide"] td[data-type]', tds => tds.map(t => t.textContent));
    for (const t of ['WaterConsumptionObserved', 'ACMeasurement', 'ParkingSpot', 'TrafficFlowObserved', 'AirQualityObserved']) {
      assert.ok(types.includes(t), `Adelaide lacks ${t}: ${types}`);
    }

    // Live updates arrive over SSE and the rate becomes non-zero.
    await page.waitForFunction(() => +(document.body.dataset.updates || 0) >= 2, null, { timeout: 20_000 });
    await page.waitForFunction(() => parseFloat(document.querySelector('[data-kpi="rate"]').textContent) > 0, null, { timeout: 20_000 });
    assert.equal(await page.$eval('#status', s => s.className), 'status');

    mkdirSync('artifacts', { recursive: true });
    await page.screenshot({ path: 'artifacts/overview.png', fullPage: true });
    assert.deepEqual(errors, [], 'the page raised script errors');
  } finally {
    await browser.close();
  }
});
