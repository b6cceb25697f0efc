/**
 * Distributed discrete Laplace noise (docs/privacy.md, "Differential privacy in the end-to-end mode"): the
 * two-sided geometric distribution with parameter a = exp(-epsilon / sensitivity) is the difference of two
 * independent NegBin(1, a) (= geometric) variables, and NegBin is infinitely divisible: the sum of k
 * independent Pólya(1/k, a) = NegBin(1/k, a) variables is NegBin(1, a). So each of k parties drawing
 * Pólya(1/k, a) - Pólya(1/k, a) adds, together, exactly discrete Laplace noise, and no party knows the sum (Ács
 * and Castelluccia, "I have a DREAM!", IH 2011; Shi et al., NDSS 2011).
 *
 * Pólya(r, a) is drawn as Poisson(Gamma(shape r, scale a / (1 - a))): Gamma by Marsaglia and Tsang (ACM TOMS
 * 2000, with the shape < 1 boost U^(1/shape)), Poisson by multiplication of uniforms below mean 10 and by
 * Hörmann's PTRS (Insurance: Mathematics and Economics 1993, as in NumPy) above. Uniforms come from
 * node:crypto (48 bits) unless a generator is given (tests, seeded runs). Floating point, like
 * pes/core/dp.ts's sampler: not an exact sampler (Mironov 2012), a limitation docs/privacy.md states.
 * @module
 */
import { randomInt } from 'node:crypto';

/** A source of uniforms in (0, 1]. */
export type Uniform = () => number;

/**
 * A uniform in (0, 1] from 48 bits of node:crypto.
 * @example
 * ```ts
 * const u = cryptoUniform(); // 0 < u <= 1
 * ```
 */
export function cryptoUniform(): number {
  return (randomInt(0, 2 ** 24) * 2 ** 24 + randomInt(0, 2 ** 24) + 1) / 2 ** 48;
}

function normal(rnd: Uniform): number {
  return Math.sqrt(-2 * Math.log(rnd())) * Math.cos(2 * Math.PI * rnd());
}

/**
 * One draw of Gamma(shape, scale) (mean shape x scale), Marsaglia and Tsang.
 * @example
 * ```ts
 * gamma(0.05, 1839); // mostly near 0, mean 92
 * ```
 */
export function gamma(shape: number, scale: number, rnd: Uniform = cryptoUniform): number {
  if (!(shape > 0) || !(scale > 0) || !Number.isFinite(shape) || !Number.isFinite(scale)) throw new RangeError('gamma shape and scale must be positive and finite');
  if (shape < 1) return gamma(shape + 1, scale, rnd) * Math.pow(rnd(), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const x = normal(rnd);
    let v = 1 + c * x;
    if (v <= 0) continue;
    v = v * v * v;
    const u = rnd();
    if (u < 1 - 0.0331 * x * x * x * x || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v * scale;
  }
}

/** ln Γ(x) for x > 0 (NumPy's `loggam`: Stirling series after shifting x to >= 7). */
function logGamma(x: number): number {
  if (x === 1 || x === 2) return 0;
  const coef = [8.333333333333333e-2, -2.777777777777778e-3, 7.936507936507937e-4, -5.952380952380952e-4, 8.417508417508418e-4, -1.917526917526918e-3, 6.41025641025641e-3, -2.955065359477124e-2, 1.796443723688307e-1, -1.3924322169059];
  const n = x < 7 ? Math.floor(7 - x) : 0;
  let x0 = x + n;
  const x2 = 1 / (x0 * x0);
  let gl0 = coef[9]!;
  for (let k = 8; k >= 0; k--) gl0 = gl0 * x2 + coef[k]!;
  let gl = gl0 / x0 + 0.5 * 1.8378770664093453 + (x0 - 0.5) * Math.log(x0) - x0;
  for (let k = 1; k <= n; k++) {
    gl -= Math.log(x0 - 1);
    x0 -= 1;
  }
  return gl;
}

/**
 * One draw of Poisson(mean), an integer (exact below 2^53).
 * @example
 * ```ts
 * poisson(3.5); // 0, 1, 2, ... mean 3.5
 * ```
 */
export function poisson(mean: number, rnd: Uniform = cryptoUniform): number {
  if (!(mean >= 0) || !Number.isFinite(mean) || mean > 2 ** 50) throw new RangeError('poisson mean must be in [0, 2^50]');
  if (mean === 0) return 0;
  if (mean < 10) {
    const limit = Math.exp(-mean);
    let k = 0;
    for (let prod = rnd(); prod > limit; prod *= rnd()) k++;
    return k;
  }
  // PTRS (Hörmann 1993), transformed rejection with squeeze.
  const slam = Math.sqrt(mean);
  const loglam = Math.log(mean);
  const b = 0.931 + 2.53 * slam;
  const a = -0.059 + 0.02483 * b;
  const invalpha = 1.1239 + 1.1328 / (b - 3.4);
  const vr = 0.9277 - 3.6224 / (b - 2);
  for (;;) {
    const u = rnd() - 0.5;
    const v = rnd();
    const us = 0.5 - Math.abs(u);
    const k = Math.floor(((2 * a) / us + b) * u + mean + 0.43);
    if (us >= 0.07 && v <= vr) return k;
    if (k < 0 || (us < 0.013 && v > us)) continue;
    if (Math.log(v) + Math.log(invalpha) - Math.log(a / (us * us) + b) <= -mean + k * loglam - logGamma(k + 1)) return k;
  }
}

/**
 * One draw of Pólya(r, a) = NegBin(r, a): P(x) ∝ Γ(x + r) / x! a^x, mean r a / (1 - a); Pólya(1, a) is the
 * geometric distribution P(x) = (1 - a) a^x.
 * @example
 * ```ts
 * polya(1 / 20, Math.exp(-1 / 1840)); // one meter's share of a geometric draw
 * ```
 */
export function polya(r: number, a: number, rnd: Uniform = cryptoUniform): number {
  if (!(r > 0) || !Number.isFinite(r)) throw new RangeError('polya r must be positive');
  if (!(a > 0 && a < 1)) throw new RangeError('polya a must be in (0, 1)');
  return poisson(gamma(r, a / (1 - a), rnd), rnd);
}

/** Pólya(r, a) with a = exp(-t): scale a / (1 - a) = 1 / expm1(t), exact even when t is tiny. */
function polyaExp(r: number, t: number, rnd: Uniform): number {
  return poisson(gamma(r, 1 / Math.expm1(t), rnd), rnd);
}

/**
 * One party's share of discrete Laplace noise P(x) ∝ exp(-epsilon |x| / sensitivity) split `shares` ways:
 * Pólya(1/shares, a) - Pólya(1/shares, a), a = exp(-epsilon / sensitivity). The sum of `shares` independent
 * shares is distributed exactly as the discrete Laplace; the sum of n > shares of them is that plus
 * independent extra noise (variance n / shares times the discrete Laplace's 2a / (1 - a)^2).
 * @example
 * ```ts
 * const noiseWh = laplaceShare(1, 1840, 20); // this meter's 1/20 of the noise of a 15-minute window
 * ```
 */
export function laplaceShare(epsilon: number, sensitivity: number, shares: number, rnd: Uniform = cryptoUniform): number {
  if (!(epsilon > 0) || !Number.isFinite(epsilon) || !(sensitivity > 0) || !Number.isFinite(sensitivity)) throw new RangeError('epsilon and sensitivity must be positive');
  if (!Number.isInteger(shares) || shares < 1) throw new RangeError('shares must be a positive integer');
  const t = epsilon / sensitivity;
  if (!(Math.exp(-t) > 0) || !(Math.expm1(t) > 0)) throw new RangeError('epsilon / sensitivity out of range');
  return polyaExp(1 / shares, t, rnd) - polyaExp(1 / shares, t, rnd);
}
