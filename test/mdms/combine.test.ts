// mdms/combine.ts: a PES release and a guardian partial of the same ciphertext combine into the classic
// aggregate in either arrival order; halves naming different windows, two halves of one party, or a partial of
// another ciphertext never combine, and a refused pair is counted.
import { beforeAll, describe, expect, it } from 'vitest';
import { Combiner } from '../../mdms/combine.js';
import { packNoisy, registerLayout, type E2eRelease, type GuardianPartial } from '../../protocol/e2e.js';
import { generatePaillier, partialDecrypt, splitKey, type PrivateKey } from '../../protocol/paillier/engine.js';
import type { DecryptionShare } from '../../protocol/paillier/threshold.js';

let key: PrivateKey;
let s: { pes: DecryptionShare; guardian: DecryptionShare };
beforeAll(async () => {
  key = await generatePaillier(1024);
  s = splitKey(key);
});

const w = { kind: 'billing' as const, key: 'hh-1', start: 1704067200, end: 1704153600 };
function halves(values: bigint[]): { r: E2eRelease; g: GuardianPartial; c: bigint } {
  const c = key.encrypt(registerLayout(key, 2).pack(values));
  return { c, r: { ...w, revision: 0, meters: 1, bands: ['night', 'day'], ciphertext: c, partial: partialDecrypt(s.pes, c) }, g: { ...w, meters: 1, partial: partialDecrypt(s.guardian, c) } };
}

describe('Combiner', () => {
  it('combines in either order into the classic billing aggregate', () => {
    const { r, g } = halves([120n, 3400n, 7n, 0n]);
    const a = new Combiner(key);
    expect(a.release(r)).toBeNull();
    expect(a.guardian(g)).toEqual({ ...w, revision: 0, bands: { night: 120, day: 3400 }, exportBands: { night: 7, day: 0 } }); // the last two slots are export
    const b = new Combiner(key);
    expect(b.guardian(g)).toBeNull();
    expect(b.release(r)).toEqual({ ...w, revision: 0, bands: { night: 120, day: 3400 }, exportBands: { night: 7, day: 0 } });
    expect(b.waiting).toBe(0);
  });

  it('refuses halves that name different windows, and a partial of another ciphertext waits unpaired', () => {
    const { r, g } = halves([1n, 2n, 0n, 0n]);
    const c = new Combiner(key);
    c.release(r);
    expect(() => c.guardian({ ...g, start: w.start + 86400, end: w.end + 86400 })).toThrow(/different windows/);
    expect(c.counters.refused).toBe(1);
    const other = halves([1n, 3n, 0n, 0n]);
    expect(c.guardian(other.g)).toBeNull();
    expect(c.waiting).toBe(1);
    // The PES's own partial posing as the guardian's: one party twice.
    const d = new Combiner(key);
    d.release(r);
    expect(() => d.guardian({ ...g, partial: { ...r.partial } })).toThrow(/one of each party/);
  });

  it('a noised neighbourhood release: signed totals, a negative one stored as 0, the ledger kept', () => {
    const nb = { kind: 'neighbourhood' as const, key: 'nb-1', start: 1704067200, end: 1704068100 };
    const combineNoisy = (totals: [bigint, bigint]) => {
      // Two snapshots of one meter whose difference is `totals` (noise included), from a non-zero register.
      const c = key.add(key.encrypt(packNoisy(key, [500n + totals[0], 80n + totals[1]])), key.mulPlain(key.encrypt(packNoisy(key, [500n, 80n])), -1n));
      const r: E2eRelease = { ...nb, revision: 0, meters: 3, bands: ['flat'], ciphertext: c, partial: partialDecrypt(s.pes, c), dp: { epsilon: 1, spent: 4 } };
      const cb = new Combiner(key);
      cb.release(r);
      return cb.guardian({ ...nb, meters: 3, partial: partialDecrypt(s.guardian, c) });
    };
    expect(combineNoisy([1234n, -56n])).toEqual({ ...nb, revision: 0, meters: 3, energyWh: 1234, exportWh: 0, dp: { epsilon: 1, spent: 4 } });
    expect(combineNoisy([-300n, 17n])).toMatchObject({ energyWh: 0, exportWh: 17 });
    // A bill is never read as noised totals.
    const { r, g } = halves([1n, 2n, 0n, 0n]);
    const c = new Combiner(key);
    c.release({ ...r, dp: { epsilon: 1, spent: 1 } });
    expect(() => c.guardian(g)).toThrow(/only a neighbourhood/);
  });
});
