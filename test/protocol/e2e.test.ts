// protocol/e2e.ts: the e2e frame plaintext and the release / guardian-partial bodies refuse every defect from
// outside with a TypeError, and round-trip what is valid.
import { beforeAll, describe, expect, it } from 'vitest';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import { decodeE2ePayload, encodeE2ePayload, packNoisy, parseGuardianPartial, parseRelease, partialBody, registerLayout, releaseBody, unpackNoisy } from '../../protocol/e2e.js';
import { ciphertextToBytes } from '../../protocol/paillier/codec.js';
import { generatePaillier, splitKey, partialDecrypt, type PrivateKey } from '../../protocol/paillier/engine.js';

let key: PrivateKey;
let c: bigint;
beforeAll(async () => {
  key = await generatePaillier(512);
  c = key.encrypt(registerLayout(key, 1).pack([7n, 0n]));
});

const readings = [{ time: 1700002740, period: 60, status: 0 }];

describe('e2e payload', () => {
  it('round-trips', () => {
    const p = { readings, snapshots: [{ at: 1700002800, ciphertext: c }] };
    expect(decodeE2ePayload(key, encodeE2ePayload(key, p))).toEqual(p);
  });

  it.each([
    ['another format', () => [2, [[1700002740, 60, 0]], []], /format/],
    ['no readings', () => [1, [], []], /readings/],
    ['a zero period', () => [1, [[1700002740, 0, 0]], []], /period/],
    ['overlapping readings', () => [1, [[1700002740, 60, 0], [1700002760, 60, 0]], []], /backwards/],
    ['a short ciphertext', () => [1, [[1700002740, 60, 0]], [[1700002800, Buffer.alloc(10)]]], /ciphertext/],
    ['a ciphertext that is not a unit', () => [1, [[1700002740, 60, 0]], [[1700002800, ciphertextToBytes(key, key.n)]]], /Z\*/],
    ['snapshots out of order', () => [1, [[1700002740, 60, 0]], [[1700002800, ciphertextToBytes(key, c)], [1700002790, ciphertextToBytes(key, c)]]], /increase/],
    ['a snapshot after the frame', () => [1, [[1700002740, 60, 0]], [[1700002801, ciphertextToBytes(key, c)]]], /after/],
    ['a text where a number goes', () => [1, [['x', 60, 0]], []], /time/],
  ])('refuses %s', (_n, body, re) => {
    expect(() => decodeE2ePayload(key, cborEncode(body()))).toThrow(re);
  });

  it('packs tariffs up to the plaintext size and refuses more', () => {
    expect(registerLayout(key, 3).slots).toBe(6);
    expect(() => registerLayout(key, 4)).toThrow(/do not fit/); // 8 slots of 68 bits > 511 bits
    expect(() => registerLayout(key, 0)).toThrow(/bands/);
  });
});

describe('release and guardian partial bodies', () => {
  it('round-trip, and refuse the wrong party, extra fields and bad band names', () => {
    const s = splitKey(key);
    const w = { kind: 'neighbourhood' as const, key: 'nb-1', start: 1700002800, end: 1700006400 };
    const r = { ...w, revision: 0, meters: 5, bands: ['flat'], ciphertext: c, partial: partialDecrypt(s.pes, c) };
    const rb = cborDecode(cborEncode(releaseBody(key, r)));
    expect(parseRelease(key, rb)).toEqual(r);
    const g = { ...w, meters: 5, partial: partialDecrypt(s.guardian, c) };
    expect(parseGuardianPartial(key, cborDecode(cborEncode(partialBody(key, g))))).toEqual(g);
    expect(() => parseRelease(key, { ...(rb as object), partial: partialBody(key, g).partial })).toThrow(/pes/);
    expect(() => parseGuardianPartial(key, releaseBody(key, r))).toThrow(/exactly the fields/);
    expect(() => parseRelease(key, { ...(rb as object), bands: ['flat', 'flat'] })).toThrow(/distinct/);
    expect(() => parseRelease(key, { ...(rb as object), bands: ['__proto__'] })).toThrow(/band names/);
    expect(() => parseRelease(key, { ...(rb as object), end: w.start })).toThrow(/end/);
    expect(() => parseRelease(key, { ...(rb as object), key: 'a/b' })).toThrow(/key/);
  });
});

describe('noised totals (differential privacy)', () => {
  it('a snapshot may carry its noised totals, which round-trip; a bad one is refused', () => {
    const noisy = key.encrypt(packNoisy(key, [5n, -3n]));
    const p = { readings, snapshots: [{ at: 1700002800, ciphertext: c, noisy }] };
    expect(decodeE2ePayload(key, encodeE2ePayload(key, p))).toEqual(p);
    expect(() => decodeE2ePayload(key, cborEncode([1, [[1700002740, 60, 0]], [[1700002800, ciphertextToBytes(key, c), Buffer.alloc(3)]]]))).toThrow(/noisy/);
    expect(() => decodeE2ePayload(key, cborEncode([1, [[1700002740, 60, 0]], [[1700002800, ciphertextToBytes(key, c), ciphertextToBytes(key, c), 1]]]))).toThrow(/snapshots\[0\]/);
  });

  it('signed slots survive differences and sums that go below zero, and a wrapped plaintext is refused', () => {
    // Three meters' differences: (import + noise, export + noise) per meter, some negative.
    const diffs: [bigint, bigint][] = [[120n, -40n], [-900n, 7n], [35n, 0n]];
    let acc = key.encrypt(0n);
    for (const [a, b] of diffs) {
      const prev = key.encrypt(packNoisy(key, [1000n, 1000n]));
      const next = key.encrypt(packNoisy(key, [1000n + a, 1000n + b]));
      acc = key.add(acc, key.add(next, key.mulPlain(prev, -1n)));
    }
    expect(unpackNoisy(key, key.decrypt(acc))).toEqual([-745n, -33n]);
    expect(unpackNoisy(key, packNoisy(key, [-(2n ** 47n), 2n ** 47n]))).toEqual([-(2n ** 47n), 2n ** 47n]);
    expect(() => packNoisy(key, [2n ** 48n, 0n])).toThrow(/magnitude/);
    expect(() => unpackNoisy(key, 1n << 200n)).toThrow();
  });

  it('a neighbourhood release carries its DP ledger; a bill with one, or a bad ledger, is refused', () => {
    const s = splitKey(key);
    const w = { kind: 'neighbourhood' as const, key: 'nb-1', start: 1700002800, end: 1700006400 };
    const r = { ...w, revision: 0, meters: 5, bands: ['flat'], ciphertext: c, partial: partialDecrypt(s.pes, c), dp: { epsilon: 0.5, spent: 1.5 } };
    const rb = cborDecode(cborEncode(releaseBody(key, r))) as Record<string, unknown>;
    expect(parseRelease(key, rb)).toEqual(r);
    expect(() => parseRelease(key, { ...rb, kind: 'billing' })).toThrow(/bills are never noised/);
    expect(() => parseRelease(key, { ...rb, dp: { epsilon: 2, spent: 1 } })).toThrow(/spent/);
    expect(() => parseRelease(key, { ...rb, noise: 1 })).toThrow(/exactly the fields/);
  });
});
