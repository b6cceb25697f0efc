/**
 * Issue 18's outside check, end to end: P1 captures in three dialects (DSMR 4, DSMR 5, e-MUCS; prosumers
 * among them), each with a corrupted telegram and a cable pulled for 45 minutes inside one hour, replayed
 * through `p1:` sources by `replay` (every component runs), into one neighbourhood of k meters so that every
 * window with all meters is released. What the MDMS stores must be, per 15-minute window, exactly the sum over
 * the meters of the telegrams' import and export register differences at the window boundaries
 * (test/firmware/p1-captures.ts computes them from the registers alone), and each household's bill exactly
 * its last telegram's registers minus its first's.
 *
 * A whole week (about 15 s here). The replay fleet file carries no P1 keys (cli/replay.ts passes none to its
 * `p1:` sources), so Luxembourg's encrypted dialect is checked in test/firmware/p1-week.test.ts only.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { replay } from '../../cli/replay.js';
import { openStore } from '../../mdms/store/index.js';
import { expectedWindows, sum, telegrams, writeCapture, type Household } from '../firmware/p1-captures.js';

const TZ = 'Europe/Amsterdam';
const START = Date.UTC(2024, 5, 16, 22) / 1000; // Monday 2024-06-17 00:00 CEST
const DAYS = 7;
const WINDOW = 900;
const STEP = 120;
/** Cable pulled on Friday from 11:05 to 11:50 local (inside one hour); a telegram corrupted on Wednesday at 12:00. */
const OUTAGE = [START + 4 * 86400 + 11 * 3600 + 5 * 60, START + 4 * 86400 + 11 * 3600 + 50 * 60] as const;
const CORRUPT = START + 2 * 86400 + 12 * 3600;

// One zone for the fleet (replay's --tz reads every capture's timestamps); Brussels keeps Amsterdam's offsets.
const HOUSEHOLDS: Household[] = [
  { dialect: 'dsmr4', seed: 201, tz: TZ, kWp: 0, offset: 7, startImport: [4_123_456, 3_987_654], startExport: [0, 0] },
  { dialect: 'dsmr5', seed: 202, tz: TZ, kWp: 4, offset: 0, startImport: [2_345_678, 2_111_222], startExport: [1_234_567, 987_654] },
  { dialect: 'emucs', seed: 203, tz: 'Europe/Brussels', kWp: 6, offset: 31, startImport: [5_555_000, 1_999_999], startExport: [765_432, 12_345] },
];

const dir = mkdtempSync(join(tmpdir(), 'sm-replay-p1week-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('replay of P1 captures with a corrupted telegram and an outage', () => {
  it('stores per 15-minute window exactly the register differences at its boundaries, and bills the whole-period differences', async () => {
    const rows = ['meter,household,neighbourhood,source'];
    const runs = HOUSEHOLDS.map((h, n) => {
      const all = telegrams(h, { start: START, days: DAYS, step: STEP });
      const kept = writeCapture(h, all, join(dir, `m${n}.p1`), { outage: OUTAGE, corrupt: CORRUPT });
      expect(all.length - kept.length, h.dialect).toBe(1 + all.filter((t) => t.time >= OUTAGE[0] && t.time < OUTAGE[1]).length);
      rows.push(`apt-${n},hh-${n},nb-1,p1:m${n}.p1`);
      return { h, all, kept, household: `hh-${n}` };
    });
    writeFileSync(join(dir, 'fleet.csv'), rows.join('\n') + '\n');
    const db = join(dir, 'out.sqlite');
    const summary = await replay({ fleetCsv: join(dir, 'fleet.csv'), db, intervalS: WINDOW, billing: '1d', k: HOUSEHOLDS.length, tz: TZ, latenessS: 1800, start: 0, days: DAYS, paillierBits: 1024 });
    expect(summary.problems, JSON.stringify(summary)).toEqual([]);
    expect(summary.readings).toBe(runs.reduce((n, r) => n + r.kept.length, 0));

    // Bills: each household's last registers minus its first, import and export, exactly.
    const bills = Object.fromEntries(summary.households.map((h) => [h.household, [h.billedWh, h.billedExportWh]]));
    expect(bills).toEqual(Object.fromEntries(runs.map((r) => [r.household, [sum(r.all.at(-1)!.imp) - sum(r.all[0]!.imp), sum(r.all.at(-1)!.exp) - sum(r.all[0]!.exp)]])));
    expect(runs.filter((r) => r.h.kWp > 0).every((r) => bills[r.household]![1]! > 1000)).toBe(true);

    // The MDMS's neighbourhood rows, window by window: the sum over meters of the boundary differences.
    const want = new Map<number, [number, number]>();
    for (const r of runs) for (const [w, [i, e]] of expectedWindows(r.kept, WINDOW)) want.set(w, [(want.get(w)?.[0] ?? 0) + i, (want.get(w)?.[1] ?? 0) + e]);
    const store = await openStore(db);
    const stored = await store.latestNeighbourhood({ neighbourhood: 'nb-1', limit: 100_000 });
    await store.close();
    const got = new Map(stored.map((r) => [r.start, [r.energyWh, r.exportWh] as [number, number]]));
    expect(stored.every((r) => r.meters === HOUSEHOLDS.length && r.end - r.start === WINDOW && r.dp === null)).toBe(true);
    for (const [w, v] of got) expect(v, `window ${new Date(w * 1000).toISOString()}`).toEqual(want.get(w));
    // Every window of the two days is released but the two no meter read in (the cable was out all through them).
    const inOutage = (w: number) => w >= OUTAGE[0] && w + WINDOW <= OUTAGE[1];
    const days = [...Array((DAYS * 86400) / WINDOW).keys()].map((i) => START + i * WINDOW);
    expect(days.filter((w) => !got.has(w)).map((w) => new Date(w * 1000).toISOString())).toEqual([OUTAGE[0] + 600, OUTAGE[0] + 1500].map((w) => new Date(w * 1000).toISOString()));
    expect(days.filter(inOutage)).toHaveLength(2);
    // Windows the store lacks carry no energy: nothing metered is lost between windows and bills.
    for (const [w, v] of want) if (!got.has(w)) expect(v, `unreleased window ${new Date(w * 1000).toISOString()}`).toEqual([0, 0]);
    // replay's own check agrees: released == metered; the one window below k is the one before the captures
    // start, where only the meters whose first reading starts a few seconds before midnight (DSMR) read.
    expect(summary.neighbourhoods).toEqual([expect.objectContaining({ neighbourhood: 'nb-1', checked: 'windows below k', releasedWh: summary.neighbourhoods[0]!.meteredWh, releasedExportWh: summary.neighbourhoods[0]!.meteredExportWh, releasedWindows: got.size, windows: got.size + 1 })]);
    expect(Math.min(...got.keys())).toBe(START);
  }, 240_000);
});
