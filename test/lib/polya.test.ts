import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../firmware/sources/synthetic.js';
import { gamma, laplaceShare, poisson, polya } from '../../lib/polya.js';

/** A seeded uniform in (0, 1]. */
const seeded = (seed: number) => {
  const r = mulberry32(seed);
  return () => 1 - r();
};

function moments(n: number, draw: () => number): { mean: number; variance: number; meanAbs: number } {
  let sum = 0;
  let sq = 0;
  let abs = 0;
  for (let i = 0; i < n; i++) {
    const x = draw();
    sum += x;
    sq += x * x;
    abs += Math.abs(x);
  }
  const mean = sum / n;
  return { mean, variance: sq / n - mean * mean, meanAbs: abs / n };
}

describe('Gamma, Poisson and Pólya samplers', () => {
  it('Gamma has mean shape x scale and variance shape x scale^2, below and above shape 1', () => {
    const rnd = seeded(1);
    for (const [shape, scale] of [[0.2, 50], [4.5, 3]] as const) {
      const m = moments(40_000, () => gamma(shape, scale, rnd));
      expect(m.mean).toBeGreaterThan(0.96 * shape * scale);
      expect(m.mean).toBeLessThan(1.04 * shape * scale);
      expect(m.variance).toBeGreaterThan(0.9 * shape * scale * scale);
      expect(m.variance).toBeLessThan(1.1 * shape * scale * scale);
    }
  });

  it('Poisson is integer with mean = variance = its mean, by multiplication (< 10) and by PTRS (>= 10)', () => {
    const rnd = seeded(2);
    for (const lambda of [3.5, 480]) {
      let bad = 0;
      const m = moments(40_000, () => {
        const k = poisson(lambda, rnd);
        if (!Number.isInteger(k) || k < 0) bad++;
        return k;
      });
      expect(bad).toBe(0);
      expect(Math.abs(m.mean - lambda)).toBeLessThan(0.02 * lambda);
      expect(m.variance).toBeGreaterThan(0.94 * lambda);
      expect(m.variance).toBeLessThan(1.06 * lambda);
    }
    expect(poisson(0, rnd)).toBe(0);
  });

  it('Pólya(1, a) is the geometric distribution: P(0) = 1 - a, mean a / (1 - a)', () => {
    const rnd = seeded(3);
    const a = 0.8;
    let zeros = 0;
    const m = moments(40_000, () => {
      const x = polya(1, a, rnd);
      if (x === 0) zeros++;
      return x;
    });
    expect(zeros / 40_000).toBeGreaterThan(0.19);
    expect(zeros / 40_000).toBeLessThan(0.21);
    expect(m.mean).toBeGreaterThan(0.96 * 4);
    expect(m.mean).toBeLessThan(1.04 * 4);
  });

  it('bad parameters are refused', () => {
    expect(() => gamma(0, 1)).toThrow(RangeError);
    expect(() => poisson(-1)).toThrow(RangeError);
    expect(() => polya(1, 1)).toThrow(RangeError);
    expect(() => laplaceShare(1, 10, 0)).toThrow(RangeError);
    expect(() => laplaceShare(0, 10, 5)).toThrow(RangeError);
  });
});

describe('k shares of distributed Laplace noise', () => {
  // The sum of k shares must be the two-sided geometric: mean 0, variance 2a/(1-a)^2, mean |x| 2a/(1-a^2).
  for (const [epsilon, sensitivity, k] of [[1, 10, 5], [1, 1840, 20]] as const) {
    it(`sum of ${k} shares at epsilon ${epsilon}, sensitivity ${sensitivity} Wh is discrete Laplace`, () => {
      const rnd = seeded(10 + k);
      const a = Math.exp(-epsilon / sensitivity);
      const n = 20_000;
      let fractional = 0;
      const m = moments(n, () => {
        let s = 0;
        for (let i = 0; i < k; i++) s += laplaceShare(epsilon, sensitivity, k, rnd);
        if (!Number.isInteger(s)) fractional++;
        return s;
      });
      expect(fractional).toBe(0);
      const variance = (2 * a) / (1 - a) ** 2;
      const meanAbs = (2 * a) / (1 - a * a);
      // Standard error of the mean: sqrt(variance / n) ~ 0.7 % of sqrt(variance); of the variance ~ 1.6 %.
      expect(Math.abs(m.mean)).toBeLessThan(0.04 * Math.sqrt(variance));
      expect(m.variance).toBeGreaterThan(0.93 * variance);
      expect(m.variance).toBeLessThan(1.07 * variance);
      expect(m.meanAbs).toBeGreaterThan(0.96 * meanAbs);
      expect(m.meanAbs).toBeLessThan(1.04 * meanAbs);
    });
  }

  it('n > k shares: the discrete Laplace plus independent noise, variance n/k times as large', () => {
    const rnd = seeded(20);
    const a = Math.exp(-0.1);
    const [n, k] = [12, 4];
    const m = moments(20_000, () => {
      let s = 0;
      for (let i = 0; i < n; i++) s += laplaceShare(1, 10, k, rnd);
      return s;
    });
    const variance = ((n / k) * 2 * a) / (1 - a) ** 2;
    expect(m.variance).toBeGreaterThan(0.93 * variance);
    expect(m.variance).toBeLessThan(1.07 * variance);
  });

  it('one share alone is far from the whole noise (variance 1/k of it): no single meter can add it alone', () => {
    const rnd = seeded(30);
    const a = Math.exp(-0.1);
    const m = moments(40_000, () => laplaceShare(1, 10, 10, rnd));
    const variance = (2 * a) / (1 - a) ** 2;
    expect(m.variance).toBeGreaterThan(0.085 * variance);
    expect(m.variance).toBeLessThan(0.115 * variance);
  });
});
