/**
 * The bounded fuzz sample of `npm test`: runs a target for a few thousand inputs and asserts what
 * `npm run fuzz` reports at scale (no crash, no oracle violation, nothing forged accepted, no runaway
 * memory), plus a positive control: some inputs were accepted, so the oracle was not vacuously satisfied.
 * Seed: SM_FUZZ_SEED, else random (printed in the failure message, to replay it).
 */
import { expect } from 'vitest';
import { runTarget, type FuzzResult, type FuzzTarget } from '../../bench/harness/fuzz-harness.js';

export const FUZZ_SEED = Number(process.env.SM_FUZZ_SEED ?? (Date.now() % 2 ** 31));

/**
 * Runs `runs` inputs and checks the result; returns it for further assertions.
 * @example
 * ```ts
 * await fuzzCheck(linkTarget, 1000);
 * ```
 */
export async function fuzzCheck<I>(target: FuzzTarget<I>, runs: number): Promise<FuzzResult> {
  const r = await runTarget(target, { runs, seed: FUZZ_SEED });
  const why = `${target.name}, seed ${FUZZ_SEED} (SM_FUZZ_SEED=${FUZZ_SEED} to replay): ${r.examples.join('\n')}`;
  expect(r.inputs, why).toBe(runs);
  expect({ crashes: r.crashes, violations: r.violations, forged: r.forged }, why).toEqual({ crashes: 0, violations: 0, forged: 0 });
  expect(r.accepted, `${why}: nothing was accepted, the oracle proved nothing`).toBeGreaterThan(0);
  expect(r.rejected, why).toBeGreaterThan(0);
  expect(r.peakRssGrowthMB, `${why}: peak RSS grew by ${r.peakRssGrowthMB} MB`).toBeLessThan(256);
  return r;
}
