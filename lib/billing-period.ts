/**
 * Billing periods (`1d`, `1mo`, `Nh`), validated with clear errors. Fixed-length durations use
 * lib/flags.ts `parseDuration`.
 * @module
 */

/** A billing period: one local day, one calendar month (both in the billing time zone), or N UTC hours (N divides 24). */
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

/**
 * Text form of a billing period (inverse of {@link parseBillingPeriod}).
 * @example
 * ```ts
 * formatBillingPeriod({ unit: 'month', count: 1 }); // '1mo'
 * ```
 */
export function formatBillingPeriod(p: BillingPeriod): string {
  return p.unit === 'month' ? '1mo' : p.unit === 'day' ? '1d' : `${p.count}h`;
}

/**
 * Nominal length of a billing period in seconds (31 days for a month), for retention defaults.
 * @example
 * ```ts
 * nominalSeconds({ unit: 'day', count: 1 }); // 86400
 * ```
 */
export function nominalSeconds(p: BillingPeriod): number {
  return p.unit === 'month' ? 31 * 86400 : p.unit === 'day' ? 86400 : p.count * 3600;
}
