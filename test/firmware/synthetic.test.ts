import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BASE_NOISE_MILLIW,
  clearSkyGhi,
  mulberry32,
  parseSyntheticSource,
  parseSyntheticSpec,
  sunCosZenith,
  SyntheticModel,
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

describe('synthetic households with solar panels', () => {
  const JUNE = Date.UTC(2024, 5, 17) / 1000; // a week from Monday 2024-06-17
  const site = { latitude: 52.09, longitude: 5.12 };

  it('puts the sun where NOAA\'s solar position and Haurwitz\'s clear sky put it', () => {
    // Solar noon at midsummer in Utrecht: zenith = latitude - declination (23.44°).
    const noon = sunCosZenith(Date.UTC(2024, 5, 20, 11, 40) / 1000, site.latitude, site.longitude);
    expect(noon).toBeCloseTo(Math.cos(((52.09 - 23.44) * Math.PI) / 180), 3);
    // The equator at the March equinox, solar noon (12:07 UTC at longitude 0): the sun is overhead.
    expect(sunCosZenith(Date.UTC(2024, 2, 20, 12, 7) / 1000, 0, 0)).toBeGreaterThan(0.9999);
    expect(sunCosZenith(Date.UTC(2024, 5, 20, 23, 40) / 1000, site.latitude, site.longitude)).toBeLessThan(0); // midnight
    // A site 90° east sees solar noon six hours earlier.
    expect(sunCosZenith(Date.UTC(2024, 5, 20, 5, 40) / 1000, site.latitude, 95.12)).toBeCloseTo(noon, 2);
    expect(clearSkyGhi(1)).toBeCloseTo(1098 * Math.exp(-0.057), 6);
    expect(clearSkyGhi(0.5)).toBeCloseTo(549 * Math.exp(-0.114), 6);
    expect([clearSkyGhi(0), clearSkyGhi(-0.3)]).toEqual([0, 0]);
  });

  it('gives panels to a seeded share of households, the same ones whatever else is asked', () => {
    const has = (share: number) => Array.from({ length: 1000 }, (_, seed) => new SyntheticModel(seed, 'UTC', { share }).pv !== undefined);
    const [none, third, half, all] = [has(0), has(0.3), has(0.5), has(1)];
    expect(none.some(Boolean)).toBe(false);
    expect(all.every(Boolean)).toBe(true);
    expect(third.filter(Boolean).length / 1000).toBeGreaterThan(0.27);
    expect(third.filter(Boolean).length / 1000).toBeLessThan(0.33);
    expect(third.every((h, i) => !h || half[i])).toBe(true); // a household with panels at 0.3 has them at 0.5
    const sizes = Array.from({ length: 200 }, (_, seed) => new SyntheticModel(seed, 'UTC', { share: 1 }).pv!);
    expect(sizes.every((p) => p.kWp >= 2 && p.kWp <= 8 && p.factor >= 0.7 && p.factor <= 0.95)).toBe(true);
    expect(new Set(sizes.map((p) => p.kWp)).size).toBeGreaterThan(10);
    expect(new SyntheticModel(3, 'UTC', { share: 1, kWp: 0 }).pv).toBeUndefined();
    expect(new SyntheticModel(3, 'UTC', { kWp: 4.5 }).pv).toMatchObject({ kWp: 4.5, ...site });
    expect(() => new SyntheticModel(3, 'UTC', { share: 1.5 })).toThrow(/share/);
    expect(() => new SyntheticModel(3, 'UTC', { kWp: -1 })).toThrow(/kWp/);
    expect(() => new SyntheticModel(3, 'UTC', { share: 1, latitude: 91 })).toThrow(/latitude/);
  });

  it('meters the net per minute: import and export are the positive and negative parts of load minus production', async () => {
    const opts = { seed: 4, start: JUNE, days: 7, tz: 'Europe/Amsterdam', pv: { kWp: 4 } };
    const model = new SyntheticModel(4, 'Europe/Amsterdam', { kWp: 4 });
    const plain = new SyntheticModel(4, 'Europe/Amsterdam');
    const { kWp, factor } = model.pv!;
    const windows = new Map<number, { imp: number; exp: number }>();
    let minutes = 0;
    for await (const s of new SyntheticSource(opts).samples()) {
      const load = plain.powerMilliW(s.time); // panels leave the household's load as it was
      expect(model.powerMilliW(s.time)).toBe(load);
      const pv = model.pvMilliW(s.time);
      expect(s.powerMilliW - s.exportMilliW!).toBe(load - pv);
      expect(Math.min(s.powerMilliW, s.exportMilliW!)).toBe(0);
      if (sunCosZenith(s.time + 30, 52.09, 5.12) <= 0) expect(pv).toBe(0);
      expect(pv).toBeLessThanOrEqual(kWp * factor * 1098 * 1000);
      const w = windows.get(s.time - (s.time % 900)) ?? { imp: 0, exp: 0 };
      w.imp += s.powerMilliW;
      w.exp += s.exportMilliW!;
      windows.set(s.time - (s.time % 900), w);
      minutes++;
    }
    expect(minutes).toBe(7 * 1440);
    const exporting = [...windows.values()].filter((w) => w.exp > w.imp).length;
    expect(exporting).toBeGreaterThan(7 * 4 * 4); // on average more than 4 hours a day in June
    expect(exporting).toBeLessThan(7 * 4 * 17); // never at night
  });

  it('shares one sky per day between households (weather seeded by the date), each with its own panels', () => {
    const a = new SyntheticModel(10, 'UTC', { share: 1 });
    const b = new SyntheticModel(11, 'UTC', { share: 1 });
    expect(a.pv!.kWp * a.pv!.factor).not.toBe(b.pv!.kWp * b.pv!.factor);
    let sunny = 0;
    for (let t = JUNE + 4 * 3600; t < JUNE + 20 * 3600; t += 60) {
      const [pa, pb] = [a.pvMilliW(t) / (a.pv!.kWp * a.pv!.factor), b.pvMilliW(t) / (b.pv!.kWp * b.pv!.factor)];
      expect(Math.abs(pa - pb)).toBeLessThan(2); // the same irradiance, up to rounding to a mW
      if (pa > 0) sunny++;
    }
    expect(sunny).toBeGreaterThan(600);
    // Days differ: the weather is not one day repeated.
    const day = (d: number) => Array.from({ length: 1440 }, (_, m) => a.pvMilliW(JUNE + d * 86400 + m * 60)).reduce((x, y) => x + y, 0);
    expect(new Set([0, 1, 2, 3, 4, 5, 6].map(day)).size).toBe(7);
  });

  it('leaves a household without panels exactly as before, resumes a PV one anywhere, and writes production in the ground truth', async () => {
    const seed = [...Array(50).keys()].find((s) => !new SyntheticModel(s, 'UTC', { share: 0.3 }).pv)!;
    const withShare = await all(new SyntheticSource({ seed, start: START, days: 1, pv: { share: 0.3 } }));
    expect(withShare).toEqual(await all(new SyntheticSource({ seed, start: START, days: 1 })));
    expect(withShare.every((s) => !('exportMilliW' in s))).toBe(true);

    const opts = { seed: 21, start: JUNE, days: 2, pv: { kWp: 5.5 } };
    const src = new SyntheticSource(opts);
    const full = await all(src);
    expect(await all(src, JUNE + 700 * 60)).toEqual(full.slice(700));
    expect(await all(new SyntheticSource(opts))).toEqual(full);

    const truth = syntheticGroundTruth(opts);
    const model = new SyntheticModel(21, 'UTC', { kWp: 5.5 });
    const perDay = [0, 1].map((d) => Array.from({ length: 1440 }, (_, m) => BigInt(model.pvMilliW(JUNE + d * 86400 + m * 60)) * 60n).reduce((x, y) => x + y, 0n));
    expect(truth.pv).toMatchObject({ kWp: 5.5, latitude: 52.09, longitude: 5.12 });
    expect(truth.pv!.days).toEqual([0, 1].map((d) => ({ start: JUNE + d * 86400, productionWh: Number(perDay[d]! / 3_600_000n) })));
    expect(truth.pv!.productionWh).toBe(Number((perDay[0]! + perDay[1]!) / 3_600_000n));
    expect(truth.pv!.productionWh).toBeGreaterThan(5000); // 5.5 kWp in June: kWh per day, not Wh
    const file = join(dir, 'pv.truth.json');
    await writeGroundTruth(file, opts);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(truth);
    expect(syntheticGroundTruth({ seed: 21, start: JUNE, days: 1 }).pv).toBeUndefined();
    await expect(writeSyntheticCsv(join(dir, 'pv.csv'), opts)).rejects.toThrow(/import only/);
  });

  it('reads panels from the source spec', () => {
    expect(parseSyntheticSource('synthetic:42')).toEqual({ seed: 42 });
    expect(parseSyntheticSource('synthetic:42:pv=4.25')).toEqual({ seed: 42, kWp: 4.25 });
    expect(parseSyntheticSource('synthetic:42:pv=0')).toEqual({ seed: 42, kWp: 0 });
    expect(parseSyntheticSpec('synthetic:42:pv=3')).toBe(42);
    expect(parseSyntheticSource('p1:/dev/ttyUSB0')).toBeUndefined();
    for (const bad of ['synthetic:42:pv', 'synthetic:42:pv=-1', 'synthetic:42:pv=1.234', 'synthetic:42:pv=1000', 'synthetic:42:wind=3', 'synthetic:42:pv=1:pv=2']) {
      expect(() => parseSyntheticSource(bad), bad).toThrow(/synthetic:<seed>:pv=<kWp>/);
    }
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
