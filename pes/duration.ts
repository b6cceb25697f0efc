/**
 * Duration flags (`15m`, `1h`, `1d`, `1mo`) and billing periods, validated with clear errors.
 * @module
 */

const UNIT_S: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/**
 * Parses a fixed-length duration such as `30s`, `15m`, `1h` or `7d` into seconds.
 * Months are not fixed-length and are only accepted by {@link parseBillingPeriod}.
 * @example
 * ```ts
 * parseDuration('15m', '--interval'); // 900
 * ```
 */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d{1,7})(s|m|h|d)$/.exec(String(text).trim());
  if (!m) throw new TypeError(`${flag}: expected a duration like 30s, 15m, 1h or 7d, got "${text}"`);
  return Number(m[1]) * UNIT_S[m[2]!]!;
}

/** A billing period, aligned in local time: N hours (N divides 24), one day, or one calendar month. */
export type BillingPeriod = { unit: 'hour'; count: number } | { unit: 'day'; count: 1 } | { unit: 'month'; count: 1 };

/**
 * Parses `--billing-period`: `1d` (local midnight to midnight), `1mo` (the 1st to the 1st) or `Nh` with N
 * dividing 24 (a demo convenience, aligned to the Unix epoch in UTC).
 * @example
 * ```ts
 * parseBillingPeriod('1mo'); // { unit: 'month', count: 1 }
 * ```
 */
export function parseBillingPeriod(text: string, flag = '--billing-period'): BillingPeriod {
  const t = String(text).trim();
  if (t === '1d') return { unit: 'day', count: 1 };
  if (t === '1mo') return { unit: 'month', count: 1 };
  const m = /^(\d{1,2})h$/.exec(t);
  if (m && Number(m[1]) > 0 && 24 % Number(m[1]) === 0) return { unit: 'hour', count: Number(m[1]) };
  throw new TypeError(`${flag}: expected 1d, 1mo or Nh with N dividing 24, got "${text}"`);
}

/** Text form of a billing period (inverse of {@link parseBillingPeriod}). */
export function formatBillingPeriod(p: BillingPeriod): string {
  return p.unit === 'month' ? '1mo' : p.unit === 'day' ? '1d' : `${p.count}h`;
}

/** Nominal length of a billing period in seconds (31 days for a month), for retention defaults. */
export function nominalSeconds(p: BillingPeriod): number {
  return p.unit === 'month' ? 31 * 86400 : p.unit === 'day' ? 86400 : p.count * 3600;
}
