/**
 * Differential privacy for neighbourhood aggregates (issue 13, optional): the discrete Laplace mechanism
 * (two-sided geometric, Ghosh, Roughgarden and Sundararajan 2009) on integer Wh. A release over meters that
 * each add at most `sensitivityWh` to an interval is epsilon-DP per release for any one household's interval
 * when the noise has P(x) proportional to exp(-epsilon |x| / sensitivityWh). Bills are never noised.
 * The sampler uses floating-point logarithms of a 48-bit uniform (node:crypto), which is not the exact
 * sampler of Canonne, Kamath and Steinke (2020): a known limitation (Mironov 2012), documented in docs/privacy.md.
 * @module
 */
import { randomInt } from 'node:crypto';

/** Default maximum power of one meter, W (32 A at 230 V: a single-phase main fuse). */
export const DP_MAX_POWER_W = 7360;

/** A uniform in (0, 1] from 48 random bits. */
function uniform(): number {
  return (randomInt(0, 2 ** 24) * 2 ** 24 + randomInt(0, 2 ** 24) + 1) / 2 ** 48;
}

/**
 * One draw of discrete Laplace noise with P(x) proportional to exp(-epsilon |x| / sensitivity), an integer.
 * @example
 * ```ts
 * const noiseWh = discreteLaplace(1.0, 1840); // typically within a few thousand Wh of 0
 * ```
 */
export function discreteLaplace(epsilon: number, sensitivity: number, rnd: () => number = uniform): number {
  if (!(epsilon > 0) || !(sensitivity > 0)) throw new RangeError('epsilon and sensitivity must be positive');
  const lnAlpha = -epsilon / sensitivity; // alpha = exp(-epsilon / sensitivity)
  const geometric = () => Math.floor(Math.log(rnd()) / lnAlpha);
  return geometric() - geometric();
}

/**
 * Sensitivity of a neighbourhood interval: the most one meter can add to it, Wh.
 * @example
 * ```ts
 * intervalSensitivityWh(7360, 900); // 1840
 * ```
 */
export function intervalSensitivityWh(maxPowerW: number, intervalS: number): number {
  return Math.ceil((maxPowerW * intervalS) / 3600);
}
