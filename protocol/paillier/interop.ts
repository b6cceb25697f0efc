/**
 * Conversions to and from paillier-bigint 3.x keys (g = n + 1 only). Same n, same ciphertext group, same
 * decryption: a ciphertext of either library decrypts with the other's private key.
 * @module
 */
import * as paillier from 'paillier-bigint';
import { modInv } from './arith.js';
import { PrivateKey, PublicKey, type EngineOptions } from './keys.js';
import type { PaillierPrivate, PaillierPublic } from './types.js';

/**
 * Wraps paillier-bigint keys (g must be n + 1; the private key must carry p and q) into this engine.
 * @example
 * ```ts
 * const { publicKey, privateKey } = await paillier.generateRandomKeys(2048, true);
 * const key = fromPaillierBigint(publicKey, privateKey);
 * ```
 */
export function fromPaillierBigint(pub: paillier.PublicKey, priv?: undefined, options?: EngineOptions): PublicKey;
export function fromPaillierBigint(pub: paillier.PublicKey, priv: paillier.PrivateKey, options?: EngineOptions): PrivateKey;
export function fromPaillierBigint(pub: paillier.PublicKey, priv?: paillier.PrivateKey, options: EngineOptions = {}): PublicKey | PrivateKey {
  if (pub.g !== pub.n + 1n) throw new TypeError('only g = n + 1 keys are supported (generateRandomKeys(bits, true))');
  if (!priv) return new PublicKey(pub.n, options);
  if (priv.publicKey.n !== pub.n) throw new TypeError('paillier-bigint private key does not match the public key');
  const { _p: p, _q: q } = priv as unknown as { _p?: bigint; _q?: bigint };
  if (p === undefined || q === undefined) throw new TypeError('paillier-bigint private key without p and q is not supported');
  if (p * q !== pub.n) throw new TypeError('paillier-bigint private key: p * q != n');
  return new PrivateKey(p, q, options);
}

/**
 * The same key as paillier-bigint objects (lambda = (p-1)(q-1), mu = lambda^-1 mod n, p, q for its CRT).
 * @example
 * ```ts
 * const { privateKey } = toPaillierBigint(key);
 * privateKey.decrypt(key.encrypt(42n)); // 42n
 * ```
 */
export function toPaillierBigint(key: PaillierPrivate): { publicKey: paillier.PublicKey; privateKey: paillier.PrivateKey };
export function toPaillierBigint(key: PaillierPublic): { publicKey: paillier.PublicKey; privateKey?: paillier.PrivateKey };
export function toPaillierBigint(key: PaillierPublic | PaillierPrivate): { publicKey: paillier.PublicKey; privateKey?: paillier.PrivateKey } {
  const publicKey = new paillier.PublicKey(key.n, key.n + 1n);
  if (!(key instanceof PrivateKey)) return { publicKey };
  const { p, q } = key.primes;
  const lambda = (p - 1n) * (q - 1n);
  return { publicKey, privateKey: new paillier.PrivateKey(lambda, modInv(lambda, key.n), publicKey, p, q) };
}
