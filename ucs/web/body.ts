/**
 * The household stream body (docs/protocol.md §11.3, built by the PES in pes/core/pes.ts):
 * `{meter, prevWh, readings: [[time, period, importWh, powerW, status], …]}`, validated exactly as the
 * PES validated the meter's batch (protocol/reading.ts), and turned into rows with each reading's energy.
 * Browser-safe: used by the app, `ucs watch` and the HA bridge alike.
 * @module
 */
import { asArray, cborEncode } from '../../protocol/cbor.js';
import { decodeReadingBatch, readingEnergies, type Reading } from '../../protocol/reading.js';

/** One decrypted stream message. */
export interface StreamBody {
  meter: string;
  prevWh: number;
  readings: Reading[];
}

/** One reading with its energy (register difference), as the app stores and exports it. */
export interface Row {
  meter: string;
  /** Period start, Unix s. */
  time: number;
  period: number;
  /** Import register at the end of the period, Wh. */
  importWh: number;
  powerW: number;
  status: number;
  /** Energy of the period, Wh (register difference to the previous reading or to `prevWh`). */
  energyWh: number;
}

const METER = /^[0-9a-f]{16}$/;

/**
 * Validates a decrypted body; throws `TypeError` naming the bad field.
 * @example
 * ```ts
 * const body = parseStreamBody(await opener.open(topic, payload));
 * ```
 */
export function parseStreamBody(v: unknown): StreamBody {
  const o = v as { meter?: unknown; prevWh?: unknown; readings?: unknown } | null;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new TypeError('stream body must be a map');
  if (typeof o.meter !== 'string' || !METER.test(o.meter)) throw new TypeError('stream body meter must be 16 hex digits');
  asArray(o.readings, 'stream body readings', 1);
  // The same checks as the meter's own batch: integer fields in range, time order, register never decreasing.
  const batch = decodeReadingBatch(cborEncode([o.prevWh, o.readings]));
  return { meter: o.meter, ...batch };
}

/**
 * Rows of a body, each with its energy.
 * @example
 * ```ts
 * bodyRows({ meter, prevWh: 10, readings: [{ time: 0, period: 60, importWh: 12, powerW: 120, status: 0 }] })[0].energyWh; // 2
 * ```
 */
export function bodyRows(body: StreamBody): Row[] {
  const energies = readingEnergies(body);
  return body.readings.map((r, i) => ({ meter: body.meter, ...r, energyWh: energies[i]! }));
}
