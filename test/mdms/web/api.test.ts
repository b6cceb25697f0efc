/**
 * The web app over HTTP (Fastify inject): every route's authorisation for anonymous and each role, the
 * API's answers against the seeded store, bad input, CSRF, rate limiting, audit and metrics.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CSV_HEADERS, exportCsv } from '../../../mdms/export.js';
import { runBills } from '../../../mdms/web/issued.js';
import { buildMdmsWeb } from '../../../mdms/web/server.js';
import { appOf, DAY, fixture, HOUSEHOLDS, PASSWORDS, WEEK_START, type Fixture } from './fixture.js';

type Who = 'anonymous' | 'analyst' | 'billing' | 'admin';
interface Auth {
  cookie: string;
  csrf: string;
}

let fx: Fixture;
let app: FastifyInstance;
const routes: { method: string; url: string; access: string }[] = [];
const auth: Partial<Record<Who, Auth>> = {};
let account1 = '';
let household1 = '';

const iso = (s: number): string => new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

async function login(username: string, password: string): Promise<Auth> {
  const r = await app.inject({ method: 'POST', url: '/api/v1/session', payload: { username, password } });
  expect(r.statusCode, r.body).toBe(200);
  const cookie = r.cookies.map((c) => `${c.name}=${c.value}`).join('; ');
  return { cookie, csrf: (r.json() as { csrfToken: string }).csrfToken };
}

/** Creates an analyst `username` (password `cache-password-01`) and signs in. */
async function login2(username: string): Promise<Auth> {
  await fx.web.users.create({ username, roles: ['analyst'], password: 'cache-password-01' });
  return login(username, 'cache-password-01');
}

function headers(who: Who, extra: Record<string, string> = {}): Record<string, string> {
  const a = who === 'anonymous' ? undefined : auth[who];
  return { ...(a ? { cookie: a.cookie, 'x-csrf-token': a.csrf } : {}), ...extra };
}

/** No 500, no stack trace, whatever the request. */
function clean(r: LightMyRequestResponse): LightMyRequestResponse {
  expect(r.statusCode, r.body.slice(0, 300)).toBeLessThan(500);
  expect(r.body).not.toMatch(/\bat [\w.<>]+ \(|node_modules|\.ts:\d+/);
  return r;
}

beforeAll(async () => {
  fx = await fixture();
  app = await appOf(fx, { onRoute: (r) => routes.push(r) });
  await app.ready();
  for (const who of ['analyst', 'billing', 'admin'] as const) auth[who] = await login(who, PASSWORDS[who]!);
  const a = (await fx.web.accounts.byHousehold('hh01'))!;
  account1 = a.accountNumber;
  household1 = a.household;
}, 120_000);
afterAll(async () => {
  await app?.close();
  await fx?.close();
});

describe('authorisation of every route', () => {
  // [method, url, body, kind of body, expected status when allowed]
  type Row = { method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'; url: () => string; route: string; body?: () => unknown; form?: boolean; ok: number };
  let spareUser = 0;
  let futureTariff = 0;
  let issuedNumber = '';
  beforeAll(async () => {
    spareUser = (await fx.web.users.create({ username: 'spare', roles: ['analyst'], password: 'spare-password-001' })).id;
    const run = await runBills(fx.store, fx.web, { by: 'billing', nowMs: Date.now(), tz: 'Europe/London' });
    issuedNumber = run.issued[0]!.number;
    futureTariff = (await fx.web.tariffs.create({ code: 'future', name: 'Future', currency: 'GBP', minorDigits: 2, tz: 'UTC', effectiveFrom: '2999-01-01', standingMilliPerDay: 1, vatBasisPoints: 0, bands: [{ band: 'peak', priceMilliPerKwh: 1 }] }, 'admin')).id;
  });
  const nbStart = (): string => iso(WEEK_START);
  const range = `from=${'2024-06-03'}&to=${'2024-06-10'}`;
  const rows: Row[] = [
    { method: 'GET', route: '/api/v1/session', url: () => '/api/v1/session', ok: 200 },
    { method: 'GET', route: '/api/v1/neighbourhoods', url: () => '/api/v1/neighbourhoods', ok: 200 },
    { method: 'GET', route: '/api/v1/neighbourhoods/:nb/series', url: () => `/api/v1/neighbourhoods/nb-east/series?${range}`, ok: 200 },
    { method: 'GET', route: '/api/v1/neighbourhoods/:nb/forecast', url: () => '/api/v1/neighbourhoods/nb-east/forecast?horizon=2h', ok: 200 },
    { method: 'GET', route: '/api/v1/neighbourhoods/:nb/backtest', url: () => '/api/v1/neighbourhoods/nb-east/backtest?days=1', ok: 200 },
    { method: 'GET', route: '/api/v1/quality/findings', url: () => '/api/v1/quality/findings?nb=nb-east', ok: 200 },
    { method: 'GET', route: '/api/v1/quality/estimates', url: () => '/api/v1/quality/estimates?nb=nb-east', ok: 200 },
    { method: 'POST', route: '/api/v1/quality/check', url: () => '/api/v1/quality/check', body: () => ({ neighbourhood: 'nb-east' }), ok: 200 },
    { method: 'GET', route: '/api/v1/neighbourhoods/:nb/intervals/:start/revisions', url: () => `/api/v1/neighbourhoods/nb-east/intervals/${nbStart()}/revisions`, ok: 200 },
    { method: 'GET', route: '/api/v1/exports/neighbourhood.csv', url: () => `/api/v1/exports/neighbourhood.csv?nb=nb-east&${range}`, ok: 200 },
    { method: 'GET', route: '/api/v1/exports/billing.csv', url: () => `/api/v1/exports/billing.csv?${range}`, ok: 200 },
    { method: 'GET', route: '/api/v1/accounts', url: () => '/api/v1/accounts', ok: 200 },
    { method: 'GET', route: '/api/v1/accounts/:account', url: () => `/api/v1/accounts/${account1}`, ok: 200 },
    { method: 'GET', route: '/api/v1/accounts/:account/periods', url: () => `/api/v1/accounts/${account1}/periods`, ok: 200 },
    { method: 'PUT', route: '/api/v1/accounts/:account/tariff', url: () => `/api/v1/accounts/${account1}/tariff`, body: () => ({ tariff: null }), ok: 200 },
    { method: 'GET', route: '/api/v1/accounts/:account/bill', url: () => `/api/v1/accounts/${account1}/bill?${range}`, ok: 200 },
    { method: 'POST', route: '/api/v1/bills/run', url: () => '/api/v1/bills/run', body: () => ({}), ok: 200 },
    { method: 'GET', route: '/api/v1/bills', url: () => `/api/v1/bills?account=${account1}&${range}`, ok: 200 },
    { method: 'GET', route: '/api/v1/bills/:number', url: () => `/api/v1/bills/${issuedNumber}`, ok: 200 },
    { method: 'GET', route: '/api/v1/exports/bills.csv', url: () => `/api/v1/exports/bills.csv?number=${issuedNumber}`, ok: 200 },
    { method: 'GET', route: '/api/v1/meters', url: () => '/api/v1/meters', ok: 200 },
    { method: 'GET', route: '/api/v1/tariffs', url: () => '/api/v1/tariffs', ok: 200 },
    {
      method: 'POST',
      route: '/api/v1/tariffs',
      url: () => '/api/v1/tariffs',
      body: () => ({ code: 'matrix', name: 'Matrix', currency: 'GBP', tz: 'UTC', effectiveFrom: '2024-01-01', standingMilliPerDay: 0, bands: [{ band: 'flat', priceMilliPerKwh: 1000 }] }),
      ok: 201,
    },
    { method: 'DELETE', route: '/api/v1/tariffs/:id', url: () => `/api/v1/tariffs/${futureTariff}`, ok: 204 },
    { method: 'GET', route: '/api/v1/users', url: () => '/api/v1/users', ok: 200 },
    { method: 'POST', route: '/api/v1/users', url: () => '/api/v1/users', body: () => ({ username: 'matrix-user', roles: ['billing'] }), ok: 201 },
    { method: 'PATCH', route: '/api/v1/users/:id', url: () => `/api/v1/users/${spareUser}`, body: () => ({ roles: ['analyst', 'billing'] }), ok: 200 },
    { method: 'POST', route: '/api/v1/users/:id/password', url: () => `/api/v1/users/${spareUser}/password`, ok: 200 },
    { method: 'GET', route: '/api/v1/settings', url: () => '/api/v1/settings', ok: 200 },
    { method: 'PUT', route: '/api/v1/settings', url: () => '/api/v1/settings', body: () => ({ billFooter: 'Thames Valley Power, Reading. Regulated by Ofgem.' }), ok: 200 },
    { method: 'GET', route: '/api/v1/audit', url: () => '/api/v1/audit?limit=5', ok: 200 },
    { method: 'GET', route: '/api/v1/audit/verify', url: () => '/api/v1/audit/verify', ok: 200 },
    { method: 'GET', route: '/api/v1/privacy', url: () => '/api/v1/privacy', ok: 200 },
    // pages
    { method: 'GET', route: '/', url: () => '/', ok: 200 },
    { method: 'GET', route: '/api/docs', url: () => '/api/docs', ok: 200 },
    { method: 'GET', route: '/account/password', url: () => '/account/password', ok: 200 },
    { method: 'GET', route: '/neighbourhoods', url: () => '/neighbourhoods?nb=nb-east&nb=nb-west&range=week&date=2024-06-05', ok: 200 },
    { method: 'GET', route: '/forecast', url: () => '/forecast?nb=nb-east&date=2024-06-09', ok: 200 },
    { method: 'GET', route: '/quality', url: () => '/quality?nb=nb-east', ok: 200 },
    { method: 'POST', route: '/quality/check', url: () => '/quality/check', form: true, body: () => 'nb=nb-east', ok: 303 },
    { method: 'GET', route: '/neighbourhoods/:nb/intervals/:start', url: () => `/neighbourhoods/nb-east/intervals/${nbStart()}`, ok: 200 },
    { method: 'GET', route: '/accounts', url: () => '/accounts', ok: 200 },
    { method: 'GET', route: '/accounts/:account', url: () => `/accounts/${account1}`, ok: 200 },
    { method: 'POST', route: '/accounts/:account/tariff', url: () => `/accounts/${account1}/tariff`, body: () => 'tariff=', form: true, ok: 303 },
    { method: 'GET', route: '/accounts/:account/bill', url: () => `/accounts/${account1}/bill?${range}`, ok: 200 },
    { method: 'GET', route: '/bills', url: () => `/bills?${range}`, ok: 200 },
    { method: 'GET', route: '/bills/:number', url: () => `/bills/${issuedNumber}`, ok: 200 },
    { method: 'POST', route: '/bills/run', url: () => '/bills/run', form: true, body: () => '', ok: 303 },
    { method: 'GET', route: '/meters', url: () => '/meters', ok: 200 },
    { method: 'GET', route: '/tariffs', url: () => '/tariffs', ok: 200 },
    { method: 'GET', route: '/tariffs/new', url: () => '/tariffs/new?from=1', ok: 200 },
    {
      method: 'POST',
      route: '/tariffs',
      url: () => '/tariffs',
      form: true,
      body: () => 'code=formed&name=Formed&currency=GBP&minorDigits=2&tz=Europe%2FLondon&effectiveFrom=2024-01-01&standing=40.5&vat=5&band=peak&price=31.25&band=offpeak&price=12.5&band=&price=',
      ok: 303,
    },
    { method: 'POST', route: '/tariffs/:id/withdraw', url: () => `/tariffs/${futureTariff + 1000}/withdraw`, form: true, body: () => 'confirm=1', ok: 404 },
    { method: 'GET', route: '/admin/users', url: () => '/admin/users', ok: 200 },
    { method: 'POST', route: '/admin/users', url: () => '/admin/users', form: true, body: () => 'username=formuser&roles=analyst', ok: 200 },
    { method: 'POST', route: '/admin/users/:id', url: () => `/admin/users/${spareUser}`, form: true, body: () => 'roles=analyst', ok: 303 },
    { method: 'POST', route: '/admin/users/:id/password', url: () => `/admin/users/${spareUser}/password`, form: true, body: () => 'confirm=1', ok: 200 },
    { method: 'GET', route: '/admin/settings', url: () => '/admin/settings', ok: 200 },
    { method: 'POST', route: '/admin/settings', url: () => '/admin/settings', form: true, body: () => 'utilityName=Thames+Valley+Power&timezone=Europe%2FLondon&defaultTariff=tou&billFooter=Reading', ok: 303 },
    { method: 'GET', route: '/admin/audit', url: () => '/admin/audit?verify=1', ok: 200 },
    { method: 'GET', route: '/privacy', url: () => '/privacy', ok: 200 },
    { method: 'GET', route: '/privacy/report', url: () => '/privacy/report', ok: 404 }, // no --privacy-report here (test/mdms/web/privacy.test.ts serves one)
  ];
  // Tested in their own cases below (they sign in or out, or are public by design).
  const elsewhere = ['GET /login', 'POST /login', 'POST /logout', 'POST /account/password', 'POST /api/v1/session', 'DELETE /api/v1/session', 'POST /api/v1/session/password', 'GET /healthz', 'GET /metrics', 'GET /openapi.json', 'GET /assets/:name', 'GET /favicon.ico'];

  it('covers every route the app has', () => {
    const covered = new Set([...rows.map((r) => `${r.method} ${r.route}`), ...elsewhere]);
    const all = routes.filter((r) => r.method !== 'HEAD').map((r) => `${r.method} ${r.url}`);
    expect(all.filter((r) => !covered.has(r))).toEqual([]);
    expect([...covered].filter((c) => !all.includes(c))).toEqual([]);
    expect(all.length).toBeGreaterThan(45);
  });

  it.each(rows.map((r) => [`${r.method} ${r.route}`, r] as const))('%s', async (_name, row) => {
    const access = routes.find((r) => r.method === row.method && r.url === row.route)!.access;
    const allowed = (who: Who): boolean =>
      access === 'public' ||
      (who !== 'anonymous' &&
        (access === 'user' ||
          ({ 'neighbourhood.read': ['analyst'], 'neighbourhood.export': ['analyst'], 'billing.read': ['billing'], 'billing.export': ['billing'], 'account.write': ['billing'], 'bill.issue': ['billing'], 'meter.read': ['admin', 'billing'], 'tariff.read': ['admin', 'billing'] } as Record<string, string[]>)[access]?.includes(who) ||
          (['tariff.write', 'user.admin', 'settings.write', 'audit.read', 'privacy.read'].includes(access) && who === 'admin')));
    const api = row.route.startsWith('/api/');
    for (const who of ['anonymous', 'analyst', 'billing', 'admin'] as const) {
      const body = row.body?.();
      const r = clean(
        await app.inject({
          method: row.method,
          url: row.url(),
          headers: headers(who, body === undefined ? {} : { 'content-type': row.form ? 'application/x-www-form-urlencoded' : 'application/json' }),
          ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
        }),
      );
      const want = allowed(who) ? row.ok : who === 'anonymous' ? (api || row.method !== 'GET' ? 401 : 303) : 403;
      expect(r.statusCode, `${who}: ${r.body.slice(0, 200)}`).toBe(want);
      expect(r.headers['cache-control'], `${who}: Cache-Control`).toBe('no-store'); // ASVS 8.2.1
      if (want === 303 && who === 'anonymous') expect(r.headers.location).toMatch(/^\/login\?next=/);
      if (want === 401 || want === 403) {
        if (api) expect(r.json()).toMatchObject({ statusCode: want, message: expect.any(String) });
        else expect(r.headers['content-type']).toMatch(/text\/html/);
        // Nothing from the store leaks into a refusal.
        expect(r.body).not.toContain(household1);
        expect(r.body).not.toContain('nb-east');
      }
    }
  });

  it('answers no-store on the routes tested elsewhere too; only the hashed assets may be cached', async () => {
    const login = await app.inject({ url: '/login' });
    const token = /name="_csrf" value="([^"]+)"/.exec(login.body)![1]!;
    const csrfCookie = login.cookies.find((c) => c.name === 'mdms_csrf')!.value;
    const spare = await login2('cache-user');
    const answers: [string, LightMyRequestResponse][] = [
      ['GET /login', login],
      ['POST /login', await app.inject({ method: 'POST', url: '/login', headers: { cookie: `mdms_csrf=${csrfCookie}`, 'content-type': 'application/x-www-form-urlencoded' }, payload: `username=nobody&password=wrong-password-1&_csrf=${encodeURIComponent(token)}` })],
      ['POST /api/v1/session', await app.inject({ method: 'POST', url: '/api/v1/session', payload: { username: 'cache-user', password: 'cache-password-01' } })],
      ['POST /api/v1/session/password', await app.inject({ method: 'POST', url: '/api/v1/session/password', headers: { cookie: spare.cookie, 'x-csrf-token': spare.csrf }, payload: { currentPassword: 'wrong-password-1', newPassword: 'cache-password-02' } })],
      ['POST /account/password', await app.inject({ method: 'POST', url: '/account/password', headers: { cookie: spare.cookie, 'x-csrf-token': spare.csrf, 'content-type': 'application/x-www-form-urlencoded' }, payload: 'current=x&password=y&confirm=y' })],
      ['POST /logout', await app.inject({ method: 'POST', url: '/logout', headers: { cookie: spare.cookie, 'x-csrf-token': spare.csrf, 'content-type': 'application/x-www-form-urlencoded' }, payload: '' })],
      ['DELETE /api/v1/session', await app.inject({ method: 'DELETE', url: '/api/v1/session', headers: { cookie: spare.cookie, 'x-csrf-token': spare.csrf } })],
      ['GET /healthz', await app.inject({ url: '/healthz' })],
      ['GET /metrics', await app.inject({ url: '/metrics' })],
      ['GET /openapi.json', await app.inject({ url: '/openapi.json' })],
      ['GET /favicon.ico', await app.inject({ url: '/favicon.ico' })],
      ['GET /assets/:name (unknown)', await app.inject({ url: '/assets/app.000000000000.js' })],
      ['unknown route', await app.inject({ url: '/api/v1/bananas', headers: headers('admin') })],
    ];
    for (const [name, r] of answers) expect(r.headers['cache-control'], name).toBe('no-store');
    const js = /src="(\/assets\/app\.[0-9a-f]{12}\.js)"/.exec(login.body)![1]!;
    expect((await app.inject({ url: js })).headers['cache-control']).toBe('public, max-age=31536000, immutable');
  });

  it('records refusals of signed-in users in the audit log', async () => {
    const denied = await fx.web.audit.list({ action: 'access.denied', username: 'analyst' });
    expect(denied.map((e) => e.target)).toContain('GET /api/v1/accounts/:account/bill');
    expect(denied.every((e) => e.outcome === 'denied')).toBe(true);
  });
});

describe('neighbourhood API', () => {
  it('returns the latest revision of each interval with the peak and the revised count', async () => {
    const r = clean(await app.inject({ url: '/api/v1/neighbourhoods/nb-north/series?from=2024-06-04&to=2024-06-05', headers: headers('analyst') }));
    expect(r.statusCode).toBe(200);
    const body = r.json() as { points: { start: string; energyWh: number; meters: number; revision: number }[]; peak: { start: string; energyWh: number }; energyWh: number; revised: number; from: string };
    const day = fx.seeded.intervals.filter((i) => i.neighbourhood === 'nb-north' && i.start >= WEEK_START + DAY && i.start < WEEK_START + 2 * DAY);
    expect(body.from).toBe(iso(WEEK_START + DAY)); // local midnight in London = 23:00Z
    expect(body.points.length).toBe(96);
    expect(body.points.map((p) => p.energyWh)).toEqual(day.map((i) => i.energyWh));
    expect(body.energyWh).toBe(day.reduce((a, i) => a + i.energyWh, 0));
    const max = Math.max(...day.map((i) => i.energyWh));
    expect(body.peak.energyWh).toBe(max);
    expect(body.peak.start).toBe(iso(day.find((i) => i.energyWh === max)!.start));
    expect(body.revised).toBe(day.filter((i) => i.revision > 0).length);
  });

  it('defaults to the day of the latest data and lists revisions of an interval', async () => {
    const r = clean(await app.inject({ url: '/api/v1/neighbourhoods/nb-west/series', headers: headers('analyst') }));
    expect(r.json().points.length).toBe(96);
    expect(r.json().to).toBe(iso(WEEK_START + 7 * DAY));
    const revised = fx.seeded.intervals.find((i) => i.revision > 0)!;
    const rv = clean(await app.inject({ url: `/api/v1/neighbourhoods/${revised.neighbourhood}/intervals/${iso(revised.start)}/revisions`, headers: headers('analyst') }));
    expect(rv.json().map((x: { revision: number }) => x.revision)).toEqual([0, 1]);
    expect(rv.json()[1].energyWh).toBe(revised.energyWh);
  });

  it('lists neighbourhoods with their fleet meter counts', async () => {
    const r = clean(await app.inject({ url: '/api/v1/neighbourhoods', headers: headers('analyst') }));
    expect(r.json()).toEqual([
      { neighbourhood: 'nb-east', fleetMeters: 2, hasData: true },
      { neighbourhood: 'nb-north', fleetMeters: 1, hasData: true },
      { neighbourhood: 'nb-west', fleetMeters: 1, hasData: true },
    ]);
  });
});

describe('billing API', () => {
  it("bills an account over a week: the total matches the store's energy priced by hand", async () => {
    const r = clean(await app.inject({ url: `/api/v1/accounts/${account1}/bill?from=2024-06-03&to=2024-06-10`, headers: headers('billing') }));
    expect(r.statusCode, r.body).toBe(200);
    const bill = r.json() as { totalMinor: number; subtotalMinor: number; vatMinor: number; lines: { kind: string; band?: string; energyWh?: number; days?: number; amountMinor: number }[]; periods: unknown[]; total: string };
    const rows = await fx.store.latestBilling({ household: household1 });
    const peak = rows.filter((x) => x.band === 'peak').reduce((a, x) => a + BigInt(x.energyWh), 0n);
    const off = rows.filter((x) => x.band === 'offpeak').reduce((a, x) => a + BigInt(x.energyWh), 0n);
    // half-to-even rounding of n / d, written out independently of the billing module
    const rhe = (n: bigint, d: bigint): bigint => {
      const q = n / d;
      const r2 = (n % d) * 2n;
      return r2 > d || (r2 === d && q % 2n === 1n) ? q + 1n : q;
    };
    const lines = [rhe(peak * 30_000n, 1_000_000n), rhe(off * 15_000n, 1_000_000n), rhe(7n * 53_350n, 1000n)];
    const subtotal = lines.reduce((a, b) => a + b, 0n);
    const total = subtotal + rhe(subtotal * 500n, 10_000n);
    expect(bill.periods.length).toBe(7);
    expect(bill.lines.map((l) => BigInt(l.amountMinor))).toEqual(lines);
    expect(bill.lines[2]).toMatchObject({ kind: 'standing', days: 7 });
    expect(BigInt(bill.totalMinor)).toBe(total);
    expect(bill.total).toBe(`£${(Number(total) / 100).toFixed(2)}`);
    const audit = await fx.web.audit.list({ action: 'view.bill', username: 'billing' });
    expect(audit[0]).toMatchObject({ target: account1, outcome: 'ok', detail: { periods: 7 } });
  });

  it('prices each period and says why a bill cannot be made (422, not 500)', async () => {
    const p = clean(await app.inject({ url: `/api/v1/accounts/${account1}/periods`, headers: headers('billing') }));
    expect(p.json().periods.length).toBe(7);
    expect(p.json().periods.every((x: { totalMinor: number | null }) => Number.isInteger(x.totalMinor))).toBe(true);
    const none = clean(await app.inject({ url: `/api/v1/accounts/${account1}/bill?from=2023-01-01&to=2023-02-01`, headers: headers('billing') }));
    expect(none.statusCode).toBe(422);
    expect(none.json().message).toMatch(/no billing data/);
    const straddle = clean(await app.inject({ url: `/api/v1/accounts/${account1}/bill?from=2024-06-03T12:00&to=2024-06-04T12:00`, headers: headers('billing') }));
    expect(straddle.statusCode).toBe(422);
    expect(straddle.json().message).toMatch(/straddle/);
  });

  it('changes an account tariff, refusing unknown tariffs', async () => {
    const bad = clean(await app.inject({ method: 'PUT', url: `/api/v1/accounts/${account1}/tariff`, headers: headers('billing'), payload: { tariff: 'nope' } }));
    expect(bad.statusCode).toBe(422);
    const ok = clean(await app.inject({ method: 'PUT', url: `/api/v1/accounts/${account1}/tariff`, headers: headers('billing'), payload: { tariff: 'tou' } }));
    expect(ok.json()).toMatchObject({ account: account1, tariff: 'tou', effectiveTariff: 'tou' });
    expect((await fx.web.audit.list({ action: 'account.tariff' }))[0]).toMatchObject({ target: account1, detail: { to: 'tou' } });
  });

  it('maps meters to neighbourhoods and accounts only', async () => {
    const r = clean(await app.inject({ url: '/api/v1/meters', headers: headers('admin') }));
    expect(r.json()[0]).toEqual({ meter: '534d520000000001', neighbourhood: 'nb-east', account: account1 });
    expect(Object.keys(r.json()[0]).sort()).toEqual(['account', 'meter', 'neighbourhood']);
  });
});

describe('exports', () => {
  it('unfiltered CSV is byte-identical to smartermeter mdms export', async () => {
    for (const [what, who] of [['neighbourhood', 'analyst'], ['billing', 'billing']] as const) {
      const r = clean(await app.inject({ url: `/api/v1/exports/${what}.csv`, headers: headers(who) }));
      expect(r.headers['content-type']).toMatch(/^text\/csv/);
      expect(r.headers['content-disposition']).toMatch(/^attachment; filename="/);
      expect(r.body).toBe(await exportCsv(fx.store, what));
    }
  });

  it('filtered CSV has the same columns and is the matching subset', async () => {
    const full = (await exportCsv(fx.store, 'neighbourhood')).split('\n');
    const r = clean(await app.inject({ url: `/api/v1/exports/neighbourhood.csv?nb=nb-west&nb=nb-east&from=${iso(WEEK_START)}&to=${iso(WEEK_START + DAY)}`, headers: headers('analyst') }));
    const lines = r.body.trimEnd().split('\n');
    expect(lines[0]).toBe(CSV_HEADERS.neighbourhood);
    expect(lines.length).toBe(1 + 2 * 96);
    for (const l of lines.slice(1)) expect(full).toContain(l);
    const b = clean(await app.inject({ url: `/api/v1/exports/billing.csv?account=${account1}`, headers: headers('billing') }));
    const bl = b.body.trimEnd().split('\n');
    expect(bl[0]).toBe(CSV_HEADERS.billing);
    expect(bl.length).toBe(1 + 7 * 2);
    expect(bl.slice(1).every((l) => l.startsWith(`${household1},`))).toBe(true);
  });

  it('every export is audited with who, what and the range', async () => {
    const e = await fx.web.audit.list({ action: 'export.neighbourhood' });
    expect(e.some((x) => x.username === 'analyst' && x.detail.neighbourhoods === 'nb-west,nb-east' && x.detail.from === iso(WEEK_START))).toBe(true);
    expect((await fx.web.audit.list({ action: 'export.billing' })).length).toBeGreaterThanOrEqual(2);
  });
});

describe('bad input gets a 4xx with a clear message', () => {
  const cases: [string, () => Promise<LightMyRequestResponse>, number, RegExp][] = [
    ['month 13', () => app.inject({ url: '/api/v1/neighbourhoods/nb-east/series?from=2024-13-01&to=2024-14-01', headers: headers('analyst') }), 400, /from must be a date/],
    ['not a date', () => app.inject({ url: '/api/v1/neighbourhoods/nb-east/series?from=yesterday', headers: headers('analyst') }), 400, /must match pattern/],
    ['to before from', () => app.inject({ url: '/api/v1/neighbourhoods/nb-east/series?from=2024-06-05&to=2024-06-04', headers: headers('analyst') }), 400, /to must be after from/],
    ['span too long', () => app.inject({ url: '/api/v1/neighbourhoods/nb-east/series?from=2020-01-01&to=2024-01-01', headers: headers('analyst') }), 400, /at most 400 days/],
    ['unknown neighbourhood', () => app.inject({ url: '/api/v1/neighbourhoods/nb-nowhere/series', headers: headers('analyst') }), 404, /unknown neighbourhood/],
    ['bad neighbourhood id', () => app.inject({ url: '/api/v1/neighbourhoods/%3Cscript%3E/series', headers: headers('analyst') }), 400, /must match pattern/],
    ['unknown account', () => app.inject({ url: '/api/v1/accounts/SM-0000-0000/bill?from=2024-06-03&to=2024-06-04', headers: headers('billing') }), 404, /unknown account/],
    ['malformed account', () => app.inject({ url: '/api/v1/accounts/12345/bill?from=2024-06-03&to=2024-06-04', headers: headers('billing') }), 400, /must match pattern/],
    ['bill without range', () => app.inject({ url: `/api/v1/accounts/${account1}/bill`, headers: headers('billing') }), 400, /must have required property 'from'/],
    ['unknown interval', () => app.inject({ url: '/api/v1/neighbourhoods/nb-east/intervals/2001-01-01T00:00:00Z/revisions', headers: headers('analyst') }), 404, /no interval/],
    ['unknown route', () => app.inject({ url: '/api/v1/bananas', headers: headers('admin') }), 404, /nothing at GET \/api\/v1\/bananas/],
    ['oversized body', () => app.inject({ method: 'POST', url: '/api/v1/tariffs', headers: headers('admin', { 'content-type': 'application/json' }), payload: JSON.stringify({ name: 'x'.repeat(100_000) }) }), 413, /too large/],
    ['form to the API', () => app.inject({ method: 'POST', url: '/api/v1/users', headers: headers('admin', { 'content-type': 'application/x-www-form-urlencoded' }), payload: 'username=x' }), 415, /send application\/json/],
    ['XML', () => app.inject({ method: 'PUT', url: '/api/v1/settings', headers: headers('admin', { 'content-type': 'application/xml' }), payload: '<x/>' }), 415, /unsupported content type/],
    ['broken JSON', () => app.inject({ method: 'PUT', url: '/api/v1/settings', headers: headers('admin', { 'content-type': 'application/json' }), payload: '{"utilityName":' }), 400, /not valid JSON/],
    ['unknown field', () => app.inject({ method: 'PUT', url: '/api/v1/settings', headers: headers('admin', { 'content-type': 'application/json' }), payload: '{"colour":"red"}' }), 400, /additional properties/],
    ['bad time zone', () => app.inject({ method: 'PUT', url: '/api/v1/settings', headers: headers('admin', { 'content-type': 'application/json' }), payload: '{"timezone":"Mars/Base"}' }), 400, /IANA/],
    ['float price', () => app.inject({ method: 'POST', url: '/api/v1/tariffs', headers: headers('admin'), payload: { code: 'f', name: 'F', currency: 'GBP', tz: 'UTC', effectiveFrom: '2024-01-01', standingMilliPerDay: 0, bands: [{ band: 'a', priceMilliPerKwh: 1.5 }] } }), 400, /must be integer/],
    ['tariff clash', () => app.inject({ method: 'POST', url: '/api/v1/tariffs', headers: headers('admin'), payload: { code: 'tou', name: 'Again', currency: 'GBP', tz: 'Europe/London', effectiveFrom: '2024-01-01', standingMilliPerDay: 0, bands: [{ band: 'peak', priceMilliPerKwh: 1 }] } }), 422, /already has a version/],
    ['withdraw a tariff in effect', () => app.inject({ method: 'DELETE', url: '/api/v1/tariffs/1', headers: headers('admin') }), 422, /took effect/],
    ['weak password', () => app.inject({ method: 'POST', url: '/api/v1/users', headers: headers('admin'), payload: { username: 'weak', roles: ['analyst'], password: 'short' } }), 400, /at least 12/],
    ['unknown role', () => app.inject({ method: 'POST', url: '/api/v1/users', headers: headers('admin'), payload: { username: 'odd', roles: ['root'] } }), 400, /must be equal to one of the allowed values/],
    ['page: bad date', () => app.inject({ url: '/neighbourhoods?date=2024-02-30', headers: headers('analyst') }), 400, /date must be a valid/],
    ['page: unknown neighbourhood', () => app.inject({ url: '/neighbourhoods?nb=atlantis', headers: headers('analyst') }), 404, /unknown neighbourhood/],
    ['page: unknown page', () => app.inject({ url: '/no/such/page', headers: headers('analyst') }), 404, /nothing at/],
    ['page: bill range reversed', () => app.inject({ url: `/accounts/${account1}/bill?from=2024-06-09&to=2024-06-03`, headers: headers('billing') }), 400, /to must be after from/],
    ['page: tariff form with a bad price', () => app.inject({ method: 'POST', url: '/tariffs', headers: headers('admin', { 'content-type': 'application/x-www-form-urlencoded' }), payload: 'code=x&name=X&currency=GBP&tz=UTC&effectiveFrom=2024-01-01&standing=1&band=a&price=1.2345' }), 400, /at most 3 decimals/],
  ];
  it.each(cases)('%s', async (_name, run, status, message) => {
    const r = clean(await run());
    expect(r.statusCode, r.body.slice(0, 300)).toBe(status);
    expect(r.body).toMatch(message);
  });

  it('pages answer errors with an HTML page, not JSON', async () => {
    const r = await app.inject({ url: '/neighbourhoods?date=2024-02-30', headers: headers('analyst') });
    expect(r.headers['content-type']).toMatch(/text\/html/);
    expect(r.body).toContain('data-testid="error-message"');
  });
});

describe('sessions, CSRF and rate limiting', () => {
  it('refuses a state change without the CSRF token, or with a token of another session', async () => {
    const a = auth.admin!;
    const none = clean(await app.inject({ method: 'PUT', url: '/api/v1/settings', headers: { cookie: a.cookie, 'content-type': 'application/json' }, payload: '{"billFooter":"x"}' }));
    expect(none.statusCode).toBe(403);
    expect(none.json().message).toMatch(/CSRF/);
    const other = await login('admin', PASSWORDS.admin!);
    const crossed = clean(await app.inject({ method: 'PUT', url: '/api/v1/settings', headers: { cookie: a.cookie, 'x-csrf-token': other.csrf, 'content-type': 'application/json' }, payload: '{"billFooter":"x"}' }));
    expect(crossed.statusCode).toBe(403);
    const form = clean(await app.inject({ method: 'POST', url: '/admin/settings', headers: { cookie: a.cookie, 'content-type': 'application/x-www-form-urlencoded' }, payload: 'utilityName=Evil&timezone=UTC' }));
    expect(form.statusCode).toBe(403);
    expect((await fx.web.settings.all()).utilityName).toBe('Thames Valley Power');
  });

  it('signs in through the login form and out again; the old cookie is then worthless', async () => {
    const page = await app.inject({ url: '/login?next=/accounts' });
    expect(page.statusCode).toBe(200);
    const csrfCookie = page.cookies.find((c) => c.name === 'mdms_csrf')!;
    expect(csrfCookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });
    const token = /name="_csrf" value="([^"]+)"/.exec(page.body)![1]!;
    const form = (u: string, p: string) => `username=${u}&password=${encodeURIComponent(p)}&next=%2Faccounts&_csrf=${encodeURIComponent(token)}`;
    const bad = clean(await app.inject({ method: 'POST', url: '/login', headers: { cookie: `mdms_csrf=${csrfCookie.value}`, 'content-type': 'application/x-www-form-urlencoded' }, payload: form('billing', 'wrong-password-123') }));
    expect(bad.statusCode).toBe(401);
    expect(bad.body).toContain('Wrong username or password.');
    const ok = clean(await app.inject({ method: 'POST', url: '/login', headers: { cookie: `mdms_csrf=${csrfCookie.value}`, 'content-type': 'application/x-www-form-urlencoded' }, payload: form('billing', PASSWORDS.billing!) }));
    expect(ok.statusCode).toBe(303);
    expect(ok.headers.location).toBe('/accounts');
    const session = ok.cookies.find((c) => c.name === 'mdms_session')!;
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });
    expect(session.secure).toBeFalsy(); // plain HTTP on loopback (inject): relaxed for local use only
    const cookie = `mdms_csrf=${csrfCookie.value}; mdms_session=${session.value}`;
    const accounts = await app.inject({ url: '/accounts', headers: { cookie } });
    expect(accounts.statusCode).toBe(200);
    const pageToken = /name="_csrf" value="([^"]+)"/.exec(accounts.body)![1]!;
    const out = clean(await app.inject({ method: 'POST', url: '/logout', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, payload: `_csrf=${encodeURIComponent(pageToken)}` }));
    expect(out.statusCode).toBe(303);
    expect((await app.inject({ url: '/api/v1/session', headers: { cookie } })).statusCode).toBe(401);
    const logins = await fx.web.audit.list({ action: 'login', username: 'billing' });
    expect(logins.slice(0, 2).map((e) => e.outcome)).toEqual(['ok', 'failed']);
    expect((await fx.web.audit.list({ action: 'logout' }))[0]!.username).toBe('billing');
  });

  it('never redirects to another site after login', async () => {
    for (const next of ['//evil.example/x', 'https://evil.example/', '/\\evil.example', 'javascript:alert(1)']) {
      const r = await app.inject({ url: `/login?next=${encodeURIComponent(next)}`, headers: { cookie: auth.billing!.cookie } });
      expect(r.statusCode).toBe(303);
      expect(r.headers.location).toBe('/');
    }
  });

  it('finds an account by meter id or account number', async () => {
    const r = await app.inject({ url: '/accounts?q=0000000003', headers: headers('billing') });
    const hh3 = (await fx.web.accounts.byHousehold('hh03'))!.accountNumber;
    expect(r.body).toContain(hh3);
    expect(r.body).not.toContain(account1);
    const byNumber = await app.inject({ url: `/accounts?q=${account1.toLowerCase()}`, headers: headers('billing') });
    expect(byNumber.body).toContain(`/accounts/${account1}`);
    expect(byNumber.body).not.toContain(`/accounts/${hh3}`);
  });

  it('marks cookies Secure unless the request is plain HTTP between loopback addresses', async () => {
    const r = await app.inject({ url: '/login', headers: { host: 'mdms.utility.example' } });
    expect(r.cookies.find((c) => c.name === 'mdms_csrf')?.secure).toBe(true);
    const l = await app.inject({ url: '/login', headers: { host: 'localhost:8080' } });
    expect(l.cookies.find((c) => c.name === 'mdms_csrf')?.secure).toBeFalsy();
  });

  it('changes a password through the API: the old one stops working, other sessions end', async () => {
    await fx.web.users.create({ username: 'changer', roles: ['analyst'], password: 'changer-password-1' });
    const a = await login('changer', 'changer-password-1');
    const b = await login('changer', 'changer-password-1');
    const wrong = clean(await app.inject({ method: 'POST', url: '/api/v1/session/password', headers: { cookie: a.cookie, 'x-csrf-token': a.csrf }, payload: { currentPassword: 'nope-nope-nope', newPassword: 'changer-password-2' } }));
    expect(wrong.statusCode).toBe(400);
    const ok = clean(await app.inject({ method: 'POST', url: '/api/v1/session/password', headers: { cookie: a.cookie, 'x-csrf-token': a.csrf }, payload: { currentPassword: 'changer-password-1', newPassword: 'changer-password-2' } }));
    expect(ok.statusCode).toBe(204);
    expect((await app.inject({ url: '/api/v1/session', headers: { cookie: a.cookie } })).statusCode).toBe(200);
    expect((await app.inject({ url: '/api/v1/session', headers: { cookie: b.cookie } })).statusCode).toBe(401);
    expect((await app.inject({ method: 'POST', url: '/api/v1/session', payload: { username: 'changer', password: 'changer-password-1' } })).statusCode).toBe(401);
    const del = clean(await app.inject({ method: 'DELETE', url: '/api/v1/session', headers: { cookie: a.cookie, 'x-csrf-token': a.csrf } }));
    expect(del.statusCode).toBe(204);
    expect((await app.inject({ url: '/api/v1/session', headers: { cookie: a.cookie } })).statusCode).toBe(401);
  });

  it('the password form checks the confirmation and the current password', async () => {
    await fx.web.users.create({ username: 'former', roles: ['billing'], password: 'former-password-1' });
    const a = await login('former', 'former-password-1');
    const post = (body: string) => app.inject({ method: 'POST', url: '/account/password', headers: { cookie: a.cookie, 'x-csrf-token': a.csrf, 'content-type': 'application/x-www-form-urlencoded' }, payload: body });
    expect((await post('current=former-password-1&password=former-password-2&confirm=former-password-3')).body).toContain('The two new passwords differ.');
    expect((await post('current=wrong-password-x&password=former-password-2&confirm=former-password-2')).statusCode).toBe(400);
    const ok = await post('current=former-password-1&password=former-password-2&confirm=former-password-2');
    expect(ok.statusCode).toBe(303);
    expect(await fx.web.users.verify('former', 'former-password-2')).not.toBeNull();
  });

  it('rate-limits logins per client IP with a clear 429', async () => {
    const limited = await appOf(fx, { loginMax: 3 });
    try {
      const codes: number[] = [];
      let last: LightMyRequestResponse | undefined;
      for (let i = 0; i < 5; i++) {
        last = clean(await limited.inject({ method: 'POST', url: '/api/v1/session', payload: { username: `someone-${i}`, password: 'guess-number-' + i } }));
        codes.push(last.statusCode);
      }
      expect(codes).toEqual([401, 401, 401, 429, 429]);
      expect(last!.json().message).toMatch(/Rate limit exceeded: too many password attempts from this address/);
      expect(Number(last!.headers['retry-after'])).toBeGreaterThan(0);
      // The right password does not get through either while limited.
      expect((await limited.inject({ method: 'POST', url: '/api/v1/session', payload: { username: 'analyst', password: PASSWORDS.analyst } })).statusCode).toBe(429);
      expect(await (await limited.inject({ url: '/metrics' })).body).toMatch(/mdms_web_logins_total\{outcome="limited"\} 3/);
    } finally {
      await limited.close();
    }
  });

  it('one budget per account and one per source across /login and /api/v1/session; the window ends the lock', async () => {
    const windowMs = 60_000; // the default
    const limited = await buildMdmsWeb({ store: fx.store, web: fx.web, loginRateLimit: { max: 10, timeWindowMs: windowMs } });
    // The limiter's clock (Date) stands still, so slow scrypt checks cannot end the window early; it is moved
    // on by hand below.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const page = await limited.inject({ url: '/login' });
      const token = encodeURIComponent(/name="_csrf" value="([^"]+)"/.exec(page.body)![1]!);
      const csrfCookie = `mdms_csrf=${page.cookies.find((c) => c.name === 'mdms_csrf')!.value}`;
      const form = (username: string, password: string, remoteAddress: string) =>
        limited.inject({ method: 'POST', url: '/login', remoteAddress, headers: { cookie: csrfCookie, 'content-type': 'application/x-www-form-urlencoded' }, payload: `username=${username}&password=${encodeURIComponent(password)}&_csrf=${token}` });
      const api = (username: string, password: string, remoteAddress: string) => limited.inject({ method: 'POST', url: '/api/v1/session', remoteAddress, payload: { username, password } });
      // 10 failures for one account on the API, each from another address (no source budget is spent up)...
      for (let i = 0; i < 10; i++) expect((await api('billing', `wrong-guess-${i}`, `10.0.1.${i}`)).statusCode).toBe(401);
      // ...and the form is limited for that account too, from yet another address, even with the right password.
      const viaForm = clean(await form('billing', PASSWORDS.billing!, '10.0.2.1'));
      expect(viaForm.statusCode).toBe(429);
      expect(viaForm.body).toContain('too many password attempts for this account');
      expect((await api('Billing', PASSWORDS.billing!, '10.0.2.2')).statusCode).toBe(429); // usernames are case-blind
      // Another account from a fresh address is not affected.
      expect((await api('analyst', PASSWORDS.analyst!, '10.0.3.1')).statusCode).toBe(200);
      // One address guessing many accounts: 10 attempts spread over both routes, then both refuse.
      for (let i = 0; i < 10; i++) {
        const r = i % 2 ? await api(`user-${i}`, 'wrong-guess-x', '10.0.4.1') : await form(`user-${i}`, 'wrong-guess-x', '10.0.4.1');
        expect(r.statusCode).toBe(401);
      }
      expect((await api('analyst', PASSWORDS.analyst!, '10.0.4.1')).statusCode).toBe(429);
      const lastRefusal = await form('admin', PASSWORDS.admin!, '10.0.4.1');
      expect(lastRefusal.statusCode).toBe(429);
      // The owner is locked out for the rest of the window only (Retry-After says how long).
      const retryAfter = Number(lastRefusal.headers['retry-after']);
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(windowMs / 1000);
      vi.setSystemTime(Date.now() + retryAfter * 1000 - 1000);
      expect((await api('billing', PASSWORDS.billing!, '10.0.2.2')).statusCode).toBe(429); // a second before
      vi.setSystemTime(Date.now() + 1000);
      expect((await api('billing', PASSWORDS.billing!, '10.0.2.2')).statusCode).toBe(200);
      expect((await form('admin', PASSWORDS.admin!, '10.0.4.1')).statusCode).toBe(303);
    } finally {
      vi.useRealTimers();
      await limited.close();
    }
  });

  it('users: create with a generated password, disable ends their sessions, the last admin stays', async () => {
    const c = clean(await app.inject({ method: 'POST', url: '/api/v1/users', headers: headers('admin'), payload: { username: 'Newbie', roles: ['billing'] } }));
    expect(c.statusCode).toBe(201);
    const { user, password } = c.json() as { user: { id: number; username: string }; password: string };
    expect(user.username).toBe('newbie');
    expect(password).toMatch(/^[a-z2-9]{5}(-[a-z2-9]{5}){3}$/);
    const s = await login('newbie', password);
    const off = clean(await app.inject({ method: 'PATCH', url: `/api/v1/users/${user.id}`, headers: headers('admin'), payload: { disabled: true } }));
    expect(off.json().disabled).toBe(true);
    expect((await app.inject({ url: '/api/v1/session', headers: { cookie: s.cookie } })).statusCode).toBe(401);
    const admin = (await fx.web.users.byUsername('admin'))!;
    const last = clean(await app.inject({ method: 'PATCH', url: `/api/v1/users/${admin.id}`, headers: headers('admin'), payload: { roles: ['analyst'] } }));
    expect(last.statusCode).toBe(400);
    expect(last.json().message).toMatch(/last enabled administrator/);
  });
});

describe('audit, health, metrics, OpenAPI', () => {
  it('the audit log answers who looked at which bill, and its chain verifies', async () => {
    const r = clean(await app.inject({ url: '/api/v1/audit?action=view.bill&user=billing', headers: headers('admin') }));
    const entries = r.json() as { username: string; action: string; target: string; at: string; ip: string; hash: string }[];
    expect(entries.length).toBeGreaterThan(0);
    expect(entries.every((e) => e.username === 'billing' && e.action === 'view.bill' && /^[0-9a-f]{64}$/.test(e.hash))).toBe(true);
    expect(entries.map((e) => e.target)).toContain(account1);
    expect(clean(await app.inject({ url: '/api/v1/audit/verify', headers: headers('admin') })).json()).toMatchObject({ ok: true, brokenAt: null });
    // Reading the audit log is itself audited.
    expect((await fx.web.audit.list({ action: 'view.audit' }))[0]!.username).toBe('admin');
  });

  it('/healthz answers without authentication and without data', async () => {
    const r = await app.inject({ url: '/healthz' });
    expect(r.json()).toEqual({ status: 'ok', store: 'sqlite' });
  });

  it('/metrics serves Prometheus text to loopback, and needs the bearer token when one is set', async () => {
    const r = await app.inject({ url: '/metrics' });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/plain/);
    expect(r.body).toMatch(/mdms_web_http_request_duration_seconds_count\{method="GET",route="\/api\/v1\/accounts\/:account\/bill",status="200"\} \d+/);
    expect(r.body).toMatch(/mdms_web_audit_events_total|mdms_web_bills_total\{outcome="ok"\} \d+/);
    expect(r.body).not.toContain(account1);
    const remote = await app.inject({ url: '/metrics', remoteAddress: '10.1.2.3' });
    expect(remote.statusCode).toBe(403);
    const guarded = await appOf(fx, { metricsToken: 'scrape-token-0123456789' });
    try {
      expect((await guarded.inject({ url: '/metrics' })).statusCode).toBe(401);
      expect((await guarded.inject({ url: '/metrics', headers: { authorization: 'Bearer scrape-token-0123456789' }, remoteAddress: '10.1.2.3' })).statusCode).toBe(200);
    } finally {
      await guarded.close();
    }
  });

  it('the OpenAPI document describes every API route with its schemas', async () => {
    const doc = (await app.inject({ url: '/openapi.json' })).json() as { openapi: string; paths: Record<string, Record<string, { responses: Record<string, unknown>; parameters?: unknown[] }>> };
    expect(doc.openapi).toBe('3.1.0');
    const apiRoutes = routes.filter((r) => r.method !== 'HEAD' && (r.url.startsWith('/api/v1/') || ['/healthz', '/metrics', '/openapi.json'].includes(r.url)));
    for (const r of apiRoutes) {
      const path = r.url.replace(/:(\w+)/g, '{$1}');
      const op = doc.paths[path]?.[r.method.toLowerCase()];
      expect(op, `${r.method} ${path}`).toBeDefined();
      expect(Object.keys(op!.responses).length).toBeGreaterThan(0);
    }
    expect(Object.keys(doc.paths).some((p) => !p.startsWith('/api/') && !['/healthz', '/metrics', '/openapi.json'].includes(p))).toBe(false);
    expect(doc.paths['/api/v1/accounts/{account}/bill']!.get!.parameters!.length).toBeGreaterThanOrEqual(3);
  });

  it('serves the bundled assets with immutable caching, and a strict CSP', async () => {
    const page = await app.inject({ url: '/login' });
    expect(page.headers['content-security-policy']).toMatch(/script-src 'self'/);
    expect(page.headers['content-security-policy']).not.toMatch(/unsafe-inline/);
    const js = /src="(\/assets\/app\.[0-9a-f]{12}\.js)"/.exec(page.body)![1]!;
    const css = /href="(\/assets\/app\.[0-9a-f]{12}\.css)"/.exec(page.body)![1]!;
    const rj = await app.inject({ url: js });
    expect(rj.statusCode).toBe(200);
    expect(rj.headers['cache-control']).toMatch(/immutable/);
    expect(rj.body).toContain('u-legend'); // uPlot is bundled, not fetched from a CDN
    const rc = await app.inject({ url: css });
    expect(rc.body).toContain('.uplot');
    expect((await app.inject({ url: js, headers: { 'if-none-match': String(rj.headers.etag) } })).statusCode).toBe(304);
    expect((await app.inject({ url: '/assets/app.000000000000.js' })).statusCode).toBe(404);
  });

  it('billing pages show what the API computes', async () => {
    const api = (await app.inject({ url: `/api/v1/accounts/${account1}/bill?from=2024-06-03&to=2024-06-10`, headers: headers('billing') })).json() as { total: string; totalMinor: number };
    const page = await app.inject({ url: `/accounts/${account1}/bill?from=2024-06-03&to=2024-06-10`, headers: headers('billing') });
    expect(page.body).toContain(`data-minor="${api.totalMinor}"`);
    expect(page.body).toContain(api.total);
    expect(page.body).toContain('Mon–Fri 07:00–23:00'); // the band schedule in words
    const run = await app.inject({ url: '/bills?from=2024-06-03&to=2024-06-10', headers: headers('billing') });
    for (const hh of HOUSEHOLDS) expect(run.body).toContain((await fx.web.accounts.byHousehold(hh))!.accountNumber);
    expect(run.body).toContain(api.total);
  });
});
