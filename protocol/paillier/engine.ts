/**
 * The one Paillier engine of the project (import everything Paillier from here).
 *
 * Paillier 1999 with g = n + 1, interoperable both ways with paillier-bigint's `generateRandomKeys(bits,
 * true)`; DJN randomisers (1 + m n) h_s^r with a 4 kappa-bit r (448 bits at 2048, 512 at 3072; params.ts
 * says why); fixed-base window tables (kernel.js); CRT for the key holder; OpenSSL's constant-time
 * exponentiation for decryption (modexp.ts); an optional worker-thread pool of randomisers (pool.ts);
 * packing (packing.ts); signed and fixed-point plaintexts (signed.ts); CBOR serialisation (codec.ts); 2-of-2
 * threshold decryption for the end-to-end mode (threshold.ts).
 * Design, figures and security notes: docs/paillier.md.
 * @example
 * ```ts
 * const key = await generatePaillier(2048);
 * const c = key.add(key.encrypt(2n), key.encrypt(3n));
 * key.decrypt(key.addPlain(c, -1n)); // 4n
 * ```
 * @module
 */
export type { PaillierPrivate, PaillierPublic } from './types.js';
export { generatePaillier, MAX_KEY_BITS, MIN_KEY_BITS, PrivateKey, PublicKey, type EngineOptions } from './keys.js';
export {
  ciphertextFromBytes,
  ciphertextLength,
  ciphertextToBytes,
  decodeCiphertext,
  decodePrivateKey,
  decodePublicKey,
  encodeCiphertext,
  encodePrivateKey,
  encodePublicKey,
  type DecodeKeyOptions,
} from './codec.js';
export { fromPaillierBigint, toPaillierBigint } from './interop.js';
export { decodeSigned, encodeSigned, formatFixed, maxSignedTerms, parseFixed } from './signed.js';
export { PackedSum, Packing, type PackingOptions } from './packing.js';
export { RandomiserPool, type PoolCounters, type PoolOptions } from './pool.js';
export { randomiserBits, securityBits, type ExponentChoice } from './params.js';
export {
  ciphertextId,
  combinePartials,
  decodePartial,
  decodeShare,
  destroyShare,
  encodePartial,
  encodeShare,
  partialDecrypt,
  partyOf,
  PARTY_NUMBER,
  shareBound,
  splitKey,
  STATISTICAL_BITS,
  THRESHOLD_FORMAT,
  type DecryptionShare,
  type PartialDecryption,
  type Party,
} from './threshold.js';
