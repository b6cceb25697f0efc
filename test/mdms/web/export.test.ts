/**
 * The export register over HTTP: a neighbourhood of prosumers (export, net below zero at noon, the DP ledger)
 * in the series API, the demand page and the CSV; a household that feeds in, billed with feed-in lines and a
 * credit total on the API, the bill page and the account page; feed-in prices through the tariff API and form.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CSV_HEADERS } from '../../../mdms/export.js';
import { appOf, DAY, fixture, PASSWORDS, TZ, WEEK_START, type Fixture } from './fixture.js';

let fx: Fixture;
let app: FastifyInstance;
const cookie: Record<string, string> = {};
const csrf: Record<string, string> = {};
let solarAccount = '';

const iso = (s: number): string => new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
/** Imported and exported Wh of window i (of 96) of the sunny neighbourhood: exports more than it imports from 10:00 to 14:00 local time. */
const sun = (i: number): { energyWh: number; exportWh: number } => ({ energyWh: 900 + i, exportWh: i >= 40 && i < 56 ? 2000 + i : 0 });

beforeAll(async () => {
  fx = await fixture('sqlite', 1);
  for (let i = 0; i < 96; i++) {
    const start = WEEK_START + i * 900;
    await fx.store.insertNeighbourhood({ kind: 'neighbourhood', key: 'nb-sun', start, end: start + 900, revision: 0, meters: 30, ...sun(i), dp: { epsilon: 0.5, spent: 0.5 * (i + 1) } });
  }
  // A revision of the noon window: more export.
  await fx.store.insertNeighbourhood({ kind: 'neighbourhood', key: 'nb-sun', start: WEEK_START + 48 * 900, end: WEEK_START + 49 * 900, revision: 1, meters: 31, energyWh: 948, exportWh: 2500, dp: { epsilon: 0.5, spent: 48.5 } });
  // The prosumer household: one day, feed-in worth more than the charges.
  await fx.web.tariffs.create({ code: 'solar', name: 'Solar 2024', currency: 'GBP', minorDigits: 2, tz: TZ, effectiveFrom: '2024-01-01', standingMilliPerDay: 53_350, vatBasisPoints: 500, bands: [{ band: 'peak', priceMilliPerKwh: 30_000, feedInMilliPerKwh: 15_000 }, { band: 'offpeak', priceMilliPerKwh: 15_000, feedInMilliPerKwh: 5_000 }] }, 'admin');
  await fx.store.insertBilling({ kind: 'billing', key: 'hh-solar', start: WEEK_START, end: WEEK_START + DAY, revision: 0, bands: { peak: 2000, offpeak: 3000 }, exportBands: { peak: 18_000 } });
  await fx.web.accounts.ensure(['hh-solar']);
  solarAccount = (await fx.web.accounts.setTariff((await fx.web.accounts.byHousehold('hh-solar'))!.accountNumber, 'solar'))!.accountNumber;
  app = await appOf(fx);
  for (const who of ['analyst', 'billing', 'admin']) {
    const r = await app.inject({ method: 'POST', url: '/api/v1/session', payload: { username: who, password: PASSWORDS[who] } });
    cookie[who] = r.cookies.map((c) => `${c.name}=${c.value}`).join('; ');
    csrf[who] = r.json().csrfToken;
  }
}, 120_000);

afterAll(async () => {
  await app?.close();
  await fx?.close();
});

describe('neighbourhood export over HTTP', () => {
  it('the series API gives import, export, net (negative at noon) and the DP ledger of the latest revision', async () => {
    const r = await app.inject({ url: '/api/v1/neighbourhoods/nb-sun/series?from=2024-06-03&to=2024-06-04', headers: { cookie: cookie.analyst! } });
    expect(r.statusCode, r.body).toBe(200);
    const body = r.json() as { points: { energyWh: number; exportWh: number; netWh: number; revision: number; dp: { epsilon: number; spent: number } | null }[]; energyWh: number; exportWh: number; netWh: number };
    expect(body.points).toHaveLength(96);
    const want = Array.from({ length: 96 }, (_, i) => (i === 48 ? { energyWh: 948, exportWh: 2500 } : sun(i)));
    expect(body.points.map((p) => [p.energyWh, p.exportWh, p.netWh])).toEqual(want.map((w) => [w.energyWh, w.exportWh, w.energyWh - w.exportWh]));
    expect(body.points[48]).toMatchObject({ revision: 1, netWh: 948 - 2500, dp: { epsilon: 0.5, spent: 48.5 } });
    expect(body.points[0]!.dp).toEqual({ epsilon: 0.5, spent: 0.5 });
    expect(body.exportWh).toBe(want.reduce((a, w) => a + w.exportWh, 0));
    expect(body.netWh).toBe(body.energyWh - body.exportWh);
    expect(Math.min(...body.points.map((p) => p.netWh))).toBeLessThan(0);
    const rv = await app.inject({ url: `/api/v1/neighbourhoods/nb-sun/intervals/${iso(WEEK_START + 48 * 900)}/revisions`, headers: { cookie: cookie.analyst! } });
    expect(rv.json().map((x: { revision: number; exportWh: number; dp: unknown }) => [x.revision, x.exportWh, x.dp])).toEqual([
      [0, sun(48).exportWh, { epsilon: 0.5, spent: 24.5 }],
      [1, 2500, { epsilon: 0.5, spent: 48.5 }],
    ]);
    // The fixture's import-only neighbourhoods: export 0, net = import, no ledger.
    const plain = (await app.inject({ url: '/api/v1/neighbourhoods/nb-east/series?from=2024-06-03&to=2024-06-04', headers: { cookie: cookie.analyst! } })).json();
    expect(plain.points.every((p: { exportWh: number; netWh: number; energyWh: number; dp: unknown }) => p.exportWh === 0 && p.netWh === p.energyWh && p.dp === null)).toBe(true);
  });

  it('the demand page shows export and net beside import, and the chart gets export per interval', async () => {
    const r = await app.inject({ url: '/neighbourhoods?nb=nb-sun&range=day&date=2024-06-03', headers: { cookie: cookie.analyst! } });
    expect(r.statusCode).toBe(200);
    const data = JSON.parse(/<script type="application\/json" id="chart-data">([^<]*)<\/script>/.exec(r.body)![1]!) as { series: { points: number[][] }[] };
    expect(data.series[0]!.points[48]).toEqual([WEEK_START + 48 * 900, WEEK_START + 49 * 900, 31, 948, 1, 2500]);
    const exported = Array.from({ length: 96 }, (_, i) => (i === 48 ? 2500 : sun(i).exportWh)).reduce((a, b) => a + b, 0);
    const imported = Array.from({ length: 96 }, (_, i) => (i === 48 ? 948 : sun(i).energyWh)).reduce((a, b) => a + b, 0);
    const kwh = (wh: number): string => `${wh < 0 ? '-' : ''}${Math.floor(Math.abs(wh) / 1000)}.${String(Math.abs(wh) % 1000).padStart(3, '0')}`;
    expect(r.body).toContain(`data-testid="export-nb-sun">${kwh(exported)}<`);
    expect(r.body).toContain(`data-testid="net-nb-sun">${kwh(imported - exported)}<`);
    expect(r.body).toContain('data-testid="export-note"');
    expect(r.body).toContain(`<td class="num">${kwh(948 - 2500)}</td>`); // the noon interval's net in the table
    const plain = await app.inject({ url: '/neighbourhoods?nb=nb-east&range=day&date=2024-06-03', headers: { cookie: cookie.analyst! } });
    expect(plain.body).toContain('Nothing was exported in this range.');
  });

  it('the CSV carries export_wh after the version-1 columns', async () => {
    const r = await app.inject({ url: '/api/v1/exports/neighbourhood.csv?nb=nb-sun&from=2024-06-03&to=2024-06-04', headers: { cookie: cookie.analyst! } });
    const lines = r.body.trimEnd().split('\n');
    expect(lines[0]).toBe(CSV_HEADERS.neighbourhood);
    expect(lines[0]!.startsWith('neighbourhood,start,end,meters,energy_wh,')).toBe(true);
    expect(lines[49]).toBe(`nb-sun,${iso(WEEK_START + 48 * 900)},${iso(WEEK_START + 49 * 900)},31,948,2500`);
    expect(lines[1]).toBe(`nb-sun,${iso(WEEK_START)},${iso(WEEK_START + 900)},30,900,0`);
  });
});

describe('feed-in bills over HTTP', () => {
  it('the bill API has feed-in lines and a credit total; its periods carry the energy fed in', async () => {
    const r = await app.inject({ url: `/api/v1/accounts/${solarAccount}/bill?from=2024-06-03&to=2024-06-04`, headers: { cookie: cookie.billing! } });
    expect(r.statusCode, r.body).toBe(200);
    const b = r.json();
    // peak 2 kWh x 30 p = 60; offpeak 3 kWh x 15 p = 45; fed in 18 kWh x 15 p = -270; standing 53.35 -> 53; net -112; VAT -5.6 -> -6; total -118
    expect(b.lines.map((l: { kind: string; band?: string; amountMinor: number }) => [l.kind, l.band ?? null, l.amountMinor])).toEqual([
      ['energy', 'peak', 60],
      ['energy', 'offpeak', 45],
      ['feedin', 'peak', -270],
      ['standing', null, 53],
    ]);
    expect(b.lines[2]).toMatchObject({ energyWh: 18_000, feedInMilliPerKwh: 15_000 });
    expect(b).toMatchObject({ energyWh: 5000, exportWh: 18_000, subtotalMinor: -112, vatMinor: -6, totalMinor: -118, total: '-£1.18' });
    expect(b.periods).toEqual([expect.objectContaining({ bands: { offpeak: 3000, peak: 2000 }, exportBands: { peak: 18_000 } })]);
    const periods = (await app.inject({ url: `/api/v1/accounts/${solarAccount}/periods`, headers: { cookie: cookie.billing! } })).json();
    expect(periods.periods).toEqual([expect.objectContaining({ exportBands: { peak: 18_000 }, exportWh: 18_000, energyWh: 5000, totalMinor: -118 })]);
    const csv = await app.inject({ url: `/api/v1/exports/billing.csv?account=${solarAccount}`, headers: { cookie: cookie.billing! } });
    expect(csv.body.trimEnd().split('\n')).toEqual([CSV_HEADERS.billing, `hh-solar,${iso(WEEK_START)},${iso(WEEK_START + DAY)},offpeak,3000,0`, `hh-solar,${iso(WEEK_START)},${iso(WEEK_START + DAY)},peak,2000,18000`]);
  });

  it('the bill page shows the feed-in line and says the total is a credit; the issued bill says it too', async () => {
    const page = await app.inject({ url: `/accounts/${solarAccount}/bill?from=2024-06-03&to=2024-06-04`, headers: { cookie: cookie.billing! } });
    expect(page.statusCode).toBe(200);
    expect(page.body).toMatch(/<tr data-kind="feedin"><td><strong>Peak energy fed in<\/strong>[^]*?18\.000 kWh[^]*?15\.000p\/kWh[^]*?-£2\.70/);
    expect(page.body).toContain('data-testid="bill-fed-in">18.000 kWh');
    expect(page.body).toMatch(/Total: a credit to the customer<\/td><td class="num total-due" data-testid="bill-total" data-minor="-118">-£1\.18 <span class="badge ok" data-testid="bill-total-credit">credit<\/span>/);
    expect(page.body).toContain('This bill is a credit of £1.18');
    const account = await app.inject({ url: `/accounts/${solarAccount}`, headers: { cookie: cookie.billing! } });
    expect(account.body).toContain('peak fed in 18.000');
    // Issue it: the document keeps the energy fed in and the credit.
    const run = await app.inject({ method: 'POST', url: '/api/v1/bills/run', headers: { cookie: cookie.billing!, 'x-csrf-token': csrf.billing! }, payload: {} });
    const doc = (run.json().issued as { number: string; account: string; exportBands: Record<string, number>; totalMinor: number }[]).find((d) => d.account === solarAccount)!;
    expect(doc).toMatchObject({ exportBands: { peak: 18_000 }, totalMinor: -118 });
    const docPage = await app.inject({ url: `/bills/${doc.number}`, headers: { cookie: cookie.billing! } });
    expect(docPage.body).toContain('data-testid="document-fed-in"');
    expect(docPage.body).toContain('data-testid="document-total-credit"');
    const csv = await app.inject({ url: `/api/v1/exports/bills.csv?number=${doc.number}`, headers: { cookie: cookie.billing! } });
    expect(csv.body).toMatch(new RegExp(`${doc.number},bill,,${solarAccount},[^\\n]*,feedin,\\d+,peak,18000,15000,,500,-270\\n`));
  });

  it('a feed-in price per band through the tariff API and the tariff form; a bad one is refused with a clear message', async () => {
    const api = await app.inject({
      method: 'POST',
      url: '/api/v1/tariffs',
      headers: { cookie: cookie.admin!, 'x-csrf-token': csrf.admin! },
      payload: { code: 'sun-api', name: 'Sun', currency: 'EUR', tz: 'Europe/Amsterdam', effectiveFrom: '2024-01-01', standingMilliPerDay: 0, bands: [{ band: 'normal', priceMilliPerKwh: 25_000, feedInMilliPerKwh: 8_500 }, { band: 'low', priceMilliPerKwh: 22_000 }] },
    });
    expect(api.statusCode, api.body).toBe(201);
    expect(api.json().bands).toEqual([
      { band: 'normal', priceMilliPerKwh: 25_000, feedInMilliPerKwh: 8_500 },
      { band: 'low', priceMilliPerKwh: 22_000, feedInMilliPerKwh: 0 },
    ]);
    const tooBig = await app.inject({ method: 'POST', url: '/api/v1/tariffs', headers: { cookie: cookie.admin!, 'x-csrf-token': csrf.admin! }, payload: { code: 'sun-big', name: 'Sun', currency: 'EUR', tz: 'Europe/Amsterdam', effectiveFrom: '2024-01-01', standingMilliPerDay: 0, bands: [{ band: 'normal', priceMilliPerKwh: 1, feedInMilliPerKwh: 2_000_000_000 }] } });
    expect(tooBig.statusCode).toBe(400);
    expect(tooBig.json().message).toMatch(/feedInMilliPerKwh/);
    const page = await app.inject({ url: '/tariffs/new', headers: { cookie: cookie.admin! } });
    const token = /name="_csrf" value="([^"]+)"/.exec(page.body)![1]!;
    expect(page.body).toContain('name="feedin"');
    const form = (body: string) =>
      app.inject({ method: 'POST', url: '/tariffs', headers: { cookie: cookie.admin!, 'content-type': 'application/x-www-form-urlencoded' }, payload: `${body}&_csrf=${encodeURIComponent(token)}` });
    const base = 'name=Sun+form&currency=EUR&minorDigits=2&tz=Europe%2FAmsterdam&effectiveFrom=2024-01-01&standing=0&vat=21';
    const ok = await form(`code=sun-form&${base}&band=normal&price=25&feedin=8.5&band=low&price=22&feedin=`);
    expect(ok.statusCode, ok.body).toBe(303);
    const stored = (await fx.web.tariffs.versions('sun-form'))[0]!;
    expect(stored.bands).toEqual([
      { band: 'normal', priceMilliPerKwh: 25_000, feedInMilliPerKwh: 8_500 },
      { band: 'low', priceMilliPerKwh: 22_000, feedInMilliPerKwh: 0 },
    ]);
    const bad = await form(`code=sun-bad&${base}&band=normal&price=25&feedin=8.5555`);
    expect(bad.statusCode).toBe(400);
    expect(bad.body).toContain('feed-in price of band &quot;normal&quot; must be a decimal number');
    const list = await app.inject({ url: '/tariffs', headers: { cookie: cookie.admin! } });
    expect(list.body).toContain('normal 25.000c · feed-in 8.500c');
    // A new version of the form starts from the old one's feed-in prices.
    expect((await app.inject({ url: `/tariffs/new?from=${stored.id}`, headers: { cookie: cookie.admin! } })).body).toContain('name="feedin" inputmode="decimal" value="8.500"');
  });
});
