/**
 * Import and export in one Paillier plaintext: v = importWh + exportWh * 2^128, so one accumulator per window
 * and band holds both registers' energy (one encryption, one `addPlain`, one re-randomisation and one
 * decryption serve both; measured against two accumulators in pes/README.md).
 *
 * Why not the engine's `Packing` (protocol/paillier/packing.ts): it packs non-negative values under a term
 * budget, and the PES folds signed values (a late batch inside a gap subtracts the gap's energy where it was
 * attributed). The pair is therefore packed as a signed integer and decoded in balanced form: the import part
 * is the low 128 bits read as a signed number, the export part what remains, shifted down. Addition is linear,
 * so any sum of pairs decodes to the pair of sums as long as the import sum stays within +-2^127 and the whole
 * within the signed range (-n/2, n/2) of protocol/paillier/signed.ts; registers are below 2^48 Wh
 * (protocol/reading.ts), so a window's sums stay below 2^100 even for 2^50 contributions, and a 512-bit key
 * leaves room for the export part to 2^382. A plaintext of version 1 (import only) is the pair (import, 0).
 * @module
 */

/** Bits of the import part. */
export const PAIR_SHIFT = 128n;

/**
 * The plaintext of a signed (import, export) pair.
 * @example
 * ```ts
 * packPair(5, -2); // 5n - 2n * 2n ** 128n
 * ```
 */
export function packPair(importWh: number | bigint, exportWh: number | bigint): bigint {
  return BigInt(importWh) + (BigInt(exportWh) << PAIR_SHIFT);
}

/**
 * The (import, export) pair of a signed plaintext made by adding packed pairs (after `decodeSigned`).
 * @example
 * ```ts
 * unpackPair(packPair(5, -2) + packPair(-1, 7)); // [4n, 5n]
 * ```
 */
export function unpackPair(v: bigint): [bigint, bigint] {
  const importWh = BigInt.asIntN(Number(PAIR_SHIFT), v);
  return [importWh, (v - importWh) >> PAIR_SHIFT];
}
