// firmware/e2e.ts: when the meter takes its snapshots (baseline at the first reading, one per interval
// boundary, a boundary inside a stretch without readings taken before the next reading) and what each counts
// (the energy of the readings that start before `at`, per band, import and export apart).
import { beforeAll, describe, expect, it } from 'vitest';
import { E2eEncoder } from '../../firmware/e2e.js';
import { parseTariff } from '../../lib/tariff.js';
import { decodeE2ePayload, registerLayout, unpackNoisy, unpackRegisters } from '../../protocol/e2e.js';
import { mulberry32 } from '../../firmware/sources/synthetic.js';
import { generatePaillier, type PrivateKey } from '../../protocol/paillier/engine.js';
import type { Reading } from '../../protocol/reading.js';

const H = 1_704_067_200; // 2024-01-01T00:00Z, a Monday
const TARIFF = parseTariff({ tz: 'UTC', bands: [{ name: 'night', rules: [{ days: [1, 2, 3, 4, 5, 6, 7], from: '00:00', to: '01:00' }] }, { name: 'day', default: true }] });
let key: PrivateKey;
beforeAll(async () => {
  key = await generatePaillier(1024);
});

const r = (time: number, importWh: number, exportWh = 0): Reading => ({ time, period: 600, importWh, powerW: 0, status: 0, exportWh });

describe('E2eEncoder', () => {
  it('takes a baseline, then one snapshot per boundary, counting per band; a gap defers the boundary to the next reading', () => {
    const enc = new E2eEncoder(key, { intervalS: 3600, tariff: TARIFF });
    const layout = registerLayout(key, 2);
    const open = (bytes: Uint8Array) => decodeE2ePayload(key, bytes).snapshots.map((s) => ({ at: s.at, ...unpackRegisters(layout, key.decrypt(s.ciphertext), 2) }));
    // 00:00..01:00 (night): six readings of 10 Wh, the last ends at the boundary.
    const night = Array.from({ length: 6 }, (_, i) => r(H + i * 600, 1010 + i * 10, i === 5 ? 4 : 0));
    expect(open(enc.encode({ prevWh: 1000, prevExportWh: 0, readings: night }))).toEqual([
      { at: H, imports: [0n, 0n], exports: [0n, 0n] },
      { at: H + 3600, imports: [60n, 0n], exports: [4n, 0n] },
    ]);
    // 01:00..01:20 (day), then nothing until 03:10: the 02:00 boundary is taken before the 03:10 reading.
    expect(open(enc.encode({ prevWh: 1060, prevExportWh: 4, readings: [r(H + 3600, 1065, 4), r(H + 4200, 1075, 4)] }))).toEqual([]);
    expect(open(enc.encode({ prevWh: 1075, prevExportWh: 4, readings: [r(H + 3 * 3600 + 600, 1100, 4)] }))).toEqual([{ at: H + 7200, imports: [60n, 15n], exports: [4n, 0n] }]);
    expect(enc.snapshotState.nextBoundary).toBe(H + 4 * 3600);
    expect(enc.snapshots).toBe(3);
  });

  it('with dp, adds a noise share per interval snapshot to the totals only: the band registers stay exact', () => {
    const rnd = mulberry32(5);
    const enc = new E2eEncoder(key, { intervalS: 3600, tariff: TARIFF, dp: { epsilon: 1, sensitivityWh: 1840, shares: 4, rnd: () => 1 - rnd() } });
    const layout = registerLayout(key, 2);
    const noised: bigint[][] = [];
    let prevWh = 1000;
    for (let h = 0; h < 6; h++) {
      const readings = Array.from({ length: 6 }, (_, i) => r(H + h * 3600 + i * 600, prevWh + (i + 1) * 10));
      const snaps = decodeE2ePayload(key, enc.encode({ prevWh, prevExportWh: 0, readings })).snapshots;
      prevWh += 60;
      for (const s of snaps) {
        expect(s.noisy).toBeDefined();
        const reg = unpackRegisters(layout, key.decrypt(s.ciphertext), 2);
        const [imp, exp] = unpackNoisy(key, key.decrypt(s.noisy!));
        noised.push([imp - reg.imports[0]! - reg.imports[1]!, exp - reg.exports[0]! - reg.exports[1]!]);
        // Bills' registers: exactly the metered energy (night band 00:00-01:00, day after).
        expect(reg.imports[0]! + reg.imports[1]!).toBe(BigInt(60 * (s.at - H) / 3600));
      }
    }
    expect(noised[0]).toEqual([0n, 0n]); // the baseline: nothing counted, no noise yet
    expect(noised.at(-1)).toEqual(enc.snapshotState.noise);
    // Shares of scale 1840 Wh split 4 ways: over six intervals some are nonzero, on import and on export.
    expect(noised.slice(1).some(([i]) => i !== 0n)).toBe(true);
    expect(noised.slice(1).some(([, e]) => e !== 0n)).toBe(true);
    // Without dp, no noised totals travel.
    const plain = new E2eEncoder(key, { intervalS: 3600, tariff: TARIFF });
    expect(decodeE2ePayload(key, plain.encode({ prevWh: 0, prevExportWh: 0, readings: [r(H, 10)] })).snapshots[0]!.noisy).toBeUndefined();
    expect(() => new E2eEncoder(key, { intervalS: 3600, tariff: TARIFF, dp: { epsilon: 1e-9, sensitivityWh: 1840, shares: 4 } })).toThrow(/scale/);
  });
});
