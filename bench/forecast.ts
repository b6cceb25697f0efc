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
 * Final JSON: `{"forecast":{"mase_aggregate":…,"mase_individual_sum":…,"mase_seasonal_naive":…, …}}`.
 * @module
 */
import { SyntheticModel } from '../firmware/sources/synthetic.js';
import { backtest, forecastSeries, seasonalFill, seasonalNaive, type Series } from '../mdms/analytics/forecast.js';

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
  const rows: { nb: string; aggregate: number; individual: number; naiveDay: number; naiveWeek: number; coverage: number }[] = [];
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
    rows.push({ nb: `nb${k + 1}`, aggregate: b.model.mase, individual: absErr / count / scale, naiveDay: b.naiveDay.mase, naiveWeek: b.naiveWeek?.mase ?? NaN, coverage: b.model.coverage });
  }
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  return {
    fleet: `${neighbourhoods} neighbourhoods x ${perNeighbourhood} synthetic households, ${days} days of 15-minute intervals, day-ahead back-test over the last ${testDays} days`,
    mase_aggregate: r3(mean(rows.map((r) => r.aggregate))),
    mase_individual_sum: r3(mean(rows.map((r) => r.individual))),
    mase_seasonal_naive: r3(mean(rows.map((r) => r.naiveDay))),
    mase_seasonal_naive_week: r3(mean(rows.map((r) => r.naiveWeek))),
    interval_coverage_80: r3(mean(rows.map((r) => r.coverage))),
    per_neighbourhood: Object.fromEntries(rows.map((r) => [r.nb, { mase_aggregate: r3(r.aggregate), mase_individual_sum: r3(r.individual), mase_seasonal_naive: r3(r.naiveDay), mase_seasonal_naive_week: r3(r.naiveWeek), interval_coverage_80: r3(r.coverage) }])),
    day_ahead_forecast_ms: r3(fitMs / fits),
    day_ahead_forecast_ms_baseline: r3(naiveMs / fits),
  };
}
