// lib/e2e-windows.ts with differential privacy: neighbourhood windows sum the meters' noised totals (so a
// window opens to the exact energy plus exactly the noise shares its meters added), bills sum the exact band
// registers, and a frame without noised totals is refused (counted) while DP is on.
import { beforeAll, describe, expect, it } from 'vitest';
import { E2eEncoder } from '../../firmware/e2e.js';
import { mulberry32 } from '../../firmware/sources/synthetic.js';
import { parseBillingPeriod } from '../../lib/billing-period.js';
import { BlindWindows, type BlindMeter, type BlindSettings } from '../../lib/e2e-windows.js';
import { FLAT_TARIFF } from '../../lib/tariff.js';
import { registerLayout, unpackNoisy, unpackRegisters } from '../../protocol/e2e.js';
import { encodeFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { generatePaillier, type PrivateKey } from '../../protocol/paillier/engine.js';
import type { Reading } from '../../protocol/reading.js';
import { encodeUplink } from '../../protocol/uplink.js';

const H = 1_704_067_200;
const IDS = ['48534d5200000001', '48534d5200000002', '48534d5200000003'];
const settings: BlindSettings = { intervalS: 3600, billing: parseBillingPeriod('1d'), tz: 'UTC', tariff: FLAT_TARIFF, latenessS: 60, k: 3, revisionK: 3, dpEpsilon: 1 };
let key: PrivateKey;
beforeAll(async () => {
  key = await generatePaillier(1024);
});

const aesKey = (i: number) => Buffer.alloc(32, i + 1);
const meters = new Map<string, BlindMeter>(IDS.map((id, i) => [id, { key: aesKey(i), household: `hh-${i}`, neighbourhood: 'nb-1' }]));

/** Meter i's frame of 15 one-minute readings from `t`, (i + 1) Wh each. */
function frame(enc: E2eEncoder, i: number, t: number, ic: number): Buffer {
  const prevWh = ((t - H) / 60) * (i + 1);
  const readings: Reading[] = Array.from({ length: 15 }, (_, j) => ({ time: t + j * 60, period: 60, importWh: prevWh + (j + 1) * (i + 1), powerW: 60 * (i + 1), status: 0 }));
  return encodeFrame(sealFrame(aesKey(i), { systemTitle: Buffer.from(IDS[i]!, 'hex'), sc: SC_AES256GCM, ic }, enc.encode({ prevWh, readings })));
}

describe('blind windows with differential privacy', () => {
  it('neighbourhood windows open to exact energy + the meters\' noise shares; bills to the exact registers', () => {
    const rnd = mulberry32(9);
    const encs = IDS.map(() => new E2eEncoder(key, { intervalS: 3600, tariff: FLAT_TARIFF, dp: { epsilon: 1, sensitivityWh: 7360, shares: 3, rnd: () => 1 - rnd() } }));
    const w = new BlindWindows(settings, key, meters);
    // Cumulative noise of each meter at each boundary snapshot (after the frame that reaches it).
    const noiseAt: [bigint, bigint][][] = IDS.map(() => [[0n, 0n]]);
    for (let b = 0; b < 8; b++) {
      w.ingestUplink(encodeUplink({ gateway: 'gw-1', frames: encs.map((e, i) => frame(e, i, H + b * 900, b + 1)) }));
      if (b % 4 === 3) encs.forEach((e, i) => noiseAt[i]!.push(e.snapshotState.noise!));
    }
    w.flush();
    const out = w.takeReleases();
    expect(w.counters.malformedFrame).toBe(0);
    const nb = out.filter((r) => r.kind === 'neighbourhood').sort((a, b) => a.start - b.start);
    expect(nb.map((r) => [r.start, r.meters])).toEqual([[H, 3], [H + 3600, 3]]);
    let noised = 0;
    nb.forEach((r, h) => {
      const noise = [0, 1].map((t) => IDS.reduce((s, _, i) => s + noiseAt[i]![h + 1]![t]! - noiseAt[i]![h]![t]!, 0n));
      expect(unpackNoisy(key, key.decrypt(r.ciphertext))).toEqual([60n * (1n + 2n + 3n) + noise[0]!, noise[1]!]);
      if (noise[0] !== 0n || noise[1] !== 0n) noised++;
    });
    expect(noised).toBeGreaterThan(0); // scale 7360 Wh: zero noise on all four totals is vanishingly rare
    const layout = registerLayout(key, 1);
    const bills = out.filter((r) => r.kind === 'billing').sort((a, b) => (a.key < b.key ? -1 : 1));
    expect(bills.map((r) => unpackRegisters(layout, key.decrypt(r.ciphertext), 1).imports[0])).toEqual([120n, 240n, 360n]);
  });

  it('refuses, and counts, a frame without noised totals while DP is on', () => {
    const w = new BlindWindows(settings, key, meters);
    w.ingestUplink(encodeUplink({ gateway: 'gw-1', frames: [frame(new E2eEncoder(key, { intervalS: 3600, tariff: FLAT_TARIFF }), 0, H, 1)] }));
    expect(w.counters.malformedFrame).toBe(1);
    expect(w.counters.snapshots).toBe(0);
  });
});
