/**
 * The store suite, run unchanged against SQLite (temp file) and PostgreSQL (a schema per test, dropped after;
 * skipped outside CI when PostgreSQL is down, failing in CI).
 */
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { CSV_HEADERS, exportCsv, csvLines, isoTime } from '../../mdms/export.js';
import { SCHEMA_VERSION } from '../../mdms/store/index.js';
import { BACKENDS, billingAgg, nbAgg, type Backend } from './helpers.js';

const T0 = 1_714_521_600; // 2024-05-01T00:00:00Z

describe.each(BACKENDS)('store on $name', (backend: Backend) => {
  let cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups = [];
  });
  const open = async (opts = {}) => {
    const h = await backend.open(opts);
    cleanups.push(h.cleanup);
    return h;
  };

  describe.skipIf(!backend.enabled)(backend.name, () => {
    it('migrates to the current schema version once, and refuses a newer database', async () => {
      const h = await open();
      expect(await h.store.schemaVersion()).toBe(SCHEMA_VERSION);
      const again = await h.reopen();
      const dump = await again.dump();
      expect(dump.schema_version).toHaveLength(SCHEMA_VERSION);
      expect(Object.keys(dump).sort()).toEqual(['billing_aggregate', 'e2e_pending', 'ingest_policy', 'neighbourhood_aggregate', 'pes_policy', 'schema_version']);
      // A database written by a newer MDMS.
      if (backend.name === 'sqlite') {
        const raw = new Database(h.db);
        raw.prepare('INSERT INTO schema_version (version, description, applied_at_ms) VALUES (?, ?, ?)').run(SCHEMA_VERSION + 1, 'future', 0);
        raw.close();
      } else {
        await (again as unknown as { db: { run(s: string, p: unknown[]): Promise<number> } }).db.run(
          'INSERT INTO schema_version (version, description, applied_at_ms) VALUES (?, ?, ?)',
          [SCHEMA_VERSION + 1, 'future', 0],
        );
      }
      await expect(h.reopen()).rejects.toThrow(/newer than this MDMS understands/);
    });

    it('stores an aggregate delivered twice once', async () => {
      const { store } = await open();
      expect(await store.insertNeighbourhood(nbAgg())).toBe('stored');
      expect(await store.insertNeighbourhood(nbAgg())).toBe('duplicate');
      expect(await store.insertBilling(billingAgg())).toBe('stored');
      // Same content, bands in another order: still the same aggregate.
      expect(await store.insertBilling(billingAgg({ bands: { offpeak: 4500, peak: 3000 } }))).toBe('duplicate');
      const dump = await store.dump();
      expect(dump.neighbourhood_aggregate).toHaveLength(1);
      expect(dump.billing_aggregate).toHaveLength(2);
    });

    it('keeps the first of two different aggregates with the same revision and reports the conflict', async () => {
      const { store } = await open();
      await store.insertNeighbourhood(nbAgg({ energyWh: 10 }));
      expect(await store.insertNeighbourhood(nbAgg({ energyWh: 11 }))).toBe('conflict');
      expect(await store.insertNeighbourhood(nbAgg({ energyWh: 10, meters: 6 }))).toBe('conflict');
      expect((await store.latestNeighbourhood()).map((r) => r.energyWh)).toEqual([10]);
      await store.insertBilling(billingAgg());
      expect(await store.insertBilling(billingAgg({ bands: { peak: 3000 } }))).toBe('conflict');
      expect(await store.insertBilling(billingAgg({ bands: { peak: 3000, offpeak: 4500, night: 1 } }))).toBe('conflict');
      expect(await store.insertBilling(billingAgg({ bands: { peak: 3000, offpeak: 4501 } }))).toBe('conflict');
      expect(await store.insertBilling(billingAgg({ end: T0 + 2 * 86_400 }))).toBe('conflict');
      expect((await store.dump()).billing_aggregate).toHaveLength(2);
    });

    it('serves the highest revision as latest and keeps every revision, whatever order they arrive in', async () => {
      const { store } = await open();
      expect(await store.insertNeighbourhood(nbAgg({ revision: 0, energyWh: 100, meters: 4 }))).toBe('stored');
      expect(await store.insertNeighbourhood(nbAgg({ revision: 2, energyWh: 120, meters: 6 }))).toBe('revision');
      expect(await store.insertNeighbourhood(nbAgg({ revision: 1, energyWh: 110, meters: 5 }))).toBe('revision');
      const latest = await store.latestNeighbourhood();
      expect(latest).toHaveLength(1);
      expect(latest[0]).toMatchObject({ neighbourhood: 'nb1', start: T0, end: T0 + 900, revision: 2, meters: 6, energyWh: 120 });
      const history = await store.revisions({ kind: 'neighbourhood', neighbourhood: 'nb1', start: T0 });
      expect(history.map((r) => [r.revision, r.energyWh])).toEqual([
        [0, 100],
        [1, 110],
        [2, 120],
      ]);

      // Billing: the latest revision's bands only (a band dropped by a revision is gone from "latest").
      expect(await store.insertBilling(billingAgg({ revision: 0, bands: { peak: 1, offpeak: 2 } }))).toBe('stored');
      expect(await store.insertBilling(billingAgg({ revision: 1, bands: { flat: 5 } }))).toBe('revision');
      expect((await store.latestBilling()).map((r) => [r.band, r.revision, r.energyWh])).toEqual([['flat', 1, 5]]);
      const bh = await store.revisions({ kind: 'billing', household: 'hh1', start: T0 });
      expect(bh.map((r) => [r.revision, r.band, r.energyWh])).toEqual([
        [0, 'offpeak', 2],
        [0, 'peak', 1],
        [1, 'flat', 5],
      ]);
    });

    it('stores one billing row per band, every one in the same transaction', async () => {
      const { store } = await open({ now: () => 1_700_000_000_123 });
      const bands = { a: 1, b: 0, c: -5, d: 2 ** 40 };
      await store.insertBilling(billingAgg({ bands }));
      const rows = await store.latestBilling({ household: 'hh1' });
      expect(rows.map((r) => [r.band, r.energyWh])).toEqual(Object.entries(bands));
      for (const r of rows) {
        expect(r).toMatchObject({ household: 'hh1', start: T0, end: T0 + 86_400, revision: 0, receivedAtMs: 1_700_000_000_123 });
        expect(typeof r.energyWh).toBe('number');
      }
    });

    it('returns integers as numbers (BIGINT included) and rejects non-integers before writing', async () => {
      const { store } = await open();
      const big = 2 ** 52 + 1;
      await store.insertNeighbourhood(nbAgg({ energyWh: big }));
      const [r] = await store.latestNeighbourhood();
      expect(r!.energyWh).toBe(big);
      await expect(store.insertNeighbourhood(nbAgg({ start: T0 + 900, energyWh: 1.5 }))).rejects.toThrow(/integers/);
      await expect(store.insertBilling(billingAgg({ bands: { x: 0.1 } }))).rejects.toThrow(/integers/);
      expect(await store.latestNeighbourhood()).toHaveLength(1);
    });

    it('filters by key and period overlap, and pages with after/limit exactly like one full read', async () => {
      const { store } = await open();
      for (const nb of ['nb2', 'nb1']) {
        for (let i = 5; i >= 0; i--) await store.insertNeighbourhood(nbAgg({ key: nb, start: T0 + i * 900, energyWh: i }));
      }
      for (const hh of ['hh2', 'hh1']) {
        for (let d = 0; d < 3; d++) await store.insertBilling(billingAgg({ key: hh, start: T0 + d * 86_400, bands: { x: d, y: d + 1 } }));
      }
      const all = await store.latestNeighbourhood();
      expect(all.map((r) => `${r.neighbourhood}@${r.start - T0}`)).toEqual([
        ...[0, 900, 1800, 2700, 3600, 4500].map((s) => `nb1@${s}`),
        ...[0, 900, 1800, 2700, 3600, 4500].map((s) => `nb2@${s}`),
      ]);
      // [from, to) overlap: periods ending after `from` and starting before `to`.
      const win = await store.latestNeighbourhood({ neighbourhood: 'nb2', from: T0 + 900, to: T0 + 2700 });
      expect(win.map((r) => r.start - T0)).toEqual([900, 1800]);
      for (const limit of [1, 4, 5, 100]) {
        const paged = [];
        let after: { neighbourhood: string; start: number } | undefined;
        for (;;) {
          const page = await store.latestNeighbourhood({ after, limit });
          if (!page.length) break;
          paged.push(...page);
          after = { neighbourhood: page.at(-1)!.neighbourhood, start: page.at(-1)!.start };
        }
        expect(paged).toEqual(all);
      }
      const billing = await store.latestBilling();
      expect(billing).toHaveLength(12);
      const firstTwo = await store.latestBilling({ limit: 2 });
      expect(firstTwo.map((r) => `${r.household}@${(r.start - T0) / 86_400}:${r.band}`)).toEqual(['hh1@0:x', 'hh1@0:y', 'hh1@1:x', 'hh1@1:y']);
      const rest = await store.latestBilling({ after: { household: 'hh1', start: T0 + 86_400 } });
      expect([...firstTwo, ...rest]).toEqual(billing);
      expect((await store.latestBilling({ household: 'hh2', from: T0 + 86_400 + 1 })).map((r) => r.start)).toEqual([
        T0 + 86_400,
        T0 + 86_400,
        T0 + 2 * 86_400,
        T0 + 2 * 86_400,
      ]);
      await expect(store.latestBilling({ limit: 0 })).rejects.toThrow(/limit/);
      await expect(store.latestNeighbourhood({ from: 1.5 })).rejects.toThrow(/from/);
    });

    it('lists neighbourhoods and households, sorted byte-wise', async () => {
      const { store } = await open();
      for (const nb of ['nb10', 'nb2', 'NB3', 'nb1']) await store.insertNeighbourhood(nbAgg({ key: nb }));
      for (const hh of ['hh_b', 'hh-a', 'HH9']) await store.insertBilling(billingAgg({ key: hh }));
      expect(await store.listNeighbourhoods()).toEqual(['NB3', 'nb1', 'nb10', 'nb2']);
      expect(await store.listHouseholds()).toEqual(['HH9', 'hh-a', 'hh_b']);
    });

    it('survives concurrent deliveries of the same aggregate: exactly one is stored', async () => {
      const { store } = await open();
      const outcomes = await Promise.all([
        ...Array.from({ length: 6 }, () => store.insertBilling(billingAgg())),
        ...Array.from({ length: 6 }, () => store.insertNeighbourhood(nbAgg())),
      ]);
      expect(outcomes.filter((o) => o === 'stored')).toHaveLength(2);
      expect(outcomes.filter((o) => o === 'duplicate')).toHaveLength(10);
      expect((await store.dump()).billing_aggregate).toHaveLength(2);
    });

    it('exports the latest revisions as CSV with the exact headers, ISO 8601 UTC times, sorted by key then start (then band)', async () => {
      const { store } = await open();
      // Inserted out of order, with superseded revisions.
      await store.insertNeighbourhood(nbAgg({ key: 'nb2', start: T0 + 900, meters: 7, energyWh: 70 }));
      await store.insertNeighbourhood(nbAgg({ key: 'nb10', start: T0, meters: 3, energyWh: 30 }));
      await store.insertNeighbourhood(nbAgg({ key: 'nb2', start: T0, meters: 7, energyWh: 1 }));
      await store.insertNeighbourhood(nbAgg({ key: 'nb2', start: T0, revision: 3, meters: 8, energyWh: 81 }));
      await store.insertBilling(billingAgg({ key: 'hh2', start: T0, bands: { peak: 5, offpeak: 6 } }));
      await store.insertBilling(billingAgg({ key: 'hh1', start: T0 + 86_400, bands: { offpeak: 1, peak: 2, night: 3 } }));
      await store.insertBilling(billingAgg({ key: 'hh1', start: T0, bands: { peak: 9 } }));
      await store.insertBilling(billingAgg({ key: 'hh1', start: T0, revision: 1, bands: { peak: 10, offpeak: 11 } }));

      expect(await exportCsv(store, 'neighbourhood')).toBe(
        [
          'neighbourhood,start,end,meters,energy_wh,export_wh',
          'nb10,2024-05-01T00:00:00Z,2024-05-01T00:15:00Z,3,30,0',
          'nb2,2024-05-01T00:00:00Z,2024-05-01T00:15:00Z,8,81,0',
          'nb2,2024-05-01T00:15:00Z,2024-05-01T00:30:00Z,7,70,0',
          '',
        ].join('\n'),
      );
      expect(await exportCsv(store, 'billing')).toBe(
        [
          'household,start,end,band,energy_wh,export_wh',
          'hh1,2024-05-01T00:00:00Z,2024-05-02T00:00:00Z,offpeak,11,0',
          'hh1,2024-05-01T00:00:00Z,2024-05-02T00:00:00Z,peak,10,0',
          'hh1,2024-05-02T00:00:00Z,2024-05-03T00:00:00Z,night,3,0',
          'hh1,2024-05-02T00:00:00Z,2024-05-03T00:00:00Z,offpeak,1,0',
          'hh1,2024-05-02T00:00:00Z,2024-05-03T00:00:00Z,peak,2,0',
          'hh2,2024-05-01T00:00:00Z,2024-05-02T00:00:00Z,offpeak,6,0',
          'hh2,2024-05-01T00:00:00Z,2024-05-02T00:00:00Z,peak,5,0',
          '',
        ].join('\n'),
      );
      // Paging (page of one period) changes nothing.
      for (const what of ['neighbourhood', 'billing'] as const) {
        let paged = '';
        for await (const l of csvLines(store, what, 1)) paged += l;
        expect(paged).toBe(await exportCsv(store, what));
      }
    });

    it('stores export and the DP ledger beside import; a re-delivery is a duplicate, any other body at the same revision a conflict', async () => {
      const { store } = await open();
      const dp = { epsilon: 0.1, spent: 2.7000000000000006 }; // a float sum, kept exactly
      const nb = nbAgg({ energyWh: 812, exportWh: 2_000_000_000_001, dp });
      expect(await store.insertNeighbourhood(nb)).toBe('stored');
      expect(await store.insertNeighbourhood({ ...nb, dp: { ...dp } })).toBe('duplicate');
      for (const other of [{ exportWh: 2_000_000_000_002 }, { exportWh: undefined }, { dp: undefined }, { dp: { epsilon: 0.1, spent: 2.7 } }, { dp: { epsilon: 0.2, spent: 2.7000000000000006 } }]) {
        expect(await store.insertNeighbourhood({ ...nb, ...other }), JSON.stringify(other)).toBe('conflict');
      }
      // Absent export is export 0: a body with `exportWh: 0` is the same content.
      expect(await store.insertNeighbourhood(nbAgg({ start: T0 + 900 }))).toBe('stored');
      expect(await store.insertNeighbourhood(nbAgg({ start: T0 + 900, exportWh: 0 }))).toBe('duplicate');
      expect(await store.insertNeighbourhood(nbAgg({ start: T0 + 900, revision: 1, exportWh: 7, dp: { epsilon: 0.1, spent: 2.8 } }))).toBe('revision');
      const latest = await store.latestNeighbourhood();
      expect(latest.map((r) => [r.start - T0, r.revision, r.energyWh, r.exportWh, r.dp])).toEqual([
        [0, 0, 812, 2_000_000_000_001, dp],
        [900, 1, nbAgg().energyWh, 7, { epsilon: 0.1, spent: 2.8 }],
      ]);
      expect((await store.revisions({ kind: 'neighbourhood', neighbourhood: 'nb1', start: T0 + 900 })).map((r) => [r.exportWh, r.dp])).toEqual([
        [0, null],
        [7, { epsilon: 0.1, spent: 2.8 }],
      ]);
      await expect(store.insertNeighbourhood(nbAgg({ start: T0 + 1800, exportWh: 1.5 }))).rejects.toThrow(/integers/);
      await expect(store.insertNeighbourhood(nbAgg({ start: T0 + 1800, dp: { epsilon: 1, spent: 0.5 } }))).rejects.toThrow(/DP ledger/);
      await expect(store.insertNeighbourhood(nbAgg({ start: T0 + 1800, dp: { epsilon: NaN, spent: 1 } }))).rejects.toThrow(/DP ledger/);

      // Billing: export per band, including a band that only exports (stored with import 0).
      const b = billingAgg({ bands: { peak: 3000, offpeak: 4500 }, exportBands: { peak: 1200, shoulder: 5 } });
      expect(await store.insertBilling(b)).toBe('stored');
      expect(await store.insertBilling(billingAgg({ bands: { offpeak: 4500, peak: 3000, shoulder: 0 }, exportBands: { shoulder: 5, peak: 1200, offpeak: 0 } }))).toBe('duplicate');
      for (const exportBands of [undefined, {}, { peak: 1200 }, { peak: 1201, shoulder: 5 }, { peak: 1200, shoulder: 5, offpeak: 1 }] as (Record<string, number> | undefined)[]) {
        expect(await store.insertBilling(billingAgg({ bands: b.bands, exportBands })), JSON.stringify(exportBands)).toBe('conflict');
      }
      expect((await store.latestBilling()).map((r) => [r.band, r.energyWh, r.exportWh])).toEqual([
        ['offpeak', 4500, 0],
        ['peak', 3000, 1200],
        ['shoulder', 0, 5],
      ]);
      // A body without exportBands and one with zeros are one content.
      expect(await store.insertBilling(billingAgg({ key: 'hh2' }))).toBe('stored');
      expect(await store.insertBilling(billingAgg({ key: 'hh2', exportBands: {} }))).toBe('duplicate');
      expect(await store.insertBilling(billingAgg({ key: 'hh2', exportBands: { peak: 0 } }))).toBe('duplicate');
      await expect(store.insertBilling(billingAgg({ key: 'hh3', exportBands: { peak: 0.5 } }))).rejects.toThrow(/integers/);
      expect(await exportCsv(store, 'billing')).toBe(
        [
          CSV_HEADERS.billing,
          'hh1,2024-05-01T00:00:00Z,2024-05-02T00:00:00Z,offpeak,4500,0',
          'hh1,2024-05-01T00:00:00Z,2024-05-02T00:00:00Z,peak,3000,1200',
          'hh1,2024-05-01T00:00:00Z,2024-05-02T00:00:00Z,shoulder,0,5',
          'hh2,2024-05-01T00:00:00Z,2024-05-02T00:00:00Z,offpeak,4500,0',
          'hh2,2024-05-01T00:00:00Z,2024-05-02T00:00:00Z,peak,3000,0',
          '',
        ].join('\n'),
      );
      expect((await exportCsv(store, 'neighbourhood')).split('\n').slice(0, 2)).toEqual([CSV_HEADERS.neighbourhood, 'nb1,2024-05-01T00:00:00Z,2024-05-01T00:15:00Z,5,812,2000000000001']);
    });

    it('adds export (0) and an empty ledger to rows stored before schema v2, keeping every row', async () => {
      const h = await open();
      // Take the database back to version 1 (the same SQL on both back ends), with a row of each kind.
      const db = (h.store as unknown as { db: { exec(s: string): Promise<void>; run(s: string, p: unknown[]): Promise<number> } }).db;
      await db.exec(
        'DROP TABLE e2e_pending; DROP TABLE pes_policy; DROP TABLE ingest_policy; DELETE FROM schema_version WHERE version > 1; ' +
          'ALTER TABLE neighbourhood_aggregate DROP COLUMN dp_spent; ALTER TABLE neighbourhood_aggregate DROP COLUMN dp_epsilon; ' +
          'ALTER TABLE neighbourhood_aggregate DROP COLUMN export_wh; ALTER TABLE billing_aggregate DROP COLUMN export_wh;',
      );
      await db.run('INSERT INTO neighbourhood_aggregate (neighbourhood, start_s, end_s, revision, meters, energy_wh, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)', ['nb1', T0, T0 + 900, 0, 5, 77, 1]);
      await db.run('INSERT INTO billing_aggregate (household, start_s, end_s, band, revision, energy_wh, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)', ['hh1', T0, T0 + 86_400, 'flat', 0, 88, 1]);
      await h.store.close();
      const upgraded = await h.reopen();
      expect(await upgraded.schemaVersion()).toBe(SCHEMA_VERSION);
      expect(await upgraded.latestNeighbourhood()).toEqual([expect.objectContaining({ energyWh: 77, exportWh: 0, dp: null })]);
      expect(await upgraded.latestBilling()).toEqual([expect.objectContaining({ band: 'flat', energyWh: 88, exportWh: 0 })]);
      // The old rows re-delivered by the PES (no export field) are still duplicates.
      expect(await upgraded.insertNeighbourhood(nbAgg({ energyWh: 77 }))).toBe('duplicate');
      expect(await upgraded.insertBilling(billingAgg({ end: T0 + 86_400, bands: { flat: 88 } }))).toBe('duplicate');
      // The database itself refuses half a ledger.
      const raw = (upgraded as unknown as { db: { run(s: string, p: unknown[]): Promise<number> } }).db;
      await expect(raw.run('INSERT INTO neighbourhood_aggregate (neighbourhood, start_s, end_s, revision, meters, energy_wh, dp_epsilon, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', ['nb9', T0, T0 + 900, 0, 5, 1, 0.5, 1])).rejects.toThrow(/CHECK|check constraint/i);
    });

    it('keeps an end-to-end half waiting once, bytes intact, oldest first, until it is dropped', async () => {
      let t = 1_700_000_000_000;
      const { store } = await open({ now: () => t++ });
      const half = { ciphertextId: 'ab01', half: 'release' as const, topic: 'sm/v1/agg/neighbourhood/nb1', payload: Buffer.from([0, 1, 254, 255]) };
      await store.holdHalf(half);
      await store.holdHalf(half); // redelivered
      await store.holdHalf({ ...half, half: 'partial', topic: 'sm/v1/partial/neighbourhood/nb1' });
      const waiting = await store.pendingHalves();
      expect(waiting.map((h) => [h.ciphertextId, h.half, h.topic, Buffer.from(h.payload).toString('hex')])).toEqual([
        ['ab01', 'release', 'sm/v1/agg/neighbourhood/nb1', '0001feff'],
        ['ab01', 'partial', 'sm/v1/partial/neighbourhood/nb1', '0001feff'],
      ]);
      await store.dropHalf('ab01', 'release');
      expect((await store.pendingHalves()).map((h) => h.half)).toEqual(['partial']);
      await expect(store.holdHalf({ ...half, ciphertextId: 'not hex' })).rejects.toThrow(/hex/);
      await expect(store.holdHalf({ ...half, half: 'other' as 'release' })).rejects.toThrow(/release, partial or combined/);
    });

    it('prunes the combined markers and waiting halves that arrived before the retention, and only those', async () => {
      let t = 1_700_000_000_000;
      const { store } = await open({ now: () => t });
      const h = (ciphertextId: string, half: 'release' | 'partial' | 'combined') => ({ ciphertextId, half, topic: `sm/v1/agg/neighbourhood/${ciphertextId}`, payload: Buffer.from([1]) });
      await store.holdHalf(h('aa', 'combined'));
      await store.holdHalf(h('bb', 'release')); // an orphan: its partial never comes
      t += 10_000;
      await store.holdHalf(h('cc', 'combined'));
      await store.holdHalf(h('dd', 'partial'));
      t += 5_000;
      const gone = await store.pruneHalves(10_000); // before t - 10 s: the first two
      expect(gone.sort((a, b) => a.ciphertextId.localeCompare(b.ciphertextId))).toEqual([
        { ciphertextId: 'aa', half: 'combined', topic: 'sm/v1/agg/neighbourhood/aa' },
        { ciphertextId: 'bb', half: 'release', topic: 'sm/v1/agg/neighbourhood/bb' },
      ]);
      expect((await store.pendingHalves()).map((x) => x.ciphertextId)).toEqual(['cc', 'dd']);
      expect(await store.pruneHalves(10_000)).toEqual([]);
      await expect(store.pruneHalves(-1)).rejects.toThrow(/olderThanMs/);
      await expect(store.pruneHalves(1.5)).rejects.toThrow(/olderThanMs/);
    });

    it('keeps the newest policy statement of each PES', async () => {
      const { store } = await open({ now: () => 1_700_000_000_500 });
      const p = { kind: 'policy' as const, key: 'pes', at: 1_700_000_000, k: 20, revisionK: 5, membershipGuard: true, counters: { revisionHeld: 3, membershipHeld: 1 } };
      expect(await store.insertPolicy(p)).toBe('stored');
      expect(await store.insertPolicy({ ...p, counters: { membershipHeld: 1, revisionHeld: 3 } })).toBe('duplicate');
      expect(await store.insertPolicy({ ...p, counters: { revisionHeld: 4, membershipHeld: 1 } })).toBe('conflict');
      expect(await store.insertPolicy({ ...p, at: p.at - 60, k: 1 })).toBe('stale');
      expect(await store.insertPolicy({ ...p, at: p.at + 60, dpEpsilon: 0.5, counters: { revisionHeld: 9, membershipHeld: 2, dpReleases: 96 } })).toBe('stored');
      expect(await store.insertPolicy({ ...p, key: 'pes-b', membershipGuard: false, counters: {} })).toBe('stored');
      expect(await store.policies()).toEqual([
        { pes: 'pes', at: p.at + 60, k: 20, revisionK: 5, membershipGuard: true, dpEpsilon: 0.5, counters: { dpReleases: 96, membershipHeld: 2, revisionHeld: 9 }, receivedAtMs: 1_700_000_000_500 },
        { pes: 'pes-b', at: p.at, k: 20, revisionK: 5, membershipGuard: false, counters: {}, receivedAtMs: 1_700_000_000_500 },
      ]);
      await expect(store.insertPolicy({ ...p, at: 1.5 })).rejects.toThrow(/integers/);
      await expect(store.insertPolicy({ ...p, dpEpsilon: Infinity })).rejects.toThrow(/dpEpsilon/);
      // The ingest's own policy: one record, replaced.
      expect(await store.ingestPolicy()).toBeNull();
      await store.recordIngestPolicy({ k: 3, minBillingPeriodS: 86_400, fleetChecked: false });
      await store.recordIngestPolicy({ k: 20, minBillingPeriodS: 28 * 86_400, fleetChecked: true });
      expect(await store.ingestPolicy()).toEqual({ k: 20, minBillingPeriodS: 28 * 86_400, fleetChecked: true, recordedAtMs: 1_700_000_000_500 });
    });

    it('sums the DP budget per neighbourhood from the ledgers of its releases, revisions included', async () => {
      const { store } = await open();
      const eps = 0.25;
      // nb1: two days of hourly noised releases (48), one revised (a release too); nb2: no noise; nb3: one release.
      let spent = 0;
      for (let i = 0; i < 48; i++) {
        spent += eps;
        await store.insertNeighbourhood(nbAgg({ key: 'nb1', start: T0 + i * 3600, dp: { epsilon: eps, spent } }));
      }
      spent += eps;
      await store.insertNeighbourhood(nbAgg({ key: 'nb1', start: T0 + 40 * 3600, revision: 1, dp: { epsilon: eps, spent } }));
      await store.insertNeighbourhood(nbAgg({ key: 'nb2' }));
      await store.insertNeighbourhood(nbAgg({ key: 'nb3', dp: { epsilon: 2, spent: 2 } }));
      const lastEnd = T0 + 47 * 3600 + 900;
      expect(await store.dpBudgets()).toEqual([
        { neighbourhood: 'nb1', spent: 49 * eps, epsilon: eps, releases: 49, lastEnd, releasesLastDay: 25, epsilonLastDay: 25 * eps },
        { neighbourhood: 'nb3', spent: 2, epsilon: 2, releases: 1, lastEnd: T0 + 900, releasesLastDay: 1, epsilonLastDay: 2 },
      ]);
    });

    it('exports only the header from an empty store', async () => {
      const { store } = await open();
      expect(await exportCsv(store, 'neighbourhood')).toBe(CSV_HEADERS.neighbourhood + '\n');
      expect(await exportCsv(store, 'billing')).toBe(CSV_HEADERS.billing + '\n');
      await expect(exportCsv(store, 'meters' as never)).rejects.toThrow(/--what/);
    });
  });
});

describe('store edges', () => {
  it('formats times as ISO 8601 UTC without milliseconds', () => {
    expect(isoTime(1_714_522_500)).toBe('2024-05-01T00:15:00Z');
    expect(isoTime(0)).toBe('1970-01-01T00:00:00Z');
    expect(isoTime(253_402_300_799)).toBe('9999-12-31T23:59:59Z');
    expect(() => isoTime(1.5)).toThrow(TypeError);
  });

  it('reports an unreachable PostgreSQL clearly, without the password', async () => {
    const { openStore } = await import('../../mdms/store/index.js');
    const err = await openStore('postgres://mdms:sekret@127.0.0.1:1/test', { connectTimeoutMs: 2000 }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/cannot open the MDMS database postgres:\/\/mdms:\*\*\*@127\.0\.0\.1:1\/test: .*ECONNREFUSED/);
    expect((err as Error).message).not.toContain('sekret');
  });

  it('keeps PostgreSQL BIGINT parsing local to the store (the global pg parser is untouched)', () => {
    expect(typeof pg.types.getTypeParser(20)('12')).toBe('string');
  });

  it('rejects an empty --db', async () => {
    const { openStore } = await import('../../mdms/store/index.js');
    await expect(openStore('')).rejects.toThrow(/--db/);
  });
});

