/**
 * One way to write dates and times throughout the household app: the browser's locale (`Intl`, through
 * luxon), in the household's time zone, which the page names once in its header. Pure: the zone and locale
 * are arguments, so tests give their own.
 * @module
 */
import { DateTime } from 'luxon';
import type { Span } from './series.js';

/** The formatters of one zone and locale. */
export interface Dates {
  zone: string;
  locale: string;
  /** A calendar day: `Sat, 6 Dec 2026` in en-GB. */
  day(t: number): string;
  /** A day and a time to the minute. */
  dateTime(t: number): string;
  /** A day and a time to the second. */
  dateTimeSeconds(t: number): string;
  /** A time of day to the minute. */
  time(t: number): string;
  /** The title of a history period (the day, `Week 49, 2026 (1 Dec – 7 Dec)`, the month, the year). */
  period(span: Span, t: number): string;
  /** The label of one bucket of a period's table (an hour, a day, a month). */
  bucket(span: Span, t: number): string;
  /** A chart axis tick of a week, month or year view: `6 Dec`, `Dec`. */
  tick(span: Span, t: number): string;
  /** The zone and its current offset, for the header: `Europe/London (UTC+00:00)`. */
  zoneLabel(at: number): string;
}

/**
 * The formatters for `zone` and `locale`.
 * @example
 * ```ts
 * const d = dates('Europe/London', 'en-GB');
 * d.day(1733443200); // 'Fri, 6 Dec 2024'
 * ```
 */
export function dates(zone: string, locale: string): Dates {
  const at = (t: number) => DateTime.fromSeconds(t, { zone, locale });
  const DAY = { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' } as const;
  const TIME = { hour: '2-digit', minute: '2-digit' } as const;
  const d: Dates = {
    zone,
    locale,
    day: (t) => at(t).toLocaleString(DAY),
    dateTime: (t) => at(t).toLocaleString({ ...DAY, ...TIME }),
    dateTimeSeconds: (t) => at(t).toLocaleString({ ...DAY, ...TIME, second: '2-digit' }),
    time: (t) => at(t).toLocaleString(TIME),
    period(span, t) {
      const x = at(t);
      if (span === 'day') return d.day(t);
      if (span === 'week') {
        const end = x.plus({ days: 6 });
        const short = { day: 'numeric', month: 'short' } as const;
        return `Week ${x.weekNumber}, ${x.weekYear} (${x.toLocaleString(short)} – ${end.toLocaleString(short)})`;
      }
      if (span === 'month') return x.toLocaleString({ month: 'long', year: 'numeric' });
      return x.toLocaleString({ year: 'numeric' });
    },
    bucket(span, t) {
      const x = at(t);
      if (span === 'day') return x.toLocaleString(TIME);
      if (span === 'year') return x.toLocaleString({ month: 'short', year: 'numeric' });
      return x.toLocaleString({ weekday: 'short', day: 'numeric', month: 'short' });
    },
    tick: (span, t) => at(t).toLocaleString(span === 'year' ? { month: 'short' } : { day: 'numeric', month: 'short' }),
    zoneLabel: (t) => `${zone} (UTC${at(t).toFormat('ZZ')})`,
  };
  return d;
}
