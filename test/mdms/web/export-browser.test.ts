/**
 * The export register and the Privacy page in a real browser (Debian's Chromium through playwright-core): a
 * neighbourhood of prosumers draws import, export and net (below zero at noon) with no console error, page
 * error or CSP violation; a feed-in bill shows its credit; the Privacy page renders for an administrator.
 * Screenshots go to test-output/mdms-web/. Fails under CI=true when Chromium is missing; skipped otherwise.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MdmsWeb } from '../../../mdms/web/server.js';
import { DAY, fixture, PASSWORDS, serve, TZ, WEEK_START, type Fixture } from './fixture.js';
import { launchChromium, present } from './chromium.js';

const SHOTS = join(process.cwd(), 'test-output', 'mdms-web');

describe.skipIf(!present)('export and privacy in Chromium', () => {
  let fx: Fixture;
  let server: MdmsWeb;
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let ctx: BrowserContext;
  let account = '';
  const problems: string[] = [];

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    fx = await fixture('sqlite', 1);
    // A sunny day: export from 08:00 to 17:00 local time, above import around noon.
    for (let i = 0; i < 96; i++) {
      const start = WEEK_START + i * 900;
      const exportWh = i >= 32 && i < 68 ? Math.round(3000 * Math.sin((Math.PI * (i - 32)) / 36)) : 0;
      await fx.store.insertNeighbourhood({ kind: 'neighbourhood', key: 'nb-sun', start, end: start + 900, revision: 0, meters: 30, energyWh: 1200 + 10 * i, exportWh, dp: { epsilon: 0.5, spent: 0.5 * (i + 1) } });
    }
    await fx.store.insertPolicy({ kind: 'policy', key: 'pes', at: WEEK_START + DAY, k: 20, revisionK: 5, membershipGuard: true, dpEpsilon: 0.5, counters: { suppressed: 2, revisionHeld: 1, membershipHeld: 3, dpReleases: 96 } });
    await fx.store.recordIngestPolicy({ k: 20, minBillingPeriodS: 86_400, fleetChecked: true });
    await fx.web.tariffs.create({ code: 'solar', name: 'Solar 2024', currency: 'GBP', minorDigits: 2, tz: TZ, effectiveFrom: '2024-01-01', standingMilliPerDay: 53_350, vatBasisPoints: 500, bands: [{ band: 'peak', priceMilliPerKwh: 30_000, feedInMilliPerKwh: 15_000 }, { band: 'offpeak', priceMilliPerKwh: 15_000 }] }, 'admin');
    await fx.store.insertBilling({ kind: 'billing', key: 'hh-solar', start: WEEK_START, end: WEEK_START + DAY, revision: 0, bands: { peak: 2000, offpeak: 3000 }, exportBands: { peak: 18_000 } });
    await fx.web.accounts.ensure(['hh-solar']);
    account = (await fx.web.accounts.setTariff((await fx.web.accounts.byHousehold('hh-solar'))!.accountNumber, 'solar'))!.accountNumber;
    server = await serve(fx);
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

  async function signedIn(user: string, next: string): Promise<Page> {
    await ctx.clearCookies();
    const p = await ctx.newPage();
    p.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    p.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    await p.goto(`${server.url}/login?next=${encodeURIComponent(next)}`);
    await p.fill('input[name="username"]', user);
    await p.fill('input[name="password"]', PASSWORDS[user]!);
    await Promise.all([p.waitForURL((u) => !u.pathname.startsWith('/login')), p.click('button[type="submit"]')]);
    return p;
  }

  it('draws import, export and net, net below zero at noon; an import-only neighbourhood keeps two series', async () => {
    const p = await signedIn('analyst', '/neighbourhoods?nb=nb-sun&range=day&date=2024-06-03');
    await p.waitForSelector('#demand-chart[data-ready="1"]');
    expect(Number(await p.getAttribute('#demand-chart', 'data-series'))).toBe(4); // import, meters, export, net
    expect(await p.locator('#demand-chart .u-legend').textContent()).toMatch(/nb-sun import.*nb-sun meters.*nb-sun export.*nb-sun net/);
    expect(Number(await p.getAttribute('#demand-chart', 'data-min-net-kwh'))).toBeLessThan(0);
    await p.screenshot({ path: join(SHOTS, '30-demand-import-export-net.png'), fullPage: true });
    await p.goto(`${server.url}/neighbourhoods?nb=nb-east&range=day&date=2024-06-03`);
    await p.waitForSelector('#demand-chart[data-ready="1"]');
    expect(Number(await p.getAttribute('#demand-chart', 'data-series'))).toBe(2);
    expect(problems).toEqual([]);
  }, 60_000);

  it('a feed-in bill is plainly a credit, and the Privacy page renders for an administrator', async () => {
    const p = await signedIn('billing', `/accounts/${account}/bill?from=2024-06-03&to=2024-06-04`);
    expect(await p.textContent('[data-testid="bill-total"]')).toContain('-£1.18');
    expect(await p.isVisible('[data-testid="bill-credit-note"]')).toBe(true);
    await p.screenshot({ path: join(SHOTS, '31-feed-in-bill.png'), fullPage: true });
    const a = await signedIn('admin', '/privacy');
    expect(await a.textContent('[data-testid="pes-k-pes"]')).toBe('20');
    expect(await a.textContent('[data-testid="budget-nb-sun"]')).toContain('0.5');
    await a.screenshot({ path: join(SHOTS, '32-privacy.png'), fullPage: true });
    expect(problems).toEqual([]);
  }, 60_000);
});
