/**
 * End to end with prosumers: `replay --pv-share 0.3` of a small synthetic fleet on a June day, and the MDMS
 * export's import and export columns checked against sums computed here, independently, from the synthetic
 * source's samples (register semantics from first principles, as test/cli/replay.test.ts does for CSVs; no
 * firmware register or PES code in the expectation). The PES's policy statement flows all through the replay
 * (checked every 50 ms), and the drain still settles exactly: every released aggregate stored, none missing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { replay, type ReplaySummary } from '../../cli/replay.js';
import { openStore } from '../../mdms/store/index.js';
import { exportCsv } from '../../mdms/export.js';
import { SyntheticModel, SyntheticSource, syntheticGroundTruth } from '../../firmware/sources/synthetic.js';
import { privacyReport } from '../../cli/privacy-report.js';
import { hartEvents, scoreEvents, truthEvents } from '../../privacy/events.js';
import { guessOccupancy, scoreOccupancy, slotMeans, trueOccupancy } from '../../privacy/occupancy.js';
import { readSource } from '../../privacy/series.js';

const INTERVAL = 900;
const DAY = 86400;
const START = Date.UTC(2024, 5, 15) / 1000; // a June day: panels export around noon
const PV = { share: 0.3 };
const SEEDS = [1, 2, 3, 4, 5, 6, 7, 8];
const iso = (s: number) => new Date(s * 1000).toISOString().replace('.000Z', 'Z');

interface Reading {
  start: number;
  importWh: number;
  exportWh: number;
}

/** Register semantics from first principles: cumulative mW·s per register, register = floor(/3.6e6 mW·s per Wh), energy = difference. */
async function readingsOf(seed: number): Promise<Reading[]> {
  const out: Reading[] = [];
  let [imp, exp, prevImp, prevExp] = [0n, 0n, 0n, 0n];
  for await (const s of new SyntheticSource({ seed, start: START, days: 1, pv: PV }).samples()) {
    imp += BigInt(s.powerMilliW) * BigInt(s.period);
    exp += BigInt(s.exportMilliW ?? 0) * BigInt(s.period);
    const [i, e] = [imp / 3_600_000n, exp / 3_600_000n];
    out.push({ start: s.time, importWh: Number(i - prevImp), exportWh: Number(e - prevExp) });
    [prevImp, prevExp] = [i, e];
  }
  return out;
}

describe('replay --pv-share 0.3 of a synthetic fleet', () => {
  let dir: string;
  let summary: ReplaySummary;
  let neighbourhoodCsv: string;
  let billingCsv: string;
  let db: string;
  const fleet = SEEDS.map((seed, i) => ({ seed, meter: `m-${seed}`, household: `hh-${seed}`, neighbourhood: i < 4 ? 'nb-1' : 'nb-2' }));
  const prosumers = SEEDS.filter((seed) => new SyntheticModel(seed, 'UTC', PV).pv !== undefined);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sm-replay-pv-'));
    writeFileSync(join(dir, 'fleet.csv'), ['meter,household,neighbourhood,source', ...fleet.map((m) => `${m.meter},${m.household},${m.neighbourhood},synthetic:${m.seed}`)].join('\n') + '\n');
    db = join(dir, 'out.sqlite');
    summary = await replay({ fleetCsv: join(dir, 'fleet.csv'), db, intervalS: INTERVAL, billing: '1d', k: 4, tz: 'UTC', latenessS: 1800, start: START, days: 1, pvShare: PV.share, paillierBits: 1024, policyIntervalMs: 50 });
    const store = await openStore(db);
    neighbourhoodCsv = await exportCsv(store, 'neighbourhood');
    billingCsv = await exportCsv(store, 'billing');
    await store.close();
  }, 240_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('has prosumers and plain households in the fleet (the share is drawn per seed)', () => {
    expect(prosumers.length).toBeGreaterThan(0);
    expect(prosumers.length).toBeLessThan(SEEDS.length);
  });

  it('accounts for every reading, import and export, per household and per neighbourhood', () => {
    expect(summary.problems).toEqual([]);
    expect(summary.ok).toBe(true);
    expect(summary.readings).toBe(SEEDS.length * 1440);
    for (const h of summary.households) {
      expect(h.billedExportWh, h.household).toBe(h.meteredExportWh);
      expect(h.meteredExportWh > 0, h.household).toBe(prosumers.includes(Number(h.household.slice(3))));
    }
    expect(summary.neighbourhoods.map((n) => [n.neighbourhood, n.checked])).toEqual([
      ['nb-1', true],
      ['nb-2', true],
    ]);
  });

  it('drains exactly while the policy statement flows: every released aggregate stored, statements kept apart', () => {
    expect(summary.policyStored).toBeGreaterThanOrEqual(2);
    expect(summary.stored).toBe(summary.released);
  });

  it('exports every neighbourhood interval, import and export, exactly as summed from the source', async () => {
    const sums = new Map<string, { importWh: number; exportWh: number; meters: Set<string> }>();
    for (const m of fleet) {
      for (const r of await readingsOf(m.seed)) {
        const w = Math.floor(r.start / INTERVAL) * INTERVAL;
        const key = `${m.neighbourhood},${w}`;
        const s = sums.get(key) ?? { importWh: 0, exportWh: 0, meters: new Set() };
        s.importWh += r.importWh;
        s.exportWh += r.exportWh;
        s.meters.add(m.meter);
        sums.set(key, s);
      }
    }
    const expected = [...sums.entries()]
      .map(([key, s]) => {
        const [nb, w] = [key.split(',')[0]!, Number(key.split(',')[1])];
        return { nb, w, line: `${nb},${iso(w)},${iso(w + INTERVAL)},${s.meters.size},${s.importWh},${s.exportWh}` };
      })
      .sort((a, b) => a.nb.localeCompare(b.nb) || a.w - b.w)
      .map((x) => x.line);
    const lines = neighbourhoodCsv.trim().split('\n');
    expect(lines[0]).toBe('neighbourhood,start,end,meters,energy_wh,export_wh');
    expect(lines.slice(1)).toEqual(expected);
    expect(lines.slice(1).some((l) => Number(l.split(',')[5]) > Number(l.split(',')[4]))).toBe(true); // some windows export more than they import
  });

  it('exports every household day, import and export (feed-in), exactly as summed from the source', async () => {
    const expected: string[] = [];
    for (const m of [...fleet].sort((a, b) => a.household.localeCompare(b.household))) {
      const rs = await readingsOf(m.seed);
      const [imp, exp] = [rs.reduce((a, r) => a + r.importWh, 0), rs.reduce((a, r) => a + r.exportWh, 0)];
      expected.push(`${m.household},${iso(START)},${iso(START + DAY)},flat,${imp},${exp}`);
    }
    const lines = billingCsv.trim().split('\n');
    expect(lines[0]).toBe('household,start,end,band,energy_wh,export_wh');
    expect(lines.slice(1)).toEqual(expected);
  });

  it('privacy-report reads the prosumers as the replay metered them (--pv-share): the events attack reads net power', async () => {
    const summary = await privacyReport({ fleetCsv: join(dir, 'fleet.csv'), db, out: join(dir, 'report'), tz: 'UTC', intervalS: INTERVAL, k: 4, start: START, days: 1, pvShare: PV.share, seed: 13, differencing: false, paillierBits: 1024 });
    expect(summary.per_household).toHaveLength(SEEDS.length);
    expect(summary.method.events_series).toMatch(/import minus export/);
    const gains: number[] = [];
    for (const seed of prosumers) {
      const row = summary.per_household.find((r) => r.household === `hh-${seed}`)!;
      const truth = syntheticGroundTruth({ seed, start: START, days: 1, pv: PV });
      const occupancyOf = (powerW: Float64Array) => scoreOccupancy(guessOccupancy(slotMeans(powerW, INTERVAL / 60), START, INTERVAL), trueOccupancy(truth, START, INTERVAL, DAY / INTERVAL)).accuracy;
      // The occupancy attack read the import the meter measured (panels included), not the load without them.
      const withPanels = await readSource(new SyntheticSource({ seed, start: START, days: 1, pv: PV }), START, START + DAY, INTERVAL);
      const without = await readSource(new SyntheticSource({ seed, start: START, days: 1 }), START, START + DAY, INTERVAL);
      expect(row.occupancy_raw_accuracy).toBe(occupancyOf(withPanels.series.powerW));
      expect(occupancyOf(without.series.powerW)).not.toBe(occupancyOf(withPanels.series.powerW));
      // The events attack reads net power: at least as good as the import alone (export ignored), here better.
      const importOnly = scoreEvents(hartEvents(withPanels.series.powerW, START, 60), truthEvents(truth, 400, START, START + DAY), 60).f1;
      expect(row.events_raw_f1 as number).toBeGreaterThanOrEqual(importOnly);
      gains.push((row.events_raw_f1 as number) - importOnly);
    }
    expect(Math.max(...gains)).toBeGreaterThan(0.3); // measured: net 1.0 vs import only 0.67, 0.5 and 0 for the three prosumers
  }, 60_000);
});
