/**
 * The forecast charts in a real browser (Debian's Chromium through playwright-core): the demand page's day
 * with the forecast line and band, the forecast page, and the data-quality page render with no console error,
 * page error or CSP violation. Screenshots go to test-output/mdms-web/. Fails under CI=true when Chromium is
 * missing; skipped otherwise.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MdmsWeb } from '../../../mdms/web/server.js';
import { fixture, PASSWORDS, serve, type Fixture } from './fixture.js';
import { launchChromium, present } from './chromium.js';

const SHOTS = join(process.cwd(), 'test-output', 'mdms-web');

describe.skipIf(!present)('forecast and data quality in Chromium', () => {
  let fx: Fixture;
  let server: MdmsWeb;
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let ctx: BrowserContext;
  const problems: string[] = [];

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    fx = await fixture();
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

  async function signedIn(next: string): Promise<Page> {
    const p = await ctx.newPage();
    p.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    p.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    await p.goto(`${server.url}/login?next=${encodeURIComponent(next)}`);
    await p.fill('input[name="username"]', 'analyst');
    await p.fill('input[name="password"]', PASSWORDS.analyst!);
    await Promise.all([p.waitForURL((u) => !u.pathname.startsWith('/login')), p.click('button[type="submit"]')]);
    return p;
  }

  it('draws the forecast band on the demand page and the forecast page; the quality page checks', async () => {
    const p = await signedIn('/neighbourhoods?nb=nb-east&range=day&date=2024-06-09');
    await p.waitForSelector('#demand-chart[data-ready="1"]');
    expect(await p.locator('#demand-chart .u-legend').textContent()).toMatch(/forecast.*80 % low.*80 % high/);
    await p.screenshot({ path: join(SHOTS, '20-demand-with-forecast.png'), fullPage: true });

    await p.goto(`${server.url}/forecast?nb=nb-west&date=2024-06-08`);
    await p.waitForSelector('#forecast-chart[data-ready="1"]');
    expect(Number(await p.getAttribute('#forecast-chart', 'data-points'))).toBe(96);
    await p.screenshot({ path: join(SHOTS, '21-forecast.png'), fullPage: true });

    await p.goto(`${server.url}/quality`);
    await Promise.all([p.waitForURL(/checked=\d+/), p.click('[data-testid="quality-check"] button[type="submit"]')]);
    // The fixture drops a few meters now and then: flagged, with the evidence.
    expect(await p.textContent('[data-testid="quality-findings"]')).toMatch(/meter-drop\s*meters \d+, expected \d+/);
    await p.screenshot({ path: join(SHOTS, '22-quality.png'), fullPage: true });
    expect(problems).toEqual([]);
  }, 60_000);
});
