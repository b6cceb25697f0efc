/**
 * The MDMS web app on a phone (issue 20 item 10): every page at 390 px wide in Chromium has no horizontal
 * overflow (wide tables scroll inside their own box), and the charts follow the viewport when it is resized
 * or rotated. Screenshots go to test-output/mdms-web/phone-*.png. Fails under CI=true when Chromium is
 * missing; skipped otherwise (as browser.test.ts).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DateTime } from 'luxon';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MdmsWeb } from '../../../mdms/web/server.js';
import { fixture, serve, type Fixture } from './fixture.js';
import { launchChromium, present } from './chromium.js';

const SHOTS = join(process.cwd(), 'test-output', 'mdms-web');
const PHONE = { width: 390, height: 844 };
const PASSWORD = 'phone-password-0001';

/** What sticks out to the right of the viewport, outside any box that scrolls on its own. */
async function overflow(p: Page): Promise<{ scrollWidth: number; offenders: string[] }> {
  return p.evaluate(() => {
    const vw = document.documentElement.clientWidth;
    const scrolls = (e: Element | null): boolean => {
      for (let a = e?.parentElement; a; a = a.parentElement) if (/(auto|scroll|hidden)/.test(getComputedStyle(a).overflowX) && a !== document.body && a !== document.documentElement) return true;
      return false;
    };
    const sticking = Array.from(document.body.querySelectorAll('*')).filter((e) => e.getBoundingClientRect().right > vw + 1 && !scrolls(e));
    // The innermost ones: an element whose child sticks out is only its container.
    const offenders = sticking
      .filter((e) => !sticking.some((d) => d !== e && e.contains(d)))
      .map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}${e.className && typeof e.className === 'string' ? `.${e.className.trim().split(/\s+/).join('.')}` : ''} right=${Math.round(e.getBoundingClientRect().right)}`);
    return { scrollWidth: document.documentElement.scrollWidth, offenders: offenders.slice(0, 8) };
  });
}

describe.skipIf(!present)('MDMS web app on a 390 px phone', () => {
  let fx: Fixture;
  let server: MdmsWeb;
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let ctx: BrowserContext;
  let account: string;

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    fx = await fixture();
    await fx.web.users.create({ username: 'phone', roles: ['admin', 'analyst', 'billing'], password: PASSWORD });
    account = (await fx.web.accounts.byHousehold('hh02'))!.accountNumber;
    server = await serve(fx);
    browser = await launchChromium({
      viewport: PHONE,
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    }, 'mdms-phone-');
    ctx = browser.ctx;
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await fx?.close();
  });

  async function signedIn(): Promise<Page> {
    await ctx.clearCookies();
    const p = await ctx.newPage();
    await p.goto(`${server.url}/login`);
    expect(await overflow(p)).toEqual({ scrollWidth: PHONE.width, offenders: [] });
    await p.fill('input[name="username"]', 'phone');
    await p.fill('input[name="password"]', PASSWORD);
    await Promise.all([p.waitForURL((u) => !u.pathname.startsWith('/login')), p.click('button[type="submit"]')]);
    return p;
  }

  it('no page is wider than the phone', async () => {
    const p = await signedIn();
    const revised = fx.seeded.intervals.find((i) => i.revision > 0)!;
    const pages = [
      '/',
      '/neighbourhoods?nb=nb-east&range=day&date=2024-06-04',
      '/neighbourhoods?nb=nb-east&nb=nb-north&nb=nb-west&range=week&date=2024-06-05',
      `/neighbourhoods/${revised.neighbourhood}/intervals/${DateTime.fromSeconds(revised.start, { zone: 'utc' }).toISO({ suppressMilliseconds: true })}`,
      '/forecast?nb=nb-east&date=2024-06-09',
      '/quality',
      '/accounts',
      `/accounts/${account}`,
      `/accounts/${account}/bill?from=2024-06-03&to=2024-06-10`,
      '/bills?from=2024-06-03&to=2024-06-10',
      '/meters',
      '/tariffs',
      '/tariffs/new',
      '/admin/users',
      '/admin/settings',
      '/admin/audit',
      '/account/password',
    ];
    const wide: Record<string, unknown> = {};
    for (const [i, path] of pages.entries()) {
      const res = await p.goto(`${server.url}${path}`);
      expect(res!.status(), path).toBe(200);
      if (await p.locator('.chart').count()) await p.waitForSelector('.chart[data-ready="1"]');
      const o = await overflow(p);
      if (o.scrollWidth > PHONE.width || o.offenders.length) wide[path] = o;
      await p.screenshot({ path: join(SHOTS, `phone-${String(i).padStart(2, '0')}.png`) }); // what the phone shows first
    }
    expect(wide).toEqual({});
    await p.close();
  });

  it('the charts follow a resize and a rotation', async () => {
    const p = await signedIn();
    await p.setViewportSize({ width: 1200, height: 800 });
    for (const path of ['/neighbourhoods?nb=nb-east&range=day&date=2024-06-04', '/forecast?nb=nb-east&date=2024-06-09']) {
      await p.goto(`${server.url}${path}`);
      await p.waitForSelector('.chart[data-ready="1"]');
      const canvas = p.locator('.chart canvas').first();
      const wideW = (await canvas.boundingBox())!.width;
      expect(wideW, path).toBeGreaterThan(700);
      await p.setViewportSize(PHONE);
      await expect.poll(async () => (await canvas.boundingBox())!.width, { timeout: 5000 }).toBeLessThanOrEqual(PHONE.width - 20);
      expect((await overflow(p)).scrollWidth, path).toBe(PHONE.width);
      await p.setViewportSize({ width: PHONE.height, height: PHONE.width }); // rotated to landscape
      await expect.poll(async () => (await canvas.boundingBox())!.width, { timeout: 5000 }).toBeGreaterThan(PHONE.width);
      expect((await overflow(p)).scrollWidth, path).toBe(PHONE.height);
      await p.setViewportSize({ width: 1200, height: 800 });
    }
    await p.close();
  });
});
