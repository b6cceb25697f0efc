/**
 * The one Paillier interface of the project. Ciphertexts are bigints in Z*_{n^2}; plaintexts are residues
 * mod n (a negative m is the residue n - |m|, see signed.ts). Implemented by keys.ts.
 * @module
 */
import type { PoolOptions, RandomiserPool } from './pool.js';

export interface PaillierPublic {
  /** Bit length of n. */
  readonly bits: number;
  readonly n: bigint;
  readonly n2: bigint;
  /** Length in bits of the DJN randomiser exponent r (params.ts: 448 at 2048 bits, 512 at 3072). */
  readonly exponentBits: number;
  /** Hex of SHA-256(encodePublicKey(key))[0..8]: names the key in serialised ciphertexts. */
  readonly keyId: string;
  /** E(m) = (1 + m n) h_s^r mod n^2 with fresh r (DJN 2010 §4.3); m in (-n/2, n), negatives as n - |m|. */
  encrypt(m: bigint): bigint;
  /** E(a + b) from E(a), E(b): a b mod n^2. */
  add(a: bigint, b: bigint): bigint;
  /** E(a + m) from E(a) and plaintext m (may be negative): c (1 + m n) mod n^2, formed as c + n (c m mod n). */
  addPlain(c: bigint, m: bigint): bigint;
  /** E(k a) from E(a): c^k mod n^2 (k may be negative: (c^-1)^|k|). k = 0 gives 1 = E(0; r = 0): rerandomize it. */
  mulPlain(c: bigint, k: bigint): bigint;
  /** Same plaintext, fresh randomness: c h_s^r mod n^2 (one multiplication when the pool has a randomiser). */
  rerandomize(c: bigint): bigint;
  /** True when c is in Z*_{n^2} (0 < c < n^2, gcd(c, n) = 1), i.e. a valid ciphertext. */
  isCiphertext(c: bigint): boolean;
  /** Builds the fixed-base table now instead of at the first encryption (~0.3-1 s at 2048 bits). */
  precompute(): this;
  /** Starts (or returns) the background randomiser pool that encrypt() and rerandomize() draw from. */
  startPool(options?: PoolOptions): RandomiserPool;
  /** Stops the pool's workers; encryption goes on inline. */
  closePool(): Promise<void>;
}

export interface PaillierPrivate extends PaillierPublic {
  /** The plaintext residue in [0, n) (CRT decryption, Paillier 1999 §7). Throws on a non-ciphertext. */
  decrypt(c: bigint): bigint;
  /** The public half (same n), without the secret primes. */
  readonly publicKey: PaillierPublic;
  /** Closes the pool and drops every reference to secret material (BigInts cannot be overwritten in JS). */
  destroy(): Promise<void>;
}
