/** Types for kernel.js (plain JS so that worker threads load it without a TypeScript loader). */
export interface FixedBaseTable {
  readonly m: bigint;
  readonly w: number;
  readonly bits: number;
  readonly rows: bigint[][];
}
export type RandomiserSpec =
  | { kind: 'public'; hs: bigint; n: bigint; n2: bigint; bits: number; w: number }
  | { kind: 'crt'; hs: bigint; p: bigint; q: bigint; p2: bigint; q2: bigint; p2InvQ2: bigint; bits: number; w: number };
/** A fixed-base table over Z_{m^2} in split form: entry = a (1 + m beta), a < m, beta < m. */
export interface SplitTable {
  readonly m: bigint;
  readonly m2: bigint;
  readonly w: number;
  readonly bits: number;
  readonly a: bigint[][];
  readonly beta: bigint[][];
}
export interface RandomiserSource {
  readonly bits: number;
  /** h_s^r mod n^2 for 0 <= r < 2^bits. */
  pow(r: bigint): bigint;
  /** h_s^r mod n^2 for a fresh random r of `bits` bits. */
  next(): bigint;
}
/**
 * Fixed-base window table over Z_m: row i holds base^(d 2^(w i)) for d in [0, 2^w).
 * @example
 * ```ts
 * const t = buildTable(hs, n2, 448, 10); tablePow(t, r); // hs^r mod n2
 * ```
 */
export function buildTable(base: bigint, m: bigint, bits: number, w: number): FixedBaseTable;
/**
 * base^r mod m = prod_i row_i[digit_i(r)] mod m.
 * @example
 * ```ts
 * tablePow(buildTable(3n, 7n, 8, 2), 5n); // 5n
 * ```
 */
export function tablePow(table: FixedBaseTable, r: bigint): bigint;
/**
 * Fixed-base window table over Z_{m^2} in split form (row i: a and beta of base^(d 2^(w i)), d < 2^w); the
 * fast path behind {@link randomiserSource}.
 * @example
 * ```ts
 * const t = buildSplitTable(hs, n, 448, 10); splitTablePow(t, r); // hs^r mod n^2
 * ```
 */
export function buildSplitTable(base: bigint, m: bigint, bits: number, w: number): SplitTable;
/**
 * base^r mod m^2 = (prod_i a_i mod m^2) (1 + m sum_i beta_i): one |m|-bit by 2|m|-bit product per digit.
 * @example
 * ```ts
 * splitTablePow(buildSplitTable(2n, 7n, 8, 2), 5n); // 32n (mod 49)
 * ```
 */
export function splitTablePow(table: SplitTable, r: bigint): bigint;
/**
 * Garner's CRT: x mod a b from x mod a and x mod b, given a^{-1} mod b.
 * @example
 * ```ts
 * crt(2n, 3n, 5n, 7n, 3n); // 17n
 * ```
 */
export function crt(xa: bigint, xb: bigint, a: bigint, b: bigint, aInvB: bigint): bigint;
/**
 * Uniform r in [0, 2^bits) from the OS CSPRNG.
 * @example
 * ```ts
 * randomExponent(448); // 0n <= r < 2n ** 448n
 * ```
 */
export function randomExponent(bits: number): bigint;
/**
 * h_s^r from a public table over Z_{n^2} or CRT tables over Z_{p^2}, Z_{q^2}.
 * @example
 * ```ts
 * randomiserSource({ kind: 'public', hs, n, n2, bits: 448, w: 10 }).next(); // a fresh h_s^r
 * ```
 */
export function randomiserSource(spec: RandomiserSpec): RandomiserSource;
