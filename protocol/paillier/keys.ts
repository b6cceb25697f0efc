/**
 * The fast Paillier engine: Paillier 1999 with g = n + 1 (the ciphertext group and decryption of
 * paillier-bigint's `generateRandomKeys(bits, true)`, so ciphertexts go both ways), DJN randomisers
 * h_s^r with a short r (params.ts), fixed-base window tables for h_s^r (kernel.js), CRT everywhere the key
 * holder can use it, OpenSSL's constant-time exponentiation for decryption (modexp.ts), and an optional
 * background pool of randomisers (pool.ts).
 *
 * Formulas (n = p q, g = 1 + n, L_p(x) = (x - 1) / p):
 * - E(m; r) = (1 + m n) h_s^r mod n^2; since (1 + m n) R = R + n (m R mod n) mod n^2, forming it costs one
 *   small product and a reduction mod n instead of a multiplication mod n^2.
 * - D(c) (Paillier 1999 §7): m_p = L_p(c^(p-1) mod p^2) h_p mod p, h_p = L_p(g^(p-1) mod p^2)^-1 = (-q)^-1 mod p
 *   (because (1 + n)^(p-1) = 1 + (p - 1) n mod p^2); the same for q; m = CRT(m_p, m_q).
 * - key holder's h_s^r: h_s^r mod p^2 and mod q^2 from two tables, joined by Garner's CRT.
 * @module
 */
import { checkPrimeSync, createHash, generatePrime } from 'node:crypto';
import { cborEncode } from '../cbor.js';
import { bitLength, gcd, isqrt, modInv, modPowRef, toBytes } from './arith.js';
import { crt, randomiserSource, type RandomiserSource, type RandomiserSpec } from './kernel.js';
import { Modulus } from './modexp.js';
import { deriveH, randomiserBits, type ExponentChoice } from './params.js';
import { RandomiserPool, type PoolOptions } from './pool.js';
import type { PaillierPrivate, PaillierPublic } from './types.js';

/** Smallest and largest |n| the engine accepts (below 2048 bits: tests only), e.g. `if (bits < MIN_KEY_BITS) ...`. */
export const MIN_KEY_BITS = 512;
export const MAX_KEY_BITS = 16384;

export interface EngineOptions {
  /** Randomiser exponent length: 'short' = 4 kappa bits (default, 448 at 2048), 'half' = |n|/2 (params.ts). */
  exponent?: ExponentChoice;
  /** Fixed-base window in bits (default 10 for |n| >= 2048, 8 below). Memory: ceil(ell/w) 2^w residues. */
  window?: number;
}

const SMALL_SCALAR_BITS = 12; // below this, BigInt square-and-multiply beats OpenSSL's fixed cost

/**
 * Encoding of a public key: CBOR [1, n] (n big-endian, minimal). Its SHA-256 names the key.
 * @example
 * ```ts
 * publicKeyEncoding(key.n); // <Buffer 82 01 59 01 00 ...>
 * ```
 */
export function publicKeyEncoding(n: bigint): Buffer {
  return cborEncode([1, toBytes(n)]);
}

/**
 * Key id bytes: SHA-256(CBOR [1, n])[0..8].
 * @example
 * ```ts
 * keyIdBytes(key.n).toString('hex') === key.keyId; // true
 * ```
 */
export function keyIdBytes(n: bigint): Buffer {
  return createHash('sha256').update(publicKeyEncoding(n)).digest().subarray(0, 8);
}

// Per-modulus caches (h_s, fixed-base tables): keys decoded from the same bytes share them. Small LRU.
const CACHE_MAX = 8;
const cache = new Map<string, { hs?: bigint; sources: Map<string, RandomiserSource> }>();
function cached(n: bigint): { hs?: bigint; sources: Map<string, RandomiserSource> } {
  const id = n.toString(36);
  let e = cache.get(id);
  if (e) {
    cache.delete(id);
  } else {
    e = { sources: new Map() };
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
  }
  cache.set(id, e);
  return e;
}

/**
 * A public key: everything but decryption.
 * @example
 * ```ts
 * const pub = new PublicKey(n);
 * const c = pub.addPlain(pub.encrypt(5n), 7n); // E(12)
 * ```
 */
export class PublicKey implements PaillierPublic {
  readonly bits: number;
  readonly n: bigint;
  readonly n2: bigint;
  readonly exponentBits: number;
  readonly window: number;
  protected pool: RandomiserPool | undefined;
  private modN2: Modulus | undefined;
  private id: string | undefined;

  constructor(n: bigint, options: EngineOptions = {}) {
    if (typeof n !== 'bigint') throw new TypeError('Paillier modulus must be a bigint');
    const bits = bitLength(n);
    if (bits < MIN_KEY_BITS || bits > MAX_KEY_BITS) throw new RangeError(`Paillier modulus must have ${MIN_KEY_BITS}..${MAX_KEY_BITS} bits, got ${bits}`);
    if ((n & 1n) === 0n) throw new RangeError('Paillier modulus must be odd');
    this.n = n;
    this.n2 = n * n;
    this.bits = bits;
    this.exponentBits = randomiserBits(bits, options.exponent ?? 'short');
    this.window = options.window ?? (bits >= 2048 ? 10 : 8);
    if (!Number.isInteger(this.window) || this.window < 1 || this.window > 14) throw new RangeError('window must be an integer in 1..14');
  }

  get keyId(): string {
    return (this.id ??= keyIdBytes(this.n).toString('hex'));
  }

  /** h_s = h^n mod n^2 with h from params.ts deriveH (public: one exponentiation mod n^2, cached per n). */
  get hs(): bigint {
    const e = cached(this.n);
    return (e.hs ??= this.computeHs());
  }

  protected computeHs(): bigint {
    return this.mod().pow(deriveH(this.n), this.n);
  }

  protected mod(): Modulus {
    return (this.modN2 ??= new Modulus(this.n2));
  }

  /** What the randomiser tables are built from (the pool's workers build their own from it). */
  protected spec(): RandomiserSpec {
    return { kind: 'public', hs: this.hs, n: this.n, n2: this.n2, bits: this.exponentBits, w: this.window };
  }

  private source(): RandomiserSource {
    const spec = this.spec();
    const e = cached(this.n);
    const k = `${spec.kind}/${spec.bits}/${spec.w}`;
    let s = e.sources.get(k);
    if (!s) e.sources.set(k, (s = randomiserSource(spec)));
    return s;
  }

  precompute(): this {
    this.source();
    return this;
  }

  /** A fresh h_s^r: from the pool if one is running and not empty, else computed inline. */
  randomiser(): bigint {
    return this.pool?.take() ?? this.source().next();
  }

  /** Plaintext m in (-n/2, n) to its residue in [0, n); anything else is refused (never reduced silently). */
  residue(m: bigint, what = 'plaintext'): bigint {
    if (typeof m !== 'bigint') throw new TypeError(`${what} must be a bigint`);
    if (m >= this.n) throw new RangeError(`${what} must be < n`);
    if (m < 0n) {
      if (-m > (this.n - 1n) / 2n) throw new RangeError(`negative ${what} must be > -n/2`);
      return this.n + m;
    }
    return m;
  }

  /** Range check for a ciphertext operand (cheap; the full unit test is isCiphertext). */
  protected operand(c: bigint, what = 'ciphertext'): bigint {
    if (typeof c !== 'bigint') throw new TypeError(`${what} must be a bigint`);
    if (c <= 0n || c >= this.n2) throw new RangeError(`${what} is not in Z*_{n^2}: out of range (0, n^2)`);
    return c;
  }

  /** c (1 + m n) mod n^2 = c + n (c m mod n) mod n^2, for a residue m in [0, n). */
  protected timesOnePlusMN(c: bigint, m: bigint): bigint {
    if (m === 0n) return c;
    const r = c + this.n * ((c * m) % this.n);
    return r >= this.n2 ? r - this.n2 : r;
  }

  /** E(m; r) = (1 + m n) h_s^r mod n^2, r fresh (DJN 2010 §4.3). */
  encrypt(m: bigint): bigint {
    return this.timesOnePlusMN(this.randomiser(), this.residue(m));
  }

  /**
   * E(m; r) = (1 + m n) h_s^r mod n^2 with a caller-chosen r in [0, 2^exponentBits). For test vectors and
   * proofs only: reusing r across messages reveals their difference.
   */
  encryptWithRandomness(m: bigint, r: bigint): bigint {
    if (typeof r !== 'bigint' || r < 0n || r >> BigInt(this.exponentBits) !== 0n) throw new RangeError(`r must be in [0, 2^${this.exponentBits})`);
    return this.timesOnePlusMN(this.source().pow(r), this.residue(m));
  }

  /** E(a + b) = E(a) E(b) mod n^2. */
  add(a: bigint, b: bigint): bigint {
    return (this.operand(a) * this.operand(b)) % this.n2;
  }

  /** E(a + m) = c (1 + m n) mod n^2. */
  addPlain(c: bigint, m: bigint): bigint {
    return this.timesOnePlusMN(this.operand(c), this.residue(m));
  }

  /** E(k a) = c^k mod n^2; for k < 0, (c^-1)^|k|. */
  mulPlain(c: bigint, k: bigint): bigint {
    this.operand(c);
    if (typeof k !== 'bigint') throw new TypeError('scalar must be a bigint');
    if (k >= this.n || -k >= this.n) throw new RangeError('scalar must be in (-n, n)');
    let base = c;
    if (k < 0n) {
      base = this.invert(c);
      k = -k;
    }
    return bitLength(k) <= SMALL_SCALAR_BITS ? modPowRef(base, k, this.n2) : this.mod().pow(base, k);
  }

  /** c^-1 mod n^2 (E(-m) from E(m)); throws on a non-unit. */
  protected invert(c: bigint): bigint {
    try {
      return modInv(c, this.n2);
    } catch {
      throw new RangeError('ciphertext is not in Z*_{n^2}: not invertible');
    }
  }

  /** E(a; r + r') = c h_s^r' mod n^2. */
  rerandomize(c: bigint): bigint {
    return (this.operand(c) * this.randomiser()) % this.n2;
  }

  /** c in Z*_{n^2}: 0 < c < n^2 and gcd(c mod n, n) = 1. */
  isCiphertext(c: bigint): boolean {
    return typeof c === 'bigint' && c > 0n && c < this.n2 && gcd(c % this.n, this.n) === 1n;
  }

  startPool(options?: PoolOptions): RandomiserPool {
    return (this.pool ??= new RandomiserPool(this.spec(), options));
  }

  async closePool(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.close();
  }

  /** The pool started by {@link startPool}, if any. */
  get randomiserPool(): RandomiserPool | undefined {
    return this.pool;
  }
}

/** The key holder's precomputation (Paillier 1999 §7). */
interface Secret {
  p: bigint;
  q: bigint;
  p2: bigint;
  q2: bigint;
  hp: bigint;
  hq: bigint;
  qInvP: bigint;
  p2InvQ2: bigint;
  modP2: Modulus;
  modQ2: Modulus;
}

/**
 * A private key (the primes), with CRT decryption and CRT randomisers.
 * @example
 * ```ts
 * const key = await generatePaillier(2048);
 * key.decrypt(key.add(key.encrypt(2n), key.encrypt(3n))); // 5n
 * ```
 */
export class PrivateKey extends PublicKey implements PaillierPrivate {
  private s: Secret | undefined;
  private pub: PublicKey | undefined;
  private readonly options: EngineOptions;

  /** Validates p and q (prime, distinct, equal length +-1 bit, gcd(pq, (p-1)(q-1)) = 1). */
  constructor(p: bigint, q: bigint, options: EngineOptions = {}) {
    if (typeof p !== 'bigint' || typeof q !== 'bigint') throw new TypeError('Paillier primes must be bigints');
    if (p < 3n || q < 3n || p === q) throw new RangeError('Paillier primes must be distinct and > 2');
    super(p * q, options);
    if (Math.abs(bitLength(p) - bitLength(q)) > 1) throw new RangeError('Paillier primes must have the same length (+-1 bit)');
    if (!checkPrimeSync(p) || !checkPrimeSync(q)) throw new RangeError('Paillier key: p or q is not prime');
    if (gcd(this.n, (p - 1n) * (q - 1n)) !== 1n) throw new RangeError('Paillier key: gcd(pq, (p-1)(q-1)) != 1');
    this.options = options;
    const p2 = p * p;
    const q2 = q * q;
    this.s = {
      p,
      q,
      p2,
      q2,
      hp: modInv(-q, p), // h_p = L_p(g^(p-1) mod p^2)^-1 = (-q)^-1 mod p
      hq: modInv(-p, q),
      qInvP: modInv(q, p),
      p2InvQ2: modInv(p2, q2),
      modP2: new Modulus(p2),
      modQ2: new Modulus(q2),
    };
  }

  private get secret(): Secret {
    if (!this.s) throw new Error('Paillier private key was destroyed');
    return this.s;
  }

  /** The primes (for serialisation and interoperability). */
  get primes(): { p: bigint; q: bigint } {
    const { p, q } = this.secret;
    return { p, q };
  }

  get publicKey(): PublicKey {
    return (this.pub ??= new PublicKey(this.n, this.options));
  }

  /** h_s = h^n mod n^2 by CRT: h^n mod p^2 and mod q^2. */
  protected override computeHs(): bigint {
    const s = this.secret;
    const h = deriveH(this.n);
    return crt(s.modP2.pow(h, this.n), s.modQ2.pow(h, this.n), s.p2, s.q2, s.p2InvQ2);
  }

  protected override spec(): RandomiserSpec {
    const s = this.secret;
    return { kind: 'crt', hs: this.hs, p: s.p, q: s.q, p2: s.p2, q2: s.q2, p2InvQ2: s.p2InvQ2, bits: this.exponentBits, w: this.window };
  }

  /** c^-1 by CRT: each half by extended Euclid mod p^2, q^2 (4x cheaper than mod n^2). */
  protected override invert(c: bigint): bigint {
    const s = this.secret;
    try {
      return crt(modInv(c % s.p2, s.p2), modInv(c % s.q2, s.q2), s.p2, s.q2, s.p2InvQ2);
    } catch {
      throw new RangeError('ciphertext is not in Z*_{n^2}: not invertible');
    }
  }

  /** c in Z*_{n^2}: 0 < c < n^2, p does not divide c, q does not divide c. */
  override isCiphertext(c: bigint): boolean {
    const s = this.secret;
    return typeof c === 'bigint' && c > 0n && c < this.n2 && c % s.p !== 0n && c % s.q !== 0n;
  }

  /** m = CRT(L_p(c^(p-1) mod p^2) h_p mod p, L_q(c^(q-1) mod q^2) h_q mod q) (Paillier 1999 §7). */
  decrypt(c: bigint): bigint {
    const s = this.secret;
    this.operand(c);
    const cp = c % s.p2;
    const cq = c % s.q2;
    if (cp % s.p === 0n || cq % s.q === 0n) throw new RangeError('not a ciphertext: not a unit of Z*_{n^2}');
    const up = s.modP2.pow(cp, s.p - 1n) - 1n; // c^(p-1) - 1 mod p^2, divisible by p (Fermat)
    const uq = s.modQ2.pow(cq, s.q - 1n) - 1n;
    if (up % s.p !== 0n || uq % s.q !== 0n) throw new Error('Paillier decryption failed: L not integral (corrupted key?)');
    const mp = ((up / s.p) * s.hp) % s.p;
    const mq = ((uq / s.q) * s.hq) % s.q;
    return crt(mq, mp, s.q, s.p, s.qInvP);
  }

  async destroy(): Promise<void> {
    await this.closePool();
    if (!this.s) return;
    this.s.modP2.dispose();
    this.s.modQ2.dispose();
    cache.delete(this.n.toString(36)); // the CRT tables are derived from p and q
    this.s = undefined;
  }
}

/**
 * Generates a key pair with node:crypto's OpenSSL prime generator: p, q Blum primes (= 3 mod 4) of
 * exactly |n|/2 bits and >= sqrt(2) 2^(|n|/2 - 1) (so n has exactly `bits` bits, FIPS 186-5 A.1.3),
 * gcd(p - 1, q - 1) = 2 (an "admissible" modulus, as secretflow HEU's DJN key generator), |p - q| >
 * 2^(|n|/2 - 100) (FIPS 186-5 A.1.3, against Fermat factoring). Not safe primes: Paillier's security rests on
 * factoring n, and safe primes would make 2048-bit key generation take minutes. Below 2048 bits: tests only.
 * @example
 * ```ts
 * const key = await generatePaillier(2048);
 * ```
 */
export async function generatePaillier(bits = 2048, options: EngineOptions = {}): Promise<PrivateKey> {
  if (!Number.isInteger(bits) || bits < MIN_KEY_BITS || bits > MAX_KEY_BITS || bits % 2 !== 0) {
    throw new RangeError(`Paillier key size must be an even number of bits in ${MIN_KEY_BITS}..${MAX_KEY_BITS}, got ${bits}`);
  }
  const half = bits / 2;
  const low = isqrt(1n << BigInt(bits - 1)) + 1n;
  const minGap = 1n << BigInt(Math.max(0, half - 100));
  const prime = async (): Promise<bigint> => {
    for (;;) {
      const x = await new Promise<bigint>((resolve, reject) =>
        generatePrime(half, { bigint: true, add: 4n, rem: 3n }, (err, pr) => (err ? reject(err) : resolve(pr))),
      );
      if (x >= low) return x;
    }
  };
  const p = await prime();
  for (;;) {
    const q = await prime();
    const gap = p > q ? p - q : q - p;
    if (gap > minGap && gcd(p - 1n, q - 1n) === 2n) return new PrivateKey(p, q, options);
  }
}
