/**
 * End to end in a real browser: Debian's Chromium driven by playwright-core against the app listening on a
 * loopback port over a seeded store. Signs in, opens a neighbourhood chart that has data points, opens a bill
 * and checks its total against the store, exercises the admin pages; screenshots go to test-output/mdms-web/.
 * Fails under CI=true when Chromium is missing (.ci/run installs it); skipped otherwise.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DateTime } from 'luxon';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatMoney } from '../../../lib/billing.js';
import type { MdmsWeb } from '../../../mdms/web/server.js';
import { fixture, PASSWORDS, TZ, WEEK_START, type Fixture } from './fixture.js';
import { launchChromium, present } from './chromium.js';


export const SHOTS = join(process.cwd(), 'test-output', 'mdms-web');

describe.skipIf(!present)('MDMS web app in Chromium', () => {
  let fx: Fixture;
  let server: MdmsWeb;
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let ctx: BrowserContext;
  const problems: string[] = [];

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    fx = await fixture();
    server = await (await import('./fixture.js')).serve(fx);
    browser = await launchChromium({
      viewport: { width: 1360, height: 900 },
    });
    ctx = browser.ctx;
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await fx?.close();
  });

  /** A fresh page that records console errors, page errors and CSP violations. */
  async function page(): Promise<Page> {
    const p = await ctx.newPage();
    p.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    p.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    return p;
  }

  async function signIn(p: Page, user: string, next = '/'): Promise<void> {
    await ctx.clearCookies();
    await p.goto(`${server.url}/login?next=${encodeURIComponent(next)}`);
    await p.fill('input[name="username"]', user);
    await p.fill('input[name="password"]', PASSWORDS[user]!);
    await Promise.all([p.waitForURL((u) => !u.pathname.startsWith('/login')), p.click('button[type="submit"]')]);
    expect(await p.textContent('[data-testid="current-user"]')).toBe(user);
  }

  it('refuses a wrong password and signs an analyst in', async () => {
    const p = await page();
    await p.goto(`${server.url}/neighbourhoods`);
    expect(new URL(p.url()).pathname).toBe('/login'); // anonymous: sent to sign in, nothing shown
    await p.screenshot({ path: join(SHOTS, '01-login.png') });
    await p.fill('input[name="username"]', 'analyst');
    await p.fill('input[name="password"]', 'not-the-password');
    await p.click('button[type="submit"]');
    await p.waitForSelector('.flash-error');
    expect(await p.textContent('.flash-error')).toContain('Wrong username or password');
    await p.close();
  });

  it('opens a neighbourhood chart with data points and the peak interval highlighted', async () => {
    const p = await page();
    await signIn(p, 'analyst', '/neighbourhoods?nb=nb-east&range=day&date=2024-06-04');
    await p.waitForSelector('#demand-chart[data-ready="1"]');
    const points = Number(await p.getAttribute('#demand-chart', 'data-points'));
    expect(points).toBe(96);
    expect(await p.locator('#demand-chart canvas').count()).toBeGreaterThan(0);
    const box = await p.locator('#demand-chart canvas').first().boundingBox();
    expect(box!.width).toBeGreaterThan(600);
    // The peak the page names is the store's highest interval of that day.
    const dayStart = WEEK_START + 86_400;
    const rows = await fx.store.latestNeighbourhood({ neighbourhood: 'nb-east', from: dayStart, to: dayStart + 86_400 });
    const peak = rows.reduce((a, r) => (r.energyWh > a.energyWh ? r : a));
    const label = DateTime.fromSeconds(peak.start, { zone: TZ }).toFormat('d LLL yyyy HH:mm');
    expect(await p.textContent('[data-testid="peak-nb-east"]')).toContain(label);
    expect(await p.locator('[data-testid="intervals"] tr.peak').count()).toBe(1);
    await p.screenshot({ path: join(SHOTS, '02-neighbourhood-day.png'), fullPage: true });

    // Compare three neighbourhoods over the week.
    await p.goto(`${server.url}/neighbourhoods?nb=nb-east&nb=nb-north&nb=nb-west&range=week&date=2024-06-05`);
    await p.waitForSelector('#demand-chart[data-ready="1"]');
    expect(Number(await p.getAttribute('#demand-chart', 'data-points'))).toBe(3 * 7 * 96);
    expect(await p.locator('.u-legend .u-series').count()).toBe(1 + 3 + 3); // time + energy and meters per neighbourhood
    await p.screenshot({ path: join(SHOTS, '03-neighbourhoods-week-compare.png'), fullPage: true });

    // Hovering the chart shows values in the legend.
    const canvas = p.locator('#demand-chart .u-over');
    const cb = (await canvas.boundingBox())!;
    await p.mouse.move(cb.x + cb.width * 0.7, cb.y + cb.height / 2);
    expect(await p.locator('.u-legend .u-series .u-value').nth(1).textContent()).toMatch(/kWh/);

    // Revised intervals link to their revision history.
    const revised = fx.seeded.intervals.find((i) => i.revision > 0)!;
    const date = DateTime.fromSeconds(revised.start, { zone: TZ }).toISODate();
    await p.goto(`${server.url}/neighbourhoods?nb=${revised.neighbourhood}&range=day&date=${date}`);
    await p.waitForSelector('#demand-chart[data-ready="1"]');
    await Promise.all([p.waitForURL(/\/intervals\//), p.click('[data-testid="intervals"] a.badge.rev >> nth=0')]);
    expect(await p.locator('table tbody tr').count()).toBeGreaterThanOrEqual(2);
    await p.screenshot({ path: join(SHOTS, '04-interval-revisions.png') });

    // An analyst cannot see bills.
    const res = await p.goto(`${server.url}/accounts`);
    expect(res!.status()).toBe(403);
    expect(await p.textContent('[data-testid="error-message"]')).toMatch(/needs billing.read/);
    await p.screenshot({ path: join(SHOTS, '05-analyst-forbidden.png') });
    await p.close();
  });

  it('opens a bill whose total matches the store priced by hand, and prints it', async () => {
    const p = await page();
    await signIn(p, 'billing', '/accounts');
    await p.screenshot({ path: join(SHOTS, '06-accounts.png'), fullPage: true });
    const account = (await fx.web.accounts.byHousehold('hh02'))!.accountNumber;
    await Promise.all([p.waitForURL(new RegExp(`/accounts/${account}$`)), p.click(`text=${account}`)]);
    await p.screenshot({ path: join(SHOTS, '07-account.png'), fullPage: true });
    // The "bill a range" form defaults to the month of the latest data: June 2024.
    expect(await p.inputValue('input[name="from"]')).toBe('2024-06-01');
    await p.fill('input[name="from"]', '2024-06-03');
    await p.fill('input[name="to"]', '2024-06-10');
    await Promise.all([p.waitForURL(/\/bill\?/), p.click('text=Open bill')]);
    await p.waitForSelector('[data-testid="bill-total"]');

    const rows = await fx.store.latestBilling({ household: 'hh02' });
    const wh = (band: string): bigint => rows.filter((r) => r.band === band).reduce((a, r) => a + BigInt(r.energyWh), 0n);
    const rhe = (n: bigint, d: bigint): bigint => {
      const q = n / d;
      const r2 = (n % d) * 2n;
      return r2 > d || (r2 === d && q % 2n === 1n) ? q + 1n : q;
    };
    const subtotal = rhe(wh('peak') * 30_000n, 1_000_000n) + rhe(wh('offpeak') * 15_000n, 1_000_000n) + rhe(7n * 53_350n, 1000n);
    const total = Number(subtotal + rhe(subtotal * 500n, 10_000n));
    expect(Number(await p.getAttribute('[data-testid="bill-total"]', 'data-minor'))).toBe(total);
    expect(await p.textContent('[data-testid="bill-total"]')).toBe(formatMoney(total, 'GBP', 2));
    expect(await p.textContent('[data-testid="bill-account"]')).toBe(account);
    expect(await p.locator('[data-testid="bill-lines"] tbody tr').count()).toBe(3 + 2 + 1); // 2 bands + standing, subtotal, VAT, total
    await p.screenshot({ path: join(SHOTS, '08-bill.png'), fullPage: true });
    await p.emulateMedia({ media: 'print' });
    expect(await p.locator('.sidebar').isVisible()).toBe(false);
    await p.screenshot({ path: join(SHOTS, '09-bill-print.png'), fullPage: true });
    await p.emulateMedia({ media: 'screen' });

    await p.goto(`${server.url}/bills?from=2024-06-03&to=2024-06-10`);
    expect(await p.locator('[data-testid="bill-run"] tbody tr').count()).toBe(4);
    await p.screenshot({ path: join(SHOTS, '10-bill-run.png'), fullPage: true });
    const audit = await fx.web.audit.list({ action: 'view.bill', username: 'billing' });
    expect(audit.map((e) => e.target)).toContain(account);

    // Issue the bills: one per account and day of June 2024, each a printable page.
    await Promise.all([p.waitForURL(/\/bills\?done=run$/), p.click('text=Issue bills now')]);
    expect(await p.locator('[data-testid="issued"] tbody tr').count()).toBe(4 * 7);
    const first = (await p.textContent('[data-testid="issued"] tbody tr:first-child a'))!;
    await Promise.all([p.waitForURL(new RegExp(`/bills/${first}$`)), p.click(`text=${first}`)]);
    const doc = (await fx.web.bills.byNumber(first))!;
    expect(await p.textContent('[data-testid="document-number"]')).toBe(first);
    expect(Number(await p.getAttribute('[data-testid="document-total"]', 'data-minor'))).toBe(doc.totalMinor);
    await p.emulateMedia({ media: 'print' });
    expect(await p.locator('.sidebar').isVisible()).toBe(false);
    expect(await p.locator('.bill-tools').isVisible()).toBe(false);
    await p.screenshot({ path: join(SHOTS, '10b-issued-bill-print.png'), fullPage: true });
    await p.emulateMedia({ media: 'screen' });
    await p.close();
  });

  it('lets an admin add a tariff with an extra band, add a user, and read the audit log', async () => {
    const p = await page();
    await signIn(p, 'admin', '/tariffs');
    await p.screenshot({ path: join(SHOTS, '11-tariffs.png'), fullPage: true });
    await p.goto(`${server.url}/tariffs/new`);
    await p.fill('input[name="code"]', 'tou3');
    await p.fill('input[name="name"]', 'Three-rate 2024');
    await p.fill('input[name="effectiveFrom"]', '2024-07-01');
    await p.fill('input[name="standing"]', '48.5');
    await p.fill('input[name="vat"]', '5');
    const rows = p.locator('.band-row');
    const before = await rows.count();
    for (let i = 0; i < before; i++) {
      await rows.nth(i).locator('input[name="band"]').fill(['peak', 'shoulder', 'offpeak', 'ev'][i] ?? '');
      await rows.nth(i).locator('input[name="price"]').fill(['32.125', '24', '14.5', '7.25'][i] ?? '');
    }
    await p.click('[data-action="add-band"]');
    expect(await rows.count()).toBe(before + 1);
    await rows.nth(before).locator('input[name="band"]').fill('super-offpeak');
    await rows.nth(before).locator('input[name="price"]').fill('3.001');
    await p.screenshot({ path: join(SHOTS, '12-tariff-form.png'), fullPage: true });
    await Promise.all([p.waitForURL(/\/tariffs\?done=created/), p.click('button[type="submit"]:has-text("Add version")')]);
    const v = (await fx.web.tariffs.versions('tou3'))[0]!;
    expect(v.bands).toEqual([
      { band: 'peak', priceMilliPerKwh: 32_125, feedInMilliPerKwh: 0 },
      { band: 'shoulder', priceMilliPerKwh: 24_000, feedInMilliPerKwh: 0 },
      { band: 'offpeak', priceMilliPerKwh: 14_500, feedInMilliPerKwh: 0 },
      { band: 'ev', priceMilliPerKwh: 7_250, feedInMilliPerKwh: 0 },
      { band: 'super-offpeak', priceMilliPerKwh: 3_001, feedInMilliPerKwh: 0 },
    ]);
    expect(v.standingMilliPerDay).toBe(48_500);

    await p.goto(`${server.url}/admin/users`);
    await p.fill('form[action="/admin/users"] input[name="username"]', 'clerk2');
    await p.check('form[action="/admin/users"] input[value="billing"]');
    await Promise.all([p.waitForLoadState('load'), p.click('text=Add user')]);
    const shown = (await p.textContent('[data-testid="new-password"] .secret'))!.trim();
    expect(await fx.web.users.verify('clerk2', shown)).not.toBeNull();
    await p.screenshot({ path: join(SHOTS, '13-users.png'), fullPage: true });

    await p.goto(`${server.url}/admin/audit?verify=1`);
    expect(await p.textContent('[data-testid="audit-verify"]')).toMatch(/Chain intact/);
    expect(await p.locator('[data-testid="audit"] tbody tr').count()).toBeGreaterThan(5);
    await p.screenshot({ path: join(SHOTS, '14-audit.png'), fullPage: true });
    await p.goto(`${server.url}/`);
    await p.screenshot({ path: join(SHOTS, '15-admin-overview.png') });

    const bad = await p.goto(`${server.url}/neighbourhoods?date=2024-02-30`);
    expect(bad!.status()).toBe(403); // admin is not an analyst
    const missing = await p.goto(`${server.url}/tariffs/new?from=999999`);
    expect(missing!.status()).toBe(404);
    expect(await p.textContent('[data-testid="error-message"]')).toMatch(/no tariff version 999999/);
    expect(await p.content()).not.toMatch(/node_modules|\.ts:\d+/);
    await p.screenshot({ path: join(SHOTS, '16-not-found.png') });
    await p.close();
  });

  it('ran without console errors or CSP violations', () => {
    // 401/403/404 answers the tests asked for are logged by Chromium as failed resource loads; anything else is a bug.
    expect(problems.filter((m) => !/Failed to load resource: the server responded with a status of (401|403|404)/.test(m))).toEqual([]);
  });
});
