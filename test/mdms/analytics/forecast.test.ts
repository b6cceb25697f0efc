/**
 * The forecasting core on a synthetic fleet whose household data is known (firmware/sources/synthetic.ts):
 * the day-ahead forecast of a neighbourhood's total beats seasonal naive over a 7-day back-test, and its 80 %
 * interval covers between 70 % and 90 % of the actual values; plus the series helpers' edge cases.
 */
import { describe, expect, it } from 'vitest';
import { noisySeries, seededUniform, syntheticNeighbourhood } from '../../../bench/forecast.js';
import { backtest, ForecastError, forecastSeries, regularSeries, seasonalFill, seasonalNaive, seasonalPeriods } from '../../../mdms/analytics/forecast.js';

const MONDAY = Date.UTC(2024, 0, 1) / 1000;

describe('day-ahead forecast on a synthetic fleet (four weeks of 15-minute intervals)', () => {
  for (const [name, first] of [['nb-a', 100], ['nb-b', 500]] as const) {
    it(`${name}: MASE < 1 and below seasonal naive; the 80 % interval covers 70-90 % of actuals`, () => {
      const nb = syntheticNeighbourhood(Array.from({ length: 20 }, (_, i) => first + i), MONDAY, 28);
      const b = backtest(nb.total, { days: 7 });
      expect(b.model.points).toBe(7 * 96);
      expect(b.model.mase).toBeLessThan(1);
      expect(b.model.mase).toBeLessThan(b.naiveDay.mase);
      expect(b.model.maeWh).toBeLessThan(b.naiveWeek!.maeWh);
      expect(b.model.coverage).toBeGreaterThanOrEqual(0.7);
      expect(b.model.coverage).toBeLessThanOrEqual(0.9);
    }, 20_000);
  }
});

describe('forecastSeries', () => {
  const nb = syntheticNeighbourhood([1, 2, 3, 4, 5], MONDAY, 10);

  it('continues the grid with whole, non-negative Wh and lower <= point <= upper', () => {
    const f = forecastSeries(nb.total, 96);
    expect(f.points).toHaveLength(96);
    expect(f.points[0]!.start).toBe(MONDAY + 10 * 86_400);
    expect(f.interval).toBe('calibrated');
    expect(f.periods).toEqual([96]);
    for (const [i, p] of f.points.entries()) {
      expect(p.end - p.start).toBe(900);
      if (i) expect(p.start).toBe(f.points[i - 1]!.end);
      for (const v of [p.energyWh, p.lowerWh, p.upperWh]) expect(Number.isSafeInteger(v) && v >= 0).toBe(true);
      expect(p.lowerWh).toBeLessThanOrEqual(p.energyWh);
      expect(p.upperWh).toBeGreaterThanOrEqual(p.energyWh);
    }
  });

  it('keeps the model interval when the history is too short to calibrate, and refuses under two days', () => {
    const short = { ...nb.total, values: nb.total.values.slice(0, 3 * 96) };
    expect(forecastSeries(short, 4).interval).toBe('model');
    expect(() => forecastSeries({ ...nb.total, values: nb.total.values.slice(0, 100) }, 4)).toThrow(ForecastError);
    expect(() => forecastSeries(nb.total, 0)).toThrow(/horizon/);
    expect(() => forecastSeries(nb.total, 4, { level: 1.5 })).toThrow(/level/);
  });

  it('fills a missing history interval and says so', () => {
    const values = nb.total.values.slice();
    values[500] = null;
    values[501] = null;
    expect(forecastSeries({ ...nb.total, values }, 4, { calibrate: false }).filled).toBe(2);
  });
});

describe('series helpers', () => {
  it('regularSeries puts a missing interval as null and leaves other widths out', () => {
    const rows = [
      { start: 0, end: 900, energyWh: 5 },
      { start: 1800, end: 2700, energyWh: 7 },
      { start: 2700, end: 4500, energyWh: 99 },
    ];
    const s = regularSeries(rows);
    expect(s).toEqual({ start: 0, stepS: 900, values: [5, null, 7], skipped: 1 });
    expect(regularSeries(rows, { from: -900, to: 3600 }).values).toEqual([null, 5, null, 7, null]);
    expect(() => regularSeries([])).toThrow(ForecastError);
    expect(() => regularSeries([{ start: 0, end: 7, energyWh: 1 }])).toThrow(/divide a day/);
  });

  it('seasonalFill takes the value one period before, or after at the start', () => {
    expect(seasonalFill([1, 2, null, 4], 2)).toEqual([1, 2, 1, 4]);
    expect(seasonalFill([null, 2, 3, 4], 2)).toEqual([3, 2, 3, 4]);
    expect(() => seasonalFill([null, null], 1)).toThrow(ForecastError);
  });

  it('seasonalNaive repeats the last period; seasonalPeriods needs two cycles', () => {
    expect(seasonalNaive([1, 2, 3, 4, 5], 3, 2)).toEqual([4, 5, 4]);
    expect(() => seasonalNaive([1], 1, 2)).toThrow(ForecastError);
    expect(seasonalPeriods(900, 96)).toEqual([]);
    expect(seasonalPeriods(900, 192)).toEqual([96]);
    expect(seasonalPeriods(3600, 24 * 14)).toEqual([24, 168]);
  });
});

describe('noisy aggregates for the accuracy per DP epsilon (bench forecast)', () => {
  it('adds the PES noise: reproducible, scale sensitivity / epsilon, a negative total released as 0', () => {
    const big = { start: 0, stepS: 900, values: new Array<number | null>(20_000).fill(1_000_000) };
    const a = noisySeries(big, 1, seededUniform(3));
    expect(noisySeries(big, 1, seededUniform(3))).toEqual(a);
    expect(noisySeries(big, 1, seededUniform(4))).not.toEqual(a);
    // Two-sided geometric with alpha = exp(-epsilon / 1840): E|X| = 2 alpha / (1 - alpha^2), about 1840 Wh.
    const alpha = Math.exp(-1 / 1840);
    const meanAbs = a.values.reduce((s: number, v) => s + Math.abs(v! - 1_000_000), 0) / 20_000;
    expect(meanAbs / ((2 * alpha) / (1 - alpha ** 2))).toBeGreaterThan(0.95);
    expect(meanAbs / ((2 * alpha) / (1 - alpha ** 2))).toBeLessThan(1.05);
    expect(noisySeries(big, 10, seededUniform(3)).values.reduce((s: number, v) => s + Math.abs(v! - 1_000_000), 0) / 20_000).toBeLessThan(meanAbs / 5);
    const zero = noisySeries({ start: 0, stepS: 900, values: [...new Array<number | null>(1000).fill(0), null] }, 1, seededUniform(5)).values;
    expect(zero.at(-1)).toBeNull();
    expect(zero.slice(0, -1).every((v) => Number.isSafeInteger(v) && v! >= 0)).toBe(true);
    expect(zero.filter((v) => v === 0).length).toBeGreaterThan(400);
  });
});
