/**
 * `ucs --tariff FILE`: the household's tariff as the UCS server serves it to the browser (ucs/web/bill.ts has
 * the file format and the validation, which the browser runs again on what it receives).
 * @module
 */
import { readFileSync } from 'node:fs';
import { parseHouseholdTariff, type HouseholdTariff } from './web/bill.js';

/** A validated tariff file: its JSON as written (served as it is) and its parsed form. */
export interface TariffFile {
  json: Record<string, unknown>;
  tariff: HouseholdTariff;
}

/**
 * Reads and validates a tariff file; throws an error naming the file and the first problem.
 * @example
 * ```ts
 * const { tariff } = loadHouseholdTariff('tariff.json');
 * ```
 */
export function loadHouseholdTariff(file: string): TariffFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read --tariff ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`--tariff ${file} is not valid JSON: ${(e as Error).message}`);
  }
  try {
    return householdTariff(json);
  } catch (e) {
    throw new Error(`--tariff ${file}: ${(e as Error).message}`);
  }
}

/**
 * A tariff given as a value (the demo's), validated like a file; throws a `TypeError` naming the field.
 * @example
 * ```ts
 * startUcs({ ...opts, tariff: householdTariff({ tz: 'UTC', bands: [{ name: 'flat', default: true }], billing: { period: '1d' }, prices: [...] }) });
 * ```
 */
export function householdTariff(json: unknown): TariffFile {
  return { tariff: parseHouseholdTariff(json), json: json as Record<string, unknown> };
}
