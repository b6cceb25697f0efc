/**
 * Parameters of the DJN variant of Paillier used by the engine (Damgård, Jurik, Nielsen, "A generalization of
 * Paillier's public-key system with applications to electronic voting", IJIS 9(6), 2010, §4.3):
 *
 * - h = -x^2 mod n for x in Z*_n, h_s = h^n mod n^2 (an n-th residue, fixed per key);
 *   E(m; r) = (1 + m n) * h_s^r mod n^2 with a SHORT exponent r of `randomiserBits(|n|)` bits.
 * - x is derived from n alone (nothing-up-my-sleeve, {@link deriveH}), so the public key stays just n, as in
 *   paillier-bigint, and every party computes the same h_s. h carries no secret: in DJN it is chosen by the
 *   key generator and published; only the factorisation of n is secret.
 *
 * Exponent length (the security choice, see docs/paillier.md): r has ell = 4 * kappa bits, kappa being the
 * security level of |n| per NIST SP 800-57 Part 1 Rev. 5, Table 2 (2048 -> 112, 3072 -> 128): 448 bits at
 * 2048, 512 at 3072 — the parameters of Ma, Han and Lei ("Optimized Paillier's cryptosystem with fast
 * encryption and decryption", ACSAC 2021). The best known attack on a short exponent in a group of unknown
 * order is Pollard's lambda / baby-step giant-step, 2^(ell/2) = 2^(2 kappa) operations, so 4 kappa keeps a
 * factor 2^kappa of margin over the 2 kappa minimum (REFERENCE: "exponent >= 2x the security level").
 * `'half'` selects ell = |n|/2 bits (DJN's own suggestion, Intel IPCL, secretflow HEU): about 2.3x slower at
 * 2048 bits, for whoever wants the more conservative, more widely deployed choice.
 * @module
 */
import { createHash } from 'node:crypto';
import { bitLength, fromBytes, gcd, toBytes } from './arith.js';

export type ExponentChoice = 'short' | 'half';

/**
 * Security level in bits of an RSA/Paillier modulus of `nBits` bits (NIST SP 800-57 Pt 1 Rev 5, Table 2);
 * moduli below 2048 bits are for tests only (80 for 1024; 0 below).
 * @example
 * ```ts
 * securityBits(3072); // 128
 * ```
 */
export function securityBits(nBits: number): number {
  if (nBits >= 15360) return 256;
  if (nBits >= 7680) return 192;
  if (nBits >= 3072) return 128;
  if (nBits >= 2048) return 112;
  if (nBits >= 1024) return 80;
  return 0;
}

/**
 * Length in bits of the DJN randomiser exponent r for an |n| of `nBits`: min(4 kappa, ceil(|n|/2)) for
 * `'short'` (448 at 2048, 512 at 3072), ceil(|n|/2) for `'half'`. Test-size moduli (< 1024 bits) use
 * ceil(|n|/2).
 * @example
 * ```ts
 * randomiserBits(2048); // 448
 * randomiserBits(2048, 'half'); // 1024
 * ```
 */
export function randomiserBits(nBits: number, choice: ExponentChoice = 'short'): number {
  const half = Math.ceil(nBits / 2);
  if (choice === 'half') return half;
  if (choice !== 'short') throw new TypeError(`unknown exponent choice ${String(choice)}`);
  const kappa = securityBits(nBits);
  return kappa === 0 ? half : Math.min(4 * kappa, half);
}

const H_DOMAIN = Buffer.from('smartermetering/paillier/djn-h/v1', 'ascii');

/**
 * The DJN base h = -x^2 mod n with x derived from n: x = OS2IP(SHA-512(D || n || 0) || SHA-512(D || n || 1)
 * || ...) mod n, truncated to |n| + 128 bits, D = "smartermetering/paillier/djn-h/v1", n big-endian minimal,
 * the counter a 4-byte big-endian integer; the first x (trying successive 64-byte blocks) with
 * 1 < x and gcd(x, n) = 1 is taken.
 * @example
 * ```ts
 * const h = deriveH(n); // then h_s = h^n mod n^2
 * ```
 */
export function deriveH(n: bigint): bigint {
  const nb = toBytes(n);
  const bits = bitLength(n) + 128;
  const bytes = Math.ceil(bits / 8);
  let counter = 0;
  for (let attempt = 0; attempt < 64; attempt++) {
    const chunks: Buffer[] = [];
    let have = 0;
    while (have < bytes) {
      const ctr = Buffer.alloc(4);
      ctr.writeUInt32BE(counter++);
      const block = createHash('sha512').update(H_DOMAIN).update(nb).update(ctr).digest();
      chunks.push(block);
      have += block.length;
    }
    const x = fromBytes(Buffer.concat(chunks).subarray(0, bytes)) % n;
    if (x > 1n && gcd(x, n) === 1n) return (n - ((x * x) % n)) % n;
  }
  throw new RangeError('cannot derive h for this modulus (is n a product of two large primes?)');
}
