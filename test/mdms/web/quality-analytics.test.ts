/**
 * The data-quality repository (web migration 3) on SQLite and PostgreSQL: findings recorded once per
 * (neighbourhood, window, rule) with their evidence, filtered and counted; estimates kept apart, marked, and
 * refused when negative; the store's aggregates untouched.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Finding } from '../../../mdms/analytics/quality.js';
import { openStore } from '../../../mdms/store/index.js';
import type { Store } from '../../../mdms/store/types.js';
import { openWebDb, type WebDb } from '../../../mdms/web/db.js';
import { checkNeighbourhood, checkPeers } from '../../../mdms/web/quality.js';
import { nbAgg } from '../helpers.js';
import { postgresDb, postgresReachable, sqliteDb, type TestDb } from './db-helpers.js';

const pg = await postgresReachable();
const T0 = 1_717_372_800; // 2024-06-03T00:00Z

describe.each([
  ['sqlite', true, sqliteDb],
  ['postgres', pg, postgresDb],
] as const)('quality findings on %s', (_name, available, make) => {
  let db: TestDb;
  let web: WebDb;
  let store: Store;

  beforeEach(async (ctx) => {
    if (!available) return ctx.skip();
    db = make();
    store = await openStore(db.url, db.schema ? { schema: db.schema } : {});
    web = await openWebDb(db.driver, { now: () => 1_000 });
  });
  afterEach(async () => {
    if (!available) return;
    await store.close();
    await db.cleanup();
  });

  it('records each finding once, lists and counts them; estimates are marked and never negative', async () => {
    const f = (start: number, rule: Finding['rule']): Finding => ({ neighbourhood: 'nb1', start, end: start + 900, rule, evidence: { meters: 3, note: 'x' } });
    const first = await web.quality.record([f(T0, 'gap'), f(T0, 'spike'), f(T0 + 900, 'gap')], [{ neighbourhood: 'nb1', start: T0, end: T0 + 900, energyWh: 42, method: 'same-window-yesterday' }]);
    expect(first.findings).toHaveLength(3);
    expect(first.estimates).toBe(1);
    const again = await web.quality.record([f(T0, 'gap'), f(T0 + 1800, 'flat')], [{ neighbourhood: 'nb1', start: T0, end: T0 + 900, energyWh: 43, method: 'same-window-yesterday' }]);
    expect(again.findings.map((x) => x.rule)).toEqual(['flat']);
    expect(again.estimates).toBe(0);
    expect(await web.quality.countByRule()).toEqual({ flat: 1, gap: 2, spike: 1 });
    expect((await web.quality.list({ rule: 'gap', from: T0 + 900 })).map((x) => x.start)).toEqual([T0 + 900]);
    expect((await web.quality.list({ neighbourhood: 'nb1' }))[0]).toEqual({ ...f(T0, 'gap'), detectedAtMs: 1_000 });
    expect(await web.quality.estimates('nb1')).toEqual([{ neighbourhood: 'nb1', start: T0, end: T0 + 900, energyWh: 42, method: 'same-window-yesterday', estimated: true }]);
    await expect(web.quality.record([], [{ neighbourhood: 'nb1', start: T0 + 900, end: T0 + 1800, energyWh: -1, method: 'same-window-yesterday' }])).rejects.toThrow();
  });

  it('a check flags a missing window without touching the stored aggregates', async () => {
    for (let i = 0; i < 3 * 96; i++) if (i !== 200) await store.insertNeighbourhood(nbAgg({ start: T0 + i * 900, energyWh: 1000 + (i % 96) * 10 + (i % 7) }));
    const before = await store.dump();
    const r = await checkNeighbourhood(store, web.quality, 'nb1', { fleetMeters: 5 });
    expect(r.newByRule).toEqual({ gap: 1 });
    expect(r.newFindings[0]!.start).toBe(T0 + 200 * 900);
    expect(r.newEstimates).toBe(1);
    const after = await store.dump();
    for (const table of ['neighbourhood_aggregate', 'billing_aggregate']) expect(after[table]).toEqual(before[table]);
  }, 60_000);

  it('a peer check over whole days says why it cannot judge two neighbourhoods, and judges three', async () => {
    const day = (nb: string, d: number, energyWh: number) => store.insertNeighbourhood(nbAgg({ key: nb, start: T0 + d * 86_400, end: T0 + (d + 1) * 86_400, energyWh }));
    for (let d = 0; d < 6; d++) for (const nb of ['nb1', 'nb2']) await day(nb, d, 1000 + ((d * 37) % 11) * (nb === 'nb1' ? 7 : 5));
    const two = await checkPeers(store, web.quality);
    expect(two).toEqual({ from: T0 - 22 * 86_400, to: T0 + 6 * 86_400, neighbourhoods: 2, daysJudged: 0, newFindings: [], skipped: 'fewer than 3 neighbourhoods' });
    for (let d = 0; d < 6; d++) await day('nb3', d, d === 4 ? 3000 : 2000 + ((d * 13) % 7) * 9);
    const three = await checkPeers(store, web.quality, { targets: ['nb3'] });
    expect(three.daysJudged).toBe(6);
    expect(three.newFindings.map((f) => [f.neighbourhood, f.rule, f.start])).toEqual([['nb3', 'peer-outlier', T0 + 4 * 86_400]]);
    expect((await checkPeers(store, web.quality)).newFindings).toEqual([]); // recorded once
  }, 60_000);
});
