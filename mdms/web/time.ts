/**
 * Times in the web app: query values (`2024-06-03` = local midnight in the display zone, or an ISO 8601
 * instant), chart ranges (the calendar day, ISO week or month containing a date) and display formats.
 * Invalid input raises {@link HttpError} 400 with a message saying what was expected.
 * @module
 */
import { DateTime } from 'luxon';
import { MAX_TIME_S } from '../../protocol/aggregate.js';
import { HttpError } from './context.js';

export const DATE_PATTERN = '^\\d{4}-\\d{2}-\\d{2}$';
/** A date, or a date-time with optional seconds and optional `Z`/offset. */
export const TIME_PATTERN = '^\\d{4}-\\d{2}-\\d{2}(T\\d{2}:\\d{2}(:\\d{2})?(Z|[+-]\\d{2}:\\d{2})?)?$';

export type RangeKind = 'day' | 'week' | 'month';
export const RANGE_KINDS: readonly RangeKind[] = ['day', 'week', 'month'];

/** The longest span a query may cover (a year and a bit). */
export const MAX_SPAN_S = 400 * 86_400;

/**
 * A query time as unix seconds: a date is local midnight in `tz`; a date-time without offset is local time.
 * @example
 * ```ts
 * parseTime('2024-06-03', 'Europe/London', 'from'); // 1717369200
 * ```
 */
export function parseTime(v: string, tz: string, name: string): number {
  const d = DateTime.fromISO(v, { zone: tz, setZone: false });
  if (!new RegExp(TIME_PATTERN).test(v) || !d.isValid) throw new HttpError(400, `${name} must be a date (YYYY-MM-DD) or an ISO 8601 time, got "${v.slice(0, 40)}"`);
  const s = Math.floor(d.toSeconds());
  if (s < 0 || s > MAX_TIME_S) throw new HttpError(400, `${name} is out of range`);
  return s;
}

/**
 * An optional [from, to) pair from a query; checks order and span.
 * @example
 * ```ts
 * const { from, to } = parseRange(q.from, q.to, 'UTC');
 * ```
 */
export function parseRange(from: string | undefined, to: string | undefined, tz: string, maxSpanS = MAX_SPAN_S): { from?: number; to?: number } {
  const f = from === undefined ? undefined : parseTime(from, tz, 'from');
  const t = to === undefined ? undefined : parseTime(to, tz, 'to');
  if (f !== undefined && t !== undefined) {
    if (t <= f) throw new HttpError(400, 'to must be after from');
    if (t - f > maxSpanS) throw new HttpError(400, `the range may span at most ${Math.floor(maxSpanS / 86_400)} days`);
  }
  return { ...(f !== undefined ? { from: f } : {}), ...(t !== undefined ? { to: t } : {}) };
}

/**
 * The calendar day, ISO week (Monday first) or month containing `date` in `tz`, with its neighbours' dates.
 * @example
 * ```ts
 * calendarRange('week', '2024-06-05', 'UTC'); // { from: <Mon 3 Jun>, to: <Mon 10 Jun>, prev: '2024-05-27', next: '2024-06-10', ... }
 * ```
 */
export function calendarRange(kind: RangeKind, date: string, tz: string): { from: number; to: number; prev: string; next: string; label: string } {
  const d = DateTime.fromISO(date, { zone: tz });
  if (!new RegExp(DATE_PATTERN).test(date) || !d.isValid) throw new HttpError(400, `date must be a valid YYYY-MM-DD date, got "${date.slice(0, 40)}"`);
  const unit = kind === 'day' ? 'day' : kind === 'week' ? 'week' : 'month';
  const start = d.startOf(unit);
  const end = start.plus({ [`${unit}s`]: 1 }).startOf(unit);
  const label =
    kind === 'day' ? start.toFormat('cccc d LLLL yyyy') : kind === 'week' ? `Week of ${start.toFormat('d LLL yyyy')}` : start.toFormat('LLLL yyyy');
  return {
    from: Math.floor(start.toSeconds()),
    to: Math.floor(end.toSeconds()),
    prev: start.minus({ [`${unit}s`]: 1 }).toISODate()!,
    next: end.toISODate()!,
    label,
  };
}

/**
 * The local date (YYYY-MM-DD) of a unix time.
 * @example
 * ```ts
 * localDate(1717369200, 'Europe/London'); // '2024-06-03'
 * ```
 */
export function localDate(s: number, tz: string): string {
  return DateTime.fromSeconds(s, { zone: tz }).toISODate()!;
}

/**
 * Display formats for a unix time in `tz`.
 * @example
 * ```ts
 * fmtTime(1717369200, 'Europe/London', 'datetime'); // '3 Jun 2024 00:00'
 * ```
 */
export function fmtTime(s: number, tz: string, style: 'date' | 'datetime' | 'time' | 'full' = 'datetime'): string {
  const d = DateTime.fromSeconds(s, { zone: tz });
  switch (style) {
    case 'date':
      return d.toFormat('d LLL yyyy');
    case 'time':
      return d.toFormat('HH:mm');
    case 'full':
      return d.toFormat("d LLL yyyy HH:mm:ss ZZZZ");
    default:
      return d.toFormat('d LLL yyyy HH:mm');
  }
}

/**
 * Unix seconds -> ISO 8601 UTC with `Z` (links and JSON).
 * @example
 * ```ts
 * isoZ(0); // '1970-01-01T00:00:00Z'
 * ```
 */
export function isoZ(s: number): string {
  return new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * The latest end time of the rows a probe can find, by binary search over `from` (the store has no
 * "latest" query; each probe is one indexed `limit 1` read). `probe(from)` returns a row ending after `from`.
 * @example
 * ```ts
 * const end = await latestEnd(async (from) => (await store.latestBilling({ from, limit: 1 }))[0]);
 * ```
 */
export async function latestEnd(probe: (from: number) => Promise<{ end: number } | undefined>): Promise<number | null> {
  if (!(await probe(-1))) return null;
  let lo = -1; // probe(lo) finds a row
  let hi = MAX_TIME_S; // probe(hi) finds none
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await probe(mid)) lo = mid;
    else hi = mid;
  }
  return lo + 1;
}
