import { beforeAll, describe, expect, it } from 'vitest';
import { cborEncode } from '../../../protocol/cbor.js';
import {
  ciphertextFromBytes,
  ciphertextLength,
  ciphertextToBytes,
  decodeCiphertext,
  decodePrivateKey,
  decodePublicKey,
  encodeCiphertext,
  encodePrivateKey,
  encodePublicKey,
  generatePaillier,
  type PrivateKey,
} from '../../../protocol/paillier/engine.js';
import { toBytes } from '../../../protocol/paillier/arith.js';

let key: PrivateKey;
let other: PrivateKey;
beforeAll(async () => {
  [key, other] = await Promise.all([generatePaillier(512), generatePaillier(512)]);
});

describe('Paillier serialisation', () => {
  it('round-trips keys and ciphertexts', () => {
    const pub = decodePublicKey(encodePublicKey(key), { keyId: key.keyId, expectBits: 512 });
    const priv = decodePrivateKey(encodePrivateKey(key), { keyId: key.keyId });
    const c = pub.encrypt(77n);
    expect(pub.keyId).toBe(key.keyId);
    expect(priv.decrypt(decodeCiphertext(priv, encodeCiphertext(pub, c)))).toBe(77n);
    expect(ciphertextToBytes(key, c).length).toBe(ciphertextLength(key));
    expect(ciphertextLength(key)).toBe(128);
    expect(ciphertextFromBytes(key, ciphertextToBytes(key, c))).toBe(c);
    expect(encodeCiphertext(key, c).length).toBeLessThan(128 + 16);
  });

  it('checks the identity of the key on load', () => {
    expect(() => decodePublicKey(encodePublicKey(key), { keyId: other.keyId })).toThrow(/not the expected key/);
    expect(() => decodePrivateKey(encodePrivateKey(key), { keyId: Buffer.from(other.keyId, 'hex') })).toThrow(/not the expected key/);
    expect(() => decodeCiphertext(other, encodeCiphertext(key, key.encrypt(1n)))).toThrow(/under Paillier key/);
  });

  it('refuses keys of the wrong size and mismatched primes', () => {
    expect(() => decodePublicKey(encodePublicKey(key), { expectBits: 2048 })).toThrow(/512 bits, expected 2048/);
    const { p, q } = key.primes;
    const { q: q2 } = other.primes;
    const n = toBytes(key.n);
    expect(() => decodePrivateKey(cborEncode([1, n, toBytes(p), toBytes(q2)]))).toThrow(/p \* q != n/);
    expect(() => decodePublicKey(cborEncode([1, toBytes(1n << 100n | 1n)]))).toThrow(/bits/);
    // p * q = n but q is not prime: n = p * (q * 3), "q" = q * 3
    const fake = key.primes.p * q * 3n;
    expect(() => decodePrivateKey(cborEncode([1, toBytes(fake), toBytes(p), toBytes(q * 3n)]))).toThrow(/prime|length/);
  });

  it('refuses every truncation and malformed structure with a clear error', () => {
    for (const bytes of [encodePublicKey(key), encodePrivateKey(key), encodeCiphertext(key, key.encrypt(5n))]) {
      for (let len = 0; len < bytes.length; len++) {
        const cut = bytes.subarray(0, len);
        expect(() => decodePrivateKey(cut)).toThrow(TypeError);
        expect(() => decodePublicKey(cut)).toThrow(TypeError);
        expect(() => decodeCiphertext(key, cut)).toThrow(TypeError);
      }
    }
    expect(() => decodePublicKey(cborEncode([2, toBytes(key.n)]))).toThrow(/format/);
    expect(() => decodePublicKey(cborEncode([1, Buffer.concat([Buffer.from([0]), toBytes(key.n)])]))).toThrow(/minimal/);
    expect(() => decodePublicKey(cborEncode({ n: 1 }))).toThrow(/array/);
    expect(() => decodeCiphertext(key, cborEncode([1, Buffer.from(key.keyId, 'hex'), Buffer.alloc(127, 1)]))).toThrow(/128 bytes/);
  });

  it('refuses ciphertexts that are not units of Z*_{n^2}', () => {
    const kid = Buffer.from(key.keyId, 'hex');
    for (const bad of [0n, key.primes.p * 99n, key.n2 - key.primes.q]) {
      const raw = toBytes(bad, 128);
      expect(() => ciphertextFromBytes(key, raw)).toThrow(/Z\*/);
      expect(() => ciphertextFromBytes(key.publicKey, raw)).toThrow(/Z\*/);
      expect(() => decodeCiphertext(key, cborEncode([1, kid, raw]))).toThrow(/Z\*/);
    }
    expect(() => ciphertextFromBytes(key, Buffer.alloc(128, 0xff))).toThrow(/Z\*/); // >= n^2
    expect(() => ciphertextToBytes(key, key.n2)).toThrow(RangeError);
  });
});
