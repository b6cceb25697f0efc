/**
 * The household's tariff and what its own readings cost (pure, browser-safe): the file the UCS server is
 * given with `--tariff` (served to the household as it is, validated here on both sides), the billing
 * periods the PES totals the household's energy over, energy per tariff band, and bills priced with the
 * MDMS's own pricing (lib/billing.ts `priceBill`: the same lines, the same rounding), so that the bill preview
 * agrees with the utility's bill to the minor unit when the readings cover the period.
 *
 * Tariff file (JSON): the band schedule exactly as lib/tariff.ts reads it for the PES (`tz`, `bands`, optional
 * `name`, `description`), plus
 * - `billing`: `{ "period": "1d" | "1mo" | "<N>h", "tz": "<zone>" }` — the PES's `--billing-period` and `--tz`
 *   (default: the schedule's `tz`, as the PES defaults);
 * - `prices`: the tariff versions as the MDMS holds them (mdms/web/tariffs.ts), oldest first:
 *   `{ "effectiveFrom": "YYYY-MM-DD", "currency": "GBP", "minorDigits": 2, "tz": "<zone>",
 *   "standingMilliPerDay": 53350, "vatBasisPoints": 500, "bands": [{ "band": "peak",
 *   "priceMilliPerKwh": 30000, "feedInMilliPerKwh": 15000 }] }` (`tz` defaults to `billing.tz`; every band of
 *   the schedule must have a price).
 * @module
 */
import { DateTime, IANAZone } from 'luxon';
import { BillingError, checkTariffVersion, priceBill, type Bill, type BillingPeriod, type TariffVersion } from '../../lib/billing.js';
import { bandAt, parseTariff, type Tariff } from '../../lib/tariff.js';
import type { Row } from './body.js';
import type { Range } from './series.js';

/** The PES's billing period: a local day, a calendar month, or N hours aligned to the Unix epoch. */
export type BillingCycle = { unit: 'hour'; count: number } | { unit: 'day'; count: 1 } | { unit: 'month'; count: 1 };

/** Everything the household app needs to band and price its readings as the utility does. */
export interface HouseholdTariff {
  /** Name shown to the household. */
  name: string;
  /** The band schedule the PES splits billing totals by. */
  schedule: Tariff;
  billing: { period: BillingCycle; tz: string };
  /** The MDMS's tariff versions, oldest first. */
  versions: TariffVersion[];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
function onlyKeys(o: Record<string, unknown>, allowed: string[], at: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new TypeError(`${at}: unknown field "${k}"`);
}

/**
 * Parses a billing period as the PES's `--billing-period` does: `1d`, `1mo` or `Nh` with N dividing 24.
 * @example
 * ```ts
 * parseBillingCycle('1mo'); // { unit: 'month', count: 1 }
 * ```
 */
export function parseBillingCycle(text: unknown): BillingCycle {
  const t = String(text).trim();
  if (t === '1d') return { unit: 'day', count: 1 };
  if (t === '1mo') return { unit: 'month', count: 1 };
  const m = /^(\d{1,2})h$/.exec(t);
  if (m && Number(m[1]) > 0 && 24 % Number(m[1]) === 0) return { unit: 'hour', count: Number(m[1]) };
  throw new TypeError(`tariff.billing.period: expected 1d, 1mo or Nh with N dividing 24, got ${JSON.stringify(text)}`);
}

/**
 * Validates a tariff file's JSON (the module comment has the format); throws a `TypeError` naming the field.
 * @example
 * ```ts
 * const tariff = parseHouseholdTariff(JSON.parse(text));
 * ```
 */
export function parseHouseholdTariff(json: unknown): HouseholdTariff {
  if (!isObject(json)) throw new TypeError('tariff must be a JSON object');
  onlyKeys(json, ['tz', 'bands', 'name', 'description', 'billing', 'prices'], 'tariff');
  const { billing, prices, ...band } = json;
  const schedule = parseTariff(band);
  if (billing !== undefined && !isObject(billing)) throw new TypeError('tariff.billing must be an object {period, tz}');
  onlyKeys(billing ?? {}, ['period', 'tz'], 'tariff.billing');
  const period = parseBillingCycle(billing?.period ?? '1d');
  const tz = billing?.tz ?? schedule.tz;
  if (typeof tz !== 'string' || !IANAZone.isValidZone(tz)) throw new TypeError(`tariff.billing.tz must be an IANA time zone, got ${JSON.stringify(tz)}`);
  if (!Array.isArray(prices) || prices.length === 0 || prices.length > 100) throw new TypeError('tariff.prices must be an array of 1..100 tariff versions');
  const name = typeof json.name === 'string' && json.name.length <= 100 ? json.name : 'Your tariff';
  const versions = prices.map((p: unknown, i: number): TariffVersion => {
    const at = `tariff.prices[${i}]`;
    if (!isObject(p)) throw new TypeError(`${at} must be an object`);
    onlyKeys(p, ['effectiveFrom', 'name', 'currency', 'minorDigits', 'tz', 'standingMilliPerDay', 'vatBasisPoints', 'bands'], at);
    if (!Array.isArray(p.bands)) throw new TypeError(`${at}.bands must be an array of {band, priceMilliPerKwh, feedInMilliPerKwh}`);
    const bands = p.bands.map((b: unknown, j: number) => {
      if (!isObject(b)) throw new TypeError(`${at}.bands[${j}] must be an object`);
      onlyKeys(b, ['band', 'priceMilliPerKwh', 'feedInMilliPerKwh'], `${at}.bands[${j}]`);
      return { band: b.band as string, priceMilliPerKwh: b.priceMilliPerKwh as number, ...(b.feedInMilliPerKwh !== undefined ? { feedInMilliPerKwh: b.feedInMilliPerKwh as number } : {}) };
    });
    const v = {
      id: i + 1,
      code: 'household',
      name: typeof p.name === 'string' ? p.name : name,
      currency: p.currency as string,
      minorDigits: p.minorDigits as number,
      tz: (p.tz ?? tz) as string,
      effectiveFrom: p.effectiveFrom as string,
      standingMilliPerDay: p.standingMilliPerDay as number,
      vatBasisPoints: p.vatBasisPoints as number,
      bands,
    };
    try {
      checkTariffVersion(v);
    } catch (e) {
      throw new TypeError(`${at}: ${(e as Error).message}`);
    }
    for (const sb of schedule.bands) if (!bands.some((b) => b.band === sb.name)) throw new TypeError(`${at}: band "${sb.name}" of the schedule has no price`);
    return v;
  });
  return { name, schedule, billing: { period, tz }, versions };
}

/**
 * The billing period that contains `t`, as the PES cuts it (pes/core/calendar.ts): local midnight to
 * midnight, the 1st to the 1st in the billing zone, or N-hour periods aligned to the Unix epoch.
 * @example
 * ```ts
 * billingPeriodAt(tariff, Date.UTC(2024, 5, 10) / 1000); // June 2024 for a monthly tariff
 * ```
 */
export function billingPeriodAt(tariff: Pick<HouseholdTariff, 'billing'>, t: number): Range {
  const { period, tz } = tariff.billing;
  if (period.unit === 'hour') {
    const len = period.count * 3600;
    const start = t - (((t % len) + len) % len);
    return { start, end: start + len };
  }
  const s = DateTime.fromSeconds(t, { zone: tz }).startOf(period.unit);
  return { start: s.toSeconds(), end: s.plus({ [`${period.unit}s`]: 1 }).toSeconds() };
}

/**
 * The billing periods that overlap `[range.start, range.end)`, in order.
 * @example
 * ```ts
 * billingPeriodsIn(tariff, { start, end }).length; // 12 for a year of monthly periods
 * ```
 */
export function billingPeriodsIn(tariff: Pick<HouseholdTariff, 'billing'>, range: Range): Range[] {
  const out: Range[] = [];
  for (let t = range.start; t < range.end; ) {
    const p = billingPeriodAt(tariff, t);
    out.push(p);
    t = p.end;
  }
  return out;
}

/** A household's energy per band over a span, as the PES totals it for billing. */
export interface BandEnergies {
  /** Imported Wh per band; every band of the schedule is present (0 if none). */
  bands: Record<string, number>;
  /** Exported Wh per band; every band of the schedule is present (0 if none). */
  exportBands: Record<string, number>;
  /** Readings counted. */
  readings: number;
}

/**
 * Energy per tariff band of the rows that start in `[from, to)`; a reading belongs to the band of its start
 * time in the schedule's zone (lib/tariff.ts `bandAt`, as the PES bands it).
 * @example
 * ```ts
 * bandEnergies(rows, tariff.schedule, period.start, period.end).bands; // { peak: 4200, offpeak: 6100 }
 * ```
 */
export function bandEnergies(rows: readonly Row[], schedule: Tariff, from: number, to: number): BandEnergies {
  const bands: Record<string, number> = {};
  const exportBands: Record<string, number> = {};
  for (const b of schedule.bands) bands[b.name] = exportBands[b.name] = 0;
  let readings = 0;
  for (const r of rows) {
    if (r.time < from || r.time >= to) continue;
    const band = bandAt(schedule, r.time);
    bands[band]! += r.energyWh;
    exportBands[band]! += r.exportEnergyWh;
    readings++;
  }
  return { bands, exportBands, readings };
}

/** A priced span, or why it could not be priced. */
export type Priced = { bill: Bill; error?: undefined } | { bill?: undefined; error: string };

/**
 * The household's energy per band over `[range.start, range.end)`, cut at billing-period boundaries: one part
 * per billing period the range touches, clipped to the range (what {@link priceParts} prices).
 * @example
 * ```ts
 * billingParts(rows, tariff, spanRange('day', at, zone)); // [{ start, end, bands, exportBands }]
 * ```
 */
export function billingParts(rows: readonly Row[], tariff: HouseholdTariff, range: Range): BillingPeriod[] {
  return billingPeriodsIn(tariff, range).map((p) => {
    const start = Math.max(p.start, range.start);
    const end = Math.min(p.end, range.end);
    const e = bandEnergies(rows, tariff.schedule, start, end);
    return { start, end, bands: e.bands, exportBands: e.exportBands };
  });
}

const addBands = (a: Record<string, number>, b: Record<string, number> = {}) => {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out;
};

/**
 * Prices parts (from {@link billingParts}, possibly of several spans) as the MDMS bills them: adjacent parts
 * of one billing period are joined first (so a month priced from its days is the month's bill), then
 * `priceBill` prices them together (charge lines, feed-in credits, standing charge per local day begun, VAT).
 * @example
 * ```ts
 * const { bill, error } = priceParts([...januaryParts, ...februaryParts], tariff);
 * ```
 */
export function priceParts(parts: readonly BillingPeriod[], tariff: HouseholdTariff): Priced {
  const joined: BillingPeriod[] = [];
  for (const p of [...parts].sort((a, b) => a.start - b.start)) {
    const last = joined[joined.length - 1];
    if (last && last.end === p.start && billingPeriodAt(tariff, last.start).start === billingPeriodAt(tariff, p.start).start) {
      joined[joined.length - 1] = { start: last.start, end: p.end, bands: addBands(last.bands, p.bands), exportBands: addBands(last.exportBands ?? {}, p.exportBands) };
    } else joined.push(p);
  }
  if (joined.length === 0) return { error: 'nothing to price' };
  try {
    return { bill: priceBill(joined, tariff.versions) };
  } catch (e) {
    if (e instanceof BillingError) return { error: e.message };
    throw e;
  }
}

/**
 * Prices the rows of `[range.start, range.end)` as the MDMS bills them ({@link billingParts}, then
 * {@link priceParts}). For a range made of whole billing periods this is the utility's bill for them; for a
 * part of a period (a day of a monthly bill, the running period) it is that part priced as a bill.
 * @example
 * ```ts
 * const { bill, error } = priceRange(rows, tariff, spanRange('month', at, zone));
 * ```
 */
export function priceRange(rows: readonly Row[], tariff: HouseholdTariff, range: Range): Priced {
  if (!(range.end > range.start)) return { error: 'empty span' };
  return priceParts(billingParts(rows, tariff, range), tariff);
}

/** The bill preview of the running billing period. */
export interface Preview {
  /** The whole billing period. */
  period: Range;
  /** Priced up to here (the end of the newest reading, or the period's end). */
  upTo: number;
  priced: Priced;
  /** False when this browser's readings start after the period began. */
  complete: boolean;
}

/**
 * The running billing period (the one containing `at`, the end of the newest reading) priced up to `at`.
 * @example
 * ```ts
 * const p = billPreview(rows, tariff, latest.time + latest.period, oldest.time);
 * p.priced.bill?.totalMinor;
 * ```
 */
export function billPreview(rows: readonly Row[], tariff: HouseholdTariff, at: number, firstReading: number): Preview {
  const period = billingPeriodAt(tariff, at - 1);
  const upTo = Math.min(period.end, at);
  return { period, upTo, priced: priceRange(rows, tariff, { start: period.start, end: upTo }), complete: firstReading <= period.start };
}
