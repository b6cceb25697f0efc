/**
 * What the household's views show, computed from rows (pure; no DOM): calendar ranges in the household's
 * time zone (a local day has 23, 24 or 25 hours), imported and exported energy per bucket, comparison with the
 * previous period and with the same period last year, live power and the cumulative register. Energy stays
 * integer Wh; only the display turns it into kWh, by string formatting rather than division.
 *
 * Missing data is `null`, never 0: a bucket in which no reading starts has no value (drawn as a gap, shown as
 * "no data"), and a comparison with a span without readings has none.
 * @module
 */
import { DateTime } from 'luxon';
import { Status } from '../../protocol/reading.js';
import type { Row } from './body.js';

/** A history period. Weeks start on Monday (ISO 8601). */
export type Span = 'day' | 'week' | 'month' | 'year';
/** `[start, end)`, Unix seconds. */
export interface Range {
  start: number;
  end: number;
}

/**
 * The local calendar day, ISO week, month or year that contains `at`.
 * @example
 * ```ts
 * spanRange('day', Date.UTC(2024, 2, 31, 12) / 1000, 'Europe/London'); // a 23-hour day
 * ```
 */
export function spanRange(span: Span, at: number, zone: string): Range {
  const start = DateTime.fromSeconds(at, { zone }).startOf(span);
  if (!start.isValid) throw new RangeError(`invalid time zone ${zone}`);
  return { start: start.toSeconds(), end: start.plus({ [`${span}s`]: 1 }).toSeconds() };
}

/**
 * The range `by` periods before (negative) or after `range`.
 * @example
 * ```ts
 * shiftRange('month', spanRange('month', now, zone), -1, zone); // last month
 * ```
 */
export function shiftRange(span: Span, range: Range, by: number, zone: string): Range {
  const start = DateTime.fromSeconds(range.start, { zone }).plus({ [`${span}s`]: by });
  return spanRange(span, start.toSeconds(), zone);
}

/**
 * The same period one year earlier: the same date, ISO week number, month (or the year before).
 * @example
 * ```ts
 * lastYear('month', spanRange('month', Date.UTC(2024, 5, 10) / 1000, 'UTC'), 'UTC'); // June 2023
 * ```
 */
export function lastYear(span: Span, range: Range, zone: string): Range {
  const start = DateTime.fromSeconds(range.start, { zone });
  if (span === 'week') {
    // The ISO week with the same number (week 53 falls back to the last week of a 52-week year).
    const prior = DateTime.fromObject({ weekYear: start.weekYear - 1, weekNumber: 1, weekday: 1 }, { zone });
    const week = Math.min(start.weekNumber, prior.weeksInWeekYear);
    return spanRange('week', prior.plus({ weeks: week - 1 }).toSeconds(), zone);
  }
  return spanRange(span, start.minus({ years: 1 }).toSeconds(), zone);
}

/**
 * Bucket boundaries of a period: hours of a day, days of a week or month (local midnights), months of a
 * year. Returns `n + 1` boundaries for `n` buckets.
 * @example
 * ```ts
 * bucketBounds('week', range, 'UTC').length; // 8
 * ```
 */
export function bucketBounds(span: Span, range: Range, zone: string): number[] {
  if (span === 'day') return intervalBounds(range, 3600);
  const step = span === 'year' ? 'month' : 'day';
  const out: number[] = [];
  let t = DateTime.fromSeconds(range.start, { zone });
  while (t.toSeconds() < range.end) {
    out.push(t.toSeconds());
    t = t.plus({ [`${step}s`]: 1 }).startOf(step);
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
 * Longest gap whose energy {@link attributeGaps} moves into the reading after it. A longer silence is more
 * likely a time the household's browser could not see (no key bound, an account registered again) than
 * frames the meter lost for good, and a week of energy in one quarter hour would hide more than it shows.
 */
export const MAX_ATTRIBUTED_GAP_S = 7 * 86_400;

/**
 * Rows whose energies are register differences to the previous row of the same meter that is present (or to
 * `before`, each meter's last row before the first one given): a batch that never reached the household (or
 * a gap before it) then shifts its energy into the next reading instead of losing it, as the PES attributes
 * it (pes/core/energy.ts) — so that day, month and bill totals agree with the utility's. A reading with
 * `REGISTER_RESET`, a register that went backwards, or a gap longer than {@link MAX_ATTRIBUTED_GAP_S} keeps
 * its own energy.
 * @example
 * ```ts
 * attributeGaps([{ ...r1, importWh: 100 }, { ...r2, importWh: 130, energyWh: 10 }]); // r2 gets 30 when r2 follows a gap
 * ```
 */
export function attributeGaps(rows: readonly Row[], before: ReadonlyMap<string, Row> = new Map()): Row[] {
  const last = new Map(before);
  const sorted = [...rows].sort((a, b) => (a.meter < b.meter ? -1 : a.meter > b.meter ? 1 : a.time - b.time));
  const out = sorted.map((r) => {
    const prev = last.get(r.meter);
    last.set(r.meter, r);
    if (!prev || r.status & Status.REGISTER_RESET || r.time < prev.time + prev.period || r.time - (prev.time + prev.period) > MAX_ATTRIBUTED_GAP_S) return r;
    const gapIn = r.importWh - r.energyWh - prev.importWh;
    const gapOut = r.exportWh - r.exportEnergyWh - prev.exportWh;
    if (gapIn < 0 || gapOut < 0 || (gapIn === 0 && gapOut === 0)) return r;
    return { ...r, energyWh: r.energyWh + gapIn, exportEnergyWh: r.exportEnergyWh + gapOut };
  });
  return out.sort((a, b) => a.time - b.time || (a.meter < b.meter ? -1 : a.meter > b.meter ? 1 : 0));
}

/**
 * Imported energy per bucket, Wh; 0 for a bucket without readings. A reading counts in the bucket that holds
 * its period start (meters report whole minutes or quarter-hours, which never straddle an hour or a day).
 * @example
 * ```ts
 * sumEnergy(rows, [0, 3600, 7200]); // [Wh in the first hour, Wh in the second]
 * ```
 */
export function sumEnergy(rows: readonly Row[], bounds: readonly number[]): number[] {
  return sumFlows(rows, bounds).importWh.map((v) => v ?? 0);
}

/** Energy per bucket in both directions; `null` where no reading starts in the bucket. */
export interface Flows {
  /** Imported ("grid consumption"), Wh. */
  importWh: (number | null)[];
  /** Exported ("return to grid"), Wh. */
  exportWh: (number | null)[];
  /** Import minus export, Wh (negative when the household delivered more than it took). */
  netWh: (number | null)[];
}

/**
 * Imported, exported and net energy per bucket, `null` for a bucket without any reading (no data, not 0).
 * @example
 * ```ts
 * sumFlows(rows, [0, 3600, 7200]).exportWh; // [Wh fed in during the first hour, null]
 * ```
 */
export function sumFlows(rows: readonly Row[], bounds: readonly number[]): Flows {
  const n = Math.max(0, bounds.length - 1);
  const imp = new Array<number | null>(n).fill(null);
  const exp = new Array<number | null>(n).fill(null);
  for (const r of rows) {
    const i = bucketOf(bounds, r.time);
    if (i < 0) continue;
    imp[i] = (imp[i] ?? 0) + r.energyWh;
    exp[i] = (exp[i] ?? 0) + r.exportEnergyWh;
  }
  return { importWh: imp, exportWh: exp, netWh: imp.map((v, i) => (v === null ? null : v - exp[i]!)) };
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

/** Which energy of a row a total is about. */
export type Flow = 'import' | 'export' | 'net';
const energyOf = (r: Row, flow: Flow) => (flow === 'import' ? r.energyWh : flow === 'export' ? r.exportEnergyWh : r.energyWh - r.exportEnergyWh);

/**
 * Energy of the readings that start in `[from, to)`, Wh; `null` when no reading starts there.
 * @example
 * ```ts
 * energyBetween(rows, range.start, range.end);           // imported
 * energyBetween(rows, range.start, range.end, 'export'); // fed in
 * ```
 */
export function energyBetween(rows: readonly Row[], from: number, to: number, flow: Flow = 'import'): number | null {
  let wh: number | null = null;
  for (const r of rows) if (r.time >= from && r.time < to) wh = (wh ?? 0) + energyOf(r, flow);
  return wh;
}

/** A period compared with an earlier one (the previous period, or the same period last year). */
export interface Comparison {
  /** This period up to `upTo`; null without readings. */
  current: number | null;
  /** The earlier period over the same elapsed time from its start; null without readings. */
  previousSameSpan: number | null;
  /** The whole earlier period; null without readings. */
  previousTotal: number | null;
  /** Change of `current` against `previousSameSpan`, percent with one decimal; null when either has no data or that is 0. */
  changePct: number | null;
}

/**
 * Compares `cur` (up to `upTo`) with `prev` over the same elapsed seconds.
 * @example
 * ```ts
 * compare(rows, range, shiftRange('day', range, -1, zone), latestTime);
 * compare(rows, range, lastYear('month', range, zone), latestTime, 'export');
 * ```
 */
export function compare(rows: readonly Row[], cur: Range, prev: Range, upTo: number, flow: Flow = 'import'): Comparison {
  const until = Math.min(Math.max(upTo, cur.start), cur.end);
  const current = energyBetween(rows, cur.start, until, flow);
  const previousSameSpan = energyBetween(rows, prev.start, Math.min(prev.end, prev.start + (until - cur.start)), flow);
  const previousTotal = energyBetween(rows, prev.start, prev.end, flow);
  const changePct = current !== null && previousSameSpan ? Math.round(((current - previousSameSpan) * 1000) / previousSameSpan) / 10 : null;
  return { current, previousSameSpan, previousTotal, changePct };
}

/**
 * Power over time summed across the household's meters (readings at the same period start add up), with a
 * `null` point after each reading that is not followed by the next one, so a line is broken where data is missing.
 * @example
 * ```ts
 * const { times, watts } = powerSeries(rows); // for the live chart
 * ```
 */
export function powerSeries(rows: readonly Row[]): { times: number[]; watts: (number | null)[] } {
  const byTime = new Map<number, { w: number; end: number }>();
  for (const r of rows) {
    const p = byTime.get(r.time);
    byTime.set(r.time, { w: (p?.w ?? 0) + r.powerW, end: Math.max(p?.end ?? 0, r.time + r.period) });
  }
  const starts = [...byTime.keys()].sort((a, b) => a - b);
  const times: number[] = [];
  const watts: (number | null)[] = [];
  starts.forEach((t, i) => {
    const p = byTime.get(t)!;
    times.push(t);
    watts.push(p.w);
    const next = starts[i + 1];
    if (next !== undefined && next > p.end) {
      times.push(p.end);
      watts.push(null);
    }
  });
  return { times, watts };
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
  /** Sum of the meters' newest export registers, Wh: everything the household has fed into the grid. */
  exportRegisterWh: number;
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
  let exportRegisterWh = 0;
  let at = 0;
  for (const r of latest) {
    watts += r.powerW;
    registerWh += r.importWh;
    exportRegisterWh += r.exportWh;
    at = Math.max(at, r.time + r.period);
  }
  return { watts, at, registerWh, exportRegisterWh, meters: latest.length };
}

/**
 * Running total of bucket energies (the cumulative curve of a period): `null` where a bucket has no data, and
 * after the last bucket with data (the curve stops at the newest reading instead of running into the future).
 * @example
 * ```ts
 * cumulative([1, 2, 3]);          // [1, 3, 6]
 * cumulative([1, null, 3, null]); // [1, null, 4, null]
 * ```
 */
export function cumulative(values: readonly (number | null)[]): (number | null)[] {
  let s = 0;
  return values.map((v) => (v === null ? null : (s += v)));
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
