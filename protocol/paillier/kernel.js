// Fixed-base exponentiation kernel shared by the engine (protocol/paillier/keys.ts) and the randomiser pool's
// worker threads (pool-worker.js). Plain JavaScript on purpose: a worker thread must load it without a
// TypeScript loader. Types: kernel.d.ts. The reference it is tested against: arith.ts modPowRef.
import { randomBytes } from 'node:crypto';

/**
 * Fixed-base window table (Brickell-Gordon-McCurley-Wilson style, "fixed-base windowing", HAC 14.117 without
 * the squarings): row i holds base^(d * 2^(w i)) mod m for every digit d in [0, 2^w). Then for an exponent
 * r = sum_i d_i 2^(w i) < 2^(w * rows),  base^r = prod_i row_i[d_i] mod m:  ceil(bits / w) multiplications and
 * no squaring. Building costs rows * (2^w - 1) multiplications; memory rows * 2^w residues.
 * @param {bigint} base  in [1, m)
 * @param {bigint} m     the modulus (odd)
 * @param {number} bits  largest exponent length that pow() accepts
 * @param {number} w     window width in bits, 1..16
 */
export function buildTable(base, m, bits, w) {
  if (!Number.isInteger(w) || w < 1 || w > 16) throw new RangeError('window must be 1..16 bits');
  if (!Number.isInteger(bits) || bits < 1) throw new RangeError('exponent bits must be a positive integer');
  const size = 1 << w;
  const count = Math.ceil(bits / w);
  const rows = new Array(count);
  let b = base % m;
  for (let i = 0; i < count; i++) {
    const row = new Array(size);
    row[0] = 1n;
    row[1] = b;
    for (let d = 2; d < size; d++) row[d] = (row[d - 1] * b) % m;
    rows[i] = row;
    b = (row[size - 1] * b) % m; // base^(2^(w (i+1)))
  }
  return { m, w, bits, rows };
}

/**
 * base^r mod m from a table built by {@link buildTable}: prod_i row_i[digit_i(r)] mod m.
 * @param {{m: bigint, w: number, bits: number, rows: bigint[][]}} table
 * @param {bigint} r  0 <= r < 2^table.bits
 */
export function tablePow(table, r) {
  if (r < 0n || r >> BigInt(table.bits) !== 0n) throw new RangeError(`exponent must be in [0, 2^${table.bits})`);
  const { m, rows } = table;
  const w = BigInt(table.w);
  const mask = (1n << w) - 1n;
  let acc = 1n;
  let first = true;
  for (let i = 0; r !== 0n; i++, r >>= w) {
    const d = Number(r & mask);
    if (d === 0) continue;
    const e = rows[i][d];
    if (first) { acc = e; first = false; } else acc = (acc * e) % m;
  }
  return acc % m;
}

/**
 * Chinese remaindering for moduli a, b coprime: the x in [0, a b) with x = xa mod a, x = xb mod b
 * (Garner): x = xa + a * ((xb - xa) * a^{-1} mod b).
 * @param {bigint} xa @param {bigint} xb @param {bigint} a @param {bigint} b @param {bigint} aInvB  a^{-1} mod b
 */
export function crt(xa, xb, a, b, aInvB) {
  let t = ((xb - xa) % b) * aInvB % b;
  if (t < 0n) t += b;
  return xa + a * t;
}

/**
 * A uniformly random exponent r in [0, 2^bits) from the OS CSPRNG (node:crypto randomBytes).
 * @param {number} bits
 */
export function randomExponent(bits) {
  const bytes = randomBytes(Math.ceil(bits / 8));
  const extra = bytes.length * 8 - bits;
  if (extra > 0) bytes[0] &= 0xff >> extra;
  const r = bytes.length ? BigInt('0x' + bytes.toString('hex')) : 0n;
  bytes.fill(0);
  return r;
}

/**
 * A source of DJN randomisers h_s^r mod n^2 (DJN 2010 §4.3): from one table over Z_{n^2} (public key), or,
 * for the key holder, from tables over Z_{p^2} and Z_{q^2} joined by {@link crt} (each product there is
 * about 3x cheaper than one mod n^2, and there are two of them).
 * @param {{kind: 'public', hs: bigint, n2: bigint, bits: number, w: number}
 *       | {kind: 'crt', hs: bigint, p2: bigint, q2: bigint, p2InvQ2: bigint, bits: number, w: number}} spec
 */
export function randomiserSource(spec) {
  if (spec.kind === 'public') {
    const t = buildTable(spec.hs, spec.n2, spec.bits, spec.w);
    return { bits: spec.bits, pow: (r) => tablePow(t, r), next: () => tablePow(t, randomExponent(spec.bits)) };
  }
  const tp = buildTable(spec.hs % spec.p2, spec.p2, spec.bits, spec.w);
  const tq = buildTable(spec.hs % spec.q2, spec.q2, spec.bits, spec.w);
  const pow = (r) => crt(tablePow(tp, r), tablePow(tq, r), spec.p2, spec.q2, spec.p2InvQ2);
  return { bits: spec.bits, pow, next: () => pow(randomExponent(spec.bits)) };
}
