/**
 * The forecast page and API over the seeded web fixture (7 days of three neighbourhoods): shapes, the actuals
 * beside a past day's forecast, bad input (400), too little history (422), unknown neighbourhood (404), the
 * Prometheus counter.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appOf, fixture, PASSWORDS, WEEK_START, type Fixture } from './fixture.js';

let fx: Fixture;
let app: FastifyInstance;
let cookie = '';

beforeAll(async () => {
  fx = await fixture();
  app = await appOf(fx);
  await app.ready();
  const r = await app.inject({ method: 'POST', url: '/api/v1/session', payload: { username: 'analyst', password: PASSWORDS.analyst } });
  cookie = r.cookies.map((c) => `${c.name}=${c.value}`).join('; ');
}, 120_000);
afterAll(async () => {
  await app?.close();
  await fx?.close();
});

const get = (url: string) => app.inject({ url, headers: { cookie } });

describe('forecast API', () => {
  it('forecasts the day after the latest data: 96 whole-Wh points with an interval, no actuals yet', async () => {
    const r = await get('/api/v1/neighbourhoods/nb-east/forecast');
    expect(r.statusCode, r.body).toBe(200);
    const f = r.json();
    expect(f.until).toBe(new Date((WEEK_START + 7 * 86_400) * 1000).toISOString().replace('.000Z', 'Z'));
    expect(f.points).toHaveLength(96);
    expect(f.level).toBe(0.8);
    for (const p of f.points) {
      expect(Number.isSafeInteger(p.energyWh)).toBe(true);
      expect(p.lowerWh).toBeLessThanOrEqual(p.energyWh);
      expect(p.upperWh).toBeGreaterThanOrEqual(p.energyWh);
      expect(p.actualWh).toBeNull();
    }
  });

  it('a past day is forecast from the data before it, each point beside its stored actual', async () => {
    const r = await get('/api/v1/neighbourhoods/nb-east/forecast?until=2024-06-09&horizon=1d');
    expect(r.statusCode, r.body).toBe(200);
    const f = r.json();
    const stored = fx.seeded.intervals.filter((i) => i.neighbourhood === 'nb-east' && i.start >= WEEK_START + 6 * 86_400);
    expect(f.points.map((p: { actualWh: number }) => p.actualWh)).toEqual(stored.map((i) => i.energyWh));
    expect(f.periods).toEqual([96]); // six days: daily seasonality only
  });

  it('refuses bad input clearly', async () => {
    expect((await get('/api/v1/neighbourhoods/nb-east/forecast?horizon=soon')).statusCode).toBe(400);
    const long = await get('/api/v1/neighbourhoods/nb-east/forecast?horizon=30d');
    expect(long.statusCode).toBe(400);
    expect(long.json().message).toMatch(/at most 14d/);
    expect((await get('/api/v1/neighbourhoods/nb-east/forecast?level=1.2')).statusCode).toBe(400);
    const short = await get('/api/v1/neighbourhoods/nb-east/forecast?until=2024-06-04');
    expect(short.statusCode).toBe(422);
    expect(short.json().message).toMatch(/at least two days of history/);
    expect((await get('/api/v1/neighbourhoods/nb-nowhere/forecast')).statusCode).toBe(404);
    expect((await get('/api/v1/neighbourhoods/nb-east/backtest?days=7')).statusCode).toBe(422);
  });

  it('back-tests against seasonal naive', async () => {
    const r = await get('/api/v1/neighbourhoods/nb-east/backtest?days=2');
    expect(r.statusCode, r.body).toBe(200);
    const b = r.json();
    expect(b.model.points).toBe(2 * 96);
    expect(b.naiveDay.points).toBe(2 * 96);
    expect(b.naiveWeek).toBeNull(); // less than a week before the first origin
    expect(b.model.mase).toBeGreaterThan(0);
  });

  it('counts forecasts in Prometheus', async () => {
    const m = (await app.inject({ url: '/metrics' })).body;
    expect(m).toMatch(/mdms_web_forecasts_total\{outcome="ok"\} [1-9]/);
    expect(m).toMatch(/mdms_web_forecasts_total\{outcome="refused"\} [1-9]/);
  });
});

describe('forecast page', () => {
  it('shows the forecast against the actual values with the interval band data', async () => {
    const r = await get('/forecast?nb=nb-west&date=2024-06-09');
    expect(r.statusCode).toBe(200);
    expect(r.body).toContain('data-testid="forecast-chart"');
    const data = JSON.parse(/<script type="application\/json" id="forecast-data">([^<]*)<\/script>/.exec(r.body)![1]!);
    expect(data.points).toHaveLength(96);
    expect(data.points.every((p: (number | null)[]) => p[4] !== null && p[2]! <= p[1]! && p[1]! <= p[3]!)).toBe(true);
    expect(r.body).toMatch(/96 intervals with actuals: mean absolute error [\d.]+ kWh, \d+ of 96 inside the interval/);
  });

  it('explains too little history instead of failing', async () => {
    const r = await get('/forecast?nb=nb-west&date=2024-06-04');
    expect(r.statusCode).toBe(200);
    expect(r.body).toMatch(/data-testid="forecast-problem">a forecast needs at least two days/);
  });
});
