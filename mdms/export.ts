/**
 * CSV export of the latest revision of every aggregate (RFC 4180 fields, `\n` line ends, header first):
 * - neighbourhood: `neighbourhood,start,end,meters,energy_wh,export_wh`, sorted by neighbourhood, start;
 * - billing: `household,start,end,band,energy_wh,export_wh`, one line per band, sorted by household, start, band.
 * Times are ISO 8601 UTC with `Z` and no fraction (`2024-05-01T00:15:00Z`); energy is integer Wh: `energy_wh`
 * imported from the grid, `export_wh` exported to it (0 when none). The columns of version 1 come first, in
 * their order, so a consumer that reads columns by position keeps working; new columns are only ever appended.
 * Rows are read in pages (keyset pagination), so a large store streams in bounded memory.
 * @module
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { BillingRow, NeighbourhoodRow, Store } from './store/types.js';

export type ExportWhat = 'neighbourhood' | 'billing';
export const EXPORT_WHATS: readonly ExportWhat[] = ['neighbourhood', 'billing'];

export const CSV_HEADERS: Readonly<Record<ExportWhat, string>> = {
  neighbourhood: 'neighbourhood,start,end,meters,energy_wh,export_wh',
  billing: 'household,start,end,band,energy_wh,export_wh',
};

/**
 * One neighbourhood row as CSV fields, in {@link CSV_HEADERS} order.
 * @example
 * ```ts
 * line(...neighbourhoodFields(row)); // 'nb1,2024-05-01T00:00:00Z,2024-05-01T00:15:00Z,25,8120,310\n'
 * ```
 */
export function neighbourhoodFields(r: NeighbourhoodRow): (string | number)[] {
  return [r.neighbourhood, isoTime(r.start), isoTime(r.end), r.meters, r.energyWh, r.exportWh];
}

/**
 * One billing band row as CSV fields, in {@link CSV_HEADERS} order.
 * @example
 * ```ts
 * line(...billingFields(row)); // 'hh1,2024-05-01T00:00:00Z,2024-05-02T00:00:00Z,peak,3000,1200\n'
 * ```
 */
export function billingFields(r: BillingRow): (string | number)[] {
  return [r.household, isoTime(r.start), isoTime(r.end), r.band, r.energyWh, r.exportWh];
}

/**
 * Unix seconds -> ISO 8601 UTC, second resolution.
 * @example
 * ```ts
 * isoTime(1714522500); // '2024-05-01T00:15:00Z'
 * ```
 */
export function isoTime(s: number): string {
  if (!Number.isSafeInteger(s)) throw new TypeError('time must be an integer number of seconds');
  return new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Quotes a CSV field when it needs it (RFC 4180 §2.6-2.7). Keys and bands are restricted ids, so this is a safety net. */
function field(v: string | number): string {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const line = (...fields: (string | number)[]): string => fields.map(field).join(',') + '\n';

/**
 * The CSV lines (header first), page by page.
 * @example
 * ```ts
 * for await (const l of csvLines(store, 'billing')) process.stdout.write(l);
 * ```
 */
export async function* csvLines(store: Store, what: ExportWhat, pageSize = 5000): AsyncGenerator<string> {
  if (!EXPORT_WHATS.includes(what)) throw new TypeError(`--what must be one of ${EXPORT_WHATS.join(', ')}`);
  yield CSV_HEADERS[what] + '\n';
  if (what === 'neighbourhood') {
    let after: { neighbourhood: string; start: number } | undefined;
    for (;;) {
      const rows = await store.latestNeighbourhood({ after, limit: pageSize });
      if (rows.length === 0) return;
      yield rows.map((r) => line(...neighbourhoodFields(r))).join('');
      const last = rows[rows.length - 1]!;
      after = { neighbourhood: last.neighbourhood, start: last.start };
    }
  }
  let after: { household: string; start: number } | undefined;
  for (;;) {
    const rows = await store.latestBilling({ after, limit: pageSize });
    if (rows.length === 0) return;
    yield rows.map((r) => line(...billingFields(r))).join('');
    const last = rows[rows.length - 1]!;
    after = { household: last.household, start: last.start };
  }
}

/**
 * The whole export as one string (small stores, tests, the web app's download button).
 * @example
 * ```ts
 * const csv = await exportCsv(store, 'neighbourhood');
 * ```
 */
export async function exportCsv(store: Store, what: ExportWhat): Promise<string> {
  let out = '';
  for await (const l of csvLines(store, what)) out += l;
  return out;
}

/**
 * Streams the export into `out` (honouring back-pressure); does not end `out`.
 * @example
 * ```ts
 * await writeCsv(store, 'billing', process.stdout);
 * ```
 */
export async function writeCsv(store: Store, what: ExportWhat, out: Writable): Promise<void> {
  for await (const chunk of csvLines(store, what)) {
    if (!out.write(chunk)) await once(out, 'drain');
  }
}

/**
 * Streams the export into a file (created 0600: billing rows are personal data), replacing it.
 * @example
 * ```ts
 * await exportCsvFile(store, 'billing', 'billing.csv');
 * ```
 */
export async function exportCsvFile(store: Store, what: ExportWhat, path: string): Promise<void> {
  const out = createWriteStream(path, { mode: 0o600 });
  try {
    await once(out, 'open');
    await writeCsv(store, what, out);
  } finally {
    out.end();
    await finished(out);
  }
}
