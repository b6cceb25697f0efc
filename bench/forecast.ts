/**
 * `npm run bench -- forecast`: what grid planning loses by seeing only aggregates.
 *
 * On a synthetic fleet whose household data is known (firmware/sources/synthetic.ts, computed directly from the
 * model: each household's register at every interval boundary, floored to whole Wh as the meter does), three
 * day-ahead forecasts of each neighbourhood's total are back-tested on the same windows (an origin at the
 * start of each of the last 7 days):
 * - `aggregate`: MSTL + ETS (augurs) on the neighbourhood's released series — what this system gives the utility;
 * - `individual_sum`: the sum of MSTL + ETS forecasts of every household's own 15-minute series — what a
 *   utility holding individual data would do;
 * - `seasonal_naive`: same interval yesterday (and, in the table, same interval last week).
 * MASE is scaled by the in-sample MAE of same-interval-yesterday on the history before the first origin.
 * It also reports the time of one calibrated day-ahead forecast (8 MSTL fits, see forecastSeries) beside the
 * seasonal-naive baseline's.
 * With differential privacy on (`pes --dp-epsilon E`), the MDMS holds noisy aggregates: for each epsilon of
 * {@link DP_EPSILONS}, every released window gets the PES's noise (pes/core/dp.ts: discrete Laplace with the
 * sensitivity of one meter at `DP_MAX_POWER_W` over the interval, a negative total released as 0), the same
 * day-ahead model is fitted on the noisy history, and its errors against the TRUE totals are scaled as above
 * (so `mase_dp` compares directly with `mase_aggregate`). The noise comes from a seeded uniform, so the figure
 * is the same from run to run.
 * Final JSON: `{"forecast":{"mase_aggregate":…,"mase_individual_sum":…,"mase_seasonal_naive":…,
 * "mase_dp":[{"epsilon":0.1,"mase":…},…], …}}`.
 * @module
 */
import { SyntheticModel } from '../firmware/sources/synthetic.js';
import { backtest, forecastSeries, seasonalFill, seasonalNaive, type Series } from '../mdms/analytics/forecast.js';
import { discreteLaplace, DP_MAX_POWER_W, intervalSensitivityWh } from '../pes/core/dp.js';

/** Epsilons of the accuracy-per-epsilon figure (per release, as `pes --dp-epsilon`). */
export const DP_EPSILONS = [0.1, 1, 10] as const;

/**
 * A seeded uniform in (0, 1] (mulberry32, public domain), for reproducible noise.
 * @example
 * ```ts
 * const u = seededUniform(1); u(); // the same first draw every run
 * ```
 */
export function seededUniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 1) / 2 ** 32;
  };
}

/**
 * The series the MDMS would hold with DP on: each window's total plus the PES's discrete Laplace noise for
 * `epsilon` (sensitivity: one meter at `maxPowerW` over the window), released as 0 when negative.
 * @example
 * ```ts
 * const noisy = noisySeries(nb.total, 1, seededUniform(7));
 * ```
 */
export function noisySeries(series: Series, epsilon: number, rnd: () => number, maxPowerW = DP_MAX_POWER_W): Series {
  const sensitivity = intervalSensitivityWh(maxPowerW, series.stepS);
  return { ...series, values: series.values.map((v) => (v === null ? null : Math.max(0, v + discreteLaplace(epsilon, sensitivity, rnd)))) };
}

/** A synthetic neighbourhood: its households' series and their sum, on one grid. */
export interface SyntheticNeighbourhood {
  total: Series;
  households: Series[];
}

/**
 * Energy per interval of synthetic households (seeds `seeds`), from `start` for `days` days: each household's
 * register (cumulative Wh, floored) differenced at interval boundaries, and the neighbourhood total.
 * @example
 * ```ts
 * const nb = syntheticNeighbourhood([1, 2, 3], Date.UTC(2024, 0, 1) / 1000, 21, 900);
 * nb.total.values.length; // 21 * 96
 * ```
 */
export function syntheticNeighbourhood(seeds: readonly number[], start: number, days: number, stepS = 900, tz = 'UTC'): SyntheticNeighbourhood {
  const n = (days * 86_400) / stepS;
  const households = seeds.map((seed) => {
    const model = new SyntheticModel(seed, tz);
    const values: number[] = new Array(n);
    let milliWs = 0; // mW x s, exact integer arithmetic well within 2^53 for months
    let lastWh = 0;
    for (let i = 0; i < n; i++) {
      for (let t = start + i * stepS; t < start + (i + 1) * stepS; t += 60) milliWs += model.powerMilliW(t) * 60;
      const wh = Math.floor(milliWs / 3_600_000);
      values[i] = wh - lastWh;
      lastWh = wh;
    }
    return { start, stepS, values } satisfies Series;
  });
  const total = households[0]!.values.map((_, i) => households.reduce((s, h) => s + h.values[i]!, 0));
  return { total: { start, stepS, values: total }, households };
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Runs the section (see the module comment). */
export async function run(): Promise<Record<string, unknown>> {
  const neighbourhoods = 2;
  const perNeighbourhood = 20;
  const days = 28;
  const testDays = 7;
  const stepS = 900;
  const start = Date.UTC(2024, 0, 1) / 1000; // a Monday
  const day = 86_400 / stepS;
  const rows: { nb: string; aggregate: number; individual: number; naiveDay: number; naiveWeek: number; coverage: number; dp: number[] }[] = [];
  let fitMs = 0;
  let fits = 0;
  let naiveMs = 0;
  for (let k = 0; k < neighbourhoods; k++) {
    const seeds = Array.from({ length: perNeighbourhood }, (_, i) => 1000 * (k + 1) + i);
    const nb = syntheticNeighbourhood(seeds, start, days, stepS);
    process.stderr.write(`forecast: neighbourhood ${k + 1}/${neighbourhoods}, back-test of the aggregate\n`);
    let t0 = performance.now();
    const b = backtest(nb.total, { days: testDays });
    fitMs += performance.now() - t0;
    fits += testDays;
    const scale = b.naiveDay.maeWh / b.naiveDay.mase;
    const firstOrigin = nb.total.values.length - testDays * day;
    t0 = performance.now();
    for (let d = 0; d < testDays; d++) seasonalNaive(seasonalFill(nb.total.values.slice(0, firstOrigin + d * day), day), day, day);
    naiveMs += performance.now() - t0;
    process.stderr.write(`forecast: neighbourhood ${k + 1}/${neighbourhoods}, ${perNeighbourhood} individual series\n`);
    let absErr = 0;
    let count = 0;
    for (let d = 0; d < testDays; d++) {
      const origin = firstOrigin + d * day;
      const sum = new Array<number>(day).fill(0);
      for (const h of nb.households) {
        const f = forecastSeries({ ...h, values: h.values.slice(0, origin) }, day, { calibrate: false });
        f.points.forEach((p, i) => (sum[i]! += p.energyWh));
      }
      for (let i = 0; i < day; i++) {
        absErr += Math.abs(sum[i]! - (nb.total.values[origin + i] as number));
        count++;
      }
    }
    process.stderr.write(`forecast: neighbourhood ${k + 1}/${neighbourhoods}, noisy aggregates for epsilon ${DP_EPSILONS.join(', ')}\n`);
    const dp = DP_EPSILONS.map((epsilon, e) => {
      const noisy = noisySeries(nb.total, epsilon, seededUniform(1000 * (k + 1) + e));
      let err = 0;
      for (let d = 0; d < testDays; d++) {
        const origin = firstOrigin + d * day;
        const f = forecastSeries({ ...noisy, values: noisy.values.slice(0, origin) }, day, { calibrate: false });
        f.points.forEach((p, i) => (err += Math.abs(p.energyWh - (nb.total.values[origin + i] as number))));
      }
      return err / (testDays * day) / scale;
    });
    rows.push({ nb: `nb${k + 1}`, aggregate: b.model.mase, individual: absErr / count / scale, naiveDay: b.naiveDay.mase, naiveWeek: b.naiveWeek?.mase ?? NaN, coverage: b.model.coverage, dp });
  }
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  return {
    fleet: `${neighbourhoods} neighbourhoods x ${perNeighbourhood} synthetic households, ${days} days of 15-minute intervals, day-ahead back-test over the last ${testDays} days`,
    mase_aggregate: r3(mean(rows.map((r) => r.aggregate))),
    mase_individual_sum: r3(mean(rows.map((r) => r.individual))),
    mase_seasonal_naive: r3(mean(rows.map((r) => r.naiveDay))),
    mase_seasonal_naive_week: r3(mean(rows.map((r) => r.naiveWeek))),
    interval_coverage_80: r3(mean(rows.map((r) => r.coverage))),
    mase_dp: DP_EPSILONS.map((epsilon, e) => ({ epsilon, mase: r3(mean(rows.map((r) => r.dp[e]!))) })),
    dp_sensitivity_wh: intervalSensitivityWh(DP_MAX_POWER_W, stepS),
    per_neighbourhood: Object.fromEntries(rows.map((r) => [r.nb, { mase_aggregate: r3(r.aggregate), mase_individual_sum: r3(r.individual), mase_seasonal_naive: r3(r.naiveDay), mase_seasonal_naive_week: r3(r.naiveWeek), interval_coverage_80: r3(r.coverage), mase_dp: DP_EPSILONS.map((epsilon, e) => ({ epsilon, mase: r3(r.dp[e]!) })) }])),
    day_ahead_forecast_ms: r3(fitMs / fits),
    day_ahead_forecast_ms_baseline: r3(naiveMs / fits),
  };
}
