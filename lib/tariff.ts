/**
 * Time-of-use tariff bands, shared by the PES (which splits each household's billing totals by band) and
 * the MDMS (which prices them).
 *
 * File format (JSON):
 * ```json
 * { "tz": "Europe/London",
 *   "bands": [ { "name": "peak", "rules": [{ "days": [1,2,3,4,5], "from": "07:00", "to": "23:00" }] },
 *              { "name": "offpeak", "default": true } ] }
 * ```
 * - `tz`: IANA time zone in which rules are read (required as soon as a band has rules; default `UTC`);
 * - exactly one band is the `default` (it has no rules and covers every minute no rule covers);
 * - a rule covers local times `[from, to)` on the ISO weekdays in `days` (1 = Monday … 7 = Sunday);
 *   `HH:MM`, `to` may be `24:00`, `from < to` (write an overnight band as two rules);
 * - rules of all bands together must not overlap.
 * A reading belongs to the band of its start time in local time (readings are 1–15 minutes long, so a
 * reading that straddles a band boundary is attributed by where it starts).
 * @module
 */
import { readFileSync } from 'node:fs';
import { DateTime, IANAZone } from 'luxon';

export interface BandRule {
  /** ISO weekdays, 1 = Monday … 7 = Sunday. */
  days: number[];
  /** Minutes after local midnight, inclusive. */
  from: number;
  /** Minutes after local midnight, exclusive (1440 = end of day). */
  to: number;
}
export interface Band {
  name: string;
  default: boolean;
  rules: BandRule[];
}
export interface Tariff {
  tz: string;
  bands: Band[];
}

/** The flat tariff: one default band named `flat`. */
export const FLAT_TARIFF: Tariff = Object.freeze({ tz: 'UTC', bands: [{ name: 'flat', default: true, rules: [] }] }) as Tariff;

const NAME = /^[A-Za-z0-9_.-]{1,32}$/;

function hhmm(v: unknown, at: string, allow24: boolean): number {
  const m = typeof v === 'string' ? /^([01]\d|2[0-4]):([0-5]\d)$/.exec(v) : null;
  if (!m) throw new TypeError(`${at} must be "HH:MM"`);
  const min = Number(m[1]) * 60 + Number(m[2]);
  if (min > 1440 || (min === 1440 && !allow24)) throw new TypeError(`${at} must be between 00:00 and ${allow24 ? '24:00' : '23:59'}`);
  return min;
}

function onlyKeys(o: Record<string, unknown>, allowed: string[], at: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new TypeError(`${at}: unknown field "${k}"`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Validates a parsed tariff JSON value; throws a `TypeError` naming the first problem.
 * @example
 * ```ts
 * const tariff = parseTariff({ tz: 'UTC', bands: [{ name: 'flat', default: true }] });
 * ```
 */
export function parseTariff(json: unknown): Tariff {
  if (!isObject(json)) throw new TypeError('tariff must be a JSON object');
  onlyKeys(json, ['tz', 'bands', 'name', 'description'], 'tariff');
  if (!Array.isArray(json.bands) || json.bands.length === 0 || json.bands.length > 16) {
    throw new TypeError('tariff.bands must be an array of 1..16 bands');
  }
  const bands: Band[] = json.bands.map((b: unknown, i: number) => {
    const at = `tariff.bands[${i}]`;
    if (!isObject(b)) throw new TypeError(`${at} must be an object`);
    onlyKeys(b, ['name', 'default', 'rules'], at);
    if (typeof b.name !== 'string' || !NAME.test(b.name) || b.name === '__proto__') throw new TypeError(`${at}.name must match ${NAME.source} and not be __proto__`);
    if (b.default !== undefined && typeof b.default !== 'boolean') throw new TypeError(`${at}.default must be true or false`);
    const isDefault = b.default === true;
    const rawRules = b.rules ?? [];
    if (!Array.isArray(rawRules)) throw new TypeError(`${at}.rules must be an array`);
    if (isDefault && rawRules.length > 0) throw new TypeError(`${at}: the default band covers what no rule covers; it must not have rules`);
    if (!isDefault && rawRules.length === 0) throw new TypeError(`${at}: a band that is not the default needs at least one rule`);
    const rules = rawRules.map((r: unknown, j: number) => {
      const rat = `${at}.rules[${j}]`;
      if (!isObject(r)) throw new TypeError(`${rat} must be an object`);
      onlyKeys(r, ['days', 'from', 'to'], rat);
      if (!Array.isArray(r.days) || r.days.length === 0) throw new TypeError(`${rat}.days must be a non-empty array of ISO weekdays 1..7`);
      for (const d of r.days) if (!Number.isInteger(d) || d < 1 || d > 7) throw new TypeError(`${rat}.days must contain ISO weekdays 1..7 (1 = Monday)`);
      if (new Set(r.days).size !== r.days.length) throw new TypeError(`${rat}.days has a repeated day`);
      const from = hhmm(r.from, `${rat}.from`, false);
      const to = hhmm(r.to, `${rat}.to`, true);
      if (from >= to) throw new TypeError(`${rat}: from must be before to (write an overnight band as two rules)`);
      return { days: [...(r.days as number[])], from, to };
    });
    return { name: b.name, default: isDefault, rules };
  });
  if (new Set(bands.map((b) => b.name)).size !== bands.length) throw new TypeError('tariff band names must be unique');
  const defaults = bands.filter((b) => b.default).length;
  if (defaults !== 1) throw new TypeError(`tariff must have exactly one default band, found ${defaults}`);
  const hasRules = bands.some((b) => b.rules.length > 0);
  if (json.tz === undefined && hasRules) throw new TypeError('tariff.tz is required when bands have rules');
  const tz = json.tz === undefined ? 'UTC' : json.tz;
  if (typeof tz !== 'string' || !IANAZone.isValidZone(tz)) throw new TypeError(`tariff.tz must be an IANA time zone, got ${JSON.stringify(tz)}`);
  for (let day = 1; day <= 7; day++) {
    const spans = bands
      .flatMap((b) => b.rules.filter((r) => r.days.includes(day)).map((r) => ({ ...r, band: b.name })))
      .sort((a, b) => a.from - b.from);
    for (let i = 1; i < spans.length; i++) {
      const a = spans[i - 1]!;
      const b = spans[i]!;
      if (b.from < a.to) throw new TypeError(`tariff rules overlap on ISO day ${day}: band "${a.band}" and band "${b.band}"`);
    }
  }
  return { tz, bands };
}

/**
 * Reads and validates a tariff file.
 * @example
 * ```ts
 * const tariff = loadTariff('config/tariff.json');
 * ```
 */
export function loadTariff(file: string): Tariff {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read tariff file ${file}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new TypeError(`tariff file ${file} is not valid JSON: ${(e as Error).message}`);
  }
  return parseTariff(json);
}

/**
 * The band of an instant given as ISO weekday and minute of the local day.
 * @example
 * ```ts
 * bandOfLocal(tariff, 1, 8 * 60); // 'peak' on Monday 08:00
 * ```
 */
export function bandOfLocal(tariff: Tariff, weekday: number, minute: number): string {
  let fallback = '';
  for (const b of tariff.bands) {
    if (b.default) fallback = b.name;
    for (const r of b.rules) if (minute >= r.from && minute < r.to && r.days.includes(weekday)) return b.name;
  }
  return fallback;
}

/**
 * The band of a Unix time (seconds), read in the tariff's time zone.
 * @example
 * ```ts
 * bandAt(tariff, 1700000000);
 * ```
 */
export function bandAt(tariff: Tariff, t: number): string {
  const local = DateTime.fromSeconds(t, { zone: tariff.tz });
  return bandOfLocal(tariff, local.weekday, local.hour * 60 + local.minute);
}
