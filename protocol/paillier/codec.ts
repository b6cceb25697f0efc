/**
 * Compact CBOR serialisation (RFC 8949, protocol/cbor.ts) of Paillier keys and ciphertexts. Integers are
 * big-endian byte strings (minimal for n, p, q; fixed |n^2| bytes for ciphertexts).
 *
 * - public key:  `[1, n]`                  key id = SHA-256(this encoding)[0..8]
 * - private key: `[1, n, p, q]`            (the format of the placeholder engine, unchanged)
 * - ciphertext:  `[1, keyId(8), c(|n^2| bytes)]`
 *
 * Decoding checks everything: structure, canonical integers, key size (optionally the expected one), that
 * p q = n with p, q prime, the key id a ciphertext names (so a ciphertext under another key is refused with
 * a clear error instead of decrypting to garbage), and that a ciphertext is a unit of Z*_{n^2}.
 * @module
 */
import { timingSafeEqual } from 'node:crypto';
import { asArray, asBytes, asUint, cborDecode, cborEncode } from '../cbor.js';
import { fromBytes, toBytes } from './arith.js';
import { keyIdBytes, PrivateKey, PublicKey, publicKeyEncoding, type EngineOptions } from './keys.js';
import type { PaillierPrivate, PaillierPublic } from './types.js';

export const PAILLIER_FORMAT = 1;

export interface DecodeKeyOptions extends EngineOptions {
  /** Refuse a key whose n does not have exactly this many bits. */
  expectBits?: number;
  /** Refuse a key whose id (hex or 8 bytes) differs. */
  keyId?: string | Uint8Array;
}

function integer(v: unknown, name: string): bigint {
  const b = asBytes(v, name);
  if (b.length === 0 || b[0] === 0) throw new TypeError(`${name} must be a minimal big-endian integer`);
  return fromBytes(b);
}

function checkKey(key: PaillierPublic, options: DecodeKeyOptions): void {
  if (options.expectBits !== undefined && key.bits !== options.expectBits) {
    throw new RangeError(`Paillier key has ${key.bits} bits, expected ${options.expectBits}`);
  }
  if (options.keyId !== undefined) {
    const want = typeof options.keyId === 'string' ? Buffer.from(options.keyId, 'hex') : Buffer.from(options.keyId);
    const have = Buffer.from(key.keyId, 'hex');
    if (want.length !== have.length || !timingSafeEqual(want, have)) {
      throw new Error(`Paillier key ${key.keyId} is not the expected key ${want.toString('hex')}`);
    }
  }
}

/**
 * CBOR `[1, n]`.
 * @example
 * ```ts
 * fs.writeFileSync('paillier.pub', encodePublicKey(key));
 * ```
 */
export function encodePublicKey(key: PaillierPublic): Buffer {
  return publicKeyEncoding(key.n);
}

/**
 * Loads a public key, checking its size and (optionally) its identity.
 * @example
 * ```ts
 * const pub = decodePublicKey(bytes, { keyId: 'a1b2c3d4e5f60718', expectBits: 2048 });
 * ```
 */
export function decodePublicKey(bytes: Uint8Array, options: DecodeKeyOptions = {}): PublicKey {
  const a = asArray(cborDecode(bytes), 'Paillier public key', 2, 2);
  if (asUint(a[0], 'Paillier public key format', 255) !== PAILLIER_FORMAT) throw new TypeError('unsupported Paillier public key format');
  const key = new PublicKey(integer(a[1], 'n'), options);
  checkKey(key, options);
  return key;
}

/**
 * CBOR `[1, n, p, q]`. The result is secret: write it 0600 and `fill(0)` it after use.
 * @example
 * ```ts
 * fs.writeFileSync(path, encodePrivateKey(key), { mode: 0o600 });
 * ```
 */
export function encodePrivateKey(key: PaillierPrivate): Buffer {
  if (!(key instanceof PrivateKey)) throw new TypeError('not a private key of this engine');
  const { p, q } = key.primes;
  const pb = toBytes(p);
  const qb = toBytes(q);
  try {
    return cborEncode([PAILLIER_FORMAT, toBytes(key.n), pb, qb]);
  } finally {
    pb.fill(0);
    qb.fill(0);
  }
}

/**
 * Loads a private key: checks p q = n, p and q prime and of equal length, the key size and (optionally) the
 * key id. The caller should `fill(0)` the bytes it read.
 * @example
 * ```ts
 * const key = decodePrivateKey(fs.readFileSync(path), { expectBits: 2048 });
 * ```
 */
export function decodePrivateKey(bytes: Uint8Array, options: DecodeKeyOptions = {}): PrivateKey {
  const a = asArray(cborDecode(bytes), 'Paillier private key', 4, 4);
  if (asUint(a[0], 'Paillier private key format', 255) !== PAILLIER_FORMAT) throw new TypeError('unsupported Paillier private key format');
  const n = integer(a[1], 'n');
  const p = integer(a[2], 'p');
  const q = integer(a[3], 'q');
  if (p * q !== n) throw new TypeError('Paillier private key: p * q != n');
  const key = new PrivateKey(p, q, options);
  checkKey(key, options);
  return key;
}

/**
 * Fixed-length big-endian bytes of a ciphertext (|n^2| bytes), for embedding in other structures.
 * @example
 * ```ts
 * const raw = ciphertextToBytes(key, c); // 512 bytes at 2048 bits
 * ```
 */
export function ciphertextToBytes(key: PaillierPublic, c: bigint): Buffer {
  if (typeof c !== 'bigint' || c <= 0n || c >= key.n2) throw new RangeError('ciphertext out of range (0, n^2)');
  return toBytes(c, ciphertextLength(key));
}

/**
 * Length in bytes of a serialised ciphertext under `key`: ceil(2 |n| / 8).
 * @example
 * ```ts
 * ciphertextLength(key); // 512 at 2048 bits
 * ```
 */
export function ciphertextLength(key: PaillierPublic): number {
  return Math.ceil((2 * key.bits) / 8);
}

/**
 * Parses {@link ciphertextToBytes}' output: exact length, and a unit of Z*_{n^2}.
 * @example
 * ```ts
 * const c = ciphertextFromBytes(key, raw);
 * ```
 */
export function ciphertextFromBytes(key: PaillierPublic, bytes: Uint8Array): bigint {
  const len = ciphertextLength(key);
  if (!(bytes instanceof Uint8Array) || bytes.length !== len) throw new TypeError(`ciphertext must be ${len} bytes, got ${bytes?.length}`);
  const c = fromBytes(bytes);
  if (!key.isCiphertext(c)) throw new RangeError('ciphertext is not in Z*_{n^2}');
  return c;
}

/**
 * CBOR `[1, keyId, c]`: a ciphertext that names its key.
 * @example
 * ```ts
 * const bytes = encodeCiphertext(key, accumulator);
 * ```
 */
export function encodeCiphertext(key: PaillierPublic, c: bigint): Buffer {
  return cborEncode([PAILLIER_FORMAT, keyIdBytes(key.n), ciphertextToBytes(key, c)]);
}

/**
 * Parses {@link encodeCiphertext}' output; refuses a ciphertext made under another key.
 * @example
 * ```ts
 * const c = decodeCiphertext(key, bytes);
 * ```
 */
export function decodeCiphertext(key: PaillierPublic, bytes: Uint8Array): bigint {
  const a = asArray(cborDecode(bytes), 'Paillier ciphertext', 3, 3);
  if (asUint(a[0], 'Paillier ciphertext format', 255) !== PAILLIER_FORMAT) throw new TypeError('unsupported Paillier ciphertext format');
  const kid = Buffer.from(asBytes(a[1], 'key id', 8));
  const mine = keyIdBytes(key.n);
  if (!timingSafeEqual(kid, mine)) throw new Error(`ciphertext is under Paillier key ${kid.toString('hex')}, not ${mine.toString('hex')}`);
  return ciphertextFromBytes(key, asBytes(a[2], 'ciphertext'));
}
