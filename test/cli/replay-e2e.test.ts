/**
 * The end-to-end mode's contract from outside (issue 12): `replay --e2e` runs every component in this process
 * (meters, gateways, broker, the blind PES, the guardian, the combining MDMS), accounts for every reading, and
 * the MDMS export equals, byte for byte, the classic replay's export of the same fleet (two tariff bands, a
 * neighbourhood under k that neither mode may release).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replay, type ReplaySummary } from '../../cli/replay.js';
import { parseTariff } from '../../lib/tariff.js';
import { exportCsv } from '../../mdms/export.js';
import { openStore } from '../../mdms/store/index.js';

const TARIFF = parseTariff({ tz: 'UTC', bands: [{ name: 'night', rules: [{ days: [1, 2, 3, 4, 5, 6, 7], from: '00:00', to: '07:00' }] }, { name: 'day', default: true }] });
const FLEET = ['meter,household,neighbourhood,source', ...[1, 2, 3, 4].map((i) => `m${i},hh-${i},nb-1,synthetic:${i}`), 'm5,hh-5,nb-2,synthetic:5', 'm6,hh-5,nb-2,synthetic:6'].join('\n') + '\n';

describe('replay --e2e', () => {
  let dir: string;
  const runs: Record<'classic' | 'e2e', { summary: ReplaySummary; neighbourhood: string; billing: string }> = {} as never;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sm-replay-e2e-'));
    writeFileSync(join(dir, 'fleet.csv'), FLEET);
    for (const mode of ['classic', 'e2e'] as const) {
      const db = join(dir, `${mode}.sqlite`);
      const summary = await replay({ fleetCsv: join(dir, 'fleet.csv'), db, intervalS: 3600, billing: '1d', k: 3, tz: 'UTC', latenessS: 1800, tariff: TARIFF, start: 1_704_067_200, days: 1, paillierBits: 1024, e2e: mode === 'e2e' });
      const store = await openStore(db);
      try {
        runs[mode] = { summary, neighbourhood: await exportCsv(store, 'neighbourhood'), billing: await exportCsv(store, 'billing') };
      } finally {
        await store.close();
      }
    }
  }, 240_000);

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('accounts for every reading in both modes', () => {
    for (const r of Object.values(runs)) {
      expect(r.summary.problems).toEqual([]);
      expect(r.summary.ok).toBe(true);
      expect(r.summary.readings).toBe(6 * 1440);
    }
  });

  it('exports exactly what the classic mode exports', () => {
    expect(runs.e2e.neighbourhood).toBe(runs.classic.neighbourhood);
    expect(runs.e2e.billing).toBe(runs.classic.billing);
    expect(runs.e2e.neighbourhood.trim().split('\n')).toHaveLength(1 + 24); // nb-1's hours; nb-2 (2 meters < k) never
    expect(runs.e2e.neighbourhood).not.toContain('nb-2');
    expect(runs.e2e.billing.trim().split('\n')).toHaveLength(1 + 5 * 2); // a row per household and band
  });
});
