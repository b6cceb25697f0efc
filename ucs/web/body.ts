/**
 * Rows of a household stream body (protocol/stream.ts, docs/protocol.md §11.3): each reading with its energy.
 * Browser-safe: used by the app, `ucs watch` and the HA bridge alike.
 * @module
 */
import { readingEnergies, readingExports } from '../../protocol/reading.js';
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
  /** Energy imported in the period, Wh (register difference to the previous reading or to `prevWh`). */
  energyWh: number;
  /** Export register 1-0:2.8.0 at the end of the period, Wh (0 for a meter that never exported). */
  exportWh: number;
  /** Energy exported (fed into the grid) in the period, Wh (export register difference). */
  exportEnergyWh: number;
}

/**
 * Rows of a body (either form of docs/protocol.md §5: without export, the export register is 0), each with
 * its imported and exported energy.
 * @example
 * ```ts
 * bodyRows({ meter, prevWh: 10, readings: [{ time: 0, period: 60, importWh: 12, powerW: 120, status: 0 }] })[0].energyWh; // 2
 * ```
 */
export function bodyRows(body: StreamBody): Row[] {
  const energies = readingEnergies(body);
  const exports = readingExports(body);
  return body.readings.map((r, i) => ({
    meter: body.meter,
    time: r.time,
    period: r.period,
    importWh: r.importWh,
    powerW: r.powerW,
    status: r.status,
    energyWh: energies[i]!,
    exportWh: r.exportWh ?? 0,
    exportEnergyWh: exports[i]!,
  }));
}

/**
 * A row stored before the export register existed (IndexedDB version 1) as a row of today: nothing exported.
 * @example
 * ```ts
 * upgradeRow({ meter, time, period, importWh, powerW, status, energyWh }).exportWh; // 0
 * ```
 */
export function upgradeRow(old: Omit<Row, 'exportWh' | 'exportEnergyWh'> & Partial<Row>): Row {
  return { ...old, exportWh: old.exportWh ?? 0, exportEnergyWh: old.exportEnergyWh ?? 0 };
}
