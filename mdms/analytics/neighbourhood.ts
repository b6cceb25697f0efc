/**
 * Forecasts and back-tests of one neighbourhood from the store: reads the latest revision of each released
 * aggregate before a cut-off, and runs {@link forecastSeries} / {@link backtest} on it. Shared by
 * `smartermeter mdms forecast` and the web app.
 * @module
 */
import type { Store } from '../store/types.js';
import { backtest, DEFAULT_LEVEL, ForecastError, forecastSeries, regularSeries, type Backtest, type Forecast, type Series } from './forecast.js';

/** Days of history a forecast is fitted on (four weeks: two full weekly cycles plus calibration days). */
export const HISTORY_DAYS = 28;
/** Longest forecast horizon, seconds. */
export const MAX_HORIZON_S = 14 * 86_400;

/** A forecast of one neighbourhood, with the actual values stored for the forecast intervals (if any). */
export interface NeighbourhoodForecast extends Forecast {
  neighbourhood: string;
  /** The cut-off: history ends here, the forecast starts here (unix s). */
  until: number;
  /** Actual energy of each forecast interval when the store already has it (back-testing), else null. */
  actualWh: (number | null)[];
}

/**
 * The neighbourhood's series of latest revisions over `[until - days, until)`; `until` defaults to the end
 * of its latest stored interval.
 * @example
 * ```ts
 * const { series, until } = await neighbourhoodSeries(store, 'nb1', { days: 28 });
 * ```
 */
export async function neighbourhoodSeries(store: Store, neighbourhood: string, opts: { until?: number; days?: number } = {}): Promise<{ series: Series; until: number }> {
  const days = opts.days ?? HISTORY_DAYS;
  let until = opts.until;
  if (until === undefined) {
    const rows = await store.latestNeighbourhood({ neighbourhood });
    if (rows.length === 0) throw new ForecastError(`no stored aggregate of neighbourhood "${neighbourhood}"`);
    until = Math.max(...rows.map((r) => r.end));
  }
  const from = until - days * 86_400;
  const rows = (await store.latestNeighbourhood({ neighbourhood, from, to: until })).filter((r) => r.start >= from && r.end <= until);
  if (rows.length === 0) throw new ForecastError(`no stored aggregate of neighbourhood "${neighbourhood}" in the ${days} days before ${new Date(until * 1000).toISOString()}`);
  // Start at the first stored interval (a young neighbourhood has no leading gap), end at the cut-off.
  return { series: regularSeries(rows, { from: rows[0]!.start, to: until }), until };
}

/**
 * Forecasts `horizonS` seconds after `until` (default: the latest stored interval's end) for one neighbourhood.
 * @example
 * ```ts
 * const f = await forecastNeighbourhood(store, 'nb1', { horizonS: 86_400 });
 * f.points.length; // 96 with 15-minute intervals
 * ```
 */
export async function forecastNeighbourhood(store: Store, neighbourhood: string, opts: { horizonS: number; until?: number; level?: number }): Promise<NeighbourhoodForecast> {
  if (!(opts.horizonS > 0 && opts.horizonS <= MAX_HORIZON_S)) throw new ForecastError(`the horizon must be between one interval and ${MAX_HORIZON_S / 86_400} days`);
  const { series, until } = await neighbourhoodSeries(store, neighbourhood, opts.until === undefined ? {} : { until: opts.until });
  const horizon = Math.ceil(opts.horizonS / series.stepS);
  const f = forecastSeries(series, horizon, { level: opts.level ?? DEFAULT_LEVEL });
  const end = until + horizon * series.stepS;
  const actual = await store.latestNeighbourhood({ neighbourhood, from: until, to: end });
  const byStart = new Map(actual.filter((r) => r.end - r.start === series.stepS).map((r) => [r.start, r.energyWh]));
  return { ...f, neighbourhood, until, actualWh: f.points.map((p) => byStart.get(p.start) ?? null) };
}

/**
 * Back-tests the day-ahead forecast of one neighbourhood over the last `days` days before `until`.
 * @example
 * ```ts
 * const b = await backtestNeighbourhood(store, 'nb1', { days: 7 });
 * b.model.mase; // < 1: better than same interval yesterday
 * ```
 */
export async function backtestNeighbourhood(store: Store, neighbourhood: string, opts: { days: number; until?: number; level?: number }): Promise<Backtest & { neighbourhood: string; until: number }> {
  const { series, until } = await neighbourhoodSeries(store, neighbourhood, { days: HISTORY_DAYS + opts.days, ...(opts.until === undefined ? {} : { until: opts.until }) });
  return { neighbourhood, until, ...backtest(series, { days: opts.days, level: opts.level ?? DEFAULT_LEVEL }) };
}

const iso = (s: number) => new Date(s * 1000).toISOString().replace('.000Z', 'Z');

/** Header of {@link forecastCsv}. */
export const FORECAST_CSV_HEADER = 'neighbourhood,start,end,forecast_wh,lower_wh,upper_wh,level,actual_wh';

/**
 * A forecast as CSV lines (header first; times ISO 8601 UTC; energy in Wh; `actual_wh` empty when unknown).
 * @example
 * ```ts
 * process.stdout.write(forecastCsv([f]).join('\n') + '\n');
 * ```
 */
export function forecastCsv(forecasts: readonly NeighbourhoodForecast[]): string[] {
  const lines = [FORECAST_CSV_HEADER];
  for (const f of forecasts) {
    f.points.forEach((p, i) => lines.push([f.neighbourhood, iso(p.start), iso(p.end), p.energyWh, p.lowerWh, p.upperWh, f.level, f.actualWh[i] ?? ''].join(',')));
  }
  return lines;
}

/** Header of {@link backtestCsv}. */
export const BACKTEST_CSV_HEADER =
  'neighbourhood,until,days,points,mape,mase,coverage,level,mape_naive_day,mase_naive_day,mape_naive_week,mase_naive_week';

/**
 * Back-test results as CSV lines, one per neighbourhood (MAPE in percent, MASE unitless, 4 decimals).
 * @example
 * ```ts
 * backtestCsv([await backtestNeighbourhood(store, 'nb1', { days: 7 })]);
 * ```
 */
export function backtestCsv(results: readonly (Backtest & { neighbourhood: string; until: number })[]): string[] {
  const n = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '' : x.toFixed(4));
  return [
    BACKTEST_CSV_HEADER,
    ...results.map((b) =>
      [b.neighbourhood, iso(b.until), b.days, b.model.points, n(b.model.mape), n(b.model.mase), n(b.model.coverage), b.model.level, n(b.naiveDay.mape), n(b.naiveDay.mase), n(b.naiveWeek?.mape), n(b.naiveWeek?.mase)].join(','),
    ),
  ];
}
