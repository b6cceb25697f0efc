// The end-to-end meter's encoder lives in NV with the registers (firmware/meter.ts `e2e`, firmware/state.ts):
// a power cut at any save, before or after it lands, followed by a restart from NV, gives exactly the snapshots
// (interval boundary -> band registers) of a run without a cut: none lost, none counted twice, none with two
// values. A meter keeps its mode: NV of the other mode refuses to boot.
import { beforeAll, describe, expect, it } from 'vitest';
import { MemoryNvStore, type PowerCut } from '../../firmware/hal/nv.js';
import type { SerialLine } from '../../firmware/hal/line.js';
import type { Sample, Source } from '../../firmware/hal/source.js';
import { Meter, type MeterOptions } from '../../firmware/meter.js';
import { decodeMeterState, encodeMeterState } from '../../firmware/state.js';
import { parseTariff } from '../../lib/tariff.js';
import { decodeE2ePayload, registerLayout, unpackRegisters } from '../../protocol/e2e.js';
import { decodeFrame, decodeMessage, encodeAck, MSG_FRAME, openFrame, systemTitle } from '../../protocol/frame.js';
import { encodeLinkFrame, LinkParser } from '../../protocol/link.js';
import { generatePaillier, type PrivateKey } from '../../protocol/paillier/engine.js';

const ST = systemTitle('SMR', 12);
const KEY = new Uint8Array(32).fill(9);
const H = 1_704_067_200; // 2024-01-01T00:00Z
// Two bands, so that a band register restored wrong would show: night before 01:00, day after.
const TARIFF = parseTariff({ tz: 'UTC', bands: [{ name: 'night', rules: [{ days: [1, 2, 3, 4, 5, 6, 7], from: '00:00', to: '01:00' }] }, { name: 'day', default: true }] });
const MINUTES = 150;
let key: PrivateKey;
beforeAll(async () => {
  key = await generatePaillier(1024);
});

/** Minutes of varying power (import, and export every seventh minute). */
const source: Source = {
  name: 'test',
  async *samples(from?: number) {
    for (let i = 0; i < MINUTES; i++) {
      const s: Sample = { time: H + i * 60, period: 60, powerMilliW: i % 7 === 0 ? 0 : 300_000 + ((i * 7919) % 2_000_000), ...(i % 7 === 0 ? { exportMilliW: 1_500_000 } : {}) };
      if (from === undefined || s.time >= from) yield s;
    }
  },
};

/** A line that keeps every frame the meter sends (by counter) and acknowledges it at once. */
function ackingLine(sent: Map<number, Uint8Array>): SerialLine {
  const parser = new LinkParser();
  let listener: ((b: Buffer) => void) | undefined;
  parser.on('data', (payload: Buffer) => {
    const m = decodeMessage(payload);
    if (m.type !== MSG_FRAME) return;
    sent.set(m.ic, payload);
    setImmediate(() => listener?.(encodeLinkFrame(encodeAck({ systemTitle: ST, ic: m.ic }))));
  });
  return {
    write: async (bytes) => void parser.write(bytes),
    onData: (l) => {
      listener = l;
      return () => (listener = undefined);
    },
  };
}

const options = (nv: MemoryNvStore, sent: Map<number, Uint8Array>): MeterOptions => ({
  systemTitle: ST,
  key: KEY,
  line: ackingLine(sent),
  source,
  nv,
  batch: 4,
  counterBlock: 8,
  ackTimeoutMs: 50,
  e2e: { publicKey: key, intervalS: 900, tariff: TARIFF },
});

/** Every snapshot of the frames received, boundary -> "imports/exports"; throws on one boundary with two values. */
function snapshots(sent: Map<number, Uint8Array>): Map<number, string> {
  const layout = registerLayout(key, 2);
  const out = new Map<number, string>();
  for (const bytes of sent.values()) {
    for (const s of decodeE2ePayload(key, openFrame(KEY, decodeFrame(bytes))).snapshots) {
      const r = unpackRegisters(layout, key.decrypt(s.ciphertext), 2);
      const v = `${r.imports.join(',')}/${r.exports.join(',')}`;
      if (out.has(s.at) && out.get(s.at) !== v) throw new Error(`boundary ${s.at} carried ${out.get(s.at)} and ${v}`);
      out.set(s.at, v);
    }
  }
  return out;
}

async function uninterrupted(): Promise<Map<number, string>> {
  const sent = new Map<number, Uint8Array>();
  const meter = await Meter.start(options(new MemoryNvStore(), sent));
  await meter.done(30_000);
  await meter.stop();
  return snapshots(sent);
}

describe('end-to-end meter: the encoder in NV', () => {
  let truth: Map<number, string>;
  beforeAll(async () => {
    truth = await uninterrupted();
  });

  it('a run without a cut: a baseline and one snapshot per 15-minute boundary, night and day bands both counted', () => {
    expect([...truth.keys()]).toEqual(Array.from({ length: MINUTES / 15 + 1 }, (_, i) => H + i * 900));
    const last = truth.get(H + MINUTES * 60)!.split('/').map((p) => p.split(',').map(BigInt));
    expect(last[0]!.every((v) => v > 0n)).toBe(true);
    expect(last[1]!.every((v) => v > 0n)).toBe(true);
  });

  // Saves of three kinds: a frame's, an acknowledgement's, and a counter reservation's, which lands while a
  // frame is being built (its snapshots already encrypted, the frame not yet committed).
  for (const when of ['before-save', 'after-save'] as PowerCut[]) {
    for (const cut of [{ save: 6 }, { save: 13 }, { reservation: 2 }, { reservation: 3 }] as ({ save: number } | { reservation: number })[]) {
      const what = 'save' in cut ? `save ${cut.save}` : `counter reservation ${cut.reservation}`;
      it(`a power cut ${when} ${what}, then a restart from NV: the same snapshots, none lost or doubled`, async () => {
        const nv = new MemoryNvStore();
        const sent = new Map<number, Uint8Array>();
        if ('save' in cut) nv.cutAt(cut.save, when);
        else {
          const save = nv.save.bind(nv);
          let mark = 0;
          let reservations = 0;
          nv.save = (record) => {
            const ic = (record as { ic: number }).ic;
            if (ic > mark) {
              mark = ic;
              if (++reservations === cut.reservation) nv.cutAt(nv.saves + 1, when);
            }
            return save(record);
          };
        }
        const first = await Meter.start(options(nv, sent));
        await Promise.race([nv.powerCut, first.done()]);
        expect(nv.isCut).toBe(true);
        first.halt();
        nv.powerOn();
        const state = decodeMeterState(await nv.load(), ST);
        expect(state.e2e?.imports).toHaveLength(2);
        const second = await Meter.start(options(nv, sent));
        await second.done(30_000);
        await second.stop();
        expect(snapshots(sent)).toEqual(truth);
      });
    }
  }

  it('refuses to boot in the other mode, or with another number of bands', async () => {
    const classic = new MemoryNvStore();
    await classic.save(encodeMeterState({ systemTitle: ST, reservedIc: 8, registerMilliWs: 0n, exportMilliWs: 0n, resumeAt: -1, samples: 0, ring: [] }));
    await expect(Meter.start(options(classic, new Map()))).rejects.toThrow(/classic meter's state: it cannot boot in the end-to-end mode/);
    const e2e = new MemoryNvStore();
    await e2e.save(encodeMeterState({ systemTitle: ST, reservedIc: 8, registerMilliWs: 0n, exportMilliWs: 0n, resumeAt: -1, samples: 0, ring: [], e2e: { imports: [1n], exports: [0n], nextBoundary: H } }));
    await expect(Meter.start({ ...options(e2e, new Map()), e2e: undefined })).rejects.toThrow(/end-to-end meter's state: it cannot boot in the classic mode/);
    await expect(Meter.start(options(e2e, new Map()))).rejects.toThrow(/NV holds 1 tariff band registers, the tariff has 2/);
  });

  it('the NV record round-trips the encoder state and refuses a malformed one', () => {
    const s = { systemTitle: ST, reservedIc: 8, registerMilliWs: 5n, exportMilliWs: 0n, resumeAt: H, samples: 3, ring: [], e2e: { imports: [7n, 0n], exports: [0n, 2n], nextBoundary: null } };
    expect(decodeMeterState(encodeMeterState(s), ST).e2e).toEqual(s.e2e);
    const bad = { ...encodeMeterState(s), e2e: [[7], [0, 2], -1] };
    expect(() => decodeMeterState(bad, ST)).toThrow(/e2e import and export registers differ/);
  });
});
