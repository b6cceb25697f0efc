/**
 * The one Paillier engine interface of the project (Paillier 1999, with g = n + 1 as in paillier-bigint's
 * `generateRandomKeys(bits, true)`). Ciphertexts are bigints in Z*_{n^2}; plaintexts are residues mod n
 * (negative values are encoded as n - |m|, see {@link decodeSigned}).
 *
 * PLACEHOLDER implementation (straightforward, slow): issue 4 replaces the internals with a fast one behind
 * exactly this interface.
 * @module
 */
import * as paillier from 'paillier-bigint';
import { randomBytes } from 'node:crypto';
import { cborDecode, cborEncode } from '../cbor.js';

export interface PaillierPublic {
  readonly bits: number;
  readonly n: bigint;
  readonly n2: bigint;
  /** E(m) with fresh randomness. */
  encrypt(m: bigint): bigint;
  /** E(a + b) from E(a), E(b): a*b mod n^2. */
  add(a: bigint, b: bigint): bigint;
  /** E(a + m) from E(a) and plaintext m (may be negative): a * (1 + m n) mod n^2. One multiplication. */
  addPlain(c: bigint, m: bigint): bigint;
  /** E(k a) from E(a): a^k mod n^2. */
  mulPlain(c: bigint, k: bigint): bigint;
  /** Same plaintext, fresh randomness: c * E(0). */
  rerandomize(c: bigint): bigint;
}

export interface PaillierPrivate extends PaillierPublic {
  /** The plaintext residue in [0, n). */
  decrypt(c: bigint): bigint;
}

function modPow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  b %= m;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

function randomBelow(n: bigint): bigint {
  const bytes = Math.ceil(n.toString(2).length / 8) + 8;
  return BigInt('0x' + randomBytes(bytes).toString('hex')) % n;
}

/** Wraps paillier-bigint keys (g must be n + 1) into the engine interface. */
export function fromPaillierBigint(pub: paillier.PublicKey, priv?: paillier.PrivateKey): PaillierPrivate | PaillierPublic {
  const n = pub.n;
  const n2 = pub._n2;
  if (pub.g !== n + 1n) throw new TypeError('only g = n + 1 keys are supported');
  const encZero = (): bigint => modPow(randomBelow(n - 1n) + 1n, n, n2);
  const base: PaillierPublic = {
    bits: pub.bitLength,
    n,
    n2,
    encrypt: (m) => ((1n + (((m % n) + n) % n) * n) % n2) * encZero() % n2,
    add: (a, b) => (a * b) % n2,
    addPlain: (c, m) => (c * ((1n + (((m % n) + n) % n) * n) % n2)) % n2,
    mulPlain: (c, k) => modPow(c, ((k % n) + n) % n, n2),
    rerandomize: (c) => (c * encZero()) % n2,
  };
  if (!priv) return base;
  return { ...base, decrypt: (c) => priv.decrypt(c) };
}

/**
 * Generates a key pair (g = n + 1).
 * @example
 * ```ts
 * const key = await generatePaillier(2048); key.decrypt(key.addPlain(key.encrypt(2n), 3n)); // 5n
 * ```
 */
export async function generatePaillier(bits = 2048): Promise<PaillierPrivate> {
  const { publicKey, privateKey } = await paillier.generateRandomKeys(bits, true);
  return Object.assign(fromPaillierBigint(publicKey, privateKey) as PaillierPrivate, { _priv: { p: (privateKey as unknown as { _p: bigint })._p, q: (privateKey as unknown as { _q: bigint })._q } });
}

/**
 * Maps a decrypted residue to a signed integer: values above n/2 are negative.
 * @example
 * ```ts
 * decodeSigned(n - 5n, n); // -5n
 * ```
 */
export function decodeSigned(m: bigint, n: bigint): bigint {
  return m > n / 2n ? m - n : m;
}

const big = (b: bigint): Buffer => Buffer.from(b.toString(16).padStart(2, '0').replace(/^(.(..)*)$/, '0$1'), 'hex');
const unbig = (u: Uint8Array): bigint => BigInt('0x' + (Buffer.from(u).toString('hex') || '0'));

/** Serialises a private key as CBOR `[1, n, p, q]` (big-endian byte strings). PLACEHOLDER format. */
export function encodePrivateKey(key: PaillierPrivate): Uint8Array {
  const k = key as PaillierPrivate & { _priv?: { p: bigint; q: bigint } };
  if (!k._priv) throw new TypeError('not a private key from this engine');
  return cborEncode([1, big(key.n), big(k._priv.p), big(k._priv.q)]);
}

/** Loads a private key serialised by {@link encodePrivateKey}. PLACEHOLDER format. */
export function decodePrivateKey(bytes: Uint8Array): PaillierPrivate {
  const a = cborDecode(bytes) as Uint8Array[];
  const [n, p, q] = [unbig(a[1]!), unbig(a[2]!), unbig(a[3]!)];
  if (p * q !== n) throw new TypeError('Paillier key: p * q != n');
  const pub = new paillier.PublicKey(n, n + 1n);
  const lambda = (p - 1n) * (q - 1n);
  const mu = modInv(lambda, n);
  const priv = new paillier.PrivateKey(lambda, mu, pub, p, q);
  return Object.assign(fromPaillierBigint(pub, priv) as PaillierPrivate, { _priv: { p, q } });
}

function modInv(a: bigint, m: bigint): bigint {
  let [r0, r1, s0, s1] = [a % m, m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1, s0, s1] = [r1, r0 - q * r1, s1, s0 - q * s1];
  }
  return ((s0 % m) + m) % m;
}
