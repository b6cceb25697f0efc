import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { MockBinding, openCrossedMockPair, type CrossedPair } from '../../firmware/hal/crossed-mock.js';
import { streamLine } from '../../firmware/hal/line.js';
import { createClock } from '../../firmware/hal/clock.js';
import { FileNvStore, MemoryNvStore, type PowerCut } from '../../firmware/hal/nv.js';
import type { Sample, Source } from '../../firmware/hal/source.js';
import { Meter, type MeterOptions } from '../../firmware/meter.js';
import { encodeMeterState } from '../../firmware/state.js';
import { SyntheticModel, SyntheticSource, writeSyntheticCsv } from '../../firmware/sources/synthetic.js';
import { UmassSource } from '../../firmware/sources/umass.js';
import { encodeLinkFrame } from '../../protocol/link.js';
import { decodeFrame, encodeAck, encodeFrame, MAX_IC, openFrame, sealFrame, SC_AES256GCM, systemTitle } from '../../protocol/frame.js';
import { encodeReadingBatch, readingEnergies, readingExports, Status } from '../../protocol/reading.js';
import { expectedRegisterFromCsv, TestPeer } from './helpers/peer.js';

const KEY = Buffer.alloc(32, 0x5a);
const ST = systemTitle('SMR', 77);
const dir = mkdtempSync(join(tmpdir(), 'sm-meter-'));
const csv = join(dir, 'apt.csv');
let expected: { time: number; importWh: number }[];

beforeAll(async () => {
  // One day at one minute (1440 samples -> 96 frames of 15), in the UMass format.
  await writeSyntheticCsv(csv, { seed: 21, start: Date.UTC(2016, 4, 2) / 1000, days: 1 });
  expected = await expectedRegisterFromCsv(csv);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const meters: Meter[] = [];
const pairs: CrossedPair[] = [];
let n = 0;
afterEach(async () => {
  for (const m of meters.splice(0)) await m.stop();
  for (const p of pairs.splice(0)) {
    for (const port of p) if (port.isOpen) await new Promise((r) => port.close(r));
  }
  MockBinding.reset();
});

async function rig(noise?: Parameters<typeof openCrossedMockPair>[2]) {
  const pair = await openCrossedMockPair(`/dev/meter${n}`, `/dev/gw${n++}`, noise);
  pairs.push(pair);
  const peer = new TestPeer(pair[1], KEY, ST);
  const start = async (o: Partial<MeterOptions> = {}) => {
    const meter = await Meter.start({ systemTitle: ST, key: KEY, line: streamLine(pair[0]), source: new UmassSource(csv), nv: new MemoryNvStore(), ...o });
    meters.push(meter);
    return meter;
  };
  return { pair, peer, start };
}

/** The peer's readings must be exactly the CSV's, with a consistent prevWh chain. */
function expectExactReadings(peer: TestPeer): void {
  const frames = peer.frames();
  const readings = frames.flatMap((f) => f.batch.readings);
  expect(readings.map((r) => [r.time, r.importWh])).toEqual(expected.map((e) => [e.time, e.importWh]));
  let prevWh = 0;
  for (const f of frames) {
    expect(f.batch.prevWh).toBe(prevWh);
    prevWh = f.batch.readings[f.batch.readings.length - 1]!.importWh;
  }
  const energy = frames.flatMap((f) => readingEnergies(f.batch)).reduce((a, b) => a + b, 0);
  expect(energy).toBe(expected[expected.length - 1]!.importWh);
}

function arrivalIcsStrictlyIncreasing(peer: TestPeer): void {
  const firsts: number[] = [];
  const seen = new Set<number>();
  for (const r of peer.received) if (!seen.has(r.ic)) (seen.add(r.ic), firsts.push(r.ic));
  firsts.slice(1).forEach((ic, i) => expect(ic).toBeGreaterThan(firsts[i]!));
}

describe('Meter over a crossed mock line', () => {
  it('sends every reading of a CSV, ciphered, with register deltas equal to the source energy', async () => {
    const { peer, start } = await rig();
    const key = Buffer.from(KEY);
    const meter = await start({ key });
    key.fill(0); // the caller wipes its copy of the key once the meter runs
    const counters = await meter.done(30_000);
    expect(counters).toMatchObject({ readings: 1440, frames: 96, acked: 96, retransmits: 0, droppedFromRing: 0, badDownlink: 0, duplicateAcks: 0 });
    expect(peer.received).toHaveLength(96);
    expect(peer.rejected).toBe(0);
    expectExactReadings(peer);
    arrivalIcsStrictlyIncreasing(peer);
    expect(peer.readings().every((r) => r.status === 0 && r.period === 60)).toBe(true);
    expect(meter.registerWh).toBe(expected[expected.length - 1]!.importWh);
    expect(meter.unacked).toBe(0);
  });

  it('retransmits frames whose acknowledgement was lost, with identical bytes', async () => {
    const { peer, start } = await rig();
    peer.ack = (ic, nth) => !(ic % 3 === 0 && nth === 1); // lose the first ack of every third frame
    const meter = await start({ ackTimeoutMs: 50 });
    const counters = await meter.done(30_000);
    expect(counters.retransmits).toBeGreaterThanOrEqual(32);
    expect(counters.acked).toBe(96);
    expect(peer.received.length).toBeGreaterThanOrEqual(96 + 32);
    expect(peer.frames().every((f) => peer.received.filter((r) => r.ic === f.ic).length >= (f.ic % 3 === 0 ? 2 : 1))).toBe(true);
    expectExactReadings(peer);
  });

  it('survives the line going down mid-stream', async () => {
    const { pair, peer, start } = await rig();
    const meter = await start({ ackTimeoutMs: 50 });
    await peer.until(20);
    pair.line.cut();
    await new Promise((r) => setTimeout(r, 200));
    pair.line.restore();
    const counters = await meter.done(30_000);
    expect(pair.line.counters.dropped.AtoB).toBeGreaterThan(0);
    expect(counters.retransmits).toBeGreaterThan(0);
    expect(counters.acked).toBe(96);
    expectExactReadings(peer);
  });

  it('is not broken by noise on the line in both directions', async () => {
    let seed = 12345;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const { pair, peer, start } = await rig({
      noise: (chunk) => {
        const x = rnd();
        if (x < 0.05) return null; // drop the chunk
        if (x < 0.15) {
          const b = Buffer.from(chunk);
          b[Math.floor(rnd() * b.length)]! ^= 1 << Math.floor(rnd() * 8); // flip a bit
          return b;
        }
        if (x < 0.2) return Buffer.concat([Buffer.from([0x7e, 0x13, 0x37, 0x7d]), chunk]); // garbage before
        return chunk;
      },
    });
    const meter = await start({ ackTimeoutMs: 50 });
    const counters = await meter.done(60_000);
    expect(counters.acked).toBe(96);
    const lineErrors = meter.link.badCrc + meter.link.malformed + peer.parser.counters.badCrc + peer.parser.counters.malformed + pair.line.counters.dropped.AtoB + pair.line.counters.dropped.BtoA;
    expect(lineErrors).toBeGreaterThan(0);
    expect(counters.retransmits).toBeGreaterThan(0);
    expectExactReadings(peer);
  });

  it('keeps at most `window` frames in flight and retransmits oldest first', async () => {
    const { peer, start } = await rig();
    peer.ack = () => false;
    const meter = await start({ window: 4, ackTimeoutMs: 300, clock: createClock(1e6) });
    await vi.waitFor(() => expect(meter.counters.frames).toBe(96), { timeout: 20_000 });
    expect([...peer.distinct().keys()]).toEqual([0, 1, 2, 3]);
    await vi.waitFor(() => expect(peer.received.length).toBeGreaterThanOrEqual(8), { timeout: 20_000 });
    expect(peer.received.slice(0, 8).map((r) => r.ic)).toEqual([0, 1, 2, 3, 0, 1, 2, 3]);
    peer.ack = () => true;
    for (const ic of [0, 1, 2, 3]) peer.sendAck(ic);
    const counters = await meter.done(30_000);
    expect(counters.retransmits).toBeGreaterThanOrEqual(4);
    expectExactReadings(peer);
  });

  it('drops the oldest frames when the ring overflows, without losing energy', async () => {
    const { pair, peer, start } = await rig();
    pair.line.cut();
    const meter = await start({ ringCapacity: 4, window: 8, ackTimeoutMs: 50 });
    await vi.waitFor(() => expect(meter.counters.frames).toBe(96), { timeout: 20_000 });
    pair.line.restore();
    const counters = await meter.done(30_000);
    expect(counters).toMatchObject({ frames: 96, droppedFromRing: 92, acked: 4 });
    const frames = peer.frames();
    expect(frames.map((f) => f.ic)).toEqual([92, 93, 94, 95]);
    // The first surviving frame starts from the register after every dropped reading.
    expect(frames[0]!.batch.prevWh).toBe(expected[92 * 15 - 1]!.importWh);
    expect(frames[3]!.batch.readings.at(-1)!.importWh).toBe(expected.at(-1)!.importWh);
  });

  it('counts bad downlink messages and duplicate acks without failing', async () => {
    const { pair, peer, start } = await rig();
    const meter = await start();
    await meter.done(30_000);
    const foreign = sealFrame(KEY, { systemTitle: ST, sc: SC_AES256GCM, ic: 1 }, Buffer.from('x'));
    pair[1].write(encodeLinkFrame(Buffer.from('not cbor')));
    pair[1].write(encodeLinkFrame(encodeAck({ systemTitle: systemTitle('SMR', 78), ic: 5 })));
    pair[1].write(encodeLinkFrame(encodeFrame(foreign)));
    pair[1].write(Buffer.from('line garbage')); // after a flag: read as a frame that fails its FCS
    peer.sendAck(5);
    await vi.waitFor(() => {
      expect(meter.counters.badDownlink).toBe(3);
      expect(meter.counters.duplicateAcks).toBe(1);
      expect(meter.link.badCrc).toBe(1);
    });
    expect(meter.counters.acked).toBe(96);
  });

  it('rejects done() after the drain timeout when frames stay unacknowledged', async () => {
    const { peer, start } = await rig();
    peer.ack = () => false;
    const meter = await start({ ackTimeoutMs: 1000 });
    await expect(meter.done(300)).rejects.toThrow(/frames unacknowledged after 300 ms/);
  });

  it('stops with "key must be renewed" when the invocation counter runs out', async () => {
    const { peer, start } = await rig();
    const nv = new MemoryNvStore();
    await nv.save(encodeMeterState({ systemTitle: ST, reservedIc: MAX_IC - 1, registerMilliWs: 0n, exportMilliWs: 0n, resumeAt: -1, samples: 0, ring: [] }));
    const meter = await start({ nv });
    await expect(meter.done(30_000)).rejects.toThrow(/key must be renewed/);
    await vi.waitFor(() => expect([...peer.distinct().keys()]).toEqual([MAX_IC - 1, MAX_IC]));
  });

  it('refuses a source whose time goes backwards, an NV record of another meter, and bad options', async () => {
    const { start } = await rig();
    const backwards: Source = {
      name: 'backwards',
      async *samples(): AsyncGenerator<Sample> {
        yield { time: 1000, period: 60, powerMilliW: 1 };
        yield { time: 1030, period: 60, powerMilliW: 1 };
      },
    };
    const meter = await start({ source: backwards });
    await expect(meter.done(10_000)).rejects.toThrow(/backwards: sample at 1030 starts before the previous one ended \(1060\)/);
    const nv = new MemoryNvStore();
    await nv.save(encodeMeterState({ systemTitle: systemTitle('SMR', 1), reservedIc: 0, registerMilliWs: 0n, exportMilliWs: 0n, resumeAt: -1, samples: 0, ring: [] }));
    await expect(start({ nv })).rejects.toThrow(/belongs to meter 534d520000000001/);
    await expect(start({ batch: 61 })).rejects.toThrow(/"batch" must be an integer in 1..60/);
    await expect(start({ key: Buffer.alloc(16) })).rejects.toThrow(/"key" must be 32 bytes/);
  });
});

describe('Meter restarts', () => {
  it('resumes after being killed mid-stream: no counter reused, unacked frames resent, same final register', async () => {
    const { peer, start } = await rig();
    const nvFile = join(dir, `nv-${n}.cbor`);
    peer.ack = (ic) => ic < 15; // frames from 15 on stay unacknowledged: they are in the ring at the kill
    const first = await start({ nv: new FileNvStore(nvFile) });
    await peer.until(30);
    first.halt(); // power cut: no clean shutdown; the NV file stays as it is
    const firstIcs = new Set(peer.distinct().keys());
    const firstReceived = peer.received.length;

    peer.ack = () => true;
    const second = await start({ nv: new FileNvStore(nvFile), ackTimeoutMs: 100 });
    const counters = await second.done(30_000);
    expect(counters.retransmits).toBeGreaterThanOrEqual(15);

    // Frames the first boot left unacknowledged came again, byte for byte (distinct() checks the bytes).
    const again = new Set(peer.received.slice(firstReceived).map((r) => r.ic));
    for (let ic = 15; ic < 30; ic++) expect(again.has(ic), `frame ${ic} resent`).toBe(true);
    // New frames after the restart use counters beyond anything used before (block jump-ahead).
    const fresh = [...new Set(peer.received.slice(firstReceived).filter((r) => !firstIcs.has(r.ic)).map((r) => r.ic))];
    expect(fresh.length).toBeGreaterThan(0);
    expect(Math.min(...fresh)).toBeGreaterThan(Math.max(...firstIcs));
    fresh.slice(1).forEach((ic, i) => expect(ic).toBeGreaterThan(fresh[i]!)); // first arrivals in counter order

    expectExactReadings(peer);
    expect(second.registerWh).toBe(expected.at(-1)!.importWh);
    // The first reading produced after the restart carries the power-failure flag, and only it.
    const flagged = peer.readings().filter((r) => r.status & Status.POWER_FAILURE);
    expect(flagged).toHaveLength(1);
    expect(flagged[0]!.time).toBe(peer.distinct().get(Math.min(...fresh))!.batch.readings[0]!.time);
  });

  for (const when of ['before-save', 'after-save'] as PowerCut[]) {
    for (const reservation of [2, 5]) {
      it(`never reuses a counter after a power cut ${when} of counter reservation ${reservation}`, async () => {
        const { peer, start } = await rig();
        const nv = new MemoryNvStore();
        const save = nv.save.bind(nv);
        let mark = 0;
        let reservations = 0;
        nv.save = (record) => {
          const ic = (record as { ic: number }).ic;
          if (ic > mark) {
            mark = ic;
            if (++reservations === reservation) nv.cutAt(nv.saves + 1, when);
          }
          return save(record);
        };
        const first = await start({ nv, counterBlock: 4 });
        await Promise.race([nv.powerCut, first.done()]);
        expect(nv.isCut).toBe(true);
        first.halt();
        nv.powerOn();
        const used = new Set(peer.distinct().keys());
        const second = await start({ nv, counterBlock: 4, ackTimeoutMs: 100 });
        await second.done(30_000);
        peer.distinct(); // throws if any counter carried two different frames
        const fresh = [...peer.distinct().keys()].filter((ic) => !used.has(ic));
        // The restart resumes at the last durable mark: the cut reservation if it landed, else the one before.
        expect(Math.min(...fresh)).toBe(4 * (when === 'after-save' ? reservation : reservation - 1));
        expect(Math.min(...fresh)).toBeGreaterThan(Math.max(...used));
        expectExactReadings(peer);
        expect(second.registerWh).toBe(expected.at(-1)!.importWh);
      });
    }
  }
});

describe('Meter on a household with solar panels', () => {
  const JUNE = Date.UTC(2024, 5, 19) / 1000;
  const pv = { kWp: 4 };
  /** Both registers after each minute, from the model alone: cumulative mW·s of the net's two parts, floored. */
  function expectedRegisters(startWh = 0): { time: number; importWh: number; exportWh: number }[] {
    const model = new SyntheticModel(4, 'UTC', pv);
    let imp = BigInt(startWh) * 3_600_000n;
    let exp = 0n;
    return Array.from({ length: 1440 }, (_, m) => {
      const time = JUNE + m * 60;
      const net = model.powerMilliW(time) - model.pvMilliW(time);
      if (net > 0) imp += BigInt(net) * 60n;
      else exp += BigInt(-net) * 60n;
      return { time, importWh: Number(imp / 3_600_000n), exportWh: Number(exp / 3_600_000n) };
    });
  }

  it('meters import and export exactly through a power cut; short form until the export register moves, long form after', async () => {
    const { peer, start } = await rig();
    const nvFile = join(dir, `nv-pv-${n}.cbor`);
    const source = () => new SyntheticSource({ seed: 4, start: JUNE, days: 1, pv });
    peer.ack = (ic) => ic < 40;
    const first = await start({ nv: new FileNvStore(nvFile), source: source() });
    await peer.until(50); // past noon: exporting
    first.halt();
    peer.ack = () => true;
    const second = await start({ nv: new FileNvStore(nvFile), source: source(), ackTimeoutMs: 100 });
    await second.done(30_000);

    const want = expectedRegisters();
    const frames = peer.frames();
    expect(frames.flatMap((f) => f.batch.readings).map((r) => [r.time, r.importWh, r.exportWh ?? 0])).toEqual(want.map((w) => [w.time, w.importWh, w.exportWh]));
    expect(frames.flatMap((f) => readingEnergies(f.batch)).reduce((a, b) => a + b, 0)).toBe(want.at(-1)!.importWh);
    expect(frames.flatMap((f) => readingExports(f.batch)).reduce((a, b) => a + b, 0)).toBe(want.at(-1)!.exportWh);
    expect(want.at(-1)!.exportWh).toBeGreaterThan(5000);
    expect([second.exportRegisterWh, second.registerWh]).toEqual([want.at(-1)!.exportWh, want.at(-1)!.importWh]);
    // Before sunrise the meter sends version 1's bytes: the short form, no export anywhere.
    const firstExport = frames.findIndex((f) => f.batch.prevExportWh !== undefined);
    expect(firstExport).toBeGreaterThan(10);
    for (const f of frames.slice(0, firstExport)) {
      expect(f.batch.readings.every((r) => r.exportWh === undefined)).toBe(true);
      const plain = openFrame(KEY, decodeFrame(Buffer.from(f.bytes, 'hex')));
      expect(Buffer.from(plain).equals(encodeReadingBatch({ prevWh: f.batch.prevWh, readings: f.batch.readings }))).toBe(true);
    }
    // From the first export on, every frame is long, chained on both registers.
    expect(frames.slice(firstExport).every((f) => f.batch.readings.every((r) => r.exportWh !== undefined))).toBe(true);
    for (let i = firstExport + 1; i < frames.length; i++) expect(frames[i]!.batch.prevExportWh).toBe(frames[i - 1]!.batch.readings.at(-1)!.exportWh);
  });

  it('boots from a version 1 NV record (before export existed) and starts exporting from 0', async () => {
    const { peer, start } = await rig();
    const nv = new MemoryNvStore();
    await nv.save({ v: 1, st: ST, ic: 64, reg: [1000, 0], at: JUNE, n: 0, ring: [] });
    const meter = await start({ nv, source: new SyntheticSource({ seed: 4, start: JUNE, days: 1, pv }) });
    await meter.done(30_000);
    const want = expectedRegisters(1000);
    expect(peer.readings().map((r) => [r.importWh, r.exportWh ?? 0])).toEqual(want.map((w) => [w.importWh, w.exportWh]));
    expect(peer.frames()[0]!.batch.prevWh).toBe(1000);
    expect(Math.min(...peer.distinct().keys())).toBe(64);
    expect((await nv.load() as { v: number }).v).toBe(2);
  });
});
