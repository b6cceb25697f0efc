import { generatePrimeSync } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { modPowRef } from '../../../protocol/paillier/arith.js';
import { decodeSigned, generatePaillier, PrivateKey, PublicKey, randomiserBits, securityBits, type PaillierPrivate } from '../../../protocol/paillier/engine.js';
import { buildSplitTable, buildTable, randomiserSource, splitTablePow, tablePow } from '../../../protocol/paillier/kernel.js';
import { Modulus } from '../../../protocol/paillier/modexp.js';

let key: PrivateKey;
let pub: PublicKey;
const residue = (k: PaillierPrivate) => fc.bigInt({ min: 0n, max: k.n - 1n });
const signed = (k: PaillierPrivate) => fc.bigInt({ min: -((k.n - 1n) / 2n), max: (k.n - 1n) / 2n });

beforeAll(async () => {
  key = await generatePaillier(512);
  pub = key.publicKey;
});

describe('fast paths against the BigInt reference', () => {
  it('fixed-base table: base^r = tablePow(table, r) for every window width', () => {
    const m = key.n2;
    const base = key.hs;
    for (const w of [1, 3, 8, 11]) {
      const t = buildTable(base, m, 100, w);
      fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << 100n) - 1n }), (r) => tablePow(t, r) === modPowRef(base, r, m)), { numRuns: 30 });
      expect(tablePow(t, 0n)).toBe(1n);
      expect(() => tablePow(t, 1n << 100n)).toThrow(RangeError);
    }
  });

  it('split table over Z_{m^2}: splitTablePow = tablePow = modPowRef, mod n^2 and mod p^2, every window width', () => {
    const { p } = key.primes;
    for (const [m, base] of [[key.n, key.hs], [p, key.hs % (p * p)], [key.n, 2n], [key.n, key.n2 - 1n]] as const) {
      const m2 = m * m;
      for (const w of [1, 3, 8, 11]) {
        const ref = buildTable(base, m2, 100, w);
        const t = buildSplitTable(base, m, 100, w);
        const exps = fc.oneof(fc.constantFrom(0n, 1n, (1n << 100n) - 1n, 1n << BigInt(w)), fc.bigInt({ min: 0n, max: (1n << 100n) - 1n }));
        fc.assert(fc.property(exps, (r) => splitTablePow(t, r) === tablePow(ref, r) && splitTablePow(t, r) === modPowRef(base, r, m2)), { numRuns: 30 });
        expect(() => splitTablePow(t, 1n << 100n)).toThrow(RangeError);
        expect(() => splitTablePow(t, -1n)).toThrow(RangeError);
      }
    }
    expect(() => buildSplitTable(key.primes.p, key.n, 100, 4)).toThrow(/unit/); // p | base: not in Z*_{n^2}
  });

  it('CRT randomisers equal public ones for the same exponent', () => {
    const bits = key.exponentBits;
    const spec = { hs: key.hs, bits, w: 6 };
    const pubSrc = randomiserSource({ kind: 'public', n: key.n, n2: key.n2, ...spec });
    const p2 = key.primes.p ** 2n;
    const q2 = key.primes.q ** 2n;
    const inv = modPowRef(p2, q2 - q2 / key.primes.q - 1n, q2); // p^-2 mod q^2 by Euler: phi(q^2) = q(q-1)
    const crtSrc = randomiserSource({ kind: 'crt', p: key.primes.p, q: key.primes.q, p2, q2, p2InvQ2: inv, ...spec });
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << BigInt(bits)) - 1n }), (r) => crtSrc.pow(r) === pubSrc.pow(r) && pubSrc.pow(r) === modPowRef(key.hs, r, key.n2)), { numRuns: 20 });
  });

  it('OpenSSL-backed pow equals modPowRef, edge bases and exponents included', () => {
    for (const m of [key.n2, key.primes.p ** 2n, 1000003n /* too small for OpenSSL: reference path */]) {
      const mod = new Modulus(m);
      const edge = fc.constantFrom(0n, 1n, 2n, m - 1n, m - 2n, m, m + 5n);
      const exps = fc.oneof(fc.constantFrom(0n, 1n, 2n, 4095n, 4096n), fc.bigInt({ min: 0n, max: 1n << 700n }));
      fc.assert(fc.property(fc.oneof(edge, fc.bigInt({ min: 0n, max: m - 1n })), exps, (b, e) => mod.pow(b, e) === modPowRef(b, e, m)), { numRuns: 40 });
    }
    expect(new Modulus(key.n2).usesOpenSsl).toBe(true);
    expect(new Modulus(1000003n).usesOpenSsl).toBe(false);
    expect(() => new Modulus(1000n)).toThrow(/odd/);
    expect(() => new Modulus(key.n2).pow(2n, -1n)).toThrow(RangeError);
  });
});

describe('homomorphic identities (property tests, 512-bit key)', () => {
  it('D(E(m)) = m, on the key holder (CRT) and public paths', () => {
    fc.assert(fc.property(residue(key), (m) => key.decrypt(key.encrypt(m)) === m && key.decrypt(pub.encrypt(m)) === m), { numRuns: 25 });
  });

  it('add, addPlain, mulPlain and rerandomize act on plaintexts mod n', () => {
    const n = key.n;
    const mod = (x: bigint) => ((x % n) + n) % n;
    fc.assert(
      fc.property(signed(key), signed(key), fc.bigInt({ min: -(1n << 80n), max: 1n << 80n }), (a, b, k) => {
        const ca = key.encrypt(a);
        const cb = pub.encrypt(b);
        expect(key.decrypt(key.add(ca, cb))).toBe(mod(a + b));
        expect(key.decrypt(pub.addPlain(ca, b))).toBe(mod(a + b));
        expect(key.decrypt(key.mulPlain(ca, k))).toBe(mod(a * k));
        expect(key.decrypt(pub.mulPlain(ca, k))).toBe(mod(a * k));
        const r = pub.rerandomize(ca);
        expect(r).not.toBe(ca);
        expect(key.decrypt(r)).toBe(mod(a));
        expect(decodeSigned(key.decrypt(key.add(ca, cb)), n)).toBe(decodeSigned(mod(a + b), n));
      }),
      { numRuns: 15 },
    );
  });

  it('encryption is randomised and mulPlain by 0 is the deterministic E(0) = 1', () => {
    expect(key.encrypt(7n)).not.toBe(key.encrypt(7n));
    expect(key.mulPlain(key.encrypt(7n), 0n)).toBe(1n);
    expect(key.decrypt(1n)).toBe(0n);
  });

  it("works with the 'half' exponent and other windows", async () => {
    const k = new PrivateKey(key.primes.p, key.primes.q, { exponent: 'half', window: 4 });
    expect(k.exponentBits).toBe(256);
    expect(k.decrypt(k.encrypt(99n))).toBe(99n);
    expect(key.decrypt(k.publicKey.encrypt(98n))).toBe(98n);
  });
});

describe('parameters', () => {
  it('follows NIST SP 800-57 levels and the 4 kappa exponent rule', () => {
    expect([1024, 2048, 3072, 4096, 7680, 15360].map(securityBits)).toEqual([80, 112, 128, 128, 192, 256]);
    expect(randomiserBits(2048)).toBe(448);
    expect(randomiserBits(3072)).toBe(512);
    expect(randomiserBits(2048, 'half')).toBe(1024);
    expect(randomiserBits(1024)).toBe(320);
    expect(randomiserBits(512)).toBe(256);
    expect(() => randomiserBits(2048, 'long' as never)).toThrow(TypeError);
  });

  it('generates keys of exactly the requested size with equal-length Blum primes', async () => {
    const { p, q } = key.primes;
    expect(key.bits).toBe(512);
    expect(p.toString(2).length).toBe(256);
    expect(q.toString(2).length).toBe(256);
    expect(p % 4n).toBe(3n);
    expect(q % 4n).toBe(3n);
  });
});

describe('bad input: clear errors, never a wrong result', () => {
  it('refuses plaintexts out of range instead of reducing them', () => {
    for (const m of [key.n, key.n + 1n, -((key.n - 1n) / 2n) - 1n]) {
      expect(() => key.encrypt(m)).toThrow(RangeError);
      expect(() => key.addPlain(key.encrypt(1n), m)).toThrow(RangeError);
    }
    expect(() => key.encrypt(5 as unknown as bigint)).toThrow(TypeError);
    expect(() => key.mulPlain(key.encrypt(1n), key.n)).toThrow(RangeError);
    expect(() => key.encryptWithRandomness(1n, 1n << BigInt(key.exponentBits))).toThrow(RangeError);
  });

  it('refuses ciphertexts outside Z*_{n^2}', () => {
    const c = key.encrypt(3n);
    for (const bad of [0n, -1n, key.n2, key.n2 + c]) {
      expect(() => key.add(c, bad)).toThrow(/Z\*_\{n\^2\}/);
      expect(() => key.decrypt(bad)).toThrow(/Z\*_\{n\^2\}/);
      expect(() => pub.rerandomize(bad)).toThrow(RangeError);
    }
    const nonUnit = key.primes.p * 12345n; // in range, not a unit
    expect(key.isCiphertext(nonUnit)).toBe(false);
    expect(pub.isCiphertext(nonUnit)).toBe(false);
    expect(pub.isCiphertext(c)).toBe(true);
    expect(() => key.decrypt(nonUnit)).toThrow(/not a unit/);
    expect(() => key.mulPlain(nonUnit, -2n)).toThrow(/not invertible/);
    expect(() => pub.mulPlain(nonUnit, -2n)).toThrow(/not invertible/);
    expect(() => key.add(c, 3 as unknown as bigint)).toThrow(TypeError);
  });

  it('refuses keys of the wrong size or shape', async () => {
    await expect(generatePaillier(256)).rejects.toThrow(RangeError);
    await expect(generatePaillier(1025)).rejects.toThrow(RangeError);
    expect(() => new PublicKey(key.n + 1n)).toThrow(/odd/);
    expect(() => new PublicKey((1n << 300n) + 1n)).toThrow(/bits/);
    const { p, q } = key.primes;
    expect(() => new PrivateKey(p, p)).toThrow(/distinct/);
    expect(() => new PrivateKey(p, q + 2n)).toThrow(/prime/);
    expect(() => new PrivateKey(p, generatePrimeSync(300, { bigint: true }))).toThrow(/same length/);
  });

  it('a destroyed private key refuses to decrypt', async () => {
    const k = new PrivateKey(key.primes.p, key.primes.q);
    const c = k.encrypt(1n);
    await k.destroy();
    expect(() => k.decrypt(c)).toThrow(/destroyed/);
  });
});
