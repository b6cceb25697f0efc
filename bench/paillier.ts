/**
 * Paillier engine vs paillier-bigint (the `_baseline` figures), same key (same n), same process, one core
 * for every timed operation (the randomiser pool's worker fills on the other core in the background, which
 * is what the pool is for). 2048 bits at the top level, 3072 bits under `at_3072`. Figures are medians of
 * the process's CPU time per call (robust on a shared, loaded machine; see measure's `clock`), except the
 * pool figures, which are wall-clock because the refilling worker's CPU would be counted.
 *
 * - encrypt_ms: public-key encryption, no pool (DJN fixed-base table, 4 kappa-bit r) — what a meter does;
 *   baseline PublicKey.encrypt (g^m r^n, 2048-bit exponent).
 * - encrypt_keyholder_ms: the key holder's encryption (CRT tables mod p^2, q^2); its baseline is the same
 *   paillier-bigint encryption, timed again beside it.
 * - encrypt_half_ms (2048 only): public-key encryption with the |n|/2-bit exponent option.
 * - encrypt_pool_us / rerandomize_pool_us: online cost with a warm pool (one multiplication).
 * - decrypt_ms: CRT decryption via OpenSSL; baseline PrivateKey.decrypt (CRT with lambda).
 * - partial_decrypt_ms: one share holder's partial decryption c^(d_i) mod n^2 (threshold.ts, end-to-end mode:
 *   no CRT, a |n^2| + 128-bit exponent), timed in alternating rounds beside decrypt_ms (partial_decrypt_vs_crt
 *   is their ratio); combine_us: m = L(c_pes c_guardian) from two partials.
 * - add_us, add_plain_us, mul_plain_us (32-bit scalar): homomorphic operations.
 * - table_ms / table_keyholder_ms: one-off fixed-base table build per key; keygen_ms: generatePaillier.
 * @module
 */
import * as paillier from 'paillier-bigint';
import { combinePartials, generatePaillier, partialDecrypt, splitKey, toPaillierBigint, PrivateKey, type PublicKey } from '../protocol/paillier/engine.js';
import { measure, measurePair, progress, round } from './index.js';

interface Figures extends Record<string, unknown> {
  bits: number;
}

async function figures(bits: number, withHalf: boolean): Promise<Figures> {
  progress(`paillier ${bits}: key generation`);
  let t0 = performance.now();
  const key = await generatePaillier(bits);
  const keygen = performance.now() - t0;
  const pub = key.publicKey;
  const base = toPaillierBigint(key);
  const basePub: paillier.PublicKey = base.publicKey;
  const basePriv: paillier.PrivateKey = base.privateKey;

  progress(`paillier ${bits}: fixed-base tables`);
  t0 = performance.now();
  pub.precompute();
  const tablePub = performance.now() - t0;
  t0 = performance.now();
  key.precompute();
  const tableKey = performance.now() - t0;

  // Never report figures for a broken engine: both directions must decrypt.
  const m = 123_456_789n;
  if (key.decrypt(pub.encrypt(m)) !== m || basePriv.decrypt(key.encrypt(m)) !== m || key.decrypt(basePub.encrypt(m)) !== m) {
    throw new Error(`paillier ${bits}: engine and paillier-bigint disagree`);
  }

  const reading = () => BigInt(Math.floor(Math.random() * 100_000)); // plaintexts like the PES's (Wh)
  const c1 = key.encrypt(reading());
  const c2 = key.encrypt(reading());
  const k32 = 0xfedcba98n;
  const slow = { unit: 'ms' as const, minReps: 15, minMs: 1500, clock: 'cpu' as const };
  const fast = { unit: 'us' as const, minReps: 200, minMs: 500, clock: 'cpu' as const };

  progress(`paillier ${bits}: encryption`);
  const out: Figures = { bits, clock: 'cpu (pool figures: wall)', exponent_bits: key.exponentBits, window_bits: key.window };
  const pair = (key: string, ours: () => unknown, baseline: () => unknown, opts: typeof slow | typeof fast): void => {
    const t = measurePair(ours, baseline, opts);
    out[key] = t.ours.median;
    out[`${key}_baseline`] = t.baseline.median;
  };
  pair('encrypt_ms', () => pub.encrypt(reading()), () => basePub.encrypt(reading()), slow);
  pair('encrypt_keyholder_ms', () => key.encrypt(reading()), () => basePub.encrypt(reading()), slow);
  if (withHalf) {
    const half: PublicKey = new PrivateKey(key.primes.p, key.primes.q, { exponent: 'half' }).publicKey.precompute();
    out.encrypt_half_ms = measure(() => half.encrypt(reading()), slow).median;
  }
  out.rerandomize_ms = measure(() => pub.rerandomize(c1), slow).median;

  progress(`paillier ${bits}: randomiser pool`);
  const capacity = 1024;
  const pool = key.startPool({ capacity, batch: 32 });
  await pool.filled(capacity);
  // Fewer calls than the pool holds: every timed call takes a precomputed randomiser.
  out.encrypt_pool_us = measure(() => key.encrypt(reading()), { unit: 'us', minReps: 400, maxReps: 400, minMs: 0, warmup: 0 }).median;
  await pool.filled(capacity);
  out.rerandomize_pool_us = measure(() => key.rerandomize(c1), { unit: 'us', minReps: 400, maxReps: 400, minMs: 0, warmup: 0 }).median;
  out.pool_misses = pool.counters.misses;
  await key.closePool();

  progress(`paillier ${bits}: decryption`);
  pair('decrypt_ms', () => key.decrypt(c1), () => basePriv.decrypt(c1), slow);

  progress(`paillier ${bits}: threshold (2-of-2) partial decryption`);
  const shares = splitKey(key);
  const [pp, pg] = [partialDecrypt(shares.pes, c1), partialDecrypt(shares.guardian, c1)];
  if (combinePartials(pub, pp, pg) !== key.decrypt(c1)) throw new Error(`paillier ${bits}: threshold decryption disagrees with decrypt`);
  const t = measurePair(() => partialDecrypt(shares.guardian, c1), () => key.decrypt(c1), slow);
  out.partial_decrypt_ms = t.ours.median;
  out.partial_decrypt_crt_ms = t.baseline.median;
  out.partial_decrypt_vs_crt = round(t.ours.median / t.baseline.median);
  out.combine_us = measure(() => combinePartials(pub, pp, pg), fast).median;

  progress(`paillier ${bits}: homomorphic operations`);
  pair('add_us', () => key.add(c1, c2), () => basePub.addition(c1, c2), fast);
  pair('add_plain_us', () => key.addPlain(c1, reading()), () => basePub.plaintextAddition(c1, reading()), fast);
  pair('mul_plain_us', () => key.mulPlain(c1, k32), () => basePub.multiply(c1, k32), fast);

  out.keygen_ms = round(keygen);
  out.table_ms = round(tablePub);
  out.table_keyholder_ms = round(tableKey);
  const r = (a: unknown, b: unknown): number => round((b as number) / (a as number));
  out.speedup = {
    encrypt: r(out.encrypt_ms, out.encrypt_ms_baseline),
    encrypt_keyholder: r(out.encrypt_keyholder_ms, out.encrypt_keyholder_ms_baseline),
    encrypt_pool: r((out.encrypt_pool_us as number) / 1000, out.encrypt_ms_baseline),
    decrypt: r(out.decrypt_ms, out.decrypt_ms_baseline),
    add: r(out.add_us, out.add_us_baseline),
  };
  await key.destroy();
  return out;
}

/**
 * The `paillier` section of `npm run bench`.
 * @example
 * ```ts
 * const section = await run(); // { bits: 2048, encrypt_ms, encrypt_ms_baseline, ..., at_3072: {...} }
 * ```
 */
export async function run(): Promise<Record<string, unknown>> {
  const main = await figures(2048, true);
  main.at_3072 = await figures(3072, false);
  return main;
}
