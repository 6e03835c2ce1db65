// The dashboard in a real browser: Debian's chromium driven by
// playwright-core, against the real `sluice run` that web/e2e_test.go
// started. Run by that Go test (which sets the environment), not alone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this through web/e2e_test.go`);
  return v;
};
const base = env('SLUICE_URL');
const token = env('SLUICE_TOKEN');
const bin = env('SLUICE_BIN');
const home = env('SLUICE_HOME_DIR');
const shots = env('SLUICE_SCREENSHOTS');
const require = createRequire(path.join(env('SLUICE_PLAYWRIGHT'), 'package.json'));
const { chromium } = require('playwright-core');

let browser, context, page;
const errors = [];

// publish sends one message through the real CLI (the embedded queue).
const publish = (topic, payload) =>
  execFileSync(bin, ['--home', home, 'publish', topic, JSON.stringify(payload)], { stdio: ['ignore', 'pipe', 'pipe'] });

// flowing publishes orders in the background until the returned stop.
function flowing(customer) {
  let stopped = false;
  const loop = (async () => {
    for (let i = 0; !stopped && i < 200; i++) {
      await new Promise((resolve, reject) => {
        const p = spawn(bin, ['--home', home, 'publish', 'orders', JSON.stringify({ customer, amount: 10 + i })], { stdio: 'ignore' });
        p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`publish exited ${code}`))));
      });
    }
  })();
  return async () => { stopped = true; await loop; };
}

// risesWhileFlowing publishes orders until the number the page shows at
// selector has grown by at least n, without a reload (htmx polling).
async function risesWhileFlowing(selector, n) {
  await page.locator(selector).waitFor();
  const start = await number(selector);
  const stop = flowing('initech');
  try {
    await page.waitForFunction(([sel, want]) => Number(document.querySelector(sel).textContent) >= want, [selector, start + n], { timeout: 30000 });
  } finally {
    await stop();
  }
}

const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
const nav = (name) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true });
const number = async (selector) => Number((await page.locator(selector).first().textContent()).trim());

before(async () => {
  fs.mkdirSync(shots, { recursive: true });
  browser = await chromium.launch({ executablePath: env('SLUICE_CHROMIUM'), args: ['--no-sandbox'] });
  context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
});

after(async () => { await browser?.close(); });

test('a page needs the login; the token logs in', async () => {
  const resp = await page.goto(`${base}/ui/runs`);
  assert.equal(new URL(page.url()).pathname, '/ui/login');
  assert.equal(resp.status(), 200);
  await shot('login');
  await page.getByLabel('Admin token').fill('not-the-token');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'not the admin token' }).waitFor();
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${base}/ui/runs`);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'sluice_session');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.ok(!session.value.includes(token), 'the cookie is not the token');
  errors.length = 0; // the refused login's 401 is expected
});

test('the flows overview counts runs as messages flow, without a reload', async () => {
  await page.goto(`${base}/`);
  assert.equal(new URL(page.url()).pathname, '/ui/');
  await risesWhileFlowing('[data-flow="enrich"] [data-stat="runs"]', 3);
  assert.match(await page.locator('[data-flow="enrich"]').textContent(), /degraded|failing/, 'a dead letter waits');
  await shot('flows');
  // Keyboard: the first Tab reaches the skip link.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
});

test('the flow page draws the graph with live counts beside the YAML', async () => {
  await page.getByRole('link', { name: 'enrich', exact: true }).click();
  await page.waitForURL(`${base}/ui/flows/enrich`);
  for (const text of ['branch large', '→ topic done', '→ bucket configs', 'enrich.dlq']) {
    await page.getByText(text, { exact: false }).first().waitFor();
  }
  assert.match(await page.locator('pre code').textContent(), /node: storage.get/);
  await risesWhileFlowing('[data-step="load"] [data-stat="count"]', 2);
  await shot('flow');
  if (process.env.SLUICE_DOCS_SCREENSHOT) {
    await page.screenshot({ path: process.env.SLUICE_DOCS_SCREENSHOT });
  }
});

test('the failing run shows its cause; its dead letter is replayed after the fix and succeeds', async () => {
  await nav('Runs').click();
  await page.getByLabel('Flow').selectOption('enrich');
  await page.getByLabel('Status').selectOption('dead_lettered');
  await page.getByRole('button', { name: 'Filter' }).click();
  const failed = page.locator('tr[data-status="dead_lettered"]');
  await failed.first().waitFor();
  assert.equal(await page.locator('tr[data-status="succeeded"]').count(), 0);
  await shot('runs');
  await failed.first().getByRole('link').click();
  await page.getByText('customers/acme.json').first().waitFor();
  await page.locator('tr[data-step="load"]').waitFor();
  await shot('run-failed');

  await nav('Dead letters').click();
  const group = page.locator('tr[data-group-flow="enrich"]');
  await group.waitFor();
  await shot('dead-letters');

  // Fix the cause: the file the flow reads.
  const file = path.join(home, 'buckets', 'configs', 'customers', 'acme.json');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, '{"tier":"gold"}');

  await group.getByRole('button', { name: /Replay the/ }).click();
  await page.waitForURL(/\/ui\/jobs\//);
  await page.locator('#job[data-finished="true"]').waitFor({ timeout: 30000 });
  assert.match(await page.getByRole('status').textContent(), /Done: 1 of 1/);
  await shot('replay');
  await page.locator('#job ul a').first().click();
  await page.waitForURL(/\/ui\/dlq\//);
  // The replay's run appears once it ran; reload until it does.
  let link;
  for (let i = 0; i < 100; i++) {
    link = page.locator('[data-replay-run]');
    if (await link.count()) break;
    await page.waitForTimeout(200);
    await page.reload();
  }
  assert.ok(await link.count(), 'the dead letter links the run its replay made');
  await shot('dead-letter');
  await link.click();
  await page.getByText('Replay of').waitFor();
  assert.equal((await page.locator('h1 .badge').textContent()).trim(), 'succeeded');
  await shot('run-replayed');
});

test('usage shows a chart and a table; a machine entity shows state and history', async () => {
  await nav('Usage').click();
  await page.locator('svg.chart').first().waitFor();
  assert.ok(await page.locator('table tbody tr').count() >= 2);
  await shot('usage');
  await nav('State machines').click();
  await page.getByLabel('Machine').fill('order');
  await page.getByLabel('Entity key').fill('o-1');
  await page.getByRole('button', { name: 'Look up' }).click();
  await page.locator('[data-state="paid"]').waitFor();
  assert.ok(await page.getByRole('cell', { name: 'create' }).count());
  await shot('machines');
});

test('a phone-sized screen still reads the pages', async () => {
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await phone.addCookies(await context.cookies());
  const p = await phone.newPage();
  await p.goto(`${base}/ui/`);
  await p.locator('[data-flow="enrich"]').waitFor();
  const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page scrolls sideways by ${overflow}px`);
  await p.screenshot({ path: path.join(shots, 'phone-flows.png'), fullPage: true });
  await p.goto(`${base}/ui/flows/enrich`);
  const flowOverflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(flowOverflow <= 1, `the flow page scrolls sideways by ${flowOverflow}px`);
  await p.screenshot({ path: path.join(shots, 'phone-flow.png'), fullPage: true });
  await phone.close();
});

test('every page reads without JavaScript', async () => {
  const nojs = await browser.newContext({ javaScriptEnabled: false });
  await nojs.addCookies(await context.cookies());
  const p = await nojs.newPage();
  for (const [path, selector] of [['/ui/', '[data-flow="enrich"]'], ['/ui/flows/enrich', '[data-step="review"]'],
    ['/ui/runs?status=dead_lettered', 'tr[data-status="dead_lettered"]'], ['/ui/dlq?replayed=1', 'tr[data-letter]'],
    ['/ui/usage', 'svg.chart'], ['/ui/machines?machine=order&key=o-1', '[data-state="paid"]']]) {
    const resp = await p.goto(`${base}${path}`);
    assert.equal(resp.status(), 200, path);
    await p.locator(selector).first().waitFor({ timeout: 5000 });
  }
  await nojs.close();
});

test('no script errors on any page', () => {
  assert.deepEqual(errors, []);
});
