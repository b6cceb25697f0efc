/**
 * The web app over PostgreSQL (127.0.0.1:5432/test, a schema of its own): the same answers as over SQLite
 * for sign-in, series, bills, exports and the audit chain. FAILS under CI=true when PostgreSQL is unreachable.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportCsv } from '../../../mdms/export.js';
import { priceBill } from '../../../lib/billing.js';
import { periodsOf } from '../../../mdms/web/bills.js';
import { postgresReachable } from './db-helpers.js';
import { appOf, fixture, PASSWORDS, WEEK_START, type Fixture } from './fixture.js';

const pg = await postgresReachable();

describe.skipIf(!pg)('web app on PostgreSQL', () => {
  let fx: Fixture;
  let app: FastifyInstance;
  const cookie: Record<string, string> = {};

  beforeAll(async () => {
    fx = await fixture('postgres', 2);
    app = await appOf(fx);
    for (const who of ['analyst', 'billing', 'admin']) {
      const r = await app.inject({ method: 'POST', url: '/api/v1/session', payload: { username: who, password: PASSWORDS[who] } });
      expect(r.statusCode).toBe(200);
      cookie[who] = r.cookies.map((c) => `${c.name}=${c.value}`).join('; ');
    }
  }, 180_000);
  afterAll(async () => {
    await app?.close();
    await fx?.close();
  });

  it('serves a neighbourhood day from PostgreSQL', async () => {
    const r = await app.inject({ url: '/api/v1/neighbourhoods/nb-east/series?from=2024-06-03&to=2024-06-04', headers: { cookie: cookie.analyst! } });
    expect(r.statusCode).toBe(200);
    const day = fx.seeded.intervals.filter((i) => i.neighbourhood === 'nb-east' && i.start < WEEK_START + 86_400);
    expect(r.json().points.map((p: { energyWh: number }) => p.energyWh)).toEqual(day.map((i) => i.energyWh));
  });

  it('bills from PostgreSQL exactly as the billing core prices the stored periods', async () => {
    const account = (await fx.web.accounts.byHousehold('hh03'))!;
    const r = await app.inject({ url: `/api/v1/accounts/${account.accountNumber}/bill?from=2024-06-03&to=2024-06-05`, headers: { cookie: cookie.billing! } });
    expect(r.statusCode, r.body).toBe(200);
    const expected = priceBill(periodsOf(await fx.store.latestBilling({ household: 'hh03' })), await fx.web.tariffs.versions('tou'));
    expect(r.json().totalMinor).toBe(expected.totalMinor);
    expect(r.json().periods.length).toBe(2);
  });

  it('exports the same CSV as mdms export, and the audit chain verifies', async () => {
    const r = await app.inject({ url: '/api/v1/exports/billing.csv', headers: { cookie: cookie.billing! } });
    expect(r.body).toBe(await exportCsv(fx.store, 'billing'));
    const v = await app.inject({ url: '/api/v1/audit/verify', headers: { cookie: cookie.admin! } });
    expect(v.json()).toMatchObject({ ok: true });
    expect(v.json().entries).toBeGreaterThanOrEqual(5);
  });
});
