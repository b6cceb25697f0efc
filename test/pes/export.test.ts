/**
 * The export register through the PES (issue 18): prosumer meters send the long form (protocol v2, §5); the PES
 * aggregates import and export separately, bills feed-in per band, and every release guard (k, revision-k, the
 * membership guard) protects export as it protects import.
 */
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { bandAt, parseTariff } from '../../lib/tariff.js';
import { createPes, type CreatePesOptions } from '../../pes/pes.js';
import type { BillingAggregate, NeighbourhoodAggregate } from '../../protocol/aggregate.js';
import { openStream } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { latest, makeFleet, openAggregates, uplink, type SimMeter, type TestFleet } from './helpers.js';

const log = pino({ level: 'silent' });
const DAY = 1_700_000_000 - (1_700_000_000 % 86400); // a UTC midnight
const T0 = DAY + 6 * 3600; // 06:00 UTC: the first hour is in the night band, the second in the day band
const TARIFF = parseTariff({ tz: 'UTC', bands: [{ name: 'night', rules: [{ days: [1, 2, 3, 4, 5, 6, 7], from: '00:00', to: '07:00' }] }, { name: 'day', default: true }] });
const NB_KEYS = ['kind', 'key', 'start', 'end', 'revision', 'meters', 'energyWh', 'exportWh'];
const BILL_KEYS = ['kind', 'key', 'start', 'end', 'revision', 'bands'];

function open(f: TestFleet, o: Partial<CreatePesOptions> = {}) {
  return createPes({ keys: f.keys, intervalS: 900, latenessS: 60, k: 2, tariff: TARIFF, logger: log, ...o });
}

async function released(f: TestFleet, pes: ReturnType<typeof createPes>) {
  await pes.idle();
  const all = openAggregates(f, pes.sent.filter((m) => m.kind !== 'policy'));
  return {
    all,
    nbs: all.filter((x): x is NeighbourhoodAggregate => x.kind === 'neighbourhood'),
    bills: all.filter((x): x is BillingAggregate => x.kind === 'billing'),
    latest: latest(all),
  };
}

/** Exact sums from the meters' own logs: per neighbourhood window start, and per household and band. */
function truth(meters: SimMeter[], intervalS = 900) {
  const windows = new Map<number, { wh: number; exportWh: number }>();
  const bills = new Map<string, Record<string, { wh: number; exportWh: number }>>();
  meters.forEach((m, i) => {
    for (const r of m.log) {
      const start = r.time - (r.time % intervalS);
      const w = windows.get(start) ?? { wh: 0, exportWh: 0 };
      windows.set(start, { wh: w.wh + r.wh, exportWh: w.exportWh + r.exportWh });
      const bill = bills.get(`hh${i}`) ?? {};
      const band = bandAt(TARIFF, r.time);
      const b = bill[band] ?? { wh: 0, exportWh: 0 };
      bill[band] = { wh: b.wh + r.wh, exportWh: b.exportWh + r.exportWh };
      bills.set(`hh${i}`, bill);
    }
  });
  return { windows, bills };
}

/** A prosumer's minute: more export than import around the middle of the run (some minutes both, as at noon). */
const pv = (slot: number) => (i: number) => (slot >= 2 && slot < 6 ? 40 + ((slot * 15 + i) % 7) : 0);
const load = (seed: number) => (i: number) => 3 + ((seed * 31 + i * 17) % 11);

describe('prosumers in a neighbourhood', () => {
  it('released import and export equal the exact sums per window; bills carry exportBands per band equal to the exact sums', async () => {
    const f = await makeFleet({ n: 4, start: T0 });
    const ms = f.meters as SimMeter[];
    const pes = open(f);
    for (let slot = 0; slot < 8; slot++) {
      // Meters 0 and 1 have panels (30 % of a fleet in the Netherlands; half of this one); 2 and 3 do not.
      pes.ingestUplink(uplink(ms.map((m, i) => m.frame(m.batch(15, 60, load(slot * 4 + i), i < 2 ? pv(slot) : undefined)))));
    }
    pes.flush();
    const r = await released(f, pes);
    const t = truth(ms);
    expect(r.nbs.map((x) => x.start)).toEqual([...t.windows.keys()]);
    for (const x of r.nbs) {
      expect(Object.keys(x).sort(), 'a v2 neighbourhood body').toEqual([...NB_KEYS].sort());
      expect([x.energyWh, x.exportWh]).toEqual([t.windows.get(x.start)!.wh, t.windows.get(x.start)!.exportWh]);
    }
    expect(r.nbs.some((x) => x.exportWh! > x.energyWh)).toBe(true); // the neighbourhood fed in at noon
    expect(r.bills).toHaveLength(4);
    for (const b of r.bills) {
      const want = t.bills.get(b.key)!;
      expect(b.bands).toEqual({ night: want.night!.wh, day: want.day!.wh });
      if (b.key === 'hh0' || b.key === 'hh1') expect(b.exportBands).toEqual({ night: want.night!.exportWh, day: want.day!.exportWh });
      else expect(Object.keys(b).sort(), 'no feed-in line for a household that fed nothing in').toEqual([...BILL_KEYS].sort());
    }
    expect(r.bills.find((b) => b.key === 'hh0')!.exportBands!.day).toBeGreaterThan(0);
    // Every sum is the register difference: export over all windows is each prosumer's export register moved.
    expect(r.nbs.reduce((s, x) => s + x.exportWh!, 0)).toBe(ms[0]!.exportRegister + ms[1]!.exportRegister);
    await pes.close();
  });

  it('a lost prosumer frame shifts its export to the next window; its late arrival revises both windows to the exact truth', async () => {
    const f = await makeFleet({ n: 2, start: T0 });
    const [a, b] = f.meters as [SimMeter, SimMeter];
    const pes = open(f, { k: 1, revisionK: 1 });
    const sun = () => 30;
    pes.ingestUplink(uplink([a.frame(a.batch(15, 60, () => 1, sun)), b.frame(b.batch(15, 60, () => 2))]));
    const lost = a.batch(15, 60, () => 0, sun); // export only: nobody home, sun on the panels
    const lostIc = a.ic++;
    pes.ingestUplink(uplink([b.frame(b.batch(15, 60, () => 2))]));
    pes.ingestUplink(uplink([a.frame(a.batch(15, 60, () => 1, sun)), b.frame(b.batch(15, 60, () => 2))]));
    pes.ingestUplink(uplink([b.frame(b.batch(15, 60, () => 2))])); // closes window 2
    let l = (await released(f, pes)).latest;
    const at = (i: number) => l.get(`neighbourhood|nb0|${T0 + i * 900}`) as NeighbourhoodAggregate;
    expect([at(1).energyWh, at(1).exportWh]).toEqual([30, 0]);
    expect([at(2).energyWh, at(2).exportWh]).toEqual([15 + 30, 2 * 15 * 30]); // the gap's export moved here
    expect(pes.counters.gapsOpened).toBe(1);
    pes.ingestUplink(uplink([a.frame(lost, lostIc)]));
    expect(pes.counters.gapsFilled).toBe(1);
    l = (await released(f, pes)).latest;
    expect([0, 1, 2].map((i) => [at(i).energyWh, at(i).exportWh, at(i).revision])).toEqual([
      [15 + 30, 15 * 30, 0],
      [30, 15 * 30, 1],
      [15 + 30, 15 * 30, 1],
    ]);
    pes.flush();
    const bill = (await released(f, pes)).latest.get(`billing|hh0|${DAY}`) as BillingAggregate;
    expect(bill.exportBands).toEqual({ night: a.exportRegister, day: 0 });
    await pes.close();
  });

  it('each household stream message carries the long form the prosumer sent (prevExportWh, six-element readings)', async () => {
    const f = await makeFleet({ n: 2, start: T0, withHouseholdKeys: 2 });
    const [a, b] = f.meters as [SimMeter, SimMeter];
    const pes = open(f, { k: 1 });
    a.exportRegister = 80_210;
    const ba = a.batch(3, 60, () => 2, () => 50);
    const bb = b.batch(3);
    pes.ingestUplink(uplink([a.frame(ba), b.frame(bb)]));
    await pes.idle();
    const streams = pes.sent.filter((m) => m.kind === 'household');
    const body = (hh: string) => openStream(f.households.get(hh)!, f.pesVerify, topics.household(hh), streams.find((m) => m.topic === topics.household(hh))!.payload);
    expect(body('hh0')).toEqual({ meter: a.id, prevWh: ba.prevWh, prevExportWh: 80_210, readings: ba.readings.map((r) => [r.time, r.period, r.importWh, r.powerW, r.status, r.exportWh]) });
    expect(body('hh1')).toEqual({ meter: b.id, prevWh: bb.prevWh, readings: bb.readings.map((r) => [r.time, r.period, r.importWh, r.powerW, r.status]) });
    await pes.close();
  });
});

describe('the release guards protect export as they protect import', () => {
  it('k: windows where fewer than k meters contributed are suppressed even when they only exported; a late third meter releases them', async () => {
    const f = await makeFleet({ n: 3, start: T0 });
    const [a, b, c] = f.meters as [SimMeter, SimMeter, SimMeter];
    const pes = open(f, { k: 3 });
    const lateC = c.batch(15, 60, () => 0, () => 20);
    pes.ingestUplink(uplink([a.frame(a.batch(15, 60, () => 0, () => 25)), b.frame(b.batch(15, 60, () => 0, () => 35))]));
    pes.ingestUplink(uplink([a.frame(a.batch(15, 60, () => 0, () => 25)), b.frame(b.batch(15, 60, () => 0, () => 35))]));
    expect(pes.counters.suppressed).toBe(1);
    expect((await released(f, pes)).nbs).toEqual([]);
    expect(pes.sent.filter((m) => m.topic === topics.neighbourhood('nb0'))).toEqual([]);
    pes.ingestUplink(uplink([c.frame(lateC)]));
    expect((await released(f, pes)).nbs.map((x) => [x.start, x.revision, x.meters, x.energyWh, x.exportWh])).toEqual([[T0, 0, 3, 0, 15 * (25 + 35 + 20)]]);
    await pes.close();
  });

  it('revision-k: a late change to export only is held until revision-k meters changed the window, then released in full', async () => {
    const f = await makeFleet({ n: 4, start: T0 });
    const [a, b, c, d] = f.meters as [SimMeter, SimMeter, SimMeter, SimMeter];
    const pes = open(f); // k = revision-k = 2
    // Window 0: c's and d's frames are lost (so it is released with a and b: 2 of 4 provisioned, not 1 off).
    const lateC = c.batch(15, 60, () => 0, () => 40);
    const lateD = d.batch(15, 60, () => 0, () => 60);
    const [icC, icD] = [c.ic++, d.ic++];
    pes.ingestUplink(uplink([a.frame(a.batch(15, 60, () => 5)), b.frame(b.batch(15, 60, () => 6))]));
    pes.ingestUplink(uplink([a, b, c, d].map((m, i) => m.frame(m.batch(15, 60, () => 5 + i, i >= 2 ? () => 10 : undefined)))));
    pes.ingestUplink(uplink([a, b, c, d].map((m, i) => m.frame(m.batch(15, 60, () => 5 + i, i >= 2 ? () => 10 : undefined)))));
    let r = await released(f, pes);
    const w0 = () => r.nbs.filter((x) => x.start === T0);
    expect(w0().map((x) => [x.revision, x.meters, x.energyWh, x.exportWh])).toEqual([[0, 2, 15 * 11, 0]]);
    const held = pes.counters.revisionHeld;
    pes.ingestUplink(uplink([c.frame(lateC, icC)])); // export only changes window 0 (and moves the gap's export back from window 1)
    r = await released(f, pes);
    expect(w0()).toHaveLength(1);
    expect(pes.counters.revisionHeld).toBeGreaterThan(held);
    pes.ingestUplink(uplink([d.frame(lateD, icD)]));
    r = await released(f, pes);
    expect(w0().map((x) => [x.revision, x.meters, x.energyWh, x.exportWh])).toEqual([
      [0, 2, 15 * 11, 0],
      [1, 4, 15 * 11, 15 * (40 + 60)],
    ]);
    const w1 = r.latest.get(`neighbourhood|nb0|${T0 + 900}`) as NeighbourhoodAggregate;
    expect([w1.energyWh, w1.exportWh]).toEqual([15 * (5 + 6 + 7 + 8), 15 * 20]);
    await pes.close();
  });

  it('the membership guard: a prosumer silent for one interval would let the MDMS subtract its export; the release is held', async () => {
    const run = async (membershipGuard: boolean) => {
      const f = await makeFleet({ n: 4, start: T0 });
      const ms = f.meters as SimMeter[];
      const pes = open(f, { k: 3, membershipGuard });
      for (let step = 0; step < 4; step++) {
        const frames: Uint8Array[] = [];
        ms.forEach((m, i) => {
          const fr = m.frame(m.batch(15, 60, () => 10 * (i + 1), i === 3 ? () => 77 : undefined));
          if (!(i === 3 && step === 1)) frames.push(fr);
        });
        pes.ingestUplink(uplink(frames));
      }
      const nbs = (await released(f, pes)).nbs;
      await pes.close();
      return { nbs, held: pes.counters.membershipHeld };
    };
    const open_ = await run(false);
    const at = (i: number) => open_.nbs.find((x) => x.start === T0 + i * 900)!;
    expect(at(0).exportWh! - at(1).exportWh!).toBe(15 * 77); // the attack: the prosumer's export, exactly
    const guarded = await run(true);
    expect(guarded.held).toBe(1);
    expect(guarded.nbs.map((x) => x.meters)).toEqual([4, 4]);
  });
});

describe('an import-only fleet', () => {
  it('releases what it released before protocol v2, plus exportWh: 0 in neighbourhood bodies; bills without exportBands, streams in the short form', async () => {
    const f = await makeFleet({ n: 3, start: T0, withHouseholdKeys: 1 });
    const ms = f.meters as SimMeter[];
    const pes = open(f);
    for (let slot = 0; slot < 3; slot++) pes.ingestUplink(uplink(ms.map((m, i) => m.frame(m.batch(15, 60, load(slot * 3 + i))))));
    pes.flush();
    const r = await released(f, pes);
    const t = truth(ms);
    expect(r.nbs.map((x) => ({ ...x }))).toEqual(
      [...t.windows].map(([start, w]) => ({ kind: 'neighbourhood', key: 'nb0', start, end: start + 900, revision: 0, meters: 3, energyWh: w.wh, exportWh: 0 })),
    );
    for (const b of r.bills) expect(Object.keys(b).sort()).toEqual([...BILL_KEYS].sort());
    const s = pes.sent.find((m) => m.kind === 'household')!;
    expect(Object.keys(openStream(f.households.get('hh0')!, f.pesVerify, s.topic, s.payload) as object).sort()).toEqual(['meter', 'prevWh', 'readings']);
    await pes.close();
  });
});
