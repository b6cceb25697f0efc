/**
 * The household stream body (docs/protocol.md §11.3): what the PES seals to a household for each meter
 * batch, `{meter, prevWh, readings: [[time, period, importWh, powerW, status], …]}`, or with the export
 * register `{meter, prevWh, prevExportWh, readings: [[time, period, importWh, powerW, status, exportWh], …]}`.
 * `meter` is the meter id (16 hex digits), the rest is the meter's reading batch as it sent it (§5, either
 * form), so the household checks it exactly as the PES checked the meter's batch. Browser-safe: the PES builds it, the household app,
 * `ucs watch` and the Home Assistant bridge parse it.
 * @module
 */
import { asArray } from './cbor.js';
import { hasExport, parseBatchArray, type Reading, type ReadingBatch } from './reading.js';

/** One decrypted stream message. */
export interface StreamBody {
  meter: string;
  prevWh: number;
  readings: Reading[];
  /** Present when the meter sent the long form (an export register that is not 0). */
  prevExportWh?: number;
}

/** The CBOR-ready body {@link streamBody} builds. */
export interface StreamBodyWire {
  meter: string;
  prevWh: number;
  readings: number[][];
  prevExportWh?: number;
}

const METER = /^[0-9a-f]{16}$/;

/**
 * The body to seal for one meter batch (a plain CBOR-encodable object).
 * @example
 * ```ts
 * sealStream(sk, topics.household('hh1'), streamBody('0123456789abcdef', batch));
 * ```
 */
export function streamBody(meter: string, batch: ReadingBatch): StreamBodyWire {
  if (typeof meter !== 'string' || !METER.test(meter)) throw new TypeError('meter must be 16 hex digits');
  if (!hasExport(batch)) return { meter, prevWh: batch.prevWh, readings: batch.readings.map((r) => [r.time, r.period, r.importWh, r.powerW, r.status]) };
  return {
    meter,
    prevWh: batch.prevWh,
    prevExportWh: batch.prevExportWh ?? 0,
    readings: batch.readings.map((r) => [r.time, r.period, r.importWh, r.powerW, r.status, r.exportWh ?? 0]),
  };
}

/**
 * Validates a decrypted body; throws `TypeError` naming the bad field.
 * @example
 * ```ts
 * const body = parseStreamBody(await opener.open(topic, payload));
 * ```
 */
export function parseStreamBody(v: unknown): StreamBody {
  const o = v as { meter?: unknown; prevWh?: unknown; prevExportWh?: unknown; readings?: unknown } | null;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new TypeError('stream body must be a map');
  if (typeof o.meter !== 'string' || !METER.test(o.meter)) throw new TypeError('stream body meter must be 16 hex digits');
  asArray(o.readings, 'stream body readings', 1);
  // The same checks as the meter's own batch: integer fields in range, time order, registers never decreasing.
  const batch = parseBatchArray(o.prevExportWh === undefined ? [o.prevWh, o.readings] : [o.prevWh, o.readings, o.prevExportWh], 'stream body');
  return { meter: o.meter, ...batch };
}
