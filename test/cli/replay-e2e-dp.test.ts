/**
 * Differential privacy in the end-to-end mode (issue 13, docs/privacy.md): `replay --e2e --dp-epsilon 1` runs
 * the meters' noise shares through the blind PES, the guardian and the combining MDMS. Bills stay exact (every
 * household's billed energy equals its register deltas), while every neighbourhood window is noised: integer,
 * never negative, the DP ledger on each, and export windows, whose true value is 0 (no panels), mostly not 0.
 * With `--dp-budget 20` (epsilon 1 per hourly window) the day's last 4 windows are withheld by the PES, and the
 * guardian, which keeps its own ledger, would refuse them too.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replay, type ReplaySummary } from '../../cli/replay.js';
import { openStore } from '../../mdms/store/index.js';
import type { NeighbourhoodRow } from '../../mdms/store/types.js';

const FLEET = ['meter,household,neighbourhood,source', ...[1, 2, 3, 4].map((i) => `m${i},hh-${i},nb-1,synthetic:${i}`)].join('\n') + '\n';

describe('replay --e2e --dp-epsilon', () => {
  let dir: string;
  let summary: ReplaySummary;
  let rows: NeighbourhoodRow[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sm-replay-e2e-dp-'));
    writeFileSync(join(dir, 'fleet.csv'), FLEET);
    const db = join(dir, 'e2e.sqlite');
    summary = await replay({ fleetCsv: join(dir, 'fleet.csv'), db, intervalS: 3600, billing: '1d', k: 3, tz: 'UTC', latenessS: 1800, start: 1_704_067_200, days: 1, paillierBits: 1024, e2e: true, dpEpsilon: 1, dpBudget: 20 });
    const store = await openStore(db);
    try {
      rows = await store.latestNeighbourhood({});
    } finally {
      await store.close();
    }
  }, 240_000);

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('bills are exact: every reading accounted for, billed = metered per household', () => {
    expect(summary.problems).toEqual([]);
    expect(summary.ok).toBe(true);
    expect(summary.readings).toBe(4 * 1440);
    for (const h of summary.households) expect(h.billedWh).toBe(h.meteredWh);
    expect(summary.households.reduce((a, h) => a + h.meteredWh, 0)).toBeGreaterThan(0);
  });

  it('every neighbourhood window within the budget is released noised, as integers >= 0, with the PES\'s DP ledger', () => {
    expect(summary.neighbourhoods[0]!.checked).toBe('noised');
    expect(rows).toHaveLength(20); // 24 hours at epsilon 1, a budget of 20 a day
    for (const r of rows) {
      expect(Number.isSafeInteger(r.energyWh) && r.energyWh >= 0).toBe(true);
      expect(Number.isSafeInteger(r.exportWh) && r.exportWh >= 0).toBe(true);
      expect(r.dp?.epsilon).toBe(1);
    }
    // One epsilon charged per release: the running totals are distinct, and reach at least the 24 windows.
    const spent = rows.map((r) => r.dp!.spent);
    expect(new Set(spent).size).toBe(20);
    expect(Math.max(...spent)).toBe(20);
    // No household has panels, so every window's true export is 0: the noise shows there directly (scale
    // 7360 Wh at epsilon 1 and an hour, clamped at 0: about half the windows > 0; fewer than 3 has odds ~1e-4).
    expect(rows.filter((r) => r.exportWh > 0).length).toBeGreaterThanOrEqual(3);
    expect(summary.neighbourhoods[0]!.releasedWh).not.toBe(summary.neighbourhoods[0]!.meteredWh);
  });
});
