import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  decodeSigned,
  encodeSigned,
  formatFixed,
  generatePaillier,
  maxSignedTerms,
  PackedSum,
  Packing,
  parseFixed,
  type PrivateKey,
} from '../../../protocol/paillier/engine.js';

let key: PrivateKey;
beforeAll(async () => {
  key = await generatePaillier(512);
});

describe('packing', () => {
  it('sizes slots as valueBits + bitLength(terms - 1) and fits them below 2^(|n|-1)', () => {
    const l = new Packing(key.n, { valueBits: 32, terms: 1000 });
    expect(l.slotBits).toBe(42);
    expect(l.slots).toBe(Math.floor(511 / 42));
    expect(new Packing(key.n, { valueBits: 8, terms: 1 }).slotBits).toBe(8);
    expect(new Packing(key.n, { valueBits: 8, terms: 2 }).slotBits).toBe(9);
    expect(new Packing(key.n, { valueBits: 8, terms: 4 }).slotBits).toBe(10);
    expect(new Packing(key.n, { valueBits: 8, terms: 5 }).slotBits).toBe(11);
  });

  it('sums of up to `terms` packed plaintexts unpack to the per-slot sums (worst case included)', () => {
    const terms = 7;
    const layout = new Packing(key.n, { valueBits: 16, terms });
    const vec = fc.array(fc.bigInt({ min: 0n, max: 0xffffn }), { minLength: 1, maxLength: layout.slots });
    fc.assert(
      fc.property(fc.array(vec, { minLength: 1, maxLength: terms }), (rows) => {
        const sum = new PackedSum(key, layout);
        for (const r of rows) sum.add(key.encrypt(layout.pack(r)));
        const want = Array.from({ length: layout.slots }, (_, i) => rows.reduce((s, r) => s + (r[i] ?? 0n), 0n));
        expect(layout.unpack(key.decrypt(sum.ciphertext))).toEqual(want);
      }),
      { numRuns: 10 },
    );
    const full = new PackedSum(key, layout);
    const max = layout.pack(Array(layout.slots).fill(0xffffn));
    for (let i = 0; i < terms; i++) full.add(key.encrypt(max));
    expect(layout.unpack(key.decrypt(full.ciphertext))).toEqual(Array(layout.slots).fill(0xffffn * BigInt(terms)));
    expect(() => full.add(key.encrypt(max))).toThrow(/budget exhausted/);
  });

  it('refuses what could overflow', () => {
    expect(() => new Packing(key.n, { valueBits: 500, terms: 1 << 20 })).toThrow(/does not fit/);
    expect(() => new Packing(key.n, { valueBits: 32, terms: 10, slots: 100 })).toThrow(/at most/);
    expect(() => new Packing(key.n, { valueBits: 0, terms: 1 })).toThrow(RangeError);
    expect(() => new Packing(key.n, { valueBits: 8, terms: 0 })).toThrow(RangeError);
    const l = new Packing(key.n, { valueBits: 8, terms: 3, slots: 4 });
    expect(() => l.pack([256n])).toThrow(/\[0, 2\^8\)/);
    expect(() => l.pack([-1n])).toThrow(RangeError);
    expect(() => l.pack([1n, 2n, 3n, 4n, 5n])).toThrow(/at most 4/);
    expect(() => l.unpack(1n << BigInt(4 * l.slotBits))).toThrow(/beyond the last slot/);
    expect(() => new PackedSum(key, l).add(key.encrypt(1n), 4)).toThrow(/budget/);
    expect(() => new PackedSum(key, l).add(0n)).toThrow(/Z\*/);
    expect(key.decrypt(new PackedSum(key, l).ciphertext)).toBe(0n);
  });
});

describe('signed and fixed-point plaintexts', () => {
  it('sums of signed values decode exactly while inside (-n/2, n/2)', () => {
    const b = 1n << 40n;
    fc.assert(
      fc.property(fc.array(fc.bigInt({ min: -b, max: b }), { minLength: 1, maxLength: 8 }), (vs) => {
        const c = vs.map((v) => key.encrypt(v)).reduce((a, x) => key.add(a, x));
        expect(decodeSigned(key.decrypt(c), key.n, b * 8n)).toBe(vs.reduce((a, v) => a + v, 0n));
        expect(decodeSigned(encodeSigned(vs[0]!, key.n), key.n)).toBe(vs[0]);
      }),
      { numRuns: 10 },
    );
  });

  it('detects overflow beyond the stated bound and refuses out-of-range values', () => {
    const c = key.add(key.encrypt(600n), key.encrypt(500n));
    expect(() => decodeSigned(key.decrypt(c), key.n, 1000n)).toThrow(/overflow/);
    expect(decodeSigned(key.decrypt(key.addPlain(c, -1200n)), key.n, 1000n)).toBe(-100n);
    const half = (key.n - 1n) / 2n;
    expect(decodeSigned(half, key.n)).toBe(half);
    expect(decodeSigned(half + 1n, key.n)).toBe(-half);
    expect(() => encodeSigned(half + 1n, key.n)).toThrow(RangeError);
    expect(() => decodeSigned(key.n, key.n)).toThrow(RangeError);
    expect(maxSignedTerms(key.n, half)).toBe(1n);
    expect(maxSignedTerms(101n, 10n)).toBe(5n);
  });

  it('parses and formats fixed point exactly', () => {
    expect(parseFixed('-0.2345', 4)).toBe(-2345n);
    expect(parseFixed('12', 3)).toBe(12000n);
    expect(parseFixed('1.5', 3)).toBe(1500n);
    expect(formatFixed(-2345n, 4)).toBe('-0.2345');
    expect(formatFixed(1500n, 3)).toBe('1.500');
    expect(formatFixed(7n, 0)).toBe('7');
    expect(() => parseFixed('0.12345', 4)).toThrow(/more than 4 decimals/);
    expect(() => parseFixed('1e5', 2)).toThrow(TypeError);
    fc.assert(fc.property(fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }), fc.integer({ min: 0, max: 12 }), (v, d) => parseFixed(formatFixed(v, d), d) === v));
  });
});
