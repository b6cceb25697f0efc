import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { MockBinding, openCrossedMockPair, type CrossedPair } from '../../firmware/hal/crossed-mock.js';
import { streamLine } from '../../firmware/hal/line.js';
import { FileNvStore, MemoryNvStore, type NvStore } from '../../firmware/hal/nv.js';
import type { Sample, Source } from '../../firmware/hal/source.js';
import { Meter } from '../../firmware/meter.js';
import { EnergyRegister } from '../../firmware/register.js';
import { buildTelegram } from '../../firmware/sources/p1/generate.js';
import { P1Source } from '../../firmware/sources/p1/source.js';
import { systemTitle } from '../../protocol/frame.js';
import { readingEnergies, readingExports, Status } from '../../protocol/reading.js';
import { TestPeer } from './helpers/peer.js';

const KEY = Buffer.alloc(32, 0x3c);
const ST = systemTitle('SMR', 18);
const TZ = 'Europe/Amsterdam';
const T0 = Date.UTC(2023, 9, 28, 23, 0) / 1000; // 01:00 CEST on the night summer time ends
const dir = mkdtempSync(join(tmpdir(), 'sm-p1m-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const meters: Meter[] = [];
const pairs: CrossedPair[] = [];
let n = 0;
afterEach(async () => {
  for (const m of meters.splice(0)) await m.stop();
  for (const p of pairs.splice(0)) for (const port of p) if (port.isOpen) await new Promise((r) => port.close(r));
  MockBinding.reset();
});

function captureFile(parts: Buffer[]): string {
  const file = join(dir, `c${n}.p1`);
  writeFileSync(file, Buffer.concat(parts));
  return file;
}

async function rig() {
  const pair = await openCrossedMockPair(`/dev/p1m${n}`, `/dev/p1g${n++}`);
  pairs.push(pair);
  const peer = new TestPeer(pair[1], KEY, ST);
  const start = async (file: string, nv: NvStore = new MemoryNvStore(), batch = 15) => {
    const meter = await Meter.start({ systemTitle: ST, key: KEY, line: streamLine(pair[0]), source: new P1Source(file, { tz: TZ }), nv, batch });
    meters.push(meter);
    return meter;
  };
  return { peer, start };
}

/** A deterministic day-ish of DSMR 5 telegrams, one per 10 s across the repeated hour, two tariffs. */
function telegrams(count: number): { bytes: Buffer; time: number; wh: number; exp: number }[] {
  let seed = 7;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  let low = 1_234_567;
  let normal = 7_654_321;
  let exp = 345_678; // a prosumer: the export register moves when the panels out-produce the house
  return Array.from({ length: count }, (_, i) => {
    const time = T0 + i * 10;
    const powerW = Math.floor(rnd() * 3000);
    if (i > 0) (i % 2 ? (low += Math.floor((powerW * 10) / 3600)) : (normal += Math.floor((powerW * 10) / 3600)));
    if (i > 0 && powerW < 800) exp += Math.floor(rnd() * 4);
    return { bytes: buildTelegram({ dialect: 'dsmr5', time, tz: TZ, importWh: [low, normal], exportWh: [exp, 1000], powerW, tariff: (i % 2) + 1 }), time, wh: low + normal, exp: exp + 1000 };
  });
}

describe('a meter on a P1 capture', () => {
  it('yields register differences exactly equal to the telegrams\' register differences, through losses', async () => {
    const all = telegrams(900); // 2.5 hours, across 02:00-03:00 CEST and again CET
    const corrupt = Buffer.from(all[100]!.bytes);
    corrupt[corrupt.indexOf('1-0:1.8.2') + 15]! ^= 0x02;
    const kept = all.filter((_, i) => i !== 100 && !(i > 400 && i < 450)); // one CRC failure, a pulled cable
    const parts = all.map((t, i) => (i === 100 ? corrupt : i > 400 && i < 450 ? Buffer.alloc(0) : t.bytes));
    parts.splice(300, 0, Buffer.from('\r\n<gateway reconnected>\r\n'));
    const { peer, start } = await rig();
    const meter = await start(captureFile(parts));
    const counters = await meter.done(30_000);
    expect(counters.readings).toBe(kept.length);
    const readings = peer.readings();
    // The meter's register is the P1 meter's, reading for reading, at the telegrams' instants.
    expect(readings.map((r) => [r.time + r.period, r.importWh])).toEqual(kept.map((t) => [t.time, t.wh]));
    expect(readings.every((r) => r.status === 0)).toBe(true);
    // A fresh meter starts at the P1 register: energies are the telegrams' differences, the first one 0.
    const frames = peer.frames();
    expect(frames[0]!.batch.prevWh).toBe(kept[0]!.wh);
    expect(meter.startWh).toBe(kept[0]!.wh);
    const energies = frames.flatMap((f) => readingEnergies(f.batch));
    expect(energies).toEqual(kept.map((t, i) => (i === 0 ? 0 : t.wh - kept[i - 1]!.wh)));
    expect(energies.reduce((a, b) => a + b, 0)).toBe(all.at(-1)!.wh - all[0]!.wh);
    let prev = kept[0]!.wh;
    for (const f of frames) {
      expect(f.batch.prevWh).toBe(prev);
      prev = f.batch.readings.at(-1)!.importWh;
    }
    expect(meter.registerWh).toBe(all.at(-1)!.wh);
    // The export register likewise, difference for difference.
    expect(readings.map((r) => r.exportWh)).toEqual(kept.map((t) => t.exp));
    const exports = frames.flatMap((f) => readingExports(f.batch));
    expect(exports).toEqual(kept.map((t, i) => (i === 0 ? 0 : t.exp - kept[i - 1]!.exp)));
    expect(exports.reduce((a, b) => a + b, 0)).toBe(all.at(-1)!.exp - all[0]!.exp);
    expect(all.at(-1)!.exp - all[0]!.exp).toBeGreaterThan(100);
  });

  it('flags REGISTER_RESET when the P1 register goes backwards (meter replaced), energy = the new register', async () => {
    const t = (dt: number, wh: number) => buildTelegram({ dialect: 'dsmr5', time: T0 + dt, tz: TZ, importWh: [wh, 0] });
    const { peer, start } = await rig();
    const meter = await start(captureFile([t(0, 5000), t(10, 5010), t(20, 20), t(30, 25)]));
    const counters = await meter.done(30_000);
    expect(counters.registerResets).toBe(1);
    const readings = peer.readings();
    expect(readings.map((r) => [r.importWh, r.status])).toEqual([[5000, 0], [5010, 0], [20, Status.REGISTER_RESET], [25, 0]]);
    expect(peer.frames().flatMap((f) => readingEnergies(f.batch))).toEqual([0, 10, 20, 5]);
  });

  it('carries the P1 export register: long-form batches whose export differences are the telegrams\'', async () => {
    // Import 1.8.1/1.8.2 and export 2.8.1/2.8.2 (NL: low and normal tariff) as a prosumer's meter counts them.
    const rows = Array.from({ length: 40 }, (_, i) => ({ imp: [9000 + 3 * i, 500], exp: [4000 + (i >= 10 && i < 30 ? 5 * (i - 9) : i >= 30 ? 100 : 0), 70] }));
    const t = (i: number) => buildTelegram({ dialect: 'dsmr5', time: T0 + 10 * i, tz: TZ, importWh: rows[i]!.imp, exportWh: rows[i]!.exp });
    const { peer, start } = await rig();
    const meter = await start(captureFile(rows.map((_, i) => t(i))), new MemoryNvStore(), 8);
    await meter.done(30_000);
    const frames = peer.frames();
    expect(frames).toHaveLength(5);
    // A meter with an export register sends the long form throughout, from the first telegram's registers on.
    expect(frames.every((f) => f.batch.prevExportWh !== undefined && f.batch.readings.every((r) => r.exportWh !== undefined))).toBe(true);
    expect(frames[0]!.batch.prevExportWh).toBe(4070);
    expect(peer.readings().map((r) => r.exportWh)).toEqual(rows.map((r) => r.exp[0]! + r.exp[1]!));
    const exports = frames.flatMap((f) => readingExports(f.batch));
    expect(exports).toEqual(rows.map((r, i) => (i === 0 ? 0 : r.exp[0]! - rows[i - 1]!.exp[0]!)));
    expect(exports.reduce((a, b) => a + b, 0)).toBe(100);
    expect(frames.flatMap((f) => readingEnergies(f.batch)).reduce((a, b) => a + b, 0)).toBe(3 * 39);
    expect([meter.startExportWh, meter.exportRegisterWh]).toEqual([4070, 4170]);
  });

  it('a replaced meter resets both registers (REGISTER_RESET: energies are the new registers); an export register going back alone is held', async () => {
    const t = (dt: number, imp: number, exp: number) => buildTelegram({ dialect: 'dsmr5', time: T0 + dt, tz: TZ, importWh: [imp, 0], exportWh: [exp, 0] });
    const { peer, start } = await rig();
    const meter = await start(captureFile([t(0, 5000, 800), t(10, 5010, 820), t(20, 20, 3), t(30, 25, 9), t(40, 30, 5), t(50, 31, 12)]));
    const counters = await meter.done(30_000);
    expect([counters.registerResets, counters.exportHeld]).toEqual([1, 1]);
    expect(peer.readings().map((r) => [r.importWh, r.exportWh, r.status])).toEqual([
      [5000, 800, 0],
      [5010, 820, 0],
      [20, 3, Status.REGISTER_RESET],
      [25, 9, 0],
      [30, 9, 0], // 5 < 9 while import went on: a corrupt line, not a new meter; the register keeps 9
      [31, 12, 0],
    ]);
    const batches = peer.frames().map((f) => f.batch);
    expect(batches.flatMap(readingEnergies)).toEqual([0, 10, 20, 5, 5, 1]);
    expect(batches.flatMap(readingExports)).toEqual([0, 20, 3, 6, 0, 3]);
  });

  it('resumes from its NV store without re-basing: no reset, no energy counted twice', async () => {
    const all = telegrams(200);
    const file = captureFile(all.map((t) => t.bytes));
    const nvFile = join(dir, 'nv.cbor');
    const first = await rig();
    first.peer.ack = () => false; // nothing acknowledged: the meter stalls with a full window
    const m1 = await first.start(file, new FileNvStore(nvFile), 5);
    await first.peer.until(32);
    await m1.stop();
    const second = await rig();
    const m2 = await second.start(file, new FileNvStore(nvFile), 5);
    await m2.done(30_000);
    const readings = second.peer.readings();
    expect(readings.every((r) => (r.status & Status.REGISTER_RESET) === 0)).toBe(true);
    const firstTime = readings[0]!.time + readings[0]!.period;
    const ends = readings.map((r) => r.time + r.period);
    expect(new Set(ends).size).toBe(ends.length);
    expect(readings.at(-1)!.importWh).toBe(all.at(-1)!.wh);
    // Everything from the first frame onwards arrives, restored frames included, with exact registers.
    expect(readings.map((r) => r.importWh)).toEqual(all.filter((t) => t.time >= firstTime).map((t) => t.wh));
    expect(readings.map((r) => r.exportWh)).toEqual(all.filter((t) => t.time >= firstTime).map((t) => t.exp));
    // The first frame starts at the register before its first reading (the baseline, when that is the first telegram).
    expect(second.peer.frames()[0]!.batch.prevExportWh).toBe((all.filter((t) => t.time < firstTime).at(-1) ?? all[0]!).exp);
  });
});

describe('a meter on a live source', () => {
  it('stops promptly while the source waits for a telegram that never comes (cable pulled)', async () => {
    const pair = await openCrossedMockPair(`/dev/p1m${n}`, `/dev/p1g${n++}`);
    pairs.push(pair);
    const silent: Source = {
      name: 'silent',
      live: true, // a live port: the meter must not wait for its next sample to stop
      async *samples(): AsyncGenerator<Sample> {
        yield { time: T0, period: 1, powerMilliW: 0, importWh: 5 };
        await new Promise(() => undefined); // no telegram, ever
      },
    };
    const meter = await Meter.start({ systemTitle: ST, key: KEY, line: streamLine(pair[0]), source: silent, nv: new MemoryNvStore() });
    await vi.waitFor(() => expect(meter.counters.readings).toBe(1));
    const outcome = await Promise.race([meter.stop().then(() => 'stopped'), new Promise((r) => setTimeout(() => r('hung'), 2000))]);
    expect(outcome).toBe('stopped');
  });
});

describe('EnergyRegister.adopt', () => {
  it('adopts a register exactly and reports a reset only when it goes backwards', () => {
    const reg = new EnergyRegister();
    expect(reg.adopt(1_234_567)).toEqual({ wh: 1_234_567, reset: false });
    expect(reg.milliWs).toBe(1_234_567n * 3_600_000n);
    expect(reg.adopt(1_234_567)).toEqual({ wh: 1_234_567, reset: false });
    expect(reg.adopt(12)).toEqual({ wh: 12, reset: true });
    expect(() => reg.adopt(-1)).toThrow(RangeError);
    expect(() => reg.adopt(1.5)).toThrow(RangeError);
  });
});
