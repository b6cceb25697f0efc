/**
 * The forecast page and API over the seeded web fixture (7 days of three neighbourhoods): shapes, the actuals
 * beside a past day's forecast, bad input (400), too little history (422), unknown neighbourhood (404), the
 * Prometheus counter. Data quality: a gap, a silent meter and a spike injected into a synthetic
 * neighbourhood's stored windows are each flagged on the right window through the API, recorded once,
 * audited and counted, the gap's estimate is kept apart and marked, and a bill is unchanged.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syntheticNeighbourhood } from '../../../bench/forecast.js';
import { nbAgg } from '../helpers.js';
import { appOf, DAY, fixture, PASSWORDS, WEEK_START, type Fixture } from './fixture.js';

let fx: Fixture;
let app: FastifyInstance;
let cookie = '';
let csrf = '';

beforeAll(async () => {
  fx = await fixture();
  app = await appOf(fx);
  await app.ready();
  const r = await app.inject({ method: 'POST', url: '/api/v1/session', payload: { username: 'analyst', password: PASSWORDS.analyst } });
  cookie = r.cookies.map((c) => `${c.name}=${c.value}`).join('; ');
  csrf = (r.json() as { csrfToken: string }).csrfToken;
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

  it("the demand page overlays the day-ahead forecast with its band on a single neighbourhood's day", async () => {
    const chart = (body: string) => JSON.parse(/<script type="application\/json" id="chart-data">([^<]*)<\/script>/.exec(body)![1]!);
    const day = await get('/neighbourhoods?nb=nb-east&range=day&date=2024-06-09');
    expect(day.statusCode).toBe(200);
    const data = chart(day.body);
    expect(data.forecast.level).toBe(0.8);
    expect(data.forecast.points.map((p: number[]) => p[0])).toEqual(data.series[0].points.map((p: number[]) => p[0]));
    expect(data.forecast.points.every((p: number[]) => p[2]! <= p[1]! && p[1]! <= p[3]!)).toBe(true);
    expect(day.body).toContain('data-testid="forecast-note"');
    expect(chart((await get('/neighbourhoods?nb=nb-east&nb=nb-west&range=day&date=2024-06-09')).body).forecast).toBeNull();
    expect(chart((await get('/neighbourhoods?nb=nb-east&range=day&date=2024-06-03')).body).forecast).toBeNull(); // no history before
  });

  it('explains too little history instead of failing', async () => {
    const r = await get('/forecast?nb=nb-west&date=2024-06-04');
    expect(r.statusCode).toBe(200);
    expect(r.body).toMatch(/data-testid="forecast-problem">a forecast needs at least two days/);
  });
});

describe('data quality', () => {
  const nb = syntheticNeighbourhood(Array.from({ length: 20 }, (_, i) => 900 + i), WEEK_START, 8);
  const [G, M, S] = [5 * 96 + 20, 6 * 96 + 40, 7 * 96 + 60];
  const at = (i: number) => new Date((WEEK_START + i * 900) * 1000).toISOString().replace('.000Z', 'Z');
  let billing = '';
  let account = '';
  const bill = async () => {
    const r = await app.inject({ url: `/api/v1/accounts/${account}/bill?from=2024-06-03&to=2024-06-10`, headers: { cookie: billing } });
    expect(r.statusCode, r.body).toBe(200);
    return r.body;
  };

  beforeAll(async () => {
    for (const [i, e] of nb.total.values.entries()) {
      if (i === G) continue; // a window the PES never released
      const meters = i === M ? 19 : 20; // a meter silent for one interval
      const energyWh = i === M ? e! - nb.households[3]!.values[i]! : i === S ? e! * 3 : e!;
      await fx.store.insertNeighbourhood(nbAgg({ key: 'nb-vee', start: WEEK_START + i * 900, end: WEEK_START + (i + 1) * 900, meters, energyWh }));
    }
    const r = await app.inject({ method: 'POST', url: '/api/v1/session', payload: { username: 'billing', password: PASSWORDS.billing } });
    billing = r.cookies.map((c) => `${c.name}=${c.value}`).join('; ');
    account = (await fx.web.accounts.byHousehold('hh01'))!.accountNumber;
  }, 60_000);

  it('flags the injected gap, silent meter and spike on their windows, once, audited and counted; bills unchanged', async () => {
    const before = await bill();
    const stored = await fx.store.latestNeighbourhood({ neighbourhood: 'nb-vee' });
    const post = () => app.inject({ method: 'POST', url: '/api/v1/quality/check', headers: { cookie, 'x-csrf-token': csrf }, payload: { neighbourhood: 'nb-vee' } });
    const r = await post();
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toEqual([{ neighbourhood: 'nb-vee', from: expect.any(String), to: at(8 * 96), windows: 8 * 96 - 1, newFindings: { gap: 1, 'meter-drop': 1, spike: 1 }, newEstimates: 1 }]);
    expect((await post()).json()[0].newFindings).toEqual({}); // recorded once

    const findings = (await get('/api/v1/quality/findings?nb=nb-vee')).json();
    expect(findings.map((f: { rule: string; start: string }) => [f.rule, f.start])).toEqual([
      ['gap', at(G)],
      ['meter-drop', at(M)],
      ['spike', at(S)],
    ]);
    expect(findings[1].evidence).toEqual({ meters: 19, expected: 20 });

    const estimates = (await get('/api/v1/quality/estimates?nb=nb-vee')).json();
    expect(estimates).toEqual([{ start: at(G), end: at(G + 1), energyWh: nb.total.values[G - 96], method: 'same-window-yesterday', estimated: true }]);

    // Nothing measured changed: the aggregates are as stored (the gap stays a gap) and the bill is the same.
    expect(await fx.store.latestNeighbourhood({ neighbourhood: 'nb-vee' })).toEqual(stored);
    expect(await bill()).toBe(before);
    expect(before).toMatch(/"energyWh":[1-9]/);

    const audit = await fx.web.audit.list({ action: 'quality.run' });
    expect(audit.find((e) => e.target === 'nb-vee')).toMatchObject({ username: 'analyst', outcome: 'ok' });
    expect(JSON.stringify(audit.map((e) => e.detail))).not.toContain(String(nb.total.values[S]! * 3));
    const m = (await app.inject({ url: '/metrics' })).body;
    for (const rule of ['gap', 'meter-drop', 'spike']) expect(m).toMatch(new RegExp(`mdms_web_quality_findings_total\\{rule="${rule}"\\} 1\\b`));
  }, 30_000);

  it('shows findings with evidence and estimates marked on the page; the form check redirects', async () => {
    const page = await get('/quality?nb=nb-vee');
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('data-testid="quality-findings"');
    expect(page.body).toMatch(/meters 19, expected 20/);
    expect(page.body).toMatch(/data-testid="quality-estimates"[\s\S]*estimated/);
    const form = await app.inject({ method: 'POST', url: '/quality/check', headers: { cookie, 'x-csrf-token': csrf, 'content-type': 'application/x-www-form-urlencoded' }, payload: 'nb=nb-vee&from=&to=' });
    expect(form.statusCode, form.body).toBe(303);
    expect(form.headers.location).toBe('/quality?nb=nb-vee&checked=0');
    expect((await app.inject({ method: 'POST', url: '/api/v1/quality/check', headers: { cookie, 'x-csrf-token': csrf }, payload: { neighbourhood: 'nowhere' } })).statusCode).toBe(404);
    expect((await app.inject({ method: 'POST', url: '/api/v1/quality/check', headers: { cookie, 'x-csrf-token': csrf }, payload: { neighbourhood: 'nb-vee', from: '2024-01-01', to: '2024-06-10' } })).statusCode).toBe(400);
    expect((await get('/api/v1/quality/findings?rule=bogus')).statusCode).toBe(400);
  });
});

describe('anomalies across neighbourhoods', () => {
  // Four synthetic neighbourhoods of 20 households, three weeks of 3-hour windows from Monday 1 July 2024
  // (London midnight; the fixture's own data ends in June): nb-step rises 40 % from day 10, nb-odd has one
  // day at 1.6 times its usual, nb-calm-a and nb-calm-b are left alone.
  const JULY = WEEK_START + 28 * DAY;
  const STEP = 3 * 3600;
  const names = ['nb-step', 'nb-odd', 'nb-calm-a', 'nb-calm-b'];
  const day = (d: number) => new Date((JULY + d * DAY) * 1000).toISOString().replace('.000Z', 'Z');
  type Row = { rule: string; neighbourhood: string; start: string; end: string; evidence: Record<string, number | string> };

  beforeAll(async () => {
    for (const [k, key] of names.entries()) {
      const nb = syntheticNeighbourhood(Array.from({ length: 20 }, (_, i) => 7000 + 100 * k + i), JULY, 21, STEP);
      for (const [i, e] of nb.total.values.entries()) {
        const d = Math.floor((i * STEP) / DAY);
        const energyWh = key === 'nb-step' && d >= 10 ? Math.round(e! * 1.4) : key === 'nb-odd' && d === 15 ? Math.round(e! * 1.6) : e!;
        await fx.store.insertNeighbourhood(nbAgg({ key, start: JULY + i * STEP, end: JULY + (i + 1) * STEP, meters: 20, energyWh }));
      }
    }
  }, 60_000);

  it('finds the step as a change point and the odd day as a peer outlier, with evidence; audited and counted', async () => {
    const r = await app.inject({ method: 'POST', url: '/api/v1/quality/check', headers: { cookie, 'x-csrf-token': csrf }, payload: { from: '2024-07-01', to: '2024-07-22' } });
    expect(r.statusCode, r.body).toBe(200);
    const byNb = Object.fromEntries((r.json() as { neighbourhood: string; newFindings: Record<string, number> }[]).map((x) => [x.neighbourhood, x.newFindings]));
    expect(names.map((n) => byNb[n])).toEqual([{ changepoint: 1 }, { 'peer-outlier': 1 }, {}, {}]);

    const found = (await get('/api/v1/quality/findings?from=2024-07-01&to=2024-07-22')).json() as Row[];
    expect(found.map((f) => [f.neighbourhood, f.rule, f.start, f.end])).toEqual([
      ['nb-step', 'changepoint', day(10), day(11)],
      ['nb-odd', 'peer-outlier', day(15), day(16)],
    ]);
    const odd = found[1]!.evidence;
    expect(odd).toMatchObject({ days: 1, peers: 'nb-calm-a nb-calm-b nb-step' });
    expect(odd.score as number).toBeGreaterThan(5.7);
    expect(odd.departurePct as number).toBeGreaterThan(40);
    expect(found[0]!.evidence).toMatchObject({ beforeDays: 10, afterDays: 11 });

    const audit = await fx.web.audit.list({ action: 'quality.anomaly' });
    expect(audit.map((e) => [e.target, e.detail.rule, e.detail.start]).sort()).toEqual([
      ['nb-odd', 'peer-outlier', day(15)],
      ['nb-step', 'changepoint', day(10)],
    ]);
    for (const e of audit) expect(Object.keys(e.detail).filter((k) => k.endsWith('Wh'))).toEqual([]);
    expect(audit.find((e) => e.target === 'nb-odd')!.detail).toMatchObject({ score: odd.score, peers: odd.peers, days: 1 });
    const m = (await app.inject({ url: '/metrics' })).body;
    expect(m).toMatch(/mdms_web_quality_findings_total\{rule="peer-outlier"\} 1\b/);
    expect(m).toMatch(/mdms_web_quality_findings_total\{rule="changepoint"\} 1\b/);
    expect(m).toMatch(/mdms_web_peer_checks_total\{outcome="ok"\} [1-9]/);

    // Checking one neighbourhood again compares it with the same peers and records nothing twice.
    const again = await app.inject({ method: 'POST', url: '/api/v1/quality/check', headers: { cookie, 'x-csrf-token': csrf }, payload: { neighbourhood: 'nb-odd', from: '2024-07-01', to: '2024-07-22' } });
    expect(again.json()).toMatchObject([{ neighbourhood: 'nb-odd', newFindings: {} }]);
  }, 60_000);

  it('shows them on the Data quality page with their evidence', async () => {
    const page = await get('/quality?nb=nb-odd&rule=peer-outlier');
    expect(page.statusCode).toBe(200);
    expect(page.body).toMatch(/<td>nb-odd<\/td><td>[^<]*<\/td><td><span class="badge">peer-outlier<\/span><\/td><td>score [\d.]+, departurePct [\d.]+, bandLowPct -?[\d.]+, bandHighPct [\d.]+, days 1, peers nb-calm-a nb-calm-b nb-step<\/td>/);
    expect(page.body).toContain('departs from the other neighbourhoods on the same days');
  });
});
