/**
 * Rows of a household stream body (protocol/stream.ts, docs/protocol.md §11.3): each reading with its energy.
 * Browser-safe: used by the app, `ucs watch` and the HA bridge alike.
 * @module
 */
import { readingEnergies } from '../../protocol/reading.js';
import type { StreamBody } from '../../protocol/stream.js';

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
