/**
 * The household app end to end in Debian's Chromium (playwright-core): register with the activation code,
 * see live readings arrive and the chart grow, log out, readings sealed meanwhile come back from the archive
 * on login, the views agree with the source series, CSV and Green Button exports equal the source data of the
 * meter; wrong password, reused activation code and expired session give clear messages.
 *
 * The stream is sealed exactly as the PES seals it (protocol/seal.ts, as in pes/core/pes.ts) from the
 * meter's synthetic source integrated as firmware/ does, to the key the UCS server published for the PES.
 * Needs /usr/bin/chromium (or SM_CHROMIUM): skipped without it, except in CI where it fails.
 */
import { createPrivateKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DateTime } from 'luxon';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReadingBatch } from '../../protocol/reading.js';
import { keyId, openStream } from '../../protocol/seal.js';
import { loadPesVerifyKey } from '../../lib/keyset.js';
import { topics } from '../../protocol/topics.js';
import { activationSecretsSync } from '../../protocol/household-key.js';
import { sealMeterStream } from '../../protocol/meter-seal.js';
import { streamBody } from '../../protocol/stream.js';
import { dates } from '../../ucs/web/dates.js';
import { CSV_HEADER } from '../../ucs/web/export.js';
import { asDerivation1, FakePes, makeKeySet, pesAcceptsBinding, retainedHouseholdKey, sourceBatches, startStack, waitFor, type Stack, submitRegistration } from './helpers.js';

const CHROMIUM = process.env.SM_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const ZONE = 'Europe/London';
const PASSWORD = 'correct horse battery staple';
const SHOTS = process.env.UCS_SCREENSHOTS;
const fmt = dates(ZONE, 'en-GB');
/** expect.poll with room for a busy 2-core machine (its default is one second). */
const poll = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: 30_000 });

/** Debian's Chromium, headless; playwright-core gives every launch a fresh temporary user-data-dir (and refuses --user-data-dir). */
const launch = () =>
  chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  });

describe.skipIf(!haveChromium && process.env.CI !== 'true')('household app in Chromium', () => {
  let stack: Stack;
  let browser: Browser;
  let skew = 0;
  const consoleErrors: string[] = [];
  let pes: FakePes;
  let batches: ReadingBatch[];
  let meter: string;

  beforeAll(async () => {
    if (!haveChromium) throw new Error(`Chromium not found at ${CHROMIUM} (CI=true: this test must run)`);
    stack = await startStack({ ucs: { now: () => Date.now() + skew } });
    browser = await launch();
    pes = await FakePes.connect(stack.broker.url, stack.set.keys);
    meter = stack.set.fleet.meters.find((m) => m.household === 'hh1')!.meter;
    // Two and a half hours of minute readings ending now, in batches of 15 (a meter's frame).
    const start = Math.floor(Date.now() / 60_000) * 60 - 150 * 60;
    batches = sourceBatches(11, start, 150, 15, 5_432_109);
    if (SHOTS) mkdirSync(SHOTS, { recursive: true });
  });

  afterAll(async () => {
    await pes?.close();
    await browser?.close();
    await stack?.close();
  });

  async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ acceptDownloads: true, timezoneId: ZONE, viewport: { width: 1200, height: 900 }, locale: 'en-GB' });
    const page = await context.newPage();
    page.on('console', (m) => {
      // A refused request (401/403/409/429) is logged by Chromium as "Failed to load resource"; that is the test.
      if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of (401|403|409|429)/.test(m.text())) consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(e.message));
    await page.goto(stack.ucs.url);
    return { context, page };
  }

  const notice = (page: Page) => page.locator('#notice');
  const count = async (page: Page) => Number(await page.locator('#live-count').textContent());
  const shot = async (page: Page, name: string) => {
    if (SHOTS) await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  };
  const rowsOf = (bs: ReadingBatch[]) =>
    bs.flatMap((b) => b.readings.map((r, i) => ({ ...r, energyWh: r.importWh - (i === 0 ? b.prevWh : b.readings[i - 1]!.importWh) })));

  let page: Page;
  let context: BrowserContext;

  it('registers with the activation code; the key pair is made in the browser and reaches the PES topic', async () => {
    ({ context, page } = await newPage());
    await page.click('#to-register');
    await shot(page, 'register');
    await submitRegistration(page, 'hh1', stack.set.code('hh1'), PASSWORD);
    await page.waitForSelector('#screen-app:not([hidden])', { timeout: 60_000 });
    await poll(() => notice(page).textContent()).toMatch(/Household hh1 is registered\. Your public key has been sent to the PES/);
    await poll(() => page.locator('#conn').getAttribute('data-status')).toBe('live');
    const account = stack.ucs.db.account('hh1')!;
    const pub = await retainedHouseholdKey(stack.broker.url, stack.set.keys, 'hh1');
    expect(pub.export({ type: 'spki', format: 'der' })).toEqual(account.spki);
    // The browser derived the binding key by the key set's derivation 2: the real PES, with the key provisioning gave it, accepts the binding.
    expect(await pesAcceptsBinding(stack.set, 'hh1', account.binding!)).toBe(true);
  });

  it('shows live readings as they arrive and the chart grows, the meter-sealed ones (end-to-end mode) alike', async () => {
    const pub = await retainedHouseholdKey(stack.broker.url, stack.set.keys, 'hh1');
    for (const b of batches.slice(0, 4)) await pes.publish('hh1', pub, meter, b);
    await poll(() => count(page)).toBe(60);
    await poll(() => page.locator('#live-chart').getAttribute('data-points')).toBe('60');
    const last = batches[3]!.readings.at(-1)!;
    expect(await page.locator('#live-power').textContent()).toBe(String(last.powerW));
    expect(await page.locator('#live-register').textContent()).toBe(`${Math.floor(last.importWh / 1000)}.${String(last.importWh % 1000).padStart(3, '0')}`);
    // End-to-end mode: the meter seals the next two itself, under the stream key the browser derived from the
    // activation code at registration (docs/protocol.md §11.5), by the key set's derivation 2 (one scrypt and
    // HKDF, as provisioning gives the meters); the page shows them exactly the same.
    const streamKey = activationSecretsSync(stack.set.code('hh1'), 'hh1', 2).stream;
    const sealed = batches.slice(4, 6).map((b, i) => sealMeterStream(streamKey, topics.household('hh1'), Buffer.from(meter, 'hex'), 1000 + i, streamBody(meter, b)));
    for (const m of sealed) await pes.publishRaw('hh1', m);
    await poll(() => page.locator('#live-chart').getAttribute('data-points')).toBe('90');
    expect(await page.locator('#live-power').textContent()).toBe(String(batches[5]!.readings.at(-1)!.powerW));
    // One date format, the locale's (en-GB here), in the household's zone.
    expect(await page.locator('#live-at').textContent()).toBe(fmt.dateTimeSeconds(batches[5]!.readings.at(-1)!.time + 60));
    await shot(page, 'live');
    // Whoever can publish on the household's topic presents frame 1000 again (another message under its counter:
    // its tag verifies) and the very message of frame 1001 again: both dropped, the replay said, both counted.
    await pes.publishRaw('hh1', sealMeterStream(streamKey, topics.household('hh1'), Buffer.from(meter, 'hex'), 1000, streamBody(meter, batches[4]!)));
    await pes.publishRaw('hh1', sealed[1]!);
    await poll(() => notice(page).textContent()).toMatch(/frame 1000 was already received.*not stored/);
    await page.click('#tabs button[data-tab=settings]');
    await poll(() => page.locator('#device-info').textContent()).toMatch(/Meter-sealed messages dropped: 1 replayed \(a frame counter already seen or too old\), 1 received twice/);
    await page.click('#tabs button[data-tab=live]');
  });

  it('after logout, readings sealed meanwhile come back from the server archive; a wrong password is refused clearly', async () => {
    await page.click('#logout');
    await poll(() => notice(page).textContent()).toMatch(/You have logged out/);
    const pub = await retainedHouseholdKey(stack.broker.url, stack.set.keys, 'hh1');
    for (const b of batches.slice(6)) await pes.publish('hh1', pub, meter, b);
    await waitFor(() => stack.ucs.link.counters.archived >= batches.length, 'archive of every batch');
    expect(await page.inputValue('#login-household')).toBe('hh1');
    await page.fill('#login-password', 'not my password');
    await page.click('#login-submit');
    await poll(() => notice(page).textContent()).toBe('Wrong password for household hh1.');
    await shot(page, 'wrong-password');
    await page.fill('#login-password', PASSWORD);
    await page.click('#login-submit');
    await page.waitForSelector('#screen-app:not([hidden])', { timeout: 30_000 });
    await poll(() => count(page)).toBe(150);
    await poll(() => page.locator('#live-chart').getAttribute('data-points')).toBe('150');
  });

  it('today, history and comparison views agree with the source series', async () => {
    const rows = rowsOf(batches);
    const newest = rows.at(-1)!.time;
    const day = DateTime.fromSeconds(newest, { zone: ZONE }).startOf('day');
    const inDay = (t: number, d: DateTime) => t >= d.toSeconds() && t < d.plus({ days: 1 }).toSeconds();
    const kwh = (wh: number) => `${Math.floor(wh / 1000)}.${String(wh % 1000).padStart(3, '0')}`;
    const today = rows.filter((r) => inDay(r.time, day)).reduce((s, r) => s + r.energyWh, 0);
    const yesterday = day.minus({ days: 1 });
    const span = newest + 1 - day.toSeconds();
    const prevRows = rows.filter((r) => r.time >= yesterday.toSeconds() && r.time < yesterday.toSeconds() + span);
    await page.click('#tabs button[data-tab=today]');
    await poll(() => page.locator('#today-total').textContent()).toBe(kwh(today));
    // Yesterday at this time has readings only when the 150 minutes started before midnight: else no data, not 0.
    expect(await page.locator('#today-prev').textContent()).toBe(prevRows.length ? kwh(prevRows.reduce((s, r) => s + r.energyWh, 0)) : 'no data');
    expect(await page.locator('#today-year').textContent()).toBe('no data');
    expect(Number(await page.locator('#today-chart').getAttribute('data-points'))).toBe((day.plus({ days: 1 }).toSeconds() - day.toSeconds()) / 900); // 15-minute bars of the local day
    await shot(page, 'today');
    await page.click('#tabs button[data-tab=history]');
    await page.selectOption('#history-span', 'day');
    await poll(() => page.locator('#history-title').textContent()).toBe(fmt.period('day', day.toSeconds()));
    expect(await page.locator('#history-total').textContent()).toBe(kwh(today));
    expect(Number(await page.locator('#history-chart').getAttribute('data-points'))).toBe(Math.round((day.plus({ days: 1 }).toSeconds() - day.toSeconds()) / 3600));
    await page.selectOption('#history-span', 'month');
    const month = DateTime.fromSeconds(newest, { zone: ZONE }).startOf('month');
    await poll(() => page.locator('#history-title').textContent()).toBe(fmt.period('month', month.toSeconds()));
    const monthWh = rows.filter((r) => r.time >= month.toSeconds()).reduce((s, r) => s + r.energyWh, 0);
    await poll(() => page.locator('#history-total').textContent()).toBe(kwh(monthWh));
    expect(await page.locator('#history-register').textContent()).toBe(kwh(rows.at(-1)!.importWh));
    expect(Number(await page.locator('#history-chart').getAttribute('data-points'))).toBe(month.daysInMonth);
    await page.selectOption('#history-span', 'week');
    await poll(() => page.locator('#history-title').textContent()).toBe(fmt.period('week', DateTime.fromSeconds(newest, { zone: ZONE }).startOf('week').toSeconds()));
    expect(await page.locator('#history-rows tr').count()).toBe(DateTime.fromSeconds(newest, { zone: ZONE }).weekday);
    await shot(page, 'history');
  });

  it('exports CSV and Green Button XML made in the browser that equal the meter’s source data', async () => {
    await page.click('#tabs button[data-tab=export]');
    await poll(() => page.inputValue('#export-from')).not.toBe('');
    const [csvDl] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
    const csv = readFileSync((await csvDl.path())!, 'utf8');
    const iso = (t: number) => new Date(t * 1000).toISOString().replace('.000Z', 'Z');
    const expected = [CSV_HEADER, ...rowsOf(batches).map((r) => [meter, iso(r.time), iso(r.time + 60), 60, r.importWh, r.energyWh, r.powerW, 0, 0, 0].join(','))];
    expect(csv.split('\r\n').slice(0, -1)).toEqual(expected);
    expect(csvDl.suggestedFilename()).toMatch(/^smartermeter-hh1-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}\.csv$/);
    const [xmlDl] = await Promise.all([page.waitForEvent('download'), page.click('#export-xml')]);
    const xml = readFileSync((await xmlDl.path())!, 'utf8');
    // Parsed by the browser's own XML parser: well-formed, in the ESPI namespace, one IntervalReading per reading.
    const parsed = await page.evaluate((text) => {
      const doc = new DOMParser().parseFromString(text, 'application/xml');
      if (doc.getElementsByTagName('parsererror').length) return null;
      const ns = 'http://naesb.org/espi';
      const readings = Array.from(doc.getElementsByTagNameNS(ns, 'IntervalReading')).map((r) => [
        Number(r.getElementsByTagNameNS(ns, 'start')[0]!.textContent),
        Number(r.getElementsByTagNameNS(ns, 'value')[0]!.textContent),
      ]);
      return { readings, uom: doc.getElementsByTagNameNS(ns, 'uom')[0]?.textContent, usagePoints: doc.getElementsByTagNameNS(ns, 'UsagePoint').length };
    }, xml);
    expect(parsed).not.toBeNull();
    expect(parsed!.uom).toBe('72');
    expect(parsed!.usagePoints).toBe(1);
    expect(parsed!.readings).toEqual(rowsOf(batches).map((r) => [r.time, r.energyWh]));
  });

  it('downloads the household key (after the password) for `ucs watch` and the HA bridge', async () => {
    await page.click('#tabs button[data-tab=settings]');
    await page.fill('#key-password', PASSWORD);
    const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.click('#key-download')]);
    expect(dl.suggestedFilename()).toBe('hh1.key.pem');
    const priv = createPrivateKey(readFileSync((await dl.path())!));
    expect(keyId(priv)).toEqual(stack.ucs.db.account('hh1')!.kid);
    const pub = await retainedHouseholdKey(stack.broker.url, stack.set.keys, 'hh1');
    const opened = openStream(priv, loadPesVerifyKey(stack.set.keys), topics.household('hh1'), pes.seal('hh1', pub, meter, batches[0]!)) as { prevWh: number };
    expect(opened.prevWh).toBe(batches[0]!.prevWh);
    await poll(() => notice(page).textContent()).toMatch(/Your private key was downloaded/);
    expect(await page.locator('#device-info').textContent()).toMatch(/^150 readings stored in this browser/);
    await shot(page, 'settings');
  });

  it('says so when the session has expired', async () => {
    skew += 31 * 60_000; // past the 30-minute idle timeout
    await page.click('#tabs button[data-tab=live]');
    await poll(() => notice(page).textContent()).toMatch(/Your session has expired \(after 30 minutes without activity/);
    expect(await page.locator('#screen-login').isVisible()).toBe(true);
    expect(await page.locator('#screen-app').isVisible()).toBe(false);
    await shot(page, 'session-expired');
    await context.close();
  });

  it('refuses a reused activation code with a clear message', async () => {
    const { context: c2, page: p2 } = await newPage();
    await p2.click('#to-register');
    await submitRegistration(p2, 'hh1', stack.set.code('hh1'), 'some other passphrase');
    await poll(() => p2.locator('#notice').textContent()).toMatch(/This activation code has already been used: each code registers household hh1 once/);
    expect(await p2.locator('#screen-app').isVisible()).toBe(false);
    await c2.close();
    expect(consoleErrors).toEqual([]);
  });
});

describe.skipIf(!haveChromium && process.env.CI !== 'true')('household app without the server archive', () => {
  it('keeps a persistent broker session per device, so readings sealed while logged out arrive at the next login', async () => {
    if (!haveChromium) throw new Error(`Chromium not found at ${CHROMIUM} (CI=true: this test must run)`);
    const stack = await startStack({ archiveAcl: false }); // the broker refuses the UCS archive subscription
    const browser = await launch();
    const pes = await FakePes.connect(stack.broker.url, stack.set.keys);
    try {
      expect(stack.ucs.link.archiving).toBe(false);
      const meter = stack.set.fleet.meters.find((m) => m.household === 'hh2')!.meter;
      const batches = sourceBatches(12, Math.floor(Date.now() / 60_000) * 60 - 60 * 60, 60, 15, 3_000_000);
      const context = await browser.newContext({ timezoneId: ZONE });
      const page = await context.newPage();
      await page.goto(stack.ucs.url + '/#register');
      await submitRegistration(page, 'hh2', stack.set.code('hh2'), PASSWORD);
      await page.waitForSelector('#screen-app:not([hidden])', { timeout: 60_000 });
      await poll(() => page.locator('#conn').getAttribute('data-status')).toBe('live');
      const pub = await retainedHouseholdKey(stack.broker.url, stack.set.keys, 'hh2');
      await pes.publish('hh2', pub, meter, batches[0]!);
      await poll(() => page.locator('#live-count').textContent()).toBe('15');
      await page.click('#logout');
      await poll(() => page.locator('#screen-login').isVisible()).toBe(true);
      for (const b of batches.slice(1)) await pes.publish('hh2', pub, meter, b); // queued by the broker for this device
      await page.fill('#login-password', PASSWORD);
      await page.click('#login-submit');
      await page.waitForSelector('#screen-app:not([hidden])', { timeout: 30_000 });
      await poll(() => page.locator('#live-count').textContent()).toBe('60');
      await page.click('#tabs button[data-tab=settings]');
      await poll(() => page.locator('#device-info').textContent()).toMatch(/Archive on the server: off/);
      await context.close();
    } finally {
      await pes.close();
      await browser.close();
      await stack.close();
    }
  });
});

describe.skipIf(!haveChromium && process.env.CI !== 'true')('household app in Chromium, a key set of derivation 1 (provisioned before derivation 2)', () => {
  it('asks the server which derivation, derives by derivation 1 and registers: the real PES accepts the binding', async () => {
    const stack = await startStack({ set: asDerivation1(await makeKeySet()) });
    const browser = await launch();
    try {
      const context = await browser.newContext({ timezoneId: ZONE });
      const page = await context.newPage();
      const asked: string[] = [];
      page.on('request', (r) => void asked.push(new URL(r.url()).pathname));
      await page.goto(stack.ucs.url + '/#register');
      await submitRegistration(page, 'hh1', stack.set.code('hh1'), PASSWORD);
      await page.waitForSelector('#screen-app:not([hidden])', { timeout: 60_000 });
      await poll(() => page.locator('#notice').textContent()).toMatch(/Household hh1 is registered/);
      expect(asked.indexOf('/api/activation')).toBeGreaterThanOrEqual(0);
      expect(asked.indexOf('/api/activation')).toBeLessThan(asked.indexOf('/api/register/begin'));
      expect(await pesAcceptsBinding(stack.set, 'hh1', stack.ucs.db.account('hh1')!.binding!)).toBe(true);
      await context.close();
    } finally {
      await browser.close();
      await stack.close();
      stack.set.cleanup();
    }
  });
});
