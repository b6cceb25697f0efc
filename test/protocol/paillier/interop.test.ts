// Interoperability with paillier-bigint 3.x in both directions: same n, same ciphertext group, same
// decryption. Keys made by either library, ciphertexts made by either, homomorphic operations mixed.
import * as paillier from 'paillier-bigint';
import { describe, expect, it } from 'vitest';
import { fromPaillierBigint, generatePaillier, toPaillierBigint } from '../../../protocol/paillier/engine.js';

describe('paillier-bigint interoperability', () => {
  it('paillier-bigint keys: their ciphertexts decrypt here, ours decrypt there, operations mix', async () => {
    const their = await paillier.generateRandomKeys(1024, true);
    const key = fromPaillierBigint(their.publicKey, their.privateKey);
    const pub = fromPaillierBigint(their.publicKey);
    expect(key.n).toBe(their.publicKey.n);
    for (const m of [0n, 1n, 42n, their.publicKey.n - 1n, 0xdeadbeefcafen]) {
      expect(key.decrypt(their.publicKey.encrypt(m))).toBe(m);
      expect(their.privateKey.decrypt(key.encrypt(m))).toBe(m);
      expect(their.privateKey.decrypt(pub.encrypt(m))).toBe(m);
    }
    const mine = pub.encrypt(1000n);
    const theirs = their.publicKey.encrypt(234n);
    expect(their.privateKey.decrypt(their.publicKey.addition(mine, theirs))).toBe(1234n);
    expect(key.decrypt(key.add(mine, theirs))).toBe(1234n);
    expect(key.decrypt(key.rerandomize(theirs))).toBe(234n);
    expect(their.privateKey.decrypt(key.mulPlain(theirs, 3n))).toBe(702n);
    expect(key.decrypt(their.publicKey.multiply(mine, 5n))).toBe(5000n);
    expect(their.privateKey.decrypt(pub.addPlain(theirs, -34n))).toBe(200n);
  });

  it('our 2048-bit keys as paillier-bigint keys, both directions', async () => {
    const key = await generatePaillier(2048);
    const their = toPaillierBigint(key);
    expect(their.publicKey.bitLength).toBe(2048);
    const m = (1n << 2000n) + 12345n;
    expect(their.privateKey.decrypt(key.encrypt(m))).toBe(m);
    expect(their.privateKey.decrypt(key.publicKey.encrypt(7n))).toBe(7n);
    expect(key.decrypt(their.publicKey.encrypt(m))).toBe(m);
    expect(key.decrypt(their.publicKey.plaintextAddition(key.encrypt(1n), 2n))).toBe(3n);
    await key.destroy();
  });

  it('refuses paillier-bigint keys it cannot serve', async () => {
    const classic = await paillier.generateRandomKeys(512, false); // random g, not n + 1
    expect(() => fromPaillierBigint(classic.publicKey)).toThrow(/g = n \+ 1/);
    const simple = await paillier.generateRandomKeys(512, true);
    const other = await paillier.generateRandomKeys(512, true);
    expect(() => fromPaillierBigint(simple.publicKey, other.privateKey)).toThrow(/does not match/);
    const noPrimes = new paillier.PrivateKey(simple.privateKey.lambda, simple.privateKey.mu, simple.publicKey);
    expect(() => fromPaillierBigint(simple.publicKey, noPrimes)).toThrow(/without p and q/);
  });
});
