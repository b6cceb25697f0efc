/**
 * BigInt arithmetic for the Paillier engine: the plain reference implementations that the fast paths
 * (modexp.ts, kernel.js) are tested against, and byte conversions.
 * @module
 */
import { randomBytes } from 'node:crypto';

/**
 * Bit length of a non-negative integer (0 for 0).
 * @example
 * ```ts
 * bitLength(255n); // 8
 * ```
 */
export function bitLength(x: bigint): number {
  if (x < 0n) throw new RangeError('bitLength of a negative number');
  if (x === 0n) return 0;
  const hex = x.toString(16);
  return (hex.length - 1) * 4 + (32 - Math.clz32(parseInt(hex[0]!, 16)));
}

/**
 * Reference modular exponentiation b^e mod m, right-to-left binary method (HAC Algorithm 14.76).
 * Slow and not constant-time: the reference the fast paths are compared against, and the path for
 * tiny moduli.
 * @example
 * ```ts
 * modPowRef(3n, 5n, 7n); // 5n
 * ```
 */
export function modPowRef(b: bigint, e: bigint, m: bigint): bigint {
  if (m <= 0n) throw new RangeError('modulus must be positive');
  if (e < 0n) throw new RangeError('negative exponent');
  let r = 1n % m;
  b %= m;
  if (b < 0n) b += m;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

/**
 * Greatest common divisor (Euclid).
 * @example
 * ```ts
 * gcd(12n, 18n); // 6n
 * ```
 */
export function gcd(a: bigint, b: bigint): bigint {
  if (a < 0n) a = -a;
  if (b < 0n) b = -b;
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

/**
 * Inverse of a modulo m (extended Euclid); throws a RangeError when gcd(a, m) != 1.
 * @example
 * ```ts
 * modInv(3n, 7n); // 5n
 * ```
 */
export function modInv(a: bigint, m: bigint): bigint {
  let [r0, r1, s0, s1] = [((a % m) + m) % m, m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1, s0, s1] = [r1, r0 - q * r1, s1, s0 - q * s1];
  }
  if (r0 !== 1n) throw new RangeError('not invertible');
  return ((s0 % m) + m) % m;
}

/**
 * Integer square root: the largest s with s^2 <= x (Newton).
 * @example
 * ```ts
 * isqrt(17n); // 4n
 * ```
 */
export function isqrt(x: bigint): bigint {
  if (x < 0n) throw new RangeError('isqrt of a negative number');
  if (x < 2n) return x;
  let s = 1n << BigInt((bitLength(x) >> 1) + 1);
  for (;;) {
    const t = (s + x / s) >> 1n;
    if (t >= s) return s;
    s = t;
  }
}

/**
 * Big-endian unsigned bytes of x; `len` pads to a fixed length and throws if x does not fit.
 * @example
 * ```ts
 * toBytes(258n); // <Buffer 01 02>
 * ```
 */
export function toBytes(x: bigint, len?: number): Buffer {
  if (x < 0n) throw new RangeError('cannot encode a negative integer');
  let hex = x === 0n ? '' : x.toString(16);
  if (hex.length & 1) hex = '0' + hex;
  const minimal = hex.length / 2;
  if (len === undefined) return Buffer.from(hex, 'hex');
  if (minimal > len) throw new RangeError(`integer needs ${minimal} bytes, more than ${len}`);
  return Buffer.from(hex.padStart(len * 2, '0'), 'hex');
}

/**
 * Big-endian unsigned bytes to a bigint (empty = 0n).
 * @example
 * ```ts
 * fromBytes(Buffer.from([1, 2])); // 258n
 * ```
 */
export function fromBytes(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt('0x' + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex'));
}

/**
 * Uniform integer in [0, n) by rejection sampling from the OS CSPRNG.
 * @example
 * ```ts
 * randomBelow(10n); // 0n..9n
 * ```
 */
export function randomBelow(n: bigint): bigint {
  if (n <= 0n) throw new RangeError('bound must be positive');
  const bits = bitLength(n - 1n);
  const bytes = Math.ceil(bits / 8);
  const extra = bytes * 8 - bits;
  for (;;) {
    const buf = randomBytes(bytes);
    if (extra > 0) buf[0]! &= 0xff >> extra;
    const x = fromBytes(buf);
    buf.fill(0);
    if (x < n) return x;
  }
}
