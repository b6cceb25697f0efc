/**
 * What the household's views show, computed from rows (pure; no DOM): calendar ranges in the household's
 * time zone (a local day has 23, 24 or 25 hours), energy per bucket, comparison with the previous period,
 * live power and the cumulative register. Energy stays integer Wh; only the display turns it into kWh, by
 * string formatting rather than division.
 * @module
 */
import { DateTime } from 'luxon';
import type { Row } from './body.js';

/** A history period. Weeks start on Monday (ISO 8601). */
export type Span = 'day' | 'week' | 'month';
/** `[start, end)`, Unix seconds. */
export interface Range {
  start: number;
  end: number;
}

const unit = (span: Span) => (span === 'week' ? 'week' : span) as 'day' | 'week' | 'month';

/**
 * The local calendar day, ISO week or month that contains `at`.
 * @example
 * ```ts
 * spanRange('day', Date.UTC(2024, 2, 31, 12) / 1000, 'Europe/London'); // a 23-hour day
 * ```
 */
export function spanRange(span: Span, at: number, zone: string): Range {
  const start = DateTime.fromSeconds(at, { zone }).startOf(unit(span));
  if (!start.isValid) throw new RangeError(`invalid time zone ${zone}`);
  return { start: start.toSeconds(), end: start.plus({ [`${unit(span)}s`]: 1 }).toSeconds() };
}

/**
 * The range `by` periods before (negative) or after `range`.
 * @example
 * ```ts
 * shiftRange('month', spanRange('month', now, zone), -1, zone); // last month
 * ```
 */
export function shiftRange(span: Span, range: Range, by: number, zone: string): Range {
  const start = DateTime.fromSeconds(range.start, { zone }).plus({ [`${unit(span)}s`]: by });
  return spanRange(span, start.toSeconds(), zone);
}

/**
 * Bucket boundaries of a period: hours of a day, days of a week or month (local midnights). Returns
 * `n + 1` boundaries for `n` buckets.
 * @example
 * ```ts
 * bucketBounds('week', range, 'UTC').length; // 8
 * ```
 */
export function bucketBounds(span: Span, range: Range, zone: string): number[] {
  if (span === 'day') return intervalBounds(range, 3600);
  const out: number[] = [];
  let t = DateTime.fromSeconds(range.start, { zone });
  while (t.toSeconds() < range.end) {
    out.push(t.toSeconds());
    t = t.plus({ days: 1 }).startOf('day');
  }
  out.push(range.end);
  return out;
}

/**
 * Boundaries every `intervalS` seconds of absolute time from `range.start` (today by 15 minutes or by hour).
 * @example
 * ```ts
 * intervalBounds({ start: 0, end: 3600 }, 900); // [0, 900, 1800, 2700, 3600]
 * ```
 */
export function intervalBounds(range: Range, intervalS: number): number[] {
  if (!(intervalS > 0)) throw new RangeError('interval must be positive');
  const out: number[] = [];
  for (let t = range.start; t < range.end; t += intervalS) out.push(t);
  out.push(range.end);
  return out;
}

/**
 * Energy per bucket, Wh. A reading counts in the bucket that holds its period start (meters report whole
 * minutes or quarter-hours, which never straddle an hour or a day).
 * @example
 * ```ts
 * sumEnergy(rows, [0, 3600, 7200]); // [Wh in the first hour, Wh in the second]
 * ```
 */
export function sumEnergy(rows: readonly Row[], bounds: readonly number[]): number[] {
  const out = new Array<number>(Math.max(0, bounds.length - 1)).fill(0);
  for (const r of rows) {
    const i = bucketOf(bounds, r.time);
    if (i >= 0) out[i]! += r.energyWh;
  }
  return out;
}

function bucketOf(bounds: readonly number[], t: number): number {
  if (bounds.length < 2 || t < bounds[0]! || t >= bounds[bounds.length - 1]!) return -1;
  let lo = 0;
  let hi = bounds.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (bounds[mid]! <= t) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * Energy of the readings that start in `[from, to)`, Wh.
 * @example
 * ```ts
 * energyBetween(rows, range.start, range.end);
 * ```
 */
export function energyBetween(rows: readonly Row[], from: number, to: number): number {
  let wh = 0;
  for (const r of rows) if (r.time >= from && r.time < to) wh += r.energyWh;
  return wh;
}

/** A period compared with the one before it. */
export interface Comparison {
  /** This period up to `upTo`. */
  current: number;
  /** The previous period over the same elapsed time from its start. */
  previousSameSpan: number;
  /** The whole previous period. */
  previousTotal: number;
  /** Change of `current` against `previousSameSpan`, percent with one decimal, or null when that is 0. */
  changePct: number | null;
}

/**
 * Compares `cur` (up to `upTo`) with `prev` over the same elapsed seconds.
 * @example
 * ```ts
 * compare(rows, range, shiftRange('day', range, -1, zone), latestTime);
 * ```
 */
export function compare(rows: readonly Row[], cur: Range, prev: Range, upTo: number): Comparison {
  const until = Math.min(Math.max(upTo, cur.start), cur.end);
  const current = energyBetween(rows, cur.start, until);
  const previousSameSpan = energyBetween(rows, prev.start, Math.min(prev.end, prev.start + (until - cur.start)));
  const previousTotal = energyBetween(rows, prev.start, prev.end);
  const changePct = previousSameSpan > 0 ? Math.round(((current - previousSameSpan) * 1000) / previousSameSpan) / 10 : null;
  return { current, previousSameSpan, previousTotal, changePct };
}

/**
 * Power over time summed across the household's meters (readings at the same period start add up).
 * @example
 * ```ts
 * const { times, watts } = powerSeries(rows); // for the live chart
 * ```
 */
export function powerSeries(rows: readonly Row[]): { times: number[]; watts: number[] } {
  const byTime = new Map<number, number>();
  for (const r of rows) byTime.set(r.time, (byTime.get(r.time) ?? 0) + r.powerW);
  const times = [...byTime.keys()].sort((a, b) => a - b);
  return { times, watts: times.map((t) => byTime.get(t)!) };
}

/** The newest reading of each meter. */
export function latestByMeter(rows: readonly Row[]): Map<string, Row> {
  const out = new Map<string, Row>();
  for (const r of rows) {
    const p = out.get(r.meter);
    if (!p || r.time > p.time) out.set(r.meter, r);
  }
  return out;
}

/** What the live view headlines. */
export interface LiveNow {
  /** Sum of each meter's newest power, W. */
  watts: number;
  /** End of the newest reading, Unix s. */
  at: number;
  /** Sum of the meters' newest import registers, Wh: the household's cumulative energy. */
  registerWh: number;
  meters: number;
}

/**
 * The live headline from the newest reading of each meter, or null without readings.
 * @example
 * ```ts
 * liveNow(rows)?.watts;
 * ```
 */
export function liveNow(rows: readonly Row[]): LiveNow | null {
  const latest = [...latestByMeter(rows).values()];
  if (latest.length === 0) return null;
  let watts = 0;
  let registerWh = 0;
  let at = 0;
  for (const r of latest) {
    watts += r.powerW;
    registerWh += r.importWh;
    at = Math.max(at, r.time + r.period);
  }
  return { watts, at, registerWh, meters: latest.length };
}

/**
 * Running total of bucket energies (the cumulative curve of a period).
 * @example
 * ```ts
 * cumulative([1, 2, 3]); // [1, 3, 6]
 * ```
 */
export function cumulative(values: readonly number[]): number[] {
  let s = 0;
  return values.map((v) => (s += v));
}

/**
 * Integer Wh as kWh text with three decimals, exactly (no floating-point division).
 * @example
 * ```ts
 * formatKwh(12345); // '12.345'
 * formatKwh(-5);    // '-0.005'
 * ```
 */
export function formatKwh(wh: number): string {
  if (!Number.isSafeInteger(wh)) throw new RangeError('energy must be an integer number of Wh');
  const a = Math.abs(wh);
  return `${wh < 0 ? '-' : ''}${Math.floor(a / 1000)}.${String(a % 1000).padStart(3, '0')}`;
}
