import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BASE_NOISE_MILLIW,
  mulberry32,
  parseSyntheticSpec,
  SyntheticSource,
  syntheticGroundTruth,
  writeGroundTruth,
  writeSyntheticCsv,
  type GroundTruth,
} from '../../firmware/sources/synthetic.js';
import { UmassSource } from '../../firmware/sources/umass.js';
import type { Sample, Source } from '../../firmware/hal/source.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-synth-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const START = Date.UTC(2016, 4, 2) / 1000; // Monday 2016-05-02
async function all(src: Source, from?: number): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of src.samples(from)) out.push(s);
  return out;
}

describe('synthetic source', () => {
  it('mulberry32 matches its reference output', () => {
    const r = mulberry32(42);
    expect(r()).toBe(0.6011037519201636);
  });

  it('is deterministic per seed and differs between seeds', async () => {
    const a = await all(new SyntheticSource({ seed: 7, start: START, days: 2 }));
    const b = await all(new SyntheticSource({ seed: 7, start: START, days: 2 }));
    const c = await all(new SyntheticSource({ seed: 8, start: START, days: 2 }));
    expect(a).toHaveLength(2880);
    expect(a).toEqual(b);
    expect(a.map((s) => s.powerMilliW)).not.toEqual(c.map((s) => s.powerMilliW));
    expect(a.every((s, i) => s.time === START + 60 * i && s.period === 60 && Number.isInteger(s.powerMilliW) && s.powerMilliW > 0)).toBe(true);
  });

  it('resumes anywhere with the same values (a day plan depends on seed and date only)', async () => {
    const src = new SyntheticSource({ seed: 3, start: START, days: 2 });
    const full = await all(src);
    expect(await all(src, START + 1000 * 60)).toEqual(full.slice(1000));
    expect(await all(src, START + 1000 * 60 - 30)).toEqual(full.slice(1000));
    // A run starting a day later sees the same second day.
    expect(await all(new SyntheticSource({ seed: 3, start: START + 86400, days: 1 }))).toEqual(full.slice(1440));
  });

  it('keeps its ground-truth invariants over a fortnight, for several seeds and zones', async () => {
    for (const [seed, tz] of [[1, 'UTC'], [2, 'America/New_York'], [99, 'Europe/London'], [123456, 'UTC']] as const) {
      // 2016-10-24 .. 2016-11-07 spans the London and New York fall-back days.
      const opts = { seed, start: Date.UTC(2016, 9, 24) / 1000, days: 14, tz };
      const truth = syntheticGroundTruth(opts);
      checkTruth(truth);
      // Every minute's power minus the appliances on in it is the base load within its noise band.
      let minutes = 0;
      for await (const s of new SyntheticSource(opts).samples()) {
        const on = truth.appliances.filter((a) => a.start <= s.time && s.time < a.end).reduce((w, a) => w + a.powerW * 1000, 0);
        expect(Math.abs(s.powerMilliW - on - truth.household.baseW * 1000)).toBeLessThanOrEqual(BASE_NOISE_MILLIW);
        minutes++;
      }
      expect(minutes).toBe(14 * 1440);
      const kinds = new Set(truth.appliances.map((a) => a.appliance));
      expect([...kinds].sort()).toEqual(['fridge', 'kettle', 'lighting', 'oven', 'washer']);
    }
  });

  it('writes a UMass-format CSV that the UMass source reads back exactly, across a DST change', async () => {
    const opts = { seed: 5, start: Date.UTC(2016, 10, 5) / 1000, days: 2, tz: 'America/New_York' };
    const file = join(dir, 'apt.csv');
    expect(await writeSyntheticCsv(file, opts)).toBe(2880);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(lines.every((l) => /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\.\d{6}$/.test(l))).toBe(true);
    expect(lines.filter((l) => l.startsWith('2016-11-06 01:30:00'))).toHaveLength(2); // the repeated hour
    expect(await all(new UmassSource(file, { tz: opts.tz }))).toEqual(await all(new SyntheticSource(opts)));
  });

  it('writes its ground truth as JSON', async () => {
    const file = join(dir, 'truth.json');
    const opts = { seed: 11, start: START, days: 2 };
    await writeGroundTruth(file, opts);
    const truth = JSON.parse(readFileSync(file, 'utf8')) as GroundTruth;
    expect(truth).toEqual(syntheticGroundTruth(opts));
    checkTruth(truth);
    const kinds = new Set(truth.appliances.map((a) => a.appliance));
    expect(kinds.has('fridge') && kinds.has('kettle') && kinds.has('lighting')).toBe(true);
  });

  it('validates its options', () => {
    expect(parseSyntheticSpec('synthetic:42')).toBe(42);
    expect(parseSyntheticSpec('data/x.csv')).toBeUndefined();
    expect(() => parseSyntheticSpec('synthetic:-1')).toThrow(/seed/);
    expect(() => parseSyntheticSpec('synthetic:4294967296')).toThrow(/seed/);
    expect(() => new SyntheticSource({ seed: 1, start: START + 30 })).toThrow(/whole minute/);
    expect(() => new SyntheticSource({ seed: 1, start: START, days: 0 })).toThrow(/days/);
    expect(() => new SyntheticSource({ seed: 1, start: START, tz: 'Atlantis/Capital' })).toThrow(/time zone/);
    expect(() => syntheticGroundTruth({ seed: 1, start: START })).toThrow(/finite/);
  });
});

function checkTruth(truth: GroundTruth): void {
  // Occupancy tiles [start, end) with no gap or overlap, and neighbours differ.
  expect(truth.occupancy[0]!.start).toBe(truth.start);
  expect(truth.occupancy[truth.occupancy.length - 1]!.end).toBe(truth.end);
  truth.occupancy.forEach((o, i) => {
    expect(o.end).toBeGreaterThan(o.start);
    const next = truth.occupancy[i + 1];
    if (next) {
      expect(next.start).toBe(o.end);
      expect(next.state).not.toBe(o.state);
    }
  });
  const home = truth.occupancy.filter((o) => o.state === 'home');
  expect(truth.occupancy.some((o) => o.state === 'asleep')).toBe(true);
  for (const a of truth.appliances) {
    expect(a.end).toBeGreaterThan(a.start);
    expect(a.start).toBeGreaterThanOrEqual(truth.start);
    expect(a.end).toBeLessThanOrEqual(truth.end);
    expect((a.start - truth.start) % 60).toBe(0);
    if (a.appliance !== 'fridge') {
      expect(home.some((o) => o.start <= a.start && a.end <= o.end), `${a.appliance} at ${a.start} outside home`).toBe(true);
    }
  }
  const fridge = truth.appliances.filter((a) => a.appliance === 'fridge');
  fridge.slice(1).forEach((f, i) => expect(f.start).toBeGreaterThanOrEqual(fridge[i]!.end));
}
