/**
 * Meter key rotation end to end (issue 17 item 12, docs/protocol.md §7.1): a firmware Meter sends continuously
 * over a crossed mock line to a gateway stand-in that hands every frame to the PES (state file on disk) and
 * acknowledges it only once the PES has it, as the real gateway does after the broker's PUBACK. Mid-stream a
 * head-end stand-in puts a key transfer on the line (the first copy is lost on the line, so it repeats it until
 * the meter acknowledges). Nothing may be lost or counted twice; afterwards the retired key is refused, across a
 * PES restart too.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { MockBinding, openCrossedMockPair } from '../../firmware/hal/crossed-mock.js';
import { streamLine } from '../../firmware/hal/line.js';
import { MemoryNvStore } from '../../firmware/hal/nv.js';
import { Meter } from '../../firmware/meter.js';
import { SyntheticSource } from '../../firmware/sources/synthetic.js';
import { createPes, type PesHandle } from '../../pes/pes.js';
import { decodeFrame, decodeMessage, encodeAck, encodeFrame, encodeKeyTransfer, MSG_FRAME, MSG_KEY_ACK, openFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { wrapMeterKey } from '../../protocol/key-wrap.js';
import { encodeLinkFrame, LinkParser } from '../../protocol/link.js';
import type { BillingAggregate } from '../../protocol/aggregate.js';
import { decodeReadingBatch, encodeReadingBatch } from '../../protocol/reading.js';
import { latest, makeFleet, openAggregates, uplink } from '../pes/helpers.js';

const log = pino({ level: 'silent' });
const START = Date.UTC(2016, 4, 2) / 1000;
let cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
  MockBinding.reset();
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'rotation-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

describe('meter key rotation through line, gateway stand-in and PES', () => {
  it('under load: every frame folded exactly once across the switch; then the retired key is refused, also after a PES restart', async () => {
    const f = await makeFleet({ n: 1, start: START });
    const sim = f.meters[0]!;
    const info = f.info.get(sim.id)!;
    const kek = randomBytes(32);
    const newKey = randomBytes(32);
    info.rotated = [newKey]; // what `provision rotate` gives the PES: generation 1
    const stateFile = join(tmp(), 'pes.sqlite');
    const pesOpts = { keys: f.keys, stateFile, intervalS: 900, latenessS: 600, k: 1, revisionK: 1, logger: log };
    let pes: PesHandle = createPes(pesOpts);
    cleanups.push(() => pes.close());

    const transfer = encodeLinkFrame(encodeKeyTransfer({ systemTitle: sim.st, generation: 1, wrapped: wrapMeterKey(kek, 1, newKey) }));
    let transferCopies = 0;
    let downChunks = 0;
    let upChunks = 0;
    const [meterEnd, gwEnd] = await openCrossedMockPair('/dev/rot-meter', '/dev/rot-gw', {
      // Uplink loss: every 5th chunk (frames, retransmitted later, possibly after newer ones). Downlink loss:
      // the first copy of the transfer, and every 7th other chunk (acknowledgements).
      noise: (chunk, dir) => {
        if (dir === 'AtoB') return ++upChunks % 5 === 0 ? null : chunk;
        if (chunk.equals(transfer)) return ++transferCopies === 1 ? null : chunk;
        return ++downChunks % 7 === 0 ? null : chunk;
      },
    });
    cleanups.push(() => Promise.all([meterEnd, gwEnd].map((p) => new Promise((r) => (p.isOpen ? p.close(r) : r(null))))));

    // Gateway stand-in with the PES behind it: a frame is acknowledged once the PES has it durably.
    const keyAcks: number[] = [];
      const underKey = new Map<number, 'old' | 'new'>(); // distinct counters by the key that seals them
    const bytesByIc = new Map<number, Buffer>();
    const handlerErrors: string[] = [];
    gwEnd.pipe(new LinkParser()).on('data', (payload: Buffer) => {
      try {
        relay(payload);
      } catch (e) {
        handlerErrors.push((e as Error).message);
      }
    });
    const relay = (payload: Buffer) => {
      const m = decodeMessage(payload);
      if (m.type === MSG_KEY_ACK) return void keyAcks.push(m.generation);
      if (m.type !== MSG_FRAME) return;
      const frame = decodeFrame(payload);
      for (const [name, key] of [['old', sim.key], ['new', newKey]] as const) {
        try {
          openFrame(key, frame);
          const prev = underKey.get(m.ic);
          if (prev && prev !== name) throw new Error(`counter ${m.ic} used under both keys`);
          underKey.set(m.ic, name);
        } catch {
          // not under this key
        }
      }
      bytesByIc.set(m.ic, payload);
      pes.ingestUplink(uplink([payload]));
      gwEnd.write(encodeLinkFrame(encodeAck({ systemTitle: m.systemTitle, ic: m.ic })));
    };

    const source = new SyntheticSource({ seed: 17, start: START, days: 2 });
    const nv = new MemoryNvStore();
    const meter = await Meter.start({ systemTitle: sim.st, key: sim.key, kek, line: streamLine(meterEnd), source, nv, batch: 15, ackTimeoutMs: 200, window: 8 });
    cleanups.push(() => meter.stop());

    // Head-end stand-in: once the meter is well under way, send the transfer until it is acknowledged.
    while (pes.counters.framesOk < 40) await new Promise((r) => setTimeout(r, 5));
    while (keyAcks.length === 0) {
      gwEnd.write(transfer);
      await new Promise((r) => setTimeout(r, 150));
    }
    const counters = await meter.done(120_000);
    expect(handlerErrors).toEqual([]);

    // Every figure in the message of each check below: a failure under load must say what happened.
    const why = () => JSON.stringify({ meter: counters, pes: pes.counters, transferCopies, keyAcks, ics: [...underKey].sort((a, b) => a[0] - b[0]) });
    expect(transferCopies, why()).toBeGreaterThanOrEqual(2); // the first copy was lost and the transfer repeated
    expect(keyAcks.every((g) => g === 1)).toBe(true);
    expect(counters.retransmits, why()).toBeGreaterThan(0); // lost acknowledgements were repaired around the switch
    expect([counters.keyTransfers, counters.keySwitches, counters.badKeyTransfer, meter.keyGeneration], why()).toEqual([1, 1, 0, 1]);
    // The switch is one boundary: every counter below it under the old key, every one above under the new.
    const ics = [...underKey.keys()].sort((a, b) => a - b);
    const firstNew = ics.findIndex((ic) => underKey.get(ic) === 'new');
    expect(firstNew, why()).toBeGreaterThan(20);
    expect(ics.slice(0, firstNew).every((ic) => underKey.get(ic) === 'old'), why()).toBe(true);
    expect(ics.slice(firstNew).every((ic) => underKey.get(ic) === 'new'), why()).toBe(true);
    expect(ics.length, why()).toBe(counters.frames);

    // Nothing lost, nothing counted twice.
    const c = pes.counters;
    expect(c.framesOk, why()).toBe(counters.frames);
    expect(c.readings, why()).toBe(counters.readings);
    expect([c.badTag, c.replay, c.retiredKey, c.keySwitches, c.malformedFrame], why()).toEqual([0, 0, 0, 1, 0]);
    pes.flush();
    await pes.idle();
    const billed = [...latest(openAggregates(f, pes.sent)).values()].filter((b): b is BillingAggregate => b.kind === 'billing');
    const energy = billed.reduce((a, b) => a + Object.values(b.bands).reduce((x, y) => x + y, 0), 0);
    expect(energy, why()).toBe(meter.registerWh - meter.startWh);
    expect(energy).toBeGreaterThan(0);

    // A frame under the retired key, fresh counter, valid batch: refused and counted, not folded.
    const lastNew = decodeReadingBatch(openFrame(newKey, decodeFrame(bytesByIc.get(ics.at(-1)!)!)));
    const r = lastNew.readings.at(-1)!;
    const next = { prevWh: r.importWh, readings: [{ time: r.time + r.period, period: 60, importWh: r.importWh + 5, powerW: 300, status: 0 }] };
    const seal = (key: Uint8Array, ic: number) => encodeFrame(sealFrame(key, { systemTitle: sim.st, sc: SC_AES256GCM, ic }, encodeReadingBatch(next)));
    const highest = ics.at(-1)!;
    pes.ingestUplink(uplink([seal(sim.key, highest + 1)]));
    expect([pes.counters.retiredKey, pes.counters.framesOk]).toEqual([1, counters.frames]);

    // After a PES restart the switch is remembered: the retired key is still refused, the new one accepted.
    await pes.close();
    pes = createPes(pesOpts);
    pes.ingestUplink(uplink([seal(sim.key, highest + 2)]));
    expect(pes.counters.retiredKey).toBe(2);
    pes.ingestUplink(uplink([seal(newKey, highest + 3)]));
    expect([pes.counters.framesOk, pes.counters.keySwitches, pes.counters.badTag]).toEqual([counters.frames + 1, 1, 0]);
  }, 180_000);
});
