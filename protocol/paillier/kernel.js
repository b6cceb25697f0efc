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
 * x^-1 mod m for gcd(x, m) = 1 (extended Euclid; called once per table row, never on the encryption path).
 * @param {bigint} x @param {bigint} m
 */
function invMod(x, m) {
  let [r0, r1] = [((x % m) + m) % m, m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1n) throw new RangeError('not a unit');
  return s0 < 0n ? s0 + m : s0;
}

/**
 * Fixed-base window table over Z_{m^2} in split form. Every unit x of Z_{m^2} factors as
 * x = a (1 + m beta) mod m^2 with a = x mod m and beta = floor(x / m) a^-1 mod m, and the second factors
 * multiply by adding their betas ((1 + m b)(1 + m b') = 1 + m (b + b') mod m^2). Row i holds, for each digit d,
 * a (m bits) and beta of base^(d 2^(w i)), so base^r = (prod_i a_i mod m^2) (1 + m sum_i beta_i): each product
 * is a |m|-bit factor into a 2|m|-bit accumulator (about half the cost of a product of two residues mod m^2,
 * measured in docs/paillier.md), and the betas cost one addition each. Same memory as {@link buildTable}
 * (two |m|-bit halves per entry). The rows are built in split form, with the a^-1 kept as a running power:
 * a(x g) = a(x) a(g) = r + q m, so beta(x g) = beta(x) + beta(g) + q r^-1 mod m.
 * @param {bigint} base  a unit of Z_{m^2}
 * @param {bigint} m     the odd modulus whose square is the group's (n, or p and q for the key holder)
 * @param {number} bits  largest exponent length that splitTablePow() accepts
 * @param {number} w     window width in bits, 1..16
 */
export function buildSplitTable(base, m, bits, w) {
  if (!Number.isInteger(w) || w < 1 || w > 16) throw new RangeError('window must be 1..16 bits');
  if (!Number.isInteger(bits) || bits < 1) throw new RangeError('exponent bits must be a positive integer');
  const m2 = m * m;
  const size = 1 << w;
  const count = Math.ceil(bits / w);
  const a = new Array(count);
  const beta = new Array(count);
  let x = base % m2;
  if (x < 0n) x += m2;
  let ga = x % m;
  let gb = ((x / m) * invMod(ga, m)) % m;
  for (let i = 0; i < count; i++) {
    const inv = invMod(ga, m);
    const ra = new Array(size);
    const rb = new Array(size);
    ra[0] = 1n;
    rb[0] = 0n;
    ra[1] = ga;
    rb[1] = gb;
    let ca = ga;
    let cb = gb;
    let cinv = inv;
    for (let d = 2; d <= size; d++) {
      const t = ca * ga; // < m^2: exact
      const q = t / m;
      ca = t - q * m; // a of g^d
      cinv = (cinv * inv) % m; // its inverse, a(g)^-d
      cb = (cb + gb + q * cinv) % m;
      if (d < size) {
        ra[d] = ca;
        rb[d] = cb;
      }
    }
    a[i] = ra;
    beta[i] = rb;
    ga = ca; // g^(2^w): the next row's generator
    gb = cb;
  }
  return { m, m2, w, bits, a, beta };
}

/**
 * base^r mod m^2 from a table built by {@link buildSplitTable}: P = prod_i a_i mod m^2, S = sum_i beta_i mod m,
 * then base^r = P (1 + m S) = P + m (P S mod m) mod m^2.
 * @param {{m: bigint, m2: bigint, w: number, bits: number, a: bigint[][], beta: bigint[][]}} table
 * @param {bigint} r  0 <= r < 2^table.bits
 */
export function splitTablePow(table, r) {
  if (r < 0n || r >> BigInt(table.bits) !== 0n) throw new RangeError(`exponent must be in [0, 2^${table.bits})`);
  const { m, m2, a, beta } = table;
  const w = BigInt(table.w);
  const mask = (1n << w) - 1n;
  let p = 1n;
  let s = 0n;
  let short = true; // p < m: the next product is < m^2 and needs no reduction
  for (let i = 0; r !== 0n; i++, r >>= w) {
    const d = Number(r & mask);
    if (d === 0) continue;
    s += beta[i][d];
    if (short) {
      p *= a[i][d];
      short = p < m;
    } else p = (p * a[i][d]) % m2;
  }
  if (p >= m2) p %= m2;
  if (s === 0n) return p;
  const x = p + m * ((((p % m) * s) % m));
  return x >= m2 ? x - m2 : x;
}

/**
 * A source of DJN randomisers h_s^r mod n^2 (DJN 2010 §4.3): from one split table over Z_{n^2} (public key), or,
 * for the key holder, from split tables over Z_{p^2} and Z_{q^2} joined by {@link crt} (each product there is
 * about 3x cheaper than one mod n^2, and there are two of them). {@link buildTable}/{@link tablePow} remain the
 * plain reference that the tests compare with.
 * @param {{kind: 'public', hs: bigint, n: bigint, n2: bigint, bits: number, w: number}
 *       | {kind: 'crt', hs: bigint, p: bigint, q: bigint, p2: bigint, q2: bigint, p2InvQ2: bigint, bits: number, w: number}} spec
 */
export function randomiserSource(spec) {
  if (spec.kind === 'public') {
    if (spec.n * spec.n !== spec.n2) throw new RangeError('spec: n2 must be n^2');
    const t = buildSplitTable(spec.hs, spec.n, spec.bits, spec.w);
    return { bits: spec.bits, pow: (r) => splitTablePow(t, r), next: () => splitTablePow(t, randomExponent(spec.bits)) };
  }
  if (spec.p * spec.p !== spec.p2 || spec.q * spec.q !== spec.q2) throw new RangeError('spec: p2, q2 must be p^2, q^2');
  const tp = buildSplitTable(spec.hs % spec.p2, spec.p, spec.bits, spec.w);
  const tq = buildSplitTable(spec.hs % spec.q2, spec.q, spec.bits, spec.w);
  const pow = (r) => crt(splitTablePow(tp, r), splitTablePow(tq, r), spec.p2, spec.q2, spec.p2InvQ2);
  return { bits: spec.bits, pow, next: () => pow(randomExponent(spec.bits)) };
}
